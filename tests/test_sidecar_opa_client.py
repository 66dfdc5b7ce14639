"""opa-python-client (sync and async), unchanged, against the sidecar."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opa_client import AsyncOpaClient, OpaClient
from opa_client.errors import (
    DeleteDataError,
    DeletePolicyError,
    PolicyNotFoundError,
    RegoParseError,
)
from sidecar_helpers import REVISION, TINY_BUNDLE, request

from aam_policy.sidecar import SidecarProcess

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def sidecar() -> Iterator[SidecarProcess]:
    with SidecarProcess(TINY_BUNDLE) as process:
        yield process


@pytest.fixture
def opa(sidecar: SidecarProcess) -> Iterator[OpaClient]:
    assert sidecar.port is not None
    with OpaClient(host="127.0.0.1", port=sidecar.port, timeout=5) as client:
        yield client


def test_connection_and_health(opa: OpaClient) -> None:
    assert opa.check_connection() is True
    assert opa.check_health() is True
    assert opa.check_health({"bundles": True}) is True
    assert opa.wait_for_ready(timeout=2, interval=0.05) is True


def test_query_rule_allow_deny_escalate(opa: OpaClient) -> None:
    allow = opa.query_rule(request(), "aam", "decision")
    assert allow["result"]["outcome"] == "allow"
    assert allow["result"]["policy"]["revision"] == REVISION
    assert "decision_id" in allow
    escalate = opa.query_rule(request(amount=250), "aam", "decision")["result"]
    assert escalate["outcome"] == "escalate"
    assert escalate["escalation"]["approvers"] == ["role:lead"]
    deny = opa.query_rule(request(tool="shell.exec"), "aam", "decision")["result"]
    assert deny["outcome"] == "deny" and deny["reasons"][0]["code"] == "tool_not_in_intent"
    package = opa.query_rule(request(), "aam.tiny", query_params={"metrics": True})
    assert package["result"]["known_tool"] is True and "metrics" in package


def test_policies_list_info_and_bundle_modules(opa: OpaClient) -> None:
    ids = opa.get_policies_list()
    assert {"aam/entrypoint.rego", "aam/tiny.rego", "aam/intents/demo.rego"} <= set(ids)
    info = opa.get_policies_info()
    entry = info["aam/intents/demo.rego"]
    assert entry["path"].endswith("/v1/data/aam/intents/demo")
    assert entry["rules"] == [entry["path"] + "/decision"]
    raw = opa.get_policy("aam/tiny.rego")["result"]["raw"]
    assert raw == (TINY_BUNDLE / "aam" / "tiny.rego").read_text()


def test_policy_and_data_lifecycle(opa: OpaClient) -> None:
    policy = "package app.rbac\n\nimport rego.v1\n\ndefault allow := false\n\nallow if {\n"
    policy += "\tsome role in data.app.roles[input.user]\n\trole == input.role\n}\n"
    assert opa.update_or_create_data({"roles": {"alice": ["admin"]}}, "app") is True
    assert opa.update_policy_from_string(policy, "app/rbac.rego") is True
    assert "app/rbac.rego" in opa.get_policies_list()
    assert opa.query_rule({"user": "alice", "role": "admin"}, "app.rbac", "allow")["result"]
    assert not opa.query_rule({"user": "bob", "role": "admin"}, "app.rbac", "allow")["result"]

    assert opa.get_data("app/roles")["result"] == {"alice": ["admin"]}
    patches = [{"op": "add", "path": "/roles/bob", "value": ["admin"]}]
    assert opa.patch_data("app", patches) is True
    assert opa.query_rule({"user": "bob", "role": "admin"}, "app.rbac", "allow")["result"]

    assert opa.delete_policy("app/rbac.rego") is True
    with pytest.raises(PolicyNotFoundError):
        opa.get_policy("app/rbac.rego")
    with pytest.raises(DeletePolicyError):
        opa.delete_policy("app/rbac.rego")
    assert opa.delete_data("app") is True
    with pytest.raises(PolicyNotFoundError):
        opa.get_data("app/roles")
    with pytest.raises(DeleteDataError):
        opa.delete_data("app")


def test_v0_policy_is_upgraded_by_the_clients_rego_compat(opa: OpaClient) -> None:
    # Our parse error carries the same "`if` keyword is required" text as OPA 1.x, so the
    # client's automatic v0 -> v1 upgrade works against the sidecar too.
    v0 = "package legacy\n\nallow {\n\tinput.x == 1\n}\n"
    assert opa.update_policy_from_string(v0, "legacy.rego") is True
    assert "allow if {" in opa.get_policy("legacy.rego")["result"]["raw"]
    assert opa.query_rule({"x": 1}, "legacy", "allow")["result"] is True
    with pytest.raises(RegoParseError):
        opa.update_policy_from_string(v0, "legacy2.rego", rego_compat=False)
    opa.delete_policy("legacy.rego")


def test_refused_writes_raise_the_clients_errors(opa: OpaClient) -> None:
    with pytest.raises(RegoParseError) as parse:
        opa.update_policy_from_string("package broken\n\nx := := 1\n", "broken.rego")
    assert parse.value.expression == "invalid_parameter"
    with pytest.raises(RegoParseError):
        opa.update_or_create_data({"x": 1}, "aam/registry")  # owned by the bundle


def test_async_client(sidecar: SidecarProcess) -> None:
    async def run() -> tuple[bool, dict, list]:
        assert sidecar.port is not None
        async with AsyncOpaClient(host="127.0.0.1", port=sidecar.port, timeout=5) as client:
            healthy = await client.check_health()
            result = await client.query_rule(request(amount=101), "aam", "decision")
            ids = await client.get_policies_list()
            return healthy, result, ids

    healthy, result, ids = asyncio.run(run())
    assert healthy is True
    assert result["result"]["outcome"] == "escalate"
    assert "aam/entrypoint.rego" in ids
