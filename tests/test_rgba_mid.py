"""RGBA of many distinct colours below kmq.coreset.FROM: fit ends on a histogram level fine enough for k
(`kmeans._ends_rgba`) rather than building the 7-bit level and polishing every colour."""

import numpy as np
import pytest

from kmq import kmeans


def _colours(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distinct RGBA colours of a smooth photo under varying alpha: 8 blobs of sd 20 in 4-D, nearly all
    distinct, whose 6-bit level halves them with well over 3 000 bins per centroid at K = 16."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(50, 205, (8, 4))
    x = np.clip(np.rint(centres[rng.integers(0, 8, n)] + rng.normal(0, 20, (n, 4))), 0, 255).astype(np.uint8)
    keys = x.astype(np.int64) @ np.array([1 << 24, 1 << 16, 1 << 8, 1])
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    return x[first], counts.astype(np.int64)


@pytest.fixture(scope="module")
def many():
    colors, counts = _colours(300_000)
    assert kmeans._POLISH_FINE_FROM < colors.shape[0] <= kmeans._POLISH_MAX
    return colors, counts


def _spy(monkeypatch) -> list[int]:
    seen: list[int] = []
    orig = kmeans._hamerly

    def hamerly(pts, *a, **kw):
        seen.append(pts.m)
        return orig(pts, *a, **kw)

    monkeypatch.setattr(kmeans, "_hamerly", hamerly)
    return seen


def test_many_rgba_colours_end_on_a_level(monkeypatch, many):
    colors, counts = many
    seen = _spy(monkeypatch)
    built: list[int] = []
    orig = kmeans._finest
    monkeypatch.setattr(kmeans, "_finest", lambda *a: built.append(1) or orig(*a))
    clusters = np.full(colors.shape[0], -1, dtype=np.intp)
    c = kmeans.fit(colors, counts, 16, seed=0, clusters=clusters)
    assert not built  # no 7-bit level
    assert seen and max(seen) * 2 <= colors.shape[0]  # no update on the colours themselves
    assert c.shape == (16, 4) and clusters.min() >= 0
    assert np.array_equal(c, kmeans.fit(colors, counts, 16, seed=0))


def test_j_near_the_polished_fit(monkeypatch, many):
    colors, counts = many
    x = colors.astype(np.float64)

    def j(c):
        return float((np.min(((x[:, None, :] - c[None]) ** 2).sum(2), axis=1) * counts).sum())

    ended = j(kmeans.fit(colors, counts, 16, seed=0))
    monkeypatch.setattr(kmeans, "_ends_rgba", lambda *a: None)  # the old way: 7-bit level, polish
    assert ended <= 1.003 * j(kmeans.fit(colors, counts, 16, seed=0))


def test_fewer_colours_or_rgb_unchanged(monkeypatch, many):
    colors, counts = many
    few = colors[: kmeans._POLISH_FINE_FROM], counts[: kmeans._POLISH_FINE_FROM]
    levels = kmeans._pyramid(*few, (4, 5, 6))
    assert kmeans._ends_rgba(levels, few[0].shape[0], 16) is None
    # high k: the finest halving level lacks the bins, so the colours are still polished
    seen = _spy(monkeypatch)
    kmeans.fit(colors, counts, 128, seed=0)
    assert max(seen) == colors.shape[0]
    # RGB never asks
    asked: list[int] = []
    monkeypatch.setattr(kmeans, "_ends_rgba", lambda *a: asked.append(1))
    rgb, rc = np.unique(colors[:, :3], axis=0, return_counts=True)
    kmeans.fit(rgb, rc, 16, seed=0)
    assert not asked
