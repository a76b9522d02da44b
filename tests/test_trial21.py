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
    (lambda: kmq.write(3, kmq.compress(np.zeros((2, 2), np.uint8), 1)), TypeError,
     r"path must be a str, an os.PathLike \('-' for stdout\) or a binary file object, got int; "
     r"img.to_bytes\(\) gives"),
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


# Round 42's review (h51r2) of the fixes above.
def test_an_exif_pillow_cannot_read_is_taken_as_upright_with_a_warning(tmp_path: Path) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "bad.png", exif=b"garbage!")
    with pytest.warns(kmq.KmqWarning, match="its EXIF cannot be read"):
        from_file = kmq.compress(tmp_path / "bad.png", 4)
    with Image.open(tmp_path / "bad.png") as opened, pytest.warns(kmq.KmqWarning, match="its EXIF cannot be read"):
        from_image = kmq.compress(opened, 4)
    assert from_file == from_image == kmq.compress(pixels, 4)


def test_an_image_a_program_turned_itself_is_not_turned_again(tmp_path: Path) -> None:
    im = Image.fromarray(np.random.default_rng(1).integers(0, 256, (6, 10, 3), dtype=np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    with Image.open(tmp_path / "r.jpg") as opened:
        turned = opened.transpose(Image.Transpose.ROTATE_270)  # Pillow copies the EXIF, orientation and all
    img = kmq.compress(turned, 4)
    assert (img.width, img.height) == turned.size == (6, 10)


def test_a_grey_scan_converted_to_rgb_keeps_its_grey_profile(tmp_path: Path) -> None:
    from test_icc import _retoned, _srgb

    grey = _retoned(_srgb(), 1.8)  # an RGB profile would not do: a grey one, made of Little CMS's own pieces
    # a GRAY profile: Little CMS's sRGB header and one of its curves as kTRC
    import struct as _s

    tags = {sig: (off, size) for sig, off, size in (_s.unpack_from(">4sII", grey, 132 + 12 * i)
                                                    for i in range(_s.unpack_from(">I", grey, 128)[0]))}
    off, size = tags[b"rTRC"]
    wp_off, wp_size = tags[b"wtpt"]
    body = grey[wp_off:wp_off + wp_size] + grey[off:off + size]
    header = bytearray(grey[:128])
    header[16:20] = b"GRAY"
    header[12:16] = b"mntr"
    table = _s.pack(">I4sII4sII", 2, b"wtpt", 128 + 4 + 24, wp_size, b"kTRC", 128 + 4 + 24 + wp_size, size)
    profile = bytearray(bytes(header) + table + body)
    profile[0:4] = _s.pack(">I", len(profile))
    profile[84:100] = bytes(16)  # no profile ID
    profile = bytes(profile)
    scan = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1)))
    scan.save(tmp_path / "g.png", icc_profile=profile)
    scan.convert("RGB").save(tmp_path / "rgb.png", icc_profile=profile)
    grey_read, _ = _read_warned(tmp_path / "g.png")
    rgb_read, said = _read_warned(tmp_path / "rgb.png")
    assert not np.array_equal(grey_read, np.asarray(scan))  # gamma 1.8 is not sRGB: converted
    assert np.array_equal(rgb_read[:, :, 0], grey_read) and np.array_equal(rgb_read[:, :, 2], grey_read)
    assert said[0].endswith("converted to sRGB from its colour profile (unnamed)")


def _read_warned(path: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels = kmq.imageio.load_image(path)
    return pixels, [str(w.message) for w in caught]


def test_a_dash_with_a_binary_stdin_and_with_none(photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.BytesIO(photo.read_bytes()))
    assert kmq.compress("-", 4) == kmq.compress(photo, 4)
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(kmq.KmqError, match="cannot read stdin: not open"):
        kmq.compress("-", 4)


def test_bytearray_and_a_pillow_image_over_max_pixels(photo: Path) -> None:
    assert kmq.compress(bytearray(photo.read_bytes()), 4) == kmq.compress(photo, 4)
    with pytest.raises(kmq.KmqError, match="10x10 pixels exceed the limit of 50"):
        kmq.compress(Image.new("RGB", (10, 10)), 2, max_pixels=50)


def test_export_refuses_an_existing_file_before_it_warns(tmp_path: Path) -> None:
    img = kmq.compress(np.full((4, 4, 3), 7, np.uint8), 1)
    (tmp_path / "x.jpg").write_bytes(b"mine")
    with warnings.catch_warnings(record=True) as caught, pytest.raises(kmq.KmqError, match="exists"):
        warnings.simplefilter("always")
        kmq.export(img, tmp_path / "x.jpg", format="PNG")
    assert caught == [] and (tmp_path / "x.jpg").read_bytes() == b"mine"
