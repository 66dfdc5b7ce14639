"""Shared builders for the client tests (not a test module).

`decision_bundle` gives the bundle the round-trip tests run against and the requests that go
with it: the compiled fixture bundle (fixtures/intents) with fixtures/requests/*.json, whose
file names say the expected outcome, once the core Rego library and the intents loader are in
the tree; until then the hand-written stand-in bundle (tests/data/engine/bundle) with requests
built here. `FakePDP` is a real HTTP server on 127.0.0.1 that answers badly on purpose.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aam_policy.client import AgentRequest, Operation

REPO = Path(__file__).resolve().parent.parent
STANDIN_BUNDLE = REPO / "tests" / "data" / "engine" / "bundle"
FIXTURE_INTENTS = REPO / "fixtures" / "intents"
FIXTURE_REQUESTS = REPO / "fixtures" / "requests"
CORE_REGO = REPO / "rego" / "aam" / "core"

# Marker text put in prompts and parameters so tests can prove it never reaches a log.
SECRET_MARKER = "SECRET-7f3a-do-not-log"


@dataclass(frozen=True)
class Case:
    name: str
    input: dict[str, Any]
    outcome: str


def standin_request(
    tool: str = "crm.read_ticket",
    operation: Operation = "read",
    amount: int | None = None,
    intent: str = "demo-intent",
) -> AgentRequest:
    """A request for the stand-in bundle's `demo-intent`."""
    parameters: dict[str, Any] = {"note": SECRET_MARKER}
    if amount is not None:
        parameters.update(amount=amount, currency="EUR")
    return AgentRequest.build(
        human={"id": "alice@example.com", "roles": ["support-agent"]},
        agent={"id": "spiffe://example.org/agents/support-bot", "kind": "assistant"},
        intent=intent,
        purpose="answer ticket 42",
        prompt=f"please refund the customer ({SECRET_MARKER})",
        tool=tool,
        operation=operation,
        target={"system": "stripe", "resource": "charge/ch_1", "environment": "production"},
        parameters=parameters,
        sensitivity="confidential",
        time_ns=1767225601000000000,
    )


def standin_cases() -> list[Case]:
    refund: dict[str, Any] = {"tool": "payments.refund", "operation": "write"}
    specs: list[tuple[str, dict[str, Any], str]] = [
        ("allow-read-ticket", {}, "allow"),
        ("allow-small-refund", {**refund, "amount": 20}, "allow"),
        ("escalate-large-refund", {**refund, "amount": 500}, "escalate"),
        ("deny-tool-drift", {"tool": "email.send_external", "operation": "write"}, "deny"),
        ("deny-operation", {"operation": "delete"}, "deny"),
        ("deny-no-intent", {"intent": "no-such-intent"}, "deny"),
    ]
    return [Case(name, standin_request(**kw).to_input(), outcome) for name, kw, outcome in specs]


def fixture_cases() -> list[Case]:
    return [
        Case(path.stem, json.loads(path.read_text()), path.stem.split("-", 1)[0])
        for path in sorted(FIXTURE_REQUESTS.glob("*.json"))
    ]


def fixture_bundle_ready() -> bool:
    """Whether the fixture intents can be compiled here (core library and loader present)."""
    try:
        from aam_policy.intents import load_intents  # noqa: F401
    except ImportError:
        return False
    return any(CORE_REGO.glob("*.rego"))


def decision_bundle(workdir: Path) -> tuple[Path, list[Case]]:
    """(bundle directory, cases): the compiled fixture bundle if possible, else the stand-in."""
    if not fixture_bundle_ready():
        return STANDIN_BUNDLE, standin_cases()
    from aam_policy.compiler import compile_bundle
    from aam_policy.intents import load_intents

    intents = [item.intent for item in load_intents([FIXTURE_INTENTS])]
    compile_bundle(intents, workdir / "bundle")
    return workdir / "bundle", fixture_cases()


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


Answer = Callable[[BaseHTTPRequestHandler], None]


def respond(
    status: int, body: bytes | str, delay: float = 0.0, headers: dict[str, str] | None = None
) -> Answer:
    """An answer: wait `delay` seconds, then a well-formed HTTP response with `body`."""
    data = body.encode() if isinstance(body, str) else body

    def answer(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(delay)
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return answer


def raw(data: bytes) -> Answer:
    """An answer that is not HTTP at all: `data`, then the connection closes."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.wfile.write(data)
        handler.close_connection = True

    return answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (timeout) leaves a broken pipe behind: expected here


@contextmanager
def fake_pdp(answer: Answer) -> Iterator[FakePDP]:
    """A real HTTP server on 127.0.0.1 answering every POST with `answer`."""
    pdp = FakePDP()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with pdp.lock:
                pdp.hits += 1
            answer(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    pdp.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield pdp
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class FakePDP:
    def __init__(self) -> None:
        self.url = ""
        self.hits = 0
        self.lock = threading.Lock()
