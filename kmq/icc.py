"""Colour profiles: an image that carries an ICC profile other than sRGB is converted to sRGB when read.

kmq stores bare palette colours and writes images without a profile, which every viewer shows as sRGB. The
values of an image in another space (Adobe RGB, Display P3, a CMYK press profile) mean other colours: kept
as they are, they would look wrong after a round trip (flower.jpg tagged Adobe RGB: 30.3 dB off as a
colour-managed viewer shows it, worse than K = 64's 34.3 dB), and the distortion kmq reports would not be
what anyone sees. So, as pngquant does with its colour profile support, they are converted to sRGB (Little
CMS, through Pillow) once, on reading, and a warning says so; J and PSNR are then measured in sRGB.

Whether a profile is sRGB is told from its description (`is_srgb`), read from the bytes here, so that the
common case (phone photos and editors tag sRGB) pays neither for Pillow's ImageCms (~15 ms to import) nor
for a transform that would move values by a level here and there for nothing.
"""
from __future__ import annotations

import io
import re
import struct
from typing import Any

# "sRGB IEC61966-2.1", "sRGB built-in", "sRGB2014", "IEC 61966-2.1 Default RGB colour space - sRGB",
# "Artifex Software sRGB ICC Profile"; not "e-sRGB", "esRGB", "scRGB" (other spaces). sGray: sRGB's grey.
_SRGB = re.compile(r"(?:^|[\s(])s(?:RGB|Gray)")


def description(profile: bytes) -> str | None:
    """The profile's description (its 'desc' tag, ICC v2 text or v4 multi-localized), or None if unreadable."""
    try:
        (count,) = struct.unpack_from(">I", profile, 128)
        for i in range(min(count, 256)):
            sig, offset, size = struct.unpack_from(">4sII", profile, 132 + 12 * i)
            if sig == b"desc":
                return _text(profile[offset:offset + size])
    except struct.error:
        return None
    return None


def _text(tag: bytes) -> str | None:
    kind = tag[:4]
    if kind == b"desc":  # v2 textDescriptionType: an ASCII count and string
        (n,) = struct.unpack_from(">I", tag, 8)
        return tag[12:12 + n].split(b"\0", 1)[0].decode("latin-1").strip()
    if kind == b"mluc":  # v4: the first record's UTF-16BE string
        length, start = struct.unpack_from(">II", tag, 20)
        return tag[start:start + length].decode("utf-16-be", "replace").split("\0", 1)[0].strip()
    return None


def space(profile: bytes) -> str:
    """The colour space the profile describes ("RGB", "GRAY", "CMYK", ...), from its header."""
    return profile[16:20].decode("latin-1").strip()


def is_srgb(profile: bytes) -> bool:
    """Whether the profile says it is sRGB (or sRGB's grey), so that the values are sRGB already."""
    text = description(profile)
    return text is not None and _SRGB.search(text) is not None


def foreign(info: dict) -> bytes | None:
    """An image's ICC profile (from Pillow's im.info) if it has one that is not sRGB; else None."""
    profile = info.get("icc_profile")
    return profile if profile and not is_srgb(profile) else None


def to_srgb(im: Any, profile: bytes, mode: str) -> Any:
    """The Pillow image im, in the space the profile describes, converted to sRGB in mode (RGB or L; a grey
    profile's image goes through RGB). Raises ValueError, saying why, if Little CMS cannot convert it."""
    from PIL import Image, ImageCms  # only images that carry a foreign profile pay for these

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        out = ImageCms.profileToProfile(im, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        raise ValueError(str(e).strip() or type(e).__name__) from None
    assert isinstance(out, Image.Image)
    return out if mode == "RGB" else out.convert("L")
