"""Shared builders for the engine tests (not a test module)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "engine"
BUNDLE = DATA / "bundle"
SUITE = DATA / "suite"
REPO = Path(__file__).resolve().parent.parent


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return root


def tar_of_dir(source: Path, target: Path, prefix: str = "") -> Path:
    """A .tar.gz of `source` (names prefixed with `prefix`, e.g. "/" as `opa build` writes)."""
    with tarfile.open(target, "w:gz") as tar:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=prefix + path.relative_to(source).as_posix())
    return target


def tar_with(target: Path, members: list[tuple[str, Any]]) -> Path:
    """Build a tarball from (name, content) pairs; content may be bytes, str, or a TarInfo
    transformer (callable) for links and special files."""
    with tarfile.open(target, "w:gz") as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if callable(content):
                content(info)
                tar.addfile(info)
                continue
            raw = content.encode("utf-8") if isinstance(content, str) else content
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return target


def request(intent: str = "demo-intent", **action: Any) -> dict[str, Any]:
    """A small request for the hand-written test bundle."""
    base_action: dict[str, Any] = {
        "tool": "payments.refund",
        "operation": "write",
        "parameters": {"amount": 20},
        "target": {"environment": "production"},
    }
    base_action.update(action)
    return {"intent": {"id": intent}, "action": base_action}


# Requests covering every outcome of the hand-written bundle (and a few odd shapes).
REQUESTS: list[dict[str, Any]] = [
    request(),  # small refund -> allow
    request(parameters={"amount": 500}),  # -> escalate
    request(parameters={"amount": "500"}),  # not a number: no escalation -> allow
    request(tool="email.send_external"),  # -> deny tool_not_in_intent
    request(operation="delete"),  # -> deny operation_not_allowed
    request("other-intent", tool="deploy.rollout", operation="execute"),  # -> escalate
    request("other-intent", tool="deploy.rollout", operation="execute", target={}),  # -> allow
    request("no-such-intent"),  # -> deny no_intent
    {"intent": {"id": 42}},  # -> deny no_intent (id not a string)
    {"action": {"tool": "payments.refund"}},  # no intent at all
]
