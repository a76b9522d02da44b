"""A small RGBA image of many colours (alpha varying: nearly a colour a pixel) is fitted from the histogram
levels from `kmq.kmeans._COARSE_ABOVE_RGBA` colours, not by restarts on every colour. No timing here."""

from __future__ import annotations

import numpy as np
import pytest

import kmq
from kmq import kmeans as km


def vignetted(seed: int, h: int = 110, w: int = 120) -> np.ndarray:
    """A noisy photo-like RGBA image under a radial alpha vignette."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([60 + 100 * xx / w, 50 + 120 * yy / h, 140 - 60 * (xx + yy) / (w + h)], axis=-1)
    rgb = np.clip(np.rint(rgb + rng.normal(0, 9, rgb.shape)), 0, 255)
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    alpha = np.clip(255 * (1.3 - r), 0, 255)
    return np.dstack([rgb, alpha]).astype(np.uint8)


@pytest.mark.parametrize("k", [8, 16])
def test_many_rgba_colours_restart_on_a_histogram_level(k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    px = vignetted(0)
    d = km.distinct(px.reshape(-1, 4))
    m = len(d.counts)
    assert km._COARSE_ABOVE_RGBA < m <= km._COARSE_ABOVE and m * k <= km._COARSE_WORK
    ranked: list[int] = []
    real = km._best_runs
    monkeypatch.setattr(km, "_best_runs", lambda pts, *a, **kw: ranked.append(pts.m) or real(pts, *a, **kw))
    img = kmq.compress(px, k=k)
    assert ranked and all(n * 2 <= m for n in ranked)  # a level of at most half the colours, not the colours
    # Every pixel still on its nearest palette entry, as from restarts on the colours.
    flat = px.reshape(-1, 4).astype(np.int64)
    flat[flat[:, 3] == 0] = 0  # fully transparent pixels are one colour
    pal = img.palette.astype(np.int64)
    dist = ((flat[:, None, :] - pal[None, :, :]) ** 2).sum(axis=2)
    assert np.array_equal(dist[np.arange(len(flat)), img.labels.reshape(-1)], dist.min(axis=1))


def test_rgb_of_as_many_colours_still_restarts_on_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only 4 channels moved: RGB below `_COARSE_ABOVE` colours (and colours x K) restarts on the colours.
    px = vignetted(0)[..., :3]
    m = len(km.distinct(px.reshape(-1, 3)).counts)
    assert km._COARSE_ABOVE_RGBA < m <= km._COARSE_ABOVE and m * 16 <= km._COARSE_WORK
    ranked: list[int] = []
    real = km._best_runs
    monkeypatch.setattr(km, "_best_runs", lambda pts, *a, **kw: ranked.append(pts.m) or real(pts, *a, **kw))
    kmq.compress(px, k=16)
    assert ranked == [m]
