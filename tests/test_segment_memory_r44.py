"""What segment's views and the montage hold at once (round 44: 1.6 GB and 1.35 GB at 48 MP), and that drawing
them in bands gives the same pixels as in one pass."""
import gc
import warnings
import weakref

import numpy as np
import pytest
from PIL import Image

import kmq
from conftest import traced_peak
from kmq import segment
from kmq.cli import main
from kmq.errors import KmqError
from kmq.format import KmqImage


def _picture(h: int, w: int, channels: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, labels): noise pixels (RGBA with every level of alpha) and blocky labels 0..k-1."""
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, channels)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    blocks = rng.integers(0, k, (h // 3 + 1, w // 5 + 1))
    return pixels, np.repeat(np.repeat(blocks, 3, 0), 5, 1)[:h, :w].astype(np.uint16)


@pytest.mark.parametrize("channels, k", [(1, 2), (3, 64), (4, 256), (3, 300)])
def test_views_drawn_in_bands_are_the_one_pass_views(monkeypatch, channels, k):
    pixels, labels = _picture(37, 29, channels, k)
    colours = segment.label_colors(k).astype(np.float32)
    overlay = np.rint(0.3 * colours[labels] + 0.7 * segment.grey(pixels)[:, :, None]).astype(np.uint8)
    boundaries = segment.opaque_rgb(pixels).copy()
    boundaries[segment.edges(labels)] = segment.BOUNDARY_COLOR
    for band in (1, 29, 30, 100, 1 << 18):  # one row a band, rows and a remainder, one band
        monkeypatch.setattr(segment, "_BAND_PIXELS", band, raising=False)
        np.testing.assert_array_equal(segment.overlay(labels, pixels, k), overlay)
        np.testing.assert_array_equal(segment.boundaries(labels, pixels), boundaries)
    np.testing.assert_array_equal(pixels, _picture(37, 29, channels, k)[0])  # drawn on a copy, not on them


@pytest.mark.parametrize("style", ["overlay", "boundaries"])
def test_views_hold_little_beyond_the_picture(monkeypatch, style):
    # A picture takes 3 bytes a pixel. In one pass the overlay's float32 temporaries (and the labels cast to
    # intp) came to ~28 bytes a pixel, the boundaries' three bool arrays 3 more.
    monkeypatch.setattr(segment, "_BAND_PIXELS", 1024, raising=False)
    pixels, labels = _picture(256, 384, 3, 16)
    img = KmqImage(np.zeros((16, 3), np.uint8), labels)
    view, peak = traced_peak(lambda: segment.render(img, pixels, style))
    assert view.shape == (256, 384, 3)
    assert peak < 4 * labels.size


def test_the_montage_keeps_only_panels_between_fits(monkeypatch, rgb_small):
    # Every K's labels and full-size picture were held until the figure was drawn: 1.35 GB at 48 MP.
    fitted = []
    compress = segment.compress

    def watched(pixels, *args, **kwargs):
        gc.collect()
        fitted.append(sum(isinstance(o, KmqImage) for o in gc.get_objects()))
        return compress(pixels, *args, **kwargs)

    monkeypatch.setattr(segment, "compress", watched)
    figure = segment.montage(rgb_small, [2, 3, 6])
    assert fitted == [0, 0, 0]
    monkeypatch.setattr(segment, "compress", compress)
    for panel, k in zip(figure.panels[1:], [2, 3, 6]):
        x0, y0, x1, y1 = panel.box
        picture = segment.opaque_rgb(kmq.compress(rgb_small, k).decode())
        expected = np.asarray(segment._scaled(picture, x1 - x0, y1 - y0))
        np.testing.assert_array_equal(figure.pixels[y0:y1, x0:x1], expected)
        assert panel.record["k"] == k


def test_the_montage_of_fewer_colours_than_k_still_draws_one_lossless_panel():
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], np.uint8)
    pixels = colours[np.arange(40 * 30).reshape(40, 30) % 5]
    with pytest.warns(kmq.KmqWarning) as caught:
        figure = segment.montage(pixels, [2, 64, 256])
    assert [str(w.message) for w in caught] == [
        "the image has only 5 distinct colours, fewer than k=256: using k=5, lossless",
        "K = 64 gives the same lossless picture as K = 256 (k=5, every colour of the image)"]
    assert [p.record["k"] for p in figure.panels[1:]] == [2, 5]


@pytest.mark.parametrize("style", ["overlay", "mean"])
def test_segment_lets_the_pixels_and_view_go_before_encoding_and_the_masks(tmp_path, monkeypatch, runner,
                                                                            rgb_small, style):
    # At 48 MP the pixels (144 MB) were held while the picture was encoded and the masks written, and the view
    # (144 MB) while the masks were written.
    Image.fromarray(rgb_small).save(tmp_path / "a.png")
    held: dict[str, weakref.ref] = {}
    seen = []
    quantized, render = segment.quantized, segment.view_image
    encoded, write_masks = segment.encoded_picture, segment.write_masks

    def kept(name, array):
        held[name] = weakref.ref(array)
        return array

    def alive():
        gc.collect()
        return sorted(name for name, ref in held.items() if ref() is not None)

    monkeypatch.setattr(segment, "quantized", lambda *a, **kw: (lambda img, base: (img, kept("pixels", base)))(
        *quantized(*a, **kw)))
    monkeypatch.setattr(segment, "view_image", lambda *a: kept("view", render(*a)))
    monkeypatch.setattr(segment, "encoded_picture", lambda *a: (seen.append(("encode", alive())), encoded(*a))[1])
    monkeypatch.setattr(segment, "write_masks", lambda *a, **kw: (seen.append(("masks", alive())),
                                                                   write_masks(*a, **kw))[1])
    result = runner.invoke(main, ["segment", str(tmp_path / "a.png"), "-k", "3", "--style", style,
                                  "-o", str(tmp_path / "v.png"), "--masks", str(tmp_path / "m"), "-q"])
    assert result.exit_code == 0, result.output
    assert seen == [("encode", ["view"]), ("masks", [])]
    assert len(list((tmp_path / "m").iterdir())) == 3


def test_rgba_over_white_in_bands_is_the_one_pass_composite_and_holds_little(monkeypatch):
    from kmq.imageio import over_white

    pixels, _ = _picture(256, 384, 4, 2)
    whole = over_white(pixels)
    monkeypatch.setattr(segment, "_BAND_PIXELS", 4096, raising=False)
    rgb, peak = traced_peak(lambda: segment.opaque_rgb(pixels))
    np.testing.assert_array_equal(rgb, whole)
    assert peak < 5 * 256 * 384  # the picture (3 bytes a pixel) and a band's temporaries; in one pass 32


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP", "BMP", "JPEG"])
def test_a_view_drawn_into_pillow_encodes_to_the_bytes_of_the_array(monkeypatch, fmt):
    monkeypatch.setattr(segment, "_BAND_PIXELS", 100, raising=False)
    for channels in (1, 3, 4):
        pixels, labels = _picture(41, 23, channels, 7)
        palette = np.repeat(segment.label_colors(7), 2, axis=1)[:, :channels]
        img = KmqImage(palette, labels)
        for style in ("overlay", "boundaries", "labels", "mean"):
            if fmt == "JPEG" and style == "labels":
                continue  # refused before either is drawn (check_label_map_format)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", kmq.KmqWarning)  # JPEG is lossy; RGBA flattened: both alike
                drawn = segment.encoded_picture(segment.view_image(img, pixels, style), fmt, "v")
                whole = segment.encoded_picture(segment.render(img, pixels, style), fmt, "v")
            assert drawn == whole, (channels, style)


def test_a_view_drawn_into_pillow_is_refused_as_the_array_is():
    pixels, labels = _picture(12, 9, 3, 3)
    img = KmqImage(segment.label_colors(3), labels)
    for style in ("overlay", "boundaries"):
        with pytest.raises(KmqError, match="v.xbm: cannot write RGB pixels as XBM"):
            segment.encoded_picture(segment.view_image(img, pixels, style), "XBM", "v.xbm")

