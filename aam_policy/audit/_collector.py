"""`aam collector`: a tiny HTTP server receiving OPA decision-log uploads into an audit store.

Point a real OPA at it (``services: [{name: audit, url: http://127.0.0.1:8282}]`` and
``decision_logs: {service: audit}``) and its decisions land in the same trace as everything the
enforcement point records.

* ``POST /logs`` (and ``/logs/<partition>``): a JSON array of decision-log events, gzip
  compressed (``Content-Encoding: gzip`` or gzip magic bytes) or plain. Answers 200 with
  ``{"received": n, "ingested": m}`` — OPA releases its buffer only on a 2xx (older OPA
  versions only on exactly 200), so a failed ingest answers 500 and OPA uploads again; the
  store's idempotency on ``decision_id`` makes the retry harmless.
* ``GET /health``: 200 ``{}``.

Standard library only (`http.server`, a thread per request): uploads are small and infrequent
(OPA batches them), and the store serializes writes anyway.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

logger = logging.getLogger("aam_policy.audit.collector")

DEFAULT_MAX_BODY_BYTES = 8 << 20  # per upload, compressed and decompressed

Ingest = Callable[[list[dict[str, Any]]], int]

AUDIT_DB_ENV = "AAM_AUDIT_DB"
_env_stores: dict[str, Any] = {}
_env_lock = threading.Lock()


class _IngestingStore(Protocol):
    def ingest_decision_logs(self, events: Sequence[Mapping[str, Any]]) -> int: ...


class _UploadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class CollectorServer:
    """The collector on a background thread: ``with CollectorServer(store) as c: c.url``.

    `port=0` picks a free port. `store` is an `AuditStore` (or anything with
    `ingest_decision_logs`).
    """

    def __init__(
        self,
        store: _IngestingStore,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        handler = _make_handler(store.ingest_decision_logs, max_body_bytes)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> CollectorServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="aam-collector", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until Ctrl-C or SIGTERM, then close the socket.

        SIGTERM is how service managers stop a process (systemd, `docker stop`), and what stops
        a job that a script started in the background: such a job has SIGINT ignored.
        """
        # signal handlers can only be set on the main thread
        on_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if on_main_thread else None
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            if on_main_thread:  # a second SIGTERM while closing acts as before
                signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
            self.stop()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> CollectorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_collector(store: _IngestingStore, host: str = "127.0.0.1", port: int = 8282) -> None:
    """Serve ``POST /logs`` into `store` until interrupted (blocking; `aam collector`)."""
    server = CollectorServer(store, host, port)
    logger.info("audit collector listening on %s (POST /logs)", server.url)
    server.serve_forever()


def ingest_to_audit_db(events: list[dict[str, Any]]) -> int:
    """Ingest OPA decision-log events into the audit store at ``$AAM_AUDIT_DB``.

    A plain module-level callable for ``aam sidecar --log-ingest
    aam_policy.audit:ingest_to_audit_db``: the sidecar's ``POST /logs`` then feeds the same
    store as the enforcement point. The store is opened on first use and kept.
    """
    path = os.environ.get(AUDIT_DB_ENV)
    if not path:
        raise RuntimeError(f"{AUDIT_DB_ENV} is not set: no audit database to ingest into")
    with _env_lock:
        store = _env_stores.get(path)
        if store is None:
            from ._store import AuditStore

            store = _env_stores[path] = AuditStore(path)
    return int(store.ingest_decision_logs(events))


def _make_handler(ingest: Ingest, max_body_bytes: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "aam-collector"
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == "/health":
                self._reply(200, {})
            else:
                self._reply(404, {"code": "not_found", "message": f"no route {self.path}"})

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            if path != "/logs" and not path.startswith("/logs/"):
                self._drain()
                self._reply(404, {"code": "not_found", "message": f"no route {path}"})
                return
            try:
                events = self._read_events()
            except _UploadError as exc:
                self._reply(exc.status, {"code": "invalid_parameter", "message": str(exc)})
                return
            try:
                ingested = ingest(events)
            except Exception as exc:
                logger.exception("decision log ingest failed")
                self._reply(500, {"code": "internal_error", "message": f"ingest failed: {exc}"})
                return
            self._reply(200, {"received": len(events), "ingested": ingested})

        def _read_events(self) -> list[dict[str, Any]]:
            length_header = self.headers.get("Content-Length")
            if length_header is None:
                self.close_connection = True
                raise _UploadError(411, "Content-Length required")
            try:
                length = int(length_header)
            except ValueError:
                self.close_connection = True
                raise _UploadError(400, "invalid Content-Length") from None
            if length < 0 or length > max_body_bytes:
                self.close_connection = True
                raise _UploadError(413, f"upload larger than {max_body_bytes} bytes")
            body = self.rfile.read(length)
            encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
            if encoding == "gzip" or body[:2] == b"\x1f\x8b":
                body = _gunzip(body, max_body_bytes)
            elif encoding not in ("", "identity"):
                raise _UploadError(415, f"unsupported Content-Encoding {encoding!r}")
            try:
                events = json.loads(body)
            except ValueError as exc:
                raise _UploadError(400, f"upload is not valid JSON: {exc}") from None
            if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
                raise _UploadError(400, "an upload must be a JSON array of event objects")
            return events

        def _drain(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = 0
            if 0 < length <= max_body_bytes:
                self.rfile.read(length)
            elif length:
                self.close_connection = True

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s %s", self.address_string(), format % args)

    return Handler


def _gunzip(data: bytes, limit: int) -> bytes:
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, limit + 1)
    except zlib.error as exc:
        raise _UploadError(400, f"upload is not valid gzip: {exc}") from None
    if len(out) > limit or decompressor.unconsumed_tail:
        raise _UploadError(413, f"upload decompresses to more than {limit} bytes")
    if not decompressor.eof:
        raise _UploadError(400, "gzip upload is truncated")
    return out
