"""The sidecar process: start, readiness, graceful SIGTERM, failures, nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
from sidecar_helpers import REVISION, TINY_BUNDLE, bundle_copy, request, wait_for

from aam_policy.sidecar import SidecarError, SidecarProcess, parse_addr

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parent.parent


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except OSError:
        return True


def test_start_ready_and_stop() -> None:
    sidecar = SidecarProcess(TINY_BUNDLE)
    with sidecar:
        assert sidecar.is_running()
        assert sidecar.url == f"http://127.0.0.1:{sidecar.port}"
        assert sidecar.ready["pid"] == sidecar.pid
        assert sidecar.ready["revision"] == REVISION
        assert httpx.get(f"{sidecar.url}/health", timeout=5).status_code == 200
        pid = sidecar.pid
    assert sidecar.returncode == 0
    assert not alive(pid)
    assert sidecar.stop() == 0  # idempotent
    assert "aam sidecar stopped" in sidecar.log_text()
    with pytest.raises(SidecarError):
        sidecar.start()


def test_sigterm_lets_in_flight_requests_finish_and_exits_0() -> None:
    with SidecarProcess(TINY_BUNDLE) as sidecar:
        assert sidecar.port is not None
        body = json.dumps({"input": request(amount=500)}).encode()
        head = (
            "POST /v1/data/aam/decision HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        conn = socket.create_connection(("127.0.0.1", sidecar.port), timeout=10)
        conn.sendall(head + body[:10])  # the request is in flight: its body is still arriving
        time.sleep(0.2)
        codes: list[int | None] = []
        stopper = threading.Thread(target=lambda: codes.append(sidecar.stop(timeout=20)))
        stopper.start()
        wait_for(lambda: "SIGTERM: stopping" in sidecar.log_text())
        # no new connections are accepted while the old request finishes
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", sidecar.port), timeout=2).close()
        assert sidecar.is_running()
        conn.sendall(body[10:])
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
        conn.close()
        stopper.join(30)
    assert reply.startswith(b"HTTP/1.1 200")
    result = json.loads(reply.split(b"\r\n\r\n", 1)[1])["result"]
    assert result["outcome"] == "escalate"
    assert codes == [0]


def test_sigint_also_exits_0() -> None:
    with SidecarProcess(TINY_BUNDLE) as sidecar:
        os.kill(sidecar.pid, signal.SIGINT)
        assert sidecar.wait(10) == 0


def test_broken_bundle_at_startup_is_a_clear_error(tmp_path: Path) -> None:
    bundle = bundle_copy(tmp_path / "bundle")
    (bundle / "aam" / "tiny.rego").write_text("package aam.tiny\n\nx := := 1\n")
    sidecar = SidecarProcess(bundle)
    with pytest.raises(SidecarError) as error:
        sidecar.start()
    assert "exited with status 1" in str(error.value)
    assert "tiny.rego:3" in str(error.value)
    assert not sidecar.is_running()


def test_missing_bundle_at_startup_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SidecarError, match="no such file or directory"):
        SidecarProcess(tmp_path / "nope").start()


def run_module(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aam_policy.sidecar", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def test_non_loopback_address_is_refused_without_allow_remote() -> None:
    for addr in ("0.0.0.0:0", ":0", "[::]:0", "example.com:0"):
        done = run_module("--bundle", str(TINY_BUNDLE), "--addr", addr)
        assert done.returncode == 1, addr
        assert "non-loopback" in done.stderr and "--allow-remote" in done.stderr


def test_usage_errors_exit_2() -> None:
    assert run_module("--addr", "nonsense").returncode == 2
    assert run_module("--max-body", "lots").returncode == 2
    assert run_module("--reload-interval", "0").returncode == 2


def test_address_in_use_is_a_clear_error() -> None:
    with SidecarProcess(TINY_BUNDLE) as first:
        done = run_module("--bundle", str(TINY_BUNDLE), "--addr", f"127.0.0.1:{first.port}")
    assert done.returncode == 1
    assert "cannot listen on 127.0.0.1" in done.stderr


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("127.0.0.1:8181", ("127.0.0.1", 8181)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9000", ("::1", 9000)),
        (":8181", ("", 8181)),
    ],
)
def test_parse_addr(addr: str, expected: tuple[str, int]) -> None:
    assert parse_addr(addr) == expected


@pytest.mark.parametrize("addr", ["8181", "host:", "host:99999", "[::1]8181", "h:x"])
def test_parse_addr_rejects(addr: str) -> None:
    with pytest.raises(ValueError):
        parse_addr(addr)


def spawn_owner(code: str) -> tuple[subprocess.Popen[str], int]:
    """A Python process that starts a SidecarProcess and prints its pid."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from aam_policy.sidecar import SidecarProcess
        sidecar = SidecarProcess({str(TINY_BUNDLE)!r}).start()
        print(sidecar.pid, flush=True)
        {code}
        """
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    assert owner.stdout is not None
    return owner, int(owner.stdout.readline())


def test_no_sidecar_left_behind_when_the_owner_exits_without_stop() -> None:
    owner, pid = spawn_owner("sys.exit(0)")  # atexit / finalizer must stop it
    assert owner.wait(20) == 0
    wait_for(lambda: not alive(pid), timeout=10)


def test_no_sidecar_left_behind_when_the_owner_is_killed() -> None:
    owner, pid = spawn_owner("time.sleep(60)")
    assert alive(pid)
    owner.kill()  # no atexit, no finalizer: the sidecar notices its parent is gone
    owner.wait(10)
    wait_for(lambda: not alive(pid), timeout=10)
