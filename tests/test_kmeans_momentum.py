"""The colours' polish with one run (K >= 196): an over-relaxed update, then updates with momentum
(`kmq.kmeans._MOMENTUM`), `_RELAXED_ITER` in all. No timing here: speed is measured by bench/speed.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from kmq import kmeans as km


def photo_like(seed: int, n: int = 60000, centres: int = 40, spread: float = 14.0
               ) -> tuple[np.ndarray, np.ndarray]:
    """Distinct colours and counts of noisy blobs: clusters that overlap, so boundaries drift for a while."""
    rng = np.random.default_rng(seed)
    c = rng.integers(40, 216, (centres, 3))
    px = c[rng.integers(0, centres, n)] + rng.normal(0, spread, (n, 3))
    colors, counts, _ = km.distinct_colors(np.clip(np.rint(px), 0, 255).astype(np.uint8))
    return colors, counts


def j_of(pts: km._Points, centroids: np.ndarray) -> float:
    return float(pts.w @ km._assign(pts, centroids)[1])


@pytest.mark.parametrize("k", [6, 48])
def test_momentum_updates_keep_exact_labels(k: int) -> None:
    # Momentum moves the centroids further than an over-relaxed step: the bounds must still hold (the labels
    # after every update those measuring every distance gives), and the result is the last labels' means.
    colors, counts = photo_like(1, 20000)
    pts = km._Points(colors, counts, colors)
    start = km._kmeanspp(pts, k, np.random.default_rng(0))
    step, carry = km._MOMENTUM
    c, last = start, start
    labels = km._assign(pts, c)[0]
    for it in range(6):
        new, wsum = km._weighted_means(pts, labels, k)
        assert np.all(wsum > 0)
        new -= c
        if it:  # the same operations in the same order as `_hamerly`'s
            new *= step
            new += carry * (c - last)
        else:
            new *= km._RELAX
        new += c
        last, c = c, new
        labels = km._assign(pts, c)[0]
    fast, j_fast, fast_labels = km._hamerly(pts, start, 6, 0.0, relax=km._RELAX, momentum=km._MOMENTUM)
    assert np.array_equal(fast_labels, labels)
    np.testing.assert_allclose(fast, km._weighted_means(pts, labels, k)[0], atol=1e-6)
    assert j_fast == pytest.approx(float(pts.w @ km._sq_all(pts, fast, labels)), rel=1e-9)


def test_momentum_lowers_j_for_the_same_updates() -> None:
    # From a k-means++ start, where over-relaxed updates still lower J after many updates, the same number
    # with momentum ends lower (here 0.35 % above 11 over-relaxed updates, against 0.59 % for 5 of them).
    colors, counts = photo_like(3)
    k = 64
    pts = km._Points(colors, counts, colors)
    start = km._kmeanspp(pts, k, np.random.default_rng(0))
    n = km._RELAXED_ITER
    relaxed = km._hamerly(pts, start, n, 0.0, relax=km._RELAX)[1]
    moved = km._hamerly(pts, start, n, 0.0, relax=km._RELAX, momentum=km._MOMENTUM)[1]
    assert moved < relaxed


def test_polish_with_one_run_uses_momentum(monkeypatch: pytest.MonkeyPatch) -> None:
    # K >= 196 (one run): the colours' polish is `_RELAXED_ITER` (5) updates, over-relaxed then with momentum,
    # where it was 11 over-relaxed ones; with several runs (K = 64) it stays plain Lloyd to tol. (Each colour
    # twice the pixels: a colour for nearly every pixel climbs as `_NOISY` says, see test_kmeans_noisy.py.)
    colors, counts = photo_like(2, 80000)
    counts = counts * 2
    calls: list[tuple] = []
    real = km._hamerly
    monkeypatch.setattr(km, "_hamerly", lambda pts, c, it, tol, guess=None, relax=1.0, momentum=None:
                        calls.append((pts.m, it, relax, momentum)) or real(pts, c, it, tol, guess, relax, momentum))
    km.fit(colors, counts, 256, seed=0)
    assert km._restarts(256) == 1
    polish = [c for c in calls if c[0] == len(colors)]
    assert polish == [(len(colors), 5, km._RELAX, km._MOMENTUM)]
    assert all(c[3] is None for c in calls if c[0] != len(colors))  # the histogram levels: no momentum
    calls.clear()
    km.fit(colors, counts, 64, seed=0)
    assert [c[2:] for c in calls if c[0] == len(colors)] == [(1.0, None)]
