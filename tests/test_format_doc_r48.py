"""docs/FORMAT.md's round-48 clarifications (from an independent decoder written from the spec alone), each
checked against the reader: a rule quoted from the page is the rule kmq enforces."""
import json
import lzma
import re
import struct
import warnings
import zlib

import numpy as np
import pytest

from kmq import ChecksumError, FormatError, KmqImage, compress
from kmq.format import parse_header
from test_format import FORMAT_MD, reforge, tiny, with_metadata

DOC = FORMAT_MD.read_text()


def table_keys() -> list[str]:
    table = DOC.split("| key | value | meaning | written by |")[1].split("\n\n")[0]
    return re.findall(r"^\| `(\w+)` \|", table, re.M)


def reads(meta: str) -> bool:
    try:
        KmqImage.from_bytes(with_metadata(meta.encode()))
    except FormatError:
        return False
    return True


def test_every_key_of_the_table_may_be_null_but_not_inside_target_or_palette_source():
    assert "every key below may be `null`" in DOC
    assert len(table_keys()) == 8
    for key in table_keys():
        assert reads(json.dumps({key: None})), key
    assert '`{"target": {"psnr": null}}` breaks the rule' in DOC
    for inner in ('{"target":{"psnr":null}}', '{"target":{"max_bytes":null}}',
                  '{"palette_source":{"name":null,"sha256":"ab"}}', '{"palette_source":{"name":"a","sha256":null}}'):
        assert not reads(inner), inner


def test_a_number_is_refused_when_it_rounds_to_infinity_and_integers_count_for_the_keyed_numbers():
    assert "`1.7976931348623159e308`" in DOC and "`1.7976931348623158e308` reads" in DOC
    assert not reads('{"x":1.7976931348623159e308}') and not reads('{"x":-1.7976931348623159e308}')
    assert reads('{"distortion":1.7976931348623158e308}')
    # The integer halfway between the largest double and 2**1024 rounds (to even) to infinity; one less does not.
    assert reads(f'{{"distortion":{2**1024 - 2**970 - 1}}}')
    assert not reads(f'{{"distortion":{2**1024 - 2**970}}}')
    assert "1 and 400 zeros breaks the rule" in DOC
    big = "1" + "0" * 400
    for meta in (f'{{"distortion":{big}}}', f'{{"tol":{big}}}', f'{{"rdo":{big}}}', f'{{"target":{{"psnr":{big}}}}}'):
        assert not reads(meta), meta
    assert reads(f'{{"x":{big}}}') and reads(f'{{"seed":{big}}}')


def test_palette_source_needs_both_of_its_keys():
    assert "a string `name` and a string `sha256`, both required" in DOC
    assert reads('{"palette_source":{"name":"a","sha256":"ab"}}')
    assert not reads('{"palette_source":{"name":"a"}}') and not reads('{"palette_source":{"sha256":"ab"}}')


def lzma_k1(payload: bytes, n: int = 3) -> bytes:
    body = struct.pack("<4sBBBBIIIIQ", b"\x89KMQ", 1, 1, 1, 0, n, 1, 1, 0, len(payload)) + b"\x07" + payload
    return body + struct.pack("<I", zlib.crc32(body))


def test_lzma_at_k_1_is_the_stream_of_n_zero_bytes_never_empty():
    assert "At k = 1 too: the stream of `n` zero bytes" in DOC
    img = KmqImage(np.array([[7]], np.uint8), np.zeros((1, 3), np.uint16), codec="lzma")
    data = img.to_bytes()
    payload = data[32 + 1:-4]
    assert lzma.decompress(payload, lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}]) == bytes(3)
    assert KmqImage.from_bytes(lzma_k1(payload)) == img
    with pytest.raises(FormatError, match="stream decodes to only 0 bytes"):
        KmqImage.from_bytes(lzma_k1(b""))


def test_bits_follow_the_stored_k_not_the_k_asked():
    assert "ceil(log2 `k`) (the stored k" in DOC
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "only 2 distinct colours, fewer than k=16"
        data = compress(np.array([[[255, 0, 0], [0, 0, 255], [255, 0, 0]]], np.uint8), k=16).to_bytes()
    assert data[16] == 2 and data[7] == 1


def test_the_version_is_read_from_the_5th_byte_on():
    assert "its 5th byte (offset 4)" in DOC
    with pytest.raises(FormatError, match="truncated header"):
        parse_header(b"\x89KMQ")
    with pytest.raises(FormatError, match="unsupported .kmq version 2"):
        parse_header(b"\x89KMQ\x02")


@pytest.mark.parametrize("first, second", [
    (("channels", 5, "<B", 2), ("codec", 6, "<B", 9)),
    (("codec", 6, "<B", 9), ("width", 8, "<I", 0)),
    (("k", 16, "<I", 0), ("bits", 7, "<B", 5)),
    (("bits", 7, "<B", 5), ("meta_len", 20, "<I", 70000)),
    (("pixel limit", 12, "<I", 2**31 - 1), ("payload_len", 24, "<Q", 2**64 - 1)),
])
def test_kmq_reports_the_first_fault_in_the_documented_order(first, second):
    order = re.search(r"kmq checks in this order: (.*?)\. Whether", DOC, re.S).group(1)
    assert order.index(first[0]) < order.index(second[0])
    data = tiny().to_bytes()
    for _, offset, fmt, value in (first, second):
        data = reforge(data, offset, fmt, value)
    with pytest.raises(FormatError, match="limit" if first[0] == "pixel limit" else first[0]):
        parse_header(data)


def test_the_crc_is_checked_before_the_metadata_and_raw_s_exact_length():
    assert "the CRC, the metadata, then the payload (raw's exact length included)" in " ".join(DOC.split())
    data = tiny().to_bytes()
    body = bytearray(data[:-4])
    struct.pack_into("<Q", body, 24, 2)  # raw needs 1 byte; the file is sized for 2, and its CRC is wrong
    with pytest.raises(ChecksumError):
        KmqImage.from_bytes(bytes(body) + b"\x00" + bytes(4))
    bad_meta = with_metadata(b'{"seed":-1}')
    with pytest.raises(ChecksumError):
        KmqImage.from_bytes(bad_meta[:-4] + bytes(4))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_palette_ties_are_in_increasing_colour_order(channels):
    assert "ties by colour in increasing order, channel by channel" in DOC
    colours = np.array([[200, 10, 10, 255], [10, 200, 10, 255], [10, 10, 200, 255], [10, 10, 10, 128]],
                       np.uint8)[:, :channels]
    colours = np.unique(colours, axis=0)
    pixels = np.random.default_rng(0).permutation(np.repeat(colours, 5, axis=0))  # 5 pixels each: all tie
    pixels = pixels.reshape(1, -1) if channels == 1 else pixels.reshape(1, -1, channels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        palette = compress(pixels, k=len(colours) + 1).palette
    assert [tuple(c) for c in palette] == sorted(tuple(c) for c in colours)
