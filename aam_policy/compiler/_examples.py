"""Examples -> generated Rego tests: the baseline request, the merge, the test cases."""

from __future__ import annotations

import copy
import re
from typing import Any

from aam_policy.compiler._validate import check_intent

T0_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z: a fixed "now" keeps tests reproducible
NS = 1_000_000_000
# "now" in a baseline: 1 ms after the session opened, inside even the shortest (1 s) TTL
_NOW_OFFSET_NS = 1_000_000
REQUEST_ID = "00000000-0000-4000-8000-000000000000"
DEFAULT_HUMAN = "alice@example.com"
_MAX_SLUG = 60


def baseline_request(intent: Any) -> dict[str, Any]:
    """A complete enriched request the intent allows (barring escalate rules without `when`):
    the first principal, agent, tool, operation and environment, a fresh session, fixed time.

    Accepts an `Intent` or its dict. Examples are merged over this (see `merge_request`).
    """
    _, doc = check_intent(intent)
    return _baseline(doc)


def _baseline(doc: dict[str, Any]) -> dict[str, Any]:
    meta, spec = doc["metadata"], doc["spec"]
    principals = spec["principals"]
    human = principals["humans"][0] if principals["humans"] else DEFAULT_HUMAN
    roles = principals["human_roles"][:1]
    # An intent open only to groups would deny a baseline without one: take the first group
    # only then, so every other baseline is exactly the documented one.
    groups = principals["groups"][:1] if not roles and not principals["humans"] else []
    agent = principals["agents"][0]
    tool = spec["tools"][0]
    environments = spec["environments"]
    return {
        "request_id": REQUEST_ID,
        "actor": {
            "human": {"id": human, "roles": roles, "groups": groups},
            "agent": {"id": agent, "kind": "assistant", "owner": meta["owner"]},
        },
        "delegation": [],
        "intent": {"id": meta["id"], "purpose": meta["description"], "prompt_sha256": "0" * 64},
        "action": {
            "tool": tool["name"],
            "operation": tool["operations"][0],
            "target": {
                "system": "example",
                "resource": "example/1",
                "environment": environments[0] if environments else "production",
            },
            "parameters": {},
            "fingerprint": "f" * 64,
        },
        "data": {"sensitivity": "public", "categories": []},
        "session": {
            "id": "sess_example",
            "intent": meta["id"],
            "human": human,
            "agent": agent,
            "issued_at_ns": T0_NS,
            "expires_at_ns": T0_NS + spec["session"]["max_ttl"] * NS,
            "revoked": False,
            "actions_used": 0,
            "tools_used": [],
            "max_sensitivity_seen": "public",
            "approvals": [],
        },
        "context": {"time_ns": T0_NS + _NOW_OFFSET_NS, "break_glass": None},
    }


def merge_request(base: Any, patch: Any) -> Any:
    """Deep merge: dicts merge recursively, anything else (lists, scalars, null) replaces."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = {key: copy.deepcopy(value) for key, value in base.items() if key not in patch}
        for key, value in patch.items():
            merged[key] = merge_request(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(patch)


def example_rule_name(name: str, index: int) -> str:
    """`test_<slug>_<index>`: readable, a valid identifier, unique (the index is)."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if len(slug) > _MAX_SLUG:  # cut at a word boundary when there is one
        cut = slug[: _MAX_SLUG + 1]
        slug = cut[: cut.rindex("_")] if "_" in cut[_MAX_SLUG // 2 :] else slug[:_MAX_SLUG]
    return f"test_{slug or 'example'}_{index}"


def example_cases(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """What `intent_test.rego.j2` renders: one case per example of a checked intent dict."""
    base = _baseline(doc)
    return [
        {
            "index": index,
            "name": example["name"],
            "rule": example_rule_name(example["name"], index),
            "request": merge_request(base, example["request"]),
            "outcome": example["expect"]["outcome"],
            "reasons": sorted(set(example["expect"]["reasons"])),
        }
        for index, example in enumerate(doc["spec"]["examples"])
    ]
