"""Untrusted input and safe output: atomic writes, no clobbering, pipes, malformed .kmq files and odd images.

Every failure must be one line `Error: ...` with exit code 1, leave no output and no temporary file behind.
"""
import errno
import io
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageFile

from conftest import traced_peak
from imagefiles import pixels_of

import kmq
from kmq import fileio
from kmq.cli import main
from kmq.format import MAGIC, KmqImage

ROOT = Path(__file__).resolve().parent.parent
KMQ = [sys.executable, "-m", "kmq"]


@pytest.fixture
def runner():
    return CliRunner()


def run(runner, *args, **kwargs):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)


def leftovers(folder: Path) -> list[str]:
    """Temporary files write_atomic may have left in folder."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp"))


@pytest.fixture
def png(tmp_path, rgb_small):
    path = tmp_path / "a.png"
    Image.fromarray(rgb_small).save(path)
    return path


@pytest.fixture
def kmq_file(tmp_path, rgb_small):
    path = tmp_path / "a.kmq"
    kmq.write(path, kmq.compress(rgb_small, k=4))
    return path


# --------------------------------------------------------------------------------------------------
# atomic writes


def test_a_writer_that_fails_leaves_nothing(tmp_path):
    def writer(f):
        f.write(b"half")
        raise RuntimeError("bug in the writer")

    with pytest.raises(RuntimeError, match="bug in the writer"):
        fileio.write_atomic(tmp_path / "out.png", writer)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_a_write_leaves_nothing(tmp_path):
    def writer(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fileio.write_atomic(tmp_path / "out.png", writer)
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_keeps_the_file_it_would_have_replaced(tmp_path):
    target = tmp_path / "out.kmq"
    target.write_bytes(b"old")

    def writer(f):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fileio.write_atomic(target, writer, overwrite=True)
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


@pytest.mark.parametrize("step", ["fsync", "link", "replace"])
def test_a_full_disk_at_any_step_is_a_clean_error(tmp_path, monkeypatch, step):
    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, step, full)
    with pytest.raises(kmq.KmqError, match=f"^cannot write {tmp_path / 'out.kmq'}: no space left on device$"):
        fileio.write_atomic(tmp_path / "out.kmq", b"data", overwrite=step == "replace")
    assert list(tmp_path.iterdir()) == []


def test_permission_denied_is_a_clean_error(tmp_path, monkeypatch):
    # As root chmod cannot deny anything, so the refusal is simulated where it would happen: creating the file.
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(fileio.tempfile, "mkstemp", denied)
    with pytest.raises(kmq.KmqError, match=f"^cannot write {tmp_path / 'out.kmq'}: permission denied$"):
        fileio.write_atomic(tmp_path / "out.kmq", b"data")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_a_read_only_folder_is_a_clean_error(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(kmq.KmqError, match="permission denied"):
            fileio.write_atomic(folder / "out.kmq", b"data")
    finally:
        folder.chmod(0o700)


def test_a_missing_folder_is_a_clean_error(tmp_path):
    with pytest.raises(kmq.KmqError, match=f"^cannot write {tmp_path / 'no' / 'out.kmq'}: no such file or direc"):
        fileio.write_atomic(tmp_path / "no" / "out.kmq", b"data")


def test_a_target_that_appears_during_the_write_is_not_clobbered(tmp_path):
    target = tmp_path / "out.kmq"

    def writer(f):
        target.write_bytes(b"someone else's")  # another process, between our check and our rename
        f.write(b"ours")

    with pytest.raises(kmq.KmqError, match="already exists"):
        fileio.write_atomic(target, writer)
    assert target.read_bytes() == b"someone else's" and leftovers(tmp_path) == []


def test_a_dangling_symlink_is_not_replaced(tmp_path):
    (tmp_path / "link.kmq").symlink_to(tmp_path / "nowhere")
    with pytest.raises(kmq.KmqError, match="already exists"):
        fileio.write_atomic(tmp_path / "link.kmq", b"data")
    assert os.readlink(tmp_path / "link.kmq") == str(tmp_path / "nowhere")


def test_the_new_file_has_the_usual_permissions(tmp_path):
    fileio.write_atomic(tmp_path / "out.kmq", b"data")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "out.kmq").stat().st_mode & 0o777 == 0o666 & ~mask


def test_dev_full_is_a_clean_error():
    with pytest.raises(kmq.KmqError, match="^cannot write /dev/full: no space left on device$"):
        fileio.write_atomic("/dev/full", b"x" * 100_000)


# --------------------------------------------------------------------------------------------------
# no clobbering, for every command that writes


def _writers(png, kmq_file, out):
    """An invocation of each command that writes a file, writing to out."""
    return {"compress": ["compress", png, "-k", "3", "-o", out],
            "decompress": ["decompress", kmq_file, "-o", out],
            "segment": ["segment", png, "-k", "3", "-o", out],
            "montage": ["montage", png, "-k", "2", "-o", out],
            "palette": ["palette", png, "-k", "3", "-o", out],
            "stats": ["stats", png, "-k", "3", "--format", "json", "--plot", out]}


def test_every_command_that_writes_is_covered(png, kmq_file, tmp_path):
    writers = {name for name, command in main.commands.items()
               if any("--force" in p.opts for p in command.params)}
    assert writers <= set(_writers(png, kmq_file, tmp_path / "x")), "add the new command to _writers"


@pytest.mark.parametrize("command", ["compress", "decompress", "segment", "montage", "palette", "stats"])
def test_no_command_replaces_a_file_without_force(runner, png, kmq_file, tmp_path, command):
    if command not in main.commands:
        pytest.skip(f"no {command} command")
    out = tmp_path / ("out.kmq" if command == "compress" else "out.png")
    out.write_bytes(b"keep me")
    args = _writers(png, kmq_file, out)[command]
    result = run(runner, *args, "-q")
    assert (result.exit_code, result.output) == (1, f"Error: {out} already exists (use -f to overwrite)\n")
    assert out.read_bytes() == b"keep me" and leftovers(tmp_path) == []
    result = run(runner, *args, "-q", "-f")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() != b"keep me" and leftovers(tmp_path) == []


def test_compress_from_stdin_does_not_replace_either(runner, png, tmp_path):
    out = tmp_path / "out.kmq"
    out.write_bytes(b"keep me")
    result = run(runner, "compress", "-", "-o", out, "-q", input=png.read_bytes())
    assert result.exit_code == 1 and out.read_bytes() == b"keep me"


def test_an_output_that_is_a_folder(runner, kmq_file, tmp_path):
    (tmp_path / "d.png").mkdir()
    result = run(runner, "decompress", kmq_file, "-o", tmp_path / "d.png", "-f")
    assert (result.exit_code, result.output) == (
        1, f"Error: {tmp_path / 'd.png'} is a folder: to write into it, end -o with a slash ({tmp_path / 'd.png'}/)\n")


def test_a_failed_write_leaves_no_output(runner, kmq_file, tmp_path, monkeypatch):
    def broken(palette, labels, target, *, format, truecolor, name, in_order):
        target.write(b"\x89PNG half")
        raise kmq.KmqError("disk on fire")

    monkeypatch.setattr("kmq.api.save_quantized", broken)
    result = run(runner, "decompress", kmq_file, "-o", tmp_path / "x.png")
    assert (result.exit_code, result.output) == (1, "Error: disk on fire\n")
    assert not (tmp_path / "x.png").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("args", [["compress", "{png}", "-o", "/dev/full"],
                                  ["decompress", "{kmq}", "-o", "/dev/full", "--format", "PNG"]])
def test_writing_to_dev_full(runner, png, kmq_file, args):
    args = [a.format(png=png, kmq=kmq_file) for a in args]
    result = run(runner, *args, "-q")
    assert (result.exit_code, result.output) == (1, "Error: cannot write /dev/full: no space left on device\n")


# --------------------------------------------------------------------------------------------------
# pipes (real ones: a subprocess per command)


def kmq_run(*args, **kwargs):
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kwargs}
    return subprocess.run([*KMQ, *map(str, args)], timeout=60, **streams)


def test_compress_and_decompress_through_a_pipe(png, tmp_path):
    with open(png, "rb") as stdin:
        first = subprocess.Popen([*KMQ, "compress", "-", "-k", "8", "-o", "-"], stdin=stdin,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        second = subprocess.run([*KMQ, "decompress", "-", "-o", "-"], stdin=first.stdout, capture_output=True,
                                timeout=60)
    first.stdout.close()
    assert first.wait(timeout=60) == 0 and second.returncode == 0
    assert first.stderr.read().decode().startswith("- -> -: k=8, 3 bits/label")
    assert second.stderr.decode().startswith("- -> -: 11x13 PNG")
    (tmp_path / "b.png").write_bytes(second.stdout)
    expected = kmq.compress(png, k=8).decode()
    np.testing.assert_array_equal(pixels_of(tmp_path / "b.png"), expected)


def test_compress_to_stdout_keeps_messages_on_stderr(png):
    out = kmq_run("compress", png, "-k", "4", "-o", "-")
    assert out.returncode == 0 and out.stdout.startswith(MAGIC)
    assert KmqImage.from_bytes(out.stdout).k == 4
    assert out.stderr.decode().startswith(f"{png} -> -: k=4")


def test_decompress_to_stdout_in_another_format(kmq_file):
    out = kmq_run("decompress", kmq_file, "-o", "-", "--format", "bmp", "-q")
    assert out.returncode == 0 and out.stdout.startswith(b"BM") and out.stderr == b""


@pytest.mark.parametrize("args", [["compress", "{png}", "-o", "-"], ["decompress", "{kmq}", "-o", "-"],
                                  ["stats", "{kmq}"], ["stats", "{kmq}", "--format", "json"]])
def test_stdout_on_a_full_disk(png, kmq_file, args):
    with open("/dev/full", "wb") as full:
        out = kmq_run(*[a.format(png=png, kmq=kmq_file) for a in args], stdout=full, stderr=subprocess.PIPE)
    assert out.returncode == 1
    assert out.stderr.decode().splitlines()[-1] == "Error: cannot write to stdout: no space left on device"
    assert "Traceback" not in out.stderr.decode() and "Exception ignored" not in out.stderr.decode()


def test_a_reader_that_goes_away(tmp_path):
    big = tmp_path / "big.kmq"  # its BMP, 270 kB, is more than a pipe holds
    kmq.write(big, KmqImage(np.array([[0, 0, 0], [255, 255, 255]], np.uint8), np.zeros((300, 300), np.uint16)))
    reader = subprocess.Popen(["head", "-c", "10"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    out = kmq_run("decompress", big, "-o", "-", "--format", "BMP", stdout=reader.stdin)
    reader.stdin.close()
    reader.wait(timeout=10)
    # As a Unix tool: killed by SIGPIPE (the shell shows 141), nothing said.
    assert out.returncode == -signal.SIGPIPE and out.stderr == b""


# --------------------------------------------------------------------------------------------------
# malformed .kmq files, for every command that reads them


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _parts(good: bytes) -> str:
    """Where a file's expected size comes from, as the size errors say it."""
    h = kmq.format.parse_header(good)
    return (f"(header 32 + palette {h.k * h.channels} + metadata {h.meta_len} + payload {h.payload_len} + "
            f"checksum 4)")


def _malformed(good: bytes) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, the exact error message)."""
    flipped = bytearray(good)
    flipped[40] ^= 0x08
    forged = bytearray(good[:-4])
    struct.pack_into("<I", forged, 8, 1 << 20)  # width: 2**20 x 13 pixels, and the CRC made right
    return {
        "empty": (b"", "not a .kmq file: empty file"),
        "random": (bytes(range(7, 107)), "not a .kmq file: bad magic 07 08 09 0a"),
        "magic+noise": (MAGIC + bytes(28), "unsupported .kmq version 0 (this kmq reads version 1)"),
        "truncated": (good[:-9], f"truncated file: expected {len(good)} bytes {_parts(good)}, got {len(good) - 9}"),
        "trailing": (good + b"junk", f"trailing bytes: expected {len(good)} bytes {_parts(good)}, got {len(good) + 4}"),
        "bit flip": (bytes(flipped), "checksum mismatch: stored 0x"),
        "forged size": (_with_crc(bytes(forged)), "raw labels: expected 3407872 bytes for 1048576x13 at 2 bits"),
    }


_READERS = {"decompress": ["-o", "{out}"], "stats": [], "info": [], "segment": ["-o", "{out}"], "palette": []}

@pytest.mark.parametrize("command", sorted(_READERS))
@pytest.mark.parametrize("case", ["empty", "random", "magic+noise", "truncated", "trailing", "bit flip",
                                  "forged size"])
def test_a_malformed_kmq_is_one_clean_line(runner, kmq_file, tmp_path, command, case):
    if command not in main.commands:
        pytest.skip(f"no {command} command")
    data, message = _malformed(kmq_file.read_bytes())[case]
    bad = tmp_path / "bad.kmq"
    # Even the commands that also take images: a file named .kmq is held to be one.
    message = f"{bad}: {message}"
    bad.write_bytes(data)
    out = tmp_path / "out.png"
    extra = [a.format(out=out) for a in _READERS[command]]
    started = time.perf_counter()
    result = run(runner, command, bad, *extra)
    # Not a speed goal (those are the bench's): a guard against a forged size that makes kmq read or allocate
    # gigabytes before refusing, which takes tens of seconds; generous for a loaded CI machine (~0.05 s here).
    assert time.perf_counter() - started < 5
    assert result.exit_code == 1
    assert result.stdout == "" and result.stderr.startswith(f"Error: {message}") and result.stderr.count("\n") == 1
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("command", ["decompress", "stats"])
def test_an_endless_input_is_refused_at_once(command, tmp_path):
    out = kmq_run(command, "/dev/zero", *(["-o", tmp_path / "z.png"] if command == "decompress" else []))
    message = "/dev/zero: " + ("not a .kmq file: bad magic 00 00 00 00" if command == "decompress" else
                               "not an image Pillow can read")
    assert (out.returncode, out.stderr.decode()) == (1, f"Error: {message}\n")


@pytest.mark.parametrize("command", ["decompress", "stats"])
def test_a_valid_header_then_an_endless_pipe(command, kmq_file):
    # Nothing tells a pipe's length: the reader must stop one byte after the declared size.
    child = subprocess.Popen([*KMQ, command, "-", *(["-o", "-"] if command == "decompress" else [])],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    good = kmq_file.read_bytes()
    try:
        child.stdin.write(good)
        while True:
            child.stdin.write(bytes(1 << 16))
    except BrokenPipeError:
        pass
    assert child.wait(timeout=30) == 1
    expected = f"Error: <stdin>: trailing bytes: expected {len(good)} bytes {_parts(good)}, got more\n"
    assert (child.stdout.read(), child.stderr.read().decode()) == (b"", expected)


def test_a_forged_payload_length_is_refused_before_reading(kmq_file):
    data = bytearray(kmq_file.read_bytes())
    struct.pack_into("<Q", data, 24, 1 << 60)
    out = kmq_run("decompress", "-", "-o", "-", input=bytes(data[:32]))
    assert out.returncode == 1
    assert out.stderr.decode() == "Error: <stdin>: header: payload_len is 1152921504606846976, must be 0 to 66108\n"


def test_the_pixel_limit_applies_to_kmq_files(runner, kmq_file, tmp_path):
    result = run(runner, "decompress", kmq_file, "-o", tmp_path / "x.png", "--max-pixels", "100")
    assert (result.exit_code, result.output) == (
        1, f"Error: {kmq_file}: image of 11x13 = 143 pixels exceeds the limit of 100 pixels (raise it with "
           "--max-pixels)\n")
    assert run(runner, "decompress", kmq_file, "-o", tmp_path / "x.png", "--max-pixels", "143").exit_code == 0


@pytest.mark.parametrize("meta, message", [
    (b"[" * 60000, "metadata nests 60000 levels deep (at most 64)"),
    (b'{"distortion":' + b"9" * 400 + b"}", "metadata: distortion must be a finite number >= 0, got 99999"),
    (b'{"distortion":-1}', "metadata: distortion must be a finite number >= 0, got -1"),
    (b'{"distortion":true}', "metadata: distortion must be a finite number >= 0, got true"),
])
def test_metadata_that_used_to_escape_as_another_exception(runner, tmp_path, meta, message):
    body = struct.pack("<4sBBBBIIIIQ", MAGIC, 1, 1, 0, 0, 1, 1, 1, len(meta), 0) + b"\x00" + meta
    (tmp_path / "m.kmq").write_bytes(_with_crc(body))
    result = run(runner, "stats", tmp_path / "m.kmq")
    assert result.exit_code == 1 and result.output.startswith(f"Error: {tmp_path / 'm.kmq'}: {message}")


# --------------------------------------------------------------------------------------------------
# images: each a correct result or one clean line


def _truncated(path: Path, fmt: str, rgb: np.ndarray) -> None:
    Image.fromarray(np.tile(rgb, (8, 8, 1))).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


@pytest.mark.parametrize("name, make, message", [
    ("notes.png", lambda p, rgb: p.write_text("hello"), "{p}: not an image Pillow can read"),
    ("cut.png", lambda p, rgb: _truncated(p, "PNG", rgb), "{p}: cannot read image: image file is truncated"),
    ("cut.jpg", lambda p, rgb: _truncated(p, "JPEG", rgb), "{p}: cannot read image: image file is truncated"),
    ("empty.png", lambda p, rgb: p.write_bytes(b""), "{p}: empty (0 bytes): no image to read"),
    ("folder.png", lambda p, rgb: p.mkdir(), "{p}: is a directory"),
    ("missing.png", lambda p, rgb: None, "{p}: no such file or directory"),
])
def test_a_bad_image_is_one_clean_line(runner, tmp_path, rgb_small, name, make, message):
    path = tmp_path / name
    make(path, rgb_small)
    out = tmp_path / "out.kmq"
    # compress and stats take a folder of images (and do nothing with an empty one: an error of its own).
    if path.is_dir():
        message = "{p}: no images or .kmq files found (searched recursively; names starting with . are skipped)"
    commands = [["stats", path]] if path.is_dir() else [["compress", path, "-o", out], ["stats", path]]
    for command in commands:
        result = run(runner, *command)
        assert result.exit_code == 1 and result.stdout == ""
        assert result.stderr.startswith("Error: " + message.format(p=path)) and result.stderr.count("\n") == 1
    assert not out.exists()


def test_an_unreadable_image(runner, tmp_path, png, monkeypatch):
    if os.geteuid() != 0:
        png.chmod(0)
    else:  # root reads anything: simulate the refusal where the file is opened
        real_open = Image.open

        def denied(fp, *args, **kwargs):
            if str(fp) == str(png):
                raise PermissionError(errno.EACCES, "Permission denied", str(png))
            return real_open(fp, *args, **kwargs)

        monkeypatch.setattr(Image, "open", denied)
    result = run(runner, "compress", png, "-o", tmp_path / "out.kmq")
    assert (result.exit_code, result.output) == (1, f"Error: {png}: permission denied\n")


@pytest.mark.parametrize("where, error, message", [
    ("open", Image.DecompressionBombError("Image size (999999999 pixels) exceeds limit"),
     "Image size (999999999 pixels) exceeds limit (raise it with --max-pixels)"),
    ("load", struct.error("unpack requires a buffer of 4 bytes"),
     "cannot read image: error: unpack requires a buffer of 4 bytes"),
])
def test_pillow_failures_of_any_kind_are_clean(runner, png, monkeypatch, where, error, message):
    # (An EXIF Pillow cannot parse is no failure: the image is taken as upright, with a warning; test_trial21.)
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(Image if where == "open" else ImageFile.ImageFile, where, fail)
    result = run(runner, "compress", png)
    assert (result.exit_code, result.output) == (1, f"Error: {png}: {message}\n")


def test_the_pixel_limit_applies_to_images(runner, png, tmp_path):
    result = run(runner, "compress", png, "--max-pixels", "142")
    assert (result.exit_code, result.output) == (
        1, f"Error: {png}: 11x13 = 143 pixels exceeds the limit of 142 pixels (raise it with --max-pixels)\n")
    assert run(runner, "compress", png, "--max-pixels", "143", "-q").exit_code == 0


def _frames(path, fmt):
    frames = [Image.new("RGB", (6, 4), (40 * i, 0, 255 - 40 * i)) for i in range(3)]
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:])
    return np.asarray(frames[0])


def _sixteen_bit_grey(path):
    values = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000 + 7)
    Image.fromarray(values).save(path)
    return np.round(values / 257).astype(np.uint8)


def _sixteen_bit_rgb(path):
    # Pillow writes no 16-bit RGB PNG, so the file is built by hand: IHDR, one IDAT, IEND.
    values = (np.arange(2 * 3 * 3).reshape(2, 3, 3) * 3000).astype(">u2")
    rows = b"".join(b"\x00" + row.tobytes() for row in values)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return (values >> 8).astype(np.uint8)


def _cmyk_jpeg(path):
    Image.new("CMYK", (5, 3), (0, 255, 255, 0)).save(path, quality=100)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _one_pixel(path):
    Image.new("RGB", (1, 1), (10, 200, 30)).save(path)
    return np.array([[[10, 200, 30]]], np.uint8)


def _one_colour(path):
    Image.new("L", (7, 5), 99).save(path)
    return np.full((5, 7), 99, np.uint8)


def _palette_with_transparency(path):
    im = Image.new("P", (4, 2), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putpixel((1, 1), 1)
    im.save(path, transparency=0)
    expected = np.zeros((2, 4, 4), np.uint8)
    expected[1, 1] = (0, 0, 255, 255)
    # the transparent entry's colour (red) is not kept: alpha 0 reads as (0, 0, 0, 0)
    return expected


@pytest.mark.parametrize("name, make, warning", [
    ("anim.gif", lambda p: _frames(p, "GIF"), "anim.gif: 3 frames; using the first"),
    ("pages.tif", lambda p: _frames(p, "TIFF"), "pages.tif: 3 frames; using the first"),
    ("grey16.png", _sixteen_bit_grey, None),
    ("rgb16.png", _sixteen_bit_rgb, None),
    ("cmyk.jpg", _cmyk_jpeg, None),
    ("pixel.png", _one_pixel, "only 1 distinct colour"),
    ("flat.png", _one_colour, "only 1 distinct colour"),
    ("ptrans.png", _palette_with_transparency, "only 2 distinct colours"),
])
def test_an_odd_image_gives_the_right_pixels(runner, tmp_path, name, make, warning):
    path = tmp_path / name
    expected = make(path)
    result = run(runner, "compress", path, "-k", "256", "-o", tmp_path / "out.kmq", "-q")
    assert result.exit_code == 0, result.output
    if warning:
        assert warning in result.stderr
    # k=256 keeps every distinct colour of these small images: the file is lossless.
    np.testing.assert_array_equal(kmq.read(tmp_path / "out.kmq").decode(), expected)
    assert run(runner, "decompress", tmp_path / "out.kmq", "-q").exit_code == 0


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_pixels_written_a_band_of_rows_at_a_time(channels: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Bands of 2 rows (7 pixels a band over 4 columns): whole bands and a last short one; the file decodes to
    # palette[labels]. And no copy of the whole pixels beside Pillow's (numpy's arrays are traced, Pillow's not).
    from kmq import imageio

    rng = np.random.default_rng(channels)
    palette = rng.integers(0, 256, (300, channels), dtype=np.uint8)
    labels = rng.integers(0, 300, (5, 4)).astype(np.uint16)
    monkeypatch.setattr(imageio, "_BAND_PIXELS", 7)
    out = io.BytesIO()
    imageio.save_quantized(palette, labels, out, format="PNG")
    decoded = np.asarray(Image.open(io.BytesIO(out.getvalue())))
    np.testing.assert_array_equal(decoded, palette[labels][:, :, 0] if channels == 1 else palette[labels])

    monkeypatch.setattr(imageio, "_BAND_PIXELS", 1 << 14)
    labels = (np.arange(1024)[:, None] // 8 + np.arange(1024)[None, :] // 8).astype(np.uint16)  # 1-4 MB of pixels
    _, peak = traced_peak(lambda: imageio.save_quantized(palette, labels, io.BytesIO(), format="PNG"))
    assert peak < labels.size * channels / 4  # (the encoder's buffers: ~100 KB)
