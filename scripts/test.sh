#!/usr/bin/env bash
# The whole test suite: lint, the Rego tests (core library + tests generated from the fixture
# intents' examples, compiled into a scratch bundle), then pytest. Any failure fails the run,
# and pytest exit code 5 (no tests collected) fails it too.
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check aam_policy tests benchmarks
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
aam compile fixtures/intents -o "$scratch/bundle" --tarball "$scratch/bundle.tar.gz"
aam check rego "$scratch/bundle"
aam test rego "$scratch/bundle"
python -m pytest -q
