"""Signing a bundle the way `opa build --signing-key` does: `.signatures.json` at its root.

The file is `{"signatures": [JWT]}` (OPA's indentation). The JWT's header is
`{"alg", "kid"}`; its payload is `{"files": [{"name", "hash", "algorithm": "SHA-256"}, ...],
"keyid"}` (plus `scope` when one is given, which OPA takes from a claims file), listing every
file of the bundle but `.signatures.json` itself, hashed as OPA hashes them (`file_digest`:
JSON files over their parsed value, the rest over their bytes). No time claim and only
deterministic algorithms (RSA PKCS#1 v1.5, HMAC), so the same files and key give the same
bytes.

The digest rule lives in `aam_policy.engine._verify`, next to the verifier that must agree
with it and with OPA.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from aam_policy.compiler._errors import CompileError
from aam_policy.engine._verify import (
    DEFAULT_KEY_ID,
    FILE_HASH_ALGORITHM,
    HMAC_ALGORITHMS,
    SIGNATURES_FILE,
    file_digest,
    read_key,
)

# ECDSA and RSA-PSS signatures are randomized: they would break byte-identical bundles.
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "HS256", "HS384", "HS512")


@dataclass(frozen=True)
class SigningConfig:
    """A loaded signing key: an RSA private key, or the HMAC secret."""

    key: Any = field(repr=False)  # never in logs or error messages
    algorithm: str = "RS256"
    key_id: str = DEFAULT_KEY_ID
    scope: str = ""


def signing_config(
    key: str, algorithm: str = "RS256", key_id: str = DEFAULT_KEY_ID, scope: str = ""
) -> SigningConfig:
    """`key` as `opa build --signing-key` takes it: a PEM file (RS*), or for HS* a file holding
    the secret or the secret itself. Raises CompileError naming the problem, never the key."""
    if algorithm not in SIGNING_ALGORITHMS:
        raise CompileError(
            f"unsupported signing algorithm {algorithm!r} (one of {', '.join(SIGNING_ALGORITHMS)})"
        )
    if not key_id:
        raise CompileError("the signing key id must not be empty")
    try:
        material = read_key(key)
    except OSError as exc:
        raise CompileError(f"cannot read the signing key: {exc.strerror}") from None
    if algorithm in HMAC_ALGORITHMS:
        if not material:
            raise CompileError("the signing secret is empty")
        return SigningConfig(material, algorithm, key_id, scope)
    if b"-----BEGIN" not in material:
        raise CompileError(
            f"the signing key for {algorithm} must be a PEM private key file (no such file, "
            "or not PEM)"
        )
    try:
        private = load_pem_private_key(material, password=None)
    except (ValueError, TypeError) as exc:
        reason = "it is encrypted" if isinstance(exc, TypeError) else "not a readable PEM key"
        raise CompileError(f"cannot load the signing key: {reason}") from None
    if not isinstance(private, RSAPrivateKey):
        raise CompileError(f"the signing key for {algorithm} must be an RSA private key")
    return SigningConfig(private, algorithm, key_id, scope)


def signatures_file(files: dict[str, bytes], signing: SigningConfig) -> bytes:
    """The `.signatures.json` covering `files` (bundle path -> bytes)."""
    try:
        listed = [
            {"name": name, "hash": file_digest(name, files[name]), "algorithm": FILE_HASH_ALGORITHM}
            for name in sorted(files)
            if name != SIGNATURES_FILE
        ]
    except (ValueError, UnicodeDecodeError) as exc:
        raise CompileError(f"cannot hash the bundle for signing: {exc}") from None
    # Keys in the order Go's json.Marshal writes OPA's payload map (sorted) and FileInfo.
    payload: dict[str, Any] = {"files": listed, "keyid": signing.key_id}
    if signing.scope:
        payload["scope"] = signing.scope
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    try:
        token = jwt.PyJWS().encode(
            body,
            signing.key,
            algorithm=signing.algorithm,
            headers={"typ": None, "kid": signing.key_id},
        )
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise CompileError(f"cannot sign the bundle: {type(exc).__name__}") from None
    return json.dumps({"signatures": [token]}, indent=1).encode("utf-8")
