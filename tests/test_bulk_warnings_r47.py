"""Round 47's game-developer trial: a bulk run over pixel art printed one 'only N distinct colours, fewer than
k' warning per sprite (64 of 154 files), drowning the lines that mattered. They now come as one line after
the run; every other warning stays per file, and single-file runs are unchanged."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kmq.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _sprite(path, colours, size=8):
    """A size x size RGB image of exactly `colours` distinct colours."""
    values = np.arange(size * size) % colours
    pixels = np.stack([values * 7 % 256, values * 31 % 256, values * 3 % 256], axis=1).astype(np.uint8)
    Image.fromarray(pixels.reshape(size, size, 3)).save(path)


@pytest.fixture
def sprites(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    _sprite(folder / "a.png", 3)
    _sprite(folder / "b.png", 60)
    _sprite(folder / "c.png", 5)
    _sprite(folder / "d.png", 2)
    return folder


def _warnings(result):
    return [line for line in result.stderr.splitlines() if line.startswith("Warning:")]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_bulk_run_says_fewer_colours_than_k_once(sprites, tmp_path, workers):
    result = run("compress", sprites, "-k", 8, "-o", tmp_path / "out/", "-q", "-j", workers)
    assert result.exit_code == 0, result.output
    # the first in input order (a.png), whichever worker finished first
    assert _warnings(result) == [
        f"Warning: 3 of 4 files have fewer distinct colours than k=8: each stored exactly, with its own smaller "
        f"K (first: {sprites / 'a.png'}, 3 colours)"]


def test_one_such_file_in_a_bulk_run_keeps_its_own_line(sprites, tmp_path):
    result = run("compress", sprites / "a.png", sprites / "b.png", "-k", 8, "-o", tmp_path / "out/", "-q")
    assert _warnings(result) == [f"Warning: {sprites / 'a.png'}: the image has only 3 distinct colours, fewer "
                                 f"than k=8: using k=3, lossless"]


def test_a_single_file_run_is_unchanged(sprites, tmp_path):
    result = run("compress", sprites / "d.png", "-k", 8, "-o", tmp_path / "d.kmq", "-q")
    assert result.exit_code == 0
    assert _warnings(result) == [f"Warning: {sprites / 'd.png'}: the image has only 2 distinct colours, fewer "
                                 f"than k=8: using k=2, lossless"]


def test_other_warnings_stay_per_file(sprites, tmp_path):
    frames = [Image.new("P", (8, 8), i) for i in range(2)]
    for frame in frames:
        frame.putpalette([0, 0, 0, 255, 255, 255])
    frames[0].save(sprites / "e.gif", save_all=True, append_images=frames[1:])
    result = run("compress", sprites, "-k", 8, "-o", tmp_path / "out/", "-q", "-j", 1)
    assert _warnings(result) == [
        f"Warning: {sprites / 'e.gif'}: 2 frames; using the first",
        f"Warning: 4 of 5 files have fewer distinct colours than k=8: each stored exactly, with its own smaller "
        f"K (first: {sprites / 'a.png'}, 3 colours)"]


def test_the_summary_json_keeps_each_files_own_k(sprites, tmp_path):
    result = run("compress", sprites, "-k", 8, "-o", tmp_path / "out/", "--summary", "json", "-j", 1)
    assert result.exit_code == 0
    assert [r["k"] for r in json.loads(result.stdout)["results"]] == [3, 8, 5, 2]
    assert len(_warnings(result)) == 1


def test_segment_bulk_runs_collapse_them_too(sprites, tmp_path):
    result = run("segment", sprites, "-k", 8, "-o", tmp_path / "seg/", "-q", "-j", 1)
    assert result.exit_code == 0, result.output
    assert _warnings(result) == [
        f"Warning: 3 of 4 files have fewer distinct colours than k=8: each stored exactly, with its own smaller "
        f"K (first: {sprites / 'a.png'}, 3 colours)"]
