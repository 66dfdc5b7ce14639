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

Under asyncio, plain-HTTP connections are asyncio streams rather than httpcore's default anyio
streams, whose per-read cancel scopes and checkpoints cost ~25% of the async client's CPU
(~420 -> ~320 us per decision, 16 concurrent clients against a constant answer). TLS and
other event loops (trio) keep httpcore's default backend.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

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
    # The default backend picks anyio or trio at first use; keep it, wrapped, for what the
    # asyncio streams do not cover. (`_network_backend` is private: without it only the
    # coalescing and the asyncio streams are lost.)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.AsyncNetworkBackend):
        fallback = _AsyncCoalescingBackend(backend)
        pool._network_backend = _AsyncioBackend(fallback) if scheme == "http" else fallback
    return pool


T = TypeVar("T")

if sys.version_info >= (3, 11):

    async def _within(awaitable: Awaitable[T], timeout: float | None) -> T:
        async with asyncio.timeout(timeout):
            return await awaitable

else:

    async def _within(awaitable: Awaitable[T], timeout: float | None) -> T:
        return await asyncio.wait_for(awaitable, timeout)


class _AsyncioStream(httpcore.AsyncNetworkStream):
    """A plain TCP connection as asyncio streams (wrapped in `_AsyncCoalescingStream`)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        try:
            self._writer.write(buffer)
            if self._writer.transport.get_write_buffer_size():  # the kernel took only part
                await _within(self._writer.drain(), timeout)
        except asyncio.TimeoutError:
            raise httpcore.WriteTimeout("write timed out") from None
        except (OSError, RuntimeError) as exc:  # RuntimeError: the transport is closed
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return await _within(self._reader.read(max_bytes), timeout)
        except asyncio.TimeoutError:
            raise httpcore.ReadTimeout("read timed out") from None
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        self._writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # `async_pool` gives https pools httpcore's own backend, so no request gets here.
        raise httpcore.ConnectError("TLS is not available on a plain-HTTP pool")

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # httpcore asks this of idle keep-alive connections before reusing one (after a
            # checkpoint, so the transport has read whatever arrived): a server's close shows
            # as end of stream, or as an error.
            return self._reader.at_eof() or self._reader.exception() is not None
        if info == "socket":
            return self._writer.get_extra_info("socket")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        return None


class _AsyncioBackend(httpcore.AsyncNetworkBackend):
    """asyncio streams for TCP when an asyncio loop runs; `fallback` for everything else."""

    def __init__(self, fallback: httpcore.AsyncNetworkBackend) -> None:
        self._fallback = fallback

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[tuple[int, int, int | bytes]] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # another event loop (trio)
            return await self._fallback.connect_tcp(
                host, port, timeout, local_address, socket_options
            )
        local = (local_address, 0) if local_address else None
        try:
            reader, writer = await _within(
                asyncio.open_connection(host, port, local_addr=local), timeout
            )
        except asyncio.TimeoutError:
            raise httpcore.ConnectTimeout(f"no connection to {host}:{port} in time") from None
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock: socket.socket | None = writer.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
        return _AsyncCoalescingStream(_AsyncioStream(reader, writer))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[tuple[int, int, int | bytes]] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._fallback.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._fallback.sleep(seconds)
