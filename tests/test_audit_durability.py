"""Store durability modes: the default, the operator's choice, what each commits with."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from aam_policy._state import StateDir
from aam_policy.audit import DURABILITY_ENV, AuditStore
from aam_policy.audit._store import PAGE_SIZE
from aam_policy.escalation import ApprovalQueue
from aam_policy.sessions import SessionBroker, SigningKeys

_PRAGMA = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def _sync(store: AuditStore) -> str:
    store.append("decision", "sess_1", {"n": 1})
    return _PRAGMA[store._conns.get().execute("PRAGMA synchronous").fetchone()[0]]


def test_the_audit_store_fsyncs_every_commit_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DURABILITY_ENV, raising=False)
    with AuditStore(tmp_path / "a.db") as store:
        assert store.synchronous == "FULL" and _sync(store) == "FULL"


@pytest.mark.parametrize(("durability", "pragma"), [("full", "FULL"), ("normal", "NORMAL")])
def test_durability_argument_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durability: str, pragma: str
) -> None:
    with AuditStore(tmp_path / "arg.db", durability=durability) as store:  # type: ignore[arg-type]
        assert _sync(store) == pragma
    monkeypatch.setenv(DURABILITY_ENV, durability.upper())
    with AuditStore(tmp_path / "env.db") as store:
        assert _sync(store) == pragma
    # An explicit argument (or the raw pragma) wins over the environment.
    with AuditStore(tmp_path / "x.db", durability="full") as store:
        assert store.synchronous == "FULL"
    with AuditStore(tmp_path / "y.db", synchronous="extra") as store:
        assert store.synchronous == "EXTRA"


def test_bad_durability_values_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="durability"):
        AuditStore(tmp_path / "a.db", durability="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="synchronous"):
        AuditStore(tmp_path / "a.db", synchronous="OFF")
    monkeypatch.setenv(DURABILITY_ENV, "off")
    with pytest.raises(ValueError, match=DURABILITY_ENV):
        AuditStore(tmp_path / "a.db")
    for bad in (
        lambda: ApprovalQueue(tmp_path / "s.db", durability="off"),  # type: ignore[arg-type]
        lambda: SessionBroker(
            tmp_path / "s.db",
            SigningKeys.generate(warn=False),
            {},
            durability="off",  # type: ignore[arg-type]
        ),
    ):
        with pytest.raises(ValueError, match="durability"):
            bad()


def test_session_lifecycle_commits_are_always_fsynced(tmp_path: Path) -> None:
    # "normal" relaxes only the per-decision bookkeeping; a revoke must survive a power cut.
    registry = {"i": {"session": {"max_ttl_seconds": 60, "max_actions": 5}}}
    broker = SessionBroker(tmp_path / "s.db", SigningKeys.generate(warn=False), registry)
    assert broker.durability == "normal"
    store = broker._store
    opened = broker.open({"id": "alice"}, {"id": "bot"}, "i")
    assert _PRAGMA[store._conns.get().execute("PRAGMA synchronous").fetchone()[0]] == "FULL"
    broker.record_decision(opened.session.id, "t", "public", True)
    assert _PRAGMA[store._conns.get().execute("PRAGMA synchronous").fetchone()[0]] == "NORMAL"
    broker.revoke(opened.session.id)
    assert _PRAGMA[store._conns.get().execute("PRAGMA synchronous").fetchone()[0]] == "FULL"
    full = SessionBroker(
        tmp_path / "f.db", SigningKeys.generate(warn=False), registry, durability="full"
    )
    opened = full.open({"id": "alice"}, {"id": "bot"}, "i")
    full.record_decision(opened.session.id, "t", "public", True)
    assert _PRAGMA[full._store._conns.get().execute("PRAGMA synchronous").fetchone()[0]] == "FULL"
    broker.close()
    full.close()


def test_the_state_dir_passes_the_operators_choice_on(tmp_path: Path) -> None:
    env = {DURABILITY_ENV: "normal", "AAM_STATE_DURABILITY": "full"}
    state = StateDir(tmp_path / "state", environ=env)
    audit = state.open_audit()
    assert audit.synchronous == "NORMAL"
    assert state.open_queue(audit).durability == "full"
    assert state.open_broker(audit=audit).durability == "full"
    default = StateDir(tmp_path / "default", environ={})
    assert default.open_audit().synchronous == "FULL"
    assert default.open_broker().durability == "normal"


def _page_size(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])


def test_a_new_audit_file_gets_small_pages_and_an_existing_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    with AuditStore(tmp_path / "new.db") as store:
        store.append("decision", "sess_1", {"n": 1})
    assert _page_size(tmp_path / "new.db") == PAGE_SIZE == 1024
    # a file made before (SQLite's default 4 KiB pages) is used as it is
    with contextlib.closing(sqlite3.connect(tmp_path / "old.db")) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
        conn.commit()
    with AuditStore(tmp_path / "old.db") as store:
        for n in range(3):
            store.append("decision", "sess_1", {"n": n})
        assert store.verify().ok and len(store) == 3
    assert _page_size(tmp_path / "old.db") == 4096
