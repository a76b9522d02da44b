"""RGBA with varying alpha: every way of finding its distinct colours gives the same colours, counts, pixel
mapping and file, and the labels stay each pixel's exact nearest palette entry.

The paths are chosen by size (`_SPLIT_FROM`, `_RANK_TABLE`, `_FLAGS_MAX`, the RGB colours per pixel); the tests force
each on small images. No timing here: speed is measured by bench/speed_rgba.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import kmeans as km
from kmq.imageio import clear_transparent


def vignette(rgb: np.ndarray) -> np.ndarray:
    """rgb with a radial alpha (opaque centre, transparent corners), as bench/speed.py makes it."""
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    alpha = np.clip(255 * (1.2 - r), 0, 255).astype(np.uint8)
    return np.dstack([rgb, alpha])


def graphics(h: int = 90, w: int = 120) -> np.ndarray:
    """Flat shapes of a few colours whose alpha edges are anti-aliased (alpha ramps over 3 pixels)."""
    yy, xx = np.mgrid[0:h, 0:w]
    px = np.zeros((h, w, 4), np.uint8)
    px[..., :3] = [250, 250, 250]
    px[yy < h // 2, :3] = [200, 30, 30]
    px[(xx > w // 2) & (yy > h // 3), :3] = [20, 90, 200]
    disc = np.hypot(yy - h / 2, xx - w / 2)
    px[..., 3] = np.clip((h / 2.5 - disc) * 85, 0, 255).astype(np.uint8)
    return px


def noise(h: int = 60, w: int = 80, levels: int = 256, seed: int = 0) -> np.ndarray:
    """Uniform RGBA noise; few RGB levels make many alphas per RGB colour."""
    rng = np.random.default_rng(seed)
    px = (rng.integers(0, levels, (h, w, 4)) * (255 // max(1, levels - 1))).astype(np.uint8)
    px[..., 3] = rng.integers(0, 256, (h, w))
    return px


@pytest.fixture
def photo(samples) -> np.ndarray:
    return vignette(np.asarray(Image.open(samples / "chelsea.png").convert("RGB"))[:120, :160])


# Each way `distinct` can take for RGBA whose alpha varies: (forced settings, the path it must take).
PATHS = {
    "argsort": {"_SPLIT_FROM": 1 << 62},
    "flags": {"_SPLIT_FROM": 1, "_FEW_RGB": 0, "_RANK_TABLE": 0, "_FLAGS_MAX": 1 << 40, "_INDEX_CHUNK": 7},
    "mask-bytes": {"_SPLIT_FROM": 1, "_FEW_RGB": 0, "_RANK_TABLE": 0, "_FLAGS_MAX": 0, "_INDEX_CHUNK": 1000},
    # ranks from one table; counts by bincount where the colours are no more than a chunk, else add.at
    "rank-table": {"_SPLIT_FROM": 1, "_FEW_RGB": 0, "_RANK_TABLE": 1 << 40, "_INDEX_CHUNK": 1000},
    # (RGB, alpha) pairs counted as they are made, whatever the RGB colours (`_distinct_few_rgb`)
    "few-rgb": {"_SPLIT_FROM": 1, "_FEW_RGB": 1 << 40, "_INDEX_CHUNK": 1000},
}


def force(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    for name, value in PATHS[path].items():
        monkeypatch.setattr(km, name, value)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("kind", ["photo", "graphics", "noise", "few-rgb-noise", "one-pixel-per-rgb"])
def test_distinct_rgba_is_exact_on_every_path(monkeypatch, photo, path, kind):
    px = {"photo": photo, "graphics": graphics(), "noise": noise(), "few-rgb-noise": noise(levels=3),
          "one-pixel-per-rgb": noise(levels=256, h=4, w=8)}[kind].reshape(-1, 4)
    force(monkeypatch, path)
    d = km.distinct(px)
    ref, inverse, counts = np.unique(px, axis=0, return_inverse=True, return_counts=True)
    assert np.array_equal(d.colors, ref) and d.colors.dtype == np.uint8
    assert np.array_equal(d.counts, counts) and d.counts.dtype == np.int64
    assert np.array_equal(d._values, km._pack(ref))
    assert np.array_equal(d.spread(np.arange(len(ref))), inverse.ravel())
    assert np.array_equal(d.spread(np.arange(len(ref), dtype=np.uint16)), inverse.ravel().astype(np.uint16))


def test_split_path_falls_back_to_sorting_when_rgb_colours_are_many(monkeypatch):
    """Noise with one pixel per RGB colour would cost 32 bytes a pixel in alpha sets: it is sorted."""
    monkeypatch.setattr(km, "_SPLIT_FROM", 1)
    monkeypatch.setattr(km, "_FEW_RGB", 0)  # noise of 27 RGB colours would be counted pair by pair
    calls = []
    monkeypatch.setattr(km, "_distinct_by_rgb", lambda *a: calls.append(a))
    d = km.distinct(noise().reshape(-1, 4))
    assert calls == [] and d.counts.sum() == 60 * 80
    km.distinct(noise(levels=3).reshape(-1, 4))
    assert len(calls) == 1


def test_extreme_colours_and_alphas(monkeypatch):
    """Alpha 0, 63, 64 and 255 fall at the edges of the 64-bit words; RGB 0 and 2**24 - 1 at the table's."""
    px = np.array([[255, 255, 255, 255], [0, 0, 0, 0], [255, 255, 255, 0], [0, 0, 0, 63], [0, 0, 0, 64],
                   [0, 0, 0, 255], [255, 255, 255, 255], [0, 0, 0, 64]], np.uint8)
    for path in PATHS:
        force(monkeypatch, path)
        d = km.distinct(px)
        assert d.colors.tolist() == [[0, 0, 0, 0], [0, 0, 0, 63], [0, 0, 0, 64], [0, 0, 0, 255],
                                     [255, 255, 255, 0], [255, 255, 255, 255]]
        assert d.counts.tolist() == [1, 1, 2, 1, 1, 2]
        assert d.spread(np.arange(6)).tolist() == [5, 0, 4, 1, 2, 3, 5, 2]


@pytest.mark.parametrize("rgbs", [1, 3, 40])
def test_alpha_mask_bytes_equal_the_packed_flags_when_pixels_of_a_chunk_share_bytes(monkeypatch, rgbs):
    """Every alpha of a few RGB colours in one chunk: up to 8 pixels per byte, each with another bit, so
    the rounds that write again are all needed; the result is the flags' packed bits."""
    rng = np.random.default_rng(rgbs)
    pos = (rng.integers(0, rgbs, 5000) * 256 + rng.integers(0, 256, 5000)).astype(np.int32)
    pos[:256] = np.arange(256)  # RGB colour 0 with every alpha
    flags = np.zeros(rgbs * 256, bool)
    flags[pos] = True
    ref = np.packbits(flags, bitorder="little").view("<u8")
    for chunk in (5000, 64, 1):
        monkeypatch.setattr(km, "_INDEX_CHUNK", chunk)
        monkeypatch.setattr(km, "_FLAGS_MAX", 0)
        got = km._alpha_masks(pos, rgbs)
        assert got.dtype == np.uint64 and np.array_equal(got, ref)
        monkeypatch.setattr(km, "_FLAGS_MAX", 1 << 40)
        assert np.array_equal(km._alpha_masks(pos, rgbs), ref)


def test_bit_rank_counts_the_set_flags_before_each():
    rng = np.random.default_rng(3)
    flags = rng.random(64 * 50) < 0.3
    flags[[0, 63, 64, 64 * 50 - 1]] = True
    br = km._BitRank(flags)
    at = np.flatnonzero(flags)
    assert br.count == flags.sum()
    out = np.full(at.size, -1, np.intp)
    br.rank(at, out)
    assert np.array_equal(out, np.arange(at.size))


@pytest.mark.parametrize("channels,bits", [(3, 5), (3, 7), (4, 4), (4, 6), (4, 7)])
def test_colour_histogram_equals_merging_by_full_bin_ids(channels, bits):
    """The 4-channel bins ranked through their first three channels are the bins of the full ids."""
    rng = np.random.default_rng(bits)
    colors = np.unique(rng.integers(0, 256, (3000, channels)).astype(np.uint8), axis=0)
    counts = rng.integers(1, 50, len(colors)).astype(np.int64)
    ids = np.zeros(len(colors), np.int64)
    for c in range(channels):
        ids = (ids << bits) | (colors[:, c] >> (8 - bits))
    occupied, inverse = np.unique(ids, return_inverse=True)
    w = counts.astype(np.float64)
    sums = np.stack([np.bincount(inverse, weights=w * colors[:, c]) for c in range(channels)], axis=1)
    got = km._colour_histogram(colors, counts, bits)
    assert np.array_equal(got[0], inverse.ravel()) and np.array_equal(got[1], occupied)
    assert np.array_equal(got[2], np.bincount(inverse, weights=w)) and np.array_equal(got[3], sums)


def brute_labels(pixels: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(squared distance of every pixel to every entry, each pixel's least)."""
    d = ((pixels.astype(np.int64)[:, None, :] - palette.astype(np.int64)[None]) ** 2).sum(axis=2)
    return d, d.min(axis=1)


@pytest.mark.parametrize("kind", ["photo", "graphics", "noise"])
def test_rgba_labels_are_exact_nearest_and_files_identical_on_every_path(monkeypatch, photo, kind):
    px = {"photo": photo[30:90, 40:120], "graphics": graphics(), "noise": noise()}[kind]
    files = []
    for path in PATHS:
        force(monkeypatch, path)
        img = kmq.compress(px, k=16, seed=2)
        files.append(img.to_bytes())
    assert all(f == files[0] for f in files[1:])
    assert kmq.compress(px, k=16, seed=2).to_bytes() == files[0]  # deterministic
    flat = clear_transparent(px).reshape(-1, 4)  # as kmq reads them: alpha 0 as (0, 0, 0, 0)
    d, best = brute_labels(flat, img.palette)
    labels = img.labels.reshape(-1).astype(np.intp)
    assert np.array_equal(d[np.arange(len(flat)), labels], best)
    assert img.distortion == pytest.approx(float(best.mean()), rel=1e-12)


def test_rgba_through_the_histogram_levels_matches_across_paths(monkeypatch, photo):
    """With many colours the fit runs on histograms (4-channel bins ranked through RGB bins), and above
    _POLISH_MAX on them alone: both are reached here by lowering the thresholds."""
    px = np.concatenate([photo[:60, :80], vignette(noise(60, 80, levels=64, seed=5)[..., :3])], axis=1)
    assert len(km.distinct(px.reshape(-1, 4)).counts) > 8000
    monkeypatch.setattr(km, "_COARSE_ABOVE", 2000)
    for polish_max in (1 << 30, 4000):
        monkeypatch.setattr(km, "_POLISH_MAX", polish_max)
        files = []
        for path in PATHS:
            force(monkeypatch, path)
            files.append(kmq.compress(px, k=8, seed=1).to_bytes())
        assert all(f == files[0] for f in files[1:])


@pytest.mark.parametrize("channels, k", [(4, 1), (4, 2), (4, 15), (4, 16), (4, 17), (4, 64),
                                         (3, 1), (3, 2), (3, 16), (3, 17), (3, 32)])
def test_pair_tables_label_like_brute_force_with_ties_and_extremes(monkeypatch, channels, k):
    """`_nearest_pairs` (RGBA up to K = 64, RGB up to 32, many points) gives the brute force's labels and
    distances: ties to the lower index (repeated and equidistant entries), channel values 0 and 255 at the
    tables' edges, and the largest distance (C x 255^2) shifted by the bits of K entries."""
    rng = np.random.default_rng(k)
    palette = (rng.integers(0, 16, (k, channels)) * 17).astype(np.uint8)
    palette[0] = 255
    if k > 2:
        palette[-1] = palette[1]  # a repeated entry: the lower index must win
    points = rng.integers(0, 256, (5000, channels)).astype(np.uint8)
    points[:1000] = points[:1000] // 17 * 17  # on the palette's grid: exact ties between entries
    corners = [[0, 0, 0, 0], [255, 255, 255, 255], [255, 0, 255, 0], [0, 255, 0, 255]] * 2 + [[0] * 4] * 2
    points[1000:1010] = np.array(corners)[:, :channels]
    d, best = brute_labels(points, palette)
    ref = np.argmin(d, axis=1)  # the first minimum
    labels, dist = km._nearest_pairs(points, palette)
    assert labels.dtype == np.intp and dist.dtype == np.int64
    assert np.array_equal(labels, ref) and np.array_equal(dist, best)
    monkeypatch.setattr(km, "_PAIRS_FROM", 1)  # and through `nearest`, on the sorted colours it gets
    assert all(np.array_equal(a, b) for a, b in zip(km.nearest(points, palette), (labels, dist)))


@pytest.mark.parametrize("channels", [3, 4])
def test_pair_tables_give_the_same_file_as_the_brute_force(monkeypatch, photo, channels):
    px = np.ascontiguousarray(photo[:80, :100, :channels])
    files = []
    for pairs_from in (1 << 62, 1):
        monkeypatch.setattr(km, "_PAIRS_FROM", pairs_from)
        files.append(kmq.compress(px, k=16, seed=3).to_bytes())
    assert files[0] == files[1]


def test_alpha_varying_only_in_the_last_chunk_is_still_varying(monkeypatch):
    """The alpha check stops at the first chunk that varies; one that varies only at the end is still seen."""
    monkeypatch.setattr(km, "_CHUNK", 4)
    px = np.zeros((11, 4), np.uint8)
    px[:, 0] = np.arange(11)
    px[:, 3] = 200
    d = km.distinct(px)
    assert d.colors[:, 3].tolist() == [200] * 11
    assert d._values.tolist() == [i << 16 for i in range(11)]  # one alpha: keyed on RGB
    px[-1, 3] = 7
    d = km.distinct(px)
    assert d._values.tolist() == [(i << 24) | 200 for i in range(10)] + [(10 << 24) | 7]


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch):
    """set(n): split work into up to n parts of at least 50 items, so that these small images split too."""
    from kmq import parallel

    monkeypatch.setattr(parallel, "MIN_PART", 50)
    return lambda n: monkeypatch.setattr(parallel, "_threads", n)


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("kind", ["photo", "graphics", "few-rgb-noise"])
def test_threads_give_the_one_thread_colours_labels_and_files_on_every_path(monkeypatch, threads, photo, path,
                                                                              kind):
    px = {"photo": photo[:60, :80], "graphics": graphics(), "few-rgb-noise": noise(levels=3)}[kind]
    flat = px.reshape(-1, 4)
    force(monkeypatch, path)
    monkeypatch.setattr(km, "_PAIRS_FROM", 1)
    palette = flat[np.random.default_rng(4).choice(len(flat), 16)]
    results = []
    for n in (1, 2, 3):
        threads(n)
        d = km.distinct(flat)
        labels, dist = km.nearest(d.colors, palette)
        results.append((d.colors.tobytes(), d.counts.tobytes(), d.index().tobytes(), labels.tobytes(),
                        dist.tobytes(), kmq.compress(px, k=16, seed=1).to_bytes()))
    assert results[0] == results[1] == results[2]
    ref, counts = np.unique(flat, axis=0, return_counts=True)
    assert results[0][:2] == (ref.tobytes(), counts.tobytes())


def test_alpha_mask_bytes_in_threads_equal_the_packed_flags(monkeypatch, threads):
    """Parts of the pixels share mask bytes (three RGB colours, every alpha): the bits are all there,
    whatever the number of threads."""
    rng = np.random.default_rng(8)
    pos = (rng.integers(0, 3, 20000) * 256 + rng.integers(0, 256, 20000)).astype(np.int32)
    flags = np.zeros(3 * 256, bool)
    flags[pos] = True
    ref = np.packbits(flags, bitorder="little").view("<u8")
    monkeypatch.setattr(km, "_FLAGS_MAX", 0)
    monkeypatch.setattr(km, "_INDEX_CHUNK", 64)
    for n in (1, 2, 3):
        threads(n)
        assert np.array_equal(km._alpha_masks(pos, 3), ref)


def test_alpha_masks_write_again_the_bits_a_thread_lost(monkeypatch):
    """Threads OR-ing bits into shared bytes can write a byte back without another's bit; the check after
    them must restore every such bit. Here the whole second part's writes are lost, deterministically."""
    from kmq import kmeans, parallel

    rng = np.random.default_rng(5)
    rgbs = 40
    pos = rng.integers(0, rgbs * 256, 5000).astype(np.int32)
    expected = np.zeros(rgbs * 256, bool)
    expected[pos] = True
    real, calls = parallel.map_parts, []

    def lossy(fn, n, cost=1):
        calls.append(fn)
        if len(calls) == 1:  # the writing pass: only the first half's writes land
            fn(0, n // 2)
            return [None, None]
        return real(fn, n, cost)

    monkeypatch.setattr(kmeans, "_FLAGS_MAX", 0)  # the in-place bit path
    monkeypatch.setattr(kmeans.parallel, "map_parts", lossy)
    masks = kmeans._alpha_masks(pos, rgbs)
    np.testing.assert_array_equal(masks, np.packbits(expected, bitorder="little").view("<u8"))
    assert len(calls) == 2


# --------------------------------------------------------------------------------------------------
# Large K (from kmeans._LARGE_K): the histogram path, and the split it shares with RGB


def weighted_points(kind: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(channels)
    if kind == "lattice":  # few values a channel: many ties in value, in distance, and equal points
        x = rng.integers(0, 6, (3000, channels)).astype(np.float64) * 40
    elif kind == "bins":  # histogram means: fractions, weights of 1 to 50
        counts = rng.integers(1, 50, 6000)
        x = rng.integers(0, 256 * counts[:, None], (6000, channels)) / counts[:, None]
        return x, counts.astype(np.float64)
    else:  # a few tight clusters and far outliers
        tight = [rng.normal(c, 3, (800, channels)) for c in (30, 120, 200)]
        x = np.concatenate(tight + [rng.uniform(0, 255, (5, channels))])
    return x, rng.integers(1, 9, x.shape[0]).astype(np.float64)


# sha256 (first 16 digits) of `kmeans._split`'s centroids as it made them summing every box each round,
# ordering the chosen boxes' points by lexsort and the 2-means steps' means over all the points (commit a1c6e6c).
SPLIT_BEFORE = {
    (3, 'lattice', 2): '9b95292e4e1e2b5f',
    (3, 'lattice', 37): 'a11b0adf25950496',
    (3, 'lattice', 300): 'bd4bbf9d6a374ac7',
    (3, 'bins', 2): '7a90cfd7ff4c808c',
    (3, 'bins', 37): '349bfb5bb447d771',
    (3, 'bins', 300): 'c9c8ae9f0676f408',
    (3, 'clusters', 2): 'dc4d83fef2372c00',
    (3, 'clusters', 37): '85d100f99850f206',
    (3, 'clusters', 300): 'fbb46d165da29cbd',
    (4, 'lattice', 2): '591f64915c93017e',
    (4, 'lattice', 37): 'c307bc6e97da4877',
    (4, 'lattice', 300): '75cc548d3e14e2a6',
    (4, 'bins', 2): 'ffbb8a8363dc45a9',
    (4, 'bins', 37): '889da60446d2220b',
    (4, 'bins', 300): '2bc33d8a542e8e13',
    (4, 'clusters', 2): '1a504ae61732887e',
    (4, 'clusters', 37): '42ad011a8475f2ce',
    (4, 'clusters', 300): 'c408b1248b105ea8',
}


@pytest.mark.parametrize("channels", [3, 4])
@pytest.mark.parametrize("kind", ["lattice", "bins", "clusters"])
@pytest.mark.parametrize("k", [2, 37, 300])
def test_split_gives_the_centroids_it_gave_summing_every_box_each_round(channels, kind, k):
    import hashlib

    x, w = weighted_points(kind, channels)
    assert hashlib.sha256(km._split(x, w, k).tobytes()).hexdigest()[:16] == SPLIT_BEFORE[(channels, kind, k)]


@pytest.fixture
def busy_rgba(samples) -> np.ndarray:
    """chelsea under a vignette with bit 0 of every channel random: 135 000 pixels, far more colours than the
    lowered _POLISH_MAX below, 47 000 6-bit bins."""
    px = vignette(np.asarray(Image.open(samples / "chelsea.png").convert("RGB")))
    return px ^ np.random.default_rng(0).integers(0, 2, px.shape, dtype=np.uint8)


def large_k_on_the_histogram(monkeypatch, busy_rgba) -> tuple[np.ndarray, int]:
    """busy_rgba's pixels (transparent ones cleared) and its 6-bit bins, with the histogram path taking k from
    kmeans._LARGE_K lowered to 40 and _POLISH_MAX lowered below its colours."""
    from kmq import coreset

    monkeypatch.setattr(km, "_POLISH_MAX", 20000)
    monkeypatch.setattr(km, "_FINE_ENOUGH", 1000)
    monkeypatch.setattr(km, "_LARGE_K", 40)
    monkeypatch.setattr(coreset, "K_MAX", 39)
    monkeypatch.setattr(coreset, "FROM", 1)
    flat = clear_transparent(busy_rgba).reshape(-1, 4)
    return flat, coreset.Histogram(flat).bins


@pytest.mark.parametrize("case", ["7-bit", "6-bit", "6-bit, sample short"])
def test_large_k_through_the_histogram_gives_the_file_through_the_distinct_colours(monkeypatch, busy_rgba, case):
    """From kmeans._LARGE_K (lowered to 40) to coreset.LARGE_MAX, RGBA whose alpha varies is fitted on the level fit
    takes (the 6-bit histogram where it has _FINE_ENOUGH bins per centroid, else the 7-bit one) made from the
    pixels, and labelled by cell: the same file as through the distinct colours, progress reported alike."""
    from kmq import coreset

    flat, six = large_k_on_the_histogram(monkeypatch, busy_rgba)
    k = six // 1000 + 3 if case == "7-bit" else six // 1000 - 3
    if case == "6-bit, sample short":  # the sample shows too few 6-bit bins: the 7-bit histogram is made too
        monkeypatch.setattr(coreset, "_SAMPLE_BITS", 13)
    hist = coreset.Histogram(flat, min_bins=coreset.min_bins(k))
    assert (hist.fine is not None) == (case != "6-bit") and hist.ids is not None
    levels = []
    real = km.fit_large
    monkeypatch.setattr(km, "fit_large", lambda counts, *a, **kw: levels.append(len(counts)) or real(counts, *a, **kw))
    calls = []
    img = kmq.compress(busy_rgba, k=k, progress=lambda done, total: calls.append((done, total)))
    assert levels == [six if case != "7-bit" else len(hist.fine.counts)]
    monkeypatch.setattr(coreset, "FROM", 1 << 62)
    through = []
    assert kmq.compress(busy_rgba, k=k, progress=lambda done, total: through.append((done, total))).to_bytes() == \
        img.to_bytes()
    assert calls == through and len(calls) >= 5
    least = km.nearest(flat, img.palette)[1]
    got = ((flat.astype(np.int64) - img.palette[img.labels.reshape(-1)].astype(np.int64)) ** 2).sum(axis=1)
    assert np.array_equal(got, least) and img.distortion == least.sum() / len(least)


def test_the_histogram_path_takes_k_up_to_its_small_k_bound_and_from_large_k_to_its_own(monkeypatch, busy_rgba):
    from kmq import coreset

    monkeypatch.setattr(km, "_LARGE_K", 40)
    monkeypatch.setattr(coreset, "K_MAX", 30)
    monkeypatch.setattr(coreset, "FROM", 1)
    flat = busy_rgba.reshape(-1, 4)
    taken = [k for k in (2, 30, 31, 39, 40, coreset.LARGE_MAX, coreset.LARGE_MAX + 1) if coreset.applies(flat, k)]
    assert taken == [2, 30, 40, coreset.LARGE_MAX]


@pytest.mark.parametrize("kind", ["lattice", "bins", "clusters"])
@pytest.mark.parametrize("k", [2, 37, 300])
def test_bounded_lloyd_gives_the_tree_lloyd_centroids(kind, k):
    """The 7-bit level's updates after the warm-up keep a point's centroid by Hamerly's bounds and query the
    tree only for the others: the same labels, so the same centroids bit for bit, from a split's start (far
    from converged, empty clusters reseeded on the lattice) and from a converged one."""
    x, w = weighted_points(kind, 4)
    pts = km._Points(x, w)
    start = km._split(x, w, k)
    for max_iter, tol in ((20, 0.0), (5, 1e-3)):
        assert np.array_equal(km._lloyd_bounded(pts, start, max_iter, tol), km._lloyd_tree(pts, start, max_iter, tol))
    warm = km._lloyd_tree(pts, start, 20, 0.0)
    assert np.array_equal(km._lloyd_bounded(pts, warm, 20, 0.0), km._lloyd_tree(pts, warm, 20, 0.0))


def test_bounded_lloyd_keeps_points_a_far_centroid_never_neared(monkeypatch):
    """One centroid's long move (250 -> ~200 per channel, onto its own 50 points) lowers the bounds of the
    points of the 40 centroids far from it by their neighbours' moves, not by its own: after the first update
    under a tenth of the 4000 others go back to the tree (Hamerly's global bound sent 3029), and the
    centroids are still the tree Lloyd's."""
    import scipy.spatial

    queried = []

    class Counting(scipy.spatial.cKDTree):
        def query(self, x, k=1, **kw):
            queried.append(np.asarray(x).shape[0])
            return super().query(x, k=k, **kw)

    rng = np.random.default_rng(0)
    near = rng.integers(40, 80, (4000, 4)).astype(np.float64)
    far = rng.integers(190, 210, (50, 4)).astype(np.float64)
    ones = np.ones(near.shape[0])
    start = km._lloyd_tree(km._Points(near, ones), km._split(near, ones, 40), 50, 0.0)
    start = np.concatenate([start, np.full((1, 4), 250.0)])
    pts = km._Points(np.concatenate([near, far]), np.ones(4050))
    monkeypatch.setattr(scipy.spatial, "cKDTree", Counting)
    got = km._lloyd_bounded(pts, start, 4, 0.0)
    monkeypatch.undo()
    # Calls: every point, the centroids, the points past their bounds, ...
    assert queried[0] == 4050 and queried[1] == 41
    assert queried[2] < 400
    assert np.array_equal(got, km._lloyd_tree(pts, start, 4, 0.0))


def test_nearest_around_matches_every_centroid_and_leaves_ties_to_the_tree(monkeypatch):
    """Points within half of R_a of their centroid a (after the centroids moved) find their nearest among
    a's 4 nearest centroids (a itself first): the one measuring every centroid finds, with its distance and
    a lower bound at most the second's; a point halfway between two centroids (a tie) and those whose row
    lacks their own centroid go back for the tree (their places among the rows), in blocks of any size."""
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(5)
    centroids = rng.uniform(0, 255, (60, 4))
    x = rng.uniform(0, 255, (3000, 4))
    labels = cKDTree(centroids).query(x)[1]
    centroids += rng.normal(0, 6, centroids.shape)  # an update: some points change centroid
    gaps, around = cKDTree(centroids).query(centroids, k=5)
    reach = gaps[:, 4]
    # Tie: exactly between centroids 0 and its nearest neighbour, labelled 0.
    x[0] = (centroids[0] + centroids[around[0, 1]]) / 2
    labels[0] = 0
    upper = np.sqrt(((x - centroids[labels]) ** 2).sum(axis=1))
    rows = np.flatnonzero(2 * upper < reach[labels])
    assert rows.size > 100 and rows[0] == 0
    gone = labels[rows[rows > 0][0]]  # a centroid (not 0) whose own row loses it
    around[gone, 0] = around[gone, 4]
    lacking = rows[labels[rows] == gone]
    labels_in, upper_in, lower = labels.copy(), upper.copy(), np.full(3000, -1.0)
    hood = km._Around(centroids, around, reach)
    back = km._nearest_around(x[rows], rows, hood, labels_in, upper_in, lower)
    assert rows[back].tolist() == [0, *lacking.tolist()]
    for block in (1, 7, 64):
        monkeypatch.setattr(km, "_AROUND_BLOCK", block)
        again = labels.copy(), upper.copy(), np.full(3000, -1.0)
        assert np.array_equal(km._nearest_around(x[rows], rows, hood, *again), back)
        assert all(np.array_equal(a, b) for a, b in zip(again, (labels_in, upper_in, lower)))
    done = np.setdiff1d(rows, [0, *lacking.tolist()])
    d = np.sqrt(((x[done, None, :] - centroids[None]) ** 2).sum(axis=2))
    assert np.array_equal(labels_in[done], d.argmin(axis=1)) and np.any(labels_in[done] != labels[done])
    # (float32 distances: bounds widened by their rounding, under a thousandth here)
    assert np.all(upper_in[done] >= d.min(axis=1)) and np.allclose(upper_in[done], d.min(axis=1), rtol=0, atol=1e-3)
    second = np.sort(d, axis=1)[:, 1]
    assert np.all(lower[done] <= second) and np.all(lower[done] > upper_in[done])
    untouched = np.setdiff1d(np.arange(3000), done)
    assert np.all(lower[untouched] == -1.0) and np.array_equal(labels_in[untouched], labels[untouched])


def test_nearest_around_in_float32_leaves_what_its_rounding_could_decide_to_the_tree():
    """The neighbours' distances are float32: points whose two nearest differ by less than that rounding
    could move them (here a part in ten million of the squared distance, above the float64 margin of a part
    in a billion) go to the tree; those a part in ten thousand apart are labelled there, their exact nearest,
    with bounds that hold: upper at least, lower at most the exact distances."""
    centroids = np.array([[100.0, 100.0, 100.0, 100.0], [110.0, 100.0, 100.0, 100.0], [200.0, 200, 200, 200]])
    around = np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0]])
    reach = np.sqrt(((centroids[around[:, 2]] - centroids) ** 2).sum(axis=1))
    hood = km._Around(centroids, around, reach)
    x = np.zeros((4, 4)) + 100.0
    # squared distances to 0 and 1 of (5 + e)^2 and (5 - e)^2 (+ 9): relative gap 4 e 5 / 34
    x[:, 0] = 105.0 + np.array([-1e-6, 1e-6, -1e-3, 1e-3])
    x[:, 1] = 103.0
    labels = np.array([1, 0, 1, 0], dtype=np.int32)
    upper = np.sqrt(((x - centroids[labels]) ** 2).sum(axis=1))
    lower = np.full(4, -1.0)
    back = km._nearest_around(x, np.arange(4), hood, labels, upper, lower)
    assert back.tolist() == [0, 1]
    assert labels.tolist() == [1, 0, 0, 1]
    exact = np.sqrt(((x[:, None, :] - centroids[None]) ** 2).sum(axis=2))
    assert np.all(upper[2:] >= exact[[2, 3], [0, 1]]) and np.all(lower[2:] <= exact[[2, 3], [1, 0]])


def test_bounded_lloyd_makes_the_neighbourhoods_tables_once_an_update(monkeypatch):
    """`_Around`'s tables (the centroids' neighbours per column, in float32) are made once per update and
    neighbourhood, not for each block of points measured (`_AROUND_BLOCK`), and the bounds are loosened a
    block at a time as it is checked: the same centroids as the tree's Lloyd."""
    x, w = weighted_points("clusters", 4)
    pts = km._Points(x, w)
    start = km._split(x, w, 300)
    made = []
    real = km._Around

    def counted(*args):
        made.append(1)
        return real(*args)

    monkeypatch.setattr(km, "_Around", counted)
    monkeypatch.setattr(km, "_AROUND_BLOCK", 64)
    got = km._lloyd_bounded(pts, start, 6, 0.0)
    assert len(made) <= 2 * 5  # 5 updates past the first query, two neighbourhoods each
    assert np.array_equal(got, km._lloyd_tree(pts, start, 6, 0.0))


@pytest.mark.parametrize("kind", ["bins", "clusters"])
def test_bounded_lloyd_measures_far_points_among_wider_neighbours_not_the_tree(monkeypatch, kind):
    """A point too far from its centroid for the 16 nearest it to hold its nearest is measured among the 32
    nearest where they must (`_NEIGHBOURS_WIDE`): fewer tree queries, the same centroids bit for bit as with
    the tree for all of them, over-relaxed or not."""
    x, w = weighted_points(kind, 4)
    pts = km._Points(x, w)
    start = km._split(x, w, 300)
    for relax in (1.0, 1.9):
        queried = counted_points_queries(monkeypatch)
        wide = km._lloyd_bounded(pts, start, 12, 0.0, relax=relax)
        fewer = sum(queried)
        queried.clear()
        monkeypatch.setattr(km, "_NEIGHBOURS_WIDE", km._NEIGHBOURS_BOUND)
        assert np.array_equal(km._lloyd_bounded(pts, start, 12, 0.0, relax=relax), wide)
        assert fewer < sum(queried) - x.shape[0] // 10
        monkeypatch.undo()


@pytest.mark.parametrize("bits", [3, 5, 6])
@pytest.mark.parametrize("k", [2, 300, 4096])
def test_cell_candidates_from_tables_per_channel_equal_those_per_pair(monkeypatch, bits, k):
    """Above _PAIR_TABLES_MAX (K = 4096 at 6 bits: 4 pair tables of 67 MB) the cells' distances are summed from
    tables per channel: the same integers, so the same candidates; entries clustered so that many cells
    have several."""
    from kmq import coreset

    rng = np.random.default_rng(k + bits)
    palette = rng.integers(0, 256, (k, 4)).astype(np.uint8)
    palette[: k // 2] = rng.integers(100, 140, (k // 2, 4))
    ids = np.unique(rng.integers(0, 1 << (4 * bits), 20000))
    monkeypatch.setattr(coreset, "_PAIR_TABLES_MAX", 1 << 62)
    pair = coreset._cell_candidates(ids, bits, palette)
    monkeypatch.setattr(coreset, "_PAIR_TABLES_MAX", 0)
    channel = coreset._cell_candidates(ids, bits, palette)
    assert pair.entries.size > 0
    for a, b in ((pair.single, channel.single), (pair.count, channel.count), (pair.bins, channel.bins),
                 (pair.entries, channel.entries)):
        np.testing.assert_array_equal(a, b)


def test_large_k_on_the_7_bit_level_splits_the_6_bit_one_and_j_holds(monkeypatch, busy_rgba):
    """Where the 6-bit level has under _FINE_ENOUGH bins per centroid (from kmeans._LARGE_K, lowered to 40), the
    split and a first Lloyd run on it, then as many updates on the 7-bit level: the split sees the 6-bit bins
    (or the warm sample of them, kmeans._warm_sample), not the 7-bit ones, progress ends full and never goes back, and J is within 1 % of the split on the 7-bit
    level (here lower)."""
    _, six = large_k_on_the_histogram(monkeypatch, busy_rgba)
    k = six // 1000 + 3
    split_points = []
    real = km._split
    monkeypatch.setattr(km, "_split", lambda x, *a, **kw: split_points.append(len(x)) or real(x, *a, **kw))
    calls = []
    warmed = kmq.compress(busy_rgba, k=k, progress=lambda done, total: calls.append((done, total)))
    assert len(split_points) == 1 and split_points[0] <= six
    assert calls[-1][0] == calls[-1][1] and all(b[0] >= a[0] for a, b in zip(calls, calls[1:]))
    assert len({total for _, total in calls}) == 1
    monkeypatch.setattr(km, "_WARM_MIN", 1 << 30)
    cold = kmq.compress(busy_rgba, k=k)
    assert split_points[-1] > six
    assert warmed.distortion <= 1.01 * cold.distortion


def test_large_k_uncounted_colours_lift_the_flag_limit_and_give_the_distinct_colours_file(monkeypatch, busy_rgba):
    """From kmeans._LARGE_K (lowered to 40) fit reads no more of the colours' number than that it is over
    _POLISH_MAX, which as many 7-bit bins already say: the histogram does not count them (fine.colours None),
    so _FINE_FLAGS no longer sends the image to the distinct colours; below _LARGE_K it still does. The file
    is the one through the distinct colours."""
    from kmq import coreset

    flat, six = large_k_on_the_histogram(monkeypatch, busy_rgba)
    monkeypatch.setattr(coreset, "_FINE_FLAGS", 0)
    monkeypatch.setattr(coreset, "_SAMPLE_BITS", 13)  # (the sample sees few 6-bit bins: no shortcut via `sparse`)
    k = six // 1000 + 3
    small = coreset.Histogram(flat, min_bins=coreset.min_bins(39))
    assert small.ids is None  # 16 x the 7-bit bins > 4 x the pixels: too many flags to count the colours
    hist = coreset.Histogram(flat, min_bins=coreset.min_bins(k))
    assert hist.ids is not None and hist.fine.colours is None and len(hist.fine.counts) > km._POLISH_MAX
    img = kmq.compress(busy_rgba, k=k)
    monkeypatch.setattr(coreset, "FROM", 1 << 62)
    assert kmq.compress(busy_rgba, k=k).to_bytes() == img.to_bytes()


@pytest.mark.parametrize("kind", ["bins", "clusters"])
def test_bounded_lloyd_from_the_parents_bounds_queries_fewer_and_gives_the_same_centroids(monkeypatch, kind):
    """The finer level starts from its parent bins' centroids and bounds (each point's exact distance to its
    parent's centroid, the parent's lower bound less its distance from the parent) instead of a tree query of
    every point: the same centroids bit for bit as from the query, with fewer points queried."""
    import scipy.spatial

    queried = []

    class Counting(scipy.spatial.cKDTree):
        def query(self, x, k=1, **kw):
            queried.append(np.asarray(x).shape[0])
            return super().query(x, k=k, **kw)

    x, w = weighted_points(kind, 4)
    # The parents: 4 x 4 x 4 x 4 boxes of the points, their weighted means.
    box = np.floor(x / 16).astype(np.int64) @ (16 ** np.arange(4))
    keys, parent = np.unique(box, return_inverse=True)
    pw = np.bincount(parent, weights=w)
    px = np.stack([np.bincount(parent, weights=w * x[:, c]) for c in range(4)], 1) / pw[:, None]
    k = 60
    monkeypatch.setattr(scipy.spatial, "cKDTree", Counting)
    with_parent = km._fit_large(km._Points(x, w), k, 300, 0.0, None, km._Points(px, pw), parent)
    inherited = sum(queried)
    queried.clear()
    plain = km._fit_large(km._Points(x, w), k, 300, 0.0, None, km._Points(px, pw))
    assert np.array_equal(with_parent, plain)
    assert inherited < sum(queried) - x.shape[0] // 2


def counted_points_queries(monkeypatch) -> list[int]:
    """The points each tree query of two nearest asks for, from now on (not the centroids' own neighbours)."""
    import scipy.spatial

    queried: list[int] = []

    class Counting(scipy.spatial.cKDTree):
        def query(self, x, k=1, **kw):
            if k == 2:
                queried.append(np.asarray(x).shape[0])
            return super().query(x, k=k, **kw)

    monkeypatch.setattr(scipy.spatial, "cKDTree", Counting)
    return queried


def boxed(x: np.ndarray, w: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each point's box of side^4 values and the boxes' weighted means and weights."""
    _, parent = np.unique(np.floor(x / side).astype(np.int64) @ ((256 // side) ** np.arange(4)), return_inverse=True)
    pw = np.bincount(parent, weights=w)
    return parent, np.stack([np.bincount(parent, weights=w * x[:, c]) for c in range(4)], 1) / pw[:, None], pw


@pytest.mark.parametrize("kind, sampled", [("bins", False), ("clusters", False), ("bins", True)])
def test_warm_level_from_its_coarser_cells_bounds_queries_fewer_and_gives_the_same_centroids(monkeypatch, kind,
                                                                                              sampled):
    """The warm level starts from its coarser cells' centroids and bounds (a query of the cells, not of its
    points; `top`), with or without its own sample: the same centroids bit for bit, fewer points queried."""
    x, w = weighted_points(kind, 4)
    parent, px, pw = boxed(x, w, 16)
    up, ux, _ = boxed(px, pw, 32)
    if sampled:  # the warm level's own sample and the level's (`_sample`), whatever their noise
        monkeypatch.setattr(km, "_sample", lambda w, k, noise=None, lights=None: (np.arange(0, w.shape[0], 2), 2.0))
    queried = counted_points_queries(monkeypatch)
    plain = km._fit_large(km._Points(x, w), 60, 300, 0.0, None, km._Points(px, pw), parent)
    queries = sum(queried)
    queried.clear()
    from_top = km._fit_large(km._Points(x, w), 60, 300, 0.0, None, km._Points(px, pw), parent, top=lambda: (ux, up))
    assert np.array_equal(from_top, plain)
    assert sum(queried) < queries


def test_fine_cells_a_block_of_rows_at_a_time_gives_the_same_candidates(monkeypatch, busy_rgba):
    """The 7-bit cells' candidates measured a few rows at a time (memory), the same cells as all at once."""
    from kmq import coreset

    flat, six = large_k_on_the_histogram(monkeypatch, busy_rgba)
    hist = coreset.Histogram(flat, min_bins=coreset.min_bins(six // 1000 + 3))
    palette = np.unique(flat[::97], axis=0)[:200]
    parent = coreset._cell_candidates(hist.ids, hist.bits, palette)
    whole = coreset._fine_cells(hist.fine.ids, hist.fine.six, parent, palette)
    monkeypatch.setattr(coreset, "_FINE_ROWS", 1000)
    blocks = coreset._fine_cells(hist.fine.ids, hist.fine.six, parent, palette)
    assert whole.entries.size > 3000
    for a, b in ((whole.single, blocks.single), (whole.count, blocks.count), (whole.bins, blocks.bins),
                 (whole.entries, blocks.entries)):
        np.testing.assert_array_equal(a, b)


def textbook_lloyd(x: np.ndarray, w: np.ndarray, start: np.ndarray, updates: int, relax: float) -> np.ndarray:
    """Weighted Lloyd measuring every centroid, each update but the last moved relax times the way to its mean."""
    c = start.copy()
    k = c.shape[0]
    for it in range(updates):
        lab = ((x[:, None, :] - c[None]) ** 2).sum(axis=2).argmin(axis=1)
        wsum = np.bincount(lab, weights=w, minlength=k)
        assert wsum.min() > 0
        means = np.stack([np.bincount(lab, weights=w * x[:, j], minlength=k) for j in range(x.shape[1])], 1)
        means /= wsum[:, None]
        c = means if it + 1 == updates else c + relax * (means - c)
    return c


@pytest.mark.parametrize("kind", ["bins", "clusters"])
def test_bounded_lloyd_over_relaxed_is_the_textbook_over_relaxed_lloyd(kind):
    """With relax, every update of the bounded Lloyd but the last moves each centroid relax times the way to its
    cluster's mean (the bounds follow the longer moves), and the last ends on the means: the centroids of a plain
    over-relaxed Lloyd that measures every centroid for every point."""
    x, w = weighted_points(kind, 4)
    start = km._lloyd_tree(km._Points(x, w), km._split(x, w, 24), 3, 0.0)
    got = km._lloyd_bounded(km._Points(x, w), start, 6, 0.0, relax=1.9)
    np.testing.assert_allclose(got, textbook_lloyd(x, w, start, 6, 1.9), rtol=0, atol=1e-9)
    assert not np.allclose(got, textbook_lloyd(x, w, start, 6, 1.0), rtol=0, atol=1e-6)


def test_sample_keeps_every_heavy_point_and_light_ones_by_their_weight():
    """The weight-aware sample of a level's points: every point of `light` pixels or more, a lighter one with
    probability w / light (so that, weighing light, its expected weight is its own), the same rows every time;
    light the largest of `_LIGHTS` whose noise (light x k x the light points' pixels / all pixels^2) stays
    within `_SAMPLE_NOISE`; none where none does."""
    w = np.concatenate([np.full(40_000, 1.0), np.full(40_000, 4.0), np.full(1000, 16.0), np.full(1000, 90.0)])
    n2 = w.sum() ** 2  # 306 000^2
    assert 16 * 73 * 200_000 <= km._SAMPLE_NOISE * n2 < 16 * 74 * 200_000
    rows, light = km._sample(w, 73)
    assert light == 16 and np.array_equal(rows, km._sample(w, 73)[0]) and np.all(np.diff(rows) > 0)
    kept = np.zeros(w.shape[0], dtype=bool)
    kept[rows] = True
    assert kept[80_000:].all()
    for share, part in ((1 / 16, kept[:40_000]), (4 / 16, kept[40_000:80_000])):
        assert abs(part.mean() - share) < 0.01
    rows, light = km._sample(w, 74)  # 8 x 74 x 200 000 within the noise
    assert light == 8 and np.all(np.isin(np.arange(80_000, 82_000), rows))
    assert abs(np.isin(np.arange(40_000, 80_000), rows).mean() - 0.5) < 0.01
    assert km._sample(w, 10_000) is None  # 4 x 10 000 x 40 000 over it: no sample
    assert km._sample(np.full(1000, 20.0), 2) is None  # every point heavy: it would keep them all


# (1, 64): a case where bounds of the points left out of the sample, if not loosened by the sample's moves
# (`_rejoined`), leave labels that are not the nearest centroid's (the review's mutation: 141 of 360 cases).
@pytest.mark.parametrize("seed, side", [(0, 16), (1, 16), (0, 64), (1, 64)])
def test_large_k_level_updates_a_sample_then_every_point_the_same_with_or_without_parents(monkeypatch, seed, side):
    """With a warm level and a weight-aware sample of the level's points (light bins drawn), the updates are
    `_SAMPLED_ITER`'s, all over-relaxed: on the warm level, on the sample, then on every point, from the parents'
    bounds or from a query: the same centroids either way, those of a textbook over-relaxed Lloyd on each. Where
    the warm level has a sample too (parent boxes of side 16; of side 64 they are heavy: none), its split and
    first `_WARM_SAMPLED` updates run there."""
    import scipy.spatial

    sizes = []

    class Counting(scipy.spatial.cKDTree):
        def query(self, x, k=1, **kw):
            sizes.append(np.asarray(x).shape[0])
            return super().query(x, k=k, **kw)

    rng = np.random.default_rng(seed)
    centres = rng.uniform(20, 235, (20, 4))
    x = np.clip(np.concatenate([rng.normal(c, 8, (300, 4)) for c in centres]), 0, 255)
    w = rng.integers(1, 5, x.shape[0]).astype(np.float64)
    w[::5] *= 20  # heavy bins among light ones
    box = np.floor(x / side).astype(np.int64) @ ((256 // side) ** np.arange(4))
    _, parent = np.unique(box, return_inverse=True)
    pw = np.bincount(parent, weights=w)
    px = np.stack([np.bincount(parent, weights=w * x[:, c]) for c in range(4)], 1) / pw[:, None]
    k = 12
    monkeypatch.setattr(km, "_SAMPLED_ITER", (7, 5, 3))
    monkeypatch.setattr(km, "_WARM_SAMPLED", 4)
    rows, light = km._sample(w, k)
    ahead = km._sample(pw, k, km._WARM_NOISE, km._LIGHTS[:1])
    assert light == 16 and rows.shape[0] < 0.75 * x.shape[0]
    assert (ahead is None) == (side == 64)
    monkeypatch.setattr(scipy.spatial, "cKDTree", Counting)
    calls = []
    with_parent = km._fit_large(km._Points(x, w), k, 300, 0.0, lambda done, total: calls.append((done, total)),
                                km._Points(px, pw), parent)
    parented = sizes[:]
    plain = km._fit_large(km._Points(x, w), k, 300, 0.0, None, km._Points(px, pw))
    assert np.array_equal(with_parent, plain)
    assert x.shape[0] not in parented  # the level's points start from their parents' bounds, sampled or not
    total = calls[-1][1]
    assert calls[-1][0] == total and {t for _, t in calls} == {total}
    assert total == km._split_rounds(k) + 7 + 5 + 3
    monkeypatch.undo()
    if ahead is not None:
        wr, wl = ahead
        sx, sw = px[wr], np.maximum(pw[wr], wl)
        warm = textbook_lloyd(px, pw, textbook_lloyd(sx, sw, km._split(sx, sw, k), 4, km._RELAX), 3, km._RELAX)
    else:
        warm = textbook_lloyd(px, pw, km._split(px, pw, k), 7, km._RELAX)
    sw = np.maximum(w[rows], light)
    mid = textbook_lloyd(x[rows], sw, warm, 5, km._RELAX)
    np.testing.assert_allclose(with_parent, textbook_lloyd(x, w, mid, 3, km._RELAX), rtol=0, atol=1e-9)


@pytest.mark.parametrize("empty", [False, True])
@pytest.mark.parametrize("dtype", [np.int64, np.uint32])
@pytest.mark.parametrize("k", [2, 37, 300])
def test_bounded_lloyd_over_means_made_from_the_sums_in_blocks_gives_the_tree_lloyd_centroids(monkeypatch, dtype, k,
                                                                                              empty):
    """The level fitted after a warm one keeps its integer sums, not its means (`_Means`), and its bounds are
    loosened and settled a block of points at a time: blocks of 7 points here (offsets, a last short block,
    empty clusters reseeded from distances made in blocks), the same centroids bit for bit as the tree
    Lloyd's over the means made at once."""
    rng = np.random.default_rng(5)
    counts = rng.integers(1, 50, 3000)
    sums = rng.integers(0, 256 * counts[:, None], (3000, 4)).astype(dtype)
    w = counts.astype(np.float64)
    x = sums / w[:, None]
    means = km._Means(sums, w)
    rows = rng.permutation(3000)[:100]
    assert np.array_equal(means[rows], x[rows]) and np.array_equal(means[5:17], x[5:17])
    assert means.shape == x.shape
    start = km._split(x, w, k)
    if empty:  # a centroid beyond every point: its cluster is empty at the first update, and reseeded
        start[-1] = 1000.0
    want = km._lloyd_tree(km._Points(x, w), start, 12, 0.0)
    monkeypatch.setattr(km, "_TREE_BLOCK", 7)
    pts = km._Points(means, w, sums=sums)
    assert pts.x is means and all(np.shares_memory(c, sums) for c in pts.wx)  # no copies of the level
    assert np.array_equal(km._lloyd_bounded(pts, start, 12, 0.0), want)
    assert np.array_equal(km._lloyd_bounded(pts, start, 12, 0.0, relax=1.9),
                          km._lloyd_bounded(km._Points(x, w, sums=sums), start, 12, 0.0, relax=1.9))


@pytest.mark.parametrize("dtype", [np.int64, np.uint32])
def test_points_given_integer_sums_follow_moves_as_given_float_ones(dtype):
    """`_Points` reads a histogram's integer sums in place; the running sums by cluster (`_Sums`, the
    Hamerly updates on exact points) gather them as doubles too, the same bits as from float sums."""
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 9, 3000)
    sums = rng.integers(0, 256, (3000, 4)) * counts[:, None]
    w = counts.astype(np.float64)
    x = sums / w[:, None]
    start = km._split(x, w, 40)
    want = km._hamerly(km._Points(x, w, sums=sums.astype(np.float64)), start, 20, 0.0)
    got = km._hamerly(km._Points(x, w, sums=sums.astype(dtype)), start, 20, 0.0)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


@pytest.mark.parametrize("dtype", [np.uint32, np.int64])
def test_exact_means_a_block_at_a_time_equal_the_whole_ones(monkeypatch, dtype):
    """Integer weights and sums by cluster summed a block of points at a time (blocks that do not divide the
    points): the same means and weights bit for bit as in one pass, empty clusters NaN as there."""
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 300, 5003)
    sums = (rng.integers(0, 256, (5003, 4)) * counts[:, None]).astype(dtype)
    w = counts.astype(np.float64)
    pts = km._Points(km._Means(sums, w), w, sums=sums)
    labels = rng.integers(0, 40, 5003).astype(np.int32)
    labels[labels == 7] = 8  # an empty cluster
    want = km._weighted_means(pts, labels, 41)
    monkeypatch.setattr(km, "_TREE_BLOCK", 97)
    got = km._exact_means(pts, labels, 41)
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(got, want))
    assert np.isnan(got[0][7]).all() and got[1][7] == 0


@pytest.mark.parametrize("kind", ["bins", "clusters"])
def test_large_k_fit_in_small_blocks_gives_the_same_centroids(monkeypatch, kind):
    """The bounded updates, the inherited bounds and the neighbours' measures a few points at a time (blocks
    that do not divide the points): the same centroids as in the usual blocks."""
    x, w = weighted_points(kind, 4)
    parent, px, pw = boxed(x, w, 16)
    up, ux, _ = boxed(px, pw, 32)
    sums = np.rint(x * w[:, None]).astype(np.int64)  # integer sums, as a histogram's
    pts = km._Points(km._Means(sums, w), w, sums=sums)
    want = km._fit_large(pts, 60, 300, 0.0, None, km._Points(px, pw), parent, top=lambda: (ux, up))
    monkeypatch.setattr(km, "_AROUND_BLOCK", 37)
    monkeypatch.setattr(km, "_TREE_BLOCK", 101)
    assert np.array_equal(km._fit_large(pts, 60, 300, 0.0, None, km._Points(px, pw), parent, top=lambda: (ux, up)),
                          want)
