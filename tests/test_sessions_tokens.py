"""Session tokens: forgery, expiry, key configuration and rotation."""

from __future__ import annotations

import base64
import json
import logging
import secrets
from pathlib import Path

import jwt
import pytest
from session_helpers import ALICE, BOT, REGISTRY, Clock

from aam_policy.sessions import (
    KeyConfigError,
    SessionBroker,
    SessionExpired,
    SigningKeys,
    TokenInvalid,
)

SECRET_A = secrets.token_bytes(32)
SECRET_B = secrets.token_bytes(32)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segments(token: str) -> tuple[dict, dict, str]:
    header, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(header))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


def _assemble(header: dict, payload: dict, signature: str) -> str:
    return ".".join(
        [
            _b64url(json.dumps(header).encode()),
            _b64url(json.dumps(payload).encode()),
            signature,
        ]
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys() -> SigningKeys:
    return SigningKeys({"k1": SECRET_A})


@pytest.fixture
def broker(tmp_path: Path, keys: SigningKeys, clock: Clock) -> SessionBroker:
    return SessionBroker(tmp_path / "sessions.db", keys, REGISTRY, clock=clock)


def _open(broker: SessionBroker, ttl: int | None = None) -> tuple[str, str]:
    opened = broker.open(ALICE, BOT, "resolve-support-ticket", ttl=ttl, purpose="t", prompt="p")
    return opened.session.id, opened.token


# --- a good token -----------------------------------------------------------------------------


def test_token_is_hs256_jwt_with_kid_and_documented_claims(broker: SessionBroker) -> None:
    sid, token = _open(broker, ttl=120)
    header, payload, _ = _segments(token)
    assert header["alg"] == "HS256"
    assert header["kid"] == "k1"
    assert set(payload) == {"sid", "sub", "agent", "intent", "iat", "exp", "jti"}
    assert payload["sid"] == sid
    assert payload["sub"] == ALICE.id
    assert payload["agent"] == BOT.id
    assert payload["intent"] == "resolve-support-ticket"
    assert payload["exp"] - payload["iat"] == 120
    assert broker.verify(token).id == sid


# --- forgery ----------------------------------------------------------------------------------


def test_tampered_payload_is_refused(broker: SessionBroker) -> None:
    _, token = _open(broker)
    header, payload, signature = _segments(token)
    payload["sub"] = "mallory@example.com"
    with pytest.raises(TokenInvalid, match="signature"):
        broker.verify(_assemble(header, payload, signature))


def test_extended_expiry_in_payload_is_refused(broker: SessionBroker) -> None:
    _, token = _open(broker)
    header, payload, signature = _segments(token)
    payload["exp"] += 86_400
    with pytest.raises(TokenInvalid):
        broker.verify(_assemble(header, payload, signature))


def test_token_signed_with_another_key_under_a_known_kid_is_refused(
    broker: SessionBroker,
) -> None:
    _, token = _open(broker)
    _, payload, _ = _segments(token)
    forged = jwt.encode(payload, SECRET_B, algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(TokenInvalid, match="signature"):
        broker.verify(forged)


def test_alg_none_is_refused(broker: SessionBroker) -> None:
    _, token = _open(broker)
    _, payload, _ = _segments(token)
    unsigned = _assemble({"alg": "none", "typ": "JWT", "kid": "k1"}, payload, "")
    with pytest.raises(TokenInvalid, match="algorithm"):
        broker.verify(unsigned)


def test_other_algorithms_are_refused(broker: SessionBroker) -> None:
    _, token = _open(broker)
    _, payload, _ = _segments(token)
    hs512 = jwt.encode(payload, secrets.token_bytes(64), algorithm="HS512", headers={"kid": "k1"})
    with pytest.raises(TokenInvalid, match="algorithm"):
        broker.verify(hs512)


def test_unknown_or_missing_kid_is_refused(broker: SessionBroker) -> None:
    _, token = _open(broker)
    _, payload, _ = _segments(token)
    unknown = jwt.encode(payload, SECRET_A, algorithm="HS256", headers={"kid": "k9"})
    with pytest.raises(TokenInvalid, match="key id"):
        broker.verify(unknown)
    no_kid = jwt.encode(payload, SECRET_A, algorithm="HS256")
    with pytest.raises(TokenInvalid, match="key id"):
        broker.verify(no_kid)


def test_validly_signed_token_for_unknown_session_or_other_jti_is_refused(
    broker: SessionBroker, keys: SigningKeys
) -> None:
    _, token = _open(broker)
    _, payload, _ = _segments(token)
    with pytest.raises(TokenInvalid, match="no known session"):
        broker.verify(keys.sign({**payload, "sid": "sess_doesnotexist"}))
    with pytest.raises(TokenInvalid, match="do not match"):
        broker.verify(keys.sign({**payload, "jti": "another"}))
    with pytest.raises(TokenInvalid, match="do not match"):
        broker.verify(keys.sign({**payload, "intent": "quick-lookup"}))


def test_missing_claims_and_garbage_are_refused(broker: SessionBroker, keys: SigningKeys) -> None:
    _, token = _open(broker)
    _, payload, _ = _segments(token)
    del payload["jti"]
    with pytest.raises(TokenInvalid):
        broker.verify(keys.sign(payload))
    for garbage in ["", "not-a-jwt", "a.b.c", token + "x"]:
        with pytest.raises(TokenInvalid):
            broker.verify(garbage)


# --- expiry -----------------------------------------------------------------------------------


def test_token_expires_with_injected_clock(broker: SessionBroker, clock: Clock) -> None:
    sid, token = _open(broker, ttl=30)
    clock.advance(29)
    assert broker.verify(token).id == sid
    clock.advance(1)
    with pytest.raises(SessionExpired):
        broker.verify(token)


# --- rotation ---------------------------------------------------------------------------------


def test_key_rotation(broker: SessionBroker, keys: SigningKeys) -> None:
    old_sid, old_token = _open(broker)
    keys.add("k2", SECRET_B, activate=True)
    new_sid, new_token = _open(broker)

    assert _segments(new_token)[0]["kid"] == "k2"
    assert keys.active_kid == "k2"
    # The old key still verifies what it signed while it is kept ...
    assert broker.verify(old_token).id == old_sid
    assert broker.verify(new_token).id == new_sid
    # ... and retiring it invalidates those tokens only.
    keys.remove("k1")
    with pytest.raises(TokenInvalid, match="key id"):
        broker.verify(old_token)
    assert broker.verify(new_token).id == new_sid


def test_rotation_via_environment_across_a_restart(tmp_path: Path, clock: Clock) -> None:
    db = tmp_path / "sessions.db"
    before = SigningKeys.from_env({"AAM_SESSION_KEYS": f"k1:{b64(SECRET_A)}"})
    old_sid, old_token = _open(SessionBroker(db, before, REGISTRY, clock=clock))

    # New key first = active; old key kept for verification.
    during = SigningKeys.from_env({"AAM_SESSION_KEYS": f"k2:{b64(SECRET_B)},k1:{b64(SECRET_A)}"})
    broker = SessionBroker(db, during, REGISTRY, clock=clock)
    assert broker.verify(old_token).id == old_sid
    assert _segments(_open(broker)[1])[0]["kid"] == "k2"

    after = SigningKeys.from_env({"AAM_SESSION_KEYS": f"k2:{b64(SECRET_B)}"})
    with pytest.raises(TokenInvalid):
        SessionBroker(db, after, REGISTRY, clock=clock).verify(old_token)


def test_cannot_remove_the_active_key(keys: SigningKeys) -> None:
    with pytest.raises(KeyConfigError, match="active"):
        keys.remove("k1")


# --- configuration ----------------------------------------------------------------------------


def test_parse_env_and_config_forms() -> None:
    urlsafe_unpadded = base64.urlsafe_b64encode(SECRET_B).rstrip(b"=").decode()
    keys = SigningKeys.parse(f"k1:{b64(SECRET_A)}, k2:{urlsafe_unpadded}")
    assert keys.kids == ("k1", "k2")
    assert keys.active_kid == "k1"

    env = {
        "AAM_SESSION_KEYS": f"k1:{b64(SECRET_A)},k2:{b64(SECRET_B)}",
        "AAM_SESSION_ACTIVE_KID": "k2",
    }
    assert SigningKeys.from_env(env).active_kid == "k2"

    config = SigningKeys.from_config(
        {"keys": {"old": b64(SECRET_A), "new": b64(SECRET_B)}, "active": "new"}
    )
    assert config.kids == ("old", "new")
    assert config.active_kid == "new"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("k1", "KID:BASE64SECRET"),
        ("k1:%%%notbase64", "base64"),
        (f"k1:{base64.b64encode(b'short').decode()}", "32 bytes"),
        (f"bad kid:{base64.b64encode(SECRET_A).decode()}", "invalid key id"),
        ("", "at least one"),
    ],
)
def test_bad_key_specs_are_rejected_without_echoing_secrets(spec: str, message: str) -> None:
    with pytest.raises(KeyConfigError, match=message) as info:
        SigningKeys.parse(spec)
    secret_text = spec.partition(":")[2]
    if len(secret_text) > 8:
        assert secret_text not in str(info.value)


def test_missing_env_is_an_error_unless_dev_keys_allowed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with pytest.raises(KeyConfigError, match="AAM_SESSION_KEYS"):
        SigningKeys.from_env({})
    with caplog.at_level(logging.WARNING, logger="aam_policy.sessions"):
        keys = SigningKeys.from_env({}, allow_dev_key=True)
    assert len(keys) == 1
    assert keys.active_kid.startswith("dev-")
    assert "generated session signing key" in caplog.text


def test_repr_never_shows_key_material() -> None:
    keys = SigningKeys({"k1": SECRET_A, "k2": SECRET_B})
    text = repr(keys) + str(keys)
    assert "k1" in text
    assert "k2" in text
    for secret in (SECRET_A, SECRET_B):
        assert b64(secret) not in text
        assert repr(secret) not in text


def test_new_secret_is_usable() -> None:
    keys = SigningKeys.parse(f"fresh:{SigningKeys.new_secret()}")
    assert keys.active_kid == "fresh"


def test_a_remembered_token_is_rechecked_when_its_key_is_replaced() -> None:
    keys = SigningKeys({"k1": SECRET_A, "k2": SECRET_B}, active="k2")
    claims = {"sid": "s", "sub": "h", "agent": "a", "intent": "i", "iat": 1, "exp": 2, "jti": "j"}
    token = SigningKeys({"k1": SECRET_A}).sign(claims)
    first = keys.verify(token)
    first["sid"] = "mutated"  # callers get a copy: the remembered claims stay intact
    assert keys.verify(token)["sid"] == "s"
    keys.remove("k1")
    keys.add("k1", secrets.token_bytes(32))  # same kid, another secret
    with pytest.raises(TokenInvalid, match="signature"):
        keys.verify(token)
