"""PNGs kmq writes: palette and 1-bit ones at zlib level 9 up to imageio.PNG_BEST_PIXELS, level 6 above and for
truecolor and 8-bit grey (a 3000x600 banner at K = 64 was 41,947 bytes at level 6, 1.56x the 26,904 of `stats
--reference`'s PNG-8 of the same pixels; level 9 on truecolor cost 0.3-0.5 s a megapixel for under 4 %)."""
import io
import warnings

import numpy as np
import pytest
from PIL import Image

from kmq import imageio


def _banded(width, height, k, seed=0):
    """Labels of runs along rows, repeated with a long period: the matches level 6 gives up on."""
    rng = np.random.default_rng(seed)
    row = np.repeat(rng.integers(0, k, width // 7 + 1), 7)[:width]
    labels = np.stack([np.roll(row, 3 * (y % 40)) for y in range(height)]).astype(np.uint16)
    palette = rng.integers(0, 256, (k, 3)).astype(np.uint8)
    return palette, labels


def _written(palette, labels, fmt="PNG", **kw):
    out = io.BytesIO()
    imageio.save_quantized(palette, labels, out, format=fmt, **kw)
    return out.getvalue()


def _pillow(palette, labels, level, truecolor=False):
    order, rank = imageio._luminance_order(palette)
    im = (Image.fromarray(palette[labels]) if truecolor
          else imageio._palette_image(palette[order], rank[labels]))
    out = io.BytesIO()
    im.save(out, format="PNG", compress_level=level)
    return out.getvalue()


def test_a_small_palette_png_is_written_at_level_9():
    palette, labels = _banded(301, 97, 32)  # (8-bit indices: Pillow's rows, unfiltered at 8 bits)
    data = _written(palette, labels)
    assert data == _pillow(palette, labels, 9)
    assert len(data) < len(_pillow(palette, labels, 6))


def test_truecolor_and_grey_pngs_stay_at_level_6():
    palette, labels = _banded(301, 97, 16)
    assert _written(palette, labels, truecolor=True) == _pillow(palette, labels, 6, truecolor=True)
    palette, labels = _banded(301, 97, imageio.GREY_PALETTE_UP_TO + 1)  # (up to 32 levels: a palette image)
    grey = palette[:, :1]
    out = io.BytesIO()
    Image.fromarray(grey[labels][:, :, 0]).save(out, format="PNG", compress_level=6)
    assert _written(grey, labels) == out.getvalue()


def test_a_large_png_is_written_at_level_6(monkeypatch):
    palette, labels = _banded(301, 97, 16)
    monkeypatch.setattr(imageio, "PNG_BEST_PIXELS", 301 * 97 - 1)
    assert _written(palette, labels) == _pillow(palette, labels, 6)


def test_the_level_changes_above_2_mp():
    assert imageio.png_level(1 << 21) == 9
    assert imageio.png_level((1 << 21) + 1) == 6


def test_decompress_is_within_3_percent_of_the_reference_png8():
    """The README's bound for photos; png8_bytes tries level 9 too (optimize=True was up to 5 % over it)."""
    palette, labels = _banded(600, 120, 64, seed=3)
    png8 = imageio.png8_bytes(palette, labels)
    assert len(_written(palette, labels)) <= 1.03 * len(png8)
    assert len(png8) <= len(_pillow(palette, labels, 9))


def _ink(width=203, height=61):
    """Black strokes on white (a 1-bit drawing): its rows and columns 7 and 11 apart."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.where((xx % 7 == 0) | (yy % 11 == 0), 0, 255).astype(np.uint8)


def test_black_and_white_is_written_as_a_1_bit_png(tmp_path):
    """Before: 8-bit grey, larger than the 1-bit input."""
    import kmq

    img = kmq.compress(_ink(), 2)
    kmq.export(img, tmp_path / "ink.png")
    with Image.open(tmp_path / "ink.png") as png:
        assert png.mode == "1"
        np.testing.assert_array_equal(np.asarray(png.convert("L")), img.decode())
    eight_bit = io.BytesIO()
    Image.fromarray(img.decode()).save(eight_bit, format="PNG", compress_level=9)
    assert (tmp_path / "ink.png").stat().st_size < len(eight_bit.getvalue())


@pytest.mark.parametrize("levels", [(0, 254), (1, 255), (0, 128, 255), tuple(range(0, 256, 8))])
def test_other_grey_of_up_to_32_levels_is_a_grey_palette_png_read_back_as_grey(levels):
    # (round 46's peer trial: china grey at K = 16 was 25,646 bytes in 8-bit grey, 18,265 as pngquant's PNG-8)
    palette = np.array(levels, np.uint8)[:, None]
    labels = (np.arange(12 * 9).reshape(9, 12) % len(levels)).astype(np.uint16)
    data = _written(palette, labels)
    with Image.open(io.BytesIO(data)) as png:
        assert png.mode == "P" and png.info.get("transparency") is None
        entries = np.asarray(png.getpalette()).reshape(-1, 3)
        assert (entries == entries[:, :1]).all()
        np.testing.assert_array_equal(np.asarray(png.convert("L")), palette[labels][:, :, 0])
    back = imageio.load_image(data)
    assert back.shape == (9, 12)  # one channel: kmq reads a palette image of grey entries as grey
    np.testing.assert_array_equal(back, palette[labels][:, :, 0])


def test_grey_of_33_levels_and_more_stays_8_bit_grey():
    palette = np.arange(0, 256, 7, dtype=np.uint8)[:33, None]  # 33 levels
    labels = (np.arange(12 * 9).reshape(9, 12) % 33).astype(np.uint16)
    with Image.open(io.BytesIO(_written(palette, labels))) as png:
        assert png.mode == "L"
        np.testing.assert_array_equal(np.asarray(png), palette[labels][:, :, 0])


def test_a_palette_image_with_one_coloured_entry_stays_colour():
    im = Image.new("P", (3, 1))
    im.putpalette([0, 0, 0, 9, 9, 9, 200, 10, 10])
    im.putdata([0, 1, 1])  # the coloured entry is not used: the palette still says colour
    out = io.BytesIO()
    im.save(out, format="PNG")
    assert imageio.load_image(out.getvalue()).shape == (1, 3, 3)


def test_a_grey_palette_png_with_a_colour_profile_is_read_through_it_as_colour(tmp_path):
    # (h55r1: read as grey, its RGB profile could not be applied to one channel, and the levels were off by 9)
    from PIL import ImageCms

    im = Image.frombytes("P", (4, 1), bytes([0, 1, 2, 3]))
    im.putpalette(bytes(np.repeat(np.array([10, 90, 170, 250], np.uint8), 3)), "RGB")
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im.save(tmp_path / "g.png", icc_profile=profile)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an sRGB profile: nothing to convert, nothing to say
        assert imageio.load_image(tmp_path / "g.png").shape == (1, 4, 3)
