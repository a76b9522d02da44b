"""The lzma and ctx payload codecs: exact round trips, determinism, and FormatError on any bad payload."""
from __future__ import annotations

import hashlib
import itertools
import lzma
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kmq
from kmq import codecs
from kmq.codecs import ctx, lzma_codec, rans
from kmq.errors import FormatError

CODECS = [lzma_codec, ctx]
IDS = ["lzma", "ctx"]
KS = [1, 2, 3, 16, 17, 256, 257, 65536]
SIZES = [(1, 1), (1, 9), (9, 1), (7, 5), (33, 17), (64, 64)]


def blobs(height: int, width: int, k: int, seed: int = 0) -> np.ndarray:
    """A label map like a quantized photo: smooth regions, edges, some noise. (height, width) uint16 < k."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    field = np.sin(x / 5.0 + seed) + np.cos(y / 7.0) + 0.3 * rng.standard_normal((height, width))
    levels = np.floor((field + 2.6) / 5.2 * min(k, 24)).astype(np.int64) % k
    # spread the few levels over the whole label range, so large k exercises large labels
    spread = (levels * 7919 + seed) % k if k > 24 else levels
    return spread.astype(np.uint16)


def pal(k: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A (k, channels) uint8 palette; colours drawn at random (duplicates allowed: codecs must cope)."""
    return np.random.default_rng(seed).integers(0, 256, (k, channels)).astype(np.uint8)


def roundtrip(codec, labels: np.ndarray, k: int, channels: int = 3) -> bytes:
    palette = pal(k, channels)
    payload = codec.encode(labels, palette)
    out = codec.decode(payload, labels.shape[1], labels.shape[0], palette)
    assert out.dtype == np.uint16 and out.shape == labels.shape
    np.testing.assert_array_equal(out, labels)
    return payload


# --- registry ---------------------------------------------------------------------------------------------

def test_registered_ids():
    assert codecs.codec_id("lzma") == 1 and codecs.codec_id("ctx") == 2
    assert codecs.codec_name(1) == "lzma" and codecs.codec_name(2) == "ctx"


# --- hand-computed toy cases --------------------------------------------------------------------------------

def test_lzma_payload_is_a_raw_lzma2_stream_of_label_bytes():
    labels = np.array([[0, 1, 2], [2, 1, 0]], np.uint16)
    payload = lzma_codec.encode(labels, pal(3))
    filters = [{"id": lzma.FILTER_LZMA2, "dict_size": 4096}]
    assert lzma.decompress(payload, format=lzma.FORMAT_RAW, filters=filters) == bytes([0, 1, 2, 2, 1, 0])


def test_lzma_wide_labels_are_little_endian_u16():
    labels = np.array([[0x1234, 1]], np.uint16)
    payload = lzma_codec.encode(labels, pal(65536))
    filters = [{"id": lzma.FILTER_LZMA2, "dict_size": 4096}]
    assert lzma.decompress(payload, format=lzma.FORMAT_RAW, filters=filters) == b"\x34\x12\x01\x00"


def test_lzma_dict_size_follows_the_image():
    assert lzma_codec.dict_size(1) == 4096
    assert lzma_codec.dict_size(4097) == 8192
    assert lzma_codec.dict_size(1 << 40) == 64 << 20


RED_BLUE = np.array([[255, 0, 0], [0, 0, 255]], np.uint8)


def test_ctx_k1_payload_is_empty():
    assert ctx.encode(np.zeros((3, 4), np.uint16), pal(1)) == b""
    np.testing.assert_array_equal(ctx.decode(b"", 4, 3, pal(1)), np.zeros((3, 4), np.uint16))


def test_ctx_single_pixel_layout():
    # one pixel, k = 2, label 1: stage 1 can only say "escape" (probability 1, no output); the label is then one
    # binary decision with weights (0: 1+1, 1: 1+1) -> freq 32768 each. rANS: x = 2**24 -> 2**25 + 32768.
    payload = ctx.encode(np.array([[1]], np.uint16), RED_BLUE)
    x = (((1 << 24) // 32768) << 16) + (1 << 24) % 32768 + 32768
    assert payload == bytes([0]) + x.to_bytes(5, "little")
    assert ctx.decode(payload, 1, 1, RED_BLUE)[0, 0] == 1


def test_ctx_worked_example_of_the_spec():
    # docs/FORMAT.md, "Worked example": traced by hand, pass by pass.
    labels = np.array([[0, 1], [1, 1]], np.uint16)
    payload = ctx.encode(labels, RED_BLUE)
    assert payload == bytes.fromhex("00 00 00 07 10 00")
    np.testing.assert_array_equal(ctx.decode(payload, 2, 2, RED_BLUE), labels)


def test_ctx_constant_image_is_tiny():
    labels = np.full((64, 64), 5, np.uint16)
    payload = roundtrip(ctx, labels, 16)
    assert len(payload) < 40


def test_ctx_beats_lzma_on_smooth_labels():
    labels = blobs(96, 128, 16)
    grey = (np.arange(16) * 17).astype(np.uint8)[:, None]  # label i is the i-th level of the field: a ramp
    sizes = [len(codec.encode(labels, grey)) for codec in (ctx, lzma_codec)]
    assert sizes[0] < 0.9 * sizes[1]


# --- exact round trips --------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("size", SIZES, ids=[f"{h}x{w}" for h, w in SIZES])
def test_roundtrip(codec, k, size):
    roundtrip(codec, blobs(*size, k), k)


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@pytest.mark.parametrize("k", [2, 256, 257, 65536])
def test_roundtrip_noise_and_extremes(codec, k):
    rng = np.random.default_rng(k)
    roundtrip(codec, rng.integers(0, k, (19, 23)).astype(np.uint16), k)
    roundtrip(codec, np.full((6, 5), k - 1, np.uint16), k)
    roundtrip(codec, np.zeros((5, 6), np.uint16), k)


def test_ctx_many_lanes():
    labels = blobs(200, 330, 64, seed=3)  # 66 000 pixels: 8 lanes
    assert ctx.lanes_log2(labels.size) == 3
    roundtrip(ctx, labels, 64)


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
def test_deterministic(codec):
    labels = blobs(40, 50, 17, seed=2)
    assert codec.encode(labels, pal(17)) == codec.encode(labels.copy(), pal(17))


# Payloads written by the ctx coder of round 11 (before its encoder and model were made cheaper): the same
# labels must give these bytes and these bounds forever (files already written must decode; same input, same file).
PINNED = [((33, 17), 3, 1, 0, 70, "59af8ad85e2edcce", (69, 72)),  # 1 lane, grey
          ((64, 64), 2, 3, 1, 262, "2e0dff4892da19e6", (260, 264)),
          ((200, 330), 64, 3, 3, 37719, "0eb4a5cb5ab98554", (37642, 37791)),  # 8 lanes, last step short
          ((45, 61), 16, 4, 4, 1134, "6a72b32e56f980e7", (1130, 1138)),  # RGBA
          ((37, 29), 257, 3, 5, 812, "255f3ae4d705a4b0", (809, 814)),  # escapes ranked by label
          ((130, 127), 256, 1, 6, 12015, "ba978535399201e2", (11994, 12035)),
          # above K = 256 the neighbours' colour distances are summed channel by channel (round 27): as before
          ((50, 70), 1036, 4, 7, 2906, "a89c8c82e164ed03", (2900, 2911)),
          ((41, 39), 300, 1, 8, 1188, "16885aea24d6f0e0", (1186, 1192)),
          ((60, 40), 4096, 3, 9, 2280, "c4acc46a5f6eec0f", (2275, 2283))]


@pytest.mark.parametrize("size, k, channels, seed, n_bytes, digest, bounds", PINNED)
def test_ctx_payload_digests_are_pinned(size, k, channels, seed, n_bytes, digest, bounds):
    labels, palette = blobs(*size, k, seed), pal(k, channels, seed)
    payload = ctx.encode(labels, palette)
    assert (len(payload), hashlib.sha256(payload).hexdigest()[:16]) == (n_bytes, digest)
    assert ctx.payload_bounds(labels, palette) == bounds


# --- the rANS coder alone -----------------------------------------------------------------------------------

def test_rans_tables_sum_to_m_and_zero_weight_is_zero():
    freq, cum = rans.cdf_tables(np.array([[5, 0, 1], [0, 0, 0], [1, 1, 1]]))
    assert (freq.sum(axis=1) == rans.M).all()
    assert freq[0, 1] == 0 and freq[0, 2] >= 1
    assert (cum[:, -1] == rans.M).all()


@pytest.mark.parametrize("n_sym", [2, 5, 8])
def test_rans_tables_of_many_rows_are_those_of_each_row(n_sym):
    # Short alphabets are made column by column above _FEW_ROWS rows, whole-array below: the same numbers.
    rng = np.random.default_rng(n_sym)
    w = rng.integers(0, 1 << 36, (3 * rans._FEW_ROWS, n_sym)) >> rng.integers(0, 37, (3 * rans._FEW_ROWS, n_sym))
    w[: 5] = [[0] * n_sym, [1] * n_sym, [7] + [0] * (n_sym - 1), [3, 3] + [0] * (n_sym - 2), [1 << 35] * n_sym]
    freq, cum = rans.cdf_tables(w)
    for a in range(0, len(w), 1000):
        part = rans.cdf_tables(w[a:a + 1000])
        np.testing.assert_array_equal(part[0], freq[a:a + 1000])
        np.testing.assert_array_equal(part[1], cum[a:a + 1000])
    assert freq[0].tolist() == [rans.M] + [0] * (n_sym - 1)


@pytest.mark.parametrize("order", ["F", "transposed"])
def test_rans_tables_of_weights_in_any_memory_order(order):
    # The units left over are added at flat positions of the frequencies: weights in Fortran order (or a
    # transposed view) gave rows that no longer summed to M.
    w = np.random.default_rng(3).integers(0, 1000, (30, 12))
    given = np.asfortranarray(w) if order == "F" else w.T.copy().T
    freq, cum = rans.cdf_tables(given)
    np.testing.assert_array_equal(freq, rans.cdf_tables(w)[0])
    assert (freq.sum(axis=1) == rans.M).all() and (cum[:, -1] == rans.M).all()


@pytest.mark.parametrize("lanes", [1, 3, 16])
def test_rans_roundtrip_in_uneven_batches(lanes):
    rng = np.random.default_rng(lanes)
    freq, cum = rans.cdf_tables(rng.integers(0, 9, (6, 7)) + np.eye(6, 7, dtype=np.int64))
    rows = rng.integers(0, 6, 3000)
    sym = np.array([rng.choice(7, p=freq[r] / rans.M) for r in rows])
    data = rans.encode(freq[rows, sym], cum[rows, sym], lanes)
    dec = rans.Decoder(data, lanes)
    cuts = [0, 1, 2, 50, 51, 1000, 3000]
    got = np.concatenate([dec.decode(rows[a:b], freq, cum) for a, b in zip(cuts, cuts[1:])])
    dec.finish()
    np.testing.assert_array_equal(got, sym)


def _decoded(data: bytes, lanes: int, batches) -> tuple[list, object]:
    """Each batch's symbols (("table", rows, freq, cum) or ("uniform", sizes)) and the decoder's end: its
    state check, or the FormatError's message on the way."""
    got: list = []
    try:
        dec = rans.Decoder(data, lanes)
        for batch in batches:
            got.append(dec.decode(*batch[1:]) if batch[0] == "table" else dec.decode_uniform(batch[1]))
        dec.finish()
    except FormatError as exc:
        return got, str(exc)
    return got, None


@pytest.mark.parametrize("lanes", [1, 3, 16, 33])
def test_rans_scalar_and_vector_decodes_agree_on_good_cut_and_flipped_streams(monkeypatch, lanes):
    # Few lanes decode on Python ints (_SCALAR_LANES), more by numpy steps: the same symbols, the same
    # errors at the same symbol, whichever a stream gets; tables narrow (compared) and wide (searched), with
    # symbols of frequency 0, and uniform symbols of sizes that do and do not divide M.
    rng = np.random.default_rng(lanes)
    narrow = rans.cdf_tables(rng.integers(0, 9, (6, 7)) * (rng.random((6, 7)) < 0.7) + np.eye(6, 7, dtype=np.int64))
    wide = rans.cdf_tables(rng.integers(0, 99, (4, 40)) * (rng.random((4, 40)) < 0.5) + np.eye(4, 40, dtype=np.int64))
    batches, freqs, cums = [], [], []
    for n, (freq, cum) in [(300, narrow), (257, wide), (31, narrow)]:
        rows = rng.integers(0, len(freq), n)
        sym = np.array([rng.choice(freq.shape[1], p=freq[r] / rans.M) for r in rows])
        batches.append(("table", rows, freq, cum))
        freqs.append(freq[rows, sym]), cums.append(cum[rows, sym])
    sizes = rng.choice([1, 2, 3, 7, 1000, 4097, rans.M], 200)
    sym = rng.integers(0, sizes)
    q = rans.M // sizes
    extra = rans.M - sizes * q
    batches.append(("uniform", sizes))
    freqs.append(np.where(sym == 0, q + extra, q)), cums.append(np.where(sym == 0, 0, sym * q + extra))
    data = rans.encode(np.concatenate(freqs), np.concatenate(cums), lanes)
    streams = [data, data + b"\0\0", data[:-2], data[:len(data) // 2 // 2 * 2 + 1], data[:5 * lanes + 2]]
    streams += [bytes(b ^ (1 << bit) if i == at else b for i, b in enumerate(data))
                for at, bit in [(5 * lanes + 3, 2), (len(data) // 2, 7), (len(data) - 1, 0), (2, 5)]]
    for stream in streams:
        monkeypatch.setattr(rans, "_SCALAR_LANES", 1 << 20)
        scalar = _decoded(stream, lanes, batches)
        monkeypatch.setattr(rans, "_SCALAR_LANES", 0)
        vector = _decoded(stream, lanes, batches)
        assert scalar[1] == vector[1] and len(scalar[0]) == len(vector[0])
        for a, b in zip(*(scalar[0], vector[0])):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype == np.int64
    assert _decoded(data, lanes, batches)[1] is None


def rans_reference(freq, cum, lanes: int) -> bytes:
    """docs/FORMAT.md's rANS encoder, one symbol at a time with Python integers."""
    x = [rans.LOW] * lanes
    steps = []
    for start in range((len(freq) - 1) // lanes * lanes, -1, -lanes):
        words = []
        for lane in range(min(lanes, len(freq) - start)):
            f, c, s = int(freq[start + lane]), int(cum[start + lane]), x[lane]
            if s >= f << 24:
                words.append(s & 0xFFFF)
                s >>= 16
            x[lane] = (s // f << 16) + s % f + c
        steps.append(words)
    words = [w for step in reversed(steps) for w in step]
    return b"".join(s.to_bytes(5, "little") for s in x) + b"".join(w.to_bytes(2, "little") for w in words)


@pytest.mark.parametrize("lanes, n", [(1, 700), (4, 1001), (8, 8), (16, 65), (64, 1)])
def test_rans_encoder_matches_the_reference_across_blocks(monkeypatch, lanes, n):
    # blocks of 32 symbols: most streams span several, and the last step is short unless lanes divides n
    monkeypatch.setattr(rans, "_BLOCK_SYMBOLS", 32)
    rng = np.random.default_rng(n)
    freq, cum = rans.cdf_tables(rng.integers(0, 50, (5, 9)) ** 3 + 1)
    rows, sym = rng.integers(0, 5, n), rng.integers(0, 9, n)
    assert rans.encode(freq[rows, sym], cum[rows, sym], lanes) == rans_reference(freq[rows, sym], cum[rows, sym], lanes)


# --- corruption ---------------------------------------------------------------------------------------------

def decode_or_format_error(codec, payload: bytes, labels: np.ndarray, k: int) -> None:
    """A bad payload must raise FormatError, or decode to valid labels (then of the right shape, < k)."""
    try:
        out = codec.decode(payload, labels.shape[1], labels.shape[0], pal(k))
    except FormatError as exc:
        assert str(exc)
        return
    assert out.shape == labels.shape and out.dtype == np.uint16
    assert int(out.max(initial=0)) < k


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@pytest.mark.parametrize("k", [2, 17, 300])
def test_truncated_payloads(codec, k):
    labels = blobs(21, 26, k, seed=5)
    payload = codec.encode(labels, pal(k))
    for cut in sorted({0, 1, 2, 3, 5, 6, len(payload) // 2, len(payload) - 2, len(payload) - 1}):
        if 0 <= cut < len(payload):
            with pytest.raises(FormatError, match=r"payload"):
                codec.decode(payload[:cut], 26, 21, pal(k))


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
def test_trailing_junk(codec):
    labels = blobs(17, 13, 16, seed=6)
    payload = codec.encode(labels, pal(16))
    for junk in (b"\x00", b"\x00\x00", b"junk!!"):
        with pytest.raises(FormatError, match=r"trailing|unused|corrupt|odd|more"):
            codec.decode(payload + junk, 13, 17, pal(16))


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@pytest.mark.parametrize("k", [3, 64, 65536])
def test_bit_flips(codec, k):
    labels = blobs(23, 19, k, seed=7)
    payload = bytearray(codec.encode(labels, pal(k)))
    # ctx spends ~40 ms a decode even this small; tests/test_fuzz.py mutates files at large.
    flips = 41 if codec is ctx else 97
    for i in range(0, len(payload) * 8, max(1, len(payload) * 8 // flips)):
        bad = bytearray(payload)
        bad[i // 8] ^= 1 << (i % 8)
        decode_or_format_error(codec, bytes(bad), labels, k)


def test_ctx_errors_say_what():
    with pytest.raises(FormatError, match=r"ctx payload: empty"):
        ctx.decode(b"", 3, 3, pal(4))
    with pytest.raises(FormatError, match=r"lane count\) is 200"):
        ctx.decode(bytes([200]) + bytes(10), 3, 3, pal(4))
    with pytest.raises(FormatError, match=r"below the minimum"):
        ctx.decode(bytes(6), 3, 3, pal(4))
    with pytest.raises(FormatError, match=r"k = 1 needs an empty payload"):
        ctx.decode(b"\x00", 3, 3, pal(1))
    with pytest.raises(FormatError, match=r"odd number of bytes"):
        ctx.decode(bytes([0]) + (1 << 30).to_bytes(5, "little") + b"\x01", 3, 3, pal(4))


@pytest.mark.parametrize("k", [3, 300])
def test_ctx_random_payloads_decode_to_labels_below_k(k):
    # An escape is coded as a rank among the labels that remain, so even random bytes cannot name a label >= k.
    labels = np.full((4, 5), k - 1, np.uint16)
    good = ctx.encode(labels, pal(k))
    rng = np.random.default_rng(0)
    for _ in range(100):
        forged = good[:1] + rng.integers(0, 256, len(good) - 1, dtype=np.uint8).tobytes()
        decode_or_format_error(ctx, forged, labels, k)


def test_lzma_errors_say_what():
    with pytest.raises(FormatError, match=r"lzma payload: corrupt"):
        lzma_codec.decode(b"\xff" * 20, 4, 4, pal(16))
    too_short = lzma_codec.encode(np.zeros((2, 2), np.uint16), pal(16))
    with pytest.raises(FormatError, match=r"only 4 bytes, expected 6"):
        lzma_codec.decode(too_short, 3, 2, pal(16))
    with pytest.raises(FormatError, match=r"more bytes, expected 3"):
        lzma_codec.decode(too_short, 3, 1, pal(16))
    forged = lzma.compress(bytes([0, 1, 99]), format=lzma.FORMAT_RAW,
                           filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 4096}])
    with pytest.raises(FormatError, match=r"label 99 at pixel \(2, 0\) is not < k = 16"):
        lzma_codec.decode(forged, 3, 1, pal(16))


@pytest.mark.parametrize("codec", CODECS, ids=IDS)
@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=200), k=st.sampled_from([2, 16, 256, 257]),
       w=st.integers(1, 12), h=st.integers(1, 12))
def test_random_bytes_never_crash(codec, data, k, w, h):
    decode_or_format_error(codec, data, np.zeros((h, w), np.uint16), k)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(2, 300), w=st.integers(1, 20), h=st.integers(1, 20))
def test_fuzz_roundtrip(seed, k, w, h):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, (h, w)).astype(np.uint16)
    if seed % 2:
        labels = blobs(h, w, k, seed=seed % 1000)
    for codec in CODECS:
        roundtrip(codec, labels, k)


# --- the payload size bound (docs/FORMAT.md): checked before anything in proportion to the image -----------

def test_ctx_min_payload_bytes():
    assert ctx.min_payload_bytes(1, 0) == 6 and ctx.min_payload_bytes((1 << 20) + 1, 0) == 6
    assert ctx.min_payload_bytes((1 << 20) + 2, 0) == 8
    assert ctx.min_payload_bytes(178_956_970, 0) == 1 + 5 + 2 * (171 - 1)
    assert ctx.min_payload_bytes(178_956_970, 12) == 1 + 5 * 4096


def test_ctx_bound_asks_for_more_than_the_states_only_from_2_to_the_32_plus_2_pixels():
    # docs/FORMAT.md, "Payload size bound": with lg fixed by its formula, below that the states suffice.
    def extra(n):
        lg = ctx.lanes_log2(n)
        return ctx.min_payload_bytes(n, lg) - (1 + 5 * (1 << lg))
    below = [n for e in range(33) for n in ((1 << e) - 1, 1 << e, (1 << e) + 1)]
    assert [extra(n) for n in below + [2**32 + 1]] == [0] * (len(below) + 1)
    assert extra(2**32 + 2) == 2 and extra((2**31 - 1) ** 2) > 0


def test_ctx_refuses_a_forged_lane_count_before_allocating_the_image():
    # A valid 4x5 payload (lg = 0) declared for a huge image: one lane would mean one coder step per label.
    good = ctx.encode(np.full((4, 5), 3, np.uint16), pal(16))
    assert len(good) == 6  # lg = 0, one state, no word
    with pytest.raises(FormatError, match=r"ctx payload: byte 0 \(log2 of the lane count\) is 0, must be 12 "
                                          r"for 178956970 pixels"):
        ctx.decode(good, 178_956_970, 1, pal(16))
    with pytest.raises(FormatError, match=r"is 0, must be 9 for 2097153 pixels"):
        ctx.decode(good, 2_097_153, 1, pal(16))


def test_ctx_refuses_a_payload_too_short_for_the_image():
    # With the lane count right, the states alone already bound the labels; a short payload fails there.
    with pytest.raises(FormatError, match="ctx payload"):
        ctx.decode(bytes([12]) + bytes(100), 178_956_970, 1, pal(16))


@pytest.mark.parametrize("k, runs", [(16, False), (2, True)])
def test_ctx_the_cheapest_12mp_images_still_decode(k, runs):
    # The best case for the bound: a constant image (every symbol near probability 1), and k = 2 in long runs.
    labels = np.full((3000, 4000), k - 1, np.uint16)
    if runs:
        labels[:, 1000:3000] = 0
        labels[1500:] ^= 1
    payload = ctx.encode(labels, pal(k))
    assert len(payload) >= ctx.min_payload_bytes(labels.size, ctx.lanes_log2(labels.size))
    np.testing.assert_array_equal(ctx.decode(payload, 4000, 3000, pal(k)), labels)


def test_ctx_stage1_weights_are_the_counts_plus_the_base_rows_prior():
    # docs/FORMAT.md, "Weights": 4096·N1[r1][σ] + 32·(1 + ⌊4096·P[σ] / Psum⌋),
    # P = B[r1 mod 10400] + 1 if possible.
    # A pass numbers its rows as r1 with the kind left out and p as its place among the patterns that occur.
    model = ctx._Model(3, RED_BLUE[[0, 1, 0]] // np.array([[1, 1, 1], [1, 1, 1], [2, 2, 2]], np.uint8))
    base_row = (int(ctx._PAT_INDEX[33]) * 5 + 2) * 8 + 7  # p = 33: R = 2, so ranks 0, 1 and escape
    r1 = (2 * 4 + 3) * ctx._PASS_BASE_ROWS + base_row
    other = (1 * 4 + 0) * ctx._PASS_BASE_ROWS + base_row  # same base row
    model.learn_rank(1, *ctx._count(np.array([r1, r1, other, other, other]) * 5 + [1, 4, 0, 0, 1], ctx._PASS_KEYS))
    model.learn_rank(3, *ctx._count(np.array([r1]) * 5, ctx._PASS_KEYS))  # another kind of pass: its own counts
    w = model.rank_weights(1).make(np.array([r1]))[0]  # a diagonal pass
    p = [3, 3, 0, 0, 2]  # base counts + 1 where possible
    expected = [4096 * n + 32 * (1 + 4096 * pp // 8) if pp else 0 for n, pp in zip([0, 1, 0, 0, 1], p)]
    assert w.tolist() == expected
    np.testing.assert_array_equal(model.rank_weights(1).make(None)[r1], w)


@pytest.mark.parametrize("k", [2, 16, 300])
def test_ctx_payload_bounds_count_the_information_of_the_encoders_symbols(k):
    # payload_bounds sums each (row, symbol) pair's cost once per piece, times its count: the same total as
    # the encoder's symbols one by one.
    rng = np.random.default_rng(k)
    labels = np.repeat(rng.integers(0, k, (70, 9)), 11, axis=1)[:, :97].astype(np.uint16)
    labels[::7] = rng.integers(0, k, (10, 97))
    palette = rng.integers(0, 256, (k, 3)).astype(np.uint8)
    stream, cost = ctx._Stream(), ctx._Cost()
    ctx._encode_all(labels, palette, stream)
    ctx._encode_all(labels, palette, cost)
    freq = np.concatenate(stream.freqs).astype(np.int64)
    assert len(freq) > labels.size
    assert cost.short == (rans.M - freq).sum()
    assert cost.bits == pytest.approx((rans.SCALE_BITS - np.log2(freq)).sum(), rel=1e-12)


def test_ctx_pass_rows_number_every_pattern_equality_makes():
    # 4 labels fall into one of the 15 partitions; with the first pixel's pattern, 16 row blocks of a pass.
    patterns = {int(p) for p in ctx._PATTERNS}
    assert len(patterns) == 16 and ctx._NO_NB in patterns and 63 in patterns and 0 in patterns
    nb = np.array(list(itertools.product(range(4), repeat=4)), np.uint16).T
    cx = ctx._context(1, nb, [nb[0], nb[3]], ctx._Model(4, np.arange(12, dtype=np.uint8).reshape(4, 3)))
    assert set(cx.pattern.tolist()) == patterns - {ctx._NO_NB}
    assert cx.rows.dtype == np.uint16 and cx.rows.max() < ctx._PASS_ROWS


def test_ctx_activity_is_half_the_bit_length_of_the_spread_at_most_7():
    spread = np.arange(1 << 21, dtype=np.int32)  # up to 6 pairs of 4·255²
    expected = [min(7, int(s).bit_length() // 2) for s in spread[:20000]] + [7] * (len(spread) - 20000)
    assert ctx._at_least(spread, ctx._ACT_FROM).tolist() == expected
    assert ctx._at_least(np.arange(9, dtype=np.uint8) * 4 // 8, [1, 2]).tolist() == [0, 0, 1, 1, 2, 2, 2, 2, 2]


@pytest.mark.parametrize("k", [2, 16])
def test_ctx_activity_table_of_4_labels_is_the_6_distances_sum(k):
    rng = np.random.default_rng(k)
    model = ctx._Model(k, rng.integers(0, 256, (k, 3)).astype(np.uint8))
    nb = rng.integers(0, k, (4, ctx._ACT_TABLE_MIN)).astype(np.uint16)
    nb[:, :100] = nb[0, :100]  # all four equal: activity 0
    got = ctx._activity(model, nb)
    assert model.act_table is not None and got[:100].max() == 0
    np.testing.assert_array_equal(got, ctx._spread_activity(model, nb))


def test_ctx_neighbours_of_nothing_is_an_error_not_garbage():
    with pytest.raises(ValueError, match="no labels"):
        ctx._shifted(np.empty((0, 0), np.uint16), 1, 1, [(0, 0)])


def flat_blocks(height: int, width: int, k: int, seed: int = 0) -> np.ndarray:
    """Labels like a screenshot's or rdo's: flat blocks of 9 pixels, a few scattered labels. uint16 < k."""
    rng = np.random.default_rng(seed)
    labels = np.kron(rng.integers(0, k, (height // 9 + 1, width // 9 + 1)), np.ones((9, 9), np.int64))
    labels = labels[:height, :width]
    odd = rng.random((height, width)) < 0.03
    labels[odd] = rng.integers(0, k, int(odd.sum()))
    return labels.astype(np.uint16)


@pytest.mark.parametrize("k", [2, 7, 256, 257, 1000])
def test_ctx_flat_pixels_keyed_from_a_table_code_what_their_full_contexts_would(k, monkeypatch):
    # Where most of a pass's pixels have 4 main neighbours of one label, only the others get a full context;
    # the same payload and bounds as with every pixel's full context.
    labels, palette = flat_blocks(130, 211, k, seed=k), pal(k, seed=k)
    modelled = []
    context = ctx._context
    monkeypatch.setattr(ctx, "_context", lambda kind, nb, *a: modelled.append(nb.shape[1]) or context(kind, nb, *a))
    payload, bounds = ctx.encode(labels, palette), ctx.payload_bounds(labels, palette)
    assert max(modelled) < labels.size // 8  # (the finest passes hold 65 x 105 pixels each)
    monkeypatch.setattr(ctx, "_MIXED_MAX", -1.0)  # every pass fully modelled
    modelled.clear()
    assert ctx.encode(labels, palette) == payload and ctx.payload_bounds(labels, palette) == bounds
    assert max(modelled) >= labels.size // 8
    assert np.array_equal(ctx.decode(payload, 211, 130, palette), labels)


def test_ctx_encode_after_payload_bounds_codes_the_symbols_it_counted(monkeypatch):
    labels, palette = blobs(90, 70, 16), pal(16)
    fresh = ctx.encode(labels, palette)
    models = []
    encode_all = ctx._encode_all
    monkeypatch.setattr(ctx, "_encode_all", lambda *a: models.append(1) or encode_all(*a))
    ctx.payload_bounds(labels, palette)  # outside recording(): nothing kept
    assert ctx.encode(labels, palette) == fresh and len(models) == 2 and ctx._records() is None
    models.clear()
    with ctx.recording():
        _bounded_then_encoded(labels, palette, fresh, models, monkeypatch)
    assert ctx._records() is None  # dropped with the outermost recording()


def _bounded_then_encoded(labels, palette, fresh, models, monkeypatch):
    ctx.payload_bounds(labels, palette)
    assert ctx.encode(labels.copy(), palette.copy()) == fresh and len(models) == 1  # not modelled again
    # other labels or another palette are modelled, whatever was bounded last
    changed = labels.copy()
    changed[45, 35] = (changed[45, 35] + 1) % 16
    other = pal(16, seed=1)
    assert ctx.encode(changed, palette) != fresh and ctx.encode(labels, other) != fresh and len(models) == 3
    # the labels bounded are compared as they were, not as their array is now
    ctx.payload_bounds(changed, palette)
    expected = ctx.encode(labels, palette)
    changed[45, 35] = labels[45, 35]
    assert ctx.encode(changed, palette) == expected == fresh
    # a record larger than the memory allowed is not kept
    monkeypatch.setattr(ctx, "_RECORD_BYTES", 2 * labels.size)
    ctx._records().clear()
    models.clear()
    ctx.payload_bounds(labels, palette)
    assert ctx.encode(labels, palette) == fresh and len(models) == 2


def test_ctx_records_of_large_images_are_kept_their_labels_in_bytes(monkeypatch):
    # A target's search of a 3000x2250 image encodes labellings it sized (4 MP was the limit: each encoded
    # file was modelled again, 0.22 s); up to K = 256 the record keeps the labels as the encoder read them, in
    # bytes (a copy of its own), and the replay codes the same payload from the recorded keys themselves (no
    # copy but of batches smaller than their tables).
    labels, palette = flat_blocks(2300, 2000, 7), pal(7)
    fresh = ctx.encode(labels, palette)
    models, joined = [], []
    encode_all = ctx._encode_all
    monkeypatch.setattr(ctx, "_encode_all", lambda *a: models.append(1) or encode_all(*a))
    replay = ctx._Stream.replay
    monkeypatch.setattr(ctx._Stream, "replay", lambda self, calls: replay(self, calls) or joined.append(
        len(self.parts) == len(calls) and all(p[0] is c[0] or len(p[0]) < ctx._PASS_KEYS
                                              for p, c in zip(self.parts, calls))))
    with ctx.recording():
        bounds = ctx.payload_bounds(labels, palette)
        kept = ctx._records()[-1][1]
        assert kept.dtype == np.uint8 and np.array_equal(kept, labels) and not np.shares_memory(kept, labels)
        assert ctx.encode(labels, palette) == fresh and len(models) == 1 and joined == [True]
        labels[0, 0] = (labels[0, 0] + 1) % 7  # the record is of the labels as they were
        assert ctx.encode(labels, palette) != fresh and len(models) == 2
    assert bounds[0] <= len(fresh) <= bounds[1]


def test_ctx_records_are_kept_only_while_a_target_searches():
    # compress_to's search and rdo encode files they bounded; what they recorded is dropped when they return.
    rng = np.random.default_rng(3)
    image = np.repeat(np.repeat(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), 6, 0), 6, 1)
    recorded = []
    bounds = ctx.payload_bounds

    def spy(labels, palette):
        result = bounds(labels, palette)
        recorded.append(len(ctx._records() or []))
        return result

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ctx, "payload_bounds", spy)
        kmq.compress_to(image, max_bytes=600, codec="ctx")
        assert max(recorded) > 0 and ctx._records() is None
        recorded.clear()
        kmq.compress(image, 8, codec="ctx", rdo=30)
        assert max(recorded) > 0 and ctx._records() is None
        recorded.clear()
        ctx.payload_bounds(np.zeros((4, 4), np.uint16) + np.eye(4, dtype=np.uint16), np.zeros((2, 3), np.uint8))
        assert recorded == [0]  # outside them, nothing is kept


def test_ctx_records_belong_to_the_thread_that_records():
    # A library user's threads, one searching (recording) and one not: the other thread neither keeps records
    # nor replays the searching thread's, and the searching thread's depth is not disturbed by it.
    labels, palette = blobs(40, 30, 8), pal(8)
    fresh = ctx.encode(labels, palette)
    bounded, checked, seen = threading.Event(), threading.Event(), {}

    def search():
        with ctx.recording():
            ctx.payload_bounds(labels, palette)
            bounded.set()
            checked.wait(10)
            seen["mine"] = ctx._recorded(labels, palette) is not None
        seen["after"] = ctx._recorded(labels, palette) is not None

    worker = threading.Thread(target=search)
    worker.start()
    bounded.wait(10)
    seen["other"] = ctx._recorded(labels, palette) is not None
    ctx.payload_bounds(labels, palette)
    seen["replayed"] = ctx._recorded(labels, palette) is not None
    assert ctx.encode(labels, palette) == fresh
    checked.set()
    worker.join(10)
    assert seen == {"other": False, "replayed": False, "mine": True, "after": False}


@pytest.mark.parametrize("n", [1, 2400, 3000, 1 << 14, (1 << 14) + 1, 60000, 100000])  # (_SORT_MAX: both sides)
def test_ctx_count_gives_each_distinct_key_and_its_count_however_counted(n):
    rng = np.random.default_rng(n)
    keys = rng.integers(0, ctx._PASS_KEYS, n).astype(np.uint16)
    keys[: n // 2] = 1234  # a run, as a flat region's keys
    want_used, want_counts = np.unique(keys, return_counts=True)
    for batch in (keys, keys.astype(np.intp)):  # a pass's 16-bit keys, and escapes' (or the decoder's) wider ones
        used, counts = ctx._count(batch, ctx._PASS_KEYS)
        assert used.dtype == np.intp and used.tolist() == want_used.tolist() and counts.tolist() == want_counts.tolist()


@pytest.mark.parametrize("k", [2, 5, 64, 256])
def test_ctx_escape_context_excludes_the_candidates_a_plain_lookup_finds(k):
    # _escape_context picks each rank's candidate from the 4 neighbours by arithmetic and reads its position in
    # the reference's order as uint16: the same excluded positions (sorted, k where a rank is missing) as a
    # gather by the pattern's rank table from the int64 positions, and the same escape rows.
    rng = np.random.default_rng(k)
    palette = rng.integers(0, 256, (k, 3)).astype(np.uint8)
    model = ctx._Model(k, palette)
    m = 6000
    pool = rng.integers(0, k, (4, m))  # each pixel's neighbours from 4 labels: every pattern occurs
    nb = np.take_along_axis(pool, rng.integers(0, 4, (4, m)), axis=0).astype(np.uint16)
    pattern = ctx._pattern(nb)
    pattern[0] = ctx._NO_NB  # the first pixel's: no neighbours, no candidates
    act = rng.integers(0, ctx._N_ACT, m).astype(np.uint8)
    assert len(np.unique(pattern)) == (16 if k > 2 else 9)  # the 15 partitions of 4 neighbours (of 2 labels, 8), none
    ref = model._reference(nb)
    n_ranks = ctx._N_RANKS[pattern]
    cand = np.take_along_axis(nb, ctx._RANK_POS[pattern].T, axis=0).astype(np.int64)
    want = np.where(np.arange(4)[:, None] < n_ranks, model.pos[ref[None, :], cand], k)
    want.sort(axis=0)
    got_ref, got_ranks, excl, rows = model._escape_context(pattern, nb, act)
    assert excl.dtype == np.uint16 and excl.tolist() == want.tolist()
    assert got_ref.tolist() == ref.tolist() and got_ranks.tolist() == n_ranks.tolist()
    near = np.minimum(ctx._N_NEAR - 1, ctx._bit_length(want[0]))
    assert rows.tolist() == ((act.astype(np.int64) * ctx._N_NEAR + near) * 5 + n_ranks).tolist()


@pytest.mark.parametrize("k, channels", [(2, 1), (17, 3), (256, 4), (300, 3), (4096, 1)])
def test_ctx_flat_keys_are_no_palettes_own(monkeypatch, k, channels):
    # _flat_keys' table is kept for the process, made with the first model that asked: a flat pixel's keys (its 4
    # main neighbours of one label) must be the same whatever the palette and k (far or equal colours, both sides
    # of K = 256), as _context and _symbols make them for this model.
    rng = np.random.default_rng(k)
    for palette in (rng.integers(0, 256, (k, channels)), np.zeros((k, channels)), np.full((k, channels), 255)):
        palette[:2] = [[0], [255]] if palette[0, 0] else palette[:2]
        model = ctx._Model(k, palette.astype(np.uint8))
        for n_extra in (0, 4, 8):
            monkeypatch.setattr(ctx, "_FLAT_KEYS", {})
            own = ctx._flat_keys(model, n_extra)
            monkeypatch.setattr(ctx, "_FLAT_KEYS", {})
            canonical = ctx._flat_keys(ctx._Model(2, np.zeros((2, 1), np.uint8)), n_extra)
            assert own.tolist() == canonical.tolist()


@pytest.mark.parametrize("k", [2, 17, 64, 256])
def test_ctx_activity_and_apart_read_small_tables_of_the_palettes_own_pairs(k):
    # Spreads past the top activity bound (far colours: 6 pairs of up to 3·255² each) are clipped in a k x k
    # uint16 table: the activity and the distance class are still those of the exact distances.
    rng = np.random.default_rng(k)
    palette = rng.integers(0, 256, (k, 3)).astype(np.uint8)
    palette[0], palette[-1] = 0, 255
    model = ctx._Model(k, palette)
    assert model.act_d2.nbytes <= 2 * max(k, 16) ** 2 and model.apart_of.nbytes <= max(k, 16) ** 2
    nb = rng.integers(0, k, (4, 5000)).astype(np.uint8 if k <= 256 else np.uint16)
    nb[:, :50] = [[0], [k - 1], [0], [k - 1]]
    d2 = ((palette[:, None, :].astype(np.int64) - palette[None, :, :]) ** 2).sum(axis=2)
    spread = sum(d2[nb[i], nb[j]] for i, j in ctx._PAIRS)
    assert spread.max() > 65535
    want = np.array([min(7, int(s).bit_length() // 2) for s in spread])
    np.testing.assert_array_equal(ctx._spread_activity(model, nb), want)
    apart = np.array([min(ctx._N_DC - 1, int(d).bit_length() // ctx._DCS) for d in d2[nb[0], nb[1]]])
    np.testing.assert_array_equal(model.apart(nb[0], nb[1]), apart)


def test_ctx_counts_a_small_batch_by_a_sort_of_its_own(monkeypatch):
    # np.unique's own Python-level work was a tenth of a rdo sample's sizing (320 x 320, ~100 small pieces):
    # a small batch (of int64 escape keys too) is sorted and counted here, the same keys and counts.
    rng = np.random.default_rng(5)
    batches = [rng.integers(0, ctx._PASS_KEYS, n).astype(dtype) for n in (1, 7, 300) for dtype in (np.uint16, np.intp)]
    want = [np.unique(keys, return_counts=True) for keys in batches]
    monkeypatch.setattr(np, "unique", lambda *a, **kw: pytest.fail("np.unique called"))
    for keys, (used_want, counts_want) in zip(batches, want):
        used, counts = ctx._count(keys, ctx._PASS_KEYS)
        assert used.dtype == np.intp and used.tolist() == used_want.tolist() and counts.tolist() == counts_want.tolist()
    used, counts = ctx._count(np.zeros(0, np.intp), ctx._PASS_KEYS)
    assert len(used) == len(counts) == 0


@pytest.mark.parametrize("n_sym", [2, 5, 12])
def test_rans_tables_without_cum_have_the_same_frequencies(n_sym):
    # payload_bounds reads the frequencies alone: cdf_tables(cum=False) spares the cumulative sums, and rows
    # summed as products with ones (small tables) give the same numbers as numpy's reductions.
    rng = np.random.default_rng(n_sym)
    w = rng.integers(0, 1 << 36, (300, n_sym)) >> rng.integers(0, 37, (300, n_sym))
    w[:3] = [[0] * n_sym, [1] * n_sym, [5] + [0] * (n_sym - 1)]
    freq, cum = rans.cdf_tables(w)
    alone, none = rans.cdf_tables(w, cum=False)
    assert none is None
    np.testing.assert_array_equal(alone, freq)
    valid = w > 0
    total = np.maximum(w.sum(axis=1, keepdims=True), 1)
    want = (w * (rans.M - valid.sum(axis=1, keepdims=True))) // total + valid
    want[np.arange(len(w)), np.argmax(w, axis=1)] += rans.M - want.sum(axis=1)
    np.testing.assert_array_equal(freq, want)
    np.testing.assert_array_equal(cum[:, 1:], np.cumsum(want, axis=1))
    assert (cum[:, 0] == 0).all()


def test_ctx_pass_reads_its_main_and_extra_neighbours_from_one_padded_copy_of_a_grid():
    # A pass's main neighbours in a grid are views of the padded copy its extra ones are read from (the edge
    # is the nearest element however wide the padding): the same views as a copy of their own.
    rng = np.random.default_rng(3)
    grid = rng.integers(0, 9, (7, 5)).astype(np.uint8)
    extra = ctx._Extras(6, 4)
    main = extra.add(grid, [(-1, 0), (2, 1), (0, -1), (1, 2)], ((0, 0), (0, 1), (1, 0), (1, 1)))
    for got, want in zip(main, ctx._shifted(grid, 6, 4, [(0, 0), (0, 1), (1, 0), (1, 1)])):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(extra.views, ctx._shifted(grid, 6, 4, [(-1, 0), (2, 1), (0, -1), (1, 2)])):
        np.testing.assert_array_equal(got, want)
    r, c = np.array([0, 5, 3]), np.array([0, 3, 1])
    for got, view in zip(extra.at(r, c), extra.views):
        np.testing.assert_array_equal(got, view[r, c])


@pytest.mark.parametrize("piece", [7, 1000, 1 << 18])
def test_lzma_fed_in_pieces_is_the_one_call_stream(monkeypatch, piece):
    # Pieces let a Ctrl-C end a long encode between calls; the bytes must be those of one lzma.compress call.
    labels = np.repeat(np.random.default_rng(3).integers(0, 300, (37, 41)), 3, axis=1)
    monkeypatch.setattr(lzma_codec, "_PIECE", piece)
    for k in (256, 300):  # one byte a label, and two
        palette = np.zeros((k, 3), np.uint8)
        data = (labels % k).astype(np.uint8 if k <= 256 else "<u2").tobytes()
        filters = lzma_codec._filters(len(data), preset=9 | lzma.PRESET_EXTREME)
        assert lzma_codec.encode(labels % k, palette) == lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters)
        assert np.array_equal(lzma_codec.decode(lzma_codec.encode(labels % k, palette), 123, 37, palette), labels % k)
