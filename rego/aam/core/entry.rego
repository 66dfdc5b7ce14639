# data.aam.decision: the one document enforcement points query.
#
# Dispatch on input.intent.id to that intent's compiled module, so evaluation touches one
# intent whatever the bundle holds. A registered intent whose module is missing leaves the
# decision undefined, which clients treat as an error and deny: never a silent allow.
package aam

import rego.v1

import data.aam.core

decision := data.aam.intents[core.intent.package].decision

decision := core.decide(set()) if not core.intent
