"""Fixes from a new user's review: each test is the reported case, run the way the user ran it."""
import os
import subprocess
import sys

import pytest

KMQ = [sys.executable, "-m", "kmq"]


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
