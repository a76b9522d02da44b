import numpy as np
import pytest

from bitarray import bitarray
from bitarray.util import int2ba

from conftest import traced_peak
from kmq import bitpack


def test_three_bit_labels_by_hand():
    # 5, 1, 7 -> 101 001 111 -> 1010 0111 | 1000 0000
    assert bitpack.pack(np.array([5, 1, 7]), 3) == bytes([0xA7, 0x80])


@pytest.mark.parametrize("k, bits", [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (16, 4), (17, 5), (256, 8),
                                     (257, 9), (65536, 16)])
def test_bits_for(k, bits):
    assert bitpack.bits_for(k) == bits


@pytest.mark.parametrize("bits", range(17))
@pytest.mark.parametrize("count", [1, 3, 8, 13, 1000, (1 << 20) + 5])
def test_round_trip(bits, count):
    labels = np.random.default_rng(bits * 7 + count).integers(0, 1 << bits, count)
    packed = bitpack.pack(labels, bits)
    assert len(packed) == bitpack.packed_size(count, bits)
    unpacked, padding_is_zero = bitpack.unpack(packed, bits, count)
    assert padding_is_zero
    assert unpacked.dtype == np.uint16
    np.testing.assert_array_equal(unpacked, labels)


@pytest.mark.parametrize("bits", range(1, 17))
@pytest.mark.parametrize("count", [1, 5, 77])
def test_matches_a_bit_stream_built_label_by_label(bits, count):
    # An independent oracle for the spec's definition: each label's bits, MSB first, appended to one big-endian
    # bit stream, zero-padded to a whole byte. bitarray does the appending and padding.
    labels = np.random.default_rng(bits).integers(0, 1 << bits, count)
    stream = bitarray(endian="big")
    for value in labels.tolist():
        stream.extend(int2ba(value, length=bits, endian="big"))
    assert bitpack.pack(labels, bits) == stream.tobytes()


def test_unpack_reports_nonzero_padding():
    _, padding_is_zero = bitpack.unpack(bytes([0xA7, 0x81]), 3, 3)
    assert not padding_is_zero


def test_unpack_rejects_wrong_length():
    with pytest.raises(ValueError, match="expected 2 bytes, got 1"):
        bitpack.unpack(b"\xa7", 3, 3)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15])
@pytest.mark.parametrize("count", [1, 4, 23, 40, 41, 163])
def test_packed_a_chunk_of_groups_at_a_time_as_label_by_label(bits: int, count: int,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Words of labels (2 and 4 bits), uint64 groups (3, 5, 6, 7 bits) and 24-bit windows (9 to 15 bits), 5 at a
    # time so that chunks, a last short chunk and a last group of fewer labels all occur; uint16 labels from an
    # odd offset (unaligned words), int64 ones and a reversed view give the same bytes.
    monkeypatch.setattr(bitpack, "_CHUNK", 5)
    labels = np.random.default_rng(count * 17 + bits).integers(0, 1 << bits, count + 1)
    stream = bitarray(endian="big")
    for value in labels[1:].tolist():
        stream.extend(int2ba(value, length=bits, endian="big"))
    assert bitpack.pack(labels.astype(np.uint16)[1:], bits) == stream.tobytes()
    assert bitpack.pack(labels[1:], bits) == stream.tobytes()
    assert bitpack.pack(labels[::-1][:-1][::-1], bits) == stream.tobytes()


@pytest.mark.parametrize("bits", [9, 10, 12, 15])
def test_wide_labels_pack_without_whole_image_temporaries(bits: int) -> None:
    # 9 to 15 bits went through uint32 columns, windows and padded bytes of the whole image: 4.5-7.3x the
    # packed size at the peak (48 MP at K = 1024: ~370 MB on top of labels and result). A chunk at a time, the
    # peak is the result, its bytes and a chunk's buffers: 2.2-2.4x here.
    labels = np.random.default_rng(bits).integers(0, 1 << bits, 1 << 20).astype(np.uint16)
    packed, peak = traced_peak(lambda: bitpack.pack(labels, bits))
    assert peak < 3 * len(packed)


@pytest.mark.parametrize("bits", [3, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15])
@pytest.mark.parametrize("count", [1, 4, 23, 40, 41, 163])
def test_unpacked_a_chunk_of_groups_at_a_time(bits: int, count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # 5 groups at a time, so that whole chunks, a last short chunk and a last group of fewer labels all occur;
    # the bytes built label by label (bitarray), with a non-zero padding where the last byte has one.
    monkeypatch.setattr(bitpack, "_CHUNK", 5)
    labels = np.random.default_rng(count * 13 + bits).integers(0, 1 << bits, count)
    stream = bitarray(endian="big")
    for value in labels.tolist():
        stream.extend(int2ba(value, length=bits, endian="big"))
    unpacked, padding_is_zero = bitpack.unpack(stream.tobytes(), bits, count)
    assert padding_is_zero
    np.testing.assert_array_equal(unpacked, labels)
    if stream.padbits:  # the last padding bit set
        data = bytearray(stream.tobytes())
        data[-1] |= 1
        unpacked, padding_is_zero = bitpack.unpack(bytes(data), bits, count)
        assert not padding_is_zero
        np.testing.assert_array_equal(unpacked, labels)


@pytest.mark.parametrize("bits", [3, 6, 9, 10, 12, 15])
def test_labels_unpack_without_whole_image_temporaries(bits: int) -> None:
    # A padded copy of the bytes and uint32 windows of the whole image came to 2.3-6x the labels' own size at
    # the peak (48 MP at 10 bits: ~300 MB on top of the bytes and labels); a chunk at a time, the labels and a
    # chunk's buffers: 1.2-1.4x (and half the CPU: 12 MP at 10 bits 0.04 s against 0.08).
    count = 1 << 20
    packed = bitpack.pack(np.random.default_rng(bits).integers(0, 1 << bits, count), bits)
    (labels, _), peak = traced_peak(lambda: bitpack.unpack(packed, bits, count))
    assert peak < 1.5 * labels.nbytes
