"""The engine behind the server: one *generation* (engine + its own thread) per snapshot.

Why a thread per generation (measured on regorus 0.13, see the package docstring):

* regorus engines are bound to the thread that created them, and an engine must be parsed and
  prepared (first evaluation) in every thread that evaluates with it: ~0.3 s for a 30k-line
  policy. Doing that on the thread that serves decisions would stall them during a reload.
* So every new snapshot gets a fresh single-thread executor that loads, parses and warms its
  engine while the previous generation keeps answering. The swap is one reference assignment
  on the event loop; decisions already queued on the old generation finish there, then its
  thread exits. Engine objects are released only after their thread has exited, because
  dropping a regorus engine from a foreign thread leaks it (pyo3 "unsendable").
* regorus holds the GIL while evaluating, so one evaluation thread loses no parallelism.
* Decisions queue on the generation and its thread evaluates whatever is queued as one batch,
  handing all results back with a single loop wakeup (see `Generation.evaluate`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aam_policy.engine import Engine, PolicySet, default_engine, load_policy
from aam_policy.engine._verify import VerificationConfig

from ._store import LoadedBundle, Snapshot

logger = logging.getLogger("aam_policy.sidecar")

T = TypeVar("T")

# Any rule evaluation prepares the whole program; this input makes data.aam.decision cheap.
_WARM_PATH = "aam/decision"
_WARM_INPUT: dict[str, Any] = {"intent": {"id": ""}}
_WARM_QUERY = "__aam_sidecar_warm_up__"


def _load_for_serving(path: Path, verification: VerificationConfig | None) -> PolicySet:
    # a server never runs the bundle's tests: leaving them unparsed saves memory
    return load_policy(path, verification, tests=False)


@dataclass(frozen=True)
class Failure:
    """An exception from an engine thread, reduced to text inside that thread.

    The exception object (and its traceback, which references the thread's regorus engine)
    never leaves the thread.
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


_Job = tuple[str, Any, "asyncio.Future[tuple[bool, Evaluation | Failure]]"]
# Bounds how long the first decision of a batch waits for the last one's evaluation.
_MAX_BATCH = 16


class Generation:
    """A snapshot, its engine, and the one thread allowed to touch that engine."""

    def __init__(self, snapshot: Snapshot, number: int) -> None:
        self.snapshot = snapshot
        self.number = number
        self.engine: Engine | None = None
        self.keepalive: object = None
        self.activated_ns = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"aam-engine-{number}")
        # Decisions waiting for the engine thread, and whether a drain job is queued or running
        # there (both touched on the loop thread only, except popleft in `_drain`).
        self._pending: collections.deque[_Job] = collections.deque()
        self._draining = False
        self._retired = False

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        ok, value = await loop.run_in_executor(self._executor, _guarded, fn, *args)
        if not ok:
            assert isinstance(value, Failure)
            raise EngineFailure(value)
        return value  # type: ignore[return-value]

    def _evaluate(self, path: str, input: Any) -> Evaluation:
        assert self.engine is not None
        start = time.perf_counter_ns()
        value = self.engine.evaluate(path, input)
        return Evaluation(value, time.perf_counter_ns() - start)

    async def evaluate(self, path: str, input: Any) -> Evaluation:
        """Queue one decision; the engine thread evaluates queued decisions in batches.

        One executor job and one wakeup of the loop per batch rather than per decision: under
        concurrent load each hop costs two thread wakeups (~50 us idle, far more when the
        cores are shared with the clients), and regorus holds the GIL while evaluating, so
        answering decision 1 before decision 2 is evaluated would not let the loop run sooner.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, Evaluation | Failure]] = loop.create_future()
        self._pending.append((path, input, future))
        if not self._draining:
            self._draining = True
            self._executor.submit(self._drain, loop)
        ok, value = await future
        if not ok:
            assert isinstance(value, Failure)
            raise EngineFailure(value)
        assert isinstance(value, Evaluation)
        return value

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """(engine thread) Evaluate everything queued, then hand the results back at once."""
        done: list[tuple[asyncio.Future[Any], tuple[bool, Any]]] = []
        # Once retired, nothing may be left behind: no further drain can be queued.
        while len(done) < _MAX_BATCH or self._retired:
            try:
                path, input, future = self._pending.popleft()
            except IndexError:
                break
            done.append((future, _guarded(self._evaluate, path, input)))
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(self._deliver, done)

    def _deliver(self, done: list[tuple[asyncio.Future[Any], tuple[bool, Any]]]) -> None:
        for future, outcome in done:
            if not future.done():  # a cancelled request (the client went away)
                future.set_result(outcome)
        if self._retired:
            return  # retire() queued the final drain
        if self._pending:
            self._executor.submit(self._drain, asyncio.get_running_loop())
        else:
            self._draining = False

    def build(self, kind: str, policy: PolicySet | None = None) -> None:
        """(engine thread) Build and warm the engine for this generation's snapshot."""
        engine = default_engine(policy or self.snapshot.policy_set(), kind=kind)
        # regorus compiles (type-checks, finds unsafe variables) on the first evaluation, not
        # when parsing: evaluating once here both warms the engine before it takes traffic and
        # refuses a policy OPA would refuse to activate. (An undefined-function error surfaces
        # only when a rule using it is evaluated; regorus cannot report it any earlier.)
        engine.evaluate(_WARM_PATH, _WARM_INPUT)
        try:
            # Documents that are not rules (GET /v1/data/aam/registry) go through regorus'
            # query path, whose first use costs ~15 ms per 1,000 intents, in each engine thread.
            engine.evaluate(_WARM_QUERY, _WARM_INPUT)
        except Exception as exc:
            logger.debug("query warm-up failed: %s", exc)
        self.engine = engine

    def retire(self) -> Awaitable[None]:
        """Stop taking work; resolves once the thread has finished its queue and exited."""
        executor = self._executor
        if not self._retired:
            self._retired = True
            if self._pending or self._draining:
                # Decisions queued on this generation finish here, on its own engine: a drain
                # running now may stop before the last of them, and none can be queued later.
                executor.submit(self._drain, asyncio.get_running_loop())
        executor.shutdown(wait=False)
        # Only the executor crosses to the helper thread, never the engine (see module doc).
        return asyncio.to_thread(executor.shutdown, True)


class PolicyRuntime:
    """The active generation, and the only way to change it (one change at a time)."""

    def __init__(
        self, engine_kind: str = "regorus", verification: VerificationConfig | None = None
    ) -> None:
        self.engine_kind = engine_kind
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
        # concurrent swap can only retire it after this evaluation is queued.
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
            generation = Generation(Snapshot(), self._counter)
            try:
                policy = await generation.call(_load_for_serving, path, self.verification)
                bundle = LoadedBundle.from_policy(str(path), policy)
                snapshot, dropped = self.snapshot.with_bundle(bundle)
                if still_current is not None and not await still_current():
                    await self._discard(generation)
                    return None
                generation.snapshot = snapshot
                # The PolicySet just loaded was parsed in this very thread: reuse it when the
                # snapshot adds nothing to the bundle, so the bundle is parsed only once.
                plain = not snapshot.policies and not snapshot.overlay
                # Released with the generation, after its thread exited (it holds that
                # thread's parsed engine).
                generation.keepalive = policy
                await generation.call(generation.build, self.engine_kind, policy if plain else None)
            except BaseException:
                await self._discard(generation)
                raise
            self._swap(generation)
            return snapshot, dropped

    async def _install(self, snapshot: Snapshot, policy: PolicySet | None) -> None:
        self._counter += 1
        generation = Generation(snapshot, self._counter)
        try:
            await generation.call(generation.build, self.engine_kind, policy)
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
