"""load_policy: bundle dirs, tarballs, plain Rego trees, data merging, and refusing bad input."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from engine_helpers import BUNDLE, SUITE, tar_of_dir, tar_with, write_tree

from aam_policy.engine import PolicyLoadError, PolicySet, RegorusEngine, _policy, load_policy

MODULE = "package x\n\nimport rego.v1\n\nallow if input.ok\n"


def test_bundle_directory_loads_modules_data_and_manifest() -> None:
    policy = load_policy([BUNDLE])
    assert isinstance(policy, PolicySet)
    names = sorted(m.name for m in policy.modules)
    assert names == [
        "aam/core/decide.rego",
        "aam/core/entrypoint.rego",
        "aam/intents/demo_intent.rego",
        "aam/intents/other_intent.rego",
        "aam/tests/demo_intent_test.rego",
    ]
    assert policy.revision == "test-revision-1"
    assert policy.manifests[0].roots == ("aam",)
    assert set(policy.registry) == {"demo-intent", "other-intent"}
    assert policy.data["aam"]["bundle"]["revision"] == "test-revision-1"
    # messages name the file as the user knows it
    assert all(m.path.startswith(str(BUNDLE)) for m in policy.modules)


def test_single_path_argument_and_single_file(tmp_path: Path) -> None:
    write_tree(tmp_path, {"x.rego": MODULE})
    assert len(load_policy(tmp_path).modules) == 1
    assert len(load_policy(str(tmp_path / "x.rego")).modules) == 1


@pytest.mark.parametrize("prefix", ["", "./", "/"])
def test_tarball_loads_like_the_directory(tmp_path: Path, prefix: str) -> None:
    # "/name" is what `opa build` writes: a leading slash means the bundle root
    tarball = tar_of_dir(BUNDLE, tmp_path / "bundle.tar.gz", prefix=prefix)
    from_dir = load_policy([BUNDLE])
    from_tar = load_policy([tarball])
    assert from_tar.data == from_dir.data
    assert from_tar.revision == from_dir.revision
    assert {m.name: m.text for m in from_tar.modules} == {m.name: m.text for m in from_dir.modules}
    assert all(m.path.startswith(f"{tarball}/aam/") for m in from_tar.modules)


def test_data_files_merge_at_their_directory_path(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "data.json": json.dumps({"top": 1, "a": {"keep": True}}),
            "a/b/data.json": json.dumps({"deep": [1, 2]}),
            "a/data.yaml": "fromyaml: yes\n",
            "p.rego": "package a\n\nimport rego.v1\n\nv := data.a.b.deep\n",
        },
    )
    policy = load_policy([tmp_path])
    assert policy.data == {"top": 1, "a": {"keep": True, "b": {"deep": [1, 2]}, "fromyaml": True}}
    assert RegorusEngine(policy).evaluate("a/v") == [1, 2]


def test_hidden_directories_and_files_are_skipped(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "p.rego": MODULE,
            ".git/hooks.rego": "this is not rego {",
            ".hidden.rego": "neither {",
            "sub/.cache/data.json": "{broken",
            "notes.txt": "ignored",
            "other.json": "{not data}",
        },
    )
    policy = load_policy([tmp_path])
    assert [m.name for m in policy.modules] == ["p.rego"]
    assert policy.data == {}


def test_identical_modules_load_once(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    write_tree(copy, {"again/p.rego": MODULE})
    write_tree(tmp_path / "orig", {"p.rego": MODULE})
    policy = load_policy([tmp_path / "orig", copy])
    assert len(policy.modules) == 1
    assert policy.modules[0].path == str(tmp_path / "orig" / "p.rego")
    assert policy.duplicates == ((str(copy / "again" / "p.rego"), policy.modules[0].path),)
    # without dedup `allow` would be defined twice; it evaluates fine
    assert RegorusEngine(policy).evaluate("x/allow", {"ok": True}) is True


def test_bundle_and_its_tarball_together_dedupe_modules(tmp_path: Path) -> None:
    tarball = tar_of_dir(BUNDLE, tmp_path / "b.tar.gz")
    policy = load_policy([BUNDLE, tarball])
    assert len(policy.modules) == 5
    assert len(policy.duplicates) == 5
    # identical data merges without conflict
    assert policy.data == load_policy([BUNDLE]).data


def test_rego_parse_error_names_file_line_and_column(tmp_path: Path) -> None:
    write_tree(tmp_path, {"ok.rego": MODULE, "bad.rego": "package bad\n\nallow if {\n  1 ==\n}\n"})
    with pytest.raises(PolicyLoadError) as caught:
        load_policy([tmp_path])
    error = caught.value
    assert error.path == str(tmp_path / "bad.rego")
    assert error.line == 5
    assert error.column is not None
    assert str(error).startswith(f"{tmp_path / 'bad.rego'}:5:")
    assert "expecting expression" in str(error)


def test_rego_v0_syntax_is_a_parse_error(tmp_path: Path) -> None:
    write_tree(tmp_path, {"v0.rego": "package v0\n\nallow { true }\n"})
    with pytest.raises(PolicyLoadError, match=r"v0\.rego:3:7: .*if"):
        load_policy([tmp_path])


def test_long_generated_lines_are_accepted(tmp_path: Path) -> None:
    # regorus' default limit is 1024 columns; OPA has none and generated Rego can exceed it
    value = "x" * 5000
    write_tree(tmp_path, {"long.rego": f'package long\n\nv := "{value}"\n'})
    assert RegorusEngine(load_policy([tmp_path])).evaluate("long/v") == value


def test_conflicting_data_names_both_files(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "data.json": json.dumps({"a": {"b": {"c": 1}}}),
            "a/b/data.json": json.dumps({"c": 2}),
        },
    )
    with pytest.raises(PolicyLoadError) as caught:
        load_policy([tmp_path])
    message = str(caught.value)
    assert "data.a.b.c" in message
    assert "a/b/data.json" in message
    assert str(tmp_path / "data.json") in message


def test_conflicting_data_across_sources(tmp_path: Path) -> None:
    write_tree(tmp_path / "one", {"data.json": '{"k": 1}'})
    write_tree(tmp_path / "two", {"data.json": '{"k": [1]}'})
    with pytest.raises(PolicyLoadError, match=r"conflicting values for data\.k"):
        load_policy([tmp_path / "one", tmp_path / "two"])


def test_invalid_json_data_has_line_and_column(tmp_path: Path) -> None:
    write_tree(tmp_path, {"data.json": '{\n  "a": 1,\n  "b": \n}\n'})
    with pytest.raises(PolicyLoadError) as caught:
        load_policy([tmp_path])
    assert caught.value.path == str(tmp_path / "data.json")
    assert caught.value.line == 4


def test_root_data_must_be_an_object(tmp_path: Path) -> None:
    write_tree(tmp_path, {"data.json": "[1, 2]"})
    with pytest.raises(PolicyLoadError, match="must be a JSON object"):
        load_policy([tmp_path])


def test_missing_path_and_unknown_file_type(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match="no such file or directory"):
        load_policy([tmp_path / "nope"])
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(PolicyLoadError, match="not a policy source"):
        load_policy([tmp_path / "x.txt"])
    with pytest.raises(PolicyLoadError, match="no policy paths"):
        load_policy([])


def test_non_utf8_module(tmp_path: Path) -> None:
    (tmp_path / "bad.rego").write_bytes(b"package x\n# \xff\xfe\n")
    with pytest.raises(PolicyLoadError, match="not valid UTF-8"):
        load_policy([tmp_path])


# --- manifests and roots ----------------------------------------------------------------------


def _bundle(tmp_path: Path, manifest: object, files: dict[str, str]) -> Path:
    write_tree(tmp_path, {".manifest": json.dumps(manifest), **files})
    return tmp_path


def test_data_outside_manifest_roots_is_rejected(tmp_path: Path) -> None:
    root = _bundle(tmp_path, {"roots": ["aam"]}, {"data.json": '{"aam": {}, "other": 1}'})
    with pytest.raises(PolicyLoadError, match=r"data\.other is outside the manifest roots"):
        load_policy([root])


def test_package_outside_manifest_roots_is_rejected(tmp_path: Path) -> None:
    root = _bundle(tmp_path, {"roots": ["aam"]}, {"x.rego": MODULE})
    with pytest.raises(PolicyLoadError, match=r"x\.rego:1: package x is outside") as caught:
        load_policy([root])
    assert caught.value.line == 1


def test_nested_roots(tmp_path: Path) -> None:
    root = _bundle(
        tmp_path,
        {"roots": ["aam/intents"], "revision": "r"},
        {"aam/intents/data.json": '{"k": 1}', "p.rego": "package aam.intents.p\n\nv := 1\n"},
    )
    assert load_policy([root]).data == {"aam": {"intents": {"k": 1}}}


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("[1]", "not a JSON object"),
        ("{not json", "invalid manifest"),
        ('{"revision": 5}', "revision must be a string"),
        ('{"roots": "aam"}', "roots must be a list"),
        ('{"rego_version": 0}', "unsupported rego_version"),
    ],
)
def test_bad_manifest(tmp_path: Path, manifest: str, message: str) -> None:
    (tmp_path / ".manifest").write_text(manifest)
    with pytest.raises(PolicyLoadError, match=message) as caught:
        load_policy([tmp_path])
    assert caught.value.path == str(tmp_path / ".manifest")


def test_several_bundles_join_revisions(tmp_path: Path) -> None:
    one = _bundle(tmp_path / "one", {"revision": "r1"}, {"a.rego": "package a\n\nv := 1\n"})
    two = _bundle(tmp_path / "two", {"revision": "r2"}, {"b.rego": "package b\n\nv := 2\n"})
    assert load_policy([one, two]).revision == "r1,r2"
    assert load_policy([tmp_path / "one" / "a.rego"]).revision == ""


# --- hostile and broken tarballs --------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../escape.rego", "a/../../escape.rego", "//etc/x.rego", "C:/x.rego", "a\\b.rego"],
)
def test_tarball_path_traversal_is_rejected(tmp_path: Path, name: str) -> None:
    tarball = tar_with(tmp_path / "evil.tar.gz", [(name, MODULE)])
    with pytest.raises(PolicyLoadError, match="unsafe path in tarball") as caught:
        load_policy([tarball])
    assert caught.value.path == str(tarball)


def _symlink(info: tarfile.TarInfo) -> None:
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"


def _hardlink(info: tarfile.TarInfo) -> None:
    info.type = tarfile.LNKTYPE
    info.linkname = "p.rego"


def _fifo(info: tarfile.TarInfo) -> None:
    info.type = tarfile.FIFOTYPE


@pytest.mark.parametrize(
    ("maker", "message"),
    [(_symlink, "links are not allowed"), (_hardlink, "links are not allowed"), (_fifo, "special")],
)
def test_tarball_links_and_special_files_are_rejected(tmp_path: Path, maker, message) -> None:
    tarball = tar_with(tmp_path / "evil.tar.gz", [("p.rego", MODULE), ("link.rego", maker)])
    with pytest.raises(PolicyLoadError, match=message):
        load_policy([tarball])


def test_tarball_duplicate_entries_are_rejected(tmp_path: Path) -> None:
    tarball = tar_with(tmp_path / "dup.tar.gz", [("p.rego", MODULE), ("./p.rego", MODULE)])
    with pytest.raises(PolicyLoadError, match="duplicate entry"):
        load_policy([tarball])


def test_not_a_tarball(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(b"definitely not gzip")
    with pytest.raises(PolicyLoadError, match=r"not a valid \.tar\.gz bundle"):
        load_policy([bogus])


def test_truncated_tarball(tmp_path: Path) -> None:
    tarball = tar_of_dir(BUNDLE, tmp_path / "full.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tarball.read_bytes()[:200])
    with pytest.raises(PolicyLoadError, match=r"not a valid \.tar\.gz bundle"):
        load_policy([cut])


def test_tarball_size_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_policy, "MAX_FILE_BYTES", 100)
    big = tar_with(tmp_path / "big.tar.gz", [("p.rego", MODULE + "#" * 200)])
    with pytest.raises(PolicyLoadError, match="too large"):
        load_policy([big])


def test_tarball_decompression_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 MB of zeros compress to a few KB; the reader stops at the (lowered) total limit
    monkeypatch.setattr(_policy, "MAX_TARBALL_BYTES", 1024 * 1024)
    bomb = tar_with(tmp_path / "bomb.tar.gz", [("data.json", b" " * (2 * 1024 * 1024))])
    assert bomb.stat().st_size < 50_000
    with pytest.raises(PolicyLoadError, match="expands to more than"):
        load_policy([bomb])


def test_tarball_member_count_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_policy, "MAX_TARBALL_MEMBERS", 3)
    many = tar_with(tmp_path / "many.tar.gz", [(f"m{i}/x.txt", "x") for i in range(5)])
    with pytest.raises(PolicyLoadError, match="more than 3 entries"):
        load_policy([many])


def test_tarball_with_test_suite_reports_member_paths(tmp_path: Path) -> None:
    tarball = tar_of_dir(SUITE, tmp_path / "suite.tar.gz")
    policy = load_policy([tarball])
    assert policy.modules[0].path == f"{tarball}/sample_test.rego"


def test_data_under_a_null_value_conflicts(tmp_path: Path) -> None:
    write_tree(tmp_path, {"data.json": '{"a": null}', "a/b/data.json": '{"c": 1}'})
    with pytest.raises(PolicyLoadError, match=r"conflicting values for data\.a"):
        load_policy([tmp_path])
