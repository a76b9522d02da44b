"""RGBA at large K (`kmeans._fit_large`): the split of a large warm level runs on a light sample of it.

The split costs in proportion to its points; where the warm level (or its sample) has `_SPLIT_DRAWN_FROM`
points or more and a light-`_SPLIT_LIGHT` sample of it keeps `_SPLIT_DRAWN` points a centroid, the split runs
on that sample. The tests stub the updates (`_lloyd_bounded`) and watch what `_split` is given. No timing here.
"""

from __future__ import annotations

import numpy as np
import pytest

import kmq
from kmq import kmeans as km

FROM = getattr(km, "_SPLIT_DRAWN_FROM", 1 << 18)  # (named so that the module loads before it existed)


def points(m: int, seed: int = 0, heavy: float = 0.05) -> km._Points:
    """m random 4-D points, most of 1-3 pixels, a share `heavy` of 40-200."""
    rng = np.random.default_rng(seed)
    x = rng.random((m, 4)) * 255.0
    w = rng.integers(1, 4, m).astype(np.float64)
    big = rng.random(m) < heavy
    w[big] = rng.integers(40, 200, int(big.sum()))
    return km._Points(x, w)


def watched(monkeypatch: pytest.MonkeyPatch, cheap: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """A list that receives the (x, w) of each `_split` from now on (cheap: which then splits only its first
    4 k points, a start of the right shape)."""
    seen = []
    real = km._split

    def split(x: np.ndarray, w: np.ndarray, k: int, progress=None) -> np.ndarray:
        seen.append((x.copy(), w.copy()))
        return real(x[:4 * k], w[:4 * k], k) if cheap else real(x, w, k, progress)

    monkeypatch.setattr(km, "_split", split)
    return seen


def splits(monkeypatch: pytest.MonkeyPatch, warm: km._Points, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (x, w) `_fit_large` splits, warmed up on warm, its updates stubbed (they return their start)."""
    seen = watched(monkeypatch, cheap=True)
    monkeypatch.setattr(km, "_lloyd_bounded", lambda pts, start, *a, **kw: start)
    level = points(8 * k, seed=1, heavy=1.0)  # heavy: no sample of its own, so the warm level is split whole
    km._fit_large(level, k, 20, 0.0, None, warm)
    return seen


def test_a_large_warm_level_is_split_on_a_light_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    warm = points(FROM + 1000)
    k = 512
    (x, w), = splits(monkeypatch, warm, k)
    light = km._SPLIT_LIGHT
    # Fewer points, but every point of light pixels or more, each weighing at least light.
    assert km._SPLIT_DRAWN * k <= x.shape[0] < 0.5 * warm.m
    assert w.min() >= light
    heavy = warm.w >= light
    kept = {tuple(r) for r in x[w > light]}
    assert all(tuple(r) in kept for r in warm.x[heavy & (warm.w > light)])
    # The sampled weight stands for the whole (each light point weighs light, drawn w / light of the time).
    assert abs(w.sum() / warm.w.sum() - 1) < 0.02
    # The same sample every time (a fixed seed).
    (x2, w2), = splits(monkeypatch, warm, k)
    assert np.array_equal(x, x2) and np.array_equal(w, w2)


@pytest.mark.parametrize("m, k", [(FROM - 1, 512),  # too few points for the split to cost
                                  (FROM + 1000, 8192)])  # a sample under _SPLIT_DRAWN a centroid
def test_the_split_sees_every_point_where_the_sample_does_not_pay_or_is_too_thin(
        monkeypatch: pytest.MonkeyPatch, m: int, k: int) -> None:
    warm = points(m)
    (x, w), = splits(monkeypatch, warm, k)
    assert np.array_equal(x, warm.x) and np.array_equal(w, warm.w)


def test_rgba_at_large_k_with_the_split_sampled_keeps_j_and_is_deterministic(monkeypatch: pytest.MonkeyPatch
                                                                             ) -> None:
    # A small photo-like RGBA under a random alpha of 0-31 (so that its 6-bit level warms its colours up,
    # `_warm_colours`), that level forced onto the sampled split (its few points would not take it), against
    # the split of every point.
    rng = np.random.default_rng(3)
    h, w = 300, 400
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (h + w)], axis=-1)
    rgb = np.clip(rgb + rng.integers(-6, 7, rgb.shape), 0, 255).astype(np.uint8)
    px = np.dstack([rgb, rng.integers(0, 32, (h, w), dtype=np.uint8)])
    k = 512
    whole = kmq.compress(px, k)
    monkeypatch.setattr(km, "_SPLIT_DRAWN_FROM", 0)
    monkeypatch.setattr(km, "_SPLIT_DRAWN", 1)
    seen = watched(monkeypatch)
    one = kmq.compress(px, k)
    warm = km._warm_colours(*km.distinct_colors(px.reshape(-1, 4))[:2], k)
    assert warm is not None and km._SPLIT_DRAWN * k <= seen[0][0].shape[0] < 0.75 * warm.m
    two = kmq.compress(px, k)
    assert one.to_bytes() == two.to_bytes()
    assert one.distortion <= 1.01 * whole.distortion
