"""OPA decision-log ingestion, directly and through the collector over loopback HTTP."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from audit_helpers import ALICE, T0, tamper

from aam_policy.audit import AuditStore, CollectorServer, decision_from_opa, parse_timestamp_ns


def opa_event(decision_id: str, outcome: str = "allow", **overrides: Any) -> dict[str, Any]:
    """A decision-log event shaped like OPA's (and our sidecar's)."""
    event: dict[str, Any] = {
        "labels": {"id": "4c6f2b52-opa", "version": "1.4.2"},
        "decision_id": decision_id,
        "bundles": {"aam": {"revision": "rev-bundle-1"}},
        "path": "aam/decision",
        "input": {
            "request_id": f"req-{decision_id}",
            "actor": {"human": {"id": ALICE}, "agent": {"id": "spiffe://x/bot"}},
            "intent": {"id": "resolve-support-ticket"},
            "action": {"tool": "payments.refund", "operation": "write", "fingerprint": "c" * 64},
            "session": {"id": "sess_opa"},
        },
        "result": {
            "outcome": outcome,
            "allow": outcome == "allow",
            "intent": "resolve-support-ticket",
            "reasons": []
            if outcome == "allow"
            else [{"code": "escalation_required", "message": "refund over 100"}],
            "policy": {"revision": "rev-policy-1", "intent_revision": "int-1"},
        },
        "erased": ["/input/action/parameters", "/input/intent/purpose"],
        "requested_by": "127.0.0.1:5000",
        "timestamp": "2026-01-01T00:00:01.123456789Z",
        "metrics": {"timer_rego_query_eval_ns": 1000},
    }
    event.update(overrides)
    return event


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    s = AuditStore(tmp_path / "audit.db")
    yield s
    s.close()


def test_timestamps_keep_nanoseconds_and_offsets() -> None:
    assert parse_timestamp_ns("2026-01-01T00:00:00Z") == T0
    assert parse_timestamp_ns("2026-01-01T00:00:01.123456789Z") == T0 + 1_123_456_789
    assert parse_timestamp_ns("2026-01-01T00:00:00.5Z") == T0 + 500_000_000
    assert parse_timestamp_ns("2026-01-01T02:00:00+02:00") == T0
    assert parse_timestamp_ns("2025-12-31T19:00:00-05:00") == T0
    assert parse_timestamp_ns("yesterday") is None
    assert parse_timestamp_ns(12) is None


def test_opa_event_maps_to_a_decision_payload() -> None:
    mapped = decision_from_opa(opa_event("d-1", "escalate"))
    assert mapped is not None
    assert mapped.event_id == "decision:d-1"
    assert (mapped.session_id, mapped.actor) == ("sess_opa", ALICE)
    assert mapped.ts_ns == T0 + 1_123_456_789
    assert mapped.payload == {
        "decision_id": "d-1",
        "source": "opa",
        "path": "aam/decision",
        "request_id": "req-d-1",
        "outcome": "escalate",
        "reasons": [{"code": "escalation_required", "message": "refund over 100"}],
        "intent": "resolve-support-ticket",
        "revision": "rev-policy-1",
        "intent_revision": "int-1",
        "tool": "payments.refund",
        "operation": "write",
        "fingerprint": "c" * 64,
        "erased": ["/input/action/parameters", "/input/intent/purpose"],
    }


def test_opa_result_shapes() -> None:
    boolean = decision_from_opa(opa_event("b", result=False, bundles={"x": {"revision": "r9"}}))
    assert boolean is not None
    assert boolean.payload["outcome"] == "deny" and boolean.payload["revision"] == "r9"
    undefined = decision_from_opa({k: v for k, v in opa_event("u").items() if k != "result"})
    assert undefined is not None and undefined.payload["outcome"] == "undefined"
    failed = decision_from_opa(
        opa_event("e", error={"code": "internal_error", "message": "eval failed"}, masked=["/x"])
    )
    assert failed is not None and failed.payload["outcome"] == "error"
    assert failed.payload["reasons"] == [{"code": "internal_error", "message": "eval failed"}]
    assert failed.payload["masked"] == ["/x"]
    assert decision_from_opa({"path": "aam/decision"}) is None  # no decision id
    bare = decision_from_opa({"decision_id": "bare"})
    assert bare is not None and bare.session_id is None and bare.actor is None


def test_ingest_is_idempotent_on_decision_id(store: AuditStore) -> None:
    events = [opa_event("d-1"), opa_event("d-2", "escalate"), opa_event("d-1")]
    assert store.ingest_decision_logs(events) == 2
    assert store.ingest_decision_logs(events) == 0
    assert store.ingest_decision_logs([{"no": "id"}]) == 0
    stored = store.events()
    assert [e.payload["decision_id"] for e in stored] == ["d-1", "d-2"]
    assert all(e.type == "decision" and e.session_id == "sess_opa" for e in stored)
    assert store.verify().ok
    with pytest.raises(TypeError):
        store.ingest_decision_logs(["not an object"])  # type: ignore[list-item]


def test_a_decision_recorded_by_the_pep_is_not_duplicated_by_the_log(store: AuditStore) -> None:
    store.append(
        "decision",
        "sess_opa",
        {"decision_id": "d-1", "outcome": "allow", "tool": "payments.refund"},
        actor=ALICE,
    )
    assert store.ingest_decision_logs([opa_event("d-1"), opa_event("d-2")]) == 1
    assert len(store) == 2
    assert store.events()[0].payload.get("source") is None  # the first report wins


def _post(url: str, events: Any, *, compress: bool = True, **headers: str) -> httpx.Response:
    body = json.dumps(events).encode()
    if compress:
        body = gzip.compress(body)
        headers.setdefault("Content-Encoding", "gzip")
    headers.setdefault("Content-Type", "application/json")
    return httpx.post(f"{url}/logs", content=body, headers=headers, timeout=10)


def test_collector_ingests_gzip_uploads_idempotently(store: AuditStore) -> None:
    batch = [opa_event(f"d-{i}", "allow" if i % 2 else "deny") for i in range(5)]
    with CollectorServer(store) as collector:
        assert collector.url.startswith("http://127.0.0.1:")
        first = _post(collector.url, batch)
        assert first.status_code == 200
        assert first.json() == {"received": 5, "ingested": 5}
        again = _post(collector.url, batch)  # OPA retrying an upload it thinks failed
        assert again.status_code == 200 and again.json()["ingested"] == 0
        plain = _post(collector.url, [opa_event("d-9")], compress=False)
        assert plain.json() == {"received": 1, "ingested": 1}
        sniffed = httpx.post(f"{collector.url}/logs", content=gzip.compress(b"[]"), timeout=10)
        assert sniffed.status_code == 200  # gzip recognised without the header
        partition = httpx.post(f"{collector.url}/logs/prod", content=b"[]", timeout=10)
        assert partition.status_code == 200
        assert httpx.get(f"{collector.url}/health", timeout=10).status_code == 200
    assert len(store) == 6
    assert store.verify().ok
    assert [d.outcome for d in store.trace("sess_opa").decisions] == [
        "deny",
        "allow",
        "deny",
        "allow",
        "deny",
        "allow",
    ]


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{not json", {}, 400),
        (b'{"an": "object"}', {}, 400),
        (b"[1, 2]", {}, 400),
        (b"\x1f\x8bnot really gzip", {}, 400),
        (gzip.compress(b"[]")[:-6], {"Content-Encoding": "gzip"}, 400),
        (b"[]", {"Content-Encoding": "br"}, 415),
    ],
)
def test_collector_rejects_bad_uploads(
    store: AuditStore, body: bytes, headers: dict[str, str], status: int
) -> None:
    with CollectorServer(store) as collector:
        response = httpx.post(f"{collector.url}/logs", content=body, headers=headers, timeout=10)
        assert response.status_code == status
        assert response.json()["message"]
        assert httpx.post(f"{collector.url}/other", content=b"[]", timeout=10).status_code == 404
    assert len(store) == 0


def test_collector_limits_body_size(store: AuditStore) -> None:
    bomb = gzip.compress(b"[" + b" " * 4096 + b"]")
    with CollectorServer(store, max_body_bytes=1024) as collector:
        response = httpx.post(f"{collector.url}/logs", content=bomb, timeout=10)
        assert response.status_code == 413
        big = httpx.post(f"{collector.url}/logs", content=b" " * 2048, timeout=10)
        assert big.status_code == 413


def test_collector_answers_500_when_the_store_fails(store: AuditStore, tmp_path: Path) -> None:
    # A broken database (table gone) must make OPA keep its buffer and retry, not lose events.
    tamper(tmp_path / "audit.db").execute("DROP TABLE events")
    with CollectorServer(store) as collector:
        response = _post(collector.url, [opa_event("d-1")])
    assert response.status_code == 500
    assert "ingest failed" in response.json()["message"]


def test_the_sidecars_post_logs_feeds_the_audit_store(tmp_path: Path) -> None:
    # The real sidecar process, its pluggable ingest pointed at the audit store.
    from sidecar_helpers import TINY_BUNDLE

    from aam_policy.sidecar import SidecarProcess

    db = tmp_path / "audit.db"
    env = dict(os.environ, AAM_AUDIT_DB=str(db))
    args = ["--log-ingest", "aam_policy.audit:ingest_to_audit_db"]
    upload = [opa_event("sc-1"), opa_event("sc-2", "escalate"), opa_event("sc-1")]
    with SidecarProcess(TINY_BUNDLE, args=args, env=env) as sidecar:
        for _ in range(2):  # a retried upload is stored once
            response = _post(sidecar.url, upload)
            assert response.status_code in (200, 204)
    with AuditStore(db) as store:
        trace = store.trace("sess_opa")
        assert [(d.decision_id, d.outcome) for d in trace.decisions] == [
            ("sc-1", "allow"),
            ("sc-2", "escalate"),
        ]
        assert store.verify().ok
