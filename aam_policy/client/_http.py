"""`DecisionClient` / `AsyncDecisionClient`: OPA's Data API over httpx, failing closed.

``POST {base_url}/v1/data/{path}`` with ``{"input": ...}``; the answer is
``{"result": decision, "decision_id": ...}``, no ``result`` when the rule is undefined. That
is the API of `opa run --server` and of `aam sidecar`, so the client works against either.

Time budget: ``timeout`` (default 250 ms) bounds the whole call, retries included. Each
attempt gets what is left of it as its connect / write / read / pool timeout, so a fail-closed
answer comes back within the timeout (plus scheduling noise). httpx timeouts are per socket
operation, so a peer that trickles a response byte by byte could stretch one attempt; OPA and
the sidecar write their answer at once.

Retries: only `httpx.ConnectError` (refused or reset while connecting: the PDP never saw the
request), at most ``retries`` times (default 2) after a full-jitter backoff of up to
10 ms x 2^(n-1), never past the deadline. Timeouts are not retried (the budget is spent),
neither are answers (a 5xx or a bad body will not improve in a few ms).

Failure mapping, in the default ``fail_mode="closed"`` a deny with that reason code, logged at
warning on ``aam_policy.client``; with ``fail_mode="raise"`` the exception:

* no HTTP response (nothing listening, connection reset, timeout) -> `PDPUnavailable`,
  ``pdp_unavailable``;
* a response that is not a valid decision (non-200, undecodable, not JSON, undefined,
  contract broken) -> `PDPError`, ``pdp_error``.

Connections are pooled (keep-alive, `httpx.Limits`) in an httpcore pool used directly, without
the `httpx.Client` layer, which cost more CPU per decision than the policy evaluation (see
`_transport`); proxy environment variables are ignored: the PDP is a loopback sidecar, and a
decision must not take a detour through a proxy. Pass ``http_client=`` to bring a configured
`httpx.Client` / `httpx.AsyncClient` instead (it is then not closed by `close()`).

`decide_many`: sequential in `DecisionClient` (one decision at a time, each with its own
budget; concurrency is what the async client is for), concurrent in `AsyncDecisionClient`
(`asyncio.gather` bounded by ``max_concurrency``, default 16, below the pool size so requests
do not queue for a connection). In raise mode the first error is raised.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import zlib
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import httpcore
import httpx

from ._core import (
    DEFAULT_PATH,
    FailMode,
    RequestLike,
    as_input,
    check_fail_mode,
    fail_closed,
    to_decision,
)
from ._errors import DecisionError, PDPError, PDPUnavailable
from ._models import Decision
from ._transport import async_pool, sync_pool

DEFAULT_URL = "http://127.0.0.1:8181"
DEFAULT_TIMEOUT = 0.25
DEFAULT_RETRIES = 2
DEFAULT_MAX_CONCURRENCY = 16
DEFAULT_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=32)
_BACKOFF_BASE = 0.01
_JSON = {"content-type": "application/json", "accept": "application/json"}
# What httpx raises as a TransportError, as httpcore raises it (ConnectError is retried).
_UNREACHABLE = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.UnsupportedProtocol,
)


class _Settings:
    """Configuration and the pure steps shared by the sync and async clients."""

    def __init__(
        self,
        base_url: str,
        path: str,
        timeout: float,
        retries: int,
        fail_mode: str,
        headers: Mapping[str, str] | None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.url = f"{base_url.rstrip('/')}/v1/data/{path.strip('/')}"
        # A bad URL fails here, at start-up, rather than as a deny on every call.
        try:
            scheme = httpx.URL(self.url).scheme
        except httpx.InvalidURL:
            scheme = ""
        if scheme not in ("http", "https"):
            raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
        self.scheme = scheme
        self.timeout = float(timeout)
        self.retries = retries
        self.fail_mode = check_fail_mode(fail_mode)
        self.headers = {**_JSON, **(headers or {})}
        # Prebuilt once for the httpcore path (see `_transport`): per call only the length.
        url = httpx.URL(self.url)
        self.target = httpcore.URL(
            scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
        )
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        if not any(k.lower() == b"host" for k, _ in raw):
            raw.insert(0, (b"host", url.netloc))
        self.raw_headers = raw

    def request_headers(self, body: bytes) -> list[tuple[bytes, bytes]]:
        return [*self.raw_headers, (b"content-length", str(len(body)).encode())]

    @staticmethod
    def timeouts(remaining: float) -> dict[str, Any]:
        return {
            "timeout": {
                "connect": remaining,
                "read": remaining,
                "write": remaining,
                "pool": remaining,
            }
        }

    def encode(self, input: Any) -> bytes:
        try:
            return json.dumps(
                {"input": input}, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            ).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise PDPError(f"the request is not a JSON document ({type(exc).__name__})") from exc

    def backoff(self, attempt: int, deadline: float) -> float:
        """Full jitter, capped by what is left of the budget."""
        delay = random.uniform(0.0, _BACKOFF_BASE * 2 ** (attempt - 1))
        return max(0.0, min(delay, deadline - time.monotonic()))

    def unreachable(self, exc: Exception, attempts: int) -> PDPUnavailable:
        if isinstance(exc, (httpx.TimeoutException, httpcore.TimeoutException)):
            why = f"no answer within {self.timeout * 1000:.0f} ms"
        else:
            why = f"{type(exc).__name__}: {exc}"
        plural = "s" if attempts > 1 else ""
        return PDPUnavailable(
            f"PDP at {self.url} unreachable after {attempts} attempt{plural}: {why}"
        )

    def out_of_time(self, attempts: int) -> PDPUnavailable:
        return PDPUnavailable(
            f"PDP at {self.url}: no decision within {self.timeout * 1000:.0f} ms "
            f"({attempts} attempts)"
        )

    @staticmethod
    def read(status: int, content: bytes) -> Decision:
        if status != 200:
            raise PDPError(f"HTTP {status}{_opa_code(content)}", status)
        try:
            body = json.loads(content)
        except ValueError:
            raise PDPError("response body is not JSON", 200) from None
        if not isinstance(body, dict):
            raise PDPError("response body is not a JSON object", 200)
        decision_id = body.get("decision_id")
        return to_decision(
            body.get("result"), decision_id if isinstance(decision_id, str) else None
        )


def _opa_code(content: bytes) -> str:
    """OPA's error `code` (never its message, which can quote the input)."""
    try:
        code = json.loads(content).get("code")
    except (ValueError, AttributeError):
        return ""
    return f" ({code})" if isinstance(code, str) else ""


def _content(response: httpcore.Response) -> tuple[int, bytes]:
    """Status and body; a compressed body (not asked for, but legal) is inflated as httpx would."""
    content = response.content
    for name, value in response.headers:
        if name.lower() == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            try:
                # wbits 47: gzip or zlib framing, detected from the header
                content = zlib.decompress(content, 47)
            except zlib.error:
                raise PDPError("unreadable response: DecodingError") from None
    return response.status, content


class DecisionClient:
    """Ask an OPA-compatible PDP for decisions (sync). Thread-safe; use one per process.

    ```python
    with DecisionClient("http://127.0.0.1:8181") as pdp:
        decision = pdp.decide(request)   # fail-closed: a deny on any PDP failure
    ```
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        path: str = DEFAULT_PATH,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        fail_mode: FailMode = "closed",
        headers: Mapping[str, str] | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._settings = _Settings(base_url, path, timeout, retries, fail_mode, headers)
        # Our own client is an httpcore pool (see `_transport`); a caller's goes through httpx.
        self._client = http_client
        self._pool = sync_pool(limits, self._settings.scheme) if http_client is None else None

    @property
    def url(self) -> str:
        return self._settings.url

    @property
    def fail_mode(self) -> FailMode:
        return self._settings.fail_mode

    def decide(self, request: RequestLike) -> Decision:
        """The decision for `request` (an `AgentRequest` or an `input` dict sent as is)."""
        input = as_input(request)
        try:
            return self._settings.read(*self._post(self._settings.encode(input)))
        except DecisionError as exc:
            if self._settings.fail_mode == "raise":
                raise
            return fail_closed(exc, input)

    def is_allowed(self, request: RequestLike) -> bool:
        return self.decide(request).allow

    def decide_many(self, requests: Iterable[RequestLike]) -> list[Decision]:
        """Decisions in order, one after the other."""
        return [self.decide(request) for request in requests]

    def _post(self, body: bytes) -> tuple[int, bytes]:
        settings = self._settings
        deadline = time.monotonic() + settings.timeout
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise settings.out_of_time(attempt - 1)
            try:
                if self._pool is not None:
                    return _content(
                        self._pool.request(
                            "POST",
                            settings.target,
                            headers=settings.request_headers(body),
                            content=body,
                            extensions=settings.timeouts(remaining),
                        )
                    )
                assert self._client is not None
                response = self._client.post(
                    settings.url, content=body, headers=settings.headers, timeout=remaining
                )
                return response.status_code, response.content
            except (httpx.ConnectError, httpcore.ConnectError) as exc:
                if attempt > settings.retries:
                    raise settings.unreachable(exc, attempt) from exc
                time.sleep(settings.backoff(attempt, deadline))
            except (httpx.TransportError, *_UNREACHABLE) as exc:
                raise settings.unreachable(exc, attempt) from exc
            except httpx.RequestError as exc:  # an answer that could not be decoded
                raise PDPError(f"unreadable response: {type(exc).__name__}") from exc

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> DecisionClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DecisionClient(url={self.url!r}, fail_mode={self.fail_mode!r})"


class AsyncDecisionClient:
    """`DecisionClient`'s asyncio twin; `decide_many` runs concurrently.

    ```python
    async with AsyncDecisionClient() as pdp:
        decisions = await pdp.decide_many(requests)
    ```
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        path: str = DEFAULT_PATH,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        fail_mode: FailMode = "closed",
        headers: Mapping[str, str] | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self._settings = _Settings(base_url, path, timeout, retries, fail_mode, headers)
        self.max_concurrency = max_concurrency
        self._client = http_client
        self._pool = async_pool(limits, self._settings.scheme) if http_client is None else None

    @property
    def url(self) -> str:
        return self._settings.url

    @property
    def fail_mode(self) -> FailMode:
        return self._settings.fail_mode

    async def decide(self, request: RequestLike) -> Decision:
        input = as_input(request)
        try:
            return self._settings.read(*await self._post(self._settings.encode(input)))
        except DecisionError as exc:
            if self._settings.fail_mode == "raise":
                raise
            return fail_closed(exc, input)

    async def is_allowed(self, request: RequestLike) -> bool:
        return (await self.decide(request)).allow

    async def decide_many(self, requests: Iterable[RequestLike]) -> list[Decision]:
        """Decisions in order, at most `max_concurrency` in flight."""
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(request: RequestLike) -> Decision:
            async with gate:
                return await self.decide(request)

        return list(await asyncio.gather(*(one(request) for request in requests)))

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        settings = self._settings
        deadline = time.monotonic() + settings.timeout
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise settings.out_of_time(attempt - 1)
            try:
                if self._pool is not None:
                    return _content(
                        await self._pool.request(
                            "POST",
                            settings.target,
                            headers=settings.request_headers(body),
                            content=body,
                            extensions=settings.timeouts(remaining),
                        )
                    )
                assert self._client is not None
                response = await self._client.post(
                    settings.url, content=body, headers=settings.headers, timeout=remaining
                )
                return response.status_code, response.content
            except (httpx.ConnectError, httpcore.ConnectError) as exc:
                if attempt > settings.retries:
                    raise settings.unreachable(exc, attempt) from exc
                await asyncio.sleep(settings.backoff(attempt, deadline))
            except (httpx.TransportError, *_UNREACHABLE) as exc:
                raise settings.unreachable(exc, attempt) from exc
            except httpx.RequestError as exc:  # an answer that could not be decoded
                raise PDPError(f"unreadable response: {type(exc).__name__}") from exc

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()

    async def __aenter__(self) -> AsyncDecisionClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncDecisionClient(url={self.url!r}, fail_mode={self.fail_mode!r})"
