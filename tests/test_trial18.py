"""A new user's findings (the sixth trial) and a review's, each test failing before its fix."""
import io
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmq
from kmq import api, fileio, palettes, segment
from kmq.cli import main
from kmq.errors import KmqError


def test_a_writers_own_warning_names_the_file_written(tmp_path, monkeypatch):
    # Pillow's "IM image format is deprecated" named no file (the library's callers name theirs: cli here).
    kmq.write(tmp_path / "x.kmq", kmq.compress(np.zeros((2, 3, 3), np.uint8), k=1))
    real = api.save_quantized

    def warning_save(*args, **kwargs):
        warnings.warn("IM image format is deprecated", DeprecationWarning)
        return real(*args, **kwargs)
    monkeypatch.setattr(api, "save_quantized", warning_save)
    result = CliRunner().invoke(main, ["decompress", str(tmp_path / "x.kmq"), "-o", str(tmp_path / "x.png"), "-q"])
    assert (result.exit_code, result.stderr) == (0, f"Warning: {tmp_path / 'x.png'}: IM image format is deprecated\n")


def test_dev_stdout_redirected_to_a_file_gets_the_data_as_for_a_dash(tmp_path, samples):
    # Was "Error: /dev/stdout already exists" (it resolves to the shell's file); with -f, a temporary file was
    # renamed over /dev/stdout itself.
    out = tmp_path / "out.kmq"
    with open(out, "wb") as f:
        done = subprocess.run([sys.executable, "-m", "kmq", "compress", str(samples / "ihc-303x227.png"), "-k", "4",
                               "-o", "/dev/stdout"], stdout=f, stderr=subprocess.PIPE)
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode().startswith(f"{samples / 'ihc-303x227.png'} -> -: k=4")  # summary on stderr, as "-"
    assert out.read_bytes() == kmq.compress(samples / "ihc-303x227.png", k=4).to_bytes()


def test_a_descriptor_path_is_written_through_the_descriptor(tmp_path):
    # /dev/fd/N of a file opened for appending: appended to, not refused as existing, not truncated, not renamed over.
    path = tmp_path / "log.bin"
    path.write_bytes(b"before\n")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        fileio.write_atomic(f"/dev/fd/{fd}", b"after\n")
        fileio.write_atomic(f"/proc/self/fd/{fd}", lambda f: f.write(b"more\n"))
    finally:
        os.close(fd)
    assert path.read_bytes() == b"before\nafter\nmore\n"
    assert [fileio.descriptor(p) for p in ("/dev/stdout", "/dev//fd/3", "/dev/stderr", "/tmp/x", "-")] == \
        [1, 3, 2, None, None]


class _Endless(io.RawIOBase):
    """An endless stream of zeros (as /dev/zero or `yes |`) that fails a test if asked for all of it."""
    def readable(self):
        return True

    def read(self, n=-1):
        assert n is not None and n >= 0, "read to the end of an endless stream"
        return b"\0" * n


def test_info_reads_no_more_than_the_header_of_an_endless_stream(monkeypatch):
    # `kmq info /dev/zero` grew without end: describe read the whole input before looking at the magic bytes.
    monkeypatch.setattr(fileio, "stdin", lambda: _Endless())
    with pytest.raises(kmq.FormatError, match=r"^<stdin>: not a \.kmq file: bad magic 00 00 00 00"):
        kmq.stats.describe("-")


@pytest.mark.parametrize("codec", ["lzma", "all"])
def test_stats_rdo_records_are_the_files_compress_writes_with_each_codec(codec, tmp_path):
    # lzma's records under --rdo were of ctx's labels re-encoded: 6,407 bytes where compress wrote 6,397.
    pixels = np.random.default_rng(1).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "noise.png")
    records = kmq.stats.measure(tmp_path / "noise.png", [16], codec=codec, rdo=2.0)
    assert [r["codec"] for r in records] == (["raw", "lzma", "ctx"] if codec == "all" else ["lzma"])
    for r in records:
        made = kmq.compress(pixels, k=16, codec=r["codec"], rdo=0.0 if r["codec"] == "raw" else 2.0)
        assert (r["file_bytes"], r["distortion"]) == (len(made.to_bytes()), made.distortion), r["codec"]


@pytest.mark.parametrize("k", [8, 64, 96])
def test_ctx_rdo_is_never_a_larger_file_than_the_plain_one(k):
    # A 300x80 gradient: rdo started from another restart of the fit (the same colours in another order, the
    # same J) whose labels cost more: 1,365 bytes against 1,341 at K = 64, and at K = 8 the plain payload
    # recorded as rdo 2 (10 bytes more).
    x = np.linspace(0, 255, 300)
    pixels = np.zeros((80, 300, 3), np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = x, x[::-1], 128
    plain = kmq.compress(pixels, k=k, codec="ctx").to_bytes()
    moved = kmq.compress(pixels, k=k, codec="ctx", rdo=2).to_bytes()
    assert len(moved) < len(plain) or moved == plain


@pytest.mark.parametrize("stop", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_masks_stopped_part_way_leave_none_behind(tmp_path, monkeypatch, stop):
    # A full disk (or Ctrl-C) at the third mask left the first two, which a rerun stopped on ("already exists").
    img = kmq.compress(np.arange(24, dtype=np.uint8).reshape(4, 6), k=4)
    real, calls = segment.write_atomic, []

    def failing(path, content, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise KmqError(f"cannot write {path}: no space left on device") if isinstance(stop, OSError) else stop
        return real(path, content, **kwargs)
    monkeypatch.setattr(segment, "write_atomic", failing)
    with pytest.raises((KmqError, KeyboardInterrupt)):
        segment.write_masks(img, tmp_path / "m", "x")
    assert list(tmp_path.iterdir()) == []  # no mask, nor the folder the run made (round 43)
    monkeypatch.setattr(segment, "write_atomic", real)
    assert len(segment.write_masks(img, tmp_path / "m", "x")) == 4


def test_a_read_only_mount_is_named_as_such(tmp_path, monkeypatch):
    # access() says no on a read-only mount as for a folder without permission: "permission denied" misled.
    class Flags:
        f_flag = os.ST_RDONLY
    monkeypatch.setattr(fileio.os, "access", lambda *a, **k: False)
    monkeypatch.setattr(fileio.os, "statvfs", lambda *a: Flags())
    with pytest.raises(KmqError, match=r"^cannot write .*x\.kmq: read-only file system$"):
        fileio.check_writable(tmp_path / "x.kmq")
    Flags.f_flag = 0
    with pytest.raises(KmqError, match=r"^cannot write .*x\.kmq: permission denied$"):
        fileio.check_writable(tmp_path / "x.kmq")


def test_a_one_byte_budget_says_byte():
    with pytest.raises(KmqError, match=r"fits in 1 byte: the smallest possible is \d+ bytes"):  # was "1 bytes"
        kmq.compress_to(np.zeros((3, 3, 3), np.uint8), max_bytes=1)


def test_masks_replaced_part_way_leave_no_mixed_set(tmp_path, monkeypatch):
    # With -f, a failure at the third mask removed the two new ones and left the old 2..3: a set of nothing.
    old = kmq.compress(np.arange(24, dtype=np.uint8).reshape(4, 6), k=4)
    segment.write_masks(old, tmp_path, "x")
    real, calls = segment.write_atomic, []

    def failing(path, content, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise KmqError(f"cannot write {path}: no space left on device")
        return real(path, content, **kwargs)
    monkeypatch.setattr(segment, "write_atomic", failing)
    with pytest.raises(KmqError):
        segment.write_masks(old, tmp_path, "x", overwrite=True)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(segment, "write_atomic", real)
    segment.write_masks(old, tmp_path, "x")  # a failure at the first: nothing replaced, the old set stays whole
    monkeypatch.setattr(segment, "write_atomic", lambda path, content, **kw: (_ for _ in ()).throw(
        KmqError(f"cannot write {path}: no space left on device")))
    with pytest.raises(KmqError):
        segment.write_masks(old, tmp_path, "x", overwrite=True)
    assert len(list(tmp_path.iterdir())) == 4


def test_a_palette_files_gpl_says_it_keeps_its_order(tmp_path):
    # The comment said "seed 0; in decreasing share of the pixels" of a file converted as it is.
    palettes.write(tmp_path / "p.txt", np.array([[1, 2, 3], [4, 5, 6]], np.uint8))
    result = CliRunner().invoke(main, ["palette", str(tmp_path / "p.txt"), "-o", str(tmp_path / "p.gpl")])
    assert result.exit_code == 0
    comment = f"# kmq {kmq.__version__}: 2 colours of p.txt, in its order"
    assert (tmp_path / "p.gpl").read_text().splitlines()[3] == comment
    # ... and counts one colour as the summary line does ("1 colours" before)
    palettes.write(tmp_path / "one.txt", np.array([[1, 2, 3]], np.uint8))
    result = CliRunner().invoke(main, ["palette", str(tmp_path / "one.txt"), "-o", str(tmp_path / "one.gpl")])
    assert result.exit_code == 0
    comment = f"# kmq {kmq.__version__}: 1 colour of one.txt, in its order"
    assert (tmp_path / "one.gpl").read_text().splitlines()[3] == comment


def test_a_descriptor_not_held_is_refused_before_the_work(tmp_path):
    # /dev/fd/7 with no 7 failed only after the compress; a huge N was a TypeError traceback.
    for name in ("/dev/fd/99999999999999", "/dev/fd/987"):
        with pytest.raises(KmqError, match=f"^cannot write {name}: bad file descriptor$"):
            fileio.check_writable(name)
    assert fileio.descriptor("/dev/fd/\u0661") is None  # an Arabic-Indic one is no descriptor 1


def test_decompress_to_dev_stdout_is_a_dash(tmp_path):
    kmq.write(tmp_path / "x.kmq", kmq.compress(np.zeros((2, 3, 3), np.uint8), k=1))
    result = CliRunner().invoke(main, ["decompress", str(tmp_path / "x.kmq"), "-o", "/dev/stdout"])
    assert result.exit_code == 0 and result.stdout_bytes.startswith(b"\x89PNG")
    assert result.stderr.startswith(f"{tmp_path / 'x.kmq'} -> -: 3x2 PNG")


@pytest.mark.parametrize("reader", ["info", "decompress"])
def test_an_error_while_reading_a_kmq_is_one_error_line(tmp_path, monkeypatch, reader):
    # `kmq info /proc/self/mem` (EIO while reading) was an OSError traceback.
    kmq.write(tmp_path / "x.kmq", kmq.compress(np.zeros((2, 3, 3), np.uint8), k=1))

    def failing(*args, **kwargs):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(kmq.stats if reader == "info" else api, "read_kmq", failing)
    with pytest.raises(KmqError, match=r"x\.kmq: input/output error$"):
        kmq.stats.describe(tmp_path / "x.kmq") if reader == "info" else kmq.read(tmp_path / "x.kmq")


def test_ctx_rdo_above_the_sampled_size_is_not_larger_either():
    # 600x500 blocky noise (300,000 pixels: rdo judges on a sample): 21,085 bytes against the plain 20,864.
    noise = np.random.default_rng(1).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    pixels = np.asarray(Image.fromarray(noise).resize((600, 500), Image.Resampling.NEAREST))
    plain = kmq.compress(pixels, k=16, codec="ctx").to_bytes()
    moved = kmq.compress(pixels, k=16, codec="ctx", rdo=2).to_bytes()
    assert len(moved) < len(plain) or moved == plain
