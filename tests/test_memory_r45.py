"""Round 45: ctx's encoder makes escapes' stage 2 as soon as a group's worth is known and keeps their symbols in
6 bytes each, its decoder decodes a piece's escapes in spans and reads the payload's words in place, and rANS
frees the stream's parts as it codes them: the same bytes, in a bounded memory (a noisy 48 MP photo's
`compress --codec ctx -k 256` peaked at 0.70 GB, its decompress at 0.53, and 1.07 / 1.29 at K = 4096)."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from kmq.codecs import ctx, rans
from test_codecs import blobs, flat_blocks, pal
from test_memory_r44 import traced_peak


def all_escapes(height: int, width: int, k: int) -> np.ndarray:
    # (x + 2y) mod 5: a pixel's neighbours at a power-of-two distance d along a row, a column or a diagonal
    # differ from it by d, 2d or 3d (mod 5), never 0: every pixel escapes
    y, x = np.mgrid[0:height, 0:width]
    return ((x + 2 * y) % 5 * (k // 5)).astype(np.uint16)


def one_escape(height: int, width: int, k: int) -> np.ndarray:
    labels = np.full((height, width), k - 1, np.uint16)  # (the first pixel, of no neighbours, escapes too)
    labels[height // 2, width // 3] = 1
    return labels


def noisy(height: int, width: int, k: int) -> np.ndarray:
    labels = blobs(height, width, k, seed=7)
    rng = np.random.default_rng(7)
    odd = rng.random(labels.shape) < 0.4
    labels[odd] = rng.integers(0, k, int(odd.sum()))
    return labels


# sha256 of the payloads the code before this round wrote (main at 6e6ad44)
PINNED = {
    ("all", 5): "b283d445738d235a448757024da7a5a6d95d40306607be1cb67125aeee88ad59",
    ("all", 300): "7d907c36f35e14bbbdff982c36f7e50cb762517021d5a6f5cbbda61c3925d232",
    ("one", 16): "d942811a923d421b3dcf88a949187bef75c8da9b926fab875b67ecef1172ca35",
    ("one", 300): "8c81cbfcb3c9d6d27a81266eb39fc78da79bbbc12f6d86dce3a504ce14e12034",
    ("noisy", 16): "94411f33debe9f3a7d3397d359cd827a8b470b5a776c397b6ab0c23b5a64b524",
    ("noisy", 256): "f78d0243e93ca20f6f0408d7b0ef0e29df195cf360e864014d090bc0e3cf805e",
    ("noisy", 4096): "86025c6c346e0be90db64941ebca3852941c66cf31a930fdda90770598745a88",
    ("noisy", 65536): "03ce791bee6345fee4c7f21e484ddfa75a68d90ccd5d3399a9e514591b1ae7e7",
}
MAKE = {"all": all_escapes, "one": one_escape, "noisy": noisy}


@pytest.mark.parametrize("case, k", list(PINNED))
@pytest.mark.parametrize("group", [1, 3, 64, 1 << 18])
def test_ctx_escape_groups_and_spans_of_any_size_give_the_files_of_before(monkeypatch, case, k, group):
    # Groups and spans of 1 and 3 pixels or escapes (sizes not a multiple, a span of one escape, spans without
    # any), 64 and the default; all escapes, one (and the first pixel's), 40 % of them. The encoder's symbols
    # and the decoder's labels are those of the whole piece at once.
    labels = MAKE[case](67, 91, k)
    palette = pal(k, seed=k)
    monkeypatch.setattr(ctx, "_ESCAPE_GROUP", group)
    monkeypatch.setattr(ctx, "_STRIPE_PIXELS", max(group, 7))
    payload = ctx.encode(labels, palette)
    assert hashlib.sha256(payload).hexdigest() == PINNED[case, k]
    assert np.array_equal(ctx.decode(payload, 91, 67, palette), labels)
    low, high = ctx.payload_bounds(labels, palette)
    assert low <= len(payload) <= high


@pytest.mark.parametrize("k", [2, 16, 300])
def test_ctx_no_escape_but_the_first_pixel(monkeypatch, k):
    monkeypatch.setattr(ctx, "_ESCAPE_GROUP", 2)
    labels = np.zeros((40, 33), np.uint16)
    payload = ctx.encode(labels, pal(k))
    assert np.array_equal(ctx.decode(payload, 33, 40, pal(k)), labels)


@pytest.mark.parametrize("k, encode_max, decode_max", [(16, 22.8, 14), (256, 27, 21), (4096, 25.3, 21)])
def test_ctx_memory_of_many_escapes_is_their_symbols_not_their_contexts(monkeypatch, k, encode_max, decode_max):
    # A noisy map (40 % of the labels at random, most of them escapes) with stripes and escape groups far smaller
    # than its passes, as 2^20 / 2^18 are to a 48 MP image's. Allocations are counted (tracemalloc), not timed.
    monkeypatch.setattr(ctx, "_STRIPE_PIXELS", 1 << 12)
    monkeypatch.setattr(ctx, "_ESCAPE_GROUP", 1 << 10)
    labels, palette = noisy(600, 500, k), pal(k)
    # The palette's own tables (kept per palette since round 46: 1.7 MB at K = 256, made once, whatever the
    # image's size) first, so that what is counted is what grows with the pixels: run alone, this test counted
    # them and failed (27.1 bytes a pixel), in the suite's order it did not.
    ctx.decode(ctx.encode(labels[:8, :8], palette), 8, 8, palette)
    payload, encode_peak = traced_peak(ctx.encode, labels, palette)
    decoded, decode_peak = traced_peak(ctx.decode, payload, 500, 600, palette)
    assert np.array_equal(decoded, labels)
    assert encode_peak / labels.size < encode_max
    assert decode_peak / labels.size < decode_max


@pytest.mark.parametrize("lanes", [1, 64, 1024])
def test_rans_encode_parts_frees_its_parts_and_writes_the_head_in(lanes):
    rng = np.random.default_rng(lanes)
    sizes = [0, 1, 5000, 0, 70000, 3, 1 << 16, 0]
    parts = [((rng.integers(1, rans.M + 1, n) - 1).astype(np.uint16), rng.integers(0, 1 << 15, n).astype(np.uint16))
             for n in sizes]
    want = rans.encode_parts(list(parts), lanes)
    given = list(parts)
    assert rans.encode_parts(given, lanes, head=b"\x07", free=True) == b"\x07" + want
    assert given == [None] * len(parts)
