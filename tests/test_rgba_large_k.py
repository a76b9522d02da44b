"""RGBA at large K (`kmeans._fit_large`'s warm-up, round 36): where the warm level's sample at light 16 is too
noisy, a lighter one (8 or 4) still takes its split and first updates; the centroids are those of a textbook
over-relaxed Lloyd on each set of points."""
from __future__ import annotations

import numpy as np
import pytest

from kmq import kmeans as km
from test_rgba_speed_paths import textbook_lloyd


def level_and_warm(seed: int, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted RGBA points (light and heavy ones in 20 clusters), and the warm level of their boxes of side:
    (x, w, its points' means, their weights, each point's box)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(20, 235, (20, 4))
    x = np.clip(np.concatenate([rng.normal(c, 8, (300, 4)) for c in centres]), 0, 255)
    w = rng.integers(1, 5, x.shape[0]).astype(np.float64)
    w[::5] *= 20
    box = np.floor(x / side).astype(np.int64) @ ((256 // side) ** np.arange(4))
    _, parent = np.unique(box, return_inverse=True)
    pw = np.bincount(parent, weights=w)
    px = np.stack([np.bincount(parent, weights=w * x[:, c]) for c in range(4)], 1) / pw[:, None]
    return x, w, px, pw, parent


@pytest.mark.parametrize("seed", [0, 1])
def test_warm_level_too_noisy_at_light_16_splits_and_updates_a_lighter_sample(monkeypatch, seed):
    """A warm level whose sample at light 16 is over `_WARM_NOISE` but at 8 within it (a 2-4 MP photo under
    random alpha at K = 1024: 0.0020 and 0.0008) is split and first updated on its light-8 sample, not on every
    point: the split sees only the sample's points, and the centroids are the textbook's on the sample, the
    warm level, the level's sample and every point in turn, with or without parents."""
    x, w, px, pw, parent = level_and_warm(seed, 8)
    k = 12
    n = pw.sum()
    noise = {light: light * k * pw[pw < light].sum() / n / n for light in (16.0, 8.0)}
    assert noise[8.0] < noise[16.0]
    monkeypatch.setattr(km, "_WARM_NOISE", (noise[8.0] + noise[16.0]) / 2)
    monkeypatch.setattr(km, "_SAMPLED_ITER", (7, 5, 3))
    monkeypatch.setattr(km, "_WARM_SAMPLED", 4)
    ahead = km._warm_sample(pw, k)
    assert ahead is not None and ahead[1] == 8.0 and km._WARM_DRAWN * k <= ahead[0].shape[0] < 0.75 * pw.shape[0]
    rows, light = km._sample(w, k)
    split = km._split
    sizes = []

    def counted(xs, ws, kk, progress=None):
        sizes.append(xs.shape[0])
        return split(xs, ws, kk, progress)

    monkeypatch.setattr(km, "_split", counted)
    with_parent = km._fit_large(km._Points(x, w), k, 300, 0.0, None, km._Points(px, pw), parent)
    plain = km._fit_large(km._Points(x, w), k, 300, 0.0, None, km._Points(px, pw))
    assert sizes == [ahead[0].shape[0]] * 2  # the warm level's sample, not its every point
    assert np.array_equal(with_parent, plain)
    wr, wl = ahead
    sx, sw = px[wr], np.maximum(pw[wr], wl)
    warm = textbook_lloyd(px, pw, textbook_lloyd(sx, sw, split(sx, sw, k), 4, km._RELAX), 3, km._RELAX)
    mid = textbook_lloyd(x[rows], np.maximum(w[rows], light), warm, 5, km._RELAX)
    np.testing.assert_allclose(with_parent, textbook_lloyd(x, w, mid, 3, km._RELAX), rtol=0, atol=1e-9)


def test_warm_sample_lighter_than_16_only_with_enough_points_a_centroid(monkeypatch):
    """Where light 16 is within `_WARM_NOISE`, the warm sample is light 16's as before (12 MP photos at K = 1024:
    the same files), however few its points; a lighter one is taken only where it keeps `_WARM_DRAWN` points
    a centroid (thinner ones moved J by up to +0.5 %), else none: the split and updates of every warm point."""
    _, _, _, pw, _ = level_and_warm(0, 8)
    k = 12
    n = pw.sum()
    light16 = 16 * k * pw[pw < 16].sum() / n / n
    monkeypatch.setattr(km, "_WARM_NOISE", light16)
    monkeypatch.setattr(km, "_WARM_DRAWN", 10 ** 6)
    assert km._warm_sample(pw, k)[1] == 16.0
    monkeypatch.setattr(km, "_WARM_NOISE", light16 * 0.99)
    assert km._warm_sample(pw, k) is None
    rows, light = km._sample(pw, k, km._WARM_NOISE)
    assert light == 8.0
    monkeypatch.setattr(km, "_WARM_DRAWN", rows.shape[0] / k)
    assert km._warm_sample(pw, k)[1] == 8.0
