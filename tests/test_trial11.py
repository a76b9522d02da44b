"""Fixes from a new user's trial of the CLI: each test is the reported case, with the exact output."""
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from imagefiles import pixels_of

import kmq
from kmq import segment, stats
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
    return (f"Warning: {out}: JPEG is lossy: the pixels written are not exactly the decoded ones (PNG or WebP keep "
            "them)\n")


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


# 6. Every warning names its file, as bulk runs and stats do; a name with a tab or a line break is escaped
# on stderr as TSV escapes it on stdout, so each warning and error stays one line.
FEW = "the image has only 1 distinct colour, fewer than k={k}: using k=1, lossless"


@pytest.mark.parametrize("args, ks", [(["compress", "-q"], [16]), (["montage", "-k", "3", "-o", "m.png", "-q"], [3]),
                                      (["segment", "-k", "3", "-o", "s.png", "-q"], [3]),
                                      (["palette", "-k", "3"], [3])])
def test_single_file_warnings_name_the_file_escaped(runner, tmp_path, monkeypatch, args, ks):
    monkeypatch.chdir(tmp_path)
    name = "flat\tone\nline.png"
    Image.new("RGB", (5, 4), (9, 8, 7)).save(tmp_path / name)
    result = run(runner, args[0], name, *args[1:])
    assert result.exit_code == 0
    assert result.stderr == "".join(f"Warning: flat\\tone\\nline.png: {FEW.format(k=k)}\n" for k in ks)


def test_stdin_warnings_name_stdin(runner, tmp_path):
    Image.new("RGB", (5, 4), (9, 8, 7)).save(tmp_path / "flat.png")
    result = runner.invoke(main, ["compress", "-", "-o", str(tmp_path / "x.kmq"), "-q"],
                           input=(tmp_path / "flat.png").read_bytes())
    assert (result.exit_code, result.stderr) == (0, f"Warning: <stdin>: {FEW.format(k=16)}\n")


def test_errors_escape_the_names_they_give(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (5, 4), (9, 8, 7)).save(tmp_path / "ok.png")
    one = run(runner, "compress", "no\tsuch\n.png")
    assert (one.exit_code, one.stderr) == (1, "Error: no\\tsuch\\n.png: no such file or directory\n")
    bulk = run(runner, "compress", "no\tsuch\n.png", "ok.png", "-o", "out/", "-q")
    assert bulk.exit_code == 1
    assert sorted(bulk.stderr.splitlines()) == ["Error: no\\tsuch\\n.png: no such file or directory",
                                                f"Warning: ok.png: {FEW.format(k=16)}"]
    stats = run(runner, "stats", "no\tsuch\n.png", "ok.png", "--format", "json")
    assert stats.exit_code == 1
    assert stats.stderr == ("Error: no\\tsuch\\n.png: no such file or directory\n"
                            f"Warning: ok.png: {FEW.format(k=16)}\nError: 1 input of 2 failed\n")


# 7. A montage shows each picture once: Ks repeated, or at or above the image's colours, coincide.
@pytest.mark.parametrize("ks, shown, warned, shared", [
    ([], "1", 16, "K = 2, 3, 6 give the same lossless picture as K = 16 (k=1, every colour of the image)"),
    (["-k", "4", "-k", "4"], "1", 4, None), (["-k", "1", "-k", "3"], "1", 3, None)])
def test_montage_of_a_one_colour_image_shows_k_1_once(runner, tmp_path, ks, shown, warned, shared):
    path = tmp_path / "one.png"
    Image.new("RGB", (5, 4), (9, 8, 7)).save(path)
    out = tmp_path / "m.png"
    result = run(runner, "montage", path, *ks, "-o", out)
    assert result.exit_code == 0
    assert result.stderr == f"Warning: {path}: {FEW.format(k=warned)}\n" + (f"Warning: {path}: {shared}\n" if shared
                                                                              else "")
    assert result.stdout == f"{path} -> {out}: original and K = {shown}, 516x279\n"


def test_montage_panels_in_the_order_asked_each_picture_once(rgb_small):
    colours = len(np.unique(rgb_small.reshape(-1, 3), axis=0))
    with pytest.warns(kmq.KmqWarning) as caught:
        figure = segment.montage(rgb_small, [4, 2, 4, colours + 5, 2, colours, 300], seed=0)
    assert [str(w.message) for w in caught] == [
        f"the image has only {colours} distinct colours, fewer than k=300: using k={colours}, lossless",
        f"K = {colours + 5} gives the same lossless picture as K = 300 (k={colours}, every colour of the image)"]
    assert [p.title for p in figure.panels] == ["original", "K = 4", "K = 2", f"K = {colours}"]
    lossless = figure.panels[-1].record
    assert (lossless["k"], lossless["distortion"]) == (colours, 0)
    alone = segment.montage(rgb_small, [4, 2], seed=0)
    assert [p.record for p in alone.panels] == [p.record for p in figure.panels[:3]]


# 8. Messages that say what the option or the output takes.
@pytest.mark.parametrize("command, value", [("compress", "abc"), ("compress", "0"), ("stats", "1.5"),
                                            ("montage", "70000"), ("segment", "-3")])
def test_a_bad_k_says_what_a_k_is(runner, png, command, value):
    result = run(runner, command, png, "-k", value, *([] if command == "stats" else ["-o", png.with_name("o.png")]))
    assert result.exit_code == 2
    assert result.stderr.endswith(f"Error: Invalid value for '-k': '{value}' is not a K: give a whole number "
                                  f"from 1 to 65536\n")


IMAGES = ".png, .webp, .gif, .tiff, .bmp or .jpg"


@pytest.mark.parametrize("command, name, message", [
    ("decompress", "x.kmq", "{out}: .kmq is kmq's own compressed format (kmq compress writes it), not an image "
                            f"format; this writes images: use e.g. {IMAGES}"),
    ("decompress", "noext", "{out}: the name has no extension to choose the image format by; give it one, e.g. "
                            f"{IMAGES}"),
    ("montage", "noext", f"{{out}}: the name has no extension to choose the image format by; give it one, e.g. "
                         f"{IMAGES}"),
    ("palette", "p.xyz", "{out}: '.xyz' names neither a palette file nor an image kmq writes; write .gpl (GIMP), "
                         f".txt, .hex, .json, .pal (JASC) or .act (Photoshop) for a palette file, or e.g. {IMAGES} "
                         "for a swatch"),
    ("palette", "p", "{out}: no extension; write .gpl (GIMP), .txt, .hex, .json, .pal (JASC) or .act (Photoshop) "
                     f"for a palette file, or e.g. {IMAGES} for a swatch")])
def test_output_names_without_a_format_say_which_ones_work(runner, tmp_path, png, kmq_file, command, name,
                                                           message):
    out = tmp_path / "out" / name
    out.parent.mkdir()
    result = run(runner, command, kmq_file if command == "decompress" else png, "-o", out)
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"Error: {message.format(out=out)}\n")
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("command", [["compress", "-", "-o", "{tmp}/x.kmq"], ["stats", "-"],
                                     ["palette", "-"], ["segment", "-", "-o", "{tmp}/s.png"],
                                     ["montage", "-", "-o", "{tmp}/m.png"]])
def test_empty_stdin_says_it_is_empty(runner, tmp_path, command):
    result = runner.invoke(main, [a.format(tmp=tmp_path) for a in command], input=b"")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", "Error: <stdin>: empty (0 bytes): no image "
                                                                       "to read\n")
    assert list(tmp_path.iterdir()) == []


def test_an_empty_pipe_and_an_empty_file_say_so_too(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"junk")
    kmq_cli = [sys.executable, "-m", "kmq", "compress"]
    piped = subprocess.run(f"printf '' | {shlex.join(kmq_cli)} - -o x.kmq", shell=True, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    assert (piped.returncode, piped.stderr) == (1, "Error: <stdin>: empty (0 bytes): no image to read\n")
    files = subprocess.run([*kmq_cli, "empty.png", "junk.png", "-o", "out/"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
    assert files.returncode == 1
    assert sorted(files.stderr.splitlines()) == ["Error: empty.png: empty (0 bytes): no image to read",
                                                 "Error: junk.png: not an image Pillow can read"]
