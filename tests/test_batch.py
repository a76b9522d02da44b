"""The bulk runner: which files a folder gives, where their outputs go, and that one failure spares the rest."""
import builtins
import errno
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import batch
from kmq.errors import KmqError
from imagefiles import pixels_of
from test_cli import run, runner  # noqa: F401 - runner is a fixture


@pytest.fixture
def tree(tmp_path, rgb_small) -> Path:
    """photos/{a.png, b.jpg, notes.txt, .hidden.png, .cache/c.png, sub/a.png, sub/broken.png}"""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / ".cache").mkdir()
    Image.fromarray(rgb_small).save(root / "a.png")
    Image.fromarray(rgb_small[::-1]).save(root / "b.jpg")
    Image.fromarray(rgb_small[:, ::-1]).save(root / "sub" / "a.png")
    Image.fromarray(rgb_small).save(root / ".hidden.png")
    Image.fromarray(rgb_small).save(root / ".cache" / "c.png")
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "broken.png").write_bytes(b"\x89PNG but not really")
    return root


def relative(jobs, base):
    return [(str(j.source.relative_to(base)), str(j.target.relative_to(base))) for j in jobs]


def test_a_folder_gives_its_images_recursively_keeping_relative_paths(tree, tmp_path):
    jobs = batch.plan_compress([tree], tmp_path / "out")
    assert relative(jobs, tmp_path) == [
        ("photos/a.png", "out/a.kmq"), ("photos/b.jpg", "out/b.kmq"),
        ("photos/sub/a.png", "out/sub/a.kmq"), ("photos/sub/broken.png", "out/sub/broken.kmq")]
    assert [j.index for j in jobs] == [0, 1, 2, 3] and not any(j.problem for j in jobs)
    assert jobs[0].size == (tree / "a.png").stat().st_size


def test_without_an_output_folder_outputs_go_beside_their_inputs(tree):
    jobs = batch.plan_compress([tree / "sub" / "a.png", tree / "b.jpg"])
    assert [j.target for j in jobs] == [tree / "sub" / "a.kmq", tree / "b.kmq"]


def test_two_inputs_claiming_one_output_fail_the_second(tree, tmp_path):
    (tree / "a.gif").write_bytes(b"")
    jobs = batch.plan_compress([tree / "a.png", tree / "sub" / "a.png", tree / "a.gif"], tmp_path / "out")
    assert jobs[0].problem is None
    assert jobs[1].problem == f"{tmp_path / 'out' / 'a.kmq'} is already the output of {tree / 'a.png'}"
    assert jobs[2].problem is not None


def test_stdin_cannot_be_one_of_several_inputs(tree):
    jobs = batch.plan_compress(["-", tree / "a.png"], tree / "out")
    assert jobs[0].problem and jobs[1].problem is None


def test_an_output_that_is_a_file_or_stdout_is_refused(tree):
    with pytest.raises(KmqError, match="is not a folder"):
        batch.plan_compress([tree], tree / "a.png")
    with pytest.raises(KmqError, match="cannot be used with several inputs"):
        batch.plan_decompress([tree], "-")


def test_an_output_folder_under_a_file_is_refused_before_any_work(tree):
    with pytest.raises(KmqError, match=r"^cannot create the folder .*a\.png/x/y: .*a\.png is a file$"):
        batch.plan_compress([tree], tree / "a.png" / "x" / "y")


@pytest.mark.parametrize("command", ["compress", "decompress", "palette"])
def test_stdin_among_several_inputs_is_a_usage_error_before_any_work(runner, tree, tmp_path, command):
    result = run(runner, command, "-", tree / "a.png", "-o", tmp_path / ("o.gpl" if command == "palette" else "o/"),
                 input=b"")
    assert result.exit_code == 2
    assert result.output.endswith("Error: stdin (-) can only be the one and only input\n")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.gpl").exists()


def test_an_empty_folder_among_other_inputs_warns(tmp_path, rgb_small):
    (tmp_path / "empty").mkdir()
    Image.fromarray(rgb_small).save(tmp_path / "a.png")
    with pytest.warns(kmq.KmqWarning, match="empty: no images in this folder"):
        assert [j.source for j in batch.plan_compress([tmp_path / "empty", tmp_path / "a.png"])] == [
            tmp_path / "a.png"]


def test_only_empty_folders_are_an_error(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.txt").write_text("no image")
    (tmp_path / ".hidden.png").write_bytes(b"")
    with pytest.raises(kmq.KmqError, match=rf"^{re.escape(str(tmp_path))}: no images found \(searched"):
        batch.plan_compress([tmp_path])
    with pytest.raises(kmq.KmqError, match=r": no \.kmq files found"):
        batch.plan_decompress([tmp_path, tmp_path / "sub"])


def test_decompress_plans_kmq_files_named_like_the_single_file_default(tmp_path, rgb_small):
    (tmp_path / "in" / "deep").mkdir(parents=True)
    kmq.write(tmp_path / "in" / "deep" / "x.kmq", kmq.compress(rgb_small, 4))
    (tmp_path / "in" / "x.png").write_bytes(b"")
    jobs = batch.plan_decompress([tmp_path / "in"], tmp_path / "out", "JPEG")
    assert relative(jobs, tmp_path) == [("in/deep/x.kmq", "out/deep/x.kmq.jpeg")]


def test_suffix_for_a_format():
    assert batch.suffix_for("png") == ".png" and batch.suffix_for("JPEG") == ".jpeg"
    assert batch.suffix_for("jpg") == ".jpg" and batch.suffix_for("TIF") == ".tif"  # an extension, as typed
    with pytest.raises(KmqError, match="unknown image format 'nope'"):
        batch.suffix_for("nope")


@pytest.mark.parametrize("workers", [1, 2])
def test_one_broken_file_fails_alone_and_the_rest_are_written(tree, tmp_path, workers):
    jobs = batch.plan_compress([tree], tmp_path / "out")
    results = sorted(batch.run(jobs, batch.CompressTask(k=4), workers), key=lambda r: r.job.index)
    assert [r.ok for r in results] == [True, True, True, False]
    assert results[3].error == f"{tree / 'sub' / 'broken.png'}: not an image Pillow can read"
    assert not results[3].job.target.exists()
    for r in results[:3]:
        assert kmq.read(r.job.target) == kmq.compress(r.job.source, 4)
        assert r.bytes_after == r.job.target.stat().st_size and r.record["k"] == 4
    summary = batch.summarize(results)
    assert list(summary) == list(batch.SUMMARY_FIELDS)
    assert (summary["files"], summary["succeeded"], summary["failed"]) == (4, 3, 1)
    assert summary["bytes_after"] == sum(r.bytes_after for r in results[:3])
    assert summary["mean_ratio"] == pytest.approx(np.mean([r.record["ratio"] for r in results[:3]]))


def test_existing_outputs_are_kept_without_overwrite(tree, tmp_path):
    jobs = batch.plan_compress([tree / "a.png"], tmp_path / "out")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.kmq").write_bytes(b"keep")
    (result,) = batch.run(jobs, batch.CompressTask(k=2), 1)
    assert result.error == f"{tree / 'a.png'}: {tmp_path / 'out' / 'a.kmq'} already exists (overwrite=True replaces it)"
    assert (tmp_path / "out" / "a.kmq").read_bytes() == b"keep"
    (result,) = batch.run(jobs, batch.CompressTask(k=2, overwrite=True), 1)
    assert result.ok and kmq.read(tmp_path / "out" / "a.kmq").k == 2


def test_decompress_task_writes_the_decoded_pixels(tmp_path, rgb_small):
    img = kmq.compress(rgb_small, 3)
    kmq.write(tmp_path / "q.kmq", img)
    jobs = batch.plan_decompress([tmp_path / "q.kmq", tmp_path / "missing.kmq"], tmp_path / "out")
    results = sorted(batch.run(jobs, batch.DecompressTask(), 2), key=lambda r: r.job.index)
    np.testing.assert_array_equal(pixels_of(tmp_path / "out" / "q.kmq.png"), img.decode())
    assert results[0].job.size == (tmp_path / "q.kmq").stat().st_size
    assert results[1].error == f"{tmp_path / 'missing.kmq'}: no such file or directory"
    assert [(r.as_dict()["k"], r.as_dict()["codec"]) for r in results] == [(3, "raw"), (None, None)]


def test_result_as_dict_and_a_lossless_file_in_the_summary(tmp_path):
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(tmp_path / "two.png")
    (result,) = batch.run(batch.plan_compress([tmp_path / "two.png"]), batch.CompressTask(k=2), 1)
    record = result.as_dict()
    assert list(record) == [*batch.RESULT_FIELDS, *batch.LATE_RESULT_FIELDS]
    assert record["ok"] and record["psnr"] is None and record["k"] == 2 and record["rdo"] is None
    assert record["codec"] == "raw"
    assert batch.summarize([result])["mean_psnr"] == float("inf")  # lossless, not unknown (json: null)


def test_warnings_are_collected_per_file(tmp_path):
    Image.new("RGB", (3, 2), (1, 2, 3)).save(tmp_path / "flat.png")
    (result,) = batch.run(batch.plan_compress([tmp_path / "flat.png"]), batch.CompressTask(k=4), 1)
    assert result.ok and result.warnings == [
        f"{tmp_path / 'flat.png'}: the image has only 1 distinct colour, fewer than k=4: using k=1, lossless"]


def test_inputs_that_are_one_file_are_planned_once(tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tree)
    (tree / "link.png").symlink_to(tree / "b.jpg")
    jobs = batch.plan_compress(["a.png", "./a.png", str(tree / "a.png"), "sub/../a.png", ".", "sub/a.png",
                                "link.png"], tmp_path / "out")
    # The folder gives b.jpg, sub/a.png, sub/broken.png; link.png is b.jpg; a.png is named first.
    assert [(str(j.source), str(j.target.relative_to(tmp_path))) for j in jobs] == [
        ("a.png", "out/a.kmq"), ("b.jpg", "out/b.kmq"), ("sub/a.png", "out/sub/a.kmq"),
        ("sub/broken.png", "out/sub/broken.kmq")]
    assert [j.index for j in jobs] == [0, 1, 2, 3] and not any(j.problem for j in jobs)


def test_stdin_alone_is_named_stdin(tmp_path):
    assert [(str(j.source), j.target, j.problem) for j in batch.plan_compress(["-"], tmp_path)] == [
        ("-", tmp_path / "stdin.kmq", None)]
    assert [j.target for j in batch.plan_decompress(["-", "-"], tmp_path, "WEBP")] == [
        tmp_path / "stdin.kmq.webp"]


# --------------------------------------------------------------------------------------------------
# the command line


@pytest.fixture
def deny(monkeypatch):
    """deny(path): reading path fails with "permission denied". As root (the tests' usual user) chmod denies
    nothing, so the refusal is simulated where the file is checked (os.access, as click does) and opened."""
    def deny(path):
        if os.geteuid() != 0:
            path.chmod(0)
            return
        real_access, real_open = os.access, builtins.open

        def access(p, mode, *args, **kwargs):
            return False if str(p) == str(path) else real_access(p, mode, *args, **kwargs)

        def opener(p, *args, **kwargs):
            if str(p) == str(path):
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real_open(p, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)
        monkeypatch.setattr(builtins, "open", opener)
    return deny


@pytest.mark.parametrize("command", [["compress", "-o", "{out}.kmq"], ["decompress", "-o", "{out}.png"],
                                     ["stats"], ["segment", "-o", "{out}.png"], ["montage", "-o", "{out}.png"],
                                     ["info"], ["palette"]])
def test_an_unreadable_input_is_an_error_not_a_usage_error(runner, tmp_path, rgb_small, deny, command):
    png, stored = tmp_path / "a.png", tmp_path / "a.kmq"
    Image.fromarray(rgb_small).save(png)
    kmq.write(stored, kmq.compress(rgb_small, 2))
    source = stored if command[0] in ("decompress", "info") else png
    deny(source)
    result = run(runner, command[0], source, *(a.format(out=tmp_path / "out") for a in command[1:]))
    assert (result.exit_code, result.output) == (1, f"Error: {source}: permission denied\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.kmq", "a.png"]


def test_an_unreadable_input_fails_alone_in_a_bulk_run(runner, tmp_path, tree, deny):
    deny(tree / "a.png")
    result = run(runner, "compress", tree / "a.png", tree / "b.jpg", "-k", "2", "-o", tmp_path / "out",
                 "-q", "-j", "1")
    assert (result.exit_code, result.output) == (1, f"Error: {tree / 'a.png'}: permission denied\n")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["b.kmq"]
    assert kmq.read(tmp_path / "out" / "b.kmq") == kmq.compress(tree / "b.jpg", 2)


def test_a_file_named_twice_is_done_once_silently(runner, tree, monkeypatch):
    monkeypatch.chdir(tree)
    result = run(runner, "compress", "a.png", "a.png", "./a.png", ".", "sub/a.png", "-k", "2", "-o", "out/",
                 "--summary", "json")
    assert result.exit_code == 1 and result.stderr == "Error: sub/broken.png: not an image Pillow can read\n"
    summary = json.loads(result.stdout)
    assert [r["input"] for r in summary["results"]] == ["a.png", "b.jpg", "sub/a.png", "sub/broken.png"]
    assert (summary["files"], summary["failed"]) == (4, 1)
    assert sorted(str(p.relative_to(tree / "out")) for p in (tree / "out").rglob("*.kmq")) == [
        "a.kmq", "b.kmq", "sub/a.kmq"]


@pytest.mark.parametrize("command, source, name, fmt", [
    ("compress", "a.png", "stdin.kmq", None), ("decompress", "a.kmq", "stdin.kmq.png", "PNG")])
def test_stdin_as_the_only_input_of_a_bulk_run(runner, tmp_path, rgb_small, command, source, name, fmt):
    Image.fromarray(rgb_small).save(tmp_path / "a.png")
    kmq.write(tmp_path / "a.kmq", kmq.compress(rgb_small, 4))
    data = (tmp_path / source).read_bytes()
    result = run(runner, command, "-", "-k" if command == "compress" else "--truecolor", *(
        ["4"] if command == "compress" else []), "-o", f"{tmp_path / 'out'}/", "-q", input=data)
    assert (result.exit_code, result.output) == (0, "")
    (written,) = (tmp_path / "out").iterdir()
    assert written.name == name
    if fmt is None:
        assert kmq.read(written) == kmq.compress(rgb_small, 4)
    else:
        np.testing.assert_array_equal(pixels_of(written), kmq.read(tmp_path / "a.kmq").decode())


def test_stdin_in_a_summary_counts_the_bytes_it_held(runner, tmp_path, rgb_small):
    # Its size is unknown until read: it was reported as 0 bytes before.
    Image.fromarray(rgb_small).save(tmp_path / "a.png")
    data = (tmp_path / "a.png").read_bytes()
    result = run(runner, "compress", "-", "-k", "4", "-o", tmp_path / "x.kmq", "--summary", "json", input=data)
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    written = (tmp_path / "x.kmq").stat().st_size
    assert (summary["bytes_before"], summary["bytes_after"]) == (len(data), written)
    assert [(r["bytes_before"], r["bytes_after"]) for r in summary["results"]] == [(len(data), written)]
    # and when it is not an image (review: the size was counted only for a success)
    result = run(runner, "compress", "-", "-o", tmp_path / "y.kmq", "--summary", "json", input=b"not an image")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["results"][0]["bytes_before"] == len(b"not an image")


@pytest.mark.parametrize("summary", [[], ["--summary", "json"]])
@pytest.mark.parametrize("command, source", [("compress", "a.png"), ("decompress", "a.kmq")])
def test_an_output_folder_without_a_slash_is_refused_with_the_slash_suggested(runner, tmp_path, rgb_small,
                                                                              command, source, summary):
    Image.fromarray(rgb_small).save(tmp_path / "a.png")
    kmq.write(tmp_path / "a.kmq", kmq.compress(rgb_small, 4))
    (tmp_path / "d").mkdir()
    result = run(runner, command, tmp_path / source, "-o", tmp_path / "d", *summary)
    assert (result.exit_code, result.output) == (
        1, f"Error: {tmp_path / 'd'} is a folder: to write into it, end -o with a slash ({tmp_path / 'd'}/)\n")
    assert list((tmp_path / "d").iterdir()) == []


def test_one_file_with_a_summary_keeps_o_as_its_output_file(runner, tmp_path, rgb_small):
    Image.fromarray(rgb_small).save(tmp_path / "a.png")
    result = run(runner, "compress", tmp_path / "a.png", "-k", "3", "-o", tmp_path / "x.kmq", "--summary", "json")
    assert result.exit_code == 0
    assert [r["output"] for r in json.loads(result.stdout)["results"]] == [str(tmp_path / "x.kmq")]
    assert kmq.read(tmp_path / "x.kmq") == kmq.compress(rgb_small, 3)
    result = run(runner, "decompress", tmp_path / "x.kmq", "-o", tmp_path / "x.webp", "--summary", "json")
    assert result.exit_code == 0
    with Image.open(tmp_path / "x.webp") as im:
        assert im.format == "WEBP"
    result = run(runner, "compress", tmp_path / "a.png", "-o", "-", "--summary", "json")
    assert (result.exit_code, result.output.splitlines()[-1]) == (
        2, "Error: -o - (stdout) cannot be used with several inputs, a folder or a summary")


def test_a_new_bulk_output_named_like_a_file_is_a_usage_error(runner, tmp_path, rgb_small):
    for name in ("a.png", "b.png"):
        Image.fromarray(rgb_small).save(tmp_path / name)
    result = run(runner, "compress", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "out.kmq")
    assert (result.exit_code, result.output.splitlines()[-1]) == (
        2, f"Error: -o {tmp_path / 'out.kmq'} names a file, but a bulk run writes one file per input into a "
           f"folder; end -o with a slash ({tmp_path / 'out.kmq'}/) if that is the folder you want")
    assert not (tmp_path / "out.kmq").exists()
    assert run(runner, "compress", tmp_path / "a.png", tmp_path / "b.png", "-o", f"{tmp_path / 'out.kmq'}/",
               "-q").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "out.kmq").iterdir()) == ["a.kmq", "b.kmq"]


def test_a_bulk_run_never_writes_over_its_own_input_even_with_overwrite(tmp_path, rgb_small):
    kmq.write(tmp_path / "x.kmq", kmq.compress(rgb_small, 2))
    before = (tmp_path / "x.kmq").read_bytes()
    (result,) = batch.run(batch.plan_compress([tmp_path / "x.kmq"]), batch.CompressTask(k=3, overwrite=True), 1)
    assert result.error == f"{tmp_path / 'x.kmq'}: the input file itself; choose another output"  # named once
    assert (tmp_path / "x.kmq").read_bytes() == before


def test_a_compress_task_with_only_a_palette_maps_every_file_onto_it(tmp_path):
    """The library class's defaults: k=16 with a palette failed every file (k=16 cannot be used with one)."""
    from kmq.palettes import as_palette

    colours = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
    Image.fromarray(colours[np.arange(12).reshape(3, 4) % 2] // 2 + 60).save(tmp_path / "a.png")
    jobs = batch.plan_compress([tmp_path / "a.png"], tmp_path / "out")
    (result,) = batch.run(jobs, batch.CompressTask(palette=as_palette(colours)), 1)
    assert result.ok, result.error
    np.testing.assert_array_equal(kmq.read(tmp_path / "out" / "a.kmq").palette, colours)
