"""Downstream credentials held by the broker on behalf of the enforcement point.

Storage decision: in memory only. Values are never written to SQLite, the audit store or a log,
so a restart forgets them and the enforcement point re-registers them from its secret source
(environment, vault) at start-up. Session *state* survives restarts; secrets deliberately do not.
Values are wrapped in pydantic `SecretStr`, so repr/str of anything holding them prints
`'**********'`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import SecretStr

# Re-exported as aam_policy.sessions.action_fingerprint: the client owns the canonical form, so
# the broker checks grants with the very function the enforcement point fingerprints with.
from aam_policy.client import action_fingerprint as action_fingerprint

from ._models import CredentialDenied


@dataclass(frozen=True)
class _Credential:
    value: SecretStr
    # None = any tool; otherwise the credential is released only for these tools.
    tools: frozenset[str] | None


class CredentialVault:
    """Name -> secret value, in process memory. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, _Credential] = {}

    def register(
        self, name: str, value: str | SecretStr, tools: Iterable[str] | None = None
    ) -> None:
        if not isinstance(name, str) or not name or any(ord(ch) < 32 for ch in name):
            raise ValueError("credential name must be a non-empty string without control chars")
        secret = value if isinstance(value, SecretStr) else SecretStr(value)
        if not secret.get_secret_value():
            raise ValueError(f"credential {name!r} has an empty value")
        scope = None if tools is None else frozenset([tools] if isinstance(tools, str) else tools)
        with self._lock:
            self._items[name] = _Credential(secret, scope)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._items.pop(name, None)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._items)

    def reveal(self, name: str, tool: str) -> str:
        """The plain value; callers check the session and decision first."""
        with self._lock:
            item = self._items.get(name)
        if item is None:
            raise CredentialDenied(f"no credential named {name!r}")
        if item.tools is not None and tool not in item.tools:
            raise CredentialDenied(f"credential {name!r} is not bound to tool {tool!r}")
        return item.value.get_secret_value()

    def __repr__(self) -> str:
        return f"CredentialVault(names={self.names()!r})"

    __str__ = __repr__
