"""The human-in-the-loop approval queue, persisted in SQLite (WAL).

Grants live here, next to the approvals they come from: an approver (CLI, chat hook) needs only
this database, never the session signing keys. The session broker reads them back through
`active_grants` to build `input.session.approvals` (the Guard passes the queue to the broker as
its grant source). Neither package imports the other.

Every transition is one `UPDATE ... WHERE status = 'pending'` inside `BEGIN IMMEDIATE`, so of
two concurrent approvers exactly one changes the row; the other sees `AlreadyResolved`.

Connections: one per thread (and per process after a fork), kept open: a connection per call
cost a WAL checkpoint each time the last one closed. Nothing is cached between calls; every
read is a fresh snapshot, so a grant or a resolution from another process shows at once.

Durability (``durability=``): approving, denying and expiring always commit with
``synchronous=FULL`` (who approved what must survive a power cut). Opening a request on the
decision path commits with ``synchronous=NORMAL`` under ``"normal"`` (the default): an OS crash
may lose a request made just before it (the agent's retry opens a new one; the audit store keeps
the original `escalation.requested`). ``"full"`` fsyncs that commit too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aam_policy._sqlite import Durability, ThreadConnections, check_durability

from ._models import (
    STATUSES,
    AlreadyResolved,
    Approval,
    ApprovalExpired,
    ApprovalNotFound,
    Approver,
    ApproverNotEligible,
    AuditSink,
    Grant,
    InvalidEscalation,
    SelfApprovalRefused,
    is_eligible,
)

logger = logging.getLogger("aam_policy.escalation")

_NS = 1_000_000_000
DEFAULT_REQUEST_TTL_SECONDS = 900


_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS approvals (
        id                   TEXT PRIMARY KEY,
        session_id           TEXT NOT NULL,
        fingerprint          TEXT NOT NULL,
        status               TEXT NOT NULL
                             CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
        intent               TEXT,
        human                TEXT,
        agent                TEXT,
        action_json          TEXT NOT NULL,
        approvers_json       TEXT NOT NULL,
        approval_ttl_seconds INTEGER NOT NULL,
        reason               TEXT NOT NULL,
        reasons_json         TEXT NOT NULL,
        policy_revision      TEXT,
        requested_at_ns      INTEGER NOT NULL,
        expires_at_ns        INTEGER NOT NULL,
        resolved_at_ns       INTEGER,
        resolved_by          TEXT,
        why                  TEXT,
        grant_expires_at_ns  INTEGER
    )
    """,
    # At most one pending request per session + action: makes `request` idempotent even
    # under concurrent callers.
    """
    CREATE UNIQUE INDEX IF NOT EXISTS approvals_one_pending
        ON approvals (session_id, fingerprint) WHERE status = 'pending'
    """,
    "CREATE INDEX IF NOT EXISTS approvals_session ON approvals (session_id, status)",
    "CREATE INDEX IF NOT EXISTS approvals_status ON approvals (status, expires_at_ns)",
)

_COLUMNS = (
    "id, session_id, fingerprint, status, intent, human, agent, action_json, approvers_json,"
    " approval_ttl_seconds, reason, reasons_json, policy_revision, requested_at_ns,"
    " expires_at_ns, resolved_at_ns, resolved_by, why, grant_expires_at_ns"
)


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _path(obj: Any, *names: str) -> Any:
    for name in names:
        if obj is None:
            return None
        obj = _field(obj, name)
    return obj


def _to_approval(row: sqlite3.Row) -> Approval:
    return Approval(
        id=row["id"],
        session_id=row["session_id"],
        fingerprint=row["fingerprint"],
        status=row["status"],
        intent=row["intent"],
        human=row["human"],
        agent=row["agent"],
        action=json.loads(row["action_json"]),
        approvers=tuple(json.loads(row["approvers_json"])),
        approval_ttl_seconds=row["approval_ttl_seconds"],
        reason=row["reason"],
        reasons=tuple(json.loads(row["reasons_json"])),
        policy_revision=row["policy_revision"],
        requested_at_ns=row["requested_at_ns"],
        expires_at_ns=row["expires_at_ns"],
        resolved_at_ns=row["resolved_at_ns"],
        resolved_by=row["resolved_by"],
        why=row["why"],
        grant_expires_at_ns=row["grant_expires_at_ns"],
    )


class ApprovalQueue:
    """Pending -> approved | denied | expired; approvals become grants with their own TTL.

    `request_ttl_seconds` bounds how long a request may wait for a human (and never past the
    session's own expiry); the grant's lifetime is the decision's `approval_ttl_seconds`.
    """

    def __init__(
        self,
        db_path: str | Path,
        audit: AuditSink | None = None,
        clock: Callable[[], int] = time.time_ns,
        *,
        request_ttl_seconds: int = DEFAULT_REQUEST_TTL_SECONDS,
        durability: Durability = "normal",
    ) -> None:
        if request_ttl_seconds <= 0:
            raise ValueError("request_ttl_seconds must be positive")
        self.path = Path(db_path)
        self.durability = check_durability(durability)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._request_sync = "FULL" if durability == "full" else "NORMAL"
        self._audit = audit
        self._clock = clock
        self._request_ttl_ns = request_ttl_seconds * _NS
        self._conns = ThreadConnections(self.path)
        with self._transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    def __repr__(self) -> str:
        return f"ApprovalQueue(db={str(self.path)!r})"

    # --- requests -----------------------------------------------------------------------------

    def request(self, decision: Any, request: Mapping[str, Any]) -> Approval:
        """Open (or return the already pending) approval for an `escalate` decision.

        `decision` is the policy decision (mapping or model with `escalation.approvers`,
        `escalation.approval_ttl_seconds`, `reasons`); `request` is the enriched input it was
        made for. Idempotent per session id + action fingerprint while pending.
        """
        if _field(decision, "outcome") != "escalate":
            raise InvalidEscalation("only an 'escalate' decision can be sent for approval")
        approvers = _path(decision, "escalation", "approvers")
        ttl = _path(decision, "escalation", "approval_ttl_seconds")
        if (
            not isinstance(approvers, list | tuple)
            or not approvers
            or not all(isinstance(a, str) and a for a in approvers)
        ):
            raise InvalidEscalation("the escalation names no approvers")
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0:
            raise InvalidEscalation("approval_ttl_seconds must be a positive integer")
        session_id = _path(request, "session", "id")
        fingerprint = _path(request, "action", "fingerprint")
        if not isinstance(session_id, str) or not session_id:
            raise InvalidEscalation("the request has no session id")
        if not isinstance(fingerprint, str) or not fingerprint:
            raise InvalidEscalation("the request has no action fingerprint")

        reasons = [
            {"code": _field(r, "code"), "message": str(_field(r, "message") or "")}
            for r in (_field(decision, "reasons") or [])
            if _field(r, "code") == "escalation_required"
        ]
        reason = "; ".join(r["message"] for r in reasons if r["message"])
        action = {
            key: _path(request, "action", key)
            for key in ("tool", "operation", "target", "parameters")
        }
        human = _path(request, "actor", "human", "id") or _path(request, "session", "human")
        agent = _path(request, "actor", "agent", "id") or _path(request, "session", "agent")
        intent = _path(request, "intent", "id") or _path(request, "session", "intent")
        revision = _path(decision, "policy", "revision")

        now = self._clock()
        expires = now + self._request_ttl_ns
        session_expires = _path(request, "session", "expires_at_ns")
        if isinstance(session_expires, int) and not isinstance(session_expires, bool):
            # Nobody can use an approval after the session is gone.
            expires = min(expires, session_expires)

        expired: list[Approval] = []
        with self._transaction(self._request_sync) as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM approvals"
                " WHERE session_id = ? AND fingerprint = ? AND status = 'pending'",
                (session_id, fingerprint),
            ).fetchone()
            if row is not None and row["expires_at_ns"] > now:
                return _to_approval(row)
            if row is not None:
                expired.extend(self._expire_rows(conn, "id = ?", (row["id"],), now))
            approval_id = "apr_" + secrets.token_urlsafe(12)
            conn.execute(
                f"INSERT INTO approvals ({_COLUMNS}) VALUES ({', '.join('?' * 19)})",
                (
                    approval_id,
                    session_id,
                    fingerprint,
                    "pending",
                    intent,
                    human,
                    agent,
                    json.dumps(action, sort_keys=True),
                    json.dumps(sorted(set(approvers))),
                    ttl,
                    reason,
                    json.dumps(reasons, sort_keys=True),
                    revision if isinstance(revision, str) else None,
                    now,
                    expires,
                    None,
                    None,
                    None,
                    None,
                ),
            )
            created = _to_approval(
                conn.execute(
                    f"SELECT {_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)
                ).fetchone()
            )
        self._audit_expired(expired)
        logger.info(
            "approval %s requested for session %s tool %s (approvers %s)",
            created.id,
            created.session_id,
            action["tool"],
            ", ".join(created.approvers),
        )
        self._emit(
            "escalation.requested",
            created,
            {
                "approval_id": created.id,
                "fingerprint": created.fingerprint,
                "approvers": list(created.approvers),
                "reason": created.reason,
                "expires_at_ns": created.expires_at_ns,
                "tool": action["tool"],
                "approval_ttl_seconds": created.approval_ttl_seconds,
            },
            actor=human if isinstance(human, str) else None,
        )
        return created

    # --- resolution ---------------------------------------------------------------------------

    def approve(
        self, approval_id: str, approver: Approver | Mapping[str, Any], why: str
    ) -> Approval:
        """Approve a pending request; creates a grant bound to its session and fingerprint."""
        return self._resolve(approval_id, approver, why, "approved")

    def deny(self, approval_id: str, approver: Approver | Mapping[str, Any], why: str) -> Approval:
        """Deny a pending request."""
        return self._resolve(approval_id, approver, why, "denied")

    def _resolve(
        self, approval_id: str, approver: Approver | Mapping[str, Any], why: str, status: str
    ) -> Approval:
        who = approver if isinstance(approver, Approver) else Approver.model_validate(approver)
        if not isinstance(why, str) or not why.strip():
            raise ValueError("a reason ('why') is required to resolve an approval")
        current = self.get(approval_id)
        # Who may resolve is fixed at request time, so checking before the transaction is safe;
        # only the status can change concurrently, and the UPDATE guards that.
        if who.id in {current.human, current.agent}:
            raise SelfApprovalRefused(
                f"{who.id} may not resolve an escalation of their own session"
            )
        if not is_eligible(current.approvers, who):
            raise ApproverNotEligible(
                f"{who.id} (roles: {', '.join(who.roles) or 'none'}) is not among the approvers"
                f" {', '.join(current.approvers)}"
            )
        now = self._clock()
        expired: list[Approval] = []
        with self._transaction() as conn:
            grant_expires = (
                now + current.approval_ttl_seconds * _NS if status == "approved" else None
            )
            changed = conn.execute(
                "UPDATE approvals SET status = ?, resolved_at_ns = ?, resolved_by = ?, why = ?,"
                " grant_expires_at_ns = ?"
                " WHERE id = ? AND status = 'pending' AND expires_at_ns > ?",
                (status, now, who.id, why, grant_expires, approval_id, now),
            ).rowcount
            if not changed:
                expired = self._expire_rows(conn, "id = ?", (approval_id,), now)
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)
            ).fetchone()
        resolved = _to_approval(row)
        if not changed:
            self._audit_expired(expired)
            if resolved.status == "expired":
                raise ApprovalExpired(approval_id, "expired")
            raise AlreadyResolved(approval_id, resolved.status)
        logger.info("approval %s %s by %s", approval_id, status, who.id)
        payload: dict[str, Any] = {"approval_id": approval_id, "approver": who.id, "why": why}
        if status == "approved":
            payload["fingerprint"] = resolved.fingerprint
            payload["grant_expires_at_ns"] = resolved.grant_expires_at_ns
        self._emit(f"escalation.{status}", resolved, payload, actor=who.id)
        return resolved

    def expire_due(self, now: int | None = None) -> list[Approval]:
        """Move every pending request past its expiry to `expired`; return them."""
        at = self._clock() if now is None else now
        with self._transaction() as conn:
            expired = self._expire_rows(conn, "expires_at_ns <= ?", (at,), at)
        self._audit_expired(expired)
        return expired

    # --- reads --------------------------------------------------------------------------------

    def get(self, approval_id: str) -> Approval:
        with self._connect() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM approvals WHERE id = ?", (approval_id,)
            ).fetchone()
        if row is None:
            raise ApprovalNotFound(f"no approval {approval_id!r}")
        return _to_approval(row)

    def list(self, status: str | None = None, session_id: str | None = None) -> list[Approval]:
        """Approvals, oldest first, optionally filtered by status and/or session."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if session_id is not None:
            where.append("session_id = ?")
            params.append(session_id)
        sql = f"SELECT {_COLUMNS} FROM approvals"
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY requested_at_ns, rowid", params).fetchall()
        return [_to_approval(row) for row in rows]

    def active_grants(
        self, session_id: str, now_ns: int | None = None, fingerprint: str | None = None
    ) -> list[Grant]:
        """Unexpired grants of one session (optionally for one fingerprint).

        This is the broker's `GrantSource`: the result feeds `input.session.approvals`.
        """
        at = self._clock() if now_ns is None else now_ns
        sql = (
            f"SELECT {_COLUMNS} FROM approvals WHERE session_id = ? AND status = 'approved'"
            " AND grant_expires_at_ns > ?"
        )
        params: list[Any] = [session_id, at]
        if fingerprint is not None:
            sql += " AND fingerprint = ?"
            params.append(fingerprint)
        with self._connect() as conn:
            rows = conn.execute(sql + " ORDER BY resolved_at_ns, rowid", params).fetchall()
        return [grant for row in rows if (grant := _to_approval(row).grant) is not None]

    # --- plumbing -----------------------------------------------------------------------------

    def _expire_rows(
        self, conn: sqlite3.Connection, where: str, params: tuple[Any, ...], now: int
    ) -> list[Approval]:
        rows = conn.execute(
            "UPDATE approvals SET status = 'expired', resolved_at_ns = ?,"
            " why = 'no decision before the request expired'"
            f" WHERE status = 'pending' AND expires_at_ns <= ? AND ({where})"
            f" RETURNING rowid AS seq, {_COLUMNS}",
            (now, now, *params),
        ).fetchall()
        return [_to_approval(row) for row in sorted(rows, key=lambda row: row["seq"])]

    def _audit_expired(self, expired: list[Approval]) -> None:
        for approval in expired:
            logger.info("approval %s expired unanswered", approval.id)
            self._emit(
                "escalation.expired",
                approval,
                {"approval_id": approval.id, "approver": None, "why": approval.why},
                actor=None,
            )

    def _emit(
        self, type_: str, approval: Approval, payload: dict[str, Any], *, actor: str | None
    ) -> None:
        # After COMMIT: the audit store may share this database file.
        if self._audit is not None:
            self._audit.append(type_, approval.session_id, payload, actor)

    def close(self) -> None:
        """Close every connection this queue opened (they reopen on next use)."""
        self._conns.close()

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection for reads (autocommit: each query is a fresh snapshot)."""
        yield self._conns.get()

    def _transaction(
        self, sync: str = "FULL"
    ) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return self._conns.transaction(sync)
