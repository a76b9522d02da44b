"""Round 44's series trial (h53d, a lab segmenting series by colour): what it found, each failing on the code
before it."""
import json

import numpy as np
import pytest
from PIL import Image

from kmq.cli import main

# Three colours far apart: mapped onto them, a pixel's label is its colour's index here.
PALETTE = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200]], np.uint8)


def run(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, prog_name="kmq")


@pytest.fixture
def series(tmp_path, monkeypatch):
    """s/a.png, s/b.png (the palette's colours in other places; a has 9 of the first), stain.txt."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s").mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        labels = rng.integers(0, 3, (6, 8))
        if name == "a":
            labels[:3, :3] = 0
        Image.fromarray(PALETTE[labels]).save(tmp_path / "s" / f"{name}.png")
    (tmp_path / "stain.txt").write_text("".join(f"#{r:02x}{g:02x}{b:02x}\n" for r, g, b in PALETTE))
    return tmp_path


@pytest.mark.parametrize("clustering", [("--palette", "stain.txt"), ("-k", "3")])
def test_an_image_beside_its_kmq_is_drawn_when_clustering(runner, series, clustering):
    """`kmq compress s/` leaves s/a.kmq beside s/a.png; a.kmq sorted first and took the name, so a.png failed
    ("already the output of s/a.kmq") and the drawing was a.kmq's own K = 2 labels, not the palette's."""
    assert run(runner, "compress", "s/a.png", "-k", "2", "-q").exit_code == 0
    result = run(runner, "segment", "s", *clustering, "--masks", "m", "-j", "1", "--summary", "json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [(r["input"], r["k"], r["ok"]) for r in summary["results"]] == [("s/a.png", 3, True),
                                                                           ("s/b.png", 3, True)]
    assert sorted(p.name for p in (series / "m").iterdir()) == [f"{s}-cluster-{i}.png" for s in "ab"
                                                                for i in range(3)]


def test_without_k_or_a_palette_the_kmq_beside_an_image_is_drawn_as_stored(runner, series):
    assert run(runner, "compress", "s/a.png", "-k", "2", "-q").exit_code == 0
    result = run(runner, "segment", "s", "-o", "seen", "-j", "1", "--summary", "json")
    assert result.exit_code == 0, result.output
    assert [(r["input"], r["k"]) for r in json.loads(result.stdout)["results"]] == [("s/a.kmq", 2),
                                                                                    ("s/b.png", 3)]


def test_a_segment_summary_counts_the_pixels_of_each_label(runner, series):
    """No summary of a series said how many pixels each colour holds: a stain's area took an info per file."""
    (series / "s" / "c.png").write_bytes(b"not an image")
    result = run(runner, "segment", "s", "--palette", "stain.txt", "--masks", "m", "-j", "1", "--summary",
                 "json")
    assert result.exit_code == 1
    results = json.loads(result.stdout)["results"]
    assert list(results[0])[-2:] == ["counts", "skipped"]  # (--skip-existing's, round 45, after it)
    for r in results[:2]:
        stem = r["input"][2]
        masks = [np.asarray(Image.open(series / "m" / f"{stem}-cluster-{i}.png")) for i in range(3)]
        assert r["counts"] == [int(np.count_nonzero(m)) for m in masks]
        assert sum(r["counts"]) == 48
    assert results[0]["counts"][0] >= 9
    assert (results[2]["ok"], results[2]["counts"]) == (False, None)


@pytest.mark.parametrize("inputs", [("s",), ("s/a.png",)])
def test_masks_given_as_a_file_with_a_slash_name_the_masks(runner, series, inputs):
    """`--masks notadir/` (a file) said, of several inputs, "notadir is not a folder; ... -o names a folder"
    (an option not given), and of one, "cannot create folder notadir: file exists"."""
    (series / "notadir").write_text("")
    result = run(runner, "segment", *inputs, "--palette", "stain.txt", "--masks", "notadir/")
    assert (result.exit_code, result.output) == (1, "Error: cannot write masks into notadir/: it is a file, not "
                                                    "a folder\n")


def test_a_palette_of_a_kmq_says_its_own_seed(runner, series):
    """The .gpl's comment said "seed 0" (the option's default) of a file written with --seed 5."""
    assert run(runner, "compress", "s/a.png", "-k", "3", "--seed", "5", "-o", "a5.kmq", "-q").exit_code == 0
    assert run(runner, "palette", "a5.kmq", "-o", "a5.gpl", "-q").exit_code == 0
    comment = (series / "a5.gpl").read_text().splitlines()[3]
    assert comment == "# kmq 1.0.0: 3 colours of a5.kmq, seed 5; in decreasing share of the pixels"


def test_a_palette_of_a_kmq_mapped_onto_a_palette_says_its_order(runner, series):
    """A .kmq made with --palette keeps the palette's order, which the comment called decreasing share (and it
    named a seed the file does not have)."""
    Image.fromarray(PALETTE[np.array([[0, 1, 1, 2, 2, 2]])]).save("r.png")  # red the least, first
    assert run(runner, "compress", "r.png", "--palette", "stain.txt", "-o", "r.kmq", "-q").exit_code == 0
    assert run(runner, "palette", "r.kmq", "-o", "r.gpl", "-q").exit_code == 0
    lines = (series / "r.gpl").read_text().splitlines()
    assert lines[3] == "# kmq 1.0.0: 3 colours of r.kmq; in the file's order"
    assert lines[4:] == ["200  30  30\t#c81e1e 16.67%", " 30 200  30\t#1ec81e 33.33%", " 30  30 200\t#1e1ec8 50.00%"]


def test_a_tab_in_a_bad_palette_line_is_escaped_once(runner, series):
    """The line was repr'd, then escaped again on the way out: got '205 128\\\\t#cd8044'."""
    (series / "bad.gpl").write_text("GIMP Palette\n205 128\t#cd8044 9.86%\n")
    result = run(runner, "palette", "bad.gpl")
    assert (result.exit_code, result.output) == (1, "Error: bad.gpl: line 2: expected 'R G B name' (three "
                                                    "integers 0..255), got '205 128\\t#cd8044 9.86%'\n")


def test_a_stem_of_two_images_keeps_both_and_the_kmq(runner, series):
    """x.png, x.jpg and x.kmq: x.jpg, never compressed, was dropped without a word (h53r1). Only the one image
    of a stem pairs with its .kmq; the files skipped are counted in one warning."""
    Image.open("s/a.png").save("s/a.jpg", quality=95)
    for stem in ("a", "b"):
        assert run(runner, "compress", f"s/{stem}.png", "-k", "2", "-q").exit_code == 0
    result = run(runner, "segment", "s", "-o", "seen", "-j", "1", "--summary", "json")
    assert [r["input"] for r in json.loads(result.stdout)["results"]] == ["s/a.jpg", "s/a.kmq", "s/a.png",
                                                                         "s/b.kmq"]
    assert result.stderr.splitlines()[0] == ("Warning: left out 1 image beside a .kmq of the same stem (first: "
                                             "s/b.png): the .kmq is drawn, as stored; give -k or --palette to "
                                             "draw the images")
    result = run(runner, "segment", "s", "-k", "2", "-o", "seen2", "-j", "1", "--summary", "json")
    assert [r["input"] for r in json.loads(result.stdout)["results"]] == ["s/a.jpg", "s/a.kmq", "s/a.png",
                                                                         "s/b.png"]
    assert result.stderr.splitlines()[0] == ("Warning: left out 1 .kmq file beside an image of the same stem "
                                             "(first: s/b.kmq): -k and --palette draw the images")


def test_a_fit_over_a_folder_holding_segments_masks_says_so(runner, series):
    """`segment s --masks s/m` then `palette s`: the masks were pooled as images without a word (black and
    white took 76 % of a 6-colour palette in the trial)."""
    assert run(runner, "segment", "s", "--palette", "stain.txt", "--masks", "s/m", "-j", "1", "-q").exit_code == 0
    result = run(runner, "palette", "s", "-k", "3")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == ["Warning: 6 files pooled have the names of kmq segment's masks (first: "
                                          "s/m/a-cluster-0.png), <stem>-cluster-<i>.png: if they are masks, give "
                                          "the images only"]
    (series / "s" / "m").rename(series / "m")
    Image.open("s/a.png").save("s/Holiday-Cluster-2.PNG")  # segment writes lower case: not one of its masks
    assert run(runner, "palette", "s", "-k", "3").stderr == ""
    Image.open("s/a.png").save("s/x-cluster-1.png")
    assert run(runner, "palette", "s", "-k", "3").stderr == (
        "Warning: 1 file pooled has the name of a kmq segment mask (s/x-cluster-1.png), <stem>-cluster-<i>.png: if "
        "they are masks, give the images only\n")


def test_an_rgba_series_into_a_gpl_is_refused_before_the_fit(runner, series, monkeypatch):
    """One RGBA frame makes the shared palette RGBA, which a .gpl cannot hold: refused only after the whole fit."""
    from kmq import shared

    rgba = np.dstack([PALETTE[np.arange(12).reshape(3, 4) % 3], np.full((3, 4), 128, np.uint8)])
    Image.fromarray(rgba).save("s/c.png")

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted before refusing")

    monkeypatch.setattr(shared, "quantize_colors", no_fit)
    result = run(runner, "palette", "s", "-k", "3", "-o", "p.gpl", "-j", "1")
    assert (result.exit_code, result.stderr) == (1, "Error: p.gpl: a GIMP palette has no alpha and this palette is "
                                                    "RGBA; write .txt, .hex, .json or .pal\n")
    assert not (series / "p.gpl").exists()
