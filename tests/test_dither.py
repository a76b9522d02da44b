"""Floyd–Steinberg dithering: hand-computed toys, the wavefront against FS's own equations, Pillow's path
against its definition, kmq.compress(dither=...) in every mode, and the CLI."""
import json
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import kmq
from kmq import dither, kmeans, segment
from kmq.cli import main

GREY_01 = np.array([[0], [255]], np.uint8)


def _fs_residual(pixels, palette, labels, values):
    """Check that values/labels satisfy Floyd–Steinberg's equations at every pixel at once (no loop):
    value = clip(pixel + trunc((7 left + 3 above-right + 5 above + 1 above-left) / 16)) of the errors
    value − palette[label], and label = the nearest entry of value (ties to the lower index)."""
    h, w, c = pixels.shape
    v = values.reshape(h, w, c).astype(np.int64)
    e = np.zeros((h + 1, w + 2, c), np.int64)  # padded: row 0 is y = -1, columns 0 and w+1 are outside
    e[1:, 1:-1] = v - palette[labels].astype(np.int64)
    acc = 7 * e[1:, :-2] + 3 * e[:-1, 2:] + 5 * e[:-1, 1:-1] + e[:-1, :-2]
    expected = np.clip(pixels + np.trunc(acc / 16).astype(np.int64), 0, 255)
    np.testing.assert_array_equal(v, expected)
    nearest, _ = kmeans.nearest(v.reshape(-1, c).astype(np.uint8), palette)
    np.testing.assert_array_equal(labels.ravel(), nearest)


def _wave(pixels, palette):
    values = np.empty((pixels.shape[0] * pixels.shape[1], pixels.shape[2]), np.int32)
    labels = dither.wavefront(pixels, palette, dither.Matcher(palette), values=values)
    return labels, values


# --- hand-computed ----------------------------------------------------------------------------------------

def _as_rgb(pixels, palette):
    return np.repeat(pixels, 3, axis=2), np.repeat(palette, 3, axis=1)


def test_one_row_by_hand_both_paths():
    # 100 -> 0 (error 100); 100 + 700/16 = 143 -> 255 (-112); 100 - 784/16 = 51 -> 0 (51);
    # 100 + 357/16 = 122 -> 0.
    pixels = np.full((1, 4, 1), 100, np.uint8)
    expected = [[0, 1, 0, 0]]
    np.testing.assert_array_equal(dither.floyd_steinberg(pixels, GREY_01), expected)
    # The same grey as RGB goes through Pillow, whose cache sees 100, 140, 48, 120: the same entries.
    np.testing.assert_array_equal(dither.floyd_steinberg(*_as_rgb(pixels, GREY_01)), expected)


def test_two_by_two_by_hand_and_pillows_last_column():
    # Row 1: (1, 0) = 100 + (3·-112 + 5·100)/16 = 110 -> 0 (error 110);
    # (1, 1) = 100 + (7·110 + 5·-112 + 1·100)/16 = 119 -> 0.
    pixels = np.full((2, 2, 1), 100, np.uint8)
    labels, values = _wave(pixels, GREY_01)
    np.testing.assert_array_equal(labels, [[0, 1], [0, 0]])
    np.testing.assert_array_equal(values.ravel(), [100, 143, 110, 119])
    # Pillow hands the last column the blue channel's terms from the row above in every channel: green and
    # blue get (770 - 112)/16 = 41, so (1, 1) is (119, 141, 141), nearer white. Documented in kmq.dither.
    np.testing.assert_array_equal(dither.floyd_steinberg(pixels, GREY_01), [[0, 1], [0, 0]])
    np.testing.assert_array_equal(dither.floyd_steinberg(*_as_rgb(pixels, GREY_01)), [[0, 1], [0, 1]])


def test_one_entry_and_exact_palette_colours():
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    np.testing.assert_array_equal(dither.floyd_steinberg(pixels, pixels[:1, 0]), np.zeros((5, 7)))
    # An image made of palette colours has no error to diffuse: every pixel keeps its own entry.
    palette = np.array([[0, 0, 0, 0], [255, 0, 0, 128], [0, 0, 255, 255]], np.uint8)
    labels = np.random.default_rng(1).integers(0, 3, (6, 9))
    np.testing.assert_array_equal(dither.floyd_steinberg(palette[labels], palette), labels)


# --- the wavefront against FS's equations -------------------------------------------------------------------

@pytest.mark.parametrize("shape,k", [((9, 13, 1), 5), ((1, 17, 3), 7), ((17, 1, 3), 7), ((12, 11, 3), 20),
                                     ((10, 14, 4), 12), ((23, 19, 3), 600), ((16, 21, 4), 300)])
def test_wavefront_satisfies_floyd_steinberg(shape, k):
    rng = np.random.default_rng(k)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    palette = np.unique(rng.integers(0, 256, (k, shape[2]), dtype=np.uint8), axis=0)
    labels, values = _wave(pixels, palette)
    _fs_residual(pixels, palette, labels, values)


@pytest.mark.parametrize("k,channels", [(2, 1), (40, 3), (40, 4), (700, 3), (300, 4)])
def test_matcher_is_the_exact_nearest_with_ties_to_the_lower_index(k, channels):
    rng = np.random.default_rng(k)
    # A coarse palette puts many values at equal distances from two entries.
    palette = np.unique(rng.integers(0, 16, (k, channels), dtype=np.uint8) * 17, axis=0)
    values = rng.integers(0, 256, (5000, channels)).astype(np.int32)
    values[:256, 0] = np.arange(256)
    expected, _ = kmeans.nearest(values.astype(np.uint8), palette)
    np.testing.assert_array_equal(dither.Matcher(palette)(values), expected)


# --- Pillow's path against its own definition --------------------------------------------------------------

def test_pillow_path_is_fs_matching_through_its_colour_cache():
    # On one row (no last-column effect) Pillow's labels are exactly the wavefront's with Pillow's match:
    # the nearest entry of the value with its two low bits cleared.
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (1, 400, 3), dtype=np.uint8)
    palette = np.unique(rng.integers(0, 256, (40, 3), dtype=np.uint8), axis=0)

    def pillows_match(values):
        return kmeans.nearest((values & ~3).astype(np.uint8), palette)[0]

    np.testing.assert_array_equal(dither.floyd_steinberg(pixels, palette),
                                  dither.wavefront(pixels, palette, pillows_match))


def test_pillow_path_stays_within_the_palette_and_close_to_the_exact_path(samples):
    photo = kmq.api.load(samples / "chelsea.png")[0][100:220, 150:300]
    palette, _, _ = kmq.api.quantize(photo.reshape(-1, 3), 6)
    far = np.zeros_like(photo)  # black, far from every entry: a padded palette would map it to 0, 0, 0
    for pixels in (photo, far):
        assert dither.floyd_steinberg(pixels, palette).max() < len(palette)
    # On a photo the cache and the last column cost little: J within 3 %, blurred error within 5 %.
    exact = palette[dither.wavefront(photo, palette, dither.Matcher(palette))]
    pillow = palette[dither.floyd_steinberg(photo, palette)]
    assert _mse(pillow, photo) == pytest.approx(_mse(exact, photo), rel=0.03)
    assert _blurred_mse(pillow, photo) == pytest.approx(_blurred_mse(exact, photo), rel=0.05)


# --- kmq.compress ---------------------------------------------------------------------------------------------

def _gradient(channels, h=40, w=64):
    y, x = np.mgrid[0:h, 0:w]
    planes = [x * 4, y * 6, (x + y) * 2, 255 - x * 3][:channels] if channels > 1 else [x * 4]
    return np.clip(np.dstack(planes), 0, 255).astype(np.uint8).squeeze()


def _mse(a, b):
    return float(np.mean((a.astype(np.int64) - b) ** 2))


def _blurred_mse(a, b):
    return dither.blurred_error(a, b.reshape(a.shape))


def test_blurred_error_by_hand():
    # A uniform difference survives the blur unchanged; an alternating +-d checkerboard mostly cancels.
    assert dither.blurred_error(np.full((8, 8), 13, np.uint8), np.full((8, 8), 10, np.uint8)) == pytest.approx(9)
    board = (np.indices((16, 16)).sum(axis=0) % 2 * 20).astype(np.uint8)
    assert dither.blurred_error(board, np.full((16, 16), 10, np.uint8)) < 0.01 * 100


@pytest.mark.parametrize("channels,k", [(1, 4), (3, 8), (4, 8), (3, 300)])
def test_compress_dithers_every_mode_and_records_the_true_j(channels, k):
    pixels = _gradient(channels)
    plain = kmq.compress(pixels, k)
    img = kmq.compress(pixels, k, dither="fs", codec="ctx")
    assert img.metadata["dither"] == "fs" and "dither" not in plain.metadata
    decoded = img.decode().astype(np.int64).reshape(pixels.shape)
    j = float(np.sum((decoded - pixels) ** 2) / (pixels.shape[0] * pixels.shape[1]))
    assert img.distortion == pytest.approx(j, rel=1e-12)
    assert img.distortion > plain.distortion
    assert _blurred_mse(pixels, decoded) < _blurred_mse(pixels, plain.decode().reshape(pixels.shape))
    share = np.bincount(img.labels.ravel(), minlength=img.k)
    assert np.all(np.diff(share) <= 0)  # entries still in decreasing order of pixel count
    again = kmq.KmqImage.from_bytes(img.to_bytes())
    assert again == img and again.metadata["dither"] == "fs"
    assert kmq.compress(pixels, k, dither="fs", codec="ctx").to_bytes() == img.to_bytes()


def test_compress_validates_dither():
    with pytest.raises(ValueError, match="unknown dither 'floyd'; choose from none, fs"):
        kmq.compress(np.zeros((2, 2, 3), np.uint8), 1, dither="floyd")


# --- the CLI --------------------------------------------------------------------------------------------------

@pytest.fixture
def image(tmp_path, samples):
    path = tmp_path / "c.png"
    shutil.copy(samples / "ihc-303x227.png", path)
    return path


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_cli_compress_dithers(image, tmp_path):
    out = tmp_path / "d.kmq"
    result = _run("compress", image, "-k", "16", "--dither", "fs", "-o", out)
    assert result.exit_code == 0, result.output
    img = kmq.read(out)
    assert img.metadata["dither"] == "fs"
    assert img == kmq.compress(str(image), 16, dither="fs")
    size = out.stat().st_size
    psnr = f"{kmq.stats.psnr(img.distortion, 3):.2f}"
    assert re.fullmatch(rf"{re.escape(str(image))} -> {re.escape(str(out))}: k=16, dither fs, 4 bits/label, packed/original bits 0\.17, "
                        rf"{size:,} bytes, PSNR {psnr} dB, \d+\.\d\d s\n", result.output)


def test_cli_bulk_compress_and_stats_dither(image, tmp_path):
    result = _run("compress", image, "-k", "8", "--dither", "fs", "-o", f"{tmp_path / 'out'}/", "--summary", "json")
    assert result.exit_code == 0, result.output
    img = kmq.read(tmp_path / "out" / "c.kmq")
    assert img.metadata["dither"] == "fs"
    assert json.loads(result.output)["results"][0]["psnr"] == pytest.approx(kmq.stats.psnr(img.distortion, 3))
    result = _run("stats", image, "-k", "8", "--dither", "fs", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["distortion"] == img.distortion


def test_cli_montage_dithers(image, tmp_path):
    result = _run("montage", image, "-k", "4", "--dither", "fs", "-o", tmp_path / "m.png")
    assert result.exit_code == 0, result.output
    assert result.output == f"{image} -> {tmp_path / 'm.png'}: original and K = 4, 642x314\n"
    panel = segment.montage(kmq.api.load(image)[0], [4], dither="fs").panels[1]
    assert panel.record["distortion"] == kmq.compress(str(image), 4, dither="fs").distortion


def test_cli_rejects_an_unknown_dither(image):
    result = _run("compress", image, "--dither", "ordered")
    assert result.exit_code == 2
    assert "Invalid value for '--dither': 'ordered' is not one of 'none', 'fs'." in result.output


def test_fine_grey_palettes_gain_too(samples):
    # Pillow's colour cache works in steps of 4 levels, as coarse as a 64-entry grey palette: grey takes the
    # exact path, so dithering lowers the blurred error there as well.
    grey = kmq.api.load(samples / "camera.png")[0][100:228, 200:328]
    plain, fs = kmq.compress(grey, 64), kmq.compress(grey, 64, dither="fs")
    assert _blurred_mse(grey, fs.decode()) < _blurred_mse(grey, plain.decode())


def test_exact_palette_colours_stay_exact_where_pillows_cache_would_redraw_them():
    # White, bits cleared, is (252, 252, 252): nearer #fbfcfd (squared distance 2) than white (27), so Pillow's
    # cache draws a white page #fbfcfd and diffuses the difference over it.
    palette = np.array([[255, 255, 255], [251, 252, 253], [0, 0, 0]], np.uint8)
    page = np.full((20, 30, 3), 255, np.uint8)
    page[5:8, 3:25] = 0
    assert (dither._pillow(page, palette)[page[..., 0] == 255] == 1).all()
    assert dither._cache_loses_colours(page, palette)
    labels = dither.floyd_steinberg(page, palette)
    assert (labels == np.where(page[..., 0] == 255, 0, 2)).all()


def test_pillows_path_kept_where_its_cache_keeps_every_colour_or_few_pixels_are_one():
    palette = np.array([[255, 255, 255], [251, 252, 253], [0, 0, 0]], np.uint8)
    photo = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)  # no pixel is white
    assert not dither._cache_loses_colours(photo, palette)
    spread = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 128, 255]], np.uint8)  # none lost
    assert not dither._cache_loses_colours(np.full((4, 4, 3), 255, np.uint8), spread)
