"""The ``ctx`` payload codec (id 2): context modelling of the label map, entropy coded with interleaved rANS.

Labels are visited coarse to fine (docs/CODECS.md, "Pass order"): a first pixel, then per level a
*diagonal* pass (pixels whose 4 diagonal neighbours are known) and an *edge* pass (pixels whose 4 axial
neighbours are known). Every pixel of a pass thus sees 4 already-decoded neighbours, and a whole pass can be
modelled and coded with array operations.

Each label is coded as (1) which of its neighbours' distinct labels it equals, ranked by how many neighbours
carry it, or "escape", in a context made of the neighbours' equality pattern; (2) on escape, the label itself,
in the context of the most common neighbour label. The statistics are counts of what was already coded (an
adaptive model: nothing of it is stored), refreshed between *pieces* of a pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import FormatError
from . import rans

_WHAT = "ctx payload"
_MAX_LANES_LOG2 = 12
_ESC = 4  # symbol of stage 1 meaning "none of the neighbours' labels"
_N_SYM = 5  # stage 1 alphabet: rank 0..3 among the distinct neighbour labels, or escape
_KINDS = 3  # pass kinds: 0 first pixel, 1 diagonal, 2 edge
_SPLIT = 256  # above this k an escaped label is coded as a high and a low byte


# ---------------------------------------------------------------------------------------------------------
# Neighbour equality patterns

def _pattern_tables() -> tuple[np.ndarray, np.ndarray]:
    """For each 6-bit equality pattern of 4 neighbours: the neighbour holding each rank, and the rank count.

    Bit b of the pattern is set when the pair ``_PAIRS[b]`` of neighbours holds equal labels. The distinct
    labels are ranked by how many neighbours hold them (more first), ties by the first neighbour holding
    them. Returns ``rank_pos`` (64, 4) int64 (position of a neighbour holding rank r, 0 where unused) and
    ``n_ranks`` (64,) int64. Patterns that equality cannot produce get a harmless answer.
    """
    rank_pos = np.zeros((64, 4), dtype=np.int64)
    n_ranks = np.zeros(64, dtype=np.int64)
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


_PAIRS = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
_RANK_POS, _N_RANKS = _pattern_tables()
# Which stage-1 symbols a pattern allows: its ranks, and escape.
_VALID1 = np.zeros((64, _N_SYM), dtype=bool)
for _code in range(64):
    _VALID1[_code, :_N_RANKS[_code]] = True
    _VALID1[_code, _ESC] = True


# ---------------------------------------------------------------------------------------------------------
# Pass order


@dataclass(frozen=True)
class _Pass:
    kind: int  # 0 first pixel, 1 diagonal, 2 edge
    step: int  # the grid spacing s of the level; the pass fills in points at offset s/2


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
        yield _Pass(1, s)
        yield _Pass(2, s)
        s >>= 1


def _edge_pad(a: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    return np.pad(a, ((top, bottom), (left, right)), mode="edge")


def _gather(canvas: np.ndarray, p: _Pass) -> tuple[list[tuple[slice, slice]], np.ndarray]:
    """The pixels of pass ``p`` and their 4 neighbours, read from the decoded part of ``canvas``.

    Returns the pass's pixel regions (each a pair of strided slices into the (H, W) canvas, in coding
    order, each coded in raster order) and ``nb`` (4, n) int64: for a diagonal pass the top-left,
    top-right, bottom-left and bottom-right neighbours; for an edge pass the two neighbours on the coarse
    grid, then the two from the diagonal pass. A neighbour outside the image is replaced by its mirror
    image through the pixel, which is always inside.
    """
    if p.kind == 0:
        return [(slice(0, 1), slice(0, 1))], np.zeros((4, 0), dtype=np.int64)
    s, h = p.step, p.step // 2
    height, width = canvas.shape
    grid = canvas[0::s, 0::s].astype(np.int64)
    gh, gw = grid.shape
    dh, dw = len(range(h, height, s)), len(range(h, width, s))
    if p.kind == 1:
        if dh == 0 or dw == 0:
            return [], np.zeros((4, 0), dtype=np.int64)
        g = _edge_pad(grid, 0, dh + 1 - gh, 0, dw + 1 - gw)
        nb = [g[:dh, :dw], g[:dh, 1:], g[1:, :dw], g[1:, 1:]]
        return [(slice(h, None, s), slice(h, None, s))], np.stack([a.reshape(-1) for a in nb])
    diag = canvas[h::s, h::s].astype(np.int64)
    regions, parts = [], []
    if dw:  # points (x = h mod s, y = 0 mod s): left/right on the grid, up/down from the diagonal pass
        g = _edge_pad(grid, 0, 0, 0, dw + 1 - gw)
        left, right = g[:, :dw], g[:, 1:]
        if dh:
            d = _edge_pad(diag, 1, gh - dh, 0, 0)
            up, down = d[:gh], d[1:]
        else:
            up, down = left, right
        regions.append((slice(0, None, s), slice(h, None, s)))
        parts.append([left, right, up, down])
    if dh:  # points (x = 0 mod s, y = h mod s): up/down on the grid, left/right from the diagonal pass
        g = _edge_pad(grid, 0, dh + 1 - gh, 0, 0)
        up, down = g[:dh], g[1:]
        if dw:
            d = _edge_pad(diag, 0, 0, 1, gw - dw)
            left, right = d[:, :gw], d[:, 1:]
        else:
            left, right = up, down
        regions.append((slice(h, None, s), slice(0, None, s)))
        parts.append([up, down, left, right])
    if not parts:
        return [], np.zeros((4, 0), dtype=np.int64)
    nb = np.concatenate([np.stack([a.reshape(-1) for a in part]) for part in parts], axis=1)
    return regions, nb


def _pieces(n: int) -> list[tuple[int, int]]:
    """Split a pass of n pixels into pieces, each about as large as all before it, so the model is
    refreshed often while it is young and rarely (cheaply) once it has seen a lot."""
    bounds = [0]
    first = max(1024, n >> 6)
    while bounds[-1] < n:
        bounds.append(min(n, max(first, 2 * bounds[-1])))
    return list(zip(bounds[:-1], bounds[1:]))


# ---------------------------------------------------------------------------------------------------------
# The model


class _Model:
    """Adaptive statistics shared by encoder and decoder; both call the same methods in the same order."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.split = k > _SPLIT
        self.rank = np.zeros((_KINDS * 64, _N_SYM), dtype=np.int64)
        if self.split:
            self.n_hi = (k + 255) >> 8
            self.esc_hi = np.zeros((257, self.n_hi), dtype=np.int64)
            self.esc_lo = np.zeros((self.n_hi, 256), dtype=np.int64)
        else:
            self.esc = np.zeros((k + 1, k), dtype=np.int64)

    # Stage 1: the rank among the neighbours' labels -------------------------------------------------------
    def rank_rows(self, kind: int, pattern: np.ndarray) -> np.ndarray:
        return kind * 64 + pattern

    def rank_tables(self) -> tuple[np.ndarray, np.ndarray]:
        valid = np.tile(_VALID1, (_KINDS, 1))
        return rans.cdf_tables(np.where(valid, 2 * self.rank + 1, 0))

    def learn_rank(self, rows: np.ndarray, sym: np.ndarray) -> None:
        self.rank += np.bincount(rows * _N_SYM + sym, minlength=self.rank.size).reshape(self.rank.shape) * 2

    # Stage 2: an escaped label ---------------------------------------------------------------------------
    def esc_tables(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row r: 8 x its own counts, plus a prior of 2 samples' worth of the column totals, plus 1."""
        order0 = counts.sum(axis=0) + 1
        prior = (16 * order0) // order0.sum()
        return rans.cdf_tables(8 * counts + prior[None, :] + 1)

    def learn_esc(self, counts: np.ndarray, rows: np.ndarray, sym: np.ndarray) -> None:
        counts += np.bincount(rows * counts.shape[1] + sym, minlength=counts.size).reshape(counts.shape)

    def age(self) -> None:
        """Halve all counts at each new level: finer levels have different statistics."""
        self.rank >>= 1
        for t in (self.esc_hi, self.esc_lo) if self.split else (self.esc,):
            t >>= 1


def _contexts(nb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equality pattern (n,) and ranked candidate labels (4, n) of neighbour labels ``nb`` (4, n)."""
    pattern = np.zeros(nb.shape[1], dtype=np.int64)
    for b, (i, j) in enumerate(_PAIRS):
        pattern |= (nb[i] == nb[j]).astype(np.int64) << b
    cand = np.take_along_axis(nb, _RANK_POS[pattern].T, axis=0)
    return pattern, cand


# ---------------------------------------------------------------------------------------------------------
# Public interface


def _lanes_log2(n_pixels: int) -> int:
    """Lanes: enough that a 12 MP image takes a few thousand coder steps, few enough that the 5-byte
    states stay well under 1 % of the payload."""
    lg = 0
    while lg < _MAX_LANES_LOG2 and (n_pixels >> (lg + 1)) >= 8192:
        lg += 1
    return lg


def encode(labels: np.ndarray, k: int) -> bytes:
    """Encode a (height, width) uint16 label map with values < k into a ctx payload."""
    labels = np.ascontiguousarray(labels, dtype=np.uint16)
    height, width = labels.shape
    if k == 1:
        return b""
    model = _Model(k)
    freqs: list[np.ndarray] = []
    cums: list[np.ndarray] = []

    def emit(rows: np.ndarray, sym: np.ndarray, table: tuple[np.ndarray, np.ndarray]) -> None:
        f, c = table
        freqs.append(f[rows, sym])
        cums.append(c[rows, sym])

    level = None
    for p in _passes(width, height):
        if p.kind != 0 and p.step != level:
            if level is not None:
                model.age()
            level = p.step
        regions, nb = _gather(labels, p)
        if not regions:
            continue
        truth = np.concatenate([labels[r].reshape(-1) for r in regions]).astype(np.int64)
        pattern, cand = _contexts(nb) if p.kind else (np.zeros(1, np.int64), np.zeros((4, 1), np.int64))
        n_ranks = _N_RANKS[pattern] if p.kind else np.zeros(1, np.int64)
        hit = cand == truth[None, :]
        hit &= np.arange(4)[:, None] < n_ranks[None, :]
        sym = np.where(hit.any(axis=0), np.argmax(hit, axis=0), _ESC)
        rows = model.rank_rows(p.kind, pattern) if p.kind else np.full(1, 0, np.int64)
        for a, b in _pieces(len(truth)):
            emit(rows[a:b], sym[a:b], model.rank_tables())
            esc = sym[a:b] == _ESC
            erow = np.where(n_ranks[a:b] > 0, cand[0, a:b], k)[esc]
            _code_escapes(model, erow, truth[a:b][esc], emit)
            model.learn_rank(rows[a:b], sym[a:b])
    freq = np.concatenate(freqs)
    cum = np.concatenate(cums)
    lg = _lanes_log2(width * height)
    return bytes([lg]) + rans.encode(freq, cum, 1 << lg)


def _code_escapes(model: _Model, erow: np.ndarray, value: np.ndarray, emit) -> None:
    """Encoder side of stage 2: code escaped labels ``value`` in the context of labels ``erow`` (k: none)."""
    if not model.split:
        emit(erow, value, model.esc_tables(model.esc))
        model.learn_esc(model.esc, erow, value)
        return
    hrow = np.where(erow < model.k, erow >> 8, 256)
    hi, lo = value >> 8, value & 255
    emit(hrow, hi, model.esc_tables(model.esc_hi))
    emit(hi, lo, model.esc_tables(model.esc_lo))
    model.learn_esc(model.esc_hi, hrow, hi)
    model.learn_esc(model.esc_lo, hi, lo)


def _decode_escapes(model: _Model, dec: rans.Decoder, erow: np.ndarray) -> np.ndarray:
    if not model.split:
        value = dec.decode(erow, *model.esc_tables(model.esc))
        model.learn_esc(model.esc, erow, value)
        return value
    hrow = np.where(erow < model.k, erow >> 8, 256)
    hi = dec.decode(hrow, *model.esc_tables(model.esc_hi))
    lo = dec.decode(hi, *model.esc_tables(model.esc_lo))
    model.learn_esc(model.esc_hi, hrow, hi)
    model.learn_esc(model.esc_lo, hi, lo)
    return (hi << 8) | lo


def decode(payload: bytes, width: int, height: int, k: int) -> np.ndarray:
    """Decode a ctx payload into a (height, width) uint16 label map; FormatError on any malformed input."""
    if not 1 <= k <= 65536:
        raise FormatError(f"{_WHAT}: k = {k} is outside 1 .. 65536")
    labels = np.zeros((height, width), dtype=np.uint16)
    if k == 1:
        if len(payload):
            raise FormatError(f"{_WHAT}: k = 1 needs an empty payload, got {len(payload)} bytes")
        return labels
    data = memoryview(bytes(payload))
    if len(data) < 1:
        raise FormatError(f"{_WHAT}: empty, expected at least the lane-count byte")
    lg = data[0]
    if lg > _MAX_LANES_LOG2:
        raise FormatError(f"{_WHAT}: byte 0 (log2 of the lane count) is {lg}, above {_MAX_LANES_LOG2}")
    dec = rans.Decoder(data[1:], 1 << lg, what=_WHAT)
    model = _Model(k)
    level = None
    for p in _passes(width, height):
        if p.kind != 0 and p.step != level:
            if level is not None:
                model.age()
            level = p.step
        regions, nb = _gather(labels, p)
        if not regions:
            continue
        pattern, cand = _contexts(nb) if p.kind else (np.zeros(1, np.int64), np.zeros((4, 1), np.int64))
        n_ranks = _N_RANKS[pattern] if p.kind else np.zeros(1, np.int64)
        rows = model.rank_rows(p.kind, pattern) if p.kind else np.full(1, 0, np.int64)
        out = np.empty(len(rows), dtype=np.int64)
        for a, b in _pieces(len(rows)):
            sym = dec.decode(rows[a:b], *model.rank_tables())
            esc = sym == _ESC
            ranked = np.take_along_axis(cand[:, a:b], np.minimum(sym, 3)[None, :], axis=0)[0]
            erow = np.where(n_ranks[a:b] > 0, cand[0, a:b], k)[esc]
            value = _decode_escapes(model, dec, erow)
            ranked[esc] = value
            out[a:b] = ranked
            model.learn_rank(rows[a:b], sym)
        if int(out.max()) >= k:
            bad = int(np.argmax(out >= k))
            raise FormatError(f"{_WHAT}: corrupt: decoded label {int(out[bad])} is not < k = {k} "
                              f"(pass {p.kind} at spacing {p.step}, pixel {bad} of the pass)")
        at = 0
        for r in regions:
            view = labels[r]
            view[...] = out[at:at + view.size].reshape(view.shape)
            at += view.size
    dec.finish()
    return labels
