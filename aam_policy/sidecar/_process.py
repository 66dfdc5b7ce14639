"""`SidecarProcess`: run the sidecar as a real child process on a free loopback port.

No port race: the child binds 127.0.0.1:0 and writes the port it got to a ready file, which
appears (atomically) only once the bundle is active and the socket listens. The child is
never left behind: `stop()` sends SIGTERM then SIGKILL, a finalizer does the same at
garbage collection and interpreter exit, and the child itself exits when its parent dies
(`--parent-pid`), which covers a parent killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from ._errors import SidecarError

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding aam_policy/


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
    return proc.returncode


def _finalize(
    proc: subprocess.Popen[bytes] | None, log: IO[bytes] | None, workdir: Path | None
) -> None:
    if proc is not None:
        _terminate(proc, 5.0)
    if log is not None:
        log.close()
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


class SidecarProcess:
    """`python -m aam_policy.sidecar` as a child process on 127.0.0.1 with a free port.

    ```python
    with SidecarProcess("build/bundle") as sidecar:
        httpx.post(f"{sidecar.url}/v1/data/aam/decision", json={"input": request})
    ```

    `port` 0 (the default) lets the child pick a free port. `args` are extra command-line
    flags (e.g. `["--decision-log", "d.jsonl"]`). The child's stdout and stderr (its log) go
    to `log_file`, or to a temporary file; `log_text()` reads it.
    """

    def __init__(
        self,
        bundle: str | Path | None = None,
        *,
        port: int = 0,
        args: Sequence[str] = (),
        log_file: str | Path | None = None,
        startup_timeout: float = 30.0,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> None:
        self.bundle = Path(bundle) if bundle is not None else None
        self.requested_port = port  # 0: the child picks a free port (no race)
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self.python = python or sys.executable
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._workdir: Path | None = None
        self._log_file = Path(log_file) if log_file is not None else None
        self._log_handle: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.ready: dict[str, Any] = {}

    # --- properties -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise SidecarError("the sidecar is not running")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise SidecarError("the sidecar was not started")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        if self._log_file is None:
            raise SidecarError("the sidecar was not started")
        return self._log_file

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        """Everything the child wrote to stdout/stderr so far."""
        if self._log_handle is not None:
            self._log_handle.flush()
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except (OSError, SidecarError):
            return ""

    # --- lifecycle ------------------------------------------------------------------------------

    def command(self, ready_file: Path) -> list[str]:
        cmd = [
            self.python, "-m", "aam_policy.sidecar",
            "--addr", f"127.0.0.1:{self.requested_port}",
            "--ready-file", str(ready_file),
            "--parent-pid", str(os.getpid()),
        ]  # fmt: skip
        if self.bundle is not None:
            cmd += ["--bundle", str(self.bundle)]
        return cmd + self.args

    def start(self) -> SidecarProcess:
        if self._proc is not None:
            raise SidecarError("the sidecar was already started")
        self._workdir = Path(tempfile.mkdtemp(prefix="aam-sidecar-"))
        ready_file = self._workdir / "ready.json"
        if self._log_file is None:
            self._log_file = self._workdir / "sidecar.log"
        self._log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = self._log_file.open("ab")
        env = dict(os.environ if self.env is None else self.env)
        # The child must import this very aam_policy, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._proc = subprocess.Popen(
            self.command(ready_file),
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.cwd,
        )
        self._finalizer = weakref.finalize(
            self, _finalize, self._proc, self._log_handle, self._workdir
        )
        try:
            self._wait_ready(ready_file)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, ready_file: Path) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while not ready_file.exists():
            if self._proc.poll() is not None:
                raise SidecarError(
                    f"the sidecar exited with status {self._proc.returncode} while starting:\n"
                    + self._log_tail()
                )
            if time.monotonic() > deadline:
                raise SidecarError(
                    f"the sidecar did not start within {self.startup_timeout}s:\n"
                    + self._log_tail()
                )
            time.sleep(0.02)
        self.ready = json.loads(ready_file.read_text(encoding="utf-8"))
        self.port = int(self.ready["port"])
        with httpx.Client(timeout=2.0) as client:
            while True:
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise SidecarError(
                        f"the sidecar on port {self.port} never became healthy:\n"
                        + self._log_tail()
                    )
                time.sleep(0.05)

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def reload(self) -> None:
        """Ask the sidecar to reload its bundle now (SIGHUP)."""
        if self.is_running():
            assert self._proc is not None
            self._proc.send_signal(signal.SIGHUP)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to exit (raises subprocess.TimeoutExpired)."""
        if self._proc is None:
            raise SidecarError("the sidecar was not started")
        return self._proc.wait(timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (in-flight requests finish), SIGKILL after `timeout`; the exit status."""
        if self._proc is None:
            return None
        code = _terminate(self._proc, timeout)
        if self._log_handle is not None:
            self._log_handle.flush()
        return code

    def close(self) -> None:
        """Stop the child and delete its temporary files (the log too unless log_file)."""
        self.stop()
        if self._finalizer is not None:
            self._finalizer()

    def __enter__(self) -> SidecarProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self._proc.pid} url={self.url}" if self.is_running() else "stopped"
        return f"SidecarProcess({state})"
