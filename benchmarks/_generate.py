"""Deterministic, realistic intent templates and enriched requests for the benchmarks.

Every generated intent looks like one a policy author would write: 4-6 tools drawn from a
business domain (support, treasury, platform, people, analytics, procurement), escalate rules
built from `all:` / `any:` / `not:` conditions over the action's parameters and data classes,
chaining rules (after restricted data, after a given tool), delegation to a planner agent,
break-glass and environments on some intents, and a few examples (which become generated Rego
tests). Same `(n, seed)` -> byte-identical intents.

`generate_requests` builds enriched requests for those intents, each labelled with the outcome
and reason codes the policy must give (allow / deny / escalate in a configurable mix), so the
harness can check that what it times is the real decision and not a fast error path.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aam_policy.client import action_fingerprint
from aam_policy.compiler import baseline_request, merge_request

NS = 1_000_000_000
LEVELS = ("public", "internal", "confidential", "restricted")

# --- escalation rule kinds -------------------------------------------------------------------
# Each kind gives the condition, a request patch under which it does NOT hold ("safe") and one
# under which it holds ("trigger"). Patches touch disjoint parameter names, so the safe patches
# of every rule on a tool can be merged together and any one trigger applied on top.


@dataclass(frozen=True)
class RuleKind:
    name: str
    condition: dict[str, Any]
    safe: dict[str, Any]
    trigger: dict[str, Any]
    remove: tuple[str, ...] = ()  # dotted paths the trigger deletes (for `exists: false`)
    reason: str = ""


def _p(**params: Any) -> dict[str, Any]:
    return {"action": {"parameters": params}}


def _rule_kinds(rng: random.Random) -> list[RuleKind]:
    amount = rng.choice([100, 250, 500, 1000, 5000, 10000])
    big = rng.choice([10000, 25000, 50000])
    home = rng.sample(["DE", "FR", "NL", "BE", "AT", "IT", "ES", "PL"], 4)
    replicas = rng.choice([5, 10, 20])
    return [
        RuleKind(
            "amount",
            {"field": "action.parameters.amount", "op": "gt", "value": amount},
            _p(amount=amount // 2, currency="EUR"),
            _p(amount=amount * 3),
            reason=f"amounts over {amount} need a lead",
        ),
        RuleKind(
            "foreign-or-big",
            {
                "any": [
                    {"field": "action.parameters.total", "op": "gte", "value": big},
                    {"field": "action.parameters.country", "op": "not_in", "value": home},
                ]
            },
            _p(total=big // 10, country=home[0]),
            _p(country="US"),
            reason="big or foreign payments need sign-off",
        ),
        RuleKind(
            "new-beneficiary",
            {
                "all": [
                    {"field": "action.parameters.beneficiary_new", "op": "eq", "value": True},
                    {"field": "action.parameters.value", "op": "gt", "value": 1000},
                ]
            },
            _p(beneficiary_new=False, value=1500),
            _p(beneficiary_new=True),
            reason="a first payment over 1000 to a new beneficiary needs the controller",
        ),
        RuleKind(
            "no-reference",
            {"field": "action.parameters.reference", "op": "exists", "value": False},
            _p(reference="INV-2026-0042"),
            {},
            remove=("action.parameters.reference",),
            reason="no payment reference",
        ),
        RuleKind(
            "live-scale",
            {
                "all": [
                    {"not": {"field": "action.parameters.dry_run", "op": "eq", "value": True}},
                    {"field": "action.parameters.replicas", "op": "gt", "value": replicas},
                ]
            },
            _p(dry_run=False, replicas=replicas - 1),
            _p(replicas=replicas * 2),
            reason=f"scaling past {replicas} replicas for real needs the platform lead",
        ),
        RuleKind(
            "system-path",
            {
                "any": [
                    {"field": "action.parameters.path", "op": "matches", "value": "/etc/*"},
                    {"field": "action.parameters.path", "op": "matches", "value": "*/secrets/*"},
                ]
            },
            _p(path="/srv/app/releases/current"),
            _p(path="/srv/app/secrets/db.env"),
            reason="system and secret paths need security",
        ),
        RuleKind(
            "pii",
            {
                "all": [
                    {"field": "data.categories", "op": "contains", "value": "pii"},
                    {
                        "not": {
                            "field": "action.parameters.purpose_code",
                            "op": "in",
                            "value": ["legal-hold", "dsar"],
                        }
                    },
                ]
            },
            {"data": {"categories": ["financial"]}, **_p(purpose_code="reporting")},
            {"data": {"categories": ["pii", "financial"]}},
            reason="personal data outside a legal basis needs the DPO",
        ),
        RuleKind(
            "override",
            {"field": "action.parameters.override", "op": "exists", "value": True},
            _p(ticket="CHG-1001"),
            _p(override="manual"),
            reason="manual overrides need a second pair of eyes",
        ),
    ]


# --- domains -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSpec:
    name: str
    operations: tuple[str, ...]
    max_sensitivity: str
    rules: tuple[str, ...] = ()  # RuleKind names; empty: the tool never escalates


DOMAINS: dict[str, dict[str, Any]] = {
    "support": {
        "roles": ["support-agent", "support-lead"],
        "tools": [
            ToolSpec("crm.read_ticket", ("read",), "confidential"),
            ToolSpec("kb.search", ("read",), "internal"),
            ToolSpec("crm.update_ticket", ("write",), "confidential", ("override",)),
            ToolSpec("payments.refund", ("write",), "confidential", ("amount", "no-reference")),
            ToolSpec("email.send_customer", ("write",), "confidential", ("pii",)),
            ToolSpec("crm.export_contacts", ("read",), "restricted", ("pii",)),
        ],
        "egress": ["email.send_external", "files.share_link"],
    },
    "treasury": {
        "roles": ["treasury-analyst"],
        "groups": ["finance-ops"],
        "tools": [
            ToolSpec("erp.read_invoice", ("read",), "confidential"),
            ToolSpec("ledger.read_balance", ("read",), "restricted"),
            ToolSpec(
                "payments.transfer",
                ("transfer",),
                "restricted",
                ("foreign-or-big", "new-beneficiary", "no-reference"),
            ),
            ToolSpec("erp.approve_invoice", ("write",), "confidential", ("amount",)),
            ToolSpec("ledger.post_entry", ("write", "delete"), "restricted", ("override",)),
        ],
        "egress": ["email.send_external"],
    },
    "platform": {
        "roles": ["sre", "platform-engineer"],
        "tools": [
            ToolSpec("k8s.get_pods", ("read",), "internal"),
            ToolSpec("logs.search", ("read",), "confidential"),
            ToolSpec("k8s.scale_deployment", ("write",), "internal", ("live-scale",)),
            ToolSpec("ci.run_pipeline", ("execute",), "internal", ("override",)),
            ToolSpec("fs.write_file", ("write", "delete"), "confidential", ("system-path",)),
            ToolSpec("k8s.delete_namespace", ("delete",), "internal", ("override", "live-scale")),
        ],
        "egress": ["chat.post_public"],
    },
    "people": {
        "roles": ["hr-partner"],
        "humans": ["chro@example.com"],
        "tools": [
            ToolSpec("hr.read_profile", ("read",), "confidential"),
            ToolSpec("calendar.read_events", ("read",), "internal"),
            ToolSpec("hr.update_salary", ("write",), "restricted", ("amount", "override")),
            ToolSpec("hr.export_reviews", ("read",), "restricted", ("pii",)),
            ToolSpec("email.send_internal", ("write",), "confidential"),
        ],
        "egress": ["email.send_external", "files.share_link"],
    },
    "analytics": {
        "roles": ["data-analyst", "data-engineer"],
        "tools": [
            ToolSpec("warehouse.query", ("read",), "confidential"),
            ToolSpec("bi.read_dashboard", ("read",), "internal"),
            ToolSpec("warehouse.export", ("read",), "restricted", ("pii",)),
            ToolSpec("storage.write_object", ("write", "delete"), "confidential", ("system-path",)),
            ToolSpec("jobs.run_notebook", ("execute",), "confidential", ("override",)),
        ],
        "egress": ["files.share_link", "email.send_external"],
    },
    "procurement": {
        "roles": ["buyer"],
        "tools": [
            ToolSpec("catalog.search", ("read",), "public"),
            ToolSpec("erp.read_supplier", ("read",), "confidential"),
            ToolSpec("erp.create_po", ("write",), "confidential", ("amount", "foreign-or-big")),
            ToolSpec("erp.cancel_po", ("delete",), "confidential", ("override",)),
            ToolSpec("email.send_supplier", ("write",), "internal"),
        ],
        "egress": ["email.send_external"],
    },
}
ENVIRONMENTS = ["dev", "staging", "production"]


@dataclass
class GeneratedIntent:
    """One intent dict plus what the request generator needs to know about it."""

    doc: dict[str, Any]
    tools: list[ToolSpec]
    kinds: dict[str, RuleKind]
    egress_tool: str | None  # an intent tool closed by the restricted-data chaining rule
    after_tool: tuple[str, str] | None  # (trigger tool, closed tool) of the tools_used_any rule
    planner: str | None
    break_glass: bool
    environments: list[str] | None
    base: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.doc["metadata"]["id"])


def generate_intents(n: int, seed: int = 7) -> list[GeneratedIntent]:
    """`n` distinct, realistic intents (deterministic in `n` and `seed`)."""
    domains = sorted(DOMAINS)
    return [
        _intent(i, domains[i % len(domains)], random.Random(seed * 1_000_003 + i)) for i in range(n)
    ]


def _intent(i: int, domain: str, rng: random.Random) -> GeneratedIntent:
    spec_d = DOMAINS[domain]
    kinds = {kind.name: kind for kind in _rule_kinds(rng)}
    pool: list[ToolSpec] = spec_d["tools"]
    plain = [t for t in pool if not t.rules]
    escalating = [t for t in pool if t.rules]
    k = rng.randint(4, min(6, len(pool)))
    n_esc = min(len(escalating), max(1, k - len(plain)), rng.randint(1, 3))
    chosen_esc = rng.sample(escalating, n_esc)
    chosen_plain = plain[: max(2, k - n_esc)]
    if len(chosen_plain) + n_esc < 4:  # a small plain pool: more escalating tools instead
        n_esc = 4 - len(chosen_plain)
        chosen_esc = rng.sample(escalating, n_esc)
    tools = chosen_plain + chosen_esc  # a plain read tool first: the baseline request allows
    ident = f"{domain}-{i:05d}"
    agent = f"spiffe://example.org/agents/{domain}-bot-{i}"
    egress_pool = [t.name for t in tools[1:] if t.name.startswith("email.") or "export" in t.name]
    egress_tool = egress_pool[0] if egress_pool else None
    after_tool = (
        (tools[1].name, chosen_esc[-1].name) if len(tools) > 2 and rng.random() < 0.6 else None
    )
    # an escalating tool closed by tools_used_any must not also be the one we time as escalate
    if after_tool is not None and after_tool[1] == chosen_esc[0].name and len(chosen_esc) == 1:
        after_tool = None
    chaining: list[dict[str, Any]] = [
        {
            "after": {"sensitivity_at_least": "restricted"},
            "deny_tools": sorted({*spec_d["egress"], *([egress_tool] if egress_tool else [])}),
            "reason": "restricted data never leaves through these tools",
        }
    ]
    if after_tool is not None:
        chaining.append(
            {
                "after": {"tools_used_any": [after_tool[0]]},
                "deny_tools": [after_tool[1]],
                "reason": f"{after_tool[1]} is closed once {after_tool[0]} ran in the session",
            }
        )
    planner = (
        f"spiffe://example.org/agents/{domain}-planner-{i % 7}" if rng.random() < 0.5 else None
    )
    break_glass = rng.random() < 0.4
    environments = (
        sorted(rng.sample(ENVIRONMENTS, rng.randint(1, 3)), key=ENVIRONMENTS.index)
        if rng.random() < 0.8
        else None
    )
    escalate_rules = {
        t.name: [
            {
                "when": kinds[name].condition,
                "approvers": rng.sample(
                    [
                        "role:team-lead",
                        "role:security",
                        "role:finance-lead",
                        "user:cfo@example.com",
                    ],
                    2,
                ),
                "reason": kinds[name].reason,
                "approval_ttl": rng.choice([300, 900, 1800]),
            }
            for name in t.rules
        ]
        for t in tools
    }
    principals: dict[str, Any] = {
        "human_roles": list(spec_d["roles"]),
        "humans": list(spec_d.get("humans", [])),
        "groups": list(spec_d.get("groups", [])),
        "agents": [agent, f"spiffe://example.org/agents/{domain}-shared"],
    }
    doc: dict[str, Any] = {
        "apiVersion": "aam/v1",
        "kind": "Intent",
        "metadata": {
            "id": ident,
            "owner": f"team-{domain}",
            "description": f"Generated {domain} workflow number {i}.",
            "standards": ["OWASP-AGENTIC-A2", "NIST-800-207"],
        },
        "spec": {
            "principals": principals,
            "session": {
                "max_ttl": rng.choice([600, 900, 1800, 3600]),
                "max_actions": rng.choice([20, 50, 100]),
            },
            "environments": environments,
            "tools": [
                {
                    "name": t.name,
                    "operations": list(t.operations),
                    "max_sensitivity": t.max_sensitivity,
                    "escalate": escalate_rules[t.name],
                }
                for t in tools
            ],
            "chaining": chaining,
            "delegation": {"max_depth": 1, "agents": [planner]} if planner else None,
            "break_glass": {"allowed": True, "max_ttl": 1800} if break_glass else None,
            "examples": [],
        },
    }
    gen = GeneratedIntent(
        doc, tools, kinds, egress_tool, after_tool, planner, break_glass, environments
    )
    gen.base = baseline_request(doc)
    esc_tool = chosen_esc[0]
    doc["spec"]["examples"] = [
        {
            "name": "reading is allowed",
            "request": {},
            "expect": {"outcome": "allow", "reasons": []},
        },
        {
            "name": f"{esc_tool.name} past its limits escalates",
            "request": _escalate_patch(gen, esc_tool, 0),
            "expect": {"outcome": "escalate", "reasons": ["escalation_required"]},
        },
        {
            "name": "an unknown tool is denied",
            "request": {"action": {"tool": "shell.exec", "operation": "execute"}},
            "expect": {"outcome": "deny", "reasons": ["tool_not_in_intent"]},
        },
    ]
    return gen


def _safe_patch(tool: ToolSpec, kinds: dict[str, RuleKind]) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for name in tool.rules:
        patch = merge_request(patch, kinds[name].safe)
    return patch


def _escalate_patch(gen: GeneratedIntent, tool: ToolSpec, which: int) -> dict[str, Any]:
    """A patch (no removals) under which `tool` escalates: its first rule that can trigger."""
    kind = gen.kinds[tool.rules[which % len(tool.rules)]]
    if kind.remove:  # an `exists: false` rule cannot be expressed as a merge patch
        kind = next((gen.kinds[n] for n in tool.rules if not gen.kinds[n].remove), kind)
    patch = merge_request(_safe_patch(tool, gen.kinds), kind.trigger)
    if kind.remove:
        _remove(patch, kind.remove)
    return {
        "action": {"tool": tool.name, "operation": tool.operations[0], **patch.get("action", {})},
        **{k: v for k, v in patch.items() if k != "action"},
    }


def _remove(doc: dict[str, Any], paths: Sequence[str]) -> None:
    for path in paths:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)


# --- requests --------------------------------------------------------------------------------


@dataclass
class GeneratedRequest:
    input: dict[str, Any]
    outcome: str
    reasons: tuple[str, ...]
    scenario: str


# scenario -> weight in the default mix: ~50% allow, ~30% deny, ~20% escalate
SCENARIOS: dict[str, int] = {
    "allow_read": 20,
    "allow_within_limits": 15,
    "allow_delegated": 6,
    "allow_approved": 5,
    "allow_break_glass": 4,
    "escalate": 20,
    "deny_tool_drift": 6,
    "deny_operation": 4,
    "deny_chain_restricted": 4,
    "deny_chain_after_tool": 3,
    "deny_delegate": 3,
    "deny_session_expired": 3,
    "deny_budget": 2,
    "deny_principal": 3,
    "deny_environment": 2,
}


def generate_requests(
    intents: Sequence[GeneratedIntent], n: int, seed: int = 11
) -> list[GeneratedRequest]:
    """`n` labelled requests spread over `intents` in the SCENARIOS mix (deterministic)."""
    rng = random.Random(seed)
    names = list(SCENARIOS)
    weights = [SCENARIOS[name] for name in names]
    out: list[GeneratedRequest] = []
    while len(out) < n:
        gen = intents[rng.randrange(len(intents))]
        scenario = rng.choices(names, weights)[0]
        request = build_request(gen, scenario, rng)
        if request is not None:
            out.append(request)
    return out


def all_scenarios(gen: GeneratedIntent, seed: int = 3) -> list[GeneratedRequest]:
    """One request per scenario that applies to `gen` (for correctness checks)."""
    rng = random.Random(seed)
    built = (build_request(gen, scenario, rng) for scenario in SCENARIOS)
    return [request for request in built if request is not None]


def build_request(
    gen: GeneratedIntent, scenario: str, rng: random.Random
) -> GeneratedRequest | None:
    """The request for `scenario` on `gen`, or None when the intent cannot express it."""
    plain = [t for t in gen.tools if not t.rules]
    escalating = [t for t in gen.tools if t.rules]
    closed = {gen.after_tool[1]} if gen.after_tool else set()
    patch: dict[str, Any]
    remove: tuple[str, ...] = ()
    outcome, reasons = "allow", ()
    if scenario == "allow_read":
        tool = rng.choice(plain)
        patch = _call(tool, rng)
    elif scenario == "allow_within_limits":
        tool = rng.choice(escalating)
        patch = merge_request(_call(tool, rng), _safe_patch(tool, gen.kinds))
    elif scenario == "allow_delegated":
        if gen.planner is None:
            return None
        tool = rng.choice(gen.tools)
        patch = merge_request(_call(tool, rng), _safe_patch(tool, gen.kinds))
        patch["delegation"] = [{"agent": gen.planner, "scopes": sorted({tool.name, plain[0].name})}]
    elif scenario in ("allow_approved", "allow_break_glass", "escalate"):
        tool = rng.choice(escalating)
        kind = gen.kinds[rng.choice(tool.rules)]
        patch = merge_request(
            merge_request(_call(tool, rng), _safe_patch(tool, gen.kinds)), kind.trigger
        )
        remove = kind.remove
        outcome, reasons = "escalate", ("escalation_required",)
        if scenario == "allow_break_glass":
            patch["context"] = {
                "break_glass": {
                    "reason": "incident in progress",
                    "ticket": "INC-4711",
                    "requested_by": "oncall@example.com",
                }
            }
            if gen.break_glass:
                outcome, reasons = "allow", ("break_glass",)
    elif scenario == "deny_tool_drift":
        patch = {
            "action": {
                "tool": rng.choice(["shell.exec", "browser.open_url", "db.drop_table"]),
                "operation": "execute",
            }
        }
        outcome, reasons = "deny", ("tool_not_in_intent",)
    elif scenario == "deny_operation":
        tool = rng.choice(gen.tools)
        other = [op for op in ("delete", "transfer", "execute") if op not in tool.operations]
        patch = merge_request(_call(tool, rng), _safe_patch(tool, gen.kinds))
        patch["action"]["operation"] = other[0]
        outcome, reasons = "deny", ("operation_not_allowed",)
    elif scenario == "deny_chain_restricted":
        if gen.egress_tool is None:
            return None
        tool = next(t for t in gen.tools if t.name == gen.egress_tool)
        patch = merge_request(_call(tool, rng), _safe_patch(tool, gen.kinds))
        patch["session"] = {"max_sensitivity_seen": "restricted", "tools_used": [gen.tools[0].name]}
        outcome, reasons = "deny", ("chain_blocked",)
    elif scenario == "deny_chain_after_tool":
        if gen.after_tool is None:
            return None
        tool = next(t for t in gen.tools if t.name == gen.after_tool[1])
        patch = merge_request(_call(tool, rng), _safe_patch(tool, gen.kinds))
        patch["session"] = {"tools_used": [gen.after_tool[0]]}
        outcome, reasons = "deny", ("chain_blocked",)
    elif scenario == "deny_delegate":
        patch = {
            "delegation": [
                {"agent": "spiffe://example.org/agents/rogue-planner", "scopes": [plain[0].name]}
            ]
        }
        outcome, reasons = (
            "deny",
            ("delegate_not_allowed",)
            if gen.planner
            else ("delegate_not_allowed", "delegation_too_deep"),
        )
    elif scenario == "deny_session_expired":
        patch = {"context": {"time_ns": gen.base["session"]["expires_at_ns"] + NS}}
        outcome, reasons = "deny", ("session_expired",)
    elif scenario == "deny_budget":
        max_actions = gen.doc["spec"]["session"]["max_actions"]
        patch = {"session": {"actions_used": max_actions}}
        outcome, reasons = "deny", ("session_budget_exhausted",)
    elif scenario == "deny_principal":
        patch = {
            "actor": {"human": {"id": "mallory@example.com", "roles": ["contractor"], "groups": []}}
        }
        outcome, reasons = "deny", ("principal_not_allowed",)
    elif scenario == "deny_environment":
        if gen.environments is None:
            return None
        outside = [env for env in ("sandbox", *ENVIRONMENTS) if env not in gen.environments]
        patch = {"action": {"target": {"environment": outside[0]}}}
        outcome, reasons = "deny", ("environment_not_allowed",)
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    if (
        scenario.startswith("allow_")
        and scenario != "allow_break_glass"
        and patch["action"]["tool"] in closed
    ):
        patch.setdefault("session", {})["tools_used"] = []  # the closing tool did not run
    request = merge_request(gen.base, patch)
    _remove(request, remove)
    request["request_id"] = f"req-{rng.getrandbits(64):016x}"
    request["action"]["fingerprint"] = action_fingerprint(request["action"])
    if scenario == "allow_approved":
        now = request["context"]["time_ns"]
        request["session"]["approvals"] = [
            {
                "approval_id": f"apr_{rng.getrandbits(48):012x}",
                "fingerprint": request["action"]["fingerprint"],
                "approver": "lead@example.com",
                "expires_at_ns": now + 600 * NS,
            }
        ]
        outcome, reasons = "allow", ("approval_granted",)
    return GeneratedRequest(request, outcome, tuple(sorted(reasons)), scenario)


def _call(tool: ToolSpec, rng: random.Random) -> dict[str, Any]:
    level = (
        tool.max_sensitivity
        if rng.random() < 0.5
        else LEVELS[max(0, LEVELS.index(tool.max_sensitivity) - 1)]
    )
    return {
        "action": {
            "tool": tool.name,
            "operation": rng.choice(tool.operations),
            "target": {
                "system": tool.name.split(".")[0],
                "resource": f"obj/{rng.randrange(10**6)}",
            },
        },
        "data": {"sensitivity": level, "categories": []},
        "session": {
            "actions_used": rng.randrange(5),
            # never "restricted": the restricted-data chaining rule stays out of allow cases
            "max_sensitivity_seen": rng.choice(["public", "internal", "confidential"]),
        },
    }


def check_outcome(request: GeneratedRequest, decision: Any) -> str | None:
    """None when `decision` (a dict or a Decision) is what `request` expects, else a message."""
    if hasattr(decision, "model_dump"):
        decision = decision.model_dump(mode="json")
    if not isinstance(decision, dict):
        return f"{request.scenario}: no decision ({decision!r})"
    codes = tuple(sorted({r["code"] for r in decision.get("reasons") or []}))
    if decision.get("outcome") != request.outcome or codes != request.reasons:
        return (
            f"{request.scenario} on {request.input['intent']['id']}: expected {request.outcome} "
            f"{list(request.reasons)}, got {decision.get('outcome')} {list(codes)}"
        )
    return None


def write_yaml(intents: Sequence[GeneratedIntent], directory: Path) -> None:
    """One `<id>.yaml` per intent (JSON text is YAML: no dependency on a YAML emitter)."""
    directory.mkdir(parents=True, exist_ok=True)
    for gen in intents:
        (directory / f"{gen.id}.yaml").write_text(
            json.dumps(gen.doc, indent=1) + "\n", encoding="utf-8"
        )


def docs(intents: Sequence[GeneratedIntent]) -> list[dict[str, Any]]:
    return [copy.deepcopy(gen.doc) for gen in intents]
