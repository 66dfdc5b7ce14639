"""`push_bundle` (what `aam push` runs) into a running sidecar, through opa-python-client."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sidecar_helpers import TINY_BUNDLE, bundle_copy, request, tarball

from aam_policy.sidecar import PushError, SidecarProcess, push_bundle

pytestmark = pytest.mark.timeout(60)

MODULES = ("aam/entrypoint.rego", "aam/intents/demo.rego", "aam/tiny.rego")


@pytest.fixture
def empty_sidecar() -> Iterator[SidecarProcess]:
    with SidecarProcess() as process:  # no bundle: an empty policy, like `opa run --server`
        yield process


def decide(url: str, doc: dict) -> dict:
    response = httpx.post(f"{url}/v1/data/aam/decision", json={"input": doc}, timeout=5)
    assert response.status_code == 200
    return response.json()


def test_push_bundle_into_an_empty_sidecar(empty_sidecar: SidecarProcess) -> None:
    url = empty_sidecar.url
    assert "result" not in decide(url, request())  # nothing loaded yet: undefined
    result = push_bundle(TINY_BUNDLE, url, timeout=10)
    assert result.revision == "tiny-1"
    assert sorted(result.policies) == sorted(MODULES)
    assert result.data_paths == ("aam",) and result.removed == ()
    assert decide(url, request())["result"]["outcome"] == "allow"
    assert decide(url, request(amount=500))["result"]["outcome"] == "escalate"
    assert decide(url, request())["result"]["policy"]["revision"] == "tiny-1"
    ids = [p["id"] for p in httpx.get(f"{url}/v1/policies", timeout=5).json()["result"]]
    assert sorted(ids) == sorted(MODULES)


def test_push_again_replaces_and_prunes(empty_sidecar: SidecarProcess, tmp_path: Path) -> None:
    url = empty_sidecar.url
    push_bundle(TINY_BUNDLE, url, timeout=10)
    # the next version: intent module renamed, new revision, shipped as a tarball
    source = bundle_copy(tmp_path / "v2", "tiny-2")
    (source / "aam" / "intents" / "demo.rego").rename(source / "aam" / "intents" / "demo2.rego")
    result = push_bundle(tarball(source, tmp_path / "v2.tar.gz"), url, timeout=10)
    assert result.revision == "tiny-2"
    assert result.removed == ("aam/intents/demo.rego",)
    ids = [p["id"] for p in httpx.get(f"{url}/v1/policies", timeout=5).json()["result"]]
    assert "aam/intents/demo2.rego" in ids and "aam/intents/demo.rego" not in ids
    assert decide(url, request())["result"]["policy"]["revision"] == "tiny-2"


def test_push_waits_for_the_server_to_become_ready() -> None:
    # reserve a port, start the sidecar on it only after push_bundle has begun waiting
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    errors: list[BaseException] = []

    def push() -> None:
        try:
            push_bundle(TINY_BUNDLE, f"http://127.0.0.1:{port}", timeout=30)
        except BaseException as exc:
            errors.append(exc)

    pusher = threading.Thread(target=push)
    pusher.start()
    time.sleep(0.5)
    sidecar = SidecarProcess(port=port)
    with sidecar:
        pusher.join(30)
        assert errors == []
        assert decide(sidecar.url, request())["result"]["outcome"] == "allow"


def test_unreachable_opa_is_a_clear_error_within_the_timeout() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(PushError, match="not reachable"):
        push_bundle(TINY_BUNDLE, f"http://127.0.0.1:{port}", timeout=0.5)
    assert time.monotonic() - start < 3


def test_push_into_a_sidecar_serving_the_bundle_is_refused() -> None:
    with SidecarProcess(TINY_BUNDLE) as sidecar, pytest.raises(PushError) as error:
        push_bundle(TINY_BUNDLE, sidecar.url, timeout=10)
    assert "owned by bundle" in str(error.value)


def test_bad_bundle_or_url_fails_before_touching_the_server(
    empty_sidecar: SidecarProcess, tmp_path: Path
) -> None:
    broken = bundle_copy(tmp_path / "broken")
    (broken / "aam" / "tiny.rego").write_text("package aam.tiny\n\nx := := 1\n")
    with pytest.raises(PushError, match=r"tiny\.rego:3"):
        push_bundle(broken, empty_sidecar.url, timeout=5)
    with pytest.raises(PushError, match="no such file"):
        push_bundle(tmp_path / "missing", empty_sidecar.url, timeout=5)
    with pytest.raises(PushError, match="must not have a path"):
        push_bundle(TINY_BUNDLE, f"{empty_sidecar.url}/v1", timeout=5)
    assert httpx.get(f"{empty_sidecar.url}/v1/policies", timeout=5).json() == {"result": []}
