"""Large RGBA with varying alpha through a 6-bit histogram of the pixels (kmq.coreset): exact sums, exact
labels and J, the same file as through the distinct colours wherever fit would only use the histograms,
the same file in any number of threads, and both sides of each threshold.

The thresholds are lowered so that small images take the path; no timing here (bench/speed_rgba.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from conftest import traced_peak
import kmq
from kmq import api, coreset, parallel
from kmq import kmeans as km
from kmq.imageio import clear_transparent
from test_rgba_speed_paths import busy_rgba, large_k_on_the_histogram  # noqa: F401 - busy_rgba is a fixture


def vignette(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    return np.dstack([rgb, np.clip(255 * (1.2 - r), 0, 255).astype(np.uint8)])


@pytest.fixture
def photo(samples) -> np.ndarray:
    """chelsea (300x451) under an alpha vignette: 120 000 distinct colours in 47 000 6-bit bins."""
    return vignette(np.asarray(Image.open(samples / "chelsea.png").convert("RGB")))


def nearest_j(pixels: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, float]:
    """Brute force: each pixel's nearest entry (first minimum) and J."""
    d = sum((pixels[:, c, None].astype(np.int64) - palette[None, :, c]) ** 2 for c in range(pixels.shape[1]))
    return np.argmin(d, axis=1), float(d.min(axis=1).sum()) / len(pixels)


def assert_nearest(img: kmq.KmqImage, pixels: np.ndarray) -> None:
    """Every label of img is a nearest entry of its pixel (a file's palette is in share order, so a tie may
    go to either entry), and its distortion is that labelling's J."""
    flat = clear_transparent(pixels).reshape(-1, pixels.shape[-1])  # as kmq reads them
    ref, j = nearest_j(flat, img.palette)
    sq = lambda lab: ((flat.astype(np.int64) - img.palette[lab].astype(np.int64)) ** 2).sum(axis=1)
    assert np.array_equal(sq(img.labels.reshape(-1)), sq(ref)) and img.distortion == j


def test_histogram_of_a_few_pixels_by_hand():
    px = np.array([[0, 0, 0, 0], [3, 3, 3, 3], [4, 0, 0, 255], [255, 255, 255, 255], [2, 1, 0, 3]], np.uint8)
    h = coreset.Histogram(px)
    # 6 bits per channel, channel 0 first: (0,0,0,0); (1,0,0,63); (63,63,63,63).
    assert h.ids.tolist() == [0, (1 << 18) | 63, (1 << 24) - 1]
    assert h.bins == 3
    assert h.counts.tolist() == [3, 1, 1]
    assert h.sums.tolist() == [[5, 4, 3, 6], [4, 0, 0, 255], [255, 255, 255, 255]]
    assert h.index.tolist() == [0, 0, 1, 2, 0]
    assert h.square_sums == [9 + 16 + 255 ** 2 + 4, 9 + 255 ** 2 + 1, 9 + 255 ** 2, 9 + 255 ** 2 * 2 + 9]
    # Too few bins, seen in the sample (here every pixel), even at 7 bits (16 a 6-bit bin): no counting.
    few = coreset.Histogram(px, min_bins=16 * 3 + 1)
    assert few.ids is None and few.bins is None


def test_histogram_sums_over_many_runs_and_chunks(monkeypatch, threads, photo):
    """Low bits packed two to a double and summed over runs stay exact, whatever the runs, their spans
    between unpackings and the threads, counted in one thread (serial, as 7-bit bins from `_SERIAL_BINS`) or
    several, in int32 (up to `_NARROW_COUNTS` pixels) or int64."""
    flat = photo.reshape(-1, 4)
    keys = ((flat >> 2).astype(np.int64) << np.array([18, 12, 6, 0])).sum(axis=1)
    ids, index, counts = np.unique(keys, return_inverse=True, return_counts=True)
    sums = np.stack([np.bincount(index, weights=flat[:, c], minlength=len(ids)) for c in range(4)], 1)
    count = coreset._count
    for run, chunk, span, n, serial, narrow in [
            (1 << 21, 1 << 16, 1 << 23, 1, False, 1 << 28), (5000, 777, 1 << 23, 1, False, 1 << 28),
            (5000, 777, 12000, 3, False, 1 << 28), (5000, 777, 12000, 3, True, 1 << 28),
            (5000, 777, 12000, 3, False, 0), (5000, 777, 1, 1, False, 1 << 28),
            # two parts of two runs each (runs of B pixels): a part's own low sums, unpacked, added up
            (5000, 777, 1, 2, False, 1 << 28), (5000, 777, 1, 2, False, 0)]:
        monkeypatch.setattr(coreset, "_count", (lambda *a, **kw: count(*a, serial=True)) if serial else count)
        monkeypatch.setattr(coreset, "_NARROW_COUNTS", narrow)
        monkeypatch.setattr(coreset, "_RUN", run)
        monkeypatch.setattr(coreset, "_SPAN", span)
        monkeypatch.setattr(coreset, "_CHUNK", chunk)
        threads(n)
        h = coreset.Histogram(flat)
        assert np.array_equal(h.ids, ids) and np.array_equal(h.counts, counts)
        assert np.array_equal(h.sums, sums.astype(np.int64)) and np.array_equal(h.index, index)
        assert h.square_sums == [int((flat[:, c].astype(np.int64) ** 2).sum()) for c in range(4)]
        assert np.array_equal(h.variance(), km._variance(*km.distinct_colors(flat)[:2]))


def test_a_bin_is_labelled_whole_only_where_one_entry_is_nearest_to_all_its_cell():
    # Cells of 4 values per channel: 0..3; 8..11 then 0..3; 124..127, 128..131 and 252..255 in every channel.
    px = np.array([[0] * 4, [9, 0, 0, 0], [125] * 4, [130] * 4, [253] * 4], np.uint8)
    h = coreset.Histogram(px)
    two = np.array([[0] * 4, [255] * 4], np.uint8)
    # 124..127 is nearer 0 even at its worst corner (4 x 127^2 < 4 x 128^2), 128..131 nearer 255.
    assert coreset._bin_labels(h, two).per_bin.tolist() == [0, 0, 0, 1, 1]
    tie = np.array([[0] * 4, [6, 0, 0, 0], [255] * 4], np.uint8)
    # 0..3: entries 0 and 6 tie at 3, so pixel by pixel. 8..11: at most 5^2 + 3 x 3^2 = 52 from (6, 0, 0, 0),
    # at least 8^2 = 64 from 0. 124..127: no entry's farthest corner is nearer than every other entry's
    # nearest ((6, 0, 0, 0) at most 121^2 + 3 x 127^2 = 63028 away, 0 at least 4 x 124^2 = 61504), but
    # (6, 0, 0, 0) beats 0 everywhere there (by 12 x - 36 in channel 0) and 255 (at least 4 x 128^2 = 65536
    # away) too: whole. 128..131: 255 at most 4 x 127^2 = 64516, (6, 0, 0, 0) at least 122^2 + 3 x 128^2 =
    # 64036 and nearer at 128 (0 at least 65536, beaten by (6, 0, 0, 0) everywhere): left to the pixels.
    cands = coreset._bin_labels(h, tie)
    assert cands.per_bin.tolist() == [0xFFFF, 1, 1, 0xFFFF, 2]
    assert cands.klass[[0, 3]].tolist() == [0, 0]
    assert [cands.tables[0][cands.row[b]].tolist() for b in (0, 3)] == [[0, 1], [1, 2]]
    labels, count, err = coreset.label(np.array([[3, 0, 0, 0], [0] * 4], np.uint8),
                                       coreset.Histogram(np.array([[3, 0, 0, 0], [0] * 4], np.uint8)), tie)
    assert labels.tolist() == [0, 0] and count.tolist() == [2, 0, 0] and err == 9  # the tie to the lower


def candidate_sets(cells: coreset._Cells) -> dict[int, list[int]]:
    """Each cell with several candidates: its entries, in the order listed."""
    out: dict[int, list[int]] = {}
    for b, e in zip(cells.bins.tolist(), cells.entries.tolist()):
        out.setdefault(b, []).append(e)
    return out


def assert_candidates_hold(ids: np.ndarray, bits: int, cells: coreset._Cells, palette: np.ndarray,
                           some: int = 300) -> None:
    """For `some` of the cells ids (spread over them), by every value of the cell: a cell's one entry is
    strictly the nearest to each; else its candidates hold each value's nearest (ties to the lower entry)."""
    w = 1 << (8 - bits)
    offsets = np.stack(np.meshgrid(*[np.arange(w)] * 4, indexing="ij"), -1).reshape(-1, 4)
    pal = palette.astype(np.int64)
    sets = candidate_sets(cells)
    for i in np.linspace(0, len(ids) - 1, min(some, len(ids))).astype(int).tolist():
        corner = np.array([(int(ids[i]) >> (bits * (3 - c))) & ((1 << bits) - 1) for c in range(4)]) * w
        d = (((corner + offsets)[:, None, :] - pal[None]) ** 2).sum(-1)
        nearest = d.argmin(axis=1)
        least = d.min(axis=1)
        if cells.single[i] >= 0:
            assert cells.count[i] == 1 and (nearest == cells.single[i]).all()
            others = np.delete(d, cells.single[i], axis=1)
            assert (others > least[:, None]).all()  # strictly: no tie for a lower entry to win
        else:
            cand = sets[i]
            assert len(cand) == cells.count[i] > 1 and set(nearest.tolist()) <= set(cand)


@pytest.mark.parametrize("k", [2, 16, 100, 300])
def test_candidates_through_coarser_cells_hold_the_nearest_and_are_no_more_than_from_every_entry(
        monkeypatch, photo, k):
    """Through the coarser cells an entry may be dropped for one the coarser cell found nearer everywhere,
    which the cell's own entry (least greatest distance) does not beat: fewer candidates, never a wrong one."""
    flat = photo.reshape(-1, 4)
    palette = np.unique(flat[np.random.default_rng(k).choice(len(flat), k)], axis=0)
    h = coreset.Histogram(flat)
    monkeypatch.setattr(coreset, "_ALL_ENTRIES_CELLS", 1 << 30)
    every = coreset._cell_candidates(h.ids, coreset.BITS, palette)
    monkeypatch.setattr(coreset, "_ALL_ENTRIES_CELLS", 0)  # down to 3-bit cells
    coarse = coreset._cell_candidates(h.ids, coreset.BITS, palette)
    assert ((every.single < 0) | (coarse.single == every.single)).all() and (coarse.count <= every.count).all()
    fine, all_of = candidate_sets(coarse), candidate_sets(every)
    assert all(set(e) <= set(all_of[b]) for b, e in fine.items())
    assert all(e == sorted(e) for e in fine.values())
    for cells in (every, coarse):
        assert_candidates_hold(h.ids, coreset.BITS, cells, palette)
    monkeypatch.setattr(coreset, "_CANDIDATE_BLOCK", 100)  # blocks of a few cells: the same, in the same order
    blocks = coreset._cell_candidates(h.ids, coreset.BITS, palette)
    assert all(np.array_equal(getattr(blocks, a), getattr(coarse, a)) for a in ("single", "count", "bins", "entries"))


def test_a_finer_cell_inherits_its_coarser_cells_one_entry_and_measures_only_its_candidates(monkeypatch):
    """Entries (0, 0, 0, 0) and (64, 0, 0, 0); every pixel 0 in channels 1-3. 5-bit cells (8 values) 0..7
    and 96..103 of channel 0 are whole (0 at most 4 x 7^2 = 196 from 0..7, 64 at least 57^2; 64 at most
    39^2 + 3 x 7^2 from 96..103, 0 at least 96^2), so the 6-bit cells inside them take that entry. 32..39
    has both (64 at most 32^2 + 147, 0 at least 32^2); of its 6-bit cells 32..35 keeps both (64 at most
    32^2 + 3 x 3^2 = 1051, 0 at least 1024) and 36..39 is whole for 64 (at most 28^2 + 27 = 811 < 36^2)."""
    monkeypatch.setattr(coreset, "_ALL_ENTRIES_CELLS", 0)
    monkeypatch.setattr(coreset, "_ALL_ENTRIES_BITS", coreset.BITS - 1)
    px = np.array([[v, 0, 0, 0] for v in (0, 5, 33, 37, 100)], np.uint8)
    h = coreset.Histogram(px)
    two = np.array([[0] * 4, [64, 0, 0, 0]], np.uint8)
    cells = coreset._cell_candidates(h.ids, coreset.BITS, two)
    assert cells.single.tolist() == [0, 0, -1, 1, 1] and cells.count.tolist() == [1, 1, 2, 1, 1]
    assert candidate_sets(cells) == {2: [0, 1]}
    labels, count, err = coreset.label(px, h, two)
    assert labels.tolist() == [0, 0, 1, 1, 1] and err == 5 ** 2 + 31 ** 2 + 27 ** 2 + 36 ** 2


@pytest.mark.parametrize("k", [2, 16, 40, 100, 300])
def test_labels_are_each_pixels_nearest_entry_and_j_exact(photo, k):
    flat = photo[::2, ::2].reshape(-1, 4)
    palette = np.unique(flat[np.random.default_rng(k).choice(len(flat), k)], axis=0)
    palette[0] = [255, 255, 255, 0]  # an entry at the cube's edge
    h = coreset.Histogram(flat)
    labels, count, err = coreset.label(flat, h, palette)
    ref, j = nearest_j(flat, palette)
    assert labels.dtype == np.uint16 and np.array_equal(labels, ref)
    assert count.tolist() == np.bincount(ref, minlength=len(palette)).tolist()
    assert err / len(flat) == j


def test_pixels_of_shared_bins_measure_only_their_candidates_and_the_ties_go_low():
    """A bin's candidates, padded to the width of their class with the last one; more than the widest class
    holds go to kmeans.nearest. Here bin 0..3 has 40 candidates (entries 0..39, all within 6 of it) and bin
    64..67 two, entries 40 and 41, equidistant from 64 and 66 in every channel."""
    near = np.array([[i % 4, (i // 4) % 4, (i // 16) % 4, 0] for i in range(40)], np.uint8)
    palette = np.vstack([near, [[64, 64, 64, 64], [66, 66, 66, 66], [250] * 4]]).astype(np.uint8)
    px = np.array([[2, 1, 3, 3], [65, 65, 65, 65], [66, 65, 64, 67], [3, 3, 3, 0]], np.uint8)
    h = coreset.Histogram(px)
    cands = coreset._bin_labels(h, palette)
    assert cands.per_bin.tolist() == [0xFFFF, 0xFFFF] and cands.klass.tolist() == [len(coreset._WIDTHS), 0]
    assert cands.tables[0].tolist() == [[40, 41]]
    labels, count, err = coreset.label(px, h, palette)
    # (2, 1, 3, 3): entry 38 = (2, 1, 2, 0) at 1 + 9; (65,) x 4: 4 from each of 40 and 41, the lower wins;
    # (66, 65, 64, 67): 14 from 40, 6 from 41; (3, 3, 3, 0): (3, 3, 2, 0) would be entry 47, so entry
    # 31 = (3, 3, 1, 0) at 4 rather than 39 = (3, 1, 2, 0) at 5.
    assert labels.tolist() == [38, 40, 41, 31] and err == 10 + 4 + 6 + 4
    assert np.flatnonzero(count).tolist() == [31, 38, 40, 41] and count.sum() == 4


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch):
    """set(n): split work into up to n parts of at least 50 items, so that these small images split too."""
    monkeypatch.setattr(parallel, "MIN_PART", 50)
    return lambda n: monkeypatch.setattr(parallel, "_threads", n)


@pytest.fixture
def histograms_only(monkeypatch):
    """Thresholds under which fit of this small photo works on its histograms alone, stopping at 5 bits
    (k = 8) or 6 bits (k = 16), as it does on a 12 MP photo; and the histogram path from 1 pixel on."""
    monkeypatch.setattr(km, "_COARSE_ABOVE", 2000)
    monkeypatch.setattr(km, "_POLISH_MAX", 20000)
    monkeypatch.setattr(km, "_FINE_ENOUGH", 1000)
    monkeypatch.setattr(coreset, "FROM", 1)


@pytest.mark.parametrize("k", [1, 8, 16])
def test_same_file_as_through_the_distinct_colours(monkeypatch, histograms_only, photo, k):
    d = km.distinct(photo.reshape(-1, 4))
    fives = km._coarse(d.colors, d.counts, 5).m
    # k = 1: the mean; k = 8: the 5-bit level is fine enough; k = 16: fit climbs to the 6-bit level as well.
    assert (fives >= 1000 * k) == (k < 16) and len(d.counts) > 2 * coreset.Histogram(photo.reshape(-1, 4)).bins
    seen = []
    monkeypatch.setattr(api, "_from_histogram", lambda *a, **kw: seen.append(1) or FROM_HISTOGRAM(*a, **kw))
    img = kmq.compress(photo, k=k, seed=3)
    assert seen == [1] and img.k == k
    monkeypatch.setattr(coreset, "FROM", len(d.counts) ** 2)
    assert kmq.compress(photo, k=k, seed=3).to_bytes() == img.to_bytes()
    assert_nearest(img, photo)


FROM_HISTOGRAM = api._from_histogram


@pytest.mark.parametrize("k", [2, 8])
def test_a_histogram_whose_5_bit_level_is_fine_enough_stops_there_with_the_same_file(monkeypatch, histograms_only,
                                                                                     photo, k):
    """fit at k <= EXACT_FIT_MAX never looks finer than a 5-bit level of 1000 k bins: the histogram is then made
    at 5 bits, whose sums are the 6-bit ones merged, and the file is the one through the 6-bit histogram."""
    flat = photo.reshape(-1, 4)
    five = coreset.Histogram(flat, min_bins=coreset.min_bins(k), coarse_bins=coreset.coarse_bins(k))
    six = coreset.Histogram(flat)
    assert (five.bits, six.bits) == (5, 6) and coreset.coarse_bins(coreset.EXACT_FIT_MAX + 1) == 0
    parent = sum(((six.ids >> (6 * (3 - c) + 1)) & 31) << (5 * (3 - c)) for c in range(4))
    ids, up = np.unique(parent, return_inverse=True)
    assert np.array_equal(five.ids, ids) and np.array_equal(five.index, up[six.index])
    assert np.array_equal(five.counts, np.bincount(up, weights=six.counts).astype(np.int64))
    assert np.array_equal(five.sums, np.stack([np.bincount(up, weights=six.sums[:, c]) for c in range(4)], 1))
    assert five.square_sums == six.square_sums
    img = kmq.compress(photo, k=k, seed=2)
    monkeypatch.setattr(coreset, "coarse_bins", lambda k: 0)
    assert kmq.compress(photo, k=k, seed=2).to_bytes() == img.to_bytes()


def test_same_file_in_any_number_of_threads(threads, histograms_only, photo):
    files = []
    for n in (1, 2, 3):
        threads(n)
        files.append(kmq.compress(photo, k=16, seed=1).to_bytes())
    assert files[1] == files[0] and files[2] == files[0]


def spy(monkeypatch) -> list[int]:
    """Records the number of pixels of each histogram made."""
    made: list[int] = []
    real = coreset.Histogram.__init__

    def init(self, pixels, **kw):
        made.append(len(pixels))
        real(self, pixels, **kw)

    monkeypatch.setattr(coreset.Histogram, "__init__", init)
    return made


def test_both_sides_of_the_pixel_threshold_give_valid_files(monkeypatch, histograms_only, photo, tmp_path):
    made = spy(monkeypatch)
    n = photo.shape[0] * photo.shape[1]
    for at, histogram in ((n + 1, False), (n, True)):
        monkeypatch.setattr(coreset, "FROM", at)
        made.clear()
        img = kmq.compress(photo, k=16)
        assert bool(made) == histogram
        kmq.write(tmp_path / "a.kmq", img, overwrite=True)
        back = kmq.read(tmp_path / "a.kmq")
        assert back.to_bytes() == img.to_bytes()
        assert_nearest(back, photo)


def test_both_sides_of_the_k_threshold_give_valid_files(monkeypatch, histograms_only, photo):
    made = spy(monkeypatch)
    monkeypatch.setattr(km, "_FINE_ENOUGH", 100)
    monkeypatch.setattr(coreset, "K_MAX", 24)
    for k, histogram in ((coreset.K_MAX, True), (coreset.K_MAX + 1, False)):
        made.clear()
        img = kmq.compress(photo[::2, ::2], k=k)
        assert bool(made) == histogram and img.k == k
        assert_nearest(img, photo[::2, ::2])


def test_too_few_bins_constant_alpha_large_k_rdo_and_dither_take_the_distinct_colours(monkeypatch, histograms_only,
                                                                                        photo):
    made = spy(monkeypatch)
    opaque = photo.copy()
    opaque[..., 3] = 200
    kmq.compress(opaque, k=16)  # one alpha: RGB keys already
    monkeypatch.setattr(coreset, "K_MAX", 24)
    kmq.compress(photo, k=coreset.K_MAX + 1)
    kmq.compress(photo[:60, :80], k=16, rdo=1.0, codec="ctx")
    kmq.compress(photo[:60, :80], k=16, dither="fs")
    assert made == []
    monkeypatch.setattr(km, "_FINE_ENOUGH", 10_000)  # more bins needed than the photo has: counted, then left
    img = kmq.compress(photo, k=16, seed=2)
    assert made == [photo.shape[0] * photo.shape[1]]
    monkeypatch.setattr(coreset, "FROM", 1 << 62)
    assert kmq.compress(photo, k=16, seed=2).to_bytes() == img.to_bytes()


@pytest.mark.parametrize("through", ["histogram", "distinct colours"])
def test_centroids_rounded_together_warn_at_the_callers_line(monkeypatch, histograms_only, photo, through):
    def fit(*args, **kwargs):  # two centroids 0.2 apart: one palette entry
        return np.array([[10.0, 10, 10, 10], [10.2, 10, 10, 10], [200, 200, 200, 200]])

    monkeypatch.setattr(coreset if through == "histogram" else km, "fit", fit)
    if through != "histogram":
        monkeypatch.setattr(coreset, "FROM", 1 << 62)
    with pytest.warns(kmq.KmqWarning, match="^1 centroid rounded to the same colour as another: using k=2$") as w:
        img = kmq.compress(photo, k=3)
    assert w[0].filename == __file__ and img.k == 2


def test_a_sample_with_too_few_bins_leaves_the_image_to_the_distinct_colours(monkeypatch, histograms_only, photo):
    """Every (n >> _SAMPLE_BITS)-th pixel is looked at first: 17 of them here, 17 bins at most, fewer than
    the 16 000 asked, so the image goes the distinct colours' way although it has 47 000 bins."""
    made = spy(monkeypatch)
    monkeypatch.setattr(coreset, "_SAMPLE_BITS", 4)
    img = kmq.compress(photo, k=16, seed=4)
    assert made == [photo.shape[0] * photo.shape[1]]
    assert coreset.Histogram(photo.reshape(-1, 4), min_bins=16_000).ids is None
    monkeypatch.setattr(coreset, "_SAMPLE_BITS", 19)
    assert coreset.Histogram(photo.reshape(-1, 4), min_bins=16_000).bins == 47483
    monkeypatch.setattr(coreset, "FROM", 1 << 62)
    assert kmq.compress(photo, k=16, seed=4).to_bytes() == img.to_bytes()


def test_pixels_in_any_memory_layout_give_the_same_file(monkeypatch, histograms_only, photo):
    """Reversed channels, Fortran order, a reversed and strided view: the path reads each pixel's 4 bytes as
    words, so it must see them contiguous, as the distinct colours' path does."""
    made = spy(monkeypatch)
    for view in (photo[..., ::-1], np.asfortranarray(photo), photo[::-1, ::2]):
        made.clear()
        img = kmq.compress(view, k=16, seed=5)
        assert made and img.to_bytes() == kmq.compress(np.ascontiguousarray(view), k=16, seed=5).to_bytes()
        assert_nearest(img, np.ascontiguousarray(view))


@pytest.mark.parametrize("k", [16, 24])
def test_above_the_exact_fits_k_the_last_level_ends_in_a_few_updates(monkeypatch, threads, histograms_only, photo,
                                                                     k):
    """Above EXACT_FIT_MAX (lowered here) the 6-bit level ends with `_FINISH` over-relaxed updates: another
    palette than through the distinct colours, J within 0.5 % of theirs, still exact nearest labels and the
    same file in any number of threads."""
    monkeypatch.setattr(coreset, "EXACT_FIT_MAX", 8)
    made = spy(monkeypatch)
    files = []
    for n in (1, 3):
        threads(n)
        files.append(kmq.compress(photo, k=k, seed=6))
    assert made and files[1].to_bytes() == files[0].to_bytes()
    img = files[0]
    assert_nearest(img, photo)
    monkeypatch.setattr(coreset, "FROM", 1 << 62)
    exact = kmq.compress(photo, k=k, seed=6)
    assert exact.to_bytes() != img.to_bytes() and img.distortion <= 1.005 * exact.distortion


def test_with_one_restart_the_6_bit_level_is_warmed_up_by_the_4_bit_one_alone(monkeypatch, histograms_only,
                                                                             photo):
    """Above EXACT_FIT_MAX (lowered here), with one restart and a 5-bit level too small to end the fit but at
    least half that size, the 4-bit level's run goes straight to the 6-bit level, which takes `_TOP_UPDATES`
    over-relaxed updates: no run on the 5-bit level. J within 0.5 % of the 5-bit warm-up's, labels still exact
    nearest. With several restarts, or a smaller 5-bit level, that level still runs."""
    monkeypatch.setattr(coreset, "EXACT_FIT_MAX", 8)
    six = coreset.Histogram(clear_transparent(photo).reshape(-1, 4))  # as kmq reads them
    fives, fours = coreset._cells(six.ids, 5), coreset._cells(six.ids, 4)
    assert km._FINE_ENOUGH * 16 <= 2 * fives < 2 * km._FINE_ENOUGH * 16 and fours > 4 * 16
    runs = []
    real = km._hamerly
    monkeypatch.setattr(km, "_hamerly", lambda pts, c, it, tol, *a:
                        runs.append((pts.m, it, a[1] if len(a) > 1 else 1.0)) or real(pts, c, it, tol, *a))
    several = kmq.compress(photo, k=16, seed=6)
    assert km._restarts(16) > 1 and fives in [r[0] for r in runs] and runs[-1][1] == km._FINISH_RGBA[0]
    runs.clear()
    monkeypatch.setattr(km, "_restarts", lambda k: 1)
    img = kmq.compress(photo, k=16, seed=6)
    assert [r[0] for r in runs[:-1]] == [fours] and runs[-1][1:] == (coreset._TOP_UPDATES, km._FINISH[1])
    assert runs[-1][0] > fives
    assert_nearest(img, photo)
    monkeypatch.setattr(coreset, "_cells", lambda ids, bits: 0)  # as if the 4-bit level were too small
    warmed = kmq.compress(photo, k=16, seed=6)
    assert warmed.to_bytes() != img.to_bytes() and img.distortion <= 1.005 * warmed.distortion
    assert several.to_bytes() != img.to_bytes()
    runs.clear()
    monkeypatch.setattr(coreset, "_cells", lambda ids, bits: fives // 2 - 1 if bits == 5 else fours)
    assert kmq.compress(photo, k=16, seed=6).to_bytes() == warmed.to_bytes() and fives in [r[0] for r in runs]


def test_rgba_through_the_colours_without_a_polish_ends_its_last_level_in_a_few_updates(monkeypatch,
                                                                                         histograms_only, photo):
    """Above `kmeans._FINISH_ABOVE` (lowered here) fit of RGBA over `_POLISH_MAX` colours (lowered too) ends
    its finest level (6 bits at k = 16) with `kmeans._FINISH` over-relaxed updates, the levels below only
    warmed up: another palette, J within 0.5 % of the levels run to tol, labels still exact nearest. Not at
    or below that k: the same files as before. RGB over `_POLISH_MAX` colours ends the same way."""
    monkeypatch.setattr(coreset, "FROM", 1 << 62)  # through the distinct colours
    before = {k: kmq.compress(photo, k=k, seed=6) for k in (8, 16)}
    rgb = kmq.compress(photo[..., :3], k=16, seed=6)
    monkeypatch.setattr(km, "_FINISH_ABOVE", 8)
    runs = []
    real = km._hamerly
    monkeypatch.setattr(km, "_hamerly", lambda pts, c, it, tol, *a:
                        runs.append((pts.m, it, a[1] if len(a) > 1 else 1.0)) or real(pts, c, it, tol, *a))
    img = kmq.compress(photo, k=16, seed=6)
    six = coreset.Histogram(clear_transparent(photo).reshape(-1, 4)).bins  # as kmq reads them
    # The last run is on the 6-bit level: km._FINISH's updates, over-relaxed.
    assert runs[-1][0] == six and runs[-1][1] == km._FINISH_RGBA[0] and runs[-1][2] == km._FINISH_RGBA[1]
    assert len(runs) > 1 and all(r[2] == 1.0 for r in runs[:-1])
    assert img.to_bytes() != before[16].to_bytes() and img.distortion <= 1.005 * before[16].distortion
    assert_nearest(img, photo)
    assert kmq.compress(photo, k=8, seed=6).to_bytes() == before[8].to_bytes()
    runs.clear()
    img = kmq.compress(photo[..., :3], k=16, seed=6)
    assert runs[-1][1] == km._FINISH[0] and runs[-1][2] == km._FINISH[1]
    assert img.to_bytes() != rgb.to_bytes() and img.distortion <= 1.005 * rgb.distortion
    flat = photo[..., :3].reshape(-1, 3)
    sq = ((flat.astype(np.int64) - img.palette[img.labels.reshape(-1)].astype(np.int64)) ** 2).sum(axis=1)
    ref, j = nearest_j(flat, img.palette)
    assert np.array_equal(sq, ((flat.astype(np.int64) - img.palette[ref]) ** 2).sum(axis=1)) and img.distortion == j


def test_rgba_nearest_from_a_guess_is_exact_and_ties_go_low():
    """RGBA at K > 64 measures only the entries near a guess (`kmeans.takes_guess`): any guess, even a bad
    one, gives the labels and distances of the cells of the colour cube, ties to the lower entry."""
    rng = np.random.default_rng(5)
    palette = np.unique(rng.integers(0, 256, (90, 4), dtype=np.uint8), axis=0)
    points = rng.integers(0, 256, (2000, 4), dtype=np.uint8)
    # Midway between entries 0 and 1 (their sum even in every channel): a tie, which entry 0 wins.
    palette[1] = palette[0] ^ np.uint8(2)
    points[0] = (palette[0].astype(int) + palette[1]) // 2
    assert km.takes_guess(len(points), 4, len(palette))
    cells = km.nearest(points, palette)
    ref, _ = nearest_j(points, palette)
    assert np.array_equal(cells[0], ref) and cells[0][0] == 0
    for guess in (rng.integers(0, len(palette), len(points)), np.full(len(points), 1)):
        got = km.nearest(points, palette, guess.astype(np.intp))
        assert np.array_equal(got[0], cells[0]) and np.array_equal(got[1], cells[1])


def test_above_k_64_a_histogram_level_that_does_not_halve_the_bins_is_skipped(monkeypatch):
    # RGBA noise: its 5-bit level holds nearly as many bins as the 6-bit histogram, and Lloyd to tol there
    # took 7x the distinct colours' time (review). Above K = 64 (last given) the climb is asked to skip it.
    px = np.random.default_rng(0).integers(0, 256, (40_000, 4)).astype(np.uint16)
    ids = ((px[:, 0] >> 2) << 18) | ((px[:, 1] >> 2) << 12) | ((px[:, 2] >> 2) << 6) | (px[:, 3] >> 2)
    ids, inverse, counts = np.unique(ids.astype(np.int64), return_inverse=True, return_counts=True)
    sums = np.zeros((ids.size, 4), np.int64)
    np.add.at(sums, inverse, px.astype(np.int64))
    seen = []
    climb = km._climb
    monkeypatch.setattr(km, "_climb", lambda levels, m, *a, **kw: seen.append(m) or climb(levels, m, *a, **kw))
    variance = px.astype(np.float64).var(axis=0)
    km.fit_histogram(ids, counts, sums, 6, 8, variance=variance, last=(20, 1.9))
    assert seen[0] == ids.size
    seen.clear()
    km.fit_histogram(ids, counts, sums, 6, 8, variance=variance)  # as fit: the same levels whatever m
    assert seen == [math.inf]


def parents(ids: np.ndarray) -> np.ndarray:
    """Each 6-bit key's 5-bit cell."""
    return sum(((ids >> (6 * (3 - c) + 1)) & 31) << (5 * (3 - c)) for c in range(4))


def test_light_bins_merge_by_5_bit_cell_keeping_the_coarser_levels(photo):
    """Above EXACT_FIT_MAX the last level is the 6-bit histogram with its light bins merged per 5-bit cell:
    the same 5-bit (so 4-bit) sums, keys unique and ascending, each merged bin keyed inside its cell."""
    six = coreset.Histogram(photo.reshape(-1, 4))
    below = 3
    light = six.counts < below
    assert 0 < light.sum() < six.bins
    fives = len(np.unique(parents(six.ids)))
    ids, counts, sums = coreset._light_merged(six.ids, six.counts, six.sums, below, 100, fives)
    assert np.all(np.diff(ids) > 0) and np.isin(ids, six.ids).all()
    heavy = np.isin(ids, six.ids[~light])
    assert np.array_equal(ids[heavy], six.ids[~light]) and np.array_equal(counts[heavy], six.counts[~light])
    assert np.array_equal(sums[heavy], six.sums[~light])
    assert (~heavy).sum() == len(np.unique(parents(six.ids[light])))
    for h_ids, h_counts, h_sums in ((ids, counts, sums), (six.ids, six.counts, six.sums)):
        up, at = np.unique(parents(h_ids), return_inverse=True)
        merged = (up, np.bincount(at, weights=h_counts), np.stack([np.bincount(at, weights=h_sums[:, c])
                                                                    for c in range(4)], 1))
        if h_ids is ids:
            got = merged
        else:
            assert all(np.array_equal(a, b) for a, b in zip(got, merged))
    # Where the 5-bit level already has the bins fit needs for k, fit never climbs to this one: unchanged.
    assert coreset._light_merged(six.ids, six.counts, six.sums, below, fives // km._FINE_ENOUGH, fives)[0] is six.ids


def test_light_bins_merged_by_hand():
    # 6-bit bins (r, g, b, a): (0,0,0,0) and (1,1,1,1) light in 5-bit cell 0, (2,0,0,0) light alone in its
    # cell, (0,0,0,1) heavy. Each merged bin takes its cell's least key and its place among the keys.
    bins = ((0, 0, 0, 0), (0, 0, 0, 1), (1, 1, 1, 1), (2, 0, 0, 0))
    key = [(r << 18) | (g << 12) | (b << 6) | a for r, g, b, a in bins]
    counts = np.array([1, 5, 2, 1])
    sums = np.array([[1, 2, 3, 4], [10, 10, 10, 10], [5, 6, 7, 8], [9, 9, 9, 9]])
    ids, got_counts, got_sums = coreset._light_merged(np.array(key), counts, sums, 3, 1, 2)
    assert ids.tolist() == [key[0], key[1], key[3]]
    assert got_counts.tolist() == [3, 5, 1] and got_counts.dtype == np.int64
    assert got_sums.tolist() == [[6, 8, 10, 12], [10, 10, 10, 10], [9, 9, 9, 9]] and got_sums.dtype == np.int64
    assert counts.tolist() == [1, 5, 2, 1] and sums[0].tolist() == [1, 2, 3, 4]  # the caller's arrays kept


def test_above_the_exact_fits_k_the_last_level_is_fitted_with_its_light_bins_merged(monkeypatch, histograms_only,
                                                                                    photo):
    monkeypatch.setattr(coreset, "EXACT_FIT_MAX", 8)
    monkeypatch.setattr(coreset, "_LIGHT_SHARE", 3 / (photo.shape[0] * photo.shape[1]))
    given = []
    real = km.fit_histogram
    monkeypatch.setattr(km, "fit_histogram", lambda ids, *a, **kw: given.append(len(ids)) or real(ids, *a, **kw))
    img = kmq.compress(photo, k=16, seed=6)
    six = coreset.Histogram(clear_transparent(photo).reshape(-1, 4))
    assert given[0] < six.bins - (six.counts < 3).sum() / 2
    assert_nearest(img, photo)
    monkeypatch.setattr(coreset, "_LIGHT_SHARE", 0.0)
    whole = kmq.compress(photo, k=16, seed=6)
    assert given[-1] == six.bins and img.distortion <= 1.005 * whole.distortion


def test_rgba_restarts_are_seeded_and_ranked_on_the_4_bit_levels_light_bins_merged_by_3_bit_cell(monkeypatch):
    monkeypatch.setattr(km, "_THIN_FROM", 3)
    monkeypatch.setattr(coreset, "_STAND_IN_SHARE", 0.1)  # under 16.2 of the 162 pixels: light
    x = np.array([[4, 4, 4, 4], [3, 3, 3, 30], [12, 12, 12, 12], [200, 20, 20, 40], [100, 100, 100, 100],
                  [5, 9, 14, 0]], np.float64)
    w = np.array([100, 1, 3, 2, 50, 6], np.float64)
    thin = coreset._stand_in(km._Points(x, w))
    # The heavy bins first, in order; then the light ones by 3-bit cell: (0,0,0,0) holds 1, 2 and 5; (6,0,0,1) 3.
    assert thin.inverse.tolist() == [0, 2, 2, 3, 1, 2]
    assert thin.w.tolist() == [100, 50, 10, 2]
    merged = (np.array([3, 3, 3, 30]) * 1 + np.array([12, 12, 12, 12]) * 3 + np.array([5, 9, 14, 0]) * 6) / 10
    np.testing.assert_allclose(thin.x, [[4, 4, 4, 4], [100, 100, 100, 100], merged, [200, 20, 20, 40]], rtol=1e-15)
    # Not at or below _THIN_FROM bins, nor where fewer than a quarter of the bins go.
    assert coreset._stand_in(km._Points(x[:3], w[:3])) is None
    assert coreset._stand_in(km._Points(x, np.full(6, 10.0))) is None


def test_rgba_restarts_through_the_histogram_rank_on_the_stand_in_and_end_near(monkeypatch, histograms_only, photo):
    # The photo's 4-bit level: 1 773 bins, 1 079 of them under 3e-4 of the pixels.
    monkeypatch.setattr(km, "_THIN_FROM", 500)
    monkeypatch.setattr(coreset, "_STAND_IN_SHARE", 3e-4)
    ranked = []
    real = km._best_runs
    monkeypatch.setattr(km, "_best_runs", lambda pts, *a, **kw: ranked.append((pts.m, a[-1].m if a[-1] else None))
                        or real(pts, *a, **kw))
    img = kmq.compress(photo, k=16, seed=4)
    assert ranked[0][1] is not None and ranked[0][1] < 0.75 * ranked[0][0]
    assert_nearest(img, photo)
    # Above STAND_IN_MAX the restarts rank on the whole level.
    ranked.clear()
    monkeypatch.setattr(coreset, "STAND_IN_MAX", 15)
    whole = kmq.compress(photo, k=16, seed=4)
    assert ranked[0][1] is None
    assert whole.to_bytes() != img.to_bytes() and img.distortion <= 1.005 * whole.distortion


@pytest.mark.parametrize("narrow", [True, False])
def test_a_histogram_too_coarse_at_6_bits_counts_its_7_bit_bins_and_colours_by_hand(monkeypatch, threads, narrow):
    # Narrow: counted in int32, the 7-bit sums kept in uint32, as up to ~300 M pixels; else int64 throughout,
    # and the 7-bit bins counted in one thread (as from _SERIAL_BINS of them), the 6-bit ones in several.
    if not narrow:
        monkeypatch.setattr(coreset, "_NARROW_COUNTS", 5)
        monkeypatch.setattr(coreset, "_NARROW_SUMS", 5)
        monkeypatch.setattr(coreset, "_SERIAL_BINS", 1)
        monkeypatch.setattr(parallel, "MIN_PART", 1)
        threads(2)
    # 6-bit bins (0,0,0,0): 0, 2, 3 in channel 0; (0,1,0,0): (0,4,0,0); (1,0,0,63): 4 and 5 under alpha 255.
    px = np.array([[0, 0, 0, 0], [2, 0, 0, 0], [3, 0, 0, 0], [0, 4, 0, 0], [4, 0, 0, 255], [5, 1, 0, 255]],
                  np.uint8)
    monkeypatch.setattr(km, "_POLISH_MAX", 5)
    h = coreset.Histogram(px, min_bins=4)  # 3 6-bit bins: too few, so the 7-bit ones are counted
    assert h.bins == 3 and h.ids.tolist() == [0, 1 << 12, (1 << 18) | 63]
    f = h.fine
    # 7-bit bins by key: (0,0,0,0); (0,2,0,0), in 6-bit bin 1, before (1,0,0,0), in 6-bit bin 0; (2,0,0,127).
    assert f.ids.tolist() == [0, 2 << 14, 1 << 21, (2 << 21) | 127] and f.six.tolist() == [0, 1, 0, 2]
    assert f.counts.tolist() == [1, 1, 2, 2] and f.sums.tolist() == [[0] * 4, [0, 4, 0, 0], [5, 0, 0, 0],
                                                                    [9, 1, 0, 510]]
    # Each pixel's 7-bit bin, which `label` reads, numbered by 6-bit bin and then by bit 1 of each channel.
    assert h.index.tolist() == [0, 1, 1, 2, 3, 3] and f.rank.tolist() == [0, 2, 1, 3]
    # (Narrow, the 6-bit sums uint32 and the 7-bit counts int32 too, and the 7-bit keys int32 always: less held
    # through the fit and the labels.)
    assert f.sums.dtype == h.sums.dtype == (np.uint32 if narrow else np.int64)
    assert f.six.dtype == f.rank.dtype == f.ids.dtype == np.int32
    assert h.counts.dtype == np.int64 and f.counts.dtype == (np.int32 if narrow else np.int64)
    assert f.colours == 6
    # The 6-bit sums are the 7-bit ones added up.
    assert h.counts.tolist() == [3, 1, 2] and h.sums.tolist() == [[5, 0, 0, 0], [0, 4, 0, 0], [9, 1, 0, 510]]
    assert h.square_sums == coreset.Histogram(px).square_sums
    palette = np.array([[1, 0, 0, 0], [3, 3, 0, 0], [5, 0, 0, 250]], np.uint8)
    labels, count, err = coreset.label(px, h, palette)  # by 7-bit cell
    ref, j = nearest_j(px, palette)
    # 1 + 1 + 4 to entry 0, 9 + 1 to entry 1, 1 + 25 twice to entry 2
    assert labels.tolist() == ref.tolist() == [0, 0, 0, 1, 2, 2] and count.tolist() == [3, 1, 2] and err == 68
    monkeypatch.setattr(km, "_POLISH_MAX", 6)  # as many colours as fit polishes on: the distinct colours' way
    assert coreset.Histogram(px, min_bins=4).ids is None
    # A sample (here every pixel) of fewer colours than _FINE_SAMPLE x _POLISH_MAX: not even the 7-bit bins.
    finer = []
    monkeypatch.setattr(coreset.Histogram, "_finer", lambda *a: finer.append(1))
    monkeypatch.setattr(km, "_POLISH_MAX", 5)
    monkeypatch.setattr(coreset, "_FINE_SAMPLE", 7 / 5)
    assert coreset.Histogram(px, min_bins=4).ids is None and finer == []
    monkeypatch.setattr(coreset, "_FINE_SAMPLE", 6 / 5)
    coreset.Histogram(px, min_bins=4)
    assert finer == [1]


def test_an_entry_nearer_than_another_at_every_value_of_a_cell_labels_it_whole():
    """Entries 0 and (1, 0, 0, 0), the cell 20..23 in every channel (6 bits; 20..21 at 7 bits): 0 is at
    least 4 x 20^2 = 1600 away, (1, 0, 0, 0) at most 22^2 + 3 x 23^2 = 2071 (at 7 bits 20^2 + 3 x 21^2 = 1723),
    so the bounds keep both; but |x - 0|^2 - |x - (1, 0, 0, 0)|^2 = 2 x_0 - 1 > 0 there: (1, 0, 0, 0) alone."""
    two = np.array([[0] * 4, [1, 0, 0, 0]], np.uint8)
    px = np.array([[20] * 4, [23, 21, 22, 20]], np.uint8)
    h = coreset.Histogram(px)
    assert coreset._bin_labels(h, two).per_bin.tolist() == [1]
    labels, count, err = coreset.label(px, h, two)
    assert labels.tolist() == [1, 1] and count.tolist() == [0, 2]
    assert err == 19 ** 2 + 3 * 20 ** 2 + 22 ** 2 + 21 ** 2 + 22 ** 2 + 20 ** 2
    # The 7-bit cell (10, 10, 10, 10) from its 6-bit one's two candidates.
    parent = coreset._Cells(np.array([-1], np.int32), np.array([2], np.int32), np.array([0, 0]), np.array([0, 1]))
    key = np.array([((10 * 128 + 10) * 128 + 10) * 128 + 10], np.int32)
    fine = coreset._fine_cells(key, np.zeros(1, np.intp), parent, two)
    assert fine.single.tolist() == [1] and fine.count.tolist() == [1] and fine.bins.size == 0


@pytest.mark.parametrize("k", [3, 40, 300])
def test_7_bit_candidates_from_the_6_bit_cells_are_those_from_every_entry(monkeypatch, photo, k):
    flat = clear_transparent(photo).reshape(-1, 4)
    palette = np.unique(flat[np.random.default_rng(k).choice(len(flat), k)], axis=0)
    monkeypatch.setattr(km, "_POLISH_MAX", 1000)
    h = coreset.Histogram(flat, min_bins=1 << 20)
    f = h.fine
    got = coreset._fine_cells(f.ids, f.six, coreset._cell_candidates(h.ids, coreset.BITS, palette), palette)
    every = coreset._cell_candidates(f.ids, 7, palette)
    assert ((every.single < 0) | (got.single == every.single)).all() and (got.count <= every.count).all()
    assert (got.single >= 0).any() and (got.count > 1).any()
    for cells in (got, every):
        assert_candidates_hold(f.ids, 7, cells, palette)


@pytest.fixture
def busy_photo(samples) -> np.ndarray:
    """chelsea at a third of its size, upscaled 6x (smooth: 188 000 7-bit bins, 51 000 6-bit ones) under an
    alpha vignette, bit 0 of every channel random: 540 000 pixels, 446 000 colours (over 2 per 7-bit bin)."""
    rgb = Image.open(samples / "chelsea.png").convert("RGB")
    rgb = rgb.resize((rgb.width // 3, rgb.height // 3), Image.Resampling.LANCZOS)
    px = vignette(np.asarray(rgb.resize((rgb.width * 6, rgb.height * 6), Image.Resampling.BILINEAR)))
    return px ^ np.random.default_rng(0).integers(0, 2, px.shape, dtype=np.uint8)


@pytest.mark.parametrize("finish", [False, True])
def test_too_few_6_bit_bins_fit_the_7_bit_histogram_to_the_same_file(monkeypatch, histograms_only, threads,
                                                                     busy_photo, finish):
    """Where the 6-bit histogram has too few bins for k, fit climbs to the 7-bit level: its 7-bit histogram
    and the number of distinct colours (which decides the levels fit climbs) stand for the colours, for
    the same file as through them, in any number of threads; above `kmeans._FINISH_ABOVE` (lowered) with
    the 7-bit level's light bins merged and over-relaxed updates on it, as through the colours."""
    monkeypatch.setattr(km, "_FINE_ENOUGH", 10_000)  # 160 000 bins for k = 16: more than the 6-bit level's
    if finish:
        monkeypatch.setattr(km, "_FINISH_ABOVE", 8)
        monkeypatch.setattr(km, "_LIGHT_SHARE", 3 / (busy_photo.shape[0] * busy_photo.shape[1]))
    fits, merged = [], []
    real_fit, real_merged = km.fit_fine, km._merged
    monkeypatch.setattr(km, "fit_fine", lambda *a, **kw: fits.append(kw["colours"]) or real_fit(*a, **kw))
    monkeypatch.setattr(km, "_merged", lambda inverse, ids, w, wx, bits, *a: merged.append((len(ids), bits)) or
                        real_merged(inverse, ids, w, wx, bits, *a))
    runs = []
    real_hamerly = km._hamerly
    monkeypatch.setattr(km, "_hamerly", lambda pts, c, it, tol, *a: runs.append((pts.m, it)) or
                        real_hamerly(pts, c, it, tol, *a))
    files = []
    for n in (1, 3):
        threads(n)
        files.append(kmq.compress(busy_photo, k=16, seed=7))
    img = files[0]
    assert files[1].to_bytes() == img.to_bytes() and len(fits) == 2
    flat = clear_transparent(busy_photo).reshape(-1, 4)
    colours = len(km.distinct(flat).counts)
    assert fits[0] == colours
    sevens = merged[1][0]
    assert [m[1] for m in merged[:2]] == [6, 7] and 2 * sevens <= colours
    # The last run: on the 7-bit level, merged (fewer points) only above _FINISH_ABOVE.
    assert (runs[-1][0] < sevens) == finish and (runs[-1][1] == km._FINISH_RGBA[0]) == finish
    assert_nearest(img, busy_photo)
    monkeypatch.setattr(coreset, "FROM", 1 << 62)
    assert kmq.compress(busy_photo, k=16, seed=7).to_bytes() == img.to_bytes()


def test_a_7_bit_level_not_halving_the_colours_is_skipped_as_through_them(monkeypatch, histograms_only, photo):
    """chelsea's 7-bit bins (100 000) are over half its 117 000 colours: fit, which compares the levels with the
    colours, does not climb it, and neither does the histogram's fit, told their number."""
    monkeypatch.setattr(km, "_FINE_ENOUGH", 10_000)
    fits = []
    real = km.fit_fine
    monkeypatch.setattr(km, "fit_fine", lambda ids, *a, **kw: fits.append((len(ids), kw["colours"])) or
                        real(ids, *a, **kw))
    img = kmq.compress(photo, k=16, seed=8)
    colours = len(km.distinct(clear_transparent(photo).reshape(-1, 4)).counts)
    assert len(fits) == 1 and 2 * fits[0][0] > fits[0][1] == colours
    assert_nearest(img, photo)
    monkeypatch.setattr(coreset, "FROM", 1 << 62)
    assert kmq.compress(photo, k=16, seed=8).to_bytes() == img.to_bytes()


def test_a_sample_short_of_6_bit_bins_takes_the_7_bit_histogram_not_the_6_bit_one(monkeypatch, histograms_only,
                                                                                  photo):
    """Every 16th pixel (_SAMPLE_BITS 13) shows fewer 6-bit bins than the 16 000 asked at k = 16, though the
    image has 47 000: the 6-bit path is not taken on such a sample (as before), the 7-bit one is, which is
    fit's own, so the file is the one through the distinct colours."""
    monkeypatch.setattr(coreset, "_SAMPLE_BITS", 13)
    flat = clear_transparent(photo).reshape(-1, 4)
    sample = flat[::len(flat) >> 13]
    shown = len(np.unique(sum((sample[:, c] >> 2).astype(np.int64) << (6 * (3 - c)) for c in range(4))))
    assert 16_000 // 16 <= shown < 16_000
    h = coreset.Histogram(flat, min_bins=16_000)
    assert h.bins == 46875 and h.fine is not None
    img = kmq.compress(photo, k=16, seed=9)
    monkeypatch.setattr(coreset, "FROM", 1 << 62)
    assert kmq.compress(photo, k=16, seed=9).to_bytes() == img.to_bytes()


def test_packed_low_sums_unpack_a_block_of_bins_at_a_time():
    """The two pairs' packed low sums (`_PACK`) added into low exactly and zeroed, a block of `_CHUNK` bins at a
    time: no temporary as long as the bins (a 12 MP photo's 3.65 M 7-bit bins made 29 MB ones, fresh pages)."""
    b = 16 * coreset._CHUNK + 5
    rng = np.random.default_rng(3)
    high, lowest = rng.integers(0, 1 << 25, (2, 2, b))
    packed = [high[p] * 2.0 ** coreset._PACK + lowest[p] for p in range(2)]
    low = rng.integers(0, 1000, (b, 4)).astype(np.int32)
    want = low.astype(np.int64) + np.stack([high[0], lowest[0], high[1], lowest[1]], 1)
    _, peak = traced_peak(lambda: coreset._unpacked_into(low, packed))
    assert np.array_equal(low, want) and low.dtype == np.int32
    assert not packed[0].any() and not packed[1].any()
    assert peak < 2 * b  # (bytes: an int64 per bin would be 8 b)


def test_7_bit_bins_are_ranked_by_bit_counts_not_a_table_per_flag(monkeypatch):
    """`Histogram._finer` numbers the pixels' 7-bit bins by `_BitRank` (a few MB at 15 M flags), not by a
    `_TableRank` of an int32 per flag (60 MB and a cumulative sum at 12 MP under random alpha): the same bins."""
    made = []
    real = km._TableRank
    monkeypatch.setattr(km, "_TableRank", lambda flags: made.append(flags.shape[0]) or real(flags))
    monkeypatch.setattr(km, "_POLISH_MAX", 5)
    rng = np.random.default_rng(2)
    px = rng.integers(0, 8, (5000, 4)).astype(np.uint8)  # 16 6-bit bins, each with 16 7-bit ones
    h = coreset.Histogram(px, min_bins=4 * 16)
    f = h.fine
    assert made == [] and f is not None and f.ids.shape[0] == 256
    keys = sum((px[:, c].astype(np.int64) >> 1) << (7 * (3 - c)) for c in range(4))
    assert np.array_equal(f.ids[f.rank[h.index]], keys)  # each pixel's 7-bit bin


def test_light_7_bit_bins_merged_per_6_bit_cell_by_hand(monkeypatch):
    # Two 6-bit bins: bin 0 with 7-bit bins of 1 (light), 5 (heavy) and 2 (light) pixels, bin 1 with one of
    # 1 pixel (light). Heavy bins stay in their order, then each 6-bit bin's light ones as one point.
    # (Sorted, its sums given whole.)
    fine = coreset.Fine(np.array([1, 2, 3, 4], dtype=np.int32), np.array([1, 5, 2, 1], dtype=np.int32), None,
                        np.array([0, 0, 0, 1], dtype=np.int32), None, np.dtype(np.uint32))
    fine.sums = np.array([[1, 2, 3, 4], [10, 10, 10, 10], [5, 6, 7, 8], [9, 9, 9, 9]], dtype=np.uint32)
    fine.rank = np.arange(4, dtype=np.int32)
    hist = coreset.Histogram.__new__(coreset.Histogram)
    hist.fine, hist.bins = fine, 2
    hist.counts = np.array([8, 1])
    hist.sums = np.array([[16, 18, 20, 22], [9, 9, 9, 9]], dtype=np.uint32)
    (counts, sums), parent = coreset._fine_merged(hist, 3)
    assert counts.tolist() == [5, 3, 1] and counts.dtype == np.int32
    assert sums.tolist() == [[10, 10, 10, 10], [6, 8, 10, 12], [9, 9, 9, 9]] and sums.dtype == np.uint32
    assert parent.tolist() == [0, 0, 1]
    assert fine.counts.tolist() == [1, 5, 2, 1]  # the histogram's own arrays kept for the labels


def test_large_k_fits_the_7_bit_level_with_its_light_bins_merged_per_6_bit_cell(monkeypatch, busy_rgba):
    """From kmeans._LARGE_K (lowered to 40) on the 7-bit level, its bins of under _FINE_LIGHT_SHARE of the
    pixels are merged per 6-bit cell before the fit: fewer points, the same pixels and sums per 6-bit bin (so
    each point's parent, the warm 6-bit bin, still holds it), labels still each pixel's nearest, J near the
    whole level's."""
    busy = busy_rgba
    flat, six = large_k_on_the_histogram(monkeypatch, busy)
    k = six // 1000 + 3
    hist = coreset.Histogram(flat, min_bins=coreset.min_bins(k))
    assert hist.fine is not None
    monkeypatch.setattr(coreset, "_FINE_LIGHT_SHARE", 4.5 / flat.shape[0])  # bins of 1 to 3 pixels: light
    given = []
    real = km.fit_large
    monkeypatch.setattr(km, "fit_large", lambda counts, sums, *a, **kw: given.append((counts, sums, kw["parent"]))
                        or real(counts, sums, *a, **kw))
    img = kmq.compress(busy, k=k)
    counts, sums, parent = given[0]
    light = hist.fine.counts < 4
    assert len(counts) == (~light).sum() + len(np.unique(hist.fine.six[light])) < 0.75 * len(hist.fine.counts)
    assert np.array_equal(np.bincount(parent, weights=counts), hist.counts)
    for c in range(4):
        assert np.array_equal(np.bincount(parent, weights=sums[:, c]), hist.sums[:, c])
    assert_nearest(img, busy)
    monkeypatch.setattr(coreset, "_FINE_LIGHT_SHARE", 0.0)
    whole = kmq.compress(busy, k=k)
    assert len(given[-1][0]) == len(hist.fine.counts) and img.distortion <= 1.01 * whole.distortion


def test_7_bit_counts_and_sums_stay_narrow_and_unpack_once_after_the_pass(monkeypatch):
    """Up to _NARROW_SUMS pixels the 7-bit pass's counts and sums are made in int32 / uint32 from the start (as
    int64 they were 117 MB more at 3.66 M bins, with the 6-bit sums added up over the (B, 4) block in a uint64
    one, the Histogram's peak), and its packed low sums (bit 0 alone) are unpacked once, after the pass, up to
    _FINE_SPAN pixels: the same histogram as unpacked every _SPAN pixels."""
    monkeypatch.setattr(km, "_POLISH_MAX", 5)
    monkeypatch.setattr(coreset, "_SERIAL_BINS", 1)
    monkeypatch.setattr(coreset, "_RUN", 64)
    monkeypatch.setattr(coreset, "_SPAN", 512)
    px = np.random.default_rng(2).integers(0, 8, (5000, 4)).astype(np.uint8)  # 16 6-bit bins, 256 7-bit ones
    made, unpacks = [], []
    count, unpack = coreset._count, coreset._unpacked_into
    monkeypatch.setattr(coreset, "_count", lambda *a, **kw: made.append(count(*a, **kw)) or made[-1])
    monkeypatch.setattr(coreset, "_unpacked_into", lambda *a: unpacks.append(1) or unpack(*a))
    h = coreset.Histogram(px, min_bins=4 * 16)
    assert h.fine.ids.shape[0] == 256 and len(made) == 1 and unpacks == [1]
    assert made[0][0].dtype == made[0][1].dtype == np.int32
    monkeypatch.setattr(coreset, "_FINE_SPAN", 512)
    spanned = coreset.Histogram(px, min_bins=4 * 16)
    assert len(unpacks) > 5
    for a, b in ((h.fine.counts, spanned.fine.counts), (h.fine.sums, spanned.fine.sums), (h.counts, spanned.counts),
                 (h.sums, spanned.sums)):
        assert np.array_equal(a, b) and a.dtype == b.dtype
    assert h.sums.dtype == h.fine.sums.dtype == np.uint32 and h.counts.dtype == np.int64
    row = h.fine.rank[h.index]  # each pixel's 7-bit bin
    assert np.array_equal(h.fine.counts, np.bincount(row, minlength=256))
    for c in range(4):
        assert np.array_equal(h.fine.sums[:, c], np.bincount(row, weights=px[:, c], minlength=256))


@pytest.mark.parametrize("sampled", ["both", "whole only", "neither"])
def test_large_k_keeps_the_whole_7_bit_level_where_the_merge_would_lose_its_sample(monkeypatch, busy_rgba, sampled):
    """The merged level is fitted unless it has no sample (`kmeans._sample`) where the whole level has one: fit_large
    would then run plain updates over all of its points (chelsea at 12 MP under a vignette: CPU +5 %)."""
    flat, six = large_k_on_the_histogram(monkeypatch, busy_rgba)
    k = six // 1000 + 3
    hist = coreset.Histogram(flat, min_bins=coreset.min_bins(k))
    whole = len(hist.fine.counts)
    monkeypatch.setattr(coreset, "_FINE_LIGHT_SHARE", 4.5 / flat.shape[0])
    real = km._sample
    drawn = {"both": lambda w: True, "whole only": lambda w: len(w) == whole, "neither": lambda w: False}[sampled]
    monkeypatch.setattr(km, "_sample", lambda w, *a, **kw: real(w, *a, **kw) if drawn(w) else None)
    given = []
    monkeypatch.setattr(km, "fit_large", lambda counts, *a, **kw: given.append(len(counts)) or np.zeros((k, 4)))
    coreset.fit(hist, k, seed=0, max_iter=300, tol=1e-4)
    assert (given[0] == whole) == (sampled == "whole only") and given[0] <= whole


def test_large_k_7_bit_histogram_stays_in_the_order_of_its_index_its_sums_as_bit_0_sums(monkeypatch, busy_rgba):
    """From kmeans._LARGE_K (lowered to 40) the 7-bit histogram is not sorted by key (no rank, no copies of its
    arrays at the Histogram's peak): `index` numbers its bins directly, and its sums are kept as those of
    the pixels' bit 0 in the narrowest dtype its counts allow, the exact sums made from them where read
    (`Fine.sums_at`). Sorted (`Fine.sort`), it is the histogram made below _LARGE_K."""
    flat, six = large_k_on_the_histogram(monkeypatch, busy_rgba)
    k = six // 1000 + 3
    hist = coreset.Histogram(flat, min_bins=coreset.min_bins(k))
    f = hist.fine
    b = f.ids.shape[0]
    assert f.rank is None and f.sums is None and b > 4 * k
    top = int(f.counts.max())
    assert f.low.dtype == (np.uint8 if top < 256 else np.uint16) and f.low.shape == (b, 4)
    keys = sum((flat[:, c].astype(np.int64) >> 1) << (7 * (3 - c)) for c in range(4))
    assert np.array_equal(f.ids[hist.index], keys)  # each pixel's 7-bit bin, no rank between
    assert np.array_equal(np.bincount(hist.index, minlength=b), f.counts)
    sums = f.sums_at(np.arange(b))
    assert sums.dtype == np.uint32
    for c in range(4):
        assert np.array_equal(sums[:, c], np.bincount(hist.index, weights=flat[:, c], minlength=b))
        assert np.array_equal(f.low[:, c], np.bincount(hist.index, weights=flat[:, c] & 1, minlength=b))
    rows = np.array([b - 1, 0, b // 2])
    assert np.array_equal(f.sums_at(rows), sums[rows])
    monkeypatch.setattr(km, "_LARGE_K", k + 1)  # (the same bins asked for below _LARGE_K)
    below = coreset.Histogram(flat, min_bins=coreset.min_bins(k)).fine
    assert below.rank is not None and below.low is None
    f.sort()
    assert f.low is None and np.all(np.diff(f.ids) > 0)
    for a, z in ((f.ids, below.ids), (f.counts, below.counts), (f.sums, below.sums), (f.six, below.six),
                 (f.rank, below.rank)):
        assert np.array_equal(a, z) and a.dtype == z.dtype
    assert np.array_equal(f.sums_at(rows), f.sums[rows])


def test_light_7_bit_bins_merged_per_6_bit_cell_from_the_index_order_by_hand():
    """A 7-bit histogram in the order of its index (by 6-bit bin, then bit 1 of each channel), sums as bit 0's:
    its heavy bins are fitted in key order, as the sorted histogram's, with their exact sums."""
    # 6-bit bin 0 (0,0,0,0) holds 7-bit bins (0,0,0,0) and (1,0,0,0); 6-bit bin 1 (0,1,0,0) holds (0,2,0,0) and
    # (0,2,0,1): in the index's order keys 0, 1 << 21, 2 << 14, 2 << 14 | 1, in key order 1 << 21 last.
    ids = np.array([0, 1 << 21, 2 << 14, (2 << 14) | 1], dtype=np.int32)
    low = np.array([[1, 0, 0, 1], [5, 2, 0, 3], [0, 4, 1, 0], [1, 1, 2, 2]], dtype=np.uint8)
    fine = coreset.Fine(ids, np.array([1, 5, 4, 2], dtype=np.int32), low, np.array([0, 0, 1, 1], dtype=np.int32),
                        None, np.dtype(np.uint32))
    whole = [[1, 0, 0, 1], [15, 2, 0, 3], [0, 20, 1, 0], [1, 9, 2, 6]]  # bit 0's sums + 2 x 7 bits x count
    assert fine.sums_at(np.arange(4)).tolist() == whole
    hist = coreset.Histogram.__new__(coreset.Histogram)
    hist.fine, hist.bins = fine, 2
    hist.counts = np.array([6, 6])
    hist.sums = np.array([[16, 2, 0, 4], [1, 29, 3, 6]], dtype=np.uint32)
    (counts, sums), parent = coreset._fine_merged(hist, 3)
    # Heavy: (0,2,0,0) then (1,0,0,0), by key; then each 6-bit bin's light rest.
    assert counts.tolist() == [4, 5, 1, 2] and parent.tolist() == [1, 0, 0, 1]
    assert sums.tolist() == [[0, 20, 1, 0], [15, 2, 0, 3], [1, 0, 0, 1], [1, 9, 2, 6]] and sums.dtype == np.uint32
    fine.sort()
    assert fine.ids.tolist() == [0, 2 << 14, (2 << 14) | 1, 1 << 21] and fine.rank.tolist() == [0, 3, 1, 2]
    assert fine.sums.tolist() == [whole[0], whole[2], whole[3], whole[1]] and fine.six.tolist() == [0, 1, 1, 0]
    (again, again_sums), again_parent = coreset._fine_merged(hist, 3)
    assert again.tolist() == counts.tolist() and again_sums.tolist() == sums.tolist()
    assert again_parent.tolist() == parent.tolist()


@pytest.mark.parametrize("order", ["index", "sorted"])
def test_labels_by_7_bit_cell_in_either_order_and_by_blocks_are_each_pixels_nearest(monkeypatch, busy_rgba, order):
    """`label` over a large-k 7-bit histogram, in the order of its index or sorted, its cells' candidates
    found a few cells at a time (`_FINE_SPAN_CELLS`) and its whole bins summed a few at a time
    (`_BIN_BLOCK`): each pixel's nearest entry (ties low), counts and J exact, whatever the blocks."""
    flat, six = large_k_on_the_histogram(monkeypatch, busy_rgba)
    k = six // 1000 + 3
    hist = coreset.Histogram(flat, min_bins=coreset.min_bins(k))
    if order == "sorted":
        hist.fine.sort()
    palette = np.unique(flat[::53], axis=0)[:: max(1, len(np.unique(flat[::53], axis=0)) // 150)][:150]
    ref, j = nearest_j(flat, palette)
    labels, count, err = coreset.label(flat, hist, palette)
    assert np.array_equal(labels, ref) and np.array_equal(count, np.bincount(ref, minlength=len(palette)))
    assert err == round(j * len(flat))
    parent = coreset._cell_candidates(hist.ids, hist.bits, palette)
    cells = coreset._fine_cells(hist.fine.ids, hist.fine.six, parent, palette)
    assert cells.entries.size > 1000
    monkeypatch.setattr(coreset, "_FINE_SPAN_CELLS", 333)
    monkeypatch.setattr(coreset, "_FINE_ROWS", 500)
    monkeypatch.setattr(coreset, "_BIN_BLOCK", 77)
    spans = coreset._fine_cells(hist.fine.ids, hist.fine.six, parent, palette)
    for a, b in ((cells.single, spans.single), (cells.count, spans.count), (cells.bins, spans.bins),
                 (cells.entries, spans.entries)):
        np.testing.assert_array_equal(a, b)
    again = coreset.label(flat, hist, palette)
    assert np.array_equal(again[0], labels) and np.array_equal(again[1], count) and again[2] == err


def test_candidates_by_bin_from_cells_that_are_let_go():
    """`_by_cell`: a cell's one entry or _LABEL_NONE (-1 wrapped, no int32 temporary), its class and row, and
    the cells' arrays let go as read (14.6 MB each at 3.65 M 7-bit cells, the labels' peak)."""
    cells = coreset._Cells(np.array([3, -1, 0, -1], dtype=np.int32), np.array([1, 2, 1, 3], dtype=np.int32),
                           np.array([1, 1, 3, 3, 3], dtype=np.int32), np.array([0, 2, 1, 4, 5], dtype=np.int32))
    cands = coreset._by_cell(cells)
    assert cands.per_bin.dtype == np.uint16 and cands.per_bin.tolist() == [3, coreset._LABEL_NONE, 0,
                                                                            coreset._LABEL_NONE]
    assert cands.klass.tolist() == [len(coreset._WIDTHS), 0, len(coreset._WIDTHS), 1]
    assert cands.row.tolist() == [0, 0, 0, 0]
    assert cands.tables[0].tolist() == [[0, 2]] and cands.tables[1].tolist() == [[1, 4, 5, 5]]
    assert cells.single is None and cells.count is None and cells.bins is None and cells.entries is None


def test_two_candidate_bins_bisectors_made_a_channel_at_a_time():
    """`_Pairs`: |q|^2 - |p|^2 and 2 (q - p) of each two-candidate row, as from the rows of both entries, but
    made from per-entry tables a channel at a time: the (R, 4) rows and their temporaries were ~60 MB at
    800 000 rows (12 MP photo under random alpha, K = 4096), the labels' peak. tracemalloc: under the
    arrays kept and one row of temporaries."""
    rng = np.random.default_rng(4)
    palette = rng.integers(0, 256, (300, 4)).astype(np.uint8)
    table = np.sort(rng.choice(300, (200_000, 2)), axis=1).astype(np.uint16)
    pairs, peak = traced_peak(lambda: coreset._Pairs(table, palette))
    p, q = palette[table[:, 0]].astype(np.int64), palette[table[:, 1]].astype(np.int64)
    assert np.array_equal(pairs.gap, (q * q).sum(axis=1) - (p * p).sum(axis=1))
    assert np.array_equal(pairs.twice, (2 * (q - p)).T) and pairs.twice.dtype == np.int32
    kept = pairs.gap.nbytes + pairs.twice.nbytes + pairs.first.nbytes + pairs.second.nbytes
    assert peak < kept + 2 * pairs.gap.nbytes  # (before: 2 x (R, 4) int32 rows and their products, ~2 x kept)


@pytest.mark.parametrize("fine", [False, True])
def test_labels_letting_go_of_the_bins_are_the_same_and_the_bins_go_before_the_labels(monkeypatch, photo, fine):
    """`label(release=...)` (a 48 MP image's path, api._from_histogram): the same labels, counts and exact J,
    with the histogram's bins (6-bit, or 7-bit: `Histogram.fine`) let go and release called before the labels
    are made, once; the pixels' bins (index) kept, the only part read after."""
    flat = photo[::2, ::2].reshape(-1, 4)
    palette = np.unique(flat[np.random.default_rng(5).choice(len(flat), 40)], axis=0)
    if fine:
        monkeypatch.setattr(km, "_POLISH_MAX", 2000)
    make = (lambda: coreset.Histogram(flat, min_bins=10 ** 6)) if fine else (lambda: coreset.Histogram(flat))
    kept = make()
    assert (kept.fine is not None) == fine
    labels, count, err = coreset.label(flat, kept, palette)
    hist = make()
    made, calls = np.empty, []

    def empty(shape, *a, **kw):  # the (N,) labels made after release
        if shape == flat.shape[0]:
            calls.append("labels")
        return made(shape, *a, **kw)

    def release():
        assert hist.counts is None and hist.sums is None and hist.ids is None and hist.fine is None
        calls.append("release")

    monkeypatch.setattr(np, "empty", empty)
    again = coreset.label(flat, hist, palette, release=release)
    monkeypatch.setattr(np, "empty", made)
    assert calls == ["release", "labels"]
    assert np.array_equal(again[0], labels) and np.array_equal(again[1], count) and again[2] == err
    assert hist.index is not None and np.array_equal(again[0], nearest_j(flat, palette)[0])


def test_from_serial_pixels_the_histogram_is_counted_in_one_part(monkeypatch, threads, photo):
    """From `_SERIAL_PIXELS` pixels (48 MP: a second thread's counts and sums ~70 MB at the Histogram's peak)
    `_count` counts in one part, whatever the threads: the same histogram."""
    flat = photo.reshape(-1, 4)
    threads(2)
    split = coreset.Histogram(flat)
    parts = []
    map_parts = parallel.map_parts
    monkeypatch.setattr(parallel, "map_parts", lambda f, n, *a, **kw: parts.append(f.__name__) or map_parts(f, n))
    monkeypatch.setattr(coreset, "_SERIAL_PIXELS", flat.shape[0])
    one = coreset.Histogram(flat)
    assert "count" not in parts and "mark" in parts
    for name in ("ids", "counts", "sums", "index"):
        assert np.array_equal(getattr(one, name), getattr(split, name))
    assert one.square_sums == split.square_sums
    parts.clear()
    monkeypatch.setattr(coreset, "_SERIAL_PIXELS", flat.shape[0] + 1)
    coreset.Histogram(flat)
    assert "count" in parts


@pytest.mark.parametrize("k", [8, 40])
def test_from_index_kept_below_the_pixels_bins_are_numbered_again_by_label(monkeypatch, threads, photo, k):
    """From `_INDEX_KEPT_BELOW` pixels (48 MP: 192 MB held through the fit and the labels) `Histogram` keeps
    no index where its 6-bit or 5-bit bins serve, and `label` numbers each chunk's bins again: the same
    histogram, labels, counts and exact J. Where the 7-bit bins are counted the index is still made."""
    flat = photo.reshape(-1, 4)
    threads(2)
    palette = np.unique(flat[np.random.default_rng(k).choice(len(flat), k)], axis=0)
    coarse = 1000 if k == 8 else 0  # 5 bits at k = 8, 6 at k = 40
    kept = coreset.Histogram(flat, coarse_bins=coarse)
    monkeypatch.setattr(coreset, "_INDEX_KEPT_BELOW", flat.shape[0])
    hist = coreset.Histogram(flat, coarse_bins=coarse)
    assert hist.index is None and hist.number is not None and kept.number is None
    assert hist.bits == kept.bits == (coreset.COARSE_BITS if k == 8 else coreset.BITS)
    for name in ("ids", "counts", "sums"):
        assert np.array_equal(getattr(hist, name), getattr(kept, name))
    assert hist.square_sums == kept.square_sums
    monkeypatch.setattr(coreset, "_CHUNK", 777)  # chunks whose pixels left to measure gather over several
    labels, count, err = coreset.label(flat, hist, palette)
    ref, j = nearest_j(flat, palette)
    assert np.array_equal(labels, ref) and err / len(flat) == j
    again = coreset.label(flat, kept, palette)
    assert np.array_equal(again[0], labels) and np.array_equal(again[1], count) and again[2] == err
    monkeypatch.setattr(km, "_POLISH_MAX", 2000)
    fine = coreset.Histogram(flat, min_bins=10 ** 6)
    assert fine.fine is not None and fine.index is not None and fine.number is None


@pytest.mark.parametrize("k", [8, 16])
def test_a_48_mp_images_path_writes_the_same_file(monkeypatch, histograms_only, photo, k):
    """From 2**25 pixels `_from_histogram` takes every memory saving at once: no index (each chunk's bins
    numbered again), one counting part, the freed heap handed back and the bins let go before the labels.
    Each is tested alone above; together, on the photo as if it were that large: the same file."""
    img = kmq.compress(photo, k=k, seed=4)
    monkeypatch.setattr(coreset, "_INDEX_KEPT_BELOW", 1)
    monkeypatch.setattr(coreset, "_SERIAL_PIXELS", 1)
    monkeypatch.setattr(coreset, "_CHUNK", 777)
    monkeypatch.setattr(api, "_GIVE_BACK_PIXELS", 1)
    seen: list = []
    label = coreset.label
    monkeypatch.setattr(coreset, "label", lambda flat, hist, palette, release=None: seen.append(
        (hist.index is None, release is not None)) or label(flat, hist, palette, release=release))
    assert kmq.compress(photo, k=k, seed=4).to_bytes() == img.to_bytes()
    assert seen == [(True, True)]
