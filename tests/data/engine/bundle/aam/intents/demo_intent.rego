# Stand-in for a generated intent module (engine tests only).
package aam.intents.demo_intent

import rego.v1

import data.aam.core

escalations contains {
	"tool": "payments.refund",
	"rule": 0,
	"approvers": ["role:payments-lead"],
	"reason": "refund over 100 needs a payments lead",
	"approval_ttl_seconds": 900,
} if {
	input.action.tool == "payments.refund"
	cond_1_0_0
}

cond_1_0_0 if {
	is_number(input.action.parameters.amount)
	input.action.parameters.amount > 100
}

decision := core.decide(escalations)
