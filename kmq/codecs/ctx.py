"""The ``ctx`` payload codec (id 2): context modelling of the label map, entropy coded with interleaved rANS.

Labels are visited coarse to fine (docs/CODECS.md, "Pass order"): the first pixel, then per level a
*diagonal* pass (pixels whose 4 diagonal neighbours are known) and two *edge* passes (pixels whose 4 axial
neighbours are known). Every pixel of a pass sees already-decoded neighbours only, so a whole pass is
modelled and coded with array operations.

Each label is coded as (1) which of its 4 neighbours' distinct labels it equals, ranked by how many
neighbours carry it, or "escape"; then (2) on escape, the label itself, bit by bit down a binary tree whose
branch counts pool those of every neighbour label. The statistics are counts of what was already coded (an
adaptive model: none of it is stored), refreshed between *pieces* of a pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

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
_SPLIT = 256  # above this k an escaped label is coded as a high byte, then a low byte
_PRIOR = 1  # weight, in counts, of the order-0 tree in an escape's prediction


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
_VALID1 = np.arange(_N_SYM)[None, :] < _N_RANKS[:, None]
_VALID1[:, _ESC] = True
_VALID_ROWS = _VALID1[(np.arange(_KINDS * 65 * _N_FEAT) // _N_FEAT) % 65]  # by stage 1 context row


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
    lo_r = max(0, -min(d for d, _ in offsets))
    lo_c = max(0, -min(d for _, d in offsets))
    hi_r = max(0, rows + max(d for d, _ in offsets) - a.shape[0])
    hi_c = max(0, cols + max(d for _, d in offsets) - a.shape[1])
    pad = np.pad(a, ((lo_r, hi_r), (lo_c, hi_c)), mode="edge")
    return [pad[lo_r + di:lo_r + di + rows, lo_c + dj:lo_c + dj + cols] for di, dj in offsets]


def _neighbours(canvas: np.ndarray, p: _Pass) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The 4 main and the extra neighbours of every pixel of pass ``p``, from the decoded part of ``canvas``.

    Returns the 4 main and the E extra neighbour labels, each (n,) uint16 in the pass's raster order. Main
    neighbours are at distance s/2: for a diagonal pass top-left, top-right, bottom-left, bottom-right; for
    an edge pass the two on the coarse grid, then the two from the previous pass. Extra ones are further
    away or from the previous edge pass (see docs/CODECS.md).
    """
    s, h = p.step, p.step // 2
    grid = canvas[0::s, 0::s]
    r, c = canvas[_region(p)].shape
    diag = canvas[h::s, h::s]
    if p.kind == 1:
        main = _shifted(grid, r, c, [(0, 0), (0, 1), (1, 0), (1, 1)])
        extra = _shifted(grid, r, c, [(-1, 0), (-1, 1), (2, 0), (2, 1), (0, -1), (1, -1), (0, 2), (1, 2)])
    elif p.kind == 2:
        left, right = _shifted(grid, r, c, [(0, 0), (0, 1)])
        if diag.size:
            up, down = _shifted(diag, r, c, [(-1, 0), (0, 0)])
            extra = _shifted(diag, r, c, [(-1, -1), (-1, 1), (0, -1), (0, 1)])
        else:
            up, down, extra = left, right, []
        main = [left, right, up, down]
        extra = extra + _shifted(grid, r, c, [(-1, 0), (-1, 1), (1, 0), (1, 1)])
    else:
        up, down = _shifted(grid, r, c, [(0, 0), (1, 0)])
        edge = canvas[0::s, h::s]
        if diag.size:
            left, right = _shifted(diag, r, c, [(0, -1), (0, 0)])
            extra = _shifted(edge, r, c, [(0, -1), (0, 0), (1, -1), (1, 0)])
        else:
            left, right, extra = up, down, []
        main = [up, down, left, right]
    return [a.reshape(-1) for a in main], [a.reshape(-1) for a in extra]


def _pieces(n: int) -> list[tuple[int, int]]:
    """Split a pass of n pixels into pieces, each about as large as all before it, so the model is
    refreshed often while it is young and rarely (cheaply) once it has seen a lot."""
    bounds = [0]
    first = max(1024, n >> 6)
    while bounds[-1] < n:
        bounds.append(min(n, max(first, 2 * bounds[-1])))
    return list(zip(bounds[:-1], bounds[1:]))


@dataclass
class _Context:
    """What both sides know about the pixels of a pass before coding them; arrays of length n."""
    pattern: np.ndarray  # (n,) uint8 equality pattern of the main neighbours, 0..64
    cand: np.ndarray  # (4, n) uint16 ranked distinct neighbour labels (rank r valid when r < n_ranks)
    n_ranks: np.ndarray  # (n,) int64
    feature: np.ndarray  # (n,) uint8 0..4: share of the extra neighbours holding the rank-0 label


def _context(kind: int, nb: list[np.ndarray], extra: list[np.ndarray]) -> _Context:
    if kind == 0:
        return _Context(np.full(1, _NO_NB, np.uint8), np.zeros((4, 1), np.uint16), np.zeros(1, np.int64),
                        np.zeros(1, np.uint8))
    n = len(nb[0])
    # small dtypes: at 12 MP every byte per pixel of these temporaries costs 12 MB and time
    pattern = np.zeros(n, dtype=np.uint8)
    for b, (i, j) in enumerate(_PAIRS):
        pattern |= (nb[i] == nb[j]).view(np.uint8) << np.uint8(b)
    stacked = np.stack(nb)
    cand = np.take_along_axis(stacked, _RANK_POS_U8[pattern].T, axis=0)
    same = np.zeros(n, np.uint8)
    for e in extra:
        same += e == cand[0]
    feature = (same * np.uint8(_N_FEAT - 1)) // np.uint8(len(extra)) if extra else same
    return _Context(pattern, cand, _N_RANKS[pattern], feature)


# ---------------------------------------------------------------------------------------------------------
# Entropy coding sides: the same model code drives both


class _Coder(Protocol):
    def code(self, weights: np.ndarray, rows: np.ndarray | None, sym: np.ndarray | None) -> np.ndarray:
        """Code one batch: symbol i with probabilities proportional to ``weights[rows[i]]`` (R, A), or to
        ``weights[i]`` when ``rows`` is None. Returns the symbols (given to the encoder, decoded)."""


class _Encoder:
    def __init__(self) -> None:
        self.freqs: list[np.ndarray] = []
        self.cums: list[np.ndarray] = []

    def code(self, weights: np.ndarray, rows: np.ndarray | None, sym: np.ndarray | None) -> np.ndarray:
        assert sym is not None
        if len(sym):
            f, c = rans.cdf_tables(weights)
            idx = np.arange(len(sym)) if rows is None else rows
            self.freqs.append(f[idx, sym])
            self.cums.append(c[idx, sym])
        return sym


class _Decoder:
    def __init__(self, dec: rans.Decoder) -> None:
        self.dec = dec

    def code(self, weights: np.ndarray, rows: np.ndarray | None, sym: np.ndarray | None) -> np.ndarray:
        n = len(weights) if rows is None else len(rows)
        if n == 0:
            return np.zeros(0, np.int64)
        f, c = rans.cdf_tables(weights)
        return self.dec.decode(np.arange(n) if rows is None else rows, f, c)


# ---------------------------------------------------------------------------------------------------------
# The model


class _Tree:
    """Counts for coding a value < ``n_leaves`` as ``bits`` binary decisions, MSB first, per context row.

    ``counts[row, node, bit]``: node 1 is the root, node 2n + b the child of n along bit b. ``order0`` is
    the same over all rows. A branch with no leaf < n_leaves under it gets probability 0.
    """

    def __init__(self, n_rows: int, n_leaves: int) -> None:
        self.bits = max(1, (n_leaves - 1).bit_length())
        size = 1 << self.bits
        self.counts = np.zeros((n_rows, size, 2), dtype=np.int64)
        self.order0 = np.zeros((size, 2), dtype=np.int64)
        node = np.arange(size)
        depth = np.zeros(size, np.int64)
        for d in range(1, self.bits + 1):
            depth[1 << (d - 1):] = d - 1
        # leaves < n_leaves under child b of node n: the child spans [first, first + width)
        width = np.int64(1) << (self.bits - depth - 1)
        first = np.stack([(2 * node + b - (np.int64(1) << (depth + 1))) * width for b in (0, 1)], axis=1)
        self.leaves = np.clip(n_leaves - first, 0, width[:, None])
        self.leaves[0] = 0

    def weights(self, rows: np.ndarray, row_weight: np.ndarray, node: np.ndarray) -> np.ndarray:
        """(m, 2) weights of the next bit, for m values at ``node`` (m,), pooling the counts of context
        rows ``rows`` (R, m), each weighted by ``row_weight`` (R, m) (0 to leave a row out)."""
        pooled = np.zeros((len(node), 2), np.int64)
        for r, w in zip(rows, row_weight):
            pooled += self.counts[r, node] * w[:, None]
        lv = self.leaves[node]
        o0 = self.order0[node] + lv
        prior = (_PRIOR * 64 * o0) // o0.sum(axis=1, keepdims=True)
        return (pooled * 64 + prior + (lv > 0)) * (lv > 0)

    def learn(self, rows: np.ndarray, row_weight: np.ndarray, value: np.ndarray) -> None:
        """Count the decisions of ``value`` (m,) in every row of ``rows`` (R, m) whose weight is > 0."""
        n_nodes = self.counts.shape[1]
        shift = np.arange(self.bits - 1, -1, -1)
        bit = (value[None, :] >> shift[:, None]) & 1  # (bits, m), root decision first
        node = (value[None, :] + (1 << self.bits)) >> (shift[:, None] + 1)  # the node each decision is at
        at = node * 2 + bit
        keep = row_weight > 0
        flat = (rows[keep][:, None] * (2 * n_nodes) + at[:, keep.nonzero()[1]].T).reshape(-1)
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)
        self.order0 += np.bincount(at.reshape(-1), minlength=self.order0.size).reshape(self.order0.shape)

    def code(self, coder: _Coder, rows: np.ndarray, row_weight: np.ndarray, value: np.ndarray | None
             ) -> np.ndarray:
        """Code m values (given to the encoder, found by the decoder) bit by bit; returns them (m,)."""
        m = rows.shape[1]
        node = np.ones(m, np.int64)
        for d in range(self.bits - 1, -1, -1):
            bit = None if value is None else (value >> d) & 1
            bit = coder.code(self.weights(rows, row_weight, node), None, bit)
            node = 2 * node + bit
        return node - (1 << self.bits)


class _Model:
    """Adaptive statistics; encoder and decoder call the same methods in the same order."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.split = k > _SPLIT
        self.rank = np.zeros((_KINDS * 65 * _N_FEAT, _N_SYM), dtype=np.int64)
        if self.split:
            self.n_hi = (k + 255) >> 8
            self.hi = _Tree(257, self.n_hi)
            self.lo = _Tree(self.n_hi, 256)
        else:
            self.tree = _Tree(k + 1, k)

    # Stage 1: the rank among the neighbours' labels, or escape ---------------------------------------------
    def _rank_rows(self, kind: int, cx: _Context) -> np.ndarray:
        return (kind * 65 + cx.pattern.astype(np.int64)) * _N_FEAT + cx.feature

    def rank_weights(self) -> np.ndarray:
        """(contexts, 5) weights: twice the counts of the context, plus 1 for every possible symbol."""
        return (2 * self.rank + 1) * _VALID_ROWS

    def learn_rank(self, kind: int, cx: _Context, sym: np.ndarray) -> None:
        rows = self._rank_rows(kind, cx)
        self.rank += np.bincount(rows * _N_SYM + sym, minlength=self.rank.size).reshape(self.rank.shape)

    # Stage 2: an escaped label ---------------------------------------------------------------------------
    def _esc_rows(self, cx: _Context) -> tuple[np.ndarray, np.ndarray]:
        """Context rows (4, m) and weights (4, m) of escaped pixels: their distinct neighbour labels, the
        most common one counting double; pixels without neighbours use row k (resp. 256) alone."""
        m = cx.cand.shape[1]
        cand = cx.cand.astype(np.int64)
        valid = np.arange(4)[:, None] < cx.n_ranks[None, :]
        weight = valid * np.array([2, 1, 1, 1])[:, None]
        none = cx.n_ranks == 0
        if self.split:
            rows = np.where(valid, cand >> 8, 256)
        else:
            rows = np.where(valid, cand, self.k)
        weight[0, none] = 1
        rows[0, none] = 256 if self.split else self.k
        return rows, weight.astype(np.int64) if m else np.zeros((4, 0), np.int64)

    def code_escapes(self, coder: _Coder, cx: _Context, value: np.ndarray | None) -> np.ndarray:
        rows, weight = self._esc_rows(cx)
        if not self.split:
            out = self.tree.code(coder, rows, weight, value)
            self.tree.learn(rows, weight, out)
            return out
        hi = self.hi.code(coder, rows, weight, None if value is None else value >> 8)
        one = np.ones((1, len(hi)), np.int64)
        lo = self.lo.code(coder, hi[None, :], one, None if value is None else value & 255)
        self.hi.learn(rows, weight, hi)
        self.lo.learn(hi[None, :], one, lo)
        return (hi << 8) | lo


def _subset(cx: _Context, sel) -> _Context:
    return _Context(cx.pattern[sel], cx.cand[:, sel], cx.n_ranks[sel], cx.feature[sel])


def _code_pass(model: _Model, coder: _Coder, kind: int, cx: _Context, truth: np.ndarray | None
               ) -> np.ndarray:
    """Code the labels of one pass (given to the encoder, found by the decoder), piece by piece.

    Returns the labels (n,) int64; values >= k are possible only from a corrupt payload with k > 256.
    """
    n = len(cx.pattern)
    out = np.empty(n, np.int64)
    for a, b in _pieces(n):
        part = _subset(cx, slice(a, b))
        sym = None
        if truth is not None:
            hit = part.cand.astype(np.int64) == truth[a:b][None, :]
            hit &= np.arange(4)[:, None] < part.n_ranks[None, :]
            sym = np.where(hit.any(axis=0), np.argmax(hit, axis=0), _ESC)
        sym = coder.code(model.rank_weights(), model._rank_rows(kind, part), sym)
        esc = sym == _ESC
        value = np.take_along_axis(part.cand, np.minimum(sym, 3)[None, :], axis=0)[0].astype(np.int64)
        value[esc] = model.code_escapes(coder, _subset(part, esc), None if truth is None else truth[a:b][esc])
        model.learn_rank(kind, part, sym)
        out[a:b] = value
    return out


def _run(canvas: np.ndarray, coder: _Coder, k: int, encoding: bool) -> None:
    """Visit every pass: code the labels of ``canvas`` (encoding), or fill ``canvas`` in (decoding)."""
    height, width = canvas.shape
    model = _Model(k)
    for p in _passes(width, height):
        region = canvas[_region(p)]
        if region.size == 0:
            continue
        nb, extra = _neighbours(canvas, p) if p.kind else ([], [])
        cx = _context(p.kind, nb, extra)
        truth = region.reshape(-1).astype(np.int64) if encoding else None
        out = _code_pass(model, coder, p.kind, cx, truth)
        if not encoding:
            if int(out.max()) >= k:
                bad = int(np.argmax(out >= k))
                raise FormatError(f"{_WHAT}: corrupt: decoded label {int(out[bad])} is not < k = {k} "
                                  f"(pass kind {p.kind} at spacing {p.step}, pixel {bad} of the pass)")
            region[...] = out.reshape(region.shape)


# ---------------------------------------------------------------------------------------------------------
# Public interface


def lanes_log2(n_pixels: int) -> int:
    """The encoder's lane count (log2). Up to 1 MP one lane per 8192 pixels keeps the 5-byte lane states
    near 0.5 % of the payload; above, lanes grow faster (up to 4096 at 12 MP) to bound the coder steps."""
    size = max(1, n_pixels).bit_length() - 1
    return max(0, min(_MAX_LANES_LOG2, max(size - 13, 2 * size - 33)))


def encode(labels: np.ndarray, k: int) -> bytes:
    """Encode a (height, width) uint16 label map with values < k into a ctx payload."""
    labels = np.ascontiguousarray(labels, dtype=np.uint16)
    if k == 1:
        return b""
    enc = _Encoder()
    _run(labels, enc, k, encoding=True)
    lg = lanes_log2(labels.size)
    freq = np.concatenate(enc.freqs) if enc.freqs else np.zeros(0, np.int64)
    cum = np.concatenate(enc.cums) if enc.cums else np.zeros(0, np.int64)
    return bytes([lg]) + rans.encode(freq, cum, 1 << lg)


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
    _run(labels, _Decoder(dec), k, encoding=False)
    dec.finish()
    return labels
