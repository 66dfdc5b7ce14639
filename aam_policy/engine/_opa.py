"""The real OPA binary as an engine (`opa eval`, `opa test`, `opa check`), when on PATH.

The loaded `PolicySet` is written once to a private temporary directory (one subdirectory per
module so equal names from different sources cannot collide, plus the merged `data.json`), so
`opa` sees exactly what the embedded engine sees: the same deduplicated modules and data,
whatever mix of bundle directories, tarballs and Rego trees was given. Locations in opa's
output are mapped back to the original files.

Each call runs one `opa` process: right for the CLI and CI, too slow for per-request decisions
(the production sidecar is `opa run --server`, not this class).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aam_policy.engine._engine import (
    EngineUnavailable,
    EvaluationError,
    opa_binary,
    parse_path,
    rego_ref,
)
from aam_policy.engine._policy import PolicyLoadError, PolicySet

if TYPE_CHECKING:
    from aam_policy.engine._check import CheckProblem
    from aam_policy.engine._testing import TestReport, TestResult

DEFAULT_TIMEOUT = 120.0


class OpaEngine:
    """`opa` subprocesses over a materialized copy of the policy. Thread-safe (stateless)."""

    kind = "opa"

    def __init__(
        self, policy: PolicySet, opa: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        binary = opa or opa_binary()
        if binary is None:
            raise EngineUnavailable("the opa binary is not on PATH (use the regorus engine)")
        self.policy = policy
        self.opa = binary
        self.timeout = timeout
        self._dir = tempfile.mkdtemp(prefix="aam-opa-")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        self._files: dict[str, str] = {}  # materialized path -> original display path
        self._materialize()

    @property
    def revision(self) -> str:
        return self.policy.revision

    def __repr__(self) -> str:
        return f"OpaEngine(opa={self.opa!r}, modules={len(self.policy.modules)})"

    def close(self) -> None:
        """Remove the temporary copy now (otherwise done when the engine is collected)."""
        self._cleanup()

    def _materialize(self) -> None:
        root = Path(self._dir)
        for index, module in enumerate(self.policy.modules):
            target = root / f"m{index:04d}" / module.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(module.text, encoding="utf-8")
            self._files[str(target)] = module.path
        if self.policy.data:
            (root / "data.json").write_text(json.dumps(self.policy.data), encoding="utf-8")

    def original(self, file: str) -> str:
        """Map a file name from opa's output back to what the user loaded."""
        if file in self._files:
            return self._files[file]
        absolute = os.path.abspath(file)
        return self._files.get(absolute, file)

    def _run(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.opa, *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise EvaluationError(f"opa {args[0]} timed out after {self.timeout}s") from None
        except OSError as exc:
            raise EngineUnavailable(f"cannot run {self.opa}: {exc}") from None

    def _errors(self, proc: subprocess.CompletedProcess[str]) -> str:
        """Human-readable errors from opa's JSON (or plain) output, locations mapped back."""
        for text in (proc.stdout, proc.stderr):
            try:
                document = json.loads(text)
            except (json.JSONDecodeError, TypeError):
                continue
            errors = document.get("errors") if isinstance(document, dict) else None
            if errors:
                return "; ".join(self._format_error(e) for e in errors)
        text = (proc.stderr or proc.stdout).strip()
        for materialized, shown in self._files.items():
            text = text.replace(materialized, shown)
        return text or f"opa exited with status {proc.returncode}"

    def _format_error(self, error: dict[str, Any]) -> str:
        location = error.get("location") or {}
        where = ""
        if location.get("file"):
            where = f"{self.original(location['file'])}:{location.get('row', 0)}: "
        return f"{where}{error.get('message', error)}"

    def evaluate(self, path: str, input: Any = None) -> Any:
        query = rego_ref(parse_path(path))
        args = ["eval", "--format", "json", "--data", self._dir]
        if input is not None:
            args.append("--stdin-input")
        try:
            stdin = json.dumps(input) if input is not None else None
        except (TypeError, ValueError) as exc:
            raise EvaluationError(f"input is not a JSON document: {exc}", path) from None
        proc = self._run([*args, query], stdin)
        if proc.returncode != 0:
            raise EvaluationError(self._errors(proc), path)
        try:
            result = json.loads(proc.stdout).get("result") or []
        except (json.JSONDecodeError, AttributeError):
            raise EvaluationError(f"unexpected opa output: {proc.stdout[:200]!r}", path) from None
        return result[0]["expressions"][0]["value"] if result else None

    def run_tests(self, run: str | None = None) -> TestReport:
        from aam_policy.engine._testing import TestReport, compile_run_filter

        compile_run_filter(run)
        args = ["test", "--format", "json"]
        if run is not None:
            args += ["--run", run]
        proc = self._run([*args, self._dir])
        try:
            raw = json.loads(proc.stdout)
        except json.JSONDecodeError:
            # compile errors come as text, not as test results
            raise PolicyLoadError(self._errors(proc)) from None
        if not isinstance(raw, list):
            raise PolicyLoadError(self._errors(proc))
        results = sorted(
            (self._result(item) for item in raw), key=lambda r: (r.file, r.row, r.name)
        )
        total = sum(r.duration_ns for r in results)
        return TestReport(tuple(results), engine="opa", duration_ns=total)

    def _result(self, item: dict[str, Any]) -> TestResult:
        from aam_policy.engine._testing import TestResult

        location = item.get("location") or {}
        package = str(item.get("package", ""))
        package = package[5:] if package.startswith("data.") else package
        error = item.get("error")
        if item.get("skip"):
            status, message = "skip", "todo"
        elif error:
            status = "error"
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        elif item.get("fail"):
            status, message = "fail", "undefined or false"
        else:
            status, message = "pass", ""
        output = item.get("output") or ""
        if output:
            with contextlib.suppress(ValueError):  # opa sends bytes as base64
                output = base64.b64decode(output).decode("utf-8", "replace")
        return TestResult(
            package=package,
            name=str(item.get("name", "")),
            file=self.original(str(location.get("file", ""))),
            row=int(location.get("row") or 0),
            status=status,  # type: ignore[arg-type]
            duration_ns=int(item.get("duration") or 0),
            message=message,
            output=output,
        )

    def check(self, capabilities: Path) -> list[CheckProblem]:
        """`opa check --strict --capabilities FILE` over the policy."""
        from aam_policy.engine._check import CheckProblem

        args = ["check", "--strict", "--format", "json", "--capabilities", str(capabilities)]
        proc = self._run([*args, self._dir])
        if proc.returncode == 0:
            return []
        problems = []
        for text in (proc.stdout, proc.stderr):
            try:
                document = json.loads(text)
            except (json.JSONDecodeError, TypeError):
                continue
            for error in (document or {}).get("errors") or []:
                location = error.get("location") or {}
                problems.append(
                    CheckProblem(
                        path=self.original(str(location.get("file", ""))),
                        line=int(location.get("row") or 0),
                        column=int(location.get("col") or 0),
                        message=f"opa: {error.get('message', '')}",
                        code=str(error.get("code", "opa_check")),
                    )
                )
            if problems:
                return problems
        return [CheckProblem(path="", line=0, column=0, message=f"opa: {self._errors(proc)}")]
