"""Fixes from a new user's review: each test is the reported case, run the way the user ran it."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import kmq

from kmq.cli import main

KMQ = [sys.executable, "-m", "kmq"]


def run(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


# 1. stdin closed (`<&-`): Python then has no sys.stdin at all, and "-" must say so in one line.
@pytest.mark.parametrize("args", [
    ["compress", "-", "-o", "out.kmq"],
    ["compress", "-", "-o", "folder/", "-q"],  # a bulk run: the failure is its own line, no table
    ["compress", "a.png", "--palette", "-", "-o", "out.kmq"],
    ["decompress", "-", "-o", "out.png"],
    ["stats", "-"],
    ["info", "-"],
    ["palette", "-"],
    ["segment", "-", "-o", "out.png"],
    ["montage", "-", "-o", "out.png"],
])
def test_closed_stdin_is_one_line_error_and_writes_nothing(tmp_path, png, args):
    out = subprocess.run([*KMQ, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         preexec_fn=lambda: os.close(0))
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.endswith("cannot read stdin: not open\n")
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("Error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


# 2. One file without -o: the default name takes the --format's extension, as bulk runs do.
@pytest.mark.parametrize("fmt, suffix", [("WEBP", ".webp"), ("jpeg", ".jpeg"), ("PNG", ".png")])
def test_decompress_default_name_follows_format(runner, kmq_file, fmt, suffix):
    result = run(runner, "decompress", kmq_file, "--format", fmt)
    out = kmq_file.parent / (kmq_file.name + suffix)
    assert result.exit_code == 0, result.output
    lossy = (f"Warning: {out}: JPEG is lossy: the pixels written are not exactly the decoded ones (PNG or WebP "
             "keep them)\n") if fmt == "jpeg" else ""
    assert re.fullmatch(rf"{re.escape(lossy)}{re.escape(str(kmq_file))} -> {re.escape(str(out))}: 11x13 "
                        rf"{fmt.upper()}, \d+\.\d\d s\n", result.output)
    with Image.open(out) as im:
        assert im.format == fmt.upper()
    assert sorted(p.name for p in kmq_file.parent.iterdir()) == ["a.kmq", out.name]


# 3. A label map only in a format that gives back every label: lossy ones never, 8-bit-only ones up to K = 256.
@pytest.fixture(scope="module")
def k300_file(tmp_path_factory):
    """A .kmq at K = 300: 400 distinct noise colours, so every cluster is used."""
    pixels = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("k300") / "b.kmq"
    kmq.write(path, kmq.compress(pixels, k=300, max_iter=5))
    return path


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_label_map_in_8_bit_format_keeps_every_label_at_k4(runner, kmq_file, suffix):
    out = kmq_file.parent / f"lab{suffix}"
    result = run(runner, "segment", kmq_file, "--style", "labels", "-o", out)
    assert result.exit_code == 0, result.output
    assert result.output == f"{kmq_file} -> {out}: labels, k=4, 11x13\n"
    with Image.open(out) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("L")), kmq.read(kmq_file).labels)


@pytest.mark.parametrize("suffix, k, message", [
    (".jpg", 4, "JPEG is lossy and would change the labels"),
    (".jpg", 300, "JPEG is lossy and would change the labels"),
    (".avif", 4, "AVIF is lossy and would change the labels"),
    (".ico", 4, "ICO cannot store the labels exactly"),
    (".gif", 300, "the labels of K = 300 are 16-bit, which GIF cannot store exactly"),
    (".webp", 300, "the labels of K = 300 are 16-bit, which WEBP cannot store exactly"),
    (".bmp", 300, "the labels of K = 300 are 16-bit, which BMP cannot store exactly"),
])
def test_label_map_refused_where_labels_would_change(runner, kmq_file, k300_file, suffix, k, message):
    source = kmq_file if k == 4 else k300_file
    out = source.parent / f"lab{suffix}"
    result = run(runner, "segment", source, "--style", "labels", "-o", out)
    assert result.exit_code == 1
    assert result.output == f"Error: {out}: {message}; write the label map as PNG\n"
    assert not out.exists()


def test_label_map_at_k300_in_png_keeps_every_label(runner, k300_file):
    out = k300_file.parent / "lab.png"
    result = run(runner, "segment", k300_file, "--style", "labels", "-o", out)
    assert result.exit_code == 0, result.output
    with Image.open(out) as im:
        np.testing.assert_array_equal(np.asarray(im).astype(np.int64), kmq.read(k300_file).labels)
    out.unlink()


# 4. Icons: written at the image's own size when the format holds it, refused (naming the limit) when not.
def _rgba_kmq(path, width, height):
    # 3 levels per channel, so 81 distinct colours: a quick fit, and alpha that varies pixel to pixel
    pixels = (np.random.default_rng(1).integers(0, 3, (height, width, 4)) * 127).astype(np.uint8)
    kmq.write(path, kmq.compress(pixels, k=4, max_iter=5))
    return path


@pytest.mark.parametrize("suffix, size, message", [
    (".ico", (400, 300), "ICO holds at most 256x256 pixels, not 400x300; use e.g. PNG"),
    (".ico", (257, 10), "ICO holds at most 256x256 pixels, not 257x10; use e.g. PNG"),
    (".icns", (400, 300), "ICNS opens at 1024x1024 (its other sizes are scaled copies), so only a 1024x1024 "
                          "image is kept as it is, not 400x300; use e.g. PNG"),
    (".icns", (64, 64), "ICNS opens at 1024x1024 (its other sizes are scaled copies), so only a 1024x1024 "
                        "image is kept as it is, not 64x64; use e.g. PNG"),
])
def test_icon_too_large_or_odd_is_refused(runner, tmp_path, suffix, size, message):
    source = _rgba_kmq(tmp_path / "rgba.kmq", *size)
    out = tmp_path / f"r{suffix}"
    result = run(runner, "decompress", source, "-o", out)
    assert result.exit_code == 1
    assert result.output == f"Error: {out}: {message}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rgba.kmq"]


@pytest.mark.parametrize("suffix, size", [(".ico", (200, 100)), (".ico", (256, 256)), (".icns", (1024, 1024))])
def test_icon_that_fits_keeps_size_and_pixels(runner, tmp_path, suffix, size):
    source = _rgba_kmq(tmp_path / "rgba.kmq", *size)
    out = tmp_path / f"r{suffix}"
    result = run(runner, "decompress", source, "-o", out)
    assert result.exit_code == 0, result.output
    fmt = suffix[1:].upper()
    assert re.fullmatch(rf"{re.escape(str(source))} -> {re.escape(str(out))}: {size[0]}x{size[1]} {fmt}, "
                        rf"\d+\.\d\d s\n", result.output)
    with Image.open(out) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGBA")), kmq.read(source).decode())


# 5. Warnings in whole sentences: the verb agrees with "the image(s)", and GIF's reduction says to what.
def _flat_pngs(folder, *colours):
    folder.mkdir()
    for i, colour in enumerate(colours):
        Image.new("RGB", (4, 3), colour).save(folder / f"s{i}.png")
    return folder


def test_shared_palette_with_few_colours_warns_in_plural(runner, tmp_path):
    slides = _flat_pngs(tmp_path / "slides", (255, 0, 0), (0, 0, 255))
    result = run(runner, "palette", slides, "-k", "5", "-o", tmp_path / "p.gpl")
    assert result.exit_code == 0, result.output
    assert result.output == ("Warning: the images have only 2 distinct colours, fewer than k=5: using k=2, "
                             f"lossless\n2 files (24 pixels, 2 colours) -> {tmp_path / 'p.gpl'}: 2 colours, "
                             "J 0.00\n")


def test_one_image_with_few_colours_warns_in_singular(runner, tmp_path):
    slides = _flat_pngs(tmp_path / "slides", (255, 0, 0))
    result = run(runner, "palette", slides / "s0.png", "-k", "5", "-o", tmp_path / "p.gpl")
    assert result.exit_code == 0, result.output
    assert result.output == (f"Warning: {slides / 's0.png'}: the image has only 1 distinct colour, fewer than k=5: "
                             f"using k=1, lossless\n{slides / 's0.png'} -> {tmp_path / 'p.gpl'}: 1 colour\n")


def test_gif_above_256_colours_says_what_pillow_reduces_them_to(runner, k300_file):
    out = k300_file.parent / "b.gif"
    result = run(runner, "decompress", k300_file, "-o", out)
    assert result.exit_code == 0, result.output
    assert re.fullmatch(rf"Warning: {re.escape(str(out))}: GIF holds at most 256 colours: Pillow reduces these "
                        rf"300 colours to 256\n{re.escape(str(k300_file))} -> {re.escape(str(out))}: 20x20 GIF, "
                        rf"\d+\.\d\d s\n", result.output)
    out.unlink()


def test_warnings_about_names_warnings_that_an_error_follows() -> None:
    import warnings as w

    from kmq.errors import KmqError, KmqWarning, warnings_about

    with w.catch_warnings(record=True) as seen:
        w.simplefilter("always")
        with pytest.raises(KmqError, match="broken"):
            with warnings_about("a.png"):
                w.warn("only 2 distinct colours", KmqWarning)
                raise KmqError("broken")
    assert [str(x.message) for x in seen] == ["a.png: only 2 distinct colours"]



def test_about_names_the_file_once():
    from kmq.errors import about

    # A bulk run's warning was "b/anim.gif: b/anim.gif has 3 frames; using the first" (new-user trial):
    # the messages that name their file say it first, with a colon.
    assert about("b/a.png", "b/a.png: not an image") == "b/a.png: not an image"
    # and only then: a file named "the" or "1" keeps its name before a message that starts with that word
    assert about("the", "the image has only 1 distinct colour") == "the: the image has only 1 distinct colour"
    assert about("1", "1 centroid rounded") == "1: 1 centroid rounded"
    assert about("-", "k too large") == "<stdin>: k too large"
