"""Session token signing: HS256 JWTs (PyJWT) with key ids, so keys can rotate.

Rotation: add the new key and make it active (new tokens carry its `kid`); keep the old key
until every token it signed has expired (at most the largest intent `max_ttl`), then remove it.
Tokens whose `kid` is unknown are refused, so removing a key revokes what it signed.

`verify` remembers the tokens it verified (a bounded map, token -> claims and the key that
verified them): an agent presents the same token on every call, and PyJWT's parse and HMAC cost
~100 us. A remembered token is trusted only while the very same key is still held, so removing
or replacing a key takes effect at once. Time checks were never part of `verify`.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

from ._models import TokenInvalid

logger = logging.getLogger("aam_policy.sessions")

ENV_VAR = "AAM_SESSION_KEYS"
ACTIVE_ENV_VAR = "AAM_SESSION_ACTIVE_KID"
ALGORITHM = "HS256"
# RFC 7518 3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32
REQUIRED_CLAIMS = ("sid", "sub", "agent", "intent", "iat", "exp", "jti")
_VERIFIED_MAX = 4096  # remembered verified tokens (see the module docstring)
_KID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class KeyConfigError(ValueError):
    """Signing keys are missing or malformed. Messages never contain key material."""


def _decode_secret(kid: str, text: str) -> bytes:
    # Accept standard and URL-safe base64, padded or not: operators paste both.
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        secret = base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise KeyConfigError(f"signing key {kid!r}: secret is not valid base64") from None
    return secret


class SigningKeys:
    """A set of HS256 keys by key id; one is active for signing, all verify.

    Key material is held privately and never appears in repr/str or error messages.
    """

    __slots__ = ("_active", "_secrets", "_verified", "_verified_lock")

    def __init__(
        self, keys: Mapping[str, bytes] | Iterable[tuple[str, bytes]], active: str | None = None
    ) -> None:
        self._secrets: dict[str, bytes] = {}
        # token -> (kid, the secret object that verified it, claims); see the module docstring.
        self._verified: dict[str, tuple[str, bytes, dict[str, Any]]] = {}
        self._verified_lock = threading.Lock()
        items = keys.items() if isinstance(keys, Mapping) else keys
        for kid, secret in items:
            self._put(kid, secret)
        if not self._secrets:
            raise KeyConfigError("at least one signing key is required")
        # Default active key: the first one (put a new key first to rotate).
        self._active = next(iter(self._secrets)) if active is None else active
        if self._active not in self._secrets:
            raise KeyConfigError(f"active key id {self._active!r} is not among the keys")

    # --- construction -------------------------------------------------------------------------

    @classmethod
    def parse(cls, spec: str, active: str | None = None) -> SigningKeys:
        """Parse `"kid1:base64secret,kid2:base64secret"`; the first key is active by default."""
        pairs: list[tuple[str, bytes]] = []
        for index, part in enumerate(p.strip() for p in spec.split(",")):
            if not part:
                continue
            kid, sep, text = part.partition(":")
            if not sep:
                raise KeyConfigError(f"signing key #{index + 1}: expected KID:BASE64SECRET")
            pairs.append((kid.strip(), _decode_secret(kid.strip(), text)))
        return cls(pairs, active=active or None)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SigningKeys:
        """From a config mapping: `{"keys": {kid: base64} | "kid:b64,...", "active": kid}`."""
        keys = config.get("keys")
        active = config.get("active")
        if isinstance(keys, str):
            return cls.parse(keys, active=active)
        if isinstance(keys, Mapping):
            return cls(
                [(str(kid), _decode_secret(str(kid), str(text))) for kid, text in keys.items()],
                active=active,
            )
        raise KeyConfigError("config needs 'keys': a mapping of key id to base64 secret")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, allow_dev_key: bool = False
    ) -> SigningKeys:
        """From `AAM_SESSION_KEYS` (active key: `AAM_SESSION_ACTIVE_KID` or the first).

        With `allow_dev_key` a missing variable yields a random key (with a warning) instead
        of an error; tokens it signs die with the process.
        """
        env = os.environ if environ is None else environ
        spec = env.get(ENV_VAR, "").strip()
        if not spec:
            if allow_dev_key:
                return cls.generate()
            raise KeyConfigError(
                f"{ENV_VAR} is not set (format: kid1:base64secret,kid2:base64secret)"
            )
        return cls.parse(spec, active=env.get(ACTIVE_ENV_VAR, "").strip() or None)

    @classmethod
    def generate(cls, kid: str | None = None, *, warn: bool = True) -> SigningKeys:
        """A fresh random key for development and tests."""
        if warn:
            logger.warning(
                "using a generated session signing key: tokens will not verify after a restart;"
                " set %s for anything but development",
                ENV_VAR,
            )
        return cls({kid or f"dev-{secrets.token_hex(4)}": secrets.token_bytes(32)})

    @staticmethod
    def new_secret() -> str:
        """A new random secret, base64-encoded, for an operator to put in `AAM_SESSION_KEYS`."""
        return base64.b64encode(secrets.token_bytes(32)).decode("ascii")

    # --- rotation -----------------------------------------------------------------------------

    def _put(self, kid: str, secret: bytes) -> None:
        if not isinstance(kid, str) or not _KID.match(kid):
            raise KeyConfigError(f"invalid key id {kid!r} (letters, digits, . _ -; max 64)")
        if not isinstance(secret, bytes | bytearray) or len(secret) < MIN_SECRET_BYTES:
            raise KeyConfigError(f"signing key {kid!r}: secret must be at least 32 bytes")
        self._secrets[kid] = bytes(secret)

    def add(self, kid: str, secret: bytes | str, *, activate: bool = False) -> None:
        """Add a key (bytes, or base64 text); `activate` makes it the signing key."""
        if kid in self._secrets:
            raise KeyConfigError(f"key id {kid!r} already exists")
        self._put(kid, _decode_secret(kid, secret) if isinstance(secret, str) else secret)
        if activate:
            self._active = kid

    def activate(self, kid: str) -> None:
        if kid not in self._secrets:
            raise KeyConfigError(f"unknown key id {kid!r}")
        self._active = kid

    def remove(self, kid: str) -> None:
        """Stop trusting a key: every token it signed fails verification from now on."""
        if kid == self._active:
            raise KeyConfigError(f"cannot remove the active key {kid!r}; activate another first")
        if self._secrets.pop(kid, None) is None:
            raise KeyConfigError(f"unknown key id {kid!r}")

    @property
    def active_kid(self) -> str:
        return self._active

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._secrets)

    def __contains__(self, kid: object) -> bool:
        return kid in self._secrets

    def __len__(self) -> int:
        return len(self._secrets)

    def __repr__(self) -> str:
        return f"SigningKeys(active={self._active!r}, kids={list(self._secrets)!r})"

    __str__ = __repr__

    # --- sign / verify ------------------------------------------------------------------------

    def sign(self, claims: Mapping[str, Any]) -> str:
        kid = self._active
        return jwt.encode(
            dict(claims), self._secrets[kid], algorithm=ALGORITHM, headers={"kid": kid}
        )

    def verify(self, token: str) -> dict[str, Any]:
        """Check signature and shape; return the claims. Time checks are the caller's (clock).

        Only HS256 is accepted (so `alg: none` and algorithm confusion fail) and the `kid`
        must name a key we still hold.
        """
        if not isinstance(token, str) or not token:
            raise TokenInvalid("token must be a non-empty string")
        known = self._verified.get(token)
        # `is`: the same key object still held (removal or replacement misses).
        if known is not None and self._secrets.get(known[0]) is known[1]:
            return dict(known[2])
        kid, secret, claims = self._verify(token)
        with self._verified_lock:
            if len(self._verified) >= _VERIFIED_MAX:
                self._verified.pop(next(iter(self._verified)))  # oldest first
            self._verified[token] = (kid, secret, dict(claims))
        return claims

    def _verify(self, token: str) -> tuple[str, bytes, dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise TokenInvalid("malformed token") from None
        if header.get("alg") != ALGORITHM:
            raise TokenInvalid(f"token algorithm {header.get('alg')!r} is not accepted")
        kid = header.get("kid")
        secret = self._secrets.get(kid) if isinstance(kid, str) else None
        if secret is None:
            raise TokenInvalid("token key id is unknown (forged, or its key was retired)")
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                options={
                    "require": list(REQUIRED_CLAIMS),
                    # Expiry is checked against the broker's injectable clock, not time.time().
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenInvalid("token signature does not verify") from None
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid(f"token rejected: {type(exc).__name__}") from None
        for name in ("sid", "sub", "agent", "intent", "jti"):
            if not isinstance(claims.get(name), str) or not claims[name]:
                raise TokenInvalid(f"token claim {name!r} must be a non-empty string")
        for name in ("iat", "exp"):
            if not isinstance(claims.get(name), int) or isinstance(claims[name], bool):
                raise TokenInvalid(f"token claim {name!r} must be an integer")
        return kid, secret, claims
