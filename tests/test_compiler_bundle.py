"""The bundle on disk: layout, manifest, registry data, revision, determinism, atomicity."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from compiler_helpers import AGENT, example, intent, rule, tool

from aam_policy import __version__
from aam_policy.compiler import CompileError, compile_bundle, core_rego_dir
from aam_policy.engine import RegorusEngine, load_policy


def _support() -> dict[str, Any]:
    return intent(
        "resolve-support-ticket",
        tools=[
            tool("crm.read_ticket"),
            tool(
                "payments.refund",
                ["write"],
                escalate=[
                    rule(
                        {"field": "action.parameters.amount", "op": "gt", "value": 100},
                        ["role:payments-lead"],
                        "refund over 100 needs a payments lead",
                    )
                ],
            ),
        ],
        examples=[
            example(
                "small refund",
                {"action": {"tool": "payments.refund", "operation": "write"}},
                "allow",
            ),
            example(
                "large refund",
                {
                    "action": {
                        "tool": "payments.refund",
                        "operation": "write",
                        "parameters": {"amount": 500},
                    }
                },
                "escalate",
                "escalation_required",
            ),
        ],
        chaining=[
            {
                "after": {"sensitivity_at_least": "restricted", "tools_used_any": None},
                "deny_tools": ["email.send_external"],
                "reason": "no mail after restricted data",
            }
        ],
        delegation={"max_depth": 1, "agents": ["spiffe://example.org/agents/planner"]},
        break_glass={"allowed": True, "max_ttl": 1800},
    )


def _other() -> dict[str, Any]:
    return intent(
        "deploy-service",
        tools=[tool("k8s.deployment", ["write", "delete"], "internal")],
        environments=None,
    )


def _read_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_tar(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _snapshot(parent: Path) -> dict[str, bytes]:
    """Every file under `parent`, hidden ones included: detects leftovers and changes."""
    return _read_tree(parent)


# --- layout ------------------------------------------------------------------------------------


def test_layout(tmp_path: Path) -> None:
    bundle = compile_bundle([_support(), _other()], tmp_path / "b", tmp_path / "b.tar.gz")
    core = sorted(
        f"aam/core/{p.name}"
        for p in core_rego_dir().glob("*.rego")
        if not p.name.endswith("_test.rego")
    )
    assert core, "the core library has modules"
    assert list(bundle.files) == sorted(
        [
            ".manifest",
            "data.json",
            *core,
            "aam/intents/deploy_service.rego",
            "aam/intents/resolve_support_ticket.rego",
            "aam/tests/resolve_support_ticket_test.rego",  # deploy-service has no examples
        ]
    )
    for name in core:
        assert bundle.files[name] == (core_rego_dir() / name.split("/")[-1]).read_bytes()
    assert _read_tree(tmp_path / "b") == bundle.files
    assert _read_tar(tmp_path / "b.tar.gz") == bundle.files


def test_manifest_and_revision(tmp_path: Path) -> None:
    bundle = compile_bundle([_other(), _support()], tmp_path / "b")
    manifest = json.loads(bundle.files[".manifest"])
    assert manifest == {
        "revision": bundle.revision,
        "roots": ["aam"],
        "rego_version": 1,
        "metadata": {
            "compiler": f"aam-policy {__version__}",
            "intents": ["deploy-service", "resolve-support-ticket"],
        },
    }
    data = json.loads(bundle.files["data.json"])
    assert data["aam"]["bundle"] == {"revision": bundle.revision}

    # REV = sha256 over every other file, in path order, with the revision stamped empty in
    # data.json and in each intent module's entry literal
    files = dict(bundle.files)
    del files[".manifest"]
    data["aam"]["bundle"]["revision"] = ""
    text = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    files["data.json"] = text.encode()
    stamp = f'\\"bundle_revision\\":\\"{bundle.revision}\\"'.encode()
    for path in [p for p in files if p.startswith("aam/intents/")]:
        assert files[path].count(stamp) == 1
        files[path] = files[path].replace(stamp, b'\\"bundle_revision\\":\\"\\"')
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\n{len(files[path])}\n".encode())
        digest.update(files[path])
    assert bundle.revision == digest.hexdigest()

    # the engines see the same revision
    engine = RegorusEngine(load_policy([tmp_path / "b"]))
    assert engine.revision == bundle.revision


def test_json_files_are_canonical(tmp_path: Path) -> None:
    bundle = compile_bundle([_support()], tmp_path / "b")
    for name in (".manifest", "data.json"):
        raw = bundle.files[name]
        parsed = json.loads(raw)
        canonical = json.dumps(parsed, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        assert raw == canonical.encode("utf-8")


def test_registry_entry(tmp_path: Path) -> None:
    source = _support()
    bundle = compile_bundle([source], tmp_path / "b")
    registry = json.loads(bundle.files["data.json"])["aam"]["registry"]
    canonical = json.dumps(source, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert registry == {
        "resolve-support-ticket": {
            "id": "resolve-support-ticket",
            "package": "resolve_support_ticket",
            "owner": "team-demo",
            "revision": hashlib.sha256(canonical.encode()).hexdigest(),
            "principals": {
                "human_roles": ["support-agent"],
                "humans": [],
                "groups": [],
                "agents": [AGENT],
            },
            "session": {"max_ttl_seconds": 600, "max_actions": 50},
            "environments": ["staging", "production"],
            "tools": {
                "crm.read_ticket": {"operations": ["read"], "max_sensitivity": "confidential"},
                "payments.refund": {"operations": ["write"], "max_sensitivity": "confidential"},
            },
            "chaining": [
                {
                    "after": {"sensitivity_at_least": "restricted", "tools_used_any": None},
                    "deny_tools": ["email.send_external"],
                    "reason": "no mail after restricted data",
                }
            ],
            "delegation": {"max_depth": 1, "agents": ["spiffe://example.org/agents/planner"]},
            "break_glass": {"allowed": True, "max_ttl_seconds": 1800},
        }
    }


def test_registry_defaults_without_delegation_or_break_glass(tmp_path: Path) -> None:
    bundle = compile_bundle([_other()], tmp_path / "b")
    entry = json.loads(bundle.files["data.json"])["aam"]["registry"]["deploy-service"]
    assert entry["environments"] is None
    assert entry["delegation"] == {"max_depth": 0, "agents": []}
    assert entry["break_glass"] == {"allowed": False, "max_ttl_seconds": None}
    assert entry["chaining"] == []


def test_generated_module_shape(tmp_path: Path) -> None:
    bundle = compile_bundle([_support(), _other()], tmp_path / "b")
    module = bundle.files["aam/intents/resolve_support_ticket.rego"].decode()
    assert "package aam.intents.resolve_support_ticket\n" in module
    assert "\nimport rego.v1\n\nimport data.aam.core\n" in module
    # one decision rule, the entry and the escalate rules as its locals (a rule reference would
    # cost the embedded engine a scan of every module)
    assert "\ndecision := core.decide(intent, escalations) if {\n" in module
    assert '\n\tintent := json.unmarshal("{\\"break_glass\\":{' in module
    assert f'\\"bundle_revision\\":\\"{bundle.revision}\\"' in module
    assert (
        "\tescalations := {\n"
        "\t\t# spec.tools[1].escalate[0]\n"
        "\t\t{\n"
        '\t\t\t"tool": "payments.refund",\n'
        '\t\t\t"rule": 0,\n'
        '\t\t\t"approvers": ["role:payments-lead"],\n'
        '\t\t\t"reason": "refund over 100 needs a payments lead",\n'
        '\t\t\t"approval_ttl_seconds": 900,\n'
        "\t\t} |\n"
        '\t\t\tinput.action.tool == "payments.refund"\n'
        "\t\t\tis_number(input.action.parameters.amount)\n"
        "\t\t\tinput.action.parameters.amount > 100\n"
        "\t}\n"
        "}\n"
    ) in module
    # a condition that is one body needs no helper rule
    heads = {line.split(" ", 1)[0] for line in module.splitlines() if line[:1].isalpha()}
    assert heads == {"package", "import", "decision"}
    # opa fmt style: tabs, no trailing whitespace, no double blank lines
    for line in module.splitlines():
        assert line == line.rstrip()
        assert not line.startswith(" ")
    assert "\n\n\n" not in module
    # an intent without escalate rules still defines the set
    other = bundle.files["aam/intents/deploy_service.rego"].decode()
    assert "\n\tescalations := set()\n}\n" in other


def test_generated_tests_shape(tmp_path: Path) -> None:
    bundle = compile_bundle([_support()], tmp_path / "b")
    tests = bundle.files["aam/tests/resolve_support_ticket_test.rego"].decode()
    assert "package aam.tests.resolve_support_ticket\n" in tests
    assert "\ntest_small_refund_0 if {\n" in tests
    assert "\ntest_large_refund_1 if {\n" in tests
    assert "\tdecision := data.aam.decision with input as {\n" in tests
    assert '\tdecision.outcome == "escalate"\n' in tests
    assert '\t"escalation_required" in codes\n' in tests
    assert "\n\n\n" not in tests


def test_test_rule_names_are_unique_identifiers(tmp_path: Path) -> None:
    names = ["same", "same", "Same!", "", "\U0001f600\U0001f600", "x" * 200, "test", "1 2 3"]
    names.append("a very long example name that goes on and on about what it checks in detail")
    doc = intent(examples=[example(n, {}, "allow") for n in names])
    bundle = compile_bundle([doc], tmp_path / "b")
    tests = bundle.files["aam/tests/demo_intent_test.rego"].decode()
    rules = [line.split(" ")[0] for line in tests.splitlines() if line.startswith("test_")]
    assert rules == [
        "test_same_0",
        "test_same_1",
        "test_same_2",
        "test_example_3",
        "test_example_4",
        "test_" + "x" * 60 + "_5",
        "test_test_6",
        "test_1_2_3_7",
        "test_a_very_long_example_name_that_goes_on_and_on_about_what_it_8",
    ]
    report = RegorusEngine(load_policy([tmp_path / "b"])).run_tests()
    assert (report.total, report.failed) == (len(names), 0), report.results


# --- determinism -------------------------------------------------------------------------------


def test_two_compiles_are_byte_identical(tmp_path: Path) -> None:
    first = compile_bundle([_support(), _other()], tmp_path / "one", tmp_path / "one.tar.gz")
    # input order, dict key order and a fresh output location must not matter
    reordered = [json.loads(json.dumps(d, sort_keys=True)) for d in (_other(), _support())]
    second = compile_bundle(reordered, tmp_path / "two", tmp_path / "two.tar.gz")
    assert first == second
    assert _read_tree(tmp_path / "one") == _read_tree(tmp_path / "two")
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()
    # and recompiling in place gives the same bytes again
    compile_bundle([_support(), _other()], tmp_path / "one", tmp_path / "one.tar.gz")
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()


def test_tarball_metadata_is_fixed(tmp_path: Path) -> None:
    compile_bundle([_support()], tmp_path / "b", tmp_path / "b.tar.gz")
    raw = (tmp_path / "b.tar.gz").read_bytes()
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip mtime 0
    assert raw[3] & 0x08 == 0  # no file name in the gzip header
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(raw))) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    for member in members:
        assert member.isfile()
        assert (member.mtime, member.uid, member.gid, member.mode) == (0, 0, 0, 0o644)
        assert (member.uname, member.gname) == ("", "")


def test_revision_follows_content(tmp_path: Path) -> None:
    base = compile_bundle([_support()], tmp_path / "a").revision
    changed = _support()
    changed["spec"]["tools"][1]["escalate"][0]["when"]["value"] = 101
    assert compile_bundle([changed], tmp_path / "b").revision != base
    described = _support()
    described["metadata"]["description"] = "other words"
    assert compile_bundle([described], tmp_path / "c").revision != base


# --- atomicity ---------------------------------------------------------------------------------


def _bad_intents() -> list[tuple[str, list[dict[str, Any]]]]:
    bad_path = _support()
    bad_path["spec"]["tools"][1]["escalate"][0]["when"]["field"] = (
        'action.parameters.amount } else := true { input["x'
    )
    bad_id = _support()
    bad_id["metadata"]["id"] = "evil\npackage x"
    bad_tool = _support()
    bad_tool["spec"]["tools"][0]["name"] = 'crm.read"ticket'
    bad_op = _support()
    bad_op["spec"]["tools"][1]["escalate"][0]["when"]["op"] = "regex"
    bad_value = _support()
    bad_value["spec"]["tools"][1]["escalate"][0]["when"]["value"] = "100"
    nested_bad = _support()
    nested_bad["spec"]["tools"][1]["escalate"][0]["when"] = {
        "any": [
            {"field": "action.parameters.amount", "op": "gt", "value": 100},
            {"not": {"field": "secrets.key", "op": "exists", "value": True}},
        ]
    }
    late_bad = _support()  # the second intent is the broken one: nothing may be written
    late_bad["metadata"]["id"] = "zz-late"
    late_bad["spec"]["examples"][0]["expect"]["reasons"] = ["not_a_reason_code"]
    return [
        ("bad field path", [bad_path]),
        ("bad intent id", [bad_id]),
        ("bad tool name", [bad_tool]),
        ("unknown op", [bad_op]),
        ("gt on a string", [bad_value]),
        ("bad nested root", [nested_bad]),
        ("bad second intent", [_other(), late_bad]),
        ("duplicate ids", [_support(), _support()]),
    ]


@pytest.mark.parametrize(("label", "intents"), _bad_intents(), ids=[b[0] for b in _bad_intents()])
def test_failed_compile_leaves_previous_bundle_intact(
    tmp_path: Path, label: str, intents: list[dict[str, Any]]
) -> None:
    out, tar = tmp_path / "build" / "bundle", tmp_path / "build" / "bundle.tar.gz"
    compile_bundle([_support()], out, tar)
    before = _snapshot(tmp_path)
    with pytest.raises(CompileError):
        compile_bundle(intents, out, tar)
    assert _snapshot(tmp_path) == before, label  # same files, same bytes, no leftovers
    assert sorted(p.name for p in (tmp_path / "build").iterdir()) == ["bundle", "bundle.tar.gz"]


def test_failed_compile_into_nothing_writes_nothing(tmp_path: Path) -> None:
    _, bad = _bad_intents()[0]
    with pytest.raises(CompileError, match="field path"):
        compile_bundle(bad, tmp_path / "build" / "bundle", tmp_path / "build" / "b.tar.gz")
    assert list(tmp_path.iterdir()) == []


def test_write_failure_rolls_back(tmp_path: Path) -> None:
    out, tar = tmp_path / "bundle", tmp_path / "bundle.tar.gz"
    compile_bundle([_support()], out, tar)
    (tmp_path / "blocker").write_text("a file where a directory is needed")
    before = _snapshot(tmp_path)
    with pytest.raises(CompileError, match="cannot write"):
        compile_bundle([_other()], out, tmp_path / "blocker" / "bundle.tar.gz")
    assert _snapshot(tmp_path) == before


def test_recompile_replaces_the_whole_directory(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    compile_bundle([_support(), _other()], out)
    (out / "aam" / "stale.rego").write_text("package stale\n")
    compile_bundle([_other()], out)
    assert not (out / "aam" / "intents" / "resolve_support_ticket.rego").exists()
    assert not (out / "aam" / "stale.rego").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no backups left


def test_refuses_to_replace_a_directory_that_is_not_a_bundle(tmp_path: Path) -> None:
    precious = tmp_path / "src"
    precious.mkdir()
    (precious / "main.py").write_text("print('keep me')\n")
    with pytest.raises(CompileError, match="refusing"):
        compile_bundle([_support()], precious)
    assert _read_tree(precious) == {"main.py": b"print('keep me')\n"}
    # an empty directory is fine
    (tmp_path / "empty").mkdir()
    compile_bundle([_support()], tmp_path / "empty")
    assert (tmp_path / "empty" / ".manifest").is_file()


def test_rejects_tarball_inside_the_output(tmp_path: Path) -> None:
    with pytest.raises(CompileError, match="inside"):
        compile_bundle([_support()], tmp_path / "b", tmp_path / "b" / "bundle.tar.gz")
    assert list(tmp_path.iterdir()) == []


def test_output_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "b").write_text("x")
    with pytest.raises(CompileError, match="not a directory"):
        compile_bundle([_support()], tmp_path / "b")


def test_input_dicts_are_not_mutated(tmp_path: Path) -> None:
    source = _support()
    source["spec"]["tools"][0]["escalate"] = []
    frozen = copy.deepcopy(source)
    compile_bundle([source], tmp_path / "b")
    assert source == frozen


def test_symlinked_output_keeps_the_link(tmp_path: Path) -> None:
    (tmp_path / "releases" / "current").mkdir(parents=True)
    (tmp_path / "bundle").symlink_to(tmp_path / "releases" / "current")
    compile_bundle([_support()], tmp_path / "bundle")
    compile_bundle([_other()], tmp_path / "bundle")
    assert (tmp_path / "bundle").is_symlink()
    assert (tmp_path / "releases" / "current" / "aam" / "intents" / "deploy_service.rego").exists()
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == ["current"]


def test_no_intents_is_a_bundle_that_denies(tmp_path: Path) -> None:
    bundle = compile_bundle([], tmp_path / "b")
    assert json.loads(bundle.files[".manifest"])["metadata"]["intents"] == []
    engine = RegorusEngine(load_policy([tmp_path / "b"]))
    decision = engine.evaluate("aam/decision", {"intent": {"id": "anything"}})
    assert decision["outcome"] == "deny"
    assert [r["code"] for r in decision["reasons"]] == ["no_intent"]


def test_not_an_intent(tmp_path: Path) -> None:
    with pytest.raises(CompileError, match="expected an Intent"):
        compile_bundle(["resolve-support-ticket"], tmp_path / "b")


def _many(count: int) -> list[dict[str, Any]]:
    return [
        intent(f"intent-{i:03d}", examples=[example("reads", {}, "allow")]) for i in range(count)
    ]


def test_rendering_in_worker_processes_gives_the_same_bytes(tmp_path: Path) -> None:
    serial = compile_bundle(_many(70), tmp_path / "serial", jobs=1)
    parallel = compile_bundle(_many(70), tmp_path / "parallel", jobs=2)
    assert sum(path.startswith(("aam/intents/", "aam/tests/")) for path in serial.files) == 140
    assert parallel.files == serial.files


@pytest.mark.parametrize("jobs", [1, 2])
def test_errors_from_worker_processes_are_the_first_in_order(tmp_path: Path, jobs: int) -> None:
    docs = _many(70)
    docs[40]["spec"]["tools"][0]["operations"] = ["fly"]
    docs[50]["metadata"]["id"] = "intent-010"  # a duplicate, but after the error
    with pytest.raises(CompileError, match=r"spec\.tools\[0\]\.operations\[0\]") as caught:
        compile_bundle(docs, tmp_path / "b", jobs=jobs)
    assert "intent-040" in str(caught.value)
    assert not (tmp_path / "b").exists()
    docs[40] = _many(41)[40]
    with pytest.raises(CompileError, match="'intent-010' is defined more than once"):
        compile_bundle(docs, tmp_path / "b", jobs=jobs)
