"""What any decision costs the embedded engine before a single check runs (P2's floor).

Two one-module policies answer the same inputs as P2, through the same calls the engine makes
(`set_input`, then `evaluate_on`: `eval_rule_as_json` and `json.loads`):

* ``input_and_rule``: a rule that is always true, the cost of handing regorus an input and
  getting an answer back;
* ``entry_unpacked``: the same plus unpacking one real intent's registry entry with
  `json.unmarshal`, as every compiled intent's decision does first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aam_policy.engine._regorus import evaluate_on, new_engine
from benchmarks._stats import latency_stats, median, time_calls

_RULE = "data.floor.d"


def _policy(body: str) -> str:
    return f"package floor\n\nimport rego.v1\n\n{body}\n"


def floor_p50_us(
    entry: Mapping[str, Any], inputs: Sequence[dict[str, Any]], repeats: int
) -> dict[str, float]:
    """Median over `repeats` runs of the p50 (us) of each floor policy over `inputs`."""
    # A JSON string literal is a valid Rego string literal.
    literal = json.dumps(json.dumps(entry, sort_keys=True, separators=(",", ":")))
    policies = {
        "input_and_rule": "d := true",
        "entry_unpacked": f"d := count(entry) if {{\n\tentry := json.unmarshal({literal})\n}}",
    }
    return {
        f"{name}_p50_us": _p50_us(name, _policy(body), inputs, repeats)
        for name, body in policies.items()
    }


def _p50_us(name: str, policy: str, inputs: Sequence[dict[str, Any]], repeats: int) -> float:
    engine = new_engine()
    engine.add_policy(f"{name}.rego", policy)

    def call(i: int) -> None:
        engine.set_input(inputs[i])
        if evaluate_on(engine, _RULE) in (None, False):
            raise RuntimeError(f"floor policy {name} did not answer")

    time_calls(call, len(inputs))  # warm-up
    return median([latency_stats(time_calls(call, len(inputs)))["p50_us"] for _ in range(repeats)])
