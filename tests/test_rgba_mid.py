"""RGBA of many distinct colours below kmq.coreset.FROM: fit ends on a histogram level fine enough for k
(`kmeans._ends_rgba`) rather than building the 7-bit level and polishing every colour."""

import numpy as np
import pytest

from kmq import kmeans


def _colours(n: int, seed: int = 0, sd: float = 20) -> tuple[np.ndarray, np.ndarray]:
    """Distinct RGBA colours of a smooth photo under varying alpha: 8 blobs of sd 20 in 4-D, nearly all
    distinct, whose 6-bit level halves them with well over 3 000 bins per centroid at K = 16."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(50, 205, (8, 4))
    x = np.clip(np.rint(centres[rng.integers(0, 8, n)] + rng.normal(0, sd, (n, 4))), 0, 255).astype(np.uint8)
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
    # high k: the finest halving level lacks the bins, so `_ends_rgba` leaves it (to `_mixed`, below; without
    # it the colours are polished)
    monkeypatch.setattr(kmeans, "_mixed", lambda *a: None, raising=False)
    seen = _spy(monkeypatch)
    kmeans.fit(colors, counts, 128, seed=0)
    assert max(seen) == colors.shape[0]
    # RGB never asks
    asked: list[int] = []
    monkeypatch.setattr(kmeans, "_ends_rgba", lambda *a: asked.append(1))
    rgb, rc = np.unique(colors[:, :3], axis=0, return_counts=True)
    kmeans.fit(rgb, rc, 16, seed=0)
    assert not asked


# Round 34 (h43a): from K = 45 (where `_ends_rgba` stops) to 511 such colours end on their 6-bit level with
# each colour of `_HEAVY` pixels or more a point of its own (`_mixed`), finished by momentum updates; from
# `_LARGE_K` they are warmed up on their 6-bit level (`_warm_colours`); and from K = 33 to 64 `nearest` starts
# from the fit's clusters rather than RGBA's pair tables.


def _j(colors: np.ndarray, counts: np.ndarray, c: np.ndarray) -> float:
    """J of the colours at their nearest of the centroids c (float, in blocks: no (M, K, 4) array)."""
    x = colors.astype(np.float64)
    total = 0.0
    for s in range(0, x.shape[0], 4096):
        d = ((x[s:s + 4096, None, :] - c[None]) ** 2).sum(2)
        total += float((d.min(axis=1) * counts[s:s + 4096]).sum())
    return total / float(counts.sum())


@pytest.fixture(scope="module")
def heavy():
    """The blobs' colours with some of them heavy (a smooth alpha's opaque middle: the same colour in
    many pixels)."""
    colors, counts = _colours(400_000, seed=3, sd=12)  # 397 000 colours, 162 000 6-bit bins
    counts = counts.copy()
    counts[::50] += 6
    return colors, counts


def test_mixed_level_keeps_every_sum_and_nests_in_the_six_bit_cells(heavy):
    colors, counts = heavy
    six = kmeans._pyramid(colors, counts, (4, 5, 6))[-1]
    mixed = kmeans._mixed(six, colors, counts)
    assert mixed is not None and six.m <= mixed.m and mixed.m * 2 <= colors.shape[0]
    inv = mixed.inverse
    # every colour's weight and sums are in its point, and nothing else
    np.testing.assert_array_equal(np.bincount(inv, weights=counts, minlength=mixed.m), mixed.w)
    for c in range(4):
        sums = np.bincount(inv, weights=counts * colors[:, c].astype(np.float64), minlength=mixed.m)
        np.testing.assert_array_equal(sums, np.asarray(list(mixed.wx)[c], dtype=np.float64))
    # a heavy colour is a point of its own, at the colour itself
    heavy_rows = np.flatnonzero(counts >= kmeans._HEAVY)
    assert heavy_rows.size and np.unique(inv[heavy_rows]).size == heavy_rows.size
    assert np.bincount(inv, minlength=mixed.m)[inv[heavy_rows]].max() == 1
    np.testing.assert_array_equal(mixed.x[inv[heavy_rows]], colors[heavy_rows])
    # a point's colours share one 6-bit cell (so the coarser levels' parents hold)
    cell = six.inverse
    first = np.full(mixed.m, -1)
    first[inv] = cell
    assert np.array_equal(first[inv], cell)


def test_mixed_level_only_for_many_colours_that_it_halves(heavy):
    colors, counts = heavy
    few = colors[: kmeans._MIXED_FROM], counts[: kmeans._MIXED_FROM]
    assert kmeans._mixed(kmeans._pyramid(*few, (4, 5, 6))[-1], *few) is None
    # too many heavy colours to halve the colours
    six = kmeans._pyramid(colors, counts, (4, 5, 6))[-1]
    assert kmeans._mixed(six, colors, counts + kmeans._HEAVY) is None


def test_mid_k_ends_on_the_mixed_level_with_no_polish(monkeypatch, heavy):
    colors, counts = heavy
    finishes: list[tuple] = []
    orig = kmeans._hamerly

    def hamerly(pts, centroids, max_iter, tol_abs, guess=None, relax=1.0, momentum=None):
        finishes.append((pts.m, max_iter, relax, momentum))
        return orig(pts, centroids, max_iter, tol_abs, guess, relax, momentum)

    monkeypatch.setattr(kmeans, "_hamerly", hamerly)
    for k in (64, 256):
        finishes.clear()
        clusters = np.full(colors.shape[0], -1, dtype=np.intp)
        c = kmeans.fit(colors, counts, k, seed=0, clusters=clusters)
        assert c.shape == (k, 4) and clusters.min() >= 0
        assert max(m for m, *_ in finishes) * 2 <= colors.shape[0]  # nothing on the colours themselves
        m, updates, relax, momentum = finishes[-1]
        # (one run, K = 256: `_MIXED_UPDATES_ONE` since round 48)
        finish = kmeans._MIXED_UPDATES if k == 64 else kmeans._MIXED_UPDATES_ONE, kmeans._RELAX, kmeans._MOMENTUM
        assert (updates, relax, momentum) == finish and m > kmeans._pyramid(colors, counts, (6,))[0].m
    monkeypatch.setattr(kmeans, "_hamerly", orig)
    np.testing.assert_array_equal(c, kmeans.fit(colors, counts, 256, seed=0))  # deterministic


@pytest.mark.parametrize("k", [64, 200])
def test_mid_k_j_near_the_polished_fit(monkeypatch, heavy, k):
    colors, counts = heavy
    mixed = _j(colors, counts, kmeans.fit(colors, counts, k, seed=0))
    monkeypatch.setattr(kmeans, "_mixed", lambda *a: None)  # the old way: 7-bit level (if it halves), polish
    assert mixed <= 1.003 * _j(colors, counts, kmeans.fit(colors, counts, k, seed=0))


def test_large_k_rgba_colours_warm_up_on_their_six_bit_level(monkeypatch):
    colors, counts = _colours(80_000, seed=5, sd=8)  # 79 000 colours, 33 000 6-bit bins
    k = kmeans._LARGE_K
    split: list[int] = []
    real = kmeans._split
    monkeypatch.setattr(kmeans, "_split", lambda x, *a, **kw: split.append(len(x)) or real(x, *a, **kw))
    warmed = kmeans.fit(colors, counts, k)
    six = kmeans._pyramid(colors, counts, (6,))[0]
    assert split and max(split) <= six.m < colors.shape[0]  # the split on the 6-bit level (or its sample)
    np.testing.assert_array_equal(warmed, kmeans.fit(colors, counts, k))  # deterministic
    monkeypatch.setattr(kmeans, "_warm_colours", lambda *a: None)  # the old way: every colour split
    split.clear()
    old = kmeans.fit(colors, counts, k)
    assert max(split) == colors.shape[0]
    assert _j(colors, counts, warmed) <= 1.003 * _j(colors, counts, old)
    # RGB is not warmed up (its files stay as they were)
    assert kmeans._warm_colours(colors[:, :3], counts, k) is None


def test_rgba_from_k33_to_64_labels_from_the_fit_guess():
    m = kmeans._PAIRS_FROM
    assert kmeans.takes_guess(m, 4, 64) and kmeans.takes_guess(m, 4, 33)
    assert not kmeans.takes_guess(m, 4, 32) and not kmeans.takes_guess(m, 3, 32)
    rng = np.random.default_rng(1)
    points = rng.integers(0, 256, (m, 4), dtype=np.uint8)
    palette = np.unique(rng.integers(0, 256, (64, 4), dtype=np.uint8), axis=0)
    palette = np.concatenate([palette, palette[:1] ^ np.uint8(1)])[:64]  # (near ties)
    guess = rng.integers(0, palette.shape[0], m).astype(np.intp)
    labels, sq = kmeans.nearest(points, palette, guess)
    pairs = kmeans._nearest_pairs(points, palette)
    np.testing.assert_array_equal(labels, pairs[0])
    np.testing.assert_array_equal(sq, pairs[1])
