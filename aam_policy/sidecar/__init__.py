"""The local decision sidecar: OPA's REST API (the subset clients use) over the embedded engine.

```python
from aam_policy.sidecar import SidecarProcess, push_bundle, serve

serve("build/bundle", "127.0.0.1", 8181)          # blocking; what `aam sidecar` runs

with SidecarProcess("build/bundle") as sidecar:   # a real child process on a free port
    httpx.post(f"{sidecar.url}/v1/data/aam/decision", json={"input": request})

push_bundle("build/bundle.tar.gz", "http://127.0.0.1:8181", timeout=10)  # `aam push`
```

It speaks the same API as `opa run --server`, so the decision client, opa-python-client and
`aam push` work unchanged against either: `POST|GET /v1/data/{path}` (decision_id in every
answer, no `result` when undefined), `PUT|PATCH|DELETE /v1/data/{path}`, `GET|PUT|DELETE
/v1/policies/{id}`, `GET /health[?bundles]`, `POST /logs`. Errors are OPA-style
`{"code", "message"}` bodies. It listens on loopback only unless told otherwise, watches the
bundle and swaps it atomically when it changes, and writes OPA-format decision logs with the
request's free text and tool arguments erased (`DEFAULT_MASKS`).

Server stack, chosen by measurement (2 vCPU, tiny bundle, httpx.Client with keep-alive,
POST /v1/data/aam/decision, 4 x 5000 sequential requests, same engine work in both):
aiohttp p50 453-497 us / p99 675-936 us, `http.server.ThreadingHTTPServer` p50 434-474 us /
p99 721-825 us (and 44 ms until TCP_NODELAY is set); 8 concurrent clients: p50 ~4 ms for both.
Latency is a tie (the Python client dominates), so aiohttp won on structure: regorus engines
are bound to the thread that built them and must be parsed and prepared in every thread that
evaluates, so a thread per connection would rebuild the engine per connection and again after
every reload, while one event loop keeps a single engine and makes the hot swap one assignment
(see `_runtime`).

Where the engine runs (issue 5, 1,000-intent bundle, 2 vCPU shared by client and sidecar):
first on one engine thread per policy generation, which kept a reload's parse off the loop.
But regorus holds the GIL while it parses and evaluates, so that thread bought no parallelism,
and its hand-off cost ~0.2 ms per sequential decision (P1 p50 1.14-1.16 ms against
0.97-0.98 ms on the loop, same session). Engines are now built and evaluated on the loop: the
build parses a module at a time and gives the loop a turn every 2 ms, and the decisions
queued by one loop turn are evaluated as one batch (with a decision each, throughput fell
from ~2,100/s to ~1,930/s). A reload still pauses decisions once, while regorus prepares the
new program on its first evaluation (55-100 ms at 1,000 intents), as it did on the engine
thread: the slowest decision during a reload took 100-142 ms, 71-133 ms before.

Client side: `httpx.Client` cost ~400 us of CPU per decision and httpcore sent head and body in
two writes (two wakeups of the sidecar, ~350 us per loopback send here), so the clients drive
an httpcore pool directly and send each request in one write (`aam_policy.client._transport`);
the async client also lost ~45% of its CPU to a failing `import sniffio` per request, and a
quarter of the rest to anyio streams (it now uses asyncio's). Sidecar side: the bundle
watcher's signature walk (2,000 files a second, ~30 ms of GIL-holding Python) now takes ~9 ms.
What remains is mostly the evaluation itself (~0.25-0.4 ms), which caps one sidecar near
2,000-2,500 decisions/s of pure engine time.
"""

import importlib
from typing import TYPE_CHECKING, Any

from aam_policy.sidecar._decision_log import (
    DEFAULT_MASKS,
    DecisionLogSink,
    JsonlDecisionLog,
    LogIngest,
    apply_masks,
    parse_masks,
)
from aam_policy.sidecar._errors import ApiError, SidecarError
from aam_policy.sidecar._server import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_LOG_BODY_BYTES,
    DEFAULT_PORT,
    Sidecar,
    SidecarConfig,
    parse_addr,
    serve,
)

if TYPE_CHECKING:
    from aam_policy.sidecar._process import SidecarProcess
    from aam_policy.sidecar._push import PushError, PushResult, push_bundle

# The launcher and `aam push` load on first use: they bring HTTP clients (httpx,
# opa-python-client with requests) that the server process itself never needs (~10 MB RSS).
_LAZY = {
    "SidecarProcess": "aam_policy.sidecar._process",
    "PushError": "aam_policy.sidecar._push",
    "PushResult": "aam_policy.sidecar._push",
    "push_bundle": "aam_policy.sidecar._push",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_MASKS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_LOG_BODY_BYTES",
    "DEFAULT_PORT",
    "ApiError",
    "DecisionLogSink",
    "JsonlDecisionLog",
    "LogIngest",
    "PushError",
    "PushResult",
    "Sidecar",
    "SidecarConfig",
    "SidecarError",
    "SidecarProcess",
    "apply_masks",
    "parse_addr",
    "parse_masks",
    "push_bundle",
    "serve",
]
