# Stand-in for a generated intent module (engine tests only).
package aam.intents.other_intent

import rego.v1

import data.aam.core

escalations contains {
	"tool": "deploy.rollout",
	"rule": 0,
	"approvers": ["role:sre", "user:carol"],
	"reason": "production rollouts need an SRE",
	"approval_ttl_seconds": 600,
} if {
	input.action.tool == "deploy.rollout"
	input.action.target.environment == "production"
}

decision := core.decide(escalations)
