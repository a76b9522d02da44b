"""Correctness of kmq.kmeans: exact distinct colours, exact nearest palette entry, weighted K-Means.

No timing here: speed is measured by bench/speed.py.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import traced_peak
from kmq import kmeans as km


def brute_nearest(points: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = ((points.astype(np.int64)[:, None, :] - palette.astype(np.int64)[None, :, :]) ** 2).sum(axis=2)
    lab = np.argmin(d, axis=1)  # first minimum: the lower index on ties
    return lab, d[np.arange(len(points)), lab]


def weighted_j(colors: np.ndarray, counts: np.ndarray, centroids: np.ndarray) -> float:
    """Distortion of float centroids: weighted mean squared distance to the nearest centroid."""
    d = ((colors.astype(np.float64)[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2).min(axis=1)
    return float(counts @ d / counts.sum())


def blobs(rng: np.random.Generator, centres: list[list[int]], n: int, spread: int) -> np.ndarray:
    c = np.array(centres, dtype=np.int64)
    pts = c[rng.integers(0, len(c), n)] + rng.integers(-spread, spread + 1, (n, c.shape[1]))
    return np.clip(pts, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- distinct


@pytest.fixture(params=["sort", "bincount", "bincount-repack"])
def distinct_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test through every way of finding the colours: an argsort of the keys giving each pixel's
    colour index (small images, RGBA with varying alpha), and tables over the keys < 2**24 in chunks of 7
    pixels (large images; each pixel's colour index kept, or its key re-packed when needed as above
    _ONE_PASS pixels), the indices ranked and counted 11 at a time."""
    if request.param == "bincount-repack":
        monkeypatch.setattr(km, "_ONE_PASS", 0)
    monkeypatch.setattr(km, "_BINCOUNT_FROM", 1 if request.param.startswith("bincount") else 1 << 62)
    monkeypatch.setattr(km, "_CHUNK", 7)
    monkeypatch.setattr(km, "_INDEX_CHUNK", 11)
    return request.param


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_distinct_colors_exact(channels: int, distinct_path: str) -> None:
    rng = np.random.default_rng(1)
    px = rng.integers(0, 6, (5000, channels)).astype(np.uint8) * 50  # many repeats
    colors, counts, inverse = km.distinct_colors(px)
    assert colors.dtype == np.uint8 and counts.dtype == np.int64 and inverse.dtype == np.intp
    assert np.array_equal(colors[inverse], px)
    ref, ref_counts = np.unique(px, axis=0, return_counts=True)  # lexicographic order
    assert np.array_equal(colors, ref)
    assert np.array_equal(counts, ref_counts)
    assert counts.sum() == len(px)


@pytest.mark.parametrize("top", [1 << 8, 1 << 16, 1 << 24, 1 << 32])
def test_sorted_keys_by_radix_equal_unique(top: int) -> None:
    # Keys below and above 2**16 (one radix pass or two), many repeats, the extremes.
    rng = np.random.default_rng(top % 1000)
    keys = rng.integers(0, top, 3000, dtype=np.uint64).astype(np.uint32)
    keys[::7] = keys[1::7][: len(keys[::7])]
    keys[:2] = [0, top - 1]
    ref, ref_inverse, ref_counts = np.unique(keys, return_inverse=True, return_counts=True)
    values, counts, index = km._sorted_keys(keys)
    assert np.array_equal(values, ref) and np.array_equal(counts, ref_counts)
    assert index.dtype == np.int32 and np.array_equal(index, ref_inverse)


def test_distinct_colors_rgba_constant_alpha_and_extremes(distinct_path: str) -> None:
    px = np.array([[255, 255, 255, 7], [0, 0, 0, 7], [255, 255, 255, 7], [1, 2, 3, 7]], dtype=np.uint8)
    colors, counts, inverse = km.distinct_colors(px)
    assert colors.tolist() == [[0, 0, 0, 7], [1, 2, 3, 7], [255, 255, 255, 7]]
    assert counts.tolist() == [1, 1, 2]
    assert inverse.tolist() == [2, 0, 2, 1]


def test_distinct_colors_single_pixel_and_full_range_grey(distinct_path: str) -> None:
    colors, counts, inverse = km.distinct_colors(np.array([[9, 8, 7]], dtype=np.uint8))
    assert colors.tolist() == [[9, 8, 7]] and counts.tolist() == [1] and inverse.tolist() == [0]
    grey = np.arange(256, dtype=np.uint8)[::-1, None]
    colors, counts, inverse = km.distinct_colors(grey)
    assert np.array_equal(colors[:, 0], np.arange(256)) and np.array_equal(colors[inverse], grey)


def test_distinct_colors_of_rgb_padded_to_four_bytes(distinct_path: str) -> None:
    """RGB read in place from RGBX memory (strides (4, 1)), the fourth byte anything: the same colours, counts
    and pixel map as from a contiguous copy, whichever way they are found."""
    rng = np.random.default_rng(2)
    rgbx = rng.integers(0, 4, (3000, 4)).astype(np.uint8) * 80
    rgbx[:, 3] = rng.integers(0, 256, 3000)
    view = rgbx[:, :3]
    assert view.strides == (4, 1)
    for got, want in zip(km.distinct_colors(view), km.distinct_colors(np.ascontiguousarray(view))):
        assert np.array_equal(got, want)
    colors, _, inverse = km.distinct_colors(view)
    assert np.array_equal(colors[inverse], view)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 300), st.sampled_from([1, 3, 4]), st.integers(0, 2**32 - 1))
def test_distinct_colors_property(n: int, channels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 256, (n, channels)).astype(np.uint8)
    if seed % 2:
        px = px // 64 * 64
    colors, counts, inverse = km.distinct_colors(px)
    assert np.array_equal(colors[inverse], px)
    ref, ref_counts = np.unique(px, axis=0, return_counts=True)
    assert np.array_equal(colors, ref) and np.array_equal(counts, ref_counts)


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("n", [1, 2, 7])
def test_pack_every_layout(n: int, channels: int) -> None:
    """The overlapping-word fast paths (contiguous RGB, RGBA) equal the channel-by-channel packing."""
    rng = np.random.default_rng(n)
    wide = rng.integers(0, 256, (n, 6)).astype(np.uint8)
    padded = wide[:, :4][:, :channels]  # RGB as decoded into RGBX (kmq.imageio.load_image(padded=True))
    for px in (np.ascontiguousarray(wide[:, :channels]), wide[:, :channels], np.asfortranarray(wide[:, :channels]),
               padded):
        ref = np.zeros(n, dtype=np.uint64)
        for c in range(channels):
            ref = ref * 256 + px[:, c]
        packed = km._pack(px)
        assert packed.dtype == np.uint32 and np.array_equal(packed, ref)
        assert np.array_equal(km._unpack(packed, channels), px)


# ---------------------------------------------------------------------------------------------- nearest


def test_nearest_ties_go_to_lower_index() -> None:
    palette = np.array([[10, 0, 0], [0, 0, 0], [20, 0, 0], [10, 0, 0]], dtype=np.uint8)
    points = np.array([[5, 0, 0], [15, 0, 0], [10, 0, 0], [0, 0, 0]], dtype=np.uint8)
    labels, dist = km.nearest(points, palette)
    # 5 is 5 away from entries 0 and 1 -> 0; 15 from 0, 2 and 3 -> 0; 10 equals 0 and 3 -> 0.
    assert labels.tolist() == [0, 0, 0, 1]
    assert dist.tolist() == [25, 25, 0, 0]


@pytest.mark.parametrize("channels,k,m", [(1, 5, 300), (1, 200, 1000), (3, 16, 4000), (3, 300, 5000),
                                          (3, 2000, 8000), (4, 64, 3000), (4, 700, 6000)])
def test_nearest_equals_brute_force(channels: int, k: int, m: int) -> None:
    rng = np.random.default_rng(k + m)
    # Coarse values make exact ties frequent, which is what could go wrong.
    palette = (rng.integers(0, 16, (k, channels)) * 17).astype(np.uint8)
    points = rng.integers(0, 256, (m, channels)).astype(np.uint8)
    points[: m // 4] = points[: m // 4] // 17 * 17
    labels, dist = km.nearest(points, palette)
    ref_lab, ref_dist = brute_nearest(points, palette)
    assert labels.dtype == np.intp
    assert np.array_equal(dist, ref_dist)
    assert np.array_equal(labels, ref_lab)


@pytest.mark.parametrize("k", [65, 256, 511])
def test_nearest_from_a_local_guess_equals_the_cells_and_brute_force(k: int) -> None:
    # RGB points from 65 entries on measure only the entries near a guess from coarse cells: a photo's
    # colours, a palette with repeated entries and entries on the cube's corners (cells at its edges),
    # and a lattice palette in random order, where many points lie at equal distances from several.
    rng = np.random.default_rng(k)
    colors, _ = photo_like(k, 9000)
    palette = colors[rng.choice(len(colors), k, replace=False)]
    palette[:4] = palette[4:8]
    palette[8:10] = [[0, 0, 0], [255, 255, 255]]
    axis = np.arange(0, 256, 51)
    lattice = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    lattice = np.concatenate([lattice, lattice])[rng.permutation(2 * len(lattice))][:k].astype(np.uint8)
    points = np.concatenate([colors, rng.integers(0, 256, (8 * k, 3)).astype(np.uint8)])
    for pal in (palette, lattice):
        assert len(points) >= 8 * k and len(points) <= km._LOCAL_MAX
        labels, dist = km.nearest(points, pal)
        ref_lab, ref_dist = brute_nearest(points, pal)
        assert np.array_equal(dist, ref_dist) and np.array_equal(labels, ref_lab)
        cells = km._nearest_cells(points, pal, 4)
        assert np.array_equal(cells[0], labels) and np.array_equal(cells[1], dist)


@pytest.mark.parametrize("k", [65, 256])
def test_nearest_from_a_given_guess_is_exact_whatever_the_guess(k: int) -> None:
    # The guess only says where to start: the exact nearest (ties to the lower index) from a good guess, a
    # random one and the same entry for every point, on a lattice palette full of ties.
    rng = np.random.default_rng(k)
    colors, _ = photo_like(k, 9000)
    axis = np.arange(0, 256, 51)
    lattice = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    lattice = np.concatenate([lattice, lattice])[rng.permutation(2 * len(lattice))][:k].astype(np.uint8)
    points = np.concatenate([colors, rng.integers(0, 256, (8 * k, 3)).astype(np.uint8)])
    for pal in (colors[rng.choice(len(colors), k, replace=False)], lattice):
        ref_lab, ref_dist = brute_nearest(points, pal)
        near = np.clip(ref_lab + rng.integers(-1, 2, len(points)), 0, k - 1)
        for guess in (ref_lab, near, rng.integers(0, k, len(points)), np.full(len(points), k - 1)):
            labels, dist = km.nearest(points, pal, guess.astype(np.intp))
            assert np.array_equal(dist, ref_dist) and np.array_equal(labels, ref_lab)


def test_nearest_extreme_colours_are_exact() -> None:
    palette = np.array([[0, 0, 0, 0], [255, 255, 255, 255], [255, 0, 255, 0]], dtype=np.uint8)
    points = np.array([[255, 255, 255, 255], [0, 0, 0, 0], [255, 0, 255, 1]], dtype=np.uint8)
    labels, dist = km.nearest(points, palette)
    assert labels.tolist() == [1, 0, 2] and dist.tolist() == [0, 0, 1]


# ---------------------------------------------------------------------------------------------- fit


def test_k1_is_the_weighted_mean() -> None:
    colors = np.array([[0, 0, 0], [100, 50, 20]], dtype=np.uint8)
    counts = np.array([3, 1], dtype=np.int64)
    c = km.fit(colors, counts, 1)
    assert c.shape == (1, 3) and c.dtype == np.float64
    np.testing.assert_allclose(c[0], [25.0, 12.5, 5.0])


def test_two_separated_groups_give_their_means() -> None:
    colors = np.array([[0, 0, 0], [2, 0, 0], [200, 100, 0], [200, 110, 0], [200, 120, 0]], dtype=np.uint8)
    counts = np.array([1, 3, 1, 1, 2], dtype=np.int64)
    c = km.fit(colors, counts, 2, seed=3)
    c = c[np.argsort(c[:, 0])]
    np.testing.assert_allclose(c, [[1.5, 0, 0], [200, 112.5, 0]])


def test_weights_matter_and_equal_repeated_pixels() -> None:
    rng = np.random.default_rng(7)
    colors = np.unique(rng.integers(0, 256, (60, 3)).astype(np.uint8), axis=0)
    counts = rng.integers(1, 6, len(colors)).astype(np.int64)
    pixels = np.repeat(colors, counts, axis=0)
    d_colors, d_counts, _ = km.distinct_colors(pixels)
    assert np.array_equal(d_colors, colors) and np.array_equal(d_counts, counts)
    for k in (2, 5, 12):
        weighted = km.fit(colors, counts, k, seed=1)
        # Plain Lloyd on the repeated pixels from the same start reaches the same centroids.
        start = km._kmeanspp(km._Points(colors, counts, colors), k, np.random.default_rng(1))
        repeated, _ = km._lloyd(km._Points(pixels, np.ones(len(pixels))), start, 300, 0.0)
        plain, _ = km._lloyd(km._Points(colors, counts), start, 300, 0.0)
        np.testing.assert_allclose(repeated, plain, atol=1e-9)
        assert weighted_j(colors, counts, weighted) <= weighted_j(colors, counts, plain) * (1 + 1e-9)
    # The weights do move the answer: a heavy colour pulls its centroid onto itself.
    heavy = np.array([[0, 0, 0], [90, 0, 0], [255, 255, 255]], dtype=np.uint8)
    c = km.fit(heavy, np.array([1000, 1, 1], dtype=np.int64), 2)
    c = c[np.argsort(c[:, 0])]
    np.testing.assert_allclose(c[0], [90 / 1001, 0, 0])


def test_fit_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    colors, counts, _ = km.distinct_colors(blobs(rng, [[10, 20, 30], [200, 30, 90], [90, 220, 40]], 5000, 40))
    for k in (3, 16):
        a = km.fit(colors, counts, k, seed=5)
        b = km.fit(colors.copy(), counts.copy(), k, seed=5)
        assert np.array_equal(a, b)
    assert not np.array_equal(km.fit(colors, counts, 16, seed=5), km.fit(colors, counts, 16, seed=6))


def test_empty_clusters_are_reseeded_with_duplicate_heavy_data() -> None:
    # One colour holds almost all the weight and k is close to M: k-means++ and Lloyd both meet clusters
    # that lose every point; every centroid must still end on real data, distinct from the others.
    colors = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [255, 255, 255]], dtype=np.uint8)
    counts = np.array([10**6, 1, 1, 1, 1, 1], dtype=np.int64)
    for k in (2, 4, 5):
        c = km.fit(colors, counts, k, seed=0)
        assert c.shape == (k, 3) and np.all(np.isfinite(c))
        assert len(np.unique(np.round(c, 9), axis=0)) == k
        # The far white colour always deserves its own centroid.
        assert np.any(np.all(c == 255, axis=1))


def test_k_equal_m_minus_one_gives_near_zero_distortion() -> None:
    rng = np.random.default_rng(3)
    colors = np.unique(rng.integers(0, 256, (40, 3)).astype(np.uint8), axis=0)
    counts = rng.integers(1, 100, len(colors)).astype(np.int64)
    k = len(colors) - 1
    c = km.fit(colors, counts, k, seed=2)
    assert c.shape == (k, 3) and np.all(np.isfinite(c))
    # Optimal: merge the cheapest pair; anything sensible is within a few times of it.
    assert weighted_j(colors, counts, c) < 0.05 * weighted_j(colors, counts, c[:1])


@pytest.mark.parametrize("k", [16, 256])
def test_fit_clusters_are_each_colours_cluster_at_the_end(k: int) -> None:
    # On the colours (restarts) and through the histograms then the colours (K = 256, over-relaxed): the
    # clusters are those the final centroids are the means of, so the same fit gives the same centroids.
    colors, counts = photo_like(7, 30000 if k == 256 else 3000)
    clusters = np.full(len(colors), -1, dtype=np.intp)
    c = km.fit(colors, counts, k, seed=1, clusters=clusters)
    assert np.array_equal(c, km.fit(colors, counts, k, seed=1))
    assert clusters.min() >= 0 and clusters.max() < k
    w = counts.astype(np.float64)
    for ch in range(3):
        sums = np.bincount(clusters, weights=w * colors[:, ch], minlength=k)
        np.testing.assert_allclose(sums / np.bincount(clusters, weights=w, minlength=k), c[:, ch], rtol=1e-12)


def test_fit_leaves_clusters_as_given_where_it_has_none() -> None:
    grey = np.arange(0, 250, 5, dtype=np.uint8)[:, None]  # solved exactly in 1-D, no clusters kept
    clusters = np.full(len(grey), -1, dtype=np.intp)
    km.fit(grey, np.ones(len(grey), dtype=np.int64), 4, clusters=clusters)
    assert (clusters == -1).all()


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_fit_shapes_and_range(channels: int) -> None:
    rng = np.random.default_rng(channels)
    px = rng.integers(0, 256, (3000, channels)).astype(np.uint8)
    colors, counts, _ = km.distinct_colors(px)
    c = km.fit(colors, counts, 8, seed=0)
    assert c.shape == (8, channels) and c.dtype == np.float64
    assert np.all(c >= 0) and np.all(c <= 255)


# ---------------------------------------------------------------------------------------------- fast path


def photo_like(seed: int, n: int = 60000) -> tuple[np.ndarray, np.ndarray]:
    """Distinct colours and counts of a synthetic 'photo': smooth blobs plus noise, > 20 000 colours so that
    fit takes its histogram path."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(30, 226, (12, 3))
    px = centres[rng.integers(0, 12, n)] + rng.normal(0, 18, (n, 3))
    colors, counts, _ = km.distinct_colors(np.clip(np.rint(px), 0, 255).astype(np.uint8))
    return colors, counts


@pytest.mark.parametrize("k", [5, 40])
def test_hamerly_equals_plain_lloyd(k: int) -> None:
    # Same start, same stopping rule: the bounds only skip work, so the iterations are the same.
    colors, counts = photo_like(1, 20000)
    pts = km._Points(colors, counts, colors)
    start = km._kmeanspp(pts, k, np.random.default_rng(0))
    plain, j_plain = km._lloyd(pts, start, 300, 0.0)
    fast, j_fast, _ = km._hamerly(pts, start, 300, 0.0)
    np.testing.assert_allclose(fast, plain, atol=1e-6)
    # _lloyd reports the inertia of its last assignment, _hamerly that around the final centroids.
    assert j_fast == pytest.approx(j_plain, rel=1e-6)


@pytest.mark.parametrize("k", [5, 40])
def test_over_relaxed_hamerly_equals_plain_over_relaxed_lloyd(k: int) -> None:
    # Steps 1.8x the way to the means move the centroids nearly twice as far as Lloyd's: the bounds must
    # still hold (the same labels after every update as measuring every distance), J must never rise, and
    # the result is the means of the last labels.
    colors, counts = photo_like(3, 20000)
    pts = km._Points(colors, counts, colors)
    start = km._kmeanspp(pts, k, np.random.default_rng(0))
    c = start
    labels = km._assign(pts, c)[0]
    js = [weighted_j(colors, counts, c)]
    for _ in range(8):
        mean, wsum = km._weighted_means(pts, labels, k)
        assert np.all(wsum > 0)
        c = c + 1.8 * (mean - c)
        labels = km._assign(pts, c)[0]
        js.append(weighted_j(colors, counts, c))
    mean = km._weighted_means(pts, labels, k)[0]
    fast, j_fast, fast_labels = km._hamerly(pts, start, 8, 0.0, relax=1.8)
    assert np.array_equal(fast_labels, labels)
    np.testing.assert_allclose(fast, mean, atol=1e-6)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(js, js[1:]))
    assert j_fast / counts.sum() <= js[-1] * (1 + 1e-12)


@pytest.mark.parametrize("k", [4, 16])
def test_fast_fit_is_at_least_as_good_as_plain_lloyd(k: int) -> None:
    colors, counts = photo_like(2)
    assert len(colors) > km._COARSE_ABOVE
    fast = km.fit(colors, counts, k, seed=0)
    pts = km._Points(colors, counts, colors)
    plain, _ = km._lloyd(pts, km._kmeanspp(pts, k, np.random.default_rng(0)), 300, 0.0)
    # Best of several restarts finished on the colours: no worse than one plain run, within 0.5 %.
    assert weighted_j(colors, counts, fast) <= 1.005 * weighted_j(colors, counts, plain)


@pytest.mark.parametrize("fine_enough", [0, 10**9])
def test_large_image_path_is_at_least_as_good_as_plain_lloyd(fine_enough: int, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    # The path of images above _POLISH_MAX colours (no polish; 7-bit level skipped or kept), made to run
    # on a small case. Its result is a histogram's, so it may trail one plain run on the colours by a little.
    colors, counts = photo_like(2)
    monkeypatch.setattr(km, "_POLISH_MAX", km._COARSE_ABOVE)
    monkeypatch.setattr(km, "_FINE_ENOUGH", fine_enough)
    k = 8
    fast = km.fit(colors, counts, k, seed=0)
    assert np.array_equal(fast, km.fit(colors, counts, k, seed=0))
    pts = km._Points(colors, counts, colors)
    plain, _ = km._lloyd(pts, km._kmeanspp(pts, k, np.random.default_rng(0)), 300, 0.0)
    assert weighted_j(colors, counts, fast) <= 1.01 * weighted_j(colors, counts, plain)


@pytest.mark.parametrize("bins_per_centroid, polished", [(10**9, True), (1, False)])
def test_colours_are_polished_unless_the_finest_level_is_fine_enough(bins_per_centroid: int, polished: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Images from _POLISH_FINE_FROM colours skip the polish on the colours when the finest histogram level
    # has _POLISH_FINE_BINS bins per centroid, made to run on a small case; the result stays near plain Lloyd's.
    rng = np.random.default_rng(2)  # photo_like with less noise: a 7-bit level of under half the colours
    centres = rng.integers(30, 226, (12, 3))
    px = centres[rng.integers(0, 12, 150000)] + rng.normal(0, 6, (150000, 3))
    colors, counts, _ = km.distinct_colors(np.clip(np.rint(px), 0, 255).astype(np.uint8))
    monkeypatch.setattr(km, "_POLISH_FINE_FROM", km._COARSE_ABOVE)
    monkeypatch.setattr(km, "_POLISH_FINE_BINS", bins_per_centroid)
    fitted: list[int] = []
    real = km._hamerly
    monkeypatch.setattr(km, "_hamerly", lambda pts, *a, **kw: fitted.append(pts.m) or real(pts, *a, **kw))
    k = 8
    fast = km.fit(colors, counts, k, seed=0)
    assert (len(colors) in fitted) == polished
    pts = km._Points(colors, counts, colors)
    plain, _ = km._lloyd(pts, km._kmeanspp(pts, k, np.random.default_rng(0)), 300, 0.0)
    assert weighted_j(colors, counts, fast) <= 1.01 * weighted_j(colors, counts, plain)


def test_variance_from_integer_sums() -> None:
    colors, counts = photo_like(6, 3000)
    x, w = colors.astype(np.float64), counts.astype(np.float64)
    mean = (w @ x) / w.sum()
    np.testing.assert_allclose(km._variance(colors, counts), (w @ ((x - mean) ** 2)) / w.sum(), rtol=1e-12)
    assert np.array_equal(km._variance(np.full((2, 3), 255, np.uint8), np.array([2**31, 5])), np.zeros(3))


def test_coarse_histogram_keeps_weight_and_mean() -> None:
    colors, counts = photo_like(3, 5000)
    coarse = km._coarse(colors, counts, 5)
    assert coarse.w.sum() == counts.sum()
    np.testing.assert_allclose(coarse.w @ coarse.x, counts @ colors.astype(np.float64))
    # Each bin's mean lies inside its 8-wide bin.
    assert np.all(coarse.x >= 0) and np.all(coarse.x <= 255)


def test_grey_is_solved_exactly() -> None:
    rng = np.random.default_rng(4)
    values = np.sort(rng.choice(256, 9, replace=False)).astype(np.uint8)
    counts = rng.integers(1, 50, 9).astype(np.int64)
    k = 3
    got = weighted_j(values[:, None], counts, km.fit(values[:, None], counts, k))
    # Brute force over every split of the sorted values into k runs (optimal 1-D clusters are runs).
    best = np.inf
    for a in range(1, 8):
        for b in range(a + 1, 9):
            cent = [np.average(values[s:e].astype(float), weights=counts[s:e]) for s, e in ((0, a), (a, b), (b, 9))]
            best = min(best, weighted_j(values[:, None], counts, np.array(cent)[:, None]))
    assert got == pytest.approx(best, rel=1e-9)


def test_pyramid_levels_equal_histograms_built_from_the_colours() -> None:
    colors, counts = photo_like(5, 8000)
    levels = km._pyramid(colors, counts, (4, 5, 7))
    for bits, level in zip((4, 5, 7), levels):
        bins = [tuple(c) for c in (colors >> (8 - bits)).tolist()]
        ref_ids, inverse = np.unique(np.array(bins), axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        w = np.bincount(inverse, weights=counts)
        means = np.stack([np.bincount(inverse, weights=counts * colors[:, c]) for c in range(3)], 1) / w[:, None]
        assert np.array_equal(level.inverse, inverse)
        np.testing.assert_allclose(level.w, w)
        np.testing.assert_allclose(level.x, means, rtol=1e-12)


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("k", [40, 120])
def test_reassign_near_from_a_guess_is_exact(k: int, channels: int) -> None:
    # The first assignment of a level starts from guessed labels (here deliberately poor: all in cluster 0,
    # or random): it must still find a nearest centroid, its exact distance and a valid lower bound on the
    # distance to every other centroid (ties may go to either of the tied centroids). With 4 channels
    # (random alpha) the lists are read out to 2u only (`_REACH_RGBA`), the least that stays exact.
    colors, counts = photo_like(6, 20000)
    if channels == 4:
        colors = np.column_stack([colors, np.random.default_rng(7).integers(0, 256, len(colors))]).astype(np.uint8)
    pts = km._Points(colors, counts, colors)
    cent = km._kmeanspp(pts, k, np.random.default_rng(0)) + np.random.default_rng(3).normal(0, 0.3, (k, channels))
    d = np.sqrt(((pts.x[:, None, :] - cent[None]) ** 2).sum(axis=2))
    nearest = d.min(axis=1)
    sep = np.sqrt(((cent[:, None, :] - cent[None]) ** 2).sum(axis=2))
    np.fill_diagonal(sep, np.inf)
    rng = np.random.default_rng(1)
    for guess in (np.zeros(pts.m, dtype=np.intp), rng.integers(0, k, pts.m)):
        labels = guess.copy()
        upper = d[np.arange(pts.m), labels].copy()
        lower, near = np.empty(pts.m), np.empty(pts.m)
        runner = np.empty(pts.m, dtype=np.intp)
        km._reassign_near(pts, cent, *km._by_separation(sep), np.arange(pts.m), labels, upper, runner, near,
                          lower)
        rows = np.arange(pts.m)
        np.testing.assert_allclose(d[rows, labels], nearest, rtol=0, atol=1e-9)
        np.testing.assert_allclose(upper, nearest, rtol=0, atol=1e-9)
        # The runner-up is another centroid at its exact distance, and lower bounds all the rest.
        assert np.all(runner != labels)
        np.testing.assert_allclose(near, d[rows, runner], rtol=0, atol=1e-9)
        others = d.copy()
        others[rows, labels] = np.inf
        others[rows, runner] = np.inf
        assert np.all(lower <= others.min(axis=1) + 1e-9)
    # And a whole fit step from a guess reaches the same centroids as one from scratch here.
    got = km._hamerly(pts, cent, 30, 0.0, np.zeros(pts.m, dtype=np.intp))[1]
    ref = km._hamerly(pts, cent, 30, 0.0)[1]
    assert got == pytest.approx(ref, rel=1e-9)


def test_reassign_near_same_answer_from_rank_rows_as_from_candidates() -> None:
    # Points searched all together gather their candidates' coordinates from the per-rank rows of the centroids
    # (wide groups), one at a time from the table of candidates (groups of one point, too small to pay for the
    # rows): labels, distances and bounds must be the same bits either way.
    colors, counts = photo_like(7, 30000)
    pts = km._Points(colors, counts, colors)
    k = 96
    cent = km._kmeanspp(pts, k, np.random.default_rng(0)) + np.random.default_rng(4).normal(0, 0.5, (k, 3))
    order, nsep = km._by_separation(km._separations(cent))
    guess = np.random.default_rng(2).integers(0, k, pts.m)

    def search(rows: np.ndarray, out: list[np.ndarray]) -> None:
        labels, upper, runner, near, lower = out
        labels[rows] = guess[rows]
        upper[rows] = np.sqrt(km._sq_rows(pts, rows, cent, guess[rows]))
        km._reassign_near(pts, cent, order, nsep, rows, labels, upper, runner, near, lower)

    def arrays() -> list[np.ndarray]:
        return [np.zeros(pts.m, dtype=np.intp), np.zeros(pts.m), np.zeros(pts.m, dtype=np.intp), np.zeros(pts.m),
                np.zeros(pts.m)]

    together, alone = arrays(), arrays()
    search(np.arange(pts.m), together)
    for i in np.random.default_rng(5).choice(pts.m, 300, replace=False):
        search(np.array([i]), alone)
        for a, b in zip(together, alone):
            assert a[i] == b[i]


def test_short_buffers_sets_the_ufunc_buffer_for_the_call_only() -> None:
    seen = []
    before = np.getbufsize()
    km._short_buffers(lambda: seen.append(np.getbufsize()))()
    assert seen == [km._ROW_BUFFER] and np.getbufsize() == before
    # and what runs under it computes the same values
    rng = np.random.default_rng(0)
    a, b = rng.random((16, 3000)), rng.random(3000)
    np.testing.assert_array_equal(km._short_buffers(lambda: (a - b) ** 2)(), (a - b) ** 2)


def test_by_separation_lists_each_centroid_by_rounded_separation_ties_by_index() -> None:
    # Hand-made: centroids 0 and 2 coincide, 1 and 3 are 1.0 and 1/256 from 0. Rounded down to 1/128 the
    # last is 0: it still lists after 0's own entry (keys 0, then at least 1), with the lower index first.
    cent = np.array([[10.0, 0, 0], [11.0, 0, 0], [10.0, 0, 0], [10.0 + 1 / 256, 0, 0]])
    order, nsep = km._by_separation(km._separations(cent))
    assert order.tolist() == [[0, 2, 3, 1], [1, 3, 0, 2], [2, 0, 3, 1], [3, 0, 2, 1]]
    assert nsep[0].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert nsep[1].tolist() == [0.0, 127 / 128, 1.0, 1.0]
    # On many centroids with many equal separations: a stable argsort of the rounded keys, as defined.
    cent = np.random.default_rng(0).integers(0, 12, (300, 3)).astype(np.float64)
    sep = np.sqrt(((cent[:, None, :] - cent[None]) ** 2).sum(axis=2))
    np.testing.assert_array_equal(km._separations(cent), sep)
    key = np.minimum(np.floor(sep * 128) + 1, 65535)
    np.fill_diagonal(key, 0)
    ref = np.argsort(key, axis=1, kind="stable")
    order, nsep = km._by_separation(sep)
    np.testing.assert_array_equal(order, ref)
    np.testing.assert_array_equal(nsep, np.maximum(np.take_along_axis(key, ref, 1) - 1, 0) / 128)


@pytest.mark.parametrize("runs", [1, 3])
def test_batched_kmeanspp_gives_distinct_data_points(runs: int) -> None:
    colors, counts = photo_like(7, 5000)
    pts = km._Points(colors, counts, colors)
    c = km._kmeanspp(pts, 24, np.random.default_rng(2), runs)
    c = c.reshape(runs, 24, 3)
    present = {tuple(p) for p in colors.tolist()}
    for run in c:
        assert len({tuple(p) for p in run.tolist()}) == 24
        assert all(tuple(int(v) for v in p) in present for p in run.tolist())


# ---------------------------------------------------------------------------------------------- large K


def test_nearest_tree_with_a_dense_palette_resolves_every_tie() -> None:
    # Every lattice colour 0, 2, 4, ... in a cube: a point at odd coordinates has up to 8 entries at the
    # same least distance, more than the tree's first query asks for.
    axis = np.arange(0, 32, 2)
    palette = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3).astype(np.uint8)
    palette = palette[np.random.default_rng(0).permutation(len(palette))]  # indices not in colour order
    points = np.random.default_rng(1).integers(0, 34, (3000, 3)).astype(np.uint8)
    labels, dist = km.nearest(points, palette)
    ref_lab, ref_dist = brute_nearest(points, palette)
    assert len(palette) >= km._LARGE_K
    assert np.array_equal(dist, ref_dist) and np.array_equal(labels, ref_lab)


def test_nearest_tree_in_blocks_is_the_one_query_answer(monkeypatch) -> None:
    # Blocks of 7 points: ties asked again within each block, the blocks' labels and distances in place.
    axis = np.arange(0, 32, 2)
    palette = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3).astype(np.uint8)
    palette = palette[np.random.default_rng(0).permutation(len(palette))]
    points = np.random.default_rng(2).integers(0, 34, (1000, 3)).astype(np.uint8)
    monkeypatch.setattr(km, "_TREE_BLOCK", 7)
    labels, dist = km.nearest(points, palette)
    ref_lab, ref_dist = brute_nearest(points, palette)
    assert np.array_equal(dist, ref_dist) and np.array_equal(labels, ref_lab)


@pytest.mark.parametrize("channels, fine_enough, bits", [(4, 8, [6, 5]), (4, 10 ** 6, [6, 7]), (3, 8, [7])])
def test_large_k_over_many_colours_runs_on_6_bits_for_rgba_when_they_are_fine_enough(
        monkeypatch, channels: int, fine_enough: int, bits: list[int]) -> None:
    colors, counts = photo_like(5, 30000)
    if channels == 4:  # a varying alpha as a fourth coordinate
        colors = np.concatenate([colors, (colors[:, :1] // 2 + 60)], axis=1)
    monkeypatch.setattr(km, "_POLISH_MAX", 1000)  # the histograms' side of the fit
    monkeypatch.setattr(km, "_FINE_ENOUGH", fine_enough)
    made = []
    coarse = km._coarse
    monkeypatch.setattr(km, "_coarse", lambda c, w, b: made.append(b) or coarse(c, w, b))
    c = km.fit(colors, counts, 600, seed=1)
    assert made == bits and c.shape == (600, channels) and np.all((c >= 0) & (c <= 255))
    assert np.array_equal(c, km.fit(colors, counts, 600, seed=1))


@pytest.mark.parametrize("channels", [3, 4])
def test_large_k_fit_keeps_lowering_j_and_is_deterministic(channels: int) -> None:
    colors, counts = photo_like(5, 30000)
    if channels == 4:  # a varying alpha as a fourth coordinate
        colors = np.concatenate([colors, (colors[:, :1] // 2 + 60)], axis=1)
    js, fits = [], []
    for k in (256, 600, 2000):
        fits.append(km.fit(colors, counts, k, seed=1))
        c = fits[-1]
        assert c.shape == (k, channels) and np.all(np.isfinite(c))
        assert np.all(c >= 0) and np.all(c <= 255)
        js.append(weighted_j(colors[:5000], counts[:5000], c))
    assert js[0] > js[1] > js[2]
    assert np.array_equal(km.fit(colors, counts, 2000, seed=1), fits[-1])


def test_large_k_progress_reports_rise_to_their_total() -> None:
    colors, counts = photo_like(6, 20000)
    calls: list[tuple[int, int]] = []
    km.fit(colors, counts, 1000, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) >= 5
    assert all(0 < d <= t for d, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_split_cuts_where_the_error_is() -> None:
    # Two tight groups, one holding 9x the weight and spread: three boxes go 2 to the heavy one.
    x = np.array([[0, 0, 0], [10, 0, 0], [20, 0, 0], [30, 0, 0], [200, 200, 200], [201, 200, 200]], float)
    w = np.array([9, 9, 9, 9, 1, 1], float)
    c = km._split(x, w, 3)
    assert sorted(c[:, 0].tolist()) == [5.0, 25.0, 200.5]


def test_histogram_of_sparse_bins_is_bounded_by_the_items() -> None:
    """7 bits of 4 channels are 2**28 bins: merging must not allocate by bin (RGBA with varying alpha)."""
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 1 << 28, 5000)
    ids[:100] = ids[100:200]  # some shared bins
    w = rng.random(5000)
    wx = rng.random((5000, 4))
    (inverse, occupied, weights, sums), peak = traced_peak(lambda: km._histogram(ids, w, wx))
    assert peak < 2 << 20
    ref, ref_inv = np.unique(ids, return_inverse=True)
    assert np.array_equal(occupied, ref) and np.array_equal(inverse, ref_inv)
    np.testing.assert_allclose(weights, np.bincount(ref_inv, weights=w))
    np.testing.assert_allclose(sums[:, 2], np.bincount(ref_inv, weights=wx[:, 2]))


def test_restarts_fall_as_k_to_the_minus_one_and_a_half() -> None:
    # 4096 / k^1.5 rounded, within 1..16: 4096 / 512 = 8 at K=64, 4096 / 1448.2 = 2.83 at K=128.
    assert [km._restarts(k) for k in (2, 16, 32, 64, 128, 256, 511)] == [16, 16, 16, 8, 3, 1, 1]


def test_bins_by_table_and_by_sort_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 000 items in 2**21 bins (a small photo's 7-bit level) are sorted, not tabled: the same answer.
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 1 << 21, 2000)
    ids[:300] = ids[300:600]
    assert int(ids.max()) + 1 > km._TABLE_PER_ITEM * ids.shape[0]  # the sorting path
    by_sort = km._bins(ids)
    monkeypatch.setattr(km, "_TABLE_PER_ITEM", 1 << 22)
    by_table = km._bins(ids)
    for a, b in zip(by_sort, by_table):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_lloyd_runs_ranks_runs_by_their_own_lloyd() -> None:
    # Pairs of points at 0/1, 10/11, 20/21 on one axis, k = 3. Run 0 starts on the pairs and settles on their
    # means (inertia 6 x 0.25); run 1 starts with two centroids on the first pair and is stuck with the
    # other four points around 15.5 (inertia 5.5^2 + 4.5^2 + 4.5^2 + 5.5^2 = 101).
    x = np.zeros((6, 3))
    x[:, 0] = [0, 1, 10, 11, 20, 21]
    pts = km._Points(x, np.ones(6))
    starts = np.zeros((2, 3, 3))
    starts[0, :, 0] = [0, 10, 20]
    starts[1, :, 0] = [0, 1, 15]
    cent, inertia, labels = km._lloyd_runs(pts, starts, 10, 0.0)
    np.testing.assert_allclose(cent[0, :, 0], [0.5, 10.5, 20.5])
    np.testing.assert_allclose(cent[1, :, 0], [0.0, 1.0, 15.5])
    np.testing.assert_allclose(inertia, [1.5, 101.0])
    assert labels.tolist() == [[0, 0, 1, 1, 2, 2], [0, 1, 2, 2, 2, 2]]
    # The best of the two is then finished exactly.
    best, best_labels = km._best_of_restarts(pts, 3, np.random.default_rng(0), 4, 300, 0.0)
    assert weighted_j(x.astype(np.uint8), np.ones(6), best) == pytest.approx(0.25)


def test_hamerly_equals_plain_lloyd_when_one_centroid_moves_far() -> None:
    # The bound of the others only drops by the moves of a centroid's neighbours; a centroid started far
    # from every colour moves a long way through the others' neighbourhoods, and the iterations must
    # still be those of plain Lloyd.
    colors, counts = photo_like(4, 20000)
    pts = km._Points(colors, counts, colors)
    start = km._kmeanspp(pts, 48, np.random.default_rng(0))
    start[7] = [255.0, 0.0, 255.0]
    plain, j_plain = km._lloyd(pts, start, 300, 0.0)
    fast, j_fast, _ = km._hamerly(pts, start, 300, 0.0)
    np.testing.assert_allclose(fast, plain, atol=1e-6)
    assert j_fast == pytest.approx(j_plain, rel=1e-6)


def few_hues(seed: int, n: int = 60000) -> tuple[np.ndarray, np.ndarray]:
    """A smooth photo of few hues: many distinct colours inside a small part of the cube, so that its 5-bit
    histogram has fewer than 4 bins per centroid at k = 128."""
    rng = np.random.default_rng(seed)
    px = np.stack([rng.normal(130, 14, n), rng.normal(120, 12, n), rng.normal(110, 5, n)], axis=1)
    return km.distinct_colors(np.clip(np.rint(px), 0, 255).astype(np.uint8))[:2]


@pytest.mark.parametrize("case", ["few hues", "colours x k"])
def test_histogram_restarts_match_restarts_on_the_colours(case: str) -> None:
    # "few hues": the 5-bit level is too coarse for k, so the restarts climb to the 6-bit one instead of
    # running on every colour; "colours x k": under 20 000 colours but many centroids, the histograms too.
    if case == "few hues":
        colors, counts = few_hues(5)
        k = 128
        assert len(colors) > km._COARSE_ABOVE and km._coarse(colors, counts, 5).m <= 4 * k
    else:
        colors, counts = photo_like(3, 14000)
        k = 128
        assert len(colors) <= km._COARSE_ABOVE and len(colors) * k > km._COARSE_WORK
    fast = km.fit(colors, counts, k, seed=0)
    assert np.array_equal(fast, km.fit(colors, counts, k, seed=0))
    # No worse than as many restarts run on the colours themselves (within 0.5 %).
    pts = km._Points(colors, counts, colors)
    ref = km._best_of_restarts(pts, k, np.random.default_rng(0), km._restarts(k), 300, 0.0)[0]
    assert weighted_j(colors, counts, fast) <= 1.005 * weighted_j(colors, counts, ref)


@pytest.mark.parametrize("resort", [0.0, 0.1, 1e9])
def test_hamerly_with_stale_separation_lists_equals_plain_lloyd(resort: float, monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    # The lists of centroids by separation are sorted again every update (0), now and then (0.1) or
    # never (1e9, every bound then widened by the drift since the first sort): the iterations must be
    # those of plain Lloyd each way.
    monkeypatch.setattr(km, "_RESORT", resort)
    colors, counts = photo_like(8, 20000)
    pts = km._Points(colors, counts, colors)
    start = km._kmeanspp(pts, 160, np.random.default_rng(0))
    plain, j_plain = km._lloyd(pts, start, 40, 0.0)
    fast, j_fast, _ = km._hamerly(pts, start, 40, 0.0)
    np.testing.assert_allclose(fast, plain, atol=1e-6)
    assert j_fast == pytest.approx(j_plain, rel=1e-6)


@pytest.mark.parametrize("k, neighbours, resort", [(40, 48, 0.1), (160, 48, 0.1), (160, 4, 0.1), (160, 4, 1e9)])
def test_rgba_over_relaxed_hamerly_equals_plain_over_relaxed_lloyd(k: int, neighbours: int, resort: float,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # 4 channels bound each point by its centroid's `_NEIGHBOURS_RGBA` nearest others: at k = 40 every
    # other centroid (no separation beyond them), at 160 some (4: few, the separation beyond them often
    # the bound), with lists sorted again now and then (0.1) or never (1e9). The labels after each
    # over-relaxed update must be those of measuring every distance.
    monkeypatch.setattr(km, "_RESORT", resort)
    monkeypatch.setattr(km, "_NEIGHBOURS_RGBA", neighbours)
    colors, counts = photo_like(5, 20000)
    alpha = np.random.default_rng(2).integers(0, 256, (colors.shape[0], 1))
    x = np.hstack([colors, alpha]).astype(np.float64)
    pts = km._Points(x, counts, x.astype(np.uint8))
    start = km._kmeanspp(pts, k, np.random.default_rng(0))
    c = start
    labels = km._assign(pts, c)[0]
    for _ in range(8):
        mean, wsum = km._weighted_means(pts, labels, k)
        assert np.all(wsum > 0)
        c = c + 1.9 * (mean - c)
        labels = km._assign(pts, c)[0]
    fast, _, fast_labels = km._hamerly(pts, start, 8, 0.0, relax=1.9)
    assert np.array_equal(fast_labels, labels)
    np.testing.assert_allclose(fast, km._weighted_means(pts, labels, k)[0], atol=1e-6)


def plain_kmeanspp(x: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy weighted k-means++ written plainly (float64, one candidate at a time)."""
    trials = 2 + int(np.log(k))
    cw = np.cumsum(w)
    chosen = [x[min(int(np.searchsorted(cw, rng.random(1)[0] * cw[-1], side="right")), len(x) - 1)]]
    closest = ((x - chosen[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        pot = np.cumsum(w * closest)
        cand = np.minimum(np.searchsorted(pot, rng.random(trials) * pot[-1], side="right"), len(x) - 1)
        options = [np.minimum(closest, ((x - x[c]) ** 2).sum(axis=1)) for c in cand]
        best = int(np.argmin([w @ o for o in options]))
        chosen.append(x[cand[best]])
        closest = options[best]
    return np.array(chosen)


@pytest.mark.parametrize("level", ["colours", "histogram"])
def test_one_run_kmeanspp_equals_a_plain_greedy_kmeanspp(level: str) -> None:
    # One run has its own leaner loop (distances laid out along the points); it must draw and choose as
    # the plain algorithm does, on the colours (table distances) and on a histogram (float distances).
    colors, counts = photo_like(9, 6000)
    pts = km._Points(colors, counts, colors) if level == "colours" else km._coarse(colors, counts, 5)
    got = km._kmeanspp(pts, 40, np.random.default_rng(4))
    np.testing.assert_array_equal(got, plain_kmeanspp(pts.x, pts.w, 40, np.random.default_rng(4)))


def plain_batched_kmeanspp(x: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator, runs: int) -> np.ndarray:
    """`plain_kmeanspp` for several runs drawing as `_kmeanspp` does: the first centroids together, then at
    each step one (runs, trials) block of draws, run by run."""
    trials, m = 2 + int(np.log(k)), len(x)
    cw = np.cumsum(w)
    first = np.minimum(np.searchsorted(cw, rng.random(runs) * cw[-1], side="right"), m - 1)
    chosen = [[x[f]] for f in first]
    closest = [((x - x[f]) ** 2).sum(axis=1) for f in first]
    for _ in range(1, k):
        draws = rng.random((runs, trials))
        for r in range(runs):
            pot = np.cumsum(w * closest[r])
            cand = np.minimum(np.searchsorted(pot, draws[r] * pot[-1], side="right"), m - 1)
            options = [np.minimum(closest[r], ((x - x[c]) ** 2).sum(axis=1)) for c in cand]
            best = int(np.argmin([w @ o for o in options]))
            chosen[r].append(x[cand[best]])
            closest[r] = options[best]
    return np.array(chosen)


@pytest.mark.parametrize("level", ["colours", "histogram"])
def test_batched_kmeanspp_equals_plain_greedy_runs(level: str) -> None:
    # Several runs advance together, each run's closest distances kept along the points (a histogram's
    # float distances bounded by them before being turned, the colours' table distances after): each run
    # must draw and choose as the plain algorithm does.
    colors, counts = photo_like(9, 6000)
    pts = km._Points(colors, counts, colors) if level == "colours" else km._coarse(colors, counts, 5)
    got = km._kmeanspp(pts, 20, np.random.default_rng(6), 3)
    np.testing.assert_array_equal(got, plain_batched_kmeanspp(pts.x, pts.w, 20, np.random.default_rng(6), 3))


def test_occupied_counts_the_bins_of_a_histogram() -> None:
    # Hand-computed: at 7 bits, 0 and 1 share a bin, 2 does not; 255 is alone.
    colors = np.array([[0, 0, 0], [1, 1, 1], [2, 0, 0], [255, 255, 255]], dtype=np.uint8)
    assert km._occupied(colors, 7) == 3
    assert km._occupied(colors, 1) == 2
    colors, counts = photo_like(10, 20000)
    for bits in (5, 6, 7):
        assert km._occupied(colors, bits) == km._coarse(colors, counts, bits).m


def test_one_run_warm_levels_stay_near_fully_converged_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    # With one run (k = 256) the histogram levels stop early and the colours' own Lloyd finishes: J within
    # 0.5 % of the fit whose every level converges, and the same centroids on a second call. (Each colour
    # twice the pixels, the same fit: a colour for nearly every pixel climbs in a few updates a level whatever
    # the tol, `_NOISY`, see test_kmeans_noisy.py.)
    colors, counts = photo_like(11, 25000)
    counts = counts * 2
    k = 256
    assert km._restarts(k) == 1 and len(colors) * k > km._COARSE_WORK
    fast = km.fit(colors, counts, k, seed=0)
    assert np.array_equal(fast, km.fit(colors, counts, k, seed=0))
    monkeypatch.setattr(km, "_WARM_TOL", km._LEVEL_TOL)
    full = km.fit(colors, counts, k, seed=0)
    assert not np.array_equal(fast, full)  # the warm levels did stop early
    pts = km._Points(colors, counts, colors)
    j_fast, j_full = (float(counts @ km._assign(pts, c)[1]) for c in (fast, full))
    assert j_fast <= 1.005 * j_full


@pytest.mark.parametrize("level", ["colours", "histogram"])
def test_one_run_kmeanspp_labels_are_the_nearest_centroids(level: str) -> None:
    colors, counts = photo_like(12, 6000)
    pts = km._Points(colors, counts, colors) if level == "colours" else km._coarse(colors, counts, 5)
    labels = np.full(pts.m, -1, dtype=np.intp)
    cent = km._kmeanspp_one(pts, 40, np.random.default_rng(5), labels)
    np.testing.assert_array_equal(labels, km._assign(pts, cent)[0])


def _chelsea(size: tuple[int, int]) -> np.ndarray:
    from pathlib import Path

    from PIL import Image

    path = Path(__file__).resolve().parent.parent / "samples" / "chelsea.png"
    return np.asarray(Image.open(path).convert("RGB").resize(size, Image.LANCZOS))


def test_best_runs_gives_the_best_then_its_near_ties_in_order() -> None:
    px = _chelsea((200, 150)).reshape(-1, 3)
    d = km.distinct(px)
    pts = km._Points(d.colors, d.counts, d.colors)
    tol = 1e-4 * float(km._variance(d.colors, d.counts).mean())
    one = km._best_runs(pts, 16, np.random.default_rng(4), 16, 300, tol)
    ties = km._best_runs(pts, 16, np.random.default_rng(4), 16, 300, tol, near=0.002, most=3)
    wide = km._best_runs(pts, 16, np.random.default_rng(4), 16, 300, tol, near=1.0, most=3)
    assert len(one) == 1 and 1 <= len(ties) <= len(wide) == 3
    assert np.array_equal(ties[0][0], one[0][0])  # the best first, as the single run
    centroids, labels = km._best_of_restarts(pts, 16, np.random.default_rng(4), 16, 300, tol)
    assert np.array_equal(centroids, one[0][0]) and np.array_equal(labels, one[0][2])


def test_near_tied_restarts_all_climb_and_the_finest_level_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    """chelsea at 600x450, K=16, seed 4: two restarts tie within 0.2 % on the 5-bit level; the one ranked
    second there ends lower (at 12 MP, seed 0, the ranked first ended 1.7 % above scikit-learn's J)."""
    import kmq

    px = _chelsea((600, 450))
    both = kmq.compress(px, 16, seed=4).distortion
    monkeypatch.setattr(km, "_TIE_RUNS", 1)
    first = kmq.compress(px, 16, seed=4).distortion
    assert both < first


def test_a_guess_is_asked_for_only_where_nearest_uses_it():
    # RGB, 64 < K < 512 (from K = 25 up to 2^18 colours, round 47), at least 8 colours an entry: the local search
    # up to 2^18 colours, the guess's neighbour lists above; elsewhere the guess would be an (M,) array made for
    # nothing.
    assert km.takes_guess(65_536, 3, 256) and km.takes_guess(1 << 18, 3, 65)
    assert km.takes_guess((1 << 18) + 1, 3, 256) and km.takes_guess(12_000_000, 3, 65)
    assert km.takes_guess(65_536, 3, 64) and km.takes_guess(200_000, 3, 25)
    assert not km.takes_guess(65_536, 3, 24)          # brute force at small K
    assert not km.takes_guess((1 << 18) + 1, 3, 64)
    assert not km.takes_guess(1_000, 3, 256)           # too few colours an entry
    assert not km.takes_guess(1 << 20, 3, 512)         # the k-d tree at large K
    assert not km.takes_guess(65_536, 1, 256)
    # RGBA from K = 65 (its cells are coarse): the guess's neighbour lists; pairs of channels up to 32, and up
    # to 64 where no guess is made (round 34: from K = 33 the guess reads fewer entries than the pairs).
    assert km.takes_guess(65_536, 4, 256) and km.takes_guess(1 << 20, 4, 65)
    assert km.takes_guess(1 << 20, 4, 64) and not km.takes_guess(1 << 20, 4, 32)
    assert not km.takes_guess(65_536, 4, 64) and not km.takes_guess(1_000, 4, 256)


def test_rgb_over_local_max_takes_a_guess_with_the_labels_of_the_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    """RGB above `_LOCAL_MAX` colours at 64 < K < 512 reads the entries near a guess (the fit's clusters):
    any guess, even a bad one, gives the labels and distances of the cells of the colour cube, ties to
    the lower entry; and the file is the one made without the guess."""
    import kmq

    monkeypatch.setattr(km, "_LOCAL_MAX", 1000)
    rng = np.random.default_rng(7)
    palette = np.unique(rng.integers(0, 256, (100, 3), dtype=np.uint8), axis=0)
    points = rng.integers(0, 256, (3000, 3), dtype=np.uint8)
    # Midway between entries 0 and 1 (their sum even in every channel): a tie, which entry 0 wins.
    palette[1] = palette[0] ^ np.uint8(2)
    points[0] = (palette[0].astype(int) + palette[1]) // 2
    assert km._nearest_way(len(points), 3, len(palette)) == "cells" and km.takes_guess(len(points), 3, len(palette))
    cells = km.nearest(points, palette)
    d = sum((points[:, c, None].astype(np.int64) - palette[None, :, c]) ** 2 for c in range(3))
    assert np.array_equal(cells[0], np.argmin(d, axis=1)) and cells[0][0] == 0
    assert np.array_equal(cells[1], d.min(axis=1))
    for guess in (rng.integers(0, len(palette), len(points)), np.full(len(points), len(palette) - 1)):
        got = km.nearest(points, palette, guess.astype(np.intp))
        assert np.array_equal(got[0], cells[0]) and np.array_equal(got[1], cells[1])
    # Through compress: 4 096 colours at K = 80, with the fit's guess and without.
    px = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    guessed = kmq.compress(px, k=80, seed=3).to_bytes()
    monkeypatch.setattr(km, "takes_guess", lambda m, channels, k: False)
    assert kmq.compress(px, k=80, seed=3).to_bytes() == guessed


def test_thinned_merges_the_light_bins_by_4_bit_cell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(km, "_THIN_FROM_RGB", 3)
    monkeypatch.setattr(km, "_THIN_SHARE", 0.1)  # under 16.2 of the 162 pixels: light
    x = np.array([[4, 4, 4], [3, 3, 3], [12, 12, 12], [200, 20, 20], [100, 100, 100], [5, 9, 14]], np.float64)
    w = np.array([100, 1, 3, 2, 50, 6], np.float64)
    thin = km._thinned(km._Points(x, w))
    # The heavy bins first, in order; then the light ones by 4-bit cell: (0,0,0) holds 1, 2 and 5; (12,1,1) 3.
    assert thin.inverse.tolist() == [0, 2, 2, 3, 1, 2]
    assert thin.w.tolist() == [100, 50, 10, 2]
    merged = (np.array([3, 3, 3]) * 1 + np.array([12, 12, 12]) * 3 + np.array([5, 9, 14]) * 6) / 10
    np.testing.assert_allclose(thin.x, [[4, 4, 4], [100, 100, 100], merged, [200, 20, 20]], rtol=1e-15)
    # Not at or below _THIN_FROM_RGB bins, nor with 4 channels, nor where fewer than a quarter of the bins go.
    assert km._thinned(km._Points(x[:3], w[:3])) is None
    assert km._thinned(km._Points(np.hstack([x, x[:, :1]]), w)) is None
    assert km._thinned(km._Points(x, np.full(6, 10.0))) is None


def test_thinned_restarts_are_finished_on_every_bin_and_end_near(monkeypatch: pytest.MonkeyPatch) -> None:
    # The rule made to fire on a small noisy case: two thirds of its 10 882 5-bit bins are light.
    colors, counts = photo_like(2)
    k = 16
    whole = km.fit(colors, counts, k, seed=0)
    monkeypatch.setattr(km, "_THIN_FROM_RGB", 4096)
    monkeypatch.setattr(km, "_THIN_SHARE", 1e-4)
    thinned, finished = [], []
    real_thinned, real_hamerly = km._thinned, km._hamerly
    monkeypatch.setattr(km, "_thinned", lambda level: thinned.append(real_thinned(level)) or thinned[-1])
    monkeypatch.setattr(km, "_hamerly", lambda pts, *a, **kw: finished.append(pts.m) or real_hamerly(pts, *a, **kw))
    thin = km.fit(colors, counts, k, seed=0)
    coarse = km._coarse(colors, counts, km._COARSE_BITS)
    assert thinned[0] is not None and thinned[0].m < 0.6 * coarse.m
    assert finished[0] == coarse.m  # the chosen run finished on the whole level, not its stand-in
    assert np.array_equal(thin, km.fit(colors, counts, k, seed=0))
    assert weighted_j(colors, counts, thin) <= 1.005 * weighted_j(colors, counts, whole)


def test_thinned_rgb_from_10_000_bins_rgba_from_12_000() -> None:
    """RGB's restarts take a stand-in from 10 000 bins (a 12 MP noisy gradient's 10 700: 0.03-0.04 s less, the
    same J within 0.08 %); coreset's RGBA one still from 12 000."""
    rng = np.random.default_rng(4)
    m = 11_000
    x = rng.integers(0, 256, (m, 4)).astype(np.float64)
    w = np.ones(m)
    w[:100] = 1e6  # all but these 100 bins hold under 1e-5 of the pixels
    rgb = km._thinned(km._Points(x[:, :3], w))
    assert rgb is not None and rgb.m < m // 2 and rgb.w.sum() == w.sum()
    assert km._thinned(km._Points(x, w), share=1e-5, bits=3, channels=4) is None
    assert km._thinned(km._Points(x[:9_999, :3], w[:9_999])) is None


@pytest.mark.parametrize("k", [1, 2, 16, 33])
def test_down_matches_argmin_and_runner_up_with_ties(k):
    """`_down` (the element-wise walk down (K, n) distances) gives argmin's first-of-equals label, the
    least value, and the least of the others, as the reductions it replaced; ties made on purpose."""
    rng = np.random.default_rng(k)
    d = rng.integers(0, 6, (k, 500)).astype(np.float32)  # few values: many ties
    lab, near, two = km._down(d.copy(), second=True)  # d itself is overwritten
    assert np.array_equal(lab, np.argmin(d, axis=0))
    assert np.array_equal(near, d.min(axis=0))
    rest = d.copy()
    rest[lab, np.arange(d.shape[1])] = np.inf
    assert np.array_equal(two, rest.min(axis=0))
    assert km._down(d, second=False)[2] is None
    # Laid out turned (not C-contiguous), as a table look-up's distances are: the same answers.
    turned = np.ascontiguousarray(d.T).T
    lab2, near2, two2 = km._down(turned, second=True)
    assert np.array_equal(lab2, lab) and np.array_equal(near2, near) and np.array_equal(two2, two)


@pytest.mark.parametrize("rows", [1, 2, 5, 16, 255, 256, 300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_first_least_is_min_and_argmin_down_the_columns(rows, dtype):
    """`_first_least` (a minimum, flags and their weighed greatest, all along the rows) gives the least value
    down each column and argmin's first row holding it, with many ties, from 256 rows on in uint16 weights,
    on (L, n) and on (runs, L, n) as `_lloyd_runs` passes them."""
    rng = np.random.default_rng(rows)
    d = rng.integers(0, 4, (rows, 700)).astype(dtype)  # few values: many ties
    least, row = km._first_least(d, km._FIRST_ROWS[rows])
    assert row.dtype == np.intp and least.dtype == dtype
    assert np.array_equal(row, np.argmin(d, axis=0))
    assert np.array_equal(least, d.min(axis=0))
    d3 = rng.integers(0, 4, (3, rows, 50)).astype(dtype)
    least, row = km._first_least(d3, km._FIRST_ROWS[rows])
    assert np.array_equal(row, np.argmin(d3, axis=1))
    assert np.array_equal(least, d3.min(axis=1))


def test_down_over_runs_matches_argmin():
    """`_down` of (runs, K, n) distances, as `_lloyd_runs` calls it: each run's own argmin and minimum."""
    d = np.random.default_rng(3).integers(0, 5, (4, 33, 200)).astype(np.float32)
    lab, near, two = km._down(d, second=False)
    assert two is None
    assert np.array_equal(lab, np.argmin(d, axis=1))
    assert np.array_equal(near, d.min(axis=1))


def test_lloyd_runs_labels_are_argmin_of_float_distances():
    """`_lloyd_runs`'s passes laid along the points label each point as argmin over its run's float32
    distances would (first of equals), here on a histogram-like float level with duplicate points."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 8, (700, 4)).astype(np.float64) * 9.5  # coarse grid: equal distances happen
    pts = km._Points(x, rng.integers(1, 50, 700).astype(np.float64))
    starts = x[rng.integers(0, 700, (5, 6))]
    cent, _, labels = km._lloyd_runs(pts, starts, 0, 0.0)
    for r in range(5):
        d = km._float_dist2(pts.cols32, slice(0, pts.m), cent[r])
        assert np.array_equal(labels[r], np.argmin(d, axis=1))


def test_light_merged_merges_light_bins_per_coarser_cell():
    # 7-bit bins along channel 0: {0,1} and {2,3} (one 6-bit cell), {4,5} and {6,7} (the next one).
    colors = np.zeros((8, 4), dtype=np.uint8)
    colors[:, 0] = np.arange(8)
    counts = np.array([1, 1, 1, 1, 5, 5, 1, 1])
    pts = km._merged(*km._colour_histogram(colors, counts, 7), 7, below=3, enough=4, m=len(colors))
    assert pts.m == 3
    # the two light bins of the first cell become one point; the light one alone in the second stays itself
    assert pts.x[pts.inverse, 0].tolist() == [1.5] * 4 + [4.5] * 2 + [6.5] * 2
    assert pts.w[pts.inverse].tolist() == [4.0] * 4 + [10.0] * 2 + [2.0] * 2
    assert pts.exact and np.array_equal(pts.wx[0][pts.inverse], [6.0] * 4 + [45.0] * 2 + [13.0] * 2)


@pytest.mark.parametrize("below, enough", [(0, 4), (3, 5), (100, 4)])
def test_light_merged_keeps_the_level_unmerged(below, enough):
    # nothing light, a level under `enough` bins (not the finest), or one that would not halve the colours
    colors = np.zeros((8, 4), dtype=np.uint8)
    colors[:, 0] = np.arange(8)
    counts = np.array([1, 1, 1, 1, 5, 5, 1, 1])
    if below == 100:
        colors, counts = colors[1::2], counts[1::2]
    pts = km._merged(*km._colour_histogram(colors, counts, 7), 7, below=below, enough=enough, m=len(colors))
    ref = km._coarse(colors, counts, 7)
    assert np.array_equal(pts.x, ref.x) and np.array_equal(pts.w, ref.w)
    assert np.array_equal(pts.inverse, ref.inverse)


def test_rgba_of_150_000_to_200_000_colours_with_restarts_ends_on_the_mixed_level(monkeypatch):
    """Round 39: RGBA of 150 000 to 200 000 colours fitted with several restarts ends on its mixed 6-bit level in
    momentum updates (`_MIXED_UPDATES` since round 48), with no plain polish over every colour (it took 33 updates
    over 192 000 colours of a 0.25 MP photo under blurred noise at K = 64). One run: tests/test_kmeans_rgba_r48.py."""
    rng = np.random.default_rng(7)
    centres = rng.uniform(50, 205, (8, 4))
    x = np.clip(np.rint(centres[rng.integers(0, 8, 190_000)] + rng.normal(0, 8, (190_000, 4))), 0, 255)
    colors, counts = np.unique(x.astype(np.uint8), axis=0, return_counts=True)
    m = colors.shape[0]
    assert 150_000 < m <= 200_000 and km._restarts(64) > 1
    seen: list[tuple] = []  # (points, max_iter, relax, momentum) of each `_hamerly`
    orig = km._hamerly
    signature = inspect.signature(orig)

    def spy(*a, **kw):
        given = signature.bind(*a, **kw)
        given.apply_defaults()
        seen.append((a[0].m, *(given.arguments[n] for n in ("max_iter", "relax", "momentum"))))
        return orig(*a, **kw)

    monkeypatch.setattr(km, "_hamerly", spy)
    clusters = np.full(m, -1, dtype=np.intp)
    c = km.fit(colors, counts, 64, seed=0, clusters=clusters)
    assert c.shape == (64, 4) and clusters.min() >= 0
    assert max(p for p, *_ in seen) * 2 <= m  # nothing on the colours themselves
    assert seen[-1][1:] == (km._MIXED_UPDATES, km._RELAX, km._MOMENTUM)
