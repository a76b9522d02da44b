"""Defects a new user found in round 18, each with the test that failed before its fix."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmq
from kmq.cli import main


@pytest.fixture(scope="module")
def tall(tmp_path_factory):
    """A 1 x 70000 image's .kmq: taller than GIF, TGA, JPEG or WebP can hold."""
    folder = tmp_path_factory.mktemp("tall")
    pixels = np.zeros((70000, 1, 3), np.uint8)
    pixels[::2] = 200
    kmq.write(folder / "tall.kmq", kmq.compress(pixels, 2))
    return folder / "tall.kmq"


@pytest.mark.parametrize("suffix, fmt, most", [(".gif", "GIF", "65,535"), (".tga", "TGA", "65,535"),
                                               (".jpg", "JPEG", "65,500"), (".webp", "WEBP", "16,383")])
def test_a_size_the_format_cannot_hold_is_one_error_line(tall, tmp_path, suffix, fmt, most):
    # GIF and TGA were an OverflowError traceback, JPEG libjpeg's own line and then "broken data stream".
    out = tmp_path / f"o{suffix}"
    result = CliRunner().invoke(main, ["decompress", str(tall), "-o", str(out)])
    assert (result.exit_code, result.output) == (
        1, f"Error: {out}: {fmt} holds at most {most} pixels a side, not 1x70000; use e.g. PNG or TIFF\n")
    assert os.listdir(tmp_path) == []


def test_a_segment_picture_too_tall_for_its_format_is_one_error_line(tall, tmp_path):
    out = tmp_path / "seg.gif"
    result = CliRunner().invoke(main, ["segment", str(tall), "-o", str(out)])
    assert result.exit_code == 1 and result.output.endswith("GIF holds at most 65,535 pixels a side, not 1x70000; "
                                                            "use e.g. PNG or TIFF\n")
    assert os.listdir(tmp_path) == []


def _kmq(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kmq", *args], capture_output=True, timeout=timeout)


@pytest.mark.parametrize("fmt", ["tif", "pdf", "jp2"])
def test_formats_that_seek_go_whole_into_a_pipe(tmp_path, fmt):
    # A pipe cannot seek: TIFF was "cannot write to stdout: illegal seek", PDF "invalid argument", JPEG 2000 a
    # traceback.
    pixels = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    kmq.write(tmp_path / "a.kmq", kmq.compress(pixels, 4))
    done = _kmq("decompress", str(tmp_path / "a.kmq"), "-o", "-", "--format", fmt)
    assert done.returncode == 0, done.stderr
    if fmt == "pdf":  # Pillow writes PDF but does not read it
        assert done.stdout.startswith(b"%PDF") and done.stdout.rstrip().endswith(b"%%EOF")
        return
    assert Image.open(io.BytesIO(done.stdout)).size == (40, 30)
    if fmt == "tif":  # lossless: the very pixels
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(done.stdout))), kmq.read(tmp_path / "a.kmq").decode())


def test_a_write_that_fails_leaves_nothing_in_the_pipe(tall):
    # PCX wrote its 128-byte header into the pipe, then failed.
    done = _kmq("decompress", str(tall), "-o", "-", "--format", "pcx")
    assert (done.returncode, done.stdout) == (1, b"")
    assert done.stderr.decode() == "Error: <stdout>: PCX holds at most 65,535 pixels a side, not 1x70000; use e.g. " \
                                   "PNG or TIFF\n"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
@pytest.mark.parametrize("command, pipes", [
    (["decompress", "{d}", "-o", "{o}/"], ["p.kmq"]),
    (["compress", "{d}", "-k", "2", "-o", "{o}/"], ["q.png"]),  # a folder's .kmq files are not compress inputs
    (["stats", "{d}", "-k", "2"], ["p.kmq", "q.png"]),
])
def test_a_named_pipe_in_a_folder_is_skipped_not_waited_on(tmp_path, command, pipes):
    # os.walk lists a FIFO with the files: opening it waited for a writer forever.
    folder = tmp_path / "in"
    folder.mkdir()
    pixels = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "a.png")
    kmq.write(folder / "b.kmq", kmq.compress(pixels, 2))
    os.mkfifo(folder / "p.kmq")
    os.mkfifo(folder / "q.png")
    done = _kmq(*(a.format(d=folder, o=tmp_path / "out") for a in command), "-q", timeout=60)
    assert done.returncode == 0, done.stderr
    for name in pipes:
        assert f"Warning: {folder / name}: skipped, a named pipe, not a file\n" in done.stderr.decode()


def test_a_file_named_beside_a_folder_keeps_its_spelling_in_stats(tmp_path, monkeypatch):
    # ./a.png became a.png once a folder was among the inputs; alone, it stayed ./a.png.
    monkeypatch.chdir(tmp_path)
    pixels = np.random.default_rng(2).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(pixels).save("a.png")
    os.mkdir("more")
    Image.fromarray(pixels).save("more/b.png")
    result = CliRunner().invoke(main, ["stats", "./a.png", "more", "-k", "2", "--format", "tsv"])
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["file", "./a.png", "more/b.png"]


def test_a_kmq_on_stdin_is_named_once_and_a_seed_it_ignores_is_said(tmp_path):
    data = kmq.compress(np.random.default_rng(3).integers(0, 256, (6, 5, 3), dtype=np.uint8), 4).to_bytes()
    (tmp_path / "a.kmq").write_bytes(data)
    result = CliRunner().invoke(main, ["stats", "-", "-k", "2"], input=data)
    assert result.stderr == "Warning: <stdin>: a .kmq keeps its own K (4); -k 2 does not apply\n"  # was "<stdin>: -: "
    result = CliRunner().invoke(main, ["stats", str(tmp_path / "a.kmq"), "--seed", "3"])
    assert result.stderr == f"Warning: {tmp_path / 'a.kmq'}: a .kmq is used as stored; --seed 3 does not apply\n"
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "a.kmq"), "--seed", "3", "-o",
                                       str(tmp_path / "s.png"), "-q"])
    assert result.stderr == f"Warning: {tmp_path / 'a.kmq'}: a .kmq is used as stored; --seed 3 does not apply\n"
