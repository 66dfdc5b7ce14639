"""The connection pools behind the decision clients: httpcore, each request in one write.

httpcore writes a request's head and its body with separate socket writes and sets
TCP_NODELAY, so every decision leaves as two TCP segments and wakes the server twice. On the
2-vCPU machine of the benchmarks a loopback send costs ~350 us (the wakeup of the receiving
process runs in the sender's syscall), which made the second write the largest single
overhead of a decision (issue 5, P1). These wrappers hold written bytes until the connection
next reads (the answer) or closes, so head and body go out together.

The clients talk to httpcore directly, not through `httpx.Client`: building an httpx Request
(URL and header normalisation), cookie extraction, auth and redirect handling and the httpx
Response wrapper cost ~400 us of CPU per decision, more than the policy evaluation itself.
"""

from __future__ import annotations

import ssl
from typing import Any

import httpcore
import httpx


class _CoalescingStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._timeout: float | None = None

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            self._stream.write(data, self._timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._pending.append(buffer)
            self._timeout = timeout

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self._flush()
        return self._stream.read(max_bytes, timeout)

    def close(self) -> None:
        self._pending.clear()  # a request cut short: its bytes must not reach the server
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        self._flush()
        return _CoalescingStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _CoalescingBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _CoalescingStream(self._backend.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        return _CoalescingStream(self._backend.connect_unix_socket(*args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


class _AsyncCoalescingStream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._timeout: float | None = None

    async def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            await self._stream.write(data, self._timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self._pending.append(buffer)
            self._timeout = timeout

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._flush()
        return await self._stream.read(max_bytes, timeout)

    async def aclose(self) -> None:
        self._pending.clear()
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        await self._flush()
        stream = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        return _AsyncCoalescingStream(stream)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _AsyncCoalescingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _AsyncCoalescingStream(await self._backend.connect_tcp(*args, **kwargs))

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        return _AsyncCoalescingStream(await self._backend.connect_unix_socket(*args, **kwargs))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def _ssl_context(scheme: str) -> ssl.SSLContext | None:
    # Loading the CA bundle takes ~20 ms per client: only for https.
    return httpx.create_ssl_context(trust_env=False) if scheme == "https" else None


def sync_pool(limits: httpx.Limits, scheme: str) -> httpcore.ConnectionPool:
    return httpcore.ConnectionPool(
        ssl_context=_ssl_context(scheme),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_CoalescingBackend(httpcore.SyncBackend()),
    )


def async_pool(limits: httpx.Limits, scheme: str) -> httpcore.AsyncConnectionPool:
    pool = httpcore.AsyncConnectionPool(
        ssl_context=_ssl_context(scheme),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
    )
    # The default backend picks asyncio or trio at first use; keep that choice, wrapped.
    # (`_network_backend` is private: without it only the coalescing is lost.)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = _AsyncCoalescingBackend(backend)
    return pool
