"""Signed bundles: `.signatures.json` in OPA's format, and a sidecar that serves only those."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cli_helpers import run_aam
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sidecar_helpers import wait_for

from aam_policy.compiler import CompileError, compile_bundle, signing_config
from aam_policy.engine import PolicyLoadError, load_policy, opa_binary
from aam_policy.engine._verify import file_digest, verification_config
from aam_policy.intents import load_intents
from aam_policy.sidecar import SidecarError, SidecarProcess

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
INTENTS = ROOT / "fixtures" / "intents"
ALLOW = json.loads((ROOT / "fixtures" / "requests" / "allow-small-refund.json").read_text())
SECRET = "a-shared-hmac-secret-of-at-least-32-bytes"
SIGNATURES = ".signatures.json"


def _pem(key: rsa.RSAPrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _public_pem(key: rsa.RSAPrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("keys")
    good = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (where / "secret").write_text(SECRET)
    return {
        "private": _pem(good, where / "private.pem"),
        "public": _public_pem(good, where / "public.pem"),
        "other_public": _public_pem(other, where / "other.pem"),
        "secret": where / "secret",
    }


@pytest.fixture(scope="module")
def intents() -> list[Any]:
    return [item.intent for item in load_intents([INTENTS])]


def _claims(bundle: Path, public: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    token = json.loads((bundle / SIGNATURES).read_text())["signatures"][0]
    claims = jwt.decode(token, public.read_bytes(), algorithms=["RS256"])
    return jwt.get_unverified_header(token), claims


def _independent_hash(name: str, content: bytes) -> str:
    # OPA hashes JSON files over their compact, key-sorted value (no HTML escaping); the
    # compiled data has no characters where Python's and Go's JSON encoders differ.
    if name in ("data.json", ".manifest"):
        value = json.loads(content)
        content = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        content = content.encode()
    return hashlib.sha256(content).hexdigest()


# --- the signature file ---------------------------------------------------------------------


def test_rs256_signature_lists_every_file_but_itself_with_opa_hashes(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    out, tar = tmp_path / "bundle", tmp_path / "bundle.tar.gz"
    done = run_aam(
        "compile", str(INTENTS), "-o", str(out), "--tarball", str(tar),
        "--signing-key", str(keys["private"]),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "signed RS256" in done.stdout

    header, claims = _claims(out, keys["public"])
    assert header == {"alg": "RS256", "kid": "default"}
    assert set(claims) == {"files", "keyid"}  # what `opa build --signing-key` writes
    assert claims["keyid"] == "default"
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert SIGNATURES in on_disk
    listed = claims["files"]
    assert [f["name"] for f in listed] == [n for n in on_disk if n != SIGNATURES]
    for entry in listed:
        assert list(entry) == ["name", "hash", "algorithm"]
        assert entry["algorithm"] == "SHA-256"
        content = (out / entry["name"]).read_bytes()
        assert entry["hash"] == _independent_hash(entry["name"], content), entry["name"]
    # OPA's layout of the file: MarshalIndent with one space
    text = (out / SIGNATURES).read_text()
    assert text.startswith('{\n "signatures": [\n  "ey') and text.endswith('"\n ]\n}')

    with tarfile.open(tar) as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}  # type: ignore[union-attr]
    assert members[SIGNATURES] == (out / SIGNATURES).read_bytes()
    # the signature stays out of the revision: signing changes nothing else
    manifest = json.loads((out / ".manifest").read_text())
    unsigned = run_aam("compile", str(INTENTS), "-o", str(tmp_path / "plain"))
    assert unsigned.returncode == 0, unsigned.stderr
    assert json.loads((tmp_path / "plain" / ".manifest").read_text()) == manifest


def test_same_templates_and_key_give_identical_bundles(
    tmp_path: Path, keys: dict[str, Path], intents: list[Any]
) -> None:
    for alg, key in (("RS256", str(keys["private"])), ("HS256", str(keys["secret"]))):
        signing = signing_config(key, alg, key_id="ci", scope="write")
        tars = []
        for n in (1, 2):
            tar = tmp_path / f"{alg}-{n}.tar.gz"
            compile_bundle(intents, tmp_path / f"{alg}-{n}", tar, signing=signing)
            tars.append(tar.read_bytes())
        assert tars[0] == tars[1], alg
    # a literal secret and a file holding it sign alike
    literal = compile_bundle(
        intents, tmp_path / "lit", signing=signing_config(SECRET, "HS256", "ci", "write")
    )
    assert literal.files[SIGNATURES] == (tmp_path / "HS256-1" / SIGNATURES).read_bytes()
    token = json.loads(literal.files[SIGNATURES])["signatures"][0]
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["keyid"] == "ci" and claims["scope"] == "write"


def test_bad_signing_keys_are_refused_without_echoing_them(tmp_path: Path) -> None:
    with pytest.raises(CompileError, match="PEM private key"):
        signing_config(str(tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot-a-key\n")
    with pytest.raises(CompileError, match="not a readable PEM key") as info:
        signing_config(str(tmp_path / "junk.pem"))
    assert "not-a-key" not in str(info.value)
    with pytest.raises(CompileError, match="unsupported signing algorithm"):
        signing_config(SECRET, "ES256")
    assert "key=" not in repr(signing_config(SECRET, "HS256"))


@pytest.mark.parametrize(
    ("name", "content", "canonical"),
    [
        # objects: keys sorted, compact; numbers kept as written (OPA decodes with UseNumber)
        (
            "data.json",
            b'{"b": 1.50, "a": [true, null, -0, 1E5]}',
            '{"a":[true,null,-0,1E5],"b":1.50}',
        ),
        # Go's encoder without HTML escaping: <>& raw, \b \f short, U+2028 escaped, UTF-8 raw
        (
            "x/data.json",
            b'{"s": "<a>&\\b\\f\\u0001\\u2028\\u00e9"}',
            '{"s":"<a>&\\b\\f\\u0001\\u2028\u00e9"}',
        ),
        (
            ".manifest",
            b'{\n  "revision": "r",\n  "roots": ["aam"]\n}\n',
            '{"revision":"r","roots":["aam"]}',
        ),
        ("data.yaml", b"b: 2\na: x\n", '{"a":"x","b":2}'),
    ],
)
def test_structured_files_hash_like_opa(name: str, content: bytes, canonical: str) -> None:
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert file_digest(name, content) == expected


def test_other_files_hash_over_their_bytes() -> None:
    raw = b'package x\n\n# {"not": "json"}\n'
    assert file_digest("aam/x.rego", raw) == hashlib.sha256(raw).hexdigest()
    assert file_digest("data.yml", b"a: 1\n") == hashlib.sha256(b"a: 1\n").hexdigest()


# --- verification when loading ----------------------------------------------------------------


@pytest.fixture
def signed(tmp_path: Path, keys: dict[str, Path], intents: list[Any]) -> Path:
    out = tmp_path / "signed"
    compile_bundle(intents, out, signing=signing_config(str(keys["private"])))
    return out


def _alter(bundle: Path) -> None:
    module = bundle / "aam" / "core" / "decision.rego"
    module.write_text(module.read_text() + "\n# one more line\n")


def _extra(bundle: Path) -> None:
    (bundle / "aam" / "extra.rego").write_text("package aam.extra\n\nx := 1\n")


def _missing(bundle: Path) -> None:
    (bundle / "aam" / "tests" / "deploy_service_test.rego").unlink()


def _unsigned(bundle: Path) -> None:
    (bundle / SIGNATURES).unlink()


def _reformatted_data(bundle: Path) -> None:  # same value, other bytes: still valid
    data = json.loads((bundle / "data.json").read_text())
    (bundle / "data.json").write_text(json.dumps(data, separators=(",", ":")))


TAMPERING: dict[str, tuple[Callable[[Path], None], str]] = {
    "unsigned": (_unsigned, "the bundle is not signed"),
    "altered": (_alter, "decision.rego: bundle signature check failed: digest mismatch"),
    "extra-file": (_extra, "extra.rego: bundle signature check failed: file is not included"),
    "missing-file": (_missing, "missing from the bundle: aam/tests/deploy_service_test.rego"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_load_policy_refuses_tampered_bundles(
    signed: Path, keys: dict[str, Path], case: str
) -> None:
    config = verification_config(str(keys["public"]))
    assert load_policy(signed, config).revision
    tamper, reason = TAMPERING[case]
    tamper(signed)
    with pytest.raises(PolicyLoadError, match=reason):
        load_policy(signed, config)
    load_policy(signed)  # without a key, signatures are not looked at


def test_wrong_key_scope_and_whitespace(signed: Path, keys: dict[str, Path]) -> None:
    with pytest.raises(PolicyLoadError, match="does not verify with the configured RS256 key"):
        load_policy(signed, verification_config(str(keys["other_public"])))
    with pytest.raises(PolicyLoadError, match="scope mismatch"):
        load_policy(signed, verification_config(str(keys["public"]), scope="write"))
    with pytest.raises(PolicyLoadError, match="invalid JWT"):
        load_policy(signed, verification_config(SECRET, algorithm="HS256"))
    _reformatted_data(signed)
    assert load_policy(signed, verification_config(str(keys["public"]))).revision


def test_signed_tarball_and_hmac(tmp_path: Path, intents: list[Any]) -> None:
    tar = tmp_path / "b.tar.gz"
    compile_bundle(intents, tmp_path / "b", tar, signing=signing_config(SECRET, "HS256"))
    assert load_policy(tar, verification_config(SECRET, algorithm="HS256")).revision
    with pytest.raises(PolicyLoadError, match="does not verify"):
        load_policy(tar, verification_config(SECRET + "x", algorithm="HS256"))


# --- the sidecar ------------------------------------------------------------------------------


def _verify_args(keys: dict[str, Path], key: str = "public") -> list[str]:
    return ["--verification-key", str(keys[key]), "--reload-interval", "0.1"]


def _decide(url: str) -> dict[str, Any]:
    response = httpx.post(f"{url}/v1/data/aam/decision", json={"input": ALLOW}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def test_sidecar_serves_a_signed_bundle(tmp_path: Path, keys: dict[str, Path]) -> None:
    tar = tmp_path / "bundle.tar.gz"
    done = run_aam(
        "compile", str(INTENTS), "-o", str(tmp_path / "bundle"), "--tarball", str(tar),
        "--signing-key", str(keys["private"]),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for bundle in (tmp_path / "bundle", tar):
        with SidecarProcess(bundle, args=_verify_args(keys)) as sidecar:
            assert _decide(sidecar.url)["outcome"] == "allow"
            assert "bundle signatures required: RS256 key id 'default'" in sidecar.log_text()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsigned", "the bundle is not signed"),
        ("altered", "digest mismatch"),
        ("extra-file", "file is not included in the bundle signature"),
        ("wrong-key", "does not verify with the configured RS256 key"),
    ],
)
def test_sidecar_refuses_to_start_on_a_bad_bundle(
    signed: Path, keys: dict[str, Path], tmp_path: Path, case: str, reason: str
) -> None:
    key = "public"
    if case == "wrong-key":
        key = "other_public"
    else:
        TAMPERING[case][0](signed)
    process = SidecarProcess(
        signed, args=_verify_args(keys, key), log_file=tmp_path / "log", startup_timeout=30
    )
    with pytest.raises(SidecarError, match="exited with status 1"):
        process.start()
    log = process.log_text()
    assert f"cannot load bundle {signed}" in log and reason in log
    assert "BEGIN" not in log  # no key material in the log


def test_hot_reload_refuses_an_altered_bundle_and_keeps_serving(
    signed: Path, keys: dict[str, Path], intents: list[Any], tmp_path: Path
) -> None:
    with SidecarProcess(signed, args=_verify_args(keys), log_file=tmp_path / "log") as sidecar:
        first = _decide(sidecar.url)["policy"]["revision"]
        _alter(signed)
        wait_for(lambda: "digest mismatch" in sidecar.log_text())
        refused = sidecar.log_text().split("bundle reload refused")[-1]
        assert "digest mismatch" in refused and f"still serving revision '{first}'" in refused
        assert _decide(sidecar.url)["policy"]["revision"] == first

        # a properly signed new revision is served again
        shutil.rmtree(signed)
        time.sleep(0.3)
        fewer = [i for i in intents if i.metadata.id != "deploy-service"]
        compile_bundle(fewer, signed, signing=signing_config(str(keys["private"])))
        wait_for(lambda: _decide(sidecar.url)["policy"]["revision"] != first)


@pytest.mark.skipif(opa_binary() is None, reason="opa is not on PATH")
def test_real_opa_verifies_our_signature(tmp_path: Path, keys: dict[str, Path]) -> None:
    tar = tmp_path / "bundle.tar.gz"
    done = run_aam(
        "compile", str(INTENTS), "-o", str(tmp_path / "bundle"), "--tarball", str(tar),
        "--signing-key", str(keys["private"]),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with socket.socket() as probe:  # a free port for OPA (it does not report port 0's pick)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(opa_binary()), "run", "--server", "--addr", f"127.0.0.1:{port}",
         "--bundle", str(tar), "--verification-key", str(keys["public"])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy)
        assert _decide(url)["outcome"] == "allow"
    finally:
        server.terminate()
        server.wait(10)
