"""Append-only, hash-chained audit trail; OPA decision-log ingestion; trace rebuild.

```python
store = AuditStore("audit.db")                      # SQLite, WAL, fsync per commit
AuditStore("audit.db", durability="normal")         # or $AAM_AUDIT_DURABILITY=normal
store.append("session.opened", "sess_1", {"human": "alice@example.com", "prompt": text, ...},
             actor="alice@example.com")             # payloads are redacted on the way in
store.ingest_decision_logs(opa_events)              # OPA decision logs -> `decision` events
result = store.verify()                             # VerifyResult(ok, checked, first_bad_seq, ...)
print(render_trace(store.trace("sess_1"), color=True))
serve_collector(store, "127.0.0.1", 8282)           # `aam collector`: POST /logs
```

Event types: ``session.opened``, ``decision``, ``escalation.requested``,
``escalation.approved``, ``escalation.denied``, ``escalation.expired``, ``action.executed``,
``session.teardown``. Payload conventions per type are in ``aam_policy.audit._trace``.
"""

from ._chain import GENESIS, canonical_json
from ._collector import AUDIT_DB_ENV, CollectorServer, ingest_to_audit_db, serve_collector
from ._ingest import decision_from_opa, parse_timestamp_ns
from ._models import EVENT_TYPES, AuditEvent, ChainHead, VerifyResult
from ._redact import REDACTED, mask_text, prompt_digest, redact
from ._store import DURABILITY_ENV, AuditStore
from ._trace import (
    PromptDigest,
    Trace,
    TraceAction,
    TraceDecision,
    TraceEscalation,
    TraceGap,
    TraceReason,
    TraceStep,
    TraceTeardown,
    build_trace,
    render_trace,
)

__all__ = [
    "AUDIT_DB_ENV",
    "DURABILITY_ENV",
    "EVENT_TYPES",
    "GENESIS",
    "REDACTED",
    "AuditEvent",
    "AuditStore",
    "ChainHead",
    "CollectorServer",
    "PromptDigest",
    "Trace",
    "TraceAction",
    "TraceDecision",
    "TraceEscalation",
    "TraceGap",
    "TraceReason",
    "TraceStep",
    "TraceTeardown",
    "VerifyResult",
    "build_trace",
    "canonical_json",
    "decision_from_opa",
    "ingest_to_audit_db",
    "mask_text",
    "parse_timestamp_ns",
    "prompt_digest",
    "redact",
    "render_trace",
    "serve_collector",
]
