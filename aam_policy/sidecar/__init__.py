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
every reload, while one event loop plus one engine thread per policy generation keeps a single
engine and makes the hot swap one assignment (see `_runtime`).

Evaluating on that engine thread instead of inline on the loop costs 50-100 us per decision
(p50 ~550 us vs ~460 us end to end) and buys reloads that do not stall decisions while the new
bundle is parsed: reloading a 30k-line bundle under load delays decisions by at most ~180 ms
(regorus' one-time prepare step holds the GIL), where building it on the loop would stall
for parse + prepare (~210 + ~190 ms measured); for a 3k-line bundle the delay is ~20 ms.

Issue 5 (1,000-intent bundle, 2 vCPU shared by client and sidecar): the ~1.8 ms over the
engine's own time was mostly not in the sidecar. Client side: `httpx.Client` cost ~400 us of
CPU per decision and httpcore sent head and body in two writes (two wakeups of the sidecar,
~350 us per loopback send here), so the clients now drive an httpcore pool directly and send
each request in one write (`aam_policy.client._transport`); the async client also lost ~45%
of its CPU to a failing `import sniffio` per request. Sidecar side: the bundle watcher's
signature walk (2,000 files a second, ~30 ms of GIL-holding Python) now takes ~9 ms, and
concurrent decisions are evaluated in batches (one hop per batch, not per decision). Inline
evaluation on the loop measured no better within the noise, and is ruled out for this bundle
anyway: an engine's first evaluation in a new thread takes ~3 s. What remains is mostly the
evaluation itself (~0.4-0.5 ms under load, of which `set_input` ~80 us), which caps one
sidecar near 2,000 decisions/s of pure engine time.
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
