"""OPA-format decision-log events: building, masking, and sinks.

Every decision the sidecar answers becomes one event shaped like OPA's decision logs
(`decision_id`, `path`, `input`, `result`, `timestamp`, `bundles`, `metrics`, `labels`,
`erased`), so whatever consumes a real OPA's logs (the audit store's `POST /logs` collector)
reads ours unchanged.

Masking works like OPA's `mask` policy with erase operations: each configured JSON pointer
(`/input/...` or `/result/...`) is removed from the event when present and listed under
`erased`. The default (`DEFAULT_MASKS`) erases the free text and the tool arguments:

* `/input/intent/purpose` - the task description is typed by a person or an agent and may
  carry secrets, customer data or prompt fragments;
* `/input/action/parameters` - tool arguments (amounts, recipients, message bodies, queries)
  routinely hold personal data and secrets. `action.fingerprint` (sha256 over tool, target and
  parameters) stays in the event, so a decision still binds to the exact action that ran;
* `/input/intent/prompt` and `/input/prompt` - the enforcement point only ever sends
  `intent.prompt_sha256`; should any other client put prompt text in the input, it is erased.

Who, which agent, which intent, tool, target, data sensitivity, session and the full decision
stay, which is what `aam trace` needs. Pass `masks=()` to log inputs whole.
"""

from __future__ import annotations

import copy
import json
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

logger = logging.getLogger("aam_policy.sidecar")

DEFAULT_MASKS: tuple[str, ...] = (
    "/input/intent/purpose",
    "/input/action/parameters",
    "/input/intent/prompt",
    "/input/prompt",
)


@runtime_checkable
class DecisionLogSink(Protocol):
    """Receives each decision-log event (a JSON-ready dict). Called on the request path:
    implementations must return quickly (queue the work) and must not raise."""

    def __call__(self, event: dict[str, Any]) -> None: ...


# Receives the events of one `POST /logs` upload (already masked). Called from one dedicated
# thread, never concurrently; an exception answers the upload with 500 so OPA retries it.
LogIngest = Callable[[list[dict[str, Any]]], object]


def rfc3339_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_masks(masks: Iterable[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Validate mask pointers: `/input/...` or `/result/...` (RFC 6901 escaping)."""
    out = []
    for mask in masks:
        if not isinstance(mask, str) or not mask.startswith(("/input", "/result")):
            raise ValueError(f"mask {mask!r} must be a JSON pointer under /input or /result")
        parts = tuple(p.replace("~1", "/").replace("~0", "~") for p in mask[1:].split("/"))
        if parts[0] not in ("input", "result") or any(p == "" for p in parts):
            raise ValueError(f"mask {mask!r} must be a JSON pointer under /input or /result")
        out.append((mask, parts))
    return tuple(out)


def apply_masks(
    event: dict[str, Any], masks: Sequence[tuple[str, tuple[str, ...]]]
) -> dict[str, Any]:
    """A copy of `event` with every present masked path removed and listed in `erased`.

    Only the containers on a masked path are copied: the caller's input is never mutated.
    """
    erased: list[str] = list(event.get("erased") or [])
    out = dict(event)
    for pointer, parts in masks:
        if _erase(out, parts):
            erased.append(pointer)
    if erased:
        out["erased"] = sorted(set(erased))
    return out


def _erase(root: dict[str, Any], parts: tuple[str, ...]) -> bool:
    # Walk once to check the path exists, then copy-on-write along it.
    node: Any = root
    for key in parts:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False
    parent: Any = root
    for key in parts[:-1]:
        index: Any = int(key) if isinstance(parent, list) else key
        child = copy.copy(parent[index])
        parent[index] = child
        parent = child
    last = parts[-1]
    if isinstance(parent, list):
        del parent[int(last)]
    else:
        del parent[last]
    return True


class _QueuedSink:
    """A decision-log sink that never blocks a decision: events go to a bounded queue that a
    writer thread drains in batches (everything queued at the time), so an event is written
    within milliseconds. When the queue is full (the writer cannot keep up) events are
    dropped and counted rather than delaying decisions; `dropped` reports how many.
    """

    name = "decision log"

    def __init__(self, max_queue: int = 10_000) -> None:
        self.dropped = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"aam-{self.name}", daemon=True)
        self._thread.start()

    def __call__(self, event: dict[str, Any]) -> None:
        if self._closed:
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.error("%s queue full: %d event(s) dropped", self.name, self.dropped)

    def write_many(self, events: Iterable[dict[str, Any]]) -> None:
        for event in events:
            self(event)

    def _run(self) -> None:
        done = False
        while not done:
            batch = [self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            done = None in batch
            events = [event for event in batch if event is not None]
            if events:
                self._write_batch(events)
        self._finish()

    def _write_batch(self, events: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Called on the writer thread after the last batch."""

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)


class JsonlDecisionLog(_QueuedSink):
    """Decision-log sink appending one JSON line per event to a file (flushed per batch)."""

    name = "decision-log"

    def __init__(self, path: str | Path, max_queue: int = 10_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        super().__init__(max_queue)

    def _write_batch(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            try:
                line = json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str)
                self._file.write(line + "\n")
            except (OSError, TypeError, ValueError) as exc:
                logger.error("decision log write failed: %s", exc)
        self._file.flush()

    def _finish(self) -> None:
        self._file.close()


class AuditDecisionLog(_QueuedSink):
    """Decision-log sink feeding the hash-chained audit store, one transaction per batch.

    The store is idempotent on decision_id, so a decision the enforcement point (`Guard`)
    already recorded is not stored twice; decisions made outside a Guard land in the same
    trace. The store is opened on the writer thread (SQLite connections are per thread).
    """

    name = "audit-log"

    def __init__(self, db_path: str | Path, max_queue: int = 10_000) -> None:
        from aam_policy.audit import AuditStore

        self.db_path = Path(db_path)
        AuditStore(self.db_path).close()  # fail now, at start-up, if it cannot be opened
        self._store: Any = None
        super().__init__(max_queue)

    def _write_batch(self, events: list[dict[str, Any]]) -> None:
        from aam_policy.audit import AuditStore

        try:
            if self._store is None:
                self._store = AuditStore(self.db_path)
            self._store.ingest_decision_logs(events)
        except Exception as exc:  # a full disk must not stop the sidecar deciding
            logger.error("audit decision log write failed (%d event(s)): %s", len(events), exc)

    def _finish(self) -> None:
        if self._store is not None:
            self._store.close()
