"""SQLite persistence of session state (WAL), so a restarted broker loses nothing.

The tables may share one database file with the approval queue and the audit store (each owns
its own tables; none uses `PRAGMA user_version`).

Connections: one per thread (and per process after a fork), kept open. Opening a connection per
operation cost ~0.4 ms each time: closing the last connection to a WAL database checkpoints it
and deletes the WAL, so every read paid a checkpoint. Each write runs in `BEGIN IMMEDIATE`, so
read-modify-write updates of a session are atomic across threads and processes; no session
state is cached between calls (every read is a fresh WAL snapshot, so a revoke committed by
another process is seen by the very next read).

Durability (``durability=``):

* ``"normal"`` (default): the per-decision bookkeeping (`record`: budget and history counters)
  commits with ``synchronous=NORMAL`` — consistent after any crash and kept through a process
  kill, but an OS crash or power cut may lose the last few counter updates (the audit store
  still has every decision). Opening, ending and revoking a session always commit with
  ``synchronous=FULL``: a revoke must survive a power cut. A FULL commit also makes every
  earlier WAL commit durable.
* ``"full"``: every commit is fsynced (one more fsync per authorized action, ~0.2-0.5 ms).
"""

from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aam_policy._sqlite import Durability, ThreadConnections, check_durability

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


@functools.lru_cache(maxsize=1024)  # frozen models, a pure function of the stored text
def _human(text: str) -> HumanPrincipal:
    return HumanPrincipal.model_validate_json(text)


@functools.lru_cache(maxsize=1024)
def _agent(text: str) -> AgentIdentity:
    return AgentIdentity.model_validate_json(text)


def _to_session(row: sqlite3.Row) -> Session:
    return Session(
        id=row["id"],
        intent=row["intent"],
        human=_human(row["human_json"]),
        agent=_agent(row["agent_json"]),
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
    def __init__(
        self, path: str | Path, *, durability: Durability = "normal", timeout: float = 30.0
    ) -> None:
        self.path = Path(path)
        self.durability = check_durability(durability)
        # What the hot per-decision update commits with; lifecycle changes always use FULL.
        self._record_sync = "FULL" if durability == "full" else "NORMAL"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conns = ThreadConnections(self.path, timeout=timeout)
        with self.transaction() as conn:
            # Not executescript(): it would COMMIT the open transaction first.
            for statement in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                conn.execute(statement)

    def close(self) -> None:
        """Close every connection this store opened (they reopen on next use)."""
        self._conns.close()

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection for reads (autocommit: each query is a fresh snapshot)."""
        yield self._conns.get()

    def transaction(
        self, sync: str = "FULL"
    ) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock from the start (no upgrade races)."""
        return self._conns.transaction(sync)

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
        with self.transaction(self._record_sync) as conn:
            if not counted:
                # fetchall(): a RETURNING statement must run to completion before COMMIT.
                rows = conn.execute(
                    "UPDATE sessions SET decisions = decisions + 1 WHERE id = ?"
                    f" RETURNING {_COLUMNS}",
                    (session_id,),
                ).fetchall()
                if not rows:
                    raise SessionNotFound(f"no session {session_id!r}")
                return _to_session(rows[0])
            row = conn.execute(
                "SELECT tools_used, max_sensitivity_seen, ended_at_ns FROM sessions WHERE id = ?",
                (session_id,),
            ).fetchone()
            if row is None:
                raise SessionNotFound(f"no session {session_id!r}")
            if row["ended_at_ns"] is not None:
                # Checked inside the transaction so a concurrent teardown cannot slip between.
                raise SessionRevoked(f"session {session_id} has ended")
            tools = json.loads(row["tools_used"])
            if tool not in tools:
                tools.append(tool)
            seen = row["max_sensitivity_seen"]
            if sensitivity_rank(sensitivity) > sensitivity_rank(seen):
                seen = sensitivity
            updated = conn.execute(
                "UPDATE sessions SET actions_used = actions_used + 1,"
                " decisions = decisions + 1, tools_used = ?, max_sensitivity_seen = ?"
                f" WHERE id = ? RETURNING {_COLUMNS}",
                (json.dumps(tools), seen, session_id),
            ).fetchall()
        return _to_session(updated[0])

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
