"""The committed JSON Schema is what the code builds, agrees with the models, and is what
`aam schema` prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel

import aam_policy.intents as intents
from aam_policy.intents import intent_schema
from aam_policy.intents._schema import SCHEMA_FILE, build_schema, render_schema

COMMITTED = Path(intents.__file__).parent / SCHEMA_FILE
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "intents"

# schema definition -> the model it describes
MODELS: dict[str, type[BaseModel]] = {
    "metadata": intents.Metadata,
    "principals": intents.Principals,
    "session": intents.SessionLimits,
    "fieldCondition": intents.FieldCondition,
    "allCondition": intents.AllCondition,
    "anyCondition": intents.AnyCondition,
    "notCondition": intents.NotCondition,
    "escalation": intents.Escalation,
    "tool": intents.Tool,
    "chainAfter": intents.ChainAfter,
    "chainRule": intents.ChainRule,
    "delegation": intents.Delegation,
    "breakGlass": intents.BreakGlass,
    "example": intents.Example,
    "spec": intents.Spec,
}


def test_committed_schema_is_what_the_code_builds() -> None:
    # on failure: python -c "from aam_policy.intents._schema import render_schema as r;
    #   open('aam_policy/intents/intent.schema.json', 'w').write(r())"
    assert COMMITTED.read_text(encoding="utf-8") == render_schema()
    assert intent_schema() == build_schema()


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(intent_schema())


def _fields(model: type[BaseModel]) -> tuple[set[str], set[str]]:
    names = {info.alias or name: info for name, info in model.model_fields.items()}
    return set(names), {name for name, info in names.items() if info.is_required()}


@pytest.mark.parametrize("definition", sorted(MODELS))
def test_schema_and_models_name_the_same_fields(definition: str) -> None:
    schema: dict[str, Any] = intent_schema()["$defs"][definition]
    fields, required = _fields(MODELS[definition])
    assert set(schema["properties"]) == fields
    assert set(schema.get("required", [])) == required


def test_schema_and_model_agree_on_the_document() -> None:
    fields, required = _fields(intents.Intent)
    assert set(intent_schema()["properties"]) == fields
    assert set(intent_schema()["required"]) == required


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.yaml")), ids=lambda p: p.name)
def test_the_fixtures_are_valid_against_the_schema(path: Path) -> None:
    Draft202012Validator(intent_schema()).validate(yaml.safe_load(path.read_text()))


def test_intent_schema_returns_a_fresh_copy() -> None:
    intent_schema()["title"] = "changed"
    assert intent_schema()["title"] == "aam-policy intent template"


def test_aam_schema_prints_the_committed_schema() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aam_policy.cli", "schema"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(COMMITTED.read_text(encoding="utf-8"))


def _documents(directory: Path) -> list[Any]:
    found = []
    for path in sorted(directory.rglob("*.y*ml")):
        try:
            found.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
        except (yaml.YAMLError, UnicodeDecodeError):
            continue  # syntax errors never reach the schema
    return found


def test_the_inlined_gate_accepts_exactly_what_the_schema_accepts() -> None:
    from aam_policy.intents._loader import _gate, _validator

    data = Path(__file__).resolve().parent / "data" / "intents"
    docs = _documents(FIXTURES) + _documents(data)
    refused = [doc for doc in docs if not _validator().is_valid(doc)]
    assert len(docs) >= 60 and len(refused) >= 40  # both verdicts are exercised
    for doc in docs:
        assert _gate().is_valid(doc) == _validator().is_valid(doc), doc
    # the gate really has its references written out, all but the recursive conditions
    text = json.dumps({k: v for k, v in _gate().schema.items() if k != "$defs"})
    assert '"#/$defs/condition"' in text
    assert '"#/$defs/tool"' not in text and '"#/$defs/duration"' not in text
