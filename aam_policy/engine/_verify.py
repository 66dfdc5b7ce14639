"""Bundle signature verification in OPA's format (`.signatures.json`), before any policy loads.

A signed bundle holds `.signatures.json` at its root: `{"signatures": [JWT]}`, one JWT whose
`files` claim lists every other file of the bundle as `{"name", "hash", "algorithm"}`. The
checks and their order follow OPA's `bundle/verify.go` so that a bundle accepted here is
accepted by `opa run --verification-key` and the other way round:

* exactly one JWT, valid under the configured key and algorithm (the key id is the configured
  one, as with `opa run --verification-key-id`, default "default");
* the `scope` claim equals the configured scope ("" when neither sets one);
* every file of the bundle is listed and its digest matches; every listed file is present.

Digests follow OPA's `bundle/hash.go`: `data.json`, `data.yaml` and `.manifest` are hashed over
their parsed value (objects with sorted keys, compact, strings as Go's JSON encoder writes
them, numbers as written in the file), so whitespace and key order do not matter; every other
file is hashed over its raw bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from aam_policy.engine._policy import PolicyLoadError

SIGNATURES_FILE = ".signatures.json"
DEFAULT_KEY_ID = "default"  # `opa run` / `opa build` --verification-key-id default
DEFAULT_ALGORITHM = "RS256"
FILE_HASH_ALGORITHM = "SHA-256"  # what OPA writes for every file
HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
VERIFICATION_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "HS256", "HS384", "HS512",
)  # fmt: skip
_STRUCTURED = frozenset({"data.json", "data.yaml", ".manifest", "signatures.json"})
_HASHES = {
    "MD5": "md5",
    "SHA-1": "sha1",
    "SHA-224": "sha224",
    "SHA-256": "sha256",
    "SHA-384": "sha384",
    "SHA-512": "sha512",
    "SHA-512-224": "sha512_224",
    "SHA-512-256": "sha512_256",
}


class BundleVerificationError(PolicyLoadError):
    """The bundle's signature is missing, invalid, or does not cover exactly its files."""


@dataclass(frozen=True)
class VerificationConfig:
    """The key a bundle must be signed with (`key`: PEM public key, or the HMAC secret)."""

    key: bytes = field(repr=False)  # never in logs or error messages
    key_id: str = DEFAULT_KEY_ID
    algorithm: str = DEFAULT_ALGORITHM
    scope: str = ""


def read_key(spec: str) -> bytes:
    """A key given as OPA takes it: the path of a file holding it, else the key itself."""
    path = Path(spec)
    if not spec.startswith("-----BEGIN") and path.is_file():
        return path.read_bytes()
    return spec.encode("utf-8")


def verification_config(
    key: str,
    key_id: str = DEFAULT_KEY_ID,
    algorithm: str = DEFAULT_ALGORITHM,
    scope: str = "",
) -> VerificationConfig:
    """Read and check the verification key (raises ValueError naming the problem, not the key)."""
    if algorithm not in VERIFICATION_ALGORITHMS:
        raise ValueError(
            f"unsupported signing algorithm {algorithm!r} "
            f"(one of {', '.join(VERIFICATION_ALGORITHMS)})"
        )
    if not key_id:
        raise ValueError("the verification key id must not be empty")
    try:
        material = read_key(key)
    except OSError as exc:
        raise ValueError(f"cannot read the verification key: {exc.strerror}") from None
    if not material:
        raise ValueError("the verification key is empty")
    config = VerificationConfig(material, key_id, algorithm, scope)
    _prepared_key(config)  # fail at start-up, not at the first bundle
    return config


def _prepared_key(config: VerificationConfig) -> Any:
    if config.algorithm in HMAC_ALGORITHMS:
        return config.key
    if b"-----BEGIN" not in config.key:
        raise ValueError(
            f"the verification key for {config.algorithm} must be a PEM public key "
            "(or the path of a file holding one)"
        )
    # Imported here, like jwt below: only a sidecar that verifies bundles needs them (~10 MB).
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import (
        load_pem_private_key,
        load_pem_public_key,
    )

    # As OPA: a public key, a certificate, or a private key standing for its public half.
    try:
        return load_pem_public_key(config.key)
    except ValueError:
        pass
    try:
        return x509.load_pem_x509_certificate(config.key).public_key()
    except ValueError:
        pass
    try:
        return load_pem_private_key(config.key, password=None).public_key()
    except (ValueError, TypeError):
        raise ValueError("the verification key is not a readable PEM key") from None


# --- digests ------------------------------------------------------------------------------


class _Number(str):
    """A JSON number kept as written: OPA decodes with UseNumber and re-encodes the literal."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Go's encoder (SetEscapeHTML(false)) escapes these; everything else is written as UTF-8.
_GO_ESCAPE = re.compile('["\\\\\x00-\x1f\u2028\u2029\ud800-\udfff]')
_GO_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
             "\t": "\\t"}  # fmt: skip


def _go_escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _GO_SHORT:
        return _GO_SHORT[char]
    if "\ud800" <= char <= "\udfff":
        return "\ufffd"  # Go decodes an unpaired surrogate escape to U+FFFD
    return f"\\u{ord(char):04x}"


def _go_string(text: str) -> str:
    return '"' + _GO_ESCAPE.sub(_go_escape, text) + '"'


def _walk(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",")
            out.append(_go_string(str(key)))
            out.append(":")
            _walk(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _walk(item, out)
        out.append("]")
    elif isinstance(value, _Number):
        out.append(value)
    elif isinstance(value, str):
        out.append(_go_string(value))
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):  # YAML only: JSON numbers arrive as _Number
        out.append(str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value))
    else:
        raise ValueError(f"cannot hash a {type(value).__name__} value")


def _parse_structured(name: str, content: bytes) -> Any:
    text = content.decode("utf-8")
    try:
        return json.loads(text, parse_int=_Number, parse_float=_Number, parse_constant=_no_constant)
    except json.JSONDecodeError:
        if not name.endswith(".yaml"):
            raise
    return yaml.safe_load(text)  # as OPA's util.Unmarshal: YAML when it is not JSON


def file_digest(name: str, content: bytes, algorithm: str = FILE_HASH_ALGORITHM) -> str:
    """The hex digest OPA records for the bundle file `name` (raises ValueError)."""
    if algorithm not in _HASHES:
        raise ValueError(f"unsupported hashing algorithm {algorithm!r}")
    digest = hashlib.new(_HASHES[algorithm])
    if PurePosixPath(name).name in _STRUCTURED:
        out: list[str] = []
        _walk(_parse_structured(name, content), out)
        digest.update("".join(out).encode("utf-8"))
    else:
        digest.update(content)
    return digest.hexdigest()


# --- verification -------------------------------------------------------------------------


def verify_bundle_files(
    label: str, entries: Iterable[tuple[str, bytes]], config: VerificationConfig
) -> None:
    """Check the bundle `label` (its files: name relative to the root -> bytes) against its
    `.signatures.json`; raises BundleVerificationError with the reason."""
    files = dict(entries)

    def refuse(message: str, name: str | None = None) -> BundleVerificationError:
        where = f"{label}/{name}" if name else label
        return BundleVerificationError(f"bundle signature check failed: {message}", where)

    raw = files.pop(SIGNATURES_FILE, None)
    if raw is None:
        raise refuse(f"the bundle is not signed (no {SIGNATURES_FILE})")
    listed = _verified_files(raw, config, refuse)
    for name in sorted(files):
        entry = listed.pop(name, None)
        if entry is None:
            raise refuse("file is not included in the bundle signature", name)
        try:
            actual = file_digest(name, files[name], entry["algorithm"])
        except (ValueError, UnicodeDecodeError) as exc:
            raise refuse(f"cannot hash the file: {exc}", name) from None
        if actual != entry["hash"].lower():
            raise refuse(f"digest mismatch (signed {entry['hash']}, file has {actual})", name)
    if listed:
        raise refuse(
            "file(s) listed in the bundle signature but missing from the bundle: "
            + ", ".join(sorted(listed))
        )


def _verified_files(raw: bytes, config: VerificationConfig, refuse: Any) -> dict[str, Any]:
    """The `files` claim (name -> entry) of the one JWT in `.signatures.json`, once verified."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise refuse(f"invalid {SIGNATURES_FILE}: {exc}") from None
    tokens = document.get("signatures") if isinstance(document, dict) else None
    if not isinstance(tokens, list) or not tokens:
        raise refuse(f"{SIGNATURES_FILE}: missing JWT (expected exactly one)")
    if len(tokens) > 1 or not isinstance(tokens[0], str):
        raise refuse(f"{SIGNATURES_FILE}: expected exactly one JWT")
    import jwt

    try:
        decoded = jwt.PyJWS().decode_complete(
            tokens[0], _prepared_key(config), algorithms=[config.algorithm]
        )
    except jwt.InvalidSignatureError:
        raise refuse(
            f"the signature does not verify with the configured {config.algorithm} key "
            f"{config.key_id!r} (signed with another key, or {SIGNATURES_FILE} was altered)"
        ) from None
    except (jwt.PyJWTError, ValueError) as exc:
        raise refuse(f"invalid JWT in {SIGNATURES_FILE}: {exc}") from None
    try:
        payload = json.loads(decoded["payload"])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise refuse(f"invalid JWT payload: {exc}") from None
    if not isinstance(payload, dict):
        raise refuse("invalid JWT payload: not an object")
    scope = payload.get("scope") or ""
    if scope != config.scope:
        raise refuse(f"scope mismatch (signed {scope!r}, expected {config.scope!r})")
    entries = payload.get("files")
    if not isinstance(entries, list):
        raise refuse("invalid JWT payload: no files claim")
    listed: dict[str, Any] = {}
    for entry in entries:
        if not (
            isinstance(entry, dict)
            and all(isinstance(entry.get(k), str) for k in ("name", "hash", "algorithm"))
        ):
            raise refuse(f"invalid entry in the files claim: {entry!r}")
        if not entry["algorithm"]:
            raise refuse(f"no hashing algorithm given for file {entry['name']}")
        listed[entry["name"].removeprefix("/")] = entry
    return listed
