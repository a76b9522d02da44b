"""`import kmq` makes .kmq a Pillow format: Image.open reads it as `kmq decompress` writes it, im.save writes it."""
import collections
import io
import random
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFile, UnidentifiedImageError

import kmq
from kmq.cli import main
from kmq.format import HEADER_FIELDS, HEADER_SIZE, MAGIC

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import fuzz  # noqa: E402


def stored(channels: int, k: int, codec: str, seed: int = 0, alpha: list[int] | None = None) -> kmq.KmqImage:
    """A 23x17 image of k random colours (every one used) with metadata, as kmq would write it."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (k, channels), dtype=np.uint8)
    if alpha is not None:
        palette[:, 3] = alpha
    labels = rng.integers(0, k, (17, 23)).astype(np.uint16)
    labels.flat[:k] = np.arange(k)
    return kmq.KmqImage(palette, labels, {"distortion": 1.5, "seed": 7, "note": "kept"}, codec)


def fix_crc(data: bytes | bytearray) -> bytes:
    return bytes(data[:-4]) + struct.pack("<I", zlib.crc32(bytes(data[:-4])))


@pytest.mark.parametrize("codec", ["raw", "lzma", "ctx"])
@pytest.mark.parametrize("channels, k, mode, alpha", [
    (1, 5, "L", None), (3, 5, "P", None), (4, 5, "P", None), (3, 1, "P", None), (1, 300, "L", None),
    (3, 300, "RGB", None), (4, 300, "RGBA", None),
    (4, 3, "P", [255, 255, 255]), (4, 3, "P", [255, 0, 255]), (4, 3, "P", [0, 0, 255])])
def test_open_equals_kmq_decompress(tmp_path, codec, channels, k, mode, alpha):
    img = stored(channels, k, codec, alpha=alpha)
    kmq.write(tmp_path / "x.kmq", img)
    result = CliRunner().invoke(main, ["decompress", str(tmp_path / "x.kmq"), "-q"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "x.kmq") as im, Image.open(tmp_path / "x.kmq.png") as png:
        assert (im.format, im.mode, im.size) == ("KMQ", mode, (23, 17))
        assert im.get_format_mimetype() == "image/x-kmq"
        assert im.info["distortion"] == 1.5 and im.info["seed"] == 7 and im.info["note"] == "kept"
        # The same pixels as the PNG decompress writes, in the same mode; the plugin's indices are kmq's labels
        # (decompress orders a PNG-8's palette by luminance, which PNG stores in fewer bytes).
        # (grey of up to 32 levels: a PNG of grey palette entries, where the plugin gives the levels themselves)
        assert im.mode == png.mode or (channels == 1 and k <= 32 and png.mode == "P")
        if mode == "P":
            np.testing.assert_array_equal(np.asarray(im), img.labels)
            assert np.array_equal(np.asarray(im.convert("RGBA")), np.asarray(png.convert("RGBA")))
        else:
            np.testing.assert_array_equal(np.asarray(im), np.asarray(png.convert(im.mode)))
        rgba = np.asarray(im.convert({1: "L", 3: "RGB", 4: "RGBA"}[channels]))
    np.testing.assert_array_equal(rgba, img.decode())


def test_open_reads_only_header_palette_and_metadata(tmp_path):
    data = stored(4, 200, "ctx").to_bytes()
    front = HEADER_SIZE + 200 * 4 + len(b'{"distortion":1.5,"note":"kept","seed":7}')
    f = io.BytesIO(data)
    im = Image.open(f)
    assert f.tell() == front and im.info["seed"] == 7 and len(im.getpalette()) == 600
    im.load()
    assert f.tell() == len(data)


def test_imagefile_parser_reads_kmq_fed_in_chunks():
    img = stored(4, 5, "ctx")
    data, parser = img.to_bytes(), ImageFile.Parser()
    for start in range(0, len(data), 7):
        parser.feed(data[start:start + 7])
    with parser.close() as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGBA")), img.decode())


def test_save_then_open_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    with pytest.warns(kmq.KmqWarning, match="kmq ignores unknown_option="):  # ignored, as Pillow's savers do
        Image.fromarray(pixels).save(tmp_path / "a.kmq", k=16, codec="ctx", seed=3, unknown_option=1)
    expected = kmq.compress(pixels, 16, codec="ctx", seed=3)
    assert kmq.read(tmp_path / "a.kmq") == expected
    with Image.open(tmp_path / "a.kmq") as im:
        assert im.info == {"distortion": expected.distortion, "seed": 3}
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), expected.decode())
        buffer = io.BytesIO()
        im.save(buffer, format="KMQ")  # a P image, its default options: k=16, codec raw, seed 0
    assert kmq.KmqImage.from_bytes(buffer.getvalue()) == kmq.compress(expected.decode(), 16)


def test_save_rgba_and_grey_keep_their_mode(tmp_path):
    rgba = np.random.default_rng(2).integers(0, 256, (8, 9, 4), dtype=np.uint8)
    with pytest.warns(kmq.KmqWarning, match="only 72 distinct colours"):
        Image.fromarray(rgba).save(tmp_path / "a.kmq", k=300)  # lossless
    with Image.open(tmp_path / "a.kmq") as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGBA")), rgba)
    Image.fromarray(rgba[:, :, 0]).save(tmp_path / "g.kmq", k=4)
    with Image.open(tmp_path / "g.kmq") as im:
        assert im.mode == "L"


def test_save_with_a_bad_option_raises_valueerror(tmp_path):
    with pytest.raises(ValueError, match="k must be an integer from 1 to 65536, got 0"):
        Image.new("RGB", (2, 2)).save(tmp_path / "a.kmq", k=0)
    assert not (tmp_path / "a.kmq").exists()  # Pillow removes the file it created


# ---- corrupt files: Pillow's exceptions, kmq's messages --------------------------------------------------

@pytest.fixture
def good() -> bytes:
    return stored(3, 5, "ctx").to_bytes()


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: d[:20], "truncated header: expected 32 bytes, got 20"),
    (lambda d: d[:-5], r"truncated file: expected \d+ bytes \(.*\), got \d+"),
    (lambda d: d + b"x", r"trailing bytes: expected \d+ bytes \(.*\), got \d+"),
    (lambda d: fix_crc(d[:4] + b"\x02" + d[5:]), r"unsupported \.kmq version 2"),
    (lambda d: fix_crc(d.replace(b"1.5", b"NaN")), "metadata is not strict JSON"),
])
def test_corrupt_header_raises_unidentified_image_error_on_open(tmp_path, good, corrupt, message):
    (tmp_path / "x.kmq").write_bytes(corrupt(good))
    with pytest.raises(UnidentifiedImageError, match=f"^{tmp_path / 'x.kmq'}: {message}"):
        Image.open(tmp_path / "x.kmq")


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: d[:-6] + bytes([d[-6] ^ 1]) + d[-5:], "checksum mismatch: stored 0x"),
    (lambda d: fix_crc(d[:-6] + bytes([d[-6] ^ 1]) + d[-5:]), "ctx payload"),
])
def test_corrupt_payload_raises_oserror_on_load(tmp_path, monkeypatch, good, corrupt, message):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # never a partial image, even so
    (tmp_path / "x.kmq").write_bytes(corrupt(good))
    with Image.open(tmp_path / "x.kmq") as im:
        assert im.size == (23, 17)
        with pytest.raises(OSError, match=f"^{tmp_path / 'x.kmq'}: {message}"):
            im.load()


def test_verify_checks_size_and_crc_without_decoding(good):
    Image.open(io.BytesIO(good)).verify()
    flipped = good[:-6] + bytes([good[-6] ^ 1]) + good[-5:]
    for broken, message in [(flipped, "checksum mismatch: stored 0x"), (good[:-5], "truncated file: expected")]:
        with pytest.raises(SyntaxError, match=f"^{message}"):
            Image.open(io.BytesIO(broken)).verify()
    # A payload that fails to decode behind a matching CRC is load()'s to find: verify() does not decode.
    Image.open(io.BytesIO(fix_crc(flipped))).verify()


def test_truncated_stream_fails_on_load(good):
    im = Image.open(io.BytesIO(good[:-5]))  # not a regular file: its size is known only when read
    with pytest.raises(OSError, match=rf"^truncated file: expected {len(good)} bytes \(.*\), got {len(good) - 5}"):
        im.load()


def test_a_file_changed_between_open_and_load_is_refused():
    f = io.BytesIO(stored(3, 5, "raw", seed=0).to_bytes())
    im = Image.open(f)
    f.seek(0)
    f.write(stored(3, 5, "raw", seed=1).to_bytes())  # as long, as valid, another palette
    with pytest.raises(OSError, match=r"^the file changed between Image\.open and load\(\)"):
        im.load()


def test_pixel_limit_is_pillows(tmp_path, monkeypatch, good):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 150)
    (tmp_path / "x.kmq").write_bytes(good)
    with pytest.raises(Image.DecompressionBombError,
                       match=r"x\.kmq: image of 23x17 = 391 pixels exceeds the limit of 300 pixels"):
        Image.open(tmp_path / "x.kmq")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with Image.open(tmp_path / "x.kmq") as im:
        im.load()


def test_a_forged_huge_header_is_refused_before_reading_on(good):
    offset, fmt = HEADER_FIELDS["width"]
    forged = bytearray(good)
    struct.pack_into(fmt, forged, offset, 2**31 - 1)
    with pytest.raises(Image.DecompressionBombError, match="exceeds the limit of 178956970 pixels"):
        Image.open(io.BytesIO(fix_crc(forged) + bytes(10**6)))


def pixels(im: Image.Image) -> np.ndarray:
    if im.mode == "P":
        return np.asarray(im.convert("RGBA" if "transparency" in im.info else "RGB"))
    return np.asarray(im)


def test_mutated_files_open_as_kmq_reads_them_or_fail_cleanly():
    """tools/fuzz.py's mutations: where kmq reads a file, Pillow shows the same pixels; where kmq refuses it,
    Pillow raises one of its usual errors, before or on load(), never anything else and never an image."""
    corpus = [data for codec in ("raw", "lzma", "ctx") for data in fuzz.corpus(codec)]
    rng, outcomes = random.Random(1), collections.Counter()
    for _ in range(1500):
        data = fuzz.mutate(rng, rng.choice(corpus))
        if not data.startswith(MAGIC) or not 0 < fuzz.declared_pixels(data) <= 10**5:
            continue  # not for this plugin, or a huge k = 1 image: too slow for a test
        try:
            expected = kmq.KmqImage.from_bytes(data).decode()
        except kmq.KmqError:
            expected = None
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                got = pixels(im)
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError):
            got = None
        assert (got is None) == (expected is None), data.hex()
        if got is not None:
            np.testing.assert_array_equal(got, expected)
        outcomes["refused" if got is None else "decoded"] += 1
    assert outcomes["refused"] > 500 and outcomes["decoded"] > 50, outcomes


def test_pillow_keys_in_metadata_do_not_reach_info(tmp_path):
    img = kmq.KmqImage(np.zeros((2, 3), np.uint8), np.array([[0, 1]]), {"icc_profile": 5, "dither": "fs"})
    with Image.open(io.BytesIO(img.to_bytes())) as im:
        assert im.info == {"dither": "fs"}
        im.save(io.BytesIO(), format="PNG")


def test_other_files_are_unaffected(tmp_path):
    Image.new("RGB", (3, 2)).save(tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as im:
        assert im.format == "PNG"
    (tmp_path / "junk.kmq").write_bytes(b"not an image at all")
    with pytest.raises(UnidentifiedImageError, match="cannot identify image file"):
        Image.open(tmp_path / "junk.kmq")
    assert Image.registered_extensions()[".kmq"] == "KMQ" and Image.MIME["KMQ"] == "image/x-kmq"


def test_kmq_outputs_are_not_image_outputs(tmp_path, rgb_small):
    """kmq itself never "decodes" to .kmq (it would quantize again), and a folder's .kmq are not inputs."""
    kmq.write(tmp_path / "a.kmq", kmq.compress(rgb_small, 4))
    result = CliRunner().invoke(main, ["decompress", str(tmp_path / "a.kmq"), "-o", str(tmp_path / "b.kmq")])
    assert result.output == (f"Error: {tmp_path / 'b.kmq'}: .kmq is kmq's own compressed format (kmq compress writes "
                             "it), not an image format; this writes images: use e.g. .png, .webp, .gif, .tiff, .bmp "
                             "or .jpg\n")
    result = CliRunner().invoke(main, ["compress", str(tmp_path), "-k", "4", "-q"])
    assert result.exit_code == 1
    assert result.output == (f"Error: {tmp_path}: no images found (searched recursively; names starting with . "
                             f"are skipped)\n")


def test_save_with_a_psnr_target_goes_through_compress_to(tmp_path):
    rng = np.random.default_rng(5)
    pixels = np.repeat(np.repeat(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), 4, 0), 4, 1)
    Image.fromarray(pixels).save(tmp_path / "x.kmq", codec="ctx", psnr=30)
    img = kmq.read(tmp_path / "x.kmq")
    assert img.metadata["target"] == {"psnr": 30} and kmq.stats.psnr(img.distortion, 3) >= 30


@pytest.mark.parametrize("extra, named", [({"palette": np.zeros((2, 3), np.uint8)}, "palette="),
                                          ({"dither": "fs"}, "dither="), ({"rdo": 2.0}, "rdo="),
                                          ({"rdo": 2.0, "dither": "fs"}, "dither=, rdo=")])
def test_save_refuses_what_a_target_would_silently_drop(tmp_path, extra, named):
    """A target chooses K and the rdo: a palette, dithering or an rdo of one's own cannot come along unseen."""
    im = Image.fromarray(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=rf"^{re.escape(named)} cannot be combined with a target"):
        im.save(tmp_path / "x.kmq", codec="ctx", psnr=30, **extra)
    assert not (tmp_path / "x.kmq").exists() or (tmp_path / "x.kmq").stat().st_size == 0
    im.save(tmp_path / "y.kmq", codec="ctx", psnr=30, dither="none", rdo=0.0)  # the defaults say nothing
