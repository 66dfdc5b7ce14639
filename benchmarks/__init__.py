"""The aam-policy performance harness: `python -m benchmarks` (or `aam bench`) from a checkout.

Targets and method are in `benchmarks/README.md`; results go to `benchmarks/results.json`.
Never imported by the package or the tests' timing: targets are not unit tests.
"""
