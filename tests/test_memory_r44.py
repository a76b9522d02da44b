"""Round 44: ctx's encoder and decoder make a large pass's context a stripe of rows at a time, code escapes in
groups and keep the encoder's symbols in 4 bytes each: the same bytes, in a bounded memory (a 48 MP photo's
`compress --codec ctx` peaked at 0.97-1.26 GB)."""
from __future__ import annotations

import hashlib
import lzma
import tracemalloc

import numpy as np
import pytest

from kmq.codecs import ctx, lzma_codec, rans
from test_codecs import blobs, flat_blocks, pal


def tiny_stripes(monkeypatch, pixels: int = 7, escapes: int = 5) -> None:
    # (raising=False: on code without stripes the patch is a no-op, and the tests below say what they assert)
    monkeypatch.setattr(ctx, "_STRIPE_PIXELS", pixels, raising=False)
    monkeypatch.setattr(ctx, "_ESCAPE_GROUP", escapes, raising=False)


@pytest.mark.parametrize("k", [2, 16, 300])
@pytest.mark.parametrize("shape", [(1, 300), (300, 1), (7, 5), (61, 97), (130, 67)])
def test_ctx_stripes_of_any_size_give_the_same_payload_and_labels(monkeypatch, k, shape):
    # Stripes of 7 pixels (a row, or a few of a narrow pass) and escape groups of 5: rows not a multiple of the
    # stripe, a 1-row image, width 1. Every pixel's context is its own, so the payload is the unstriped one.
    labels = blobs(*shape, k, seed=shape[0])
    labels[::5] = flat_blocks(*shape, k)[::5]
    palette = pal(k)
    whole = ctx.encode(labels, palette)
    tiny_stripes(monkeypatch)
    assert ctx.encode(labels, palette) == whole
    assert np.array_equal(ctx.decode(whole, shape[1], shape[0], palette), labels)
    assert ctx.payload_bounds(labels, palette)[0] <= len(whole) <= ctx.payload_bounds(labels, palette)[1]


def test_ctx_payloads_spanning_several_stripes_are_the_files_of_before(monkeypatch):
    # sha256 of payloads the code before stripes wrote (main at 293a157): a 4.4 MP map whose last passes (1.1 MP)
    # are 2 stripes, and K = 300 (ranked by label, uint16 neighbours) in stripes of 2^16 (its largest pass,
    # ~275,000 pixels, is under the default stripe: h53r2).
    labels = flat_blocks(2200, 2000, 16, seed=5)
    labels[1000:1400] = blobs(400, 2000, 16, seed=5)
    payload = ctx.encode(labels, pal(16))
    assert hashlib.sha256(payload).hexdigest() == "feb35a329da59deddeb81daef0041f36fb95eb1d743ca98ce782643f5e682c04"
    assert np.array_equal(ctx.decode(payload, 2000, 2200, pal(16)), labels)
    tiny_stripes(monkeypatch, 1 << 16, 1 << 12)
    labels = blobs(1100, 1000, 300, seed=2)
    payload = ctx.encode(labels, pal(300))
    assert hashlib.sha256(payload).hexdigest() == "f0f3eeb5aca087d554bd0000bbd286ce1f32c4a44a59115c4dbf198f65540d6d"
    assert np.array_equal(ctx.decode(payload, 1000, 1100, pal(300)), labels)


def traced_peak(fn, *args) -> tuple[object, int]:
    tracemalloc.start()
    try:
        out = fn(*args)
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("k, decode_max", [(16, 17), (300, 26)])
@pytest.mark.parametrize("make", [blobs, flat_blocks])
def test_ctx_memory_is_the_streams_not_whole_pass_temporaries(monkeypatch, k, decode_max, make):
    # With stripes far smaller than the passes (as 2^20 pixels are to a 48 MP image's 12 MP passes), what the
    # encoder holds is the labels in bytes and its symbols as keys (2 bytes a pixel) and the model's tables:
    # 17.2-22.3 bytes a pixel on this 0.3 MP map, where whole-pass temporaries and (freq, cum) in 8 bytes,
    # joined into a copy, took 30.1-44.5 (the decoder 19.5-33.8, now 11.5-20.5; at 1.2 MP, stripes 4x these,
    # 8.2-14.0 against 20.5-37). Allocations are counted (tracemalloc), not timed.
    tiny_stripes(monkeypatch, 1 << 12, 1 << 10)
    labels, palette = make(600, 500, k, seed=3), pal(k)
    payload, encode_peak = traced_peak(ctx.encode, labels, palette)
    decoded, decode_peak = traced_peak(ctx.decode, payload, 500, 600, palette)
    assert np.array_equal(decoded, labels)
    assert encode_peak / labels.size < 25
    assert decode_peak / labels.size < decode_max


@pytest.mark.parametrize("lanes", [16, 64, 1024])
def test_rans_encode_parts_is_encode_of_the_joined_stream(lanes):
    # Parts of any length (empty ones too) across the blocks of steps, frequencies up to M (stored less one).
    rng = np.random.default_rng(lanes)
    sizes = [0, 1, 5000, 0, 70000, 3, 1 << 16]
    freqs = [rng.integers(1, rans.M + 1, n) for n in sizes]
    for f in freqs:
        f[::7] = rans.M
    cums = [rng.integers(0, rans.M - f + 1) for f in freqs]
    joined = rans.encode(np.concatenate(freqs), np.concatenate(cums), lanes)
    parts = [((f - 1).astype(np.uint16), c.astype(np.uint16)) for f, c in zip(freqs, cums)]
    assert rans.encode_parts(parts, lanes) == joined
    # the same symbols as keys into tables of (freq - 1, cum), here one entry a symbol in reverse order
    keyed = [(np.arange(len(f))[::-1].astype(np.int32), f[::-1].copy(), c[::-1].copy()) for f, c in parts]
    assert rans.encode_parts(keyed[:3] + parts[3:], lanes) == joined
    assert rans.encode_parts([], lanes) == rans.encode(np.zeros(0, np.int64), np.zeros(0, np.int64), lanes)


@pytest.mark.parametrize("k", [2, 256, 300, 65536])
def test_lzma_reads_labels_in_place_and_writes_the_same_stream(k):
    # The stream is the labels' bytes (1 a label up to K = 256, else 2 little-endian) whatever the array's layout.
    labels = blobs(90, 70, k)
    want = lzma.compress(labels.astype(np.uint8 if k <= 256 else "<u2").tobytes(), format=lzma.FORMAT_RAW,
                         filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME,
                                   "dict_size": lzma_codec.dict_size(labels.size * lzma_codec.label_bytes(k))}])
    assert lzma_codec.encode(labels, pal(k)) == want
    wide = np.zeros((90, 140), np.uint16)
    wide[:, ::2] = labels
    assert lzma_codec.encode(wide[:, ::2], pal(k)) == want
    assert lzma_codec.encode(labels.astype(">u2"), pal(k)) == want


def test_lzma_converts_the_labels_a_piece_at_a_time():
    # A compressed image's labels are uint16 and the stream's bytes uint8 up to K = 256: converted whole, the
    # copy was a byte a pixel at the peak (48 MB at 48 MP; h53r2), a piece's now.
    labels = blobs(1024, 1024, 16)
    _, peak = traced_peak(lzma_codec.encode, labels, pal(16))
    _, in_place = traced_peak(lzma_codec.encode, labels.astype(np.uint8), pal(16))  # (liblzma's own: ~13 MB)
    assert peak < in_place + 0.5 * labels.size
