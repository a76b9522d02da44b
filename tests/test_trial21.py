"""Round 42's library trial (h51e): what a program calling kmq met, each fixed here."""
from __future__ import annotations

import io
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

import kmq


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    return tmp_path / "p.png"


class _PyPath(os.PathLike):
    """As pytest's tmpdir paths (py.path.local): path-like, and with a read() that returns text."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return str(self.path)

    def read(self) -> str:
        return self.path.read_text(errors="replace")


def test_a_warning_made_an_error_comes_out_as_the_warning(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), (40 * i, 0, 0)) for i in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(kmq.KmqWarning, match="3 frames; using the first"):
            kmq.compress(tmp_path / "a.gif", 2)


def test_export_warns_before_it_writes(tmp_path: Path) -> None:
    img = kmq.compress(np.full((4, 4, 3), 7, np.uint8), 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(kmq.KmqWarning, match="written as PNG, as asked"):
            kmq.export(img, tmp_path / "x.jpg", format="PNG")
    assert not (tmp_path / "x.jpg").exists()


def test_path_likes_with_a_read_of_text_are_paths(photo: Path, tmp_path: Path) -> None:
    img = kmq.compress(_PyPath(photo), 4)
    assert img == kmq.compress(photo, 4)
    kmq.write(_PyPath(tmp_path / "x.kmq"), img)
    assert kmq.read(_PyPath(tmp_path / "x.kmq")) == img


def test_text_mode_files_are_refused_with_what_to_do(photo: Path, tmp_path: Path) -> None:
    kmq.write(tmp_path / "x.kmq", kmq.compress(photo, 2))
    with open(photo) as f, pytest.raises(TypeError, match=r"an image is read as bytes: open the file in binary "
                                                         r"mode \('rb'\), or use sys.stdin.buffer"):
        kmq.compress(f, 2)
    with open(tmp_path / "x.kmq") as f, pytest.raises(TypeError, match="a .kmq file is read as bytes"):
        kmq.read(f)


@pytest.mark.parametrize("call, error, message", [
    (lambda: kmq.compress(Image.new("RGB", (0, 3))), ValueError, "the image is empty: 0x3"),
    (lambda: kmq.compress(""), ValueError, "the path is empty"),
    (lambda: kmq.read(""), ValueError, "the path is empty"),
    (lambda: kmq.write(io.BytesIO(), kmq.compress(np.zeros((2, 2), np.uint8), 1)), TypeError,
     r"path must be a str or os.PathLike \('-' for stdout\), got BytesIO; img.to_bytes\(\) gives"),
    (lambda: kmq.export(kmq.compress(np.zeros((2, 2), np.uint8), 1), b"x.png"), TypeError, "got bytes"),
])
def test_bad_arguments_say_what_is_wrong(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call()


def test_an_ndarray_subclass_is_read_as_its_array() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        m = np.matrix([[1, 2], [3, 4]], dtype=np.uint8)
    assert kmq.compress(m, 4) == kmq.compress(np.asarray(m), 4)


def test_a_dash_reads_stdin_as_read_does(photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(photo.read_bytes())))
    assert kmq.compress("-", 4) == kmq.compress(photo, 4)


def test_a_pillow_image_is_turned_upright_as_its_file_is(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    im = Image.fromarray(rng.integers(0, 256, (6, 10, 3), dtype=np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # rotated: a viewer turns it 90 degrees
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    with Image.open(tmp_path / "r.jpg") as opened:
        from_image = kmq.compress(opened, 4)
        assert opened.size == (10, 6)  # the caller's image is left as it was
    assert (from_image.width, from_image.height) == (6, 10)
    assert from_image == kmq.compress(tmp_path / "r.jpg", 4)


def test_a_lab_image_with_its_profile_is_not_warned_about() -> None:
    rgb = Image.fromarray(np.random.default_rng(2).integers(0, 256, (6, 8, 3), dtype=np.uint8))
    lab = ImageCms.profileToProfile(rgb, ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"),
                                    outputMode="LAB")
    lab.info["icc_profile"] = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kmq.compress(lab, 4).channels == 3


def test_type_hints_ship_with_the_package() -> None:
    root = Path(kmq.__file__).parent
    assert (root / "py.typed").exists()
    assert 'kmq = ["py.typed"]' in (root.parent / "pyproject.toml").read_text()
