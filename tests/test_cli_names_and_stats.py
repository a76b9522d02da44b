"""A new user's pass over the CLI (round 12): --help, names in human output, stats over folders, stats rows
per K, the ratio's label."""
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kmq import KmqWarning, stats
from kmq.cli import main
from kmq.codecs import NAMES as CODECS
from kmq.format import image_format

# Six distinct colours, 3 x 2: every K from 6 on is the same lossless record.
SIX = np.array([[[0, 0, 0], [255, 0, 0], [0, 255, 0]], [[0, 0, 255], [255, 255, 0], [255, 255, 255]]], np.uint8)


def run(*args, **kwargs):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="kmq", **kwargs)


@pytest.fixture
def six(tmp_path):
    path = tmp_path / "six.png"
    Image.fromarray(SIX).save(path)
    return path


def test_help_lists_every_command_with_its_whole_summary():
    result = run("--help", terminal_width=80)
    assert result.exit_code == 0
    commands = result.output.split("Commands:\n", 1)[1]
    assert commands == (
        "  compress    Quantize images to K colours, into .kmq files.\n"
        "  decompress  Decode .kmq files back to images.\n"
        "  info        What a .kmq holds: header, codec, J, palette.\n"
        "  montage     An image beside its reconstruction at each K.\n"
        "  palette     The palette of images or .kmq files; fit one for many.\n"
        "  segment     Draw the clusters of images or .kmq files.\n"
        "  stats       Size tables in bits and bytes, J and PSNR, per K.\n")


def test_the_compress_line_says_which_ratio(six, tmp_path):
    # 6 pixels at 3 bits plus 6 RGB entries = 162 bits of 144: 1.12, although the file is 84 bytes.
    result = run("compress", six, "-k", "16")
    assert result.exit_code == 0
    assert re.fullmatch(rf"{re.escape(str(six))} -> {re.escape(str(tmp_path / 'six.kmq'))}: k=6, 3 bits/label, "
                        r"packed/original bits 1\.12, 84 bytes, lossless, \d+\.\d\d s\n", result.stdout)


@pytest.mark.parametrize("name, shown", [
    ("new\nline", "new\\nline"),                     # would split the line in two
    ("esc\x1b[31mred", "esc\\x1b[31mred"),           # would turn the terminal red
    ("tab\tand\\slash", "tab\\tand\\\\slash"),
])
def test_human_lines_escape_names_as_warnings_do(tmp_path, name, shown):
    image = tmp_path / f"{name}.png"
    Image.fromarray(SIX).save(image)
    folder = str(tmp_path)
    result = run("compress", image, "-k", "2")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"{folder}/{shown}.png -> {folder}/{shown}.kmq: k=2, 1 bit/label, ")
    assert result.stdout.count("\n") == 1
    result = run("decompress", tmp_path / f"{name}.kmq")
    assert result.exit_code == 0
    assert re.fullmatch(rf"{re.escape(f'{folder}/{shown}.kmq -> {folder}/{shown}.kmq.png')}: 3x2 PNG, "
                        r"\d+\.\d\d s\n", result.stdout)
    result = run("segment", tmp_path / f"{name}.kmq", "-o", tmp_path / "s.png")
    assert result.stdout == f"{folder}/{shown}.kmq -> {folder}/s.png: overlay, k=2, 3x2\n"
    # An error names it the same way, on one line.
    result = run("compress", image, "-k", "2")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {folder}/{shown}.kmq already exists (use -f to overwrite)\n"


def test_tables_show_a_name_with_brackets_as_it_is(tmp_path, monkeypatch):
    # rich reads "[bold]" in a str as markup: the name lost it.
    monkeypatch.chdir(tmp_path)
    Image.fromarray(SIX).save("[bold]x.png")
    table = run("stats", "[bold]x.png", "-k", "2", env={"COLUMNS": "80"}).stdout
    assert "┃                       ┃ [bold]x.png ┃" in table
    assert run("compress", "[bold]x.png", "-k", "2", "-q").exit_code == 0
    assert run("info", "[bold]x.kmq").stdout.startswith("[bold]x.kmq ")


def test_stats_takes_a_folder_as_compress_does(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    for path in (folder / "a.png", folder / "sub" / "b.png", folder / ".hidden" / "c.png", folder / ".d.png"):
        Image.fromarray(SIX).save(path)
    (folder / "notes.txt").write_text("not an image")
    assert run("compress", folder / "a.png", "-k", "2", "-o", folder / "sub" / "a.kmq").exit_code == 0
    (folder / "sub" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    result = run("stats", folder, "-k", "4", "--format", "tsv")
    assert result.exit_code == 1
    rows = [line.split("\t")[:5] for line in result.stdout.splitlines()[1:]]
    # Sorted as a bulk run finds them; the .kmq keeps its own K (with the warning of a .kmq input).
    assert rows == [[f"{folder}/a.png", "3", "2", "3", "4"], [f"{folder}/sub/a.kmq", "3", "2", "3", "2"],
                    [f"{folder}/sub/b.png", "3", "2", "3", "4"]]
    # Each input's warnings and error as it is met (the warnings used to come after every Error: line).
    assert result.stderr == (f"Warning: {folder}/sub/a.kmq: a .kmq keeps its own K (2); -k 4 does not apply\n"
                             f"Error: {folder}/sub/bad.png: not an image Pillow can read\n"
                             f"Error: 1 input of 4 failed\n")


@pytest.mark.parametrize("fmt, stdout", [("json", "[]\n"), ("tsv", "file\twidth\theight"),
                                         ("csv", "file,width,height")])
def test_stats_of_an_empty_folder_is_an_error(tmp_path, fmt, stdout):
    # The records a script parses are there as when every input failed: [] or the header line.
    (tmp_path / "empty").mkdir()
    result = run("stats", tmp_path / "empty", "--format", fmt)
    assert result.exit_code == 1 and result.stdout.startswith(stdout)
    assert result.stdout.count("\n") == 1
    assert result.stderr == (f"Error: {tmp_path}/empty: no images or .kmq files found (searched recursively; "
                             f"names starting with . are skipped)\n")


def test_stats_gives_one_record_per_k_asked_in_order(six):
    # -k 16 and -k 32 would both be the image's 6 colours, as -k 8 is: its record again, said once; a
    # repeated -k is a repeated record (scripts pair the rows with the Ks they asked for).
    result = run("stats", six, "-k", "2", "-k", "8", "-k", "16", "-k", "8", "-k", "32", "--format", "tsv")
    assert result.exit_code == 0
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [row[4] for row in rows] == ["k", "2", "6", "6", "6", "6"]
    assert rows[2] == rows[3] == rows[4] == rows[5] and rows[2][12] == "0.0"
    assert result.stderr == (
        f"Warning: {six}: the image has only 6 distinct colours, fewer than k=8: using k=6, lossless\n"
        f"Warning: {six}: -k 16, -k 32 give the same lossless record as -k 8 (k=6, every colour of the "
        f"image)\n")


def test_stats_measure_gives_one_record_per_k_asked(six):
    with pytest.warns(KmqWarning) as caught:
        records = stats.measure(six, [16, 2, 7, 16], codec="all")
    assert [str(w.message) for w in caught] == [
        f"{six}: the image has only 6 distinct colours, fewer than k=16: using k=6, lossless",
        f"{six}: -k 7 gives the same lossless record as -k 16 (k=6, every colour of the image)"]
    assert [(r["k"], r["codec"]) for r in records] == [(k, c) for k in (6, 2, 6, 6) for c in CODECS]
    assert records[0] == records[2 * len(CODECS)] and records[0] is not records[2 * len(CODECS)]


def test_stats_keeps_a_smaller_k_asked_after_a_lossless_one(six):
    result = run("stats", six, "-k", "6", "-k", "2", "-k", "7", "--format", "tsv")
    assert [line.split("\t")[4] for line in result.stdout.splitlines()[1:]] == ["6", "2", "6"]
    assert result.stderr == (f"Warning: {six}: -k 7 gives the same lossless record as -k 6 (k=6, every colour "
                             f"of the image)\n")


def test_sweep_stops_at_its_lossless_k_but_not_at_one_asked(six):
    result = run("stats", six, "--sweep", "-k", "300", "--format", "tsv")
    assert [line.split("\t")[4] for line in result.stdout.splitlines()[1:]] == ["2", "4", "6", "6"]
    assert result.stderr.endswith(f"Warning: {six}: -k 300 gives the same lossless record as -k 8 (k=6, every "
                                  f"colour of the image)\n")


def test_a_byte_budget_out_of_reach_names_the_file(six, tmp_path):
    result = run("compress", six, "--codec", "ctx", "--max-bytes", "10", "-o", tmp_path / "x.kmq")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {six}: no .kmq file of this image fits in 10 bytes: ")
    assert not (tmp_path / "x.kmq").exists()


def test_info_and_decompress_of_an_image_say_what_takes_images(six, tmp_path):
    result = run("info", six)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {six}: not a .kmq file: bad magic 89 50 4e 47 (it is a PNG image: kmq stats "
                             f"and kmq palette take images)\n")
    result = run("decompress", six)
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {six}: not a .kmq file: bad magic 89 50 4e 47 (it is a PNG image: kmq "
                             f"compress takes images)\n")
    assert not (tmp_path / "six.png.png").exists()


def test_a_damaged_kmq_is_not_called_an_image(six, tmp_path):
    # kmq's own Pillow plugin opens a .kmq whose checksum fails: it must not be "a KMQ image".
    assert run("compress", six, "-k", "2", "-q").exit_code == 0
    data = bytearray((tmp_path / "six.kmq").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "six.kmq").write_bytes(bytes(data))
    result = run("info", tmp_path / "six.kmq")
    assert result.exit_code == 1
    assert re.fullmatch(rf"Error: {re.escape(str(tmp_path / 'six.kmq'))}: checksum mismatch: stored 0x[0-9A-F]{{8}}, "
                        r"computed 0x[0-9A-F]{8}\n", result.stderr)


def _png_header(width: int, height: int) -> bytes:
    """A PNG of only its signature, IHDR and IEND: Pillow opens it (and warns of a decompression bomb when
    it is large) without pixels to decode."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("head, name", [
    (b"\x89PNG\r\n\x1a\n\0\0", "PNG"), (b"\xff\xd8\xff\xe0\0\x10JFIF", "JPEG"), (b"GIF89a\x01\0", "GIF"),
    (b"RIFF\x10\0\0\0WEBPVP8L", "WEBP"), (b"BM\x36\0\0\0", "BMP"), (b"II*\0\x08\0\0\0", "TIFF"),
    (b"MM\0*\0\0\0\x08", "TIFF"), (b"RIFF\x10\0\0\0WAVEfmt ", None), (b"\x89KMQ", None), (b"", None),
    (b"# notes", None)])
def test_an_image_is_named_from_its_first_bytes(head, name):
    assert image_format(head) == name


def test_info_of_an_image_says_so_without_opening_it_again(tmp_path):
    # Pillow opened the path a second time: a large image's header made it warn of a decompression bomb.
    (tmp_path / "big.png").write_bytes(_png_header(10000, 10000))
    result = run("info", tmp_path / "big.png")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {tmp_path}/big.png: not a .kmq file: bad magic 89 50 4e 47 (it is a PNG "
                             f"image: kmq stats and kmq palette take images)\n")
    # Stdin's bytes are named too (there was no path to open again).
    result = run("info", "-", input=(tmp_path / "big.png").read_bytes())
    assert result.stderr.endswith("(it is a PNG image: kmq stats and kmq palette take images)\n")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_info_of_an_image_in_a_named_pipe_does_not_wait_for_ever(six, tmp_path):
    # A second open of the pipe, once its writer is gone, waits for another writer: kmq hung there.
    fifo = tmp_path / "ff"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "wb") as f:
            f.write(six.read_bytes())

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    result = subprocess.run([sys.executable, "-m", "kmq", "info", str(fifo)], capture_output=True, text=True,
                            timeout=60)
    writer.join()
    assert result.returncode == 1
    assert result.stderr == (f"Error: {fifo}: not a .kmq file: bad magic 89 50 4e 47 (it is a PNG image: kmq "
                             f"stats and kmq palette take images)\n")


def test_bulk_decompress_of_images_says_what_takes_them(six, tmp_path):
    (tmp_path / "noise.png").write_bytes(six.read_bytes())
    result = run("decompress", six, tmp_path / "noise.png", "-o", f"{tmp_path}/outd/", "-q", "-j", "1")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:2] == [
        f"Error: {name}: not a .kmq file: bad magic 89 50 4e 47 (it is a PNG image: kmq compress takes images)"
        for name in (six, tmp_path / "noise.png")]


def test_an_empty_folder_among_stats_inputs_says_what_it_lacks(six, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("stats", tmp_path / "empty", six, "-k", "2", "--format", "tsv")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 2
    assert result.stderr == f"Warning: {tmp_path}/empty: no images or .kmq files in this folder\n"


def test_stats_with_a_folder_keeps_every_input_as_given(six, tmp_path):
    # A file given twice is reported twice, as without a folder; so is a folder given twice.
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.png").write_bytes(six.read_bytes())
    result = run("stats", six, six, tmp_path / "d", tmp_path / "d", "-k", "2", "--format", "tsv")
    assert result.exit_code == 0
    assert [line.split("\t")[0] for line in result.stdout.splitlines()[1:]] == [
        str(six), str(six), f"{tmp_path}/d/a.png", f"{tmp_path}/d/a.png"]


def test_stats_reads_stdin_once_with_a_folder_too(six, tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    walked = []
    monkeypatch.setattr("kmq.batch._files_in", lambda folder, wanted: walked.append(folder) or [])
    result = run("stats", "-", "-", tmp_path / "d", input=six.read_bytes())
    assert result.exit_code == 2 and "stdin (-) can be read only once" in result.stderr
    assert walked == []  # refused before the folder is walked


@pytest.mark.parametrize("char, shown", [("\u202e", "\\u202e"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"),
                                         ("\u200b", "\\u200b"), ("\U000e0001", "\\U000e0001"), ("é", "é")])
def test_human_lines_escape_invisible_format_characters(tmp_path, char, shown):
    result = run("stats", tmp_path / f"a{char}b.png")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {tmp_path}/a{shown}b.png: no such file or directory\n"


def test_an_empty_folder_is_named_as_given_as_the_error_names_it(six, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("stats", f"{tmp_path}/empty/", six, "-k", "2", "--format", "tsv")
    assert result.stderr == f"Warning: {tmp_path}/empty/: no images or .kmq files in this folder\n"
