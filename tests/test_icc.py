"""Colour profiles: an image tagged with a profile other than sRGB is read in sRGB (kmq.icc), with a warning."""
from __future__ import annotations

import io
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms

from kmq import icc
from kmq.cli import main
from kmq.imageio import load_image

# Adobe RGB (1998)'s primaries, adapted to D50 as a profile holds them (s15Fixed16 XYZ).
_WIDE = {b"rXYZ": (0.6097, 0.3111, 0.0195), b"gXYZ": (0.2053, 0.6257, 0.0609), b"bXYZ": (0.1492, 0.0632, 0.7446)}


def _tags(profile: bytes) -> dict[bytes, tuple[int, int]]:
    (count,) = struct.unpack_from(">I", profile, 128)
    return {sig: (off, size) for sig, off, size in (struct.unpack_from(">4sII", profile, 132 + 12 * i)
                                                    for i in range(count))}


def _wide_profile() -> bytes:
    """Little CMS's sRGB profile (ICC v4, its description multi-localized) with Adobe RGB's primaries and
    its own description: a wide-gamut profile made here, not taken from a system's files."""
    data = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    tags = _tags(bytes(data))
    for sig, xyz in _WIDE.items():
        off = tags[sig][0]
        data[off + 8:off + 20] = struct.pack(">3i", *(round(v * 65536) for v in xyz))
    text = "sRGB built-in".encode("utf-16-be")
    at = data.index(text)
    data[at:at + len(text)] = "Wide built-in".encode("utf-16-be")
    return bytes(data)


def _v2(description: str, space: bytes = b"RGB ") -> bytes:
    """A profile's header and one ICC v2 'desc' tag: enough for `icc.description`."""
    text = description.encode("latin-1") + b"\0"
    tag = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text
    header = bytearray(128)
    header[16:20] = space
    return bytes(header) + struct.pack(">I4sII", 1, b"desc", 144, len(tag)) + tag


def _srgb() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _retoned(profile: bytes, gamma: float) -> bytes:
    """The profile with every tone curve a plain gamma (a 'para' tag of function type 0, in the same bytes)."""
    data = bytearray(profile)
    for sig in (b"rTRC", b"gTRC", b"bTRC"):
        off = _tags(profile)[sig][0]
        assert data[off:off + 4] == b"para"
        data[off + 8:off + 16] = struct.pack(">HHi", 0, 0, round(gamma * 65536))
    return bytes(data)


@pytest.mark.parametrize("text", ["sRGB IEC61966-2.1", "Adobe RGB (1998)", "e-sRGB", "Display P3"])
def test_a_v2_description_is_read(text: str) -> None:
    profile = _v2(text)
    assert icc.description(profile) == text and icc.space(profile) == "RGB"
    assert not icc.is_srgb(profile)  # a name alone says nothing of the values


def test_a_v4_description_unreadable_bytes_and_a_long_name() -> None:
    assert icc.description(_wide_profile()) == "Wide built-in"
    assert icc.description(_srgb()) == "sRGB built-in"
    assert icc.description(b"garbage" * 30) is None
    assert icc.shown(b"garbage" * 30) == "unnamed"
    assert icc.shown(_v2("x" * 500)) == "x" * 57 + "..."
    empty = bytearray(_srgb())  # an 'mluc' of no records
    off = _tags(_srgb())[b"desc"][0]
    empty[off + 8:off + 12] = bytes(4)
    assert icc.description(bytes(empty)) is None
    assert icc.foreign({"icc_profile": b"garbage" * 30}) is not None  # not known to be sRGB: tried, see below
    assert icc.foreign({}) is None and icc.foreign({"icc_profile": "not bytes"}) is None


@pytest.mark.parametrize("profile, srgb", [
    (_srgb(), True),
    (_retoned(_srgb(), 2.2), False),  # sRGB's usual stand-in, 8.5 levels off in the darks
    (_srgb().replace("sRGB built-in".encode("utf-16-be"), "Mine built-in".encode("utf-16-be")), True),
    (_retoned(_srgb(), 1.0), False),  # "linear sRGB": its values are light, not sRGB's
    (_retoned(_srgb(), 1.8), False),
    (_wide_profile(), False),
])
def test_whether_a_profile_is_srgb_is_read_from_what_it_does(profile: bytes, srgb: bool) -> None:
    assert icc.is_srgb(profile) is srgb


def test_a_linear_srgb_profile_is_converted(tmp_path: Path) -> None:
    raw = _colours()
    linear = _retoned(_srgb(), 1.0)
    Image.fromarray(raw).save(tmp_path / "lin.png", icc_profile=linear)
    pixels, said = _read(tmp_path / "lin.png")
    expected = np.asarray(ImageCms.profileToProfile(Image.fromarray(raw), ImageCms.ImageCmsProfile(io.BytesIO(linear)),
                                                    ImageCms.createProfile("sRGB")))
    assert np.array_equal(pixels, expected) and not np.array_equal(pixels, raw)
    assert said == [f"{tmp_path / 'lin.png'}: converted to sRGB from its colour profile (sRGB built-in)"]


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_a_grey_profile_on_a_colour_image_leaves_it_with_a_warning(tmp_path: Path, mode: str) -> None:
    # Pillow's convert("RGB") keeps a grey scan's profile: red marks on it were read as grey.
    im = Image.new("RGB", (8, 8), (255, 0, 0)).convert(mode)
    im.save(tmp_path / "g.png", icc_profile=_v2("Grey scan", b"GRAY"))
    pixels, said = _read(tmp_path / "g.png")
    assert pixels[0, 0].tolist()[:3] == [255, 0, 0]
    assert said == [f"{tmp_path / 'g.png'}: its colour profile (Grey scan) cannot be applied (GRAY profile for a "
                    "colour image); its values are read as sRGB"]


def _colours(h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(40, 220, size=(h, w, 3), dtype=np.uint8)


def _read(path: Path) -> tuple[np.ndarray, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels = load_image(path)
    return pixels, [str(w.message) for w in caught]


def test_a_wide_gamut_image_is_read_in_srgb_with_a_warning(tmp_path: Path) -> None:
    raw = _colours()
    Image.fromarray(raw).save(tmp_path / "wide.png", icc_profile=_wide_profile())
    pixels, said = _read(tmp_path / "wide.png")
    wide = ImageCms.ImageCmsProfile(io.BytesIO(_wide_profile()))
    expected = np.asarray(ImageCms.profileToProfile(Image.fromarray(raw), wide, ImageCms.createProfile("sRGB")))
    assert np.array_equal(pixels, expected)
    assert np.abs(pixels.astype(int) - raw).max() > 10  # the colours moved: the profile said something
    assert said == [f"{tmp_path / 'wide.png'}: converted to sRGB from its colour profile (Wide built-in)"]


def test_an_srgb_profile_changes_nothing_and_says_nothing(tmp_path: Path) -> None:
    raw = _colours()
    Image.fromarray(raw).save(tmp_path / "s.png", icc_profile=ImageCms.ImageCmsProfile(
        ImageCms.createProfile("sRGB")).tobytes())
    pixels, said = _read(tmp_path / "s.png")
    assert np.array_equal(pixels, raw) and said == []


def test_a_profile_little_cms_cannot_read_leaves_the_values_with_a_warning(tmp_path: Path) -> None:
    raw = _colours()
    Image.fromarray(raw).save(tmp_path / "bad.png", icc_profile=b"garbage" * 30)
    pixels, said = _read(tmp_path / "bad.png")
    assert np.array_equal(pixels, raw)
    assert len(said) == 1 and said[0].startswith(f"{tmp_path / 'bad.png'}: its colour profile (unnamed) cannot be "
                                                 "applied (") and said[0].endswith("); its values are read as sRGB")


def test_rgba_keeps_its_alpha_and_hidden_pixels_stay_cleared(tmp_path: Path) -> None:
    raw = np.dstack([_colours(), np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))])  # alpha 0 in column 0
    Image.fromarray(raw, "RGBA").save(tmp_path / "a.png", icc_profile=_wide_profile())
    pixels, _ = _read(tmp_path / "a.png")
    assert np.array_equal(pixels[:, :, 3], raw[:, :, 3])
    assert not pixels[:, 0].any()  # (0, 0, 0, 0) where alpha is 0
    wide = ImageCms.ImageCmsProfile(io.BytesIO(_wide_profile()))
    rgb = np.asarray(ImageCms.profileToProfile(Image.fromarray(np.ascontiguousarray(raw[:, :, :3])), wide,
                                               ImageCms.createProfile("sRGB")))
    assert np.array_equal(pixels[:, 1:, :3], rgb[:, 1:])


@pytest.mark.parametrize("mode", ["L", "LA"])
def test_an_rgb_profile_on_a_grey_image_leaves_it_with_a_warning(tmp_path: Path, mode: str) -> None:
    raw = _colours()[:, :, 0]
    Image.fromarray(raw).convert(mode).save(tmp_path / "g.png", icc_profile=_wide_profile())
    pixels, said = _read(tmp_path / "g.png")
    assert np.array_equal(pixels, raw)
    assert said[0].endswith("cannot be applied (RGB profile for a grey image); its values are read as sRGB")


_GHOSTSCRIPT = Path("/usr/share/color/icc/ghostscript")


@pytest.mark.skipif(not (_GHOSTSCRIPT / "default_cmyk.icc").exists(), reason="no CMYK profile on this machine")
def test_cmyk_goes_through_its_own_profile(tmp_path: Path) -> None:
    profile = (_GHOSTSCRIPT / "default_cmyk.icc").read_bytes()
    Image.fromarray(_colours()).convert("CMYK").save(tmp_path / "c.jpg", icc_profile=profile, quality=95)
    pixels, said = _read(tmp_path / "c.jpg")
    with Image.open(tmp_path / "c.jpg") as im:
        naive = np.asarray(im.convert("RGB"))
        expected = np.asarray(ImageCms.profileToProfile(im, ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                                        ImageCms.createProfile("sRGB"), outputMode="RGB"))
    assert np.array_equal(pixels, expected) and not np.array_equal(pixels, naive)
    assert said[0].endswith("converted to sRGB from its colour profile (Artifex CMYK SWOP Profile)")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_the_command_with_a_head_start_converts_as_the_library_does(tmp_path: Path, suffix: str) -> None:
    # Large enough that `kmq compress` decodes it ahead and counts its colours from the rows as they decode
    # (kmq.prefetch): those rows are the profile's values, which must not be counted.
    big = Image.fromarray(_colours(24, 32)).resize((1280, 960), Image.Resampling.BILINEAR)
    photo = tmp_path / f"wide{suffix}"
    big.save(photo, icc_profile=_wide_profile(), **({"quality": 90} if suffix == ".jpg" else {}))
    result = CliRunner().invoke(main, ["compress", str(photo), "-k", "4", "-o", str(tmp_path / "a.kmq")])
    assert result.exit_code == 0
    run = subprocess.run([sys.executable, "-m", "kmq", "compress", str(photo), "-k", "4", "-o",
                          str(tmp_path / "b.kmq")], capture_output=True, text=True, check=True)
    assert run.stderr == f"Warning: {photo}: converted to sRGB from its colour profile (Wide built-in)\n"
    assert (tmp_path / "a.kmq").read_bytes() == (tmp_path / "b.kmq").read_bytes()


def test_a_pillow_image_a_program_hands_over_is_read_as_its_file_is(tmp_path: Path) -> None:
    import kmq

    Image.fromarray(_colours()).save(tmp_path / "wide.png", icc_profile=_wide_profile())
    with pytest.warns(kmq.KmqWarning, match="converted to sRGB"), Image.open(tmp_path / "wide.png") as im:
        from_image = kmq.compress(im, 4)
    with pytest.warns(kmq.KmqWarning):
        from_file = kmq.compress(tmp_path / "wide.png", 4)
    assert from_image.to_bytes() == from_file.to_bytes()


def test_the_head_start_leaves_out_images_whose_rows_are_converted(tmp_path: Path) -> None:
    from kmq import prefetch

    for name, profile, followed in [("w.jpg", _wide_profile(), False), ("n.jpg", None, True),
                                    ("s.jpg", ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(), True)]:
        Image.fromarray(_colours()).save(tmp_path / name, **({"icc_profile": profile} if profile else {}))
        with Image.open(tmp_path / name) as im:
            assert prefetch._Rows.followable(im) is followed, name
