# Tests of the core decision library: every reason code, both sides of every rule, and the
# precedence deny > escalate > allow. The intent entry and requests are built here, so the
# tests do not depend on any compiled intent.
package aam.core_test

import rego.v1

import data.aam.core

t0 := 1767225600000000000

s := 1000000000

agent := "spiffe://example.org/agents/bot"

planner := "spiffe://example.org/agents/planner"

demo := {
	"id": "demo",
	"package": "demo",
	"owner": "team-demo",
	"revision": "rev-demo",
	"principals": {
		"human_roles": ["support-agent"],
		"humans": ["dana@example.com"],
		"groups": ["finance-ops"],
		"agents": [agent],
	},
	"session": {"max_ttl_seconds": 600, "max_actions": 5},
	"environments": ["staging", "production"],
	"tools": {
		"crm.read": {"operations": ["read"], "max_sensitivity": "confidential"},
		"payments.refund": {"operations": ["write"], "max_sensitivity": "confidential"},
		"email.send": {"operations": ["write"], "max_sensitivity": "internal"},
	},
	"chaining": [
		{
			"after": {"sensitivity_at_least": "restricted", "tools_used_any": null},
			"deny_tools": ["email.send"],
			"reason": "no email after restricted data",
		},
		{
			"after": {"sensitivity_at_least": null, "tools_used_any": ["payments.refund"]},
			"deny_tools": ["crm.read"],
			"reason": "",
		},
	],
	"delegation": {"max_depth": 1, "agents": [planner]},
	"break_glass": {"allowed": true, "max_ttl_seconds": 1800},
	"bundle_revision": "bundle-rev",
}

# the same intent without break-glass, environments or delegation
# also the two ceilings demo does not use, so the fast-path corpus meets all four
strict := object.union(demo, {
	"tools": {"crm.read": {"max_sensitivity": "restricted"}, "email.send": {"max_sensitivity": "public"}},
	"environments": null,
	"delegation": {"max_depth": 0, "agents": []},
	"break_glass": {"allowed": false, "max_ttl_seconds": null},
})

base := {
	"request_id": "00000000-0000-4000-8000-000000000000",
	"actor": {
		"human": {"id": "alice@example.com", "roles": ["support-agent"], "groups": []},
		"agent": {"id": agent, "kind": "assistant", "owner": "team-demo"},
	},
	"delegation": [],
	"intent": {"id": "demo", "purpose": "test", "prompt_sha256": "00"},
	"action": {
		"tool": "crm.read",
		"operation": "read",
		"target": {"system": "crm", "resource": "ticket/1", "environment": "production"},
		"parameters": {},
		"fingerprint": "fp-1",
	},
	"data": {"sensitivity": "internal", "categories": []},
	"session": {
		"id": "sess_1",
		"intent": "demo",
		"human": "alice@example.com",
		"agent": agent,
		"issued_at_ns": t0,
		"expires_at_ns": t0 + (600 * s),
		"revoked": false,
		"actions_used": 0,
		"tools_used": [],
		"max_sensitivity_seen": "public",
		"approvals": [],
	},
	"context": {"time_ns": t0 + s, "break_glass": null},
}

refund_escalation := {
	"tool": "payments.refund",
	"rule": 0,
	"approvers": ["role:payments-lead"],
	"reason": "refund over 100 needs a payments lead",
	"approval_ttl_seconds": 900,
}

second_escalation := {
	"tool": "payments.refund",
	"rule": 1,
	"approvers": ["user:controller@example.com", "role:payments-lead"],
	"reason": "",
	"approval_ttl_seconds": 300,
}

refund := object.union(base, {"action": object.union(base.action, {
	"tool": "payments.refund",
	"operation": "write",
	"parameters": {"amount": 500},
})})

glass := {"reason": "customer charged twice", "ticket": "INC-1", "requested_by": "alice@example.com"}

decide(request, escalations) := d if {
	d := core.decide(demo, escalations) with input as request
}

decide_strict(request, escalations) := d if {
	d := core.decide(strict, escalations) with input as request
}

# an intent the bundle does not define
decide_unknown(request) := d if {
	d := core.no_intent_decision with input as request
}

# object.union merges recursively: to drop a nested key, replace the whole member
replace_key(request, key, value) := object.union(object.remove(request, [key]), {key: value})

codes(decision) := {r.code | some r in decision.reasons}

patch(request, key, value) := object.union(request, {key: object.union(request[key], value)})

denied_with(decision, code) if {
	decision.outcome == "deny"
	decision.allow == false
	code in codes(decision)
}

# --- the baseline and the shape of a decision ------------------------------------------------

test_baseline_is_allowed if {
	d := decide(base, set())
	d.outcome == "allow"
	d.allow == true
	d.reasons == []
	d.escalation == null
	d.intent == "demo"
	d.obligations == {"max_session_ttl_seconds": 600, "review_required": false}
	d.policy == {"revision": "bundle-rev", "intent_revision": "rev-demo"}
}

test_deny_reasons_are_sorted_by_code if {
	request := patch(patch(base, "action", {"tool": "shell.exec"}), "session", {"revoked": true})
	d := decide(request, set())
	[r.code | some r in d.reasons] == ["session_revoked", "tool_not_in_intent"]
}

test_now_falls_back_to_the_clock_when_absent if {
	# the baseline session expired long ago in wall-clock time
	request := replace_key(base, "context", {"break_glass": null})
	denied_with(decide(request, set()), "session_expired")
}

# --- intent ----------------------------------------------------------------------------------

test_no_intent_unknown_id if {
	d := decide_unknown(patch(base, "intent", {"id": "other"}))
	denied_with(d, "no_intent")
	d.intent == "other"
	d.policy.intent_revision == null
	d.obligations.max_session_ttl_seconds == 0
}

test_no_intent_missing_id if {
	d := decide_unknown(object.remove(base, ["intent"]))
	denied_with(d, "no_intent")
	d.intent == null
}

test_no_intent_is_the_only_reason if {
	codes(decide_unknown(patch(base, "intent", {"id": "other"}))) == {"no_intent"}
}

test_no_intent_through_data_aam_decision if {
	d := data.aam.decision with input as patch(base, "intent", {"id": "other"})
		with data.aam.registry as {"demo": demo}
		with data.aam.bundle as {"revision": "bundle-rev"}
	denied_with(d, "no_intent")
	d.policy == {"revision": "bundle-rev", "intent_revision": null}
}

# --- principals ------------------------------------------------------------------------------

test_principal_without_role_is_denied if {
	request := patch(base, "actor", {"human": {"id": "alice@example.com", "roles": ["marketing"], "groups": []}})
	denied_with(decide(request, set()), "principal_not_allowed")
}

test_principal_without_roles_field_is_denied if {
	request := replace_key(base, "actor", {"human": {"id": "alice@example.com"}, "agent": base.actor.agent})
	denied_with(decide(request, set()), "principal_not_allowed")
}

test_principal_admitted_by_id if {
	request := patch(
		patch(base, "actor", {"human": {"id": "dana@example.com", "roles": [], "groups": []}}),
		"session", {"human": "dana@example.com"},
	)
	decide(request, set()).outcome == "allow"
}

test_principal_admitted_by_group if {
	request := patch(
		patch(base, "actor", {"human": {"id": "carol@example.com", "roles": [], "groups": ["finance-ops"]}}),
		"session", {"human": "carol@example.com"},
	)
	decide(request, set()).outcome == "allow"
}

test_session_of_another_human_is_denied if {
	denied_with(decide(patch(base, "session", {"human": "mallory@example.com"}), set()), "principal_not_allowed")
}

# --- agents ----------------------------------------------------------------------------------

test_unknown_agent_is_denied if {
	rogue := "spiffe://example.org/agents/rogue"
	request := patch(
		patch(base, "actor", {"agent": {"id": rogue, "kind": "assistant", "owner": "x"}}),
		"session", {"agent": rogue},
	)
	d := decide(request, set())
	denied_with(d, "agent_not_allowed")
	codes(d) == {"agent_not_allowed"}
}

test_session_of_another_agent_is_denied if {
	denied_with(decide(patch(base, "session", {"agent": planner}), set()), "agent_not_allowed")
}

# --- tools, operations, sensitivity, environment ---------------------------------------------

test_tool_outside_the_intent_is_drift if {
	d := decide(patch(base, "action", {"tool": "shell.exec"}), set())
	denied_with(d, "tool_not_in_intent")
	codes(d) == {"tool_not_in_intent"}
}

test_missing_tool_is_drift if {
	request := replace_key(base, "action", object.remove(base.action, ["tool"]))
	denied_with(decide(request, set()), "tool_not_in_intent")
}

test_operation_not_listed_is_denied if {
	denied_with(decide(patch(base, "action", {"operation": "delete"}), set()), "operation_not_allowed")
}

test_missing_operation_is_denied if {
	request := replace_key(base, "action", object.remove(base.action, ["operation"]))
	denied_with(decide(request, set()), "operation_not_allowed")
}

test_sensitivity_at_the_ceiling_is_allowed if {
	decide(patch(base, "data", {"sensitivity": "confidential"}), set()).outcome == "allow"
}

test_sensitivity_above_the_ceiling_is_denied if {
	denied_with(decide(patch(base, "data", {"sensitivity": "restricted"}), set()), "sensitivity_exceeds_ceiling")
}

test_unknown_sensitivity_counts_as_highest if {
	denied_with(decide(patch(base, "data", {"sensitivity": "secret"}), set()), "sensitivity_exceeds_ceiling")
}

test_missing_sensitivity_counts_as_highest if {
	request := object.remove(base, ["data"])
	denied_with(decide(request, set()), "sensitivity_exceeds_ceiling")
}

test_environment_outside_the_list_is_denied if {
	request := patch(base, "action", {"target": {"system": "crm", "resource": "t/1", "environment": "dev"}})
	denied_with(decide(request, set()), "environment_not_allowed")
}

test_missing_environment_is_denied_when_listed if {
	request := replace_key(base, "action", object.remove(base.action, ["target"]))
	denied_with(decide(request, set()), "environment_not_allowed")
}

test_any_environment_when_the_intent_lists_none if {
	request := patch(base, "action", {"target": {"system": "crm", "resource": "t/1", "environment": "dev"}})
	decide_strict(request, set()).outcome == "allow"
}

# --- sessions --------------------------------------------------------------------------------

test_missing_session_is_denied if {
	d := decide(object.union(base, {"session": null}), set())
	denied_with(d, "session_missing")
	codes(d) == {"session_missing"}
}

test_absent_session_is_denied if {
	denied_with(decide(object.remove(base, ["session"]), set()), "session_missing")
}

test_session_expires_at_its_deadline if {
	request := patch(base, "context", {"time_ns": base.session.expires_at_ns})
	denied_with(decide(request, set()), "session_expired")
}

test_session_valid_just_before_its_deadline if {
	request := patch(base, "context", {"time_ns": base.session.expires_at_ns - 1})
	decide(request, set()).outcome == "allow"
}

test_session_without_expiry_counts_as_expired if {
	denied_with(decide(patch(base, "session", {"expires_at_ns": null}), set()), "session_expired")
}

test_revoked_session_is_denied if {
	denied_with(decide(patch(base, "session", {"revoked": true}), set()), "session_revoked")
}

test_session_without_revoked_flag_is_denied if {
	request := replace_key(base, "session", object.remove(base.session, ["revoked"]))
	denied_with(decide(request, set()), "session_revoked")
}

test_session_for_another_intent_is_denied if {
	denied_with(decide(patch(base, "session", {"intent": "other"}), set()), "session_intent_mismatch")
}

test_budget_has_room_for_the_last_action if {
	decide(patch(base, "session", {"actions_used": 4}), set()).outcome == "allow"
}

test_budget_exhausted_at_max_actions if {
	denied_with(decide(patch(base, "session", {"actions_used": 5}), set()), "session_budget_exhausted")
}

test_budget_unknown_counts_as_exhausted if {
	denied_with(decide(patch(base, "session", {"actions_used": "3"}), set()), "session_budget_exhausted")
}

# --- delegation ------------------------------------------------------------------------------

test_one_allowed_hop_within_scope_is_allowed if {
	request := object.union(base, {"delegation": [{"agent": planner, "scopes": ["crm.read"]}]})
	decide(request, set()).outcome == "allow"
}

test_two_hops_are_too_deep if {
	hop := {"agent": planner, "scopes": ["crm.read"]}
	d := decide(object.union(base, {"delegation": [hop, hop]}), set())
	denied_with(d, "delegation_too_deep")
	codes(d) == {"delegation_too_deep"}
}

test_no_hop_allowed_without_a_delegation_block if {
	request := object.union(base, {"delegation": [{"agent": planner, "scopes": ["crm.read"]}]})
	denied_with(decide_strict(request, set()), "delegation_too_deep")
}

test_delegation_that_is_not_a_list_is_denied if {
	denied_with(decide(object.union(base, {"delegation": {"agent": planner}}), set()), "delegation_too_deep")
}

test_unknown_delegate_is_denied if {
	request := object.union(base, {"delegation": [{"agent": "spiffe://x/evil", "scopes": ["crm.read"]}]})
	d := decide(request, set())
	denied_with(d, "delegate_not_allowed")
	codes(d) == {"delegate_not_allowed"}
}

test_tool_outside_delegated_scopes_is_denied if {
	request := object.union(base, {"delegation": [{"agent": planner, "scopes": ["payments.refund"]}]})
	d := decide(request, set())
	denied_with(d, "delegation_scope_exceeded")
	codes(d) == {"delegation_scope_exceeded"}
}

test_hop_without_scopes_grants_nothing if {
	request := object.union(base, {"delegation": [{"agent": planner}]})
	denied_with(decide(request, set()), "delegation_scope_exceeded")
}

# --- tool chaining ---------------------------------------------------------------------------

email := patch(base, "action", {"tool": "email.send", "operation": "write"})

test_chain_open_before_restricted_data if {
	decide(patch(email, "session", {"max_sensitivity_seen": "confidential"}), set()).outcome == "allow"
}

test_chain_blocked_after_restricted_data if {
	d := decide(patch(email, "session", {"max_sensitivity_seen": "restricted"}), set())
	denied_with(d, "chain_blocked")
	d.reasons == [{"code": "chain_blocked", "message": "no email after restricted data"}]
}

test_chain_blocked_when_sensitivity_seen_is_unknown if {
	denied_with(decide(patch(email, "session", {"max_sensitivity_seen": "??"}), set()), "chain_blocked")
}

test_chain_blocked_after_a_tool_was_used if {
	d := decide(patch(base, "session", {"tools_used": ["payments.refund"]}), set())
	denied_with(d, "chain_blocked")
	d.reasons[0].message == "tool crm.read is blocked by what this session already did"
}

test_chain_open_after_other_tools if {
	decide(patch(base, "session", {"tools_used": ["email.send"]}), set()).outcome == "allow"
}

test_chain_rule_needs_every_trigger if {
	both := object.union(demo, {"chaining": [{
		"after": {"sensitivity_at_least": "restricted", "tools_used_any": ["crm.read"]},
		"deny_tools": ["email.send"],
		"reason": "",
	}]})
	only_tools := patch(email, "session", {"tools_used": ["crm.read"]})
	d1 := core.decide(both, set()) with input as only_tools
	d1.outcome == "allow"
	all_triggers := patch(email, "session", {"tools_used": ["crm.read"], "max_sensitivity_seen": "restricted"})
	d2 := core.decide(both, set()) with input as all_triggers
	denied_with(d2, "chain_blocked")
}

# --- escalation and approval grants ----------------------------------------------------------

test_escalation_required if {
	d := decide(refund, {refund_escalation})
	d.outcome == "escalate"
	d.allow == false
	d.reasons == [{"code": "escalation_required", "message": "refund over 100 needs a payments lead"}]
	d.escalation == {"approvers": ["role:payments-lead"], "approval_ttl_seconds": 900}
}

test_escalations_unite_approvers_and_take_the_shortest_ttl if {
	d := decide(refund, {refund_escalation, second_escalation})
	d.outcome == "escalate"
	d.escalation.approvers == ["role:payments-lead", "user:controller@example.com"]
	d.escalation.approval_ttl_seconds == 300
	count(d.reasons) == 2
	{"code": "escalation_required", "message": "tool payments.refund needs approval"} in d.reasons
}

grant(fingerprint, expires) := {
	"approval_id": "apr_1",
	"fingerprint": fingerprint,
	"approver": "bob@example.com",
	"expires_at_ns": expires,
}

test_matching_grant_allows if {
	request := patch(refund, "session", {"approvals": [grant("fp-1", t0 + (60 * s))]})
	d := decide(request, {refund_escalation})
	d.outcome == "allow"
	d.allow == true
	d.escalation == null
	d.reasons == [{"code": "approval_granted", "message": "approval apr_1 by bob@example.com covers this action"}]
}

test_grant_for_another_action_escalates if {
	request := patch(refund, "session", {"approvals": [grant("fp-other", t0 + (60 * s))]})
	decide(request, {refund_escalation}).outcome == "escalate"
}

test_expired_grant_escalates_again if {
	request := patch(refund, "session", {"approvals": [grant("fp-1", t0 + s)]})
	decide(request, {refund_escalation}).outcome == "escalate"
}

test_grant_without_fingerprint_on_the_action_escalates if {
	request := patch(
		patch(refund, "session", {"approvals": [grant("", t0 + (60 * s))]}),
		"action", {"fingerprint": ""},
	)
	decide(request, {refund_escalation}).outcome == "escalate"
}

test_grant_never_overrides_a_deny if {
	request := patch(
		patch(refund, "session", {"approvals": [grant("fp-1", t0 + (60 * s))]}),
		"data", {"sensitivity": "restricted"},
	)
	denied_with(decide(request, {refund_escalation}), "sensitivity_exceeds_ceiling")
}

# --- break-glass -----------------------------------------------------------------------------

test_break_glass_turns_escalate_into_allow_with_review if {
	d := decide(patch(refund, "context", {"break_glass": glass}), {refund_escalation})
	d.outcome == "allow"
	d.allow == true
	codes(d) == {"break_glass"}
	d.obligations == {"max_session_ttl_seconds": 1800, "review_required": true}
	d.escalation == null
}

test_break_glass_not_permitted_by_the_intent_escalates if {
	d := decide_strict(patch(refund, "context", {"break_glass": glass}), {refund_escalation})
	d.outcome == "escalate"
	d.obligations.review_required == false
}

test_incomplete_break_glass_escalates if {
	partial := {"reason": "urgent", "ticket": " ", "requested_by": "alice@example.com"}
	decide(patch(refund, "context", {"break_glass": partial}), {refund_escalation}).outcome == "escalate"
}

test_break_glass_never_overrides_a_deny if {
	request := patch(patch(refund, "context", {"break_glass": glass}), "action", {"operation": "delete"})
	d := decide(request, {refund_escalation})
	denied_with(d, "operation_not_allowed")
	d.obligations.review_required == false
}

test_break_glass_without_escalation_is_a_plain_allow if {
	d := decide(patch(base, "context", {"break_glass": glass}), set())
	d.outcome == "allow"
	d.reasons == []
	d.obligations.review_required == false
}

# --- precedence ------------------------------------------------------------------------------

test_deny_wins_over_escalate if {
	d := decide(patch(refund, "session", {"revoked": true}), {refund_escalation})
	d.outcome == "deny"
	codes(d) == {"session_revoked"}
	d.escalation == null
}

test_escalate_wins_over_allow if {
	decide(refund, {refund_escalation}).outcome == "escalate"
	decide(refund, set()).outcome == "allow"
}

# --- helpers for compiled conditions ---------------------------------------------------------

test_contains_value_on_arrays_and_strings if {
	core.contains_value(["pii", "financial"], "pii")
	not core.contains_value(["financial"], "pii")
	core.contains_value("refund for pii data", "pii")
	not core.contains_value("refund", "pii")
	not core.contains_value(42, "pii")
	not core.contains_value("42", 42)
}

# --- wrongly typed fields end in a decision, never an evaluation error ----------------------

test_roles_that_are_not_a_list_admit_nobody if {
	request := patch(base, "actor", {"human": {"id": "alice@example.com", "roles": "support-agent", "groups": "finance-ops"}})
	denied_with(decide(request, set()), "principal_not_allowed")
}

test_a_hop_that_is_not_an_object_is_not_a_delegate if {
	d := decide(object.union(base, {"delegation": [null]}), set())
	denied_with(d, "delegate_not_allowed")
	denied_with(d, "delegation_scope_exceeded")
}

test_scopes_that_are_not_a_list_grant_nothing if {
	request := object.union(base, {"delegation": [{"agent": planner, "scopes": "crm.read"}]})
	denied_with(decide(request, set()), "delegation_scope_exceeded")
}

test_tools_used_that_is_not_a_list_triggers_no_tool_chain if {
	decide(patch(base, "session", {"tools_used": "payments.refund"}), set()).outcome == "allow"
}

test_approvals_that_are_not_a_list_grant_nothing if {
	request := patch(refund, "session", {"approvals": "apr_1"})
	decide(request, {refund_escalation}).outcome == "escalate"
}

test_a_non_numeric_expiry_and_budget_deny if {
	d := decide(patch(base, "session", {"expires_at_ns": "never", "actions_used": null}), set())
	denied_with(d, "session_expired")
	denied_with(d, "session_budget_exhausted")
}

# --- the fast path ---------------------------------------------------------------------------

# Requests that between them break every check, alone and together, and some that pass.
corpus := [
	base,
	refund,
	patch(base, "actor", {"human": {"id": "alice@example.com", "roles": ["marketing"], "groups": []}}),
	patch(patch(base, "actor", {"human": {"id": "dana@example.com", "roles": [], "groups": []}}), "session", {"human": "dana@example.com"}),
	patch(patch(base, "actor", {"human": {"id": "carol@example.com", "roles": [], "groups": ["finance-ops"]}}), "session", {"human": "carol@example.com"}),
	patch(base, "session", {"human": "mallory@example.com"}),
	patch(base, "session", {"agent": planner}),
	patch(base, "actor", {"agent": {"id": planner}}),
	patch(base, "action", {"tool": "shell.exec"}),
	replace_key(base, "action", object.remove(base.action, ["tool"])),
	patch(base, "action", {"operation": "delete"}),
	patch(base, "data", {"sensitivity": "confidential"}),
	patch(base, "data", {"sensitivity": "restricted"}),
	patch(base, "data", {"sensitivity": "secret"}),
	patch(base, "data", {"sensitivity": "public"}),
	replace_key(base, "data", object.remove(base.data, ["sensitivity"])),
	replace_key(email, "data", object.remove(email.data, ["sensitivity"])),
	patch(email, "data", {"sensitivity": "secret"}),
	object.remove(base, ["data"]),
	patch(base, "action", {"target": {"environment": "dev"}}),
	replace_key(base, "action", object.remove(base.action, ["target"])),
	object.union(base, {"session": null}),
	object.remove(base, ["session"]),
	patch(base, "context", {"time_ns": base.session.expires_at_ns}),
	patch(base, "context", {"time_ns": base.session.expires_at_ns - 1}),
	patch(base, "session", {"expires_at_ns": null}),
	patch(base, "session", {"revoked": true}),
	replace_key(base, "session", object.remove(base.session, ["revoked"])),
	patch(base, "session", {"intent": "other"}),
	patch(base, "session", {"actions_used": 4}),
	patch(base, "session", {"actions_used": 5}),
	patch(base, "session", {"actions_used": "3"}),
	object.union(base, {"delegation": [{"agent": planner, "scopes": ["crm.read"]}]}),
	object.union(base, {"delegation": [{"agent": planner, "scopes": ["crm.read"]}, {"agent": planner, "scopes": ["crm.read"]}]}),
	object.union(base, {"delegation": {"agent": planner}}),
	object.union(base, {"delegation": [{"agent": "spiffe://x/evil", "scopes": ["crm.read"]}]}),
	object.union(base, {"delegation": [{"agent": planner, "scopes": ["payments.refund"]}]}),
	object.union(base, {"delegation": [{"agent": planner}]}),
	patch(email, "session", {"max_sensitivity_seen": "restricted"}),
	patch(email, "session", {"max_sensitivity_seen": "confidential"}),
	patch(base, "session", {"tools_used": ["payments.refund"]}),
	patch(patch(base, "session", {"revoked": true}), "action", {"tool": "shell.exec"}),
	patch(base, "actor", {"human": {"id": "alice@example.com", "roles": "support-agent"}}),
	object.union(base, {"delegation": [null]}),
	object.union(base, {"delegation": [{"agent": planner, "scopes": "crm.read"}]}),
	patch(base, "session", {"tools_used": "payments.refund"}),
	patch(base, "session", {"expires_at_ns": "never", "actions_used": null}),
]

clear(intent, request) := true if core.all_clear(intent) with input as request

clear(intent, request) := false if not core.all_clear(intent) with input as request

no_violations(intent, request) := result if {
	found := core.violations(intent) with input as request
	result := count(found) == 0
}

test_fast_path_holds_exactly_when_no_check_fails if {
	count(corpus) > 30
	mismatched := [i |
		some i, request in corpus
		some intent in [demo, strict]
		clear(intent, request) != no_violations(intent, request)
	]
	mismatched == []
}

test_fast_path_is_not_vacuous if {
	passing := [i | some i, request in corpus; core.all_clear(demo) with input as request]
	failing := [i | some i, request in corpus; not core.all_clear(demo) with input as request]
	count(passing) > 5
	count(failing) > 20
}

# decide builds the common allow directly: it must be exactly what verdict would build
test_fast_allow_is_the_document_verdict_builds if {
	every intent in [demo, strict] {
		core.allowed(intent) == core.document(intent, "allow", set(), null, core.ttl(intent))
	}
}
