"""The sidecar's Data and Policy API, driven over HTTP against a real sidecar process."""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sidecar_helpers import REVISION, TINY_BUNDLE, request

from aam_policy.sidecar import SidecarProcess

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def sidecar() -> Iterator[SidecarProcess]:
    with SidecarProcess(TINY_BUNDLE) as process:
        yield process


@pytest.fixture
def client(sidecar: SidecarProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sidecar.url, timeout=5.0) as http:
        yield http


def decide(client: httpx.Client, input_doc: dict) -> dict:
    response = client.post("/v1/data/aam/decision", json={"input": input_doc})
    assert response.status_code == 200, response.text
    body = response.json()
    assert uuid.UUID(body["decision_id"]).version == 4
    return body["result"]


def test_allow_deny_escalate_round_trip(client: httpx.Client) -> None:
    allow = decide(client, request())
    assert allow["outcome"] == "allow" and allow["allow"] is True
    assert allow["reasons"] == [] and allow["escalation"] is None
    assert allow["obligations"] == {"max_session_ttl_seconds": 600, "review_required": False}
    assert allow["policy"] == {"revision": REVISION, "intent_revision": "r-demo"}

    escalate = decide(client, request(amount=500))
    assert escalate["outcome"] == "escalate" and escalate["allow"] is False
    assert escalate["escalation"] == {"approvers": ["role:lead"], "approval_ttl_seconds": 900}
    assert [r["code"] for r in escalate["reasons"]] == ["escalation_required"]

    deny = decide(client, request(tool="email.send_external"))
    assert deny["outcome"] == "deny"
    assert [r["code"] for r in deny["reasons"]] == ["tool_not_in_intent"]

    unknown = decide(client, request(intent="nope"))
    assert unknown["outcome"] == "deny"
    assert [r["code"] for r in unknown["reasons"]] == ["no_intent"]


def test_every_answer_has_a_fresh_decision_id(client: httpx.Client) -> None:
    ids = {client.post("/v1/data/aam/decision", json={"input": request()}).json()["decision_id"]}
    ids |= {client.get("/v1/data/aam/decision").json()["decision_id"] for _ in range(3)}
    assert len(ids) == 4


def test_get_without_input_evaluates_with_input_undefined(client: httpx.Client) -> None:
    body = client.get("/v1/data/aam/decision").json()
    assert body["result"]["outcome"] == "deny"
    assert body["result"]["reasons"][0]["code"] == "no_intent"


def test_post_without_body_means_no_input(client: httpx.Client) -> None:
    body = client.post("/v1/data/aam/decision").json()
    assert body["result"]["intent"] is None


def test_get_with_input_query_parameter(client: httpx.Client) -> None:
    params = {"input": json.dumps(request(amount=900))}
    body = client.get("/v1/data/aam/decision", params=params).json()
    assert body["result"]["outcome"] == "escalate"


def test_undefined_result_is_omitted(client: httpx.Client) -> None:
    body = client.post("/v1/data/aam/maybe", json={"input": {"flag": False}}).json()
    assert set(body) == {"decision_id"}
    body = client.post("/v1/data/aam/maybe", json={"input": {"flag": True}}).json()
    assert body["result"] == "yes"
    body = client.get("/v1/data/no/such/document").json()
    assert set(body) == {"decision_id"}


def test_data_documents_and_packages(client: httpx.Client) -> None:
    assert client.get("/v1/data/aam/bundle/revision").json()["result"] == REVISION
    registry = client.get("/v1/data/aam/registry").json()["result"]
    assert registry["demo"]["package"] == "demo"
    package = client.post("/v1/data/aam/tiny", json={"input": request()}).json()["result"]
    assert package["outcome"] == "allow" and package["known_tool"] is True
    root = client.get("/v1/data").json()["result"]
    assert root["aam"]["bundle"]["revision"] == REVISION


def test_pretty_metrics_and_provenance(client: httpx.Client) -> None:
    response = client.post(
        "/v1/data/aam/decision?pretty=true&metrics&provenance", json={"input": request()}
    )
    assert response.headers["content-type"].startswith("application/json")
    assert response.text.startswith("{\n  ")
    body = response.json()
    assert body["metrics"]["timer_server_handler_ns"] >= body["metrics"]["timer_rego_query_eval_ns"]
    assert body["metrics"]["timer_rego_query_eval_ns"] > 0
    assert body["provenance"]["bundles"] == {"aam": {"revision": REVISION}}
    compact = client.post("/v1/data/aam/decision?pretty=false", json={"input": request()})
    assert "\n" not in compact.text and "metrics" not in compact.json()


def test_health(client: httpx.Client) -> None:
    assert client.get("/health").json() == {}
    bundles = client.get("/health", params={"bundles": ""})
    assert bundles.status_code == 200
    assert bundles.json()["bundles"]["aam"]["revision"] == REVISION


def test_data_put_patch_delete_round_trip(client: httpx.Client) -> None:
    assert client.put("/v1/data/test/doc", json={"a": 1, "list": [1, 2]}).status_code == 204
    assert client.get("/v1/data/test/doc").json()["result"] == {"a": 1, "list": [1, 2]}
    # If-None-Match: * only creates
    response = client.put("/v1/data/test/doc", json={}, headers={"If-None-Match": "*"})
    assert response.status_code == 304
    patch = [
        {"op": "add", "path": "/b", "value": {"c": True}},
        {"op": "replace", "path": "/a", "value": 2},
        {"op": "add", "path": "/list/-", "value": 3},
        {"op": "remove", "path": "/list/0"},
    ]
    response = client.patch(
        "/v1/data/test/doc",
        content=json.dumps(patch),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert response.status_code == 204, response.text
    assert client.get("/v1/data/test/doc").json()["result"] == {
        "a": 2,
        "b": {"c": True},
        "list": [2, 3],
    }
    missing = client.patch("/v1/data/test/doc", json=[{"op": "remove", "path": "/zzz"}])
    assert missing.status_code == 404 and missing.json()["code"] == "resource_not_found"
    assert client.delete("/v1/data/test/doc").status_code == 204
    assert "result" not in client.get("/v1/data/test/doc").json()
    again = client.delete("/v1/data/test/doc")
    assert again.status_code == 404 and again.json()["code"] == "resource_not_found"
    client.delete("/v1/data/test")


def test_writes_under_the_bundle_root_are_refused(client: httpx.Client) -> None:
    before = decide(client, request())
    for response in (
        client.put("/v1/data/aam/registry/demo", json={"tools": {}}),
        client.delete("/v1/data/aam/registry"),
        client.patch("/v1/data", json=[{"op": "remove", "path": "/aam"}]),
        client.put("/v1/data", json={"x": 1}),
        client.put("/v1/policies/evil.rego", content="package aam\n\ndecision := {}\n"),
        client.delete("/v1/policies/aam/entrypoint.rego"),
        client.put("/v1/policies/aam/entrypoint.rego", content="package x\n\ny := 1\n"),
    ):
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "invalid_parameter"
        assert "owned by bundle" in response.json()["message"]
    assert decide(client, request()) == before


def test_policy_put_get_list_delete(client: httpx.Client) -> None:
    rego = "package ext.authz\n\ndefault allow := false\n\nallow if input.user == data.ext.admin\n"
    assert client.put("/v1/data/ext", json={"admin": "root"}).status_code == 204
    response = client.put(
        "/v1/policies/ext/authz.rego", content=rego, headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 200 and response.json() == {}
    doc = client.get("/v1/policies/ext/authz.rego").json()["result"]
    assert doc["id"] == "ext/authz.rego" and doc["raw"] == rego
    assert [p["value"] for p in doc["ast"]["package"]["path"]] == ["data", "ext", "authz"]
    assert [r["head"]["name"] for r in doc["ast"]["rules"]] == ["allow"]
    ids = [p["id"] for p in client.get("/v1/policies").json()["result"]]
    assert "ext/authz.rego" in ids and "aam/entrypoint.rego" in ids
    query = "/v1/data/ext/authz/allow"
    assert client.post(query, json={"input": {"user": "root"}}).json()["result"] is True
    assert client.post(query, json={"input": {"user": "eve"}}).json()["result"] is False
    assert client.delete("/v1/policies/ext/authz.rego").json() == {}
    missing = client.get("/v1/policies/ext/authz.rego")
    assert missing.status_code == 404 and missing.json()["code"] == "resource_not_found"
    assert client.delete("/v1/policies/ext/authz.rego").status_code == 404
    assert "result" not in client.post(query, json={"input": {"user": "root"}}).json()
    client.delete("/v1/data/ext")


def test_policy_parse_error_is_400_with_location(client: httpx.Client) -> None:
    response = client.put("/v1/policies/broken.rego", content="package broken\n\nallow { 1 }\n")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_parameter"
    (error,) = body["errors"]
    assert error["code"] == "rego_parse_error"
    assert error["location"] == {"file": "broken.rego", "row": 3, "col": 7}
    assert "`if` keyword is required" in error["message"]
    unsafe = client.put("/v1/policies/unsafe.rego", content="package u\n\nx := 1 if zz > 1\n")
    assert unsafe.status_code == 400 and unsafe.json()["code"] == "invalid_parameter"
    assert unsafe.json()["errors"][0]["code"] == "rego_compile_error"
    assert "unsafe" in unsafe.json()["errors"][0]["message"]
    ids = [p["id"] for p in client.get("/v1/policies").json()["result"]]
    assert "broken.rego" not in ids and "unsafe.rego" not in ids
    assert decide(client, request())["outcome"] == "allow"


def test_concurrent_decisions_are_all_answered_correctly(sidecar: SidecarProcess) -> None:
    cases = [request(), request(amount=500), request(tool="x.y"), request(intent="nope")]
    expected = ["allow", "escalate", "deny", "deny"]

    async def run() -> list[str]:
        limits = httpx.Limits(max_connections=16)
        async with httpx.AsyncClient(base_url=sidecar.url, timeout=10, limits=limits) as http:

            async def one(i: int) -> str:
                body = {"input": cases[i % 4]}
                response = await http.post("/v1/data/aam/decision", json=body)
                return response.json()["result"]["outcome"]

            return await asyncio.gather(*(one(i) for i in range(400)))

    outcomes = asyncio.run(run())
    assert outcomes == [expected[i % 4] for i in range(400)]


def test_evaluation_error_is_500_internal_error(client: httpx.Client) -> None:
    policy = "package rt\n\nn := to_number(input.s)\n"
    assert client.put("/v1/policies/rt.rego", content=policy).status_code == 200
    try:
        assert client.post("/v1/data/rt/n", json={"input": {"s": "12"}}).json()["result"] == 12
        response = client.post("/v1/data/rt/n", json={"input": {"s": "twelve"}})
        assert response.status_code == 500
        assert response.json()["code"] == "internal_error"
        assert "could not parse string as number" in response.json()["message"]
        assert decide(client, request())["outcome"] == "allow"
    finally:
        client.delete("/v1/policies/rt.rego")


def test_gzip_encoded_request_body(client: httpx.Client) -> None:
    body = gzip.compress(json.dumps({"input": request(amount=500)}).encode())
    response = client.post(
        "/v1/data/aam/decision",
        content=body,
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert response.json()["result"]["outcome"] == "escalate"
