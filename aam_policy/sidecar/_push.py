"""`push_bundle`: load a compiled bundle into a running OPA (real or ours) over its REST API.

Uses opa-python-client, so it talks to a real OPA exactly as it talks to our sidecar:
wait for `GET /health`, `PUT /v1/data/<root>` for each manifest root, `PUT /v1/policies/<path>`
for every module (the policy id is the module's path in the bundle), then delete policies a
previous push left under the bundle's directories that the new bundle no longer has.

Data goes first so no module is ever live without its data. Real OPA compiles every uploaded
module against the ones already loaded and rejects a call to a function it does not know yet,
so modules are uploaded in passes: whatever failed is retried once the others are in, until a
pass makes no progress (then the first error is reported).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from opa_client import OpaClient
from opa_client.errors import ConnectionsError, DeletePolicyError, RegoParseError
from requests import RequestException

from aam_policy.engine import PolicyLoadError, load_policy


class PushError(Exception):
    """The bundle could not be pushed: unreadable bundle, OPA unreachable, or OPA refused it."""


@dataclass(frozen=True)
class PushResult:
    revision: str
    policies: tuple[str, ...]  # policy ids uploaded
    data_paths: tuple[str, ...]  # data documents replaced ("" = the whole data tree)
    removed: tuple[str, ...]  # stale policy ids deleted


def _client_for(url: str, timeout: float) -> OpaClient:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PushError(f"invalid OPA url {url!r} (expected http://HOST:PORT)")
    if parts.path not in ("", "/"):
        raise PushError(f"OPA url {url!r} must not have a path (the API lives at /v1)")
    port = parts.port or (443 if parts.scheme == "https" else 8181)
    return OpaClient(
        host=parts.hostname,
        port=port,
        ssl=parts.scheme == "https",
        timeout=max(timeout, 0.1),
        retries=0,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RegoParseError):
        return str(exc)
    message = getattr(exc, "message", None)
    return str(message or exc)


def push_bundle(bundle: str | Path, url: str, timeout: float = 30.0) -> PushResult:
    """Push the bundle directory or tarball `bundle` into the OPA at `url` (e.g.
    "http://127.0.0.1:8181"), waiting up to `timeout` seconds for it to become healthy.

    Raises PushError with a readable reason on any failure.
    """
    deadline = time.monotonic() + timeout
    try:
        policy = load_policy(bundle)
    except PolicyLoadError as exc:
        raise PushError(f"cannot load bundle {bundle}: {exc}") from None
    modules = {m.name: m.text for m in policy.modules}
    roots: list[str] = []
    for manifest in policy.manifests:
        roots += [r for r in manifest.roots if r not in roots]
    roots = roots or [""]

    client = _client_for(url, min(timeout, 10.0))
    try:
        try:
            client.wait_for_ready(timeout=timeout, interval=0.1)
        except ConnectionsError:
            raise PushError(
                f"OPA at {url} is not reachable or not healthy (waited {timeout:g}s)"
            ) from None
        try:
            data_paths = _push_data(client, policy.data, roots)
            _push_policies(client, modules, deadline)
            removed = _prune(client, modules, roots)
        except (RequestException, ConnectionsError) as exc:
            raise PushError(f"lost connection to OPA at {url}: {_describe(exc)}") from None
    finally:
        client.close_connection()
    return PushResult(policy.revision, tuple(modules), tuple(data_paths), tuple(removed))


def _value_at(data: dict[str, Any], root: str) -> Any:
    node: Any = data
    for key in (p for p in root.split("/") if p):
        node = node.get(key) if isinstance(node, dict) else None
    return node if node is not None else {}


def _push_data(client: OpaClient, data: dict[str, Any], roots: list[str]) -> list[str]:
    """Replace the document at each manifest root, as activating the bundle would."""
    pushed = []
    for root in roots:
        value = _value_at(data, root)
        if not isinstance(value, dict):
            raise PushError(f"data at root {root!r} is not a JSON object; OPA clients need one")
        try:
            client.update_or_create_data(value, root.strip("/"))
        except RegoParseError as exc:  # how opa-python-client reports a refused data PUT
            raise PushError(f"OPA refused data at /{root}: {_describe(exc)}") from None
        pushed.append(root)
    return pushed


def _push_policies(client: OpaClient, modules: dict[str, str], deadline: float) -> None:
    pending = sorted(modules, key=lambda name: (not name.startswith("aam/core/"), name))
    errors: dict[str, str] = {}
    while pending:
        failed: list[str] = []
        for name in pending:
            try:
                client.update_policy_from_string(modules[name], name, rego_compat=False)
                errors.pop(name, None)
            except RegoParseError as exc:
                failed.append(name)
                errors[name] = _describe(exc)
        if len(failed) == len(pending) or time.monotonic() > deadline:
            first = failed[0]
            raise PushError(
                f"OPA refused {len(failed)} module(s); {first}: {errors[first]}"
            ) from None
        pending = failed


def _prune(client: OpaClient, modules: dict[str, str], roots: list[str]) -> list[str]:
    """Delete policies left by an earlier push of this bundle that it no longer contains."""
    prefixes = [r.strip("/") + "/" for r in roots if r.strip("/")]
    if not prefixes:
        return []  # a bundle owning everything: no way to tell its old modules from others'
    removed = []
    for policy_id in client.get_policies_list():
        if policy_id in modules or not any(policy_id.startswith(p) for p in prefixes):
            continue
        if not policy_id.endswith(".rego"):
            continue
        try:
            client.delete_policy(policy_id)
            removed.append(policy_id)
        except DeletePolicyError:  # owned by a bundle, or gone meanwhile: not ours to force
            continue
    return removed
