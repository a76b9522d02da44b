"""kmq segment over a series: folders and several inputs through the bulk runner, and mask names that sort."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from kmq.cli import main

# Three colours, far apart: mapped onto this palette, each pixel's label is its colour's index here.
PALETTE = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200]], np.uint8)


def run(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, prog_name="kmq")


def mask_stack(folder, stem, names):
    return np.stack([np.asarray(Image.open(folder / f"{stem}-cluster-{n}.png")) for n in names])


@pytest.fixture
def slides(tmp_path, monkeypatch):
    """slides/a.png and slides/b.png: the palette's colours in other places and shares; stain.txt the palette."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "slides").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(PALETTE[rng.integers(0, 3, (6, 8))]).save(tmp_path / "slides" / f"{name}.png")
    (tmp_path / "stain.txt").write_text("".join(f"#{r:02x}{g:02x}{b:02x}\n" for r, g, b in PALETTE))
    return tmp_path


@pytest.fixture
def colours16(tmp_path, monkeypatch):
    """p.png: 16 distinct greys, so -k 16 gives 16 clusters."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray((np.arange(64).reshape(8, 8) // 4 * 16).astype(np.uint8)).save("p.png")
    return tmp_path


def test_a_folder_with_a_shared_palette_gives_masks_whose_index_is_the_same_colour_in_every_file(runner, slides):
    result = run(runner, "segment", "slides", "--palette", "stain.txt", "--masks", "m", "-j", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == ["slides/a.png -> m: 3 masks, a-cluster-0.png .. a-cluster-2.png",
                                              "slides/b.png -> m: 3 masks, b-cluster-0.png .. b-cluster-2.png"]
    assert any(line.startswith("│ Files ") and "│ 2 of 2 " in line for line in result.stdout.splitlines())
    for stem in ("a", "b"):
        pixels = np.asarray(Image.open(slides / "slides" / f"{stem}.png"))
        masks = mask_stack(slides / "m", stem, range(3))
        for i, colour in enumerate(PALETTE):
            np.testing.assert_array_equal(masks[i], np.all(pixels == colour, axis=2))


def test_several_inputs_with_an_output_folder_write_one_picture_per_stem(runner, slides):
    (slides / "c.png").write_bytes((slides / "slides" / "a.png").read_bytes())
    result = run(runner, "segment", "slides/b.png", "c.png", "--palette", "stain.txt", "--style", "labels",
                 "-o", "out", "-j", "1", "-q")
    assert (result.exit_code, result.output) == (0, "")  # -o out, missing: made, as compress's bulk -o
    assert sorted(p.name for p in (slides / "out").iterdir()) == ["b.png", "c.png"]
    labels = np.asarray(Image.open(slides / "out" / "c.png"))
    pixels = np.asarray(Image.open(slides / "c.png"))
    np.testing.assert_array_equal(PALETTE[labels], pixels)
    # --format names and writes every picture, as decompress's does
    result = run(runner, "segment", "slides/", "--palette", "stain.txt", "-o", "tiffs/", "--format", "tif", "-q")
    assert result.exit_code == 0
    assert sorted(p.name for p in (slides / "tiffs").iterdir()) == ["a.tif", "b.tif"]
    assert Image.open(slides / "tiffs" / "a.tif").format == "TIFF"


def test_a_new_output_folder_named_like_a_file_is_a_usage_error(runner, slides):
    result = run(runner, "segment", "slides", "-k", "2", "-o", "seen.png")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == ("Error: -o seen.png names a file, but a bulk run writes one file per "
                                              "input into a folder; end -o with a slash (seen.png/) if that is the "
                                              "folder you want")


def test_two_inputs_of_one_stem_do_not_overwrite_each_other(runner, slides):
    (slides / "other").mkdir()
    Image.fromarray(PALETTE[np.zeros((6, 8), int)]).save(slides / "other" / "a.png")
    result = run(runner, "segment", "slides/a.png", "other/a.png", "-k", "2", "--masks", "m", "-o", "out/",
                 "-j", "1")
    assert result.exit_code == 1
    assert result.stderr == "Error: other/a.png: out/a.png is already the output of slides/a.png\n"
    result = run(runner, "segment", "slides/a.png", "other/a.png", "-k", "2", "--masks", "m2", "-j", "1")
    assert result.exit_code == 1
    assert result.stderr == "Error: other/a.png: m2/a-cluster-*.png are already the masks of slides/a.png\n"
    # the first one's masks are written, and they are the first file's (mask 0 is not all white)
    assert sorted(p.name for p in (slides / "m2").iterdir()) == ["a-cluster-0.png", "a-cluster-1.png"]
    assert not np.all(np.asarray(Image.open(slides / "m2" / "a-cluster-0.png")))


def test_a_bad_file_among_good_ones_fails_alone(runner, slides):
    (slides / "slides" / "bad.png").write_bytes(b"not an image at all")
    result = run(runner, "segment", "slides", "--palette", "stain.txt", "-o", "out/", "--masks", "m",
                 "--summary", "json", "-j", "1")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: slides/bad.png: ")
    assert len(result.stderr.splitlines()) == 1
    summary = json.loads(result.stdout)
    assert (summary["files"], summary["succeeded"], summary["failed"]) == (3, 2, 1)
    assert [(r["input"], r["output"], r["ok"], r["k"]) for r in summary["results"]] == [
        ("slides/a.png", "out/a.png", True, 3), ("slides/b.png", "out/b.png", True, 3),
        ("slides/bad.png", "out/bad.png", False, None)]
    assert sorted(p.name for p in (slides / "out").iterdir()) == ["a.png", "b.png"]
    assert len(list((slides / "m").iterdir())) == 6


def test_two_workers_write_the_same_files_as_one(runner, slides):
    common = ["segment", "slides", "-k", "2", "--masks"]
    assert run(runner, *common, "m1", "-o", "o1/", "-j", "1", "-q").exit_code == 0
    assert run(runner, *common, "m2", "-o", "o2/", "-j", "2", "-q").exit_code == 0
    expected = {"m": [f"{s}-cluster-{i}.png" for s in "ab" for i in range(2)], "o": ["a.png", "b.png"]}
    for one, two in (("m1", "m2"), ("o1", "o2")):
        names = sorted(p.name for p in (slides / one).iterdir())
        assert names == sorted(p.name for p in (slides / two).iterdir()) == expected[one[0]]
        for name in names:
            assert (slides / one / name).read_bytes() == (slides / two / name).read_bytes()


def test_masks_are_zero_padded_to_the_digits_of_k_minus_1(runner, colours16):
    result = run(runner, "segment", "p.png", "-k", "16", "--masks", "m")
    assert result.output == "p.png -> m: 16 masks, p-cluster-00.png .. p-cluster-15.png\n"
    assert sorted(p.name for p in (colours16 / "m").iterdir()) == [f"p-cluster-{i:02d}.png" for i in range(16)]
    masks = mask_stack(colours16 / "m", "p", [f"{i:02d}" for i in range(16)])
    assert (masks.sum(axis=0) == 1).all()  # they still partition the image
    result = run(runner, "segment", "p.png", "-k", "10", "--masks", "m10")
    assert result.output == "p.png -> m10: 10 masks, p-cluster-0.png .. p-cluster-9.png\n"


@pytest.mark.parametrize("left, k", [("p-cluster-3.png", 16), ("p-cluster-07.png", 4)],
                         ids=["old unpadded", "padded"])
def test_masks_of_another_naming_or_k_count_as_existing_and_go_with_force(runner, colours16, left, k):
    (colours16 / "m").mkdir()
    (colours16 / "m" / left).write_bytes(b"old")
    (colours16 / "m" / "p-cluster-x.png").write_bytes(b"not a mask")
    result = run(runner, "segment", "p.png", "-k", k, "--masks", "m")
    assert result.exit_code == 1
    assert result.output == f"Error: m/{left} already exists (use -f to overwrite)\n"
    assert sorted(p.name for p in (colours16 / "m").iterdir()) == sorted([left, "p-cluster-x.png"])
    result = run(runner, "segment", "p.png", "-k", k, "--masks", "m", "-f", "-q")
    assert result.exit_code == 0
    width = len(str(k - 1))
    assert sorted(p.name for p in (colours16 / "m").iterdir()) == sorted(
        [f"p-cluster-{i:0{width}d}.png" for i in range(k)] + ["p-cluster-x.png"])


def test_masks_of_an_older_unpadded_run_at_the_same_k_are_replaced(runner, colours16):
    """K = 16 before padding wrote -cluster-0 .. -cluster-15: -cluster-0 .. -9 would be left beside -00 .. -09."""
    (colours16 / "m").mkdir()
    for i in range(16):
        (colours16 / "m" / f"p-cluster-{i}.png").write_bytes(b"old")
    result = run(runner, "segment", "p.png", "-k", "16", "--masks", "m")
    assert result.output == "Error: m/p-cluster-10.png already exists (use -f to overwrite)\n"
    assert run(runner, "segment", "p.png", "-k", "16", "--masks", "m", "-f").exit_code == 0
    assert sorted(p.name for p in (colours16 / "m").iterdir()) == [f"p-cluster-{i:02d}.png" for i in range(16)]


def test_a_bulk_run_refuses_existing_masks_of_any_k_before_the_work(runner, colours16):
    assert run(runner, "segment", "p.png", "-k", "16", "--masks", "m", "-q").exit_code == 0
    result = run(runner, "segment", "p.png", "-k", "3", "--masks", "m", "--summary", "json")
    assert result.exit_code == 1
    assert result.stderr == "Error: p.png: m/p-cluster-00.png already exists (use -f to overwrite)\n"
    result = run(runner, "segment", "p.png", "-k", "3", "--masks", "m/", "-f", "--summary", "table")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "p.png -> m: 3 masks, p-cluster-0.png .. p-cluster-2.png"
    assert sorted(p.name for p in (colours16 / "m").iterdir()) == [f"p-cluster-{i}.png" for i in range(3)]


def test_one_input_keeps_its_lines_and_names_its_padded_masks(runner, colours16):
    result = run(runner, "segment", "p.png", "-k", "12", "-o", "seen.png", "--masks", "m")
    assert result.exit_code == 0
    assert result.output == ("p.png -> seen.png: overlay, k=12, 8x8\n"
                             "p.png -> m: 12 masks, p-cluster-00.png .. p-cluster-11.png\n")
    result = run(runner, "segment", "p.png", "-k", "2")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: give -o OUT.png, --masks DIR, or both"
    result = run(runner, "segment", "p.png", "p.png", "-k", "2")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: give -o DIR/, --masks DIR, or both"


def test_a_picture_that_would_be_another_inputs_mask_fails_alone(runner, slides):
    (slides / "a-cluster-1.png").write_bytes((slides / "slides" / "b.png").read_bytes())
    result = run(runner, "segment", "slides/a.png", "a-cluster-1.png", "-k", "2", "-o", "out/", "--masks", "out",
                 "-j", "1", "-q", "-f")
    assert result.exit_code == 1
    assert result.stderr == "Error: a-cluster-1.png: out/a-cluster-1.png is one of the masks of slides/a.png\n"
    assert sorted(p.name for p in (slides / "out").iterdir()) == ["a-cluster-0.png", "a-cluster-1.png", "a.png"]
    assert np.asarray(Image.open(slides / "out" / "a-cluster-1.png")).dtype == bool  # the mask, not a picture


def test_one_named_output_that_is_one_of_its_masks_is_refused_with_a_summary_too(runner, colours16):
    result = run(runner, "segment", "p.png", "-k", "2", "-o", "m/p-cluster-1.png", "--masks", "m", "--summary",
                 "json")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == ("Error: -o m/p-cluster-1.png is one of the --masks files; "
                                              "write it elsewhere")
    assert not (colours16 / "m").exists()


def test_pictures_written_into_the_folder_searched_never_replace_an_input(runner, slides):
    Image.open(slides / "slides" / "a.png").save(slides / "slides" / "a.jpg")
    before = {p.name: p.read_bytes() for p in (slides / "slides").iterdir()}
    result = run(runner, "segment", "slides/", "-o", "slides/", "-k", "2", "-j", "1", "-f", "-q")
    assert result.exit_code == 1
    # a.jpg's picture would be slides/a.png, an input; each .png's picture would be itself
    assert result.stderr.splitlines() == [f"Error: slides/{n}: slides/{p} is an input of this run; choose another -o"
                                          for n, p in (("a.jpg", "a.png"), ("a.png", "a.png"), ("b.png", "b.png"))]
    assert {p.name: p.read_bytes() for p in (slides / "slides").iterdir()} == before


def test_masks_written_into_the_folder_searched_never_replace_or_remove_an_input(runner, colours16):
    (colours16 / "e").mkdir()
    (colours16 / "p.png").rename(colours16 / "e" / "x.png")
    assert run(runner, "segment", "e/", "--masks", "e/", "-k", "12", "-q").exit_code == 0
    old = {p.name: p.read_bytes() for p in (colours16 / "e").iterdir()}
    assert len(old) == 13
    # Found by the folder search, x's own masks are not drawn (they were: 24 masks of masks, then removed as
    # x's stale ones while being read): skipped with a warning, and x's job replaces them only with -f.
    result = run(runner, "segment", "e/", "--masks", "e/", "-k", "4", "-j", "1")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Warning: e: left out 12 files found there that are this run's masks of another input",
        "Error: e/x.png: e/x-cluster-00.png already exists (use -f to overwrite)"]
    assert {p.name: p.read_bytes() for p in (colours16 / "e").iterdir()} == old
    result = run(runner, "segment", "e/", "--masks", "e/", "-k", "4", "-f", "-j", "1", "-q")
    assert result.exit_code == 0
    now = {p.name: p.read_bytes() for p in (colours16 / "e").iterdir()}
    assert sorted(now) == ["x-cluster-0.png", "x-cluster-1.png", "x-cluster-2.png", "x-cluster-3.png", "x.png"]
    # Named on the command line, a mask is an input like any other: x's masks would replace it, so x fails,
    # even with -f, and none of them is touched.
    result = run(runner, "segment", "e/x.png", "e/x-cluster-0.png", "--masks", "e/", "-k", "4", "-f", "-j", "1",
                 "--summary", "json")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == ("Error: e/x.png: e/x-cluster-*.png would replace or remove the input "
                                             "e/x-cluster-0.png; choose another --masks")
    assert {p.name: p.read_bytes() for p in (colours16 / "e").iterdir() if p.name in now} == now


def test_planning_a_series_looks_at_each_name_a_fixed_number_of_times(tmp_path, monkeypatch):
    """-o and --masks both given: each picture was once checked against every input's masks (quadratic, and
    a regex compiled per check past re's cache of 512: 530 names took 17 s)."""
    from kmq import batch, segment

    monkeypatch.chdir(tmp_path)
    n = 2000
    calls = {"n": 0}

    def counted(f):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > 10 * n:
                raise AssertionError("planning is not linear in the number of inputs")
            return f(*args, **kwargs)
        return wrapper

    for module, name in ((segment, "is_mask"), (segment, "_mask_parts"), (os.path, "realpath")):
        monkeypatch.setattr(module, name, counted(getattr(module, name)))
    jobs = batch.plan_segment([f"x{i}.png" for i in range(n)], "seen", "masks")
    assert [(str(j.target), str(j.masks), j.problem) for j in jobs[-2:]] == [
        ("seen/x1998.png", "masks/x1998", None), ("seen/x1999.png", "masks/x1999", None)]


def test_a_picture_that_cannot_be_written_leaves_no_masks(runner, slides, monkeypatch):
    from kmq import batch

    (slides / "s" / "p1").mkdir(parents=True)
    (slides / "slides" / "a.png").rename(slides / "s" / "p1" / "s.png")
    (slides / "out6").mkdir()
    (slides / "out6" / "p1").write_bytes(b"")  # where the picture's folder would be
    result = run(runner, "segment", "s", "-o", "out6/", "--masks", "m6/", "-k", "2", "-j", "1", "-q")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: s/p1/s.png: cannot create folder out6/p1: ")
    assert not (slides / "m6").exists()
    (slides / "out6" / "p1").unlink()
    # a write that fails after the masks (a full disk) removes them
    real = batch.write_atomic

    def full(path, *args, **kwargs):  # the picture's write only: the masks' is segment's
        raise batch.KmqError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(batch, "write_atomic", full)
    result = run(runner, "segment", "s", "-o", "out6/", "--masks", "m6/", "-k", "2", "-j", "1", "-q")
    assert result.stderr == "Error: s/p1/s.png: cannot write out6/p1/s.png: No space left on device\n"
    assert list((slides / "m6" / "p1").iterdir()) == []
    monkeypatch.setattr(batch, "write_atomic", real)
    result = run(runner, "segment", "s", "-o", "out6/", "--masks", "m6/", "-k", "2", "-j", "1", "-q")
    assert (result.exit_code, result.output) == (0, "")
    assert sorted(p.name for p in (slides / "m6" / "p1").iterdir()) == ["s-cluster-0.png", "s-cluster-1.png"]


def test_one_input_whose_picture_cannot_be_written_leaves_no_masks(runner, colours16, monkeypatch):
    # As a bulk run's (above): the masks were written first and stayed, and a rerun stopped on them.
    from kmq import cli

    def full(output, *args, **kwargs):  # the picture's write only: the masks' is segment's
        raise cli.KmqError(f"cannot write {output}: No space left on device")

    monkeypatch.setattr(cli, "write_atomic", full)
    result = run(runner, "segment", "p.png", "-o", "seen.png", "--masks", "m", "-k", "2")
    assert (result.exit_code, result.output) == (1, "Error: cannot write seen.png: No space left on device\n")
    assert list((colours16 / "m").iterdir()) == []


@pytest.mark.parametrize("inputs", [["p.png"], ["p.png", "p.png"]], ids=["one input", "several"])
def test_masks_to_stdout_is_a_usage_error_naming_masks(runner, colours16, inputs):
    result = run(runner, "segment", *inputs, "--masks", "-", "-k", "2")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: --masks takes a folder, not -"
    assert sorted(p.name for p in colours16.iterdir()) == ["p.png"]


@pytest.mark.parametrize("inputs", [["p.png"], ["p.png", "p.png"]], ids=["one input", "several"])
@pytest.mark.parametrize("fmt", ["tif", "bogus"])
def test_format_without_o_is_a_usage_error(runner, colours16, inputs, fmt):
    result = run(runner, "segment", *inputs, "--masks", "m", "--format", fmt, "-k", "2")
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: --format applies to the pictures; give -o"
    assert not (colours16 / "m").exists()


def test_stdin_in_a_bulk_run_reports_its_bytes(runner, colours16):
    png = (colours16 / "p.png").read_bytes()
    result = runner.invoke(main, ["segment", "-", "--masks", "m", "-k", "2", "--summary", "json"], input=png)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["bytes_before"], summary["results"][0]["bytes_before"]) == (len(png), len(png))
    assert sorted(p.name for p in (colours16 / "m").iterdir()) == ["stdin-cluster-0.png", "stdin-cluster-1.png"]
    # a .kmq too, told by its magic bytes; a -k that does not apply is named after stdin
    assert run(runner, "compress", "p.png", "-k", "3", "-o", "p.kmq", "-q").exit_code == 0
    kmq = (colours16 / "p.kmq").read_bytes()
    result = runner.invoke(main, ["segment", "-", "-o", "out/", "-k", "2", "--summary", "json"], input=kmq)
    assert result.exit_code == 0, result.output
    assert result.stderr == "Warning: <stdin>: a .kmq keeps its own K (3); -k 2 does not apply\n"
    assert json.loads(result.stdout)["bytes_before"] == len(kmq)
    assert Image.open(colours16 / "out" / "stdin.png").size == (8, 8)


@pytest.mark.parametrize("bulk", [False, True])
def test_a_palette_file_is_never_replaced_by_the_output_even_with_force(runner, slides, bulk):
    # A new user's check: `compress sl/ --palette sl/s0.kmq -f` replaced the .kmq whose palette it mapped onto
    # (and `-o stain.txt -f` the text palette itself).
    assert run(runner, "compress", "slides/a.png", "-k", "3", "-q").exit_code == 0
    before = (slides / "slides" / "a.kmq").read_bytes()
    if bulk:
        result = run(runner, "compress", "slides/", "--palette", "slides/a.kmq", "-f", "-j", "1", "-q")
        assert result.stderr == ("Error: slides/a.png: slides/a.kmq is the --palette file of this run; choose "
                                 "another -o\n")
        assert (slides / "slides" / "b.kmq").exists()
    else:
        result = run(runner, "compress", "slides/a.png", "--palette", "slides/a.kmq", "-o", "slides/a.kmq", "-f")
        assert result.stderr == "Error: slides/a.kmq: the --palette file itself; choose another output\n"
    assert result.exit_code == 1
    assert (slides / "slides" / "a.kmq").read_bytes() == before
    text = (slides / "stain.txt").read_text()
    result = run(runner, "compress", "slides/b.png", "--palette", "stain.txt", "-o", "stain.txt", "-f")
    assert (result.exit_code, (slides / "stain.txt").read_text()) == (1, text)


def test_a_second_run_into_an_output_folder_inside_the_folder_searched_skips_the_first_runs_pictures(runner,
                                                                                                    slides):
    # A new user's check: the second `segment slides/ -o slides/seen/` drew slides/seen/*.png again (into
    # slides/seen/seen/) and failed both inputs, for an -o the first run had accepted.
    assert run(runner, "segment", "slides/", "-k", "2", "-o", "slides/seen/", "-j", "1", "-q").exit_code == 0
    first = {p.name: p.read_bytes() for p in (slides / "slides" / "seen").iterdir()}
    result = run(runner, "segment", "slides/", "-k", "2", "-o", "slides/seen/", "-j", "1", "-q", "-f")
    assert result.exit_code == 0
    assert result.stderr == ("Warning: slides/seen: left out 2 files found there that are pictures this run "
                             "draws of other inputs\n")
    assert sorted(p.name for p in (slides / "slides" / "seen").iterdir()) == ["a.png", "b.png"]
    assert {p.name: p.read_bytes() for p in (slides / "slides" / "seen").iterdir()} == first
    # A file there that is no input's picture is still an input.
    (slides / "slides" / "seen" / "c.png").write_bytes(first["a.png"])
    result = run(runner, "segment", "slides/", "-k", "2", "-o", "slides/seen/", "-j", "1", "-q", "-f")
    assert result.exit_code == 0 and (slides / "slides" / "seen" / "seen" / "c.png").exists()
