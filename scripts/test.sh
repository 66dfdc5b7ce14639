#!/usr/bin/env bash
# The whole test suite: lint, Rego tests (core + generated from the fixtures), pytest.
# pytest exit code 5 (no tests collected) is a failure here, like any other non-zero code.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check aam_policy tests benchmarks
out="$(mktemp -d)"
aam compile fixtures/intents -o "$out/bundle" --tarball "$out/bundle.tar.gz"
aam check rego "$out/bundle"
aam test rego "$out/bundle"
python -m pytest -q
