"""JIT session broker: ephemeral, intent-scoped agent sessions with signed tokens.

```python
keys = SigningKeys.from_env()                      # AAM_SESSION_KEYS="kid1:base64,..."
broker = SessionBroker("state.db", keys, registry, audit=AuditStore("audit.db"), grants=queue)
opened = broker.open(human, agent, "resolve-support-ticket", ttl=300, purpose=..., prompt=...)
session = broker.verify(opened.token)              # refuses forged, expired, revoked tokens
broker.to_input(session.id)                        # -> input.session
broker.record_decision(session.id, "crm.read_ticket", "confidential", counted=True)
broker.teardown(session.id, "completed")
```
"""

from ._broker import SessionBroker
from ._credentials import action_fingerprint
from ._models import (
    SENSITIVITY_LEVELS,
    AgentIdentity,
    ApprovalGrant,
    AuditSink,
    CredentialDenied,
    GrantSource,
    HumanPrincipal,
    OpenedSession,
    Session,
    SessionError,
    SessionExpired,
    SessionNotFound,
    SessionRevoked,
    TokenInvalid,
    UnknownIntent,
    sensitivity_rank,
)
from ._tokens import ACTIVE_ENV_VAR, ENV_VAR, KeyConfigError, SigningKeys

__all__ = [
    "ACTIVE_ENV_VAR",
    "ENV_VAR",
    "SENSITIVITY_LEVELS",
    "AgentIdentity",
    "ApprovalGrant",
    "AuditSink",
    "CredentialDenied",
    "GrantSource",
    "HumanPrincipal",
    "KeyConfigError",
    "OpenedSession",
    "Session",
    "SessionBroker",
    "SessionError",
    "SessionExpired",
    "SessionNotFound",
    "SessionRevoked",
    "SigningKeys",
    "TokenInvalid",
    "UnknownIntent",
    "action_fingerprint",
    "sensitivity_rank",
]
