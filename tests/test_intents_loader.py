"""Valid templates load into models whose dump is the compiler's normalized intent dict."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from aam_policy.compiler._validate import check_intent
from aam_policy.intents import (
    Intent,
    IntentValidationError,
    LoadedIntent,
    load_intent_text,
    load_intents,
    parse_duration,
)

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures" / "intents"
AGENT = "spiffe://example.org/agents/bot"

MINIMAL = f"""\
apiVersion: aam/v1
kind: Intent
metadata: {{id: minimal, owner: team-test}}
spec:
  principals: {{agents: ["{AGENT}"]}}
  session: {{max_ttl: 90, max_actions: 0}}
  tools:
    - {{name: crm.read_ticket, operations: [read], max_sensitivity: internal}}
"""

FULL = f"""\
apiVersion: aam/v1
kind: Intent
metadata:
  id: full
  owner: team-test
  description: Everything spelled out.
  standards: [NIST-800-207]
spec:
  principals:
    human_roles: [support]
    humans: [ann@example.com]
    groups: [ops]
    agents: ["{AGENT}"]
  session: {{max_ttl: 1h30m, max_actions: 7}}
  environments: [staging]
  tools:
    - name: payments.refund
      operations: [write, transfer]
      max_sensitivity: confidential
      escalate:
        - when:
            all:
              - {{field: action.parameters.amount, op: gte, value: 100.5}}
              - any:
                  - {{field: data.categories, op: contains, value: pii}}
                  - not: {{field: context.ticket, op: exists, value: true}}
          approvers: ["role:lead", "user:bob@example.com"]
          reason: big refunds
          approval_ttl: 5m
        - approvers: [role:lead]
  chaining:
    - after: {{tools_used_any: [vault.read_secret]}}
      deny_tools: [email.send_external]
  delegation: {{max_depth: 2}}
  break_glass: {{allowed: true}}
  examples:
    - name: shorthand
      request: {{action: {{tool: payments.refund, when: "2026-02-03"}}}}
      expect: escalate
    - name: long form
      expect: {{outcome: deny, reasons: [chain_blocked]}}
"""


def _dump(loaded: LoadedIntent) -> dict[str, Any]:
    return loaded.intent.model_dump(mode="json", by_alias=True)


def test_the_fixtures_load_and_pass_the_compiler_check() -> None:
    loaded = load_intents([FIXTURES])
    assert [item.path.name for item in loaded] == sorted(p.name for p in FIXTURES.glob("*.yaml"))
    assert len(loaded) == 5
    for item in loaded:
        doc, checked = check_intent(item.intent)
        assert doc == checked  # the dump is already normalized: nothing left to default
        header = item.path.read_text().splitlines()
        assert header[item.line - 1] == "apiVersion: aam/v1"  # the line after the comments


def test_a_minimal_intent_dumps_every_default() -> None:
    (loaded,) = load_intent_text(MINIMAL, "minimal.yaml")
    assert _dump(loaded) == {
        "apiVersion": "aam/v1",
        "kind": "Intent",
        "metadata": {"id": "minimal", "owner": "team-test", "description": "", "standards": []},
        "spec": {
            "principals": {"human_roles": [], "humans": [], "groups": [], "agents": [AGENT]},
            "session": {"max_ttl": 90, "max_actions": 0},
            "environments": None,
            "tools": [
                {
                    "name": "crm.read_ticket",
                    "operations": ["read"],
                    "max_sensitivity": "internal",
                    "escalate": [],
                }
            ],
            "chaining": [],
            "delegation": None,
            "break_glass": None,
            "examples": [],
        },
    }
    assert loaded.path == Path("minimal.yaml")
    assert loaded.line == 1


def test_a_full_intent_dumps_the_normalized_shape() -> None:
    (loaded,) = load_intent_text(FULL, "full.yaml")
    spec = _dump(loaded)["spec"]
    assert spec["session"] == {"max_ttl": 5400, "max_actions": 7}
    first, second = spec["tools"][0]["escalate"]
    assert first["when"] == {
        "all": [
            {"field": "action.parameters.amount", "op": "gte", "value": 100.5},
            {
                "any": [
                    {"field": "data.categories", "op": "contains", "value": "pii"},
                    {"not": {"field": "context.ticket", "op": "exists", "value": True}},
                ]
            },
        ]
    }
    assert first["approval_ttl"] == 300
    assert second == {"when": None, "approvers": ["role:lead"], "reason": "", "approval_ttl": 900}
    assert spec["chaining"] == [
        {
            "after": {"sensitivity_at_least": None, "tools_used_any": ["vault.read_secret"]},
            "deny_tools": ["email.send_external"],
            "reason": "",
        }
    ]
    assert spec["delegation"] == {"max_depth": 2, "agents": []}
    assert spec["break_glass"] == {"allowed": True, "max_ttl": None}
    assert spec["examples"] == [
        {
            "name": "shorthand",
            "request": {"action": {"tool": "payments.refund", "when": "2026-02-03"}},
            "expect": {"outcome": "escalate", "reasons": []},
        },
        {
            "name": "long form",
            "request": {},
            "expect": {"outcome": "deny", "reasons": ["chain_blocked"]},
        },
    ]
    doc, checked = check_intent(loaded)
    assert doc == checked


def test_a_multi_document_file_holds_several_intents() -> None:
    text = MINIMAL + "---\n" + MINIMAL.replace("id: minimal", "id: second") + "---\n"
    loaded = load_intent_text(text, "two.yaml")
    assert [(item.intent.metadata.id, item.line) for item in loaded] == [
        ("minimal", 1),
        ("second", 10),
    ]


def test_directories_are_scanned_for_yaml_files_sorted(tmp_path: Path) -> None:
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "b.yml").write_text(MINIMAL.replace("id: minimal", "id: b"))
    (tmp_path / "a.yaml").write_text(MINIMAL.replace("id: minimal", "id: a"))
    (tmp_path / "notes.txt").write_text("not an intent")
    loaded = load_intents([tmp_path, tmp_path / "a.yaml"])  # a file named twice loads once
    assert [item.intent.metadata.id for item in loaded] == ["a", "b"]


def test_the_model_validates_dicts_directly() -> None:
    (loaded,) = load_intent_text(FULL, "full.yaml")
    again = Intent.model_validate(_dump(loaded))
    assert again == loaded.intent
    with pytest.raises(ValueError, match="duplicate tool"):
        tools = _dump(loaded)["spec"]["tools"] * 2
        Intent.model_validate({**_dump(loaded), "spec": {**_dump(loaded)["spec"], "tools": tools}})


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), (45, 45)],
)
def test_parse_duration(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["10x", "-5m", "0s", "", "10", "1m\n", 0, -3, True, 1.5])
def test_parse_duration_refuses(text: Any) -> None:
    with pytest.raises(ValueError, match=r"duration|seconds"):
        parse_duration(text)


def test_validation_error_message_lists_every_problem() -> None:
    text = MINIMAL.replace("max_actions: 0", "max_actions: -1").replace("read]", "fly]")
    with pytest.raises(IntentValidationError) as caught:
        load_intent_text(text, "m.yaml")
    assert str(caught.value).splitlines() == [
        "m.yaml:6:39: spec.session.max_actions: must be at least 0, got -1",
        "m.yaml:8:44: spec.tools[0].operations[0]: 'fly' is not one of read, write, delete, "
        "execute, transfer",
    ]


def _many_templates(root: Path) -> None:
    """70 files: valid intents, a later duplicate id, a schema error, a YAML error, bad bytes."""
    for index in range(66):
        text = MINIMAL.replace("id: minimal", f"id: intent-{index:03d}")
        (root / f"t{index:03d}.yaml").write_text(text)
    (root / "t066.yaml").write_text(MINIMAL.replace("id: minimal", "id: intent-007"))
    (root / "t067.yaml").write_text(MINIMAL.replace("max_actions: 0", "max_actions: -1"))
    (root / "t068.yaml").write_text("apiVersion: [unclosed\n")
    (root / "t069.yaml").write_bytes(b"\xff\xfe not utf-8")


@pytest.mark.parametrize("other_thread", [False, True])  # forked, or fresh interpreters
def test_worker_processes_give_the_same_intents_and_problems_in_order(
    tmp_path: Path, other_thread: bool
) -> None:
    done = threading.Event()
    if other_thread:
        threading.Thread(target=done.wait, daemon=True).start()
    try:
        _load_both_ways(tmp_path)
    finally:
        done.set()


def _load_both_ways(tmp_path: Path) -> None:
    _many_templates(tmp_path)
    outcomes = []
    for jobs in (1, 2):
        with pytest.raises(IntentValidationError) as caught:
            load_intents([tmp_path], jobs=jobs)
        outcomes.append([str(problem) for problem in caught.value.problems])
    assert outcomes[0] == outcomes[1]
    assert [line.split(":")[0].rsplit("/", 1)[1] for line in outcomes[0]] == [
        "t066.yaml",
        "t067.yaml",
        "t068.yaml",
        "t069.yaml",
    ]
    assert "duplicate intent id 'intent-007'" in outcomes[0][0]
    for bad in ("t066.yaml", "t067.yaml", "t068.yaml", "t069.yaml"):
        (tmp_path / bad).unlink()
    serial, parallel = (load_intents([tmp_path], jobs=jobs) for jobs in (1, 2))
    assert len(serial) == 66
    assert [(i.intent, i.path, i.line) for i in serial] == [
        (i.intent, i.path, i.line) for i in parallel
    ]
