"""Hardening, round 2: stdout full, closed or gone; runaway view sizes; alpha into GIF and JPEG; wording.

The stdout tests run the real program (a subprocess each): what they check happens in the interpreter's own
streams, which click's CliRunner replaces.
"""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import kmq
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
                                                  (13, 11, (242, 286)), (700, 100, (91, 640))])
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
                                       r"limit of 200000 \(fewer -k, or raise --max-pixels\)$"):
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
