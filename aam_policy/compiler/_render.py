"""One checked intent -> its Rego module, its Rego test module and its registry entry."""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any, NoReturn

import jinja2

from aam_policy.compiler._errors import CompileError
from aam_policy.compiler._examples import example_cases
from aam_policy.compiler._rego import (
    ConditionCompiler,
    Helper,
    compact_json,
    package_name,
    rego_block,
    rego_inline,
)


def _unsupported(what: Any) -> NoReturn:
    # reached only if the checker and the template disagree: fail the compile, emit nothing
    raise CompileError(f"internal error: the template cannot render {what!r}")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """Templates in `aam_policy/compiler/templates`. Not HTML, so no autoescape: every value
    from an intent goes through the `rego` / `rego_block` filters (JSON encoding) instead."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("aam_policy.compiler", "templates"),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["rego"] = rego_inline
    env.filters["rego_block"] = rego_block
    env.filters["compact_json"] = compact_json
    env.globals["unsupported"] = _unsupported
    return env


def intent_revision(original: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the intent as validated (sorted keys, no spaces)."""
    canonical = json.dumps(
        original, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def registry_entry(original: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    """`data.aam.registry[id]`: the static part of the intent the core library reads."""
    meta, spec = doc["metadata"], doc["spec"]
    delegation = spec["delegation"] or {"max_depth": 0, "agents": []}
    glass = spec["break_glass"] or {"allowed": False, "max_ttl": None}
    return {
        "id": meta["id"],
        "package": package_name(meta["id"]),
        "owner": meta["owner"],
        "revision": intent_revision(original),
        "principals": {
            key: spec["principals"][key] for key in ("human_roles", "humans", "groups", "agents")
        },
        "session": {
            "max_ttl_seconds": spec["session"]["max_ttl"],
            "max_actions": spec["session"]["max_actions"],
        },
        "environments": spec["environments"],
        "tools": {
            tool["name"]: {
                "operations": tool["operations"],
                "max_sensitivity": tool["max_sensitivity"],
            }
            for tool in spec["tools"]
        },
        "chaining": spec["chaining"],
        "delegation": {"max_depth": delegation["max_depth"], "agents": delegation["agents"]},
        "break_glass": {"allowed": glass["allowed"], "max_ttl_seconds": glass["max_ttl"]},
    }


def render_intent_module(doc: dict[str, Any], entry: dict[str, Any], bundle_revision: str) -> str:
    """`aam/intents/<pkg>.rego`: `decision`, which holds the registry `entry` with the bundle
    revision (a JSON string read by json.unmarshal) and every tool's escalate rules as locals,
    then the helper rules of conditions that one body cannot hold."""
    escalations: list[dict[str, Any]] = []
    helpers: list[Helper] = []
    for t, tool in enumerate(doc["spec"]["tools"]):
        for r, rule in enumerate(tool["escalate"]):
            where = f"spec.tools[{t}].escalate[{r}]"
            condition: list[dict[str, Any]] = []
            if rule["when"] is not None:
                compiler = ConditionCompiler(f"cond_{t}_{r}", f"{where}.when")
                condition = compiler.compile(rule["when"])
                helpers.extend(compiler.helpers)
            escalations.append(
                {
                    "where": where,
                    "tool": tool["name"],
                    "rule": r,
                    "approvers": rule["approvers"],
                    "reason": rule["reason"],
                    "approval_ttl_seconds": rule["approval_ttl"],
                    "condition": condition,
                }
            )
    meta = doc["metadata"]
    template = environment().get_template("intent.rego.j2")
    return template.render(
        id=meta["id"],
        package=package_name(meta["id"]),
        escalations=escalations,
        helpers=helpers,
        entry={**entry, "bundle_revision": bundle_revision},
    )


def render_test_module(doc: dict[str, Any]) -> str:
    """`aam/tests/<pkg>_test.rego`: one `test_*` rule per example."""
    meta = doc["metadata"]
    template = environment().get_template("intent_test.rego.j2")
    return template.render(
        id=meta["id"], package=package_name(meta["id"]), cases=example_cases(doc)
    )
