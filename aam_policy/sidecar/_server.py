"""The HTTP server: the subset of OPA's REST API that our client and opa-python-client use.

Stack: aiohttp, chosen by measurement against `http.server.ThreadingHTTPServer` (see the
package docstring): equal latency, and one event loop owning all state means the snapshot swap
is a plain assignment and there is no lock on the request path. Decisions are evaluated by the
active generation, on the loop's own thread, in one batch per loop turn (`_runtime`).

Routes (everything else: 404; a known route with another method: 405):

    GET  /health                      {} ; ?bundles -> 500 until the bundle is active
    GET|POST /v1/data[/{path}]        evaluate; POST body {"input": {...}}
    PUT|PATCH|DELETE /v1/data/{path}  the API-written data overlay (not under bundle roots)
    GET  /v1/policies                 list modules
    GET|PUT|DELETE /v1/policies/{id}  one module (PUT body: Rego text)
    POST /logs                        OPA decision-log upload (gzip JSON array)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import sqlite3
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

from aam_policy import __version__
from aam_policy.engine._verify import verification_config

from ._decision_log import (
    DEFAULT_MASKS,
    AuditDecisionLog,
    DecisionLogSink,
    JsonlDecisionLog,
    LogIngest,
    apply_masks,
    parse_masks,
    rfc3339_now,
)
from ._errors import (
    INTERNAL_ERROR,
    INVALID_OPERATION,
    ApiError,
    SidecarError,
    invalid,
    not_found,
)
from ._reload import BundleWatcher, describe_failure
from ._runtime import EngineFailure, PolicyRuntime
from ._store import BUNDLE_NAME, Parts, Snapshot

logger = logging.getLogger("aam_policy.sidecar")

DEFAULT_PORT = 8181
DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: an enriched request is a few KiB
DEFAULT_MAX_LOG_BODY_BYTES = 8 << 20  # decompressed size of one POST /logs upload
_JSON_TYPES = ("application/json", "text/json")
_DATA_PREFIX = "/v1/data"
_POLICIES_PREFIX = "/v1/policies"


@dataclass(frozen=True)
class SidecarConfig:
    """Everything `serve()` and `python -m aam_policy.sidecar` accept (except callables)."""

    bundle: Path | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    allow_remote: bool = False
    engine: str = "regorus"
    watch: bool = True
    reload_interval: float = 1.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_log_body_bytes: int = DEFAULT_MAX_LOG_BODY_BYTES
    decision_log: Path | None = None
    # decision-log events also go to this hash-chained audit store (masked the same way)
    audit_db: Path | None = None
    masks: tuple[str, ...] = DEFAULT_MASKS
    ready_file: Path | None = None
    shutdown_timeout: float = 10.0
    parent_pid: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # As `opa run`: with a verification key, only bundles signed with it are served.
    verification_key: str | None = field(default=None, repr=False)
    verification_key_id: str = "default"
    signing_alg: str = "RS256"
    scope: str = ""


def parse_addr(addr: str) -> tuple[str, int]:
    """ "127.0.0.1:8181", "[::1]:8181", "localhost:0", ":8181" (all interfaces) -> (host, port)."""
    text = addr.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"invalid address {addr!r} (expected [HOST]:PORT)")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"invalid address {addr!r} (expected HOST:PORT)")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"invalid port in address {addr!r}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"invalid port in address {addr!r}")
    return host, port


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost (or "" = all interfaces)


class Sidecar:
    """One running server (in the current event loop): `start()`, then `stop()`."""

    def __init__(
        self,
        config: SidecarConfig,
        decision_log_sink: DecisionLogSink | None = None,
        log_ingest: LogIngest | None = None,
    ) -> None:
        if not config.allow_remote and not is_loopback(config.host):
            raise SidecarError(
                f"refusing to listen on non-loopback address {config.host!r}: the sidecar has "
                "no authentication; pass allow_remote (--allow-remote) to do it anyway"
            )
        self.config = config
        self.masks = parse_masks(config.masks)
        verification = None
        if config.verification_key is not None:
            try:
                verification = verification_config(
                    config.verification_key,
                    config.verification_key_id,
                    config.signing_alg,
                    config.scope,
                )
            except ValueError as exc:
                raise SidecarError(f"bundle verification key: {exc}") from None
        self.runtime = PolicyRuntime(config.engine, verification)
        self.watcher: BundleWatcher | None = None
        self.jsonl: JsonlDecisionLog | None = None
        self.audit_log: AuditDecisionLog | None = None
        self.sinks: list[DecisionLogSink] = []
        if decision_log_sink is not None:
            self.sinks.append(decision_log_sink)
        self.log_ingest = log_ingest
        self.labels = {"id": str(uuid.uuid4()), "version": __version__, **config.labels}
        self.host = config.host
        self.port = config.port
        self.stopped = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ingest_executor: ThreadPoolExecutor | None = None
        self._req_id = 0
        self._warned_no_ingest = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the bundle, then listen; raises SidecarError (after cleaning up) on failure."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        config = self.config
        if self.runtime.verification is not None:
            if config.bundle is None:
                raise SidecarError("--verification-key needs --bundle")
            verification = self.runtime.verification
            logger.info(
                "bundle signatures required: %s key id %r",
                verification.algorithm,
                verification.key_id,
            )
        if config.bundle is not None:
            self.watcher = BundleWatcher(
                config.bundle, self.runtime, config.reload_interval, poll=config.watch
            )
            try:
                await self.watcher.load_initial()
            except (EngineFailure, ValueError) as exc:
                raise SidecarError(
                    f"cannot load bundle {config.bundle}: {describe_failure(exc)}"
                ) from None
        else:
            await self.runtime.update(lambda s: s)  # an empty policy, ready for PUTs
        if config.decision_log is not None:
            try:
                self.jsonl = JsonlDecisionLog(config.decision_log)
            except OSError as exc:
                raise SidecarError(
                    f"cannot open decision log {config.decision_log}: {exc}"
                ) from None
            self.sinks.append(self.jsonl)
        if config.audit_db is not None:
            try:
                self.audit_log = AuditDecisionLog(config.audit_db)
            except (OSError, sqlite3.Error) as exc:
                raise SidecarError(f"cannot open audit store {config.audit_db}: {exc}") from None
            self.sinks.append(self.audit_log)
        if self.log_ingest is not None:
            self._ingest_executor = ThreadPoolExecutor(1, thread_name_prefix="aam-log-ingest")

        app = web.Application(
            client_max_size=max(config.max_body_bytes, config.max_log_body_bytes) + 1
        )
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            # Bodies are decompressed here, under the size limits, not by aiohttp.
            auto_decompress=False,
            shutdown_timeout=config.shutdown_timeout,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, config.host or None, config.port)
        try:
            await site.start()
        except OSError as exc:
            raise SidecarError(f"cannot listen on {config.host}:{config.port}: {exc}") from None
        address = self._runner.addresses[0]
        self.host, self.port = str(address[0]), int(address[1])
        if not is_loopback(config.host):
            logger.warning("listening on non-loopback %s: the API has no authentication", self.url)

        if self.watcher is not None:
            self._tasks.append(asyncio.ensure_future(self.watcher.run()))
        if config.parent_pid is not None:
            self._tasks.append(asyncio.ensure_future(self._watch_parent(config.parent_pid)))
        if config.ready_file is not None:
            write_ready_file(config.ready_file, self)
        logger.info(
            "aam sidecar listening on %s (revision %r, engine %s)",
            self.url,
            self.runtime.revision,
            config.engine,
        )

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: graceful stop; SIGHUP: reload the bundle now (main thread only)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        if hasattr(signal, "SIGHUP"):
            loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        if self.watcher is None:
            logger.info("SIGHUP: no bundle configured, nothing to reload")
            return
        logger.info("SIGHUP: reloading bundle %s", self.watcher.path)
        self.watcher.trigger()

    def request_stop(self, reason: str = "stop") -> None:
        if not self.stopped.is_set():
            logger.info("%s: stopping (finishing in-flight requests)", reason)
            self.stopped.set()

    async def _watch_parent(self, parent_pid: int) -> None:
        # A sidecar started for a test or an app must not outlive it, even after a SIGKILL.
        while os.getppid() == parent_pid:
            await asyncio.sleep(0.5)
        self.request_stop("parent process exited")

    async def stop(self) -> None:
        """Stop listening, let in-flight requests finish (shutdown_timeout), release all."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._runner is not None:
            # Stop accepting first, then wait for the requests already being handled. Only
            # then let aiohttp close connections: once it does, it ignores incoming bytes, so a
            # request whose body was still arriving would never complete.
            for site in list(self._runner.sites):
                await site.stop()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self.config.shutdown_timeout)
            await self._runner.cleanup()
            self._runner = None
        await self.runtime.close()
        if self._ingest_executor is not None:
            await asyncio.to_thread(self._ingest_executor.shutdown, True)
        if self.jsonl is not None:
            await asyncio.to_thread(self.jsonl.close)
        if self.audit_log is not None:
            await asyncio.to_thread(self.audit_log.close)

    # --- dispatch -----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        start = time.perf_counter_ns()
        pretty = _flag(request, "pretty")
        self._in_flight += 1
        self._idle.clear()
        try:
            return await self._route(request, start, pretty)
        except ApiError as exc:
            return _error_response(exc, pretty)
        except Exception as exc:
            logger.exception("internal error on %s %s", request.method, request.path)
            return _error_response(ApiError(500, INTERNAL_ERROR, f"internal error: {exc}"), pretty)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _route(self, request: web.Request, start: int, pretty: bool) -> web.StreamResponse:
        path, method = request.path, request.method
        if path == "/health":
            _allow(method, ("GET",))
            return self._health(request, pretty)
        if path == _DATA_PREFIX or path.startswith(_DATA_PREFIX + "/"):
            parts = tuple(p for p in path[len(_DATA_PREFIX) :].split("/") if p)
            _allow(method, ("GET", "POST", "PUT", "PATCH", "DELETE"))
            if method in ("GET", "POST"):
                return await self._query(request, parts, start, pretty)
            return await self._write_data(request, parts)
        if path in (_POLICIES_PREFIX, _POLICIES_PREFIX + "/"):
            _allow(method, ("GET",))
            return _json(200, {"result": self.runtime.snapshot.list_policies()}, pretty)
        if path.startswith(_POLICIES_PREFIX + "/"):
            _allow(method, ("GET", "PUT", "DELETE"))
            return await self._policy(request, path[len(_POLICIES_PREFIX) + 1 :], pretty)
        if path == "/logs":
            _allow(method, ("POST",))
            return await self._ingest_logs(request)
        raise not_found(f"no such endpoint: {method} {path}")

    # --- health -------------------------------------------------------------------------------

    def _health(self, request: web.Request, pretty: bool) -> web.Response:
        if "bundles" not in request.query:
            return _json(200, {}, pretty)
        if self.config.bundle is None:
            return _json(200, {}, pretty)  # no bundle configured: nothing to wait for (as OPA)
        generation = self.runtime.active
        if generation is None or generation.snapshot.bundle is None:
            return _json(500, {"error": f"bundle {BUNDLE_NAME!r} is not activated"}, pretty)
        activated = datetime.fromtimestamp(generation.activated_ns / 1e9, timezone.utc)
        body = {
            "bundles": {
                BUNDLE_NAME: {
                    "revision": generation.snapshot.revision,
                    "activated": activated.isoformat().replace("+00:00", "Z"),
                }
            }
        }
        return _json(200, body, pretty)

    # --- Data API: queries --------------------------------------------------------------------

    async def _query(
        self, request: web.Request, parts: Parts, start: int, pretty: bool
    ) -> web.Response:
        if request.method == "POST":
            body = await self._read_body(request, self.config.max_body_bytes)
            input_value = _input_from_post(request, body)
        else:
            raw = request.query.get("input")
            input_value = None if raw is None else _check_input(_parse_json(raw.encode(), "input"))
        decision_id = str(uuid.uuid4())
        path = "/".join(parts)
        try:
            evaluation, snapshot = await self.runtime.evaluate("/" + path, input_value)
        except EngineFailure as exc:
            message = describe_failure(exc)
            self._log_decision(
                request, decision_id, path, input_value, None, start, 0, self.runtime.snapshot,
                error={"code": INTERNAL_ERROR, "message": message},
            )  # fmt: skip
            raise ApiError(500, INTERNAL_ERROR, message) from None
        out: dict[str, Any] = {"decision_id": decision_id}
        if evaluation.value is not None:  # undefined: no "result" key at all, as in OPA
            out["result"] = evaluation.value
        handler_ns = time.perf_counter_ns() - start
        if _flag(request, "metrics"):
            out["metrics"] = {
                "timer_rego_query_eval_ns": evaluation.eval_ns,
                "timer_server_handler_ns": handler_ns,
            }
        if _flag(request, "provenance"):
            out["provenance"] = self._provenance(snapshot)
        self._log_decision(
            request, decision_id, path, input_value, evaluation.value, start, evaluation.eval_ns,
            snapshot,
        )  # fmt: skip
        return _json(200, out, pretty)

    def _provenance(self, snapshot: Snapshot) -> dict[str, Any]:
        out: dict[str, Any] = {"version": f"aam-policy {__version__}", "build_commit": ""}
        if snapshot.revision is not None:
            out["bundles"] = {BUNDLE_NAME: {"revision": snapshot.revision}}
        return out

    def _log_decision(
        self,
        request: web.Request,
        decision_id: str,
        path: str,
        input_value: Any,
        result: Any,
        start: int,
        eval_ns: int,
        snapshot: Snapshot,
        error: dict[str, str] | None = None,
    ) -> None:
        if not self.sinks:
            return
        self._req_id += 1
        event: dict[str, Any] = {
            "decision_id": decision_id,
            "labels": self.labels,
            "path": path,
            "timestamp": rfc3339_now(),
            "requested_by": _peer(request),
            "req_id": self._req_id,
            "metrics": {
                "timer_rego_query_eval_ns": eval_ns,
                "timer_server_handler_ns": time.perf_counter_ns() - start,
            },
        }
        if snapshot.revision is not None:
            event["bundles"] = {BUNDLE_NAME: {"revision": snapshot.revision}}
        if input_value is not None:
            event["input"] = input_value
        if result is not None:
            event["result"] = result
        if error is not None:
            event["error"] = error
        self._emit(apply_masks(event, self.masks))

    def _emit(self, event: dict[str, Any]) -> None:
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:
                logger.exception("decision log sink failed")

    # --- Data API: writes ---------------------------------------------------------------------

    async def _write_data(self, request: web.Request, parts: Parts) -> web.Response:
        method = request.method
        if method == "DELETE":
            await self._update(lambda s: s.without_data(parts))
            return web.Response(status=204)
        body = await self._read_body(request, self.config.max_body_bytes)
        _check_content_type(request)
        if not body.strip():
            raise invalid("request body is empty (expected a JSON document)")
        value = _parse_json(body, "body")
        if method == "PATCH":
            await self._update(lambda s: s.patched(parts, value))
            return web.Response(status=204)
        if request.headers.get("If-None-Match") == "*" and self.runtime.snapshot.data_exists(parts):
            return web.Response(status=304)
        await self._update(lambda s: s.with_data(parts, value))
        return web.Response(status=204)

    async def _update(self, change: Callable[[Snapshot], Snapshot]) -> Snapshot:
        try:
            return await self.runtime.update(change)
        except EngineFailure as exc:
            raise invalid(f"the resulting policy does not load: {describe_failure(exc)}") from None

    # --- Policy API ---------------------------------------------------------------------------

    async def _policy(self, request: web.Request, policy_id: str, pretty: bool) -> web.Response:
        if not policy_id:
            raise not_found("policy id is empty")
        method = request.method
        if method == "GET":
            return _json(200, {"result": self.runtime.snapshot.get_policy(policy_id)}, pretty)
        if method == "DELETE":
            await self._update(lambda s: s.without_policy(policy_id))
            return _json(200, {}, pretty)
        body = await self._read_body(request, self.config.max_body_bytes)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid("policy must be UTF-8 Rego text") from None
        if not text.strip():
            raise invalid("policy is empty")
        try:
            await self.runtime.update(lambda s: s.with_policy(policy_id, text))
        except EngineFailure as exc:
            failure = exc.failure
            location = {"file": failure.path or policy_id, "row": failure.line or 0}
            if failure.column is not None:
                location["col"] = failure.column
            code = "rego_parse_error" if failure.kind == "PolicyLoadError" else "rego_compile_error"
            raise invalid(
                "error(s) occurred while compiling module(s)",
                [{"code": code, "message": failure.message, "location": location}],
            ) from None
        return _json(200, {}, pretty)

    # --- decision-log upload ------------------------------------------------------------------

    async def _ingest_logs(self, request: web.Request) -> web.Response:
        limit = self.config.max_log_body_bytes
        body = await self._read_body(request, limit)
        if body[:2] == b"\x1f\x8b":  # OPA always gzips uploads; some proxies drop the header
            body = _gunzip(body, limit)
        events = _parse_json(body, "decision log upload")
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            raise invalid("a decision log upload must be a JSON array of event objects")
        # The uploader's own masking already ran; ours applies as well (defense in depth).
        events = [apply_masks(event, self.masks) for event in events]
        if self.log_ingest is not None and self._ingest_executor is not None:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._ingest_executor, self.log_ingest, events)
            except Exception as exc:
                logger.exception("decision log ingest failed")
                raise ApiError(500, INTERNAL_ERROR, f"log ingest failed: {exc}") from None
        elif self.sinks:
            for event in events:
                self._emit(event)
        elif events:
            if not self._warned_no_ingest:
                logger.warning(
                    "POST /logs: no log ingest or decision log configured; dropping uploads"
                )
                self._warned_no_ingest = True
            logger.debug("POST /logs: dropped %d event(s)", len(events))
        return web.Response(status=204)

    # --- bodies -------------------------------------------------------------------------------

    async def _read_body(self, request: web.Request, limit: int) -> bytes:
        length = request.content_length
        if length is not None and length > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = await request.content.read(65536)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        body = b"".join(chunks)
        encoding = request.headers.get("Content-Encoding", "").strip().lower()
        if encoding == "gzip":
            return _gunzip(body, limit)
        if encoding not in ("", "identity"):
            raise invalid(f"unsupported Content-Encoding {encoding!r} (use gzip or none)")
        return body


# --- helpers ----------------------------------------------------------------------------------


def _too_large(limit: int) -> ApiError:
    # The rest of the body is not read: close the connection after answering.
    return ApiError(
        413,
        "invalid_parameter",
        f"request body is larger than {limit} bytes",
        headers={"Connection": "close"},
    )


def _allow(method: str, allowed: Sequence[str]) -> None:
    if method not in allowed:
        raise ApiError(
            405,
            INVALID_OPERATION,
            f"method {method} is not allowed here (allowed: {', '.join(allowed)})",
            headers={"Allow": ", ".join(allowed)},
        )


def _flag(request: web.Request, name: str) -> bool:
    """OPA's boolean query parameters: `?pretty` and `?pretty=true` are on."""
    if name not in request.query:
        return False
    return request.query.get(name, "").strip().lower() in ("", "true", "1", "yes")


def _json(status: int, body: Any, pretty: bool = False) -> web.Response:
    if pretty:
        text = json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    else:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return web.Response(status=status, body=text.encode("utf-8"), content_type="application/json")


def _error_response(exc: ApiError, pretty: bool) -> web.Response:
    response = _json(exc.status, exc.body(), pretty)
    for key, value in exc.headers.items():
        if key == "Connection" and value == "close":
            response.force_close()  # aiohttp then sends "Connection: close" itself
        else:
            response.headers[key] = value
    return response


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise invalid(f"{what} is not UTF-8") from None
    except ValueError as exc:
        raise invalid(f"{what} contains malformed JSON: {exc}") from None
    except RecursionError:
        raise invalid(f"{what} is nested too deeply") from None


def _check_content_type(request: web.Request) -> None:
    raw = request.headers.get("Content-Type")
    if raw is None:
        return  # like OPA: a body without a declared type is read as JSON
    mime = raw.split(";", 1)[0].strip().lower()
    if mime in _JSON_TYPES or mime.endswith("+json"):
        return
    raise invalid(f"unsupported Content-Type {mime!r}: send application/json")


def _check_input(value: Any) -> Any:
    if value is not None and not isinstance(value, dict):
        raise invalid(f"input must be a JSON object, not {_json_type(value)}")
    return value


def _input_from_post(request: web.Request, body: bytes) -> Any:
    if not body.strip():
        return None  # no body: input is undefined, as in OPA
    _check_content_type(request)
    document = _parse_json(body, "body")
    if not isinstance(document, dict):
        raise invalid(
            f'body must be a JSON object like {{"input": {{...}}}}, not {_json_type(document)}'
        )
    return _check_input(document.get("input"))


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "null" if value is None else "an object"


def _gunzip(data: bytes, limit: int) -> bytes:
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, limit + 1)
    except zlib.error as exc:
        raise invalid(f"body is not valid gzip: {exc}") from None
    if len(out) > limit or decompressor.unconsumed_tail:
        raise _too_large(limit)
    if not decompressor.eof:
        raise invalid("gzip body is truncated")
    return out


def _peer(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return request.remote or ""


def write_ready_file(path: Path, sidecar: Sidecar) -> None:
    """Atomically write {"url", "host", "port", "pid", "revision"} once the server listens."""
    payload = {
        "url": sidecar.url,
        "host": sidecar.host,
        "port": sidecar.port,
        "pid": os.getpid(),
        "revision": sidecar.runtime.revision,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload), encoding="utf-8")
    os.replace(tmp, path)


async def run_sidecar(
    config: SidecarConfig,
    decision_log_sink: DecisionLogSink | None = None,
    log_ingest: LogIngest | None = None,
    install_signals: bool = True,
) -> None:
    sidecar = Sidecar(config, decision_log_sink, log_ingest)
    if install_signals:
        sidecar.install_signal_handlers()  # before loading: SIGTERM while starting is graceful
    await sidecar.start()
    try:
        await sidecar.stopped.wait()
    finally:
        await sidecar.stop()
    logger.info("aam sidecar stopped")


def serve(
    bundle: str | Path | None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    decision_log_sink: DecisionLogSink | None = None,
    log_ingest: LogIngest | None = None,
    **options: Any,
) -> None:
    """Serve `bundle` on host:port until SIGTERM/SIGINT (blocking; used by `aam sidecar`).

    `options` are the other `SidecarConfig` fields (allow_remote, engine, watch,
    reload_interval, max_body_bytes, max_log_body_bytes, decision_log, audit_db, masks, ready_file,
    shutdown_timeout, parent_pid, labels, verification_key, verification_key_id, signing_alg,
    scope). Raises `SidecarError` when it cannot start (e.g. an unsigned bundle while a
    verification key is set).
    """
    for key in ("decision_log", "audit_db", "ready_file"):
        if options.get(key) is not None:
            options[key] = Path(options[key])
    if "masks" in options:
        options["masks"] = tuple(options["masks"])
    config = SidecarConfig(
        bundle=Path(bundle) if bundle is not None else None, host=host, port=port, **options
    )
    asyncio.run(run_sidecar(config, decision_log_sink, log_ingest))
