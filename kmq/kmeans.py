"""Weighted K-Means over the distinct colours of an image, and exact nearest-palette labelling.

Vocabulary: ``centroids`` are float64 while fitting, the ``palette`` is the uint8 table stored in the file,
``labels`` are indices into it, and the ``distortion`` J is the mean over pixels of the squared Euclidean
distance between a pixel and its palette colour (0..255 units, summed over channels).

Why distinct colours: K-Means with each distinct colour weighted by its pixel count has exactly the same
objective, the same Lloyd steps and so the same result as K-Means over the pixels, and a photo of
10^7 pixels has only 10^5..10^6 distinct colours.

Pure numpy; no per-pixel Python loop anywhere. Every function here assumes valid input: checking it is
the job of the public ``kmq.compress``.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from typing import Any, Callable, Iterable

import numpy as np

from . import parallel
from .errors import KmqError

__all__ = ["Distinct", "Marks", "distinct", "distinct_colors", "fit", "fit_histogram", "fit_large", "nearest"]

# progress(done, total): called now and then by long fits, e.g. to draw a bar; never required.
Progress = Callable[[int, int], None]

# Cap on the elements of one (points x centroids) block of distances, so that memory stays bounded
# (2**21 float64 = 16 MiB) whatever the number of points or K.
_BLOCK = 1 << 21
# Elements of the blocks of `_lloyd_runs`: each pass over a block then stays in the cache (2824 points x
# 1024 centroids: 7 ms a pass instead of 12 in 16 MiB blocks).
_CACHE_BLOCK = 1 << 17
# numpy (2.x) fills its ufunc buffers of 8192 elements across rows when an operand is broadcast along rows
# shorter than that, copying every element: a (16, 4000) array minus a (4000,) row cost ~9 instructions an
# element instead of ~1. Where such steps are the bulk (`_short_buffers`) the buffers are this many elements,
# which rows reach; element-wise steps and minima give the same values whatever the buffer.
_ROW_BUFFER = 256


def _short_buffers(f: Callable) -> Callable:
    """f run with numpy's ufunc buffers at `_ROW_BUFFER` elements (for f's thread and call only)."""
    @functools.wraps(f)
    def wrapped(*args, **kwargs):
        with np.errstate():  # restores the buffer size on the way out
            np.setbufsize(_ROW_BUFFER)
            return f(*args, **kwargs)
    return wrapped


# --------------------------------------------------------------------------------------------------
# distinct colours


def _pack(pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(N, C) uint8 -> (N,) uint32 with channel 0 in the most significant byte, so that ascending packed
    value is the lexicographic order of the colours; written into `out` if given.

    RGB is read in one pass: pixel i's 3 bytes and the byte after them (the next pixel's first, or the
    padding of RGBX, see kmq.imageio.load_image), seen as one big-endian uint32 (an unaligned, overlapping
    view where contiguous, no copy), shifted right by 8. That is ~3x faster than assembling the key channel
    by channel (12 MP: 0.02 s instead of 0.055 s). The last pixel's fourth byte may lie beyond the array.
    """
    n, channels = pixels.shape
    packed = np.empty(n, dtype=np.uint32) if out is None else out
    if channels == 3 and n > 1 and pixels.strides[1] == 1 and pixels.strides[0] in (3, 4):
        quads = np.lib.stride_tricks.as_strided(pixels, shape=(n - 1, 4), strides=(pixels.strides[0], 1),
                                                writeable=False)
        np.right_shift(quads.view(">u4")[:, 0], 8, out=packed[:-1], dtype=np.uint32, casting="unsafe")
        r, g, b = (int(v) for v in pixels[-1])  # the last pixel has no byte after it
        packed[-1] = (r << 16) | (g << 8) | b
        return packed
    if channels == 4 and pixels.flags.c_contiguous:  # each pixel is one aligned big-endian uint32
        packed[:] = np.ndarray((n,), dtype=">u4", buffer=pixels, strides=(4,))
        return packed
    packed[:] = pixels[:, 0]
    for c in range(1, pixels.shape[1]):
        packed <<= 8
        packed |= pixels[:, c]
    return packed


def _unpack(packed: np.ndarray, channels: int) -> np.ndarray:
    """Inverse of `_pack`: (M,) integer -> (M, channels) uint8.

    Each key as a big-endian uint32 is its channels' bytes after 4 - channels zero bytes: as they are for
    RGBA (a view of the swapped copy). Fewer channels are copied one column at a time from the keys'
    little-endian bytes (a uint32 key array as it is, no swap), channel c being byte channels - 1 - c:
    1.4 M colours 6.9 -> 1.6 ms, where a copy of the big-endian bytes' last three columns went through
    numpy's slow path for short strided rows."""
    if channels == 4:
        return np.ascontiguousarray(packed.astype(">u4").view(np.uint8).reshape(-1, 4))
    le = np.ascontiguousarray(packed, dtype="<u4").view(np.uint8).reshape(-1, 4)
    out = np.empty((le.shape[0], channels), dtype=np.uint8)
    for c in range(channels):
        out[:, c] = le[:, channels - 1 - c]
    return out


class Distinct:
    """The distinct colours of an image and the way back from them to its pixels.

    colors (M, C) uint8 in ascending lexicographic order (channel 0 first); counts (M,) int64, the pixels
    of each colour. `spread` maps a per-colour array to a per-pixel one: through each pixel's colour index
    where it is kept (`_Indexed`: images up to 2**24 pixels, RGBA with varying alpha), else from each
    pixel's packed key, ranked among the colours' (larger images).
    """

    def __init__(self, colors: np.ndarray, counts: np.ndarray, values: np.ndarray, *,
                 pixels: np.ndarray | None = None, shift: int = 0, rank: _BitRank | None = None) -> None:
        self.colors = colors
        self.counts = counts
        self._values = values  # (M,) uint32 ascending: the packed key of each distinct colour
        # The way back from colours to pixels: the pixels to re-pack in chunks plus the rank of each packed
        # key among the colours' (`rank`, for images above _ONE_PASS pixels, where an (N,) index would cost
        # 4 bytes a pixel). `_Indexed` holds each pixel's colour index instead.
        self._pixels = pixels
        self._shift = shift  # RGBA with one alpha: keys are RGB only
        self._rank = rank

    def _packed(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """The keys of pixels start..stop, packed again from the pixels (into `out` if given)."""
        keys = _pack(self._pixels[start:stop], out)
        if self._shift:
            keys >>= self._shift
        return keys

    def _rank_part(self, ranks: _BitRank, start: int, stop: int, index: np.ndarray, packed: bool) -> None:
        """index[:] = the colour index of pixels start..stop (int32), their keys ranked among the colours'
        (`ranks`) in place, `_INDEX_CHUNK` at a time so that the temporaries stay in cache. packed: index
        already holds their keys (as uint32); else they are packed into it from the pixels first."""
        for s in range(start, stop, _INDEX_CHUNK):
            part = index[s - start:min(s + _INDEX_CHUNK, stop) - start]
            keys = part.view(np.uint32)
            if not packed:
                self._packed(s, s + part.shape[0], keys)
            ranks.rank(keys, part)

    def index(self) -> np.ndarray:
        """(N,) int32: the index of each pixel's colour (shared where it is kept: read it, never write it)."""
        return self.spread(np.arange(self.colors.shape[0], dtype=np.int32))

    @property
    def ranked(self) -> bool:
        """Whether the pixels' colour indices are ranked from their keys whenever read (no index kept)."""
        return self._rank is not None

    def index_at(self, idx: np.ndarray) -> np.ndarray:
        """index()[idx] for flat pixel positions idx, int32: ranked from the pixels' keys, `_INDEX_CHUNK` at a
        time, where no index is kept (rdo reads the colours of the pixels it visits so, without an (N,) index:
        48 MP, 192 MB not held)."""
        if self._rank is None:
            return self.index()[idx]
        out = np.empty(idx.shape[0], dtype=np.int32)
        for s in range(0, idx.shape[0], _INDEX_CHUNK):
            part = out[s:s + _INDEX_CHUNK]
            keys = _pack(np.take(self._pixels, idx[s:s + _INDEX_CHUNK], axis=0))
            if self._shift:
                keys >>= self._shift
            self._rank.rank(keys, part)
        return out

    def spread(self, per_color: np.ndarray) -> np.ndarray:
        """(M,) array -> (N,) array whose entry i is per_color[colour of pixel i]."""
        assert self._rank is not None
        out = np.empty(self._pixels.shape[0], dtype=per_color.dtype)

        def part(start: int, stop: int) -> None:
            index = np.empty(_INDEX_CHUNK, dtype=np.int32)
            for s in range(start, stop, _INDEX_CHUNK):
                chunk = index[:min(_INDEX_CHUNK, stop - s)]
                self._rank_part(self._rank, s, s + chunk.shape[0], chunk, packed=False)
                np.take(per_color, chunk.astype(np.intp), out=out[s:s + chunk.shape[0]])

        parallel.map_parts(part, out.shape[0])
        return out


# From this many pixels on, keys below 2**24 are found through tables over the whole key space (12 MP:
# ~0.3 s of CPU) instead of sorted (~0.5 s); below it a sort of the few keys beats touching 2**24 entries.
_BINCOUNT_FROM = 1 << 19
# Pixels per pass where keys or indices go through numpy in chunks: numpy copies uint32 indices to intp
# (8 bytes a pixel), and chunks of up to 32 MB are recycled by the allocator instead of faulted in afresh.
_CHUNK = 1 << 21
# Up to this many pixels the table path keeps each pixel's colour index (4 bytes a pixel); larger images
# re-pack their keys from the pixels whenever they need them (48 MP: 192 MB spared).
_ONE_PASS = 1 << 24


def _colors_of(values: np.ndarray, channels: int, alpha: int | None) -> np.ndarray:
    if alpha is None:
        return _unpack(values, channels)
    colors = np.empty((values.shape[0], 4), dtype=np.uint8)
    colors[:, :3] = _unpack(values, 3)
    colors[:, 3] = alpha
    return colors


def distinct(pixels: np.ndarray, marks: Marks | None = None) -> Distinct:
    """The distinct colours of (N, C) uint8 pixels, C in {1, 3, 4}, exactly (see `Distinct`).

    marks: the first pass over these very pixels made as they were decoded (`Marks`), if any; the result is
    the same with it or without.

    Keys below 2**24 (grey, RGB, RGBA with one alpha, which is keyed on RGB only) of a large image are
    found through tables over the key space (`_distinct_by_table`), in ascending order;
    otherwise the packed keys are argsorted (`_sorted_keys`) and the runs of equal keys are the colours.
    Both give the same colours, counts and order.
    RGBA with varying alpha goes through its RGB colours instead (`_distinct_rgba`), with the same result.
    """
    if not (pixels.dtype == np.uint8 and pixels.shape[1] == 3 and pixels.strides == (4, 1)):
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)  # RGB padded to RGBX is read as it is (`_pack`)
    n, channels = pixels.shape
    alpha = None
    shift = 0
    if channels == 4 and not any(_alpha_varies(pixels[:, 3])):
        alpha = int(pixels[0, 3])
        shift = 8
    keyed = 8 * channels - shift
    if keyed <= 24 and n >= _BINCOUNT_FROM:
        return _distinct_by_table(pixels, keyed, alpha, shift, marks if keyed == 24 and not shift else None)
    if keyed > 24:  # RGBA with varying alpha: no table spans 2**32 keys
        return _distinct_rgba(pixels)
    keys = _pack(pixels)
    if shift:
        keys >>= shift
    # Each pixel's colour index from the same sort that finds the colours: `spread` is then one gather,
    # where a binary search of every key among the colours' took longer than the sort (256x256 photo,
    # 38 732 colours: ~4 ms, the radix argsort under 1 ms).
    values, counts, index = _sorted_keys(keys)
    return _Indexed(_colors_of(values, channels, alpha), counts, values, index)


def _sorted_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct values of keys (N,) uint32 ascending, their counts (int64) and the index of each key's
    value among them ((N,) int32, intp from 2**31 keys), from the order that sorts the keys.

    That order by numpy's stable argsort of 16-bit numbers, which is a radix sort: of the keys' low 16 bits,
    then, where keys reach 2**16, stably of their high 16 bits in that order (least significant digit
    first), which is the keys' stable order. A 256x256 photo: 0.6-0.8 ms, where an argsort of the uint32
    keys took 3.3-3.8 ms (and numpy's default one 8.6 ms on a graphic of 3 colours); grey: 0.2 ms; RGBA
    keys of a 512x512 photo 9 ms against numpy's default argsort's 23."""
    n = keys.shape[0]
    order = np.argsort(keys.astype(np.uint16), kind="stable")
    if int(keys.max()) >= 1 << 16:
        order = order[np.argsort((keys[order] >> 16).astype(np.uint16), kind="stable")]
    ordered = keys[order]
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    values = ordered[starts]
    del ordered
    index = np.empty(n, dtype=np.int32 if n < 1 << 31 else np.intp)
    index[order] = np.cumsum(first, dtype=index.dtype) - 1
    counts = np.diff(starts, append=n).astype(np.int64)
    return values, counts, index


def _alpha_varies(alpha: np.ndarray):
    """Yields, a chunk of pixels at a time, whether some alpha differs from the first: varying alpha nearly
    always shows in the first chunk, so `any` stops there without a pass over the whole image."""
    for s in range(0, alpha.shape[0], _CHUNK):
        yield bool(np.any(alpha[s:s + _CHUNK] != alpha[0]))


def _distinct_by_table(pixels: np.ndarray, keyed: int, alpha: int | None, shift: int,
                       marks: Marks | None = None) -> Distinct:
    """`distinct` for keys below 2**24 through a table over the key space rather than a sort.

    A flag per key marks the colours present (16 MB at 24 bits); its set flags are the colours in ascending
    order, and a colour's index is the number of flags set before its own, which `_BitRank` counts from the
    flags packed into bits (2 MB + 1 MB, so the look-ups stay in cache). Counting the indices gives the
    counts. A count array over the whole key space would do it in one np.bincount, but 2**24 int64 counts
    plus bincount's intp copy of 12 M keys are ~220 MB of fresh pages, which on machines with costly page
    faults took 0.1-0.6 s at 12 MP; a 64 MB table of ranks instead of the bit counts, 0.3-0.6 s of CPU.
    """
    n, channels = pixels.shape
    source = Distinct(np.empty((0, channels), np.uint8), np.empty(0, np.int64), np.empty(0, np.uint32),
                      pixels=pixels, shift=shift)
    done, seen = (0, None) if marks is None else marks.take(pixels)
    if done and seen.dtype == np.int32:  # the marks counted each key as the rows decoded (`Marks`)
        return _distinct_counted(source, seen, done)
    inverse = None  # the marks flag the keys only above _ONE_PASS pixels
    if not done:
        seen = np.zeros(1 << keyed, dtype=bool)
        # Up to _ONE_PASS pixels, each pixel's key, then its colour index in the same place (M < 2**24).
        inverse = np.empty(n, dtype=np.uint32) if n <= _ONE_PASS else None

    # threads that set the same flag both write True: no race that matters
    parallel.map_parts(lambda start, stop: _mark(source, seen, inverse, done + start, done + stop), n - done)
    values = _set_flags(seen)
    ranks = _BitRank(seen)
    del seen
    m = values.shape[0]
    colors = _colors_of(values, channels, alpha)

    def count(start: int, stop: int) -> np.ndarray:
        # Counted by np.add.at, _INDEX_CHUNK indices at a time, into int32 counts (a part has under 2**31
        # pixels), which stay in cache better: 12 MP with 1.6 M colours, 0.072 s of CPU for np.bincount of the
        # indices (its intp copy of them, int64 counts) against 0.040 s; the same counts. (Each bincount also
        # made M fresh counts: one per chunk of pixels took ~19 000 page faults at 2.8 M colours.)
        counts = np.zeros(m, dtype=np.int32 if stop - start < 1 << 31 else np.int64)
        ones = np.ones(min(_INDEX_CHUNK, stop - start), dtype=counts.dtype)

        def add(index: np.ndarray) -> None:
            for s in range(0, index.shape[0], _INDEX_CHUNK):
                part = index[s:s + _INDEX_CHUNK]
                np.add.at(counts, part, ones[:part.shape[0]])

        if inverse is not None:
            index = inverse[start:stop].view(np.int32)
            source._rank_part(ranks, start, stop, index, packed=True)
            add(index)
            return counts
        # Above _ONE_PASS pixels the keys are packed again, a chunk at a time, whenever they are needed.
        chunk = np.empty(_CHUNK, dtype=np.int32)
        for s in range(start, stop, _CHUNK):
            e = min(s + _CHUNK, stop)
            index = chunk[:e - s]
            source._rank_part(ranks, s, e, index, packed=False)
            add(index)
        return counts

    counts = _summed(c.astype(np.int64, copy=False) for c in parallel.map_parts(count, n))
    if inverse is None:
        return Distinct(colors, counts, values, pixels=pixels, shift=shift, rank=ranks)
    return _Indexed(colors, counts, values, inverse.view(np.int32))


def _set_flags(seen: np.ndarray) -> np.ndarray:
    """np.flatnonzero(seen) as uint32 (up to 2**24 flags), a part of the flags in each thread: the same keys in
    the same order. 2**24 flags took ~0.012 s of one core, between the passes over the pixels that the
    threads share (12 MP: 0.024 -> 0.0125 s of wall time, the CPU the same)."""
    def part(start: int, stop: int) -> np.ndarray:
        return np.flatnonzero(seen[start:stop]).astype(np.uint32) + np.uint32(start)

    parts = parallel.map_parts(part, seen.shape[0])
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _mark(source: Distinct, seen: np.ndarray, inverse: np.ndarray | None, start: int, stop: int) -> None:
    """The first pass of `_distinct_by_table` over pixels start..stop of source: each one's key into inverse
    (where kept) and the flag of its key set in seen."""
    for s in range(start, stop, _INDEX_CHUNK):
        e = min(s + _INDEX_CHUNK, stop)
        keys = source._packed(s, e, None if inverse is None else inverse[s:e])
        # Stored through intp indices: 2.5x faster than through the uint32 keys (12 MP: 0.017 s, 0.04 s).
        seen[keys.astype(np.intp)] = True


def _count(source: Distinct, counts: np.ndarray, start: int, stop: int,
           fault_in: Callable[[np.ndarray], None] | None = None) -> None:
    """`Marks`' pass over pixels start..stop of source: 1 added to each one's key's count in counts ((2**24,)
    int32). The keys are packed a chunk at a time into a buffer that stays in cache, not kept: `_Keyed` packs
    them again from the pixels. 12 MP: a 48 MB array of fresh pages spared (0.01-0.1 s of system time, by
    how recently the machine had used that memory), the marks 0.080 -> 0.070 s of CPU, the spread 0.038 ->
    0.050 s (in two threads). fault_in(keys), if given, is called with each chunk's keys first (`_FaultIn`)."""
    ones = np.ones(_INDEX_CHUNK, dtype=np.int32)
    keys = np.empty(_INDEX_CHUNK, dtype=np.uint32)
    stop = min(stop, source._pixels.shape[0])
    for s in range(start, stop, _INDEX_CHUNK):
        e = min(s + _INDEX_CHUNK, stop)
        # np.add.at with intp indices and an array of ones: its fast path (12 MP: 0.035 s, against 0.028 s
        # for setting flags; with a scalar 1 it takes 0.6 s). It holds the GIL: one thread at a time.
        packed = source._packed(s, e, keys[:e - s])
        if fault_in is not None:
            fault_in(packed)  # (the pages these keys reach, outside the GIL: `_FaultIn`)
        np.add.at(counts, packed.astype(np.intp), ones[:e - s])


def _distinct_counted(source: Distinct, counts: np.ndarray, done: int) -> _Keyed:
    """`_distinct_by_table` from `Marks` that counted the keys of source's first `done` pixels into counts
    ((2**24,) int32): the rest counted here, then the colours are the keys counted, in ascending order, and
    their counts are read from the table.

    Where the marks only flag the keys, the colours' indices are ranked and counted after the decode, over
    every pixel (12 MP: ~0.1 s of CPU on both cores, ~0.06 s of wall time); the counts cost ~0.007 s more
    in the marks, which run beside the decode, and the table then spreads the labels (`_Keyed`)."""
    n = source._pixels.shape[0]
    _count(source, counts, done, n)  # the rows handed on once the decode had ended (few, mostly)

    def present(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        part = counts[start:stop]
        # Flags first: np.flatnonzero of the int32 counts themselves took 3.5x as long.
        at = np.flatnonzero(part != 0)
        return at.astype(np.uint32) + np.uint32(start), part[at]

    found = parallel.map_parts(present, counts.shape[0])
    values = np.concatenate([v for v, _ in found])
    per_colour = np.concatenate([c for _, c in found]).astype(np.int64)
    return _Keyed(_unpack(values, 3), per_colour, values, source._pixels, counts)


class _Keyed(Distinct):
    """`Distinct` holding the (N, 3) RGB pixels and a table over the 2**24 keys (the marks' counts, no longer
    needed as such): `spread` writes each colour's value at its key in the table, then gathers each pixel's
    from it by its key, packed again a chunk at a time. The table's memory is reused: no fresh pages."""

    def __init__(self, colors: np.ndarray, counts: np.ndarray, values: np.ndarray, pixels: np.ndarray,
                 table: np.ndarray) -> None:
        super().__init__(colors, counts, values, pixels=pixels)
        self._table = table
        self._lock = threading.Lock()  # one spread at a time writes the table

    def index(self) -> np.ndarray:
        return self.spread(np.arange(self.colors.shape[0], dtype=np.int32))

    def spread(self, per_color: np.ndarray) -> np.ndarray:
        per_color = np.asarray(per_color)
        out = np.empty(self._pixels.shape[0], dtype=per_color.dtype)
        with self._lock:
            size = per_color.dtype.itemsize << 24
            table = (self._table.view(np.uint8)[:size].view(per_color.dtype) if size <= self._table.nbytes
                     else np.empty(1 << 24, dtype=per_color.dtype))
            table[self._values.astype(np.intp)] = per_color  # the other entries are read by no pixel

            def part(start: int, stop: int) -> None:
                keys = np.empty(_INDEX_CHUNK, dtype=np.uint32)
                for s in range(start, stop, _INDEX_CHUNK):
                    e = min(s + _INDEX_CHUNK, stop)
                    # keys < 2**24: mode="clip" ~15 % faster
                    np.take(table, self._packed(s, e, keys[:e - s]), out=out[s:e], mode="clip")

            parallel.map_parts(part, out.shape[0])
        return out


# madvise's advice to fault a range in as if written (Linux 5.14 on; elsewhere an error, and nothing done).
_MADV_POPULATE_WRITE = 23
# Keys a span of the marks' table covers (2 MB of int32 counts, a huge page), and one key in this many of a
# chunk's tells which spans it reaches (a span only its other keys reach is faulted in by np.add.at).
_SPAN_KEYS = 1 << 19
_SPAN_SAMPLE = 64


class _FaultIn:
    """Faults in the spans of a table that a chunk's keys are about to reach, each once, by madvise in a call
    that does not hold the GIL (ctypes releases it), before np.add.at writes there.

    np.add.at faults the 64 MB table's pages in as its keys first reach them, holding the GIL meanwhile:
    the first 64 Ki keys of a 12 MP photo took 3-380 ms (2 MB pages zeroed; far slower where the virtual
    machine's host had taken the memory back), while the decoding and inflating threads could not get the
    GIL between their calls. The same faults here leave them running (a thread of GIL-free work beside it,
    the table faulted in at once: its longest wait 304 ms -> 36 ms). Only the spans the keys reach: an image
    of few colours touches few.
    Where madvise cannot be called, or refuses, nothing is done: the writes fault the pages in as before."""

    def __init__(self, table: np.ndarray) -> None:
        self._table = table
        self._left = np.ones(-(-table.shape[0] // _SPAN_KEYS), dtype=bool)  # spans not faulted in yet
        try:
            import ctypes
            import mmap

            self._page = mmap.PAGESIZE
            self._madvise = ctypes.CDLL(None).madvise
            self._madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        except Exception:  # noqa: BLE001 - no C library to ask (Windows)
            self._left[:] = False

    def __call__(self, keys: np.ndarray) -> None:
        if not self._left.any():
            return
        reached = np.zeros_like(self._left)
        reached[keys[::_SPAN_SAMPLE] // _SPAN_KEYS] = True
        reached &= self._left
        self._left &= ~reached
        size, base, page = self._table.itemsize, self._table.ctypes.data, self._page
        for span in np.flatnonzero(reached).tolist():
            start = -(-(base + span * _SPAN_KEYS * size) // page) * page
            stop = min(base + self._table.nbytes, base + (span + 1) * _SPAN_KEYS * size) // page * page
            if stop > start:
                self._madvise(start, stop - start, _MADV_POPULATE_WRITE)


class Marks:
    """`_distinct_by_table`'s first pass over an RGB image made a run of rows at a time as they are decoded
    (the on_rows of kmq.prefetch.take), so that it overlaps the decode instead of following it, for these
    very pixels only (`done`): up to _ONE_PASS pixels the keys counted in a table over the key space
    (`_count`), from which `distinct` then reads the colours and their counts at once
    (`_distinct_counted`); above, the same keys' flags as `distinct`'s own first pass.

    A 12 MP PNG decodes in ~0.3 s, and kmq's imports end well before: the pass (~0.045 s of CPU, and the
    first touch of its 64 MB) then runs on the core the imports leave idle."""

    def __init__(self) -> None:
        self.seen: np.ndarray | None = None
        self._fault_in: _FaultIn | None = None
        self._source: Distinct | None = None
        self._marked = 0  # pixels

    def __call__(self, memory: object, shape: tuple[int, int, int], start: int, stop: int) -> None:
        """Mark rows start..stop (the next ones) of the (height, width, 4) RGBX pixels in memory."""
        height, width, per_pixel = shape
        n = height * width
        if n < _BINCOUNT_FROM or per_pixel != 4 or start * width != self._marked:
            return
        try:
            if self._source is None:
                pixels = np.frombuffer(memory, dtype=np.uint8).reshape(n, per_pixel)[:, :3]
                self._source = Distinct(np.empty((0, 3), np.uint8), np.empty(0, np.int64),
                                        np.empty(0, np.uint32), pixels=pixels)
                # The counts: int32 (n <= _ONE_PASS < 2**31); calloc'd, their pages faulted in as the keys reach
                # them (`_FaultIn`).
                self.seen = np.zeros(1 << 24, dtype=np.int32 if n <= _ONE_PASS else bool)
                self._fault_in = _FaultIn(self.seen) if n <= _ONE_PASS else None
            if self.seen.dtype == np.bool_:
                _mark(self._source, self.seen, None, start * width, stop * width)
            else:
                _count(self._source, self.seen, start * width, stop * width, self._fault_in)
        except MemoryError:  # a head start only: `distinct` makes its own pass, and says so if it must
            self._source = self.seen = self._fault_in = None
            self._marked = -1  # no rows from now on
            return
        self._marked = stop * width

    def take(self, pixels: np.ndarray) -> tuple[int, np.ndarray | None]:
        """(how many of (N, 3) pixels are marked, the flags (bool) or the counts (int32)): (0, None) unless
        they are the very pixels the marks were made from (the same memory in the same layout: the decoded
        image, which nothing writes once decoded). The marks are handed over, not kept: `distinct` frees the
        flags once read, or keeps the counts' table for `_Keyed`."""
        source, seen = self._source, self.seen
        self._source = self.seen = self._fault_in = None
        if source is None:
            return 0, None
        marked = source._pixels
        same = (pixels.__array_interface__["data"][0] == marked.__array_interface__["data"][0]
                and pixels.shape == marked.shape and pixels.strides == marked.strides)
        return (self._marked, seen) if same else (0, None)


def _summed(arrays: Iterable[np.ndarray]) -> np.ndarray:
    """The sum of integer arrays, added into the first (no fresh array per addition; exact in any order)."""
    arrays = iter(arrays)
    total = next(arrays)
    for a in arrays:
        total += a
    return total


class _Indexed(Distinct):
    """`Distinct` holding the index of every pixel's colour, (N,) int32 (intp from 2**31 colours): `spread`
    is then one gather (12 MP: ~0.1 s, where a binary search of each pixel's key among 4.5 M colours took
    ~5 s)."""

    def __init__(self, colors: np.ndarray, counts: np.ndarray, values: np.ndarray, index: np.ndarray) -> None:
        super().__init__(colors, counts, values)
        self._index = index

    def index(self) -> np.ndarray:
        return self._index if self._index.dtype == np.int32 else super().index()

    def index_at(self, idx: np.ndarray) -> np.ndarray:
        return self._index[idx]

    def spread(self, per_color: np.ndarray) -> np.ndarray:
        # np.take over intp indices made a chunk at a time: ~2x faster than fancy indexing with the int32
        # ones, and no intp copy of them all.
        out = np.empty(self._index.shape[0], dtype=per_color.dtype)

        def part(start: int, stop: int) -> None:
            for s in range(start, stop, _INDEX_CHUNK):
                e = min(s + _INDEX_CHUNK, stop)
                np.take(per_color, self._index[s:e].astype(np.intp), out=out[s:e])

        parallel.map_parts(part, out.shape[0])
        return out


# From this many pixels on, RGBA colours with varying alpha are found by `_distinct_by_rgb`; below it one
# argsort of the few keys is cheaper than touching the 2**24-entry RGB tables.
_SPLIT_FROM = 1 << 19
# Up to this many, `_alpha_masks` sets one flag byte per (RGB, alpha) pair and packs them; above, it sets the
# masks' bits directly: 125 MB of flags for the 490 000 RGB colours of a 12 MP photo cost 0.1-0.4 s of
# system time in fresh pages (the bits: ~0.17 s of CPU in all, np.bitwise_or.at ~0.2-0.5 s).
_FLAGS_MAX = 1 << 24
# Up to this many (RGB, alpha) pairs (a 1 MB table of int32 ranks), `_distinct_by_rgb` numbers the colours by
# one look-up per pixel (`_TableRank`) instead of bit counts: graphics of a few RGB colours under
# anti-aliased alpha (12 MP: ~0.1 s less).
_RANK_TABLE = 1 << 18
# Pixels per chunk where per-pixel temporaries are made: small enough to stay in cache (12 MP: 2x faster
# than chunks of 2**20).
_INDEX_CHUNK = 1 << 16
_BELOW = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64)) - np.uint64(1)  # the bits below bit i


def _distinct_rgba(pixels: np.ndarray) -> _Indexed:
    """`distinct` of (N, 4) contiguous pixels whose alpha varies.

    Sorting 12 M 32-bit keys costs ~0.6 s and mapping the pixels back by binary search ~5 s; splitting each
    key into its RGB (a 2**24 key space, as RGB images are counted) and its alpha avoids both when the RGB
    colours are few relative to the pixels (`_distinct_by_rgb`, or `_distinct_few_rgb` for very few, as in
    graphics); otherwise (noise) one argsort does it.
    Both give the colours, counts and order of `distinct`'s sort of the keys.
    """
    n = pixels.shape[0]
    # Each pixel's 4 bytes read as one big-endian word are its packed key (`_pack`), with no copy made.
    keys = pixels.view(">u4").reshape(n)
    if n >= _SPLIT_FROM:
        seen = np.zeros(1 << 24, dtype=bool)

        def mark(start: int, stop: int) -> None:
            for s in range(start, stop, _INDEX_CHUNK):  # intp indices a chunk at a time: ~2x faster than uint32
                seen[(keys[s:min(s + _INDEX_CHUNK, stop)] >> 8).astype(np.intp)] = True

        parallel.map_parts(mark, n)  # threads that set the same flag both write True: no race that matters
        rgbs = _BitRank(seen)
        if rgbs.count <= _FEW_RGB:
            return _distinct_few_rgb(pixels, keys, np.flatnonzero(seen))
        # The alpha sets cost 32 bytes per RGB colour: with more than one RGB colour in two pixels, sort.
        if 2 * rgbs.count <= n and rgbs.count < 1 << 23:
            return _distinct_by_rgb(pixels, keys, rgbs)
    values, counts, index = _sorted_keys(keys.astype(np.uint32))
    return _Indexed(_unpack(values, 4), counts, values, index)


# Up to this many RGB colours (256 alphas each: a count array no longer than a chunk of pixels),
# `_distinct_few_rgb` counts the (RGB, alpha) pairs directly.
_FEW_RGB = _INDEX_CHUNK >> 8


def _distinct_few_rgb(pixels: np.ndarray, keys: np.ndarray, rgb: np.ndarray) -> _Indexed:
    """`_distinct_by_rgb` for images of at most `_FEW_RGB` RGB colours rgb (ascending keys), such as graphics
    under anti-aliased alpha.

    Each pixel's 256 r + a (r its RGB colour's rank) comes from one look-up in a table over the 2**24 RGB
    keys, of which only the few pages holding these colours are ever touched, where bit counts took three
    look-ups and more; the pairs are counted chunk by chunk as they are made (r x 256 counts, no longer than
    the chunk), so the present ones, their counts and their colours come from those counts, with no pass
    that marks them or writes each colour from its pixels. The order, ascending r then a, is that of the
    sorted keys."""
    n = keys.shape[0]
    size = rgb.shape[0] << 8
    table = np.zeros(1 << 24, dtype=np.int32)  # calloc'd: untouched pages cost nothing
    table[rgb] = np.arange(rgb.shape[0], dtype=np.int32) << 8
    pos = np.empty(n, dtype=np.int32)  # each pixel's 256 r + a, then its colour's index in the same place
    alpha = pixels[:, 3]

    def place(start: int, stop: int) -> np.ndarray:
        counts = np.zeros(size, dtype=np.int64)
        at = np.empty(_INDEX_CHUNK, dtype=np.intp)
        for s in range(start, stop, _INDEX_CHUNK):
            e = min(s + _INDEX_CHUNK, stop)
            p, q = at[:e - s], pos[s:e]
            np.right_shift(keys[s:e], 8, out=p, casting="unsafe")
            np.take(table, p, out=q, mode="clip")  # indices below 2**24: "clip" writes straight to q
            q |= alpha[s:e]
            counts += np.bincount(q, minlength=size)
        return counts

    counts = functools.reduce(np.add, parallel.map_parts(place, n))  # integer sums: exact in any order
    present = np.flatnonzero(counts)
    rank = np.cumsum(counts > 0, dtype=np.int32)
    rank -= 1

    def number(start: int, stop: int) -> None:
        for s in range(start, stop, _INDEX_CHUNK):
            e = min(s + _INDEX_CHUNK, stop)
            np.take(rank, pos[s:e], out=pos[s:e])

    parallel.map_parts(number, n)
    values = ((rgb[present >> 8] << 8) | (present & 255)).astype(np.uint32)
    return _Indexed(_unpack(values, 4), counts[present], values, pos)


class _BitRank:
    """The rank among the set flags of a boolean table, by bit counts: the flags packed into uint64 words
    and the running count before each word, so that 2**24 flags take 2 MB + 1 MB instead of a 64 MB rank
    table, which stay in cache while the pixels look them up."""

    def __init__(self, flags: np.ndarray | None = None, *, words: np.ndarray | None = None) -> None:
        if words is None:
            assert flags is not None and flags.shape[0] % 64 == 0
            words = np.packbits(flags, bitorder="little").view("<u8").astype(np.uint64, copy=False)
        self.words = words
        per_word = np.bitwise_count(words)
        before = np.cumsum(per_word, dtype=np.int64)
        self.count = int(before[-1]) if before.shape[0] else 0
        before -= per_word
        self.before = before.astype(np.int32) if self.count < 1 << 31 else before

    def rank(self, i: np.ndarray, out: np.ndarray) -> None:
        """out[:] = the number of set flags before each (set) flag i; i and out of `_INDEX_CHUNK` or fewer
        items, so that the temporaries stay in cache."""
        i = i.astype(np.intp)  # np.take with intp indices: the fastest gather (~25 % here)
        word = i >> 6
        bits = np.take(self.words, word)
        i &= 63
        bits &= np.take(_BELOW, i)
        out[:] = np.take(self.before, word)
        out += np.bitwise_count(bits)


def _alpha_flags(pos: np.ndarray, rgbs: int) -> np.ndarray:
    """(rgbs * 256,) uint8: 1 where some pixel has RGB colour r and alpha a, at 256 r + a (= pos)."""
    flags = np.zeros(rgbs * 256, dtype=np.uint8)

    def mark(start: int, stop: int) -> None:
        for s in range(start, stop, _INDEX_CHUNK):
            flags[pos[s:min(s + _INDEX_CHUNK, stop)].astype(np.intp)] = 1

    parallel.map_parts(mark, pos.shape[0])  # threads that set the same flag both write 1
    return flags


class _TableRank:
    """The rank among the set flags as one int32 per flag: a single look-up where `_BitRank` counts bits,
    for flag tables small enough (`_RANK_TABLE`) that the ranks stay in cache."""

    def __init__(self, flags: np.ndarray) -> None:
        self.table = np.cumsum(flags, dtype=np.int32)
        self.count = int(self.table[-1])
        self.table -= 1

    def rank(self, i: np.ndarray, out: np.ndarray) -> None:
        """out[:] = the number of set flags before each (set) flag i."""
        out[:] = np.take(self.table, i)


def _alpha_masks(pos: np.ndarray, rgbs: int) -> np.ndarray:
    """(rgbs * 4,) uint64: bit a of word 4r + a // 64 (bit a % 64) set where some pixel has RGB colour r
    and alpha a; pos is each pixel's 256 r + a.

    Above `_FLAGS_MAX` flags, the masks' bytes are written in place a chunk of pixels at a time, each pixel
    OR-ing its bit (a % 8 of little-endian byte 32 r + a // 8) into the byte as it was before the chunk:
    where several pixels of a chunk write one byte only the last one's write stays, so the pixels whose bit
    is then missing write again, until none is. Every round sets a bit missing from each byte still
    written and never clears one, so there are at most 8 rounds, nearly all of them on few pixels.
    Threads over parts of the pixels do the same, but one thread can write a byte back as it was before
    another's bit: so afterwards every pixel's bit is checked (in threads, reading only) and those missing
    are written again in this thread alone. The masks are then every pixel's bit, whatever the threads.
    """
    n = pos.shape[0]
    if rgbs * 256 <= _FLAGS_MAX:
        flags = _alpha_flags(pos, rgbs)
        return np.packbits(flags, bitorder="little").view("<u8").astype(np.uint64, copy=False)
    table = np.zeros(rgbs * 32, dtype=np.uint8)

    def byte_bit(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (p >> 3).astype(np.intp), np.left_shift(np.uint8(1), (p & 7).astype(np.uint8))

    def write(at: np.ndarray, bit: np.ndarray) -> None:
        while at.size:
            table[at] = np.take(table, at) | bit
            lost = np.flatnonzero((np.take(table, at) & bit) == 0)
            at, bit = at[lost], bit[lost]

    def part(start: int, stop: int) -> None:
        for s in range(start, stop, _INDEX_CHUNK):
            write(*byte_bit(pos[s:min(s + _INDEX_CHUNK, stop)]))

    def missing(start: int, stop: int) -> list[np.ndarray]:
        out = []
        for s in range(start, stop, _INDEX_CHUNK):
            p = pos[s:min(s + _INDEX_CHUNK, stop)]
            at, bit = byte_bit(p)
            out.append(p[(np.take(table, at) & bit) == 0])
        return out

    if len(parallel.map_parts(part, n)) > 1:
        lost = np.concatenate([p for ps in parallel.map_parts(missing, n) for p in ps])
        write(*byte_bit(lost))
    return table.view("<u8").astype(np.uint64, copy=False)


def _distinct_by_rgb(pixels: np.ndarray, keys: np.ndarray, rgbs: _BitRank) -> _Indexed:
    """The distinct colours of (N, 4) pixels through their RGB colours and, per RGB colour, the set of its
    alphas as a 256-bit mask.

    keys: the pixels' packed colours (a big-endian view of them); rgbs: the RGB colours present, as a rank
    over the 2**24 RGB keys. Colour (r, a) is numbered by the colours before it: those of the RGB colours below r
    (a running sum of the masks' bit counts) plus the alphas below a in r's mask (a bit count), which is
    ascending RGBA, the order of the sorted keys. So a pixel's colour index costs a few look-ups and bit
    counts; the colours are then written by their pixels, every pixel of a colour writing the same.
    """
    n = keys.shape[0]
    pos = np.empty(n, dtype=np.int32)  # each pixel's 256 r + a
    alpha = pixels[:, 3]

    def place(start: int, stop: int) -> None:
        for s in range(start, stop, _INDEX_CHUNK):
            e = min(s + _INDEX_CHUNK, stop)
            p = pos[s:e]
            rgbs.rank(keys[s:e] >> 8, p)
            p <<= 8
            p |= alpha[s:e]

    parallel.map_parts(place, n)
    if rgbs.count * 256 <= _RANK_TABLE:  # few RGB colours (graphics): a colour's index is one look-up
        colours: _BitRank | _TableRank = _TableRank(_alpha_flags(pos, rgbs.count))
    else:
        colours = _BitRank(words=_alpha_masks(pos, rgbs.count))
    m = colours.count
    index = pos  # each pixel's 256 r + a replaced by its colour's index, in place (M < 2**31: r < 2**23)
    # The pixels' own 4 bytes, as one native uint32, land on their colour's slot: no unpacking. Threads
    # writing one slot write the same bytes.
    words = np.empty(m, dtype=np.uint32)
    native = pixels.view(np.uint32).reshape(n)

    # np.add.at holds the GIL, so threads count many colours by np.bincount after numbering their pixels,
    # over runs of at least M of them (each count array costs M); one thread counts as it goes.
    add_at = m > _INDEX_CHUNK and len(parallel.parts(n)) == 1

    def number(start: int, stop: int) -> np.ndarray:
        """Counts of the colours of pixels start..stop, whose indices are written over their pos."""
        counts = np.zeros(m, dtype=np.int64)
        chunk = np.empty(_INDEX_CHUNK, dtype=np.intp)
        # Counted and written chunk by chunk while the indices are in cache: no second pass over them, and
        # no intp copy of them all (np.bincount's).
        for s in range(start, stop, _INDEX_CHUNK):
            e = min(s + _INDEX_CHUNK, stop)
            part = chunk[:e - s]
            colours.rank(pos[s:e], part)
            if m <= _INDEX_CHUNK:  # few colours: a count array as short as the chunk, ~4x faster than add.at
                counts += np.bincount(part, minlength=m)
            elif add_at:
                np.add.at(counts, part, 1)
            words[part] = native[s:e]
            index[s:e] = part
        if m > _INDEX_CHUNK and not add_at:
            for s in range(start, stop, max(_CHUNK, m)):
                counts += np.bincount(index[s:min(s + max(_CHUNK, m), stop)], minlength=m)
        return counts

    counts = functools.reduce(np.add, parallel.map_parts(number, n))  # integer sums: exact in any order
    colors = words.view(np.uint8).reshape(m, 4)
    values = colors.view(">u4").reshape(m)  # the packed keys, as a big-endian view: no 18 MB copy at 12 MP
    return _Indexed(colors, counts, values, index)


def distinct_colors(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct colours of an image, exactly.

    pixels: (N, C) uint8, C in {1, 3, 4}.
    Returns (colors (M, C) uint8, counts (M,) int64, inverse (N,) intp) with ``colors[inverse] == pixels``
    and ``counts[i]`` the number of pixels of colour i. Colours come in ascending lexicographic order
    (channel 0 first), which is ascending packed value. `distinct` is the same without the (N,) inverse.
    """
    d = distinct(pixels)
    return d.colors, d.counts, d.spread(np.arange(d.colors.shape[0], dtype=np.intp))


# --------------------------------------------------------------------------------------------------
# squared distances by table look-up


def _columns(points: np.ndarray) -> list[np.ndarray]:
    """(M, C) uint8 -> C contiguous (M,) uint8 columns, the operands of `_lut_dist2`."""
    return [np.ascontiguousarray(points[:, c]) for c in range(points.shape[1])]


def _tables(centres: np.ndarray, dtype: type) -> list[np.ndarray]:
    """Per channel, the (256, K) table of (v - centre)^2 for every uint8 value v."""
    v = np.arange(256, dtype=np.float64)[:, None]
    return [((v - centres[None, :, c].astype(np.float64)) ** 2).astype(dtype) for c in range(centres.shape[1])]


def _lut_dist2(cols: list[np.ndarray], rows: slice | np.ndarray, tables: list[np.ndarray]) -> np.ndarray:
    """Squared distances (m, K) from the uint8 points `cols[c][rows]` to the centres behind `tables`.

    Summing rows gathered from small per-channel tables beats both a matrix product (whose inner dimension
    of 3 BLAS handles badly) and broadcast subtraction. With integer centres and int32 tables it is exact.
    """
    d = np.take(tables[0], cols[0][rows], axis=0)
    for c in range(1, len(cols)):
        d += np.take(tables[c], cols[c][rows], axis=0)
    return d


# --------------------------------------------------------------------------------------------------
# nearest palette entry (exact, integer arithmetic)


def _nearest_brute(cols: list[np.ndarray], rows: slice | np.ndarray, m: int, palette: np.ndarray,
                   index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest of `palette` (or of its rows `index`, ascending) for the m points `cols[c][rows]`.

    int32 tables make every distance exact, and argmin takes the first minimum, hence the lower index on
    ties. Returns (labels (m,) intp, squared distances (m,) int64).
    """
    cand = palette if index is None else palette[index]
    tables = _tables(cand, np.int32)
    k = cand.shape[0]
    labels = np.empty(m, dtype=np.intp)
    dist = np.empty(m, dtype=np.int64)
    step = max(1, _BLOCK // k)
    base = np.arange(m) if isinstance(rows, slice) else rows
    if isinstance(rows, slice):
        base = base + (rows.start or 0)

    def part(start: int, stop: int) -> None:
        for s in range(start, stop, step):
            e = min(s + step, stop)
            d = _lut_dist2(cols, base[s:e], tables)
            lab = np.argmin(d, axis=1)
            labels[s:e] = lab
            dist[s:e] = d[np.arange(lab.shape[0]), lab]

    parallel.map_parts(part, m, k)
    if index is not None:
        labels = index[labels]
    return labels, dist


def _nearest_cells(points: np.ndarray, palette: np.ndarray, per_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest palette entry through a grid of cells over the colour cube, for large K.

    Every point x of a cell (a box of integer colours) is within f_max of any entry f, f_max being the
    distance from f to the box's farthest corner; so an entry e whose distance to the box itself exceeds
    the least f_max of all entries is strictly farther from every x of the cell than that entry f, and is
    never a candidate there. Those left are the only possible nearest ones, ties included, so ties still
    go to the lowest index. All of it in integers: exact. (A 256x256 photo's colours at K=256: 103 of
    256 entries each, against 118 from a ball around the cell's centre.)
    """
    m, channels = points.shape
    cols = _columns(points)
    cell_id = np.zeros(m, dtype=np.int64)
    for c in range(channels):
        cell_id *= per_axis
        cell_id += (cols[c].astype(np.int32) * per_axis) >> 8
    order = np.argsort(cell_id, kind="stable")
    ids, starts, sizes = np.unique(cell_id[order], return_index=True, return_counts=True)
    coords = np.empty((ids.shape[0], channels), dtype=np.int64)
    rest = ids.copy()
    for c in range(channels - 1, -1, -1):
        coords[:, c] = rest % per_axis
        rest //= per_axis
    # The integer values of a cell along channel c: the v with (v * per_axis) >> 8 == its coordinate.
    lo = -((-coords * 256) // per_axis)
    hi = -((-(coords + 1) * 256) // per_axis) - 1

    pal = palette.astype(np.int64)
    labels = np.empty(m, dtype=np.intp)
    dist = np.empty(m, dtype=np.int64)
    cells_per_block = max(1, _BLOCK // (palette.shape[0] * channels))
    for b0 in range(0, ids.shape[0], cells_per_block):
        lo_b, hi_b = lo[b0:b0 + cells_per_block, None, :], hi[b0:b0 + cells_per_block, None, :]
        # (cells, K): squared distance from each entry to the box, and to its farthest corner.
        near_box = (np.maximum(np.maximum(lo_b - pal, pal - hi_b), 0) ** 2).sum(axis=2)
        far_box = (np.maximum(pal - lo_b, hi_b - pal) ** 2).sum(axis=2)
        keep = near_box <= far_box.min(axis=1)[:, None]
        for i in range(keep.shape[0]):
            cell = b0 + i
            rows = order[starts[cell]:starts[cell] + sizes[cell]]
            lab, dd = _nearest_brute(cols, rows, rows.shape[0], palette, np.flatnonzero(keep[i]))
            labels[rows] = lab
            dist[rows] = dd
    return labels, dist


# Points per query of `_nearest_tree`.
_TREE_BLOCK = 1 << 18


def _nearest_tree(points: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest palette entry by a k-d tree, for large K (see `_lloyd_tree` for why scipy).

    The tree finds the few nearest entries with float distances, which are exact here (sums of squares of
    integers); among those at the least distance the lowest index wins, as in `_nearest_brute`. Points
    whose candidates are all equally near (a dense palette: six entries at distance 1) may have more tied
    entries beyond them, so they ask again for four times as many, until no tie is cut off.
    """
    cKDTree = _kd_tree()

    k = palette.shape[0]
    tree = cKDTree(palette.astype(np.float64))
    labels = np.empty(points.shape[0], dtype=np.intp)
    sq = np.empty(points.shape[0], dtype=np.int64)
    # A block of points at a time: float copies, distances and indices of them all cost ~200 bytes a point
    # (a noisy 12 MP photo under an alpha vignette: 6 M colours, 1.4 GB at K = 512).
    for s in range(0, points.shape[0], _TREE_BLOCK):
        block = points[s:s + _TREE_BLOCK]
        lab = labels[s:s + _TREE_BLOCK]
        x = block.astype(np.float64)
        rows = np.arange(block.shape[0])
        ties = 4
        while rows.size:
            ties = min(ties, k)
            dist, idx = tree.query(x[rows], k=ties)
            dist, idx = dist.reshape(rows.size, ties), idx.reshape(rows.size, ties)
            tied = dist == dist[:, :1]
            # The lowest index among the entries at the least distance: the farther ones masked by K.
            lab[rows] = np.where(tied, idx, k).min(axis=1)
            rows = rows[tied[:, -1]] if ties < k else rows[:0]
            ties *= 4
        sq[s:s + _TREE_BLOCK] = _sq(block.astype(np.int64), palette[lab].astype(np.int64))
    return labels, sq


# From this many RGB or RGBA points on (K <= 64), `_nearest_pairs` labels them (RGBA from `_FEW_FROM`: see
# there). Its tables take 4 MB per
# 16 entries, which stay in cache because distinct colours come in ascending order (the first table's rows
# are read in turn); below this, or on points in random order up to ~2**20, the brute force is as fast.
_PAIRS_FROM = 1 << 18
# Largest K `_nearest_pairs` takes, by channels: its first table is 4 MB per 16 entries; RGB, with one
# gather and sum fewer than RGBA to save, gains up to K = 32 (12 MP photos: 0.057 s instead of 0.097 at
# K = 32) but loses at 64 on some (0.22 s instead of 0.20), the table out of cache.
_PAIRS_MAX_K = {3: 32, 4: 64}
# ... but with a guess (a fit's clusters) above this K the entries near it are fewer to read: 0.47 MP under a soft
# alpha, 467 000 RGBA colours at K = 64, 0.146 s of CPU by pairs, 0.050 from the guess (K = 48: 0.059, 0.052;
# K = 32: 0.040, 0.049).
_PAIRS_GUESS_K = {4: 32}
# RGBA of `_FEW_FROM` colours up to `_PAIRS_FROM` at K <= 64 took the brute force, which reads all K entries of each
# of 4 channels: from a fit's guess, above `_FEW_GUESS_K` entries, the entries near it are fewer to read, and up
# to it the pairs' tables are (grace_hopper at 0.2 MP under random alpha, 175 000 colours, in process, CPU: K = 64
# 42.9 -> 14.4 ms, K = 32 21.3 -> 13.2, K = 16 13.4 -> 7.8 by the pairs; 100 000 of them at K = 32 12.3 -> 6.9,
# K = 16 6.2 -> 5.0). The same labels and distances every way. Below `_FEW_FROM` the guess still read fewer (10 000
# at K = 64: 1.8 -> 0.8 ms; 50 000: 10.2 -> 3.7) but the pairs did not (50 000 at K = 16: 4.0 against 3.0), and a
# few ms at most were left there.
_FEW_GUESS_K = 16
_FEW_FROM = 1 << 17
# Points per block of `_nearest_pairs`: its (block, K) int32 sums stay in the cache while transposed.
_PAIRS_BLOCK = 1 << 13

# RGBA palette entries whose alpha rounds to this or more are stored opaque (255) where the image has opaque
# pixels: under 1 % see-through (kmq.api._rounded; kmq.rdo keeps its refined entries so).
OPAQUE_FROM = 253


def _nearest_pairs(points: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`nearest` for (M, 3|4) contiguous uint8 points and up to `_PAIRS_MAX_K` entries, with the same labels
    and distances.

    A colour's first two channels, read as one 16-bit number, index a table of (v0 - e0)^2 + (v1 - e1)^2
    for every entry e, and its last two (RGBA, also as one number) or its last one (RGB) a second table
    alike, so two gathers and one sum give all K distances (the brute force: C gathers and C - 1 sums).
    Each distance is shifted left by the bits of an entry index, which the first table adds: the least sum
    is then the least distance with ties to the lower index, and a minimum replaces argmin, whose loop over
    rows of K was most of the brute force's time (12 MP RGBA photo, 4.5 M colours, K = 16: 0.14 s instead
    of 0.30; the 12 MP astronaut's 848 000 RGB colours: 0.05 s instead of 0.11). numpy reduces along short
    rows slowly, so each block is transposed first. Sums stay below 4 x 255^2 x 64 < 2**31.
    """
    m, channels = points.shape
    k = palette.shape[0]
    shift = max(1, (k - 1).bit_length())
    v = np.arange(256, dtype=np.int32)[:, None]
    sq = [(v - palette[None, :, c].astype(np.int32)) ** 2 for c in range(channels)]  # (256, K) each
    first = ((sq[0][:, None, :] + sq[1][None, :, :]) << shift).reshape(1 << 16, k)
    first += np.arange(k, dtype=np.int32)
    # Big-endian 16-bit numbers: channel 0 (or 2) is the high byte. RGB's pairs overlap the next colour's
    # bytes (stride 3), which the view reads without a copy.
    if channels == 4:
        last = ((sq[2][:, None, :] + sq[3][None, :, :]) << shift).reshape(1 << 16, k)
        pairs = points.view(">u2").reshape(m, 2)
        head, tail = pairs[:, 0], pairs[:, 1]
    else:
        last = sq[2] << shift
        head, tail = np.ndarray((m,), dtype=">u2", buffer=points, strides=(3,)), points[:, 2]
    labels = np.empty(m, dtype=np.intp)
    dist = np.empty(m, dtype=np.int64)

    def part(start: int, stop: int) -> None:
        block = np.empty((k, _PAIRS_BLOCK), dtype=np.int32)
        least = np.empty(_PAIRS_BLOCK, dtype=np.int32)
        for s in range(start, stop, _PAIRS_BLOCK):
            e = min(s + _PAIRS_BLOCK, stop)
            d = np.take(first, head[s:e], axis=0)
            d += np.take(last, tail[s:e], axis=0)
            t, b = block[:, :d.shape[0]], least[:d.shape[0]]
            np.copyto(t, d.T)
            np.minimum.reduce(t, axis=0, out=b)
            np.bitwise_and(b, (1 << shift) - 1, out=labels[s:e])
            np.right_shift(b, shift, out=dist[s:e])

    parallel.map_parts(part, m, k)
    return labels, dist


class _Neighbours:
    """A palette's entries, each with all entries listed by ascending exact squared separation from it (ties
    by index): the lists that `_nearest_from` reads out only as far as a point's guess needs."""

    def __init__(self, palette: np.ndarray) -> None:
        k = palette.shape[0]
        self.cols = [palette[:, c].astype(np.int32) for c in range(palette.shape[1])]
        sep = np.zeros((k, k), dtype=np.int32)
        for col in self.cols:
            d = np.subtract.outer(col, col)
            d *= d
            sep += d
        # Each entry's index in the bits below its separation (< 2**18): one sort of uint32 rows.
        self.bits = max(1, (k - 1).bit_length())
        key = sep.astype(np.uint32) << self.bits
        key |= np.arange(k, dtype=np.uint32)
        key.sort(axis=1)
        # Row j: every entry's j-th nearest, so that the first w of many lists are read along rows.
        self.lists = np.ascontiguousarray((key & np.uint32((1 << self.bits) - 1)).T, dtype=np.intp)
        key >>= self.bits
        self.sep = key.view(np.int32)


def _nearest_from(cols: list[np.ndarray], nb: _Neighbours, guess: np.ndarray, block: int = _BLOCK
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest entry (ties to the lower index) of the points `cols` (integer columns, uint8 or int32)
    given an entry `guess` of each, near it: with u the point's distance to its guess g, an entry e with
    |e - g| > 2u is farther than u from the point (|x - e| >= |e - g| - u), so farther than g; the rest, the
    first of g's list, are measured. Each point reads its list out to the least power of two that covers 2u,
    and points of one width go together; each distance carries its entry's index in the low bits, so one
    minimum finds the nearest and breaks ties (squared distances < 2**18, indices < 2**9 here: int32).
    Returns (labels (m,) intp, squared distances (m,) int64)."""
    m, k = guess.shape[0], nb.lists.shape[0]
    labels = np.empty(m, dtype=np.intp)
    dist = np.empty(m, dtype=np.int64)

    def part(start: int, stop: int) -> None:
        # `_FROM_CHUNK` points at a time: each one's widths, their order and its int32 columns are ~40 bytes a
        # point, which over a whole part (48 MP noisy photo, 4.5 M colours in two) were 180 MB at the peak.
        for s in range(start, stop, _FROM_CHUNK):
            chunk(s, min(s + _FROM_CHUNK, stop))

    def chunk(start: int, stop: int) -> None:
        g = guess[start:stop]
        xs = [col[start:stop].astype(np.int32) for col in cols]
        u2 = None
        for x, pc in zip(xs, nb.cols):
            t = pc[g] - x
            t *= t
            u2 = t if u2 is None else u2 + t
        reach = u2 << 2
        width = np.ones(g.shape[0], dtype=np.intp)
        w = 1
        while w < k:  # the list is ascending: width doubles while its entry `w` is within reach
            width <<= np.less_equal(nb.sep[:, w][g], reach)
            w <<= 1
        np.minimum(width, k, out=width)
        # Widths are at most k < 2**16: as uint16 numpy's stable argsort is a radix sort (38 732 points: 0.3 ms,
        # 1 ms as intp).
        by_width = np.argsort(width.astype(np.uint16), kind="stable")
        cuts = np.flatnonzero(np.diff(width[by_width])) + 1
        for rows in np.split(by_width, cuts):
            w = int(width[rows[0]])
            for s in range(0, rows.shape[0], max(1, block // w)):
                r = rows[s:s + max(1, block // w)]
                cand = np.take(nb.lists[:w], g[r], axis=1)  # (w, points): each pass along the points
                key = None
                for x, pc in zip(xs, nb.cols):
                    t = pc[cand] - x[r]
                    t *= t
                    key = t if key is None else key + t
                key <<= nb.bits
                key |= cand.astype(np.int32)
                least = key.min(axis=0)
                labels[start + r] = least & ((1 << nb.bits) - 1)
                dist[start + r] = least >> nb.bits

    parallel.map_parts(part, m, 16)
    return labels, dist


# Points at a time in each part of `_nearest_from`.
_FROM_CHUNK = 1 << 18


def _cells(cols: list[np.ndarray], bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(the cell of each point (m,) intp, the occupied cells' centres (cells, C) uint8) of uint8 columns
    in cells of 2**(8 - bits) values per channel."""
    ids = np.zeros(cols[0].shape[0], dtype=np.intp)
    for col in cols:
        ids <<= bits
        ids |= col >> (8 - bits)
    inverse, occupied = _bins(ids)
    centres = np.empty((occupied.shape[0], len(cols)), dtype=np.uint8)
    for c in range(len(cols)):
        shift = bits * (len(cols) - 1 - c)
        centres[:, c] = (((occupied >> shift) & ((1 << bits) - 1)) << (8 - bits)) | (1 << (7 - bits))
    return inverse, centres


def _nearest_local(points: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`nearest` for RGB points and 64 < K < `_LARGE_K`, from a guess near each point (`_nearest_from`).

    The guess is the nearest entry to the centre of the point's cell of 8^3 values, those centres' nearest
    found the same way from their 16^3 cells' centres (nearest by brute force, then the best of each one's
    `_DESCENT` nearest entries). A 256x256 photo's 38 732 colours at K=256 then measure ~10 entries each
    instead of the ~100 of a fixed grid of cells (`_nearest_cells`): 6 ms instead of 12 ms; a noisy one's
    59 691, 9 ms instead of 23 ms.
    """
    nb = _Neighbours(palette)
    cols = _columns(points)
    fine, centres = _cells(cols, 5)
    centre_cols = _columns(centres)
    coarse, guesses = _cells(centre_cols, 4)
    guess = _nearest_brute(_columns(guesses), slice(0, guesses.shape[0]), guesses.shape[0], palette)[0][coarse]
    centre32 = [c.astype(np.int32) for c in centre_cols]
    # One step towards the centre's own nearest: the best of its guess's nearest entries.
    cand = np.take(nb.lists[:_DESCENT], guess, axis=1)
    d = None
    for col, pc in zip(centre32, nb.cols):
        t = pc[cand] - col
        t *= t
        d = t if d is None else d + t
    guess = cand[np.argmin(d, axis=0), np.arange(guess.shape[0])]
    guess = _nearest_from(centre32, nb, guess)[0][fine]
    return _nearest_from(cols, nb, guess)


# Entries among which `_nearest_local` moves each cell centre's first guess.
_DESCENT = 8
# Up to this many points `nearest` goes through `_nearest_local`; above, its guesses from cells of 8^3 values
# are poorer than the cells' own candidate lists pay for (12 MP noisy photo, 1.5 M colours at K=256: 0.45 s
# of CPU against 0.34 s; the 12 MP astronaut's 850 000: 0.15 s either way).
_LOCAL_MAX = 1 << 18


# RGB up to _LOCAL_MAX points takes the brute force only up to this K (and every K for fewer than 8 per entry):
# above it a fit's guess (its clusters) reads fewer entries (`_nearest_local`). 256x256 tiles, in process, CPU of
# `nearest` from the fit's clusters: china.jpg under noise (61 399 colours) K = 64 18.3 -> 7.6 ms, K = 32 11.8 ->
# 6.4, K = 24 8.0 -> 5.5, K = 16 5.8 -> 4.6; the bench's astronaut (36 447) K = 64 10.8 -> 3.3; a dark crop (10 949)
# K = 32 0.87 -> 0.73, K = 24 0.73 -> 0.89, K = 8 0.27 -> 0.58. The same labels and distances either way. Without
# a guess, and above _LOCAL_MAX points (cells; neither measured), the brute force still takes K <= 64.
_BRUTE_MAX_K = 24


def _nearest_way(m: int, channels: int, k: int, guess: bool = True) -> str:
    """How `nearest` finds m points' entries among k, given a guess or not."""
    if channels > 1 and k >= _LARGE_K:
        return "tree"
    if channels in _PAIRS_MAX_K and k <= _PAIRS_MAX_K[channels] and m >= _PAIRS_FROM:
        return "cells" if guess and k > _PAIRS_GUESS_K.get(channels, k) else "pairs"
    if channels == 4 and k <= _PAIRS_MAX_K[4] and m >= _FEW_FROM:  # (see `_FEW_GUESS_K`)
        if k <= _FEW_GUESS_K:
            return "pairs"
        if guess:
            return "cells"
    if channels == 1 or k <= (_BRUTE_MAX_K if guess and channels == 3 and m <= _LOCAL_MAX else 64) or m < 8 * k:
        return "brute"
    return "local" if channels == 3 and m <= _LOCAL_MAX else "cells"


def takes_guess(m: int, channels: int, k: int) -> bool:
    """Whether `nearest` of m points of this many channels onto k entries would use a guess: only then is
    one worth making (an (M,) array of clusters at millions of colours costs ~0.1 s and 8 bytes a colour)."""
    way = _nearest_way(m, channels, k)
    # RGBA's cells are coarse (3 per channel at K = 256: ~100 entries each), a fit's guess reads far fewer
    # (2 MP photo under a vignette, 1.3 M colours at K = 256: 0.53 s of CPU, 0.16 from the guess). RGB's
    # cells are finer, but the guess still halves the search at 12 MP, K = 256 (astronaut, 848 000 colours:
    # 0.20 s of CPU, 0.11 from the guess; a noisy photo's 1.5 M colours 0.41 s, 0.24).
    return way in ("local", "cells")


def share_order(palette: np.ndarray, share: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, rank): the entries by decreasing share (pixels), ties by colour, and each entry's place: the
    order of a file's palette (kmq.api, and rdo judging a labelling as its file holds it)."""
    # lexsort's last key is the primary one; palette columns break ties in colour order.
    order = np.lexsort((*palette.T[::-1], -share))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return order, rank


def nearest(points: np.ndarray, palette: np.ndarray, guess: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """The exact nearest palette entry of each point.

    points: (M, C) uint8; palette: (K, C) uint8; guess: optionally, an entry (M,) (intp or int32) near each point
    (e.g. its cluster from `fit`, mapped to the palette), which saves finding one.
    Returns (labels (M,) intp, squared distances (M,) int64); ties go to the lower palette index.
    Memory is bounded by chunking over the points; from K = 65 (given a guess, from `_BRUTE_MAX_K` + 1), up to
    `_LOCAL_MAX` RGB points measure only the entries near a guess (`_nearest_local`, or the one given: 256x256
    photo at K = 256, 3.6 ms instead of 6.7), more points the entries near the guess given, else those that can
    be nearest to some colour of their cell of the colour cube (`_nearest_cells`), and from `_LARGE_K` a k-d
    tree finds them. Many RGB points at K <= 32 and RGBA points at K <= 64 read two channels at a time from
    tables of pairs (`_nearest_pairs`); RGBA of 2^17-2^18 points at K = 17-64 start from a guess given
    (`_FEW_FROM`).
    Every way, and every guess, gives the same labels and distances.
    """
    points = np.ascontiguousarray(points, dtype=np.uint8)
    palette = np.ascontiguousarray(palette, dtype=np.uint8)
    m, channels = points.shape
    k = palette.shape[0]
    way = _nearest_way(m, channels, k, guess is not None)
    if way == "tree":
        return _nearest_tree(points, palette)
    if way == "pairs":
        return _nearest_pairs(points, palette)
    if way == "brute":
        return _nearest_brute(_columns(points), slice(0, m), m, palette)
    if way == "local":
        if guess is None:
            return _nearest_local(points, palette)
        return _nearest_from(_columns(points), _Neighbours(palette), guess)
    if guess is not None:  # in blocks that stay in the cache: a noisy image's points read most of their
        # lists (1 MP of RGBA noise under a vignette at K = 256: 90 MB more in 2**21).
        return _nearest_from(_columns(points), _Neighbours(palette), guess, _CACHE_BLOCK)
    # Aim for ~4 entries per cell, with at most 16^C cells (the candidate table is cells x K).
    per_axis = int(min(16, max(2, round((k / 4.0) ** (1.0 / channels)))))
    return _nearest_cells(points, palette, per_axis)


# --------------------------------------------------------------------------------------------------
# K-Means


def _float_dist2(cols: list[np.ndarray], rows: slice | np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared distances (m, K) float32 from the points `cols[c][rows]` (float32 columns) to the centres.

    Element-wise float32 passes over (m, K), several times faster than float64 ones here (half the memory
    traffic) and than a matrix product, which would hand these thin products (inner dimension C) to a
    multi-threaded BLAS that, with `-j 2` on two cores, spent more time waiting than working. Element-wise
    IEEE operations also give the same bits on every machine.
    """
    c32 = centres.astype(np.float32)
    d = np.subtract.outer(cols[0][rows], c32[:, 0])
    np.square(d, out=d)
    for c in range(1, len(cols)):
        t = np.subtract.outer(cols[c][rows], c32[:, c])
        np.square(t, out=t)
        d += t
    return d


def _along_dist2(cols: np.ndarray, centres: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Squared distances (K, n) float32 from the centres to the points cols (C, n) float32: the values of
    `_float_dist2`, transposed. out: a (2, K, n) float32 buffer (one row for one channel), whose first row is
    returned."""
    # Channel by channel into two (K, n) rows, each squared difference added as it is made: the same float32
    # values, summed in channel order. Made all at once into (C, K, n) then summed, the passes ran over C
    # times the memory, past the core's cache: `_lloyd_runs`' blocks (4 channels, 512 x 512 pairs) 0.79 ->
    # 0.59 ms, a fifth of the restarts' CPU on RGBA's 4-bit level (10 767 bins at K = 64).
    c32 = centres.T.astype(np.float32)[:, :, None]
    if out is None:
        out = np.empty((min(2, cols.shape[0]), centres.shape[0], cols.shape[1]), dtype=np.float32)
    d = np.subtract(c32[0], cols[0], out=out[0])
    np.square(d, out=d)
    for c in range(1, cols.shape[0]):
        t = np.subtract(c32[c], cols[c], out=out[1])
        np.square(t, out=t)
        d += t
    return d


class _Means:
    """The means (m, C) float64 of bins given their exact sums (m, C) and weights (m,), made a block of rows
    at a time when read (x[rows], rows a slice or an index array): the values of sums / w[:, None]."""

    def __init__(self, sums: np.ndarray, w: np.ndarray) -> None:
        self.sums, self.w, self.shape = sums, w, sums.shape

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        if isinstance(rows, slice):
            return self.sums[rows] / self.w[rows, None]
        return _gathered(self.sums, rows) / np.take(self.w, rows)[:, None]


def _gathered(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """a[rows] for a (m, C) array (or `_Means`) and an index array: np.take by rows, which numpy's fancy
    indexing of short rows is several times slower than (200 000 rows of 4 doubles: 3 ms against 0.3)."""
    return np.take(a, rows, axis=0) if isinstance(a, np.ndarray) else a[rows]


class _Points:
    """Weighted points to cluster: x (m, C) float64 (or `_Means`, with sums: read by rows only, so only by
    `_lloyd_bounded`, not by the distance passes or the tree's whole queries), w (m,) float64, and,
    when the points are exact uint8 colours, their columns for table look-up distances (else float32
    columns, see `_float_dist2`).
    sums: the exact weighted sums (m, C) the points are the means of (a histogram's bins, integers below
    2**53): the sums by cluster then start from them rather than from w x, which rounds. Given as integers,
    its columns are weighed in place, not copied (bincount reads them as doubles, exactly): a 12 MP photo's
    7-bit level under random alpha is 2.6 M bins, whose float copy was 84 MB at the fit's peak."""

    def __init__(self, x: np.ndarray | _Means, w: np.ndarray, u8: np.ndarray | None = None,
                 sums: np.ndarray | None = None, keep_wx: bool = True) -> None:
        self.x = x if isinstance(x, _Means) else np.ascontiguousarray(x, dtype=np.float64)
        self.w = np.ascontiguousarray(w, dtype=np.float64)
        self.m = self.x.shape[0]
        self.cols = _columns(u8) if u8 is not None else None
        self.inverse: np.ndarray | None = None  # for a histogram: the bin of each colour
        # Integer weights and weighted sums: every sum by cluster is exact, in any order (see `_Sums`).
        self.exact = u8 is not None or sums is not None
        self._wx: list[np.ndarray] | None = (
            None if sums is None else [sums[:, c] if sums.dtype.kind in "iu" else np.ascontiguousarray(sums[:, c])
                                       for c in range(sums.shape[1])])
        self.keep_wx = keep_wx
        self._cols32: list[np.ndarray] | None = None
        self._xt: np.ndarray | None = None
        self._lock = threading.Lock()

    @property
    def wx(self) -> Iterable[np.ndarray]:
        """Per channel, the (m,) weight x coordinate, contiguous float64 (or the integer sums' columns, see the
        class): every Lloyd update sums them by cluster. Made once and kept, or where the points were made
        with keep_wx=False, a column at a time each time they are read."""
        if self._wx is None:
            wx = (self.w * self.x[:, c] for c in range(self.x.shape[1]))
            if not self.keep_wx:
                return wx
            self._wx = list(wx)
        return self._wx

    def dist2(self, rows: slice | np.ndarray, centres: np.ndarray, tables: list[np.ndarray] | None = None
              ) -> np.ndarray:
        """Squared distances (rows, K) to the centres, float32."""
        if self.cols is not None:
            return _lut_dist2(self.cols, rows, tables if tables is not None else _tables(centres, np.float32))
        return _float_dist2(self.cols32, rows, centres)

    @property
    def cols32(self) -> np.ndarray:
        """(C, m) float32: per channel, the contiguous coordinates that `_float_dist2` reads."""
        # Asked for first inside the threads of a pass: one of them builds it, the others wait for it.
        with self._lock:
            if self._cols32 is None:
                self._cols32 = np.ascontiguousarray(self.x.T, dtype=np.float32)
        return self._cols32

    @property
    def xt(self) -> np.ndarray:
        """(C, m) float64: per channel, the contiguous coordinates that `_reassign_near` gathers."""
        # As cols32: under 32 centroids `_hamerly`'s parts ask for it first inside their threads (each built
        # its own copy: the same values, C x m x 8 bytes more for a while).
        with self._lock:
            if self._xt is None:
                self._xt = np.ascontiguousarray(self.x.T)
        return self._xt

    def dist2_to(self, centres: np.ndarray, out: np.ndarray | None = None,
                 rows: slice | np.ndarray | None = None) -> np.ndarray:
        """Squared distances (K, m) float32 from the few `centres` to every point (or to `rows`): the same
        values as `dist2`, laid out so that each pass runs along the points (K = 7 on 2 824 points: numpy's
        outer loops over rows of 7 took 280 us, along rows of 2 824 60 us). out: a (2, K, m) float32 buffer
        for float points (`_along_dist2`'s), whose first row is then returned."""
        if self.cols is not None:  # table look-ups: as fast either way round
            return self.dist2(slice(0, self.m) if rows is None else rows, centres).T
        return _along_dist2(self.cols32 if rows is None else self.cols32[:, rows], centres, out)

    def tables(self, centres: np.ndarray) -> list[np.ndarray] | None:
        return _tables(centres, np.float32) if self.cols is not None else None


# Up to this K `_assign` lays a full pass's distances along the points (at K = 64 it took longer).
_ALONG_MAX = 32


def _assign(pts: _Points, c: np.ndarray, rows: np.ndarray | None = None, second: bool = False
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Nearest centroid of each point (of `rows`, default all), chunked.

    Returns (labels intp, squared distance to the nearest float64, squared distance to the second nearest
    float64 or None unless `second`).
    """
    m = pts.m if rows is None else rows.shape[0]
    k = c.shape[0]
    tables = pts.tables(c)
    labels = np.empty(m, dtype=np.intp)
    best = np.empty(m, dtype=np.float64)
    nxt = np.empty(m, dtype=np.float64) if second else None
    # A full pass over float points with few centroids: its distances laid out (K, m), along the points, are
    # the same float32 values in under half the time, and the minimum down each column is element-wise
    # passes (`_down`) where a reduction over rows of K was slow (99 700 7-bit bins, K = 16, with the second
    # nearest: 9 ms instead of 16). Over a subset of rows the gather made it slower.
    along = tables is None and rows is None and k <= _ALONG_MAX
    step = max(1, (_ALONG_BLOCK if along else _BLOCK) // k)

    # Each point's row of distances is its own, however the points are blocked: the parts (threads, each
    # writing its own slices) give the labels and distances of one pass, bit for bit.
    def part(start: int, stop: int) -> None:
        for s in range(start, stop, step):
            e = min(s + step, stop)
            sel = slice(s, e) if rows is None else rows[s:e]
            if along:
                labels[s:e], best[s:e], two = _down(pts.dist2_to(c, rows=sel), second)
                if nxt is not None:
                    nxt[s:e] = two
                continue
            d = pts.dist2(sel, c, tables)
            lab = np.argmin(d, axis=1)
            at = (np.arange(lab.shape[0]), lab)
            labels[s:e] = lab
            best[s:e] = d[at]
            if nxt is not None:
                d[at] = np.inf
                nxt[s:e] = d.min(axis=1)

    parallel.map_parts(part, m, k)
    return labels, best, nxt


# Point-centroid pairs per block of `_assign`'s passes laid along the points: k rows that stay in the cache
# while `_down` walks them (a 5-bit histogram of 72 900 bins at K = 16, with the second nearest: 3.6 ms per
# pass instead of 7.0 in one block of all the points).
_ALONG_BLOCK = 1 << 18


def _down(d: np.ndarray, second: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Down the columns of d (..., K, n): each one's nearest row (the first of equals, as argmin), its value,
    and with `second` the least of the others (the runner-up's, or the same value on a tie), by reductions
    along the rows (`_first_least`), where numpy's reductions down columns were slow. With `second`, d is
    overwritten (the nearest's own entries)."""
    near, lab = _first_least(d, _FIRST_ROWS[d.shape[-2]])
    if not second:
        return lab, near, None
    # The others' least: the nearest's own entry out of the way. One K x n pass more, where the running
    # second least of K element-wise steps took three per row.
    if d.shape[-2] == 2:  # the other row's value (no index arrays of every point: K = 2 has 131 072 a block)
        return lab, near, np.maximum.reduce(d, axis=-2)
    if d.ndim == 2 and d.flags.c_contiguous:  # as `_assign` passes it: a flat put (put_along_axis: 5x the time)
        at = lab * d.shape[1]
        at += np.arange(d.shape[1])
        d.put(at, np.inf)
    else:
        np.put_along_axis(d, lab[..., None, :], np.inf, axis=-2)
    return lab, near, np.minimum.reduce(d, axis=-2)


def _wsum(w: np.ndarray, v: np.ndarray) -> float:
    """w . v for long float vectors without BLAS: numpy's dot hands n > 10 000 to multi-threaded OpenBLAS,
    which under `-j 2` on two cores spent ~6 ms of CPU on one 58 000-long product (einsum: 0.05 ms)."""
    return float(np.einsum("m,m->", w, v))


def _weighted_means(pts: _Points, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(sums / weights (k, C), NaN rows for empty clusters; total weight (k,))."""
    wsum = np.bincount(labels, weights=pts.w, minlength=k)
    sums = np.empty((k, pts.x.shape[1]), dtype=np.float64)
    for c, wx in enumerate(pts.wx):
        sums[:, c] = np.bincount(labels, weights=wx, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / wsum[:, None]
    return means, wsum


def _exact_means(pts: _Points, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`_weighted_means` of points whose weights and weighted sums are integers (`_Points.exact`), summed a
    block of points at a time: the same sums in any order, where over all the points at once each bincount
    made intp labels and float64 weights of every point (a 12 MP photo's 7-bit level under random alpha,
    3.65 M points: 58 MB, and the fit's peak resident memory grew by 12-28 MB there)."""
    wsum = np.zeros(k)
    sums = np.zeros((k, pts.x.shape[1]))
    wx = list(pts.wx)
    for s in range(0, pts.m, _TREE_BLOCK):
        at = slice(s, s + _TREE_BLOCK)
        own = labels[at].astype(np.intp)
        wsum += np.bincount(own, weights=pts.w[at], minlength=k)
        for c, col in enumerate(wx):
            sums[:, c] += np.bincount(own, weights=col[at], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / wsum[:, None]
    return means, wsum


class _Sums:
    """Weight and weighted coordinate sums by cluster, kept up to date as points change cluster.

    Exact only where every sum is an integer below 2**53 (uint8 colours or a histogram's exact sums, integer
    counts: `_Points.exact`): then the running sums equal those made afresh (`_weighted_means`) bit for bit,
    in any order of updates."""

    def __init__(self, pts: _Points, labels: np.ndarray, k: int) -> None:
        self.pts, self.k = pts, k
        self.wsum = np.bincount(labels, weights=pts.w, minlength=k)
        self.sums = np.stack([np.bincount(labels, weights=wx, minlength=k) for wx in pts.wx], axis=1)

    def means(self) -> tuple[np.ndarray, np.ndarray]:
        """As `_weighted_means`: (sums / weights, NaN rows for empty clusters; weights)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums / self.wsum[:, None], self.wsum.copy()

    def move(self, rows: np.ndarray, old: np.ndarray, new: np.ndarray) -> None:
        """Points `rows` went from clusters `old` to `new` (either may be equal)."""
        moved = old != new
        if not moved.any():
            return
        # np.compress, not a boolean index: the same values, but a mask of no pattern cost a boolean index
        # several times more (a 53 000-long mask 30 % true: 0.3 ms against 0.05).
        rows = np.compress(moved, rows)
        # One bincount per sum: each point's weight into its new cluster and out of its old one.
        to = np.concatenate((np.compress(moved, new), np.compress(moved, old)))
        k, n = self.k, rows.shape[0]
        v = np.empty(2 * n)
        for total, col in ((self.wsum, self.pts.w), *((self.sums[:, c], wx) for c, wx in enumerate(self.pts.wx))):
            if col.dtype == v.dtype:
                np.take(col, rows, out=v[:n])
            else:  # a histogram's integer sums, read in place (`_Points`): np.take's out would not cast
                v[:n] = np.take(col, rows)
            np.negative(v[:n], out=v[n:])
            total += np.bincount(to, weights=v, minlength=k)


def _reseed_empty(centroids: np.ndarray, wsum: np.ndarray, x: np.ndarray, dist: np.ndarray) -> None:
    """Move each empty centroid onto one of the points farthest from their centroid, in place.

    Deterministic: points are ranked by decreasing distance, ties by ascending index (a stable sort), and
    the empty clusters, in ascending order, take them in that order.
    """
    empty = np.flatnonzero(wsum == 0)
    if empty.size == 0:
        return
    far = np.argsort(-dist, kind="stable")[: empty.size]
    centroids[empty] = x[far]


# Up to this many point-candidate pairs `_kmeanspp` measures float points along them (`_along_dist2`, the
# same float32 values) and turns the result into the (points, candidates) rows the potentials sum: 64
# candidates on 5 645 / 9 779 / 16 000 points, 0.6 / 1.2 / 2.3 ms instead of 1.2 / 2.3 / 4.4; on 24 000,
# 5.2 instead of 6.2, and no faster in blocks (the buffer, C x pairs float32, stays at most 16 MB).
_PP_ALONG_MAX = 1 << 20


@_short_buffers
def _kmeanspp(pts: _Points, k: int, rng: np.random.Generator, runs: int = 1, trials: int | None = None
              ) -> np.ndarray:
    """Greedy weighted k-means++ (as scikit-learn): each new centroid is the best, by total weighted
    potential, of 2 + floor(ln k) candidates (or `trials`, with several runs) drawn with probability
    proportional to weight x D^2.

    `runs` independent seedings advance together, one vectorised step per centroid for all of them, so
    that many restarts cost little more Python overhead than one. Returns (k, C) float64 for runs == 1,
    else (runs, k, C).
    """
    if runs == 1:
        return _kmeanspp_one(pts, k, rng)
    x, w, m = pts.x, pts.w, pts.m
    trials = trials or 2 + int(math.log(k))
    centroids = np.empty((runs, k, x.shape[1]), dtype=np.float64)
    cw = np.cumsum(w)
    first = np.minimum(np.searchsorted(cw, rng.random(runs) * cw[-1], side="right"), m - 1)
    centroids[:, 0] = x[first]
    # (runs, m) float32 like the distances (the minimum of float32 values needs no float64 copy of them),
    # each run's along the points, as the potentials and the minimum below read them.
    closest = np.ascontiguousarray(pts.dist2(slice(0, m), x[first]).T)
    run_ix = np.arange(runs)
    along = pts.cols is None and m * runs * trials <= _PP_ALONG_MAX
    buf = np.empty((min(2, x.shape[1]), runs * trials, m), dtype=np.float32) if along else None
    cost = 3 * runs * trials * x.shape[1] // 2
    groups = len(parallel.parts(runs, m * cost // runs))
    if buf is not None and groups > 1 and runs % groups == 0:  # threads by runs where they split evenly
        _kmeanspp_by_runs(pts, rng, centroids, closest, trials, buf, m * cost // runs)
        return centroids
    d = np.empty((m, runs, trials), dtype=np.float32)

    # Each point's distances to the candidates, and their minimum with its closest so far, are its own: the
    # points in parts (threads, each writing its own rows of d) give the values of one pass, bit for bit;
    # the sums over the points below stay whole. About half of the seeding's time, in one thread before (12 MP
    # mosaic, 16 runs at K = 16 on 8 855 5-bit bins: 0.094-0.102 -> 0.062-0.068 s of wall time on a busy
    # machine, CPU 0.049 -> 0.051 s). Each pair costs several passes (a difference, a square and a sum per
    # channel, the turn, the minimum), but two threads paid only from ~6 300 points (16 runs at K = 16, idle
    # machine, wall: 3 500 points 17.6 ms in one, 23.4 in two; 6 300 even; 9 000 51.4 -> 46.6; a 256x256 noisy
    # tile's 3 468 bins made its whole fit 7 % slower): weighed as 1.5 items a channel, split from ~7 300 up.
    def part(start: int, stop: int) -> None:
        rows = d[start:stop].reshape(stop - start, runs * trials)
        if buf is not None:  # float points: laid out along them, then turned (`_PP_ALONG_MAX`)
            far = _along_dist2(pts.cols32[:, start:stop], chosen, buf[:, :, start:stop])
            # Bounded by each run's closest so far while still along the points: the minimum's inner loop
            # runs along them, where in (points, runs, trials) it ran over rows of `trials` (4 at K = 16) with
            # the closest broadcast (16 runs at K = 16 on 8 223 bins: ~1 ms a step, now a fraction of it).
            along = far.reshape(runs, trials, stop - start)  # a view: the rows split
            np.minimum(along, closest[:, None, start:stop], out=along)
            np.copyto(rows, far.T)
        else:
            rows[:] = pts.dist2(slice(start, stop), chosen)
            np.minimum(d[start:stop], closest.T[start:stop, :, None], out=d[start:stop])

    for i in range(1, k):
        # (runs, m): each run's cumulative sum runs along its row (the same additions in the same order as
        # down the columns of (m, runs), 3.5 ms with the shift below -> 1.3 at 16 runs on 9 779 points).
        pot = np.multiply(closest, w)
        np.cumsum(pot, axis=1, out=pot)
        total = pot[:, -1].copy()
        # One searchsorted for every run: run j's cumulative potential is shifted past runs 0..j-1.
        base = np.concatenate([[0.0], np.cumsum(total)[:-1]])
        pot += base[:, None]
        flat = pot.ravel()
        draws = rng.random((runs, trials)) * total[:, None] + base[:, None]
        cand = np.searchsorted(flat, draws.ravel(), side="right").reshape(runs, trials) - run_ix[:, None] * m
        np.clip(cand, 0, m - 1, out=cand)
        # Every point already on a centroid (only with duplicate rows): that run takes rows in order.
        cand[total <= 0.0] = i % m
        chosen = x[cand.ravel()]
        parallel.map_parts(part, m, cost)
        best = np.argmin(np.einsum("m,mrt->rt", w, d), axis=1)  # first minimum: the earlier candidate
        centroids[:, i] = x[cand[run_ix, best]]
        closest = np.ascontiguousarray(d[:, run_ix, best].T)
    return centroids


def _kmeanspp_by_runs(pts: _Points, rng: np.random.Generator, centroids: np.ndarray, closest: np.ndarray,
                      trials: int, buf: np.ndarray, cost: int) -> None:
    """`_kmeanspp`'s steps from its second centroid on, for float points (`_PP_ALONG_MAX`), the runs in equal
    groups (`parallel.map_parts` of the runs, each run's work `cost`, each group with rows of its own in every
    array), filling centroids (runs, k, C) in place with the same values: the same draws, in the same order,
    and each run's arithmetic as there.

    By points, only the distances were in parts: each step's potentials, their cumulative sums, the sums by
    candidate (einsum) and the gathers stayed in the calling thread, ~half of it (RGBA's 4-bit level at K = 64,
    8 runs on 10 796 bins: 0.10 of 0.14 s of CPU). A run's cumulative sum and sums by candidate run along all the
    points in order, whichever runs are beside it (numpy's einsum adds down its reduced axis one point after
    another, for any slice of the runs), so they are the same bits by runs. The search of one draw is within its
    run's row of the cumulative potentials shifted past the runs before it (`_kmeanspp`): a row's last value is
    the next row's shift, as the cumulative sum of the totals makes it, and a draw never passes it, so the search
    in a group's rows finds what it found in all of them, less the rows before the group."""
    x, w, m = pts.x, pts.w, pts.m
    runs, k = centroids.shape[:2]
    pot = np.empty((runs, m))
    total = np.empty(runs)
    own_d = {r0: np.empty((m, r1 - r0, trials), dtype=np.float32) for r0, r1 in parallel.parts(runs, cost)}

    @_short_buffers  # (in every thread: as the steps by points had them, `_kmeanspp`'s)
    def potentials(r0: int, r1: int) -> None:
        np.multiply(closest[r0:r1], w, out=pot[r0:r1])
        np.cumsum(pot[r0:r1], axis=1, out=pot[r0:r1])
        total[r0:r1] = pot[r0:r1, -1]

    @_short_buffers
    def step(r0: int, r1: int) -> None:
        n = r1 - r0
        seg = pot[r0:r1]
        seg += base[r0:r1, None]
        cand = np.searchsorted(seg.ravel(), draws[r0:r1].ravel(), side="right").reshape(n, trials)
        cand -= (np.arange(n) * m)[:, None]
        np.clip(cand, 0, m - 1, out=cand)
        cand[total[r0:r1] <= 0.0] = i % m
        far = _along_dist2(pts.cols32, x[cand.ravel()], buf[:, r0 * trials:r1 * trials])
        along = far.reshape(n, trials, m)
        np.minimum(along, closest[r0:r1, None, :], out=along)
        rows = own_d[r0]  # (a group's own: rows of d shared by two threads shared their cache lines too)
        np.copyto(rows, along.transpose(2, 0, 1))
        best = np.argmin(np.einsum("m,mrt->rt", w, rows), axis=1)  # first minimum: the earlier candidate
        own = np.arange(n)
        centroids[r0:r1, i] = x[cand[own, best]]
        closest[r0:r1] = along[own, best]
        if i + 1 < k:
            potentials(r0, r1)

    # Each group in a thread of its own; the draws are made here, all runs' at once, between the steps.
    parallel.map_parts(potentials, runs, cost)
    for i in range(1, k):
        base = np.concatenate([[0.0], np.cumsum(total)[:-1]])
        draws = rng.random((runs, trials)) * total[:, None] + base[:, None]
        parallel.map_parts(step, runs, cost)


@_short_buffers
def _kmeanspp_one(pts: _Points, k: int, rng: np.random.Generator,
                  labels: np.ndarray | None = None, trials: int | None = None) -> np.ndarray:
    """`_kmeanspp` for one run, with the same draws, arithmetic and so the same centroids, in under half
    the time: the distances to the candidates are laid out along the points (`_Points.dist2_to`), and
    the one run's potentials need no shifting, so each step is ~12 numpy calls on contiguous rows.
    labels (m,), if given, receives each point's nearest centroid (the first of equals), which Lloyd can
    start from instead of measuring all k again. trials: candidates per step (`_kmeanspp`'s where None)."""
    x, w, m = pts.x, pts.w, pts.m
    trials = trials or 2 + int(math.log(k))
    centroids = np.empty((k, x.shape[1]), dtype=np.float64)
    cw = np.cumsum(w)
    first = min(int(np.searchsorted(cw, rng.random(1)[0] * cw[-1], side="right")), m - 1)
    centroids[0] = x[first]
    closest = pts.dist2_to(x[first:first + 1])[0]
    wc = np.empty(m, dtype=np.float64)
    pot = np.empty(m, dtype=np.float64)
    won = np.empty(m, dtype=bool)
    # Float points (a histogram level): every step's distances in one reused buffer instead of fresh
    # arrays (256x256 photo, K=256: 18 ms instead of 23 ms).
    buf = np.empty((min(2, x.shape[1]), trials, m), dtype=np.float32) if pts.cols is None else None
    if labels is not None:
        labels[:] = 0
    at = 0  # the first point whose closest changed in the last step: the sums before it stand
    for i in range(1, k):
        # np.cumsum's sums, without its Python wrapper, and from `at` only (started from the sum before it):
        # the same sequential additions, and a dependent chain of them the dearest pass of a step on many
        # points (a 256x256 tile of uniform noise, K = 256: 28 331 5-bit bins, 0.11 of 0.26 ms a step).
        np.multiply(w[at:], closest[at:], out=wc[at:])
        if at:
            kept, wc[at - 1] = wc[at - 1], pot[at - 1]
            np.add.accumulate(wc[at - 1:], out=pot[at - 1:])
            wc[at - 1] = kept
        else:
            np.add.accumulate(wc, out=pot)
        total = pot[-1]
        if total > 0.0:
            cand = pot.searchsorted(rng.random(trials) * total, side="right")
            np.minimum(cand, m - 1, out=cand)
        else:  # every point already on a centroid (only with duplicate rows): take rows in order
            rng.random(trials)
            cand = np.full(trials, i % m)
        d = pts.dist2_to(x[cand], buf)
        np.minimum(d, closest, out=d)
        best = int(np.einsum("tm,m->t", d, w).argmin())  # first minimum: the earlier candidate
        centroids[i] = x[cand[best]]
        np.less(d[best], closest, out=won)
        if labels is not None:
            labels[won] = i
        at = int(won.argmax())  # (0 where none came nearer: all summed again, the same sums)
        closest = d[best].copy()  # d may be the reused buffer
    return centroids


def _lloyd(pts: _Points, centroids: np.ndarray, max_iter: int, tol_abs: float) -> tuple[np.ndarray, float]:
    """Plain weighted Lloyd, the reference the fast path is tested against: from `centroids` until the
    summed squared centroid shift is <= tol_abs, the labels stop changing, or max_iter updates.
    Returns (centroids (k, C) float64, weighted inertia of the last assignment)."""
    k = centroids.shape[0]
    labels, dist, _ = _assign(pts, centroids)
    for _ in range(max_iter):
        new, wsum = _weighted_means(pts, labels, k)
        _reseed_empty(new, wsum, pts.x, dist)
        shift = float(((new - centroids) ** 2).sum())
        centroids = new
        new_labels, dist, _ = _assign(pts, centroids)
        changed = bool(np.any(new_labels != labels))
        labels = new_labels
        if not changed or shift <= tol_abs:
            break
    return centroids, _wsum(pts.w, dist)


_SEP_SCALE = 128.0  # 255 * sqrt(4) * 128 < 65535
# How far out `_reassign_near` measures, in units of a point's distance u to its own centroid: 2u is all
# that the nearest needs, but then the bound on the centroids beyond is only u and fails at the next move;
# from 2.5u it is 1.5u (K=256 on a 256x256 photo: a late iteration re-measures ~2k colours, not ~5k).
_REACH = 2.5
# ... but 2u with 4 channels (RGBA): the centroids within reach grow as its fourth power, so 2.5u measured
# 2.4x as many as 2u, and the margin rarely outlasted the next move (12 MP photos under random alpha, its
# 6-bit level's over-relaxed updates re-measuring a third of 288 000 points each: fit 1.53 -> 1.17 s of
# CPU at K = 256; compress under a vignette -8 to -14 %, 0.27 MP at K = 256 -10 %; the same files). RGB at
# 2u, K = 256: a 256x256 tile 11 % slower, chelsea 4 %, a 12 MP photo 10 % faster.
_REACH_RGBA = 2.0
# A point's bound on the centroids but its own and the runner-up drops by the largest move among its
# centroid's this many nearest others, not among all (see `_hamerly`).
_NEIGHBOURS = 16
# ... with 4 channels (RGBA), this many: there a point lies out as far from the centroids as in RGB, but
# more of them lie within that distance (a centroid's 17th nearest closer than twice the distance of most
# points to theirs), so the separation to the one beyond 16 neighbours, less u, failed the bound of points
# that no centroid had come near (12 MP grace_hopper under random alpha at K = 256: of ~200 000 points of
# 288 000 failing the bound each over-relaxed update, 72 000 by that separation; at 48, 5 000). The same
# labels; that level's 22 updates 0.86 -> 0.64 s of CPU (32: 0.66, 64: 0.65, 96: 0.68).
_NEIGHBOURS_RGBA = 48
# `_hamerly` sorts the centroids' separations again once one has drifted this share of the points' median
# distance to their centroid since the last sort: the lists are then read out to 2.5 u plus up to twice
# that drift, so it must stay small next to u (measured against the nearest separation instead, a noisy
# 256x256 tile at K=256 took 1.7 s instead of 0.65 s; 0.6 of the median u: 0.75 s).
_RESORT = 0.4
# ... that median taken over every 64th point: over all 38 732 colours it cost 0.55 ms a sort.
_MEDIAN_STEP = 64
# From this K on, Hamerly's full re-assignments only look at the centroids near each point's own.
_GROUPED_FROM = 32


def _sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distances between matching rows of a and b (..., C) -> (...), channel by channel: numpy's
    reduction over a last axis of 3 is several times slower than three element-wise passes."""
    d = (a[..., 0] - b[..., 0]) ** 2
    for c in range(1, a.shape[-1]):
        d += (a[..., c] - b[..., c]) ** 2
    return d


def _separations(centroids: np.ndarray) -> np.ndarray:
    """(k, k) float64 distances between the centroids: the same bits as sqrt(`_sq`) over broadcast rows,
    but along contiguous columns (256 centroids: ~20 % faster)."""
    cols = np.ascontiguousarray(centroids.T)
    d = np.subtract(cols[:, :, None], cols[:, None, :])
    d *= d
    sep = d[0]
    for c in range(1, d.shape[0]):
        sep += d[c]
    return np.sqrt(sep, out=sep)


def _sq_rows(pts: _Points, rows: np.ndarray, centroids: np.ndarray, to: np.ndarray) -> np.ndarray:
    """`_sq`(pts.x[rows], centroids[to]), the same bits, gathered a channel at a time from contiguous
    columns rather than as rows of C (about twice as fast on the few thousand points of a late update)."""
    xt = pts.xt
    d = xt[0].take(rows)
    d -= centroids[:, 0].take(to)
    d *= d
    for c in range(1, xt.shape[0]):
        t = xt[c].take(rows)
        t -= centroids[:, c].take(to)
        t *= t
        d += t
    return d


def _sq_all(pts: _Points, centroids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`_sq`(pts.x, centroids[labels]), the same bits, a channel at a time from contiguous columns: the
    rows of x and a gather of (m, C) rows cost several times more (53 000 colours: ~1 ms against 0.2)."""
    xt = pts.xt
    d = centroids[:, 0].take(labels)
    d -= xt[0]
    d *= d
    for c in range(1, xt.shape[0]):
        t = centroids[:, c].take(labels)
        t -= xt[c]
        t *= t
        d += t
    return d


def _by_separation(sep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each centroid's list of all centroids by ascending separation from it, itself first: (order (k, k),
    the separations in that order (k, k) float64, rounded down to 1/128).

    Sorted by separation rounded down to 1/128, a 16-bit key, with the centroid's index in the bits below
    it: one sort of uint32 rows gives the order, ties by ascending index (as a stable sort), and the keys in
    that order, with no argsort and no gather (256 centroids: 0.35 ms instead of 1.2 ms; this sort runs
    about once per Lloyd update). Rounded-down separations keep every use exact: a centroid with
    separation < s is among those listed before the first rounded value >= s, and a listed value still
    bounds every later one from below. The key of each centroid itself is 0 and every other key at least 1,
    so each list starts with its own. One sort per Lloyd update serves both `_hamerly`'s neighbour bound
    and `_reassign_near`. k <= 2**16.
    """
    k = sep.shape[0]
    bits = max(1, (k - 1).bit_length())
    t = np.multiply(sep, _SEP_SCALE)  # in place from here: fewer fresh (k, k) temporaries
    np.floor(t, out=t)
    t += 1.0
    np.minimum(t, 65535.0, out=t)
    key = t.astype(np.uint32)
    np.fill_diagonal(key, 0)
    key <<= bits
    key |= np.arange(k, dtype=np.uint32)
    key.sort(axis=1)
    # Column-major: `_reassign_near` reads the first L entries of many lists at once, i.e. rows of order.T.
    # Transposed as uint16 (a quarter of the bytes; writing a column-major intp or float64 array directly
    # costs several times more than the rest of this function).
    order = np.ascontiguousarray((key & np.uint32((1 << bits) - 1)).astype(np.uint16).T).astype(np.intp).T
    key >>= bits
    nsep = key.astype(np.float64)
    nsep -= 1.0
    np.maximum(nsep, 0.0, out=nsep)
    nsep *= 1.0 / _SEP_SCALE
    return order, nsep


def _first_least(d: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Down the columns of d (..., L, n), no NaN: each one's least value and the first row holding it, as
    d.min(axis=-2) and d.argmin(axis=-2). first: (L, 1) L - row, as `_FIRST_ROWS` keeps it.

    numpy's argmin down the columns copies d turned and then calls its loop once per column of L (a group
    of 14 000 points at L = 16: 0.53 ms); a minimum down them runs along the rows, and so do the flags of
    the values equal to it, weighed by L - row, whose greatest is the first such row (0.13 ms). Element-wise
    steps down the rows instead (`_down` before) cost three numpy calls per row: at K = 64, 16 runs of
    `_lloyd_runs` on 512-point blocks, ~200 calls per block where these are 5."""
    least = np.minimum.reduce(d, axis=-2)
    flags = np.equal(d, least[..., None, :]).view(np.uint8)
    row = np.maximum.reduce(np.multiply(flags, first), axis=-2).astype(np.intp)
    np.subtract(first.shape[0], row, out=row)
    return least, row


class _FirstRows(dict):
    """L -> (L, 1) array of L - row, the least unsigned type that holds L: `_first_least`'s weights."""

    def __missing__(self, rows: int) -> np.ndarray:
        first = np.arange(rows, 0, -1, dtype=np.uint8 if rows < 256 else np.uint16)[:, None]
        self[rows] = first
        return first


_FIRST_ROWS = _FirstRows()


# Candidate-point-channel values per block of `_reassign_near` (4 channels: 8,192 points of 4 candidates): its (L, n)
# float64 rows stay in the core's share of the cache. At `_BLOCK` (2**21) each of them was 4 MB with 4 channels:
# the momentum updates of RGBA's mixed level and polish (95 000-354 000 points, K = 64-256) 1-7 % less CPU in
# `_hamerly` at 2**17 (RGB's polish 0-5 %), the same labels and bounds.
_NEAR_BLOCK = _CACHE_BLOCK
# The fewest candidates `_reassign_near` lists for a point with 4 channels. Two (its centroid and the nearest
# other) rarely settle a point there, and they leave the bound on the rest at the separation beyond less u;
# four make it the third nearest measured, which the next updates fail less: those momentum updates 4 % less
# CPU on geometric mean over 7 cells (-10 % to +3 %), the same labels. RGB: no gain, left at two.
_LEAST_WIDTH_RGBA = 4


@_short_buffers
def _reassign_near(pts: _Points, centroids: np.ndarray, order: np.ndarray, nsep: np.ndarray, rows: np.ndarray,
                   labels: np.ndarray, upper: np.ndarray, runner: np.ndarray, near: np.ndarray,
                   lower: np.ndarray, slack: np.ndarray | None = None) -> None:
    """Nearest centroid (and bounds) for the points `rows`, whose upper[rows] are exact distances to their
    current centroid j; updates in place labels and upper (the nearest and its exact distance), runner and
    near (another centroid and its exact distance, the second nearest among those measured) and lower (a
    bound from below on the distance to every centroid but those two).

    A centroid i can only beat j for x if |c_i - c_j| < 2|x - c_j| (triangle inequality). Each centroid's
    others are sorted by separation (`_by_separation`: order, nsep), so a point needs only the first n of
    its centroid's list (those within `_REACH` |x - c_j|, `_REACH_RGBA` with 4 channels, so that the bound on
    the rest stays above the nearest for a while); points are bucketed by n rounded up to a power of two (at
    least 2, `_LEAST_WIDTH_RGBA` with 4 channels) and each bucket is one vectorised step. Any centroid past the
    first n is at least |c_i - c_j| - |x - c_j| away, which bounds the rest from below.
    slack (k,): when order and nsep were sorted before the centroids last moved, centroid j's separations
    may since have shrunk by up to slack[j] (its own move plus the largest other's); each list is then
    read that much further out and the bound on the rest lowered by as much, so the answer stays exact.
    """
    k = centroids.shape[0]
    lab = labels[rows]
    u = upper[rows]
    reach = (_REACH if pts.x.shape[1] < 4 else _REACH_RGBA) * u
    if slack is not None:
        reach += slack[lab]
    # width = the least power of two L >= 2 (at most k) whose first L of the sorted list hold all that lie
    # within reach: the list is ascending, so that is when its entry L is out of reach. One comparison per
    # power of two (7 at k = 256), each a row of one (powers, points) table of flags, summed down.
    powers = np.ascontiguousarray(nsep[:, 2 << np.arange(max(0, (k - 1).bit_length() - 1))].T)
    # The flags summed as the uint8 they are stored as: summing bools into uint8 cast them through buffers.
    doublings = np.add.reduce(np.less(powers.take(lab, axis=1), reach).view(np.uint8), axis=0, dtype=np.uint8)
    if pts.x.shape[1] > 3:
        np.maximum(doublings, _LEAST_WIDTH_RGBA.bit_length() - 2, out=doublings)
    x = pts.x
    xt = pts.xt
    channels = x.shape[1]
    cols = [np.ascontiguousarray(centroids[:, c]) for c in range(channels)]
    lists = order.T  # (k, k): row j holds every centroid's j-th nearest
    # Row j of near_cols[c]: channel c of every centroid's j-th nearest, made as far down as a width needs
    # (`built` rows). A wide group of points then gathers its candidates' coordinates straight from these
    # rows, with no (L, m) table of candidates in between (the same values): one gather of L x m fewer (C + 1
    # -> C). Groups too small to pay for the rows they would add take the candidates' table instead.
    near_cols = np.empty((channels, k, k))
    built = 0
    by_width = np.argsort(doublings, kind="stable")  # the points of each width in ascending order
    cuts = np.flatnonzero(np.diff(doublings[by_width])) + 1
    for sel in np.split(by_width, cuts):
        L = min(2 << int(doublings[sel[0]]), k)
        rows_of = L <= built or channels * (L - built) * k <= L * sel.shape[0]
        if rows_of and L > built:
            for c in range(channels):
                cols[c].take(lists[built:L], out=near_cols[c, built:L], mode="clip")
            built = L
        step = max(1, _NEAR_BLOCK // (L * channels))
        for s0 in range(0, sel.shape[0], step):
            part = sel[s0:s0 + step]
            r = rows[part]
            lp = lab[part]
            n = part.shape[0]
            # (L, m): candidate j of every point in row j, ascending separation from the point's own
            # centroid. Laid out this way each pass runs along the points, not along rows of L (L = 4: 2.6x
            # faster), and the first minimum down a column is still the earliest candidate.
            cand = None if rows_of else lists[:L].take(lp, axis=1, mode="clip")
            for c in range(channels):
                t = near_cols[c, :L].take(lp, axis=1, mode="clip") if rows_of else cols[c].take(cand, mode="clip")
                t -= xt[c].take(r)
                t *= t
                if c:
                    d += t
                else:
                    d = t

            def nearest_left() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
                """The flat index in d of each point's least distance left, that candidate and the distance."""
                least, row = _first_least(d, first)
                at = row * n
                at += np.arange(n)
                if cand is not None:
                    return at, cand.take(at), least
                row *= k
                row += lp
                return at, lists.take(row), least

            first = _FIRST_ROWS[L]
            at, best, least = nearest_left()
            upper[r] = np.sqrt(least)
            labels[r] = best
            d.put(at, np.inf)
            at, best, least = nearest_left()
            near[r] = np.sqrt(least)
            runner[r] = best
            d.put(at, np.inf)
            rest = np.sqrt(d.min(axis=0)) if L > 2 else np.full(n, np.inf)
            if L < k:
                beyond = nsep[:, L].take(lp)
                beyond -= u[part]
                if slack is not None:
                    beyond -= slack[lp]
                np.minimum(rest, beyond, out=rest)
            lower[r] = rest


# Work of one point in an update of `_hamerly`'s bounds (~10 passes over it, and its share of the re-measures),
# against `parallel.MIN_PART`: the points in two threads from 131 072 (see `_settle`). Those updates were in one
# thread, the longest stretch of one there is in a mid-size RGBA fit: the colours' polish at K = 64 (grace_hopper
# at 0.5 MP under blurred noise, 297 000 colours, 24 updates: 0.28 s of CPU in the calling thread, now 0.14 s of
# the same 0.28), the mixed level at K = 256 (136 000 points: 0.29 -> 0.16 of 0.27-0.29 s). Not from 65 536:
# levels of 65 000-120 000 points lost more to the second thread than it saved (bench/rdo.py's RGBA 400x300 at
# K = 64: 0.22 -> 0.27 s wall, CPU +30 %; its `--psnr 32` search 1.33 -> 1.51 s).
_HAMERLY_COST = 16


def _failing(pts: _Points, centroids: np.ndarray, start: int, loose: np.ndarray, bound: np.ndarray,
             labels: np.ndarray, upper: np.ndarray) -> np.ndarray | None:
    """Of the points start.. whose upper bound is above their bound (loose), each re-measured to its centroid
    (upper, in place): those still above it, or None."""
    cand = np.flatnonzero(loose)
    if cand.size == 0:
        return None
    bound = bound.take(cand)
    cand += start
    u = np.sqrt(_sq_rows(pts, cand, centroids, labels.take(cand)))
    upper[cand] = u
    still = cand.compress(u > bound)
    return still if still.size else None


def _settle_few(pts: _Points, centroids: np.ndarray, start: int, stop: int, delta: np.ndarray, far: int,
                second: float, half: np.ndarray, labels: np.ndarray, upper: np.ndarray, lower: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """`_settle` under `_GROUPED_FROM` centroids, where lower bounds every centroid but a point's own (it
    shrinks by the largest move among the others: `second` for the points of the one that moved most, `far`)
    and a point that fails its bounds measures all k (`_assign`)."""
    at = slice(start, stop)
    lab = labels[at]
    up = upper[at]
    up += delta.take(lab)
    lo = lower[at]
    lo -= np.where(lab == far, second, delta[far])
    bound = np.maximum(half.take(lab), lo)
    still = _failing(pts, centroids, start, up > bound, bound, labels, upper)
    if still is None:
        return None
    before = labels.take(still)
    lab, up, lo = _assign(pts, centroids, rows=still, second=True)
    labels[still] = lab
    upper[still] = np.sqrt(up)
    lower[still] = np.sqrt(lo)
    return still, before


def _settle(pts: _Points, centroids: np.ndarray, order: np.ndarray, nsep: np.ndarray, slack: np.ndarray | None,
            start: int, stop: int, delta: np.ndarray, moved: np.ndarray, beyond: np.ndarray, half: np.ndarray,
            labels: np.ndarray, upper: np.ndarray, runner: np.ndarray, near: np.ndarray, lower: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray] | None:
    """One update of `_hamerly`'s grouped bounds (from `_GROUPED_FROM` centroids) for the points start..stop,
    after the centroids moved by delta: their bounds loosened, the points that fail them re-measured and,
    where a third centroid may win, reassigned (`_reassign_near`), in place. Returns (the points that were
    re-measured against their runner-up, their labels before), for the sums, or None.

    Each point's bounds, distances and label are its own (element-wise passes and gathers by its own
    label), so parts of the points give the bits of one pass over all of them."""
    at = slice(start, stop)
    lab = labels[at]
    up = upper[at]
    up += delta.take(lab)
    lo = lower[at]
    lo -= moved.take(lab)
    np.minimum(lo, beyond.take(lab) - up, out=lo)
    nr = near[at]
    nr -= delta.take(runner[at])
    bound = np.maximum(half.take(lab), np.minimum(nr, lo))
    still = _failing(pts, centroids, start, up > bound, bound, labels, upper)
    if still is None:
        return None
    before = labels.take(still)
    # The runner-up measured: when it or the centroid is within the others' bound, the nearer of the
    # two is the nearest (ties keep the centroid) and the other is the new runner-up.
    ru = runner.take(still)
    d2 = np.sqrt(_sq_rows(pts, still, centroids, ru))
    up = upper.take(still)
    settled = np.minimum(up, d2) <= lower.take(still)
    swap = settled & (d2 < up)
    s_rows, s_ru = still.compress(swap), ru.compress(swap)
    runner[s_rows] = labels[s_rows]
    labels[s_rows] = s_ru
    upper[still] = np.where(swap, d2, up)
    near[still] = np.where(swap, up, d2)
    rest = still.compress(~settled)
    if rest.size:
        _reassign_near(pts, centroids, order, nsep, rest, labels, upper, runner, near, lower, slack)
    return still, before


def _median(x: np.ndarray) -> float:
    """np.median of a 1-d array of numbers (no NaN), the same value: np.median checks its result for NaN through
    numpy.ma, whose import (~5 ms, ~20 under load) was a one-image compress's alone."""
    n = x.shape[0]
    m = n // 2
    if n % 2:
        return float(np.partition(x, m)[m])
    return float(np.mean(np.partition(x, (m - 1, m))[m - 1:m + 1]))


def _hamerly(pts: _Points, centroids: np.ndarray, max_iter: int, tol_abs: float,
             guess: np.ndarray | None = None, relax: float = 1.0, momentum: tuple[float, float] | None = None
             ) -> tuple[np.ndarray, float, np.ndarray]:
    """Weighted Lloyd from `centroids`, the same iterations as `_lloyd`, with Hamerly's bounds.

    Each point keeps an upper bound u on the distance to its centroid and a lower bound l on the distance
    to every other one; after the centroids move, u grows by its centroid's move and l shrinks by the
    largest other move. A point whose u is below both l and half the distance from its centroid to the
    nearest other one cannot change cluster, so late iterations compute distances for only a few points.
    Stops when the summed squared centroid shift is <= tol_abs or after max_iter updates.

    From `_GROUPED_FROM` centroids, where a quarter of the colours failed that single bound in each late
    iteration (K = 256 on a 256x256 photo: ~10k of 39k colours re-measured, now ~1-2k), three changes:
    each point also keeps its runner-up centroid with its exact distance, and l covers only the others
    (as in Drake and Hamerly's adaptive bounds), so a point on the boundary with one neighbour is settled
    by one distance; l shrinks only by the largest move among its centroid's `_NEIGHBOURS` nearest
    others (`_NEIGHBOURS_RGBA` with 4 channels), or becomes the separation to the next one beyond them
    minus u if that is less, so a few centroids still moving late no longer lower every point's bound;
    and `_reassign_near` measures out to `_REACH` u. Only points that a third centroid may win go through
    `_reassign_near`.

    guess: labels close to the nearest (a coarser level's, mapped down). The first assignment is then
    exact but local: the distance to the guessed centroid bounds which others can be nearer (as in
    `_reassign_near`), instead of measuring all k for every point.
    relax: each update moves a centroid relax times the way to its cluster's mean (over-relaxation). For
    fixed labels J is a quadratic in each centroid with its minimum at the mean, so any step factor in
    (0, 2) still lowers it and J never rises; past the mean, the centroids follow Lloyd's slow drift
    (a boundary creeping a little each update) in fewer updates. The last labels' means are returned.
    momentum: (step, carry), with relax: from the second update on, a centroid moves step times the way to
    its mean plus carry times its own last move (heavy-ball; see `_MOMENTUM`); the first update is relaxed.
    Returns (centroids (k, C) float64, weighted inertia of the final labels around them, those labels).
    """
    k = centroids.shape[0]
    x = pts.x
    grouped = k >= _GROUPED_FROM
    if not grouped:  # with few centroids, measuring them all is cheaper
        labels, upper, lower = _assign(pts, centroids, second=True)
        np.sqrt(upper, out=upper)
        np.sqrt(lower, out=lower)
    else:
        if guess is None:
            labels = _assign(pts, centroids)[0]
        else:
            labels = guess.astype(np.intp, copy=True)
        upper = np.sqrt(_sq_all(pts, centroids, labels))
        lower = np.empty_like(upper)
        runner = np.empty_like(labels)
        near = np.empty_like(upper)
        order, nsep = _by_separation(_separations(centroids))
        parallel.map_parts(lambda s, e: _reassign_near(pts, centroids, order, nsep, np.arange(s, e), labels, upper,
                                                       runner, near, lower), pts.m, _HAMERLY_COST)
        drift = np.zeros(k)  # each centroid's moves since order and nsep were sorted
        neighbours = min(_NEIGHBOURS if x.shape[1] < 4 else _NEIGHBOURS_RGBA, k - 1)
        resort = _RESORT * _median(upper[::_MEDIAN_STEP])
    slack = None
    # On exact colours or histogram bins (integer weights, coordinates or sums) every sum by cluster is an
    # exact integer, so the sums can follow the few points that change cluster instead of being made again
    # from all of them each update, with the same bits (4 bincounts over 38 732 colours were ~15 % of an
    # update at K=256; over 99 700 7-bit bins at K = 16, 2 ms of each ~6 ms update).
    sums = _Sums(pts, labels, k) if pts.exact else None
    last = centroids  # where the centroids were before the last update (momentum's)
    for it in range(max_iter):
        new, wsum = sums.means() if sums is not None else _weighted_means(pts, labels, k)
        if np.any(wsum == 0):
            _reseed_empty(new, wsum, x, _sq_all(pts, centroids, labels))
        elif relax != 1.0:
            new -= centroids
            if momentum is not None and it:
                new *= momentum[0]
                new += momentum[1] * (centroids - last)
            else:
                new *= relax
            new += centroids
        delta = np.sqrt(_sq(new, centroids))
        last, centroids = centroids, new
        if float(delta @ delta) <= tol_abs:
            break
        if not grouped:
            far = int(np.argmax(delta))
            second = float(np.partition(delta, k - 2)[k - 2])
            sep = _separations(centroids)
            np.fill_diagonal(sep, np.inf)
            half = 0.5 * sep.min(axis=1)
            moves = parallel.map_parts(lambda s, e: _settle_few(pts, centroids, s, e, delta, far, second, half, labels,
                                                                upper, lower), pts.m, _HAMERLY_COST)
        else:
            # lower covers every centroid but a point's own and its runner-up. Those among the own
            # centroid's nearest neighbours moved at most their largest move; any other is at least its
            # separation from the own centroid minus u away. So a few centroids still moving late no
            # longer lower the bound of every point, only of those whose centroid they neighbour.
            # The lists by separation are sorted again only once some centroid has drifted `_RESORT` of
            # the median u since: until then each separation read from them is lowered by
            # both ends' drift (`slack`), which keeps every bound true (256 centroids: the sort was a
            # third of an update's fixed cost).
            drift += delta
            if drift.max() > resort:
                order, nsep = _by_separation(_separations(centroids))
                drift[:] = 0.0
                resort = _RESORT * _median(upper[::_MEDIAN_STEP])
                slack = None
            else:
                slack = drift + drift.max()
            nb = order[:, 1:neighbours + 1]
            moved = delta[nb].max(axis=1)
            if neighbours + 1 < k:
                beyond = nsep[:, neighbours + 1] if slack is None else nsep[:, neighbours + 1] - slack
            else:  # every other centroid a neighbour
                beyond = np.full(k, np.inf)
            # Half the separation to the nearest other centroid: among the listed neighbours, measured.
            half = 0.5 * np.minimum(np.sqrt(_sq(centroids[:, None, :], centroids[nb])).min(axis=1), beyond)
            moves = parallel.map_parts(lambda s, e: _settle(pts, centroids, order, nsep, slack, s, e, delta, moved,
                                                            beyond, half, labels, upper, runner, near, lower),
                                       pts.m, _HAMERLY_COST)
        # Every point's bounds and re-measure are its own: the points in parts (threads, each writing its own
        # rows) give the bits of one pass; the sums follow the moves afterwards, in the points' order.
        if sums is not None:
            for still, before in filter(None, moves):
                sums.move(still, before, labels.take(still))
    if relax != 1.0:  # the labels' own means: J lower still
        new, wsum = sums.means() if sums is not None else _weighted_means(pts, labels, k)
        centroids = np.where(wsum[:, None] > 0, new, centroids)
    inertia = _wsum(pts.w, _sq_all(pts, centroids, labels))
    return centroids, inertia, labels


# Bin ids up to this (or up to 4 per item) are merged through a dense table; sparser ones by sorting.
_HIST_TABLE = 1 << 22
# ... but never a table of more than this many entries per item: its cost grows with its size (fresh pages,
# a cumulative sum), a sort's with the items. A 256x256 photo's 38 700 colours in 2**21 7-bit bins: 9.9 ms
# by the table, 2.5 ms sorted; 120 000 colours: 13.2 ms and 9.7 ms; 850 000: 21 ms and 132 ms.
_TABLE_PER_ITEM = 16


def _bins(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bin of each item (n,) intp, occupied bin ids ascending) of non-negative ids (n,)."""
    inverse = ids.astype(np.intp)
    return inverse, _bins_in_place(inverse)


def _bins_in_place(ids: np.ndarray) -> np.ndarray:
    """`_bins` of ids (n,) intp with each id replaced by its bin, in place; returns the occupied ids."""
    top = int(ids.max()) + 1
    if top <= min(max(_HIST_TABLE, 4 * ids.shape[0]), _TABLE_PER_ITEM * ids.shape[0]):
        # A flag and an int32 rank per bin, not a count: at 2**24 bins that is 80 MB of fresh pages instead
        # of 256 MB, and first touching pages is much of the cost here.
        seen = np.zeros(top, dtype=bool)
        seen[ids] = True
        occupied = np.flatnonzero(seen)
        del seen
        # Ranks written only where a bin is occupied, the only entries read: a cumulative sum over the whole
        # table touched every page of it (RGBA at 0.3 MP, 252 000 colours: its 6-bit ids span 1.35 M, its
        # 5-bit ones 2**20, ~7 ms each, for 120 000 and 49 000 bins).
        rank = np.empty(top, dtype=np.int32)
        rank[occupied] = np.arange(occupied.shape[0], dtype=np.int32)
        for s in range(0, ids.shape[0], _INDEX_CHUNK):  # chunks: no second (n,) array
            ids[s:s + _INDEX_CHUNK] = np.take(rank, ids[s:s + _INDEX_CHUNK])
        return occupied
    # sparse ids - a sort, memory bounded by the items. A stable one (timsort, which the ascending runs of such
    # keys suit): np.unique's quicksort took 2.6x as long (12 MP photo under a vignette, K = 256: the 792 000
    # keys of its 7-bit level merged, 0.058 s -> 0.022).
    order = np.argsort(ids, kind="stable")
    ranked = ids[order]
    new = np.empty(ranked.shape[0], dtype=bool)
    new[:1] = True
    np.not_equal(ranked[1:], ranked[:-1], out=new[1:])
    occupied = ranked[new]
    rank = np.cumsum(new, dtype=np.intp)
    rank -= 1
    ids[order] = rank
    return occupied


def _histogram(ids: np.ndarray, w: np.ndarray, wx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """Merge items by bin id: ids (n,) non-negative, w (n,) weights, wx (n, C) weighted colour sums.
    Returns (bin of each item (n,), occupied bin ids ascending, their weights, their weighted sums)."""
    inverse, occupied = _bins(ids)
    weights = np.bincount(inverse, weights=w)
    sums = np.empty((occupied.shape[0], wx.shape[1]), dtype=np.float64)
    for c in range(wx.shape[1]):
        sums[:, c] = np.bincount(inverse, weights=wx[:, c])
    return inverse, occupied, weights, sums


# Colours per chunk of `_colour_histogram`'s weighted sums (2 MB of float64: memory the allocator reuses).
_HIST_CHUNK = 1 << 18


def _colour_histogram(colors: np.ndarray, counts: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray,
                                                                                  np.ndarray, np.ndarray]:
    """`_histogram` of the colours themselves at `bits` per channel, (inverse, occupied, weights, sums).

    With 4 channels the bin ids span 2**(4 bits) (2**28 at 7 bits), but few of the leading three channels'
    bins are occupied: those are ranked first through a table of 2**(3 bits), so the ids to merge are
    rank x 2**bits + the last channel's bin, in the same order as the full ids (the rank is monotone), and
    the occupied ones are mapped back. Every sum is of integers below 2**53, so exact in any order.
    Fresh pages cost as much as the work here (12 MP RGBA photo, 4.5 M colours: 180 MB of them at 5 bits,
    ~0.1 s of system time), so the ids become bins in place in the one (M,) array returned, and the weights
    and sums are made a chunk of colours at a time.
    """
    m, channels = colors.shape
    drop = 8 - bits
    inverse = np.zeros(m, dtype=np.intp)
    for c in range(channels - 1):
        inverse <<= bits
        inverse |= colors[:, c] >> drop
    lead = None
    if channels * bits > 21:
        lead = _bins_in_place(inverse)
    inverse <<= bits
    inverse |= colors[:, -1] >> drop
    occupied = _bins_in_place(inverse)
    if lead is not None:
        occupied = (lead[occupied >> bits] << bits) | (occupied & ((1 << bits) - 1))
    bins = occupied.shape[0]
    step = max(_HIST_CHUNK, bins)  # each chunk's bincounts are `bins` long

    def part(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        weights = np.zeros(bins, dtype=np.float64)
        sums = np.zeros((bins, channels), dtype=np.float64)
        for s in range(start, stop, step):
            e = min(s + step, stop)
            w = counts[s:e].astype(np.float64)
            weights += np.bincount(inverse[s:e], weights=w, minlength=bins)
            wx = np.empty_like(w)
            for c in range(channels):
                np.multiply(w, colors[s:e, c], out=wx)
                sums[:, c] += np.bincount(inverse[s:e], weights=wx, minlength=bins)
        return weights, sums

    # Parts of the colours in threads (a bincount per channel and one of the weights: from ~260 000 colours
    # each). Their sums, of integers, are exact in any order: the same bits as in one part.
    # Each part holds (bins, channels + 1) doubles of its own, so only small ones are parted (a 12 MP RGBA
    # photo's 7-bit level, 5.2 M bins, took 200 MB a part: +600 MB on 4 cores).
    parted = parallel.map_parts(part, m, channels + 1) if bins <= _HIST_CHUNK else [part(0, m)]
    weights, sums = parted[0]
    for w, wx in parted[1:]:
        weights += w
        sums += wx
    return inverse, occupied, weights, sums


def _pyramid(colors: np.ndarray, counts: np.ndarray, levels: tuple[int, ...]) -> list[_Points]:
    """Histograms of the colours with `levels` bits per channel (ascending), each occupied bin standing for
    all its colours by their weighted mean and total weight; each level's ``inverse`` is the bin of every
    colour. The finest is built from the colours, each coarser one from the bins of the next finer.

    K-Means on a histogram differs from K-Means on the colours only by the spread inside bins and by bins
    that straddle a cluster boundary, so it gives a near-optimal start at a fraction of the cost."""
    return _levels(*_colour_histogram(colors, counts, levels[-1]), levels[-1], levels)


def _levels(inverse: np.ndarray, ids: np.ndarray, w: np.ndarray, wx: np.ndarray, top: int,
            levels: tuple[int, ...]) -> list[_Points]:
    """`_pyramid` from the histogram at `top` bits per channel (top >= levels[-1]): each item's bin
    (inverse), the occupied bin ids ascending, their weights and weighted sums (B, C)."""
    channels = wx.shape[1]
    out = []
    bits = top
    for b in levels[::-1]:
        while bits > b:  # re-pack the bin ids of the finer level
            up, ids, w, wx = _histogram(_coarser_keys(ids, bits, b, channels), w, wx)
            inverse = up[inverse]
            bits = b
        pts = _Points(wx / w[:, None], w, sums=wx)
        pts.inverse = _held(inverse)
        out.append(pts)
    return out[::-1]


def _held(inverse: np.ndarray) -> np.ndarray:
    """A level's ``inverse`` as it keeps it: from `_NARROW_FROM` colours int32 (bins are fewer than 2**31),
    half an intp array's bytes; a 48 MP noisy photo's 4.5 M colours hold one for each level climbed, 36 MB
    apiece as intp."""
    return inverse.astype(np.int32) if inverse.shape[0] >= _NARROW_FROM else inverse


# Below this many colours the levels' inverses stay intp: numpy gathers and scatters through int32 indices
# ~1.6x as slowly (1.37 M: 5.4 ms against 3.2 a pass), a 12 MP photo's fit at K = 16 +5-8 % of CPU for 5 MB.
_NARROW_FROM = 1 << 21


def _coarser_keys(ids: np.ndarray, bits: int, to: int, channels: int) -> np.ndarray:
    """Bin keys of `bits` bits per channel (channel 0 the most significant) as the keys of the bins of `to`
    bits that hold them: each channel's value shifted right by bits - to."""
    mask = (1 << bits) - 1
    coarse = np.zeros(ids.shape[0], dtype=np.intp)
    for c in range(channels):
        coarse <<= to
        coarse |= ((ids >> (bits * (channels - 1 - c))) & mask) >> (bits - to)
    return coarse


def _occupied(colors: np.ndarray, bits: int) -> int:
    """How many bins the histogram of (M, C <= 3) colours at `bits` per channel has (a flag per bin: 2 MB
    at 7 bits for RGB; 4 channels would need 256 MB, so they are not counted this way)."""
    ids = np.zeros(colors.shape[0], dtype=np.intp)
    for c in range(colors.shape[1]):
        ids <<= bits
        ids |= colors[:, c] >> (8 - bits)
    seen = np.zeros(1 << (bits * colors.shape[1]), dtype=bool)
    seen[ids] = True
    return int(np.count_nonzero(seen))


def _occupied_below(colors: np.ndarray, six: _Points) -> int:
    """How many bins the histogram of the colours at one bit per channel finer than the level `six` has
    (its ``inverse`` each colour's bin), from a flag per (bin, next bit of each channel): 16 a bin for RGBA,
    where a flag per 7-bit cell (`_occupied`) would be 256 MB."""
    bits = _REFINE_BITS[-1]
    ids = six.inverse.astype(np.intp)
    for c in range(colors.shape[1]):
        ids <<= 1
        ids |= (colors[:, c] >> (8 - bits)) & 1
    seen = np.zeros(six.m << colors.shape[1], dtype=bool)
    seen[ids] = True
    return int(np.count_nonzero(seen))


def _coarse(colors: np.ndarray, counts: np.ndarray, bits: int) -> _Points:
    """The histogram of the colours with `bits` bits per channel (see `_pyramid`)."""
    return _pyramid(colors, counts, (bits,))[0]


def _kmeans_1d(values: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Globally optimal weighted K-Means in one dimension, by dynamic programming over the sorted values.

    In 1-D every optimal cluster is a run of consecutive values, so the best split of the first j values
    into i clusters is the best split of the first t into i - 1 plus the run t..j-1. With at most 256 grey
    levels this is O(k M^2) vectorised work. values (M,) ascending, M > k >= 2. Returns (k, 1) float64.
    """
    v = values.astype(np.float64)
    w = weights.astype(np.float64)
    m = v.shape[0]
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cwv = np.concatenate([[0.0], np.cumsum(w * v)])
    cwvv = np.concatenate([[0.0], np.cumsum(w * v * v)])
    t = np.arange(m + 1)[:, None]
    j = np.arange(m + 1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        sw = cw[j] - cw[t]
        cost = (cwvv[j] - cwvv[t]) - (cwv[j] - cwv[t]) ** 2 / sw
    cost = np.where(j > t, np.maximum(cost, 0.0), np.inf)  # cost[t, j]: run t..j-1, empty runs forbidden
    best = cost[0].copy()  # best[j]: first j values in one cluster
    back = np.zeros((k, m + 1), dtype=np.intp)
    for i in range(1, k):
        total = best[:, None] + cost
        back[i] = np.argmin(total, axis=0)  # first minimum: deterministic
        best = total[back[i], np.arange(m + 1)]
    # b[i] .. b[i+1]-1 is cluster i; back[i][j] is where the last of i+1 clusters over the first j starts.
    b = [0] * (k + 1)
    b[k] = m
    for i in range(k - 1, 0, -1):
        b[i] = int(back[i, b[i + 1]])
    lo, hi = np.array(b[:-1]), np.array(b[1:])
    centroids = ((cwv[hi] - cwv[lo]) / (cw[hi] - cw[lo]))[:, None]
    return centroids


# Above this many distinct colours, fit's restarts run on a coarse histogram rather than on the colours;
# also above this many colours x centroids, where k-means++ and the restarts on the colours cost ~1 s
# (20 000 colours at K=256: 2.4 s, against 0.3 s from the histograms, J within 1 %).
_COARSE_ABOVE = 20000
_COARSE_WORK = 1 << 20
# RGB from this many colours up to the above (K = 16-128 there: several restarts): the restarts are seeded and
# ranked on the colours' 5-bit histogram, 3x as many (2x since round 46, below), and the best 4 finished on the
# colours, the lowest J kept (`_ranked_on_bins`). Seeding and ranking 8-16 runs on every colour took 3-6x the histogram
# path's CPU (256x256 tiles of 10 000-20 000 colours, K = 16: 0.15-0.27 s against 0.04-0.05 s just above
# 20 000), but the histogram path there is J +0.19 % (K = 16) and +0.34 % (K = 64) on geometric mean (27 tiles
# x 4 seeds). Here, on 34 (K = 16) and 24 (K = 64) tiles of 8 000-20 000 colours, 4 seeds: J -0.18 % and
# -0.32 % on geometric mean, each tile's mean over the seeds at most +0.05 % and +0.20 % (twice the restarts:
# -0.16 % and -0.23 %, at most +0.27 % and +0.38 %; measured finishing only those within 3 % of the best
# ranked, and the least of a superset can only be lower). Below 8 000 colours (6-bit photos: ~4 colours a
# 5-bit bin) the 5-bit ranking lost up to +1.3 % on a tile's mean, and where the bins are over a quarter of
# the colours (`_RANKED_SHARE`: textured 6-bit photos) 3x the restarts on them cost more than the colours'.
# Round 46: 2x the restarts and bins up to half the colours (6-bit masked 256x256 photo tiles: 4 094 bins of
# 16 120 colours had their 8 restarts at K = 64 on every colour, 0.4-0.6 s); where the 5-bit bins are 4 or fewer
# a centroid (dark tiles: 117-183 bins at K = 64) the 6-bit ones rank. On 7 tiles of 9 700-16 100 colours (dark,
# masked; 3 seeds, K = 16 and 64): J -0.2 % / -1.5 % on geometric mean, worst fit +0.3 %, CPU ~0.75x.
_RANKED_ABOVE = 8000
_RANKED_SHARE = 2
_RANKED_MORE = 2
_RANKED_FINISH = 4
# RGBA with varying alpha from this many colours: a small image under a vignette has nearly a colour a pixel
# (123x141, 16 360 colours, 9 819 in RGB), and below K = 64 its 8-16 restarts ran on every colour (K = 16:
# 0.35 s of CPU, K = 32 0.67 s, where K = 75 took the levels in 0.13 s). From the levels, on 6 such images
# (8 500-19 300 colours, vignettes and random alpha) at K = 8-64 and seeds 0-2 (49 fits): 5.1x less CPU in
# all, J the same on geometric mean (+0.02 %; each fit -1.3 % to +1.6 %: which restart wins is a new draw).
_COARSE_ABOVE_RGBA = 8000
_COARSE_BITS = 5
_REFINE_BITS = (6, 7)
# Point-iterations allowed on the distinct colours after the histogram levels (~24 iterations at 850 000
# colours): the tail beyond moves J by hundredths of a percent and would dominate the time at large K.
_FULL_WORK = 20_000_000
_LEVEL_TOL = 1.0
# With one run (K >= 196), the colours' Lloyd over-relaxed (see `_hamerly`) at most this many updates: on the
# samples at K=256 J is lower after 12 such updates than after the ~36 plain ones to tol (256x256 astronaut:
# 1.0067x scikit-learn's J at 36, 1.0067x at 12 over-relaxed, 1.0004x at 20; chelsea 1.0080x, 1.0054x).
# Over-relaxing the histogram levels too made them take longer to reach their tolerance and ended worse.
# 11 updates 1.9x the way do as well as 12 at 1.8x for one update less (~3.5 ms of ~100 at K=256 on a
# 256x256 photo): on 65 photos of 256x256 (the bench's 48 tiles, its 5 kinds, crops and resamples of the
# samples, grey, noisy, graphics, a gradient) J's geometric mean is the same, worst +0.18 %, best -0.13 %;
# the samples at K=256 +0.00 to +0.11 %. 10 at 1.9x or 1.95x: up to +0.33 % and +0.30 %.
_RELAX = 1.9
# Now 5 such updates, the first over-relaxed and the rest with momentum (`_MOMENTUM`). After 11 over-relaxed
# updates J was still falling by 0.05-0.1 % an update on the bench's 256x256 tiles at K = 256 (the noisy one:
# 0.73, 0.44, ..., 0.066, 0.065 %; 20 updates 0.26 % below 11), so no rule on J's gain would have stopped
# sooner: the slow part is a boundary drifting a little further each update, which momentum carries on.
# Each momentum update re-measures about twice the colours an over-relaxed one does (their bounds loosen by
# the larger moves), and J per colour re-measured falls faster: 5 updates -0.08 % J on the 5 photo tiles
# (geometric mean; worst +0.08 %, the detailed one) and -0.08 % on the samples at K = 256 and 300 for 0.76x the
# colours re-measured (the noisy tile's polish 62 -> 46 ms of CPU); 6: -0.3 % for 0.93x; 4: +0.2 %.
_RELAXED_ITER = 5
# (step, carry) of `_hamerly`'s momentum updates: for a mode of the centroids' error that one plain update
# shrinks by a factor f in [0, 1), the update multiplies it by the roots of z^2 - (1 + carry - step (1 - f)) z
# + carry, all within the unit circle when step < 2 (1 + carry), so no mode grows. 5 updates on the tiles and
# samples at K = 256 and 300 (J, geometric mean; worst tile): (2.5, 0.55) +0.02 %, +0.23 %; (3.0, 0.45) -0.07 %,
# +0.15 %; (3.0, 0.55) -0.08 %, +0.08 %; (3.0, 0.62) -0.07 %, +0.16 %; (3.5, 0.55) -0.11 %, +0.11 % for 1.12x
# the colours re-measured.
_MOMENTUM = (3.0, 0.55)
# RGB with one run whose colours are at least this share of its pixels, up to this many colours (a 256x256 photo
# under noise: 46 000-63 000 colours), climbs in fewer updates: (k-means++'s candidates per step; the updates of
# the restarts' level and of those up to the last one below the colours; the last one's; the colours' polish),
# each level's first over-relaxed and the rest with momentum (`_MOMENTUM`), where greedy k-means++ drew 7
# candidates (at K = 256) and each level ran plain Lloyd to its loose tol before 5 updates on the colours.
# There the colours' updates are the dearest (a 256x256 noisy tile at K = 256: the first ~18 ms, as its
# Hamerly bounds are made, then ~6 ms each, J still falling 0.3-0.4 % an update after 5) and a momentum update
# on the 5-bit level (3 500-6 800 bins) costs about half of one on the colours for more of J; k-means++'s
# 7 candidates took 15-29 ms (~110 us a step on 6 800 bins), 3 about two thirds of that, J the same after the
# climb. On 27 such tiles (china.jpg, flower.jpg and the bench's noisy kind, 256x256) J's geometric mean
# the same as before (worst tile +0.7 %) in ~0.7x the CPU; the 5-bit level's 4 updates against 6: J +0.03 %,
# 5 % less CPU; 3 or 2 +0.1 %, +0.2 %; the colours 1 and the 6-bit level 6 or 7: the same J, no faster; 2
# candidates J +0.06 %, 1 +0.5 %. See docs/PERFORMANCE.md, round 38.
_NOISY_SHARE = 0.7
_NOISY_MAX = 1 << 17
_NOISY = (3, 4, 4, 2)
# Since round 47 that k-means++ seeds on the restarts' stand-in (`_thinned`: the 5-bit bins of under
# `_THIN_PIXELS` pixels merged by 4-bit cell) instead of every 5-bit bin, each bin starting from its stand-in's
# nearest seed: at K = 256 its 256 steps on uniform noise's 28 414 bins were ~60 ms of a ~0.14 s fit (8 733 on
# the stand-in); photo tiles under noise have 4 000-9 000 bins, a third fewer on it. On the 12 noisy tiles
# (seeds 0-2) J -0.08 % on geometric mean, CPU 0.95x (uniform noise 0.71x). See docs/PERFORMANCE.md, round 47.
# ... and with several restarts (K under ~200) the colours' polish is at most this many updates, the first
# over-relaxed and the rest with momentum, instead of plain ones to tol: on 18 noisy 256x256 tiles (3 seeds)
# J -0.10 % at K = 16 and 64 on geometric mean, no slower (china under noise at K = 64: 51-55 ms, plain 53 ms).
_NOISY_POLISH = 8
# ... and their chosen runs (the best and its near ties, `_TIE_RUNS`) climb in as few: at most this many updates
# on the restarts' level and on each finer one, the first over-relaxed and the rest with momentum, where each ran
# plain Lloyd to tol (a 256x256 tile of china.jpg under noise sigma 16 at K = 64: three runs of 10-30 updates on
# its 8 624 5-bit bins and 27-50 on its 29 897 6-bit ones, 0.23 of a 0.46 s fit). On 12 noisy tiles (china,
# flower, grace_hopper under sigma 4 / 8 / 16, uniform noise 0-255 and 0-63, the bench's noisy; seeds 0-2): J
# -0.18 % at K = 64 and -0.02 % at K = 16 on geometric mean (worst tile +0.02 % / +0.00 %), CPU ~0.8x / 0.9x; 12
# updates each -0.25 % at K = 64 for less saved. See docs/PERFORMANCE.md, round 47.
_NOISY_LEVELS = (8, 8)
# Above this k, the last histogram level without a polish on the colours (see `fit`, and
# `fit_histogram`'s `last`) runs this many updates over-relaxed this much after the coarser ones warmed it up.
# 11 as the polish left 2 MP under random alpha at K = 256 (1 100 bins per centroid) 0.66 % above the levels
# run to tol, 16 0.35 %, 20 0.25 %; 12 MP under random alpha at K = 500 (1 050) 16 0.53 %, 20 0.41 %; 12 MP
# under a vignette at K = 256 +0.28 %, +0.11 %, +0.00 %; 2 MP under a vignette at K = 256 (its 7-bit level)
# 11 +0.61 %, 15 +0.44 %, 20 +0.15 %, 30 +0.06 %.
_FINISH_ABOVE = 64
_FINISH = (20, _RELAX)
# RGBA's finest level instead ends in this many updates, the first over-relaxed and the rest with momentum (as
# the polish's with one run, `_MOMENTUM`). Against `_FINISH`'s 20 over-relaxed ones, 1 MP photos under random
# alpha, blurred noise, a vignette or a gradient at K = 100-300: J -0.07 % to +0.10 %, that level's CPU ~0.37 ->
# ~0.25 s (flower.jpg under random alpha at K = 256: 245 000 merged 6-bit bins; the compress 0.90 -> 0.76 s in
# process); 2 MP ones (kmq.coreset's 6-bit level) at K = 128-300 J +0.03 % to +0.11 %, the compress 1.20-1.71 ->
# 0.91-1.20 s. 8 updates: J -0.23 % to +0.04 %, a third less saved. See docs/PERFORMANCE.md, round 35.
_FINISH_RGBA = (6, _RELAX, _MOMENTUM)


def _finish(channels: int) -> tuple:
    """How the finest level ends where no polish follows above `_FINISH_ABOVE` (see `_climb`'s last)."""
    return _FINISH_RGBA if channels == 4 else _FINISH


# ... after levels run to this tolerance (times tol) with one run. The colours' `_WARM_TOL` left 1 MP of RGB
# noise under a vignette at K = 256 (its 5-bit level last, warmed up by the 4-bit one alone) 0.67 % above the
# levels run to tol; 10 +0.02 %, 30 +0.15 % (2 MP photos under a vignette, a gradient or random alpha: +0.04
# to +0.34 % at 30, +0.15 to +0.36 % at 100, -0.03 to +0.54 % at 10; 2 MP under a vignette: 2.3 s of CPU at
# 30, 2.3 at 100, 2.6 at 10, 3.2 at 1).
_FINISH_WARM_TOL = 30.0
# RGBA with several restarts (K under ~200) whose colours are over this many times the finest level climbed
# (the 6-bit level not halving them, so the climb ended on the 5-bit one) are polished in at most
# `_FAR_UPDATES` updates, the first over-relaxed and the rest with momentum (`_MOMENTUM`), instead of plain ones
# to tol: from the 5-bit labels that polish took 30-58 updates over every colour (china at 0.5 MP under blurred
# noise, K = 64: 354 000 colours from 71 000 bins, 56 updates, 0.64 s of a 1.1 s fit). On 18 RGBA photos of
# 0.05-1 MP at K = 32-128, J -0.35 % to +0.05 % (see docs/PERFORMANCE.md, round 35); 8 updates up to +0.11 %.
# Where the climb reached the 6-bit level (about twice fewer bins than colours) the plain polish takes a few
# updates under `_FAR_POLISH_FROM` centroids and stays (K = 16: 7-11 updates, the momentum ones 1.05-1.18x its
# CPU): momentum's looser bounds re-measure more colours an update. From there it took 15-59 (0.15-0.5 MP photos
# under random or blurred alpha at K = 32-128: flower.jpg at 0.15 MP, K = 64, 59 updates over 140,773 colours from
# 52,399 bins, 0.33 s of a 0.52 s compress), so every polish there is the momentum one: 17 of 189 fits of 63 such
# images at K = 32, 64 and 128 changed, CPU 0.60-1.14x (flower 0.60x), J -0.30 % to +0.14 % (mean -0.05 %).
_FAR_POLISH = 3
_FAR_POLISH_FROM = 32
_FAR_UPDATES = 10
# Tolerance (times tol) of RGBA's histogram levels with several restarts from `_GROUPED_FROM` centroids that
# only warm up what follows (`_climb`): each near-tied run climbs (two or three at K = 64-128), and a level run
# to tol before a finer one or the colours' polish took 30-60 updates (grace_hopper at 0.5 MP under blurred
# noise, K = 64: the 6-bit level 60 updates, 0.28 s, before a polish of 8 to tol). On 16 RGBA photos of
# 0.05-1 MP at K = 32-128, J -0.02 % to +0.17 %, the fit up to 0.26 s less (1.09 -> 0.83 s there); 30: J up to
# +0.22 %, less saved. Below 32 centroids (16 restarts) the finer levels then took longer (flower.jpg at 0.5 MP
# under random alpha, K = 16: 0.37 -> 0.40 s), so not there. Where the last level ends the fit (no polish, no
# `last`), the tied runs run it to this tol and only the best goes on to tol: china at 2 MP under blurred
# noise, K = 64 (kmq.coreset, three runs on 116 000 5-bit bins, 47-63 updates each), the same file in 1.39 ->
# 1.08 s of CPU in process.
_TIES_WARM_TOL = 10.0
# RGBA with one run (K from ~190 to `_LARGE_K`): `fit`'s levels between the restarts' (4 bits) and the last run
# at most this many updates, the first over-relaxed and the rest with momentum (`_MOMENTUM`), instead of plain
# ones to their loose tol: from the 4-bit level's 8 000-12 000 bins a 5-bit level of 45 000-66 000 took 15-32
# plain updates (flower.jpg at 0.5 MP under blurred noise, K = 256: 32, 0.12 s of a 0.5 s fit). On 39 RGBA
# photos of 0.25-1 MP at K = 256 (china, flower, grace_hopper under four alphas, the bench's three): J -0.10 %
# on geometric mean (-0.54 % to +0.27 %); 14 of them at K = 200-511 and 0.05 MP ones -0.02 % (-0.28 % to
# +0.16 %); the fit in process 0.71x-0.97x the CPU on five (see docs/PERFORMANCE.md, round 36). 8 updates:
# J -0.17 %, no faster than the plain ones. Not kmq.coreset's levels (`fit_histogram`), not measured there.
# So do `fit`'s two near ties (`_TIE_RUNS_RGBA`), each one's levels below the last (the last decides between them):
# the 5-bit level to its loose tol took 12-21 plain updates a tie (grace_hopper at 0.2 MP under random alpha, K =
# 64: 38,698 bins). The 97 fits with ties of 432 (china, flower, grace_hopper at 0.15-0.5 MP under three alphas,
# K = 32/64/128, seeds 0-3): 63 changed, J -0.55 % to +0.30 % (geometric mean -0.016 %); in process (least of 10,
# load 7; from the code before the two-ties cut, _TIE_RUNS_RGBA) grace_hopper at 0.2 MP under blurred noise 0.57 ->
# 0.37 s, at 0.25 MP under random alpha 0.72 -> 0.53 s (0.54 -> 0.37 and 0.65 -> 0.53 from that cut's code).
# Round 49: with one near tie too, and at K <= 16 (the RGBA fit of up to _POLISH_MAX colours, `fit`), where such
# a level ran plain updates to tol (grace_hopper at 0.3 MP under blurred noise, K = 64: 21 updates over 44 007
# 5-bit bins, 66 ms of a 0.69 s compress; RGB's twin 0.26 s in all); and there near ties climb the last level only
# while within `_EARLY_NEAR` of the best on the level before, as from `_GROUPED_FROM` (grace_hopper 0.2 MP under
# random alpha, K = 16: the second tie's 5-bit level to tol and its mixed level were 68 ms of a 0.30 s compress).
_WARM_RAMP = 5
# Tolerance (times tol) of the histogram levels that only warm up the next level, with one run (see fit).
_WARM_TOL = 100.0
_RESTART_ITER = 10
# Restarts within this factor of the best on the coarse level (at most _TIE_RUNS of them) all climb the
# finer levels, whose J picks one (see `_climb`).
_TIE_NEAR = 0.002
_TIE_RUNS = 3
# ... but at most this many of RGBA's (`fit` up to `_POLISH_MAX` colours, several restarts from `_GROUPED_FROM`
# centroids): each climbs two or three levels and the third rarely won. Over china, flower and grace_hopper at
# 0.15-0.5 MP under random, blurred-noise and vignette alphas at K = 32, 64 and 128, seeds 0-3 (432 fits, 97 with
# ties, 16 with three): 4 fits changed, J -0.11 % to +0.16 % (mean +0.015 %), while the third's climb was up to
# a tenth of the compress (grace_hopper at 0.2 MP under random alpha, K = 64: 175,000 colours, three ties within
# 0.05 % climbed its 5-bit level, two its 6-bit one). See docs/PERFORMANCE.md, round 41.
_TIE_RUNS_RGBA = 2
_EARLY_NEAR = 0.003  # see `_climb`
_PRUNE_AFTER = 3  # the restarts' first cut (see `_best_of_restarts`)
# The restarts `fit` finishes besides its own when asked for others (rdo): the _OTHERS_CLIMB best ranked
# climb, whatever their inertia when ranked (which did not foretell the final J: on the samples at K = 16 the
# runs ranked 1.02-1.03x the best ended 0.999x-1.03x its J; the rdo files' best palettes were of runs ranked
# 2nd to 4th), and the _OTHERS_RUNS of least J within a factor 1 + _OTHERS_J of the best's are kept; only where
# the climb's points x k are at most _OTHERS_WORK (a 12 MP noisy photo at K = 64: 280 000 7-bit bins, 4 s a
# climb). Where the fit makes 4-15 restarts, _OTHERS_MORE times as many more are drawn for others alone,
# after its own (K = 64 on the samples: rdo files 0.973x-1.0x, chelsea 1.006x, against its restarts alone).
_OTHERS_CLIMB = 4
_OTHERS_RUNS = 2
_OTHERS_J = 0.01
_OTHERS_WORK = 1 << 23
_OTHERS_MORE = 1
# The restarts' stand-in (see `_thinned`): from this many bins on the restarts' level, its bins under this
# share of the pixels merged. 12 MP JPEGs, K = 16: a noisy photo (16 781 bins) J +0.001 %, the saturated one
# under noise (15 877) +0.01 %, a gradient under strong noise (12 987) the same J over six seeds. A gradient
# under lighter noise (9 434 bins) ended +0.9 % at seed 0 (+0.13 % over six seeds: on a gradient the
# restarts end 1 % apart whatever ranks them), so levels that small, where the restarts cost less, keep them.
_THIN_FROM = 12000
# RGB's from this many bins (RGBA's, kmq.coreset's stand-in, from _THIN_FROM): a 12 MP gradient under strong
# noise (sigma 8, 2.8 M colours, 10 700 bins) spent 0.11 s of a 0.23 s fit on its restarts; thinned, J 0.9995x
# to 1.0001x over six seeds (another noise draw, four seeds: 0.9999x-1.0008x), 0.03-0.04 s less CPU. The
# 9 434-bin gradient above stays below it.
_THIN_FROM_RGB = 10000
_THIN_SHARE = 1e-5
# ... and below _THIN_PIXELS / _THIN_SHARE pixels (0.4 MP), where that share is under a few pixels and so merged
# nothing, RGB's (`fit`'s own) merges the bins of under _THIN_PIXELS pixels from _THIN_FROM_SMALL bins: a 256x256
# tile under noise has 8 000-28 000 5-bit bins of a few pixels each, and seeding and ranking 8-16 restarts on
# them was most of its fit (uniform noise at K = 64: 0.87 s of k-means++ on 28 349 bins of a 1.3 s fit). On 18
# noisy tiles (sigma 8-15, high ISO, uniform; 3 seeds, K = 16 and 64) J's geometric mean -0.02 % / +0.02 %,
# the worst tile's mean +0.28 % / +0.39 %; CPU 0.69x / 0.76x in all (see docs/PERFORMANCE.md, round 46).
_THIN_PIXELS = 4
_THIN_FROM_SMALL = 2000
# RGBA's own (`fit` of up to `_POLISH_MAX` colours, `_rgba_stand_in`): its 4-bit level's bins of under this many
# pixels merged by 3-bit cell, from _THIN_FROM_SMALL bins. At 0.2-0.5 MP under random or blurred-noise alpha the
# 4-bit level has 6 000-12 000 bins of 4 channels against RGB's 3 000-5 000 5-bit ones of 3, and 8-16 restarts
# seeded and ranked on them were 0.11-0.29 s, RGB's 0.05-0.09 (grace_hopper at 0.2 MP under random alpha, K = 64:
# 9 088 bins -> 4 183). china.jpg, flower.jpg and grace_hopper.jpg at 0.2 and 0.5 MP under random, blurred-noise and
# vignette alphas at K = 16 and 64 (36 cells): J -0.04 % on average (-0.91 to +0.86 %: another draw of the
# restarts, as another seed), CPU 0.80x; bins of under 4 pixels 0.92x, under 16 J up to +1.4 %. Up to K = 16
# (16 restarts) only, as coreset's (`STAND_IN_MAX`): at K = 64 (8 restarts) grace_hopper at 0.3 MP under blurred
# noise ended +1.4 %.
_THIN_PIXELS_RGBA = 8
_STAND_IN_MAX_RGBA = 16
# Above it up to this K (8 restarts at K = 64) the restarts are still seeded on every 4-bit bin (seeded on the
# stand-in, another draw, one cell of 27 ended +1.4 %; with twice the restarts there no faster than before) but
# run on the stand-in, and its best _RERANK_RGBA go on for _RERANK_ITER updates on every bin, which ranks them
# (as RGB's best _RANKED_FINISH ranked on its bins are finished on the colours). china.jpg, flower.jpg and
# grace_hopper.jpg at 0.2-0.5 MP under random, blurred-noise and vignette alphas at K = 64 (27 cells, one run
# each): J +0.002 % on average (-1.02 to +0.66 %), the compress's CPU 0.88x; the best 2 after 1 update the same.
# K = 32 (16 restarts) on the same 27 cells: J -0.15 % (-1.53 to +0.17 %), CPU 0.87x.
_RERANKED_MAX_RGBA = 64
_RERANK_RGBA = 3
_RERANK_ITER = 2
# k-means++'s candidates per step for those restarts (RGBA up to _POLISH_MAX colours at K = 17-64, seeded on every
# 4-bit bin; 2 + ln k is 6 at K = 64). Seeding 8 runs on every bin at K = 64 was the dearest stage of those fits
# (grace_hopper at 0.3 MP under random alpha: 10 282 bins of 4 channels, 0.21 s of a 0.74 s compress; RGB's twin
# seeds on a stand-in of 3 921 bins of 3, 0.06 s); the best of 8 restarts hedges what a greedier step would (see
# docs/PERFORMANCE.md, round 49). K <= 16 (seeded on the stand-in) keeps 2 + ln k: 3 there made its fits no faster.
_PP_TRIALS_RGBA = 3
# Above this many distinct colours the polish on the colours themselves is skipped: the 7-bit histogram
# is already within a unit of them (12 MP photo: J +0.01 % at K=16, +0.5 % at K=256) and the polish's
# first exact assignment alone would cost ~0.2 s at K=16 and ~3 s at K=256.
_POLISH_MAX = 500_000
# From this many colours up to _POLISH_MAX, the polish is skipped too where the finest histogram level has
# _POLISH_FINE_BINS bins per centroid. The 12 MP photos at K = 16: smooth, 297 000 colours in 51 200 7-bit
# bins, the same palette and file, 0.06 s less CPU; detailed, 247 000 in 99 700, J +0.02 %, 0.06 s less;
# detailed at K = 32 +0.23 %. With 1 000 bins per centroid smooth at K = 32 lost 0.67 %, detailed at 64
# 0.26 %, so those keep it.
_POLISH_FINE_FROM = 200_000
_POLISH_FINE_BINS = 3000
# Above _POLISH_MAX colours, the 6-bit histogram is the last level when it has at least this many bins per
# centroid: clusters then span hundreds of bins and the 7-bit level moves J by under 0.1 % (12 MP photo,
# K=16: 37 000 bins, J +0.07 %, 0.1 s saved of ~1 s end to end), while with fewer bins per centroid (K=64:
# +0.4 %, K=256: +2.8 %) it is kept. Smaller images always refine to 7 bits.
_FINE_ENOUGH = 1000


def _ranked_on_bins(colors: np.ndarray, counts: np.ndarray, k: int) -> _Points | None:
    """The 5-bit histogram (6-bit where the 5-bit one has at most 4 bins a centroid) on which `fit`'s restarts
    on the colours are seeded and ranked (see
    `_RANKED_ABOVE`), or None: RGB of over 8 000 colours where the histogram path is not taken (at most
    `_COARSE_ABOVE` colours and `_COARSE_WORK` colours x K; not where it was and found no level), with
    more than one restart, and only where its bins are at most 1 / `_RANKED_SHARE` of the colours."""
    m = colors.shape[0]
    if not (colors.shape[1] == 3 and _RANKED_ABOVE < m <= _COARSE_ABOVE and m * k <= _COARSE_WORK
            and _restarts(k) > 1):
        return None
    bins = _pyramid(colors, counts, (_COARSE_BITS,))[0]
    if bins.m <= 4 * k:  # (a dark tile: 117-183 5-bit bins; K = 64's restarts ranked there ended 2-4 % higher)
        bins = _pyramid(colors, counts, (_COARSE_BITS + 1,))[0]
    return bins if bins.m * _RANKED_SHARE <= m else None


def _restarts(k: int) -> int:
    """How many k-means++ + Lloyd restarts to run: 4096 / k^1.5 rounded, at least 1 and at most 16.

    Restarts hedge against an unlucky seeding. Each costs ~k seeding steps, and what the best of them gains
    is the spread of J between seedings, which shrinks relative to J about as 1/sqrt(k) (each of the k
    clusters is a smaller share of J); so the runs worth their cost fall as k^-1.5. K=16 and 32 keep 16,
    K=64 has 8, K=128 3, K=256 1. Measured on chelsea, ihc, coffee and astronaut, 4 seeds each: at K=256 one
    run averages 1.0011x scikit-learn's J, four runs 1.0012x; at K=64 eight runs are level with sixteen
    (four were up to 0.6 % worse).
    """
    return int(min(16, max(1, round(4096 / k ** 1.5))))


def _lloyd_runs(pts: _Points, starts: np.ndarray, max_iter: int, tol_abs: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain weighted Lloyd for several runs at once, to rank them: starts (R, k, C) float64.

    One pass gives every point's float32 distances to the centroids of all live runs, one bincount every
    run's sums, so R runs cost a few large numpy calls per update instead of R passes of bounds
    bookkeeping (16 runs at K=64 on a 5-bit histogram: ~2x faster than one `_hamerly` per run). The
    winner is finished by `_hamerly`. A run stops, like `_hamerly`, once its summed squared centroid shift
    is <= tol_abs or after max_iter updates.
    Returns (centroids (R, k, C), inertia (R,) of each run's last labels around its final centroids,
    labels (R, m)).
    """
    runs, k, channels = starts.shape
    m = pts.m
    cent = starts.copy()
    labels = np.empty((runs, m), dtype=np.intp)
    dist = np.empty((runs, m), dtype=np.float32)

    def assign(live: np.ndarray) -> None:
        flat = cent[live].reshape(-1, channels)
        r = live.shape[0]
        step = max(1, _RUNS_BLOCK // flat.shape[0])

        # The distances laid out (runs, k, points), along the points (`_along_dist2`: the same float32
        # values), and each run's nearest found by k element-wise passes down them (`_down`), where an
        # argmin over rows of k was slow (16 runs at K = 16 on the 9 779 4-bit bins of a 12 MP photo under
        # random alpha: 10 ms per pass instead of 15).
        def part(start: int, stop: int) -> None:  # points in parts, as in `_assign`: the same bits
            buf = np.empty((min(2, channels), flat.shape[0], min(step, stop - start)), dtype=np.float32)
            for s in range(start, stop, step):
                e = min(s + step, stop)
                d = _along_dist2(pts.cols32[:, s:e], flat, buf[:, :, :e - s]).reshape(r, k, e - s)
                labels[live, s:e], dist[live, s:e], _ = _down(d, False)

        parallel.map_parts(part, m, flat.shape[0])

    live = np.arange(runs)
    assign(live)
    # Every run's weights end to end, made once: the first r runs' are a prefix of them.
    tiles = [np.tile(v, runs) for v in (pts.w, *pts.wx)]
    for _ in range(max_iter):
        r = live.shape[0]
        ids = (labels[live] + (np.arange(r) * k)[:, None]).ravel()
        wsum, *sums = [np.bincount(ids, weights=t[:r * m], minlength=r * k) for t in tiles]
        wsum = wsum.reshape(r, k)
        sums = np.stack(sums, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            new = sums.reshape(r, k, channels) / wsum[:, :, None]
        for i in np.flatnonzero((wsum == 0).any(axis=1)):
            _reseed_empty(new[i], wsum[i], pts.x, dist[live[i]].astype(np.float64))
        shift = ((new - cent[live]) ** 2).sum(axis=(1, 2))
        cent[live] = new
        live = live[shift > tol_abs]
        if live.size == 0:
            break
        assign(live)
    # `_sq_all`: the bits of _sq(pts.x, cent[i][labels[i]]) from contiguous columns, no (m, C) gather per run.
    inertia = np.array([_wsum(pts.w, _sq_all(pts, cent[i], labels[i])) for i in range(runs)])
    return cent, inertia, labels


# Point-centroid pairs of each block of `_lloyd_runs`'s passes (and half of its buffer's floats). At 2**18 the
# buffer's two rows were 2 MB, the core's whole share of the cache, and each channel's three passes and `_down`'s
# went out to it: 16 runs at K = 16 and 8 at K = 64 on RGBA's 4-bit bins (3 400-11 300) and RGB's 5-bit ones,
# 3 updates, 15-21 % less CPU at 2**16 (2**17 12-17 %, 2**15 0-14 %), the same bits.
_RUNS_BLOCK = 1 << 16
# Point-centroid pairs per pass from which `_split_runs` halves the runs between two threads, up to
# _SPLIT_RUNS_TO MIN_PARTs (from there each half's passes are split between threads by points too). From
# twice MIN_PART every pass was split by points instead, which left each update's sums (a bincount per
# channel) and its Python to one thread: 16 restarts at K = 16 on a 12 MP photo's 8 000-9 000 5-bit bins
# (2.1-2.3 M pairs), 3 updates, the calling thread's CPU 0.029-0.034 s by points, 0.024-0.027 s halved by
# runs, 0.048-0.053 s in all either way.
_SPLIT_RUNS_FROM = 1 << 19
_SPLIT_RUNS_TO = 4


def _split_runs(pts: _Points, starts: np.ndarray, max_iter: int, tol_abs: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_lloyd_runs`, half of the runs in a thread of its own: each run's distances, sums and stop are its
    own, so the halves give the same bits as all runs together."""
    runs, k, _ = starts.shape
    if runs < 2 or not _SPLIT_RUNS_FROM <= pts.m * runs * k < _SPLIT_RUNS_TO * parallel.MIN_PART:
        return _lloyd_runs(pts, starts, max_iter, tol_abs)
    half = runs // 2
    rest = parallel.later(lambda: _lloyd_runs(pts, starts[half:], max_iter, tol_abs))
    first = _lloyd_runs(pts, starts[:half], max_iter, tol_abs)
    return tuple(np.concatenate(pair) for pair in zip(first, rest()))


def _best_of_restarts(pts: _Points, k: int, rng: np.random.Generator, restarts: int, max_iter: int,
                      tol_abs: float) -> tuple[np.ndarray, np.ndarray]:
    """`restarts` runs of k-means++ then Lloyd on pts; (centroids, labels) of the lowest-inertia run.

    The runs are compared after at most `_RESTART_ITER` Lloyd updates, all runs together (`_lloyd_runs`;
    by then the ranking is settled: the samples pick the same run as with full runs) and only the best
    one is run to convergence, exactly, by `_hamerly`.
    After `_PRUNE_AFTER` updates only the better half of the runs goes on to `_RESTART_ITER` (a third less
    work). The run that wins at `_RESTART_ITER` is then the same unless it was in the worse half that
    early: on the 12 MP photo at K=16 (seeds 0..5) it ranked at worst 5th of 16 there; the samples at
    K=16, 64 and 256 keep the same J, the 48 bulk tiles' mean J moves by under 0.02 %.
    """
    return _best_runs(pts, k, rng, restarts, max_iter, tol_abs)[0][::2]


def _best_runs(pts: _Points, k: int, rng: np.random.Generator, restarts: int, max_iter: int, tol_abs: float,
               near: float = 0.0, most: int = 1, ranked: _Points | None = None, ties: list | None = None,
               quick: tuple[int, int] | None = None, brisk: int | None = None, rerank: int = 0,
               trials: int | None = None) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """The runs of `_best_of_restarts`, each run to convergence as `_hamerly` returns it (centroids,
    inertia, labels): the best, then, up to `most` in all, those whose inertia after `_RESTART_ITER`
    updates is within a factor 1 + near of the best's, in that order.
    ranked: fewer points standing for pts (its ``inverse`` maps each of pts to one of them, see `_thinned`)
    on which the restarts are seeded and ranked; the chosen runs are still finished on pts.
    ties: a list that receives how many of the runs returned (a prefix) are within `_TIE_NEAR` of the best
    and among its `_TIE_RUNS` (the runs `_climb` chooses from when others ask for more, see `fit`).
    quick: with one run, (k-means++'s candidates per step, at most this many updates over-relaxed then with
    momentum) instead of greedy k-means++'s and plain Lloyd to tol (see `_NOISY`); k-means++ then seeds on ranked,
    if given.
    brisk: with several runs, each chosen one finished in at most this many updates over-relaxed then with
    momentum instead of plain Lloyd to tol (`_NOISY_LEVELS`).
    rerank: k-means++ seeds on pts, and with ranked the best this many on it go on for `_RERANK_ITER` updates
    on pts, which ranks them (RGBA's K = 64, see `_RERANK_RGBA`).
    trials: k-means++'s candidates per step of the several runs (`_kmeanspp`'s own where None)."""
    if restarts == 1:  # nothing to rank; Lloyd starts from the seeding's own nearest centroids
        labels = np.empty(pts.m, dtype=np.intp)
        if ties is not None:
            ties.append(1)
        if quick is None:
            return [_hamerly(pts, _kmeanspp_one(pts, k, rng, labels), max_iter, tol_abs, labels)]
        if ranked is None:
            start = _kmeanspp_one(pts, k, rng, labels, quick[0])
        else:  # each point of pts starts from the nearest seed of the one that stood for it
            seeded = np.empty(ranked.m, dtype=np.intp)
            start = _kmeanspp_one(ranked, k, rng, seeded, quick[0])
            labels = seeded[ranked.inverse]
        return [_hamerly(pts, start, min(max_iter, quick[1]), tol_abs, labels, _RELAX, _MOMENTUM)]
    on = pts if ranked is None else ranked
    seeds = _kmeanspp(pts if rerank else on, k, rng, restarts, trials)
    budget = min(max_iter, _RESTART_ITER)
    if restarts >= 4 and budget > _PRUNE_AFTER:
        early, j, _ = _split_runs(on, seeds, _PRUNE_AFTER, tol_abs)
        seeds = early[np.sort(np.argsort(j, kind="stable")[: restarts // 2])]  # first order: ties as before
        budget -= _PRUNE_AFTER
    cent, j, labels = _split_runs(on, seeds, budget, tol_abs)
    if rerank and ranked is not None:  # (in the stand-in's order: a tie on pts keeps its better-ranked run)
        top = np.argsort(j, kind="stable")[:rerank]
        cent, j, labels = _split_runs(pts, cent[top], min(max_iter, _RERANK_ITER), tol_abs)
        ranked = None
    order = np.argsort(j, kind="stable")  # a tie keeps the earlier run first
    chosen = [int(i) for i in order[:most] if j[i] <= j[order[0]] * (1 + near)]
    if ties is not None:
        ties.append(sum(1 for i in chosen[:_TIE_RUNS] if j[i] <= j[order[0]] * (1 + _TIE_NEAR)))
    if ranked is not None:  # each point of pts starts from the label of the one that stood for it
        labels = labels[:, ranked.inverse]
    if brisk is not None:
        return [_hamerly(pts, cent[i], min(max_iter, brisk), tol_abs, labels[i], _RELAX, _MOMENTUM) for i in chosen]
    return [_hamerly(pts, cent[i], max_iter, tol_abs, labels[i]) for i in chosen]


def _more(restarts: int) -> int:
    """Restarts drawn for others only, after the fit's own."""
    return restarts * _OTHERS_MORE if 4 <= restarts < 16 else 0


def _least(best: float, runs: list[tuple[np.ndarray, float, np.ndarray]]
           ) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """The _OTHERS_RUNS runs (centroids, inertia, labels) of least inertia within 1 + _OTHERS_J of best, in
    that order (ties in the runs' order)."""
    kept = [r for r in runs if r[1] <= best * (1 + _OTHERS_J)]
    return sorted(kept, key=lambda r: r[1])[:_OTHERS_RUNS]


def _thinned(level: _Points, share: float | None = None, bits: int = 4, channels: int = 3,
             fewest: int | None = None) -> _Points | None:
    """The restarts' stand-in for a large histogram level of `channels` channels (over `_THIN_FROM_RGB` bins
    for RGB, `_THIN_FROM` for RGBA):
    its bins holding under `share` (`_THIN_SHARE` if None) of the pixels merged by cell of `bits` bits per
    channel (weighted mean, summed weight), the others kept; ``inverse`` maps each bin of the level to its
    stand-in. None where it would keep over 3/4 of the bins. RGB's: 5-bit bins by 4-bit cell; coreset's RGBA
    one: 4-bit bins by 3-bit cell. `fit`'s own (share None) below 0.4 MP: bins of under `_THIN_PIXELS` pixels,
    from `_THIN_FROM_SMALL` bins. fewest: the bins from which it merges, where not those.

    A noisy photo spreads over many sparse bins (12 MP JPEG: 16 781 5-bit bins, 8 847 of them with 1.8 %
    of the pixels between them); seeding and ranking 16 restarts costs in proportion to the bins, while
    bins that light barely move either. The chosen runs are then finished on every bin."""
    total = float(level.w.sum())
    small = share is None and channels == 3 and _THIN_PIXELS > _THIN_SHARE * total
    if fewest is None:
        fewest = _THIN_FROM_SMALL if small else _THIN_FROM_RGB if channels == 3 else _THIN_FROM
    if level.m <= fewest \
            or level.x.shape[1] != channels:
        return None
    if share is None:
        share = max(_THIN_SHARE, _THIN_PIXELS / total)
    sparse = level.w < share * total
    ids = np.arange(level.m)
    # A bin's mean lies inside the bin, so its coarser cell is that of its mean, rounded down.
    cell = np.minimum(level.x[sparse] // (256 >> bits), (1 << bits) - 1).astype(np.intp)
    key = np.zeros(cell.shape[0], np.intp)
    for c in range(channels):
        key = (key << bits) | cell[:, c]
    ids[sparse] = level.m + key
    inverse, _, w, wx = _histogram(ids, level.w, np.stack(level.wx, axis=1))
    if w.shape[0] * 4 > level.m * 3:
        return None
    thin = _Points(wx / w[:, None], w, sums=wx if level.exact else None)
    thin.inverse = inverse
    return thin


def _rgba_stand_in(level: _Points) -> _Points | None:
    """`fit`'s restarts' stand-in for RGBA's 4-bit level (see `_THIN_PIXELS_RGBA`)."""
    return _thinned(level, _THIN_PIXELS_RGBA / float(level.w.sum()), bits=3, channels=4, fewest=_THIN_FROM_SMALL)


# Colours from which `fit` finds their variance in a thread (starting one: ~0.1 ms).
_VARIANCE_APART = 1 << 18


def _now(fn: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
    """fn's result, made now, behind the call `parallel.later` would return."""
    result = fn()
    return lambda: result


def _variance(colors: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-channel variance of the pixels, (C,) float64, from exact integer sums of counts x value and
    counts x value^2 (at most 255^2 x 2^31 per channel: no overflow), a few times faster than the float
    (x - mean)^2 matrix (12 MP: ~5 ms instead of ~30 ms)."""
    n = int(counts.sum())
    var = np.empty(colors.shape[1], dtype=np.float64)
    for c in range(colors.shape[1]):
        s1 = s2 = 0
        # int64 copies a chunk at a time: one of the whole column is fresh pages each time (12 MP RGBA
        # photo, 4.5 M colours: 138 MB of page faults, ~0.1 s of system time).
        for s in range(0, colors.shape[0], _INDEX_CHUNK):
            v = colors[s:s + _INDEX_CHUNK, c].astype(np.int64)
            w = counts[s:s + _INDEX_CHUNK]
            s1 += int(w @ v)
            v *= v
            s2 += int(w @ v)
        var[c] = _variance_of(s1, s2, n)
    return var


def _variance_of(s1: int, s2: int, n: int) -> float:
    """The variance of n values whose sum is s1 and sum of squares s2 (Python integers: exact up to the
    one division)."""
    return (s2 * n - s1 * s1) / (n * n)


# From this K on, fit starts from a variance split of the colour space and runs Lloyd with a k-d tree:
# greedy k-means++ costs O(M K log K) distances and the bounded Lloyd keeps a K x K table of separations,
# which at K = 4096 on a 0.27 MP photo took 147 s and at K = 65536 would not fit in memory.
_LARGE_K = 512
# Lloyd updates of the large-K path: each is one k-d tree query of every colour; past ~20 J moves by
# under 0.5 % while each update costs as much as the first.
_TREE_ITER = 20
# 2-means steps after each cut of `_split`.
_BISECT_STEPS = 4
# Share of the boxes, by squared error, that a round of `_split` cuts.
_SPLIT_SHARE = 0.5


def _split_rounds(k: int) -> int:
    """About how many rounds `_split` takes to reach k boxes (for progress reports)."""
    return max(1, math.ceil(math.log(k) / math.log(1.0 + _SPLIT_SHARE)))


def _split(x: np.ndarray, w: np.ndarray, k: int, progress: Progress | None = None) -> np.ndarray:
    """k starting centroids by splitting boxes of weighted points, largest squared error first.

    Each round cuts the half of the boxes with the largest squared error (only boxes of more than one
    distinct point, and no more than k needs) in two along its channel of largest variance, at the cut
    that leaves the least squared error along that channel, then lets each pair trade points by a few
    2-means steps (bisecting K-Means). Cutting only the worse half puts the centroids where the error is
    (coffee at 640x427, K = 1024: J 7.40 against 9.20 cutting every box; greedy k-means++: 7.34). A round
    is a few sorts and bincounts over the points, so the ~1.7 log2(k) rounds cost a small fraction of
    exact k-means++ at large k. Deterministic: no randomness, stable sorts.
    Only the boxes a round cut change, so only their points are summed again (in index order, as a
    bincount over all the points sums each box's: the same bits), and the points of the chosen boxes are
    ordered by box and value from each channel's one stable sort of all the points (the order of a lexsort
    of theirs), no lexsort: the same centroids, bit for bit, in about half the CPU (K = 1024: 12 MP chelsea
    under a vignette, its 797 000 7-bit RGBA bins, 4.7 -> 2.6 s; its 294 000 RGB colours 1.2 -> 0.7 s; the
    12 MP astronaut's 200 000 7-bit RGB bins 0.94 -> 0.51 s).
    progress(round, rounds) after each round.
    Returns (k, C) float64 weighted means of the boxes (fewer boxes than k only if the points ran out;
    the missing centroids repeat the last one and Lloyd reseeds them).
    """
    m, channels = x.shape
    box = np.zeros(m, dtype=np.intp)
    nbox = 1
    rounds = _split_rounds(k)
    done = 0
    cols = [np.ascontiguousarray(x[:, c]) for c in range(channels)]
    # Each channel's points by value, ties by index: filtered to a round's boxes they keep that order.
    index = np.int32 if m < 1 << 31 else np.intp
    by_value = [np.argsort(col, kind="stable").astype(index) for col in cols]
    wsum, sums, sq = np.zeros(0), np.zeros((0, channels)), np.zeros((0, channels))
    inside = np.arange(m)  # the points of the boxes the last round changed, ascending (all at first)
    while nbox < k:
        # Their boxes' sums afresh; the other boxes' points are the same, so their sums too.
        lab, wi = box[inside], w[inside]
        changed = np.zeros(nbox, dtype=bool)
        changed[lab] = True
        fresh = np.bincount(lab, weights=wi, minlength=nbox)
        wsum = np.where(changed, fresh, np.r_[wsum, np.zeros(nbox - wsum.shape[0])])
        grow = np.zeros((nbox - sums.shape[0], channels))
        sums, sq = np.r_[sums, grow], np.r_[sq, grow]
        for c in range(channels):
            xc = cols[c][inside]
            wx = wi * xc
            sums[:, c] = np.where(changed, np.bincount(lab, weights=wx, minlength=nbox), sums[:, c])
            xc **= 2
            xc *= wi  # w x^2, as w * x ** 2 rounds it
            sq[:, c] = np.where(changed, np.bincount(lab, weights=xc, minlength=nbox), sq[:, c])
        del lab, wi
        var = np.maximum(sq - sums ** 2 / wsum[:, None], 0.0)
        axis = np.argmax(var, axis=1)
        sse = var.sum(axis=1)
        cand = np.flatnonzero(sse > 0)
        take = min(k - nbox, max(1, int(cand.size * _SPLIT_SHARE)))
        if cand.size > take:
            cand = np.sort(cand[np.argsort(-sse[cand], kind="stable")[:take]])
        # Each point's channel to cut along, or `channels` where its box is not chosen.
        along = np.full(nbox, channels, dtype=np.uint8)
        along[cand] = axis[cand]
        at = np.take(along, box)
        parts = [order[np.take(at, order) == c] for c, order in enumerate(by_value)]
        sel = np.concatenate(parts)
        if sel.size == 0:
            break
        v = np.concatenate([np.take(cols[c], part) for c, part in enumerate(parts)])
        del parts, at
        # By box (a stable radix sort), each box's points by value then index: lexsort((v, box[sel])).
        b = box[sel]
        order = np.argsort(b.astype(np.uint16) if nbox <= 1 << 16 else b, kind="stable")
        sel, v, b = sel[order], v[order], b[order]
        del order
        ws = w[sel]
        first = np.empty(sel.shape[0], dtype=bool)
        first[0] = True
        np.not_equal(b[1:], b[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        seg = np.cumsum(first) - 1
        cw = np.cumsum(ws)
        cs = np.cumsum(ws * v)
        wl = cw - (cw - ws)[starts][seg]
        sl = cs - (cs - ws * v)[starts][seg]
        del cw, cs
        wt, st = wsum[b], sums[b, axis[b]]
        wr, sr = wt - wl, st - sl
        del wt, st
        with np.errstate(divide="ignore", invalid="ignore"):
            score = sl * sl / wl + sr * sr / wr  # maximal where the two halves' squared error is least
        del wl, sl, wr, sr, ws
        # A cut must fall between two different values of the same box.
        valid = np.zeros(sel.shape[0], dtype=bool)
        valid[:-1] = (b[1:] == b[:-1]) & (v[1:] > v[:-1])
        score[~valid] = -np.inf
        del valid
        # Per box, the first position of its best score (what a lexsort by box and -score puts first).
        top = np.maximum.reduceat(score, starts)
        where = np.where(score == top[seg], np.arange(sel.shape[0]), sel.shape[0])
        best = np.minimum.reduceat(where, starts)
        del where, seg
        ok = np.isfinite(score[best])
        cut_box, cut_val = b[best[ok]], v[best[ok]]
        if cut_box.size == 0:
            break
        new_id = np.full(nbox, -1, dtype=np.intp)
        new_id[cut_box] = nbox + np.arange(cut_box.size)
        limit = np.full(nbox, np.inf)
        limit[cut_box] = cut_val
        moved = sel[v > limit[b]]
        box[moved] = new_id[box[moved]]
        del sel, v, b, moved, score
        # Then a few 2-means steps inside each cut box: the cut turns to the boundary that best separates
        # the two halves in every channel (bisecting K-Means), not only along one channel. Only the cut
        # boxes' points, in index order: their sums are those of a bincount over all the points.
        parent_of = np.full(nbox + cut_box.size, -1, dtype=np.intp)
        parent_of[cut_box] = cut_box
        parent_of[nbox:] = cut_box
        nbox += cut_box.size
        inside = np.flatnonzero(np.take(parent_of, box) >= 0)
        parent = parent_of[box[inside]]
        child = new_id[parent]
        wi = w[inside]
        xs = [cols[c][inside] for c in range(channels)]
        wx = np.empty_like(wi)
        for _ in range(_BISECT_STEPS):
            lab = box[inside]
            weight = np.bincount(lab, weights=wi, minlength=nbox)
            # As _sq of the points and their two boxes' means (_weighted_means), channel by channel.
            to_child = to_parent = None
            for c in range(channels):
                np.multiply(wi, xs[c], out=wx)
                with np.errstate(invalid="ignore", divide="ignore"):
                    mean = np.bincount(lab, weights=wx, minlength=nbox) / weight
                dc = xs[c] - np.take(mean, child)
                dc **= 2
                dp = xs[c] - np.take(mean, parent)
                dp **= 2
                if to_child is None:
                    to_child, to_parent = dc, dp
                else:
                    to_child += dc
                    to_parent += dp
            box[inside] = np.where(to_child < to_parent, child, parent)
        del xs, wx, wi, parent, child
        done += 1
        if progress is not None:
            progress(min(done, rounds), rounds)
    centroids, _ = _weighted_means(_Points(x, w), box, nbox)
    if nbox < k:
        centroids = np.concatenate([centroids, np.repeat(centroids[-1:], k - nbox, axis=0)])
    return centroids


def _kd_tree() -> Any:
    """scipy's cKDTree, imported only where large K needs it; without scipy (a declared dependency a packager
    may leave out, as pyproject's comment says it serves K >= 512 only) a KmqError saying so, not a traceback."""
    try:
        from scipy.spatial import cKDTree
    except ImportError:
        raise KmqError("K-Means at this K needs scipy (its k-d tree), which is not installed: pip install scipy") \
            from None
    return cKDTree


def _lloyd_tree(pts: _Points, centroids: np.ndarray, max_iter: int, tol_abs: float,
                progress: Progress | None = None, done: int = 0) -> np.ndarray:
    """Weighted Lloyd for large k, each assignment a k-d tree query (scipy's cKDTree: measured on a 0.27 MP
    photo, 0.3 s for K = 4096 and 0.6 s for K = 65536, where the numpy cell search takes 2.2 s and 65 s).
    Stops when the summed squared centroid shift is <= tol_abs or after max_iter updates."""
    cKDTree = _kd_tree()

    k = centroids.shape[0]
    for it in range(max_iter):
        dist, labels = cKDTree(centroids).query(pts.x, k=1)
        new, wsum = _weighted_means(pts, labels, k)
        if np.any(wsum == 0):
            _reseed_empty(new, wsum, pts.x, dist * dist)
        shift = float(_sq(new, centroids).sum())
        centroids = new
        if progress is not None:
            progress(done + it + 1, done + max_iter)
        if shift <= tol_abs:
            if progress is not None and it + 1 < max_iter:
                progress(done + max_iter, done + max_iter)  # converged early: a bar built on total ends full
            break
    return centroids


# `_lloyd_bounded` keeps a point's entry while its bounds part it from every other by this share of a
# distance: float rounding (~1e-16) never decides, so its labels are the k-d tree's nearest.
_BOUND_MARGIN = 1e-9
# `_lloyd_bounded` lowers a point's lower bound by the farthest move among this many centroids nearest its
# own (and bounds the others by their distance to it), not by the farthest move of all: at K = 4096 one
# centroid moving 2.2 while 99 % moved under 0.8 sent 40-70 % of a 1 MP photo's 7-bit points (under random
# alpha) back to the tree every update.
_NEIGHBOURS_BOUND = 16
# A point too far from its centroid for its `_NEIGHBOURS_BOUND` nearest to hold its own nearest is measured
# against this many nearest its centroid where they must, before the tree is queried: 12 MP photo under
# random alpha, K = 4096, of the points measured over its fit 81 % fit inside 16, 94 % inside 32, 98 % inside
# 64; a tree query costs ~1.3 us, a neighbour measured ~12 ns, and 4096 centroids' 33 nearest 21 ms an
# update against 12 for 17 (65: 39).
_NEIGHBOURS_WIDE = 32


def _lloyd_bounded(pts: _Points, centroids: np.ndarray, max_iter: int, tol_abs: float,
                   progress: Progress | None = None, done: int = 0, *, bounds: tuple | None = None,
                   handover: bool = False, relax: float = 1.0) -> np.ndarray | tuple[np.ndarray, tuple]:
    """`_lloyd_tree`'s updates (the same labels: each point's nearest centroid) where most points keep their
    centroid, as after a warm-up: Hamerly's bounds, an upper one on each point's distance to its centroid
    and a lower one on its distance to any other, moved by how far the centroids moved: its own, and for
    the lower one the farthest moved of the `_NEIGHBOURS_BOUND` nearest its centroid a (N_a); any other
    centroid c is at least |c - a| - upper >= R_a - upper from the point, R_a the farthest of N_a (or
    Hamerly's farthest move of all, where that bound is the greater). A point whose upper bound, then its
    exact distance, reaches the greater of the lower bound and half its centroid's distance to the nearest
    other centroid is measured against N_a where they must hold its nearest (`_nearest_around`), else
    queries the tree again (its two nearest). Needs k >= 2. The labels equal `_lloyd_tree`'s where no point
    is equidistant from two centroids (each breaks such a tie its own way).
    bounds: (labels, upper, lower) of the points for centroids, checked as after an update instead of a
    query of every point (see `_fit_large`). handover: returns (centroids, such bounds for them) too.
    relax: every update but the last of max_iter moves a centroid relax times the way to its cluster's mean,
    as `_hamerly`'s (the bounds follow any move), but one that reseeds an empty cluster; the last returns the
    means. Stopped early by tol_abs, the result is the last (over-relaxed) step: at the tolerances used its
    shift is ~3.6x a plain step's, so it stops later, and J moves by nothing measurable."""
    cKDTree = _kd_tree()

    k = centroids.shape[0]
    x = pts.x
    labels, upper, lower = (np.empty(pts.m, dtype=np.int32), np.empty(pts.m), np.empty(pts.m)) if bounds is None \
        else bounds
    near = min(k - 1, _NEIGHBOURS_BOUND)
    wide = min(k - 1, _NEIGHBOURS_WIDE)  # (see `_NEIGHBOURS_WIDE`)

    def query(tree: cKDTree, rows: np.ndarray, xs: np.ndarray | None = None) -> None:
        # Each point's two nearest (xs: the points rows, when read already), a block at a time: the query's
        # (m, 2) answers of a 12 MP photo's 7-bit level (1.7 M points) were 55 MB.
        for s in range(0, rows.shape[0], _TREE_BLOCK):
            at = rows[s:s + _TREE_BLOCK]
            dist, nearest = tree.query(_gathered(x, at) if xs is None else xs[s:s + _TREE_BLOCK], k=2)
            labels[at], upper[at], lower[at] = nearest[:, 0], dist[:, 0], dist[:, 1]

    # loosen and settle go a block of points at a time: over every point at once, their temporaries were
    # 60 MB of a 12 MP photo's peak under random alpha (2.6 M 7-bit points). settle loosens each block just
    # before it checks it, while its bounds are in cache (two passes over every point's bounds before:
    # ~0.2 s of the astronaut's fit under random alpha at 12 MP, K = 4096).
    def loosen(moved: np.ndarray) -> tuple[cKDTree, np.ndarray, np.ndarray, Callable[[slice], None]]:
        """The new centroids' tree and neighbours, and what loosens the bounds of a block of points after
        the centroids moved by moved (k,)."""
        tree = cKDTree(centroids)
        gaps, around = tree.query(centroids, k=wide + 1)
        # (Its own move too: a centroid's twin at the same place may take column 0 in its stead.)
        drift = np.take(moved, around[:, :near + 1]).max(axis=1)
        # Hamerly's own bound still where it is the greater: a point far from its centroid (near R_a) has
        # little bound from R_a (1 MP photo under random alpha, K = 4096: 1.44 M -> 1.32 M tree queries over
        # the two levels' 38 updates).
        most, reach = moved.max(), gaps[:, near]

        def step(at: slice) -> None:
            own, up, low = labels[at].astype(np.intp), upper[at], lower[at]
            up += np.take(moved, own)
            local = low - np.take(drift, own)
            np.minimum(local, np.take(reach, own) - up, out=local)
            low -= most
            np.maximum(low, local, out=low)

        return tree, gaps, around, step

    def settle(tree: cKDTree, gaps: np.ndarray, around: np.ndarray, step: Callable[[slice], None] | None = None
               ) -> None:
        """Each point whose bounds no longer keep its centroid measured or queried again (step: loosens a
        block's bounds first)."""
        half = gaps[:, 1] / 2
        # The neighbourhoods' tables made once, not at each block (4096 centroids' 33 nearest: ~0.7 ms each,
        # ~0.4 s over the astronaut's fit under random alpha at 12 MP, K = 4096).
        hoods = [_Around(centroids, around[:, :width + 1], gaps[:, width])
                 for width in ((near,) if wide == near else (near, wide))]
        # (Each point on its own: any order gives the same bounds. Blocks of `_AROUND_BLOCK` points: the points
        # read once are held to the tree's query, a few doubles each.)
        for s in range(0, pts.m, _AROUND_BLOCK):
            at = slice(s, s + _AROUND_BLOCK)
            if step is not None:
                step(at)
            bound = np.maximum(lower[at], np.take(half, labels[at]))
            bound *= 1 - _BOUND_MARGIN
            mine = np.flatnonzero(upper[at] >= bound)
            rows = mine + s
            xs = _gathered(x, rows)  # (read once: a level's `_Means` divides its sums at each read)
            gap = xs - np.take(centroids, labels[rows], axis=0)
            upper[rows] = np.sqrt(np.einsum("mc,mc->m", gap, gap))
            del gap
            keep = np.flatnonzero(upper[rows] >= bound[mine])
            todo, xs = rows[keep], np.take(xs, keep, axis=0)  # (np.take: see `_gathered`)
            # A point within half of R_a of its centroid a has its nearest among a's neighbours (any other is
            # at least R_a - |x - a| > |x - a| away): measured there, not queried, unless its two nearest
            # there nearly tie (the tree's choice is then taken). Those farther out try a's wider
            # neighbourhood (`_NEIGHBOURS_WIDE`), then the tree.
            twice, own = 2 * upper[todo], labels[todo]
            left = np.arange(todo.shape[0])
            queried = []
            for hood in hoods:
                inside = twice[left] < np.take(hood.reach, own[left]) * (1 - _BOUND_MARGIN)
                mine = left[inside]
                left = left[~inside]
                back = _nearest_around(np.take(xs, mine, axis=0), todo[mine], hood, labels, upper, lower)
                queried.append(mine[back])
                if not left.size:
                    break
            queried.append(left)
            queried = np.concatenate(queried)
            query(tree, todo[queried], np.take(xs, queried, axis=0))

    if bounds is None:
        query(cKDTree(centroids), np.arange(pts.m))
    else:
        tree = cKDTree(centroids)
        settle(tree, *tree.query(centroids, k=wide + 1))
    moved = None
    for it in range(max_iter):
        new, wsum = _exact_means(pts, labels, k) if pts.exact else _weighted_means(pts, labels, k)
        if np.any(wsum == 0):
            tree = cKDTree(centroids)
            _reseed_empty(new, wsum, x, np.concatenate([tree.query(x[s:s + _TREE_BLOCK], k=1)[0] ** 2
                                                        for s in range(0, pts.m, _TREE_BLOCK)]))
        elif relax != 1.0 and it + 1 < max_iter:
            new -= centroids
            new *= relax
            new += centroids
        moved = _sq(new, centroids)
        shift = float(moved.sum())
        np.sqrt(moved, out=moved)
        centroids = new
        if progress is not None:
            progress(done + it + 1, done + max_iter)
        if shift <= tol_abs:
            if progress is not None and it + 1 < max_iter:
                progress(done + max_iter, done + max_iter)
            break
        if it + 1 == max_iter:
            break
        settle(*loosen(moved))
        moved = None
    if not handover:
        return centroids
    if moved is not None:
        step = loosen(moved)[3]
        for s in range(0, pts.m, _AROUND_BLOCK):
            step(slice(s, s + _AROUND_BLOCK))
    return centroids, (labels, upper, lower)


class _Around:
    """`_nearest_around`'s tables of k centroids (k, C) and each one's neighbours around (k, w) (itself among
    them), reach (k,) the distance to the farthest: the neighbours' coordinates per column and channel
    (float32), whether each centroid is among its own, and the greatest coordinate."""

    def __init__(self, centroids: np.ndarray, around: np.ndarray, reach: np.ndarray) -> None:
        self.k = around.shape[0]
        self.reach = reach
        self.columns = np.ascontiguousarray(around.T)
        narrow = centroids.astype(np.float32)
        # Each column's neighbours' coordinates, per channel: one gather a channel per point and column.
        self.coords = [np.take(narrow[:, c], self.columns) for c in range(centroids.shape[1])]
        # Whether each centroid is among its own neighbours (not so only where twins tie at distance 0).
        self.kept = (self.columns == np.arange(self.k)).any(axis=0)
        self.scale = float(np.abs(centroids).max())


def _nearest_around(xs: np.ndarray, rows: np.ndarray, hood: _Around, labels: np.ndarray, upper: np.ndarray,
                    lower: np.ndarray) -> np.ndarray:
    """For the points rows (xs, their coordinates), each nearer its centroid a (labels) than half of reach[a],
    the distance to the farthest of a's neighbours around[a] (a among them; hood, see `_Around`): their
    nearest centroid there, a bound at least its distance (upper) and a lower bound on any other's (the
    second there, or reach[a] - |x - a| beyond). Returns the places in rows of the points whose two nearest there
    are too near a tie to tell (or a not among them), for the tree.
    The neighbours are measured one column of around at a time, the nearest two kept by element-wise passes
    (a later one nearest only where strictly nearer: ties to the earlier column, as argmin), where a
    partition and an argmin over rows of 17 were slow (12 MP photo under random alpha, K = 4096: 8.7 M points
    measured over its fit). The squared distances are float32 (`_f32_error`): a point whose two nearest
    are nearer each other than their rounding could move them goes to the tree, so the labels are the
    exact nearest as before, and the bounds are widened by that rounding."""
    unsure = []
    k, columns, coords, kept, reach = hood.k, hood.columns, hood.coords, hood.kept, hood.reach
    scale = max(hood.scale, float(np.abs(xs).max()) if xs.size else 0.0)
    for s in range(0, rows.shape[0], _AROUND_BLOCK):
        at = rows[s:s + _AROUND_BLOCK]
        own = labels[at].astype(np.intp)  # (np.take converts int32 indices at every call)
        xc = [xs[s:s + _AROUND_BLOCK, c].astype(np.float32) for c in range(xs.shape[1])]
        first = second = None
        pick = np.zeros(at.shape[0], dtype=np.intp)  # the column of the nearest
        farther = np.empty(at.shape[0], dtype=np.float32)
        nearer = np.empty(at.shape[0], dtype=bool)
        for j in range(columns.shape[0]):
            d = np.take(coords[0][j], own)
            d -= xc[0]
            d *= d
            for c in range(1, len(coords)):
                diff = np.take(coords[c][j], own)
                diff -= xc[c]
                diff *= diff
                d += diff
            if first is None:
                first, second = d, np.full(d.shape[0], np.inf, dtype=np.float32)
                continue
            # The second nearest so far: the lesser of the old second and whichever of the old first and d
            # is the farther.
            np.maximum(first, d, out=farther)
            np.minimum(second, farther, out=second)
            np.less(d, first, out=nearer)
            np.copyto(pick, j, where=nearer)
            np.minimum(first, d, out=first)
        first, second = first.astype(np.float64), second.astype(np.float64)
        far = _f32_error(second, scale, xs.shape[1])
        # Apart by more than both distances' rounding (the second's is the greater): the nearest in float32
        # is the exact nearest, by that margin.
        sure = second - first > 2 * far + _BOUND_MARGIN * second
        sure &= np.take(kept, own)
        unsure.append(s + np.flatnonzero(~sure))
        at, own, pick, first, second, far = at[sure], own[sure], pick[sure], first[sure], second[sure], far[sure]
        pick *= k
        pick += own
        beyond = np.take(reach, own) - upper[at]
        labels[at] = np.take(columns, pick)
        first += _f32_error(first, scale, xs.shape[1])
        upper[at] = np.sqrt(first)
        second -= far
        np.maximum(second, 0.0, out=second)
        np.minimum(np.sqrt(second), beyond, out=beyond)
        lower[at] = beyond
    return np.concatenate(unsure) if unsure else np.empty(0, np.intp)


def _f32_error(d: np.ndarray, scale: float, channels: int) -> np.ndarray:
    """A bound (twice the worst case) on how far `_nearest_around`'s float32 squared distance d (float64
    here) of `channels` terms is from the exact one, the coordinates at most scale in magnitude: each
    coordinate rounds by scale u (u = 2^-24), a difference by 2 scale u + u |diff| more, a square by its two
    factors' errors times their sum, the products' sum by u a term; with sum |diff| <= sqrt(channels d)."""
    u = 2.0 ** -24
    e = 4.5 * scale * u + 1e-30  # a difference's error (2 scale u + u 2 scale, and their products)
    out = np.sqrt(channels * d)
    out *= 2.0 * e
    out += channels * e * e + (channels + 2) * u * d
    out *= 2.0
    return out


# Points `_nearest_around` measures at once: its temporaries are a few doubles a point.
_AROUND_BLOCK = 1 << 16


def _fit_large(level: _Points | Callable[[], _Points], k: int, max_iter: int, tol_abs: float,
               progress: Progress | None, warm: _Points | None = None, parent: np.ndarray | None = None,
               weights: np.ndarray | None = None, top: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
               ) -> np.ndarray:
    """fit's centroids at k >= `_LARGE_K` on the points it chose: a split, then k-d tree Lloyd. With a warm
    level (`_large_k_levels`), the split and a first Lloyd run on it, then as many updates on level (or on
    what level() makes, then), both bounded (`_lloyd_bounded`); where level's points have a sample
    (`_sample`), `_SAMPLED_ITER`'s over-relaxed updates instead, the level's mostly on the sample. parent (m,):
    each point of level's warm point (the bin holding its bin), whose centroid and bounds it starts from
    instead of a query. weights: level's weights when level is made later. top: makes (means (t, C), cell
    (w,)) of the level a bit coarser than warm and each warm point's place there, whose centroids and bounds
    (a query of its t points) the warm level starts from likewise, not a query of its own points."""
    rounds = _split_rounds(k)
    iters, after = (min(max_iter, _TREE_ITER), 0) if warm is None else (min(max_iter, n) for n in _WARM_ITER)
    sample = None if warm is None else _sample(level.w if weights is None else weights, k)
    sampled, relax, ahead = 0, 1.0, None
    if sample is not None:
        iters, sampled, after = (min(max_iter, n) for n in _SAMPLED_ITER)
        relax = _RELAX
        # The warm level's own sample, where it has one: the split and most of its updates run there.
        ahead = _warm_sample(warm.w, k)
    total = rounds + iters + sampled + after
    report = None if progress is None else lambda done, _: progress(done, total)
    if warm is None:
        start = _split(level.x, level.w, k, report)
        return _lloyd_tree(level, start, iters, tol_abs, progress, rounds)
    top = None if top is None else top()
    if ahead is None:
        start = _split_drawn(warm, k, report)
    else:
        rows, light = ahead
        ahead = _Points(_gathered(warm.x, rows), np.maximum(warm.w[rows], light))
        start = _split_drawn(ahead, k, report)
        first = min(iters - 1, _WARM_SAMPLED)
        start = _lloyd_bounded(ahead, start, first, tol_abs, report, rounds, relax=relax,
                               bounds=None if top is None else _from_top(ahead.x, start, top[0], top[1][rows]))
        rounds, iters = rounds + first, iters - first
        del ahead, rows
    # Bounded from the split on too (the same labels): even the first updates keep most points' centroids.
    start = _lloyd_bounded(warm, start, iters, tol_abs, report, rounds, handover=parent is not None, relax=relax,
                           bounds=None if top is None else _from_top(warm.x, start, *top))
    del top
    bounds = None
    if parent is not None:
        start, (labels, _, lower) = start
        above = warm.x
    del warm
    # The level's points only now, the warm level's gone (1.7 M 7-bit points: 120 MB).
    level = level() if callable(level) else level
    if parent is not None:
        # A point is within |x - its parent| of its parent, so that much nearer or farther from any centroid
        # than it: its parent's centroid, the exact distance to it, and the parent's lower bound less that.
        bounds = _inherited(level.x, start, above, parent, labels, lower)
        del above, labels, lower
    if sample is None:
        return _lloyd_bounded(level, start, after, tol_abs, progress, rounds + iters, bounds=bounds)
    # Most updates on the sample (its labels as exact: from the same bounds), the last ones on every point.
    rows, light = sample
    before = start
    # (The sample's weighted coordinates made by each update, not kept: 18 MB of the fit's peak at 12 MP.)
    drawn = _Points(_gathered(level.x, rows), np.maximum(level.w[rows], light), keep_wx=False)
    start, taken = _lloyd_bounded(drawn, start, sampled, tol_abs, report, rounds + iters, relax=relax, handover=True,
                                  bounds=None if bounds is None else tuple(b[rows] for b in bounds))
    del drawn  # (before the bounds are rejoined: the sample is the fit's peak then)
    if bounds is not None:
        _rejoined(bounds, rows, taken, np.sqrt(_sq(start, before)))
    del taken, before, rows, sample
    return _lloyd_bounded(level, start, after, tol_abs, progress, rounds + iters + sampled, bounds=bounds,
                          relax=relax)


def _sample(w: np.ndarray, k: int, noise: float | None = None, lights: tuple[float, ...] | None = None
            ) -> tuple[np.ndarray, float] | None:
    """A weight-aware sample of points of weights w (m,) (pixels per bin) for k centroids: (its rows, light),
    every point of light pixels or more, a lighter one with probability w / light (then weighing light, so
    that its expected weight is its own), drawn from a fixed seed. light is the largest of `_LIGHTS` whose
    sampled weight per centroid stays within `_SAMPLE_NOISE` (the relative variance of one centroid's sampled
    weight, about light x k x the light points' pixels / all pixels^2), or the largest of lights within noise.
    None where none does, or where the sample would keep over `_SAMPLE_SHARE` of the points."""
    n = float(w.sum())
    noise = _SAMPLE_NOISE if noise is None else noise
    for light in _LIGHTS if lights is None else lights:
        if light * k * float(w[w < light].sum()) <= noise * n * n:
            break
    else:
        return None
    draw = np.random.default_rng(_SAMPLE_SEED).random(w.shape[0])
    draw *= light
    rows = np.flatnonzero(draw < w)  # (w >= light: always)
    return None if rows.shape[0] > _SAMPLE_SHARE * w.shape[0] else (rows, light)


# The split of the warm level (or of its sample) runs on a sample of it, light `_SPLIT_LIGHT` (`_sample`, no
# noise bound), where it has `_SPLIT_DRAWN_FROM` points or more and that sample keeps `_SPLIT_DRAWN` points a
# centroid. The split costs in proportion to its points (~21 rounds over most of them at K = 4096): the 12 MP
# china under random alpha at K = 4096 split 595 000 points of its warm sample in 3.5 s of CPU, 223 000 of a
# light-32 one in 1.1 s (the updates after it the same 6.4 s). Only a start: the updates that follow still run
# on the noise-bound samples and the levels. J (round 37, 1/2/4 MP china, flower, grace under random alpha,
# blob2, a vignette at K = 512, 1024, 4096; 12 MP china and flower under random alpha at K = 4096): on the
# cells it takes, -0.70 % to +0.14 %. Below `_SPLIT_DRAWN_FROM` points the split is cheap and its start moved J
# either way (K = 512, 47-162 sample points a centroid: -0.62 % to +0.36 %); under `_SPLIT_DRAWN` a centroid
# (1 MP at K = 4096, 4-7) up to +0.78 %.
_SPLIT_LIGHT = 32.0
_SPLIT_DRAWN_FROM = 1 << 18
_SPLIT_DRAWN = 8


def _split_drawn(pts: _Points, k: int, progress: Progress | None) -> np.ndarray:
    """`_split` of pts, or of its light-`_SPLIT_LIGHT` sample where it takes one (see `_SPLIT_DRAWN_FROM`)."""
    drawn = None if pts.m < _SPLIT_DRAWN_FROM else _sample(pts.w, k, math.inf, (_SPLIT_LIGHT,))
    if drawn is None or drawn[0].shape[0] < _SPLIT_DRAWN * k:
        return _split(pts.x, pts.w, k, progress)
    rows, light = drawn
    return _split(_gathered(pts.x, rows), np.maximum(pts.w[rows], light), k, progress)


def _warm_sample(w: np.ndarray, k: int) -> tuple[np.ndarray, float] | None:
    """The warm level's sample (`_sample` within `_WARM_NOISE`) where it has one, a light under 16 only where it
    keeps `_WARM_DRAWN` points a centroid."""
    ahead = _sample(w, k, _WARM_NOISE)
    return None if ahead is not None and ahead[1] < _LIGHTS[0] and ahead[0].shape[0] < _WARM_DRAWN * k else ahead


def _rejoined(bounds: tuple[np.ndarray, np.ndarray, np.ndarray], rows: np.ndarray, taken: tuple,
              moved: np.ndarray) -> None:
    """bounds (labels, upper, lower) of every point, for the centroids before they moved by moved (k,):
    for the centroids after, the sample's rows taking the sample's own (taken), the others loosened by
    the moves (upper by its centroid's, lower by the farthest)."""
    labels, upper, lower = bounds
    for s in range(0, labels.shape[0], _TREE_BLOCK):  # (no temporary of every point: 29 MB at 3.65 M of them)
        at = slice(s, s + _TREE_BLOCK)
        upper[at] += np.take(moved, labels[at])
    lower -= moved.max()
    labels[rows], upper[rows], lower[rows] = taken


def _from_top(x: np.ndarray, centroids: np.ndarray, above: np.ndarray, parent: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_inherited` bounds of points x from their parents above (each point's at parent), the parents' own
    from a query of the tree (each one's two nearest centroids): where the parents are a few times fewer
    than the points, cheaper than querying every point (12 MP photo under random alpha, K = 4096: 931 000
    6-bit points, 137 000 5-bit ones, a query ~1 us each), and most points keep their parent's centroid."""
    cKDTree = _kd_tree()

    tree = cKDTree(centroids)
    m = above.shape[0]
    labels, lower = np.empty(m, dtype=np.int32), np.empty(m)
    for s in range(0, m, _TREE_BLOCK):
        dist, nearest = tree.query(above[s:s + _TREE_BLOCK], k=2)
        labels[s:s + _TREE_BLOCK], lower[s:s + _TREE_BLOCK] = nearest[:, 0], dist[:, 1]
    return _inherited(x, centroids, above, parent, labels, lower)


def _inherited(x: np.ndarray, centroids: np.ndarray, above: np.ndarray, parent: np.ndarray, labels: np.ndarray,
               lower: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bounds (labels, upper, lower) of points x (m, C) for centroids from those of their parents above
    (each point's at parent (m,)): the parent's centroid, the exact distance to it (upper only grows it) and
    the parent's lower bound less the point's distance from the parent."""
    m = x.shape[0]
    own, near, far = np.empty(m, dtype=np.int32), np.empty(m), np.empty(m)
    # (Blocks of `_AROUND_BLOCK` points: at the 7-bit level, where the fit peaks, a block's means are read once
    # and held, with its gaps.)
    for s in range(0, m, _AROUND_BLOCK):
        at = slice(s, min(s + _AROUND_BLOCK, m))
        up = parent[at]
        own[at] = np.take(labels, up)
        xs = x[at]
        gap = xs - np.take(centroids, own[at], axis=0)
        near[at] = np.sqrt(np.einsum("mc,mc->m", gap, gap))
        gap = xs - np.take(above, up, axis=0)
        far[at] = np.take(lower, up) - np.sqrt(np.einsum("mc,mc->m", gap, gap))
    return own, near, far


def fit_large(counts: np.ndarray, sums: np.ndarray, k: int, *, variance: np.ndarray, max_iter: int = 300,
              tol: float = 1e-4, progress: Progress | None = None,
              warm: tuple[np.ndarray, np.ndarray] | None = None, parent: np.ndarray | None = None,
              top: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """`fit` at k >= `_LARGE_K` of RGBA over `_POLISH_MAX` colours given only the histogram levels it fits
    there (`_large_k_levels`: 6 bits where that has `_FINE_ENOUGH` bins per centroid, else 7, warmed up on
    the level a bit coarser, given as warm), as counts (B,) and exact sums (B, 4) of their bins in ascending key order;
    variance as in `fit_histogram`. The levels' points are the same sums, so the centroids are fit's, bit for
    bit. Requires B >= 4 k. parent (B,): each bin's place in warm, when given (see `_fit_large`); top: makes
    (each bin of warm's place there, counts, sums) of the level a bit coarser than warm, whose bounds warm
    starts from (the same centroids)."""
    def coarser() -> tuple[np.ndarray, np.ndarray]:
        cell, counts, sums = top()
        return sums / counts[:, None].astype(np.float64), cell

    def points(counts: np.ndarray, sums: np.ndarray, later: bool = False) -> _Points:
        w = counts.astype(np.float64)
        # The level fitted after a warm one is only read a block of rows at a time: its means are made
        # from the sums when read (a 12 MP photo's 7-bit level under random alpha: 84 MB less at the peak).
        return _Points(_Means(sums, w) if later else sums / w[:, None], w, sums=sums)

    return _fit_large(points(counts, sums) if warm is None else lambda: points(counts, sums, True), k, max_iter,
                      float(tol * variance.mean()), progress, None if warm is None else points(*warm),
                      None if warm is None else parent, counts,
                      None if top is None or warm is None else coarser)


# From `_LARGE_K` on, RGBA whose 6-bit level has under `_FINE_ENOUGH` bins per centroid is fitted on its
# 7-bit level (a 12 MP photo under a vignette: 0.8 to 1.7 M bins, under random alpha 2.5 M), where the split
# costs in proportion to the points: the split and a first `_TREE_ITER` updates run on the 6-bit level
# (4x to 7x fewer points) where it has this many points per centroid, then as many updates on the 7-bit
# level as before (`_lloyd_bounded`), from a better start. 12 MP photos at K = 512, CPU in fresh processes:
# chelsea under a vignette 8.8 -> 5.9 s, J -0.27 %; under random alpha 26.6 -> 18.6 s, J -0.94 %; the
# astronaut under a vignette 18.8 -> 12.7 s, J -0.61 %. Fewer 7-bit updates did not keep J everywhere:
# chelsea under a vignette at K = 512, against the split on the 7-bit level, +0.25 % with 8 after 20 (+0.19 %
# after 30), +0.016 % with 12 (the astronaut -0.33 % with 8); at K = 1024 +0.87 % with 4 (the astronaut
# +0.33 %, chelsea under random alpha +1.0 %). Where the 6-bit level is taken, the 5-bit one warms it up
# likewise: the astronaut under random alpha at 12 MP, K = 512 (932 000 6-bit bins, 137 000 5-bit ones) 11.8
# -> 8.0 s, J -0.56 %; RGBA noise at 1.2 MP, K = 512 and 1024, J -1.08 % and -0.91 %.
_WARM_MIN = 4
# Updates on the warm level, then on the level itself.
_WARM_ITER = (_TREE_ITER, _TREE_ITER)
# Where a weight-aware sample of the level's points (`_sample`) is light enough, every update runs
# over-relaxed (`_RELAX`, as `_hamerly`'s) and the level's mostly on the sample: this many on the warm level,
# on the sample, then on all the points. The updates cost in proportion to the points (the 7-bit level's 20
# were 2.9-12 s of CPU at 12 MP), and a sample of 0.16 to 0.47 of them (bins of under 16 pixels drawn) holds
# most of its pixels. 12 MP photos under a vignette or random alpha (astronaut, chelsea) at K = 512, 1024,
# 4096, fit CPU in process against 20 + 20 plain updates: 1.5-2.1x less (astronaut under random alpha at
# K = 1024 16.6 -> 9.6 s, chelsea under random alpha 11.5 -> 5.5 s), J -0.01 to -0.43 % in all 12. 16 light
# at 1.1 MP (flower under random alpha, K = 1024: 1/16 of its pixels, 68 a centroid) cost J +0.65 %: the
# light share is then the largest whose noise stays within `_SAMPLE_NOISE`. A bound of 0.004 still left
# that flower (another random alpha) at K = 512 +0.197 % (light 8, noise 0.0029); at 0.0025 it takes 4 there
# (-0.037 %), and every 1.1 MP flower case at K = 512 and 1024 is -0.04 to -0.15 %; at 12 MP the two under
# random alpha at K = 4096 (noise 0.0034-0.0035 at 16) take 8: fit +0.5 s of ~7-9, J -0.17 and -0.28 % more.
_SAMPLED_ITER = (12, 14, 2)
# ... of which, where the warm level has a sample of its own (the largest of `_LIGHTS` whose noise is within
# `_WARM_NOISE`), this many
# on that sample after a split of it, then the rest on the whole warm level. The split and the updates of the
# warm level cost in proportion to its points too (astronaut under random alpha at 12 MP: 931 000 6-bit bins,
# a split of 2.8 s and 12 updates of 3.3 s of CPU; its sample 285 000). 12 MP, the 12 cases above, fit CPU
# in process against the sample of the level alone: 1.1-2.0x less (astronaut under a vignette K = 512 3.81
# -> 2.80 s, under random alpha K = 1024 9.63 -> 5.48), J against the 20 + 20 plain updates still -0.58 to
# +0.02 % (the astronaut under a vignette at K = 4096 +0.023 %). At 1.1 MP (flower under random alpha, K = 512:
# warm noise 0.0031, the 12 MP cases 0.0012 or less) J went +0.32 %: no warm sample there.
# Light 16 only had left 2-4 MP photos under random alpha at K = 1024 (china at 4 MP: 862 000 6-bit bins,
# noise 0.0020 at 16, 0.0008 at 8) and 12 MP ones at K = 4096 (china, 1.44 M bins) to split and update every
# bin: a split of 4.0 and 9.8 s of CPU, RGBA 2.5x and 4.5x RGB's. The lighter samples (light 8 keeps 0.30 of
# china's 4 MP bins, 4 keeps 0.41 of the 12 MP ones) take the split and the first updates too, within the
# same noise (round 36, see docs/PERFORMANCE.md), where they keep `_WARM_DRAWN` points a centroid: thinner
# ones (~100 a centroid, 1 MP photos at K = 512) moved J by up to +0.51 %.
_WARM_SAMPLED = 10
_WARM_NOISE = 0.0015
_WARM_DRAWN = 128
# Light shares tried, largest first, and the noise bound (`_sample`).
_LIGHTS = (16.0, 8.0, 4.0)
_SAMPLE_NOISE = 0.0025
_SAMPLE_SEED = 0
# No sample where it keeps over this share of the points: too few dropped to pay for itself.
_SAMPLE_SHARE = 0.75


def _large_k_levels(colors: np.ndarray, counts: np.ndarray, k: int) -> tuple[_Points, _Points | None]:
    """The histogram level the split and the k-d tree Lloyd of more than `_POLISH_MAX` colours run on: the
    7-bit one, or with four channels (RGBA with transparency: an opaque image is fitted as RGB) the
    6-bit one where it has `_FINE_ENOUGH` bins per centroid, as the histograms of smaller k stop there. A
    fourth channel multiplies the 7-bit bins (a noisy 12 MP photo under a vignette: millions), and both
    steps cost in proportion to the points; the 6-bit one, made first to be judged, is a small part of that,
    and warms the 7-bit one up where that one is taken, as the 5-bit one warms the 6-bit one (with `_WARM_MIN`
    points per centroid): the second of the pair, else None."""
    if colors.shape[1] == 4:
        six = _coarse(colors, counts, _REFINE_BITS[0])
        if six.m >= _FINE_ENOUGH * k:
            five = _coarse(colors, counts, _COARSE_BITS)
            return six, five if five.m >= _WARM_MIN * k else None
        return _coarse(colors, counts, _REFINE_BITS[-1]), six if six.m >= _WARM_MIN * k else None
    return _coarse(colors, counts, _REFINE_BITS[-1]), None


# From `_LARGE_K` on, RGBA of `_POLISH_MAX` colours or fewer (a 0.3-0.5 MP photo under a soft alpha: a colour
# for nearly every pixel, 3x its RGB's) is fitted on the colours themselves, warmed up on their 6-bit level
# (each colour starting from its bin's centroid and bounds) where that has at most this share of them and
# `_WARM_MIN` bins per centroid, as the 7-bit level of larger images is on theirs: the split and the first
# updates on the bins. Coffee at 860x580 under a soft alpha (467 000 colours, 134 000 bins), K = 1024: the fit
# 5.9 -> 1.9 s of CPU, J -0.05 %; 14 RGBA photos of 0.1-1 MP at K = 512 and 1024, J -0.04 % to -0.9 %.
_WARM_COLOURS_SHARE = 0.75


def _warm_colours(colors: np.ndarray, counts: np.ndarray, k: int) -> _Points | None:
    """The level that warms up `fit` of RGBA colours at k >= `_LARGE_K` (see `_WARM_COLOURS_SHARE`), or None."""
    if colors.shape[1] < 4:
        return None
    six = _coarse(colors, counts, _REFINE_BITS[0])
    return six if _WARM_MIN * k <= six.m <= _WARM_COLOURS_SHARE * colors.shape[0] else None


# A screenshot with a photo pasted in (800x500, 12 166 colours: 602 of text anti-aliased between a background of
# 74 % of the pixels and three inks, 11 594 of the photo) at K = 256 climbed the histograms to 1.28x scikit-learn's J
# (2.206, converged on the colours 2.19): the 5-bit bins merge neighbouring steps of the text's edges, each step
# heavy, and a Lloyd on those bins (seeded on them or on the colours) gave the photo centroids the edges needed
# (the edges' part of J 0.38 -> 1.00), a local optimum the colours' own Lloyd did not leave. RGB where one colour
# holds `_FLAT_SHARE` of the pixels or more and the other colours of `_FLAT_STEP` of the pixels or more (the inks and
# their edges' steps) hold `_FLAT_STEPS` between them is fitted on the colours themselves (screenshots: one colour
# 30-74 %, the others 14-32 %; the samples' heaviest colour 0.1-11 %; a letterboxed or white-framed photo 16-20 %,
# but the others 0.1-1.7 %: there the colours' restarts were 3-8x the CPU for J -1.2 % to +0.8 %) as long as
# the restarts' work there (colours x K x restarts) is at most `_FLAT_WORK`: that screenshot 2.206 -> 1.735
# (scikit-learn 1.721), 0.06 -> 0.14 s of CPU; at K = 128 3.915 -> 3.551 (1.09x -> 0.99x), 0.07 -> 0.28 s. Not
# with over `_FLAT_RESTARTS` restarts (K < 112), where the 5-bit bins are more per centroid and the climb gets
# near (that screenshot at K = 100: 1.03x), while the colours' restarts cost most (four screenshots with a photo
# at K = 100: J +0.71 % to -2.9 % for 4-10x the CPU; at K = 16 +0.01 %, 7x).
_FLAT_SHARE = 0.125
_FLAT_STEP = 1 / 1024
_FLAT_STEPS = 1 / 16
_FLAT_WORK = 1 << 24
_FLAT_RESTARTS = 3


def _flat_ground(colors: np.ndarray, counts: np.ndarray, k: int) -> bool:
    """Whether `fit` runs on the colours themselves where it would climb the histograms (`_FLAT_SHARE`)."""
    m = colors.shape[0]
    if not (colors.shape[1] == 3 and m <= _POLISH_MAX and _restarts(k) <= _FLAT_RESTARTS
            and m * k * _restarts(k) <= _FLAT_WORK):
        return False
    total, top = float(counts.sum()), float(counts.max())
    steps = float(counts[counts >= _FLAT_STEP * total].sum()) - top
    return top >= _FLAT_SHARE * total and steps >= _FLAT_STEPS * total


def fit(colors: np.ndarray, counts: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 300,
        tol: float = 1e-4, progress: Progress | None = None, clusters: np.ndarray | None = None,
        others: list | None = None, stand_in: Callable[[_Points], _Points | None] | None = None) -> np.ndarray:
    """Weighted K-Means over distinct colours, which is K-Means over the pixels they stand for.

    colors: (M, C) uint8 distinct colours; counts: (M,) pixel count of each (the weights); M > k >= 1.
    Returns centroids (k, C) float64. Same input, k and seed -> identical output.

    Start: greedy k-means++ (as scikit-learn) from ``np.random.default_rng(seed)``, as many restarts as pay
    at this k (`_restarts`: 16 up to K=32, falling as k^-1.5 to one from K=200) ranked after a few Lloyd
    updates run together (`_lloyd_runs`), the best finished by Lloyd (RGB of 8 000-20 000 colours: 2x as
    many seeded and ranked on their 5-bit histogram, 6-bit where that has 4 bins a centroid or fewer, the
    best few finished, see `_RANKED_ABOVE`). With many
    distinct colours (over
    20 000, RGBA 8 000, or over 2**20 colours x centroids) the restarts run on a coarse histogram (each bin
    its colours' weighted mean): 5 bits per channel, or 6 or 7 where the 5-bit one has no more than 4 bins
    per centroid, as long as the level has at most half as many bins as there are colours (RGB from 12 000
    bins, as in a noisy photo: seeded and ranked on a stand-in with the light bins merged, see `_thinned`).
    That costs little and lands near the optimum; Lloyd then continues on
    the finer 6- and 7-bit histograms and finally on the colours themselves, with Hamerly's bounds, at most
    `max_iter` updates per level (on the colours, also at most ~2e7 / M, or with one run (K >= 196)
    `_RELAXED_ITER` over-relaxed ones with momentum (see `_hamerly`); RGB where nearly every pixel is a
    colour of its own, every level in a few such updates after a lighter k-means++ on a stand-in, see
    `_NOISY`; with several restarts each chosen run's levels in a few such updates, see `_NOISY_LEVELS`), and
    none above 500 000 colours,
    where the 7-bit histogram is as good; there the 7-bit level itself is skipped when the 6-bit one has
    1 000 bins per centroid or more, see `_FINE_ENOUGH`; nor from 200 000 colours where the finest level
    has 3 000 bins per centroid, see `_POLISH_FINE_FROM`).
    RGBA with varying alpha: restarts on 4 bits, Lloyd from 5 bits up (at K <= 16, where the 4-bit level has
    over 2 000 bins, from about 8 000 colours, the restarts seeded and ranked on its stand-in, `_thinned`; at
    K = 17-64 up to `_POLISH_MAX` colours seeded on every bin, run on the stand-in, the best `_RERANK_RGBA`
    ranked on every bin, seeded with `_PP_TRIALS_RGBA` candidates a step; every level between the restarts'
    and the last in `_WARM_RAMP` momentum updates); from 150 000 colours where its 6-bit level (with heavy
    colours apart: `_mixed`) keeps at most 2/3 of them, that level is the last, ended in momentum updates
    (`_MIXED_UPDATES`, one run's `_MIXED_UPDATES_ONE`) with no polish;
    with several restarts where the climb ends far below the colours (`_FAR_POLISH`) or from `_FAR_POLISH_FROM`
    centroids, the polish is a few momentum updates; with one run (or two near ties, `_TIE_RUNS_RGBA`), the levels
    between the restarts' and the last in a few momentum updates (`_WARM_RAMP`); above 500 000 colours the last
    level is the first with 1 000 bins per centroid or more (5, 6 or 7 bits), from K = 65 its light bins merged
    (`_merged`). Above 500 000 colours and K = 64 (`_FINISH_ABOVE`), RGB or RGBA, the finest level ends in
    `_FINISH` over-relaxed updates (RGBA's `_FINISH_RGBA`, with momentum) after the levels below run to a looser
    tol.
    RGB where one colour holds an eighth of the pixels or more (a screenshot's background) and other heavy colours
    a sixteenth (its inks) climbs no histogram from K = 112 while the restarts on the colours cost at most
    `_FLAT_WORK` (see `_flat_ground`).
    tol is relative, as in scikit-learn: Lloyd stops once the sum over centroids of the squared shift
    (0..255 units squared) is at most ``tol`` times the mean per-channel weighted variance of the colours.
    An empty cluster takes the colour farthest from its centroid.
    Grey (C == 1, at most 256 distinct levels) is solved exactly instead: 1-D K-Means has a global optimum
    that dynamic programming finds, and the seed does not matter.
    Large k (from 512, see `_LARGE_K`): the start is a bisecting split of the colours (`_split`; RGBA's warmed
    up on their 6-bit level, `_warm_colours`), then at
    most 20 Lloyd updates whose assignments are k-d tree queries (scipy, imported only then; RGBA's levels
    over-relaxed, mostly on a sample where one is light enough: `_fit_large`); the seed does not matter
    either. progress(done, total), if given, is called after each split round and update.
    clusters: an optional (M,) integer array (int32 will do) that receives each colour's cluster at the end of
    the fit (its nearest centroid or close to it: a guess `nearest` can start from), where the fit has one
    (K-Means from restarts, on the colours or the histograms); elsewhere (k = 1, grey, large k) it is left as
    given.
    others: a list that receives (centroids, J over the returned's J - 1, on the last level fitted) of up to
    `_OTHERS_RUNS` more restarts, each finished as the one returned (which stays the same): local optima of
    about the same J whose labels can cost the codec differently (rdo picks among them, see kmq.api._rdo).
    Only where the fit makes restarts and their climb is cheap enough (`_OTHERS_WORK`); else left empty.
    stand_in: makes the restarts' stand-in on a histogram level (see `_climb`; `_thinned` where not given).
    """
    m = colors.shape[0]
    if k == 1:
        w = counts.astype(np.float64)
        return (np.einsum("m,mc->c", w, colors.astype(np.float64)) / w.sum())[None, :]
    if colors.shape[1] == 1:
        return _kmeans_1d(colors[:, 0], counts, k)
    # The colours as float points (40 bytes each for RGBA) only where they are clustered themselves: above
    # _POLISH_MAX the histograms do all the work (12 MP RGBA photo: 4.5 M colours, 0.2 GB spared).
    pts = _Points(colors, counts, colors) if m <= _POLISH_MAX else None
    # In a thread of its own for many colours, while the histograms are made (12 MP photos: 5-11 ms).
    variance = (parallel.later if m >= _VARIANCE_APART else _now)(lambda: _variance(colors, counts))
    if k >= _LARGE_K:
        tol_abs = float(tol * variance().mean())
        # Over a histogram (`_large_k_levels`) when the colours are many: an update queries every point.
        if pts is None:
            fine, warm = _large_k_levels(colors, counts, k)
        else:
            fine, warm = pts, _warm_colours(colors, counts, k)
        if fine.m < 4 * k:  # too few bins to place k centroids well
            fine, warm = _Points(colors, counts, colors), None
        # The colours start from their own bin's centroid and bounds (`_inherited`), not a query each.
        parent = warm.inverse if warm is not None and fine is pts else None
        return _fit_large(fine, k, max_iter, tol_abs, progress, warm, parent=parent)
    rng = np.random.default_rng(seed)
    climbed = None
    if ((m > (_COARSE_ABOVE if colors.shape[1] < 4 else _COARSE_ABOVE_RGBA) or m * k > _COARSE_WORK)
            and not _flat_ground(colors, counts, k)):
        # RGBA with varying alpha: a fourth channel multiplies the bins, so the restarts' level is a bit
        # coarser (2**16 cells) and Lloyd climbs one more level.
        first = (_COARSE_BITS,) if colors.shape[1] < 4 else (4, _COARSE_BITS)
        mixed = None
        if m > _POLISH_MAX and colors.shape[1] == 4:
            # Its 5-bit level has as many bins as an RGB photo's 6-bit one (12 MP: 42 000 and 23 000), so the
            # same rule stops there: finer levels, each made from the colours, only while the last is coarse
            # for k (12 MP photo at K=16: J +0.03 %, 0.3 s less).
            levels = _rgba_levels(lambda bits: _colour_histogram(colors, counts, bits), m, k, float(counts.sum()))
        else:
            levels = _pyramid(colors, counts, (*first, *_REFINE_BITS[:-1]))
            # The 7-bit level only where it can serve: on a large image where the 6-bit one is coarse for k;
            # otherwise unless the 6-bit level already has half as many bins as colours, when the 7-bit one
            # (at least as many) would be skipped below. The 256x256 astronaut is such a case, and its 7-bit
            # table of 2**21 bins was a fifth of the fit at K=16 (smooth tiles of few hues still use it).
            # Nor is it built when its bins would be more than half the colours, so skipped: counting them
            # first costs 0.4 ms, building it ~5 ms (256x256 astronaut: 21 841 bins for 38 732 colours).
            # RGBA of many colours (a 0.5 MP photo under a smooth alpha: a colour for nearly every pixel) ends
            # on a level as fine for k as those after which RGB's polish is skipped (see `_ends_rgba`).
            rgba = colors.shape[1] == 4
            ends = _ends_rgba(levels, m, k) if rgba else None
            mixed = _mixed(levels[-1], colors, counts) if rgba and not ends else None
            if mixed is not None:
                ends = [*levels[:-1], mixed]
            finest = None if ends else _finest(colors, counts, k, levels[-1])
            if ends:
                levels = ends
            elif finest is not None:
                levels.append(finest)
        tol_abs = float(tol * variance().mean())
        # Nor are the colours polished from _POLISH_FINE_FROM when the finest level climbed is fine enough for k.
        polish = pts is not None and not (m > _POLISH_FINE_FROM and levels[-1].m >= _POLISH_FINE_BINS * k
                                          and levels[-1].m * 2 <= m)
        # Above _POLISH_MAX colours no polish follows, and the finest level (7 bits on a 2 MP RGBA photo
        # under a vignette: 612 000 bins) run to tol was two thirds of the CPU at K = 256; it ends as
        # `fit_histogram` ends its own from `_FINISH_ABOVE` (there 4.7 s -> 2.3 s of CPU, J -0.04 % to +0.34 %
        # on 2 MP photos and noise, see `_FINISH_WARM_TOL`). RGB too: 12 MP at K = 256, the noisy photo's
        # 7-bit level (284 000 bins) 7.7 -> 2.9 s of CPU, J +0.11 %; the astronaut 1.26 -> 0.83 s, J -0.18 %
        # (K = 128: 1.06 -> 0.98 s, J -0.27 %).
        last = _finish(colors.shape[1]) if pts is None and k > _FINISH_ABOVE else None
        if mixed is not None:  # (RGBA of many colours: the mixed level's finish stands for the polish)
            updates = _MIXED_UPDATES if _restarts(k) > 1 else _MIXED_UPDATES_ONE
            polish, last = False, (updates, _RELAX, _MOMENTUM)
        runs: list | None = None if others is None else []
        rerank, trials = 0, None
        if stand_in is None and pts is not None and colors.shape[1] == 4 and k <= _RERANKED_MAX_RGBA:
            stand_in, rerank = _rgba_stand_in, (0 if k <= _STAND_IN_MAX_RGBA else _RERANK_RGBA)
            trials = _PP_TRIALS_RGBA if k > _STAND_IN_MAX_RGBA else None
        noisy = (polish and colors.shape[1] == 3 and m <= _NOISY_MAX and m >= _NOISY_SHARE * float(counts.sum()))
        # (every level climbed: the mixed one may keep up to 2/3 of the colours, see `_MIXED_SHARE`)
        climbed = _climb(levels, math.inf if mixed is not None else m, k, rng, max_iter, tol_abs,
                         colours_follow=polish, last=last, others=runs,
                         stand_in=stand_in, ramp=_WARM_RAMP if colors.shape[1] == 4 else 0,
                         quick=_NOISY[:3] if noisy and _restarts(k) == 1 else None, release=True,
                         few_ties=pts is not None, brisk=_NOISY_LEVELS if noisy else None, rerank=rerank,
                         trials=trials)
        if climbed is not None:
            start, labels, prev = climbed
            # The colours themselves only polish what the histograms found: a bounded amount of work.
            if not polish:
                if clusters is not None:  # (in parts: no (M,) intp array beside it)
                    for s in range(0, clusters.shape[0], _CHUNK):
                        clusters[s:s + _CHUNK] = labels[prev.inverse[s:s + _CHUNK]]
                if others is not None:
                    others.extend((c, excess) for c, excess, _ in runs)
                return start
            full_iter = min(max_iter, max(2, _FULL_WORK // m))
            relax, momentum = 1.0, None
            if _restarts(k) == 1:
                full_iter = min(full_iter, _NOISY[3] if noisy else _RELAXED_ITER)
                relax, momentum = _RELAX, _MOMENTUM
            elif noisy:
                full_iter, relax, momentum = min(full_iter, _NOISY_POLISH), _RELAX, _MOMENTUM
            elif colors.shape[1] == 4 and (k >= _FAR_POLISH_FROM or m > _FAR_POLISH * prev.m):
                full_iter, relax, momentum = min(full_iter, _FAR_UPDATES), _RELAX, _MOMENTUM
            # The colours' labels from their bins', and the levels let go before the polish holds its own
            # bounds for every colour (0.5 MP under a soft alpha: 427 000 colours, the levels ~80 MB).
            labels, guesses = labels[prev.inverse], [lab[prev.inverse] for _, _, lab in runs or ()]
            del levels, prev, climbed
            centroids, inertia, labels = _hamerly(pts, start, full_iter, tol_abs, labels, relax, momentum)
            if others is not None:
                polished = [_hamerly(pts, c, full_iter, tol_abs, lab, relax, momentum)
                            for (c, _, _), lab in zip(runs, guesses)]
                others.extend((c, j / inertia - 1) for c, j, _ in polished)
            if clusters is not None:
                clusters[:] = labels
            return centroids
    if climbed is None:
        tol_abs = float(tol * variance().mean())
        on = pts or _Points(colors, counts, colors)
        bins = _ranked_on_bins(colors, counts, k)
        if others is None and bins is None:
            centroids, labels = _best_of_restarts(on, k, rng, _restarts(k), max_iter, tol_abs)
        else:  # the same first run as without others: _best_of_restarts', or the least J of those finished
            if bins is None:
                finished = _best_runs(on, k, rng, _restarts(k), max_iter, tol_abs, 1.0, _OTHERS_CLIMB)
            else:
                most = _RANKED_FINISH if others is None else max(_RANKED_FINISH, _OTHERS_CLIMB)
                finished = _best_runs(on, k, rng, _restarts(k) * _RANKED_MORE, max_iter, tol_abs, 1.0, most,
                                      ranked=bins)
                # the colours' J decides among the best _RANKED_FINISH ranked on the bins (a tie: the first)
                least = min(range(min(len(finished), _RANKED_FINISH)), key=lambda i: finished[i][1])
                finished.insert(0, finished.pop(least))
            if others is None:
                centroids, _, labels = finished[0]
                if clusters is not None:
                    clusters[:] = labels
                return centroids
            if _more(_restarts(k)):
                finished += _best_runs(on, k, rng, _more(_restarts(k)), max_iter, tol_abs, 1.0, _OTHERS_CLIMB,
                                       ranked=bins)
            centroids, inertia, labels = finished[0]
            others.extend((c, j / inertia - 1) for c, j, _ in _least(inertia, finished[1:]))
    if clusters is not None:
        clusters[:] = labels
    return centroids


# Above `_FINISH_ABOVE`, the finest level of RGBA over `_POLISH_MAX` colours (the one that ends in `_FINISH`'s
# over-relaxed updates) has its bins of under this share of the pixels merged per cell one bit coarser, as
# kmq.coreset merges its 6-bit level's. A smooth photo under a vignette has too few 6-bit bins for k, so its
# 7-bit level is climbed: chelsea upscaled to 12 MP at K = 256, 792 000 bins, 362 000 once merged, its 20
# updates 1.32 -> 0.45 s of CPU (compress 2.81 -> 2.11 s). J over chelsea, coffee, astronaut, grace_hopper
# under a vignette or random alpha at 0.75, 2 and 12 MP, K = 16-300 (88 files): 79 the same, 9 changed
# -0.03 to +0.07 % (mean +0.023 %), all under a vignette (chelsea and coffee).
_LIGHT_SHARE = 1e-6


def _rgba_levels(histogram: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], m: int, k: int,
                 n: float) -> list[_Points]:
    """The levels `fit` climbs for RGBA of m colours over `_POLISH_MAX` (n pixels): 4 and 5 bits, then 6 and
    7 while the last has under `_FINE_ENOUGH` bins per centroid, from K = 65 each with its light bins merged
    (`_merged`). histogram(bits): the histogram of the items (the colours, or bins standing for them)
    at `bits` per channel as `_colour_histogram` returns it, its inverse its own (`_merged` takes it over)."""
    levels = _levels(*histogram(_COARSE_BITS), _COARSE_BITS, (4, _COARSE_BITS))
    below = _LIGHT_SHARE * n if k > _FINISH_ABOVE else 0.0
    for bits in _REFINE_BITS:
        if levels[-1].m >= _FINE_ENOUGH * k:
            break
        levels.append(_merged(*histogram(bits), bits, below, _FINE_ENOUGH * k, m))
    return levels


def _merged(inverse: np.ndarray, ids: np.ndarray, w: np.ndarray, wx: np.ndarray, bits: int, below: float,
            enough: int, m: int) -> _Points:
    """The histogram level of m colours at `bits` per channel (inverse, ids, w, wx as `_colour_histogram`
    gives them; inverse is taken over), its bins of under `below` pixels merged per cell of bits - 1, unless
    it has under `enough` bins (then a level below the finest) or does not halve the colours: `_climb` skips
    such a level, and merged it would climb it (2 MP photos under a vignette or random alpha at K = 256: J
    -0.5 to -1 %, but 1.4x to 1.8x the CPU)."""
    light = w < below
    if enough <= ids.shape[0] <= m // 2 and light.any():
        # Odd keys for the bins kept, even ones for the cells the light bins merge into: all distinct.
        keys = ids << 1
        keys |= 1
        keys[light] = _coarser_keys(ids[light], bits, bits - 1, wx.shape[1]) << 1
        up, _, w, wx = _histogram(keys, w, wx)
        np.take(up, inverse, out=inverse)
    pts = _Points(wx / w[:, None], w, sums=wx)
    pts.inverse = _held(inverse)
    return pts


def _ends_rgba(levels: list[_Points], m: int, k: int) -> list[_Points] | None:
    """The levels `fit` climbs for m RGBA colours when it ends on one of its histogram `levels` (4 to 6
    bits) with no 7-bit level and no polish, else None: from `_POLISH_FINE_FROM` colours where the finest
    level that halves them has `_POLISH_FINE_BINS` bins per centroid, as the polish is skipped there.
    Their 7-bit level (bins not counted beforehand for 4 channels) rarely halves them, and the polish ran
    on every colour: flower.jpg at 860x580 under blurred-noise alpha, 427 000 colours, K = 16: the 7-bit
    level's 279 000 bins built and skipped, then up to 46 updates on the colours; the whole compress 0.75 ->
    0.48 s of CPU (RGB 0.19), J +0.005 %. On 8 RGBA photos of 0.27-0.5 MP at K = 16 and 32 (blurred noise,
    vignettes, random alpha), J +0.00 to +0.17 %."""
    if m <= _POLISH_FINE_FROM:
        return None
    halving = list(itertools.takewhile(lambda level: level.m * 2 <= m, levels))
    return halving if halving and halving[-1].m >= _POLISH_FINE_BINS * k else None


# RGBA of more colours than this (and up to `_POLISH_MAX`) where `_ends_rgba` does not apply ends on its 6-bit
# level with its colours of `_HEAVY` pixels or more apart (`_mixed`), in `_MIXED_UPDATES` momentum updates (as
# the polish's, `_MOMENTUM`; with several restarts, one run), instead of a 7-bit level (rarely halving the
# colours, so skipped after being built) and a polish on every colour. A 0.5 MP photo under a soft alpha has
# a colour for nearly every pixel (coffee at 860x580: 467 000, its RGB 140 000), its 6-bit level 134 000 bins:
# the polish re-measured 15-37 % of the 467 000 colours an update (0.5 s of 1.0 at K = 256; RGB's whole
# compress 0.36 s). On 10 such photos (0.27-0.7 MP, soft, smooth and vignette alphas) at K = 64-511 the
# 6-bit level alone ended up to +0.6 % (a vignette's near-opaque middle: heavy colours in straddling bins);
# with heavy colours apart, J -0.8 % to +0.16 % against the polish (see docs/PERFORMANCE.md, round 34).
# 12 updates with several restarts too, as with one (round 35: 20 -> 12 at K = 64-128, J +0.00 to +0.05 %,
# 0.02-0.1 s less; 8 with one run up to +0.38 %).
# Round 39 took it down to 150 000 colours with several restarts (below, the climb went on to the 6-bit level run
# to tol, then a plain polish of every colour to tol: 33 updates over 192 000 colours, grace_hopper at 0.25 MP under
# blurred noise, K = 64, 0.24 s of a 0.47 s compress; RGB's twin 0.19 s in all), there in 30 updates; round 48
# there in 12 and with one run too (K >= 196: 5 updates over up to 200 000 colours, 0.17 s of a 0.45 s compress
# at 0.2 MP under random alpha, K = 256), and where the level keeps up to 2/3 of the colours (`_MIXED_SHARE`).
# The 27 cells of china.jpg, flower.jpg and grace_hopper.jpg at 0.2 MP under random, blurred-noise and vignette
# alphas at K = 16/64/256: J +0.07 % on average, worst +0.55 % (grace_hopper random, K = 256), CPU 0.85x.
_MIXED_FROM = 150_000
_HEAVY = 4
# Round 49: 8 with several restarts too (K <= 128; 12 momentum updates over ~110 000 points, 15 000-38 000 of
# them re-measured in each, were 0.18 s of a 0.69 s compress at K = 64, grace_hopper at 0.3 MP under blurred noise).
_MIXED_UPDATES = 8
# The mixed level stands in for the colours where it has at most 1/_MIXED_SHARE of them (a 0.2 MP photo under
# random alpha: 175 000 colours, its 6-bit level 87 000 bins and 700 colours of 4 pixels or more, just over half).
_MIXED_SHARE = 1.5
# ... and with one run (K >= 196), where the level replaces a polish of 5 updates over every colour, in this many
# (round 48: the 27 cells above at 0.2-0.5 MP, K = 256, against 12: 5 J +0.38 % on average (up to +0.81 %), 8
# +0.15 % (up to +0.38 %), CPU 0.75x / 0.87x).
_MIXED_UPDATES_ONE = 8


def _mixed(six: _Points, colors: np.ndarray, counts: np.ndarray) -> _Points | None:
    """The level `fit` ends on for RGBA of many colours, or None: the 6-bit level six with every colour of
    `_HEAVY` pixels or more a point of its own (its bin keeps the rest), where that leaves at most
    1/`_MIXED_SHARE` of the colours."""
    m = colors.shape[0]
    if m <= _MIXED_FROM or six.m * _MIXED_SHARE > m:
        return None
    heavy = np.flatnonzero(counts >= _HEAVY)
    if (six.m + heavy.shape[0]) * _MIXED_SHARE > m:
        return None
    bins = six.inverse.take(heavy)
    hw = counts.take(heavy).astype(np.float64)
    hx = colors.take(heavy, axis=0) * hw[:, None]
    # The bins' exact integer sums less their heavy colours' (exact in float64 too).
    w = six.w - np.bincount(bins, weights=hw, minlength=six.m)
    sums = np.stack([wx - np.bincount(bins, weights=hx[:, c], minlength=six.m) for c, wx in enumerate(six.wx)],
                    axis=1)
    keep = w > 0  # a bin of heavy colours only is gone
    place = np.cumsum(keep) - 1
    kept = int(place[-1]) + 1
    w, sums = np.concatenate((w[keep], hw)), np.concatenate((sums[keep], hx))
    pts = _Points(sums / w[:, None], w, sums=sums)
    inverse = place.take(six.inverse)
    inverse[heavy] = np.arange(kept, kept + heavy.shape[0])
    pts.inverse = _held(inverse)
    return pts


def _finest(colors: np.ndarray, counts: np.ndarray, k: int, six: _Points) -> _Points | _Pending | None:
    """The 7-bit level of `fit` for M colours whose 6-bit level is `six`, or None (see there)."""
    m = colors.shape[0]
    if m > _POLISH_MAX:
        return _coarse(colors, counts, _REFINE_BITS[-1]) if six.m < _FINE_ENOUGH * k else None
    if six.m * 2 > m:
        return None
    if colors.shape[1] > 3:
        # Counted first, as RGB's are, but by 6-bit bin (`_occupied_below`): built, then skipped by `_climb` for
        # not halving the colours, it was 0.03 s of a 0.8 s fit (grace_hopper at 0.5 MP under blurred noise,
        # 306 000 colours: 232 000 7-bit bins).
        if _occupied_below(colors, six) * 2 > m:
            return None
        return _coarse(colors, counts, _REFINE_BITS[-1])
    bins = _occupied(colors, _REFINE_BITS[-1])
    if bins * 2 > m:
        return None
    # Built in a thread while the restarts run on the coarser levels, as it is climbed only after them (the
    # detailed 12 MP photo at K = 16: ~0.035 s of a 0.2 s fit).
    return _Pending(bins, lambda: _coarse(colors, counts, _REFINE_BITS[-1]))


class _Pending:
    """A histogram level of m bins being built (`parallel.later`): `_climb` waits for it only once it needs
    its points."""

    def __init__(self, m: int, build: Callable[[], _Points]) -> None:
        self.m = m
        self.get = parallel.later(build)


def _ready(level: _Points | _Pending) -> _Points:
    return level.get() if isinstance(level, _Pending) else level


def _climb(levels: list[_Points | _Pending], m: float, k: int, rng: np.random.Generator, max_iter: int, tol_abs: float,
           colours_follow: bool = False, last: tuple[int, float] | None = None,
           stand_in: Callable[[_Points], _Points | None] | None = None, others: list | None = None,
           ramp: int = 0, quick: tuple[int, int, int] | None = None, release: bool = False,
           few_ties: bool = False, brisk: tuple[int, int] | None = None, rerank: int = 0,
           trials: int | None = None) -> tuple[np.ndarray, np.ndarray, _Points] | None:
    """K-Means up the histogram `levels` (coarse to fine; each level's ``inverse`` maps the same items to
    its bins) of m colours: restarts on one level, then Lloyd on each finer one from the labels of the
    level above. Returns (centroids, the last level's labels, that level), or None when no level is both
    fine enough for k and coarse enough to save work over the m colours themselves.

    The restarts run on the coarsest level with more than 4 bins per centroid that still halves the
    colours (seeded and ranked on its `_thinned` stand-in where it has one). A photo of few hues (a smooth
    256x256 tile: 40 000 colours in under 4k 5-bit bins at K=256) used to fall back to restarts on every
    colour, 4 s instead of 0.3.

    With one run (large k) and the colours' own Lloyd to follow (colours_follow), every histogram level only
    warms up the next one, which moves the centroids by more than that level's tail of small moves would
    have (256x256 photo, K=256: the colours took 33 updates after a fully converged 6-bit level, 36 after
    one stopped early), so those levels stop at a looser tolerance; the colours keep `tol`. So do RGBA's with
    several restarts from `_GROUPED_FROM` centroids (`_TIES_WARM_TOL`); where the last level ends the fit
    there, each tied run stops there at that tol too and only the best goes on to `tol`.
    last: (updates, relax[, momentum]) for the finest level when no polish follows (RGBA over `_POLISH_MAX`
    colours, or its `_mixed` level, see `fit`): it ends in that many over-relaxed updates (with momentum, as
    `_hamerly`'s), the levels below at `_FINISH_WARM_TOL` with one run.
    stand_in: makes the restarts' level's stand-in, or None (`_thinned` where not given).
    others: a list that receives (centroids, J / the best's J - 1, labels) on the last level of the other runs worth
    keeping (`_least`; see `fit`; none where climbing them would cost over `_OTHERS_WORK`); the run returned
    stays the one returned without it.
    ramp: with one run, the levels between the restarts' and the last run at most this many updates, the first
    over-relaxed and the rest with momentum (`_MOMENTUM`), to their tolerance (`fit`'s RGBA, `_WARM_RAMP`).
    quick: with one run, (k-means++'s candidates per step, the updates of the restarts' level and those up to the
    last, the last level's updates), each level's first over-relaxed and the rest with momentum (`_NOISY`).
    release: the levels are the caller's own, read no more: each one's ``inverse`` but the returned level's is
    let go once the climb has what it needs of it (`fit`).
    few_ties: where RGBA's levels warm up loosely (`fit` up to `_POLISH_MAX` colours), at most `_TIE_RUNS_RGBA` near
    ties climb (with others too, the run returned is the best of those), each one's levels below the last in `ramp`
    updates as with one run.
    brisk: with several restarts, (the updates of each chosen run on the restarts' level, those on each finer
    level), each level's first over-relaxed and the rest with momentum, instead of plain Lloyd to tol
    (`_NOISY_LEVELS`).
    rerank: with a stand-in, its best this many runs re-ranked on the restarts' level (see `_best_runs`).
    trials: k-means++'s candidates per step of the restarts (see `_best_runs`).
    """
    restarts = _restarts(k)
    warm = tol_abs * (_LEVEL_TOL if restarts > 1 else _WARM_TOL if colours_follow else
                      _FINISH_WARM_TOL if last else _LEVEL_TOL)
    at = next((i for i, level in enumerate(levels) if level.m > 4 * k), len(levels))
    if at == len(levels) or levels[at].m * 2 > m:
        return None
    coarse = _ready(levels[at])
    # Restarts that tie on the coarse level can end apart by more than the coarse level shows (chelsea
    # upscaled to 12 MP, K=16, seed 0: three runs within 0.06 % there ended 1.0171x, 1.0002x and 1.0004x
    # scikit-learn's J), so near ties all climb and the finest level decides (RGBA's: among those still near
    # on the level before it, `_EARLY_NEAR`).
    ties: list[int] = []
    loose = restarts > 1 and k >= _GROUPED_FROM and coarse.x.shape[1] == 4
    # RGBA up to _POLISH_MAX colours (`fit`): every level between the restarts' and the last ramped, and near ties
    # climb the last only while near on the one before (see `_WARM_RAMP`).
    every = few_ties and ramp > 0 and coarse.x.shape[1] == 4
    few_ties = few_ties and loose
    tie_runs = _TIE_RUNS_RGBA if few_ties else _TIE_RUNS
    if others is not None:
        top = max([coarse.m, *(f.m for f in levels[at + 1:] if f.m * 2 <= m)])
        if (m if colours_follow else top) * k > _OTHERS_WORK:
            others = None
    near, most = (_TIE_NEAR, tie_runs) if others is None else (1.0, _OTHERS_CLIMB)
    # (a caller's stand-in that keeps the level whole leaves it to `_thinned`, as without one)
    # (one quick run seeds on fit's own stand-in, a caller's or not: a search's fit of K stays fit's own there)
    stand = (((stand_in and stand_in(coarse)) or _thinned(coarse)) if restarts > 1 else
             _thinned(coarse) if quick else None)
    brisk = brisk if restarts > 1 else None
    runs = _best_runs(coarse, k, rng, restarts, max_iter, warm, near, most, stand, ties=ties,
                      quick=quick[:2] if quick and restarts == 1 else None, brisk=brisk and brisk[0], rerank=rerank,
                      trials=trials)
    ties[0] = min(ties[0], tie_runs)  # (with others, as many runs as without them decide)
    more = _more(restarts) if others is not None else 0
    if more:  # drawn after the fit's own restarts, which stay the same
        runs += _best_runs(coarse, k, rng, more, max_iter, warm, 1.0, _OTHERS_CLIMB, stand, rerank=rerank,
                           trials=trials)
    # Finer histograms in between: Lloyd's long tail of small moves is paid on fewer points. Each level
    # starts from the labels of the bin its points fell in one level up.
    finer_levels = [_ready(f) for f in itertools.takewhile(lambda f: f.m * 2 <= m, levels[at + 1:])]
    items = coarse.inverse.shape[0]
    # Each finer level's bins' bins one level up, through some colour of each finer bin: all the climb reads
    # of the coarser levels' inverses, which are then let go (48 MP noisy photo: 4.5 M colours, 18 MB each)
    # while the finest level is climbed.
    chain = [coarse, *finer_levels]
    ups = []
    for up_level, finer in zip(chain, finer_levels):
        first = np.empty(finer.m, dtype=np.intp)
        for s in range(0, items, _CHUNK):  # (without an (M,) arange)
            first[finer.inverse[s:s + _CHUNK]] = np.arange(s, min(s + _CHUNK, items))
        ups.append(up_level.inverse[first])
    if release:
        for level in levels:
            if isinstance(level, _Points) and level is not chain[-1]:
                level.inverse = None
    # Near ties on a last level run to tol: each run first to the loose tol, the best of them then on to tol.
    decide = (loose and not colours_follow and last is None and others is None and ties[0] > 1
              and finer_levels)
    several = few_ties and ties[0] > 1

    def up(i: int, start: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """Lloyd on finer level i from the labels of the coarser level above it."""
        finer, guess = finer_levels[i], labels[ups[i]]
        if quick and restarts == 1:
            updates = quick[2] if i == len(finer_levels) - 1 else quick[1]
            return _hamerly(finer, start, min(max_iter, updates), warm, guess, _RELAX, _MOMENTUM)
        if brisk:
            return _hamerly(finer, start, min(max_iter, brisk[1]), warm, guess, _RELAX, _MOMENTUM)
        if last is not None and i == len(finer_levels) - 1:
            return _hamerly(finer, start, min(max_iter, last[0]), tol_abs, guess, last[1],
                            last[2] if len(last) > 2 else None)
        if ramp and (restarts == 1 or several or every) and i < len(finer_levels) - 1:  # (RGBA: `_WARM_RAMP`)
            return _hamerly(finer, start, min(max_iter, ramp), warm, guess, _RELAX, _MOMENTUM)
        if loose and (colours_follow or decide or i < len(finer_levels) - 1):  # (RGBA: warms up what follows)
            return _hamerly(finer, start, max_iter, tol_abs * _TIES_WARM_TOL, guess)
        return _hamerly(finer, start, max_iter, warm, guess)

    # RGBA's near ties climb the last level, the dearest (a 6-bit level of ~200,000 bins, or the mixed one's
    # finish), only while still within _EARLY_NEAR of the best on the level before it: of 20 fits with ties there
    # (china, flower, grace_hopper at 0.15-4 MP under 3 alphas, K = 32-128), a run that far behind was never
    # the best on the last level, while runs 0.03-0.28 % behind were in 6.
    early = (loose or every) and others is None and ties[0] > 1 and len(finer_levels) > 1
    stop = len(finer_levels) - 1 if early else len(finer_levels)
    climbed = []
    for start, inertia, labels in runs[:ties[0] if early else len(runs)]:
        for i in range(stop):
            start, inertia, labels = up(i, start, labels)
        climbed.append((start, inertia, labels))
    if early:
        least = min(inertia for _, inertia, _ in climbed)
        climbed = [up(stop, start, labels) if inertia <= least * (1 + _EARLY_NEAR) else (start, math.inf, labels)
                   for start, inertia, labels in climbed]
    # a tie keeps the better-ranked run; the runs past the near ties only serve `others`
    best = None
    for run, (start, inertia, labels) in enumerate(climbed[:ties[0]]):
        if best is None or inertia < best[1]:
            best = (start, inertia, labels, run)
    prev = finer_levels[-1] if finer_levels else coarse
    if decide:
        best = (*_hamerly(prev, best[0], max_iter, warm, best[2]), best[3])
    if others is not None:
        # (the bins' inertia differs from the colours' J by about the same within-bin sum for every run)
        others.extend((c, j / best[1] - 1, lab) for c, j, lab in
                      _least(best[1], [c for i, c in enumerate(climbed) if i != best[3]]))
    return best[0], best[2], prev


def fit_histogram(ids: np.ndarray, counts: np.ndarray, sums: np.ndarray, bits: int, k: int, *,
                  variance: np.ndarray, seed: int = 0, max_iter: int = 300, tol: float = 1e-4,
                  last: tuple[int, float] | None = None,
                  stand_in: Callable[[_Points], _Points | None] | None = None,
                  coarse: tuple[int, ...] | None = None) -> np.ndarray:
    """`fit` of an image given only its histogram at `bits` per channel: ids (B,) the occupied bins
    ascending (channel 0's bits most significant), counts (B,) their pixels, sums (B, C) the exact sums of
    their pixels' values; variance (C,) the pixels' per-channel variance (for tol).

    It runs exactly as `fit` runs above `_POLISH_MAX` colours: restarts and Lloyd on the 4- (RGBA) and
    5-bit histograms, then this one only where the 5-bit one has fewer than `_FINE_ENOUGH` bins per
    centroid. Where `fit` would stop at or before `bits` too (its colours over `_POLISH_MAX` and twice the
    bins), the levels are the same sums merged the same way, so the centroids are the same, bit for bit.
    Requires k < `_LARGE_K` and B >= `_FINE_ENOUGH` k (the finest level `fit` could want).
    last: (updates, relax) to end on this histogram itself, when it is a level, with at most that many
    over-relaxed updates (see `_hamerly`) after the coarser levels only warmed it up, as `fit` polishes
    the colours with one run: no longer the same centroids as `fit`.
    stand_in: makes the restarts' level's stand-in (see `_climb`), where `fit` has `_thinned`.
    coarse: the bits of the levels below this one, where not fit's (4 and 5 for RGBA, 5 for RGB).
    """
    b, channels = sums.shape
    if k == 1:  # as fit: the mean, of exact integer sums
        return (sums.sum(axis=0).astype(np.float64) / float(counts.sum()))[None, :]
    first = coarse or ((_COARSE_BITS,) if channels < 4 else (4, _COARSE_BITS))
    w = counts.astype(np.float64)
    wx = sums.astype(np.float64)
    levels = _levels(np.arange(b), ids, w, wx, bits, first)
    tol_abs = float(tol * variance.mean())
    rng = np.random.default_rng(seed)
    if levels[-1].m < _FINE_ENOUGH * k:
        top = _Points(wx / w[:, None], w, sums=wx)
        if last is not None:
            climbed = _climb(levels, math.inf, k, rng, max_iter, tol_abs, colours_follow=True, stand_in=stand_in)
            if climbed is not None:
                start, labels, prev = climbed
                return _hamerly(top, start, min(max_iter, last[0]), tol_abs, labels[prev.inverse], *last[1:])[0]
        top.inverse = np.arange(b)
        levels.append(top)
    # Above K = 64 (last given) a level that does not halve the bins is skipped, as fit skips one that does
    # not halve the colours: on 1 MP of RGBA noise at K = 128 the 5-bit level's 630 000 bins ran Lloyd to
    # tol, 70 s of CPU where the distinct colours took 9.7 s (review). Photos' 5-bit levels halve theirs.
    climbed = _climb(levels, b, k, rng, max_iter, tol_abs, stand_in=stand_in) if last is not None else None
    if climbed is None:
        climbed = _climb(levels, math.inf, k, rng, max_iter, tol_abs, stand_in=stand_in)
    assert climbed is not None  # the finest level has over 4 bins per centroid (B >= _FINE_ENOUGH k)
    return climbed[0]


def fit_fine(ids: np.ndarray, counts: np.ndarray, sums: np.ndarray, six: np.ndarray, k: int, *, colours: int,
             variance: np.ndarray, seed: int = 0, max_iter: int = 300, tol: float = 1e-4) -> np.ndarray:
    """`fit` of RGBA of more than `_POLISH_MAX` colours given only its histogram at 7 bits per channel, the
    same centroids bit for bit: ids (B,) the occupied bins ascending, counts (B,) and sums (B, 4) as in
    `fit_histogram`; six (B,) each bin's place among the 6-bit bins (ascending), which all hold some;
    colours, the image's number of distinct colours (fit's m, which decides the levels it climbs); variance
    (4,) as in fit_histogram. Requires 1 < k < `_LARGE_K`.

    fit's levels are histograms of the colours, of exact sums: the same from the 7-bit bins, which stand for
    the colours throughout (each level's inverse maps them as it maps the colours there; a level's bins hold
    whole bins of the finer ones, so `_climb` starts each level from the same labels)."""
    assert colours > _POLISH_MAX and 1 < k < _LARGE_K
    w = counts.astype(np.float64)
    wx = sums.astype(np.float64)
    b6 = int(six.max()) + 1
    # Integers below 2**53 summed as doubles: exact, as the colours' sums are.
    w6 = np.bincount(six, weights=w, minlength=b6)
    wx6 = np.stack([np.bincount(six, weights=wx[:, c], minlength=b6) for c in range(4)], 1)
    ids6 = np.empty(b6, dtype=ids.dtype)
    ids6[six] = _coarser_keys(ids, 7, 6, 4)

    def histogram(bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if bits == 7:
            return np.arange(ids.shape[0]), ids, w, wx
        if bits == 6:
            return six.astype(np.intp), ids6, w6, wx6
        up, coarse, cw, cwx = _histogram(_coarser_keys(ids6, 6, bits, 4), w6, wx6)
        return np.take(up, six), coarse, cw, cwx

    levels = _rgba_levels(histogram, colours, k, float(counts.sum()))
    rng = np.random.default_rng(seed)
    last = _finish(4) if k > _FINISH_ABOVE else None
    climbed = _climb(levels, colours, k, rng, max_iter, float(tol * variance.mean()), last=last)
    assert climbed is not None  # some level has over 4 bins per centroid and halves the colours (16 a 7-bit bin)
    return climbed[0]
