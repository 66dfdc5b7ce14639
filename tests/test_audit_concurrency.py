"""Concurrent writers (threads and processes) keep one linear chain; a killed writer leaves no
partial event."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from aam_policy.audit import AuditStore

WRITER = textwrap.dedent(
    """
    import sys
    from aam_policy.audit import AuditStore

    path, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = AuditStore(path)
    print("ready", flush=True)
    sys.stdin.readline()  # start together with the others
    i = 0
    while count < 0 or i < count:
        store.append("decision", "sess_" + name, {"writer": name, "i": i, "outcome": "allow"},
                     actor=name)
        i += 1
    store.close()
    """
)


def _spawn(db: Path, name: str, count: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db), name, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _assert_linear(store: AuditStore, expected: dict[str, int]) -> None:
    result = store.verify()
    assert result.ok, result.problem
    events = store.events()
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    per_writer: dict[str, list[int]] = defaultdict(list)
    for event in events:
        per_writer[event.payload["writer"]].append(event.payload["i"])
    assert {w: len(v) for w, v in per_writer.items()} == expected
    for indexes in per_writer.values():  # each writer's events in its own order, none lost
        assert indexes == list(range(len(indexes)))


def test_eight_threads_and_two_processes_keep_one_linear_chain(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    store = AuditStore(db)
    procs = [_spawn(db, f"proc{n}", 150) for n in range(2)]
    barrier = threading.Barrier(8 + 1)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            barrier.wait()
            for i in range(100):
                store.append("decision", "sess_" + name, {"writer": name, "i": i}, actor=name)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"thread{n}",)) for n in range(8)]
    for t in threads:
        t.start()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    barrier.wait()
    for t in threads:
        t.join(60)
    for proc in procs:
        assert proc.wait(60) == 0
    assert not errors, errors
    expected = {f"thread{n}": 100 for n in range(8)} | {f"proc{n}": 150 for n in range(2)}
    _assert_linear(store, expected)
    assert store.head().seq == 8 * 100 + 2 * 150
    store.close()


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkilled_writer_leaves_no_partial_event(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    store = AuditStore(db)
    proc = _spawn(db, "victim", -1)  # appends until killed
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while len(store) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    # Whatever instant the kill hit, the file holds whole events and a head that covers them.
    result = store.verify()
    assert result.ok, result.problem
    assert result.checked == len(store) == store.head().seq >= 50
    # ... and the chain carries on from there.
    store.append("session.teardown", "sess_victim", {"reason": "writer died"})
    assert store.verify().ok
    store.close()


def test_connections_are_per_thread_and_closed(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "audit.db")
    seen = []

    def use() -> None:
        seen.append(store._conns.get())
        store.append("decision", "s", {"outcome": "allow"})

    threads = [threading.Thread(target=use) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in seen}) == 3
    store.close()
    # Usable again after close: a fresh connection is opened on demand.
    assert len(store) == 3
    store.close()
