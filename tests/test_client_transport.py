"""The decision clients send each request in one write (`aam_policy.client._transport`)."""

from __future__ import annotations

import asyncio
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
