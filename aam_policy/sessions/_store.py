"""SQLite persistence of session state (WAL), so a restarted broker loses nothing.

The tables may share one database file with the approval queue and the audit store (each owns
its own tables; none uses `PRAGMA user_version`).

Every operation opens its own short-lived connection: threads never share one, and each write
runs in `BEGIN IMMEDIATE` so read-modify-write updates of a session are atomic across threads
and processes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._models import (
    AgentIdentity,
    HumanPrincipal,
    Session,
    SessionNotFound,
    SessionRevoked,
    sensitivity_rank,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id                    TEXT PRIMARY KEY,
    jti                   TEXT NOT NULL UNIQUE,
    intent                TEXT NOT NULL,
    human_id              TEXT NOT NULL,
    human_json            TEXT NOT NULL,
    agent_id              TEXT NOT NULL,
    agent_json            TEXT NOT NULL,
    purpose               TEXT NOT NULL,
    prompt_sha256         TEXT NOT NULL,
    prompt_excerpt        TEXT NOT NULL,
    issued_at_ns          INTEGER NOT NULL,
    expires_at_ns         INTEGER NOT NULL,
    ttl_requested_seconds INTEGER,
    max_ttl_seconds       INTEGER NOT NULL,
    ttl_seconds           INTEGER NOT NULL,
    ttl_capped            INTEGER NOT NULL,
    max_actions           INTEGER,
    actions_used          INTEGER NOT NULL DEFAULT 0,
    decisions             INTEGER NOT NULL DEFAULT 0,
    tools_used            TEXT NOT NULL DEFAULT '[]',
    max_sensitivity_seen  TEXT NOT NULL DEFAULT 'public',
    ended_at_ns           INTEGER,
    end_kind              TEXT,
    end_reason            TEXT
);
CREATE INDEX IF NOT EXISTS sessions_human ON sessions (human_id);
CREATE INDEX IF NOT EXISTS sessions_agent ON sessions (agent_id);
CREATE INDEX IF NOT EXISTS sessions_live ON sessions (ended_at_ns, expires_at_ns);
"""

_COLUMNS = (
    "id, jti, intent, human_id, human_json, agent_id, agent_json, purpose, prompt_sha256,"
    " prompt_excerpt, issued_at_ns, expires_at_ns, ttl_requested_seconds, max_ttl_seconds,"
    " ttl_seconds, ttl_capped, max_actions, actions_used, decisions, tools_used,"
    " max_sensitivity_seen, ended_at_ns, end_kind, end_reason"
)


def _to_session(row: sqlite3.Row) -> Session:
    return Session(
        id=row["id"],
        intent=row["intent"],
        human=HumanPrincipal.model_validate_json(row["human_json"]),
        agent=AgentIdentity.model_validate_json(row["agent_json"]),
        purpose=row["purpose"],
        prompt_sha256=row["prompt_sha256"],
        prompt_excerpt=row["prompt_excerpt"],
        issued_at_ns=row["issued_at_ns"],
        expires_at_ns=row["expires_at_ns"],
        ttl_requested_seconds=row["ttl_requested_seconds"],
        max_ttl_seconds=row["max_ttl_seconds"],
        ttl_seconds=row["ttl_seconds"],
        ttl_capped=bool(row["ttl_capped"]),
        max_actions=row["max_actions"],
        actions_used=row["actions_used"],
        decisions=row["decisions"],
        tools_used=tuple(json.loads(row["tools_used"])),
        max_sensitivity_seen=row["max_sensitivity_seen"],
        ended_at_ns=row["ended_at_ns"],
        end_kind=row["end_kind"],
        end_reason=row["end_reason"],
    )


class SessionStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            # WAL: readers never block the writer; the mode is persistent in the file.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Not executescript(): it would COMMIT the open transaction first.
                for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                    conn.execute(statement)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock from the start (no upgrade races)."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # --- queries ------------------------------------------------------------------------------

    def insert(self, session: Session, jti: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                f"INSERT INTO sessions ({_COLUMNS}) VALUES ({', '.join('?' * 24)})",
                (
                    session.id,
                    jti,
                    session.intent,
                    session.human.id,
                    session.human.model_dump_json(),
                    session.agent.id,
                    session.agent.model_dump_json(),
                    session.purpose,
                    session.prompt_sha256,
                    session.prompt_excerpt,
                    session.issued_at_ns,
                    session.expires_at_ns,
                    session.ttl_requested_seconds,
                    session.max_ttl_seconds,
                    session.ttl_seconds,
                    int(session.ttl_capped),
                    session.max_actions,
                    session.actions_used,
                    session.decisions,
                    json.dumps(list(session.tools_used)),
                    session.max_sensitivity_seen,
                    session.ended_at_ns,
                    session.end_kind,
                    session.end_reason,
                ),
            )

    def get(self, session_id: str) -> tuple[Session, str] | None:
        """The session and its token id (jti), or None."""
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return None if row is None else (_to_session(row), row["jti"])

    def list(
        self,
        *,
        active_at_ns: int | None = None,
        human: str | None = None,
        agent: str | None = None,
        intent: str | None = None,
    ) -> list[Session]:
        where: list[str] = []
        params: list[Any] = []
        if active_at_ns is not None:
            where.append("ended_at_ns IS NULL AND expires_at_ns > ?")
            params.append(active_at_ns)
        for column, value in (("human_id", human), ("agent_id", agent), ("intent", intent)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = f"SELECT {_COLUMNS} FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY issued_at_ns, rowid", params).fetchall()
        return [_to_session(row) for row in rows]

    def record(self, session_id: str, tool: str, sensitivity: str, counted: bool) -> Session:
        """Apply one decision to the session's state in a single transaction."""
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT tools_used, max_sensitivity_seen, ended_at_ns FROM sessions WHERE id = ?",
                (session_id,),
            ).fetchone()
            if row is None:
                raise SessionNotFound(f"no session {session_id!r}")
            if counted and row["ended_at_ns"] is not None:
                # Checked inside the transaction so a concurrent teardown cannot slip between.
                raise SessionRevoked(f"session {session_id} has ended")
            if counted:
                tools = json.loads(row["tools_used"])
                if tool not in tools:
                    tools.append(tool)
                seen = row["max_sensitivity_seen"]
                if sensitivity_rank(sensitivity) > sensitivity_rank(seen):
                    seen = sensitivity
                conn.execute(
                    "UPDATE sessions SET actions_used = actions_used + 1,"
                    " decisions = decisions + 1, tools_used = ?, max_sensitivity_seen = ?"
                    " WHERE id = ?",
                    (json.dumps(tools), seen, session_id),
                )
            else:
                conn.execute(
                    "UPDATE sessions SET decisions = decisions + 1 WHERE id = ?", (session_id,)
                )
            updated = conn.execute(
                f"SELECT {_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
        return _to_session(updated)

    def end(
        self, where: str, params: tuple[Any, ...], now_ns: int, kind: str, reason: str
    ) -> list[Session]:
        """End every live session matching `where`; return the ones this call ended.

        `ended_at_ns IS NULL` in the UPDATE makes ending idempotent and race-free: a session
        torn down concurrently is ended (and audited) exactly once.
        """
        with self.transaction() as conn:
            rows = conn.execute(
                f"UPDATE sessions SET ended_at_ns = ?, end_kind = ?, end_reason = ?"
                f" WHERE ended_at_ns IS NULL AND ({where}) RETURNING rowid AS seq, {_COLUMNS}",
                (now_ns, kind, reason, *params),
            ).fetchall()
        # Oldest first, so audit events of a bulk revoke come out in a stable order.
        return [_to_session(row) for row in sorted(rows, key=lambda row: row["seq"])]
