# The core decision library: every guardrail of DESIGN.md, shared by all compiled intents.
#
# A compiled intent module (package aam.intents.<pkg>) computes only its escalations and calls
# `decide(escalations)`; everything static about the intent (principals, tools, ceilings,
# environments, session limits, chaining, delegation, break-glass) is read from
# data.aam.registry[input.intent.id], so one copy of this logic serves every intent and the cost
# of a decision does not depend on how many intents the bundle holds.
#
# Fail-safe reading of the request: a missing or malformed field never makes a deny reason
# disappear. Every reason is built from values that are always defined (object.get with a
# placeholder), and every check is written so that "cannot tell" counts as a violation.
package aam.core

import rego.v1

# Sensitivity levels, ordered. An unknown level counts as the highest.
levels := {"public": 0, "internal": 1, "confidential": 2, "restricted": 3}

highest_level := 3

# --- the request, read defensively ----------------------------------------------------------

# The enforcement point's clock is "now", so a decision can be replayed.
now_ns := input.context.time_ns if {
	is_number(input.context.time_ns)
} else := time.now_ns()

intent_id := input.intent.id if is_string(input.intent.id)

default shown_intent := null

shown_intent := intent_id

intent := data.aam.registry[intent_id]

tool_name := object.get(input, ["action", "tool"], "(none)")

operation := object.get(input, ["action", "operation"], "(none)")

tool := intent.tools[input.action.tool]

session := input.session if is_object(input.session)

default data_level := 3

data_level := levels[input.data.sensitivity]

default hops := []

hops := input.delegation if is_array(input.delegation)

# --- deny reasons ---------------------------------------------------------------------------

deny_reasons contains reason("no_intent", msg) if {
	not intent
	msg := sprintf("intent %v is not defined in this bundle", [object.get(input, ["intent", "id"], "(none)")])
}

# principals: a human is admitted by role, by id or by group

human_admitted if {
	some role in input.actor.human.roles
	role in intent.principals.human_roles
}

human_admitted if input.actor.human.id in intent.principals.humans

human_admitted if {
	some group in input.actor.human.groups
	group in intent.principals.groups
}

deny_reasons contains reason("principal_not_allowed", msg) if {
	intent
	not human_admitted
	msg := sprintf("human %v has no role, id or group admitted by intent %v", [
		object.get(input, ["actor", "human", "id"], "(none)"),
		intent_id,
	])
}

deny_reasons contains reason("principal_not_allowed", msg) if {
	intent
	session
	not session.human == input.actor.human.id
	msg := sprintf("session belongs to %v, not to %v", [
		object.get(session, "human", "(none)"),
		object.get(input, ["actor", "human", "id"], "(none)"),
	])
}

deny_reasons contains reason("agent_not_allowed", msg) if {
	intent
	not input.actor.agent.id in intent.principals.agents
	msg := sprintf("agent %v is not admitted by intent %v", [
		object.get(input, ["actor", "agent", "id"], "(none)"),
		intent_id,
	])
}

deny_reasons contains reason("agent_not_allowed", msg) if {
	intent
	session
	not session.agent == input.actor.agent.id
	msg := sprintf("session was issued to agent %v, not to %v", [
		object.get(session, "agent", "(none)"),
		object.get(input, ["actor", "agent", "id"], "(none)"),
	])
}

# tools, operations, data, environment

deny_reasons contains reason("tool_not_in_intent", msg) if {
	intent
	not tool
	msg := sprintf("tool %v is not part of intent %v", [tool_name, intent_id])
}

deny_reasons contains reason("operation_not_allowed", msg) if {
	tool
	not input.action.operation in tool.operations
	msg := sprintf("operation %v is not allowed for tool %v", [operation, tool_name])
}

deny_reasons contains reason("sensitivity_exceeds_ceiling", msg) if {
	data_level > levels[tool.max_sensitivity]
	msg := sprintf("data sensitivity %v exceeds the %v ceiling of tool %v", [
		object.get(input, ["data", "sensitivity"], "(none)"),
		tool.max_sensitivity,
		tool_name,
	])
}

deny_reasons contains reason("environment_not_allowed", msg) if {
	is_array(intent.environments)
	not input.action.target.environment in intent.environments
	msg := sprintf("environment %v is not one of %v", [
		object.get(input, ["action", "target", "environment"], "(none)"),
		concat(", ", intent.environments),
	])
}

# sessions

deny_reasons contains reason("session_missing", "the request carries no session") if {
	intent
	not session
}

session_expired if not is_number(session.expires_at_ns)

session_expired if now_ns >= session.expires_at_ns

deny_reasons contains reason("session_expired", msg) if {
	intent
	session_expired
	msg := sprintf("session %v has expired", [object.get(session, "id", "(none)")])
}

deny_reasons contains reason("session_revoked", msg) if {
	intent
	not session.revoked == false
	msg := sprintf("session %v has been revoked", [object.get(session, "id", "(none)")])
}

deny_reasons contains reason("session_intent_mismatch", msg) if {
	intent
	not session.intent == intent_id
	msg := sprintf("session was opened for intent %v, not %v", [object.get(session, "intent", "(none)"), intent_id])
}

budget_exhausted if not is_number(session.actions_used)

budget_exhausted if session.actions_used >= intent.session.max_actions

deny_reasons contains reason("session_budget_exhausted", msg) if {
	intent
	budget_exhausted
	msg := sprintf("session has used %v of %v actions", [
		object.get(session, "actions_used", "(unknown)"),
		intent.session.max_actions,
	])
}

# delegation: depth, allowed delegates, and scopes that only narrow along the chain

deny_reasons contains reason("delegation_too_deep", msg) if {
	intent
	not is_array(object.get(input, "delegation", []))
	msg := "delegation must be a list of hops"
}

deny_reasons contains reason("delegation_too_deep", msg) if {
	count(hops) > intent.delegation.max_depth
	msg := sprintf("delegation chain has %v hop(s), intent %v allows %v", [
		count(hops),
		intent_id,
		intent.delegation.max_depth,
	])
}

deny_reasons contains reason("delegate_not_allowed", msg) if {
	intent
	some hop in hops
	not hop.agent in intent.delegation.agents
	msg := sprintf("agent %v may not delegate within intent %v", [object.get(hop, "agent", "(none)"), intent_id])
}

deny_reasons contains reason("delegation_scope_exceeded", msg) if {
	intent
	some hop in hops
	not input.action.tool in hop.scopes
	msg := sprintf("tool %v is outside the scopes delegated by %v", [tool_name, object.get(hop, "agent", "(none)")])
}

# tool chaining: what the session already did can close tools for the rest of it

default seen_level := 3

seen_level := levels[session.max_sensitivity_seen]

chain_triggered(rule) if {
	sensitivity_trigger_holds(rule.after)
	tools_trigger_holds(rule.after)
}

sensitivity_trigger_holds(after) if after.sensitivity_at_least == null

sensitivity_trigger_holds(after) if seen_level >= levels[after.sensitivity_at_least]

tools_trigger_holds(after) if after.tools_used_any == null

tools_trigger_holds(after) if {
	some used in session.tools_used
	used in after.tools_used_any
}

deny_reasons contains reason("chain_blocked", msg) if {
	some rule in intent.chaining
	input.action.tool in rule.deny_tools
	chain_triggered(rule)
	msg := chain_message(rule)
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
	some grant in input.session.approvals
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

break_glass_usable if {
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
# Precedence: any deny reason -> deny; else escalations not covered by a grant -> escalate
# (or allow under break-glass where the intent permits it); else allow. The five definitions
# are mutually exclusive; each reads its argument, as `opa check --strict` requires.

decide(escalations) := document("deny", deny_reasons, null, false) if {
	is_set(escalations)
	count(deny_reasons) > 0
}

decide(escalations) := document("allow", set(), null, false) if {
	count(deny_reasons) == 0
	count(escalations) == 0
}

decide(escalations) := document("allow", approval_reasons, null, false) if {
	count(deny_reasons) == 0
	count(escalations) > 0
	approved
}

decide(escalations) := document("allow", {break_glass_reason}, null, true) if {
	count(deny_reasons) == 0
	count(escalations) > 0
	not approved
	break_glass_usable
}

decide(escalations) := document("escalate", pending, escalation, false) if {
	count(deny_reasons) == 0
	count(escalations) > 0
	not approved
	not break_glass_usable
	pending := {reason("escalation_required", escalation_message(e)) | some e in escalations}
	escalation := {
		"approvers": sort({approver | some e in escalations; some approver in e.approvers}),
		"approval_ttl_seconds": min({e.approval_ttl_seconds | some e in escalations}),
	}
}

document(outcome, reasons, escalation, review) := {
	"outcome": outcome,
	"allow": outcome == "allow",
	"intent": shown_intent,
	"reasons": sort(reasons),
	"escalation": escalation,
	"obligations": {
		"max_session_ttl_seconds": session_ttl(review),
		"review_required": review,
	},
	"policy": {
		"revision": bundle_revision,
		"intent_revision": intent_revision,
	},
}

reason(code, message) := {"code": code, "message": message}

default intent_revision := null

intent_revision := intent.revision

default max_ttl := 0

max_ttl := intent.session.max_ttl_seconds

# Break-glass may run for its own max_ttl (when the intent sets one) instead of the session's.
glass_ttl := intent.break_glass.max_ttl_seconds if {
	is_number(intent.break_glass.max_ttl_seconds)
} else := max_ttl

session_ttl(review) := glass_ttl if review == true

session_ttl(review) := max_ttl if review == false

# data.aam.bundle, not object.get(data.aam, ...): reading all of data.aam would evaluate the
# decision rules under it, i.e. recurse into the caller.
default bundle_revision := ""

bundle_revision := data.aam.bundle.revision

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
