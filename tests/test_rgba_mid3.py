"""Mid-size RGBA (round 37): `kmeans._hamerly`'s updates run over the points in parts (threads: `kmeans._settle`,
`kmeans._settle_few` under `_GROUPED_FROM` centroids), and `kmeans._kmeanspp`'s restarts on a histogram level
in groups of runs (`kmeans._kmeanspp_by_runs`), each with the bits of one thread."""
from __future__ import annotations

import numpy as np
import pytest

from kmq import kmeans, parallel
from test_parallel import threads  # noqa: F401 - a fixture: up to n parts of at least 1000 items


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The (start, stop) of every `_settle` and `_settle_few` call."""
    calls: list[tuple[int, int]] = []
    for name, at in (("_settle", 5), ("_settle_few", 2)):
        def spy(*args, orig=getattr(kmeans, name), at=at, **kwargs):
            calls.append((args[at], args[at + 1]))
            return orig(*args, **kwargs)
        monkeypatch.setattr(kmeans, name, spy)
    return calls


@pytest.fixture
def grouped(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many groups of runs each `_kmeanspp_by_runs` call had."""
    calls: list[int] = []
    orig = kmeans._kmeanspp_by_runs
    monkeypatch.setattr(kmeans, "_kmeanspp_by_runs",
                        lambda *a: calls.append(len(parallel.parts(a[2].shape[0], a[-1]))) or orig(*a))
    return calls


def _blobs(n: int, sd: float, channels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(40, 215, (12, channels))
    x = np.clip(np.rint(centres[rng.integers(0, 12, n)] + rng.normal(0, sd, (n, channels))), 0, 255).astype(np.uint8)
    colors, counts = np.unique(x, axis=0, return_counts=True)
    return colors, counts.astype(np.int64)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("k", [12, 32, 64, 130])
@pytest.mark.parametrize("relax, momentum", [(1.0, None), (kmeans._RELAX, None), (kmeans._RELAX, kmeans._MOMENTUM)])
def test_hamerly_in_parts_keeps_the_bits_of_one_thread(threads, settled, channels: int, k: int, relax: float,
                                                       momentum) -> None:
    colors, counts = _blobs(12_000, 18, channels, seed=k + channels)
    pts = kmeans._Points(colors, counts, colors)
    start = kmeans._kmeanspp_one(pts, k, np.random.default_rng(1))
    tol = 1e-4 * float(kmeans._variance(colors, counts).mean())
    threads(1)
    one = kmeans._hamerly(pts, start, 40, tol, None, relax, momentum)
    assert settled and all(s == (0, pts.m) for s in settled)
    for n in (2, 3):
        settled.clear()
        threads(n)
        got = kmeans._hamerly(kmeans._Points(colors, counts, colors), start, 40, tol, None, relax, momentum)
        assert {s for s in settled} == set(parallel.parts(pts.m, kmeans._HAMERLY_COST)) and len(set(settled)) == n
        assert np.array_equal(got[0], one[0]) and got[1] == one[1] and np.array_equal(got[2], one[2])


@pytest.mark.parametrize("k", [16, 40, 64])
def test_hamerly_in_parts_is_still_lloyd(threads, k: int) -> None:
    colors, counts = _blobs(6_000, 25, 4, seed=k)
    pts = kmeans._Points(colors, counts, colors)
    start = kmeans._kmeanspp_one(pts, k, np.random.default_rng(2))
    threads(3)
    cent, inertia, labels = kmeans._hamerly(pts, start, 15, 0.0)
    ref, ref_inertia = kmeans._lloyd(pts, start, 15, 0.0)
    assert np.allclose(cent, ref, rtol=0, atol=1e-9)
    assert inertia == pytest.approx(ref_inertia, rel=1e-6)  # (`_lloyd`'s from float32 distances)
    assert np.array_equal(labels, kmeans._assign(pts, cent)[0])


@pytest.mark.parametrize("k", [16, 48, 64, 256])
def test_rgba_fit_the_same_in_any_number_of_threads(threads, settled, k: int) -> None:
    # A colour nearly every pixel under a varying alpha: the histogram levels, then the colours' polish or the
    # mixed level, every one of them in `_hamerly`.
    colors, counts = _blobs(60_000, 20, 4, seed=5)
    fits = []
    for n in (1, 2):
        threads(n)
        settled.clear()
        clusters = np.full(colors.shape[0], -1, dtype=np.intp)
        fits.append((kmeans.fit(colors, counts, k, seed=0, clusters=clusters), clusters))
        assert settled and any(s > 0 for s, _ in settled) == (n > 1)
    assert np.array_equal(fits[0][0], fits[1][0]) and np.array_equal(fits[0][1], fits[1][1])


@pytest.mark.parametrize("channels, k, runs, m", [(4, 64, 8, 10_000), (3, 64, 8, 5_000), (3, 16, 16, 9_000),
                                                  (4, 40, 12, 3_000), (4, 130, 3, 4_000), (4, 33, 2, 2_500)])
def test_kmeanspp_in_groups_of_runs_keeps_the_bits_of_one_thread(threads, grouped: list[int], channels: int, k: int,
                                                                 runs: int, m: int) -> None:
    rng = np.random.default_rng(k + runs)
    # A histogram level's points: float means, integer weights (some heavy), a few equal rows.
    x = rng.uniform(0, 255, (m, channels))
    x[m // 2:m // 2 + 20] = x[:20]
    pts = kmeans._Points(x, rng.integers(1, 40, m).astype(np.float64) ** 2)
    got = {}
    for n in (1, 2, 3, 4):
        threads(n)
        got[n] = kmeans._kmeanspp(pts, k, np.random.default_rng(7), runs)
        assert np.array_equal(got[n], got[1])
    # Grouped wherever the runs split evenly between the threads (else by points, as before).
    assert grouped == [g for g in (min(n, runs) for n in (2, 3, 4)) if runs % g == 0]


def test_rgba_restarts_by_runs_the_same_fit(threads, grouped: list[int]) -> None:
    colors, counts = _blobs(60_000, 20, 4, seed=9)
    fits = []
    for n in (1, 2):
        threads(n)
        fits.append(kmeans.fit(colors, counts, 64, seed=3))
    assert grouped == [2] and np.array_equal(fits[0], fits[1])


def test_points_transposed_once_when_the_parts_ask_for_it_first(threads, monkeypatch) -> None:  # noqa: F811
    # Under `_GROUPED_FROM` centroids nothing builds `_Points.xt` before `_hamerly`'s parts (threads) ask for it
    # in `_failing`: unlocked, both built a copy (a reviewer saw it in 30 of 30 runs at 200,000 points).
    threads(2)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (20_000, 4))
    pts = kmeans._Points(x, rng.integers(1, 9, x.shape[0]).astype(float))
    built: list[int] = []
    contiguous = np.ascontiguousarray

    def counting(a, *args, **kwargs):
        if not args and not kwargs and a.base is pts.x and a.shape == pts.x.T.shape:
            built.append(1)  # (xt's copy: cols32 asks for float32)
        return contiguous(a, *args, **kwargs)
    monkeypatch.setattr(np, "ascontiguousarray", counting)
    kmeans._hamerly(pts, x[rng.choice(x.shape[0], 16, replace=False)], 5, 0.0)
    assert pts._xt is not None and len(built) == 1


def test_hamerly_splits_its_points_from_131072(monkeypatch) -> None:
    # Levels of 65,000-120,000 points lost more to a second thread than it saved (bench/rdo.py's RGBA 400x300 at
    # K = 64: 0.22 -> 0.27 s wall); the soft cell's mixed level of 136,000 points at K = 256 gains 10 %.
    monkeypatch.setattr(parallel, "_threads", 2)
    assert parallel.parts(120_000, kmeans._HAMERLY_COST) == [(0, 120_000)]
    assert len(parallel.parts(136_000, kmeans._HAMERLY_COST)) == 2
