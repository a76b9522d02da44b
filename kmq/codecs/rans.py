"""Interleaved rANS entropy coder, vectorised over lanes with numpy.

Symbol j of a stream goes to lane ``j % lanes``; each Python-level step codes one symbol on each of up to
``lanes`` lanes at once, so a stream of n symbols costs about n / lanes steps. All lanes share one stream of
16-bit words. Parameters (see docs/FORMAT.md):

- probabilities are integers ``freq`` out of ``M = 2**SCALE_BITS`` (65536), with ``cum`` the sum of the
  frequencies of the symbols before it;
- a lane's state lives in ``[LOW, LOW << 16)`` = [2**24, 2**40): 5 bytes when flushed, and ``LOW / M = 256``
  keeps the coding loss of the integer arithmetic well under 0.1 %;
- the encoder starts every lane at ``LOW``; the decoder checks that it ends there, which catches most
  corruption for free.

The encoder needs every symbol's (freq, cum) up front; the decoder learns them batch by batch (the model
of the next batch depends on the symbols of the previous ones), so it decodes one batch at a time.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right

import numpy as np

from ..errors import FormatError

SCALE_BITS = 16
M = 1 << SCALE_BITS
LOW = 1 << 24
STATE_BYTES = 5
_WORD_BITS = 16
_U64 = np.uint64
_BLOCK_SYMBOLS = 1 << 16  # symbols whose per-step values encode makes at once
_COMPARE_MAX = 8  # alphabets up to this size are decoded by comparisons, larger ones by a binary search
_FEW_ROWS = 2048  # tables of up to this many rows are made whole-array: column by column costs more calls
# Streams of up to this many lanes are decoded a symbol at a time on Python's own ints. The decoder's steps
# are sequential whatever the code (a lane's state is the previous step's), and ctx gives an image under 8,192
# pixels one lane (docs/FORMAT.md), so a step is one symbol there: its numpy calls (a gather and a comparison
# per boundary, the state's update, the words read) cost 20-30 us against ~1 us for the same arithmetic on an
# int. ctx decodes of china.jpg resized (K = 16 / 256, CPU): 64x64 (1 lane) 0.084 / 0.123 s -> 0.013 / 0.016,
# 256x256 (8) 0.148 / 0.331 -> 0.063 / 0.129, 400x400 (16) 0.199 / 0.289 -> 0.131 / 0.198; at 32 lanes the
# two were even (512x512 0.18 / 0.32 against 0.20 / 0.36), at 128 numpy's steps 2.5x cheaper.
_SCALAR_LANES = 16


def cdf_tables(weights: np.ndarray, cum: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Quantize non-negative integer ``weights`` (R, A) into rANS frequency rows summing to ``M``.

    Returns ``freq`` (R, A) int64 and ``cum`` (R, A + 1) int64 (``cum[:, 0] = 0``, ``cum[:, A] = M``). A symbol
    of weight 0 gets frequency 0 (it can never be coded); any other gets at least 1. Integer arithmetic only,
    so encoder and decoder agree bit for bit on any machine. Rows of all-zero weight give all of ``M`` to
    symbol 0. Needs A <= M. cum=False: ``cum`` is None (a payload's size bounds read the frequencies alone).
    """
    w = np.ascontiguousarray(weights, dtype=np.int64)  # (C order: the units left over go in at flat positions)
    n_rows, n_sym = w.shape
    if n_sym <= 8 and n_rows > _FEW_ROWS:
        # Column by column: numpy's reductions along a short axis are slow on millions of rows.
        cols = [w[:, a] for a in range(n_sym)]
        n_valid = sum((col > 0).astype(np.int64) for col in cols)
        total = np.maximum(sum(cols), 1)
        best = np.zeros(n_rows, np.int64)
        top = cols[0]
        for a in range(1, n_sym):
            better = cols[a] > top
            best[better] = a
            top = np.maximum(top, cols[a])
        freq = np.stack([np.where(col > 0, 1 + (col * (M - n_valid)) // total, 0) for col in cols], axis=1)
        rest = M - sum(freq[:, a] for a in range(n_sym))
    else:
        # Row sums as products with a column of ones: numpy's reductions along a short axis cost 3-4 times as
        # much on a piece's table of ~100 rows (integers: the same sums)
        ones = _ones(n_sym)
        # (validity as int64 0/1, the weights being non-negative: a bool mask is cast again by every product and
        # sum it enters, 2-3 times the cost of its own)
        valid = np.sign(w)
        spare = M - valid @ ones
        total = np.maximum(w @ ones, 1)
        freq = w * spare[:, None]
        freq //= total[:, None]
        freq += valid  # a weight of 0 has 0 // total = 0 there, and keeps it
        best = w.argmax(axis=1)
        rest = M - freq @ ones
    # Rounding down leaves a few units over; the likeliest symbol takes them, where they cost least (at flat
    # positions: a 2-D fancy index costs twice as much).
    best += np.arange(0, n_rows * n_sym, n_sym)
    freq.reshape(-1)[best] += rest
    if not cum:
        return freq, None
    cums = np.zeros((n_rows, n_sym + 1), dtype=np.int64)
    if n_rows <= _FEW_ROWS:
        cums[:, 1:] = freq @ _upper(n_sym)  # (a cumulative sum along the short axis cost as much again)
    else:
        np.cumsum(freq, axis=1, out=cums[:, 1:])
    return freq, cums


_ONES: dict[int, np.ndarray] = {}
_UPPER: dict[int, np.ndarray] = {}


def _ones(n: int) -> np.ndarray:
    """(n,) int64 ones (made once per size)."""
    got = _ONES.get(n)
    if got is None:
        got = _ONES[n] = np.ones(n, np.int64)
    return got


def _upper(n: int) -> np.ndarray:
    """(n, n) int64, 1 on and above the diagonal: a row times it is the row's cumulative sum."""
    got = _UPPER.get(n)
    if got is None:
        got = _UPPER[n] = np.triu(np.ones((n, n), np.int64))
    return got


def uniform(sym: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(freq, cum) of symbols ``sym`` each uniform over 0 .. sizes - 1 (1 <= sizes <= M): every symbol gets
    ``q = M // size``, and symbol 0 also the remainder ``M - size·q``."""
    sym = np.asarray(sym, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.int64)
    q = M // sizes
    extra = M - sizes * q
    return np.where(sym == 0, q + extra, q), np.where(sym == 0, 0, sym * q + extra)


def encode(freq: np.ndarray, cum: np.ndarray, lanes: int) -> bytes:
    """Code a stream of symbols, given as each one's ``freq`` and ``cum`` (1-D int arrays, same length).

    Returns the lanes' final states (``lanes`` x 5 bytes, little-endian) followed by the words (u16 LE) in
    the order the decoder reads them.
    """
    # converted to uint64 a block of steps at a time: no copy of the whole stream
    return _encode(_Parts([(np.asarray(freq), np.asarray(cum))], 0, False), lanes)


def encode_parts(parts: list[tuple[np.ndarray, ...]], lanes: int, *, head: bytes = b"", free: bool = False
                 ) -> bytes:
    """``encode`` of the stream whose symbols are the parts' in order. A part is ``(less, cum)``: each symbol's
    frequency less one (uint16: 1 .. M fit as 0 .. M - 1) and its cum (< M, uint16); or ``(keys, less, cum)``:
    its symbols are keys into those tables. No whole-stream copy: at 48 MP ctx's symbols took 8 bytes each,
    twice (the parts and their concatenation, 0.77 GB); as keys into a piece's tables, 2 bytes a pixel.
    ``head``: bytes put before the states, in the one copy made of the output. ``free``: each part is dropped from
    ``parts`` (replaced by None) once coded, so that what it alone held is freed while the words grow."""
    return _encode(_Parts(parts, 1, free), lanes, head)


class _Parts:
    """A stream's (freq - less, cum) given as parts (see encode_parts), read a block at a time as uint64."""

    def __init__(self, parts: list[tuple[np.ndarray, ...]], less: int, free: bool) -> None:
        self.parts, self.less, self.free = parts, less, free
        self.ends = np.cumsum([len(part[0]) for part in parts], dtype=np.int64).tolist()
        self.firsts = [0] + self.ends[:-1]
        self.n = self.ends[-1] if self.ends else 0
        self.kept = len(parts)  # parts from here on were dropped (free)

    def block(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Symbols start .. stop - 1's (freq, cum) as uint64, padded past the stream's end with (M, 0): a symbol
        that leaves every state as it is (x < M << 24 emits nothing, and x // M · M + x % M = x), so the last
        step needs no shorter lanes."""
        f, c = np.empty(stop - start, _U64), np.empty(stop - start, _U64)
        i = bisect_right(self.ends, start)
        at = start
        while at < stop and i < len(self.ends):
            part = self.parts[i]
            first = self.ends[i] - len(part[0])
            end = min(stop, self.ends[i])
            if len(part) == 3:
                keys = part[0][at - first:end - first]
                f[at - start:end - start] = part[1].take(keys)
                c[at - start:end - start] = part[2].take(keys)
            else:
                f[at - start:end - start] = part[0][at - first:end - first]
                c[at - start:end - start] = part[1][at - first:end - first]
            at, i = end, i + 1
        if self.free:
            # (blocks come last first: the parts from this block's start on are not read again)
            first = bisect_left(self.firsts, start)
            self.parts[first:self.kept] = [None] * max(0, self.kept - first)
            self.kept = min(self.kept, first)
        if self.less:
            f[:at - start] += _U64(self.less)
        f[at - start:] = M
        c[at - start:] = 0
        return f, c


def _encode(parts: _Parts, lanes: int, head: bytes = b"") -> bytes:
    n = parts.n
    steps = -(-n // lanes)
    x = np.full(lanes, LOW, dtype=_U64)
    q = np.empty(lanes, dtype=_U64)
    blocks: list[np.ndarray] = []
    # rANS is last-in first-out: code the stream backwards so the decoder reads it forwards. Up to 1 MP a
    # step costs its numpy calls' overhead more than their work (5k to 18k steps), so every per-step value
    # that does not depend on the state is made for a block of steps at once, and a step is 8 in-place
    # calls without masks (a where= call is ~10x slower per element than shifting by 0 or 16 bits).
    per_block = max(1, _BLOCK_SYMBOLS // lanes)
    four = np.full(lanes, 4, dtype=_U64)  # arrays, not scalars: a numpy scalar operand costs a call ~2 us
    for b0 in range(((steps - 1) // per_block) * per_block if n else -1, -1, -per_block):
        b1 = min(steps, b0 + per_block)
        f, c = parts.block(b0 * lanes, b1 * lanes)
        f, c = f.reshape(-1, lanes), c.reshape(-1, lanes)
        limit = f << _U64(24)  # a state at or above this emits a word before coding the symbol
        grow = _U64(M) - f  # coding maps x to x + (x // f)·(M - f) + c
        shift = np.empty(f.shape, dtype=_U64)  # 16 where the state emits a word, else 0
        words = np.empty(f.shape, dtype="<u2")
        for i in range(b1 - b0 - 1, -1, -1):
            s = shift[i]
            np.greater_equal(x, limit[i], out=s, casting="unsafe")
            np.left_shift(s, four, out=s)
            np.copyto(words[i], x, casting="unsafe")  # the low 16 bits; kept where a word is emitted
            np.right_shift(x, s, out=x)
            np.floor_divide(x, f[i], out=q)
            np.multiply(q, grow[i], out=q)
            np.add(x, q, out=x)
            np.add(x, c[i], out=x)
        blocks.append(words[shift != 0])
    # head, states and words written into one buffer, each block freed as it is copied, then one copy as bytes:
    # twice the payload at most, where joining and concatenating them took 4 times (a 48 MP file at K = 4096,
    # 62 MB)
    states = np.zeros((lanes, 8), dtype=np.uint8)
    states[:] = x.astype("<u8").view(np.uint8).reshape(lanes, 8)
    at = len(head) + STATE_BYTES * lanes
    out = np.empty(at + 2 * sum(len(b) for b in blocks), np.uint8)
    out[:len(head)] = np.frombuffer(head, np.uint8)
    out[len(head):at] = states[:, :STATE_BYTES].reshape(-1)
    while blocks:
        words = blocks.pop().view(np.uint8)
        out[at:at + len(words)] = words
        at += len(words)
    return out.tobytes()


class Decoder:
    """Decodes a stream written by ``encode``, one batch of symbols at a time (see the module docstring)."""

    def __init__(self, data: bytes | memoryview, lanes: int, what: str = "payload") -> None:
        self.lanes = lanes
        self.what = what
        head = lanes * STATE_BYTES
        if len(data) < head:
            raise FormatError(f"{what}: truncated: {len(data)} bytes, the {lanes} rANS lane states "
                              f"alone need {head}")
        if (len(data) - head) % 2:
            raise FormatError(f"{what}: rANS word stream has an odd number of bytes ({len(data) - head})")
        self.scalar = lanes <= _SCALAR_LANES
        raw = np.zeros((lanes, 8), dtype=np.uint8)
        raw[:, :STATE_BYTES] = np.frombuffer(data, dtype=np.uint8, count=head).reshape(lanes, STATE_BYTES)
        self.x = raw.view("<u8").reshape(lanes).astype(np.int64)
        bad = np.flatnonzero(self.x < LOW)
        if len(bad):
            raise FormatError(f"{what}: rANS state of lane {int(bad[0])} is {int(self.x[bad[0]])}, "
                              f"below the minimum {LOW}")
        # (read in place, as uint16: each step's few are widened as it ORs them into the states; int64 copies of a
        # 48 MP file's words took 4 times its payload, 70 MB at K = 256 and 250 at 4096)
        self.words = np.frombuffer(data, dtype="<u2", offset=head)
        if self.scalar:
            self.x, self.words = self.x.tolist(), self.words.tolist()
        self.pos = 0
        self.index = 0  # global index of the next symbol; its lane is index % lanes

    def decode(self, rows: np.ndarray, freq: np.ndarray, cum: np.ndarray) -> np.ndarray:
        """Decode ``len(rows)`` symbols, symbol i coded with row ``rows[i]`` of the tables of ``cdf_tables``.

        ``rows``: 1-D int array of indices into ``freq`` (R, A) and ``cum`` (R, A + 1). Returns the symbols,
        int64 in 0 .. A-1, each one of non-zero frequency in its row.
        """
        n_rows, width = cum.shape
        if self.scalar:
            table, at = cum.tolist(), np.asarray(rows).tolist()

            def find_one(i: int, slot: int) -> tuple[int, int, int]:
                row = table[at[i]]
                sym = bisect_right(row, slot) - 1  # (a symbol of frequency 0 shares its boundary with the next)
                return sym, row[sym + 1] - row[sym], row[sym]

            return self._scalar(len(at), find_one)
        rows = np.asarray(rows, dtype=np.int64)
        fflat = freq.reshape(-1)
        cflat = cum.reshape(-1)
        if width <= _COMPARE_MAX + 1:
            # Few symbols: the symbol is the number of inner boundaries cum[1..A-1] at or below the slot
            # (a symbol of frequency 0 shares its boundary with the next, so it is skipped), found by one
            # gather and comparison per boundary: far cheaper than a binary search over every row.
            bounds = [np.ascontiguousarray(cum[:, a]) for a in range(1, width - 1)]
            rf = rows * (width - 1)
            rc = rows * width

            def find_few(a: int, b: int, slot: np.ndarray):
                r = rows[a:b]
                sym = np.zeros(b - a, np.int64)
                for col in bounds:
                    sym += col[r] <= slot
                return sym, fflat[rf[a:b] + sym], cflat[rc[a:b] + sym]

            return self._run(len(rows), find_few)
        # One sorted array for all rows, so one searchsorted call finds every symbol whatever its row.
        flat = (cum + np.arange(n_rows, dtype=np.int64)[:, None] * (M + 1)).reshape(-1)
        base = rows * (M + 1)
        rbase = rows * width

        def find(a: int, b: int, slot: np.ndarray):
            at = np.searchsorted(flat, base[a:b] + slot, side="right") - 1
            return at - rbase[a:b], fflat[at - rows[a:b]], cflat[at]

        return self._run(len(rows), find)

    def decode_uniform(self, sizes: np.ndarray) -> np.ndarray:
        """Decode ``len(sizes)`` symbols, symbol i uniform over 0 .. sizes[i] - 1 (see ``uniform``)."""
        if self.scalar:
            each = np.asarray(sizes).tolist()

            def find_uniform(i: int, slot: int) -> tuple[int, int, int]:
                q = M // each[i]
                extra = M - each[i] * q
                if slot < q + extra:
                    return 0, q + extra, 0
                sym = (slot - extra) // q
                return sym, q, sym * q + extra

            return self._scalar(len(each), find_uniform)
        sizes = np.asarray(sizes, dtype=np.int64)
        q = M // sizes
        extra = M - sizes * q

        def find(a: int, b: int, slot: np.ndarray):
            qq, ee = q[a:b], extra[a:b]
            sym = np.where(slot < qq + ee, 0, (slot - ee) // qq)
            return sym, np.where(sym == 0, qq + ee, qq), np.where(sym == 0, 0, sym * qq + ee)

        return self._run(len(sizes), find)

    def _run(self, n: int, find) -> np.ndarray:
        """Decode n symbols; ``find(a, b, slot)`` gives symbols a..b-1's (symbol, freq, cum) from their slots."""
        out = np.empty(n, dtype=np.int64)
        words = self.words
        i = 0
        while i < n:
            lane0 = self.index % self.lanes
            m = min(n - i, self.lanes - lane0)
            x = self.x[lane0:lane0 + m]
            slot = x & (M - 1)
            sym, f, c = find(i, i + m, slot)
            out[i:i + m] = sym
            # states stay below 2**40, so int64 holds every intermediate value
            x = f * (x >> SCALE_BITS) + slot - c
            low = x < LOW
            need = int(np.count_nonzero(low))
            if need:
                if self.pos + need > len(words):
                    # (cut short, or a changed bit made the lanes ask for more words than were coded)
                    raise FormatError(f"{self.what}: truncated or corrupt: the rANS word stream ends after "
                                      f"{len(words)} words, at symbol {self.index}")
                x[low] = (x[low] << _WORD_BITS) | words[self.pos:self.pos + need]
                self.pos += need
            self.x[lane0:lane0 + m] = x
            i += m
            self.index += m
        return out

    def _scalar(self, n: int, find) -> np.ndarray:
        """_run's decode on Python ints (_SCALAR_LANES); ``find(i, slot)`` gives symbol i's (symbol, freq, cum).
        The same symbols, states and words read, and the same error at the same symbol (its step's first);
        after an error the states are not _run's (some of the step's lanes moved on): a decoder that raised is
        not used again (ctx.decode passes the error on)."""
        out = [0] * n
        x, words, pos, index, lanes = self.x, self.words, self.pos, self.index, self.lanes
        step = index
        for i in range(n):
            lane = (index + i) % lanes
            if lane == 0:
                step = index + i
            state = x[lane]
            slot = state & (M - 1)
            sym, freq, low = find(i, slot)
            state = freq * (state >> SCALE_BITS) + slot - low
            if state < LOW:
                if pos == len(words):
                    raise FormatError(f"{self.what}: truncated or corrupt: the rANS word stream ends after "
                                      f"{len(words)} words, at symbol {step}")
                state = (state << _WORD_BITS) | words[pos]
                pos += 1
            x[lane] = state
            out[i] = sym
        self.pos, self.index = pos, index + n
        return np.array(out, dtype=np.int64)

    def finish(self) -> None:
        """Check that the stream was used up exactly: every lane back at its start state, no word left."""
        if self.pos != len(self.words):
            raise FormatError(f"{self.what}: {len(self.words) - self.pos} unused rANS words "
                              f"({2 * (len(self.words) - self.pos)} trailing bytes)")
        bad = np.flatnonzero(np.asarray(self.x) != LOW)
        if len(bad):
            raise FormatError(f"{self.what}: corrupt: rANS lane {int(bad[0])} ends in state "
                              f"{int(self.x[bad[0]])}, not {LOW}")
