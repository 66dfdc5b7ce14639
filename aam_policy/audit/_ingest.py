"""OPA decision-log events -> `decision` audit events.

An OPA decision-log event (real OPA's upload or our sidecar's, same shape: ``decision_id``,
``path``, ``input``, ``result``, ``timestamp``, ``bundles``, ``labels``, ``erased``,
``masked``, ``error`` ...) becomes one ``decision`` audit event:

* ``session_id`` = ``input.session.id``, ``actor`` = ``input.actor.human.id``,
  ``ts_ns`` = ``timestamp`` (RFC 3339, nanoseconds kept);
* payload ``{decision_id, source: "opa", path, request_id, outcome, reasons, intent, revision,
  intent_revision, tool, operation, fingerprint, erased}`` (+ ``masked`` when OPA masked
  fields). ``outcome`` is ``result.outcome``; a boolean result (or ``result.allow``) reads as
  allow/deny, a missing result as ``undefined`` and an evaluation error as ``error`` with the
  error as its reason. ``revision`` is ``result.policy.revision``, else the bundle revision.

Only those fields are copied: the event's ``input`` (parameters, purpose, headers) never
reaches the store. The audit ``event_id`` is ``decision:<decision_id>``, the same id a
``decision`` appended by the enforcement point gets, so an upload that repeats a decision (a
retry, or a decision the Guard already recorded) is stored once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9})\d*)?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))$"
)


def decision_event_id(decision_id: str) -> str:
    """The audit event id of a decision: one decision, one event, whoever reports it."""
    return f"decision:{decision_id}"


def parse_timestamp_ns(value: Any) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 timestamp (Go's RFC3339Nano included), or
    None when `value` is not one."""
    if not isinstance(value, str):
        return None
    match = _RFC3339.match(value.strip())
    if match is None:
        return None
    date, hh, mm, ss, frac, zulu, sign, oh, om = match.groups()
    try:
        base = datetime.fromisoformat(f"{date}T{hh}:{mm}:{ss}").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    ns = int(base.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))
    if not zulu:
        offset = (int(oh) * 60 + int(om)) * 60 * 1_000_000_000
        ns = ns - offset if sign == "+" else ns + offset
    return ns


class OpaDecision(NamedTuple):
    event_id: str
    ts_ns: int
    session_id: str | None
    actor: str | None
    payload: dict[str, Any]


def decision_from_opa(event: Mapping[str, Any]) -> OpaDecision | None:
    """Map one OPA decision-log event; None when it carries no decision id (nothing to dedupe
    on, and OPA always sends one)."""
    decision_id = event.get("decision_id")
    if not isinstance(decision_id, str) or not decision_id:
        return None
    inp = event.get("input")
    inp = inp if isinstance(inp, Mapping) else {}
    result = event.get("result")
    action = _obj(inp, "action")
    outcome, reasons = _outcome(result, event.get("error"))
    res = result if isinstance(result, Mapping) else {}
    policy = _obj(res, "policy")
    payload: dict[str, Any] = {
        "decision_id": decision_id,
        "source": "opa",
        "path": _str(event.get("path")),
        "request_id": _str(inp.get("request_id")),
        "outcome": outcome,
        "reasons": reasons,
        "intent": _str(res.get("intent")) or _str(_obj(inp, "intent").get("id")),
        "revision": _str(policy.get("revision")) or _bundle_revision(event),
        "intent_revision": _str(policy.get("intent_revision")),
        "tool": _str(action.get("tool")),
        "operation": _str(action.get("operation")),
        "fingerprint": _str(action.get("fingerprint")),
        "erased": _strings(event.get("erased")),
    }
    masked = _strings(event.get("masked"))
    if masked:
        payload["masked"] = masked
    ts_ns = parse_timestamp_ns(event.get("timestamp"))
    return OpaDecision(
        event_id=decision_event_id(decision_id),
        ts_ns=time.time_ns() if ts_ns is None else ts_ns,
        session_id=_str(_obj(inp, "session").get("id")),
        actor=_str(_obj(_obj(inp, "actor"), "human").get("id")),
        payload=payload,
    )


def _outcome(result: Any, error: Any) -> tuple[str, list[dict[str, str]]]:
    if error:
        err = error if isinstance(error, Mapping) else {"message": str(error)}
        code = _str(err.get("code")) or "error"
        return "error", [{"code": code, "message": _str(err.get("message")) or ""}]
    if isinstance(result, bool):
        return ("allow" if result else "deny"), []
    if isinstance(result, Mapping):
        reasons = [
            {"code": str(r.get("code", "")), "message": str(r.get("message", ""))}
            for r in result.get("reasons") or []
            if isinstance(r, Mapping)
        ]
        outcome = result.get("outcome")
        if isinstance(outcome, str) and outcome:
            return outcome, reasons
        if isinstance(result.get("allow"), bool):
            return ("allow" if result["allow"] else "deny"), reasons
        return "unknown", reasons
    if result is None:
        return "undefined", []
    return "unknown", []


def _bundle_revision(event: Mapping[str, Any]) -> str | None:
    bundles = event.get("bundles")
    if isinstance(bundles, Mapping) and bundles:
        # Our bundle is named "aam"; with several, prefer it, else the first by name.
        name = "aam" if "aam" in bundles else sorted(bundles)[0]
        info = bundles[name]
        if isinstance(info, Mapping) and _str(info.get("revision")):
            return _str(info.get("revision"))
    return _str(event.get("revision"))  # the deprecated single-bundle field


def _obj(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return sorted({v for v in value if isinstance(v, str)})
