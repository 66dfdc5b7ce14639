"""Where the operator's state lives: one directory with the session, approval and audit stores.

```python
state = StateDir.resolve()              # --state DIR, else $AAM_STATE_DIR, else ./.aam
broker = state.open_broker(load_policy([bundle]).registry)
queue = state.open_queue()
```

Layout: ``sessions.db`` holds the session and approval tables (both libraries are designed to
share a file), ``audit.db`` the hash-chained audit trail (``$AAM_AUDIT_DB`` moves it, so the
sidecar's decision-log ingest and the broker write one trace), and ``session-keys`` the token
signing key when ``$AAM_SESSION_KEYS`` is not set.

Durability (see `AuditStore` and the session store): ``$AAM_AUDIT_DURABILITY`` (``full``, the
default, fsyncs every audit commit; ``normal`` may lose the last events on an OS crash) and
``$AAM_STATE_DURABILITY`` for the session and approval tables (``normal``, the default, relaxes
only the per-decision counters and request creation; session lifecycle and approval transitions
are always fsynced; ``full`` fsyncs every commit).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aam_policy.audit import AUDIT_DB_ENV, DURABILITY_ENV, AuditStore

# Sessions and approvals load when opened: `aam trace` and `aam audit verify` need only the
# audit store, and the session library brings the HTTP client and JWT stack (~0.15 s).
if TYPE_CHECKING:
    from aam_policy.escalation import ApprovalQueue
    from aam_policy.sessions import SessionBroker, SigningKeys

STATE_ENV = "AAM_STATE_DIR"
STATE_DURABILITY_ENV = "AAM_STATE_DURABILITY"
DEFAULT_STATE_DIR = ".aam"
KEY_FILE = "session-keys"


class StateDir:
    """The operator's state directory (created with mode 0700 on first use)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        audit_db: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self._environ = os.environ if environ is None else environ
        self._audit_db = Path(audit_db) if audit_db is not None else None

    @classmethod
    def resolve(
        cls, path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> StateDir:
        """`path`, else `$AAM_STATE_DIR`, else `./.aam`; `$AAM_AUDIT_DB` overrides the audit db."""
        env = os.environ if environ is None else environ
        chosen = path if path is not None else env.get(STATE_ENV) or DEFAULT_STATE_DIR
        return cls(chosen, audit_db=env.get(AUDIT_DB_ENV) or None, environ=env)

    def __repr__(self) -> str:
        return f"StateDir({str(self.path)!r})"

    @property
    def sessions_db(self) -> Path:
        return self.path / "sessions.db"

    @property
    def audit_db(self) -> Path:
        return self._audit_db if self._audit_db is not None else self.path / "audit.db"

    @property
    def key_file(self) -> Path:
        return self.path / KEY_FILE

    def ensure(self) -> Path:
        # 0700: the directory holds the signing key and who-did-what records.
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.path

    # --- signing keys -------------------------------------------------------------------------

    def signing_keys(self) -> SigningKeys:
        """`$AAM_SESSION_KEYS` when set, else the state's key file (generated on first use).

        The key file uses the `$AAM_SESSION_KEYS` format (`kid:base64secret`), so it can be
        moved into the environment unchanged. It must not be readable by group or others.
        """
        from aam_policy.sessions import ENV_VAR as KEYS_ENV
        from aam_policy.sessions import KeyConfigError, SigningKeys

        if self._environ.get(KEYS_ENV, "").strip():
            return SigningKeys.from_env(self._environ)
        path = self.key_file
        if not path.exists():
            self._create_key_file(path)
        mode = path.stat().st_mode
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyConfigError(
                f"{path} is accessible by group or others (mode {stat.S_IMODE(mode):04o});"
                " run: chmod 600 " + str(path)
            )
        return SigningKeys.parse(path.read_text(encoding="utf-8"))

    def _create_key_file(self, path: Path) -> None:
        from aam_policy.sessions import SigningKeys

        self.ensure()
        kid = "local-" + os.urandom(4).hex()
        # mkstemp creates the file 0600; link() publishes it complete and fails if another
        # process won the race, in which case its key is the one everybody uses.
        fd, tmp = tempfile.mkstemp(prefix=".session-keys.", dir=self.path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(f"{kid}:{SigningKeys.new_secret()}\n")
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)

    # --- stores -------------------------------------------------------------------------------

    def _durability(self, name: str, default: str) -> Any:
        # Validated by the store, whose error names the variable's value.
        return self._environ.get(name, "").strip().lower() or default

    def open_audit(self) -> AuditStore:
        self.ensure()
        durability = self._durability(DURABILITY_ENV, "full")
        if durability not in ("full", "normal"):
            raise ValueError(f"${DURABILITY_ENV} must be full or normal, not {durability!r}")
        return AuditStore(self.audit_db, durability=durability)

    def open_queue(self, audit: AuditStore | None = None) -> ApprovalQueue:
        from aam_policy.escalation import ApprovalQueue

        self.ensure()
        return ApprovalQueue(
            self.sessions_db,
            audit=audit or self.open_audit(),
            durability=self._durability(STATE_DURABILITY_ENV, "normal"),
        )

    def open_broker(
        self,
        registry: Mapping[str, Any] | None = None,
        *,
        queue: ApprovalQueue | None = None,
        audit: AuditStore | None = None,
    ) -> SessionBroker:
        """A broker reading grants from the approval queue, both auditing to one store.

        `registry` (the bundle's `data.aam.registry`) is only needed to open sessions.
        """
        from aam_policy.sessions import SessionBroker

        audit = audit or self.open_audit()
        return SessionBroker(
            self.sessions_db,
            self.signing_keys(),
            registry or {},
            audit=audit,
            grants=queue or self.open_queue(audit),
            durability=self._durability(STATE_DURABILITY_ENV, "normal"),
        )
