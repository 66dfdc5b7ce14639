"""Fault injection: a writer killed mid-stream, a full disk, SIGTERM under load."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from aam_policy.audit import AuditStore
from aam_policy.compiler import CompileError, compile_bundle
from aam_policy.intents import load_intents
from aam_policy.sidecar import SidecarProcess

REPO = Path(__file__).resolve().parent.parent
INTENTS = REPO / "fixtures" / "intents"

_WRITER = """
import sys
from aam_policy.audit import AuditStore
store = AuditStore(sys.argv[1])
i = 0
while True:
    i += 1
    store.append("decision", "sess_%d" % (i % 7), {"n": i, "pad": "x" * (i % 300)}, actor="w")
    print(i, flush=True)
"""


@pytest.mark.parametrize("round_", range(4))
def test_a_writer_killed_with_sigkill_leaves_a_verifiable_chain(
    tmp_path: Path, round_: int
) -> None:
    db = tmp_path / "audit.db"
    target = random.Random(round_).randint(150, 700)
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    acknowledged = 0
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 60
        while acknowledged < target and time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line, "the writer died on its own"
            acknowledged = int(line)
        time.sleep(random.Random(round_).random() * 0.01)  # a random moment in the next append
    finally:
        child.kill()
        child.wait()
    assert acknowledged >= target
    with AuditStore(db) as store:
        result = store.verify()
        assert result.ok, result
        head = store.head()
        # every acknowledged event is there; at most the few appended after the last read
        assert head.seq >= acknowledged
        assert result.checked == head.seq
        last = store.get(head.seq)
        assert last is not None
        assert last.payload["n"] == head.seq  # complete: its payload is whole, in order
        assert last.hash == head.hash
        # the store takes new events after the crash
        store.append("decision", "sess_after", {"n": head.seq + 1}, actor="w")
        assert store.verify().ok
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        raw.close()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs (needs root and mount); skipped where it cannot be mounted."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a size-limited filesystem")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(disk: Path) -> Path:
    """Fill the filesystem up with one file; delete it to free the space again."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)
    return filler


def test_audit_append_on_a_full_disk_raises_and_corrupts_nothing(tiny_disk: Path) -> None:
    store = AuditStore(tiny_disk / "audit.db")
    for n in range(20):
        store.append("decision", "sess_1", {"n": n}, actor="a")
    filler = _fill(tiny_disk)
    with pytest.raises(sqlite3.Error):  # sqlite3.OperationalError: database or disk is full
        for n in range(20, 5000):
            store.append("decision", "sess_1", {"n": n, "pad": "y" * 2000}, actor="a")
    filler.unlink()
    result = store.verify()
    assert result.ok, result
    count = store.head().seq
    assert count >= 20
    store.append("decision", "sess_1", {"n": "after"}, actor="a")
    assert store.verify().ok
    assert store.head().seq == count + 1
    store.close()


def test_compile_on_a_full_disk_fails_cleanly_and_keeps_the_previous_bundle(
    tiny_disk: Path, tmp_path: Path
) -> None:
    models = [item.intent for item in load_intents([INTENTS])]
    out, tarball = tiny_disk / "bundle", tiny_disk / "bundle.tar.gz"
    first = compile_bundle(models[:1], out, tarball=tarball)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    tar_before = tarball.read_bytes()
    filler = _fill(tiny_disk)
    with pytest.raises(CompileError, match="cannot write the bundle"):
        compile_bundle(models, out, tarball=tarball)
    # the real CLI: a clear message, no traceback, non-zero exit
    result = subprocess.run(
        [sys.executable, "-m", "aam_policy.cli", "compile", str(INTENTS), "-o", str(out),
         "--tarball", str(tarball)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "cannot write the bundle" in result.stderr
    filler.unlink()
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert tarball.read_bytes() == tar_before
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["bundle", "bundle.tar.gz"]
    assert json.loads(before[Path(".manifest")])["revision"] == first.revision


def test_sigterm_lets_in_flight_decisions_finish_then_exits_0(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    compile_bundle([item.intent for item in load_intents([INTENTS])], bundle)
    good = (REPO / "fixtures" / "requests" / "allow-small-refund.json").read_text()
    body = json.dumps({"input": json.loads(good)}).encode()
    half = len(body) // 2
    sent_term = threading.Event()
    started = threading.Barrier(17)
    results: list[object] = []

    with SidecarProcess(bundle, args=["--log-level", "WARNING"]) as sidecar:
        url = f"{sidecar.url}/v1/data/aam/decision"

        def client() -> None:
            def chunks() -> Iterator[bytes]:
                yield body[:half]  # the request is in flight: headers and half the body
                started.wait(10)
                sent_term.wait(10)
                time.sleep(0.2)
                yield body[half:]

            try:
                with httpx.Client(timeout=20) as http:
                    response = http.post(
                        url, content=chunks(), headers={"content-type": "application/json"}
                    )
                    results.append((response.status_code, response.json()["result"]["outcome"]))
            except Exception as exc:
                results.append(exc)

        threads = [threading.Thread(target=client) for _ in range(16)]
        for thread in threads:
            thread.start()
        started.wait(10)
        time.sleep(0.3)  # every client has sent its first half
        os.kill(sidecar.pid, signal.SIGTERM)
        sent_term.set()
        for thread in threads:
            thread.join(30)
        code = sidecar.wait(30)
    assert results == [(200, "allow")] * 16
    assert code == 0
