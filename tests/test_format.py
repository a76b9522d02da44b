import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from kmq import ChecksumError, FormatError, KmqImage, compress
from kmq.format import HEADER_SIZE

FORMAT_MD = Path(__file__).resolve().parent.parent / "docs" / "FORMAT.md"


def tiny() -> KmqImage:
    """The spec's example: 3x1 RGB red, blue, red at K = 2."""
    return compress(np.array([[[255, 0, 0], [0, 0, 255], [255, 0, 0]]], np.uint8), k=2)


def documented_dump() -> bytes:
    """The bytes of the hex dump in docs/FORMAT.md, so the spec and the code cannot drift apart."""
    block = re.search(r"## A tiny file.*?```\n(.*?)```", FORMAT_MD.read_text(), re.S).group(1)
    hex_bytes = [re.sub(r"\|.*", "", line)[10:] for line in block.splitlines()]
    return bytes.fromhex(" ".join(hex_bytes))


def test_tiny_file_matches_the_spec_hex_dump():
    img = tiny()
    np.testing.assert_array_equal(img.palette, [[255, 0, 0], [0, 0, 255]])
    np.testing.assert_array_equal(img.labels, [[0, 1, 0]])
    assert img.to_bytes() == documented_dump()
    assert len(documented_dump()) == 70


def reforge(data: bytes, offset: int, fmt: str, value) -> bytes:
    """Overwrite one header field and fix the CRC, so only the field itself is wrong."""
    body = bytearray(data[:-4])
    struct.pack_into(fmt, body, offset, value)
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def random_image(bits: int, width: int, height: int, channels: int, seed: int = 0) -> KmqImage:
    rng = np.random.default_rng(seed)
    k = 1 if bits == 0 else (1 << (bits - 1)) + 1 + int(rng.integers(0, 1 << (bits - 1)))
    palette = rng.integers(0, 256, (k, channels), dtype=np.uint8)
    labels = rng.integers(0, k, (height, width)).astype(np.uint16)
    labels.flat[0] = k - 1  # the largest label is always exercised
    return KmqImage(palette, labels, {"distortion": 1.5, "seed": seed})


@pytest.mark.parametrize("bits", range(17))
@pytest.mark.parametrize("width, height", [(1, 1), (3, 5), (7, 3), (17, 2)])
def test_round_trip_every_bit_width(bits, width, height):
    img = random_image(bits, width, height, channels=3, seed=bits)
    assert img.bits_per_label == bits
    data = img.to_bytes()
    back = KmqImage.from_bytes(data)
    assert back == img
    assert back.labels.dtype == np.uint16 and back.palette.dtype == np.uint8
    # header + palette + metadata + labels + crc; labels end mid-byte for these sizes unless bits*w*h % 8 == 0
    meta = len(b'{"distortion":1.5,"seed":%d}' % bits)
    assert len(data) == HEADER_SIZE + img.k * 3 + meta + (width * height * bits + 7) // 8 + 4


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_round_trip_every_channel_count(channels):
    img = random_image(5, 9, 4, channels)
    assert KmqImage.from_bytes(img.to_bytes()) == img
    assert img.decode().shape == ((4, 9) if channels == 1 else (4, 9, channels))


def test_k_65536():
    img = random_image(16, 300, 2, 3)
    img = KmqImage(np.zeros((65536, 3), np.uint8), img.labels)
    assert KmqImage.from_bytes(img.to_bytes()) == img


def test_no_metadata_reads_as_unknown():
    img = KmqImage(np.zeros((1, 3), np.uint8), np.zeros((2, 2), np.uint16))
    back = KmqImage.from_bytes(img.to_bytes())
    assert back.distortion is None and back.seed is None


def test_no_metadata_is_written_as_none_and_read_back_alike():
    # meta_len = 0: a file without metadata, read and written again, is the same bytes (it was 2 bytes more,
    # "{}", so `kmq stats --codec all` reported a raw size the file did not have).
    img = KmqImage(np.zeros((1, 3), np.uint8), np.zeros((2, 2), np.uint16))
    data = img.to_bytes()
    assert struct.unpack_from("<I", data, 20) == (0,)
    assert len(data) == HEADER_SIZE + 3 + 0 + 4 == img.overhead()
    assert KmqImage.from_bytes(data).to_bytes() == data


# ---- corrupted files -------------------------------------------------------------------------------------

@pytest.fixture
def good() -> bytes:
    return random_image(4, 10, 7, 3).to_bytes()


def test_empty():
    with pytest.raises(FormatError, match="empty file"):
        KmqImage.from_bytes(b"")


def test_bad_magic():
    with pytest.raises(FormatError, match=r"not a \.kmq file: bad magic 6a 75 6e 6b"):
        KmqImage.from_bytes(b"junk")


@pytest.mark.parametrize("cut", [1, 3, 4, 20, 31])
def test_truncated_header(good, cut):
    with pytest.raises(FormatError, match=f"truncated header: expected 32 bytes, got {cut}"):
        KmqImage.from_bytes(good[:cut])


@pytest.mark.parametrize("cut", [5, 20, 31, None])
def test_another_version_is_named_before_the_header_is_complete(good, cut):
    # A later version's header need not be 32 bytes: from byte 4 on, the version is what is reported.
    with pytest.raises(FormatError, match=r"^unsupported \.kmq version 2 \(this kmq reads version 1\)$"):
        KmqImage.from_bytes((good[:4] + b"\x02" + good[5:])[:cut])


@pytest.mark.parametrize("missing", [1, 4, 5, 20, 40])
def test_truncated_file(good, missing):
    message = rf"truncated file: expected {len(good)} bytes \(.*\), got {len(good) - missing}$"
    with pytest.raises(FormatError, match=message):
        KmqImage.from_bytes(good[:-missing])


def test_trailing_bytes(good):
    with pytest.raises(FormatError, match=rf"trailing bytes: expected {len(good)} bytes \(.*\), got {len(good) + 3}$"):
        KmqImage.from_bytes(good + b"abc")


@pytest.mark.parametrize("position", [32, 40, 60, -40, -5, -1])
def test_bit_flip_is_a_checksum_error(good, position):
    flipped = bytearray(good)
    flipped[position] ^= 0x10
    with pytest.raises(ChecksumError, match=r"checksum mismatch: stored 0x[0-9A-F]{8}, computed 0x[0-9A-F]{8}"):
        KmqImage.from_bytes(bytes(flipped))


@pytest.mark.parametrize("offset, fmt, value, message", [
    (4, "<B", 2, r"unsupported \.kmq version 2 \(this kmq reads version 1\)"),
    (5, "<B", 2, "header: channels is 2, must be 1, 3 or 4"),
    (6, "<B", 99, "unknown codec 99"),
    (7, "<B", 5, "header: bits is 5, must be 4 for k="),
    (8, "<I", 0, "header: width is 0, must be 1 to"),
    (12, "<I", 0, "header: height is 0, must be 1 to"),
    (16, "<I", 70000, "header: k is 70000, must be 1 to 65536"),
    (20, "<I", 70000, "header: meta_len is 70000, must be 0 to 65535"),
    (8, "<I", 100000, r"image of 100000x7 = 700000 pixels exceeds the limit of 1000 pixels"),
    (24, "<Q", 2**63, r"header: payload_len is 9223372036854775808, must be 0 to 65816"),
    (24, "<Q", 65816, r"truncated file: expected \d+ bytes"),
    # a damaged size field reads as truncation (sizes come before the checksum): the message shows whose size
    (20, "<I", 3, r"trailing bytes: expected 119 bytes \(header 32 \+ palette 45 \+ metadata 3 \+ payload 35 "
                  r"\+ checksum 4\), got 143$"),
    (8, "<I", 11, r"raw labels: expected 39 bytes for 11x7 at 4 bits, got 35"),
])
def test_forged_header_fields(good, offset, fmt, value, message):
    limit = 1000 if "limit" in message else 10**9
    with pytest.raises(FormatError, match=message):
        KmqImage.from_bytes(reforge(good, offset, fmt, value), max_pixels=limit)


def test_label_out_of_range():
    img = KmqImage(np.zeros((3, 3), np.uint8), np.array([[0, 1, 2, 2]], np.uint16))
    data = bytearray(img.to_bytes())
    data[-5] = 0b00011100  # labels 0, 1, 3, 0: 3 is not < k = 3
    data[-4:] = struct.pack("<I", zlib.crc32(data[:-4]))
    with pytest.raises(FormatError, match=r"^raw payload: label 3 at pixel \(2, 0\) is not < k = 3$"):
        KmqImage.from_bytes(bytes(data))


def test_nonzero_padding():
    img = KmqImage(np.zeros((2, 1), np.uint8), np.array([[0, 1, 0]], np.uint16))
    data = bytearray(img.to_bytes())
    data[-5] |= 0x01
    data[-4:] = struct.pack("<I", zlib.crc32(data[:-4]))
    with pytest.raises(FormatError, match="raw labels: non-zero padding bits in the last byte"):
        KmqImage.from_bytes(bytes(data))


def _nested(depth: int) -> list:
    """An empty list inside depth - 1 others: depth levels of JSON arrays."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def with_metadata(meta: bytes) -> bytes:
    """A valid 1x1 grey file whose metadata is exactly `meta`."""
    body = struct.pack("<4sBBBBIIIIQ", b"\x89KMQ", 1, 1, 0, 0, 1, 1, 1, len(meta), 0) + b"\x00" + meta
    return body + struct.pack("<I", zlib.crc32(body))


_UNTERMINATED = (r"metadata is not valid JSON: Unterminated string starting at byte 5 of the metadata "
                 r"\(file offset 38\)$")


@pytest.mark.parametrize("meta, message", [
    (b'{"x":"\xff\xfe"}', r"metadata is not UTF-8: byte 0xff at byte 6 of the metadata \(file offset 39; invalid "
                          r"start byte\)$"),
    # json's own words for these name Python (utf-8-sig, sys.set_int_max_str_digits): kmq says what is wrong
    (b"\xef\xbb\xbf{}", r"metadata is not UTF-8 JSON: it starts with a byte-order mark \(ef bb bf\)$"),
    (b'{"seed":0', r"metadata is not valid JSON: Expecting ',' delimiter at byte 9 of the metadata \(file offset "
                   r"42\)$"),
    (b'{"x":"a\tb"}', r"metadata is not valid JSON: Invalid control character at byte 7 of the metadata \(file "
                     r"offset 40\)$"),
    # bytes, as a hex dump shows them, not json's characters (6 here)
    ('{"x":"é"'.encode(), r"metadata is not valid JSON: Expecting ',' delimiter at byte 9 of the metadata"),
    (b'{"seed":' + b"1" * 4301 + b"}",
     r"metadata is not strict JSON: an integer of 4,301 digits \(at most 4,300\)$"),
    (b'{"x":-' + b"1" * 4301 + b"}", r"metadata is not strict JSON: an integer of 4,301 digits \(at most 4,300\)$"),
    (b"[1,2]", "metadata must be a JSON object, got list"),
    (b'"distortion"', "metadata must be a JSON object, got str"),
    (b"null", "metadata must be a JSON object, got NoneType"),
    # Python's json reads these; RFC 8259 does not, so neither does kmq, in any key, at any depth.
    (b'{"distortion":NaN}', "metadata is not strict JSON: NaN is not a JSON number"),
    (b'{"x":[1,{"y":Infinity}]}', "metadata is not strict JSON: Infinity is not a JSON number"),
    (b'{"x":-Infinity}', "metadata is not strict JSON: -Infinity is not a JSON number"),
    (b'{"x":1e999}', "metadata is not strict JSON: number 1e999 is out of the range of a double"),
    (b'{"seed":1,"seed":2}', 'metadata is not strict JSON: duplicate key "seed"'),
    (b'{"x":{"a":1,"a":1}}', 'metadata is not strict JSON: duplicate key "a"'),
    (b'{"distortion":-0.5}', r"metadata: distortion must be a finite number >= 0, got -0\.5"),
    (b'{"distortion":"1.5"}', 'metadata: distortion must be a finite number >= 0, got "1.5"'),
    (b'{"distortion":true}', "metadata: distortion must be a finite number >= 0, got true"),
    (b'{"distortion":[1]}', r"metadata: distortion must be a finite number >= 0, got \[1\]"),
    (b'{"seed":-1}', "metadata: seed must be an integer >= 0, got -1"),
    (b'{"seed":2.0}', r"metadata: seed must be an integer >= 0, got 2\.0"),
    (b'{"seed":1e3}', r"metadata: seed must be an integer >= 0, got 1000\.0"),
    (b'{"seed":"7"}', 'metadata: seed must be an integer >= 0, got "7"'),
    (b'{"seed":false}', "metadata: seed must be an integer >= 0, got false"),
    (b'{"max_iter":0}', "metadata: max_iter must be an integer >= 1, got 0"),
    (b'{"max_iter":5.0}', r"metadata: max_iter must be an integer >= 1, got 5\.0"),
    (b'{"tol":-1e-3}', r"metadata: tol must be a finite number >= 0, got -0\.001"),
    (b'{"palette_source":{"name":"a"}}', r'metadata: palette_source must be \{"name": a string, "sha256": a '
                                         r'string\}, got \{"name": "a"\}$'),
    (b'{"target":{"psnr":30,"x":1}}', "metadata: target must be"),
    # Depth is counted before parsing (FORMAT.md: at most 64), so every caller gets the same answer: the CLI's
    # deeper call stack used to make Python's parser give up near 985 levels where the API read 990.
    (b'{"x":' + b"[" * 64 + b"]" * 64 + b"}", r"metadata nests 65 levels deep \(at most 64\)$"),
    (b'{"x":' + b"[" * 990 + b"]" * 990 + b"}", r"metadata nests 991 levels deep \(at most 64\)$"),
    # An unclosed string's brackets are not nesting, and 64 KiB of escaped quotes in one is read in one pass
    # (searched again from each quote, it took 12 s).
    (b'{"x":"' + b"[" * 70, _UNTERMINATED),
    (b'{"x":"' + b'\\"' * 32764, _UNTERMINATED),
])
def test_bad_metadata(meta, message):
    with pytest.raises(FormatError, match=f"^{message}"):
        KmqImage.from_bytes(with_metadata(meta))


@pytest.mark.parametrize("meta, expected", [
    (b"{}", {}),
    (b'{"distortion":null,"seed":null}', {"distortion": None, "seed": None}),
    (b'{"distortion":0,"seed":18446744073709551616}', {"distortion": 0, "seed": 2**64}),
    # A file that reads today always will (FORMAT.md), so these stay readable: other keys in palette_source, a
    # hash kmq would not write, a number that rounds to 0.
    (b'{"palette_source":{"name":"p.gpl","sha256":"ab","by":"x"},"x":1e-400}',
     {"palette_source": {"name": "p.gpl", "sha256": "ab", "by": "x"}, "x": 0.0}),
    (b' {"distortion":1e308, "x":[null,true,"\\u00e9",-1.5e-300,{"y":{}}]} ', {"distortion": 1e308, "x": [
        None, True, "\u00e9", -1.5e-300, {"y": {}}]}),
    # 64 deep is allowed; brackets within strings (an escaped quote among them) are not nesting.
    (b'{"x":' + b"[" * 63 + b"]" * 63 + b"}", {"x": _nested(63)}),
    (b'{"x":"[[\\"{{","y":[]}', {"x": '[["{{', "y": []}),
    # A lone surrogate is not Unicode: kmq no longer writes one, but files written before still read.
    (b'{"palette_source":{"name":"bad\\udcffname.txt","sha256":"ab"}}',
     {"palette_source": {"name": "bad\udcffname.txt", "sha256": "ab"}}),
])
def test_valid_metadata(meta, expected):
    img = KmqImage.from_bytes(with_metadata(meta))
    assert img.metadata == expected
    assert img.distortion == (None if expected.get("distortion") is None else float(expected["distortion"]))
    assert img.seed == expected.get("seed")


@pytest.mark.parametrize("metadata, message", [
    ({"seed": -1}, "metadata: seed must be an integer >= 0, got -1"),
    ({"distortion": float("inf")}, r"^metadata: distortion is inf, not a JSON number$"),
    ({"x": float("nan")}, r"^metadata: x is nan, not a JSON number$"),
    ({"x": [1, {"y": float("-inf")}]}, r'^metadata: x\[1\]\["y"\] is -inf, not a JSON number$'),
    ({1: 2}, r"^metadata: key 1 is not a string, as JSON keys are$"),
    ({"a": {2: 3}}, r"^metadata: key 2 in a is not a string, as JSON keys are$"),
    ({"x": 10 ** 4300}, r"^metadata: x is an integer of more than 4,300 digits$"),
    ({"x": np.datetime64("2020")}, r"^metadata: x is datetime64, not a JSON value$"),  # (np.int64: written, round 45)
    ({"x": _nested(64)}, r"^metadata: x nests deeper than 64 levels$"),
    ({"a[0]": [_nested(63)]}, r"^metadata: a\[0\] nests deeper than 64 levels$"),
    ({"": {"b": _nested(63)}}, r'^metadata: "" nests deeper than 64 levels$'),
    ({"x": ["a", "b\udcff"]}, r'^metadata: x\[1\] is not valid Unicode \(a lone surrogate\): "b\\\\xff"$'),
    ({"b\udcff": 1}, r'^metadata: key "b\\\\xff" is not valid Unicode$'),
])
def test_kmq_never_writes_metadata_it_would_not_read(metadata, message):
    with pytest.raises(ValueError, match=message):
        KmqImage(np.zeros((1, 1), np.uint8), np.zeros((1, 1), np.uint16), metadata).to_bytes()


def test_invalid_images_are_refused_at_construction():
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        KmqImage(np.zeros((2, 3), np.uint8), np.array([[0, 2]]))
    with pytest.raises(ValueError, match="palette must be"):
        KmqImage(np.zeros((2, 2), np.uint8), np.array([[0, 1]]))
    with pytest.raises(ValueError, match="unknown codec 'zip'"):
        KmqImage(np.zeros((2, 3), np.uint8), np.array([[0, 1]]), codec="zip")


@pytest.mark.parametrize("meta, message", [
    (b'{"rdo":-1}', r"metadata: rdo must be a finite number >= 0, got -1"),
    (b'{"rdo":"2"}', r'metadata: rdo must be a finite number >= 0, got "2"'),
    (b'{"target":{"psnr":0}}', r"metadata: target must be"),
    (b'{"target":{"max_bytes":1.5}}', r"metadata: target must be"),
    (b'{"target":{"psnr":30,"max_bytes":9}}', r"metadata: target must be"),
    (b'{"target":[30]}', r"metadata: target must be"),
    (b'{"palette_source":{"name":"p.gpl"}}', r"metadata: palette_source must be"),
    (b'{"palette_source":"p.gpl"}', r"metadata: palette_source must be"),
    (b'{"dither":"atkinson"}', r'metadata: dither must be "fs", got "atkinson"'),
])
def test_bad_values_of_the_newer_keys(meta, message):
    with pytest.raises(FormatError, match=f"^{message}"):
        KmqImage.from_bytes(with_metadata(meta))


def test_the_newer_keys_read_back():
    meta = (b'{"dither":"fs","palette_source":{"name":"p.gpl","sha256":"ab"},"rdo":2.5,'
            b'"target":{"max_bytes":5000}}')
    img = KmqImage.from_bytes(with_metadata(meta))
    assert img.metadata == {"dither": "fs", "palette_source": {"name": "p.gpl", "sha256": "ab"}, "rdo": 2.5,
                            "target": {"max_bytes": 5000}}


def test_max_iter_and_tol_recorded_only_when_not_the_defaults():
    # Without them a file made with --max-iter 1 could not be made again from what it records.
    import kmq

    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert kmq.compress(pixels, 4).metadata.keys() == {"distortion", "seed"}
    img = kmq.compress(pixels, 4, max_iter=1, tol=0.0)
    assert (img.metadata["max_iter"], img.metadata["tol"]) == (1, 0.0)
    assert KmqImage.from_bytes(img.to_bytes()) == img
    assert kmq.compress(pixels, 4, max_iter=img.metadata["max_iter"], tol=img.metadata["tol"]) == img


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -1.0, "0.1", True])
def test_a_tol_no_file_could_record_is_refused_before_the_fit(bad):
    import kmq

    with pytest.raises(ValueError, match="^tol must be a finite number >= 0, got "):
        kmq.compress(np.zeros((2, 3, 3), np.uint8), 1, tol=bad)


@pytest.mark.parametrize("bad", [2.5, 0, True])
def test_max_iter_must_be_a_whole_number(bad):
    import kmq

    with pytest.raises(ValueError, match="^max_iter must be an integer of at least 1, got "):
        kmq.compress(np.zeros((2, 3, 3), np.uint8), 1, max_iter=bad)


def test_a_kept_payload_serves_only_the_labels_palette_and_codec_it_was_encoded_from():
    labels = np.arange(48, dtype=np.uint16).reshape(6, 8) % 5
    palette = np.arange(15, dtype=np.uint8).reshape(5, 3)

    def kept() -> KmqImage:
        img = KmqImage(palette.copy(), labels.copy(), {"seed": 0}, "ctx")
        img.payload(keep=True)
        return img

    def fresh(img: KmqImage) -> bytes:
        return KmqImage(img.palette.copy(), img.labels.copy(), dict(img.metadata), img.codec).to_bytes()

    other = KmqImage(palette, labels.copy(), {"seed": 1}, "ctx")
    other.keep_payload_of(kept())
    assert other.to_bytes() == fresh(other)
    # edited in place, given another palette or codec: encoded again, never the kept payload
    img = kept()
    img.labels[2, 3] = 4
    assert img.to_bytes() == fresh(img)
    img = kept()
    img.palette = palette[::-1].copy()
    assert img.to_bytes() == fresh(img)
    img = kept()
    img.codec = "lzma"
    assert img.to_bytes() == fresh(img)
    # a kept payload of other labels is not taken
    third = KmqImage(palette, labels[::-1].copy(), {}, "ctx")
    third.keep_payload_of(kept())
    assert third.to_bytes() == fresh(third)
