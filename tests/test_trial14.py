"""Fixes from round 14's new-user pass over the Python API and palette files: each test is the reported case."""
import json
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import palettes
from kmq.cli import main
from kmq.errors import KmqError


def run(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, prog_name="kmq")


@pytest.fixture
def grad():
    """16x12 RGB gradient: many colours, fast to fit."""
    y, x = np.mgrid[0:12, 0:16]
    return np.dstack([x * 16, y * 20, (x + y) * 9]).astype(np.uint8)


# 1. A KmqImage was checked only when made: labels edited in place or fields replaced afterwards were written
# without a word (raw cut a label of 9 at K = 4 to 2 bits; lzma wrote a file kmq refuses; ctx an IndexError).
@pytest.mark.parametrize("codec", ["raw", "ctx", "lzma"])
def test_labels_edited_after_the_fact_are_refused_when_written(tmp_path, grad, codec):
    img = kmq.compress(grad, 4, codec=codec)
    img.labels[0, 0] = 9
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.3"):
        img.to_bytes()
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.3"):
        kmq.write(tmp_path / "x.kmq", img)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.3"):
        kmq.export(img, tmp_path / "x.png")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("change, error, message", [
    (lambda img: setattr(img, "palette", np.zeros((4, 2), np.uint8)), ValueError,
     r"palette must be \(k, 1\|3\|4\) uint8, got \(4, 2\) uint8"),
    (lambda img: setattr(img, "palette", img.palette.astype(np.int64) * 100), ValueError,
     r"palette must be \(k, 1\|3\|4\) uint8, got \(4, 3\) int64"),
    (lambda img: setattr(img, "labels", img.labels.astype(np.int64) - 1), ValueError, r"labels must lie in 0\.\.3"),
    (lambda img: setattr(img, "metadata", [1, 2]), TypeError, "metadata must be a dict, got list"),
    (lambda img: setattr(img, "codec", 2), TypeError, r"codec must be a codec's name \(str\), got int"),
], ids=["channels", "wide palette", "negative labels", "metadata", "codec"])
def test_fields_replaced_after_the_fact_are_refused_when_written(grad, change, error, message):
    img = kmq.compress(grad, 4)
    change(img)
    with pytest.raises(error, match=message):
        img.to_bytes()


def test_a_valid_edit_is_written(tmp_path, grad):
    img = kmq.compress(grad, 4)
    img.labels[0, 0] = 3
    img.labels = img.labels.astype(np.int64)  # the same values, another type: made uint16 again
    kmq.write(tmp_path / "x.kmq", img)
    assert kmq.read(tmp_path / "x.kmq").labels[0, 0] == 3


# 3. Inputs of the wrong type met internal AttributeErrors.
@pytest.mark.parametrize("call, message", [
    (lambda: kmq.compress([[1, 2], [3, 4]], 2), "an image is a path, a file object, bytes, a uint8 numpy array, "
                                                "a Pillow image or a KmqImage; got list"),
    (lambda: kmq.write("never.kmq", "notimg"), r"img must be a KmqImage \(kmq\.compress or kmq\.read make one\), "
                                               "got str"),
    (lambda: kmq.export(np.zeros((4, 4, 3), np.uint8), "never.png"), "img must be a KmqImage .*got ndarray"),
    (lambda: kmq.KmqImage(np.zeros((2, 3), np.uint8), np.zeros((2, 2), np.uint16), [1, 2]),
     "metadata must be a dict, got list"),
    (lambda: kmq.KmqImage.from_bytes("abc"), r"a \.kmq file is bytes, got str"),
])
def test_the_wrong_type_of_input_is_a_type_error(tmp_path, monkeypatch, call, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match=message):
        call()
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("wrap", [bytearray, memoryview, lambda b: np.frombuffer(b, np.uint8)],
                         ids=["bytearray", "memoryview", "uint8 array"])
def test_from_bytes_takes_any_bytes_like_object(grad, wrap):
    img = kmq.compress(grad, 4)
    assert kmq.KmqImage.from_bytes(wrap(img.to_bytes())) == img


def test_compress_takes_a_kmq_image_as_the_cli_takes_a_kmq_file(grad):
    img = kmq.compress(grad, 8)
    again = kmq.compress(img, 4)
    np.testing.assert_array_equal(again.decode(), kmq.compress(img.decode(), 4).decode())


# 2. A JSON palette entry with "hex" ignored its "rgb" and "alpha": an edit of either (the realistic case, in
# `kmq palette x.kmq -o p.json`'s output) was dropped without a word, and alpha 300 was accepted.
@pytest.mark.parametrize("entry, colour", [
    ({"hex": "#112233", "alpha": 128}, [17, 34, 51, 128]),
    ({"hex": "#112233", "rgb": [17, 34, 51]}, [17, 34, 51]),
    ({"hex": "#112233ff", "rgb": [17, 34, 51]}, [17, 34, 51, 255]),
    ({"hex": "#11223380", "rgb": [17, 34, 51], "alpha": 128}, [17, 34, 51, 128]),
    ({"rgb": [17, 34, 51], "alpha": 7}, [17, 34, 51, 7]),
])
def test_a_json_entry_that_says_its_colour_twice_alike_is_read(tmp_path, entry, colour):
    (tmp_path / "p.json").write_text(json.dumps({"palette": [entry]}))
    np.testing.assert_array_equal(palettes.read(tmp_path / "p.json").colors, [colour])


@pytest.mark.parametrize("entry, message", [
    ({"hex": "#112233", "rgb": [200, 200, 200]},
     "entry 0: its hex \"#112233\" and rgb [200, 200, 200] are not one colour; edit them together, or give "
     "only one"),
    ({"hex": "#11223380", "rgb": [17, 34, 51], "alpha": 129},
     "entry 0: its hex \"#11223380\", rgb [17, 34, 51] and alpha 129 are not one colour"),
    ({"hex": "#112233", "rgb": [17, 34, 51, 0]}, "entry 0: its hex \"#112233\" and rgb [17, 34, 51, 0] are not one"),
    ({"hex": "#112233", "alpha": 300}, "entry 0: 300 is not a colour value (0..255)"),
    ({"hex": "#112233", "alpha": "80"}, "entry 0: alpha '\"80\"' is not a number 0..255"),
], ids=["rgb", "alpha", "rgba", "alpha 300", "alpha text"])
def test_a_json_entry_whose_colours_differ_is_refused(tmp_path, entry, message):
    (tmp_path / "p.json").write_text(json.dumps([entry]))
    with pytest.raises(KmqError, match=re.escape(message)):
        palettes.read(tmp_path / "p.json")


def test_an_edited_palette_from_kmq_palette_is_refused_not_ignored(runner, tmp_path, grad):
    Image.fromarray(grad).save(tmp_path / "g.png")
    assert run(runner, "compress", tmp_path / "g.png", "-k", "4", "-q").exit_code == 0
    assert run(runner, "palette", tmp_path / "g.kmq", "-o", tmp_path / "p.json").exit_code == 0
    doc = json.loads((tmp_path / "p.json").read_text())
    doc["palette"][0]["rgb"] = [1, 2, 3]
    (tmp_path / "p.json").write_text(json.dumps(doc))
    result = run(runner, "compress", tmp_path / "g.png", "--palette", tmp_path / "p.json", "-o", tmp_path / "e.kmq")
    assert result.exit_code == 1
    assert "entry 0: its hex" in result.output and "and rgb [1, 2, 3] are not one colour" in result.output
    assert not (tmp_path / "e.kmq").exists()


# 5. kmq.stats.measure took rdo with raw records, which the CLI and kmq.compress refuse.
def test_measure_refuses_rdo_with_raw(tmp_path, grad):
    Image.fromarray(grad).save(tmp_path / "g.png")
    for codec in (None, "raw"):
        with pytest.raises(ValueError, match="every labelling costs the same bytes with codec='raw', so rdo cannot"):
            kmq.stats.measure(tmp_path / "g.png", [4], rdo=2, codec=codec)
    assert kmq.stats.measure(tmp_path / "g.png", [4], rdo=2, codec="ctx")[0]["codec"] == "ctx"


# 6. progress(done, total) stopped short of total when the large-K Lloyd converged early (a bar ended at 89 %).
def test_progress_ends_at_its_total():
    pixels = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    calls = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kmq.compress(pixels, 600, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert all(done <= total for done, total in calls)


# 9. `kmq palette --proportional` without -o ignored the flag; kmq.stats needed its own import.
def test_proportional_without_a_swatch_is_a_usage_error(runner, tmp_path, grad):
    Image.fromarray(grad).save(tmp_path / "g.png")
    result = run(runner, "palette", tmp_path / "g.png", "-k", "4", "--proportional")
    assert result.exit_code == 2
    assert result.output.endswith("Error: --proportional draws a swatch image (-o swatch.png); the printed palette "
                                  "has no bar to draw\n")


def test_kmq_stats_is_there_after_import_kmq():
    # A fresh interpreter: in this one, other tests have imported kmq.stats already.
    code = "import kmq; print(callable(kmq.stats.measure))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "True\n", "")


# 9. `segment --masks FILE` (a file where the folder goes) was click's usage error, exit 2: an output problem
# is exit 1 (README), found before any work, with -o's picture not written either.
def test_masks_into_a_file_is_an_output_error(runner, tmp_path, grad):
    Image.fromarray(grad).save(tmp_path / "g.png")
    (tmp_path / "taken").write_text("x")
    result = run(runner, "segment", tmp_path / "g.png", "-k", "2", "--masks", tmp_path / "taken",
                 "-o", tmp_path / "seg.png")
    assert (result.exit_code, result.output) == (
        1, f"Error: cannot write masks into {tmp_path / 'taken'}: it is a file, not a folder\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png", "taken"]


# From the review of this round's changes. The colour key of a 2-bit grey PNG was read in sample units by
# `kmq compress IMAGE` (its decode starts in a thread before kmq loads, kmq.prefetch) and for a Pillow image
# handed to the API unloaded: only the library's own open scaled it.
@pytest.fixture
def two_bit(tmp_path):
    from test_trial13 import png
    return png(tmp_path / "g2.png", 4, 1, 2, 0, [b"\x1b"], b"\x00\x01")  # levels 0, 1, 2, 3; key 1 (85)


KEYED_PALETTE = [[0, 0, 0, 0], [0, 0, 0, 255], [170, 170, 170, 255], [255, 255, 255, 255]]


def test_the_command_line_keys_a_2_bit_grey_png_as_the_library_does(tmp_path, two_bit):
    done = subprocess.run([sys.executable, "-m", "kmq", "compress", str(two_bit), "-k", "4", "-q"],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert kmq.read(tmp_path / "g2.kmq").palette.tolist() == KEYED_PALETTE


def test_an_unloaded_pillow_image_is_keyed_as_its_file_is(two_bit):
    with Image.open(two_bit) as im:
        assert kmq.compress(im, 4).palette.tolist() == KEYED_PALETTE
        assert im.info["transparency"] == 1  # the caller's image is left as it was


def test_segment_refuses_a_lossy_label_map_before_reading_the_image(runner, tmp_path):
    (tmp_path / "not.png").write_bytes(b"not an image")
    result = run(runner, "segment", tmp_path / "not.png", "--style", "labels", "-o", tmp_path / "out.jpg")
    assert (result.exit_code, result.output) == (
        1, f"Error: {tmp_path / 'out.jpg'}: JPEG is lossy and would change the labels; write the label map as PNG\n")


@pytest.mark.parametrize("entry, message", [
    ({"rgb": {"hex": "#112233"}}, "entry 0: its rgb '{\"hex\": \"#112233\"}' is not a list [r, g, b(, a)]"),
    ({"hex": "#112233", "rgb": "#112233"}, "entry 0: its rgb '\"#112233\"' is not a list [r, g, b(, a)]"),
    ({"hex": [17, 34, 51]}, "entry 0: its hex '[17, 34, 51]' is not a #rrggbb[aa] string"),
], ids=["nested", "rgb string", "hex list"])
def test_a_json_entry_takes_each_form_as_kmq_writes_it(tmp_path, entry, message):
    (tmp_path / "p.json").write_text(json.dumps([entry]))
    with pytest.raises(KmqError, match=re.escape(message)):
        palettes.read(tmp_path / "p.json")


def test_a_deeply_nested_json_entry_is_one_clean_error(tmp_path):
    entry = "#112233"
    for _ in range(450):
        entry = {"rgb": entry}
    (tmp_path / "p.json").write_text(json.dumps([entry]))
    with pytest.raises(KmqError, match=r"entry 0: its rgb .* is not a list"):
        palettes.read(tmp_path / "p.json")


def test_measure_refuses_rdo_with_a_given_palette(tmp_path, grad):
    Image.fromarray(grad).save(tmp_path / "g.png")
    with pytest.raises(ValueError, match="^rdo refines the palette it fits; a given palette is kept exactly"):
        kmq.stats.measure(tmp_path / "g.png", palette=np.array([[0, 0, 0], [255, 255, 255]], np.uint8),
                          rdo=2, codec="ctx")


def test_a_kmq_image_over_the_pixel_limit_is_refused_before_decoding(grad):
    with pytest.raises(KmqError, match=r"16x12 pixels exceed the limit of 100"):
        kmq.compress(kmq.compress(grad, 4), 2, max_pixels=100)


# The library's warnings name the caller's line, whatever depth they are raised at: a lossy or alpha-less
# format warned from inside the write, a multi-frame file from inside the load, named kmq/api.py.
def test_export_warnings_name_the_callers_line(tmp_path):
    img = kmq.compress(np.array([[[0, 0, 0, 100], [255, 255, 255, 255]]], np.uint8), 2)
    for name in ("x.jpg", "x.bmp"):
        with pytest.warns(kmq.KmqWarning, match="lossy|no alpha") as caught:
            kmq.export(img, tmp_path / name)
        assert {w.filename for w in caught} == {__file__}


def test_load_warnings_name_the_callers_line(tmp_path):
    frames = [Image.fromarray((np.arange(48).reshape(4, 4, 3) * 5 + i).astype(np.uint8)) for i in range(3)]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    for compress in (lambda: kmq.compress(path, 4), lambda: kmq.compress_to(path, psnr=30)):
        with pytest.warns(kmq.KmqWarning, match="3 frames; using the first") as caught:
            compress()
        assert {w.filename for w in caught} == {__file__}


# Review of the above (366b2da): the warnings were recorded and raised again after the call, so under a filter
# of "error" export wrote (or replaced) the file and only then raised. Warned at once, the write stops first.
def test_a_warning_made_an_error_stops_export_before_writing(tmp_path):
    img = kmq.compress(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8), 2)
    kept, new = tmp_path / "kept.jpg", tmp_path / "new.jpg"
    kept.write_bytes(b"precious")
    with warnings.catch_warnings():
        warnings.simplefilter("error", kmq.KmqWarning)
        for path, overwrite in ((kept, True), (new, False)):
            with pytest.raises(kmq.KmqWarning, match="JPEG is lossy"):
                kmq.export(img, path, overwrite=overwrite)
    assert kept.read_bytes() == b"precious" and not new.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.jpg"]
