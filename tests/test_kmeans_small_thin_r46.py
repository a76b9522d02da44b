"""Round 46: below 0.4 MP, RGB's restarts are seeded and ranked on a stand-in with the bins of under
`_THIN_PIXELS` pixels merged by 4-bit cell, from `_THIN_FROM_SMALL` bins (`kmq.kmeans._thinned`): a noisy tile's
5-bit level is thousands of bins of a few pixels each, where the share `_THIN_SHARE` (under one pixel there)
merged none and the restarts ran on every bin."""

from __future__ import annotations

import numpy as np

from kmq import kmeans as km


def _noisy_tile(side: int = 160, sigma: float = 12.0, seed: int = 46) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    base = np.stack([200 * xx + 30, 180 * yy + 40, 120 * (xx + yy) / 2 + 60], axis=2)
    return np.clip(np.rint(base + rng.normal(0, sigma, base.shape)), 0, 255).astype(np.uint8)


def _level(m: int, pixels: float, seed: int = 0) -> km._Points:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 96, (m, 3)).astype(np.float64)  # within 6^3 4-bit cells
    w = rng.integers(1, 4, m).astype(np.float64)
    return km._Points(x, w * (pixels / w.sum()))


def test_a_small_images_light_bins_are_merged_from_2000_bins():
    level = _level(3000, 9000.0)  # 3 000 bins of 1-6 pixels: all under _THIN_PIXELS but the heaviest
    thin = km._thinned(level)
    assert thin is not None and thin.m < level.m // 2 and np.isclose(thin.w.sum(), level.w.sum())
    assert thin.inverse.shape == (level.m,) and thin.inverse.max() == thin.m - 1
    # At or below _THIN_FROM_SMALL bins, none.
    assert km._thinned(_level(km._THIN_FROM_SMALL, 6000.0)) is None
    # From 0.4 MP the share rules as before: the same bins' weights over 1 MP merge nothing (under 10 000 bins).
    assert km._thinned(_level(3000, 1e6)) is None
    # A caller's share (coreset's, target's) keeps its own rule and threshold.
    assert km._thinned(level, share=1.0) is None


def test_a_noisy_tiles_restarts_rank_on_the_stand_in_and_a_callers_none_leaves_it(monkeypatch):
    d = km.distinct(_noisy_tile().reshape(-1, 3))
    colors, counts = d.colors, d.counts
    assert colors.shape[0] > km._COARSE_ABOVE
    ranked = []
    real = km._best_runs

    def spy(pts, k, rng, restarts, *a, **kw):
        stand = kw.get("ranked", a[4] if len(a) > 4 else None)
        ranked.append((pts.m, None if stand is None else stand.m))
        return real(pts, k, rng, restarts, *a, **kw)

    monkeypatch.setattr(km, "_best_runs", spy)
    first = km.fit(colors, counts, 16, seed=3)
    coarse, stand = ranked[0]
    assert stand is not None and stand < coarse  # (old code: None, the restarts on every bin)
    assert np.array_equal(first, km.fit(colors, counts, 16, seed=3))  # the same seed, the same centroids
    # A stand-in maker that keeps the level whole (target's rough one below 10 000 bins) gives fit's own run.
    assert np.array_equal(first, km.fit(colors, counts, 16, seed=3, stand_in=lambda level: None))


def test_a_dark_tiles_restarts_rank_on_6_bit_bins_where_5_bit_ones_are_too_few_for_k():
    # 128x128 of levels 0..39: ~14 500 colours in 125 5-bit bins, under 4 a centroid at K = 64 (ranked there,
    # K = 64's restarts on dark tiles ended 2-4 % above one run on the colours); its 1 000 6-bit bins rank them.
    px = np.random.default_rng(7).integers(0, 40, (128 * 128, 3), dtype=np.uint8)
    d = km.distinct(px)
    assert km._RANKED_ABOVE < d.colors.shape[0] <= km._COARSE_ABOVE
    bins = km._ranked_on_bins(d.colors, d.counts, 64)
    assert bins is not None and bins.m > 4 * 64  # (old code: the 125 5-bit bins)
    assert bins.m == len(np.unique(d.colors // 4, axis=0))
    # Where the 5-bit bins are enough for k, they still rank.
    assert km._ranked_on_bins(d.colors, d.counts, 16).m == len(np.unique(d.colors // 8, axis=0))


def test_5_bit_bins_up_to_half_the_colours_rank_the_restarts():
    # ~12 000 6-bit colours filling the 4 096 5-bit bins: over a quarter of the colours (old code: restarts on
    # every colour, 8 of them at K = 64, 0.4 s on a masked photo tile), under half.
    px = (np.random.default_rng(8).integers(0, 32, (128 * 128, 3)) * 4).astype(np.uint8)
    d = km.distinct(px)
    bins = km._ranked_on_bins(d.colors, d.counts, 64)
    assert bins is not None and 4 * bins.m > d.colors.shape[0] >= 2 * bins.m
