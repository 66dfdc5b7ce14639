"""Policy generations in the sidecar (`_runtime`): regorus engines are built and evaluated on
the event loop's thread, the build gives the loop turns while it parses, a swap never changes
the generation a decision was started on, and a retired generation's engines are released."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sidecar_helpers import bundle_copy, request

from aam_policy.engine._policy import read_policy
from aam_policy.engine._regorus import _thread_engines
from aam_policy.sidecar import _runtime
from aam_policy.sidecar._runtime import Generation, PolicyRuntime
from aam_policy.sidecar._store import Snapshot


@contextlib.asynccontextmanager
async def _serving(bundle: Path) -> AsyncIterator[PolicyRuntime]:
    """A runtime serving `bundle`, closed afterwards."""
    runtime = PolicyRuntime()
    try:
        await runtime.reload(bundle)
        yield runtime
    finally:
        await runtime.close()


def _revision(decision: object) -> object:
    assert isinstance(decision, dict)
    return decision["policy"]["revision"]


def test_decisions_started_before_a_swap_finish_on_their_generation(tmp_path: Path) -> None:
    old = bundle_copy(tmp_path / "old", "rev-old")
    new = bundle_copy(tmp_path / "new", "rev-new")

    async def run() -> None:
        async with _serving(old) as runtime:
            n = 53
            before = [
                asyncio.ensure_future(runtime.evaluate("/aam/decision", request()))
                for _ in range(n)
            ]
            await runtime.reload(new)
            after = await runtime.evaluate("/aam/decision", request())
            results = await asyncio.wait_for(asyncio.gather(*before), 30)
            assert [_revision(e.value) for e, _ in results] == ["rev-old"] * n
            assert all(s.revision == "rev-old" for _, s in results)
            assert _revision(after[0].value) == "rev-new"

    asyncio.run(run())


def test_decisions_still_queued_when_a_generation_retires_are_answered_by_it(
    tmp_path: Path,
) -> None:
    bundle = bundle_copy(tmp_path / "b", "rev-1")

    async def run() -> None:
        async with _serving(bundle) as runtime:
            generation = runtime.active
            assert generation is not None
            tasks = [
                asyncio.ensure_future(runtime.evaluate("/aam/decision", request()))
                for _ in range(5)
            ]
            await asyncio.sleep(0)  # each task queued its decision; the batch has not run yet
            assert len(generation._queued) == 5
            generation.release()
            results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
            assert [_revision(e.value) for e, _ in results] == ["rev-1"] * 5
            assert generation.engine is None

    asyncio.run(run())


def test_concurrent_decisions_are_all_answered_in_order_of_their_inputs(tmp_path: Path) -> None:
    bundle = bundle_copy(tmp_path / "b", "rev-1")

    async def run() -> None:
        async with _serving(bundle) as runtime:
            inputs = [request(amount=50 if i % 2 else 500) for i in range(40)]
            results = await asyncio.gather(*(runtime.evaluate("/aam/decision", x) for x in inputs))
            outcomes = [e.value["outcome"] for e, _ in results]
            assert outcomes == ["escalate" if i % 2 == 0 else "allow" for i in range(40)]

    asyncio.run(run())


def test_a_build_gives_the_loop_a_turn_between_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_runtime, "_SLICE", 0.0)  # a turn after every module
    policy = read_policy(bundle_copy(tmp_path / "b", "rev-1"))
    modules = sum(not m.path.endswith("_test.rego") for m in policy.modules)
    assert modules >= 2

    async def run() -> int:
        generation = Generation(Snapshot(), 1, "regorus")
        build = asyncio.ensure_future(generation.build(policy))
        turns = 0
        while not build.done():
            await asyncio.sleep(0)
            turns += 1
        await build
        assert generation.engine is not None
        await generation.retire()
        return turns

    assert asyncio.run(run()) >= modules


def test_a_retired_generation_releases_its_engines(tmp_path: Path) -> None:
    first = bundle_copy(tmp_path / "one", "rev-1")
    second = bundle_copy(tmp_path / "two", "rev-2")

    async def run() -> None:
        async with _serving(first) as runtime:
            old = runtime.active
            assert old is not None and old.engine is not None and old.policy is not None
            await runtime.evaluate("/aam/decision", request())
            # Held here, so their ids stay theirs: only an explicit release removes them.
            owners = (old.engine, old.policy)
            held = {id(o) for o in owners}
            assert held <= set(_thread_engines())  # parsed and evaluated on this (the loop) thread
            await runtime.reload(second)
            await asyncio.sleep(0)  # the retirement runs as its own task
            assert not held & set(_thread_engines())
            assert old.engine is None
            decision, _ = await runtime.evaluate("/aam/decision", request())
            assert _revision(decision.value) == "rev-2"

    asyncio.run(run())


def test_a_bundle_that_does_not_parse_leaves_the_active_generation_serving(
    tmp_path: Path,
) -> None:
    good = bundle_copy(tmp_path / "good", "rev-good")
    bad = bundle_copy(tmp_path / "bad", "rev-bad")
    broken = next(p for p in sorted(bad.rglob("*.rego")) if not p.name.endswith("_test.rego"))
    broken.write_text(broken.read_text() + "\nthis is not rego {\n")

    async def run() -> None:
        async with _serving(good) as runtime:
            with pytest.raises(_runtime.EngineFailure) as refused:
                await runtime.reload(bad)
            assert refused.value.failure.path is not None
            assert refused.value.failure.path.endswith(broken.name)
            decision, snapshot = await runtime.evaluate("/aam/decision", request())
            assert _revision(decision.value) == "rev-good" and snapshot.revision == "rev-good"

    asyncio.run(run())
