# Hand-written, much simplified stand-in for the core decision library (engine tests only).
package aam.core

import rego.v1

intent_id := object.get(input, ["intent", "id"], null)

intent := data.aam.registry[intent_id]

deny_reasons contains {"code": "no_intent", "message": "the request names no known intent"} if {
	not intent
}

deny_reasons contains reason if {
	intent
	not intent.tools[input.action.tool]
	reason := {
		"code": "tool_not_in_intent",
		"message": sprintf("tool %v is not part of intent %v", [input.action.tool, intent_id]),
	}
}

deny_reasons contains reason if {
	tool := intent.tools[input.action.tool]
	not input.action.operation in tool.operations
	reason := {
		"code": "operation_not_allowed",
		"message": sprintf("operation %v is not allowed for %v", [input.action.operation, input.action.tool]),
	}
}

# Precedence: any deny reason -> deny; else escalations -> escalate; else allow.
# (No `else` chain: each definition uses its argument, as `opa check --strict` requires.)
decide(escalations) := result("deny", deny_reasons, null) if {
	is_set(escalations)
	count(deny_reasons) > 0
}

decide(escalations) := result("escalate", pending, escalation) if {
	count(deny_reasons) == 0
	count(escalations) > 0
	pending := {{"code": "escalation_required", "message": e.reason} | some e in escalations}
	escalation := {
		"approvers": sort({a | some e in escalations; some a in e.approvers}),
		"approval_ttl_seconds": min({e.approval_ttl_seconds | some e in escalations}),
	}
}

decide(escalations) := result("allow", set(), null) if {
	count(deny_reasons) == 0
	count(escalations) == 0
}

result(outcome, reasons, escalation) := {
	"outcome": outcome,
	"allow": outcome == "allow",
	"intent": intent_id,
	"reasons": sort(reasons),
	"escalation": escalation,
	"obligations": {
		"max_session_ttl_seconds": object.get(data.aam.registry, [intent_id, "session", "max_ttl_seconds"], 0),
		"review_required": false,
	},
	"policy": {
		"revision": bundle_revision,
		"intent_revision": object.get(data.aam.registry, [intent_id, "revision"], null),
	},
}

# data.aam.bundle, not object.get(data.aam, ...): reading all of data.aam would evaluate the
# decision rules under it, i.e. recurse into the caller.
default bundle_revision := ""

bundle_revision := data.aam.bundle.revision
