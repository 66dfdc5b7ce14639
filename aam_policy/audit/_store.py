"""The append-only, hash-chained audit store (SQLite).

Layout (the file may be shared with the session and approval tables; these names are ours):

* ``events(seq, event_id UNIQUE, ts_ns, type, session_id, actor, payload_json, prev_hash,
  hash)`` — ``seq`` counts from 1 without gaps; ``hash`` chains every event to the one before
  (see ``_chain``);
* ``chain_head(id = 0, seq, hash)`` — the last event, written in the same transaction as the
  event. The chain alone cannot show that its tail was cut off; comparing with the head can;
* triggers that RAISE on UPDATE or DELETE of ``events``, on an INSERT that does not extend the
  head, and on a head that moves anywhere but forward to the last event. They stop accidents
  and casual edits; `verify()` does not rely on them, so tampering by someone who dropped them
  is still found.

Durability: WAL; ``durability="full"`` (``synchronous=FULL``, the default) or ``"normal"``
(``synchronous=NORMAL``). Each append (or batch) is one ``BEGIN IMMEDIATE`` transaction, so a
writer killed at any instant (SIGKILL) leaves either the whole event (and the head that covers
it) or nothing, in both modes. FULL fsyncs every commit, so a committed event also survives an
OS crash or power cut; NORMAL may lose the last commits then (never corrupting the chain: the
head is in the same transaction), for ~3x the append rate (one fsync, ~0.2-0.4 ms on a
virtual disk, dominates a ~0.1 ms append). The default stays FULL: an audit trail that forgets
the last seconds before an incident is the wrong trade for a few hundred microseconds per
append. Operators choose with ``$AAM_AUDIT_DURABILITY`` (``full`` | ``normal``), read when
neither ``durability`` nor ``synchronous`` (the raw pragma, kept for compatibility) is given,
so every ``aam`` command, the collector and the Guard's stores follow it.

Concurrency: one connection per thread (and per process after a fork); in a process, one
caller at a time writes (the group-commit leader, below). ``BEGIN IMMEDIATE`` takes SQLite's
write lock before the head is read, so writers in other processes queue behind it (busy
timeout 30 s) and the chain stays linear.

Group commit: threads that append while another thread's commit is under way queue their
events, and one of them, the leader, commits everything queued in one transaction (one fsync).
Every append still returns only once its events are committed, and each call's events stay
all-or-none; if a shared transaction fails, each call is retried on its own, so one call's
failure is never another's. A single writer gets one fsync per append. A leader that has
committed wakes the callers it committed for and hands the lead to the first caller still
waiting: callers whose events are already stored never stand in line for the lead (when they
did, each commit was followed by two thread wake-ups instead of one: with 4 writers at FULL,
the disk stood idle ~25% of the time; the hand-off gave +7% appends, the median of eight A/B
pairs, one of which went the other way).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

from aam_policy._sqlite import ThreadConnections

from ._chain import GENESIS, Row, canonical_json, check_chain, event_hash
from ._ingest import decision_event_id, decision_from_opa
from ._models import EVENT_TYPES, AuditEvent, ChainHead, VerifyResult
from ._redact import redact
from ._trace import Trace, build_trace

_COLUMNS = "seq, event_id, ts_ns, type, session_id, actor, payload_json, prev_hash, hash"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        ts_ns INTEGER NOT NULL,
        type TEXT NOT NULL,
        session_id TEXT,
        actor TEXT,
        payload_json TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_session ON events (session_id, seq)",
    """CREATE TABLE IF NOT EXISTS chain_head (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
    )""",
    f"INSERT OR IGNORE INTO chain_head (id, seq, hash) VALUES (0, 0, '{GENESIS}')",
    """CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS events_extend_head BEFORE INSERT ON events
    WHEN NEW.seq IS NOT (SELECT seq + 1 FROM chain_head WHERE id = 0)
      OR NEW.prev_hash IS NOT (SELECT hash FROM chain_head WHERE id = 0)
    BEGIN SELECT RAISE(ABORT, 'audit events are append-only: an insert must extend the chain');
    END""",
    """CREATE TRIGGER IF NOT EXISTS chain_head_forward BEFORE UPDATE ON chain_head
    WHEN NEW.id IS NOT OLD.id OR NEW.seq <= OLD.seq
      OR NEW.hash IS NOT (SELECT hash FROM events WHERE seq = NEW.seq)
      OR EXISTS (SELECT 1 FROM events WHERE seq > NEW.seq)
    BEGIN SELECT RAISE(ABORT, 'the audit chain head only moves forward to the last event'); END""",
    """CREATE TRIGGER IF NOT EXISTS chain_head_no_delete BEFORE DELETE ON chain_head
    BEGIN SELECT RAISE(ABORT, 'the audit chain head cannot be deleted'); END""",
)

# A new audit file gets 1 KiB pages: an append writes ~4 pages (its row, two index entries, the
# chain head) and every commit waits for them to reach the disk, so smaller pages make commits
# cheaper. Measured: +5% appends at FULL with 4 writers, a 16% larger file, `aam trace` unchanged.
PAGE_SIZE = 1024

_SYNC_MODES = ("FULL", "NORMAL", "EXTRA")
DURABILITY_ENV = "AAM_AUDIT_DURABILITY"
_DURABILITY = {"full": "FULL", "normal": "NORMAL"}
Durability = Literal["full", "normal"]


def _synchronous_for(synchronous: str | None, durability: str | None) -> str:
    if synchronous is not None:
        if synchronous.upper() not in _SYNC_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNC_MODES)}")
        return synchronous.upper()
    source, mode = "durability", durability
    if mode is None:
        source = f"${DURABILITY_ENV}"
        mode = os.environ.get(DURABILITY_ENV, "").strip().lower() or "full"
    if mode not in _DURABILITY:
        raise ValueError(f"{source} must be one of {', '.join(_DURABILITY)}, not {mode!r}")
    return _DURABILITY[mode]


class _Pending(NamedTuple):
    event_id: str
    ts_ns: int
    type: str
    session_id: str | None
    actor: str | None
    payload_json: str
    payload: dict[str, Any]  # the redacted payload `payload_json` encodes (spares a parse)
    fresh: bool = False  # a new random event id: it cannot be stored already


class _Ticket:
    """One append call in the group-commit queue. Its caller sleeps on `turn` until a leader
    has committed its items (`done`) or has handed it the lead (`leads`)."""

    __slots__ = ("done", "error", "items", "leads", "outcome", "turn")

    def __init__(self, items: Sequence[_Pending]) -> None:
        self.items = items
        self.outcome: list[tuple[AuditEvent, bool]] = []
        self.error: Exception | None = None
        self.done = False
        self.leads = False
        self.turn = threading.Lock()
        self.turn.acquire()


class AuditStore:
    """Append-only, hash-chained audit trail in one SQLite file. Thread- and process-safe.

    ```python
    store = AuditStore("audit.db")
    store.append("session.opened", "sess_1", {"human": "alice@example.com", ...}, actor="alice")
    store.verify()          # VerifyResult(ok=True, checked=1, ...)
    print(render_trace(store.trace("sess_1")))
    ```
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability | None = None,
        synchronous: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self._synchronous = _synchronous_for(synchronous, durability)
        # guards `_queue` and `_leading`; never held while writing
        self._queue_lock = threading.Lock()
        self._queue: list[_Ticket] = []  # callers waiting for a commit, in arrival order
        # a caller is committing or has been handed the lead: the only writer in this process
        self._leading = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conns = ThreadConnections(
            self.path,
            timeout=timeout,
            # recursive_triggers: an INSERT OR REPLACE fires the append-only DELETE trigger
            pragmas=(f"synchronous = {self._synchronous}", "recursive_triggers = ON"),
            named_rows=False,
            page_size=PAGE_SIZE,
        )
        with self._conns.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    def __repr__(self) -> str:
        return f"AuditStore({str(self.path)!r})"

    @property
    def synchronous(self) -> str:
        """The ``PRAGMA synchronous`` every commit runs with (FULL, NORMAL or EXTRA)."""
        return self._synchronous

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection this store opened (they reopen on next use)."""
        self._conns.close()

    # --- writing --------------------------------------------------------------------------------

    def append(
        self,
        type: str,
        session_id: str | None,
        payload: Mapping[str, Any],
        actor: str | None = None,
        ts_ns: int | None = None,
    ) -> AuditEvent:
        """Redact `payload`, chain it after the last event and commit. Returns the stored event.

        A ``decision`` whose payload has a ``decision_id`` is stored once: appending it again
        (or ingesting the same OPA decision) returns the event already stored.
        """
        pending = self._prepare(type, session_id, payload, actor, ts_ns)
        return self._write([pending])[0][0]

    def append_many(
        self, items: Sequence[tuple[str, str | None, Mapping[str, Any], str | None]]
    ) -> list[AuditEvent]:
        """Append (type, session_id, payload, actor) items in one transaction: all or none."""
        pending = [self._prepare(t, s, p, a, None) for t, s, p, a in items]
        return [event for event, _ in self._write(pending)]

    def ingest_decision_logs(self, events: Sequence[Mapping[str, Any]]) -> int:
        """Store OPA decision-log events as ``decision`` audit events (see ``_ingest``).

        One transaction per upload. Idempotent on ``decision_id``: returns how many events were
        new; events without a decision id are skipped.
        """
        if isinstance(events, (str, bytes)) or not isinstance(events, Sequence):
            raise TypeError("decision logs must be a list of event objects")
        pending = []
        for event in events:
            if not isinstance(event, Mapping):
                raise TypeError("decision logs must be a list of event objects")
            mapped = decision_from_opa(event)
            if mapped is not None:
                clean = redact(mapped.payload)
                pending.append(
                    _Pending(
                        mapped.event_id,
                        mapped.ts_ns,
                        "decision",
                        mapped.session_id,
                        mapped.actor,
                        canonical_json(clean),
                        clean,
                    )
                )
        if not pending:
            return 0
        return sum(1 for _, inserted in self._write(pending) if inserted)

    def _prepare(
        self,
        type_: str,
        session_id: str | None,
        payload: Mapping[str, Any],
        actor: str | None,
        ts_ns: int | None,
    ) -> _Pending:
        if type_ not in EVENT_TYPES:
            expected = ", ".join(sorted(EVENT_TYPES))
            raise ValueError(f"unknown audit event type {type_!r} (expected one of {expected})")
        for name, value in (("session_id", session_id), ("actor", actor)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a string or None, not {type(value).__name__}")
        if ts_ns is None:
            ts_ns = time.time_ns()
        elif isinstance(ts_ns, bool) or not isinstance(ts_ns, int):
            raise TypeError("ts_ns must be an integer (nanoseconds since the epoch)")
        clean = redact(payload)
        decision_id = clean.get("decision_id") if type_ == "decision" else None
        if isinstance(decision_id, str) and decision_id:
            event_id, fresh = decision_event_id(decision_id), False
        else:
            event_id, fresh = f"evt_{uuid.uuid4().hex}", True
        return _Pending(
            event_id, int(ts_ns), type_, session_id, actor, canonical_json(clean), clean, fresh
        )

    def _write(self, items: Sequence[_Pending]) -> list[tuple[AuditEvent, bool]]:
        """Commit `items` in one transaction, possibly shared with other threads' (see top)."""
        ticket = _Ticket(items)
        with self._queue_lock:
            self._queue.append(ticket)
            ticket.leads = not self._leading
            self._leading = True
        if not ticket.leads:
            try:
                ticket.turn.acquire()  # until committed by a leader, or handed the lead
            except BaseException:  # interrupted (KeyboardInterrupt) while waiting
                self._withdraw(ticket)
                raise
        if not ticket.done:
            self._lead(ticket)
        if ticket.error is not None:
            raise ticket.error
        return ticket.outcome

    def _lead(self, ticket: _Ticket) -> None:
        """Commit everything queued, then wake the callers committed for and pass the lead on."""
        with self._queue_lock:
            batch, self._queue = self._queue, []
        try:
            self._commit(batch)
        finally:
            # Interrupted (KeyboardInterrupt): the other callers still wait for their events,
            # which the next leader commits.
            with self._queue_lock:
                self._queue[:0] = [t for t in batch if not t.done and t is not ticket]
                successor = self._pass_lead()
            if successor is not None:
                successor.turn.release()
            for other in batch:
                if other.done and other is not ticket:
                    other.turn.release()

    def _pass_lead(self) -> _Ticket | None:
        """The first waiting caller, now the leader (None: nobody leads). Under `_queue_lock`."""
        successor = self._queue[0] if self._queue else None
        if successor is not None:
            successor.leads = True
        self._leading = successor is not None
        return successor

    def _withdraw(self, ticket: _Ticket) -> None:
        """Take an interrupted caller's items out of the queue, handing on the lead it holds."""
        successor = None
        with self._queue_lock:
            if ticket.done:  # committed already: its events stand
                return
            if ticket in self._queue:
                self._queue.remove(ticket)
            if ticket.leads:
                successor = self._pass_lead()
        if successor is not None:
            successor.turn.release()

    def _commit(self, batch: list[_Ticket]) -> None:
        try:
            outcome = self._insert([item for ticket in batch for item in ticket.items])
        except Exception as exc:
            if len(batch) > 1:
                for ticket in batch:  # one call's failure must not be another's
                    self._commit([ticket])
                return
            batch[0].error, batch[0].done = exc, True
            return
        start = 0
        for ticket in batch:
            end = start + len(ticket.items)
            ticket.outcome, ticket.done = outcome[start:end], True
            start = end

    def _insert(self, items: Sequence[_Pending]) -> list[tuple[AuditEvent, bool]]:
        out: list[tuple[AuditEvent, bool]] = []
        with self._conns.transaction() as conn:
            head = conn.execute("SELECT seq, hash FROM chain_head WHERE id = 0").fetchone()
            if head is None:
                raise RuntimeError(
                    f"{self.path}: the audit chain head is missing — the database was tampered "
                    "with; run `aam audit verify`"
                )
            seq, prev = head
            for item in items:
                # Only a deterministic id (a decision id) can already be stored; a random one
                # would still hit the UNIQUE constraint if it somehow collided.
                existing = (
                    None
                    if item.fresh
                    else conn.execute(
                        f"SELECT {_COLUMNS} FROM events WHERE event_id = ?", (item.event_id,)
                    ).fetchone()
                )
                if existing is not None:
                    out.append((_event(Row(*existing)), False))
                    continue
                seq += 1
                digest = event_hash(
                    seq,
                    item.event_id,
                    item.ts_ns,
                    item.type,
                    item.session_id,
                    item.actor,
                    item.payload_json,
                    prev,
                )
                row = Row(
                    seq,
                    item.event_id,
                    item.ts_ns,
                    item.type,
                    item.session_id,
                    item.actor,
                    item.payload_json,
                    prev,
                    digest,
                )
                conn.execute(f"INSERT INTO events ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", row)
                conn.execute("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 0", (seq, digest))
                prev = digest
                out.append((_event(row, item.payload), True))
        return out

    # --- reading --------------------------------------------------------------------------------

    def events(
        self,
        session_id: str | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[AuditEvent]:
        """Stored events in seq order, optionally of one session and/or after a seq."""
        where, params = [], []
        if session_id is not None:
            where.append("session_id = ?")
            params.append(session_id)
        if after_seq is not None:
            where.append("seq > ?")
            params.append(after_seq)
        sql = f"SELECT {_COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._conns.get().execute(sql, params).fetchall()
        return [_event(Row(*r)) for r in rows]

    def get(self, seq: int) -> AuditEvent | None:
        row = self._conns.get().execute(f"SELECT {_COLUMNS} FROM events WHERE seq = ?", (seq,))
        found = row.fetchone()
        return None if found is None else _event(Row(*found))

    def head(self) -> ChainHead:
        """The recorded last event (seq 0 and the genesis hash when empty)."""
        row = self._conns.get().execute("SELECT seq, hash FROM chain_head WHERE id = 0").fetchone()
        return ChainHead(seq=0, hash=GENESIS) if row is None else ChainHead(seq=row[0], hash=row[1])

    def __len__(self) -> int:
        return int(self._conns.get().execute("SELECT count(*) FROM events").fetchone()[0])

    def verify(self, anchor: ChainHead | None = None) -> VerifyResult:
        """Recompute the whole chain and compare it with the recorded head (and `anchor`).

        Detects edited, deleted, inserted and reordered events and a truncated tail, and names
        the first bad event. Reads one consistent snapshot, so concurrent appends are fine.
        """
        conn = self._conns.get()
        with self._snapshot(conn):
            head_row = conn.execute("SELECT seq, hash FROM chain_head WHERE id = 0").fetchone()
            head = None if head_row is None else (int(head_row[0]), str(head_row[1]))

            def seq_of_hash(digest: str, exclude: int) -> int | None:
                found = conn.execute(
                    "SELECT seq FROM events WHERE hash = ? AND seq != ? ORDER BY seq LIMIT 1",
                    (digest, exclude),
                ).fetchone()
                return None if found is None else int(found[0])

            def row_at(seq: int) -> Row | None:
                found = conn.execute(f"SELECT {_COLUMNS} FROM events WHERE seq = ?", (seq,))
                row = found.fetchone()
                return None if row is None else Row(*row)

            rows = (Row(*r) for r in conn.execute(f"SELECT {_COLUMNS} FROM events ORDER BY seq"))
            report = check_chain(
                rows,
                head,
                seq_of_hash,
                row_at,
                None if anchor is None else (anchor.seq, anchor.hash),
            )
        last = ChainHead(seq=report.last_seq, hash=report.last_hash)
        if report.problem is None:
            return VerifyResult(ok=True, checked=report.checked, head=last)
        return VerifyResult(
            ok=False,
            checked=report.checked,
            first_bad_seq=report.problem.first_bad_seq,
            problem=report.problem.problem,
            head=None if head is None else ChainHead(seq=head[0], hash=head[1]),
        )

    def trace(self, session_id: str) -> Trace:
        """Rebuild one session's causal chain (see `aam_policy.audit.build_trace`)."""
        return build_trace(session_id, self.events(session_id=session_id))

    # --- connections ----------------------------------------------------------------------------

    @staticmethod
    @contextlib.contextmanager
    def _snapshot(conn: sqlite3.Connection) -> Iterator[None]:
        conn.execute("BEGIN")  # deferred: the first read pins one WAL snapshot
        try:
            yield
        finally:
            conn.execute("COMMIT")


def _event(row: Row, parsed: dict[str, Any] | None = None) -> AuditEvent:
    try:
        payload = json.loads(row.payload_json) if parsed is None else parsed
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        # Only a tampered row gets here; keep it readable so trace and verify can show it.
        payload = {"_unreadable_payload": row.payload_json[:200]}
    return AuditEvent.model_construct(
        seq=row.seq,
        event_id=row.event_id,
        ts_ns=row.ts_ns,
        type=row.type,
        session_id=row.session_id,
        actor=row.actor,
        payload=payload,
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
