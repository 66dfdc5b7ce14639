"""`LocalDecisionClient`: the `DecisionClient` interface over an in-process engine, no HTTP.

For enforcement points that embed the policy (tests, CLIs, single-process gateways): the
bundle is loaded once into the embedded engine (`aam_policy.engine.RegorusEngine`, imported
only when a path is given, so `aam_policy.client` alone never loads an engine) and every
decision is one evaluation plus one `Decision.model_validate`. Plain-dict requests skip the
`AgentRequest.to_input()` dump, the costliest step left on this path.

There is no network, so there is no `pdp_unavailable`: an engine error or a malformed or
undefined result is `pdp_error` (a deny in fail-closed mode, `PDPError` in raise mode).
Decisions carry no `decision_id` (that is the server's).

`AsyncLocalDecisionClient` evaluates inline on the event loop: a decision is ~0.1 ms of CPU
holding the GIL, less than handing it to a thread would cost, and regorus engines are bound
to the thread that built them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ._core import (
    DEFAULT_PATH,
    FailMode,
    RequestLike,
    as_input,
    check_fail_mode,
    fail_closed,
    to_decision,
)
from ._errors import DecisionError, PDPError
from ._models import Decision


@runtime_checkable
class Evaluator(Protocol):
    """Anything with the `aam_policy.engine.Engine` evaluate method."""

    def evaluate(self, path: str, input: Any = None) -> Any: ...


PolicySource = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | Evaluator


def _engine(policy: PolicySource) -> Evaluator:
    if isinstance(policy, Evaluator):
        return policy
    from aam_policy.engine import RegorusEngine, load_policy

    paths = [policy] if isinstance(policy, (str, os.PathLike)) else list(policy)
    return RegorusEngine(load_policy([Path(p) for p in paths], tests=False))


class LocalDecisionClient:
    """Decisions from an embedded engine, same interface as `DecisionClient`.

    ```python
    pdp = LocalDecisionClient("build/bundle")          # or an Engine instance
    pdp.decide(request)
    ```
    """

    def __init__(
        self, policy: PolicySource, *, path: str = DEFAULT_PATH, fail_mode: FailMode = "closed"
    ) -> None:
        self.engine = _engine(policy)
        self.path = path.strip("/")
        self.fail_mode = check_fail_mode(fail_mode)

    def decide(self, request: RequestLike) -> Decision:
        input = as_input(request)
        try:
            try:
                result = self.engine.evaluate(self.path, input)
            except Exception as exc:
                # The engine's message can quote the input: keep it on the cause, not the log.
                raise PDPError(f"policy evaluation failed ({type(exc).__name__})") from exc
            return to_decision(result)
        except DecisionError as exc:
            if self.fail_mode == "raise":
                raise
            return fail_closed(exc, input)

    def is_allowed(self, request: RequestLike) -> bool:
        return self.decide(request).allow

    def decide_many(self, requests: Iterable[RequestLike]) -> list[Decision]:
        return [self.decide(request) for request in requests]

    def close(self) -> None:
        """Nothing to release; here so the clients are interchangeable."""

    def __enter__(self) -> LocalDecisionClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalDecisionClient(engine={self.engine!r}, fail_mode={self.fail_mode!r})"


class AsyncLocalDecisionClient:
    """`LocalDecisionClient` behind the `AsyncDecisionClient` interface."""

    def __init__(
        self, policy: PolicySource, *, path: str = DEFAULT_PATH, fail_mode: FailMode = "closed"
    ) -> None:
        self._local = LocalDecisionClient(policy, path=path, fail_mode=fail_mode)

    @property
    def engine(self) -> Evaluator:
        return self._local.engine

    async def decide(self, request: RequestLike) -> Decision:
        return self._local.decide(request)

    async def is_allowed(self, request: RequestLike) -> bool:
        return self._local.decide(request).allow

    async def decide_many(self, requests: Iterable[RequestLike]) -> list[Decision]:
        return self._local.decide_many(requests)

    async def aclose(self) -> None:
        """Nothing to release; here so the clients are interchangeable."""

    async def __aenter__(self) -> AsyncLocalDecisionClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"AsyncLocalDecisionClient(engine={self.engine!r})"
