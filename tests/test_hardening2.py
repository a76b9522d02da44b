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
