"""Mid-size RGBA (round 36): the 7-bit level counted before it is built, and the distances along the points
made channel by channel (`kmeans._along_dist2`), both with the same fits as before."""

import inspect

import numpy as np
import pytest

from kmq import kmeans


def _blobs(n: int, sd: float, channels: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distinct colours of 8 blobs (their counts): at n = 40 000 and sd = 6 in RGBA, ~39 500 colours whose
    6-bit level halves them (~13 400 bins) and whose 7-bit one does not (~33 800)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(50, 205, (8, channels))
    x = np.clip(np.rint(centres[rng.integers(0, 8, n)] + rng.normal(0, sd, (n, channels))), 0, 255).astype(np.uint8)
    colors, counts = np.unique(x, axis=0, return_counts=True)
    return colors, counts.astype(np.int64)


@pytest.mark.parametrize("n, sd", [(40_000, 6), (40_000, 14), (3_000, 30), (60_000, 8)])
def test_the_7_bit_bins_counted_by_6_bit_bin_are_the_7_bit_levels(n: int, sd: float) -> None:
    colors, counts = _blobs(n, sd)
    six = kmeans._pyramid(colors, counts, (6,))[0]
    assert kmeans._occupied_below(colors, six) == kmeans._coarse(colors, counts, 7).m


def test_rgba_builds_no_7_bit_level_that_would_not_halve_the_colours(monkeypatch: pytest.MonkeyPatch) -> None:
    colors, counts = _blobs(40_000, 6)
    m = colors.shape[0]
    six = kmeans._pyramid(colors, counts, (6,))[0]
    assert six.m * 2 <= m < kmeans._coarse(colors, counts, 7).m * 2  # the case: 6 bits halve, 7 do not
    built: list[int] = []
    orig = kmeans._coarse
    monkeypatch.setattr(kmeans, "_coarse", lambda c, w, bits: built.append(bits) or orig(c, w, bits))
    clusters = np.full(m, -1, dtype=np.intp)
    got = kmeans.fit(colors, counts, 16, seed=0, clusters=clusters)
    assert 7 not in built
    # Built anyway (as before), `_climb` skipped it: the same fit.
    monkeypatch.setattr(kmeans, "_occupied_below", lambda *a: 0)
    clusters_built = np.full(m, -1, dtype=np.intp)
    assert np.array_equal(got, kmeans.fit(colors, counts, 16, seed=0, clusters=clusters_built))
    assert 7 in built
    assert np.array_equal(clusters, clusters_built)


def test_rgba_still_builds_a_7_bit_level_that_halves_the_colours(monkeypatch: pytest.MonkeyPatch) -> None:
    # Few colours of many pixels each: 7 bits halve them.
    colors, counts = _blobs(200_000, 3)
    assert kmeans._coarse(colors, counts, 7).m * 2 <= colors.shape[0]
    assert kmeans._finest(colors, counts, 16, kmeans._pyramid(colors, counts, (6,))[0]).m == \
        kmeans._coarse(colors, counts, 7).m


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("k, n", [(7, 2_824), (64, 512), (48, 10_000)])
def test_distances_along_the_points_take_two_rows_and_keep_their_bits(channels: int, k: int, n: int) -> None:
    rng = np.random.default_rng(k + n + channels)
    points = rng.uniform(0, 255, (n, channels))
    centres = rng.uniform(0, 255, (k, channels))
    cols = np.ascontiguousarray(points.T, dtype=np.float32)
    want = kmeans._float_dist2(list(cols), slice(0, n), centres).T
    buf = np.empty((2, k, n), dtype=np.float32)
    got = kmeans._along_dist2(cols, centres, buf)
    assert np.array_equal(got.view(np.int32), want.view(np.int32))
    assert np.shares_memory(got, buf)
    assert np.array_equal(kmeans._along_dist2(cols, centres).view(np.int32), want.view(np.int32))
    # a block of a wider buffer, as `_kmeanspp`'s threads write theirs
    wide = np.empty((2, k, n + 100), dtype=np.float32)
    part = kmeans._along_dist2(cols[:, 10:n], centres, wide[:, :, 10:n])
    assert np.array_equal(part.view(np.int32), want[:, 10:].view(np.int32))


def test_seeding_along_the_points_is_the_seeding_across_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # `_kmeanspp` measures float points along them (`_along_dist2`) up to `_PP_ALONG_MAX` pairs, else across
    # (`_float_dist2`): the same float32 values, so the same seeds.
    colors, counts = _blobs(40_000, 6)
    level = kmeans._pyramid(colors, counts, (4,))[0]
    along = kmeans._kmeanspp(level, 16, np.random.default_rng(3), 4)
    monkeypatch.setattr(kmeans, "_PP_ALONG_MAX", 0)
    assert np.array_equal(along, kmeans._kmeanspp(level, 16, np.random.default_rng(3), 4))


@pytest.fixture(scope="module")
def spread():
    """~148 000 RGBA colours (under `_MIXED_FROM`, 196 000 before round 48) whose 4-, 5- and 6-bit levels all halve
    them: at K = 256 (one run) the restarts run on 4 bits, 5 bits only warm up the next, and the colours are
    polished."""
    colors, counts = _blobs(150_000, 8)
    assert colors.shape[0] <= kmeans._MIXED_FROM and kmeans._restarts(256) == 1
    return colors, counts


def _calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """(points, max_iter, relax, momentum) of every `kmeans._hamerly` call from now on."""
    seen: list[tuple] = []
    orig = kmeans._hamerly
    signature = inspect.signature(orig)

    def spy(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        given = bound.arguments
        seen.append((given["pts"].m, given["max_iter"], given["relax"], given["momentum"]))
        return orig(*args, **kwargs)

    monkeypatch.setattr(kmeans, "_hamerly", spy)
    return seen


def test_rgba_one_run_ramps_up_the_levels_between(monkeypatch: pytest.MonkeyPatch, spread) -> None:
    colors, counts = spread
    five = kmeans._pyramid(colors, counts, (5,))[0].m
    seen = _calls(monkeypatch)
    ramped = kmeans.fit(colors, counts, 256, seed=0)
    at_five = [c for c in seen if c[0] == five]
    assert at_five == [(five, kmeans._WARM_RAMP, kmeans._RELAX, kmeans._MOMENTUM)]
    # the levels after it as before: the 6-bit level plain, then the colours' polish (one run: momentum)
    assert [c[0] for c in seen][-1] == colors.shape[0]
    x = colors.astype(np.float64)

    def j(c: np.ndarray) -> float:
        cc = (c * c).sum(1)
        d = (x * x).sum(1)[:, None] - 2 * x @ c.T + cc[None]
        return float((d.min(1) * counts).sum())

    monkeypatch.setattr(kmeans, "_WARM_RAMP", 0)
    seen.clear()
    plain = kmeans.fit(colors, counts, 256, seed=0)
    assert all(c[2] == 1.0 for c in seen if c[0] == five)
    assert j(ramped) <= 1.003 * j(plain)


def test_rgb_does_not_ramp_and_several_restarts_ramp_the_middle_level(monkeypatch: pytest.MonkeyPatch, spread) -> None:
    """RGB never ramps; RGBA with several restarts (K = 64) ramps the 5-bit level between the restarts' and the
    last since round 49 (before: plain updates to its loose tol), and only that one."""
    colors, counts = spread
    seen = _calls(monkeypatch)
    rgb, inverse = np.unique(colors[:, :3], axis=0, return_inverse=True)
    kmeans.fit(rgb, np.bincount(inverse.ravel(), weights=counts).astype(np.int64), 256, seed=0)
    # momentum only where the colours are polished by one run (K = 256) or at a last level
    assert not [c for c in seen if c[3] is not None and c[1] == kmeans._WARM_RAMP]
    seen.clear()
    kmeans.fit(colors, counts, 64, seed=0)  # 8 restarts
    four, five, six = kmeans._pyramid(colors, counts, (4, 5, 6))
    ramped = {c[0] for c in seen if c[3] is not None and c[1] == kmeans._WARM_RAMP}
    assert ramped == {five.m}
