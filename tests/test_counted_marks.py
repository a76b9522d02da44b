"""Marks that count the keys as the rows decode (kmeans._count), then `distinct` reading the colours and counts
from that table (`_distinct_counted`) and spreading through it (`_Keyed`): the same colours, counts, indices,
spread values and files as the pass after the decode, with no ranking of the pixels after it."""
from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest

from conftest import traced_peak
from kmq import kmeans


@pytest.fixture
def small_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kmeans, "_BINCOUNT_FROM", 1)
    monkeypatch.setattr(kmeans, "_INDEX_CHUNK", 37)


def _rgbx(height: int, width: int, seed: int = 0, levels: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgbx = np.full((height, width, 4), 255, np.uint8)
    rgbx[:, :, :3] = rng.integers(0, levels, (height, width, 3)) * (255 // (levels - 1))
    return rgbx


def _marked(rgbx: np.ndarray, rows: int) -> kmeans.Marks:
    marks = kmeans.Marks()
    for start in range(0, rows, 3):
        marks(rgbx, rgbx.shape, start, min(rows, start + 3))
    return marks


@pytest.mark.parametrize("rows", [1, 5, 11])  # some rows left to distinct, or none
def test_counted_marks_give_the_colours_counts_and_indices_of_the_plain_pass(small_tables: None,
                                                                              monkeypatch: pytest.MonkeyPatch,
                                                                              rows: int) -> None:
    rgbx = _rgbx(11, 13, seed=rows)
    pixels = rgbx.reshape(-1, 4)[:, :3]
    plain = kmeans.distinct(np.ascontiguousarray(pixels))
    marks = _marked(rgbx, rows)
    assert marks.seen.dtype == np.int32  # counts, not flags

    def no_rank(*args):  # noqa: ANN002, ANN202
        raise AssertionError("the pixels ranked after the decode")

    monkeypatch.setattr(kmeans._BitRank, "rank", no_rank)
    counted = kmeans.distinct(pixels, marks)
    assert isinstance(counted, kmeans._Keyed)
    assert np.array_equal(counted.colors, plain.colors) and np.array_equal(counted.counts, plain.counts)
    assert counted.counts.dtype == np.int64 and np.array_equal(counted._values, plain._values)
    assert np.array_equal(counted.index(), plain.index())


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float64, np.bool_])
def test_keyed_spread_is_each_pixels_colours_value_whatever_the_dtype(small_tables: None, dtype: type) -> None:
    rgbx = _rgbx(9, 7, seed=3, levels=4)
    pixels = rgbx.reshape(-1, 4)[:, :3]
    plain = kmeans.distinct(np.ascontiguousarray(pixels))
    counted = kmeans.distinct(pixels, _marked(rgbx, 9))
    m = plain.colors.shape[0]
    for per_colour in ((np.arange(m) * 7 % 5).astype(dtype), (np.arange(m)[::-1] % 3).astype(dtype)):
        spread = counted.spread(per_colour)  # twice: the table written again over the last values
        assert spread.dtype == per_colour.dtype
        assert np.array_equal(spread, per_colour[plain.index()])


def test_marks_above_one_pass_still_flag(small_tables: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kmeans, "_ONE_PASS", 0)  # no keys kept: no counts table, the flags and ranks as before
    rgbx = _rgbx(6, 5)
    pixels = rgbx.reshape(-1, 4)[:, :3]
    marks = _marked(rgbx, 4)
    assert marks.seen.dtype == np.bool_
    d = kmeans.distinct(pixels, marks)
    assert not isinstance(d, kmeans._Keyed)
    plain = kmeans.distinct(np.ascontiguousarray(pixels))
    assert np.array_equal(d.colors, plain.colors) and np.array_equal(d.counts, plain.counts)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint32, np.intp, np.int64])
def test_unpack_gives_each_keys_channels_as_pack_made_them(channels: int, dtype: type) -> None:
    rng = np.random.default_rng(channels)
    colors = rng.integers(0, 256, (1000, channels)).astype(np.uint8)
    colors[:2] = [[0] * channels, [255] * channels]
    keys = kmeans._pack(colors).astype(dtype)
    out = kmeans._unpack(keys, channels)
    assert out.dtype == np.uint8 and out.shape == colors.shape and out.flags.c_contiguous
    assert np.array_equal(out, colors)
    assert kmeans._unpack(keys[:0], channels).shape == (0, channels)


@pytest.mark.skipif(sys.byteorder != "little", reason="the keys' bytes are read as little-endian uint32")
def test_unpack_makes_no_swapped_copy_of_rgb_keys() -> None:
    # The colours' channels come from the keys' own bytes: memory for the (M, 3) colours only, where a
    # byte-swapped copy of the keys first took 4 bytes a colour more (1.4 M colours at 12 MP: 6.9 -> 1.6 ms).
    keys = kmeans._pack(np.random.default_rng(1).integers(0, 256, (200_000, 3)).astype(np.uint8))
    _, peak = traced_peak(lambda: kmeans._unpack(keys, 3))
    assert peak < 3.5 * keys.shape[0]


def test_marks_keep_no_key_per_pixel(monkeypatch: pytest.MonkeyPatch) -> None:
    # The counts' table only: each chunk's keys are packed into a buffer and dropped, and `_Keyed` packs them
    # again from the pixels when it spreads (12 MP: a 48 MB array of fresh pages spared). The same colours,
    # counts and spread values as the pass after the decode.
    monkeypatch.setattr(kmeans, "_BINCOUNT_FROM", 1)
    rgbx = _rgbx(1000, 1200, seed=5, levels=40)
    n = 1000 * 1200
    pixels = rgbx.reshape(-1, 4)[:, :3]
    marks = kmeans.Marks()
    tracemalloc.start()
    try:
        for start in range(0, 900, 100):  # the last 100 rows left to distinct
            marks(rgbx, rgbx.shape, start, start + 100)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    table = 4 << 24
    assert marks.seen.dtype == np.int32 and marks.seen.nbytes == table
    assert held < table + n and peak < table + 2 * n  # a key per pixel: 4n bytes more
    counted = kmeans.distinct(pixels, marks)
    plain = kmeans.distinct(np.ascontiguousarray(pixels))
    assert isinstance(counted, kmeans._Keyed)
    assert np.array_equal(counted.colors, plain.colors) and np.array_equal(counted.counts, plain.counts)
    labels = (np.arange(plain.colors.shape[0]) % 251).astype(np.uint16)
    assert np.array_equal(counted.spread(labels), labels[plain.index()])


def _resident(a: np.ndarray) -> float:
    """The share of a's whole pages that are in memory (mincore)."""
    import ctypes
    import mmap

    page = mmap.PAGESIZE
    start = -(-a.ctypes.data // page) * page
    pages = (a.ctypes.data + a.nbytes - start) // page
    vec = (ctypes.c_ubyte * pages)()
    mincore = ctypes.CDLL(None, use_errno=True).mincore
    mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
    assert mincore(start, pages * page, vec) == 0, ctypes.get_errno()
    return sum(v & 1 for v in vec) / pages


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="MADV_POPULATE_WRITE and mincore are Linux's")
@pytest.mark.parametrize("levels, resident", [(256, (0.99, 1.0)), (2, (0.0, 0.2))])
def test_the_marks_table_is_faulted_in_where_the_keys_reach_before_they_are_counted(
        monkeypatch: pytest.MonkeyPatch, levels: int, resident: tuple[float, float]) -> None:
    # The spans of the table a chunk's keys reach are faulted in by madvise, which leaves the GIL to the
    # decoding threads, not by np.add.at (one call, holding the GIL through every fault: up to ~0.4 s on a
    # machine short of memory); only those: colours in {0, 255}^3 reach 2 of its 32 spans of 2 MB.
    monkeypatch.setattr(kmeans, "_BINCOUNT_FROM", 1)
    rgbx = _rgbx(400, 400, seed=levels, levels=levels)
    marks = kmeans.Marks()
    counted: list[float] = []
    real = np.add.at

    def add_at(counts, *args):  # noqa: ANN001, ANN002, ANN202
        counted.append(_resident(counts))  # as the first chunk is counted
        np.add.at = real
        return real(counts, *args)

    monkeypatch.setattr(np.add, "at", add_at, raising=False)
    marks(rgbx, rgbx.shape, 0, 400)
    assert marks.seen.dtype == np.int32 and resident[0] <= counted[0] <= resident[1]
    pixels = rgbx.reshape(-1, 4)[:, :3]
    counted_d, plain = kmeans.distinct(pixels, marks), kmeans.distinct(np.ascontiguousarray(pixels))
    assert np.array_equal(counted_d.colors, plain.colors) and np.array_equal(counted_d.counts, plain.counts)
