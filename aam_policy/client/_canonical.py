"""Canonical JSON and the hashes the enforcement point puts into `input`.

Canonical JSON is ``json.dumps(value, sort_keys=True, separators=(",", ":"),
ensure_ascii=False, allow_nan=False)`` encoded as UTF-8: byte-identical to
`aam_policy.audit.canonical_json` (a test pins that), defined here because the client depends
on nothing but HTTP and everyone else may depend on the client.

* ``action.fingerprint`` = sha256 hex of the canonical JSON of the action's ``tool``,
  ``operation``, ``target`` and ``parameters`` (a missing one counts as null). An approval
  grant is bound to this value, so the client, the session broker
  (`aam_policy.sessions.action_fingerprint` is this function) and the policy must agree.
* ``intent.prompt_sha256`` = sha256 hex of the UTF-8 prompt (lone surrogates kept, as
  `aam_policy.audit.prompt_digest` does), so the audit trail's prompt digest matches what the
  policy saw.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

FINGERPRINT_FIELDS = ("tool", "operation", "target", "parameters")


def canonical_json(value: Any) -> str:
    """Deterministic JSON text: sorted keys, no whitespace, UTF-8, no NaN/Infinity."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def action_fingerprint(action: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of an action's tool, operation, target and parameters.

    Any other key (the ``fingerprint`` itself included) is ignored.
    """
    subject = {key: action.get(key) for key in FINGERPRINT_FIELDS}
    return hashlib.sha256(canonical_json(subject).encode("utf-8")).hexdigest()


def prompt_sha256(prompt: str) -> str:
    """sha256 hex of the UTF-8 prompt: what `input.intent.prompt_sha256` carries instead of it."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, not {type(prompt).__name__}")
    return hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()
