# The core decision library: every guardrail of DESIGN.md, shared by all compiled intents.
#
# A compiled intent module (package aam.intents.<pkg>) has one `decision` rule, which reads its
# registry entry, computes its escalations and calls `decide(intent, escalations)`. The library is
# written as functions of that entry plus rules over `input` only: no `data.` reference is on
# the decision path, so the cost of a decision does not depend on how many intents the bundle
# holds (regorus resolves any `data.` ref in time that grows with the number of modules; OPA
# does not care either way).
#
# Fail-safe reading of the request: a missing or malformed field never makes a deny reason
# disappear. Every reason is built from values that are always defined (object.get with a
# placeholder), and every check is written so that "cannot tell" counts as a violation.
package aam.core

import rego.v1

# Sensitivity levels, ordered. An unknown level counts as the highest.
levels := {"public": 0, "internal": 1, "confidential": 2, "restricted": 3}

# --- the request, read defensively ----------------------------------------------------------

# The enforcement point's clock is "now", so a decision can be replayed.
now_ns := input.context.time_ns if {
	is_number(input.context.time_ns)
} else := time.now_ns()

default shown_intent := null

shown_intent := input.intent.id if is_string(input.intent.id)

tool_name := object.get(input, ["action", "tool"], "(none)")

operation := object.get(input, ["action", "operation"], "(none)")

session := input.session if is_object(input.session)

session_id := object.get(session, "id", "(none)")

default data_level := 3

data_level := levels[input.data.sensitivity]

default seen_level := 3

seen_level := levels[session.max_sensitivity_seen]

default hops := []

hops := input.delegation if is_array(input.delegation)

human_id := object.get(input, ["actor", "human", "id"], "(none)")

agent_id := object.get(input, ["actor", "agent", "id"], "(none)")

session_expired if not is_number(session.expires_at_ns)

session_expired if {
	is_number(session.expires_at_ns)
	now_ns >= session.expires_at_ns
}

# A member that must be a list, read so that any other type counts as an empty list: regorus
# raises an error (OPA does not) when `some .. in` or `object.get` meets another type, and an
# error must not replace a deny reason.
array_at(container, key) := container[key] if has_array(container, key)

array_at(container, key) := [] if not has_array(container, key)

has_array(container, key) if {
	is_object(container)
	is_array(container[key])
}

hop_within(intent, hop) if {
	delegate_admitted(intent, hop)
	input.action.tool in array_at(hop, "scopes")
}

delegate_admitted(intent, hop) if {
	is_object(hop)
	hop.agent in intent.delegation.agents
}

hop_agent(hop) := hop.agent if well_formed_hop(hop)

hop_agent(hop) := "(malformed hop)" if not well_formed_hop(hop)

well_formed_hop(hop) if {
	is_object(hop)
	is_string(hop.agent)
}

# --- deny reasons ---------------------------------------------------------------------------

# The common case first: one body that holds exactly when no check below yields a reason
# (core tests assert the equivalence over their whole request corpus), so an allowed request
# skips building every reason.
deny_reasons(intent) := set() if all_clear(intent)

else := violations(intent)

violations(intent) := union({
	principal_reasons(intent),
	tool_reasons(intent),
	session_reasons(intent),
	delegation_reasons(intent),
	chain_reasons(intent),
})

# Written for the embedded engine's costs, in instructions (callgrind): a call to a function
# ~14-33k and a reference to another rule ~10-19k (both grow with the modules loaded; the rule
# is evaluated once), a builtin ~14k, a local variable or `in` ~2k. So the checks are inline
# over local bindings, with helpers only where a check has alternatives.
all_clear(intent) if {
	action := input.action
	tool := intent.tools[action.tool]
	action.operation in tool.operations
	within_ceiling(tool.max_sensitivity)
	agent_id := input.actor.agent.id
	agent_id in intent.principals.agents
	s := input.session
	s.agent == agent_id
	s.human == input.actor.human.id
	s.revoked == false
	s.intent == intent.id
	is_number(s.expires_at_ns)
	now_ns < s.expires_at_ns
	is_number(s.actions_used)
	s.actions_used < intent.session.max_actions
	human_admitted(intent)
	environment_admitted(intent)
	hops_admitted(intent)
	not chain_blocked(intent)
}

# data_level <= levels[ceiling], as list membership: ~5x cheaper for the embedded engine than
# the two lookups. An unknown or missing level counts as restricted, as in data_level.
within_ceiling("restricted") := true

within_ceiling("confidential") if input.data.sensitivity in ["public", "internal", "confidential"]

within_ceiling("internal") if input.data.sensitivity in ["public", "internal"]

within_ceiling("public") if input.data.sensitivity == "public"

environment_admitted(intent) if intent.environments == null

environment_admitted(intent) if input.action.target.environment in intent.environments

hops_admitted(intent) := true if {
	input.delegation == []
	intent.delegation.max_depth >= 0
} else := false if {
	not is_array(object.get(input, "delegation", []))
	is_object(intent)
} else := count([hop | some hop in hops; hop_within(intent, hop)]) == count(hops) if {
	count(hops) <= intent.delegation.max_depth
}

# principals: a human is admitted by role, by id or by group; the session must be theirs

human_admitted(intent) := true if {
	roles := input.actor.human.roles
	is_array(roles)
	some role in roles
	role in intent.principals.human_roles
} else := true if {
	input.actor.human.id in intent.principals.humans
} else := true if {
	groups := input.actor.human.groups
	is_array(groups)
	some group in groups
	group in intent.principals.groups
} else := false if is_object(intent)

principal_reasons(intent) := union({
	{reason("principal_not_allowed", msg) |
		not human_admitted(intent)
		msg := sprintf("human %v has no role, id or group admitted by intent %v", [human_id, intent.id])
	},
	{reason("principal_not_allowed", msg) |
		session
		not session.human == input.actor.human.id
		msg := sprintf("session belongs to %v, not to %v", [object.get(session, "human", "(none)"), human_id])
	},
	{reason("agent_not_allowed", msg) |
		not input.actor.agent.id in intent.principals.agents
		msg := sprintf("agent %v is not admitted by intent %v", [agent_id, intent.id])
	},
	{reason("agent_not_allowed", msg) |
		session
		not session.agent == input.actor.agent.id
		msg := sprintf("session was issued to agent %v, not to %v", [object.get(session, "agent", "(none)"), agent_id])
	},
})

# tools, operations, data, environment

tool_reasons(intent) := union({
	{reason("tool_not_in_intent", msg) |
		not intent.tools[input.action.tool]
		msg := sprintf("tool %v is not part of intent %v", [tool_name, intent.id])
	},
	{reason("operation_not_allowed", msg) |
		tool := intent.tools[input.action.tool]
		not input.action.operation in tool.operations
		msg := sprintf("operation %v is not allowed for tool %v", [operation, tool_name])
	},
	{reason("sensitivity_exceeds_ceiling", msg) |
		tool := intent.tools[input.action.tool]
		data_level > levels[tool.max_sensitivity]
		msg := sprintf("data sensitivity %v exceeds the %v ceiling of tool %v", [
			object.get(input, ["data", "sensitivity"], "(none)"),
			tool.max_sensitivity,
			tool_name,
		])
	},
	{reason("environment_not_allowed", msg) |
		is_array(intent.environments)
		not input.action.target.environment in intent.environments
		msg := sprintf("environment %v is not one of %v", [
			object.get(input, ["action", "target", "environment"], "(none)"),
			concat(", ", intent.environments),
		])
	},
})

# sessions

session_reasons(intent) := {reason("session_missing", "the request carries no session")} if {
	is_string(intent.id)
	not session
}

session_reasons(intent) := union({
	{reason("session_expired", sprintf("session %v has expired", [session_id])) | session_expired},
	{reason("session_revoked", sprintf("session %v has been revoked", [session_id])) |
		not session.revoked == false
	},
	{reason("session_intent_mismatch", msg) |
		not session.intent == intent.id
		msg := sprintf("session was opened for intent %v, not %v", [object.get(session, "intent", "(none)"), intent.id])
	},
	{reason("session_budget_exhausted", msg) |
		budget_exhausted(intent)
		msg := sprintf("session has used %v of %v actions", [
			object.get(session, "actions_used", "(unknown)"),
			intent.session.max_actions,
		])
	},
}) if session

budget_exhausted(intent) if {
	is_string(intent.id)
	not is_number(session.actions_used)
}

budget_exhausted(intent) if {
	is_number(session.actions_used)
	session.actions_used >= intent.session.max_actions
}

# delegation: depth, allowed delegates, and scopes that only narrow along the chain

delegation_reasons(intent) := union({
	{reason("delegation_too_deep", "delegation must be a list of hops") |
		is_string(intent.id)
		not is_array(object.get(input, "delegation", []))
	},
	{reason("delegation_too_deep", msg) |
		count(hops) > intent.delegation.max_depth
		msg := sprintf("delegation chain has %v hop(s), intent %v allows %v", [
			count(hops),
			intent.id,
			intent.delegation.max_depth,
		])
	},
	{reason("delegate_not_allowed", msg) |
		some hop in hops
		not delegate_admitted(intent, hop)
		msg := sprintf("agent %v may not delegate within intent %v", [hop_agent(hop), intent.id])
	},
	{reason("delegation_scope_exceeded", msg) |
		is_string(intent.id)
		some hop in hops
		not input.action.tool in array_at(hop, "scopes")
		msg := sprintf("tool %v is outside the scopes delegated by %v", [tool_name, hop_agent(hop)])
	},
})

# tool chaining: what the session already did can close tools for the rest of it

chain_reasons(intent) := {reason("chain_blocked", chain_message(rule)) |
	some rule in intent.chaining
	input.action.tool in rule.deny_tools
	sensitivity_trigger_holds(rule.after)
	tools_trigger_holds(rule.after)
}

# chain_reasons' test without building any reason, for all_clear (a shared helper per rule
# would add a function call per chaining rule to every allowed request)
chain_blocked(intent) if {
	some rule in intent.chaining
	input.action.tool in rule.deny_tools
	sensitivity_trigger_holds(rule.after)
	tools_trigger_holds(rule.after)
}

sensitivity_trigger_holds(after) if after.sensitivity_at_least == null

sensitivity_trigger_holds(after) if seen_level >= levels[after.sensitivity_at_least]

tools_trigger_holds(after) if after.tools_used_any == null

tools_trigger_holds(after) if {
	some used in array_at(session, "tools_used")
	used in after.tools_used_any
}

chain_message(rule) := rule.reason if rule.reason != ""

chain_message(rule) := sprintf("tool %v is blocked by what this session already did", [tool_name]) if {
	rule.reason == ""
}

# --- escalation, approval grants, break-glass ------------------------------------------------

# An approval covers this exact action (same fingerprint) until it expires.
grants contains grant if {
	is_string(input.action.fingerprint)
	input.action.fingerprint != ""
	some grant in array_at(session, "approvals")
	grant.fingerprint == input.action.fingerprint
	is_number(grant.expires_at_ns)
	now_ns < grant.expires_at_ns
}

approved if count(grants) > 0

break_glass_fields := ["reason", "ticket", "requested_by"]

break_glass_requested if {
	glass := input.context.break_glass
	is_object(glass)
	filled := [key |
		some key in break_glass_fields
		is_string(glass[key])
		trim_space(glass[key]) != ""
	]
	count(filled) == count(break_glass_fields)
}

break_glass_usable(intent) if {
	intent.break_glass.allowed == true
	break_glass_requested
}

escalation_message(e) := e.reason if e.reason != ""

escalation_message(e) := sprintf("tool %v needs approval", [e.tool]) if e.reason == ""

approval_reasons contains reason("approval_granted", msg) if {
	some grant in grants
	msg := sprintf("approval %v by %v covers this action", [
		object.get(grant, "approval_id", "(none)"),
		object.get(grant, "approver", "(none)"),
	])
}

break_glass_reason := reason("break_glass", msg) if {
	glass := input.context.break_glass
	msg := sprintf("break-glass by %v for %v (ticket %v): review required", [
		glass.requested_by,
		glass.reason,
		glass.ticket,
	])
}

# --- the decision ---------------------------------------------------------------------------

# `intent` is the intent's registry entry plus the bundle revision, as its compiled module holds
# it; `escalations` the set of its escalate rules whose conditions hold for this input.
decide(intent, escalations) := allowed(intent) if {
	count(escalations) == 0
	all_clear(intent)
} else := verdict(intent, violations(intent), escalations) if {
	# all_clear failed above: go straight to the reasons (re-counting is cheaper than it)
	count(escalations) == 0
} else := verdict(intent, deny_reasons(intent), escalations)

# The common outcome, built directly (what `document` builds for it).
allowed(intent) := {
	"outcome": "allow",
	"allow": true,
	"intent": intent.id,
	"reasons": [],
	"escalation": null,
	"obligations": {"max_session_ttl_seconds": intent.session.max_ttl_seconds, "review_required": false},
	"policy": {"revision": intent.bundle_revision, "intent_revision": intent.revision},
}

# Precedence: any deny reason -> deny; else escalations not covered by a grant -> escalate
# (or allow under break-glass where the intent permits it); else allow. One `else` chain, so
# only the branches up to the one that holds are evaluated.
verdict(intent, denies, escalations) := document(intent, "deny", denies, null, ttl(intent)) if {
	count(denies) > 0
	is_set(escalations)
} else := document(intent, "allow", denies, null, ttl(intent)) if {
	count(escalations) == 0
} else := document(intent, "allow", approval_reasons, null, ttl(intent)) if {
	approved
	is_set(denies)
	is_set(escalations)
} else := document(intent, "allow", {break_glass_reason}, null, glass_ttl(intent)) if {
	break_glass_usable(intent)
	is_set(denies)
	is_set(escalations)
} else := document(intent, "escalate", pending, escalation, ttl(intent)) if {
	is_set(denies)
	pending := {reason("escalation_required", escalation_message(e)) | some e in escalations}
	escalation := {
		"approvers": sort({approver | some e in escalations; some approver in e.approvers}),
		"approval_ttl_seconds": min({e.approval_ttl_seconds | some e in escalations}),
	}
}

# `obligations` is ttl(intent) or glass_ttl(intent): the session TTL and whether the action
# must be reviewed afterwards.
document(intent, outcome, reasons, escalation, obligations) := {
	"outcome": outcome,
	"allow": outcome == "allow",
	"intent": intent.id,
	"reasons": sort(reasons),
	"escalation": escalation,
	"obligations": obligations,
	"policy": {"revision": intent.bundle_revision, "intent_revision": intent.revision},
}

reason(code, message) := {"code": code, "message": message}

ttl(intent) := {"max_session_ttl_seconds": intent.session.max_ttl_seconds, "review_required": false}

# Break-glass may run for the intent's own break-glass max_ttl (when set) instead of the
# session's, and is always reviewed.
glass_ttl(intent) := {"max_session_ttl_seconds": seconds, "review_required": true} if {
	seconds := intent.break_glass.max_ttl_seconds
	is_number(seconds)
} else := {"max_session_ttl_seconds": intent.session.max_ttl_seconds, "review_required": true}

# The decision for a request whose intent the bundle does not define (data.aam.decision adds
# the bundle revision).
no_intent_decision := {
	"outcome": "deny",
	"allow": false,
	"intent": shown_intent,
	"reasons": [reason("no_intent", msg)],
	"escalation": null,
	"obligations": {"max_session_ttl_seconds": 0, "review_required": false},
	"policy": {"revision": "", "intent_revision": null},
} if {
	msg := sprintf("intent %v is not defined in this bundle", [object.get(input, ["intent", "id"], "(none)")])
}

# --- helpers for compiled conditions ---------------------------------------------------------

# `contains`: an array holding the value, or a string holding it as a substring.
contains_value(collection, value) if {
	is_array(collection)
	value in collection
}

contains_value(collection, value) if {
	is_string(collection)
	is_string(value)
	contains(collection, value)
}
