"""--skip-existing: a re-run of a series does only what is new (the lab trial of round 44 re-ran a folder after
adding a frame and got one "exists" error, exit 1, per frame already done)."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from kmq import batch
from test_cli import run, runner  # noqa: F401 - runner is a fixture


@pytest.fixture
def frames(tmp_path, rgb_small):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.roll(rgb_small, i, axis=1)).save(folder / f"f{i}.png")
    return folder


def _summary(result):
    return json.loads(result.output)


def test_a_rerun_after_a_new_frame_does_only_that_frame(runner, frames, tmp_path, rgb_small):
    out = tmp_path / "out"
    assert run(runner, "compress", frames, "-k", "4", "-o", f"{out}/", "-q").exit_code == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    Image.fromarray(rgb_small[::-1]).save(frames / "f3.png")
    result = run(runner, "compress", frames, "-k", "4", "-o", f"{out}/", "--skip-existing", "--summary", "json")
    assert result.exit_code == 0, result.output
    s = _summary(result)
    assert (s["files"], s["succeeded"], s["failed"], s["skipped"]) == (4, 1, 0, 3)
    assert list(s)[-2:] == ["skipped", "results"]
    assert [r["skipped"] for r in s["results"]] == [True, True, True, False]
    skipped = s["results"][0]
    assert (skipped["ok"], skipped["error"], skipped["bytes_after"], skipped["k"], skipped["codec"]) == \
        (True, None, 0, None, None)
    assert list(skipped)[-1] == "skipped"
    assert s["bytes_after"] == (out / "f3.kmq").stat().st_size  # the skipped files count for nothing
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != "f3.kmq"} == before


def test_without_it_the_rerun_fails_each_done_frame(runner, frames, tmp_path):
    out = tmp_path / "out"
    run(runner, "compress", frames, "-k", "4", "-o", f"{out}/", "-q")
    result = run(runner, "compress", frames, "-k", "4", "-o", f"{out}/", "--summary", "json")
    assert result.exit_code == 1
    s = json.loads(result.stdout)
    assert (s["failed"], s["skipped"]) == (3, 0)


def test_the_table_says_each_skip_and_counts_them(runner, frames, tmp_path):
    out = tmp_path / "out"
    run(runner, "compress", frames / "f0.png", frames / "f1.png", "-k", "4", "-o", f"{out}/", "-q")
    result = run(runner, "compress", frames, "-k", "4", "-o", f"{out}/", "--skip-existing", "-j", "1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{frames / 'f0.png'} -> {out / 'f0.kmq'}: skipped, it exists"
    assert lines[1] == f"{frames / 'f1.png'} -> {out / 'f1.kmq'}: skipped, it exists"
    assert lines[2].startswith(f"{frames / 'f2.png'} -> {out / 'f2.kmq'}: k=4, ")
    assert any("│ Files" in line and "1 of 3 (2 skipped)" in line for line in lines)


def test_a_failure_and_a_skip_are_counted_apart(runner, frames, tmp_path):
    out = tmp_path / "out"
    run(runner, "compress", frames / "f0.png", "-k", "4", "-o", f"{out}/", "-q")
    (frames / "f2.png").write_bytes(b"\x89PNG not really")
    result = run(runner, "compress", frames, "-k", "4", "-o", f"{out}/", "--skip-existing", "-j", "1")
    assert result.exit_code == 1
    assert "1 of 3 (1 failed, 1 skipped)" in result.stdout


def test_with_force_it_is_a_usage_error(runner, frames):
    for command in (["compress", frames, "-k", "4"], ["decompress", frames], ["segment", frames, "--masks", "m"]):
        result = run(runner, *command, "-f", "--skip-existing")
        assert result.exit_code == 2
        assert "give -f or --skip-existing, not both" in result.output


def test_a_single_file_whose_output_is_there_is_left_alone(runner, frames):
    image = frames / "f0.png"
    assert run(runner, "compress", image, "-k", "4", "-q").exit_code == 0
    written = (frames / "f0.kmq").read_bytes()
    result = run(runner, "compress", image, "-k", "8", "--skip-existing")
    assert (result.exit_code, result.output) == (0, f"{image} -> {frames / 'f0.kmq'}: skipped, it exists\n")
    assert (frames / "f0.kmq").read_bytes() == written
    assert run(runner, "compress", image, "-k", "8", "--skip-existing", "-q").output == ""
    result = run(runner, "decompress", frames / "f0.kmq", "--skip-existing")
    assert result.exit_code == 0 and "skipped" not in result.output  # not there yet: written
    result = run(runner, "decompress", frames / "f0.kmq", "--skip-existing")
    assert result.output == f"{frames / 'f0.kmq'} -> {frames / 'f0.kmq.png'}: skipped, it exists\n"


def test_stdout_and_devices_are_never_skipped(runner, frames, tmp_path, monkeypatch):
    image = frames / "f0.png"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-").write_bytes(b"a file named -")  # (h54r1: without it, this could not fail)
    result = run(runner, "compress", image, "-k", "4", "-o", "-", "--skip-existing")
    assert result.exit_code == 0 and result.stdout_bytes.startswith(b"\x89KMQ")
    result = run(runner, "compress", image, "-k", "4", "-o", os.devnull, "--skip-existing")
    assert result.exit_code == 0 and "skipped" not in result.output


def test_the_input_named_as_its_output_is_still_refused(runner, frames):
    image = frames / "f0.png"
    result = run(runner, "compress", image, "-o", image, "--skip-existing")
    assert result.exit_code == 1 and "skipped" not in result.output


@pytest.mark.parametrize("asked", ["picture", "masks", "both"])
def test_segment_skips_only_when_every_output_asked_is_there(runner, frames, tmp_path, asked):
    seen, masks = tmp_path / "seen", tmp_path / "masks"
    options = {"picture": ["-o", f"{seen}/"], "masks": ["--masks", masks],
               "both": ["-o", f"{seen}/", "--masks", masks]}[asked]
    assert run(runner, "segment", frames, "-k", "3", *options, "-q").exit_code == 0
    result = run(runner, "segment", frames, "-k", "3", *options, "--skip-existing", "--summary", "json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    assert (s["skipped"], s["succeeded"]) == (3, 0)
    assert [list(r)[-2:] for r in s["results"]] == [["counts", "skipped"]] * 3
    assert all(r["counts"] is None for r in s["results"])


def test_segment_with_only_the_picture_there_goes_on_and_refuses_it(runner, frames, tmp_path):
    seen, masks = tmp_path / "seen", tmp_path / "masks"
    run(runner, "segment", frames, "-k", "3", "-o", f"{seen}/", "-q")
    result = run(runner, "segment", frames, "-k", "3", "-o", f"{seen}/", "--masks", masks, "--skip-existing",
                 "--summary", "json")
    s = json.loads(result.stdout)
    assert result.exit_code == 1 and (s["failed"], s["skipped"]) == (3, 0)
    assert "already exists" in s["results"][0]["error"]
    assert not masks.exists() or not any(masks.iterdir())  # no masks without their picture


def test_segment_single_run_skips_when_its_picture_and_masks_are_there(runner, frames, tmp_path):
    image, picture, masks = frames / "f0.png", tmp_path / "f0-seen.png", tmp_path / "masks"
    assert run(runner, "segment", image, "-k", "3", "-o", picture, "--masks", masks, "-q").exit_code == 0
    result = run(runner, "segment", image, "-k", "3", "-o", picture, "--masks", masks, "--skip-existing")
    assert (result.exit_code, result.output) == (0, f"{image} -> {picture}: skipped, it exists\n")
    result = run(runner, "segment", image, "-k", "3", "--masks", masks, "--skip-existing")
    assert (result.exit_code, result.output) == (0, f"{image} -> {masks}: skipped, its masks exist\n")
    picture.unlink()
    result = run(runner, "segment", image, "-k", "3", "-o", picture, "--masks", masks, "--skip-existing")
    assert result.exit_code == 1 and "already exists" in result.output


def test_summarize_counts_skips_neither_as_succeeded_nor_failed(tmp_path):
    job = batch.Job(index=0, source=tmp_path / "a.png", target=tmp_path / "a.kmq", size=10)
    s = batch.summarize([batch.Result(job, skipped=True), batch.Result(job, error="a.png: bad")])
    assert (s["files"], s["succeeded"], s["failed"], s["skipped"]) == (2, 0, 1, 1)
    assert tuple(s) == batch.SUMMARY_FIELDS



def test_a_missing_input_is_an_error_in_single_runs_too(runner, frames, tmp_path):
    # (h54r1: a single run said "skipped, it exists" for an input that was not there; a bulk run, an error)
    (tmp_path / "gone.kmq").write_bytes(b"x")
    (tmp_path / "gone.png").write_bytes(b"x")
    for command in (["compress", tmp_path / "nothere.png", "-o", tmp_path / "gone.kmq"],
                    ["decompress", tmp_path / "nothere.kmq", "-o", tmp_path / "gone.png"]):
        result = run(runner, *command, "--skip-existing")
        assert result.exit_code == 1 and "skipped" not in result.output and "no such file" in result.output


def test_stdin_is_read_before_its_skip(frames, tmp_path):
    # (h54r1: a skipped single run left its stdin unread, so `cat big | kmq ...` ended on a broken pipe)
    import subprocess
    import sys

    (tmp_path / "out.kmq").write_bytes(b"x")
    process = subprocess.Popen([sys.executable, "-m", "kmq", "compress", "-", "-o", str(tmp_path / "out.kmq"),
                                "--skip-existing"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    process.stdin.write(b"\0" * (8 << 20))  # far past a pipe's buffer: BrokenPipeError if never read
    process.stdin.close()
    assert process.wait() == 0 and process.stdout.read().endswith(b"skipped, it exists\n")


def test_a_series_whose_palette_is_one_of_its_own_files_reruns(runner, frames, tmp_path):
    # (h54r1: ser/f0.kmq as --palette, beside its image, failed f0.png as "the --palette file of this run"
    # on every re-run, where --skip-existing is meant for just that)
    assert run(runner, "compress", frames / "f0.png", "-k", "4", "-q").exit_code == 0
    result = run(runner, "compress", frames, "--palette", frames / "f0.kmq", "--skip-existing", "-j", "1",
                 "--summary", "json")
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout)
    assert (s["succeeded"], s["skipped"], s["failed"]) == (2, 1, 0)
    result = run(runner, "compress", frames, "--palette", frames / "f0.kmq", "-f", "-j", "1", "-q")
    assert result.exit_code == 1 and "is the --palette file of this run" in result.output  # as before


def test_segment_with_masks_only_says_its_masks_exist(runner, frames, tmp_path):
    image, masks = frames / "f0.png", tmp_path / "masks"
    assert run(runner, "segment", image, "-k", "3", "--masks", masks, "-q").exit_code == 0
    result = run(runner, "segment", image, "-k", "3", "--masks", masks, "--skip-existing")
    assert result.output == f"{image} -> {masks}: skipped, its masks exist\n"


@pytest.mark.parametrize("command", ["decompress", "segment"])
def test_a_name_kmq_cannot_write_is_an_error_not_a_skip(runner, frames, tmp_path, command):
    # No kmq run wrote out.xyz: an existing one is the user's file under a mistyped name (round 46).
    source = frames / "f0.png"
    if command == "decompress":
        run(runner, "compress", source, "-k", "4", "-o", tmp_path / "f0.kmq", "-q")
        source = tmp_path / "f0.kmq"
    (tmp_path / "out.xyz").write_bytes(b"mine")
    extra = ["-k", "4"] if command == "segment" else []
    result = run(runner, command, source, *extra, "-o", tmp_path / "out.xyz", "--skip-existing")
    assert result.exit_code == 1
    assert result.output == (f"Error: {tmp_path / 'out.xyz'}: unknown image extension '.xyz'; use e.g. .png, "
                             ".webp, .gif, .tiff, .bmp or .jpg\n")
    assert (tmp_path / "out.xyz").read_bytes() == b"mine"
