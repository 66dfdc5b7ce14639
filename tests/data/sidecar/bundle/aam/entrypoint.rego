# Entry point with the same shape as the real core: dispatch on input.intent.id.
package aam

import rego.v1

default decision := {
	"outcome": "deny",
	"allow": false,
	"intent": null,
	"reasons": [{"code": "no_intent", "message": "no such intent"}],
	"escalation": null,
	"obligations": {"max_session_ttl_seconds": 0, "review_required": false},
	"policy": {"revision": "", "intent_revision": null},
}

decision := data.aam.intents[data.aam.registry[input.intent.id].package].decision

# Defined only when input.flag is true: lets tests see how an undefined result is reported.
maybe := "yes" if input.flag == true
