"""Worker processes for the CPU-bound batch steps: reading templates, rendering modules."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Below this many items a worker pool costs more than it saves.
MIN_ITEMS = 64


def map_in_workers(fn: Callable[[T], R], items: Sequence[T], jobs: int) -> Iterator[R]:
    """`map(fn, items)`, in order, spread over `jobs` worker processes when that pays.

    Workers are forked where the platform can and no other thread runs (forking a threaded
    process can deadlock), so they start with everything imported; else they are fresh
    interpreters. `fn` must be a module-level function; its exceptions reach the caller.
    """
    if jobs <= 1 or len(items) < MIN_ITEMS:
        yield from map(fn, items)
        return
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        method = "fork"
    else:
        method = "forkserver" if "forkserver" in methods else "spawn"
    chunk = max(1, len(items) // (jobs * 4))
    context = multiprocessing.get_context(method)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        yield from pool.map(fn, items, chunksize=chunk)
