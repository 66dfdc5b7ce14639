"""`aam trace` and `aam audit verify` run as the real command against a real SQLite store."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from cli_helpers import run_aam

from aam_policy.audit import AuditStore

PROMPT = "please refund charge ch_123 for the customer, " + "details " * 40


def _store_with_session(path: Path) -> None:
    with AuditStore(path) as store:
        store.append(
            "session.opened",
            "sess_cli",
            {
                "human": "alice@example.com",
                "agent": "spiffe://example.org/agents/bot",
                "intent": "resolve-support-ticket",
                "purpose": "refund",
                "prompt": PROMPT,
                "expires_at_ns": 2,
                "ttl_seconds": 600,
            },
            actor="alice@example.com",
        )
        store.append("session.teardown", "sess_cli", {"reason": "completed"}, actor="alice")


def test_verify_passes_then_names_the_edited_event(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    _store_with_session(db)
    ok = run_aam("audit", "verify", "--db", str(db))
    assert ok.returncode == 0, ok.stderr
    with sqlite3.connect(db) as conn:
        triggers = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
        ]
        for name in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute("UPDATE events SET payload_json = replace(payload_json, 'refund', 'steal')")
    bad = run_aam("audit", "verify", "--db", str(db))
    assert bad.returncode == 1
    assert "event 1" in bad.stdout


def test_trace_prints_the_session_and_json(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    _store_with_session(db)
    text = run_aam("trace", "sess_cli", "--db", str(db))
    assert text.returncode == 0, text.stderr
    assert "alice@example.com" in text.stdout
    assert PROMPT not in text.stdout  # only a hash and a short excerpt, never the whole prompt
    assert hashlib.sha256(PROMPT.encode()).hexdigest()[:6] in text.stdout
    as_json = run_aam("trace", "sess_cli", "--db", str(db), "--json")
    assert json.loads(as_json.stdout)


def test_unknown_session_and_missing_db_are_clear_errors(tmp_path: Path) -> None:
    db = tmp_path / "audit.db"
    _store_with_session(db)
    assert run_aam("trace", "sess_nope", "--db", str(db)).returncode == 1
    missing = run_aam("audit", "verify", "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 2
    assert "no such audit database" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "audit.db"
    bogus.write_text("not sqlite\n" * 100)
    result = run_aam("audit", "verify", "--db", str(bogus))
    assert result.returncode == 1
    assert "aam: DatabaseError: file is not a database" in result.stderr
    assert "Traceback" not in result.stderr


def test_verify_and_trace_default_to_the_state_directory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _store_with_session(state / "audit.db")
    verified = run_aam("audit", "verify", "--state", str(state))
    assert verified.returncode == 0, verified.stderr
    assert "audit chain OK" in verified.stdout
    traced = run_aam("trace", "sess_cli", "--state", str(state))
    assert traced.returncode == 0, traced.stderr
    assert "sess_cli" in traced.stdout
