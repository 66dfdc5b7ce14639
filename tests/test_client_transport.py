"""The decision clients send each request in one write (`aam_policy.client._transport`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

import httpcore

from aam_policy.client._transport import _AsyncCoalescingStream, _CoalescingStream


class _Recorder(httpcore.NetworkStream):
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return b"reply"

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.writes.append(buffer)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, info: str) -> Any:
        return info


class _AsyncRecorder(httpcore.AsyncNetworkStream):
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return b"reply"

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.writes.append(buffer)

    async def aclose(self) -> None:
        pass


def test_writes_are_held_until_the_answer_is_read() -> None:
    inner = _Recorder()
    stream = _CoalescingStream(inner)
    stream.write(b"POST / HTTP/1.1\r\n\r\n")
    stream.write(b"")
    stream.write(b'{"input":{}}')
    assert inner.writes == []
    assert stream.read(100) == b"reply"
    assert inner.writes == [b'POST / HTTP/1.1\r\n\r\n{"input":{}}']
    assert stream.get_extra_info("socket") == "socket"


def test_a_closed_stream_sends_nothing_it_still_held() -> None:
    inner = _Recorder()
    stream = _CoalescingStream(inner)
    stream.write(b"half a request")
    stream.close()
    assert inner.writes == [] and inner.closed


def test_async_writes_are_held_until_the_answer_is_read() -> None:
    inner = _AsyncRecorder()
    stream = _AsyncCoalescingStream(inner)

    async def run() -> None:
        await stream.write(b"head")
        await stream.write(b"body")
        assert inner.writes == []
        assert await stream.read(100) == b"reply"

    asyncio.run(run())
    assert inner.writes == [b"headbody"]


def test_the_server_receives_head_and_body_in_one_segment() -> None:
    from aam_policy.client import DecisionClient

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    chunks: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            chunks.append(conn.recv(65536))
            body = b'{"result":{"allow":true,"outcome":"allow"},"decision_id":"d"}'
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with DecisionClient(f"http://127.0.0.1:{port}", timeout=5, fail_mode="raise") as client:
        client.decide({"intent": {"id": "x"}, "padding": "p" * 2000})
    thread.join(5)
    listener.close()
    head, _, body = chunks[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/data/aam/decision HTTP/1.1")
    assert body.startswith(b'{"input":') and body.endswith(b"}")


def _answer_once_per_connection() -> tuple[socket.socket, threading.Semaphore]:
    """A PDP that answers one request per connection, then closes it (no `Connection: close`
    header), as a server does at its keep-alive timeout. The semaphore counts closed ones."""
    listener = socket.create_server(("127.0.0.1", 0))
    closed = threading.Semaphore(0)
    body = b'{"result":{"allow":true,"outcome":"allow"},"decision_id":"d"}'

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the test closed the listener
                return
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
            closed.release()

    threading.Thread(target=serve, daemon=True).start()
    return listener, closed


def test_a_connection_the_server_closed_is_not_reused_async() -> None:
    from aam_policy.client import AsyncDecisionClient

    listener, closed = _answer_once_per_connection()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    async def run() -> list[str]:
        outcomes = []
        # no retries: a request sent on the dead connection would fail, not be retried
        async with AsyncDecisionClient(url, timeout=5, retries=0, fail_mode="raise") as pdp:
            for _ in range(5):
                outcomes.append((await pdp.decide({"intent": {"id": "x"}})).outcome)
                # the pooled connection is idle and closed by the server before the next call
                assert await asyncio.to_thread(closed.acquire, True, 5)
        return outcomes

    try:
        assert asyncio.run(run()) == ["allow"] * 5
    finally:
        listener.close()


def test_the_async_client_speaks_over_asyncio_streams() -> None:
    from aam_policy.client import AsyncDecisionClient
    from aam_policy.client._transport import _AsyncioStream

    async def run() -> httpcore.AsyncNetworkStream:
        async with AsyncDecisionClient("http://127.0.0.1:9") as pdp:
            assert pdp._pool is not None
            backend = pdp._pool._network_backend
            # an unused port: the connection is refused, but the stream type is decided first
            with contextlib.suppress(httpcore.ConnectError):
                await backend.connect_tcp("127.0.0.1", 9, timeout=1)
            listener = socket.create_server(("127.0.0.1", 0))
            try:
                stream = await backend.connect_tcp("127.0.0.1", listener.getsockname()[1], 1)
                await stream.aclose()
            finally:
                listener.close()
            return stream

    stream = asyncio.run(run())
    assert isinstance(stream, _AsyncCoalescingStream)  # one write per request, as before
    assert isinstance(stream._stream, _AsyncioStream)
