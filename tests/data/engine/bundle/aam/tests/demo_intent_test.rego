# Stand-in for generated example tests (engine tests only).
package aam.tests.demo_intent

import rego.v1

base := {
	"intent": {"id": "demo-intent"},
	"action": {"tool": "payments.refund", "operation": "write", "parameters": {"amount": 20}},
}

test_small_refund_is_allowed if {
	data.aam.decision.outcome == "allow" with input as base
}

test_large_refund_escalates if {
	request := object.union(base, {"action": {"parameters": {"amount": 500}}})
	data.aam.decision.outcome == "escalate" with input as request
}

test_unknown_tool_is_denied if {
	request := object.union(base, {"action": {"tool": "email.send_external", "operation": "write"}})
	d := data.aam.decision with input as request
	d.outcome == "deny"
	d.reasons[0].code == "tool_not_in_intent"
}

test_unknown_intent_is_denied if {
	d := data.aam.decision with input as {"intent": {"id": "nope"}}
	d.reasons == [{"code": "no_intent", "message": "the request names no known intent"}]
}
