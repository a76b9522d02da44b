"""kmq.png8: palette PNGs with unfiltered rows (Pillow filters packed indices, which cost a 10-colour graphic
4,250 bytes where pngquant wrote 3,047; round 46's peer trial), and imageio keeping the smaller PNG."""
import io
import zlib

import numpy as np
import pytest
from PIL import Image

from kmq import imageio, png8


def _image(indices, palette, alpha=None):
    im = Image.frombytes("P", indices.shape[::-1], indices.astype(np.uint8).tobytes())
    im.putpalette(bytes(palette), "RGB")
    if alpha is not None:
        im.info["transparency"] = bytes(alpha)
    return im


def _rows(data):
    """The inflated IDAT of a PNG of one IDAT chunk."""
    at = data.index(b"IDAT")
    return zlib.decompress(data[at + 4:at + 4 + int.from_bytes(data[at - 4:at], "big")])


def test_a_tiny_file_byte_for_byte():
    # 3x2, 1-bit: rows 0 1 1 and 1 0 0; red and blue, red at alpha 128.
    im = _image(np.array([[0, 1, 1], [1, 0, 0]]), [255, 0, 0, 0, 0, 255], alpha=[0x80])
    data = png8.unfiltered(im, 9)
    assert data.hex() == (
        "89504e470d0a1a0a"                                                  # signature
        "0000000d" "49484452" "00000003" "00000002" "01" "03" "00" "00" "00" "a7baf459"  # IHDR: 3x2, 1-bit, palette
        "00000006" "504c5445" "ff0000" "0000ff" "6ca1fd8e"                  # PLTE: 2 entries
        "00000001" "74524e53" "80" "ad5e5b46"                               # tRNS: entry 0's alpha
        "0000000c" "49444154" "78da63486068000001a400e1" "03e25d58"         # IDAT
        "00000000" "49454e44" "ae426082")                                   # IEND
    assert _rows(data) == bytes([0, 0b01100000, 0, 0b10000000])  # filter None, leftmost sample high, 0-padded


@pytest.mark.parametrize("entries", [2, 3, 4, 5, 16, 17, 256])
@pytest.mark.parametrize("width", [1, 3, 7, 9, 16])
def test_every_depth_and_width_decodes_to_the_same_pixels(entries, width):
    rng = np.random.default_rng(entries * 100 + width)
    indices = rng.integers(0, entries, (3, width))
    palette = rng.integers(0, 256, 3 * entries).astype(np.uint8)
    alpha = rng.integers(0, 256, max(1, entries // 2)).astype(np.uint8)
    im = _image(indices, palette, alpha)
    data = png8.unfiltered(im, 6)
    with Image.open(io.BytesIO(data)) as back:
        assert back.mode == "P"
        np.testing.assert_array_equal(np.asarray(back), indices)
        assert back.getpalette()[:3 * entries] == palette.tolist()
        assert back.info["transparency"] == bytes(alpha)
    stride = -(-width * png8.bits_for(entries) // 8) + 1
    rows = _rows(data)
    assert len(rows) == 3 * stride and rows[::stride] == b"\0\0\0"


def _written_and_both(palette, labels):
    """What decompress writes, Pillow's PNG of the same palette image at level 9, and png8's."""
    out = io.BytesIO()
    imageio.save_quantized(palette, labels, out, format="PNG")
    order, rank = imageio._luminance_order(palette)
    im = imageio._palette_image(palette[order], rank[labels])
    filtered = io.BytesIO()
    im.save(filtered, format="PNG", compress_level=9)
    return out.getvalue(), filtered.getvalue(), png8.unfiltered(im, 9)


@pytest.fixture(params=["both", "bands"])
def ways(request, monkeypatch):
    """Both PNGs made (small images), or bands of rows choosing the way (above imageio.PNG_BOTH_UP_TO)."""
    if request.param == "bands":
        monkeypatch.setattr(imageio, "PNG_BOTH_UP_TO", 2000)
    return request.param


def test_decompress_keeps_the_unfiltered_png_where_it_is_smaller(ways):
    # Flat drawn shapes of 10 colours: Pillow's filtered 4-bit rows are larger than unfiltered ones.
    labels = (np.add.outer(np.arange(120) // 12, np.arange(200) // 20) % 10).astype(np.uint16)
    palette = np.random.default_rng(1).integers(0, 256, (10, 3)).astype(np.uint8)
    written, filtered, unfiltered = _written_and_both(palette, labels)
    assert written == unfiltered and len(written) < len(filtered)
    assert len(imageio.png8_bytes(palette, labels)) <= len(written)
    np.testing.assert_array_equal(imageio.load_image(written), palette[labels])


def test_and_pillows_where_that_is_smaller(ways):
    # A smooth diagonal ramp of 16 levels: Up and Paeth predict its packed rows.
    labels = (np.add.outer(np.arange(64), np.arange(64)) // 8 % 16).astype(np.uint16)
    palette = np.stack([np.arange(16) * 16] * 3, axis=1).astype(np.uint8)
    palette[:, 0] += 1  # (colour, not grey: the RGB path)
    written, filtered, unfiltered = _written_and_both(palette, labels)
    assert written == filtered and len(written) < len(unfiltered)


def test_the_bands_are_whole_rows_spread_over_the_image_with_its_palette():
    indices = np.arange(40 * 10).reshape(40, 10) % 7
    im = _image(indices, np.arange(21, dtype=np.uint8), alpha=[5, 6])
    sample = imageio._row_bands(im, 80, bands=4)  # 2 rows a band
    assert sample.size == (10, 8) and sample.getpalette()[:21] == list(range(21))
    assert sample.info["transparency"] == bytes([5, 6])
    np.testing.assert_array_equal(np.asarray(sample), indices[[0, 1, 12, 13, 25, 26, 38, 39]])


def test_an_image_of_few_rows_is_written_both_ways_not_sampled(monkeypatch):
    # (h55r2: 2 rows of 2^20 made bands of the whole image, then the file: three encodes where both ways are two)
    monkeypatch.setattr(imageio, "PNG_BOTH_UP_TO", 100)
    made = []
    monkeypatch.setattr(png8, "unfiltered", lambda im, level, real=png8.unfiltered: made.append(im.size) or
                        real(im, level))
    labels = (np.arange(2 * 500).reshape(2, 500) // 3 % 5).astype(np.uint16)
    imageio.save_quantized(np.arange(15, dtype=np.uint8).reshape(5, 3), labels, io.BytesIO(), format="PNG")
    assert made == [(500, 2)]
