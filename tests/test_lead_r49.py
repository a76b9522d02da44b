"""Round 49 (lead): kmq.api.load takes every source kmq.stats and kmq.segment take, and the CLI's names."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import api


@pytest.fixture()
def png(tmp_path):
    pixels = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    path = tmp_path / "p.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, io.BytesIO])
def test_load_reads_bytes_and_streams_as_it_reads_a_path(png, wrap):
    path, pixels = png
    data = path.read_bytes()
    loaded, size = api.load(wrap(data))
    assert size == len(data) and np.array_equal(loaded, pixels)
    assert np.array_equal(api.load(path)[0], loaded)


def test_load_waits_for_a_slow_pipe_s_first_bytes():
    import os
    import threading
    import time

    data = kmq.compress(np.zeros((2, 3, 3), np.uint8), k=1).to_bytes()
    r, w = os.pipe()

    def write():
        os.write(w, data[:2])
        time.sleep(0.2)  # (sequencing, not timing: the reader must not decide on 2 bytes)
        os.write(w, data[2:])
        os.close(w)

    writer = threading.Thread(target=write)
    writer.start()
    with os.fdopen(r, "rb", buffering=0) as f:
        loaded, size = api.load(f)
    writer.join()
    assert isinstance(loaded, kmq.KmqImage) and size == len(data)


def test_load_names_an_unnamed_kmq_in_its_errors():
    data = kmq.compress(np.zeros((2, 3, 3), np.uint8), k=1).to_bytes()
    assert api.load(data)[0].k == 1
    with pytest.raises(kmq.FormatError, match="^upload: "):
        api.load(data[:-3], name="upload")


# --- names, encodings and widths on the command line (the round's trial of non-ASCII users) ----------------

from click.testing import CliRunner  # noqa: E402

from kmq.cli import main  # noqa: E402
from kmq.names import shown as _shown  # noqa: E402


@pytest.fixture()
def photo(tmp_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    return tmp_path, pixels


def _save(folder, name, pixels):
    path = folder / name
    Image.fromarray(pixels).save(path, "PNG")
    return path


def test_a_latin1_stdout_gets_escapes_not_a_traceback(photo, monkeypatch):
    folder, pixels = photo
    monkeypatch.chdir(folder)
    _save(folder, "猫.png", pixels)
    result = CliRunner(charset="latin-1").invoke(main, ["compress", "猫.png", "-k", "2"], prog_name="kmq")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("\\u732b.png -> \\u732b.kmq: k=2")
    assert (folder / "猫.kmq").exists()


def test_a_latin1_stdout_gets_ascii_borders(photo, monkeypatch):
    folder, pixels = photo
    monkeypatch.chdir(folder)
    (folder / "in").mkdir()
    _save(folder / "in", "café.png", pixels)
    result = CliRunner(charset="latin-1").invoke(main, ["compress", "in", "-k", "2", "-o", "out/"],
                                                 prog_name="kmq")
    assert result.exit_code == 0, result.output
    assert "café.png -> out/café.kmq" in result.stdout
    assert "+---" in result.stdout and "─" not in result.stdout and "━" not in result.stdout
    help_text = CliRunner(charset="latin-1").invoke(main, ["compress", "--help"], prog_name="kmq")
    assert help_text.exit_code == 0 and "Floyd\\u2013Steinberg" in help_text.stdout


def test_a_long_name_is_folded_in_the_stats_table_not_cut(photo, monkeypatch):
    folder, pixels = photo
    monkeypatch.chdir(folder)
    names = [f"vacation_2026_12_07_beach_sunset_panorama_{x}.png" for x in "ab"]
    for name in names:
        _save(folder, name, pixels)
    result = CliRunner().invoke(main, ["stats", *names, "-k", "2"], env={"COLUMNS": "40"}, prog_name="kmq")
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    # each name's pieces, read down its column, give the whole name
    cells = ["".join(re.split("[|┃│]", line)[2].strip() for line in table.splitlines()[2:6])
             for table in result.stdout.split("\n\n")]
    assert [c.removesuffix("K=2") for c in cells] == names


def test_joiners_are_shown_as_typed_and_bidi_controls_escaped():
    assert _shown("👩\u200d💻 work.png") == "👩\u200d💻 work.png"
    assert _shown("\u0645\u06cc\u200c\u062e.png") == "\u0645\u06cc\u200c\u062e.png"
    assert _shown("rtl\u202eoverride.png") == "rtl\\u202eoverride.png"
    assert _shown("zw\u200bsp.png") == "zw\\u200bsp.png"
    # between ASCII letters a joiner would only hide that two names differ
    assert _shown("a\u200db.png") == "a\\u200db.png" and _shown("\u200d.png") == "\\u200d.png"


def test_usage_errors_show_names_on_one_line(photo, monkeypatch):
    folder, pixels = photo
    monkeypatch.chdir(folder)
    _save(folder, "a.png", pixels)
    _save(folder, "b.png", pixels)
    result = CliRunner().invoke(main, ["compress", "a.png", "b.png", "-o", "out\n\x1b[31mx.kmq"], prog_name="kmq")
    assert result.exit_code == 2
    line = [x for x in result.stderr.splitlines() if x.startswith("Error:")]
    assert line == ["Error: -o out\\n\\x1b[31mx.kmq names a file, but a bulk run writes one file per input into "
                    "a folder; end -o with a slash (out\\n\\x1b[31mx.kmq/) if that is the folder you want"]
    (folder / "pal\nette.gpl").write_text("GIMP Palette\n0 0 0\n")
    result = CliRunner().invoke(main, ["palette", "pal\nette.gpl", "--proportional", "-o", "s.png"],
                                prog_name="kmq")
    assert result.exit_code == 2
    assert "Error: pal\\nette.gpl is a palette file" in result.stderr


def test_a_size_is_one_line(photo, monkeypatch):
    folder, pixels = photo
    monkeypatch.chdir(folder)
    _save(folder, "a.png", pixels)
    result = CliRunner().invoke(main, ["compress", "a.png", "--codec", "ctx", "--max-bytes", "1\nk"],
                                prog_name="kmq")
    assert result.exit_code == 2 and "is not a size" in result.stderr
    assert not (folder / "a.kmq").exists()
    result = CliRunner().invoke(main, ["compress", "a.png", "--codec", "ctx", "--max-bytes", "1 k"],
                                prog_name="kmq")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_chart_names_are_shown_as_lines_are_and_missing_glyphs_said_once(tmp_path, recwarn, suffix):
    pytest.importorskip("matplotlib")
    from kmq import plot, stats

    data = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (6, 9, 3), dtype=np.uint8)).save(data, "PNG")
    names, lacking = plot._names(["rtl\u202eoverride\n.png", "猫猫の.png", "café.png"])
    assert list(names.values()) == ["rtl\\u202eoverride\\n.png", "\\u732b\\u732b\\u306e.png", "café.png"]
    assert lacking == {"猫", "の"}
    records = [{**r, "file": name} for name in ("猫猫の.png", "b.png")
               for r in stats.measure(data.getvalue(), [2, 4])]
    plot.write_chart(records, tmp_path / f"c.{suffix}")
    said = [(str(w.message), w.filename) for w in recwarn]
    assert said == [("the chart's font has no glyph for 2 character(s) of its names: written as \\u306e, "
                     "\\u732b", __file__)]



@pytest.mark.parametrize("term, drawn", [("dumb", False), ("unknown", False), ("xterm-256color", True)])
def test_no_bar_on_a_terminal_that_cannot_move_its_cursor(monkeypatch, term, drawn):
    import sys

    from kmq import cli

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    monkeypatch.setenv("TERM", term)
    with cli._fit_progress(False, "fit", after=0) as bar:
        assert (bar is not None) == drawn


def test_the_stats_table_is_in_the_terminal_s_encoding_and_scripts_formats_in_utf8(photo, monkeypatch):
    folder, pixels = photo
    monkeypatch.chdir(folder)
    _save(folder, "café.png", pixels)
    runner = CliRunner(charset="latin-1")
    table = runner.invoke(main, ["stats", "café.png", "-k", "2"], prog_name="kmq")
    assert table.exit_code == 0 and "café.png" in table.stdout and "+---" in table.stdout
    tsv = runner.invoke(main, ["stats", "café.png", "-k", "2", "--format", "tsv"], prog_name="kmq")
    assert "café.png".encode() in tsv.stdout_bytes


def test_a_stream_is_given_back_as_it_was():
    from kmq.cli import _tolerant

    stream = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    restore = _tolerant(stream)
    assert stream.errors == "backslashreplace"
    restore()
    assert stream.errors == "strict"

    class Odd(io.StringIO):
        encoding = "no-such-codec"

    _tolerant(Odd())()  # an encoding Python does not know: taken as UTF-8, left alone
