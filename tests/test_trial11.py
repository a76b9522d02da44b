"""Fixes from a new user's trial of the CLI: each test is the reported case, with the exact output."""
import numpy as np
import pytest
from PIL import Image
from imagefiles import pixels_of

import kmq
from kmq import stats
from kmq.cli import main


def run(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False)


# 1. A script reading json, tsv or csv gets valid output even when every input fails.
HEADER_TSV = "\t".join(stats.FIELDS) + "\n"
HEADER_CSV = ",".join(stats.FIELDS) + "\n"


@pytest.mark.parametrize("fmt, empty", [("json", "[]\n"), ("tsv", HEADER_TSV), ("csv", HEADER_CSV),
                                        ("table", "")])
def test_stats_with_every_input_failed_prints_empty_records(runner, tmp_path, fmt, empty):
    (tmp_path / "bad.kmq").write_bytes(b"garbage\n")
    bad, missing = tmp_path / "bad.kmq", tmp_path / "nope.kmq"
    result = run(runner, "stats", bad, missing, "--format", fmt)
    assert result.exit_code == 1
    assert result.stdout == empty
    assert result.stderr == (f"Error: {bad}: not a .kmq file: bad magic 67 61 72 62\n"
                             f"Error: {missing}: no such file or directory\n"
                             f"Error: 2 inputs of 2 failed\n")
    one = run(runner, "stats", bad, "--format", fmt)
    assert one.exit_code == 1
    assert one.stdout == empty
    assert one.stderr == f"Error: {bad}: not a .kmq file: bad magic 67 61 72 62\n"


# 2. A folder holding nothing to do is a mistaken path, not a run of "0 of 0" files.
@pytest.mark.parametrize("command, kind", [("compress", "images"), ("decompress", ".kmq files")])
@pytest.mark.parametrize("summary", [[], ["--summary", "json"]])
def test_bulk_run_over_an_empty_folder_is_an_error(runner, tmp_path, command, kind, summary):
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "emptydir" / "notes.txt").write_text("neither an image nor a .kmq")
    folder = f"{tmp_path / 'emptydir'}/"
    result = run(runner, command, folder, *summary)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (f"Error: {folder}: no {kind} found (searched recursively; names starting with . "
                             f"are skipped)\n")
    assert sorted(p.name for p in (tmp_path / "emptydir").iterdir()) == ["notes.txt"]


# 3. Every image kmq writes in a lossy format says so, in the words decompress uses.
def lossy(out):
    return f"Warning: {out}: JPEG is lossy: the pixels written are not exactly the decoded ones (PNG or WebP keep them)\n"


def test_segment_montage_and_swatch_to_jpeg_warn_as_decompress_does(runner, tmp_path, png, kmq_file):
    out = tmp_path / "x.jpg"
    decompressed = run(runner, "decompress", kmq_file, "-o", out, "-q")
    assert (decompressed.exit_code, decompressed.stderr) == (0, lossy(out))
    for args in (["segment", png, "-k", "4", "--style", "mean"], ["montage", png, "-k", "2"],
                 ["palette", kmq_file]):
        result = run(runner, *args, "-o", out, "-f", "-q")
        assert (result.exit_code, result.stderr) == (0, lossy(out)), args
    png_out = run(runner, "segment", png, "-k", "4", "--style", "mean", "-o", tmp_path / "m.png", "-q")
    assert (png_out.exit_code, png_out.stderr) == (0, "")


# 4. --truecolor cannot make a GIF anything but a palette image: said, and the exact pixels written.
def test_truecolor_gif_warns_and_keeps_the_pixels(runner, tmp_path, kmq_file):
    out = tmp_path / "x.gif"
    result = run(runner, "decompress", kmq_file, "--truecolor", "-o", out, "-q")
    assert (result.exit_code, result.stderr) == (
        0, f"Warning: {out}: --truecolor does not apply to GIF, which is always a palette image\n")
    np.testing.assert_array_equal(pixels_of(out), kmq.read(kmq_file).decode())
    plain = run(runner, "decompress", kmq_file, "-o", tmp_path / "y.gif", "-q")
    assert (plain.exit_code, plain.stderr) == (0, "")
    assert (tmp_path / "y.gif").read_bytes() == out.read_bytes()


# 5. --format is obeyed, but an extension naming another format is said.
@pytest.mark.parametrize("name, fmt, warning", [
    ("out.png", "webp", "{out}: written as WEBP, as asked, though its extension .png says PNG"),
    ("out.jpeg", "jpg", None), ("out.TIF", "tiff", None), ("out.bin", "png", None)])
def test_decompress_format_against_the_extension(runner, tmp_path, kmq_file, name, fmt, warning):
    out = tmp_path / name
    result = run(runner, "decompress", kmq_file, "-o", out, "--format", fmt, "-q")
    lossy = "" if fmt not in ("jpg",) else (f"Warning: {out}: JPEG is lossy: the pixels written are not exactly "
                                            f"the decoded ones (PNG or WebP keep them)\n")
    assert (result.exit_code, result.stderr) == (
        0, lossy + ("" if warning is None else f"Warning: {warning.format(out=out)}\n"))
    with Image.open(out) as im:
        assert im.format == kmq.imageio.writable_format(fmt)
