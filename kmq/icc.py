"""Colour profiles: an image that carries an ICC profile other than sRGB is converted to sRGB when read.

kmq stores bare palette colours and writes images without a profile, which every viewer shows as sRGB. The
values of an image in another space (Adobe RGB, Display P3, a CMYK press profile) mean other colours: kept
as they are, they would look wrong after a round trip (flower.jpg tagged Adobe RGB: 30.3 dB off as a
colour-managed viewer shows it, worse than K = 64's 34.3 dB), and the distortion kmq reports would not be
what anyone sees. So, as pngquant does with its colour profile support, they are converted to sRGB (Little
CMS, through Pillow) once, on reading, and a warning says so; J and PSNR are then measured in sRGB.

Whether a profile is sRGB is told from what it does, not from its name (`is_srgb`): its colorants are sRGB's
and its tone curves follow sRGB's, read from the bytes here, so that the common case (phone photos and editors
tag sRGB) pays neither for Pillow's ImageCms nor for a transform that would move values by a level here and
there for nothing; a "linear sRGB" (gamma 1.0) profile, whose values are far from sRGB's, is converted.
"""
from __future__ import annotations

import io
import struct
from typing import Any, Callable

# sRGB's colorants as a profile stores them (XYZ adapted to D50), and how far another profile's may stray
# (sRGB profiles in use differ by ~0.0002).
_SRGB_XYZ = {b"rXYZ": (0.4361, 0.2225, 0.0139), b"gXYZ": (0.3851, 0.7169, 0.0971), b"bXYZ": (0.1431, 0.0606, 0.7141)}
_XYZ_TOL = 0.003
# A tone curve follows sRGB's where it is within _CURVE_TOL of it (in linear light) at these values: sRGB
# profiles' own curves (a 1024-entry table, Little CMS's parametric one) are within 1e-5; gamma 2.2, sRGB's usual
# stand-in, is 0.0026 off at 0.05 (8.5 levels at level 16: Photoshop's "Gray Gamma 2.2" is converted), 1.8 0.073,
# 1.0 ("linear sRGB") 0.29. The dark values catch a curve without sRGB's linear toe.
_CURVE_AT = (0.01, 0.03, 0.05, 0.2, 0.5, 0.8)
_CURVE_TOL = 0.002
_SHOWN = 60  # characters of a description a warning shows


def description(profile: bytes) -> str | None:
    """The profile's description (its 'desc' tag, ICC v2 text or v4 multi-localized), or None if unreadable."""
    tag = _tags(profile).get(b"desc")
    try:
        return None if tag is None else _text(tag)
    except (struct.error, UnicodeDecodeError):
        return None


def shown(profile: bytes) -> str:
    """The description as a warning names it: at most _SHOWN characters."""
    text = description(profile) or "unnamed"
    return text if len(text) <= _SHOWN else text[:_SHOWN - 3] + "..."


def space(profile: bytes) -> str:
    """The colour space the profile describes ("RGB", "GRAY", "CMYK", ...), from its header."""
    return profile[16:20].decode("latin-1").strip()


def is_srgb(profile: bytes) -> bool:
    """Whether the profile's values are sRGB's already: an RGB matrix/TRC profile with sRGB's colorants and tone
    curves, or a grey one with sRGB's tone curve; no lookup tables (Little CMS would use those instead)."""
    tags = _tags(profile)
    if b"A2B0" in tags:
        return False
    kind = space(profile)
    if kind == "GRAY":
        curves = [tags.get(b"kTRC")]
    elif kind == "RGB":
        curves = [tags.get(b"rTRC"), tags.get(b"gTRC"), tags.get(b"bTRC")]
        for sig, xyz in _SRGB_XYZ.items():
            got = _xyz(tags.get(sig))
            if got is None or max(abs(a - b) for a, b in zip(got, xyz)) > _XYZ_TOL:
                return False
    else:
        return False
    return all(_follows_srgb(_curve(tag)) for tag in curves)


def foreign(info: dict) -> bytes | None:
    """An image's ICC profile (from Pillow's im.info) if it has one that is not sRGB; else None."""
    profile = info.get("icc_profile")
    if not isinstance(profile, (bytes, bytearray, memoryview)) or not profile:
        return None  # none, or not a profile's bytes (a program's own value): Pillow's savers would refuse it too
    profile = bytes(profile)
    return None if is_srgb(profile) else profile


def to_srgb(im: Any, profile: bytes, mode: str, in_place: bool = False) -> Any:
    """The Pillow image im, in the space the profile describes, converted to sRGB in mode (RGB or L; a grey
    profile's image goes through RGB); in_place (the mode unchanged) writes it into im. Raises ValueError,
    saying why, if Little CMS cannot convert it."""
    from PIL import Image, ImageCms  # only images that carry a foreign profile pay for these

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        out = ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"),
                                        outputMode=None if in_place else "RGB", inPlace=in_place)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        raise ValueError(str(e).strip() or type(e).__name__) from None
    if in_place:
        return im
    assert isinstance(out, Image.Image)
    return out if mode == "RGB" else out.convert("L")


def _tags(profile: bytes) -> dict[bytes, bytes]:
    """The profile's tags by signature, each its bytes; {} where the tag table cannot be read."""
    try:
        (count,) = struct.unpack_from(">I", profile, 128)
        table = [struct.unpack_from(">4sII", profile, 132 + 12 * i) for i in range(min(count, 256))]
    except struct.error:
        return {}
    return {sig: profile[offset:offset + size] for sig, offset, size in table}


def _text(tag: bytes) -> str | None:
    kind = tag[:4]
    if kind == b"desc":  # v2 textDescriptionType: an ASCII count and string
        (n,) = struct.unpack_from(">I", tag, 8)
        return tag[12:12 + n].split(b"\0", 1)[0].decode("latin-1").strip()
    if kind == b"mluc":  # v4: the first record's UTF-16BE string
        (records,) = struct.unpack_from(">I", tag, 8)
        if records == 0:
            return None
        length, start = struct.unpack_from(">II", tag, 20)
        return tag[start:start + length].decode("utf-16-be", "replace").split("\0", 1)[0].strip()
    return None


def _xyz(tag: bytes | None) -> tuple[float, ...] | None:
    if tag is None or tag[:4] != b"XYZ " or len(tag) < 20:
        return None
    return tuple(v / 65536 for v in struct.unpack_from(">3i", tag, 8))


# A parametric curve's parameters (g, a, b, c, d, e, f) by its function type.
_PARA_COUNT = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}


def _curve(tag: bytes | None) -> Callable[[float], float] | None:
    """A tone curve ('curv' or 'para' tag) as a function on 0..1, or None for anything else or unreadable."""
    try:
        if tag is None:
            return None
        if tag[:4] == b"curv":
            (n,) = struct.unpack_from(">I", tag, 8)
            if n == 0:
                return lambda x: x
            if n == 1:
                gamma = struct.unpack_from(">H", tag, 12)[0] / 256
                return lambda x: x ** gamma
            table = [v / 65535 for v in struct.unpack_from(f">{n}H", tag, 12)]
            return lambda x: _interpolate(table, x)
        if tag[:4] == b"para":
            (kind,) = struct.unpack_from(">H", tag, 8)
            count = _PARA_COUNT.get(kind)
            if count is None:
                return None
            p = [v / 65536 for v in struct.unpack_from(f">{count}i", tag, 12)] + [0.0] * (7 - count)
            return lambda x: _parametric(kind, p, x)
    except (struct.error, ZeroDivisionError, OverflowError):
        return None
    return None


def _interpolate(table: list[float], x: float) -> float:
    at = x * (len(table) - 1)
    i = min(int(at), len(table) - 2)
    return table[i] + (table[i + 1] - table[i]) * (at - i)


def _parametric(kind: int, p: list[float], x: float) -> float:
    g, a, b, c, d, e, f = p
    if kind == 0:
        return x ** g
    if kind in (1, 2):
        y = (a * x + b) ** g if a and x >= -b / a else 0.0
        return y + (c if kind == 2 else 0.0)
    if x >= d:
        return (a * x + b) ** g + (e if kind == 4 else 0.0)
    return c * x + (f if kind == 4 else 0.0)


def _follows_srgb(curve: Callable[[float], float] | None) -> bool:
    if curve is None:
        return False
    try:
        return all(abs(curve(x) - _srgb_linear(x)) <= _CURVE_TOL for x in _CURVE_AT)
    except (ZeroDivisionError, OverflowError, ValueError, TypeError):  # a forged curve (complex powers included)
        return False


def _srgb_linear(x: float) -> float:
    return x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4
