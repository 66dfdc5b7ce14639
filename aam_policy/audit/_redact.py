"""Redaction: what may enter the audit store.

The store never holds a secret or a whole prompt. Every payload passes :func:`redact` on its
way in, which returns a JSON-only copy where

* a key named like a prompt (``prompt``, ``system_prompt``, ``prompt_text`` ...) keeps only
  :func:`prompt_digest` of its value: ``{"sha256": hex of the UTF-8 text, "excerpt": the first
  40 characters with e-mail addresses, digit runs and token-like strings masked, + "…"}``. An
  already digested prompt (``{"sha256", "excerpt"}``) is kept, its excerpt masked again;
* a key named like a secret (password, passphrase, secret, token, credential, api_key,
  access_key, private_key, authorization, cookie, bearer) has its whole value replaced by
  ``"[REDACTED]"``. Keys ending in ``_sha256``, ``_hash``, ``_digest``, ``_fingerprint``,
  ``_id``, ``_ids``, ``_name``, ``_names`` or ``_kid`` name *about* a secret, not the secret
  (``prompt_sha256``, ``credential_name``), and are kept;
* every string is scanned for secret-shaped values wherever they sit (``Bearer …`` /
  ``Basic …`` credentials, JWTs, PEM private keys, well-known API-key prefixes,
  ``password=…`` pairs) and those spans become ``[REDACTED]``;
* a string longer than 1000 characters is cut there: an audit row records facts, not
  documents, and a cap bounds what a mislabelled field can leak.

Matching is on the lower-cased key with ``-`` read as ``_``, so ``apiKey``, ``X-Api-Key`` and
``Authorization`` all count.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import math
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel

from ._chain import canonical_json

REDACTED = "[REDACTED]"
EXCERPT_CHARS = 40
MAX_STRING_CHARS = 1000

_SECRET_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "authorization",
    "cookie",
    "bearer",
)
_SAFE_SUFFIXES = (
    "_sha256",
    "_hash",
    "_digest",
    "_fingerprint",
    "_id",
    "_ids",
    "_name",
    "_names",
    "_kid",
)

# Secret-shaped values, wherever they appear in a string.
_SECRET_VALUES = [
    (re.compile(r"\b((?i:bearer))\s+[A-Za-z0-9._~+/-]{16,}=*"), r"\1 " + REDACTED),
    # Basic credentials are base64: demand a digit, +, / or = or a lower-then-upper mix so
    # that English ("basic information") is left alone.
    (
        re.compile(
            r"\b((?i:basic))\s+(?=[A-Za-z0-9+/]*(?:[0-9+/]|[a-z][A-Za-z0-9+/]*[A-Z]))"
            r"[A-Za-z0-9+/]{12,}={0,2}"
        ),
        r"\1 " + REDACTED,
    ),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), REDACTED),
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?"
            r"(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)"
        ),
        REDACTED,
    ),
    (re.compile(r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{8,}"), REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), REDACTED),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"), REDACTED),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), REDACTED),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), REDACTED),
    (
        re.compile(r"\b((?i:password|passwd|secret|token|api[_-]?key))(\s*[=:]\s*)[^\s,;&\"']+"),
        r"\1\2" + REDACTED,
    ),
]
# One pass to decide whether any of them can match: most strings hold none.
_ANY_SECRET = re.compile("|".join(f"(?:{p.pattern})" for p, _ in _SECRET_VALUES))
# A literal every pattern above contains (lower-cased): a string holding none of them cannot
# match, and substring tests cost ~1 us where the alternation above costs ~15 us per string.
# Keep in step with `_SECRET_VALUES` (tests/test_audit_redact.py checks every sample).
_SECRET_HINTS = (
    "bearer",
    "basic",
    "eyj",
    "-----begin",
    "k_live_",
    "k_test_",
    "sk-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "glpat-",
    "xox",
    "akia",
    "passw",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 20+ characters of key-ish alphabet mixing letters and digits: an unlabelled key or id.
_TOKENISH = re.compile(
    r"\b(?=[A-Za-z0-9_+/=-]*\d)(?=[A-Za-z0-9_+/=-]*[A-Za-z])[A-Za-z0-9_+/=-]{20,}"
)
# Digits, possibly grouped by spaces, dashes or dots: card, phone, account and ticket numbers.
_DIGITS = re.compile(r"\d+(?:[ .-]\d+)*")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def mask_text(text: str) -> str:
    """`text` on one line with secrets, e-mail addresses, token-like strings and digit runs
    masked (``[REDACTED]``, ``[email]``, ``[token]``, ``#``). Idempotent."""
    for pattern, replacement in _SECRET_VALUES:
        text = pattern.sub(replacement, text)
    text = _EMAIL.sub("[email]", text)
    text = _TOKENISH.sub("[token]", text)
    text = _DIGITS.sub("#", text)
    return " ".join(text.split())


def _excerpt(text: str) -> str:
    # Mask the whole text first so a boundary never cuts an address or a number in half
    # (half an e-mail address would slip past the pattern).
    masked = mask_text(text)
    if len(masked) > EXCERPT_CHARS:
        return masked[:EXCERPT_CHARS].rstrip() + "…"
    return masked


def prompt_digest(prompt: str) -> dict[str, str]:
    """``{"sha256": hex digest of the UTF-8 prompt, "excerpt": masked first 40 chars + "…"}``.

    The hash lets anyone holding the prompt prove it was this one (and matches the
    `intent.prompt_sha256` policy saw); the excerpt lets a reader of the trace recognise it.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, not {type(prompt).__name__}")
    data = prompt.encode("utf-8", "surrogatepass")
    return {"sha256": hashlib.sha256(data).hexdigest(), "excerpt": _excerpt(prompt)}


def redact(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A redacted, JSON-only copy of `payload` (never mutates it). See the module docstring."""
    if not isinstance(payload, Mapping):
        raise TypeError(f"an audit payload must be a mapping, not {type(payload).__name__}")
    return _mapping(payload)


def _may_hold_secret(text: str) -> bool:
    low = text.lower()
    return any(hint in low for hint in _SECRET_HINTS)


@functools.lru_cache(maxsize=4096)  # a pure function of the key; payload keys repeat
def _key_kind(key: str) -> str:
    k = key.lower().replace("-", "_")
    if k.endswith(_SAFE_SUFFIXES):
        return "plain"
    if k == "prompt" or k.startswith("prompt_") or k.endswith("_prompt") or k == "prompts":
        return "prompt"
    if any(word in k for word in _SECRET_WORDS):
        return "secret"
    return "plain"


def _mapping(obj: Mapping[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw_key, value in obj.items():
        key = raw_key if isinstance(raw_key, str) else str(_plain(raw_key))
        key = _string(key)
        kind = _key_kind(key)
        if value is None:
            out[key] = None
        elif kind == "secret":
            out[key] = REDACTED
        elif kind == "prompt":
            out[key] = _prompt_value(value)
        else:
            out[key] = _value(value)
    return out


def _prompt_value(value: Any) -> Any:
    if isinstance(value, str):
        return prompt_digest(value)
    if isinstance(value, Mapping) and set(value) <= {"sha256", "excerpt"} and "sha256" in value:
        digest = value["sha256"]
        excerpt = value.get("excerpt", "")
        if isinstance(digest, str) and _HEX64.match(digest) and isinstance(excerpt, str):
            return {"sha256": digest, "excerpt": _excerpt(excerpt)}
    # A structured prompt (chat messages, parts): digest its canonical JSON text.
    return prompt_digest(canonical_json(_value(value)))


def _value(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"audit payloads cannot hold {value!r}")
        return value
    if isinstance(value, Mapping):
        return _mapping(value)
    if isinstance(value, (list, tuple)):
        return [_value(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_value(v) for v in value), key=canonical_json)
    return _value(_plain(value))


def _plain(value: Any) -> Any:
    """Convert the few non-JSON types payloads reasonably carry."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        # Raw bytes in an audit payload are more likely key material than anything readable.
        return f"[{len(value)} bytes]"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"audit payloads hold JSON values only, not {type(value).__name__}")


def _string(text: str) -> str:
    # Keys, tool names, outcomes, codes repeat in every event: remember the short ones.
    return _short_string(text) if len(text) <= _CACHED_CHARS else _clean_string(text)


_CACHED_CHARS = 128


@functools.lru_cache(maxsize=8192)  # a pure function of the text
def _short_string(text: str) -> str:
    return _clean_string(text)


def _clean_string(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be stored as UTF-8
        text = text.encode("utf-8", "replace").decode("utf-8")
    if _may_hold_secret(text) and _ANY_SECRET.search(text):
        for pattern, replacement in _SECRET_VALUES:
            text = pattern.sub(replacement, text)
    if len(text) > MAX_STRING_CHARS:
        text = f"{text[:MAX_STRING_CHARS]}… [+{len(text) - MAX_STRING_CHARS} chars]"
    return text
