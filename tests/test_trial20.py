"""A new user's findings of round 24 (h33v's trial), each test failing before its fix."""
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmq
from kmq.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def photo(tmp_path):
    y, x = np.mgrid[0:300, 0:400]
    path = tmp_path / "big.png"
    Image.fromarray(np.dstack([x * 255 // 400, y * 255 // 300, (x + y) % 256]).astype(np.uint8)).save(path)
    return path


def test_a_picture_format_refuses_before_f_replaces_the_masks(photo, tmp_path):
    masks = tmp_path / "m"
    assert run("segment", photo, "-k", "3", "--masks", masks, "-q").exit_code == 0
    before = {p.name: p.read_bytes() for p in masks.iterdir()}
    result = run("segment", photo, "-k", "2", "--masks", masks, "-o", tmp_path / "s.ico", "-f")
    assert (result.exit_code, result.output) == (
        1, f"Error: {tmp_path / 's.ico'}: ICO holds at most 256x256 pixels, not 400x300; use e.g. PNG\n")
    assert {p.name: p.read_bytes() for p in masks.iterdir()} == before  # the K = 3 masks, untouched
    # a bulk run the same
    result = run("segment", photo, photo.parent / "none.png", "-k", "2", "--masks", masks, "-o", tmp_path / "o/",
                 "--format", "ico", "-f", "-q")
    assert result.exit_code == 1 and "ICO holds at most 256x256 pixels" in result.output
    assert {p.name: p.read_bytes() for p in masks.iterdir()} == before


@pytest.mark.parametrize("command", [["segment", "-k", "2"], ["palette", "-k", "2"], ["montage", "-k", "2"]])
def test_pillows_own_warning_names_the_file_written(tmp_path, monkeypatch, command):
    # Pillow's "IM image format is deprecated" named no file but in decompress
    Image.fromarray(np.arange(24, dtype=np.uint8).reshape(4, 6)).save(tmp_path / "a.png")
    real = Image.Image.save

    def warning_save(self, fp, format=None, **params):
        if format == "IM":
            warnings.warn("a warning of Pillow's", DeprecationWarning)
        return real(self, fp, format, **params)
    monkeypatch.setattr(Image.Image, "save", warning_save)
    out = tmp_path / "x.im"
    result = run(command[0], tmp_path / "a.png", *command[1:], "-o", out, "-q")
    lines = result.stderr.splitlines()  # (with Pillow's own "IM image format is deprecated" too)
    assert result.exit_code == 0 and f"Warning: {out}: a warning of Pillow's" in lines
    assert all(line.startswith(f"Warning: {out}: ") for line in lines)


@pytest.mark.parametrize("ext, message", [("xbm", "cannot write RGB pixels as XBM: cannot write mode RGB as XBM"),
                                          ("msp", "cannot write RGB pixels as MSP: cannot write mode RGB as MSP")])
def test_no_warning_about_alpha_in_a_file_that_is_refused(tmp_path, ext, message):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 3] = np.arange(6) * 40
    kmq.write(tmp_path / "x.kmq", kmq.compress(rgba, k=2))
    out = tmp_path / f"x.{ext}"
    result = run("decompress", tmp_path / "x.kmq", "-o", out)
    assert (result.exit_code, result.output) == (1, f"Error: {out}: {message}\n")
    assert not out.exists()


@pytest.mark.parametrize("order", [("a.jpg", "a.png"), ("a.png", "a.jpg")])
def test_a_missing_input_does_not_take_the_output_name_of_a_real_one(tmp_path, monkeypatch, order):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.arange(24, dtype=np.uint8).reshape(4, 6)).save("a.png")  # a.jpg does not exist
    # -j 1: a.png's file is written before a.jpg is tried (its output, out/a.kmq, then exists)
    result = run("compress", *order, "-k", "2", "-o", "out/", "-q", "-j", "1")
    assert (result.exit_code, result.stderr) == (1, "Error: a.jpg: no such file or directory\n")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.kmq"]


def test_montage_escapes_the_palette_files_name(tmp_path):
    Image.fromarray(np.arange(24, dtype=np.uint8).reshape(4, 6)).save(tmp_path / "a.png")
    palette = tmp_path / "p\tq\u202e.txt"
    palette.write_text("#000000\n#ffffff\n")
    out = tmp_path / "m.png"
    result = run("montage", tmp_path / "a.png", "--palette", palette, "-o", out)
    assert result.exit_code == 0
    assert result.output.startswith(f"{tmp_path / 'a.png'} -> {out}: original and K = 2 (p\\tq\\u202e.txt), ")


def test_a_pdf_is_the_same_bytes_on_every_run(tmp_path):
    # it held the time of writing and, as its title, the name of the temporary file written first
    kmq.write(tmp_path / "x.kmq", kmq.compress(np.arange(24, dtype=np.uint8).reshape(4, 6), k=2))
    assert run("decompress", tmp_path / "x.kmq", "-o", tmp_path / "x.pdf", "-q").exit_code == 0
    data = (tmp_path / "x.pdf").read_bytes()
    assert data.startswith(b"%PDF") and not any(key in data for key in [b"/CreationDate", b"/ModDate", b"/Title"])
