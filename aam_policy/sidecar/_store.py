"""What the sidecar serves: the active bundle plus what clients wrote through the REST API.

A `Snapshot` is immutable: every write (`PUT /v1/policies/x`, `PATCH /v1/data/y`, a bundle
reload) derives a new snapshot, an engine is built from it, and only when that succeeds does
the new snapshot become active. A failed write therefore never changes what is served.

Ownership follows OPA: the bundle owns the documents under its manifest `roots` (all of `data`
when it has no roots), so the API refuses to write data or policy packages there; everything
else is an in-memory overlay that lives next to the bundle and survives bundle reloads. This is
what keeps a local process from rewriting `data.aam.registry` behind the policy author's back.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aam_policy.engine import Manifest, Module, PolicySet

from ._errors import ApiError, invalid, not_found

BUNDLE_NAME = "aam"  # the name bundles are reported under (health, provenance, decision logs)

Parts = tuple[str, ...]

_PACKAGE = re.compile(r"^[ \t]*package[ \t]+(?P<ref>[^\s#]+)", re.MULTILINE)
_REF_SEGMENT = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_]*)|\[\s*"((?:[^"\\]|\\.)*)"\s*\]')
# A top-level rule head: `name`, `default name`, followed by what can follow a head.
_RULE_HEAD = re.compile(
    r"^(?:default[ \t]+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?=[ \t]*(?::=|=|\[|\(|\{|\.|$)|[ \t]+(?:if|contains)\b)",
    re.MULTILINE,
)
_NOT_RULES = frozenset(
    {"package", "import", "default", "else", "some", "every", "not", "with", "as", "in", "if"}
)


def package_parts(text: str) -> Parts | None:
    """`("aam", "core")` for `package aam.core` (None when there is no readable package)."""
    match = _PACKAGE.search(text)
    if match is None:
        return None
    ref = match["ref"]
    parts: list[str] = []
    pos = 0
    while pos < len(ref):
        seg = _REF_SEGMENT.match(ref, pos)
        if seg is None or seg.end() == pos:
            return None
        parts.append(seg[1] if seg[1] is not None else seg[2])
        pos = seg.end()
    return tuple(parts) or None


def outline(text: str) -> dict[str, Any]:
    """The part of OPA's module AST that clients read: package path and rule names.

    opa-python-client's `get_policies_info` builds rule URLs from exactly these fields.
    """
    package = package_parts(text) or ()
    names: list[str] = []
    for match in _RULE_HEAD.finditer(text):
        name = match["name"]
        if name not in _NOT_RULES and name not in names:
            names.append(name)
    return {
        "package": {
            "path": [{"type": "var", "value": "data"}]
            + [{"type": "string", "value": p} for p in package]
        },
        "rules": [{"head": {"name": n}} for n in names],
    }


def parse_pointer(pointer: Any) -> Parts:
    """RFC 6901 JSON pointer -> path segments ("" is the whole document)."""
    if not isinstance(pointer, str):
        raise invalid("patch path must be a string (a JSON pointer such as /a/b)")
    if pointer in ("", "/"):
        return ()
    if not pointer.startswith("/"):
        raise invalid(f"patch path {pointer!r} must start with /")
    return tuple(p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/"))


def _overlaps(a: Parts, b: Parts) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _show(parts: Parts) -> str:
    return "/" + "/".join(parts)


@dataclass(frozen=True)
class LoadedBundle:
    """A bundle as loaded from disk: its modules, data and manifest, and where it came from."""

    source: str
    modules: tuple[Module, ...]
    data: Mapping[str, Any]
    manifests: tuple[Manifest, ...]
    revision: str
    roots: tuple[Parts, ...]

    @classmethod
    def from_policy(cls, source: str, policy: PolicySet) -> LoadedBundle:
        roots: list[Parts] = []
        for manifest in policy.manifests:
            for root in manifest.roots:
                parts = tuple(p for p in root.split("/") if p)
                if parts not in roots:
                    roots.append(parts)
        # Without a manifest (or with roots [""]) the bundle owns the whole data tree, as in OPA.
        return cls(
            source=source,
            modules=policy.modules,
            data=policy.data,
            manifests=policy.manifests,
            revision=policy.revision,
            roots=tuple(roots) or ((),),
        )


@dataclass(frozen=True)
class CustomPolicy:
    id: str
    text: str
    package: Parts


@dataclass(frozen=True)
class Snapshot:
    """Immutable state: bundle + policies and data written through the API."""

    bundle: LoadedBundle | None = None
    policies: Mapping[str, CustomPolicy] = field(default_factory=dict)
    overlay: Mapping[str, Any] = field(default_factory=dict)

    # --- reading --------------------------------------------------------------------------

    @property
    def roots(self) -> tuple[Parts, ...]:
        return self.bundle.roots if self.bundle is not None else ()

    @property
    def revision(self) -> str | None:
        return self.bundle.revision if self.bundle is not None else None

    def owner_of(self, parts: Parts) -> str | None:
        """Name of the bundle owning the document at `parts` (or overlapping it), else None."""
        if any(_overlaps(parts, root) for root in self.roots):
            return BUNDLE_NAME
        return None

    def policy_set(self) -> PolicySet:
        modules = list(self.bundle.modules) if self.bundle is not None else []
        modules += [
            Module(path=p.id, name=p.id, text=p.text)
            for p in sorted(self.policies.values(), key=lambda p: p.id)
        ]
        data = copy.deepcopy(dict(self.bundle.data)) if self.bundle is not None else {}
        _merge_disjoint(data, copy.deepcopy(dict(self.overlay)))
        return PolicySet(
            modules=tuple(modules),
            data=data,
            manifests=self.bundle.manifests if self.bundle is not None else (),
            sources=(self.bundle.source,) if self.bundle is not None else (),
        )

    def bundle_policy_ids(self) -> list[str]:
        return [m.name for m in self.bundle.modules] if self.bundle is not None else []

    def list_policies(self) -> list[dict[str, Any]]:
        out = []
        if self.bundle is not None:
            out += [_policy_doc(m.name, m.text) for m in self.bundle.modules]
        out += [_policy_doc(p.id, p.text) for p in sorted(self.policies.values(), key=_by_id)]
        return out

    def get_policy(self, policy_id: str) -> dict[str, Any]:
        if self.bundle is not None:
            for module in self.bundle.modules:
                if module.name == policy_id:
                    return _policy_doc(module.name, module.text)
        custom = self.policies.get(policy_id)
        if custom is None:
            raise not_found(f"storage_not_found_error: policy id {policy_id!r}")
        return _policy_doc(custom.id, custom.text)

    # --- deriving ---------------------------------------------------------------------------

    def with_bundle(self, bundle: LoadedBundle) -> tuple[Snapshot, list[str]]:
        """This snapshot serving `bundle`; also the overlay paths the new roots took over.

        Like OPA activating a bundle, overlay data under the new bundle's roots is replaced by
        the bundle's. A policy written through the API whose package falls under the new roots
        cannot be dropped silently, so such a bundle is refused.
        """
        for custom in self.policies.values():
            if any(_overlaps(custom.package, root) for root in bundle.roots):
                raise ValueError(
                    f"policy {custom.id!r} (package {'.'.join(custom.package)}) written through "
                    "the API lies under the new bundle's roots; delete it first"
                )
        overlay = copy.deepcopy(dict(self.overlay))
        dropped: list[str] = []
        for root in bundle.roots:
            if not root:
                dropped += [_show((k,)) for k in overlay]
                overlay = {}
                break
            if _remove(overlay, root):
                dropped.append(_show(root))
        return Snapshot(bundle, self.policies, overlay), dropped

    def with_policy(self, policy_id: str, text: str) -> Snapshot:
        self._check_policy_id(policy_id)
        package = package_parts(text)
        if package is not None:
            owner = self.owner_of(package)
            if owner is not None:
                raise invalid(
                    f"package {'.'.join(package)} is owned by bundle {owner!r} "
                    f"(roots {[_show(r) for r in self.roots]}); it cannot be changed by the API"
                )
        policies = dict(self.policies)
        policies[policy_id] = CustomPolicy(policy_id, text, package or ())
        return Snapshot(self.bundle, policies, self.overlay)

    def without_policy(self, policy_id: str) -> Snapshot:
        self._check_policy_id(policy_id)
        if policy_id not in self.policies:
            raise not_found(f"storage_not_found_error: policy id {policy_id!r}")
        policies = dict(self.policies)
        del policies[policy_id]
        return Snapshot(self.bundle, policies, self.overlay)

    def _check_policy_id(self, policy_id: str) -> None:
        if policy_id in self.bundle_policy_ids():
            raise invalid(f"policy {policy_id!r} is owned by bundle {BUNDLE_NAME!r}")

    def data_exists(self, parts: Parts) -> bool:
        found, _ = _lookup(self.overlay, parts)
        return found

    def with_data(self, parts: Parts, value: Any) -> Snapshot:
        """PUT: create or replace the document at `parts` (missing parents become objects)."""
        self._check_writable(parts)
        if not parts:
            if not isinstance(value, dict):
                raise invalid("the root document must be a JSON object")
            return Snapshot(self.bundle, self.policies, copy.deepcopy(value))
        overlay = copy.deepcopy(dict(self.overlay))
        node: Any = overlay
        for i, key in enumerate(parts[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            elif not isinstance(child, dict):
                raise invalid(f"cannot write under {_show(parts[: i + 1])}: it is not an object")
            node = child
        node[parts[-1]] = value
        return Snapshot(self.bundle, self.policies, overlay)

    def without_data(self, parts: Parts) -> Snapshot:
        self._check_writable(parts)
        if not parts:
            return Snapshot(self.bundle, self.policies, {})
        overlay = copy.deepcopy(dict(self.overlay))
        if not _remove(overlay, parts):
            raise not_found(f"storage_not_found_error: {_show(parts)}: document does not exist")
        return Snapshot(self.bundle, self.policies, overlay)

    def patched(self, parts: Parts, ops: Any) -> Snapshot:
        """PATCH: apply a JSON Patch (add / remove / replace, as OPA supports) under `parts`."""
        if not isinstance(ops, list):
            raise invalid("a PATCH body must be a JSON array of patch operations")
        root: dict[str, Any] = copy.deepcopy(dict(self.overlay))
        for index, op in enumerate(ops):
            if not isinstance(op, dict):
                raise invalid(f"patch operation {index} must be a JSON object")
            kind = op.get("op")
            if kind not in ("add", "remove", "replace"):
                raise invalid(f"patch operation {index}: op must be add, remove or replace")
            target = parts + parse_pointer(op.get("path"))
            self._check_writable(target)
            if kind != "remove" and "value" not in op:
                raise invalid(f"patch operation {index}: {kind} needs a value")
            root = _apply(root, kind, target, op.get("value"))
        return Snapshot(self.bundle, self.policies, root)

    def _check_writable(self, parts: Parts) -> None:
        owner = self.owner_of(parts)
        if owner is not None:
            raise invalid(
                f"path {_show(parts)} is owned by bundle {owner!r} "
                f"(roots {[_show(r) for r in self.roots]}); it cannot be changed by the API"
            )


def _by_id(policy: CustomPolicy) -> str:
    return policy.id


def _policy_doc(policy_id: str, text: str) -> dict[str, Any]:
    return {"id": policy_id, "raw": text, "ast": outline(text)}


def _lookup(doc: Any, parts: Sequence[str]) -> tuple[bool, Any]:
    node = doc
    for key in parts:
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False, None
    return True, node


def _remove(doc: dict[str, Any], parts: Parts) -> bool:
    found, parent = _lookup(doc, parts[:-1])
    if not found:
        return False
    key = parts[-1]
    if isinstance(parent, dict) and key in parent:
        del parent[key]
        return True
    if isinstance(parent, list) and key.isdigit() and int(key) < len(parent):
        del parent[int(key)]
        return True
    return False


def _apply(root: dict[str, Any], kind: str, parts: Parts, value: Any) -> dict[str, Any]:
    if not parts:
        if kind == "remove":
            return {}
        if not isinstance(value, dict):
            raise invalid("the root document must be a JSON object")
        return copy.deepcopy(value)
    found, parent = _lookup(root, parts[:-1])
    if not found:
        raise not_found(f"storage_not_found_error: {_show(parts[:-1])}: document does not exist")
    key = parts[-1]
    value = copy.deepcopy(value)
    if isinstance(parent, dict):
        if kind != "add" and key not in parent:
            raise not_found(f"storage_not_found_error: {_show(parts)}: document does not exist")
        if kind == "remove":
            del parent[key]
        else:
            parent[key] = value
        return root
    if isinstance(parent, list):
        if kind == "add" and key == "-":
            parent.append(value)
            return root
        if not key.isdigit():
            raise invalid(f"{_show(parts)}: array index must be a number")
        index = int(key)
        limit = len(parent) + (1 if kind == "add" else 0)
        if index >= limit:
            raise not_found(f"storage_not_found_error: {_show(parts)}: index out of range")
        if kind == "add":
            parent.insert(index, value)
        elif kind == "remove":
            del parent[index]
        else:
            parent[index] = value
        return root
    raise ApiError(
        400, "invalid_parameter", f"{_show(parts[:-1])} is neither an object nor an array"
    )


def _merge_disjoint(base: dict[str, Any], extra: dict[str, Any]) -> None:
    """Merge the overlay into the bundle's data; ownership rules keep them disjoint."""
    for key, value in extra.items():
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            _merge_disjoint(base[key], value)
        else:
            base[key] = value
