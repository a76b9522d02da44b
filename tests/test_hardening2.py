"""Hardening, round 2: stdout full, closed or gone; runaway view sizes; alpha into GIF and JPEG; wording.

The stdout tests run the real program (a subprocess each): what they check happens in the interpreter's own
streams, which click's CliRunner replaces.
"""
import os
import re
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

import kmq
import kmq.imageio
from kmq import segment
from kmq.errors import KmqError
from kmq.cli import main

KMQ = [sys.executable, "-m", "kmq"]


def run(runner, *args, **kwargs):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)


# --------------------------------------------------------------------------------------------------
# stdout: full, closed, or its reader gone

# Every way a command writes to stdout: text by click, tables by rich, bytes by fileio, images by Pillow
# (which writes to the descriptor itself), the line a command prints after writing a file, help, a bulk summary.
_STDOUT_WRITERS = {
    "info": ["info", "{kmq}"],
    "info json": ["info", "{kmq}", "--format", "json"],
    "palette": ["palette", "{kmq}"],
    "stats": ["stats", "{kmq}"],
    "decompress": ["decompress", "{kmq}", "-o", "-"],
    "compress": ["compress", "{png}", "-k", "2", "-o", "-"],
    "compress line": ["compress", "{png}", "-k", "2", "-o", "{tmp}/c.kmq"],
    "segment": ["segment", "{png}", "-k", "2", "-o", "-"],
    "montage": ["montage", "{png}", "-k", "2", "-o", "-"],
    "palette swatch": ["palette", "{png}", "-k", "2", "-o", "-"],
    "help": ["--help"],
    "bulk summary": ["decompress", "{kmq}", "-o", "{tmp}/out/", "--summary", "json", "-j", "1"],
}


def _stdout_run(args, png, kmq_file, tmp_path, **streams):
    args = [a.format(png=png, kmq=kmq_file, tmp=tmp_path) for a in args]
    return subprocess.run([*KMQ, *args], stderr=subprocess.PIPE, timeout=60, **streams)


def _clean(stderr: bytes) -> str:
    text = stderr.decode()
    assert "Traceback" not in text and "Exception ignored" not in text, text
    return text


@pytest.mark.parametrize("name", _STDOUT_WRITERS)
def test_a_full_stdout_is_one_error(name, png, kmq_file, tmp_path):
    with open("/dev/full", "wb") as full:
        out = _stdout_run(_STDOUT_WRITERS[name], png, kmq_file, tmp_path, stdout=full)
    assert out.returncode == 1
    assert _clean(out.stderr).splitlines()[-1] == "Error: cannot write to stdout: no space left on device"


@pytest.mark.parametrize("name", ["info", "palette", "stats", "decompress", "compress", "bulk summary"])
def test_a_closed_stdout_is_one_error(name, png, kmq_file, tmp_path):
    out = _stdout_run(_STDOUT_WRITERS[name], png, kmq_file, tmp_path, preexec_fn=lambda: os.close(1))
    assert out.returncode == 1
    assert _clean(out.stderr).splitlines()[-1] == "Error: cannot write to stdout: not open for writing"


@pytest.mark.parametrize("name", ["info", "stats", "decompress", "help"])
def test_a_reader_gone_ends_quietly_by_sigpipe(name, png, kmq_file, tmp_path):
    reading, writing = os.pipe()
    os.close(reading)  # the reader is gone before the first byte: every write fails with EPIPE
    try:
        out = _stdout_run(_STDOUT_WRITERS[name], png, kmq_file, tmp_path, stdout=writing)
    finally:
        os.close(writing)
    assert (out.returncode, _clean(out.stderr)) == (-signal.SIGPIPE, "")


def test_a_command_that_writes_nothing_to_stdout_does_not_mind_it_closed(png, tmp_path):
    out = _stdout_run(["compress", "{png}", "-k", "2", "-o", "{tmp}/q.kmq", "-q"], png, None, tmp_path,
                      preexec_fn=lambda: os.close(1))
    assert (out.returncode, out.stderr) == (0, b"")
    assert kmq.read(tmp_path / "q.kmq").k == 2


# --------------------------------------------------------------------------------------------------
# runaway sizes: every view stays within a bound, whatever the image's shape

def _noise(height, width):
    return np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)


@pytest.mark.parametrize("height, width, panel", [(500, 1, (1, 500)), (1, 500, (500, 1)), (3000, 2, (1, 640)),
                                                  (13, 11, (242, 286)), (700, 10, (9, 640))])
def test_montage_panels_fit_a_box_whatever_the_shape(height, width, panel):
    figure = segment.montage(_noise(height, width), [2, 3])
    for p in figure.panels:
        x0, y0, x1, y1 = p.box
        assert (x1 - x0, y1 - y0) == panel
    h, w = figure.pixels.shape[:2]
    # Three cells of at least PANEL_MIN (the titles need it) and at most PANEL_MAX, in one row.
    assert w == 12 + 3 * (max(panel[0], segment.PANEL_MIN) + 12) and h <= 12 + 63 + segment.PANEL_MAX + 12
    if panel == (width, height):  # unscaled: the original is in its panel as it is
        x0, y0, x1, y1 = figure.panels[0].box
        np.testing.assert_array_equal(figure.pixels[y0:y1, x0:x1], _noise(height, width))


def test_a_montage_over_the_pixel_limit_is_refused_before_clustering(monkeypatch):
    monkeypatch.setattr(segment, "compress", lambda *a, **k: pytest.fail("clustered a refused montage"))
    with pytest.raises(KmqError, match=r"^a montage of 3 panels would be 774x373 = 288702 pixels, over the "
                                       r"limit of 200000 \(fewer ks, or raise max_pixels\)$"):
        segment.montage(_noise(13, 11), [2, 3], max_pixels=200_000)


def test_montage_columns_beyond_the_panels_add_no_empty_columns(rgb_small):
    assert segment.montage(rgb_small, [2], columns=50).pixels.shape[1] == 12 + 2 * (242 + 12)


def test_the_montage_of_a_column_image_through_the_cli(runner, tmp_path):
    Image.fromarray(_noise(500, 1)).save(tmp_path / "col.png")
    result = run(runner, "montage", tmp_path / "col.png", "-o", tmp_path / "m.png")
    assert result.output == f"{tmp_path / 'col.png'} -> {tmp_path / 'm.png'}: original and K = 2, 3, 6, 16, 768x1162\n"


@pytest.mark.parametrize("k, shape", [(16, (52, 802)), (256, (802, 802)), (257, (754, 801)),
                                      (4096, (770, 770)), (65536, (768, 768))])
def test_swatches_of_large_palettes_stay_within_a_screen(k, shape):
    palette = segment.label_colors(k)
    out = segment.swatch(palette)
    assert out.shape == (*shape, 3)
    if k == 65536:  # 3 px cells, no gutters: every entry in order, row by row
        np.testing.assert_array_equal(out[::3, ::3].reshape(-1, 3), palette)


@pytest.mark.parametrize("height, width", [(500, 1), (1, 500), (3000, 2)])
def test_segment_views_are_the_image_size(runner, tmp_path, height, width):
    Image.fromarray(_noise(height, width)).save(tmp_path / "in.png")
    result = run(runner, "segment", tmp_path / "in.png", "-k", "3", "-o", tmp_path / "s.png", "-q")
    assert result.exit_code == 0
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == (width, height)


# --------------------------------------------------------------------------------------------------
# alpha into formats without it (GIF's one transparent colour, JPEG, BMP), and format names

# Opaque, two fully transparent entries (merged into GIF's one transparent colour), half transparent, opaque.
_RGBA_PALETTE = np.array([[10, 20, 30, 255], [200, 0, 0, 0], [0, 200, 0, 0], [0, 0, 200, 128], [5, 5, 5, 255]],
                         np.uint8)
_RGBA_LABELS = np.array([[0, 1, 2, 3, 4, 0], [4, 3, 2, 1, 0, 0]], np.uint16)


def _rgba_kmq(tmp_path, palette=_RGBA_PALETTE):
    path = tmp_path / "rgba.kmq"
    kmq.write(path, kmq.KmqImage(palette, _RGBA_LABELS))
    return path


def test_alpha_into_gif_keeps_alpha_0_as_its_transparent_colour(runner, tmp_path):
    result = run(runner, "decompress", _rgba_kmq(tmp_path), "-o", tmp_path / "x.gif", "-q")
    assert (result.exit_code, result.output) == (
        0, f"Warning: {tmp_path / 'x.gif'}: GIF keeps only alpha 0 (as its transparent colour): partial alpha "
           "(1 of 5 colours) composited over white (PNG or WebP keep alpha)\n")
    with Image.open(tmp_path / "x.gif") as im:
        assert im.mode == "P" and "transparency" in im.info
        got = np.asarray(im.convert("RGBA"))
    # Alpha 0 is transparent, 255 exact, 128 composited over white: 255 - (255 - 200) * 128/255 = 227.4.
    expected_rgb = {0: [10, 20, 30], 3: [127, 127, 227], 4: [5, 5, 5]}
    for label in range(5):
        where = _RGBA_LABELS == label
        assert (got[where][:, 3] == (0 if label in (1, 2) else 255)).all()
        if label in expected_rgb:
            assert (got[where][:, :3] == expected_rgb[label]).all()


def test_alpha_0_and_255_into_gif_lose_nothing_and_say_nothing(runner, tmp_path):
    palette = _RGBA_PALETTE.copy()
    palette[3, 3] = 255
    result = run(runner, "decompress", _rgba_kmq(tmp_path, palette), "-o", tmp_path / "x.gif", "-q")
    assert (result.exit_code, result.output) == (0, "")
    with Image.open(tmp_path / "x.gif") as im:
        got = np.asarray(im.convert("RGBA"))
    visible = palette[_RGBA_LABELS][:, :, 3] == 255
    np.testing.assert_array_equal(got[visible], palette[_RGBA_LABELS][visible])
    assert (got[~visible][:, 3] == 0).all()


@pytest.mark.parametrize("args, out", [(["decompress", "{kmq}", "-o", "{out}"], "x.jpg"),
                                       (["decompress", "{kmq}", "-o", "{out}", "--truecolor"], "x.bmp"),
                                       (["segment", "{kmq}", "--style", "mean", "-o", "{out}"], "x.jpg"),
                                       (["palette", "{kmq}", "-o", "{out}"], "x.jpg")])
def test_rgba_into_a_format_without_alpha_is_composited_over_white_with_a_warning(runner, tmp_path, args, out):
    out, source = tmp_path / out, _rgba_kmq(tmp_path)
    result = run(runner, *[a.format(kmq=source, out=out) for a in args], "-q")
    fmt = "JPEG" if out.suffix == ".jpg" else "BMP"
    lossy = (f"Warning: {out}: JPEG is lossy: the pixels written are not exactly the decoded ones (PNG or WebP "
             "keep them)\n") if fmt == "JPEG" else ""
    assert (result.exit_code, result.output) == (
        0, f"Warning: {out}: {fmt} has no alpha: transparent pixels are composited over white (PNG or WebP keep "
           "alpha)\n" + lossy)
    with Image.open(out) as im:
        assert im.mode == "RGB"
        if fmt == "BMP":  # lossless: exactly what a white page shows
            np.testing.assert_array_equal(np.asarray(im), segment.opaque_rgb(_RGBA_PALETTE[_RGBA_LABELS]))


def test_opaque_rgba_into_jpeg_needs_no_alpha_warning(runner, tmp_path):
    palette = _RGBA_PALETTE.copy()
    palette[:, 3] = 255
    out = tmp_path / "x.jpg"
    result = run(runner, "decompress", _rgba_kmq(tmp_path, palette), "-o", out, "-q")
    assert (result.exit_code, result.output) == (
        0, f"Warning: {out}: JPEG is lossy: the pixels written are not exactly the decoded ones (PNG or WebP keep "
           "them)\n")


@pytest.mark.parametrize("args, message", [
    (["decompress", "{kmq}", "--format", "xyz", "-o", "-"],
     "unknown image format 'xyz'; use e.g. PNG, WEBP, GIF, JPEG, BMP or TIFF"),
    (["decompress", "{kmq}", "--format", "xyz", "-o", "{tmp}/out/"],
     "unknown image format 'xyz'; use e.g. PNG, WEBP, GIF, JPEG, BMP or TIFF"),
    (["decompress", "{kmq}", "-o", "{tmp}/x.psd"], "{tmp}/x.psd: Pillow reads PSD files but cannot write them; "
                                                   "use e.g. .png")])
def test_unknown_and_unwritable_formats(runner, kmq_file, tmp_path, args, message):
    result = run(runner, *[a.format(kmq=kmq_file, tmp=tmp_path) for a in args])
    assert (result.exit_code, result.output) == (1, f"Error: {message.format(tmp=tmp_path)}\n")


@pytest.mark.parametrize("name, fmt", [("jpg", "JPEG"), ("TIF", "TIFF"), ("webp", "WEBP"), ("kmq", None)])
def test_format_takes_an_extensions_name_as_o_does(runner, kmq_file, tmp_path, name, fmt):
    result = run(runner, "decompress", kmq_file, "--format", name, "-o", tmp_path / "out", "-q")
    if fmt is None:
        assert (result.exit_code, result.output) == (1, "Error: 'kmq' is kmq's compressed format, not an image "
                                                        "format to write; use e.g. PNG, WEBP, GIF, JPEG, BMP or TIFF\n")
        return
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out") as im:
        assert im.format == fmt


# --------------------------------------------------------------------------------------------------
# wording, junk named .kmq, -k for a .kmq

def test_lossless_and_singular_wording(runner, tmp_path):
    flat = tmp_path / "flat.png"
    Image.new("RGB", (3, 2), (9, 9, 9)).save(flat)
    two = tmp_path / "two.png"
    Image.fromarray(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)).save(two)
    result = run(runner, "compress", two, "-k", "2", "-o", tmp_path / "two.kmq")
    assert result.output.startswith(f"{two} -> {tmp_path / 'two.kmq'}: k=2, 1 bit/label, packed/original bits ")
    assert ", lossless, " in result.output and "inf" not in result.output
    result = run(runner, "palette", flat, "-k", "3", "-o", tmp_path / "p.png")
    assert result.output == (f"Warning: {flat}: the image has only 1 distinct colour, fewer than k=3: using k=1, "
                             f"lossless\n{flat} -> {tmp_path / 'p.png'}: 1 colour\n")
    result = run(runner, "segment", flat, "--masks", tmp_path / "m", "-q")
    assert result.exit_code == 0
    result = run(runner, "segment", tmp_path / "two.kmq", "--masks", tmp_path / "m2")
    assert result.output.endswith(f"{tmp_path / 'm2'}: 2 masks, two-cluster-0.png .. two-cluster-1.png\n")
    assert _rows(run(runner, "stats", tmp_path / "two.kmq").output)["PSNR"] == "lossless"
    rows = _rows(run(runner, "info", tmp_path / "two.kmq").output)
    assert rows["K"] == "2 (1 bit per label)" and rows["PSNR"] == "lossless"


def _rows(table: str) -> dict[str, str]:
    """A two-column rich table's rows: first cell -> second cell."""
    return {line.split("│")[1].strip(): line.split("│")[2].strip() for line in table.splitlines()
            if line.count("│") == 3}


@pytest.mark.parametrize("command", ["stats", "palette", "segment", "info", "decompress"])
def test_junk_named_kmq_is_not_a_valid_kmq_for_every_command(runner, tmp_path, command):
    junk = tmp_path / "junk.kmq"
    junk.write_bytes(b"junk, not a .kmq")
    args = ["-o", tmp_path / "out.png"] if command in ("segment", "decompress") else []
    result = run(runner, command, junk, *args)
    assert (result.exit_code, result.output) == (1, f"Error: {junk}: not a .kmq file: bad magic 6a 75 6e 6b\n")


@pytest.mark.parametrize("command", ["stats", "palette", "segment"])
def test_a_k_that_does_not_apply_to_a_kmq_is_a_warning(runner, kmq_file, tmp_path, command):
    extra = ["-o", tmp_path / "s.png", "-q", "-f"] if command == "segment" else []
    result = run(runner, command, kmq_file, "-k", "8", *extra)
    assert result.exit_code == 0
    assert result.stderr == f"Warning: {kmq_file}: a .kmq keeps its own K (4); -k 8 does not apply\n"
    # Its own K, or none at all, says nothing; among others it is not named (nor a K twice).
    for same in (["-k", "4"], []):
        assert run(runner, command, kmq_file, *same, *extra).stderr == ""
    if command == "stats":
        result = run(runner, command, kmq_file, "-k", "2", "-k", "4", "-k", "2", "-k", "8")
        assert result.stderr == f"Warning: {kmq_file}: a .kmq keeps its own K (4); -k 2, -k 8 do not apply\n"


def test_stats_options_that_make_a_new_quantization_do_not_apply_to_a_kmq(runner, kmq_file, tmp_path):
    gpl = tmp_path / "p.gpl"
    gpl.write_text("GIMP Palette\n0 0 0 black\n255 255 255 white\n")
    for codec in (["--codec", "ctx"], []):  # without --codec too: a .kmq is not reported raw, as images are
        result = run(runner, "stats", kmq_file, *codec, "--rdo", "2", "--format", "tsv")
        assert result.exit_code == 0
        assert result.stderr == f"Warning: {kmq_file}: a .kmq is used as stored; --rdo 2 does not apply\n"
    result = run(runner, "stats", kmq_file, "--palette", gpl, "--dither", "fs", "--format", "tsv")
    assert result.stderr == (f"Warning: {kmq_file}: a .kmq is used as stored; --palette, --dither fs do not "
                             f"apply\n")
    # The sweep's own Ks are not the user's -k: named as the option given.
    result = run(runner, "stats", kmq_file, "--sweep", "-k", "3", "-k", "5", "--format", "tsv")
    assert result.stderr == (f"Warning: {kmq_file}: a .kmq keeps its own K (4); -k 3, -k 5 do not apply\n"
                             f"Warning: {kmq_file}: a .kmq is used as stored; --sweep does not apply\n")


# --------------------------------------------------------------------------------------------------
# /dev/full as -o, label maps in lossy formats, 32-bit grey

@pytest.mark.parametrize("command", ["compress", "segment", "montage", "palette"])
def test_dev_full_as_the_output_is_one_message_for_every_command(runner, png, command):
    result = run(runner, command, png, "-k", "2", "-o", "/dev/full", "-q")
    assert (result.exit_code, result.output) == (1, "Error: cannot write /dev/full: no space left on device\n")


@pytest.mark.parametrize("k, out, message", [
    (3, "l.jpg", "{out}: JPEG is lossy and would change the labels; write the label map as PNG"),
    (300, "l.webp", "{out}: the labels of K = 300 are 16-bit, which WEBP cannot store exactly; write the label "
                    "map as PNG")])
def test_a_label_map_is_refused_in_a_format_that_would_change_it(runner, tmp_path, k, out, message):
    src = tmp_path / "n.png"
    Image.fromarray(_noise(40, 30)).save(src)
    out = tmp_path / out
    result = run(runner, "segment", src, "-k", k, "--style", "labels", "-o", out)
    assert (result.exit_code, result.output) == (1, f"Error: {message.format(out=out)}\n")
    assert not out.exists()


def test_a_label_map_above_256_in_png_keeps_every_label(runner, tmp_path):
    src = tmp_path / "n.png"
    Image.fromarray(_noise(40, 30)).save(src)
    result = run(runner, "segment", src, "-k", "300", "--style", "labels", "-o", tmp_path / "l.png", "-q")
    assert result.exit_code == 0
    with Image.open(tmp_path / "l.png") as im:
        np.testing.assert_array_equal(np.asarray(im), kmq.compress(_noise(40, 30), 300).labels)


def test_32_bit_grey_holding_8_bit_levels_is_not_darkened(tmp_path):
    levels = (np.arange(600).reshape(20, 30) % 256).astype(np.int32)
    Image.fromarray(levels).save(tmp_path / "i.tif")
    with Image.open(tmp_path / "i.tif") as im:
        assert im.mode == "I"
    np.testing.assert_array_equal(kmq.imageio.load_image(tmp_path / "i.tif"), levels)


def test_32_bit_grey_beyond_16_bits_is_stretched_from_its_range_with_a_warning(tmp_path):
    values = np.array([[-5, 0], [70_000, 140_005]], np.int32)
    Image.fromarray(values).save(tmp_path / "w.tif")
    with pytest.warns(kmq.KmqWarning, match=r"w.tif: 32-bit grey values span -5..140005: scaled from that range"):
        got = kmq.imageio.load_image(tmp_path / "w.tif")
    # (v + 5) * 255 / 140010, rounded: 0, 0.009, 127.5 -> 128 (halves up), 255.
    assert got.tolist() == [[0, 0], [128, 255]]


def test_16_bit_grey_in_mode_i_still_scales_as_16_bit(tmp_path):
    values = np.array([[0, 257], [65535, 32896]], np.int32)  # levels 0, 1, 255, 128 at 16 bits
    Image.fromarray(values).save(tmp_path / "s.tif")
    assert kmq.imageio.load_image(tmp_path / "s.tif").tolist() == [[0, 1], [255, 128]]


# --------------------------------------------------------------------------------------------------
# the stats table fits the terminal

@pytest.mark.parametrize("columns, tables", [("80", 2), ("300", 1), ("40", 10)])
def test_the_stats_table_fits_the_terminal(runner, png, monkeypatch, columns, tables):
    monkeypatch.setenv("COLUMNS", columns)
    ks = [str(k) for k in range(2, 12)]
    result = run(runner, "stats", png, *[a for k in ks for a in ("-k", k)])
    lines = result.output.splitlines()
    assert max(map(len, lines)) <= max(int(columns), 43)  # one record's table is 43 wide, whatever the terminal
    titles = [line.strip() for line in lines if "Sizes in bits" in line]
    assert len(titles) == tables
    if tables == 2:
        assert titles[0].startswith("Sizes in bits (1-") and titles[-1].endswith("-10 of 10)")
    if tables == 10:  # one record a table: "(3 of 10)", not "(3-3 of 10)"
        assert titles == [f"Sizes in bits ({i} of 10)" for i in range(1, 11)]
    # Every K once, in order, across the tables.
    assert re.findall(r"K=(\d+)", result.output) == ks


@pytest.mark.parametrize("values, expected, warned", [
    ([[0.0, 0.25], [0.5, 1.0]], [[0, 64], [128, 255]], r"float grey values span 0..1: read as 0..1, scaled to 0..255"),
    ([[0.0, 0.0], [0.0, 0.0]], [[0, 0], [0, 0]], None),
    ([[0.0, 7.4], [200.6, 255.0]], [[0, 7], [201, 255]], None),
    ([[-1000.0, 0.0], [1500.0, 5000.0]], [[0, 42], [106, 255]],
     r"float grey values span -1000..5000: scaled from that range to 0..255"),
])
def test_float_grey_is_read_by_its_range_not_clipped(tmp_path, values, expected, warned):
    """Mode F had been clipped to 0..255: 0..1 data became black and white, and wider data lost its range."""
    Image.fromarray(np.array(values, np.float32), "F").save(tmp_path / "f.tif")
    if warned:
        with pytest.warns(kmq.KmqWarning, match=r"f.tif: " + warned):
            got = kmq.imageio.load_image(tmp_path / "f.tif")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = kmq.imageio.load_image(tmp_path / "f.tif")
    assert got.tolist() == expected


def test_float_grey_with_nan_is_an_error(runner, tmp_path):
    Image.fromarray(np.array([[0.0, np.nan]], np.float32), "F").save(tmp_path / "f.tif")
    result = run(runner, "compress", tmp_path / "f.tif", "-k", "2", "-o", tmp_path / "f.kmq")
    assert (result.exit_code, result.output) == (
        1, f"Error: {tmp_path / 'f.tif'}: float grey values include NaN or infinity; kmq needs finite levels\n")
    assert not (tmp_path / "f.kmq").exists()
