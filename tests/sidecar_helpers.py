"""Shared builders for the sidecar tests (not a test module).

The tests run the real sidecar process (`SidecarProcess`) over a tiny hand-written bundle
(tests/data/sidecar/bundle) whose decision depends on the input alone: tool known to intent
"demo" -> allow, amount over 100 -> escalate, unknown tool -> deny, unknown intent -> deny
no_intent. It echoes `data.aam.bundle.revision` in `policy.revision`, which is how the reload
tests see which bundle answered.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "sidecar"
TINY_BUNDLE = DATA / "bundle"
REVISION = "tiny-1"


def bundle_copy(target: Path, revision: str = REVISION) -> Path:
    """A writable copy of the tiny bundle with `revision` in .manifest and data.json."""
    shutil.copytree(TINY_BUNDLE, target)
    set_revision(target, revision)
    return target


def set_revision(bundle: Path, revision: str) -> None:
    manifest = json.loads((bundle / ".manifest").read_text())
    manifest["revision"] = revision
    data = json.loads((bundle / "data.json").read_text())
    data["aam"]["bundle"]["revision"] = revision
    # data first, manifest last: the order a compiler writing in place would use
    (bundle / "data.json").write_text(json.dumps(data))
    (bundle / ".manifest").write_text(json.dumps(manifest))


def tarball(source: Path, target: Path) -> Path:
    """`source` as a .tar.gz bundle, written next to `target` then renamed over it."""
    tmp = target.with_name(target.name + ".tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(source).as_posix())
    os.replace(tmp, target)
    return target


def request(
    tool: str = "crm.read_ticket",
    amount: float | None = None,
    intent: str = "demo",
    purpose: str = "look at ticket 42 for customer jane@example.com",
) -> dict[str, Any]:
    """An enriched request shaped like DESIGN.md's (only some fields matter to the tiny policy)."""
    parameters: dict[str, Any] = {} if amount is None else {"amount": amount, "currency": "EUR"}
    return {
        "request_id": "00000000-0000-4000-8000-000000000000",
        "actor": {
            "human": {"id": "alice@example.com", "roles": ["support-agent"], "groups": []},
            "agent": {"id": "spiffe://example.org/agents/support-bot", "kind": "assistant"},
        },
        "delegation": [],
        "intent": {"id": intent, "purpose": purpose, "prompt_sha256": "ab" * 32},
        "action": {
            "tool": tool,
            "operation": "read",
            "target": {"system": "crm", "resource": "ticket/42", "environment": "production"},
            "parameters": parameters,
            "fingerprint": "cd" * 32,
        },
        "data": {"sensitivity": "internal", "categories": []},
        "context": {"time_ns": 1767225601000000000, "break_glass": None},
    }


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
