"""Odd file names in what scripts read: TSV escapes tabs and line breaks, and every format is valid UTF-8."""
import csv
import io
import json
import os

import pytest
from PIL import Image

import kmq
from kmq import stats
from test_cli import run, runner  # noqa: F401 - runner is a fixture

# A name that is not UTF-8 (Python keeps the byte as the lone surrogate \udcff), and one with a tab, a
# newline and a backslash in it.
NOT_UTF8 = os.fsdecode(b"bad\xffname")
CONTROL = "tab\there\nnl\\x"


@pytest.fixture
def odd(tmp_path, rgb_small):
    for stem in (NOT_UTF8, CONTROL):
        Image.fromarray(rgb_small).save(tmp_path / f"{stem}.png", format="PNG")
        kmq.write(tmp_path / f"{stem}.kmq", kmq.compress(rgb_small, 2))
    return tmp_path


def _utf8(result):
    assert result.exit_code == 0, result.output
    return result.stdout_bytes.decode("utf-8")  # strict: fails on any lone surrogate


def test_tsv_escapes_backslash_tab_and_line_breaks_and_writes_other_bytes_as_hex(runner, odd):
    text = _utf8(run(runner, "stats", odd / f"{NOT_UTF8}.png", odd / f"{CONTROL}.png", "-k", "2",
                     "--format", "tsv"))
    lines = text.splitlines()
    assert len(lines) == 3 and all(line.count("\t") == len(stats.FIELDS) - 1 for line in lines)
    assert [line.split("\t")[0] for line in lines[1:]] == [f"{odd}/bad\\xffname.png",
                                                            f"{odd}/tab\\there\\nnl\\\\x.png"]


def test_csv_quotes_and_json_escapes_as_their_formats_do_with_other_bytes_as_hex(runner, odd):
    inputs = [odd / f"{NOT_UTF8}.png", odd / f"{CONTROL}.png"]
    expected = [f"{odd}/bad\\xffname.png", f"{odd}/{CONTROL}.png"]
    rows = list(csv.DictReader(io.StringIO(_utf8(run(runner, "stats", *inputs, "-k", "2", "--format", "csv")))))
    assert [row["file"] for row in rows] == expected
    records = json.loads(_utf8(run(runner, "stats", *inputs, "-k", "2", "--format", "json")))
    assert [r["file"] for r in records] == expected
    described = json.loads(_utf8(run(runner, "info", odd / f"{NOT_UTF8}.kmq", "--format", "json")))
    assert described["file"] == f"{odd}/bad\\xffname.kmq"


def test_a_bulk_summary_in_json_is_valid_utf8(runner, odd, tmp_path):
    result = run(runner, "decompress", odd / f"{NOT_UTF8}.kmq", odd / f"{CONTROL}.kmq", "-o", tmp_path / "out",
                 "--summary", "json", "-j", "1")
    summary = json.loads(_utf8(result))
    assert [(r["input"], r["output"]) for r in summary["results"]] == [
        (f"{odd}/bad\\xffname.kmq", f"{tmp_path}/out/bad\\xffname.kmq.png"),
        (f"{odd}/{CONTROL}.kmq", f"{tmp_path}/out/{CONTROL}.kmq.png")]
    assert (tmp_path / "out" / f"{NOT_UTF8}.kmq.png").exists()


def test_the_stats_table_shows_a_name_that_is_not_utf8(runner, odd):
    assert "bad\\xffname.png" in _utf8(run(runner, "stats", odd / f"{NOT_UTF8}.png", "-k", "2"))


def test_a_palette_file_named_in_other_bytes_is_recorded_as_valid_unicode(runner, odd, tmp_path):
    # The metadata is strict JSON for every reader: a lone surrogate (\udcff) is valid grammar but not
    # Unicode, and strict parsers refuse it (docs/FORMAT.md), so the byte is written as \xff.
    (odd / f"{NOT_UTF8}.txt").write_text("#ff0000\n#0000ff\n")
    result = run(runner, "compress", odd / "tab\there\nnl\\x.png", "--palette", odd / f"{NOT_UTF8}.txt",
                 "-o", tmp_path / "p.kmq")
    assert result.exit_code == 0, result.output
    data = (tmp_path / "p.kmq").read_bytes()
    assert b"\\ud" not in data and b'"name":"bad\\\\xffname.txt"' in data
    assert kmq.read(tmp_path / "p.kmq").metadata["palette_source"]["name"] == "bad\\xffname.txt"
