"""Canonical JSON and the hash chain: what an event's hash covers and how a chain is checked.

An event's hash is ``sha256(canonical_json([seq, event_id, ts_ns, type, session_id, actor,
payload, prev_hash]))`` as lowercase hex, where ``prev_hash`` is the previous event's hash and
the first event's ``prev_hash`` is :data:`GENESIS` (64 zeros). Canonical JSON is
``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)`` encoded as UTF-8. The payload is stored as exactly that canonical text, so
the hash is recomputed from the stored bytes and any byte-level edit shows.

:func:`check_chain` walks the rows in ``seq`` order and stops at the first anomaly, then looks
around it (which event the broken link points to, whether the next event chains over it) to say
*what* happened: edited, deleted, inserted, reordered or truncated. The diagnosis is a best
guess from the chain's own evidence; detection itself never depends on it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

GENESIS = "0" * 64


# Built once: json.dumps with options builds a new encoder per call, a third of the time a
# trace of 10,000 events spent re-hashing them.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, no whitespace, UTF-8, no NaN/Infinity."""
    return _CANONICAL(value)


def event_hash(
    seq: int,
    event_id: str,
    ts_ns: int,
    type_: str,
    session_id: str | None,
    actor: str | None,
    payload_json: str,
    prev_hash: str,
) -> str:
    """The hash of one event. `payload_json` is the stored canonical payload text.

    Building the array text around the stored payload is byte-identical to
    ``canonical_json([... , payload, ...])`` because a canonical array is its canonical
    elements joined by commas; it spares a parse per event when verifying.
    """
    head = canonical_json([seq, event_id, ts_ns, type_, session_id, actor])
    body = f"{head[:-1]},{payload_json},{canonical_json(prev_hash)}]"
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class Row(NamedTuple):
    """One stored event row, in the `events` table's column order."""

    seq: int
    event_id: str
    ts_ns: int
    type: str
    session_id: str | None
    actor: str | None
    payload_json: str
    prev_hash: str
    hash: str

    def recompute(self) -> str:
        return event_hash(
            self.seq,
            self.event_id,
            self.ts_ns,
            self.type,
            self.session_id,
            self.actor,
            self.payload_json,
            self.prev_hash,
        )


class ChainProblem(NamedTuple):
    first_bad_seq: int | None
    problem: str


class ChainReport(NamedTuple):
    checked: int
    last_seq: int
    last_hash: str
    problem: ChainProblem | None


def check_chain(
    rows: Iterable[Row],
    head: tuple[int, str] | None,
    seq_of_hash: Callable[[str, int], int | None],
    row_at: Callable[[int], Row | None],
    anchor: tuple[int, str] | None = None,
) -> ChainReport:
    """Check `rows` (ascending seq) against the chain rules and the recorded `head`.

    `seq_of_hash(hash, exclude_seq)` finds the seq of another row with that stored hash and
    `row_at(seq)` fetches a row; both are only called once something is already wrong.
    `anchor` is a (seq, hash) recorded outside the database (e.g. printed by an earlier
    verify): it catches a rewrite that also rewrote the head, which the chain alone cannot.
    """
    expected = 1
    prev_hash = GENESIS
    prev_type = ""
    checked = 0
    anchored_hash: str | None = None

    def report(problem: ChainProblem | None) -> ChainReport:
        return ChainReport(checked, expected - 1, prev_hash, problem)

    for row in rows:
        label = f"event {row.seq} ({row.type})"
        if row.seq != expected:
            if row.seq < expected:  # only possible for seq < 1: nothing is ever appended there
                return report(
                    ChainProblem(
                        row.seq,
                        f"{label}: sequence number before the start of the chain — inserted",
                    )
                )
            missing = _span(expected, row.seq - 1, "is", "are")
            return report(
                ChainProblem(
                    expected,
                    f"{missing} missing: the chain jumps from event "
                    f"{expected - 1} to event {row.seq} — deleted",
                )
            )
        hash_ok = row.recompute() == row.hash
        prev_ok = row.prev_hash == prev_hash
        if not (hash_ok and prev_ok):
            return report(
                _diagnose(row, label, hash_ok, prev_ok, prev_type, head, seq_of_hash, row_at)
            )
        if anchor is not None and row.seq == anchor[0]:
            anchored_hash = row.hash
        checked += 1
        expected += 1
        prev_hash = row.hash
        prev_type = row.type

    last = expected - 1
    if head is None:
        if last > 0:
            return report(
                ChainProblem(
                    None, "the recorded chain head is missing — the chain_head row was deleted"
                )
            )
    elif last < head[0]:
        missing = _span(last + 1, head[0], "is", "are")
        return report(
            ChainProblem(
                last + 1,
                f"{missing} missing from the end: the chain stops "
                f"at event {last} but {head[0]} were recorded — truncated",
            )
        )
    elif last > head[0]:
        return report(
            ChainProblem(
                head[0] + 1,
                f"event {head[0] + 1} and after are not covered "
                f"by the recorded chain head (event {head[0]}) — appended "
                "outside the audit store",
            )
        )
    elif last > 0 and prev_hash != head[1]:
        return report(
            ChainProblem(
                last,
                f"event {last} ({prev_type}): does not match the "
                "recorded chain head — rewritten and re-hashed",
            )
        )
    if anchor is not None:
        if anchor[0] > last:
            return report(
                ChainProblem(
                    last + 1,
                    f"the chain stops at event {last} but the anchor "
                    f"records event {anchor[0]} — truncated",
                )
            )
        if anchor[0] > 0 and anchored_hash != anchor[1]:
            return report(
                ChainProblem(
                    anchor[0],
                    f"event {anchor[0]}: hash differs from the "
                    "anchored hash — the chain was rewritten",
                )
            )
    return report(None)


def _diagnose(
    row: Row,
    label: str,
    hash_ok: bool,
    prev_ok: bool,
    prev_type: str,
    head: tuple[int, str] | None,
    seq_of_hash: Callable[[str, int], int | None],
    row_at: Callable[[int], Row | None],
) -> ChainProblem:
    seq = row.seq
    if not prev_ok:
        # Which stored event does this one claim to follow?
        origin = seq_of_hash(row.prev_hash, seq)
        if origin is not None and origin > seq:
            return ChainProblem(
                seq,
                f"{label}: out of order — it chains from event {origin}, "
                "which now comes after it; events were reordered",
            )
        if origin is not None and origin < seq - 1:
            span = _span(origin + 1, seq - 1, "was", "were")
            return ChainProblem(
                origin + 1, f"{span} inserted: event {seq} chains directly from event {origin}"
            )
        if hash_ok:
            if seq == 1:
                return ChainProblem(
                    1, f"{label}: does not start from the genesis hash — forged or inserted"
                )
            return ChainProblem(
                seq - 1,
                f"event {seq - 1} ({prev_type}): rewritten — event "
                f"{seq}'s prev_hash no longer matches it (changed and "
                "re-hashed, or replaced)",
            )
        return ChainProblem(
            seq,
            f"{label}: hash mismatch and the event it chained from is "
            "gone — events before it were deleted and the rest renumbered",
        )
    # The link into this row is intact but its content does not hash to its stored hash.
    nxt = row_at(seq + 1)
    if nxt is not None:
        if nxt.prev_hash != row.hash and nxt.prev_hash == row.prev_hash:
            return ChainProblem(
                seq, f"{label}: inserted — event {seq + 1} chains directly from event {seq - 1}"
            )
    elif head is not None and head[0] == seq - 1 and head[1] == row.prev_hash:
        return ChainProblem(
            seq,
            f"{label}: inserted after the recorded chain head (event {seq - 1}) — hash mismatch",
        )
    return ChainProblem(seq, f"{label}: hash mismatch — content was edited")


def _span(first: int, last: int, one: str, many: str) -> str:
    if first == last:
        return f"event {first} {one}"
    return f"events {first}..{last} {many}"
