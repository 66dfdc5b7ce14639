package aam.intents.demo

import rego.v1

decision := data.aam.tiny.decision
