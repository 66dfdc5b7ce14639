"""`aam sidecar` and `aam push` as the real command: flags reach the sidecar's own parser."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_aam_sidecar_serves_decisions_and_guards_its_bundle_roots(tmp_path: Path) -> None:
    aam = [sys.executable, "-m", "aam_policy.cli"]
    bundle = tmp_path / "bundle"
    subprocess.run([*aam, "compile", str(REPO / "fixtures" / "intents"), "-o", str(bundle)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    port, ready = _free_port(), tmp_path / "ready.json"
    args = ["--bundle", str(bundle), "--addr", f"127.0.0.1:{port}", "--ready-file", str(ready)]
    server = subprocess.Popen([*aam, "sidecar", *args], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), server.stderr.read() if server.poll() is not None else "timeout"
        url = json.loads(ready.read_text())["url"]
        request = json.loads((REPO / "fixtures/requests/escalate-large-refund.json").read_text())
        answer = httpx.post(f"{url}/v1/data/aam/decision", json={"input": request}, timeout=10)
        assert answer.status_code == 200
        assert answer.json()["result"]["outcome"] == "escalate"

        pushed = subprocess.run([*aam, "push", "--bundle", str(bundle), "--url", url],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        # as in OPA, what a bundle owns cannot be overwritten through the API: a clear refusal
        assert pushed.returncode == 2, pushed.stderr
        assert "owned by bundle" in pushed.stderr
        assert "Traceback" not in pushed.stderr
    finally:
        server.terminate()
        assert server.wait(timeout=15) == 0


def test_aam_sidecar_help_lists_its_own_flags() -> None:
    shown = subprocess.run([sys.executable, "-m", "aam_policy.cli", "sidecar", "--help"],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert shown.returncode == 0
    assert "--bundle" in shown.stdout and "--decision-log" in shown.stdout
