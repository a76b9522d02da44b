"""K-Means of a large RGBA image whose alpha varies, from a histogram of its pixels rather than from its
distinct colours, with every pixel still labelled by its exact nearest palette entry.

Why: such an image has a great many distinct colours (a 12 MP photo under an alpha vignette: 4.5 M), and
finding them exactly (`kmeans.distinct`: two ranking passes, alpha masks, counting and writing each
colour) cost ~1.5 s of CPU where the same photo's 0.49 M RGB colours cost 0.5. Yet above `_POLISH_MAX`
colours `kmeans.fit` never looks at the colours themselves, only at their histograms of at most 6 bits
per channel when that one has `_FINE_ENOUGH` bins per centroid. That histogram is made here straight from
the pixels: 6 bits of each channel are a 24-bit key, numbered through a table over the key space as RGB
colours are (`kmeans._BitRank`), and each bin's exact pixel count and channel sums come from bincounts.
Where fit would stop at the 5-bit level (k up to `EXACT_FIT_MAX`, that level fine enough for k), the
histogram is made at 5 bits instead: the same sums, far fewer bins to count.
`kmeans.fit_histogram` then runs fit's own steps on it, so up to `EXACT_FIT_MAX` the palette is the one
the exact path finds whenever that one stops at 6 bits or before (its colours over `_POLISH_MAX` and over
twice the bins), unless k <= `STAND_IN_MAX` and its 4-bit level has over `kmeans._THIN_FROM` bins: the
restarts are then seeded and ranked on a stand-in (`_stand_in`), as RGB's are (`kmeans._thinned`). Above,
the 6-bit level, its light bins merged (`_light_merged`), ends in a few over-relaxed updates (J up to
~0.4 % above the whole level run to tol).
Where the 6-bit histogram has under `_FINE_ENOUGH` bins per centroid (a smooth photo: chelsea upscaled to
12 MP under a vignette has 118 000, for 256 000 at K = 256), fit climbs to its 7-bit level. That histogram
is made too (`Histogram.fine`): each pixel's 6-bit bin and bit 1 of each channel number its 7-bit bin, and
its bit 0 its colour within that bin, which counts the distinct colours (fit compares its levels with their
number). `kmeans.fit_fine` then climbs fit's own levels, the same palette as through the distinct colours
at any k, and the pixels are labelled by 7-bit cell. That photo at K = 256, fresh processes: 2.2-2.5 s of
CPU -> 1.7 (RGB 0.76), peak memory 544 MB -> 412 MB, the same file.
From `kmeans._LARGE_K` to `LARGE_MAX` fit splits and runs k-d tree Lloyd on its 6-bit or 7-bit level (the
7-bit one warmed up on the 6-bit one); those levels are made here too (`kmeans.fit_large`: the same
centroids), and the pixels are labelled as below: the same file, without the distinct colours (12 MP photos
under a vignette at K = 512: 3.5 to 4.5 M colours).
The labels are exact: a whole bin takes an entry when every value of its cell (4 or 8 per channel) is nearer
that entry than any other; the pixels of the other bins measure only the entries that can be nearest to
some value of their cell (2 to 8 for most at K = 256), and J comes from exact integer sums, so it is the
labelling's J to the last bit.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from . import kmeans, parallel
from .kmeans import _BitRank, _variance_of

# Bits kept per channel: 4 x 6 = 24-bit keys, whose table of flags (16 MB) and bit ranks (3 MB) are the
# ones RGB images use.
BITS = 6
# Or 5 where fit needs no finer level (`coarse_bins`): a 1 MB table of flags and a 4 MB one of ranks, and
# bincounts over far fewer bins (12 MP photo under random alpha: 526 000 6-bit bins, 73 000 5-bit ones;
# Histogram 0.43 s of CPU -> 0.27).
COARSE_BITS = 5
# From this many pixels on (varying alpha, k <= K_MAX), compress takes this path when the histogram has
# the bins fit needs (`min_bins`). Below, the distinct colours are often under kmeans._POLISH_MAX, where fit
# also polishes on them (640x427 photo: J 0.05 % lower than from the histogram, 200x200 noise 0.8 %).
FROM = 1 << 20
# Up to this k (below kmeans._LARGE_K, where fit turns to a split and k-d trees). The pixels of bins not
# labelled whole measure only the entries that can be nearest to some value of their bin's cell.
K_MAX = kmeans._LARGE_K - 1
# And from kmeans._LARGE_K up to this k (the cell searches' int32 sums hold entry indices of up to 12 bits):
# fit's split and k-d tree Lloyd on the level it takes, made here from the pixels (`kmeans.fit_large`), the
# same centroids; the pixels labelled by cell as below. The distinct colours cost more than the fit there:
# 12 MP photos under a vignette at K = 512, their 3.5 to 4.5 M colours found and labelled by a k-d tree,
# ~6 s of CPU (RGB's whole compress ~3 s).
LARGE_MAX = 1 << 12
# Up to this k the fit is `kmeans.fit`'s on the exact path, bit for bit. Above, with fewer restarts, its
# Lloyd on the 6-bit level runs to tol (12 MP photo under a vignette at K = 256: 2.9 s of CPU, twice the
# whole RGB compress), so that level ends with `kmeans._FINISH_RGBA`'s few momentum updates instead, as fit's
# own finest level of RGBA without a polish does (the measurements are there).
EXACT_FIT_MAX = kmeans._FINISH_ABOVE
# Pixels per chunk of the per-pixel passes: the temporaries stay in cache. At most 2**16 (`_SQUARES`).
_CHUNK = 1 << 16
# About 2**this pixels are sampled before the passes over all of them (see `Histogram`): enough to see the
# 64 000 bins K = 64 needs on the 12 MP photos that have them (2**18 showed 62 000 of a smooth one's 115 000).
_SAMPLE_BITS = 19
# Pixels per bincount: each makes B counts, so runs are at least as long as there are bins. Short runs keep
# each run's bins and weights (8 bytes a pixel each) in the cache: 2**21 -> 2**17 took the 12 MP photos'
# Histogram from 0.30 to 0.22 s of CPU (coffee under random alpha, 73 000 5-bit bins) and from 0.53 to 0.38
# (526 000 6-bit bins, its runs as long as those).
_RUN = 1 << 17
# np.take's mode for gathers into an `out` with indices always in range: under the default "raise" numpy
# gathers into a buffer and copies it to out; "clip" writes straight to out (12 MP photo under a vignette:
# Histogram 0.52 s of CPU -> 0.47).
_INTO = "clip"
# Each pixel's low 2 bits of two channels packed in one float64 weight, so that one bincount sums both:
# a run of at most 2**24 pixels sums each to under 3 x 2**24 < 2**26, and 52 bits stay exact in a double.
# (At 5 bits, low 3 bits: at most 2**20 bins, so runs of at most `_SPAN` pixels sum to under 7 x 2**23.)
_PACK = 26
# Pixels whose packed sums `Histogram` adds up as doubles before unpacking them, or one run if longer: at
# 5 bits they sum to under 7 x 2**23 < 2**26 too.
_SPAN = 1 << 23
# The 7-bit pass's low sums are of bit 0 alone, at most 1 a pixel: its packed sums stay exact over runs of
# this many pixels (under 2**26 each), so a 12 MP image's are unpacked once, after the pass, where at `_SPAN`
# they were unpacked during it too, with the (B, 4) low sums (58 MB at 3.66 M bins) held beside the pass's
# runs and packed sums.
_FINE_SPAN = 1 << 25
# Up to these many pixels `_count` counts in int32 (its low sums are at most 7 a pixel) and `Fine` keeps its
# sums in uint32 (at most 255 a pixel).
_NARROW_COUNTS = int(np.iinfo(np.int32).max) // 7
_NARROW_SUMS = int(np.iinfo(np.uint32).max) // 255
# From this many 7-bit bins `Histogram._finer` counts them in one thread: a thread's counts, packed sums and
# bincount are ~4 doubles a bin (a 12 MP photo under random alpha: 2.6 M 7-bit bins, 85 MB for a second
# thread, the peak of its Histogram), for a pass of ~0.3 s of CPU. (The 6-bit counts stay in threads: their
# bins are fewer, and the 7-bit level, where there is one, is made after them.)
_SERIAL_BINS = 1 << 20
# ... and from this many pixels, whatever the bins: a 48 MP image's per-pixel arrays (pixels, index, labels
# 480 MB) leave no room for a second thread's (`_count`).
_SERIAL_PIXELS = 1 << 25
# From this many pixels `Histogram` keeps no index of each pixel's 6-bit or 5-bit bin: `label` numbers
# each chunk's pixels again (two look-ups and a rank a pixel, ~0.5 s of CPU at 48 MP).
_INDEX_KEPT_BELOW = 1 << 25
_LABEL_NONE = np.uint16(0xFFFF)  # a bin whose pixels are labelled one by one (k <= K_MAX here)


@functools.cache
def _pair_tables(bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tables over the 65536 values of a pixel's first two channels (or last two) read as one big-endian
    uint16 (hi, lo): that pair's part of the key of `bits` per channel, for the first and the last pair; its
    low 8 - bits bits packed as `_PACK` says; and its squares, hi^2 << 32 | lo^2 (a chunk of 2**16 pixels
    sums each to under 255^2 x 2**16 < 2**32)."""
    v = np.arange(256, dtype=np.uint32)
    hi, lo = v[:, None], v[None, :]
    drop = 8 - bits
    first = (((hi >> drop) << (3 * bits)) | ((lo >> drop) << (2 * bits))).ravel()
    last = (((hi >> drop) << bits) | (lo >> drop)).ravel()
    below = (1 << drop) - 1
    low = (((hi & below).astype(np.float64) * 2.0 ** _PACK) + (lo & below)).ravel()
    squares = (((hi.astype(np.uint64) ** 2) << np.uint64(32)) | lo.astype(np.uint64) ** 2).ravel()
    return first, last, low, squares


def _count(n: int, b: int, number: Callable[[int, int, np.ndarray], None],
           weigh: Callable[[int, int, int, np.ndarray], None], serial: bool = False, widen: bool = True,
           span: int = _SPAN) -> tuple[np.ndarray, np.ndarray]:
    """(counts (b,) int64, low (b, 4) int64, or both int32 where not widen and n pixels allow): per bin, its
    pixels and the sums of their bits below the bin's, over n pixels in threads (one where serial).
    number(s, e, out) writes the bins of pixels s:e into out
    (intp); weigh(p, s, e, out) their low bits of channels 2p and 2p + 1, packed as `_PACK` says, into out
    (float64), whose packed sums stay exact over span pixels (`_SPAN`)."""

    # The counts and low sums (at most 7 a pixel, at 5 bits) in int32 while n pixels keep them so, int64
    # only once the parts' packed sums are let go (12 MP under random alpha: 2.6 M 7-bit bins, 21 MB less
    # at the Histogram's peak, in the threads' counts, and 42 MB less as the parts are added up).
    narrow = np.int32 if n <= _NARROW_COUNTS else np.int64

    def count(start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None, list[np.ndarray]]:
        counts = np.zeros(b, dtype=narrow)
        # Each pair's packed sums added up as doubles over runs (`_SPAN`) and unpacked once: unpacked run
        # by run (passes over B for each run) they cost as much as the bincounts at 6 bits. The last span's
        # are unpacked after the threads, into one array: a (B, 4) int64 per part was 80 MB each at 12 MP
        # under random alpha (2.5 M 7-bit bins), with under `_SPAN` pixels a part never needed.
        low = None
        packed = [np.zeros(b), np.zeros(b)]
        step = max(_RUN, b)

        def unpack() -> None:
            nonlocal low
            if low is None:
                low = np.zeros((b, 4), dtype=narrow)
            _unpacked_into(low, packed)

        # The run's bins as intp, which np.bincount would otherwise make of them for each of its three
        # calls (12 MP: 0.02 s of CPU); one pair's weights at a time.
        at = np.empty(min(step, stop - start), dtype=np.intp)
        weights = np.empty(at.shape[0], dtype=np.float64)
        summed = 0
        for r in range(start, stop, step):
            re = min(r + step, stop)
            if summed and summed + re - r > span:
                unpack()
                summed = 0
            summed += re - r
            for s in range(r, re, _CHUNK):
                e = min(s + _CHUNK, re)
                number(s, e, at[s - r:e - r])
            index = at[:re - r]
            counts += np.bincount(index, minlength=b)
            for p in range(2):
                for s in range(r, re, _CHUNK):
                    e = min(s + _CHUNK, re)
                    weigh(p, s, e, weights[s - r:e - r])
                packed[p] += np.bincount(index, weights=weights[:re - r], minlength=b)
        return counts, low, packed

    # From `_SERIAL_PIXELS` one part: a thread's counts, packed and low sums and runs are ~9 doubles a bin
    # (a 48 MP photo under random alpha: 1.4 M 6-bit bins, ~70 MB more at the Histogram's peak).
    serial = serial or n >= _SERIAL_PIXELS
    parts = [count(0, n)] if serial else parallel.map_parts(count, n)
    counts, low, _ = parts[0]
    if low is None:
        low = np.zeros((b, 4), dtype=narrow)
    for i, (more, more_low, packed) in enumerate(parts):
        if i:
            counts += more
            if more_low is not None:
                low += more_low
        _unpacked_into(low, packed)
        parts[i] = more = more_low = packed = None  # (its arrays freed as it is added)
    if not widen:
        return counts, low
    return counts.astype(np.int64, copy=False), low.astype(np.int64, copy=False)


def _unpacked_into(low: np.ndarray, packed: list[np.ndarray]) -> None:
    """low (B, 4) += the two pairs' packed sums (`_PACK`), which are then zeroed. A block of `_CHUNK` bins at
    a time: the temporaries stay in cache, where over every bin each was fresh memory (12 MP photo under
    random alpha: 3.65 M 7-bit bins, 29 MB a temporary; ~0.3 s of CPU for the two calls of its Histogram)."""
    b = low.shape[0]
    whole = np.empty(min(b, _CHUNK), dtype=np.int64)
    high = np.empty_like(whole)
    for p in range(2):
        for s in range(0, b, _CHUNK):
            e = min(s + _CHUNK, b)
            part = packed[p][s:e]
            w, h = whole[:e - s], high[:e - s]
            w[:] = part  # (exact: integers below 2**52)
            np.right_shift(w, _PACK, out=h)
            low[s:e, 2 * p] += h.astype(low.dtype, copy=False)
            w &= (1 << _PACK) - 1
            low[s:e, 2 * p + 1] += w.astype(low.dtype, copy=False)
            part[:] = 0.0


@functools.cache
def _fine_tables() -> tuple[np.ndarray, np.ndarray]:
    """Tables over the 65536 values of a pixel's first two channels (or last two) as in `_pair_tables`:
    that pair's part of a byte holding bit 1 of each channel (channel 0 first) in its high half and bit 0
    in its low half."""
    v = np.arange(256, dtype=np.uint8)
    hi, lo = v[:, None], v[None, :]
    first = (((hi >> 1) & 1) << 7) | (((lo >> 1) & 1) << 6) | ((hi & 1) << 3) | ((lo & 1) << 2)
    return first.ravel(), (first >> 2).ravel()


# Per pair of channels, each byte of `_fine_tables` as its two bits 0 packed in one weight (`_PACK`).
_ZERO_BITS = [((np.arange(256) >> (3 - 2 * p)) & 1) * 2.0 ** _PACK + ((np.arange(256) >> (2 - 2 * p)) & 1)
              for p in range(2)]
# `Histogram._finer` counts the distinct colours with a flag per (7-bit bin, bit 0 of each channel): at most
# this many flags (32 MB), or 4 a pixel where more (the bytes of `Histogram.index`); with more it leaves the
# image to the distinct colours. A 12 MP photo under a vignette: 792 000 7-bit bins, 12.7 M flags.
_FINE_FLAGS = 1 << 25


# `Histogram._finer` only where the sample of the pixels (2**19 to 2**20 of them) shows over this share of
# `kmeans._POLISH_MAX` colours: the photos under a vignette or random alpha (1.2 to 12 MP) showed 349 000 to
# 640 000, the posterized photo above 89 000 of its 89 000.
_FINE_SAMPLE = 0.25


def _seven(six: np.ndarray, low: np.ndarray) -> np.ndarray:
    """Pixels' 6-bit bins and their bytes of `_fine_tables` as 16 x bin + bit 1 of each channel (intp)."""
    key = six.astype(np.intp)
    key <<= 4
    key |= low >> 4
    return key


class Fine:
    """The 7-bit histogram of an image whose 6-bit one has too few bins: ids (B,) int32 its occupied 7-bit keys,
    counts (B,) as `Histogram`'s (but int32 up to `_NARROW_COUNTS` pixels), six (B,) int32 each one's 6-bit bin
    (in `Histogram.ids`); colours, the image's number of distinct colours (None: over `kmeans._POLISH_MAX`, not
    counted; see `Histogram._finer`). Its exact sums (`sums_at`, in dtype wide: uint32 up to 2**32 / 255 pixels,
    else int64) are its bins' corners times their counts plus low (B, 4), the sums of their pixels' bit 0, in
    the narrowest unsigned dtype their counts allow. The bins are in the order of `Histogram.index` (by 6-bit
    bin, then by bit 1 of each channel), rank and sums None; or, once sorted (`sort`), ids ascending, rank (B,)
    int32 the place here of each bin of `Histogram.index`, sums (B, 4) every bin's sums and low None."""

    def __init__(self, ids: np.ndarray, counts: np.ndarray, low: np.ndarray, six: np.ndarray, colours: int | None,
                 wide: np.dtype) -> None:
        self.ids, self.counts, self.low, self.six, self.colours, self.wide = ids, counts, low, six, colours, wide
        self.rank: np.ndarray | None = None
        self.sums: np.ndarray | None = None

    def sums_at(self, rows: np.ndarray) -> np.ndarray:
        """(m, 4) the exact sums of the bins rows (m,)."""
        if self.sums is not None:
            return self.sums[rows]
        counts = np.take(self.counts, rows).astype(self.wide, copy=False)
        ids = np.take(self.ids, rows)
        out = np.take(self.low, rows, axis=0).astype(self.wide)
        for c in range(4):
            corner = (ids >> (7 * (3 - c))) & 127
            corner <<= 1
            out[:, c] += corner.astype(self.wide, copy=False) * counts  # (at most 255 a pixel: within wide)
        return out

    def sort(self) -> None:
        """The bins in key order (ids ascending) with their sums, as `kmeans.fit_fine` and a fit on the whole
        level read them, and rank set; once."""
        if self.rank is not None:
            return
        b = self.ids.shape[0]
        order = np.argsort(self.ids, kind="stable")  # (unique keys) runs of them ascending: 0.05 s -> 0.014 at 12 MP
        rank = np.empty(b, dtype=np.int32)  # (int32 here and in six: 21 MB less at 2.6 M bins)
        rank[order] = np.arange(b, dtype=np.int32)  # (not intp: 15 MB less at the Histogram's peak)
        # One array made at a time, each old one freed before the next copy (12 MP under random alpha: 2.5 M
        # bins, 140 MB of copies at once).
        self.sums = self.sums_at(order)
        self.low = None
        self.ids = self.ids[order]
        self.counts = self.counts[order]
        self.six = self.six[order]
        self.rank = rank

    def placed(self, bins: np.ndarray) -> np.ndarray:
        """Bins of `Histogram.index` -> their rows here."""
        return bins if self.rank is None else np.take(self.rank, bins)


class Histogram:
    """The histogram of (N, 4) pixels at `bits` per channel and each pixel's bin: 6 bits, or 5 where a
    sample of the pixels already shows coarse_bins 5-bit bins (see `coarse_bins`).

    ids (B,) occupied keys ascending (channel 0's bits most significant); counts (B,) int64; sums (B, 4)
    int64, the exact sums of their pixels' values; square_sums (4,) Python ints, of the pixels' squared
    values per channel; index (N,) int32, each pixel's bin, or None from `_INDEX_KEPT_BELOW` pixels where no
    7-bit bins are made (number(s, e, out) then writes the bins of pixels s:e). With fewer than min_bins
    6-bit bins, the 7-bit histogram too (fine, see `_finer`; index then holds each pixel's 7-bit bin; sums
    uint32 up to 2**32 / 255 pixels), or ids is None and the rest is not made (bins is None too when a sample
    of the pixels already shows too few, even for 7 bits); fine is None otherwise."""

    def __init__(self, pixels: np.ndarray, *, min_bins: int = 0, coarse_bins: int = 0) -> None:
        self.fine: Fine | None = None
        pixels = np.ascontiguousarray(pixels)  # each pixel's 4 bytes are read as two 16-bit words
        n = pixels.shape[0]
        pairs = pixels.view(">u2").reshape(n, 2)
        # Not kept from `_INDEX_KEPT_BELOW` pixels where the 6-bit or 5-bit bins serve (`number` then gives
        # a chunk's bins): its 4 bytes a pixel (192 MB at 48 MP) were held through the fit and the labels.
        kept = n < _INDEX_KEPT_BELOW
        self.index: np.ndarray | None = np.empty(n, dtype=np.int32) if kept else None
        self.number: Callable[[int, int, np.ndarray], None] | None = None
        keys = self.index.view(np.uint32) if kept else None  # each pixel's key, then its bin in the same place
        # Every `step`-th pixel first (~2**19 of them, a few ms): when those already fill too few bins, so may
        # the image (graphics of a few colours under anti-aliased alpha), and the caller is told before the
        # passes over every pixel (12 MP: ~0.15 s). With enough, they are counted again in those passes.
        step = max(1, n >> _SAMPLE_BITS)
        sample = pixels[::step].view(">u2").reshape(-1, 2)

        def sampled(bits: int) -> tuple[np.ndarray, int]:
            first, last = _pair_tables(bits)[:2]
            seen = np.zeros(1 << (4 * bits), dtype=bool)
            seen[(np.take(first, sample[:, 0]) | np.take(last, sample[:, 1])).astype(np.intp)] = True
            return seen, int(np.count_nonzero(seen))

        # Above 2**16 bins asked for, a sample sees too few of them to judge: only that far.
        enough = min(min_bins, 1 << 16)
        self.bits = BITS
        if coarse_bins:
            seen, bins = sampled(COARSE_BITS)
            if bins >= coarse_bins:
                self.bits = COARSE_BITS
            # A 5-bit cell holds 16 6-bit ones: the 6-bit sample has too few too. The 7-bit histogram is not
            # tried either (looking at the 6-bit sample cost graphics under anti-aliased alpha at 12 MP, 121
            # 5-bit bins, 0.02 s of 0.21).
            elif bins << 4 < enough:
                self.bins, self.ids = None, None
                return
        def colourful() -> bool:
            """Whether the sample shows `_FINE_SAMPLE` x `_POLISH_MAX` colours, as `_finer` needs (~16 ms): a
            posterized photo under a vignette (chelsea at 12 MP, 5 bits of each colour channel: 89 000 colours)
            took two more passes over every pixel for nothing."""
            words = np.sort(np.ascontiguousarray(sample).view(np.uint32).reshape(-1))
            return 1 + np.count_nonzero(words[1:] != words[:-1]) >= _FINE_SAMPLE * kmeans._POLISH_MAX

        sparse = False  # the sample shows too few 6-bit bins: only the 7-bit histogram may serve (`_finer`)
        if self.bits == BITS:
            seen, bins = sampled(BITS)
            if min_bins and bins < enough:
                if bins << 4 < enough or not colourful():  # likewise, 16 7-bit cells a 6-bit one
                    self.bins, self.ids = None, None
                    return
                sparse = True
        first, last, low_bits, squares_of = _pair_tables(self.bits)

        def mark(start: int, stop: int) -> list[int]:
            squares = [0, 0, 0, 0]
            own = None if kept else np.empty(min(_CHUNK, stop - start), dtype=np.uint32)
            for s in range(start, stop, _CHUNK):
                e = min(s + _CHUNK, stop)
                key = keys[s:e] if kept else own[:e - s]
                for p, table in enumerate((first, last)):
                    pair = pairs[s:e, p].astype(np.intp)  # np.take would make this copy for each table
                    if p:
                        key |= np.take(table, pair)
                    else:
                        np.take(table, pair, out=key, mode=_INTO)
                    both = int(np.take(squares_of, pair).sum(dtype=np.uint64))
                    squares[2 * p] += both >> 32
                    squares[2 * p + 1] += both & 0xFFFFFFFF
                seen[key.astype(np.intp)] = True  # threads that set one flag both write True
            return squares

        # Integer sums of the parts: exact, so the same in any number of threads.
        squares = parallel.map_parts(mark, n)
        self.square_sums = [sum(part[c] for part in squares) for c in range(4)]
        # 2**20 5-bit keys: a 4 MB table of ranks, one look-up a pixel where bit counts take three (12 MP
        # photo under random alpha: 0.06 s of CPU -> 0.03).
        ranks = kmeans._TableRank(seen) if self.bits == COARSE_BITS else _BitRank(seen)
        self.bins = ranks.count
        full = self.bins >= min_bins and not sparse
        self.ids = np.flatnonzero(seen) if full or self.bits == BITS else None
        del seen
        if self.ids is None:  # too few bins for the caller: the counting pass is spared
            return

        def key_of(s: int, e: int) -> np.ndarray:  # the keys of pixels s:e (uint32), as mark makes them
            key = np.take(first, pairs[s:e, 0].astype(np.intp))
            key |= np.take(last, pairs[s:e, 1].astype(np.intp))
            return key

        if not full:
            if sparse or colourful():
                if not kept:  # the 7-bit bins are numbered through every pixel's key (`_finer`)
                    self.index = np.empty(n, dtype=np.int32)

                    def fill(start: int, stop: int) -> None:
                        for s in range(start, stop, _CHUNK):
                            e = min(s + _CHUNK, stop)
                            self.index[s:e] = key_of(s, e).view(np.int32)

                    parallel.map_parts(fill, n)
                self._finer(pairs, ranks, min_bins < kmeans._FINE_ENOUGH * kmeans._LARGE_K)
            else:
                self.ids = None
            return

        def number(s: int, e: int, out: np.ndarray) -> None:
            if kept:
                ranks.rank(keys[s:e], out)
                self.index[s:e] = out
            else:
                ranks.rank(key_of(s, e), out)

        def weigh(p: int, s: int, e: int, out: np.ndarray) -> None:
            np.take(low_bits, pairs[s:e, p], out=out, mode=_INTO)

        self.counts, self.sums = _count(n, self.bins, number, weigh)
        if not kept:
            self.number = number
        for c in range(4):  # a pixel's value is its bin's bits, shifted up, + its own low ones
            self.sums[:, c] += (self.cell(c) << (8 - self.bits)) * self.counts

    def _finer(self, pairs: np.ndarray, ranks: _BitRank, counted: bool = True) -> None:
        """Where the 6-bit bins are too few: each pixel's 6-bit bin (`index`), the 7-bit histogram and the
        number of distinct colours (`fine`, see `Fine`), and the 6-bit counts and sums as the 7-bit ones
        merged. ids becomes None where `kmeans.fit_fine` cannot stand for fit (`_POLISH_MAX` colours or
        fewer, or more flags than `_FINE_FLAGS` to count them). Not counted (fine.colours None) unless
        counted or the 7-bit bins are `_POLISH_MAX` or fewer: fit from `kmeans._LARGE_K` on reads no more
        than that there are more colours than that, which as many bins already say. Sorted (`Fine.sort`) where
        counted: from `kmeans._LARGE_K` on, `fit` and `label` read the bins in the order of `index`, sparing
        that sort's copies (a 12 MP photo under random alpha: 3.65 M bins, its 58 MB of sums copied at the
        Histogram's peak, and the rank held to the labels)."""
        n = pairs.shape[0]
        ordered = counted
        keys = self.index.view(np.uint32)
        first, last = _fine_tables()
        low = np.empty(n, dtype=np.uint8)  # each pixel's bits 1 and 0 of every channel (`_fine_tables`)
        seen = np.zeros(self.bins << 4, dtype=bool)

        def mark(start: int, stop: int) -> None:
            at = np.empty(min(_CHUNK, stop - start), dtype=np.int32)
            for s in range(start, stop, _CHUNK):
                e = min(s + _CHUNK, stop)
                ranks.rank(keys[s:e], at[:e - s])
                self.index[s:e] = at[:e - s]
                np.take(first, pairs[s:e, 0].astype(np.intp), out=low[s:e], mode=_INTO)
                low[s:e] |= np.take(last, pairs[s:e, 1].astype(np.intp))
                seen[_seven(at[:e - s], low[s:e])] = True  # threads that set one flag both write True

        parallel.map_parts(mark, n)
        # 16 x (6-bit bin) + its bit 1 of each channel, ascending; int32 (keys under 2**28), held through the
        # counting pass: 15 MB less at the Histogram's peak.
        sevens = np.flatnonzero(seen).astype(np.int32)
        b = sevens.shape[0]
        # (12 MP photos under random alpha at K = 1024: 2.5 M to over 3 M 7-bit bins, whose 40 to 50 M flags
        # cost 0.3 s of CPU and 40 MB, and whose flag limit sent the astronaut to the distinct colours.)
        counted = counted or b <= kmeans._POLISH_MAX
        if counted and (b << 4 > max(_FINE_FLAGS, 4 * n) or b << 4 <= kmeans._POLISH_MAX):
            self.ids = None  # too many flags to count the colours, or too few colours for fit_fine
            return
        # Ranked by bit counts (2 + 1 MB at 931 000 6-bit bins' 15 M flags), not by a table of an int32 a flag:
        # its 60 MB took a cumulative sum and were read out of cache by every pixel (12 M random look-ups:
        # 0.24 s of CPU -> 0.13, the same ranks).
        rank = _BitRank(np.r_[seen, np.zeros(-seen.shape[0] % 64, dtype=bool)])
        del seen
        colours = np.zeros(b << 4 if counted else 0, dtype=bool)

        def number(s: int, e: int, out: np.ndarray) -> None:
            rank.rank(_seven(self.index[s:e], low[s:e]), out)
            self.index[s:e] = out  # the 7-bit bin from now on, which `label` reads
            if counted:
                eight = out.astype(np.intp)
                eight <<= 4
                eight |= low[s:e] & 15
                colours[eight] = True

        def weigh(p: int, s: int, e: int, out: np.ndarray) -> None:
            np.take(_ZERO_BITS[p], low[s:e].astype(np.intp), out=out, mode=_INTO)

        # Where the sums fit in uint32, the 7-bit ones are made there from the start: widened to int64 they were
        # 117 MB more at 3.66 M bins, and a pass of conversions each way (the same sums).
        narrow = n <= _NARROW_SUMS
        counts, sums = _count(n, b, number, weigh, serial=b >= _SERIAL_BINS, widen=not narrow, span=_FINE_SPAN)
        if narrow:  # (low sums and counts are non-negative int32 here)
            counts, sums = counts.view(np.uint32), sums.view(np.uint32)
        del low
        m = int(np.count_nonzero(colours)) if counted else None
        del colours
        if counted and m <= kmeans._POLISH_MAX:
            self.ids = None
            return
        # (int32: the keys' temporaries were the Histogram's peak at 3.65 M bins)
        six = sevens >> 4
        # Each 6-bit bin's 7-bit ones are together here: its sums are theirs added up.
        starts = np.flatnonzero(np.r_[True, six[1:] != six[:-1]])
        self.counts = np.add.reduceat(counts, starts).astype(np.int64)
        # Exact in uint32 while a channel's sum over every pixel is: half the bytes (12 MP photo under random
        # alpha: 2.6 M bins, 84 -> 42 MB held from here to the labels).
        wide = np.dtype(np.uint32 if narrow else np.int64)
        self.sums = np.empty((starts.shape[0], 4), dtype=wide)
        ids = np.zeros(b, dtype=np.int32)  # (28 bits)
        for c in range(4):
            value = self.cell(c).astype(np.int32)[six]
            value <<= 1
            value |= (sevens >> (3 - c)) & 1  # the bin's 7 bits of channel c
            ids <<= 7
            ids |= value
            value <<= 1
            whole = value.astype(wide, copy=False) * counts  # (at most 255 a pixel: within uint32)
            whole += sums[:, c]
            # A column at a time in the sums' own dtype (uint32 where they fit: 15 MB less held at 931 000
            # 6-bit bins): over the (B, 4) block numpy widened uint32 to uint64 in a 112 MB temporary at 3.66 M
            # 7-bit bins, the Histogram's peak (0.36 s of CPU -> 0.07 alone).
            self.sums[:, c] = np.add.reduceat(whole, starts, dtype=wide)
            del whole
        del sevens
        if n <= _NARROW_COUNTS:  # (int32 while the pixels are: 14 MB less held from here to the labels)
            counts = counts.astype(np.int32, copy=False) if counts.dtype != np.uint32 else counts.view(np.int32)
        # The 7-bit bins' sums kept as those of their pixels' bit 0 (`Fine.low`), at most a count each, in the
        # narrowest dtype their counts allow: 12 MP photos under random alpha, 3.1-3.7 M bins of at most 218 to
        # 11 031 pixels, 44 or 29 MB of the 58 held from here to the labels.
        top = int(counts.max())
        low = sums.astype(np.uint8 if top < 1 << 8 else np.uint16 if top < 1 << 16 else np.uint32)
        del sums
        self.fine = Fine(ids, counts, low, six, m, wide)
        if ordered:
            self.fine.sort()

    def cell(self, c: int) -> np.ndarray:
        """(B,) int64: the `bits` bits of channel c of each bin."""
        return (self.ids >> (self.bits * (3 - c))) & ((1 << self.bits) - 1)

    def variance(self) -> np.ndarray:
        """(4,) float64, the pixels' per-channel variance, as `kmeans._variance` computes it."""
        n = int(self.counts.sum())
        return np.array([_variance_of(int(self.sums[:, c].sum()), self.square_sums[c], n) for c in range(4)])


def applies(pixels: np.ndarray, k: int) -> bool:
    """Whether compress may take this path for (N, C) pixels at k (then only if `Histogram` finds the
    bins `min_bins` asks): RGBA from `FROM` pixels whose alpha varies, k up to `K_MAX`."""
    return (pixels.shape[1] == 4 and pixels.shape[0] >= FROM and (k <= K_MAX or kmeans._LARGE_K <= k <= LARGE_MAX)
            and any(kmeans._alpha_varies(pixels[:, 3])))


def min_bins(k: int) -> int:
    """The bins a histogram needs for k (see `kmeans.fit_histogram`)."""
    return kmeans._FINE_ENOUGH * k


def coarse_bins(k: int) -> int:
    """The 5-bit bins from which a histogram for k may stop at 5 bits: `kmeans.fit_histogram` at k up to
    `EXACT_FIT_MAX` never looks finer than a 5-bit level with `kmeans._FINE_ENOUGH` bins per centroid, and
    that level is the same sums whether made from the pixels or merged from the 6-bit bins. 0: never."""
    return kmeans._FINE_ENOUGH * k if k <= EXACT_FIT_MAX else 0


def fit(hist: Histogram, k: int, *, seed: int, max_iter: int, tol: float,
        progress: kmeans.Progress | None = None) -> np.ndarray:
    """Centroids (k, 4) float64 of the image behind hist (see `kmeans.fit_histogram`): above `EXACT_FIT_MAX`
    with the light bins of its last level merged (`_light_merged`) and, with one restart and a large 5-bit
    level, warmed up by the 4-bit level alone (`_TOP_UPDATES`); up to `STAND_IN_MAX` with the restarts seeded
    and ranked on a stand-in (`_stand_in`). With a 7-bit histogram (`Histogram.fine`), `kmeans.fit_fine`:
    fit's centroids. From `kmeans._LARGE_K`, `kmeans.fit_large` on the 6-bit histogram where it has
    `min_bins`, else on the 7-bit one warmed up on the 6-bit one: fit's centroids (progress as fit reports it)."""
    if k >= kmeans._LARGE_K:
        # The levels of `kmeans._large_k_levels`: each warmed up on the one a bit coarser.
        top = None
        if hist.bins >= min_bins(k):
            level, (parent, *warm) = (hist.counts, hist.sums), _five(hist)
        else:
            f, warm, level = hist.fine, (hist.counts, hist.sums), None
            below = int(_FINE_LIGHT_SHARE * hist.index.shape[0])
            if below > 1:
                merged, on = _fine_merged(hist, below)
                # Not where the merge would cost the level its sample (`kmeans._sample`, over `_SAMPLE_SHARE` of
                # the points kept), which the whole level has: fit_large would then run plain updates over every
                # point (chelsea at 12 MP under a vignette, K = 1024: 748 597 -> 437 934 points, no sample, CPU
                # +5 %). Nor under the 4 k points fit_large needs.
                if merged[0].shape[0] >= 4 * k:
                    has = False  # whether the whole level has a sample that the merged one lacks
                    if kmeans._sample(merged[0].astype(np.float64), k) is None:
                        f.sort()  # (the whole level's sample is drawn in key order)
                        has = kmeans._sample(f.counts.astype(np.float64), k) is not None
                    if not has:
                        level, parent = merged, on
            if level is None:  # the whole level, in key order
                f.sort()
                level, parent = (f.counts, f.sums), f.six
            # The 6-bit level starts from its 5-bit cells' centroids and bounds (the same centroids), made only
            # then and let go after (16 MB at 931 000 6-bit bins).
            top = functools.partial(_five, hist)
        return kmeans.fit_large(*level, k, variance=hist.variance(), max_iter=max_iter, tol=tol, progress=progress,
                                warm=None if warm[0].shape[0] < kmeans._WARM_MIN * k else tuple(warm), parent=parent,
                                top=top)
    if hist.fine is not None and k > 1:  # (k = 1: the mean, as below)
        f = hist.fine
        f.sort()  # (a histogram made for k >= kmeans._LARGE_K is in the order of its index)
        return kmeans.fit_fine(f.ids, f.counts, f.sums, f.six, k, colours=f.colours, variance=hist.variance(),
                               seed=seed, max_iter=max_iter, tol=tol)
    ids, counts, sums = hist.ids, hist.counts, hist.sums
    last, coarse = kmeans._FINISH_RGBA if k > EXACT_FIT_MAX else None, None
    if k > EXACT_FIT_MAX and hist.bits == BITS:
        fives = _cells(hist.ids, BITS - 1)
        ids, counts, sums = _light_merged(ids, counts, sums, int(_LIGHT_SHARE * counts.sum()), k, fives)
        if (kmeans._restarts(k) == 1 and kmeans._FINE_ENOUGH * k <= 2 * fives < 2 * kmeans._FINE_ENOUGH * k
                and _cells(hist.ids, 4) > 4 * k):
            last, coarse = (_TOP_UPDATES, kmeans._FINISH[1]), (4,)
    return kmeans.fit_histogram(ids, counts, sums, hist.bits, k, variance=hist.variance(), seed=seed,
                                max_iter=max_iter, tol=tol, last=last,
                                stand_in=_stand_in if k <= STAND_IN_MAX else None, coarse=coarse)


def _fine_merged(hist: Histogram, below: int) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """The 7-bit level (counts, sums) of hist with its bins of fewer than below pixels merged per 6-bit cell,
    and each point's 6-bit bin (its place in `Histogram.counts`): the bins of at least below pixels in their
    order, then the merged ones by 6-bit bin. A merged point lies in one 6-bit cell, so the warm 6-bit level
    still holds it (`kmeans.fit_large`'s parent); the 6-bit level's sums, hence its centroids, are unchanged."""
    f = hist.fine
    heavy = np.flatnonzero(f.counts >= below)
    if f.rank is None:  # in key order, as the whole level's (few, in runs ascending)
        heavy = heavy[np.argsort(f.ids[heavy], kind="stable")]
    six = f.six[heavy]
    # What a 6-bit bin's light 7-bit bins hold is the bin less its heavy ones: passes over the heavy ones
    # only. (Integers below 2**53 summed as doubles: exact.)
    rest = hist.counts - np.bincount(six, weights=f.counts[heavy], minlength=hist.bins).astype(np.int64)
    cells = np.flatnonzero(rest)
    heavy_sums = f.sums_at(heavy)
    sums = np.empty((heavy.shape[0] + cells.shape[0], 4), dtype=heavy_sums.dtype)
    sums[:heavy.shape[0]] = heavy_sums
    for c in range(4):
        taken = np.bincount(six, weights=heavy_sums[:, c], minlength=hist.bins).astype(np.int64)
        sums[heavy.shape[0]:, c] = (hist.sums[cells, c].astype(np.int64) - taken[cells])
    counts = np.concatenate([f.counts[heavy], rest[cells].astype(f.counts.dtype)])
    return (counts, sums), np.concatenate([six, cells.astype(six.dtype)])


def _five(hist: Histogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 5-bit level of the 6-bit histogram: each 6-bit bin's cell there, and (counts, sums) of its cells,
    keys ascending."""
    cell, _, counts, sums = kmeans._histogram(kmeans._coarser_keys(hist.ids, BITS, BITS - 1, 4), hist.counts,
                                              hist.sums)
    # Integers below 2**53 summed as doubles: exact.
    return cell, counts.astype(np.int64), sums.astype(np.int64)


def _cells(ids: np.ndarray, bits: int) -> int:
    """How many cells of `bits` per channel hold the 6-bit bins ids."""
    seen = np.zeros(1 << (4 * bits), dtype=bool)
    seen[kmeans._coarser_keys(ids, BITS, bits, 4)] = True
    return int(np.count_nonzero(seen))


# Where the 6-bit level ends the fit (its 5-bit one under `kmeans._FINE_ENOUGH` bins per centroid, so above
# `EXACT_FIT_MAX`) and the 5-bit level has at least half that many, it no longer warms the 6-bit one up: the
# 4-bit level's run goes straight to the 6-bit level, which takes this many over-relaxed updates where it
# took `kmeans._FINISH`'s 20 after the 5-bit level. Under random alpha that level is large (12 MP
# grace_hopper: 175 000 bins, 12 updates, ~1 s of CPU of the ~3.5 s fit at K = 256), and the 6-bit level's
# two extra updates cost less. J against the 5-bit warm-up at K = 256, seeds 0-2: grace_hopper under random
# alpha at 12 MP -0.05, -0.03, +0.02 %, at 6.75 MP +0.03 % (seed 0; K = 200 -0.08 %); a noisy 12 MP photo under
# random alpha +0.06, +0.01, +0.02 %. With a smaller 5-bit level the warm-up is cheap and skipping it moved
# J by more, either way: 12 MP photos under a vignette or random alpha (40 000 to 73 000 5-bit bins) -0.22
# to +0.05 %, but grace_hopper at 6.75 MP under a vignette (67 000) +0.25 % (+0.22 % with 30 updates), coffee
# at 2 MP under random alpha at K = 200 (48 000) +0.14 %. 20 updates: up to +0.12 %. Not with several
# restarts (k under 200), whose runs the 5-bit level ranks: coffee under random alpha at K = 128 +0.19 %.
_TOP_UPDATES = 22


# Above `EXACT_FIT_MAX` the 6-bit level that fit_histogram ends on in `kmeans._FINISH_RGBA`'s updates
# has its bins of under this share of the pixels (under 12 at 12 MP) merged per 5-bit cell. Under random
# alpha most bins are light: a 12 MP photo's 526 000 bins, 380 000 of them under 12 pixels (9.6 % of the
# pixels), become 216 000 points, and that level, three quarters of the CPU at K = 256 (3.9 s), costs under
# half. 12 MP photos at K = 256, seed 0, J against the whole level (the exact path's): under random alpha
# coffee +0.04 %, grace_hopper +0.20 % (fit 9.6 -> 3.4 s; seeds 1 and 2 +0.11, +0.21 % at 1.3e-6), astronaut
# +0.10 %; under a vignette coffee -0.01 %, grace_hopper +0.10 %. At 1.3e-6 (16 pixels) no faster: grace_hopper +0.23 %,
# astronaut +0.17 %; 0.7e-6 grace_hopper +0.18 %; 4 more updates on the merged level did not win it back
# (+0.21 % at 28): the merge, not the updates, costs that J.
_LIGHT_SHARE = 1e-6
# From `kmeans._LARGE_K` on, the 7-bit level fit_large ends on has its bins of under this share of the pixels
# (under 8 at 12 MP) merged per 6-bit cell (`_fine_merged`): under random alpha a 12 MP photo has 3.1-3.7 M
# 7-bit bins of ~3.5 pixels each, and its last updates, over every point, cost in proportion to them. The
# astronaut under random alpha: 3.66 M points -> 1.20 M (1.53 M under 4 pixels, 1.04 M under 16). 12 MP
# photos (astronaut, chelsea, flower.jpg) under random alpha or a vignette at K = 512, 1024 and 4096, J
# against the whole level: under random alpha +0.03 to +0.14 % (under 16 pixels: +0.10 to +0.22 %), under a
# vignette -0.03 to +0.02 %. The labels are still each pixel's exact nearest, by 7-bit cell. Below ~2.9 MP
# (under 2 pixels) nothing is merged.
_FINE_LIGHT_SHARE = 7e-7
# Up to this k, the restarts' stand-in (see `_stand_in`). At K = 32 the file's J moved more than the mean
# over seeds: grace_hopper and a noisy photo under random alpha +0.33 and +0.36 % at seed 0, -0.04 and
# +0.16 % over seeds 0-7 (fit 1.68 -> 1.09 s and 2.76 -> 1.63). At K = 64 (8 restarts) the noisy photo took
# 44 s of fit over seeds 0-5 where the whole level took 34: near ties on the stand-in sent more runs up a
# 5-bit level of 189 000 bins (~4 s each).
STAND_IN_MAX = 16


def _light_merged(ids: np.ndarray, counts: np.ndarray, sums: np.ndarray, below: int, k: int, fives: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 6-bit histogram (ids ascending, counts, sums) with its bins of fewer than `below` pixels merged
    per 5-bit cell, each merged bin keyed by the least key of its parts (a key of that cell, and unique):
    the 5- and 4-bit levels fit_histogram makes of it are the same sums, so the same centroids reach this
    one. Unchanged where fit does not climb to it (a 5-bit level, of `fives` cells, of `kmeans._FINE_ENOUGH`
    bins per centroid)."""
    light = counts < below
    if fives >= kmeans._FINE_ENOUGH * k or not light.any():
        return ids, counts, sums
    at = np.flatnonzero(light)
    parent = kmeans._coarser_keys(ids[at], BITS, BITS - 1, 4)
    # Cells numbered by kmeans._bins: through a table over the 2**20 5-bit keys when the light bins are many,
    # not by sorting (np.unique) the ~900 000 of a 12 MP photo under random alpha (grace_hopper, K = 256:
    # 0.075 -> 0.049 s of CPU, the same arrays).
    group, parents = kmeans._bins(parent)
    cells = parents.shape[0]
    # Parts in key order: the first of each cell is its least key, and the merged bin takes its place.
    first = np.full(cells, at.shape[0], dtype=np.intp)
    np.minimum.at(first, group, np.arange(at.shape[0]))
    # Integers below 2**53 summed as doubles: exact.
    merged_counts = np.bincount(group, weights=counts[at], minlength=cells).astype(np.int64)
    # The light bins' sums gathered a column at a time (numpy's fancy indexing of short rows is slow): the
    # (4, L) float64 columns and the rows gathered for them were 80 MB at 1.26 M light bins (48 MP photo
    # under random alpha, K = 256), the fit's peak.
    merged_sums = np.empty((cells, 4), dtype=np.int64)
    for c in range(4):
        merged_sums[:, c] = np.bincount(group, weights=np.take(sums[:, c], at).astype(np.float64), minlength=cells)
    keep = ~light
    keep[at[first]] = True
    kept = np.flatnonzero(keep)
    counts, sums = counts[kept], sums[kept]
    place = np.cumsum(keep, dtype=np.intp).take(at[first])  # where each merged bin lands among those kept
    place -= 1
    counts[place] = merged_counts
    sums[place] = merged_sums
    return ids[kept], counts, sums


# Random alpha spreads a photo over many more 4-bit bins (grace_hopper at 12 MP: 18 300, against coffee's
# 9 800), and its 16 restarts were 0.45 s of CPU, most of the fit at K = 16. Its bins under this share of the
# pixels (36 at 12 MP) merged: 10 600 points, fit 0.79 -> 0.46 s; J over seeds 0-7 against the whole level
# +0.03 % in the mean (seed 0 -0.03 %), a noisy photo +0.08 % (-0.31 %), astronaut -0.03 % (-0.01 %), while
# single seeds move by up to 1 % either way, as between seeds. RGB's share (1e-5) merged more and ranked
# worse: grace_hopper +0.44 % in the mean, 7 seeds of 8 above; 2e-6 +0.17 %, 5e-6 +0.18 %; merging 4-bit
# colours by 2-bit alpha rather than 3-bit cells +0.34 %.
_STAND_IN_SHARE = 3e-6


def _stand_in(level: kmeans._Points) -> kmeans._Points | None:
    """The restarts' stand-in for a large 4-bit RGBA level, as RGB's (`kmeans._thinned`): over
    `kmeans._THIN_FROM` bins, those under `_STAND_IN_SHARE` of the pixels merged by 3-bit cell."""
    return kmeans._thinned(level, share=_STAND_IN_SHARE, bits=3, channels=4)


class _Candidates:
    """Per bin of a histogram, the palette entries that can be nearest to some value of its cell.

    per_bin (B,) uint16: the one entry of a bin whose every value it is nearest to, or `_LABEL_NONE`.
    For the other bins: their class (the narrowest of `_WIDTHS` their candidates fit, or len(_WIDTHS) when
    more, left to `kmeans.nearest`; whole bins have that class too) and their row in that class's table
    (rows, W) uint16 of candidates ascending, padded with the last one (a copy never wins a tie from an
    earlier entry, and is the same entry anyway)."""

    def __init__(self, per_bin: np.ndarray, klass: np.ndarray, row: np.ndarray, tables: list[np.ndarray]) -> None:
        self.per_bin, self.klass, self.row, self.tables = per_bin, klass, row, tables


# Widths of the candidate tables: a pixel of a bin not labelled whole measures only its bin's candidates,
# as many as the narrowest width they fit (12 MP photo under a vignette at K = 256: 2 to 8 for most).
_WIDTHS = (2, 4, 8, 16, 32)


def _bin_labels(hist: Histogram, palette: np.ndarray) -> _Candidates:
    """The entries that can be nearest to each bin's cell (see `_Candidates`, and `_cell_candidates` for how
    they are found); with a 7-bit histogram (`Histogram.fine`), to each 7-bit bin's (`_fine_cells`)."""
    cells = _cell_candidates(hist.ids, hist.bits, palette)
    if hist.fine is not None:
        cells = _fine_cells(hist.fine.ids, hist.fine.six, cells, palette)
    cands = _by_cell(cells)
    if hist.fine is not None and hist.fine.rank is not None:  # in the order of `Histogram.index`
        rank = hist.fine.rank
        cands.per_bin, cands.klass, cands.row = cands.per_bin[rank], cands.klass[rank], cands.row[rank]
    return cands


def _by_cell(cells: _Cells) -> _Candidates:
    """`_Candidates` of cells (bins) whose candidates `cells` holds, its arrays let go as they are read."""
    # (-1, no single entry, wraps to _LABEL_NONE: no int32 temporary of every bin.) cells' own arrays are let
    # go once read (12 MP photo under random alpha: 3.65 M 7-bit cells, 14.6 MB each, at the labels' peak).
    per_bin = cells.single.astype(np.uint16)
    n = per_bin.shape[0]
    cells.single = None
    bins, entries = cells.bins, cells.entries.astype(np.uint16)
    cells.entries = None
    klass = np.full(n, len(_WIDTHS), dtype=np.uint8)
    row = np.zeros(n, dtype=np.int32)
    starts = np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]]) if bins.size else np.empty(0, np.intp)
    owners = bins[starts]
    counts = cells.count[owners]
    cells.count = cells.bins = bins = None
    tables = []
    for c, width in enumerate(_WIDTHS):
        mine = np.flatnonzero((counts <= width) & (counts > (_WIDTHS[c - 1] if c else 1)))
        klass[owners[mine]] = c
        row[owners[mine]] = np.arange(mine.size, dtype=np.int32)
        at = starts[mine, None] + np.minimum(np.arange(width), counts[mine, None] - 1)
        tables.append(entries[at])
    return _Candidates(per_bin, klass, row, tables)


class _Cells:
    """Per cell of a histogram: single (n,) int32, the one entry nearest to every value of the cell, or -1;
    count (n,) its number of candidates; and the candidates of the cells with more than one, as pairs (cell
    (m,), entry (m,)) with each cell's together, entries ascending."""

    def __init__(self, single: np.ndarray, count: np.ndarray, bins: np.ndarray, entries: np.ndarray) -> None:
        self.single, self.count, self.bins, self.entries = single, count, bins, entries


# Candidate rows (cells x their coarser cell's candidates) `_cell_candidates` judges at once in each thread:
# at kmeans._BLOCK (2**21) each thread's temporaries were ~50 MB, the peak of labelling a 12 MP photo under
# random alpha at K = 4096.
_CANDIDATE_BLOCK = 1 << 17
# `_cell_candidates` measures every entry only for this many cells or fewer, or cells this coarse; finer ones
# measure only the candidates of the cell one bit coarser that holds them (12 MP photo under a vignette at
# K = 256: 1.17 M 6-bit bins in 136 000 5-bit cells, 13 000 4-bit ones).
_ALL_ENTRIES_CELLS = 4096
_ALL_ENTRIES_BITS = 3
# Above every sum of a real entry's two halves (< 2**30 - 1, see `_cell_candidates`), and its half above every
# sum of its four channels: the padding entry of a candidate list, never nearest and never a candidate.
_PAD = (1 << 30) - 1


def _cell_tables(palette: np.ndarray, bits: int, shift: int, fields: int = 2
                 ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per entry (and a padding row k of `_PAD` / (fields / 2), so that the fields' sums stay below 2**31),
    the least and the greatest squared distance from it to each cell of `bits` per channel, over each of the
    cell key's `fields` parts (2: the first two channels and the last two; 4: each channel): (k + 1,
    2**(4 bits / fields)) int32 each, the greatest shifted up by `shift` bits and carrying the entry's index
    in the first."""
    k = palette.shape[0]
    width = 1 << (8 - bits)
    lo = np.arange(1 << bits, dtype=np.int32)[None, :] * width
    hi = lo + width - 1
    near, far = [], []
    for c in range(4):
        e = palette[:, c, None].astype(np.int32)
        near.append(np.maximum(np.maximum(lo - e, e - hi), 0) ** 2)  # (K, 2**bits)
        far.append(np.maximum(e - lo, hi - e) ** 2)
    side = 1 << bits
    per = 4 // fields

    def field(t: list[np.ndarray], c: int) -> np.ndarray:  # channels c to c + per - 1 of a cell, and the padding
        out = np.full((k + 1, side ** per), _PAD // (fields // 2), dtype=np.int32)
        out[:k] = t[c] if per == 1 else (t[c][:, :, None] + t[c + 1][:, None, :]).reshape(k, side * side)
        return out

    least = [field(near, c) for c in range(0, 4, per)]
    greatest = [field(far, c) for c in range(0, 4, per)]
    for g in greatest:
        g[:k] <<= shift
    greatest[0][:k] += np.arange(k, dtype=np.int32)[:, None]
    return least, greatest


# `_cell_candidates` sums a cell's distances from tables per pair of channels up to this many entries x
# cells of a pair (4 tables of 4 bytes each: 64 MB), from tables per channel above (two more gathers and
# sums per cell and entry). A 12 MP photo under a vignette at K = 4096: 4 pair tables of 67 MB at 6 bits.
_PAIR_TABLES_MAX = 1 << 22


def _may_win(keys: np.ndarray, bits: int, a: np.ndarray, b: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """For pairs of a cell (keys (m,) of `bits` per channel), its entry a (m,) of least greatest distance and a
    candidate b (m,) of it: whether b is at least as near as a to some value of the cell (False: a is
    strictly nearer to all, so b is never the nearest). |x - b|^2 - |x - a|^2 = 2 x . (a - b) + |b|^2 -
    |a|^2 is linear in x, least at a corner of the cell: per channel, over the w = 2**(8 - bits) values lo
    to lo + w - 1, the least of 2 x d (d = a - b) is (2 lo + w - 1) d - (w - 1) |d|. Exact in int32 (below
    4 x (510 x 255 + 255^2)). Sharper than the distances' bounds that chose b: a's greatest against b's
    least bounds the two by their farthest values, each its own (12 MP photo under random alpha, K = 4096:
    64 % -> 73 % of its 7-bit bins labelled whole)."""
    w = 1 << (8 - bits)
    pal = palette.astype(np.int32)
    norms = (pal * pal).sum(axis=1)
    a = a.astype(np.intp, copy=False)
    b = b.astype(np.intp, copy=False)
    gap = np.take(norms, b)
    gap -= np.take(norms, a)
    for c in range(4):
        d = np.take(pal[:, c], a)
        d -= np.take(pal[:, c], b)
        corner = (keys >> (bits * (3 - c))) & ((1 << bits) - 1)
        corner = corner.astype(np.int32) * (2 * w)
        corner += w - 1
        corner *= d
        gap += corner
        np.abs(d, out=d)
        d *= w - 1
        gap -= d
    return gap <= 0


def _cell_candidates(ids: np.ndarray, bits: int, palette: np.ndarray) -> _Cells:
    """The entries that can be nearest to some value of each cell ids (n,) ascending, of `bits` per channel.

    A cell spans 2**(8 - bits) values per channel: per entry, the greatest squared distance from the cell to
    it and the least. An entry whose greatest is below every other entry's least is strictly the nearest
    for each of the cell's colours (no tie to break); otherwise the candidates are the entries whose least
    is at most the least greatest (any other is farther than that entry from every value of the cell), less
    those that entry is strictly nearer than at every value of the cell (`_may_win`). The
    sums come from tables over a cell's first two channels and its last two (its key's halves; per channel
    above `_PAIR_TABLES_MAX`), entries x cells so that the reductions run across rows (numpy reduces short
    rows slowly); each greatest distance carries its entry's index in its low bits, so one minimum gives both
    the least greatest distance and its entry. Sums stay below 4 x 255^2 x 2**(shift) < 2**31 - 2 (k <= 2**12).

    A cell inside a coarser cell has each entry's least at least the coarser one's and the least greatest
    at most the coarser one's, so its candidates, and every entry whose greatest ties the least, are among
    the coarser cell's: each cell measures only those (found the same way one bit coarser, down to
    `_ALL_ENTRIES_CELLS`) (12 MP photo under a vignette at K = 256: ~0.3 s of CPU instead of 2.9). An entry
    the coarser cell dropped by `_may_win` is beaten at every value of it, so never nearest in the cell
    (nor tied): the candidates are those from every entry or fewer, still every value's nearest, and an
    entry whose greatest is least still among them (it is below that of an entry beaten everywhere).
    """
    k = palette.shape[0]
    n = ids.shape[0]
    shift = max(1, (k - 1).bit_length())
    mask = (1 << shift) - 1
    fields = 2 if (k + 1) << (2 * bits) <= _PAIR_TABLES_MAX else 4
    least, greatest = _cell_tables(palette, bits, shift, fields)
    part_bits = 4 * bits // fields
    single = np.full(n, -1, dtype=np.int32)
    count = np.ones(n, dtype=np.int32)
    found = []  # (cell, entry) of the cells with several candidates, each cell's together

    def judge(sel: np.ndarray, cand: np.ndarray | None, into: list) -> None:
        """Candidates of the cells ids[sel] among cand (W, len(sel)) entries ascending (every entry: None)."""
        key = ids[sel]
        parts = [(key >> (part_bits * (fields - 1 - f))) & ((1 << part_bits) - 1) for f in range(fields)]
        if cand is None:
            g = np.take(greatest[0][:k], parts[0], axis=1)
            d = np.take(least[0][:k], parts[0], axis=1)
            for f in range(1, fields):
                g += np.take(greatest[f][:k], parts[f], axis=1)
                d += np.take(least[f][:k], parts[f], axis=1)
        else:
            at = cand * least[0].shape[1]
            g = np.take(greatest[0], at + parts[0])
            d = np.take(least[0], at + parts[0])
            for f in range(1, fields):
                g += np.take(greatest[f], at + parts[f])
                d += np.take(least[f], at + parts[f])
        best = g.min(axis=0)
        # The entry's own least is at most its greatest: alone at or below it means every other is above.
        can = d <= (best >> shift)
        many = np.count_nonzero(can, axis=0)
        count[sel] = many
        single[sel] = np.where(many == 1, best & mask, -1)
        shared = np.flatnonzero(many > 1)
        if shared.size:
            b, r = np.nonzero(can[:, shared].T)
            entries = r if cand is None else cand[r, shared[b]]
            # The candidates a cannot beat anywhere dropped (`_may_win`): fewer, and more cells with one.
            one = np.take(best, shared) & mask
            keep = _may_win(np.take(key, shared[b]), bits, np.take(one, b), entries, palette)
            b, entries = b[keep], entries[keep]
            left = np.bincount(b, minlength=shared.size)
            count[sel[shared]] = left
            single[sel[shared]] = np.where(left == 1, one, -1)
            b, entries = b[np.take(left, b) > 1], entries[np.take(left, b) > 1]
            # (int32: intp pairs were 2x the memory, 12 MP under random alpha at K = 4096)
            into.append((sel[shared[b]].astype(np.int32), entries.astype(np.int32)))

    if n <= _ALL_ENTRIES_CELLS or bits <= _ALL_ENTRIES_BITS:
        step = max(1, kmeans._BLOCK // k)
        for s in range(0, n, step):
            judge(np.arange(s, min(s + step, n)), None, found)
    else:
        # Each cell's coarser cell: its key without the lowest bit of each channel, numbered by a table.
        up = kmeans._coarser_keys(ids, bits, bits - 1, 4)
        seen = np.zeros(1 << (4 * (bits - 1)), dtype=bool)
        seen[up] = True
        parents = np.flatnonzero(seen)
        rank = np.cumsum(seen, dtype=np.int32)
        del seen
        rank -= 1
        up = np.take(rank, up)
        coarse = _cell_candidates(parents, bits - 1, palette)
        # Cells of a coarser cell with one candidate have that one alone.
        lone = np.take(coarse.single, up)
        single[:] = lone
        starts = (np.flatnonzero(np.r_[True, coarse.bins[1:] != coarse.bins[:-1]]) if coarse.bins.size
                  else np.empty(0, np.intp))
        owners = coarse.bins[starts]
        width = 2
        while owners.size:
            mine = np.flatnonzero(coarse.count[owners] <= width)
            if mine.size:
                # (W, parents) candidate lists, padded with entry k.
                lists = np.full((width, mine.size), k, dtype=np.intp)
                lists_at = np.zeros(parents.shape[0], dtype=np.intp)
                lists_at[owners[mine]] = np.arange(mine.size)
                span = coarse.count[owners[mine]]
                take_at = starts[mine, None] + np.arange(width)
                valid = np.arange(width) < span[:, None]
                lists.T[valid] = coarse.entries[take_at[valid]]
                inside = np.zeros(parents.shape[0], dtype=bool)
                inside[owners[mine]] = True
                cells = np.flatnonzero(np.take(inside, up))
                step = max(1, _CANDIDATE_BLOCK // width)

                def part(start: int, stop: int) -> list:
                    got: list = []
                    for s in range(start, stop, step):
                        sel = cells[s:min(s + step, stop)]
                        judge(sel, np.take(lists, np.take(lists_at, up[sel]), axis=1), got)
                    return got

                # Threads over the cells (the 6-bit ones of a 12 MP photo under random alpha: 1.1 M), each
                # writing only its cells' counts; their candidates joined in order, as from one thread.
                for got in parallel.map_parts(part, cells.shape[0], cost=width):
                    found.extend(got)
                keep = np.ones(owners.shape[0], dtype=bool)
                keep[mine] = False
                owners, starts = owners[keep], starts[keep]
            width *= 2
    if not found:
        return _Cells(single, count, np.empty(0, np.intp), np.empty(0, np.intp))
    return _Cells(single, count, np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found]))


# Rows (a 7-bit cell and one of its 6-bit cell's candidates) that `_fine_cells` measures at once.
# (2**21 rows: ~130 MB of temporaries, the peak of labelling a 12 MP photo under random alpha at K = 1024.)
_FINE_ROWS = 1 << 17


# 7-bit cells `_fine_cells` cuts into blocks of rows at a time.
_FINE_SPAN_CELLS = 1 << 20


def _fine_blocks(single: np.ndarray, six: np.ndarray, count: np.ndarray):
    """The 7-bit cells whose 6-bit cell (six, their places in count) has several candidates (single < 0),
    ascending, in blocks of about `_FINE_ROWS` rows (a cell and one of its candidates)."""
    for s in range(0, single.shape[0], _FINE_SPAN_CELLS):
        todo = np.flatnonzero(single[s:s + _FINE_SPAN_CELLS] < 0)
        if not todo.size:
            continue
        todo += s
        ends = np.cumsum(np.take(count, np.take(six, todo)), dtype=np.intp)
        for sel in np.split(todo, np.searchsorted(ends, np.arange(_FINE_ROWS, ends[-1], _FINE_ROWS), side="right")):
            if sel.size:
                yield sel


def _fine_cells(ids: np.ndarray, six: np.ndarray, parent: _Cells, palette: np.ndarray) -> _Cells:
    """`_cell_candidates` of the 7-bit cells ids (n,), in any order, from those of the 6-bit cells holding them
    (six (n,) their places in parent): each measures only its 6-bit cell's candidates, as there, but from
    tables per channel ((k, 128) each), where `_cell_tables` at 7 bits would be 4 of (k + 1, 16384)."""
    k = palette.shape[0]
    n = ids.shape[0]
    shift = max(1, (k - 1).bit_length())
    single = np.take(parent.single, six)
    count = np.ones(n, dtype=np.int32)
    # Each cell's rows: its 6-bit cell's candidates, ascending.
    starts = np.flatnonzero(np.r_[True, parent.bins[1:] != parent.bins[:-1]])
    first = np.zeros(parent.single.shape[0], dtype=np.intp)
    first[parent.bins[starts]] = starts
    lo = np.arange(128, dtype=np.int32) * 2
    hi = lo + 1
    near = [np.maximum(np.maximum(lo - e, e - hi), 0) ** 2 for e in palette.T.astype(np.int32)[:, :, None]]
    far = [np.maximum(e - lo, hi - e) ** 2 for e in palette.T.astype(np.int32)[:, :, None]]
    # The cells a block of rows at a time: all at once, a 12 MP photo under random alpha at K = 1024 (3.7 M
    # 7-bit cells, ~10 rows each) took ~450 MB of temporaries, the peak of its whole compress. The blocks are
    # found a span of `_FINE_SPAN_CELLS` cells at a time: their intp indices and row ends over every cell were
    # 58 MB at 3.65 M 7-bit cells, the labels' peak at K = 4096.
    pairs = [(np.empty(0, np.int32), np.empty(0, np.int32))]
    for sel in _fine_blocks(single, six, parent.count):
        many = parent.count[six[sel]].astype(np.intp)
        at = np.cumsum(many) - many  # each cell's first row
        cell = np.repeat(sel, many)
        entry = parent.entries[np.repeat(first[six[sel]] - at, many) + np.arange(cell.shape[0])]
        least = np.zeros(cell.shape[0], dtype=np.int32)
        greatest = np.zeros(cell.shape[0], dtype=np.int32)
        ids_of, base = ids[cell], entry * 128
        for c in range(4):
            value = (ids_of >> (7 * (3 - c))) & 127
            value += base
            least += np.take(near[c], value)
            greatest += np.take(far[c], value)
        greatest <<= shift
        greatest += entry.astype(np.int32)  # ties to the lower entry, as `_cell_candidates`
        best = np.minimum.reduceat(greatest, at)
        can = least <= np.repeat(best >> shift, many)
        best &= (1 << shift) - 1
        # Of the cells left with several, the candidates their entry a beats everywhere dropped (`_may_win`).
        rows = np.flatnonzero(can)
        can[rows] = _may_win(np.take(ids_of, rows), 7, np.take(np.repeat(best, many), rows), np.take(entry, rows),
                             palette)
        fits = np.add.reduceat(can.astype(np.int32), at)
        count[sel] = fits
        single[sel] = np.where(fits == 1, best, -1)
        can &= np.repeat(fits > 1, many)
        # (int32: the pairs and their joining were 105 MB of a 12 MP photo's labelling under random alpha)
        pairs.append((cell[can].astype(np.int32), entry[can].astype(np.int32)))
    return _Cells(single, count, np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]))


def _nearest_among(pixels: np.ndarray, index: np.ndarray, table: np.ndarray, row: np.ndarray,
                   norms: np.ndarray, twice: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """For the (M, 4) pixels, each of whose bins (index, (M,)) has its candidates in column `row` of `table`
    (W, R), a candidate table of `_Candidates` transposed: the nearest candidate (ties to the lower entry),
    and the sum over the pixels of their squared distance to it less their squared norm. Each candidate p
    is measured as |p|^2 - 2 x . p (norms, and twice each channel of the palette), which orders the entries
    as |x - p|^2 does and needs no int64 copy of the pixels to take |x|^2 off afterwards. The candidates
    are measured one column at a time, the nearest kept by element-wise passes (a later one only where
    strictly nearer: ties to the lower entry), where an argmin over rows of W was slow (12 MP photo under
    random alpha, K = 256: label 1.17 s of CPU -> 0.96)."""
    rows = np.take(row, index).astype(np.intp)
    x = [np.ascontiguousarray(pixels[:, c]) for c in range(4)]
    one = least = None
    for column in table:
        cand = np.take(column, rows)
        d = np.take(norms, cand)
        for c in range(4):
            dot = np.take(twice[c], cand)
            dot *= x[c]
            d -= dot
        if least is None:
            one, least = cand, d
        else:
            nearer = d < least
            np.copyto(one, cand, where=nearer)
            np.minimum(least, d, out=least)
    return one, int(least.sum(dtype=np.int64))


class _Pairs:
    """The bins with two candidates p < q (the first table of `_Candidates`, rows (R, 2)): which of the two
    is nearer to a pixel x is the side of their bisecting plane it lies on, |q|^2 - |p|^2 against
    2 x . (q - p), one dot product per pixel where measuring both entries takes two (12 MP photo under a
    vignette at K = 16: 1.07 M of the 1.15 M pixels labelled one by one). So each pixel's squared distance
    is p's plus min(0, that difference), and p's summed over a bin is n |p|^2 - 2 p . (its pixels' sum),
    from the histogram (`base`), less their |x|^2 as every excess in `label`."""

    def __init__(self, table: np.ndarray, palette: np.ndarray) -> None:
        pal = palette.astype(np.int32)
        self.first = np.ascontiguousarray(table[:, 0])
        self.second = np.ascontiguousarray(table[:, 1])
        # Per entry, then gathered a channel at a time: the (R, 4) rows of both entries and their
        # temporaries were ~60 MB at 800 000 two-candidate bins (12 MP photo under random alpha, K = 4096),
        # the labels' peak.
        norms = (pal * pal).sum(axis=1)
        self.gap = np.take(norms, self.second)  # (R,) int32: |q|^2 - |p|^2
        self.gap -= np.take(norms, self.first)
        self.twice = np.empty((4, table.shape[0]), dtype=np.int32)  # 2 (q - p) per channel
        for c in range(4):
            np.take(pal[:, c], self.second, out=self.twice[c])
            self.twice[c] -= np.take(pal[:, c], self.first)
            self.twice[c] *= 2
        self.palette = palette

    def nearest(self, points: np.ndarray, index: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, int]:
        """As `_nearest_among` for (M, 4) points of two-candidate bins index (M,), but the excess is only
        the part over their first candidate's (see `base`). Ties go to the first, the lower entry."""
        rows = np.take(row, index).astype(np.intp)
        dot = np.take(self.twice[0], rows)
        dot *= points[:, 0]
        for c in range(1, 4):
            more = np.take(self.twice[c], rows)
            more *= points[:, c]
            dot += more
        gap = np.take(self.gap, rows)
        gap -= dot  # the second's squared distance less the first's
        nearer = gap < 0
        one = np.where(nearer, np.take(self.second, rows), np.take(self.first, rows))
        np.minimum(gap, 0, out=gap)
        return one, int(gap.sum(dtype=np.int64))

    def base(self, counts: np.ndarray, sums: np.ndarray, rows: np.ndarray) -> int:
        """Sum over the bins (counts (b,), sums (b, 4) of their pixels, rows (b,) in the table) of their
        pixels' squared distance to their first candidate less their squared norm."""
        p = self.palette[self.first[rows]].astype(np.int64)
        return int(((p * p).sum(axis=1) * counts).sum()) - 2 * int((p * sums).sum())


# Bins `label` sums per entry at a time (those labelled whole, those of two candidates).
_BIN_BLOCK = 1 << 18


def label(pixels: np.ndarray, hist: Histogram, palette: np.ndarray, release: Callable[[], None] | None = None
          ) -> tuple[np.ndarray, np.ndarray, int]:
    """Each pixel's exact nearest palette entry (ties to the lower index, as `kmeans.nearest`). Where release
    is given, hist's bins (counts, sums, ids, fine) are let go once read and release is called (the caller's
    way of handing freed memory back) before the labels are made: only hist's index is read after.

    Returns (labels (N,) uint16, pixels per entry (K,) int64, the sum over pixels of the squared distance
    to their entry, exact). For the bins labelled whole, their counts and sums per entry give that sum
    without a pass over their pixels: sum |x|^2 - 2 p . sum x + n |p|^2 for entry p. The other pixels
    measure only their bin's candidates, a chunk at a time in the same pass.
    """
    k = palette.shape[0]
    pixels = np.ascontiguousarray(pixels)  # each pixel's 4 bytes are read as one word
    n = pixels.shape[0]
    cands = _bin_labels(hist, palette)
    # The counts and sums of bins of `index`, looked up where they are (not a copy of the 7-bit ones in the
    # order of `index`: 105 MB of a 12 MP photo's peak under random alpha).
    f = hist.fine
    bin_counts = hist.counts if f is None else f.counts

    def placed(bins: np.ndarray) -> np.ndarray:  # bins of `index` -> their rows in bin_counts, sums_at
        return bins if f is None else f.placed(bins)

    def sums_at(rows: np.ndarray) -> np.ndarray:  # the sums of those rows
        return hist.sums[rows] if f is None else f.sums_at(rows)

    per_bin = cands.per_bin
    count = np.zeros(k, dtype=np.int64)
    sums = np.zeros((k, 4), dtype=np.int64)
    # A block of bins at a time: over every bin the indices and weights were ~80 MB of temporaries at 2.7 M
    # 7-bit bins labelled whole (12 MP photo under random alpha, K = 4096), the labels' peak.
    for s in range(0, per_bin.shape[0], _BIN_BLOCK):
        whole = np.flatnonzero(per_bin[s:s + _BIN_BLOCK] != _LABEL_NONE)
        whole += s
        lab = np.take(per_bin, whole).astype(np.intp)
        whole = placed(whole)
        # Integers below 2**53 summed as doubles: exact.
        count += np.bincount(lab, weights=np.take(bin_counts, whole), minlength=k).astype(np.int64)
        of = sums_at(whole)
        for c in range(4):
            sums[:, c] += np.bincount(lab, weights=of[:, c], minlength=k).astype(np.int64)
    del whole, lab, of
    pairs = _Pairs(cands.tables[0], palette)
    # The two-candidate bins measure their pixels from their first candidate (`_Pairs`): that entry's
    # part of their excess comes from the bins' exact sums. (Before the pixels' pass, so that with release
    # the bins are let go before the labels are made: 66 MB of a 48 MP photo's 1.4 M 6-bit bins.)
    err = 0
    for s in range(0, cands.klass.shape[0], _BIN_BLOCK):
        two = np.flatnonzero(cands.klass[s:s + _BIN_BLOCK] == 0)
        two += s
        rows = placed(two)
        err += pairs.base(bin_counts[rows], sums_at(rows), cands.row[two])
    del two, rows
    if release is not None:
        hist.counts = hist.sums = hist.ids = hist.fine = f = bin_counts = None
        release()
    labels = np.empty(n, dtype=np.uint16)
    p = palette.astype(np.int32)
    norms = (p * p).sum(axis=1)
    twice = [2 * p[:, c] for c in range(4)]
    widths = len(_WIDTHS)
    # Each pixel's 4 bytes as one word: a gather of the pixels of a chunk's unlabelled bins moves words, not
    # rows of 4 bytes (numpy's fancy indexing of short rows is slow).
    words = pixels.view(np.uint32).reshape(-1)
    columns = [np.ascontiguousarray(t.T) for t in cands.tables]  # each candidate's column, contiguous
    number = hist.number if hist.index is None else None

    def part(start: int, stop: int) -> tuple[np.ndarray, int, np.ndarray]:
        counts = np.zeros(k, dtype=np.int64)
        excess = 0
        many = []  # pixels of bins with more candidates than the widest table: kmeans.nearest, at the end

        def measure(at: np.ndarray, index: np.ndarray | None) -> None:
            nonlocal excess, counts
            if index is None:
                index = hist.index[at]
            klass = np.take(cands.klass, index)
            for c in np.flatnonzero(np.bincount(klass, minlength=widths + 1)).tolist():
                mine = np.flatnonzero(klass == c)
                if c == widths:
                    many.append(at[mine])
                    continue
                points = np.take(words, at[mine]).view(np.uint8).reshape(-1, 4)
                if c:
                    one, more = _nearest_among(points, index[mine], columns[c], cands.row, norms, twice)
                else:
                    one, more = pairs.nearest(points, index[mine], cands.row)
                labels[at[mine]] = one
                excess += more
                counts += np.bincount(one, minlength=k)

        # The pixels of the bins not labelled whole are measured once a chunk's worth of them has gathered
        # (12 MP photo under a vignette at K = 16: one in ten), not a few thousand at a time per chunk of
        # the image, where numpy's cost per call outweighed the work (label 0.19 s of CPU -> 0.16).
        # Where hist keeps no index (`Histogram.number`), each chunk's bins are numbered here, and those of
        # its pixels left to measure kept beside them.
        waiting, gathered, their = [], 0, []
        own = None if number is None else np.empty(min(_CHUNK, stop - start), dtype=np.int32)
        for s in range(start, stop, _CHUNK):
            e = min(s + _CHUNK, stop)
            if number is None:
                bins = hist.index[s:e]
            else:
                bins = own[:e - s]
                number(s, e, bins)
            np.take(per_bin, bins, out=labels[s:e], mode=_INTO)
            rest = np.flatnonzero(labels[s:e] == _LABEL_NONE)
            if number is not None:
                their.append(bins[rest])
            rest += s
            waiting.append(rest)
            gathered += rest.size
            if gathered >= _CHUNK or (e == stop and gathered):
                measure(np.concatenate(waiting), np.concatenate(their) if their else None)
                waiting, gathered, their = [], 0, []
        return counts, excess, np.concatenate(many) if many else np.empty(0, np.intp)

    parts = parallel.map_parts(part, n)
    pv = palette.astype(np.int64)
    # |x|^2 of every pixel: the others' excess is their squared distance less theirs.
    err += (sum(hist.square_sums) - 2 * int((pv * sums).sum())
            + int((count * (pv * pv).sum(axis=1)).sum()) + sum(q[1] for q in parts))
    count += functools.reduce(np.add, [q[0] for q in parts])
    at = np.concatenate([q[2] for q in parts])
    if at.size:
        points = pixels[at]
        one, dist = kmeans.nearest(points, palette)
        labels[at] = one
        flat = points.reshape(-1).astype(np.int64)
        err += int(dist.sum()) - int(flat @ flat)
        count += np.bincount(one, minlength=k)
    return labels, count, err


def renumber(labels: np.ndarray, rank: np.ndarray) -> None:
    """labels[:] = rank[labels], in place, a chunk at a time (no intp copy of them all)."""

    def part(start: int, stop: int) -> None:
        for s in range(start, stop, _CHUNK):
            chunk = labels[s:min(s + _CHUNK, stop)]
            np.take(rank, chunk, out=chunk)

    parallel.map_parts(part, labels.shape[0])
