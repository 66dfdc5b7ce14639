"""The engine thread evaluates queued decisions in batches (`_runtime.Generation`).

Every decision queued on a generation is answered by that generation, also when it is
retired (a reload) while a batch is running and more than one batch is still queued.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sidecar_helpers import bundle_copy, request

from aam_policy.sidecar._runtime import _MAX_BATCH, PolicyRuntime


def _revision(decision: object) -> object:
    assert isinstance(decision, dict)
    return decision["policy"]["revision"]


def test_queued_decisions_finish_on_their_generation_across_a_swap(tmp_path: Path) -> None:
    old = bundle_copy(tmp_path / "old", "rev-old")
    new = bundle_copy(tmp_path / "new", "rev-new")

    async def run() -> None:
        runtime = PolicyRuntime()
        try:
            await runtime.reload(old)
            # More than two batches, all queued before the swap is even started.
            n = 3 * _MAX_BATCH + 5
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
        finally:
            await runtime.close()

    asyncio.run(run())


def test_concurrent_decisions_are_all_answered_in_order_of_their_inputs(tmp_path: Path) -> None:
    bundle = bundle_copy(tmp_path / "b", "rev-1")

    async def run() -> None:
        runtime = PolicyRuntime()
        try:
            await runtime.reload(bundle)
            inputs = [request(amount=50 if i % 2 else 500) for i in range(40)]
            results = await asyncio.gather(*(runtime.evaluate("/aam/decision", x) for x in inputs))
            outcomes = [e.value["outcome"] for e, _ in results]
            assert outcomes == ["escalate" if i % 2 == 0 else "allow" for i in range(40)]
        finally:
            await runtime.close()

    asyncio.run(run())
