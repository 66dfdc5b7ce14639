"""Intent templates: the YAML authoring format, validated into typed models.

```python
from aam_policy.intents import IntentValidationError, load_intents

try:
    loaded = load_intents(["intents/"])
except IntentValidationError as exc:
    for problem in exc.problems:
        print(problem)  # intents/support.yaml:12:7: spec.tools[0]: unknown field 'opertions'
```

Templates are checked against the JSON Schema (`intent_schema()`, also `aam schema`), then
by the models; `Intent.model_dump(mode="json", by_alias=True)` is what the compiler renders.
"""

from aam_policy.intents._loader import (
    IntentValidationError,
    LoadedIntent,
    Problem,
    load_intent_text,
    load_intents,
)
from aam_policy.intents._models import (
    AllCondition,
    AnyCondition,
    BreakGlass,
    ChainAfter,
    ChainRule,
    Condition,
    Delegation,
    Escalation,
    Example,
    Expect,
    FieldCondition,
    Intent,
    Metadata,
    NotCondition,
    Principals,
    SessionLimits,
    Spec,
    Tool,
    parse_duration,
)
from aam_policy.intents._schema import intent_schema

__all__ = [
    "AllCondition",
    "AnyCondition",
    "BreakGlass",
    "ChainAfter",
    "ChainRule",
    "Condition",
    "Delegation",
    "Escalation",
    "Example",
    "Expect",
    "FieldCondition",
    "Intent",
    "IntentValidationError",
    "LoadedIntent",
    "Metadata",
    "NotCondition",
    "Principals",
    "Problem",
    "SessionLimits",
    "Spec",
    "Tool",
    "intent_schema",
    "load_intent_text",
    "load_intents",
    "parse_duration",
]
