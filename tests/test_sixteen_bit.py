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
