"""Concurrent writers (threads and processes) keep one linear chain; a killed writer leaves no
partial event."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from aam_policy.audit import AuditStore
from aam_policy.audit._store import _Ticket

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


def _appends_queued_behind_a_blocked_commit(
    store: AuditStore, db: Path, monkeypatch: pytest.MonkeyPatch, calls: list[dict[str, Any]]
) -> tuple[list[Any], int]:
    """Run `calls` (append kwargs) in threads while a first append waits for SQLite's write
    lock, held by another connection: they all queue behind it. Returns each call's result
    (event or exception) and how many transactions the store opened in all."""
    transactions = 0
    real = store._conns.transaction

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal transactions
        transactions += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(store._conns, "transaction", counted)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    results: list[Any] = [None] * (len(calls) + 1)

    def run(index: int, kwargs: dict[str, Any]) -> None:
        try:
            results[index] = store.append(**kwargs)
        except Exception as exc:  # reported through `results`
            results[index] = exc

    first_call = {"type": "decision", "session_id": "sess_0", "payload": {"i": 0}}
    first = threading.Thread(target=run, args=(0, first_call))
    first.start()
    deadline = time.monotonic() + 10
    while transactions < 1 and time.monotonic() < deadline:  # the first append is in SQLite
        time.sleep(0.005)
    others = [threading.Thread(target=run, args=(i + 1, c)) for i, c in enumerate(calls)]
    for t in others:
        t.start()
    while len(store._queue) < len(calls) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(store._queue) == len(calls), "the appends did not queue"
    blocker.execute("ROLLBACK")
    blocker.close()
    for t in [first, *others]:
        t.join(30)
    return results, transactions


def test_appends_that_wait_for_a_commit_share_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "audit.db"
    store = AuditStore(db)
    calls = [
        {"type": "decision", "session_id": f"sess_{i}", "payload": {"i": i}} for i in range(1, 5)
    ]
    results, transactions = _appends_queued_behind_a_blocked_commit(store, db, monkeypatch, calls)
    assert transactions == 2  # the blocked append's, then one for the four that queued
    assert [r.payload["i"] for r in results] == [0, 1, 2, 3, 4]  # each caller gets its own
    assert [r.session_id for r in results] == [f"sess_{i}" for i in range(5)]
    assert store.verify().ok
    assert [(e.seq, e.payload["i"]) for e in store.events()] == [
        (r.seq, r.payload["i"]) for r in sorted(results, key=lambda r: r.seq)
    ]
    assert len(store) == 5
    store.close()


def test_a_failing_append_does_not_fail_those_it_shared_a_commit_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "audit.db"
    store = AuditStore(db)
    calls = [
        {"type": "decision", "session_id": "sess_1", "payload": {"i": 1}},
        # passes every check before the transaction; SQLite refuses the integer
        {"type": "decision", "session_id": "sess_2", "payload": {"i": 2}, "ts_ns": 2**63},
        {"type": "decision", "session_id": "sess_3", "payload": {"i": 3}},
    ]
    results, transactions = _appends_queued_behind_a_blocked_commit(store, db, monkeypatch, calls)
    assert isinstance(results[2], OverflowError)
    assert [r.payload["i"] for r in (results[0], results[1], results[3])] == [0, 1, 3]
    # the shared transaction failed as a whole, then each queued append ran on its own
    assert transactions == 1 + 1 + 3
    assert sorted(e.payload["i"] for e in store.events()) == [0, 1, 3]
    assert store.verify().ok
    store.close()


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_an_append_interrupted_while_it_waits_is_withdrawn_and_stalls_nobody(
    tmp_path: Path,
) -> None:
    db = tmp_path / "audit.db"
    store = AuditStore(db)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the first append leads and waits for SQLite
    first = threading.Thread(target=store.append, args=("decision", "sess_first", {"i": "first"}))
    first.start()
    deadline = time.monotonic() + 10
    while not store._leading and time.monotonic() < deadline:
        time.sleep(0.005)

    def interrupt_the_waiting_main_thread() -> None:
        while len(store._queue) < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)  # the main thread is asleep in the queue by now
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_the_waiting_main_thread)
    interrupter.start()
    with pytest.raises(KeyboardInterrupt):
        store.append("decision", "sess_interrupted", {"i": "interrupted"})
    interrupter.join(10)
    assert store._queue == []  # withdrawn: no leader will commit it
    blocker.execute("ROLLBACK")
    blocker.close()
    first.join(10)
    assert not first.is_alive()
    after = threading.Thread(target=store.append, args=("decision", "sess_after", {"i": "after"}))
    after.start()
    after.join(10)
    assert not after.is_alive(), "an append after the interrupted one never returned"
    assert [e.session_id for e in store.events()] == ["sess_first", "sess_after"]
    assert store.verify().ok
    store.close()


def test_a_withdrawn_caller_that_was_handed_the_lead_passes_it_on(tmp_path: Path) -> None:
    store = AuditStore(tmp_path / "audit.db")
    handed, behind = _Ticket([]), _Ticket([])
    # as a leader leaves it: `handed` is first in line and its caller is about to be woken
    store._queue, store._leading, handed.leads = [handed, behind], True, True
    store._withdraw(handed)
    assert store._queue == [behind]
    assert behind.leads and store._leading
    assert behind.turn.acquire(blocking=False), "the next caller in line was not woken"
    store._withdraw(behind)  # nobody else waits: nobody leads
    assert store._queue == [] and not store._leading
    store.close()
