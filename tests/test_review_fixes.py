"""Fixes from a new user's review: each test is the reported case, run the way the user ran it."""
import os
import re
import subprocess
import sys

import pytest
from PIL import Image

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
    assert re.fullmatch(rf"{re.escape(str(kmq_file))} -> {re.escape(str(out))}: 11x13 {fmt.upper()}, \d+\.\d\d s\n",
                        result.output)
    with Image.open(out) as im:
        assert im.format == fmt.upper()
    assert sorted(p.name for p in kmq_file.parent.iterdir()) == ["a.kmq", out.name]
