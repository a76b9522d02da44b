"""Round 46: ctx's sizing made cheaper without changing a value (payload_bounds feeds a target's search).

Above K = 256 the 'apart' class of two colours is read by comparisons (no binary search), the activity's spread
summed in int32 and the escapes' excluded candidates made by the sorting network of the K <= 256 path; a
palette's own tables are kept across models. Each is pinned against the computation it replaced.
"""
from __future__ import annotations

import numpy as np
import pytest

from kmq.codecs import ctx


def _cases():
    rng = np.random.default_rng(46)
    rgb3 = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)
    row = np.array([[0, 1, 2, 2, 1, 0, 0]], np.uint16)
    stripes = np.repeat(np.arange(40, dtype=np.uint16)[None, :] * 7 % 1000, 30, axis=0)
    stripes[::3] = (stripes[::3] + 1) % 1000
    return [("K = 1", np.zeros((3, 2), np.uint16), np.array([[9, 9, 9]], np.uint8), (0, 0)),
            ("1x1, K = 2", np.array([[1]], np.uint16), np.array([[0], [255]], np.uint8), (4, 7)),
            ("2x2, K = 2", np.array([[0, 1], [1, 0]], np.uint16), np.array([[0], [255]], np.uint8), (4, 7)),
            ("1x7, K = 3", row, rgb3, (5, 8)),
            ("7x1, K = 3", row.T.copy(), rgb3, (5, 8)),
            ("7x5, K = 300", rng.integers(0, 300, (5, 7)).astype(np.uint16),
             rng.integers(0, 256, (300, 3)).astype(np.uint8), (51, 54)),
            ("5x7, K = 65536 RGBA", rng.integers(0, 65536, (7, 5)).astype(np.uint16),
             rng.integers(0, 256, (65536, 4)).astype(np.uint8), (88, 92)),
            ("30x40 stripes, K = 1000", stripes, rng.integers(0, 256, (1000, 3)).astype(np.uint8), (857, 862))]


@pytest.mark.parametrize("name, labels, palette, bounds", _cases(), ids=[c[0] for c in _cases()])
def test_payload_bounds_pinned_on_small_cases(name, labels, palette, bounds):
    # The values of round 45's code. By hand for 1x1 at K = 2: the first pixel's stage 1 can only escape (0 bits),
    # its bucket is one of 2 equally weighted (1 bit), its offset one of 1: bits = 1, the shortfall M / 2, so
    # low = ceil(1 + 3 + (1 - r) / 8 - 1) = 4 and high = floor(1 + 5 + (1 + r) / 8 + 1) = 7 (r = 0.0028), around
    # the 6 bytes of lane byte and state. K = 1 is exact: nothing is coded.
    assert ctx.payload_bounds(labels, palette) == bounds
    n = len(ctx.encode(labels, palette))
    assert bounds[0] <= n <= bounds[1]
    if len(palette) == 1:
        assert n == bounds[0] == bounds[1] == 0


def test_apart_above_256_is_read_without_a_binary_search(monkeypatch):
    # _bit_length (np.searchsorted) was 2/3 of the 'apart' class above K = 256; the comparisons give the same class
    # for every squared distance two colours can have (4·255² at most), and the same bounds.
    d = np.arange(4 * 255 ** 2 + 1)
    want = np.minimum(ctx._N_DC - 1, ctx._bit_length(d) // ctx._DCS)
    assert ctx._at_least(d, ctx._APART_FROM).tolist() == want.tolist()
    cases = [c for c in _cases() if len(c[2]) > ctx._NN_MAX]
    for _, labels, palette, bounds in cases:  # (the palettes' tables made before: their buckets use _bit_length)
        assert ctx.payload_bounds(labels, palette) == bounds

    def no_search(x):
        raise AssertionError("a binary search per pixel")
    monkeypatch.setattr(ctx, "_bit_length", no_search)
    for _, labels, palette, bounds in cases:
        assert ctx.payload_bounds(labels, palette) == bounds


@pytest.mark.parametrize("k, channels", [(257, 3), (1000, 1), (4096, 4), (65536, 4)])
def test_above_256_activity_apart_and_excluded_candidates_are_the_reference_ones(k, channels):
    rng = np.random.default_rng(k)
    palette = rng.integers(0, 256, (k, channels)).astype(np.uint8)
    palette[:2] = [0] * channels, [255] * channels  # the largest distances too
    model = ctx._Model(k, palette)
    m = 6000
    pool = rng.integers(0, k, (4, m))
    pool[:, :50] = [[0], [1], [0], [1]]
    nb = np.take_along_axis(pool, rng.integers(0, 4, (4, m)), axis=0).astype(np.uint16)
    pal = palette.astype(np.int64)
    # activity: the int64 sum of the 6 pairs' squared distances, at most 7 by half its bit length
    spread = sum(((pal[nb[i]] - pal[nb[j]]) ** 2).sum(axis=1) for i, j in ctx._PAIRS)
    want_act = [min(7, int(s).bit_length() // 2) for s in spread]
    assert ctx._spread_activity(model, nb).tolist() == want_act
    # apart: min(3, bit_length(d) // 4) of the two labels' squared distance
    a, b = nb[0], nb[3]
    want_apart = [min(3, int(s).bit_length() // 4) for s in ((pal[a] - pal[b]) ** 2).sum(axis=1)]
    assert model.apart(a, b).tolist() == want_apart
    # escapes: the distinct neighbour labels each rank's candidate names, sorted, k where a rank is missing (the
    # gather by the pattern's rank table and sort of round 45)
    pattern = ctx._pattern(nb)
    pattern[0] = ctx._NO_NB
    act = rng.integers(0, ctx._N_ACT, m).astype(np.uint8)
    n_ranks = ctx._N_RANKS[pattern]
    cand = np.take_along_axis(nb, ctx._RANK_POS[pattern].T, axis=0).astype(np.int64)
    want = np.where(np.arange(4)[:, None] < n_ranks, cand, k)
    want.sort(axis=0)
    ref, got_ranks, excl, rows = model._escape_context(pattern, nb, act)
    assert excl.tolist() == want.tolist() and got_ranks.tolist() == n_ranks.tolist()
    assert not ref.any() and rows.tolist() == (act.astype(np.int64) * ctx._N_NEAR * 5 + n_ranks).tolist()


def test_palette_tables_are_shared_and_the_counts_are_not(monkeypatch):
    monkeypatch.setattr(ctx, "_TABLES", {})
    rng = np.random.default_rng(7)
    palette = rng.integers(0, 256, (64, 3)).astype(np.uint8)
    first, second = ctx._Model(64, palette), ctx._Model(64, palette.copy())
    assert first.tables is second.tables and first.order is second.order
    assert first.rank is not second.rank and first.esc is not second.esc and first.base is not second.base
    # a labelling sized after another of the same palette gets its own counts: the values of a fresh process
    a = rng.integers(0, 64, (40, 50)).astype(np.uint16)
    b = np.repeat(a[:, :25], 2, axis=1)
    alone = ctx.payload_bounds(a, palette)
    ctx.payload_bounds(b, palette)
    assert ctx.payload_bounds(a, palette) == alone
    monkeypatch.setattr(ctx, "_TABLES", {})
    assert ctx.payload_bounds(a, palette) == alone
    for seed in range(ctx._TABLES_KEPT + 2):  # only the latest palettes are kept
        ctx._Model(8, np.random.default_rng(seed).integers(0, 256, (8, 1)).astype(np.uint8))
    assert len(ctx._TABLES) == ctx._TABLES_KEPT


def test_a_model_reads_its_palettes_cells_once_a_call(monkeypatch):
    # (h55r2: a model of the same palette in another thread could store a fresh table of cells between this
    # model's fill and its read-back, which then read -1 and coded wrong contexts: a file that did not decode)
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (64, 3), dtype=np.uint8)
    labels = rng.integers(0, 64, (40, 40)).astype(np.uint8)
    ctx._TABLES.clear()
    serial = ctx.encode(labels, palette)
    ctx._TABLES.clear()
    real = ctx._Model.cells

    def replaced_after_each_read(self):
        cells = real.fget(self)
        if cells is not None:  # what another thread's model of this palette could do at any moment
            real.fset(self, np.full_like(cells, -1))
        return cells

    monkeypatch.setattr(ctx._Model, "cells", property(replaced_after_each_read, real.fset))
    assert ctx.encode(labels, palette) == serial
    monkeypatch.undo()
    ctx._TABLES.clear()
