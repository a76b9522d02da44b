"""The ``ctx`` payload codec (id 2): context modelling of the label map, entropy coded with interleaved rANS.

Labels are visited coarse to fine (docs/FORMAT.md, "Pass order"): the first pixel, then per level a
*diagonal* pass (pixels whose 4 diagonal neighbours are known) and two *edge* passes (pixels whose 4 axial
neighbours are known). Every pixel of a pass sees already-decoded neighbours only, so a whole pass is
modelled and coded with array operations.

Each label is coded as (1) which of its 4 neighbours' distinct labels it equals, ranked by how many
neighbours carry it, or "escape"; then (2) on escape, its rank by colour distance from the palette entry
nearest the neighbours' mean colour (the candidates left out), as a bucket and a uniform offset. The
statistics are counts of what was already coded (an adaptive model: none of it is stored), refreshed
between *pieces* of a pass. Stage 1 counts per fine context (the base context refined by how many extra
neighbours hold the rank-1 label and how far its colour is from the rank-0 one), with the base context's
estimate as a prior worth _BETA pixels, so sparse fine contexts lean on well-filled coarse ones.

A decoder first checks that the payload is long enough for the declared image at all (docs/FORMAT.md,
"Payload size bound"), so a forged header cannot make it allocate the image for a payload of a few bytes.
"""
from __future__ import annotations

import contextlib
import threading
from collections import deque
from dataclasses import dataclass
from itertools import product
from typing import Callable, Iterator

import numpy as np

from ..errors import FormatError
from . import rans

_WHAT = "ctx payload"
_MAX_LANES_LOG2 = 12
_ESC = 4  # stage 1 symbol meaning "none of the neighbours' labels"
_N_SYM = 5  # stage 1 alphabet: rank 0..3 among the distinct neighbour labels, or escape
_KINDS = 4  # pass kinds: 0 first pixel, 1 diagonal, 2 edge (x odd), 3 edge (y odd)
_N_FEAT = 5  # how many of a pixel's extra neighbours hold its rank-0 label, scaled to 0..4
_NO_NB = 64  # pattern of a pixel without neighbours (the first pixel)
_N_ACT = 8  # colour spread classes of the main neighbours
_N_SEC = 3  # how many extra neighbours hold the rank-1 label, scaled to 0..2
_N_DC = 4  # how far apart the colours of the rank-0 and rank-1 labels are: bitlen(d) // _DCS, at most 3
_DCS = 4
_PRIOR_BITS = 12  # the base context's probabilities, in units of 2^-12
_BETA = 32  # weight of the prior, in pixels
_N_NEAR = 8  # escape rows: how near the reference the nearest candidate is, min(7, bitlen(its position))
_NN_MAX = 256  # up to this k, escapes are ranked by colour distance (k x k tables); above, by label
# Public: above this K an escape costs far more (ranked by label), so a photo's file nearly doubles from
# K = 256 to 384; a target's search does not cross it on its own accord.
RANKED_K_MAX = _NN_MAX
_SUB_BITS = 1  # an escape rank's bucket splits each octave into 2^_SUB_BITS
# entries of a (chunk, k) distance array made at once: 256 kB of float32, and a product OpenBLAS makes in one
# thread (up to 2^18 multiply-adds; above, its threads spin for CPU time 10x the work's)
_CHUNK = 1 << 16
_CELL_SHIFT = {1: 0, 2: 3, 3: 5, 4: 6}  # per channel count: S >> shift gives the mean-colour cell
_SUM_BITS = 10  # a channel's sum over 4 neighbours (at most 1020) in a packed sum of colours (_Model.packed)
_SUM_MASK = (1 << _SUM_BITS) - 1


# ---------------------------------------------------------------------------------------------------------
# Neighbour equality patterns

_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))


def _pattern_tables() -> tuple[np.ndarray, np.ndarray]:
    """For each 6-bit equality pattern of 4 neighbours (plus pattern 64: no neighbours): the neighbour
    holding each rank, and the number of ranks.

    Bit b of a pattern is set when the pair ``_PAIRS[b]`` of neighbours hold equal labels. The distinct
    labels are ranked by how many neighbours hold them (more first), ties by the first neighbour holding
    them. Returns ``rank_pos`` (65, 4) int64 (a neighbour holding rank r; 0 where unused) and ``n_ranks``
    (65,) int64. Patterns that equality cannot produce get a harmless answer.
    """
    rank_pos = np.zeros((65, 4), dtype=np.int64)
    n_ranks = np.zeros(65, dtype=np.int64)
    for code in range(64):
        group = list(range(4))
        for b, (i, j) in enumerate(_PAIRS):
            if code >> b & 1:
                gi, gj = group[i], group[j]
                group = [min(gi, gj) if g in (gi, gj) else g for g in group]
        heads = sorted(set(group), key=lambda g: (-group.count(g), g))
        rank_pos[code, :len(heads)] = heads
        n_ranks[code] = len(heads)
    return rank_pos, n_ranks


_RANK_POS, _N_RANKS = _pattern_tables()
_RANK_POS_U8 = _RANK_POS.astype(np.uint8)
# The patterns equality can produce (the 15 partitions of the 4 main neighbours), then _NO_NB: a pass numbers
# its stage-1 rows by the pattern's place here, so they are few enough to count densely (see _Context.rows).
_PATTERNS = np.array(sorted({sum(1 << b for b, (i, j) in enumerate(_PAIRS) if t[i] == t[j])
                             for t in product(range(4), repeat=4)}) + [_NO_NB])
_N_PAT = len(_PATTERNS)
_PAT_INDEX = np.zeros(65, np.uint16)
_PAT_INDEX[_PATTERNS] = np.arange(_N_PAT)
# Of each pattern, in one byte (one gather a pixel, not three): the neighbour of rank 0, of rank 1, the index.
_PAT_INFO = (_RANK_POS_U8[:, 0] | _RANK_POS_U8[:, 1] << 2 | _PAT_INDEX.astype(np.uint8) << 4).astype(np.uint8)
_PASS_BASE_ROWS = _N_PAT * _N_FEAT * _N_ACT  # a pass's base rows, whose statistics are the full rows' prior
_PASS_ROWS = _N_SEC * _N_DC * _PASS_BASE_ROWS  # a pass's stage-1 rows
_PASS_KEYS = _PASS_ROWS * _N_SYM  # (row, symbol) pairs of a pass: 38 400, below 2^16
_ROW_RANKS = _N_RANKS[_PATTERNS[np.arange(_PASS_BASE_ROWS) // (_N_FEAT * _N_ACT)]]  # by base row
_ONES = np.ones(_N_SYM, np.int64)  # a stage-1 row times it is the row's sum


def _valid_rows(k: int) -> np.ndarray:
    """(base rows, 5) bool: rank r is possible when r < R; escape when a label is left (R < k)."""
    valid = np.arange(_N_SYM)[None, :] < _ROW_RANKS[:, None]
    valid[:, _ESC] = _ROW_RANKS < k
    return valid


# ---------------------------------------------------------------------------------------------------------
# Pass order and neighbourhoods


@dataclass(frozen=True)
class _Pass:
    kind: int  # 0 first pixel, 1 diagonal, 2 edge at (s/2, 0), 3 edge at (0, s/2)
    step: int  # the level's grid spacing s; the pass fills in points at offset s/2


def _top_step(width: int, height: int) -> int:
    """The coarsest grid spacing: the smallest power of two >= both sides, so its grid is pixel (0, 0)."""
    s = 1
    while s < width or s < height:
        s <<= 1
    return s


def _passes(width: int, height: int) -> Iterator[_Pass]:
    s = _top_step(width, height)
    yield _Pass(0, s)
    while s > 1:
        for kind in (1, 2, 3):
            yield _Pass(kind, s)
        s >>= 1


def _region(p: _Pass) -> tuple[slice, slice]:
    """The pixels of pass ``p`` as (row, column) slices of the (H, W) label map, coded in raster order."""
    s, h = p.step, p.step // 2
    return {0: (slice(0, 1), slice(0, 1)), 1: (slice(h, None, s), slice(h, None, s)),
            2: (slice(0, None, s), slice(h, None, s)), 3: (slice(h, None, s), slice(0, None, s))}[p.kind]


def _shifted(a: np.ndarray, rows: int, cols: int, offsets: list[tuple[int, int]]) -> list[np.ndarray]:
    """``a[i + di, j + dj]`` for i < rows, j < cols and each (di, dj) in ``offsets``, reading outside ``a``
    as its nearest edge element (which mirrors a missing neighbour through the pixel, or near enough)."""
    pad, starts = _padded(a, rows, cols, offsets)
    return [pad[r0:r0 + rows, c0:c0 + cols] for r0, c0 in starts]


def _padded(a: np.ndarray, rows: int, cols: int, offsets: list[tuple[int, int]]
            ) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """_shifted's padded copy of ``a`` and where in it each offset's (rows, cols) view starts."""
    if not a.size:  # no edge to read: the padding below would fill with whatever np.empty held
        raise ValueError("no labels to take neighbours of")
    lo_r = max(0, -min(d for d, _ in offsets))
    lo_c = max(0, -min(d for _, d in offsets))
    hi_r = max(0, rows + max(d for d, _ in offsets) - a.shape[0])
    hi_c = max(0, cols + max(d for _, d in offsets) - a.shape[1])
    # np.pad(mode="edge") by hand: np.pad's own overhead is most of a small pass's neighbours
    h, w = a.shape
    pad = np.empty((lo_r + h + hi_r, lo_c + w + hi_c), a.dtype)
    pad[lo_r:lo_r + h, lo_c:lo_c + w] = a
    pad[:lo_r, lo_c:lo_c + w] = a[:1]
    pad[lo_r + h:, lo_c:lo_c + w] = a[-1:]
    pad[:, :lo_c] = pad[:, lo_c:lo_c + 1]
    pad[:, lo_c + w:] = pad[:, lo_c + w - 1:lo_c + w]
    return pad, [(lo_r + di, lo_c + dj) for di, dj in offsets]


class _Extras:
    """A pass's extra neighbours, as (rows, cols) views of padded copies of the grids they come from
    (``views``), and gathered at some of the pass's pixels (``at``)."""

    def __init__(self, rows: int, cols: int) -> None:
        self.rows, self.cols = rows, cols
        self.views: list[np.ndarray] = []
        self._groups: list[tuple[np.ndarray, list[tuple[int, int]]]] = []

    def add(self, a: np.ndarray, offsets: list[tuple[int, int]], main: tuple[tuple[int, int], ...] = ()
            ) -> list[np.ndarray]:
        """Add the neighbours at ``offsets`` in ``a``; returns the views of the ``main`` offsets (the pass's main
        neighbours in the same grid) from the same padded copy: its edge is the nearest element whatever the
        padding's width, so one copy serves both (a copy of the grid a pass spared, 2 of 3 at a level)."""
        pad, starts = _padded(a, self.rows, self.cols, offsets + list(main))
        views = [pad[r0:r0 + self.rows, c0:c0 + self.cols] for r0, c0 in starts]
        self.views += views[:len(offsets)]
        self._groups.append((pad, starts[:len(offsets)]))
        return views[len(offsets):]

    def stripe(self, r0: int, r1: int) -> "_Extras":
        """The same neighbours of the pass's rows r0 .. r1 - 1 alone."""
        out = _Extras(r1 - r0, self.cols)
        out.views = [v[r0:r1] for v in self.views]
        out._groups = [(pad, [(a + r0, b) for a, b in starts]) for pad, starts in self._groups]
        return out

    def at(self, r: np.ndarray, c: np.ndarray) -> list[np.ndarray]:
        """(m,) the extra neighbours of the pixels at rows r, columns c of the pass, in ``views``' order: each a
        gather from a view of its flat padded copy (a 2-D fancy index costs 4 times as much)."""
        out = []
        for pad, starts in self._groups:
            w = pad.shape[1]
            flat = pad.reshape(-1)
            base = r * w + c
            out += [flat[r0 * w + c0:][base] for r0, c0 in starts]
        return out


def _neighbours(canvas: np.ndarray, p: _Pass) -> tuple[np.ndarray, _Extras]:
    """The 4 main and the extra neighbours of every pixel of pass ``p``, from the decoded part of ``canvas``:
    the 4 main labels as one (4, n) array of the canvas's type, in the pass's raster order (see _main_extra)."""
    main, extra = _main_extra(canvas, p)
    return _stacked(main, 0, extra.rows), extra


def _stacked(main: list[np.ndarray], r0: int, r1: int) -> np.ndarray:
    """Rows r0 .. r1 - 1 of the 4 main neighbours' (rows, cols) views as one (4, n) array, copied once, into
    the array the coding reads as well."""
    rows, cols = r1 - r0, main[0].shape[1]
    stacked = np.empty((4, rows, cols), main[0].dtype)
    for i in range(4):
        stacked[i] = main[i][r0:r1]
    return stacked.reshape(4, -1)


def _main_extra(canvas: np.ndarray, p: _Pass) -> tuple[list[np.ndarray], _Extras]:
    """The 4 main and the extra neighbours of every pixel of pass ``p``, from the decoded part of ``canvas``.

    Returns the 4 main labels as (rows, cols) views of the canvas's type, and the E
    extra ones (_Extras: (rows, columns) views of the pass's shape, compared in place: copies would cost more).
    Main neighbours are at distance s/2: for a diagonal pass top-left, top-right, bottom-left, bottom-right;
    for an edge pass the two on the coarse grid, then the two from the previous pass. Extra ones are further
    away or from the previous edge pass (see docs/FORMAT.md).
    """
    s, h = p.step, p.step // 2
    grid = canvas[0::s, 0::s]
    r, c = canvas[_region(p)].shape
    diag = canvas[h::s, h::s]
    extra = _Extras(r, c)
    if p.kind == 1:
        main = extra.add(grid, [(-1, 0), (-1, 1), (2, 0), (2, 1), (0, -1), (1, -1), (0, 2), (1, 2)],
                         ((0, 0), (0, 1), (1, 0), (1, 1)))
    elif p.kind == 2:
        if diag.size:
            up, down = extra.add(diag, [(-1, -1), (-1, 1), (0, -1), (0, 1)], ((-1, 0), (0, 0)))
        left, right = extra.add(grid, [(-1, 0), (-1, 1), (1, 0), (1, 1)], ((0, 0), (0, 1)))
        if not diag.size:
            up, down = left, right
        main = [left, right, up, down]
    else:
        up, down = _shifted(grid, r, c, [(0, 0), (1, 0)])
        edge = canvas[0::s, h::s]
        if diag.size:
            left, right = _shifted(diag, r, c, [(0, -1), (0, 0)])
            extra.add(edge, [(0, -1), (0, 0), (1, -1), (1, 0)])
        else:
            left, right = up, down
        main = [up, down, left, right]
    return main, extra


def _pieces(n: int) -> list[tuple[int, int]]:
    """Split a pass of n pixels into pieces, each about as large as all before it, so the model is
    refreshed often while it is young and rarely (cheaply) once it has seen a lot."""
    bounds = [0]
    first = max(1024, n >> 6)
    while bounds[-1] < n:
        bounds.append(min(n, max(first, 2 * bounds[-1])))
    return list(zip(bounds[:-1], bounds[1:]))


_POW2 = np.int64(1) << np.arange(63, dtype=np.int64)


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Number of bits of each non-negative integer (0 for 0), exactly (no floating point)."""
    return np.searchsorted(_POW2, x, side="right")


# activity of a spread s: min(_N_ACT - 1, bit_length(s) // 2), the number of these it reaches (bit_length(s) >= 2a
# from s >= 2^(2a - 1) on)
_ACT_FROM = [1 << (2 * a - 1) for a in range(1, _N_ACT)]
# how far apart two colours are, min(_N_DC - 1, bitlen(d) // _DCS), the number of these d reaches (bitlen(d) >= _DCS·t
# from d >= 2^(_DCS·t - 1) on)
_APART_FROM = [1 << (_DCS * t - 1) for t in range(1, _N_DC)]


def _at_least(x: np.ndarray, bounds: list[int]) -> np.ndarray:
    """(n,) uint8: how many of ``bounds`` each x reaches, by comparisons: a gather from a table, or np.minimum
    with a scalar (numpy's slow path), costs 5-10 times one comparison."""
    out = np.zeros(x.shape, np.uint8)
    for b in bounds:
        out += x >= b
    return out


# Up to this k, 4 labels fit one uint16 (4 bits each): a pass of at least _ACT_TABLE_MIN pixels reads their
# activity from a table of all 65 536 (made once, 1-2 ms) instead of gathering 6 distances a pixel.
_ACT_TABLE_K = 16
_ACT_TABLE_MIN = 1 << 16


def _activity(model: "_Model", nb: np.ndarray) -> np.ndarray:
    """(n,) uint8 0 .. _N_ACT-1: how far apart the 4 main neighbours' colours are.

    ``spread`` = the sum over the 6 pairs of main neighbours of their colours' squared distance;
    activity = min(_N_ACT - 1, bit_length(spread) // 2), 0 when all four are equal.
    """
    if model.k <= _ACT_TABLE_K and len(nb[0]) >= _ACT_TABLE_MIN:
        if model.act_table is None:
            every = np.arange(1 << 16, dtype=np.uint16)
            model.act_table = _spread_activity(model, np.stack([every >> np.uint16(4 * (3 - i)) & np.uint16(15)
                                                                for i in range(4)]))
        index = nb[0] << np.uint16(12)
        for i in (1, 2, 3):
            index |= nb[i] << np.uint16(4 * (3 - i))
        return model.act_table.take(index)
    return _spread_activity(model, nb)


def _spread_activity(model: "_Model", nb: np.ndarray) -> np.ndarray:
    """_activity from the 6 distances of each pixel."""
    if model.k <= _NN_MAX:
        # From the k x k table of distances clipped at _ACT_FROM[-1] (past which the activity is the top one
        # whatever the others add): a uint16 sum, and a table of 8 kB at K = 64 that stays in the cache where
        # a 256 x 256 one of int32 did not (a grey photo's pass at K = 64: 3.3 ms -> 1.4).
        k = np.uint16(model.act_k)
        high = [nb[i] * k for i in range(3)]  # (uint16 at most k² - k: its row, made once)
        spread = model.act_d2.take(high[0] + nb[1])
        for i, j in _PAIRS[1:]:
            spread += model.act_d2.take(high[i] + nb[j])
        return _at_least(spread, _ACT_FROM)
    # each neighbour's channels gathered once, not once per pair (12 gathers of a channel, not 24)
    colours = [model.colours(nb[i]) for i in range(4)]
    # int32 (at most 6·4·255²), begun by the first pair's: an int64 sum from zeros cost a sixth more (K = 1107)
    spread = _sq_dist(colours[0], colours[1])
    for i, j in _PAIRS[1:]:
        spread += _sq_dist(colours[i], colours[j])
    return _at_least(spread, _ACT_FROM)


def _sq_dist(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """Squared distance of colours given as channel arrays (int32: at most 4·255², exact)."""
    out = np.subtract(a[0], b[0])
    out *= out
    for x, y in zip(a[1:], b[1:]):
        d = np.subtract(x, y)
        d *= d
        out += d
    return out


def _pick(nb: np.ndarray, which: np.ndarray) -> np.ndarray:
    """(n,) uint16: nb[which[i]][i], the label of the main neighbour ``which`` names. By arithmetic, xor-ing in
    nb[i] ^ nb[0] where which is i: 2 to 10 times cheaper than masked copies (whose cost grows as ``which``
    varies) and than a gather from the stacked neighbours by int64 index."""
    out = nb[0].copy()
    for i in (1, 2, 3):
        out ^= (nb[i] ^ nb[0]) * (which == i)
    return out


# near of an escape (k <= _NN_MAX) from its nearest candidate's position p <= k: min(_N_NEAR - 1, bit_length(p))
_NEAR_OF = np.minimum(_N_NEAR - 1, _bit_length(np.arange(_NN_MAX + 1)))


# For a pattern p and a 4-bit mask m of the main neighbours holding a label: its stage-1 symbol, the rank of
# the neighbour group it is in (or escape when no neighbour holds it).
_SYM_OF_MATCH = np.full(65 * 16, _ESC, np.uint8)
for _p in range(65):
    for _m in range(1, 16):
        for _r in range(int(_N_RANKS[_p]) - 1, -1, -1):
            if _m >> int(_RANK_POS[_p, _r]) & 1:
                _SYM_OF_MATCH[_p * 16 + _m] = _r
# For a pattern p and a symbol s < 4: the main neighbour holding the label of rank s.
_POS_OF_SYM = _RANK_POS_U8.reshape(-1)


@dataclass
class _Context:
    """What both sides know about the pixels of a pass before coding them; arrays of length n."""
    pattern: np.ndarray  # (n,) uint8 equality pattern of the main neighbours, 0..64
    # (n,) uint16 stage-1 row in the pass: (second·_N_DC + apart)·_PASS_BASE_ROWS + base row, the base row
    # (_PAT_INDEX[pattern]·_N_FEAT + feature)·_N_ACT + act. docs/FORMAT.md's r1 and r0 with the pass's kind left
    # out and the pattern numbered among those that occur: the same contexts, 16 times fewer rows.
    rows: np.ndarray
    act: np.ndarray  # (n,) uint8 0.._N_ACT-1: colour spread of the main neighbours
    nb: np.ndarray  # (4, n) uint16 the main neighbours' labels


def _context(kind: int, nb: np.ndarray, extra: list[np.ndarray], model: "_Model") -> _Context:
    if kind == 0:
        pattern = np.full(1, _NO_NB, np.uint8)
        return _Context(pattern, _PAT_INDEX[pattern] * np.uint16(_N_FEAT * _N_ACT), np.zeros(1, np.uint8),
                        np.zeros((4, 1), np.uint16))
    n = len(nb[0])
    # small dtypes: at 12 MP every byte per pixel of these temporaries costs 12 MB and time
    pattern = _pattern(nb)
    # the rank-0 label, then how many extra neighbours hold it
    shape = extra[0].shape if extra else n
    info = _PAT_INFO.take(pattern)  # (take: half the time of indexing)
    top = _pick(nb, info & np.uint8(3))
    same = np.zeros(shape, np.uint8)
    for e in extra:
        same += (e == top.reshape(shape)).view(np.uint8)  # (adding the bools as bytes: no cast)
    act = _activity(model, nb)
    # the rank-1 label (c0 again when R = 1): how many extra neighbours hold it, how far from c0's colour
    sec = _pick(nb, (info >> np.uint8(2)) & np.uint8(3))
    same2 = np.zeros(shape, np.uint8)
    for e in extra:
        same2 += (e == sec.reshape(shape)).view(np.uint8)
    same, same2 = same.reshape(-1), same2.reshape(-1)
    n_extra = np.uint8(max(1, len(extra)))
    rows = _at_least((same2 * np.uint8(4)) // n_extra, list(range(1, _N_SEC))).astype(np.uint16)
    rows *= np.uint16(_N_DC)
    rows += model.apart(top, sec)
    rows *= np.uint16(_N_PAT)
    rows += info >> np.uint8(4)
    rows *= np.uint16(_N_FEAT)
    rows += (same * np.uint8(_N_FEAT - 1)) // np.uint8(len(extra)) if extra else same
    rows *= np.uint16(_N_ACT)
    rows += act
    return _Context(pattern, rows, act, nb)


# ---------------------------------------------------------------------------------------------------------
# Entropy coding sides: the same model code drives both


@dataclass
class _Weights:
    """A table of symbol weights, ``rows`` rows, made on demand: ``make(ids)`` gives the rows ``ids`` (or all
    of them for None) as a (len(ids), A) int64 array."""
    rows: int
    make: Callable[[np.ndarray | None], np.ndarray]


def _tables(weights: _Weights, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rANS tables for the rows a batch uses, and the batch's rows renumbered into them. A small batch gets the
    rows it uses only: a whole table costs more than coding a few symbols."""
    if 4 * len(rows) < weights.rows:
        ids, rows = np.unique(rows, return_inverse=True)
        return (*rans.cdf_tables(weights.make(ids)), rows.reshape(-1))
    used = np.bincount(rows, minlength=weights.rows) > 0
    ids = np.flatnonzero(used)
    if 2 * len(ids) > weights.rows:
        return (*rans.cdf_tables(weights.make(None)), rows)
    remap = np.cumsum(used) - 1
    return (*rans.cdf_tables(weights.make(ids)), remap[rows])


# Up to this many 16-bit keys a batch is counted by a sort, above it by bincount: numpy's sort of a large piece's
# keys (runs of one key or not) costs 5-10 times bincount's table (numpy 2.4: 262k keys of a screenshot's flat
# pass 2.7 ms against 0.5; 66k keys 0.44 against 0.19), while a small piece's sort is cheaper than a table of
# every key (2k-16k keys: equal or better).
_SORT_MAX = 1 << 14
_RADIX_MIN = 1 << 10


def _count(keys: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ``keys`` (< size; sorted, intp) of a batch and how often each occurs: what learning it
    needs, and the encoder's tables. A small batch is sorted, and 16-bit keys up to _SORT_MAX of them; the
    others are counted per key."""
    if len(keys) and (16 * len(keys) < size or keys.dtype.itemsize <= 2 and len(keys) <= _SORT_MAX):
        # (a small batch too: np.unique's own Python-level work was a tenth of a sample's sizing, 320 x 320)
        ordered = keys.copy()
        # (np.sort's own: a copy sorted in place; 16-bit keys from _RADIX_MIN on by numpy's radix sort, its stable
        # kind for them: a piece's keys, runs of one key or not, 1.1x cheaper than its quicksort at 1,024 keys,
        # 1.8x at 4,096, 3.7x at 16,384 (numpy 2.4, idle machine); under 1,024 about 3x dearer)
        ordered.sort(kind="stable" if keys.dtype.itemsize <= 2 and len(keys) >= _RADIX_MIN else None)
        first = np.empty(len(ordered), bool)
        first[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
        at = first.nonzero()[0]  # (1-D: flatnonzero is nonzero of a ravel, in Python)
        # (each count the gap to the next distinct key: np.diff with append= did 10 times the Python-level work)
        counts = np.empty(len(at), np.intp)
        np.subtract(at[1:], at[:-1], out=counts[:-1])
        counts[-1] = len(ordered) - at[-1]
        return ordered[at].astype(np.intp), counts
    if not len(keys):
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    # in spans: bincount casts its keys to intp, 8 bytes each (48 MB for a 48 MP image's last piece of 6 MP)
    counts = np.bincount(keys[:_STRIPE_PIXELS], minlength=size)
    for a in range(_STRIPE_PIXELS, len(keys), _STRIPE_PIXELS):
        counts += np.bincount(keys[a:a + _STRIPE_PIXELS], minlength=size)
    used = counts.nonzero()[0]
    return used, counts[used]


def _key_tables(weights: _Weights, used: np.ndarray, n_sym: int, cum: bool = True
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """(freq, cum) of each (row, symbol) pair of ``used`` (sorted keys row·n_sym + symbol), from the tables of
    its rows only (cum None unless asked for: bounds read freq alone)."""
    rows, syms = np.divmod(used, n_sym)
    first = np.empty(len(rows), bool)
    first[0] = True
    np.not_equal(rows[1:], rows[:-1], out=first[1:])
    at = first.cumsum()
    # (flat positions, at counting from 1: one gather each instead of a 2-D fancy index)
    at *= n_sym
    at += syms - n_sym
    f, c = rans.cdf_tables(weights.make(rows[first]), cum)
    if not cum:
        return f.reshape(-1).take(at), None
    return f.reshape(-1).take(at), c[:, :n_sym].reshape(-1).take(at)


class _Stream:
    """The encoder's side: the (freq, cum) of every symbol, in coding order, as rans.encode_parts' parts: a batch
    of keys with its tables of (freq - 1, cum) in uint16 (the keys are views of the pass's: 2 bytes a pixel), and
    uniform symbols' (freq - 1, cum) themselves."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    @property
    def freqs(self) -> list[np.ndarray]:
        """The symbols' frequencies, part by part (uint32)."""
        return [(p[1].take(p[0]) if len(p) == 3 else p[0]).astype(np.uint32) + np.uint32(1) for p in self.parts]

    def keyed(self, weights: _Weights, n_sym: int, keys: np.ndarray, used: np.ndarray, counts: np.ndarray
              ) -> None:
        """Code a batch of symbols given as keys row·n_sym + symbol, of which ``used`` are the distinct ones."""
        self.put(keys, used, *_key_tables(weights, used, n_sym))

    def put(self, keys: np.ndarray, used: np.ndarray, f: np.ndarray, c: np.ndarray) -> None:
        """Code a batch of keys, given the (freq, cum) of the distinct ones ``used``."""
        fs, cs = _compact_tables(used, f, c)
        # a batch smaller than its tables (a pass's first pieces: tables of up to 38 400 keys) kept as its symbols'
        # (freq - 1, cum): a 48 MP image has ~1,000 batches, whose tables took 2/3 of a 1 MP image's stream
        self.parts.append((fs.take(keys), cs.take(keys)) if len(keys) < len(fs) else (keys, fs, cs))

    def uniform(self, less: np.ndarray, cum: np.ndarray) -> None:
        """Code uniform symbols given as their (freq - 1, cum), uint16 (kept as they are: views of the pass's)."""
        self.parts.append((less, cum))

    def uniform_keyed(self, keys: np.ndarray, less: np.ndarray, cum: np.ndarray) -> None:
        """Code uniform symbols given as keys into tables of their (freq - 1, cum) (the keys kept as they are)."""
        self.parts.append((keys, less, cum))

    def replay(self, calls: list[tuple]) -> None:
        """Code what a _Cost recorded: the same symbols, without modelling them again (its keys are the parts'
        keys, not copied)."""
        for keys, used, f, c in calls:
            if keys is None:
                self.uniform(f, c)
            else:
                self.put(keys, used, f, c)


def _compact_tables(used: np.ndarray, f: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tables by key of the (freq - 1, cum) of the distinct keys ``used``, uint16 (see _Stream)."""
    fs, cs = np.empty(used[-1] + 1, np.uint16), np.empty(used[-1] + 1, np.uint16)
    fs[used] = f - 1
    cs[used] = c
    return fs, cs


class _Cost:
    """payload_bounds' side: what the symbols cost, without listing them. ``bits`` = the sum of -log2(freq / M),
    ``short`` = the sum of M - freq (see payload_bounds), over every symbol. With ``record``, ``calls`` keeps
    each batch's keys and tables (2 bytes a pixel, 12 an escape), for _Stream.replay."""

    def __init__(self, record: bool = False) -> None:
        self.bits = 0.0
        self.short = 0
        self.calls: list[tuple] | None = [] if record else None

    def keyed(self, weights: _Weights, n_sym: int, keys: np.ndarray, used: np.ndarray, counts: np.ndarray
              ) -> None:
        f, c = _key_tables(weights, used, n_sym, self.calls is not None)
        self.bits += float(np.dot(counts, rans.SCALE_BITS - np.log2(f)))
        self.short += int(np.dot(counts, rans.M - f))
        if self.calls is not None:
            # (an escape's key, intp, kept in 4 bytes: below the escape rows times the buckets)
            self.calls.append((keys if keys.dtype.itemsize <= 4 else keys.astype(np.int32), used, f, c))

    def uniform(self, less: np.ndarray, cum: np.ndarray) -> None:
        freq = less.astype(np.int64)  # (int64, as the sums were always made: the same bounds to the last bit)
        freq += 1
        self.bits += float((rans.SCALE_BITS - np.log2(freq)).sum())
        self.short += int((rans.M - freq).sum())
        if self.calls is not None:
            self.calls.append((None, None, less, cum))  # (as _Stream's)

    def uniform_keyed(self, keys: np.ndarray, less: np.ndarray, cum: np.ndarray) -> None:
        self.uniform(less.take(keys), cum.take(keys))


class _Decoder:
    def __init__(self, dec: rans.Decoder) -> None:
        self.dec = dec

    def code(self, weights: _Weights, rows: np.ndarray) -> np.ndarray:
        """Decode a batch: symbol i with probabilities proportional to row ``rows[i]`` of ``weights``."""
        if len(rows) == 0:
            return np.zeros(0, np.int64)
        f, c, rows = _tables(weights, rows)
        return self.dec.decode(rows, f, c)

    def uniform(self, sizes: np.ndarray) -> np.ndarray:
        """Decode a batch: symbol i uniform over 0 .. sizes[i] - 1."""
        return self.dec.decode_uniform(sizes)

# ---------------------------------------------------------------------------------------------------------
# The model


def _bucket(rank: np.ndarray) -> np.ndarray:
    """Bucket of an escape rank r: r itself below 2^(S+1) (S = _SUB_BITS); else, with L = bit_length(r) - 1,
    2^S·(L - S) + (r >> (L - S)): each octave [2^L, 2^(L+1)) split into 2^S buckets of equal size."""
    rank = np.asarray(rank, np.int64)
    shift = np.maximum(_bit_length(rank) - 1 - _SUB_BITS, 0)
    return np.where(rank < (2 << _SUB_BITS), rank, (shift << _SUB_BITS) + (rank >> shift))


def _bucket_base_size(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First rank and number of ranks of bucket b."""
    b = np.asarray(b, np.int64)
    shift = np.maximum((b >> _SUB_BITS) - 1, 0)
    top = b - (shift << _SUB_BITS)
    return top << shift, np.int64(1) << shift


# A target's search sizes tens of labellings, most of a few palettes (a K's plain file and its rdo runs), and a
# small image's sizing was up to 0.4 of its palette's tables (K = 256: 1.9 ms of 5.0 at 8 x 8; K = 65536: 2.6 of
# 6.3): those of the latest palettes are kept for the process. Nothing in them changes once made but the cells met
# and the activity table, made as needed, the same whichever model makes them.
_TABLES_KEPT = 4
_TABLES: dict[tuple, "_PaletteTables"] = {}
_TABLES_LOCK = threading.Lock()


class _PaletteTables:
    """What a _Model reads of its palette alone (see _Model for each)."""

    def __init__(self, k: int, palette: np.ndarray) -> None:
        self.k = k
        self.pal = palette.astype(np.int64)
        self.pal_cols = [np.ascontiguousarray(self.pal[:, c]) for c in range(self.pal.shape[1])]
        self.cols32 = [col.astype(np.int32) for col in self.pal_cols]
        # (int64 0/1, as esc_valid: a bool mask is cast again by each product it enters)
        self.base_valid = _valid_rows(k).astype(np.int64)
        self.n_buckets = int(_bucket(np.array([k - 1]))[0]) + 1
        base, size = _bucket_base_size(np.arange(self.n_buckets))
        self.bucket_base, self.bucket_size = base, size
        self.bucket_of = _bucket(np.arange(k))  # the bucket of each escape rank (ranks are below k)
        # bucket b is possible when its first rank exists: rank < k - R (R candidates are excluded)
        self.esc_valid = (base[None, :] < (k - np.arange(5))[:, None]).astype(np.int64)
        if k <= _NN_MAX:
            # order[r] = the labels by increasing colour distance from label r (ties: lower label first);
            # pos[r, l] = where label l is in order[r].
            dist = sum((col[:, None] - col[None, :]) ** 2 for col in self.pal_cols)  # (k, k): no (k, k, ch) sums
            key = dist * k + np.arange(k)[None, :]
            self.order = np.argsort(key, axis=1).astype(np.int64)
            self.pos = np.empty_like(self.order)
            np.put_along_axis(self.pos, self.order, np.arange(k)[None, :], axis=1)
            # (uint16, as the excluded positions read from it: k <= 256 and the sentinel k fit, a quarter of
            # int64's table and arrays)
            self.pos_flat = self.pos.reshape(-1).astype(np.uint16)
            # Tables of label pairs a, b at a·act_k + b: k x k (rows at least 16 long, for the table of every 4
            # labels of 4 bits: _activity), far smaller than 256 x 256 ones (K = 64: 8 kB, kept in the cache).
            self.act_k = max(k, 16)
            d2 = np.zeros((self.act_k, self.act_k), np.int32)
            d2[:k, :k] = dist
            pairs = d2.reshape(-1)
            # d2 clipped at the last activity bound (see _spread_activity): 6 of them sum in a uint16
            self.act_d2 = np.minimum(pairs, _ACT_FROM[-1]).astype(np.uint16)
            self.apart_of = _at_least(pairs, _APART_FROM)
            # each entry's channels, the first highest, _SUM_BITS apart (at most 40 bits: see _reference)
            self.packed = sum(col << np.int64(_SUM_BITS * (len(self.pal_cols) - 1 - c))
                              for c, col in enumerate(self.pal_cols))
        # made as needed: see _Model.cells, _Model.act_table
        self.shared: dict[str, np.ndarray | None] = {"cells": None, "act_table": None}


def _shared(name: str, doc: str) -> property:
    """A _Model attribute kept in its palette's tables (_PaletteTables.shared): made as needed, by whichever model."""
    return property(lambda self: self.tables.shared[name], lambda self, value: self.tables.shared.update({name: value}),
                    doc=doc)


class _Model:
    """Adaptive statistics; encoder and decoder call the same methods in the same order."""

    def __init__(self, k: int, palette: np.ndarray) -> None:
        key = palette.shape, palette.tobytes()
        tables = _TABLES.get(key)
        if tables is None:
            tables = _TABLES[key] = _PaletteTables(k, palette)
            for old in list(_TABLES)[:-_TABLES_KEPT]:
                _TABLES.pop(old, None)  # (pop: another thread may have dropped it)
        self.tables = tables
        self.__dict__.update({name: value for name, value in vars(tables).items() if name != "shared"})
        # N1 and B (docs/FORMAT.md) of each kind of pass, by key row·_N_SYM + symbol of the pass's rows
        self.rank = np.zeros((_KINDS, _PASS_KEYS), dtype=np.int64)
        self.base = np.zeros((_KINDS, _PASS_BASE_ROWS * _N_SYM), dtype=np.int64)
        self.esc = np.zeros((_KINDS * _N_ACT * _N_NEAR, self.n_buckets), dtype=np.int64)
        self.offset_less, self.offset_cum = self._offset_tables()

    cells = _shared("cells", "Reference entry of each mean-colour cell (-1: not yet met): see _reference.")
    act_table = _shared("act_table", "The activity of every 4 labels of 4 bits: see _activity.")

    def apart(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """How far apart the colours of labels a and b are: min(_N_DC - 1, bitlen(d(a, b)) // _DCS)."""
        if self.k <= _NN_MAX:
            return self.apart_of.take(a * np.uint16(self.act_k) + b)
        # (by comparisons: _bit_length's binary search was 2/3 of this, 1.6 ms of a 135k-pixel pass at K = 1107)
        return _at_least(self.dist2(a, b), _APART_FROM)

    def dist2(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Squared colour distance of labels a and b (uint16 arrays of equal shape), for k > _NN_MAX (up to
        it, callers read k x k tables of label pairs). Channel by channel in int32: gathering (n, C) int64
        rows and summing along the short axis took 0.8 of a 0.95 s payload_bounds (2.5 MP, K = 1036)."""
        return _sq_dist(self.colours(a), self.colours(b))

    def colours(self, labels: np.ndarray) -> list[np.ndarray]:
        """The channels (int32) of the entries ``labels`` (k > _NN_MAX)."""
        at = labels.astype(np.intp)  # (take casts its indices to intp: once for every channel)
        return [col.take(at) for col in self.cols32]

    # Stage 1: the rank among the neighbours' labels, or escape ---------------------------------------------
    def rank_weights(self, kind: int) -> _Weights:
        """(pass rows, 5) weights of a kind of pass: the counts of the full context plus _BETA pixels' worth of
        the base context's probabilities (its counts plus 1, in units of 2^-_PRIOR_BITS), 0 for impossible
        symbols."""
        rank = self.rank[kind].reshape(_PASS_ROWS, _N_SYM)
        base = self.base[kind].reshape(_PASS_BASE_ROWS, _N_SYM)

        def prior(base: np.ndarray, valid: np.ndarray) -> np.ndarray:
            """The prior, not yet masked by valid (make masks the sum once: the same integers, valid being 0/1)."""
            w = (base + 1) * valid
            # (the row sums as a product: see rans.cdf_tables)
            return (1 + (w << _PRIOR_BITS) // (w @ _ONES)[..., None]) * _BETA

        def make(ids: np.ndarray | None) -> np.ndarray:
            if ids is None:
                valid = self.base_valid
                w = rank.reshape(-1, _PASS_BASE_ROWS, _N_SYM) << _PRIOR_BITS
                w += prior(base, valid)
                w *= valid
                return w.reshape(-1, _N_SYM)
            b = ids % _PASS_BASE_ROWS
            # (rows gathered by take: a fancy index of a 2-D table's rows costs more)
            valid = self.base_valid.take(b, axis=0)
            w = rank.take(ids, axis=0)
            w <<= _PRIOR_BITS
            w += prior(base.take(b, axis=0), valid)
            w *= valid
            return w
        return _Weights(_PASS_ROWS, make)

    def learn_rank(self, kind: int, keys: np.ndarray, counts: np.ndarray) -> None:
        """Count a piece's stage-1 symbols: ``counts`` of each of the distinct pass keys ``keys``."""
        self.rank[kind, keys] += counts
        np.add.at(self.base[kind], keys % self.base.shape[1], counts)

    # Stage 2: an escaped label, as its rank in colour distance from a reference label ---------------------
    def _reference(self, nb: np.ndarray) -> np.ndarray:
        """(m,) the reference entry of escaped pixels: the one nearest the centre of the cell of their main
        neighbours' summed colour S (see _nearest_to_cells); 0 when k > _NN_MAX."""
        m = nb.shape[1]
        if self.k > _NN_MAX or m == 0:
            return np.zeros(m, np.int64)
        ch = self.pal.shape[1]
        shift = _CELL_SHIFT[ch]
        levels = (1020 >> shift) + 1
        # Read once: models of one palette in other threads share the table (h55r2: one storing a fresh table
        # between this call's fill and its read-back coded wrong contexts); made once, under the lock.
        cells = self.cells
        if cells is None:
            with _TABLES_LOCK:
                cells = self.tables.shared["cells"]
                if cells is None:
                    cells = self.tables.shared["cells"] = np.full(levels ** ch, -1, np.int64)  # filled as met
        # The channels' sums at once: each label's channels packed _SUM_BITS apart, whose 4 summed (at most 1020
        # each) do not carry into the next (4 gathers, not 4 a channel; take: about half the time of indexing)
        total = self.packed.take(nb[0])
        for i in (1, 2, 3):
            total += self.packed.take(nb[i])
        cell = total >> np.int64(_SUM_BITS * (ch - 1) + shift)
        for c in range(ch - 2, -1, -1):
            cell *= levels
            part = total >> np.int64(_SUM_BITS * c + shift)
            part &= np.int64(_SUM_MASK >> shift)
            cell += part
        ref = cells.take(cell)
        missing = cell[ref < 0]
        if len(missing):
            # only the cells met (a photo meets a few thousand of 32 768), found without a sort; another thread
            # may fill some of them too, with the same entries
            met = np.zeros(len(cells), bool)
            met[missing] = True
            todo = np.flatnonzero(met)
            cells[todo] = self._nearest_to_cells(shift, todo)
            ref = cells.take(cell)
        return ref

    def _nearest_to_cells(self, shift: int, cells: np.ndarray) -> np.ndarray:
        """For cells of summed colours S (each channel's S >> shift, as one index), the palette entry nearest
        its centre C = (S >> shift << shift) + (1 << shift >> 1): least |4·p - C|^2, lowest entry on ties."""
        ch = self.pal.shape[1]
        levels = (1020 >> shift) + 1
        digits = [(cells // levels ** (ch - 1 - c)) % levels for c in range(ch)]
        centre = np.stack([(d << shift) + ((1 << shift) >> 1) for d in digits], axis=-1)
        pal_f = self.pal.astype(np.float32)
        sq16 = 16 * (self.pal * self.pal).sum(axis=1).astype(np.float32)
        out = np.empty(len(centre), np.int64)
        rows = _CHUNK // len(pal_f)
        for a in range(0, len(centre), rows):
            # |4p - C|^2 - |C|^2 = 16|p|^2 - 8 p.C: integers below 2^24, so float32 is exact
            d = sq16[None, :] - 8 * (centre[a:a + rows].astype(np.float32) @ pal_f.T)
            out[a:a + rows] = np.argmin(d, axis=1)
        return out

    def _positions(self, ref: np.ndarray, labels: np.ndarray) -> np.ndarray:
        # (a gather from the flat table: a 2-D fancy index costs more)
        return labels if self.k > _NN_MAX else self.pos.reshape(-1).take(ref * self.k + labels)

    def _escape_context(self, pattern: np.ndarray, nb: np.ndarray, act: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """What codes the labels of escaped pixels, given their context (pattern, (4, m) main neighbours,
        activity): their reference entry, candidates R, the positions of the excluded candidates (4, m) in
        the reference's order (sorted; k where there is none), and their escape row in the pass
        (act·_N_NEAR + near)·5 + R."""
        ref = self._reference(nb)
        n_ranks = _N_RANKS.take(pattern)
        # The R candidates are the neighbours' distinct labels, whose positions in the reference's order (up to
        # _NN_MAX; above, the labels themselves) are distinct: the 4 neighbours' positions sorted, a repeat of the
        # one before it made k, and sorted again (no rank's candidate picked by the pattern: 4 gathers and 2
        # networks, not 8 and 1; above _NN_MAX a gather along the stacked axis and a sort of each pixel's 4 were
        # 0.8 of the escapes' stage 2 at K = 1107).
        if self.k <= _NN_MAX:
            at = ref * self.k
            k = np.uint16(self.k)
            excl = [self.pos_flat.take(at + nb[i]) for i in range(4)]
        else:
            k = np.int32(self.k)  # (int32: the k of 65536 does not fit uint16)
            excl = [nb[i].astype(np.int32) for i in range(4)]
        _sort4(excl)
        for i in (3, 2, 1):  # (last first: a repeat is compared with the position before it, not with k)
            np.copyto(excl[i], k, where=excl[i] == excl[i - 1])
        none = np.flatnonzero(n_ranks == 0)  # the first pixel: no neighbours, no candidates
        for e in excl if len(none) else ():
            e[none] = k
        _sort4(excl)
        excl = np.stack(excl)
        # how near the reference the nearest candidate is: its bit length of pos (k when there is none)
        near = _NEAR_OF[excl[0]] if self.k <= _NN_MAX else 0
        return ref, n_ranks, excl, (act.astype(np.int64) * _N_NEAR + near) * 5 + n_ranks

    def escape_weights(self, kind: int) -> _Weights:
        """(escape rows of the pass, buckets) weights of a kind of pass (docs/FORMAT.md, "Weights")."""
        esc = self.esc[kind * _N_ACT * _N_NEAR:(kind + 1) * _N_ACT * _N_NEAR]

        def make(ids: np.ndarray | None) -> np.ndarray:
            if ids is None:
                ids = np.arange(len(esc) * 5)
            return (2 * esc[ids // 5] + 1) * self.esc_valid[ids % 5]
        return _Weights(len(esc) * 5, make)

    def learn_escapes(self, kind: int, keys: np.ndarray, counts: np.ndarray) -> None:
        """Count a piece's buckets: ``counts`` of each of the distinct keys (escape row·5 + R)·buckets + bucket."""
        row = kind * _N_ACT * _N_NEAR + keys // (5 * self.n_buckets)
        np.add.at(self.esc.reshape(-1), row * self.n_buckets + keys % self.n_buckets, counts)

    def _offset_sizes(self, bucket: np.ndarray, n_ranks: np.ndarray) -> np.ndarray:
        """How many offsets each bucket holds, its candidates left out."""
        return np.minimum(self.bucket_size.take(bucket), self.k - n_ranks - self.bucket_base.take(bucket))

    def _offset_tables(self) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        """The uniform offsets' (freq - 1, cum), uint16, by key R·k + rank (R candidates, rank below k - R), when
        the 5·k keys fit in uint16 (k <= 13107): the stream keeps an escape's offset as its key, 2 bytes, not
        as its (freq - 1, cum), 4 (48 MP at K = 4096: ~30 million escapes)."""
        if 5 * self.k > 1 << 16:
            return None, None
        rank = np.arange(self.k)
        bucket = self.bucket_of
        offset = rank - self.bucket_base.take(bucket)
        # (a rank at or past k - R never occurs: its size, 0 or less, is made 1 so the table can be filled)
        sizes = [np.maximum(self._offset_sizes(bucket, r), 1) for r in range(5)]
        freq, cum = rans.uniform(np.tile(offset, 5), np.concatenate(sizes))
        freq -= 1
        return freq.astype(np.uint16), cum.astype(np.uint16)

    def escape_symbols(self, pattern: np.ndarray, nb: np.ndarray, act: np.ndarray, value: np.ndarray
                       ) -> tuple[np.ndarray, ...]:
        """The encoder's stage 2 for escaped pixels of labels ``value``: their keys escape row·buckets + bucket,
        and their offsets' keys R·k + rank into the offset tables (_offset_tables), or without those tables
        their offsets' (freq, cum)."""
        if len(value) == 0:
            return np.zeros(0, np.intp), *[np.zeros(0, np.int64)] * (1 if self.offset_less is not None else 2)
        ref, n_ranks, excl, rows = self._escape_context(pattern, nb, act)
        p = self._positions(ref, value)
        rank = p - (excl < p).sum(axis=0)
        bucket = self.bucket_of.take(rank)
        if self.offset_less is not None:
            return rows * self.n_buckets + bucket, n_ranks * self.k + rank
        return rows * self.n_buckets + bucket, *rans.uniform(rank - self.bucket_base.take(bucket),
                                                             self._offset_sizes(bucket, n_ranks))

    def decode_escapes(self, dec: _Decoder, kind: int, cx: _Context, sym: np.ndarray, a: int, out: np.ndarray
                       ) -> None:
        """Decode the labels of a piece's escaped pixels into ``out`` and learn their buckets, given the context
        ``cx`` of the pass and the piece's stage-1 symbols ``sym`` (of its pixels from ``a`` on).

        In spans of _ESCAPE_GROUP pixels: the buckets of them all (the stream's order), then their offsets,
        keeping between the two what each escape's offset and label need (its bucket, excluded positions and
        reference: 10 bytes an escape, where the piece's whole stage 2 at once took ~100, 0.2 GB for a 6 MP
        piece of a noisy 48 MP photo). The same symbols: a row's table is the same whatever others are made."""
        weights = self.escape_weights(kind)
        counts = np.zeros(weights.rows * self.n_buckets, np.intp)
        spans, held = [], []
        for c0 in range(a, a + len(sym), _ESCAPE_GROUP):
            at = np.flatnonzero(sym[c0 - a:c0 - a + _ESCAPE_GROUP] == _ESC)
            if not len(at):
                continue
            at += c0
            ref, _, excl, rows = self._escape_context(cx.pattern[at], cx.nb[:, at], cx.act[at])
            bucket = dec.code(weights, rows)
            rows *= self.n_buckets
            rows += bucket
            counts += np.bincount(rows, minlength=len(counts))
            spans.append(at)
            held.append((bucket.astype(np.uint8), excl.astype(np.uint16 if self.k < 65536 else np.uint32),
                         ref.astype(np.uint8) if self.k <= _NN_MAX else None))
            del ref, excl, rows, bucket, at
        for at, (bucket, excl, ref) in zip(spans, held):
            p = self.bucket_base[bucket] + dec.uniform(self._offset_sizes(bucket, _N_RANKS[cx.pattern[at]]))
            for r in range(4):  # skip over the excluded positions, lowest first
                p += excl[r] <= p
            out[at] = p if self.k > _NN_MAX else self.order[ref, p]
        used = counts.nonzero()[0]
        self.learn_escapes(kind, used, counts[used])


def _sort4(a: list[np.ndarray]) -> None:
    """Sort 4 arrays element-wise in place (the list's arrays replaced) by a network of 5 exchanges."""
    for i, j in ((0, 1), (2, 3), (0, 2), (1, 3), (1, 2)):
        a[i], a[j] = np.minimum(a[i], a[j]), np.maximum(a[i], a[j])


def _symbols(cx: _Context, truth: np.ndarray) -> np.ndarray:
    """(n,) uint8 the stage-1 symbols of labels ``truth``."""
    # which main neighbours hold the label, as a 4-bit mask (made in bytes); with the pattern it names the symbol
    held = (cx.nb[0] == truth).view(np.uint8)
    for i in (1, 2, 3):
        bit = (cx.nb[i] == truth).view(np.uint8)
        np.left_shift(bit, i, out=bit)
        held |= bit
    match = cx.pattern.astype(np.uint16)
    match <<= np.uint16(4)
    match |= held
    return _SYM_OF_MATCH.take(match)


def _pattern(nb: np.ndarray) -> np.ndarray:
    """(n,) uint8 the equality pattern of (4, n) main neighbours."""
    pattern = (nb[0] == nb[1]).view(np.uint8)
    for b, (i, j) in enumerate(_PAIRS[1:], 1):
        bit = (nb[i] == nb[j]).view(np.uint8)
        np.left_shift(bit, b, out=bit)  # (in place: no array made per pair)
        pattern |= bit
    return pattern


# Where at most this share of a pass's pixels have main neighbours of more than one label, those alone get a full
# context (_pass_keys): the others' differ only in how many extra neighbours hold their neighbours' one label.
_MIXED_MAX = 0.5


_FLAT_KEYS: dict[int, np.ndarray] = {}  # _flat_keys' by n_extra


def _flat_keys(model: "_Model", n_extra: int) -> np.ndarray:
    """(2 (n_extra + 1),) uint16: the stage-1 key of a pixel whose 4 main neighbours hold one label, at 2 e + x
    where e extra neighbours hold it too and x = 1 when the pixel's own label is another (an escape). Made by
    _context and _symbols themselves, on pixels of labels 0 and 1, so the keys are theirs. Kept for the process:
    nothing in them is the palette's or k's (4 neighbours of one label: activity 0, the rank-1 label the rank-0
    one, at distance 0), and a search sizes tens of labellings (~0.5 ms each, of a few tables)."""
    keys = _FLAT_KEYS.get(n_extra)
    if keys is None:
        e = np.arange(n_extra + 1)
        nb = np.zeros((4, 2 * (n_extra + 1)), np.uint16)
        extra = [np.repeat(e <= j, 2).astype(np.uint16) for j in range(n_extra)]  # j < e: extra j holds label 0
        truth = np.tile(np.array([0, 1], np.uint16), n_extra + 1)
        cx = _context(1, nb, extra, model)
        keys = _FLAT_KEYS[n_extra] = cx.rows * np.uint16(_N_SYM) + _symbols(cx, truth)
    return keys


def _pass_keys(kind: int, nb: np.ndarray, extra: _Extras, truth: np.ndarray, model: "_Model"
               ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The encoder's stage 1 of a pass of labels ``truth``: its keys row·_N_SYM + symbol (n,) uint16, its
    escapes' places and their contexts (pattern, (4, m) main neighbours, activity). Where most of the pass's
    pixels have 4 main neighbours of one label (flat regions, rdo's smoothed labels: 0.8-0.9 of a screenshot's
    or a grey photo's after rdo), those are keyed from a table by how many extra neighbours hold that label and
    whether the pixel does (their pattern, activity and the rest are fixed), and the full context is made for
    the others alone: the same keys."""
    n = len(truth)
    mixed = nb[0] != nb[1]
    mixed |= nb[0] != nb[2]
    mixed |= nb[0] != nb[3]
    if kind == 0 or np.count_nonzero(mixed) > _MIXED_MAX * n:
        cx = _context(kind, nb, extra.views if extra else [], model)
        sym = _symbols(cx, truth)
        at = (sym == _ESC).nonzero()[0]
        return cx.rows * np.uint16(_N_SYM) + sym, at, (cx.pattern[at], cx.nb[:, at].astype(np.uint16), cx.act[at])
    mixed = mixed.nonzero()[0]
    r = mixed // extra.cols  # (np.divmod took 4 times as long)
    c = mixed - r * extra.cols
    # the flat pixels' keys, for every pixel; the others' replaced below
    escape = truth != nb[0]
    held = escape.view(np.uint8)
    if extra.views:
        first = nb[0].reshape(extra.rows, extra.cols)
        same = np.zeros((extra.rows, extra.cols), np.uint8)
        for e in extra.views:
            same += (e == first).view(np.uint8)
        held = held + (same.reshape(-1) << np.uint8(1))
    keys = _flat_keys(model, len(extra.views)).take(held)
    nb_m = nb.take(mixed, axis=1)
    cx = _context(kind, nb_m, extra.at(r, c), model)
    sym = _symbols(cx, truth[mixed])
    keys[mixed] = cx.rows * np.uint16(_N_SYM) + sym
    escape[mixed] = sym == _ESC
    at = escape.nonzero()[0]
    nb_at = nb.take(at, axis=1).astype(np.uint16)
    return keys, at, (_pattern(nb_at), nb_at, _activity(model, nb_at))


def _encode_pass(model: _Model, side: _Stream | _Cost, kind: int, keys: np.ndarray, cut: list[int],
                 escapes: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Code one pass piece by piece, as _decode_pass finds it: its stage-1 keys row·_N_SYM + symbol, how many of
    its escapes come before each piece (and in all: ``cut``) and ``escapes(n)``, the next n escapes'
    _escape_symbols. Every symbol is known,
    so a symbol's key is its whole part of the coding: a piece counts its keys, makes the tables of those
    alone, and learns from the same counts."""
    weights, esc_weights = model.rank_weights(kind), model.escape_weights(kind)
    esc_size = esc_weights.rows * model.n_buckets
    for (a, b), ea, eb in zip(_pieces(len(keys)), cut, cut[1:]):
        used, counts = _count(keys[a:b], _PASS_KEYS)
        side.keyed(weights, _N_SYM, keys[a:b], used, counts)
        if eb > ea:
            esc_keys, *offsets = escapes(eb - ea)
            esc_used, esc_counts = _count(esc_keys, esc_size)
            side.keyed(esc_weights, model.n_buckets, esc_keys, esc_used, esc_counts)
            if len(offsets) == 1:
                side.uniform_keyed(offsets[0], model.offset_less, model.offset_cum)
            else:
                side.uniform(*offsets)
            model.learn_escapes(kind, esc_used, esc_counts)
        model.learn_rank(kind, used, counts)


def _decode_pass(model: _Model, dec: _Decoder, kind: int, cx: _Context) -> np.ndarray:
    """Decode the labels of one pass piece by piece, (n,) of the neighbours' type. A piece's stage-1 symbols and
    labels are made _STRIPE_PIXELS at a time (the same tables: the model learns between pieces only), so that
    a 12 MP pass's int64 temporaries are a stripe's, not a piece's of up to 6 MP."""
    n = len(cx.pattern)
    out = np.empty(n, cx.nb.dtype)
    flat_nb = cx.nb.reshape(-1)
    weights = model.rank_weights(kind)
    for a, b in _pieces(n):
        sym = np.empty(b - a, np.uint8)
        for c0, c1 in _spans(a, b):
            sym[c0 - a:c1 - a] = dec.code(weights, cx.rows[c0:c1])
        for c0, c1 in _spans(a, b):
            pos = _POS_OF_SYM[(cx.pattern[c0:c1].astype(np.intp) << 2) + np.minimum(sym[c0 - a:c1 - a], 3)]
            out[c0:c1] = flat_nb[pos * np.intp(n) + np.arange(c0, c1)]
        model.decode_escapes(dec, kind, cx, sym, a, out)  # (over the escapes' labels just written)
        # (keys below _PASS_KEYS < 2^16: uint16, counted as intp ones were)
        keys = cx.rows[a:b] * np.uint16(_N_SYM)
        keys += sym
        model.learn_rank(kind, *_count(keys, _PASS_KEYS))
    return out


def _spans(a: int, b: int) -> Iterator[tuple[int, int]]:
    """a .. b in spans of _STRIPE_PIXELS."""
    for c0 in range(a, b, _STRIPE_PIXELS):
        yield c0, min(b, c0 + _STRIPE_PIXELS)


def _stripes(extra: _Extras) -> Iterator[tuple[int, int]]:
    """A pass's rows in stripes of about _STRIPE_PIXELS pixels, as (first row, end row)."""
    rows = max(1, _STRIPE_PIXELS // extra.cols)
    for r0 in range(0, extra.rows, rows):
        yield r0, min(extra.rows, r0 + rows)


def _pass_context(kind: int, nb: np.ndarray, extra: _Extras | None, model: _Model) -> _Context:
    """_context of a pass, made a stripe of rows at a time (the same context: a pixel's is its own)."""
    n = nb.shape[1]
    if extra is None or n <= _STRIPE_PIXELS:
        return _context(kind, nb, extra.views if extra else [], model)
    pattern, rows, act = np.empty(n, np.uint8), np.empty(n, np.uint16), np.empty(n, np.uint8)
    for r0, r1 in _stripes(extra):
        a, b = r0 * extra.cols, r1 * extra.cols
        cx = _context(kind, nb[:, a:b], extra.stripe(r0, r1).views, model)
        pattern[a:b], rows[a:b], act[a:b] = cx.pattern, cx.rows, cx.act
    return _Context(pattern, rows, act, nb)


def _contexts(canvas: np.ndarray, model: _Model) -> Iterator[tuple[int, np.ndarray, _Context]]:
    """Every pass's kind, region of ``canvas`` and context, in coding order; a decoder fills the region in
    before asking for the next pass (and lets go of the context: the next pass's is made while it waits)."""
    height, width = canvas.shape
    for p in _passes(width, height):
        region = canvas[_region(p)]
        if region.size == 0:
            continue
        nb, extra = _neighbours(canvas, p) if p.kind else (np.zeros((4, 0), np.uint16), None)
        cx = _pass_context(p.kind, nb, extra, model)
        del nb, extra
        yield p.kind, region, cx
        del cx


# Passes are coded in batches of at least this many pixels, their escapes' stage 2 made at once: one round of
# calls for the many small passes, while a large pass is coded as soon as it is known, its arrays still in the
# cache (and memory is bounded).
_BATCH_PIXELS = 1 << 14
# A pass's context is made a stripe of rows at a time, of about this many pixels, and escapes' stage 2 in groups
# of about this many: the same keys (a pixel's context is its own), while each temporary of the model stays a
# stripe's size (a 48 MP image's last passes are 12 MP each: their whole-pass temporaries, some uint16 or int64,
# made the encoder's peak).
_STRIPE_PIXELS = 1 << 18


def _pass_stripes(canvas: np.ndarray, p: _Pass, truth: np.ndarray, model: "_Model"
                  ) -> Iterator[tuple[int, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """_pass_keys of pass ``p``, a stripe of rows at a time (its main neighbours stacked a stripe at a time too):
    each stripe's first pixel, keys, escapes' places in the pass and their contexts."""
    if not p.kind:
        yield 0, *_pass_keys(p.kind, np.zeros((4, 0), np.uint16), None, truth, model)
        return
    main, extra = _main_extra(canvas, p)
    if len(truth) <= _STRIPE_PIXELS:
        yield 0, *_pass_keys(p.kind, _stacked(main, 0, extra.rows), extra, truth, model)
        return
    for r0, r1 in _stripes(extra):
        a, b = r0 * extra.cols, r1 * extra.cols
        keys, at, context = _pass_keys(p.kind, _stacked(main, r0, r1), extra.stripe(r0, r1), truth[a:b], model)
        yield a, keys, at + a, context


# (a group's stage 2 holds 6 bytes an escape in the encoder, 10 in the decoder, between its steps)
_ESCAPE_GROUP = 1 << 16


def _escape_groups(escaped: list[tuple[np.ndarray, ...]]) -> Iterator[tuple[np.ndarray, ...]]:
    """The escapes' (pattern, (4, m) main neighbours, activity, labels), in order, in groups of about
    _ESCAPE_GROUP: small passes' joined, a large pass's cut."""
    group: list[tuple[np.ndarray, ...]] = []
    size = 0
    for entry in escaped:
        m = len(entry[0])
        for a in range(0, m, _ESCAPE_GROUP):
            part = entry if m <= _ESCAPE_GROUP else tuple(x[..., a:a + _ESCAPE_GROUP] for x in entry)
            group.append(part)
            size += len(part[0])
            if size >= _ESCAPE_GROUP:
                yield _joined_escapes(group)
                group, size = [], 0
    if group:
        yield _joined_escapes(group)


def _joined_escapes(group: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    return group[0] if len(group) == 1 else tuple(np.concatenate(part, axis=-1) for part in zip(*group))


def _escape_symbols(model: _Model, group: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """escape_symbols of a group of escapes as the stream keeps them, uint16 each (a key is below the 320 escape
    rows times at most 32 buckets, K = 65536): keys and the offsets' keys into the model's offset tables, or,
    without those tables, keys, the offsets' freq - 1 and cum."""
    keys, *offsets = model.escape_symbols(*group)
    if len(offsets) == 2:
        offsets[0] -= 1
    return keys.astype(np.uint16), *(x.astype(np.uint16) for x in offsets)


def _encode_all(labels: np.ndarray, palette: np.ndarray, side: _Stream | _Cost) -> np.ndarray:
    """Model and code ``labels``; returns them as read (a copy in bytes up to K = 256, else ``labels``)."""
    model = _Model(len(palette), palette)
    # passes' kinds, stage-1 keys and how many of their escapes come before each piece (_encode_pass)
    todo: list[tuple[int, np.ndarray, list[int]]] = []
    # Escapes' contexts and labels, whose stage 2 is made as soon as a group's worth is known (4 bytes an escape,
    # 6 above K = 13107, where a batch's contexts, places and symbols held ~36: a noisy photo's 48 MP at K = 256,
    # 4.3 million escapes in each of its last passes, peaked at 0.70 GB), and the symbols made, in coding order.
    pending: list[tuple[np.ndarray, ...]] = []
    made: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque()

    def make() -> None:
        made.extend(_escape_symbols(model, group) for group in _escape_groups(pending))
        pending.clear()

    def taken(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next n escapes' symbols of ``made``, joined for a piece of a pass, letting go of the groups used up
        (the batch's joined at once were its symbols twice: 61 MB more for a 48 MP photo's last pass at K = 4096)."""
        parts = []
        while n:
            group = made.popleft()
            if len(group[0]) > n:
                made.appendleft(tuple(x[n:] for x in group))
                group = tuple(x[:n] for x in group)
            parts.append(group)
            n -= len(group[0])
        return _joined_escapes(parts)

    def code() -> None:
        make()
        for kind, keys, cut in todo:
            _encode_pass(model, side, kind, keys, cut, taken)
        todo.clear()

    height, width = labels.shape
    if model.k <= 256:
        # the encoder's neighbours and comparisons read labels as bytes: half the memory traffic of uint16
        labels = labels.astype(np.uint8)
    for p in _passes(width, height):
        region = labels[_region(p)]
        if region.size == 0:
            continue
        truth = region.reshape(-1)
        keys = np.empty(len(truth), np.uint16)
        starts = [a for a, _ in _pieces(len(truth))] + [len(truth)]
        cut = np.zeros(len(starts), np.int64)
        for a, part, at, context in _pass_stripes(labels, p, truth, model):
            keys[a:a + len(part)] = part
            cut += np.searchsorted(at, starts)
            pending.append((*context, truth[at]))
            if sum(len(entry[0]) for entry in pending) >= _ESCAPE_GROUP:
                make()
        todo.append((p.kind, keys, cut.tolist()))
        if sum(len(keys) for _, keys, _ in todo) >= _BATCH_PIXELS:
            code()
    if todo:
        code()
    return labels


# ---------------------------------------------------------------------------------------------------------
# Public interface


def lanes_log2(n_pixels: int) -> int:
    """The encoder's lane count (log2). Up to 1 MP one lane per 8192 pixels keeps the 5-byte lane states
    near 0.5 % of the payload; above, lanes grow faster (up to 4096 at 12 MP) to bound the coder steps."""
    size = max(1, n_pixels).bit_length() - 1
    return max(0, min(_MAX_LANES_LOG2, max(size - 13, 2 * size - 33)))


# Every label but the first costs a stage-1 symbol of frequency <= M - 1, which shrinks its lane's state by a
# factor below 1 - (256/257)/M, i.e. by more than 2^-20 of the 16 bits a word (or a lane's initial state) adds
# (docs/FORMAT.md, "Payload size bound").
_LABELS_PER_WORD_LOG2 = 20


def min_payload_bytes(n_pixels: int, lg: int) -> int:
    """The fewest payload bytes (lane byte, states, words) that can code n_pixels labels (k >= 2) on 2^lg
    lanes: the labels after the first need lanes + words >= ceil((n_pixels - 1) / 2^20)."""
    lanes = 1 << lg
    units = -(-max(0, n_pixels - 1) >> _LABELS_PER_WORD_LOG2)
    return 1 + rans.STATE_BYTES * lanes + 2 * max(0, units - lanes)


def _check_palette(palette: np.ndarray) -> np.ndarray:
    palette = np.asarray(palette)
    if palette.ndim != 2 or not 1 <= len(palette) <= 65536 or palette.dtype != np.uint8:
        raise ValueError(f"{_WHAT}: the palette must be (k, channels) uint8 with 1 <= k <= 65536")
    return palette


# A target's search encodes some of the files it bounded (where the bounds could not decide): payload_bounds
# keeps what it coded of the latest labellings (up to _RECORD_MAX pixels, each kept up to _RECORD_BYTES: 2 bytes
# a pixel, 12 an escape, and a copy of the labels, in bytes up to K = 256), and encoding one of them codes those
# symbols again without modelling them (a 1920x1200 screenshot at K = 8: 0.056 s instead of 0.114; a grey photo
# 1200x800 at K = 64, 0.12 instead of 0.24; a 3000x2250 photo at K = 92, 2.2-2.6 bytes a pixel in all, 0.11 s
# instead of 0.32: 4 MP and 24 MB left it out, and its search in 150 kB modelled each of its 3 files again).
_RECORD_MAX = 1 << 24
_RECORD_BYTES = 40 << 20
_RECORDS_KEPT = 2
# Only inside `recording()` (a target's search, rdo): elsewhere a bounded labelling is seldom encoded next, and
# the records, up to 2 x _RECORD_BYTES, would outlive the call in a long-running process. Per thread: threads
# of a library user's own, each in its own search, neither share records nor miscount each other's depth.
_local = threading.local()


def _records() -> list[tuple[np.ndarray, np.ndarray, list[tuple]]] | None:
    """This thread's records (palette, labels, _Cost.calls), newest last; None outside recording()."""
    return getattr(_local, "records", None)


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """payload_bounds keeps what it coded for `encode` while this is entered (in this thread); the records are
    dropped when the outermost one exits."""
    outer = _records() is None
    if outer:
        _local.records = []
    try:
        yield
    finally:
        if outer:
            _local.records = None


def _held(calls: list[tuple]) -> int:
    """The bytes of the arrays that recorded calls hold (a slice holds its whole array)."""
    held = {}
    for call in calls:
        for a in call:
            if a is not None:
                whole = a if a.base is None else a.base
                held[id(whole)] = whole.nbytes
    return sum(held.values())


def recorded(labels: np.ndarray, palette: np.ndarray) -> bool:
    """Whether payload_bounds kept what it coded for these labels and palette (in this thread, within
    recording()): their `encode` is then a cheap replay."""
    return _recorded(labels, palette) is not None


def _recorded(labels: np.ndarray, palette: np.ndarray) -> list[tuple] | None:
    """The calls payload_bounds recorded for these labels and palette, if it kept them."""
    for pal, lab, calls in reversed(_records() or []):
        if (pal.shape == palette.shape and lab.shape == labels.shape and np.array_equal(pal, palette)
                and np.array_equal(lab, labels)):
            return calls
    return None


def encode(labels: np.ndarray, palette: np.ndarray) -> bytes:
    """Encode a (height, width) uint16 label map with values < k = len(palette) into a ctx payload."""
    labels = np.ascontiguousarray(labels, dtype=np.uint16)
    palette = _check_palette(palette)
    if len(palette) == 1:
        return b""
    enc = _Stream()
    calls = _recorded(labels, palette)
    if calls is not None:
        enc.replay(calls)
    else:
        _encode_all(labels, palette, enc)
    lg = lanes_log2(labels.size)
    return rans.encode_parts(enc.parts, 1 << lg, head=bytes([lg]), free=True)


def payload_bounds(labels: np.ndarray, palette: np.ndarray) -> tuple[int, int]:
    """Bounds (low, high) on ``len(encode(labels, palette))`` from the information it codes, without coding
    it (0.65 to 0.85 of the time on photos). rANS codes the information exactly but for two terms: the lane
    states, which hold 0 to 2 of their 5 bytes as information already coded, and the integer arithmetic's rounding, each
    symbol of probability p within a factor 1 +- (1 - p) / 256 of its share (before coding a symbol the
    encoder's state is at least its frequency times 2^8: docs/FORMAT.md, "6. rANS")."""
    labels = np.ascontiguousarray(labels, dtype=np.uint16)
    palette = _check_palette(palette)
    if len(palette) == 1:
        return 0, 0
    records = _records()
    cost = _Cost(record=records is not None and labels.size <= _RECORD_MAX)
    read = _encode_all(labels, palette, cost)
    if records is not None and cost.calls is not None and _held(cost.calls) + read.nbytes <= _RECORD_BYTES:
        # (up to K = 256 the labels as the encoder read them, a copy in bytes: kept for _recorded as they are)
        records.append((palette.copy(), read if read is not labels else labels.copy(), cost.calls))
        del records[:-_RECORDS_KEPT]
    bits = cost.bits
    # log2(1 + r) <= r / ln 2 for the gain, and |log2(1 - r)| <= 1.004 r / ln 2 for the loss (r < 2^-8)
    rounding = 1.004 / (256 * np.log(2)) * float(cost.short) / rans.M
    lanes = 1 << lanes_log2(labels.size)
    # 1 for the float sums' own error; the lane byte, the states, then the words
    low = 1 + (rans.STATE_BYTES - 2) * lanes + (bits - rounding) / 8 - 1
    high = 1 + rans.STATE_BYTES * lanes + (bits + rounding) / 8 + 1
    return max(0, int(np.ceil(low))), int(np.floor(high))


def decode(payload: bytes, width: int, height: int, palette: np.ndarray) -> np.ndarray:
    """Decode a ctx payload into a (height, width) uint16 label map; FormatError on any malformed input."""
    palette = np.asarray(palette)
    k = len(palette)
    if not 1 <= k <= 65536 or palette.ndim != 2 or palette.dtype != np.uint8:
        raise FormatError(f"{_WHAT}: the palette must be (k, channels) uint8 with k in 1 .. 65536")
    if k == 1:
        if len(payload):
            raise FormatError(f"{_WHAT}: k = 1 needs an empty payload, got {len(payload)} bytes")
        return np.zeros((height, width), dtype=np.uint16)
    try:
        data = memoryview(payload).cast("B")  # (read in place: a copy was the payload's size again)
    except TypeError:  # (not a contiguous buffer)
        data = memoryview(bytes(payload))
    if len(data) < 1:
        raise FormatError(f"{_WHAT}: empty, expected at least the lane-count byte")
    lg = data[0]
    # The lane count is fixed by the image size: a forged small one would make the coder take one Python
    # step per label (minutes for a huge image) instead of one per 2^lg labels.
    if lg != lanes_log2(width * height):
        raise FormatError(f"{_WHAT}: byte 0 (log2 of the lane count) is {lg}, must be "
                          f"{lanes_log2(width * height)} for {width * height} pixels")
    dec = rans.Decoder(data[1:], 1 << lg, what=_WHAT)
    # Before anything in proportion to the pixels: can this many bytes code this many labels at all?
    need = min_payload_bytes(width * height, lg)
    if len(data) < need:
        raise FormatError(f"{_WHAT} of {len(data)} bytes is too short for {width * height} labels "
                          f"(at least {need} bytes with lg = {lg})")
    # up to K = 256 decoded in bytes, as the encoder reads them: half the neighbours' memory
    labels = np.zeros((height, width), dtype=np.uint8 if k <= 256 else np.uint16)
    model = _Model(k, palette)
    for kind, region, cx in _contexts(labels, model):
        region[...] = _decode_pass(model, _Decoder(dec), kind, cx).reshape(region.shape)
        del cx  # (before the next pass's is made)
    dec.finish()
    return labels.astype(np.uint16, copy=False)
