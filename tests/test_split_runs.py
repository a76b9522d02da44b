"""kmeans._split_runs: the restarts' Lloyd runs halved between two threads, the same bits as all together."""
from __future__ import annotations

import numpy as np
import pytest

from kmq import kmeans, parallel


@pytest.mark.parametrize("m, runs, k", [(8_855, 16, 16), (12_000, 16, 16), (5_000, 16, 32)])
def test_runs_of_a_few_million_pairs_are_halved_between_threads(monkeypatch: pytest.MonkeyPatch, m: int, runs: int,
                                                                 k: int) -> None:
    """16 restarts at K = 16 on the ~8 000-9 000 5-bit bins of a 12 MP photo (2.1-2.3 M point-centroid pairs a
    pass): halved, each thread's runs whole (their sums and updates too), where parting every pass by points
    left the sums and updates to one thread (main thread's CPU 0.029-0.034 -> 0.024-0.027 s, the same in all)."""
    rng = np.random.default_rng(2)
    pts = kmeans._Points(rng.random((m, 3)) * 255, rng.integers(1, 50, m).astype(np.float64))
    starts = rng.random((runs, k, 3)) * 255
    halved: list[int] = []
    later = parallel.later

    def counted(fn):  # noqa: ANN001, ANN202
        halved.append(1)
        return later(fn)

    monkeypatch.setattr(kmeans.parallel, "later", counted)
    got = kmeans._split_runs(pts, starts, 3, 1e-3)
    assert halved == [1]
    want = kmeans._lloyd_runs(pts, starts, 3, 1e-3)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def _threads_of_hamerly(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    import threading

    seen: set[int] = set()
    real = kmeans._hamerly

    def recorded(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.add(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(kmeans, "_hamerly", recorded)
    return seen


def _serial(monkeypatch: pytest.MonkeyPatch, fn):  # noqa: ANN001, ANN202
    """fn() with every part in the calling thread (as a bulk worker runs), for the same bits to compare with."""
    with monkeypatch.context() as m:
        m.setattr(parallel, "_threads", 1)
        return fn()


def test_the_chosen_restarts_are_finished_side_by_side(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    pts = kmeans._Points(rng.random((9_000, 3)) * 255, rng.integers(1, 50, 9_000).astype(np.float64))

    def runs() -> list:
        return kmeans._best_runs(pts, 16, np.random.default_rng(0), 8, 300, 1e-3, near=1.0, most=3)

    want = _serial(monkeypatch, runs)
    threads = _threads_of_hamerly(monkeypatch)
    got = runs()
    assert len(got) == 3 and len(threads) == 3
    for (c1, j1, l1), (c2, j2, l2) in zip(got, want):
        assert np.array_equal(c1, c2) and j1 == j2 and np.array_equal(l1, l2)


def test_the_restarts_climb_the_histogram_levels_side_by_side(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runs `_climb` takes up the finer levels (near ties, and those kept for `others`) each climb in a
    thread of their own: the same centroids and others as in one thread."""
    rng = np.random.default_rng(5)
    keys = np.unique(rng.integers(0, 1 << 24, 300_000))
    colors = np.stack([(keys >> 16) & 255, (keys >> 8) & 255, keys & 255], axis=1).astype(np.uint8)
    counts = rng.integers(1, 20, keys.shape[0]).astype(np.int64)

    def fitted() -> tuple[np.ndarray, list]:
        others: list = []
        return kmeans.fit(colors, counts, 16, seed=0, others=others), others

    want, want_others = _serial(monkeypatch, fitted)
    threads = _threads_of_hamerly(monkeypatch)
    got, got_others = fitted()
    assert np.array_equal(got, want) and len(got_others) == len(want_others) > 0
    assert all(np.array_equal(a, b) and x == y for (a, x), (b, y) in zip(got_others, want_others))
    assert len(threads) > 1
