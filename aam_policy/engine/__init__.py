"""Policy engines: load a bundle, evaluate a rule with an input, run Rego tests, check Rego.

```python
from aam_policy.engine import default_engine, load_policy

engine = default_engine(load_policy(["build/bundle.tar.gz"]), kind="regorus")
decision = engine.evaluate("aam/decision", request)  # None when undefined
```

`RegorusEngine` (embedded, default) and `OpaEngine` (the `opa` binary, when on PATH) share the
`Engine` interface. `capabilities.json` lists the builtins both implement; `check_paths`
(`aam check`) rejects Rego that calls any other.
"""

from aam_policy.engine._check import CheckProblem, allowed_builtins, capabilities_file, check_paths
from aam_policy.engine._engine import (
    Engine,
    EngineError,
    EngineUnavailable,
    EvaluationError,
    default_engine,
    opa_binary,
)
from aam_policy.engine._opa import OpaEngine
from aam_policy.engine._policy import Manifest, Module, PolicyLoadError, PolicySet, load_policy
from aam_policy.engine._regorus import RegorusEngine
from aam_policy.engine._testing import TestReport, TestResult, format_report, run_tests

__all__ = [
    "CheckProblem",
    "Engine",
    "EngineError",
    "EngineUnavailable",
    "EvaluationError",
    "Manifest",
    "Module",
    "OpaEngine",
    "PolicyLoadError",
    "PolicySet",
    "RegorusEngine",
    "TestReport",
    "TestResult",
    "allowed_builtins",
    "capabilities_file",
    "check_paths",
    "default_engine",
    "format_report",
    "load_policy",
    "opa_binary",
    "run_tests",
]
