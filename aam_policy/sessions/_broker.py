"""The JIT session broker: open, verify, track, tear down and revoke agent sessions.

`durability` ("normal" by default, or "full") is the session store's: see `_store` for what
each keeps through an OS crash. Opening, ending and revoking always commit durably.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

# One prompt-redaction rule for the whole product: the audit package owns it.
from aam_policy.audit import prompt_digest

from ._credentials import CredentialVault, action_fingerprint
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
    SessionExpired,
    SessionNotFound,
    SessionRevoked,
    TokenInvalid,
    UnknownIntent,
    coerce_model,
)
from ._store import Durability, SessionStore
from ._tokens import SigningKeys

logger = logging.getLogger("aam_policy.sessions")

_NS = 1_000_000_000


def _field(obj: Any, name: str) -> Any:
    """Read a field from a decision/request given as a mapping or as a model object."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _path(obj: Any, *names: str) -> Any:
    for name in names:
        if obj is None:
            return None
        obj = _field(obj, name)
    return obj


class SessionBroker:
    """Issues ephemeral, intent-scoped sessions and keeps their state in SQLite.

    `registry` is the compiled bundle's `data.aam.registry` (intent id -> entry with
    `session.max_ttl_seconds` and `session.max_actions`). `grants` is where approval grants are
    read from (an `aam_policy.escalation.ApprovalQueue`); without it `approvals` stays empty and
    every escalation stays escalated (fail closed).

    Downstream credentials registered here live in process memory only (see `_credentials`):
    never in SQLite, the audit store, logs or any repr; re-register them after a restart.
    """

    def __init__(
        self,
        db_path: str | Path,
        keys: SigningKeys,
        registry: Mapping[str, Any],
        audit: AuditSink | None = None,
        clock: Callable[[], int] = time.time_ns,
        *,
        grants: GrantSource | None = None,
        durability: Durability = "normal",
    ) -> None:
        self._store = SessionStore(db_path, durability=durability)
        self._keys = keys
        self._registry: Mapping[str, Any] = dict(registry)
        self._audit = audit
        self._clock = clock
        self._grants = grants
        self._vault = CredentialVault()

    def __repr__(self) -> str:
        return (
            f"SessionBroker(db={str(self._store.path)!r}, keys={self._keys!r},"
            f" intents={sorted(self._registry)!r}, credentials={self._vault.names()!r})"
        )

    __str__ = __repr__

    @property
    def keys(self) -> SigningKeys:
        return self._keys

    @property
    def db_path(self) -> Path:
        return self._store.path

    @property
    def durability(self) -> str:
        return self._store.durability

    def close(self) -> None:
        """Close the store's connections (they reopen on next use)."""
        self._store.close()

    def update_registry(self, registry: Mapping[str, Any]) -> None:
        """Swap in a new bundle's registry (existing sessions keep the limits they opened with)."""
        self._registry = dict(registry)

    def set_grant_source(self, grants: GrantSource | None) -> None:
        self._grants = grants

    # --- lifecycle ----------------------------------------------------------------------------

    def open(
        self,
        human: HumanPrincipal | Mapping[str, Any],
        agent: AgentIdentity | Mapping[str, Any],
        intent: str,
        ttl: int | None = None,
        purpose: str = "",
        prompt: str = "",
    ) -> OpenedSession:
        """Open a session for `human`'s `agent` under `intent`, TTL capped by the intent.

        The prompt is kept only as its sha256 plus a redacted excerpt.
        """
        human = coerce_model(HumanPrincipal, human)
        agent = coerce_model(AgentIdentity, agent)
        entry = self._registry.get(intent) if isinstance(intent, str) else None
        if not isinstance(entry, Mapping):
            raise UnknownIntent(f"intent {intent!r} is not in the policy bundle")
        limits = entry.get("session") or {}
        max_ttl = limits.get("max_ttl_seconds")
        if not isinstance(max_ttl, int) or isinstance(max_ttl, bool) or max_ttl <= 0:
            raise UnknownIntent(f"intent {intent!r} has no valid session.max_ttl_seconds")
        max_actions = limits.get("max_actions")
        if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or ttl <= 0):
            raise ValueError("ttl must be a positive number of seconds or None")
        ttl_seconds = max_ttl if ttl is None else min(ttl, max_ttl)
        capped = ttl is not None and ttl > max_ttl

        now = self._clock()
        digest = prompt_digest(prompt)
        session = Session(
            id="sess_" + secrets.token_urlsafe(16),
            intent=intent,
            human=human,
            agent=agent,
            purpose=purpose,
            prompt_sha256=digest["sha256"],
            prompt_excerpt=digest["excerpt"],
            issued_at_ns=now,
            expires_at_ns=now + ttl_seconds * _NS,
            ttl_requested_seconds=ttl,
            max_ttl_seconds=max_ttl,
            ttl_seconds=ttl_seconds,
            ttl_capped=capped,
            max_actions=max_actions if isinstance(max_actions, int) else None,
        )
        jti = secrets.token_urlsafe(16)
        token = self._keys.sign(
            {
                "sid": session.id,
                "sub": human.id,
                "agent": agent.id,
                "intent": intent,
                "iat": now // _NS,
                # Floor: the token never outlives the session record.
                "exp": session.expires_at_ns // _NS,
                "jti": jti,
            }
        )
        self._store.insert(session, jti)
        if capped:
            logger.info(
                "session %s: requested ttl %ss capped to intent max %ss", session.id, ttl, max_ttl
            )
        logger.info(
            "session %s opened: intent=%s human=%s agent=%s ttl=%ss",
            session.id,
            intent,
            human.id,
            agent.id,
            ttl_seconds,
        )
        self._emit(
            "session.opened",
            session.id,
            {
                "human": human.id,
                "agent": agent.id,
                "intent": intent,
                "purpose": purpose,
                "prompt": digest,
                "expires_at_ns": session.expires_at_ns,
                "ttl_seconds": ttl_seconds,
                "ttl_requested_seconds": ttl,
                "max_ttl_seconds": max_ttl,
                "ttl_capped": capped,
                "human_roles": list(human.roles),
                "human_groups": list(human.groups),
                "agent_kind": agent.kind,
                "agent_owner": agent.owner,
            },
            actor=human.id,
        )
        return OpenedSession(session=session, token=token)

    def verify(self, token: str) -> Session:
        """The live session a token stands for, else TokenInvalid/SessionExpired/SessionRevoked."""
        claims = self._keys.verify(token)
        found = self._store.get(claims["sid"])
        if found is None:
            raise TokenInvalid("token names no known session")
        session, jti = found
        if (
            claims["jti"] != jti
            or claims["sub"] != session.human.id
            or claims["agent"] != session.agent.id
            or claims["intent"] != session.intent
        ):
            raise TokenInvalid("token claims do not match the session")
        now = self._clock()
        if session.ended:
            if session.end_kind == "expired":
                raise SessionExpired(f"session {session.id} expired")
            raise SessionRevoked(
                f"session {session.id} was {session.end_kind}: {session.end_reason}"
            )
        if now >= session.expires_at_ns or now >= claims["exp"] * _NS:
            raise SessionExpired(f"session {session.id} expired")
        return self._with_grants(session, now)

    def get(self, session_id: str) -> Session:
        """The stored session (ended or not), with its unexpired approval grants."""
        found = self._store.get(session_id)
        if found is None:
            raise SessionNotFound(f"no session {session_id!r}")
        return self._with_grants(found[0], self._clock())

    def list(
        self,
        *,
        active_only: bool = False,
        human: str | None = None,
        agent: str | None = None,
        intent: str | None = None,
    ) -> list[Session]:
        """Stored sessions (oldest first), optionally only live ones, filtered."""
        return self._store.list(
            active_at_ns=self._clock() if active_only else None,
            human=human,
            agent=agent,
            intent=intent,
        )

    def record_decision(
        self,
        session_id: str,
        tool: str,
        sensitivity: str | None,
        counted: bool,
        *,
        with_grants: bool = True,
    ) -> Session:
        """Apply a decision to the session state atomically.

        `counted=True` (the action is allowed and will run) consumes one action of the budget,
        adds `tool` to `tools_used` and raises `max_sensitivity_seen` (an unknown or missing
        level counts as restricted). `counted=False` (denied or escalated) only bumps the
        decision counter: the agent saw no data, so the chain history stays unchanged.
        A counted action on an ended session is refused with SessionRevoked.
        `with_grants=False` skips reading the approval grants into the returned session (the
        Guard does not use them there; it saves a query per decision).
        """
        level = sensitivity if sensitivity in SENSITIVITY_LEVELS else "restricted"
        session = self._store.record(session_id, tool, level, counted)
        return self._with_grants(session, self._clock()) if with_grants else session

    def to_input(self, session_id: str, *, fingerprint: str | None = None) -> dict[str, Any]:
        """The DESIGN.md `input.session` object, with the session's unexpired approval grants.

        With `fingerprint`, only grants for that action fingerprint are included.
        """
        return self.get(session_id).to_input(fingerprint=fingerprint)

    def teardown(
        self, session_id: str, reason: str = "completed", *, actor: str | None = None
    ) -> Session:
        """End a session (idempotent: an already ended session is returned unchanged)."""
        ended = self._end("id = ?", (session_id,), "completed", reason, actor)
        if not ended and self._store.get(session_id) is None:
            raise SessionNotFound(f"no session {session_id!r}")
        return self.get(session_id)

    def sweep_expired(self, now: int | None = None) -> list[str]:
        """Tear down every live session whose TTL has run out (reason "expired")."""
        at = self._clock() if now is None else now
        ended = self._end("expires_at_ns <= ?", (at,), "expired", "expired", None, now=at)
        return [session.id for session in ended]

    def revoke(
        self,
        session_id: str | None = None,
        *,
        agent: str | None = None,
        human: str | None = None,
        reason: str = "revoked",
        actor: str | None = None,
    ) -> list[str]:
        """Revoke live sessions by id, agent id and/or human id (all given filters must match)."""
        where: list[str] = []
        params: list[str] = []
        for column, value in (("id", session_id), ("agent_id", agent), ("human_id", human)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if not where:
            raise ValueError("revoke needs session_id, agent or human")
        ended = self._end(" AND ".join(where), tuple(params), "revoked", reason, actor)
        return [session.id for session in ended]

    def _end(
        self,
        where: str,
        params: tuple[Any, ...],
        kind: str,
        reason: str,
        actor: str | None,
        *,
        now: int | None = None,
    ) -> list[Session]:
        at = self._clock() if now is None else now
        ended = self._store.end(where, params, at, kind, reason)
        for session in ended:
            logger.info("session %s %s: %s", session.id, kind, reason)
            self._emit(
                "session.teardown",
                session.id,
                {
                    "reason": reason,
                    "kind": kind,
                    "actions_used": session.actions_used,
                    "tools_used": list(session.tools_used),
                },
                actor=actor,
            )
        return ended

    # --- credential brokering -----------------------------------------------------------------

    def register_credential(
        self, name: str, value: str | SecretStr, *, tools: Iterable[str] | None = None
    ) -> None:
        """Hold a downstream credential (in memory only); `tools` limits which tools get it."""
        self._vault.register(name, value, tools)
        logger.info("credential %r registered", name)

    def unregister_credential(self, name: str) -> None:
        self._vault.unregister(name)

    def credential_names(self) -> list[str]:
        return self._vault.names()

    def credential_for(
        self, session_id: str, name: str, decision: Any, request: Mapping[str, Any]
    ) -> str:
        """Release credential `name` to the enforcement point for one decided action.

        Released only when the session is live, `decision` allows, and `request` (the enriched
        input the decision was made for) belongs to this session and carries the fingerprint
        of its own action. Never hand the result to the agent.
        """
        try:
            session = self.get(session_id)
        except SessionNotFound:
            raise CredentialDenied(f"no session {session_id!r}") from None
        now = self._clock()
        if not session.is_live(now):
            raise CredentialDenied(f"session {session_id} is not live")
        if _field(decision, "outcome") != "allow" or _field(decision, "allow") is not True:
            raise CredentialDenied("the decision does not allow the action")
        if _field(decision, "intent") != session.intent:
            raise CredentialDenied("the decision was made for another intent")
        if (
            _path(request, "session", "id") != session.id
            or _path(request, "intent", "id") != session.intent
            or _path(request, "actor", "human", "id") != session.human.id
            or _path(request, "actor", "agent", "id") != session.agent.id
        ):
            raise CredentialDenied("the request does not belong to this session")
        action = _field(request, "action")
        if not isinstance(action, Mapping):
            raise CredentialDenied("the request has no action")
        claimed = _field(action, "fingerprint")
        if not isinstance(claimed, str) or claimed != action_fingerprint(action):
            raise CredentialDenied("the action fingerprint does not match its action")
        decided = _field(decision, "fingerprint")
        if decided is not None and decided != claimed:
            raise CredentialDenied("the decision was made for another action")
        value = self._vault.reveal(name, str(_field(action, "tool")))
        logger.info(
            "credential %r released for session %s tool %s", name, session.id, action["tool"]
        )
        return value

    # --- helpers ------------------------------------------------------------------------------

    def _with_grants(self, session: Session, now: int) -> Session:
        if self._grants is None:
            return session
        grants = tuple(
            ApprovalGrant(
                approval_id=grant.approval_id,
                fingerprint=grant.fingerprint,
                approver=grant.approver,
                expires_at_ns=grant.expires_at_ns,
            )
            for grant in self._grants.active_grants(session.id, now)
            if grant.expires_at_ns > now
        )
        return session.model_copy(update={"approvals": grants})

    def _emit(
        self, type_: str, session_id: str, payload: dict[str, Any], *, actor: str | None
    ) -> None:
        # After the SQLite commit: the audit store may share the database file, and holding our
        # write lock while it appends would deadlock.
        if self._audit is not None:
            self._audit.append(type_, session_id, payload, actor)
