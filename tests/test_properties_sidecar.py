"""Property: a real sidecar answers arbitrary paths and bodies with 4xx (200 for valid ones),
never 5xx, and still decides a good request correctly afterwards.

The sidecar runs the compiled fixture bundle (`SidecarProcess`, a real child process);
httpx talks to it over 127.0.0.1. Writes go only where the API refuses them (under the bundle
root `aam`) or to paths outside any route, so the policy itself is never changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from aam_policy.compiler import compile_bundle
from aam_policy.intents import load_intents
from aam_policy.sidecar import SidecarProcess

REPO = Path(__file__).resolve().parent.parent
GOOD = json.loads((REPO / "fixtures" / "requests" / "allow-small-refund.json").read_text())
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    out = tmp_path_factory.mktemp("props-sidecar") / "bundle"
    compile_bundle([i.intent for i in load_intents([REPO / "fixtures" / "intents"])], out)
    with (
        SidecarProcess(out, args=["--log-level", "ERROR"]) as sidecar,
        httpx.Client(base_url=sidecar.url, timeout=10.0) as client,
    ):
        yield client
        assert sidecar.is_running()


def _good_decision(http: httpx.Client) -> None:
    response = http.post("/v1/data/aam/decision", json={"input": GOOD})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["outcome"] == "allow"


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=16)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**80), 2**80),
        st.floats(allow_nan=False, allow_infinity=False),
        _text,
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3)),
    max_leaves=10,
)
segments = st.one_of(
    st.sampled_from(["aam", "decision", "v1", "data", "policies", "..", ".", "%2e", "%00", ""]),
    st.text(
        st.characters(
            min_codepoint=33,
            max_codepoint=0x2FFF,
            blacklist_categories=("Cc", "Cs"),
            blacklist_characters="/?#%",
        ),
        min_size=1,
        max_size=8,
    ),
)
paths = st.one_of(
    st.builds(lambda s: "/v1/data/" + "/".join(s), st.lists(segments, max_size=4)),
    st.builds(lambda s: "/v1/data/aam/" + "/".join(s), st.lists(segments, max_size=3)),
    st.builds(lambda s: "/" + "/".join(s), st.lists(segments, max_size=4)),
    st.sampled_from(["/health", "/health?bundles", "/v1/policies", "/logs", "/v1/data"]),
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(lambda v: json.dumps({"input": v}).encode(), json_values),
    st.builds(lambda v: b'{"input": ' + v, st.binary(max_size=40)),
)


def _is_read_only(method: str, path: str) -> bool:
    """Requests that cannot change the served policy: reads, and writes the API refuses."""
    if method in ("GET", "POST"):
        return not path.startswith("/logs") or method == "POST"
    return path.startswith("/v1/data/aam") or not path.startswith(("/v1/data", "/v1/policies"))


@SETTINGS
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]),
    path=paths,
    body=bodies,
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/x-yaml"]),
)
def test_random_requests_get_4xx_or_200_never_5xx(
    http: httpx.Client, method: str, path: str, body: bytes, content_type: str
) -> None:
    path = "/" + path.lstrip("/")  # "//x" would be read as a host by the client
    if not _is_read_only(method, path):
        method = "GET"
    headers = {"content-type": content_type} if content_type else {}
    response = http.request(method, path, content=body, headers=headers)
    assert response.status_code < 500, (method, path, body[:80], response.text[:300])
    if path.startswith("/v1/data") and method == "POST" and response.status_code == 200:
        assert "decision_id" in response.json()
    _good_decision(http)


@SETTINGS
@given(st.dictionaries(st.sampled_from(list(GOOD)), json_values, max_size=4))
def test_garbage_fields_in_a_decision_input_get_a_decision(
    http: httpx.Client, patch: dict[str, Any]
) -> None:
    response = http.post("/v1/data/aam/decision", json={"input": {**GOOD, **patch}})
    assert response.status_code == 200, response.text[:300]
    result = response.json()["result"]
    assert result["outcome"] in ("allow", "deny", "escalate")
    assert result["allow"] is (result["outcome"] == "allow")
    if "session" in patch and not isinstance(patch["session"], dict):
        assert not result["allow"]
    if "action" in patch:
        assert not result["allow"] or patch["action"].get("tool") == GOOD["action"]["tool"]
    _good_decision(http)


@pytest.mark.parametrize(
    "patch",
    [{"delegation": [None]}, {"actor": {**GOOD["actor"], "human": {"id": "a", "roles": "x"}}}],
)
def test_a_wrongly_typed_field_gets_a_deny_not_500(
    http: httpx.Client, patch: dict[str, Any]
) -> None:
    response = http.post("/v1/data/aam/decision", json={"input": {**GOOD, **patch}})
    assert response.status_code == 200, response.text
    assert response.json()["result"]["outcome"] == "deny"
