import io
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import traced_peak
import kmq
from kmq import KmqImage, KmqWarning, stats
from kmq.imageio import load_image

# The tutorial's tables for its 227 x 303 slide (bits; ratio to two decimals).
TUTORIAL = {2: (1650744, 68781, 48, 68829, "0.04"), 3: (1650744, 137562, 72, 137634, "0.08"),
            6: (1650744, 206343, 144, 206487, "0.13"), 16: (1650744, 275124, 384, 275508, "0.17")}


def table_row(r):
    return r["original_bits"], r["labels_bits"], r["codebook_bits"], r["compressed_bits"], f"{r['ratio']:.2f}"


def test_two_by_two_two_colours_by_hand():
    pixels = np.array([[[10, 20, 30], [200, 100, 0]], [[200, 100, 0], [200, 100, 0]]], np.uint8)
    img = kmq.compress(pixels, k=2)
    # the more frequent colour is entry 0
    np.testing.assert_array_equal(img.palette, [[200, 100, 0], [10, 20, 30]])
    np.testing.assert_array_equal(img.labels, [[1, 0], [0, 0]])
    assert img.distortion == 0.0 and img.seed == 0
    # 4 labels of 1 bit: 1000 padded -> 0x80
    assert img.to_bytes()[-5] == 0x80
    np.testing.assert_array_equal(img.decode(), pixels)


def test_one_dimensional_clusters_by_hand():
    # 0, 2 | 10, 12 (twice each): K = 2 centroids 1 and 11; every pixel is 1 away: J = 1
    pixels = np.array([[0, 2, 10, 12, 0, 2, 10, 12]], np.uint8)
    img = kmq.compress(pixels, k=2)
    assert sorted(img.palette.ravel().tolist()) == [1, 11]
    assert img.distortion == pytest.approx(1.0)
    assert img.decode().shape == (1, 8)


@pytest.mark.parametrize("k", sorted(TUTORIAL))
def test_tutorial_table_from_image_and_from_file(samples, tmp_path, k):
    image = samples / "ihc-303x227.png"
    (from_image,) = stats.measure(image, [k])
    assert table_row(from_image) == TUTORIAL[k]
    path = tmp_path / "ihc.kmq"
    kmq.write(path, kmq.compress(image, k))
    (from_file,) = stats.measure(path)
    assert table_row(from_file) == TUTORIAL[k]
    assert from_file["file_bytes"] == from_image["file_bytes"] == path.stat().st_size
    assert from_file["distortion"] == from_image["distortion"]
    # at most 128 bytes beyond the tutorial's bits
    assert path.stat().st_size - from_file["compressed_bits"] / 8 <= 128


def test_distortion_is_the_mean_squared_distance_to_the_stored_palette(rgb_small):
    img = kmq.compress(rgb_small, k=5, seed=3)
    diff = rgb_small.astype(float) - img.decode()
    assert img.distortion == pytest.approx((diff**2).sum(axis=2).mean())


def test_each_label_is_the_nearest_palette_entry(rgb_small):
    img = kmq.compress(rgb_small, k=6)
    d2 = ((rgb_small[:, :, None, :].astype(int) - img.palette[None, None].astype(int)) ** 2).sum(axis=3)
    np.testing.assert_array_equal(d2.min(axis=2), np.take_along_axis(d2, img.labels[..., None].astype(int), 2)[..., 0])


def test_same_seed_same_bytes_other_seed_may_differ(samples):
    a = kmq.compress(samples / "chelsea.png", k=16, seed=7).to_bytes()
    b = kmq.compress(samples / "chelsea.png", k=16, seed=7).to_bytes()
    assert a == b


def test_fewer_colours_than_k_is_exact_with_a_warning():
    pixels = np.array([[[1, 2, 3], [4, 5, 6], [1, 2, 3]]], np.uint8)
    with pytest.warns(KmqWarning, match="only 2 distinct colours, fewer than k=16: using k=2, lossless"):
        img = kmq.compress(pixels, k=16)
    assert img.k == 2 and img.bits_per_label == 1 and img.distortion == 0
    np.testing.assert_array_equal(img.decode(), pixels)


def test_k_equal_to_distinct_colours_is_exact_without_warning():
    pixels = np.array([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]], np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        img = kmq.compress(pixels, k=3)
    np.testing.assert_array_equal(img.decode(), pixels)


def test_k_one_has_no_label_payload(rgb_small):
    img = kmq.compress(rgb_small, k=1)
    assert img.k == 1 and img.bits_per_label == 0
    assert KmqImage.from_bytes(img.to_bytes()) == img
    np.testing.assert_allclose(img.palette[0], rgb_small.reshape(-1, 3).mean(axis=0), atol=0.5)


@pytest.mark.parametrize("bad, message", [(0, "k must be an integer from 1 to 65536"),
                                          (65537, "k must be an integer"), (2.5, "k must be an integer")])
def test_bad_k(rgb_small, bad, message):
    with pytest.raises(ValueError, match=message):
        kmq.compress(rgb_small, k=bad)


def test_bad_arrays():
    with pytest.raises(ValueError, match="must be uint8"):
        kmq.compress(np.zeros((2, 2, 3)), k=2)
    with pytest.raises(ValueError, match=r"must be \(h, w\) or \(h, w, 1\|3\|4\)"):
        kmq.compress(np.zeros((2, 2, 2), np.uint8), k=2)


# ---- modes ------------------------------------------------------------------------------------------------

def png_bytes(im: Image.Image, **options) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=options.pop("format", "PNG"), **options)
    return buf.getvalue()


def with_alpha_ramp(rgb: np.ndarray) -> np.ndarray:
    """(h, w, 3) -> (h, w, 4) with alpha rising from 0 to 255 across the columns: real transparency."""
    alpha = np.broadcast_to(np.linspace(0, 255, rgb.shape[1]).astype(np.uint8), rgb.shape[:2])
    return np.dstack([rgb, alpha])


def test_rgb_l_rgba_round_trip_exactly_when_k_covers_the_colours(samples):
    for name, channels in [("chelsea.png", 3), ("camera.png", 1), ("logo.png", 3), ("alpha", 4)]:
        if name == "alpha":
            pixels = load_image(png_bytes(Image.fromarray(with_alpha_ramp(load_image(samples / "logo.png")))))
        else:
            pixels = load_image(samples / name)  # logo.png is RGBA but opaque everywhere: stored as RGB
        pixels = pixels[:20, 230:250]
        distinct = len(np.unique(pixels.reshape(20 * 20, -1), axis=0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", KmqWarning)
            img = kmq.compress(pixels, k=min(distinct, 65536))
        assert img.channels == channels
        back = KmqImage.from_bytes(img.to_bytes())
        np.testing.assert_array_equal(back.decode(), pixels)


@pytest.mark.parametrize("mode, channels", [("RGB", 3), ("L", 1), ("RGBA", 4), ("LA", 4), ("1", 1),
                                            ("CMYK", 3), ("I;16", 1), ("YCbCr", 3),
                                            ("RGBA opaque", 3), ("LA opaque", 1)])
def test_modes_map_to_l_rgb_or_rgba(rgb_small, mode, channels):
    """Alpha is kept where it says something: an alpha of 255 everywhere is dropped (RGBA -> RGB, LA -> L)."""
    if mode in ("RGBA", "LA"):
        im = Image.fromarray(with_alpha_ramp(rgb_small)).convert(mode)
    else:
        im = Image.fromarray(rgb_small).convert(mode.split()[0] if mode != "I;16" else "I")
    if mode == "I;16":
        im = Image.fromarray((np.asarray(rgb_small[:, :, 0]).astype(np.uint16) * 257))
    fmt = {"CMYK": "JPEG", "YCbCr": "JPEG"}.get(mode, "PNG")
    pixels = load_image(png_bytes(im, format=fmt))
    assert pixels.dtype == np.uint8
    assert (pixels.shape[2] if pixels.ndim == 3 else 1) == channels
    if mode == "I;16":  # 16-bit values v * 257 scale back to exactly v
        np.testing.assert_array_equal(pixels, rgb_small[:, :, 0])


def test_palette_with_transparency_becomes_rgba():
    im = Image.new("P", (4, 2))
    im.putpalette([255, 0, 0, 0, 255, 0])
    im.putpixel((1, 1), 1)
    pixels = load_image(png_bytes(im, transparency=0))
    assert pixels.shape == (2, 4, 4)
    assert pixels[0, 0, 3] == 0 and tuple(pixels[1, 1]) == (0, 255, 0, 255)


def test_palette_without_transparency_becomes_rgb():
    im = Image.new("P", (4, 2))
    im.putpalette([255, 0, 0, 0, 255, 0])
    assert load_image(png_bytes(im)).shape == (2, 4, 3)


def test_exif_orientation_is_applied():
    pixels = np.zeros((2, 3, 3), np.uint8)
    pixels[0, 0] = 255  # top-left white
    im = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    loaded = load_image(png_bytes(im, exif=exif))
    assert loaded.shape == (3, 2, 3)
    assert loaded[0, 1].tolist() == [255, 255, 255]


def test_rgba_alpha_is_clustered_with_colour():
    # the same red, opaque and half transparent: only alpha tells the two clusters apart
    pixels = np.zeros((2, 2, 4), np.uint8)
    pixels[:, 0] = [255, 0, 0, 255]
    pixels[:, 1] = [255, 0, 0, 128]
    img = kmq.compress(pixels, k=2)
    assert img.k == 2 and img.channels == 4
    np.testing.assert_array_equal(img.decode(), pixels)


def test_the_colour_under_alpha_0_is_not_kept_nor_counted(tmp_path):
    # A cut-out: a gradient on a fully transparent background whose hidden colours vary. By hand: the
    # background reads as (0, 0, 0, 0), one entry, exact; the visible half gets the other entries.
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    pixels[:, :4, 3] = 0
    pixels[:, 4:] = np.arange(4, dtype=np.uint8)[None, :, None] * 60 + [[[0, 0, 0, 75]]]
    before = pixels.copy()
    img = kmq.compress(pixels, k=5)
    np.testing.assert_array_equal(pixels, before)  # the caller's array is not written
    want = pixels.copy()
    want[:, :4] = 0
    np.testing.assert_array_equal(img.decode(), want)
    assert img.distortion == 0.0
    Image.fromarray(pixels, "RGBA").save(tmp_path / "cut.png")
    assert kmq.compress(tmp_path / "cut.png", k=5).to_bytes() == img.to_bytes()


def test_export_writes_the_decoded_pixels(tmp_path, rgb_small):
    from imagefiles import pixels_of
    img = kmq.compress(rgb_small, k=4)
    assert kmq.export(img, tmp_path / "a.png") == "PNG"
    assert kmq.export(img, tmp_path / "a.bmp") == "BMP"
    for name in ("a.png", "a.bmp"):
        np.testing.assert_array_equal(pixels_of(tmp_path / name), img.decode())
    # The library's caller passes overwrite=True: -f is the command line's word, not the library's.
    with pytest.raises(kmq.KmqError, match=r"a\.png already exists \(overwrite=True replaces it\)$"):
        kmq.export(img, tmp_path / "a.png")


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_bincount_and_sort_paths_give_identical_files(samples, monkeypatch, channels):
    """Large images count colours with bincount, small ones sort: the file must not depend on which."""
    from kmq import kmeans

    px = np.asarray(Image.open(samples / "chelsea.png").convert("RGB"))[:120, :160]
    px = {1: px[:, :, 0], 3: px, 4: np.dstack([px, np.full(px.shape[:2], 200, np.uint8)])}[channels]
    files = []
    for bincount_from, chunk, one_pass in [(1 << 62, 1 << 23, 1 << 24), (1, 1 << 23, 1 << 24),
                                           (1, 1000, 1 << 24), (1, 1000, 0)]:
        monkeypatch.setattr(kmeans, "_BINCOUNT_FROM", bincount_from)
        monkeypatch.setattr(kmeans, "_CHUNK", chunk)
        monkeypatch.setattr(kmeans, "_ONE_PASS", one_pass)
        files.append(kmq.compress(px, k=16, seed=3).to_bytes())
    assert files[0] == files[1] == files[2] == files[3]


def test_large_k_on_a_small_image_reports_progress_and_keeps_the_bytes(samples):
    px = np.asarray(Image.open(samples / "chelsea.png").convert("RGB"))[:100, :150]  # ~12 000 colours
    calls = []
    img = kmq.compress(px, k=1024, progress=lambda done, total: calls.append((done, total)))
    assert img.k == 1024 and calls and all(0 < d <= t for d, t in calls)
    assert img.to_bytes() == kmq.compress(px, k=1024).to_bytes()
    # Exact: every label is the nearest entry, and J falls as K grows.
    flat = px.reshape(-1, 3).astype(np.int64)
    d = ((flat[:, None, :] - img.palette.astype(np.int64)[None]) ** 2).sum(axis=2)
    assert np.array_equal(d[np.arange(len(flat)), img.labels.reshape(-1)], d.min(axis=1))
    assert kmq.compress(px, k=4096).distortion < img.distortion < kmq.compress(px, k=256).distortion


def test_large_k_with_few_colours_is_exact(samples):
    px = np.asarray(Image.open(samples / "chelsea.png").convert("RGB"))[:40, :40]
    n = len(np.unique(px.reshape(-1, 3), axis=0))
    img = kmq.compress(px, k=min(65536, n))
    assert img.distortion == 0.0 and np.array_equal(img.decode().reshape(px.shape), px)


def test_bad_progress():
    with pytest.raises(TypeError, match="progress must be callable"):
        kmq.compress(np.zeros((2, 2, 3), np.uint8), k=1, progress=3)


def test_rgba_with_varying_alpha_stays_small(samples):
    """A real alpha vignette over a photo: the 4-channel histogram must not allocate 2**28 bins (3 GB)."""
    rgb = np.asarray(Image.open(samples / "coffee.png").convert("RGB"))[:200, :200]
    yy, xx = np.mgrid[0:200, 0:200]
    alpha = np.clip(300 - np.hypot(yy - 100, xx - 100) * 3, 0, 255).astype(np.uint8)
    px = np.dstack([rgb, alpha])
    assert len(np.unique(px.reshape(-1, 4), axis=0)) > 20000  # the histogram path
    img, peak = traced_peak(lambda: kmq.compress(px, k=16))
    assert peak < 64 << 20
    assert img.palette.shape == (16, 4) and len(np.unique(img.palette[:, 3])) > 2
    assert img.distortion < kmq.compress(px, k=4).distortion


def test_opaque_rgba_is_stored_as_rgb_byte_for_byte(rgb_small):
    """An alpha of 255 everywhere says nothing: the file is the RGB image's, so the PSNR is not inflated by a
    fourth, always exact channel and the palette does not pay a byte per entry for it."""
    rgba = np.dstack([rgb_small, np.full(rgb_small.shape[:2], 255, np.uint8)])
    assert kmq.compress(rgba, k=4).to_bytes() == kmq.compress(rgb_small, k=4).to_bytes()
    assert kmq.compress(Image.fromarray(rgba), k=4).to_bytes() == kmq.compress(rgb_small, k=4).to_bytes()
    one_transparent = rgba.copy()
    one_transparent[0, 0, 3] = 254
    assert kmq.compress(one_transparent, k=4).channels == 4


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "1", "P"])
def test_to_array_gives_pillows_array_and_leaves_maxblock_as_it_was(mode) -> None:
    from PIL import ImageFile

    from kmq.imageio import clear_transparent, to_array

    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 256, (300, 701, 4), dtype=np.uint8)  # 4 x 210,300 bytes: many 64 KiB pieces
    im = Image.fromarray(rgba, "RGBA").convert(mode)
    expected = {"RGB": np.asarray(im), "RGBA": np.asarray(im), "L": np.asarray(im),
                "1": np.asarray(im.convert("L")), "P": np.asarray(im.convert("RGB"))}[mode]
    expected = clear_transparent(expected) if mode == "RGBA" else expected  # alpha 0 reads as (0, 0, 0, 0)
    before = ImageFile.MAXBLOCK
    got = to_array(im)
    assert ImageFile.MAXBLOCK == before
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
