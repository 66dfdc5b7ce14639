"""Bad requests get OPA-style 4xx answers, and the sidecar keeps answering good ones."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sidecar_helpers import TINY_BUNDLE, request

from aam_policy.sidecar import SidecarProcess

pytestmark = pytest.mark.timeout(60)

LIMIT = 4096  # --max-body for this module's sidecar
LOG_LIMIT = 8192  # --max-log-body


@pytest.fixture(scope="module")
def sidecar() -> Iterator[SidecarProcess]:
    args = ["--max-body", str(LIMIT), "--max-log-body", str(LOG_LIMIT)]
    with SidecarProcess(TINY_BUNDLE, args=args) as process:
        yield process


@pytest.fixture
def client(sidecar: SidecarProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sidecar.url, timeout=5.0) as http:
        yield http


def assert_still_answers(client: httpx.Client) -> None:
    response = client.post("/v1/data/aam/decision", json={"input": request()})
    assert response.status_code == 200
    assert response.json()["result"]["outcome"] == "allow"


JSON = {"Content-Type": "application/json"}

BAD_REQUESTS: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    # (id, method, path, httpx kwargs, status, code)
    ("invalid-json", "POST", "/v1/data/aam/decision", {"content": b"{not json", "headers": JSON},
     400, "invalid_parameter"),
    ("truncated-json", "POST", "/v1/data/aam/decision",
     {"content": b'{"input": {"a": ', "headers": JSON}, 400, "invalid_parameter"),
    ("nan", "POST", "/v1/data/aam/decision", {"content": b'{"input": {"a": NaN}}', "headers": JSON},
     400, "invalid_parameter"),
    ("not-utf8", "POST", "/v1/data/aam/decision",
     {"content": b'{"input": "\xff"}', "headers": JSON}, 400, "invalid_parameter"),
    ("body-array", "POST", "/v1/data/aam/decision", {"json": [{"input": {}}]}, 400,
     "invalid_parameter"),
    ("body-string", "POST", "/v1/data/aam/decision", {"json": "input"}, 400, "invalid_parameter"),
    ("input-array", "POST", "/v1/data/aam/decision", {"json": {"input": [1, 2]}}, 400,
     "invalid_parameter"),
    ("input-string", "POST", "/v1/data/aam/decision", {"json": {"input": "allow me"}}, 400,
     "invalid_parameter"),
    ("input-number", "POST", "/v1/data/aam/decision", {"json": {"input": 7}}, 400,
     "invalid_parameter"),
    ("text-plain", "POST", "/v1/data/aam/decision",
     {"content": b'{"input": {}}', "headers": {"Content-Type": "text/plain"}}, 400,
     "invalid_parameter"),
    ("form-encoded", "POST", "/v1/data/aam/decision",
     {"content": b"input=1", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
     400, "invalid_parameter"),
    ("get-input-not-json", "GET", "/v1/data/aam/decision?input=%7Bnope", {}, 400,
     "invalid_parameter"),
    ("get-input-array", "GET", "/v1/data/aam/decision?input=%5B1%5D", {}, 400,
     "invalid_parameter"),
    ("put-data-invalid-json", "PUT", "/v1/data/x", {"content": b"{", "headers": JSON}, 400,
     "invalid_parameter"),
    ("put-data-empty", "PUT", "/v1/data/x", {"content": b"", "headers": JSON}, 400,
     "invalid_parameter"),
    ("patch-not-a-list", "PATCH", "/v1/data/x", {"json": {"op": "add"}}, 400, "invalid_parameter"),
    ("patch-bad-op", "PATCH", "/v1/data", {"json": [{"op": "move", "path": "/x", "from": "/y"}]},
     400, "invalid_parameter"),
    ("patch-no-value", "PATCH", "/v1/data", {"json": [{"op": "add", "path": "/x"}]}, 400,
     "invalid_parameter"),
    ("patch-bad-pointer", "PATCH", "/v1/data", {"json": [{"op": "add", "path": "x", "value": 1}]},
     400, "invalid_parameter"),
    ("patch-missing-parent", "PATCH", "/v1/data",
     {"json": [{"op": "add", "path": "/no/such/parent", "value": 1}]}, 404,
     "resource_not_found"),
    ("put-policy-empty", "PUT", "/v1/policies/empty.rego", {"content": b"  \n"}, 400,
     "invalid_parameter"),
    ("put-policy-not-utf8", "PUT", "/v1/policies/bin.rego", {"content": b"package \xff"}, 400,
     "invalid_parameter"),
    ("get-missing-policy", "GET", "/v1/policies/nope.rego", {}, 404, "resource_not_found"),
    ("delete-missing-data", "DELETE", "/v1/data/nope", {}, 404, "resource_not_found"),
    ("unknown-path", "GET", "/v1/nope", {}, 404, "resource_not_found"),
    ("unknown-root", "POST", "/", {"json": {"input": {}}}, 404, "resource_not_found"),
    ("v0-query-api", "POST", "/v1/query", {"json": {"query": "x = 1"}}, 404,
     "resource_not_found"),
    ("health-post", "POST", "/health", {}, 405, "invalid_operation"),
    ("policies-post", "POST", "/v1/policies", {}, 405, "invalid_operation"),
    ("policy-patch", "PATCH", "/v1/policies/x.rego", {"content": b"x"}, 405, "invalid_operation"),
    ("logs-get", "GET", "/logs", {}, 405, "invalid_operation"),
    ("logs-not-gzip", "POST", "/logs",
     {"content": b"\x1f\x8bnot gzip", "headers": {"Content-Encoding": "gzip"}}, 400,
     "invalid_parameter"),
    ("logs-not-array", "POST", "/logs", {"content": gzip.compress(b'{"a": 1}')}, 400,
     "invalid_parameter"),
    ("logs-bad-encoding", "POST", "/logs",
     {"content": b"[]", "headers": {"Content-Encoding": "br"}}, 400, "invalid_parameter"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_request_gets_opa_style_error(
    client: httpx.Client, method: str, path: str, kwargs: dict, status: int, code: str
) -> None:
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert_still_answers(client)


def test_405_lists_the_allowed_methods(client: httpx.Client) -> None:
    response = client.delete("/health")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert client.put("/logs").headers["allow"] == "POST"


def test_body_over_the_limit_is_413(client: httpx.Client) -> None:
    big = {"input": {"blob": "x" * LIMIT}}
    response = client.post("/v1/data/aam/decision", json=big)
    assert response.status_code == 413
    assert response.json()["code"] == "invalid_parameter"
    assert str(LIMIT) in response.json()["message"]
    assert_still_answers(client)
    # at the limit exactly: accepted
    padding = "x" * (LIMIT - len(b'{"input":{"blob":""}}'))
    exact = client.post(
        "/v1/data/aam/decision", content=f'{{"input":{{"blob":"{padding}"}}}}', headers=JSON
    )
    assert exact.status_code == 200
    assert client.put("/v1/policies/big.rego", content="#" * (LIMIT + 1)).status_code == 413
    assert client.put("/v1/data/big", json="x" * LIMIT).status_code == 413
    assert_still_answers(client)


def test_chunked_body_over_the_limit_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"input": {"blob": "'
        for _ in range(10):
            yield b"x" * 1024
        yield b'"}}'

    response = client.post("/v1/data/aam/decision", content=chunks(), headers=JSON)
    assert response.status_code == 413
    assert_still_answers(client)


def test_decompressed_log_upload_over_the_limit_is_413(client: httpx.Client) -> None:
    bomb = gzip.compress(b"[" + b" " * (LOG_LIMIT * 4) + b"]")
    assert len(bomb) < LOG_LIMIT
    response = client.post("/logs", content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert_still_answers(client)


def test_garbage_on_the_socket_does_not_hurt(sidecar: SidecarProcess, client: httpx.Client) -> None:
    assert sidecar.port is not None
    for garbage in (b"\x00\x01\x02 garbage\r\n\r\n", b"GET /health HTTP/9.9\r\n\r\n", b"POST"):
        with socket.create_connection(("127.0.0.1", sidecar.port), timeout=5) as conn:
            conn.sendall(garbage)
            conn.shutdown(socket.SHUT_WR)
            reply = conn.recv(65536)
            assert (
                reply == b"" or reply.startswith(b"HTTP/1.1 4") or reply.startswith(b"HTTP/1.0 4")
            )
    assert_still_answers(client)


def test_many_bad_requests_then_good_ones(client: httpx.Client) -> None:
    for _ in range(50):
        assert client.post("/v1/data/aam/decision", content=b"][", headers=JSON).status_code == 400
    for _ in range(20):
        assert_still_answers(client)
