"""The hash chain: integrity, append-only triggers, and every kind of tampering found by verify.

Tampering goes through a raw sqlite3 connection with the triggers dropped, as someone with
write access to the file would do it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from audit_helpers import ALICE, T0, fill, row, tamper

from aam_policy.audit import GENESIS, AuditStore, ChainHead, canonical_json
from aam_policy.audit._chain import event_hash


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
def store(db: Path) -> AuditStore:
    s = AuditStore(db)
    yield s
    s.close()


def rehash(conn: sqlite3.Connection, seq: int) -> str:
    """Recompute and store the hash of event `seq` from its (edited) columns."""
    r = row(conn, seq)
    digest = event_hash(*r[:8])
    conn.execute("UPDATE events SET hash = ? WHERE seq = ?", (digest, seq))
    return digest


# --- integrity -------------------------------------------------------------------------------


def test_empty_store_verifies(store: AuditStore) -> None:
    result = store.verify()
    assert result.ok and result.checked == 0 and result.first_bad_seq is None
    assert store.head() == ChainHead(seq=0, hash=GENESIS)
    assert str(result) == "audit chain OK: no events"


def test_events_chain_from_genesis(store: AuditStore) -> None:
    first = store.append("session.opened", "s1", {"human": ALICE}, actor=ALICE, ts_ns=T0)
    second = store.append("decision", "s1", {"outcome": "allow"}, actor=ALICE, ts_ns=T0 + 1)
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS
    assert second.prev_hash == first.hash
    # The documented hash: sha256 over canonical JSON of the 8 fields.
    import hashlib

    body = canonical_json(
        [2, second.event_id, T0 + 1, "decision", "s1", ALICE, {"outcome": "allow"}, first.hash]
    )
    assert second.hash == hashlib.sha256(body.encode()).hexdigest()
    assert store.head() == ChainHead(seq=2, hash=second.hash)
    result = store.verify()
    assert result.ok and result.checked == 2
    assert result.head == ChainHead(seq=2, hash=second.hash)


def test_chain_survives_reopen(db: Path) -> None:
    with AuditStore(db) as s:
        fill(s, 5)
    with AuditStore(db) as s:
        fill(s, 5, session_id="other")
        assert len(s) == 10
        assert [e.seq for e in s.events()] == list(range(1, 11))
        assert s.verify().ok


def test_unknown_event_type_and_bad_arguments_are_refused(store: AuditStore) -> None:
    with pytest.raises(ValueError, match=r"unknown audit event type 'session\.hijacked'"):
        store.append("session.hijacked", "s1", {})
    with pytest.raises(TypeError):
        store.append("decision", "s1", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.append("decision", 42, {})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        store.append("decision", "s1", {}, ts_ns=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.append("decision", "s1", {"x": float("nan")})
    assert len(store) == 0


def test_events_filters(store: AuditStore) -> None:
    fill(store, 3, "a")
    fill(store, 2, "b")
    assert [e.seq for e in store.events(session_id="b")] == [4, 5]
    assert [e.seq for e in store.events(after_seq=3)] == [4, 5]
    assert [e.seq for e in store.events(session_id="a", after_seq=1)] == [2, 3]
    assert [e.seq for e in store.events(limit=2)] == [1, 2]
    assert store.get(4).session_id == "b"
    assert store.get(99) is None


def test_decision_with_id_is_stored_once(store: AuditStore) -> None:
    first = store.append("decision", "s1", {"decision_id": "d-1", "outcome": "allow"})
    again = store.append("decision", "s1", {"decision_id": "d-1", "outcome": "allow"})
    assert again == first
    assert first.event_id == "decision:d-1"
    assert len(store) == 1


def test_append_many_is_one_transaction(store: AuditStore) -> None:
    events = store.append_many([("decision", "s", {"i": i}, None) for i in range(3)])
    assert [e.seq for e in events] == [1, 2, 3]
    with pytest.raises(ValueError):
        store.append_many([("decision", "s", {"i": 4}, None), ("bogus", "s", {}, None)])
    assert len(store) == 3 and store.verify().ok


# --- triggers (defense in depth) --------------------------------------------------------------


def test_triggers_refuse_update_delete_and_out_of_chain_insert(store: AuditStore, db: Path) -> None:
    fill(store, 3)
    conn = sqlite3.connect(db, isolation_level=None)
    with pytest.raises(sqlite3.DatabaseError, match="append-only: UPDATE refused"):
        conn.execute("UPDATE events SET payload_json = '{}' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only: DELETE refused"):
        conn.execute("DELETE FROM events WHERE seq = 3")
    r = row(conn, 3)
    with pytest.raises(sqlite3.DatabaseError, match="must extend the chain"):
        conn.execute(
            "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)",
            (2_000, "evt_forged", *r[2:7], GENESIS, "f" * 64),
        )
    with pytest.raises(sqlite3.DatabaseError, match="only moves forward"):
        conn.execute("UPDATE chain_head SET seq = 1, hash = ? WHERE id = 0", (row(conn, 1)[8],))
    with pytest.raises(sqlite3.DatabaseError, match="cannot be deleted"):
        conn.execute("DELETE FROM chain_head")
    conn.close()
    assert len(store) == 3 and store.verify().ok


def test_reopening_restores_dropped_triggers(db: Path) -> None:
    AuditStore(db).close()
    tamper(db).close()
    AuditStore(db).close()
    conn = sqlite3.connect(db)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    conn.close()
    assert {"events_no_update", "events_no_delete", "events_extend_head"} <= names


# --- tampering --------------------------------------------------------------------------------


def test_edited_payload_is_named(store: AuditStore, db: Path) -> None:
    fill(store, 20)
    conn = tamper(db)
    conn.execute(
        "UPDATE events SET payload_json = replace(payload_json, 'allow', 'deny') WHERE seq = 17"
    )
    result = store.verify()
    assert not result.ok
    assert result.first_bad_seq == 17
    assert result.checked == 16
    assert result.problem == "event 17 (decision): hash mismatch — content was edited"
    assert "BROKEN" in str(result) and "event 17" in str(result)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor", "mallory@example.com"),
        ("ts_ns", 0),
        ("type", "session.teardown"),
        ("session_id", "other"),
        ("event_id", "evt_x"),
        ("hash", "0" * 64),
    ],
)
def test_edited_column_is_detected(store: AuditStore, db: Path, column: str, value: object) -> None:
    fill(store, 5)
    tamper(db).execute(f"UPDATE events SET {column} = ? WHERE seq = 3", (value,))
    result = store.verify()
    assert not result.ok and result.first_bad_seq == 3
    assert "content was edited" in result.problem


def test_whitespace_only_edit_is_detected(store: AuditStore, db: Path) -> None:
    # Same JSON meaning, different bytes: still not what was recorded.
    fill(store, 3)
    tamper(db).execute("UPDATE events SET payload_json = ' ' || payload_json WHERE seq = 2")
    assert store.verify().first_bad_seq == 2


def test_edit_and_rehash_is_caught_at_the_next_link(store: AuditStore, db: Path) -> None:
    fill(store, 10)
    conn = tamper(db)
    conn.execute("UPDATE events SET actor = 'mallory@example.com' WHERE seq = 6")
    rehash(conn, 6)
    result = store.verify()
    assert not result.ok and result.first_bad_seq == 6
    assert "event 6 (decision): rewritten" in result.problem


def test_rewriting_the_last_event_is_caught_by_the_head(store: AuditStore, db: Path) -> None:
    fill(store, 4)
    conn = tamper(db)
    conn.execute("UPDATE events SET actor = 'mallory@example.com' WHERE seq = 4")
    rehash(conn, 4)
    result = store.verify()
    assert not result.ok and result.first_bad_seq == 4
    assert "does not match the recorded chain head" in result.problem


def test_deleted_event_is_named(store: AuditStore, db: Path) -> None:
    fill(store, 20)
    tamper(db).execute("DELETE FROM events WHERE seq = 17")
    result = store.verify()
    assert not result.ok and result.first_bad_seq == 17 and result.checked == 16
    assert result.problem == (
        "event 17 is missing: the chain jumps from event 16 to event 18 — deleted"
    )


def test_deleted_range_is_named(store: AuditStore, db: Path) -> None:
    fill(store, 10)
    tamper(db).execute("DELETE FROM events WHERE seq BETWEEN 3 AND 5")
    result = store.verify()
    assert result.first_bad_seq == 3
    assert "events 3..5 are missing" in result.problem


def test_deleted_and_renumbered_is_detected(store: AuditStore, db: Path) -> None:
    fill(store, 10)
    conn = tamper(db)
    conn.execute("DELETE FROM events WHERE seq = 4")
    conn.execute("UPDATE events SET seq = seq - 1 WHERE seq > 4")
    conn.execute("UPDATE chain_head SET seq = 9, hash = (SELECT hash FROM events WHERE seq = 9)")
    result = store.verify()
    assert not result.ok and result.first_bad_seq == 4
    assert "deleted and the rest renumbered" in result.problem


def test_deleting_the_first_event_is_detected(store: AuditStore, db: Path) -> None:
    fill(store, 3)
    tamper(db).execute("DELETE FROM events WHERE seq = 1")
    result = store.verify()
    assert result.first_bad_seq == 1 and "event 1 is missing" in result.problem


def test_inserted_event_in_the_middle_is_named(store: AuditStore, db: Path) -> None:
    fill(store, 10)
    conn = tamper(db)
    # Make room at seq 6 and slip in a well-formed event that chains from event 5.
    conn.execute("UPDATE events SET seq = seq + 1000 WHERE seq >= 6")
    conn.execute("UPDATE events SET seq = seq - 999 WHERE seq >= 1000")
    r5 = row(conn, 5)
    payload = canonical_json({"outcome": "allow", "tool": "payments.refund"})
    forged = (6, "evt_forged", r5[2] + 1, "decision", "sess_fill", ALICE, payload, r5[8])
    conn.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)", (*forged, event_hash(*forged)))
    conn.execute("UPDATE chain_head SET seq = 11, hash = (SELECT hash FROM events WHERE seq = 11)")
    result = store.verify()
    assert not result.ok and result.first_bad_seq == 6
    assert result.problem == "event 6 was inserted: event 7 chains directly from event 5"


def test_inserted_event_with_a_made_up_hash_is_named(store: AuditStore, db: Path) -> None:
    fill(store, 6)
    conn = tamper(db)
    conn.execute("UPDATE events SET seq = seq + 1000 WHERE seq >= 4")
    conn.execute("UPDATE events SET seq = seq - 999 WHERE seq >= 1000")
    r3 = row(conn, 3)
    conn.execute(
        "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)",
        (4, "evt_forged", r3[2], "decision", "sess_fill", ALICE, "{}", r3[8], "e" * 64),
    )
    result = store.verify()
    assert result.first_bad_seq == 4
    assert result.problem == "event 4 (decision): inserted — event 5 chains directly from event 3"


def test_event_appended_behind_the_stores_back_is_named(store: AuditStore, db: Path) -> None:
    fill(store, 5)
    conn = tamper(db)
    r5 = row(conn, 5)
    forged = (6, "evt_forged", r5[2] + 1, "decision", "sess_fill", ALICE, "{}", r5[8])
    conn.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)", (*forged, event_hash(*forged)))
    result = store.verify()
    assert not result.ok and result.first_bad_seq == 6
    assert "not covered by the recorded chain head" in result.problem
    # ... and with a made-up hash it reads as an insert after the head.
    conn.execute("UPDATE events SET hash = ? WHERE seq = 6", ("d" * 64,))
    result = store.verify()
    assert result.first_bad_seq == 6 and "inserted after the recorded chain head" in result.problem


@pytest.mark.parametrize(("a", "b"), [(17, 18), (5, 12)])
def test_reordered_events_are_named(store: AuditStore, db: Path, a: int, b: int) -> None:
    fill(store, 20)
    conn = tamper(db)
    conn.execute("UPDATE events SET seq = -1 WHERE seq = ?", (a,))
    conn.execute("UPDATE events SET seq = ? WHERE seq = ?", (a, b))
    conn.execute("UPDATE events SET seq = ? WHERE seq = -1", (b,))
    result = store.verify()
    assert not result.ok and result.first_bad_seq == a
    assert result.problem == (
        f"event {a} (decision): out of order — it chains from event {b - 1 if b - 1 != a else b}, "
        "which now comes after it; events were reordered"
    )


def test_truncated_tail_is_caught_by_the_head(store: AuditStore, db: Path) -> None:
    # The chain alone cannot see a cut tail (what remains is a valid chain); the head
    # recorded in the same transaction as each append can.
    fill(store, 10)
    tamper(db).execute("DELETE FROM events WHERE seq > 7")
    result = store.verify()
    assert not result.ok and result.first_bad_seq == 8 and result.checked == 7
    assert "events 8..10 are missing from the end" in result.problem
    assert "truncated" in result.problem


def test_truncation_with_a_rewritten_head_needs_an_anchor(store: AuditStore, db: Path) -> None:
    fill(store, 10)
    anchor = store.verify().head
    conn = tamper(db)
    conn.execute("DELETE FROM events WHERE seq > 7")
    conn.execute("UPDATE chain_head SET seq = 7, hash = (SELECT hash FROM events WHERE seq = 7)")
    assert store.verify().ok  # a consistent rewrite: undetectable from inside the file
    result = store.verify(anchor=anchor)
    assert not result.ok and result.first_bad_seq == 8
    assert "anchor records event 10" in result.problem


def test_rewritten_history_is_caught_by_an_anchor(store: AuditStore, db: Path) -> None:
    fill(store, 5)
    anchor = store.head()
    conn = tamper(db)
    # Rewrite event 3 and re-hash everything after it, head included.
    conn.execute("UPDATE events SET actor = 'mallory@example.com' WHERE seq = 3")
    prev = rehash(conn, 3)
    for seq in (4, 5):
        conn.execute("UPDATE events SET prev_hash = ? WHERE seq = ?", (prev, seq))
        prev = rehash(conn, seq)
    conn.execute("UPDATE chain_head SET hash = ?", (prev,))
    assert store.verify().ok
    result = store.verify(anchor=anchor)
    assert result.first_bad_seq == 5 and "differs from the anchored hash" in result.problem


def test_deleted_head_row_is_detected(store: AuditStore, db: Path) -> None:
    fill(store, 2)
    tamper(db).execute("DELETE FROM chain_head")
    result = store.verify()
    assert not result.ok and "chain head is missing" in result.problem
    with pytest.raises(RuntimeError, match="chain head is missing"):
        store.append("decision", "s", {})


def test_unreadable_payload_is_reported_not_crashed(store: AuditStore, db: Path) -> None:
    fill(store, 3)
    tamper(db).execute("UPDATE events SET payload_json = '{not json' WHERE seq = 2")
    assert store.verify().first_bad_seq == 2
    event = store.get(2)
    assert event is not None and "_unreadable_payload" in event.payload
