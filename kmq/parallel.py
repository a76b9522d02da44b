"""Bulk numpy work over large arrays split between the machine's cores by threads.

numpy releases the GIL inside its bulk loops (gathers, fancy-index stores, casts, element-wise ufuncs,
argmin), so threads over disjoint parts of the pixels run side by side. Each part writes only its own
slice of the outputs, and whatever is combined afterwards (integer counts) is exact in any order: the
results are those of one thread, byte for byte, whatever the number of parts.
"""
from __future__ import annotations

import os
import threading
from typing import Callable, TypeVar

T = TypeVar("T")

# Below this many items in a part a thread costs more than it saves (starting one: ~0.1 ms).
MIN_PART = 1 << 20
# Past a few cores these passes are bound by memory bandwidth, not by arithmetic.
_MAX_THREADS = 4
# A program that runs kmq in its own pool of threads or processes caps kmq's threads (as OMP_NUM_THREADS
# does numpy's BLAS): KMQ_THREADS=1 keeps each call on its caller's thread.
THREADS_VARIABLE = "KMQ_THREADS"


def cores() -> int:
    """The cores this process may run on (its CPU affinity, as `taskset` or a container's cpuset sets it;
    os.cpu_count() counts the machine's: `taskset -c 0 kmq compress dir/` had started 2 workers on 1 core)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _default_threads() -> int:
    threads = max(1, min(_MAX_THREADS, cores()))
    asked = os.environ.get(THREADS_VARIABLE, "").strip()
    if not asked:
        return threads
    if not (asked.isascii() and asked.isdigit()) or int(asked) < 1:  # no sign, no "1e3", no "٣"
        import warnings
        from .errors import KmqWarning

        # (not "using N threads": under -j each worker runs one, whatever the default)
        warnings.warn(f"{THREADS_VARIABLE}={asked!r} is not a whole number from 1: ignored, as if unset",
                      KmqWarning, stacklevel=2)
        return threads
    return min(threads, int(asked))


_threads = _default_threads()


def serial() -> None:
    """One thread from now on: in a process-pool worker (`kmq compress -j N`), whose siblings already use
    the other cores."""
    global _threads
    _threads = 1


def parts(n: int, cost: int = 1) -> list[tuple[int, int]]:
    """[start, stop) ranges covering 0..n in order, one per thread, each of at least MIN_PART items' work
    where one item costs `cost` (e.g. its distances to K centres)."""
    step = max(1, -(-n // max(1, min(_threads, n * cost // MIN_PART))))
    return [(s, min(s + step, n)) for s in range(0, n, step)] or [(0, n)]


def map_parts(fn: Callable[[int, int], T], n: int, cost: int = 1) -> list[T]:
    """[fn(start, stop) for each of `parts(n, cost)`], the parts run at once in threads (the first in the
    calling one). An exception in any part is raised here, after every part has ended."""
    bounds = parts(n, cost)
    results: list = [None] * len(bounds)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = fn(*bounds[i])
        except BaseException as e:  # noqa: BLE001 - handed to the calling thread below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(1, len(bounds))]
    for t in threads:
        t.start()
    run(0)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def later(fn: Callable[[], T]) -> Callable[[], T]:
    """Start fn() in a thread and return what waits for its result (raising its exception, if any), so that
    the calling thread can do other work meanwhile; with one thread (`serial`), fn runs here first."""
    if _threads == 1:
        result = fn()
        return lambda: result
    box: list = []

    def run() -> None:
        try:
            box.append((True, fn()))
        except BaseException as e:  # noqa: BLE001 - handed to the waiting thread
            box.append((False, e))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def wait() -> T:
        thread.join()
        ok, value = box[0]
        if not ok:
            raise value
        return value

    return wait
