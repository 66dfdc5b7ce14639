# Tiny stand-in for the compiled aam bundle, used by the sidecar tests: the decision is made from
# input alone (tool known to the intent -> allow, amount over 100 -> escalate, else deny) and
# echoes the bundle revision like the real core library does.
package aam.tiny

import rego.v1

entry := data.aam.registry[input.intent.id]

known_tool if entry.tools[input.action.tool]

outcome := "escalate" if {
	known_tool
	input.action.parameters.amount > 100
} else := "allow" if {
	known_tool
} else := "deny"

reasons := [] if outcome == "allow"

reasons := [{"code": "escalation_required", "message": "amount over 100"}] if outcome == "escalate"

reasons := [{"code": "tool_not_in_intent", "message": "tool not in intent"}] if outcome == "deny"

decision := {
	"outcome": outcome,
	"allow": outcome == "allow",
	"intent": input.intent.id,
	"reasons": reasons,
	"escalation": escalation,
	"obligations": {"max_session_ttl_seconds": 600, "review_required": false},
	"policy": {"revision": data.aam.bundle.revision, "intent_revision": entry.revision},
}

escalation := {"approvers": ["role:lead"], "approval_ttl_seconds": 900} if outcome == "escalate"

escalation := null if outcome != "escalate"
