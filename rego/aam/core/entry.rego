# data.aam.decision: the one document enforcement points query.
#
# Dispatch on input.intent.id to that intent's compiled module, so evaluation touches one
# intent whatever the bundle holds (the embedded engine does the same lookup in Python). A
# registered intent whose module is missing leaves the decision undefined, which clients treat
# as an error and deny: never a silent allow.
package aam

import rego.v1

import data.aam.core

decision := data.aam.intents[data.aam.registry[input.intent.id].package].decision

decision := object.union(core.no_intent_decision, {"policy": {"revision": revision}}) if {
	not data.aam.registry[input.intent.id]
}

default revision := ""

revision := data.aam.bundle.revision
