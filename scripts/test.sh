#!/usr/bin/env bash
# The whole test suite: lint, then pytest (which also compiles the fixtures and runs the Rego tests
# once the core library is in the tree). pytest exit code 5 (no tests collected) fails here too.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check aam_policy tests
python -m pytest -q
