"""16-bit grey read as 8-bit (round 46's lab trial): the same values the same levels whatever the file type, a
warning where a narrow 16-bit range leaves few levels, and the levels looked up in a table a span at a time
(64-bit sums of 48 MP took 930 MB: measured, not tested here)."""
import warnings

import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import imageio


def _pgm16(path, values):
    """A binary PGM of maxval 65535, as the spec lays it out: big-endian 16-bit samples."""
    h, w = values.shape
    path.write_bytes(b"P5\n%d %d\n65535\n" % (w, h) + values.astype(">u2").tobytes())
    return path


def test_the_table_is_v_over_257_rounded_for_every_16_bit_value():
    v = np.arange(65536, dtype=np.int64)
    np.testing.assert_array_equal(imageio._SIXTEEN_TO_EIGHT, (v * 255 + 32767) // 65535)
    assert imageio._SIXTEEN_TO_EIGHT[[0, 128, 129, 257, 385, 386, 65535]].tolist() == [0, 0, 1, 1, 1, 2, 255]


def test_the_lookup_covers_every_span_and_the_last_short_one(monkeypatch):
    monkeypatch.setattr(imageio, "_LOOKUP_SPAN", 7)
    values = np.arange(0, 65536, 257, dtype=np.uint16)[:250].reshape(10, 25)  # 250 values: 35 spans and 5 left
    got = imageio._looked_up(imageio._SIXTEEN_TO_EIGHT, values)
    assert got.dtype == np.uint8 and got.shape == (10, 25)
    np.testing.assert_array_equal(got, np.arange(250).reshape(10, 25))


@pytest.mark.parametrize("suffix", [".png", ".tif", ".pgm"])
def test_the_same_16_bit_values_give_the_same_levels_in_png_tiff_and_pgm(tmp_path, suffix):
    # Values 0..255 in a 16-bit file are the darkest 2 levels of 256; a PGM of them was read as 256 levels.
    values = np.tile(np.array([0, 128, 129, 255, 200, 60], np.uint16), (2, 1))
    path = tmp_path / f"v{suffix}"
    if suffix == ".pgm":
        _pgm16(path, values)
    else:
        Image.fromarray(values).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert imageio.load_image(path).tolist() == [[0, 0, 1, 1, 1, 0]] * 2


@pytest.mark.parametrize("suffix", [".png", ".pgm"])
def test_a_narrow_16_bit_range_says_how_few_levels_it_keeps(tmp_path, suffix):
    values = np.linspace(72, 629, 64).astype(np.uint16).reshape(8, 8)  # a dim microscope image's range
    path = tmp_path / f"dim{suffix}"
    _pgm16(path, values) if suffix == ".pgm" else Image.fromarray(values).save(path)
    with pytest.warns(kmq.KmqWarning, match=rf"dim\{suffix}: its 16-bit values span 72\.\.629 of 0\.\.65535, "
                                            r"8-bit levels 0\.\.2 \(3 of 256\): stretch its range first if that "
                                            r"detail matters$"):
        assert sorted(set(imageio.load_image(path).ravel())) == [0, 1, 2]


@pytest.mark.parametrize("values", [np.array([[0, 65535]]), np.array([[1000, 1001, 1002, 1003]]),
                                    np.arange(0, 65536, 257)[:64].reshape(8, 8)])
def test_no_warning_where_the_range_is_used_or_there_is_little_to_lose(tmp_path, values):
    # the whole range; four values that are one level anyway; 64 levels, each its own 8-bit level
    Image.fromarray(values.astype(np.uint16)).save(tmp_path / "ok.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        imageio.load_image(tmp_path / "ok.png")


def test_a_16_bit_mask_of_two_values_loses_nothing_and_says_nothing(tmp_path):
    # (h55r1: {0, 4095} warned "stretch its range first", then "lossless")
    Image.fromarray(np.array([[0, 4095], [4095, 0]], np.uint16)).save(tmp_path / "mask.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert imageio.load_image(tmp_path / "mask.png").tolist() == [[0, 16], [16, 0]]


def test_the_distinct_count_covers_every_span(monkeypatch):
    monkeypatch.setattr(imageio, "_LOOKUP_SPAN", 5)
    values = np.array([[70, 71, 70, 90, 91, 90, 70], [71, 72, 73, 70, 70, 70, 99]], np.uint16)
    assert imageio._distinct_count(values, 70) == 7  # 70-73, 90, 91, 99


# 16-bit colour (RGB, RGBA, grey with alpha): Pillow decodes it to the high byte of each sample, so kmq sees
# only 8 bits; a narrow range was cut to a few levels without a word (round 47).
def _png16(path, samples, colour_type):
    """A 16-bit PNG as the spec lays it out (Pillow cannot write 16-bit colour): filter 0 on every row."""
    import struct
    import zlib

    height, width = samples.shape[:2]
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in samples)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type,
                                                                        0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


def _dim_colour(channels):
    ramp = np.linspace(72, 629, 48).astype(np.uint16).reshape(6, 8)  # 8-bit high bytes 0, 1, 2
    planes = [ramp, ramp[::-1], ramp.T.reshape(6, 8)][:channels]
    return np.stack(planes, axis=2)


_CUT = (r"{}: its 16-bit samples reach kmq cut to 8 bits \(as Pillow decodes 16-bit colour\), 8-bit levels "
        r"0\.\.2 \(3 of 256\): stretch its range first if that detail matters$")


@pytest.mark.parametrize("colour_type, channels", [(2, 3), (6, 4), (4, 2)])
def test_a_narrow_16_bit_colour_range_says_how_few_levels_reach_kmq(tmp_path, colour_type, channels):
    samples = _dim_colour(min(channels, 3))
    if channels in (2, 4):  # grey or RGB with an opaque alpha
        samples = np.concatenate([samples[..., :channels - 1], np.full((6, 8, 1), 65535, np.uint16)], axis=2)
    path = _png16(tmp_path / "dim.png", samples, colour_type)
    with pytest.warns(kmq.KmqWarning, match=_CUT.format(r"dim\.png")):
        pixels = imageio.load_image(path)
    assert sorted(set(pixels.ravel())) == [0, 1, 2]
    with Image.open(path) as im, pytest.warns(kmq.KmqWarning, match=_CUT.format("a program's")):
        imageio.from_pillow(im, "a program's")


def test_16_bit_colour_that_uses_its_range_or_is_a_mask_says_nothing(tmp_path):
    ramp = (np.arange(48, dtype=np.uint32).reshape(6, 8) * 1365).astype(np.uint16)  # 0..64155: 48 levels of 256
    mask = np.where(np.eye(6, 8, dtype=bool), 4095, 0).astype(np.uint16)  # 8-bit 0 and 15, nothing between
    for name, plane in (("ramp", ramp), ("mask", mask)):
        path = _png16(tmp_path / f"{name}.png", np.stack([plane] * 3, axis=2), 2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            imageio.load_image(path)


def test_the_command_line_says_it_too_though_it_decodes_ahead(tmp_path):
    # kmq's command decodes the named image in a thread as it starts (kmq.prefetch), after which the 16-bit
    # layout is gone: such a file is left for load_image to read.
    import subprocess
    import sys

    path = _png16(tmp_path / "dim.png", _dim_colour(3), 2)
    run = subprocess.run([sys.executable, "-m", "kmq", "compress", str(path), "-k", "2", "-q"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines() == [
        f"Warning: {path}: its 16-bit samples reach kmq cut to 8 bits (as Pillow decodes 16-bit colour), "
        "8-bit levels 0..2 (3 of 256): stretch its range first if that detail matters"]


def test_a_dim_16_bit_ppm_says_so_too(tmp_path):
    # (h56r1) Pillow's ppm decoder scales by maxval: its tile says (rawmode, 65535), no ";16" to see.
    samples = _dim_colour(3)
    path = tmp_path / "dim.ppm"
    path.write_bytes(b"P6\n8 6\n65535\n" + samples.astype(">u2").tobytes())
    with pytest.warns(kmq.KmqWarning, match=_CUT.format(r"dim\.ppm")):
        assert sorted(set(imageio.load_image(path).ravel())) == [0, 1, 2]


def test_two_levels_of_a_cut_ramp_say_so(tmp_path):
    # (h56r1) 0..511 became levels 0 and 1, then "lossless", with no word: the rule wanted 3 levels or more.
    ramp = np.linspace(0, 511, 48).astype(np.uint16).reshape(6, 8)
    path = _png16(tmp_path / "two.png", np.stack([ramp] * 3, axis=2), 2)
    with pytest.warns(kmq.KmqWarning, match=r"8-bit levels 0\.\.1 \(2 of 256\)"):
        imageio.load_image(path)
