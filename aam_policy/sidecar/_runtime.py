"""The engine behind the server: one *generation* (snapshot + engine) per policy version.

Where a regorus engine runs, measured on regorus 0.13 (2 vCPU, 1,000-intent bundle):

* regorus objects are bound to the thread that created them, and regorus holds the GIL while
  it parses and evaluates. An engine thread beside the event loop therefore buys no
  parallelism, and its hand-off (two thread wakeups, a cache-cold core) cost ~0.2 ms per
  sequential decision end to end (P1 p50 1.14-1.16 ms with an engine thread, 0.97-0.98 ms
  without, same session).
* So regorus generations are built and evaluated on the event loop's own thread. The build
  parses one module per step and gives the loop a turn every `_SLICE` seconds, so the active
  generation keeps answering while a new bundle is parsed (~0.17 s at 1,000 intents). The new
  engine's first evaluation, where regorus prepares the whole program (55-100 ms at 1,000
  intents), runs in one piece: on a thread of its own it held the GIL, and so stalled the
  loop, just as long. Measured, a sequential client's slowest decision during a reload:
  100-142 ms, against 71-133 ms with the engine thread.
* Decisions are queued and evaluated together once the loop has run every handler that was
  ready (one `call_soon` per batch), back to back while the engine's caches are warm: 16
  concurrent clients got 2,119-2,128 decisions/s this way, 2,085-2,177/s with the engine
  thread (which batched too) and 1,921-1,950/s when each handler evaluated its own.
* The swap is one assignment on the loop. A retired generation first evaluates what is still
  queued on it, then releases its engines at once, on the thread that owns them (pyo3 leaks
  an "unsendable" object dropped on another thread).
* `opa` engines (one `opa eval` subprocess per decision) load, build and evaluate on a
  thread of the generation's own, which exits when the generation retires; the bundle is
  parsed there with regorus first, for its syntax errors, as `load_policy` does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aam_policy.engine import Engine, PolicySet, default_engine, load_policy
from aam_policy.engine._engine import resolve_engine_kind
from aam_policy.engine._policy import read_policy
from aam_policy.engine._regorus import base_engine_in_steps, forget_thread_engine
from aam_policy.engine._verify import VerificationConfig

from ._store import LoadedBundle, Snapshot

logger = logging.getLogger("aam_policy.sidecar")

T = TypeVar("T")

# Any rule evaluation prepares the whole program; this input makes data.aam.decision cheap.
_WARM_PATH = "aam/decision"
_WARM_INPUT: dict[str, Any] = {"intent": {"id": ""}}
_WARM_QUERY = "__aam_sidecar_warm_up__"
# Parsing time between two turns of the event loop while a new generation is built.
_SLICE = 0.002


def _load_for_serving(path: Path, verification: VerificationConfig | None) -> PolicySet:
    # a server never runs the bundle's tests: leaving them unparsed saves memory
    return load_policy(path, verification, tests=False)


@dataclass(frozen=True)
class Failure:
    """An exception from loading, building or evaluating, reduced to text where it was raised.

    On an engine thread, the exception object (and its traceback, which references that
    thread's regorus engine) never leaves the thread.
    """

    kind: str
    message: str
    path: str | None = None
    line: int | None = None
    column: int | None = None


class EngineFailure(Exception):
    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def _reduce(exc: BaseException) -> Failure:
    return Failure(
        kind=type(exc).__name__,
        message=str(getattr(exc, "message", None) or exc),
        path=getattr(exc, "path", None),
        line=getattr(exc, "line", None),
        column=getattr(exc, "column", None),
    )


def _guarded(fn: Callable[..., T], *args: Any) -> tuple[bool, T | Failure]:
    try:
        return True, fn(*args)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # pyo3's PanicException derives from BaseException
        return False, _reduce(exc)


@dataclass(frozen=True)
class Evaluation:
    value: Any  # None when undefined
    eval_ns: int


_Queued = tuple[str, Any, "asyncio.Future[tuple[bool, Evaluation | Failure]]"]


class Generation:
    """A snapshot and the engine that answers for it (see the module docstring)."""

    def __init__(self, snapshot: Snapshot, number: int, kind: str) -> None:
        """`kind`: "regorus" or "opa" (see `resolve_engine_kind`)."""
        self.snapshot = snapshot
        self.number = number
        self.kind = kind
        self.engine: Engine | None = None
        self.policy: PolicySet | None = None  # owns a regorus engine parsed on the loop
        self.activated_ns = 0
        self._queued: list[_Queued] = []  # decisions waiting for this loop turn's batch
        self._executor = (
            None
            if kind == "regorus"
            else ThreadPoolExecutor(1, thread_name_prefix=f"aam-engine-{number}")
        )

    async def _call(
        self, executor: ThreadPoolExecutor | None, fn: Callable[..., T], *args: Any
    ) -> T:
        loop = asyncio.get_running_loop()
        ok, value = await loop.run_in_executor(executor, _guarded, fn, *args)
        if not ok:
            assert isinstance(value, Failure)
            raise EngineFailure(value)
        return value  # type: ignore[return-value]

    async def load(self, path: Path, verification: VerificationConfig | None) -> PolicySet:
        """Read the bundle at `path` off the loop (regorus: `build` parses it, on the loop)."""
        if self._executor is None:
            return await self._call(None, read_policy, path, verification)
        return await self._call(self._executor, _load_for_serving, path, verification)

    async def build(self, policy: PolicySet | None = None) -> None:
        """Build and warm the engine for this generation's snapshot (or for `policy`)."""
        if self._executor is not None:
            self.engine = await self._call(self._executor, self._built, policy)
            return
        policy = policy or self.snapshot.policy_set()
        self.policy = policy
        try:
            steps = base_engine_in_steps(policy)
            turn_at = time.perf_counter() + _SLICE
            for _ in steps:
                if time.perf_counter() >= turn_at:
                    await asyncio.sleep(0)
                    turn_at = time.perf_counter() + _SLICE
            engine = default_engine(policy, kind="regorus")
            for _ in _warm_up(engine):
                await asyncio.sleep(0)
            self.engine = engine
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
            self.release()
            raise
        except BaseException as exc:  # pyo3's PanicException derives from BaseException
            self.release()
            raise EngineFailure(_reduce(exc)) from None

    def _built(self, policy: PolicySet | None) -> Engine:
        engine = default_engine(policy or self.snapshot.policy_set(), kind=self.kind)
        for _ in _warm_up(engine):
            pass
        return engine

    def _evaluate(self, path: str, input: Any) -> Evaluation:
        assert self.engine is not None
        start = time.perf_counter_ns()
        value = self.engine.evaluate(path, input)
        return Evaluation(value, time.perf_counter_ns() - start)

    async def evaluate(self, path: str, input: Any) -> Evaluation:
        loop = asyncio.get_running_loop()
        if self._executor is None:
            # Queued, and evaluated with the others queued by the handlers of this loop turn.
            future: asyncio.Future[tuple[bool, Evaluation | Failure]] = loop.create_future()
            self._queued.append((path, input, future))
            if len(self._queued) == 1:
                loop.call_soon(self._evaluate_queued)
            ok, value = await future
        else:
            ok, value = await loop.run_in_executor(
                self._executor, _guarded, self._evaluate, path, input
            )
        if not ok:
            assert isinstance(value, Failure)
            raise EngineFailure(value)
        assert isinstance(value, Evaluation)
        return value

    def _evaluate_queued(self) -> None:
        queued, self._queued = self._queued, []
        for path, input, future in queued:
            outcome = _guarded(self._evaluate, path, input)
            if not future.done():  # a cancelled request (the client went away)
                future.set_result(outcome)

    def release(self) -> None:
        """(loop thread) Drop the regorus engines this generation parsed on the loop."""
        if self._executor is None:
            if self._queued:  # decisions started on this generation finish on it
                self._evaluate_queued()
            for owner in (self.engine, self.policy):
                if owner is not None:
                    forget_thread_engine(owner)
            self.engine = None

    async def retire(self) -> None:
        """Release the engine; an engine thread first finishes what is queued on it, then exits."""
        if self._executor is None:
            self.release()
            return
        self._executor.shutdown(wait=False)
        # Only the executor crosses to the helper thread, never the engine (see module doc).
        await asyncio.to_thread(self._executor.shutdown, True)


def _warm_up(engine: Engine) -> Iterator[None]:
    """Warm `engine` before it takes traffic, in two steps (a server's loop gets a turn between)."""
    # regorus compiles (type-checks, finds unsafe variables) on the first evaluation, not
    # when parsing: evaluating once here both warms the engine and refuses a policy OPA would
    # refuse to activate. (An undefined-function error surfaces only when a rule using it is
    # evaluated; regorus cannot report it any earlier.)
    engine.evaluate(_WARM_PATH, _WARM_INPUT)
    yield
    try:
        # Documents that are not rules (GET /v1/data/aam/registry) go through regorus'
        # query path, whose first use costs ~15 ms per 1,000 intents.
        engine.evaluate(_WARM_QUERY, _WARM_INPUT)
    except Exception as exc:
        logger.debug("query warm-up failed: %s", exc)


class PolicyRuntime:
    """The active generation, and the only way to change it (one change at a time)."""

    def __init__(
        self, engine_kind: str = "regorus", verification: VerificationConfig | None = None
    ) -> None:
        self.engine_kind = resolve_engine_kind(engine_kind)  # once: "auto" looks at PATH
        self.verification = verification  # bundles must be signed with this key
        self._active: Generation | None = None
        self._counter = 0
        self._lock = asyncio.Lock()
        self._retiring: set[Generation] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def snapshot(self) -> Snapshot:
        return self._active.snapshot if self._active is not None else Snapshot()

    @property
    def active(self) -> Generation | None:
        return self._active

    @property
    def revision(self) -> str | None:
        return self.snapshot.revision

    async def evaluate(self, path: str, input: Any) -> tuple[Evaluation, Snapshot]:
        generation = self._active
        if generation is None:
            generation = await self._ensure_empty()
        # Picking the generation and queueing on it happen with no await in between, so a
        # concurrent swap can only retire it after this evaluation is queued (and a retired
        # generation evaluates what is queued on it).
        return await generation.evaluate(path, input), generation.snapshot

    async def _ensure_empty(self) -> Generation:
        async with self._lock:
            if self._active is None:
                await self._install(Snapshot(), None)
        assert self._active is not None
        return self._active

    async def update(self, change: Callable[[Snapshot], Snapshot]) -> Snapshot:
        """Derive a snapshot from the active one, build it, and swap it in.

        Raises what `change` raises (e.g. ApiError) or EngineFailure when the new policy does
        not build; in both cases the active generation is untouched.
        """
        async with self._lock:
            snapshot = change(self.snapshot)
            await self._install(snapshot, None)
            return snapshot

    async def reload(
        self,
        path: Path,
        still_current: Callable[[], Awaitable[bool]] | None = None,
    ) -> tuple[Snapshot, list[str]] | None:
        """Load the bundle at `path` and serve it (None: it changed while loading; try again).

        Raises EngineFailure (bad bundle) or ValueError (conflicts with API-written policy).
        """
        async with self._lock:
            self._counter += 1
            generation = Generation(Snapshot(), self._counter, self.engine_kind)
            try:
                policy = await generation.load(path, self.verification)
                bundle = LoadedBundle.from_policy(str(path), policy)
                snapshot, dropped = self.snapshot.with_bundle(bundle)
                if still_current is not None and not await still_current():
                    await self._discard(generation)
                    return None
                generation.snapshot = snapshot
                # Build from the PolicySet just loaded when the snapshot adds nothing to the
                # bundle (an opa generation parsed it already, on its own thread).
                plain = not snapshot.policies and not snapshot.overlay
                await generation.build(policy if plain else None)
            except BaseException:
                await self._discard(generation)
                raise
            self._swap(generation)
            return snapshot, dropped

    async def _install(self, snapshot: Snapshot, policy: PolicySet | None) -> None:
        self._counter += 1
        generation = Generation(snapshot, self._counter, self.engine_kind)
        try:
            await generation.build(policy)
        except BaseException:
            await self._discard(generation)
            raise
        self._swap(generation)

    def _swap(self, generation: Generation) -> None:
        generation.activated_ns = time.time_ns()
        old, self._active = self._active, generation
        if old is not None:
            self._retire_later(old)

    def _retire_later(self, generation: Generation) -> None:
        # Keep a reference until its thread has exited, then drop it here on the loop thread.
        self._retiring.add(generation)
        task = asyncio.ensure_future(self._retire(generation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _retire(self, generation: Generation) -> None:
        try:
            await generation.retire()
        finally:
            self._retiring.discard(generation)

    async def _discard(self, generation: Generation) -> None:
        await generation.retire()

    async def close(self) -> None:
        """Retire every generation and wait for their threads."""
        async with self._lock:
            active, self._active = self._active, None
            if active is not None:
                self._retire_later(active)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
