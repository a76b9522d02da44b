"""RGBA with varying alpha at K = 32-256 (round 35): the colours' polish far below them in momentum updates
(`kmeans._FAR_POLISH`), the near-tied restarts' warm-up levels at a looser tol (`kmeans._TIES_WARM_TOL`) and a last
level decided there, and RGBA's finest level ended with momentum (`kmeans._FINISH_RGBA`). RGB keeps its ways."""

import numpy as np
import pytest

from kmq import kmeans

from test_rgba_mid import _colours


def _spy(monkeypatch) -> list[tuple]:
    """Each `_hamerly` call's (points, max_iter, tol_abs, relax, momentum)."""
    seen: list[tuple] = []
    orig = kmeans._hamerly

    def hamerly(pts, centroids, max_iter, tol_abs, guess=None, relax=1.0, momentum=None):
        seen.append((pts.m, max_iter, tol_abs, relax, momentum))
        return orig(pts, centroids, max_iter, tol_abs, guess, relax, momentum)

    monkeypatch.setattr(kmeans, "_hamerly", hamerly)
    return seen


@pytest.fixture(scope="module")
def far():
    """A climb that ends on the 5-bit level, over 3 times fewer bins than colours (the 6-bit one not halving)."""
    colors, counts = _colours(40_000, sd=10)
    levels = kmeans._pyramid(colors, counts, (4, 5, 6))
    assert levels[1].m * 3 < colors.shape[0] < levels[2].m * 2
    return colors, counts


def _j(colors, counts, c) -> float:
    x = colors.astype(np.float64)
    return float((np.min(((x[:, None, :] - c[None]) ** 2).sum(2), axis=1) * counts).sum())


def test_far_polish_in_momentum_updates(monkeypatch, far):
    colors, counts = far
    seen = _spy(monkeypatch)
    c = kmeans.fit(colors, counts, 24, seed=0)  # (under `_FAR_POLISH_FROM`: momentum for being far only)
    polish = [s for s in seen if s[0] == colors.shape[0]]
    assert len(polish) == 1
    _, updates, _, relax, momentum = polish[0]
    assert momentum == kmeans._MOMENTUM and relax == kmeans._RELAX and updates <= kmeans._FAR_UPDATES
    assert np.array_equal(c, kmeans.fit(colors, counts, 24, seed=0))
    # J within a few tenths of a percent of the plain polish to tol (the old way)
    monkeypatch.setattr(kmeans, "_FAR_POLISH", np.inf)
    seen.clear()
    plain = kmeans.fit(colors, counts, 24, seed=0)
    assert [s[3:] for s in seen if s[0] == colors.shape[0]] == [(1.0, None)]
    assert _j(colors, counts, c) <= 1.003 * _j(colors, counts, plain)


def test_rgb_polish_unchanged(monkeypatch, far):
    colors, counts = far
    rgb, inverse = np.unique(colors[:, :3], axis=0, return_inverse=True)
    seen = _spy(monkeypatch)
    rgb_counts = np.bincount(inverse.ravel(), weights=counts).astype(np.int64)
    kmeans.fit(rgb, rgb_counts, 48, seed=0)
    # (a colour for nearly every pixel: since round 46 the colours' polish is `_NOISY_POLISH` momentum updates,
    # since round 47 each level too, `_NOISY_LEVELS`: none of RGBA's ways either)
    noisy = len(rgb) >= kmeans._NOISY_SHARE * rgb_counts.sum()
    ways = {(kmeans._RELAX, kmeans._MOMENTUM)} if noisy else {(1.0, None)}
    assert {s[3:] for s in (seen[:-1] if noisy else seen)} == ways


def test_tied_runs_warm_up_loosely(monkeypatch, far):
    colors, counts = far
    monkeypatch.setattr(kmeans, "_TIE_NEAR", 1.0)  # every chosen run climbs
    seen = _spy(monkeypatch)
    kmeans.fit(colors, counts, 48, seed=0, tol=1e-4)
    five = kmeans._pyramid(colors, counts, (5,))[0].m
    climbs = [s for s in seen if s[0] == five]
    assert len(climbs) == kmeans._TIE_RUNS_RGBA
    loose = climbs[0][2]
    assert all(s[2] == loose for s in climbs)
    # (the restarts' level keeps the fit's tol)
    assert loose == kmeans._TIES_WARM_TOL * min(s[2] for s in seen)
    # below 32 centroids, and RGB, every level to tol
    seen.clear()
    kmeans.fit(colors, counts, 24, seed=0)
    assert len({s[2] for s in seen if s[4] is None}) == 1


def test_at_most_two_near_ties_climb(monkeypatch, far):
    """RGBA's near ties in `fit` where its levels warm up loosely (K >= 32, several restarts): two climb, not three
    (`_TIE_RUNS_RGBA`); kmq.coreset's (`fit_histogram`) and RGB's keep `_TIE_RUNS`. With others asked for, the
    centroids returned are still those of the best of the two."""
    colors, counts = far
    monkeypatch.setattr(kmeans, "_TIE_NEAR", 1.0)  # every chosen run a near tie
    seen = _spy(monkeypatch)
    got = kmeans.fit(colors, counts, 48, seed=0)
    sizes = sorted({m for m, *_ in seen})[:-1]  # the levels climbed (the colours' polish last)
    assert [sum(1 for m, *_ in seen if m == size) for size in sizes] == [2, 2]
    others: list = []
    assert np.array_equal(got, kmeans.fit(colors, counts, 48, seed=0, others=others)) and others
    assert kmeans._TIE_RUNS_RGBA == 2 < kmeans._TIE_RUNS


def _histogram6(colors, counts):
    """(ids, counts, sums) of the colours' 6-bit histogram, as kmq.coreset hands it to `fit_histogram`."""
    cells = (colors >> 2).astype(np.int64)
    keys = ((cells[:, 0] * 64 + cells[:, 1]) * 64 + cells[:, 2]) * 64 + cells[:, 3]
    ids, inverse = np.unique(keys, return_inverse=True)
    inverse = inverse.ravel()
    w = np.bincount(inverse, weights=counts).astype(np.int64)
    sums = np.stack([np.bincount(inverse, weights=counts * colors[:, c]) for c in range(4)], 1).astype(np.int64)
    return ids, w, sums


def test_tied_runs_on_the_last_level_decided_loosely(monkeypatch):
    colors, counts = _colours(60_000, sd=6)
    ids, w, sums = _histogram6(colors, counts)
    variance = np.full(4, 400.0)
    tol_abs = 1e-4 * 400.0
    monkeypatch.setattr(kmeans, "_TIE_NEAR", 1.0)
    monkeypatch.setattr(kmeans, "_EARLY_NEAR", np.inf)  # every tie still near one level below (see the last test)
    seen = _spy(monkeypatch)
    c = kmeans.fit_histogram(ids, w, sums, 6, 40, variance=variance, seed=0)
    top = [s for s in seen if s[0] == ids.shape[0]]
    # each tied run to the loose tol, then the best of them on to tol
    assert len(top) == kmeans._TIE_RUNS + 1
    assert all(s[2] == tol_abs * kmeans._TIES_WARM_TOL for s in top[:-1]) and top[-1][2] == tol_abs
    # J as near as every run climbed to tol (the old way)
    x = sums / w[:, None]

    def j(cent):
        return float((np.min(((x[:, None, :] - cent[None]) ** 2).sum(2), axis=1) * w).sum())

    monkeypatch.setattr(kmeans, "_TIES_WARM_TOL", 1.0)
    assert j(c) <= 1.003 * j(kmeans.fit_histogram(ids, w, sums, 6, 40, variance=variance, seed=0))


def test_rgba_finest_level_ends_with_momentum(monkeypatch):
    colors, counts = _colours(600_000, sd=30)
    assert colors.shape[0] > kmeans._POLISH_MAX
    lasts: list = []
    orig = kmeans._climb

    def climb(*a, **kw):
        lasts.append(kw.get("last"))
        return orig(*a, **kw)

    monkeypatch.setattr(kmeans, "_climb", climb)
    kmeans.fit(colors, counts, 100, seed=0)
    assert lasts == [kmeans._FINISH_RGBA] and len(kmeans._FINISH_RGBA) == 3
    assert kmeans._FINISH_RGBA[0] < kmeans._FINISH[0]


def test_a_tie_far_behind_one_level_below_the_last_does_not_climb_it(monkeypatch, samples) -> None:
    """coffee.png under random alpha at K = 128: two near ties on the 4-bit level, one of them over
    `_EARLY_NEAR` behind on the 5-bit level, the last but one. Only the other climbs the 6-bit level (the
    last: mixed, ended in momentum updates, ~106,000 points), and the centroids are those of both climbing it."""
    from PIL import Image

    rgb = np.asarray(Image.open(samples / "coffee.png").convert("RGB"))
    alpha = np.random.default_rng(0).integers(1, 256, rgb.shape[:2], dtype=np.uint8)
    colors, counts = np.unique(np.dstack([rgb, alpha]).reshape(-1, 4), axis=0, return_counts=True)
    seen = _spy(monkeypatch)
    got = kmeans.fit(colors, counts.astype(np.int64), 128)
    sizes = sorted({m for m, *_ in seen})
    climbs = [sum(1 for m, *_ in seen if m == size) for size in sizes]
    assert climbs == [2, 2, 1]  # the 4-bit level's two ties, the 5-bit level's two, the last level's one
    monkeypatch.setattr(kmeans, "_EARLY_NEAR", np.inf)
    seen.clear()
    both = kmeans.fit(colors, counts.astype(np.int64), 128)
    assert [sum(1 for m, *_ in seen if m == size) for size in sizes] == [2, 2, 2]
    assert np.array_equal(got, both)


def _box(a: np.ndarray, r: int) -> np.ndarray:
    """a averaged over (2r + 1)^2 boxes (edges clipped), by cumulative sums."""
    p = np.pad(a, r, mode="edge").cumsum(0).cumsum(1)
    p = np.pad(p, ((1, 0), (1, 0)))
    n = 2 * r + 1
    return (p[n:, n:] - p[:-n, n:] - p[n:, :-n] + p[:-n, :-n]) / n ** 2


@pytest.mark.parametrize("k, far", [(16, False), (31, False), (32, True), (64, True)])
def test_from_32_centroids_the_polish_after_the_6_bit_level_is_in_momentum_updates(monkeypatch, samples, k, far):
    """chelsea.png under a blurred random alpha (127,000 colours) climbs to its 6-bit level (50,000 bins, under 3
    times fewer): from `_FAR_POLISH_FROM` centroids its polish is the momentum one, under it still plain."""
    from PIL import Image

    rgb = np.asarray(Image.open(samples / "chelsea.png").convert("RGB"))
    alpha = _box(np.random.default_rng(0).integers(1, 256, rgb.shape[:2]).astype(np.float64), 2)
    alpha = np.rint(1 + 254 * (alpha - alpha.min()) / np.ptp(alpha)).astype(np.uint8)
    colors, counts = np.unique(np.dstack([rgb, alpha]).reshape(-1, 4), axis=0, return_counts=True)
    seen = _spy(monkeypatch)
    kmeans.fit(colors, counts.astype(np.int64), k, seed=0)
    *climb, polish = seen
    assert polish[0] == colors.shape[0] and 2 * max(s[0] for s in climb) < colors.shape[0]
    assert 3 * max(s[0] for s in climb) > colors.shape[0]  # not far below (`_FAR_POLISH`)
    if far:
        assert polish[1:] == (kmeans._FAR_UPDATES, polish[2], kmeans._RELAX, kmeans._MOMENTUM)
    else:
        assert polish[3:] == (1.0, None)


def test_near_ties_warm_up_the_levels_below_the_last_in_a_few_momentum_updates(monkeypatch, samples):
    """chelsea.png under a blurred random alpha at K = 64 climbs 4 -> 5 -> 6 bits, then polishes its colours. Near
    ties (two, `_TIE_RUNS_RGBA`) each warm up the 5-bit level in `_WARM_RAMP` momentum updates, as one run does,
    instead of plain ones to the loose tol; the 6-bit level, which decides, and the polish as before. A single
    run there (no ties) warms it up so too since round 49 (it kept its plain updates)."""
    from PIL import Image

    rgb = np.asarray(Image.open(samples / "chelsea.png").convert("RGB"))
    alpha = _box(np.random.default_rng(0).integers(1, 256, rgb.shape[:2]).astype(np.float64), 2)
    alpha = np.rint(1 + 254 * (alpha - alpha.min()) / np.ptp(alpha)).astype(np.uint8)
    colors, counts = np.unique(np.dstack([rgb, alpha]).reshape(-1, 4), axis=0, return_counts=True)
    counts = counts.astype(np.int64)
    monkeypatch.setattr(kmeans, "_TIE_NEAR", 1.0)  # every chosen run a near tie
    monkeypatch.setattr(kmeans, "_EARLY_NEAR", np.inf)  # and each climbs the last level
    seen = _spy(monkeypatch)
    kmeans.fit(colors, counts, 64, seed=0)
    four, five, six = kmeans._pyramid(colors, counts, (4, 5, 6))
    middle = [s for s in seen if s[0] == five.m]
    assert len(middle) == 2
    assert all(s[1] == kmeans._WARM_RAMP and s[3:] == (kmeans._RELAX, kmeans._MOMENTUM) for s in middle)
    assert [s[3:] for s in seen if s[0] == six.m] == [(1.0, None)] * 2
    monkeypatch.setattr(kmeans, "_TIE_NEAR", 0.0)  # one run
    seen.clear()
    kmeans.fit(colors, counts, 64, seed=0)
    assert [(s[1], *s[3:]) for s in seen if s[0] == five.m] == [(kmeans._WARM_RAMP, kmeans._RELAX, kmeans._MOMENTUM)]
