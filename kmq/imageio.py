"""Pillow at the edge: image files to pixel arrays and back.

kmq works on three layouts only: L (1 channel), RGB (3) and RGBA (4). Every other mode Pillow opens is mapped to
the nearest of them here, once, so the rest of the package never sees a Pillow mode.
"""
from __future__ import annotations

import io
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import KmqError, KmqWarning
from .fileio import reason
from .format import DEFAULT_MAX_PIXELS

ImageSource = Union[str, Path, BinaryIO, bytes]

# Modes that carry transparency become RGBA; grey modes become L; everything else RGB.
_TO_RGBA = {"RGBA", "LA", "La", "RGBa", "PA"}
_TO_L = {"1", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file into (height, width) uint8 for grey or (height, width, 3|4) uint8 for RGB/RGBA.

    EXIF orientation is applied. A multi-frame image gives its first frame, with a KmqWarning.
    Raises KmqError for anything that is not a readable image within max_pixels.
    """
    name = _describe(source)
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with _no_pillow_bomb_limit(), Image.open(source) as im:
            pixels = im.width * im.height
            if pixels > max_pixels:
                raise KmqError(f"{name}: {im.width}x{im.height} = {pixels} pixels exceeds the limit of "
                               f"{max_pixels} pixels (raise it with --max-pixels)")
            if getattr(im, "n_frames", 1) > 1:
                warnings.warn(f"{name} has {im.n_frames} frames; using the first", KmqWarning, stacklevel=2)
            im.load()
            ImageOps.exif_transpose(im, in_place=True)  # in place: no copy of an upright image
            return to_array(im)
    except KmqError:
        raise
    except UnidentifiedImageError:
        raise KmqError(f"{name}: not an image Pillow can read") from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise KmqError(f"{name}: {reason(e)}") from None
    except Image.DecompressionBombError as e:
        raise KmqError(f"{name}: {e} (raise the limit with --max-pixels)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise KmqError(f"{name}: cannot read image: {e}") from None
    except Exception as e:  # noqa: BLE001 - a malformed file trips Pillow's decoders in many ways
        raise KmqError(f"{name}: cannot read image: {type(e).__name__}: {e}") from None


def to_array(im: Image.Image) -> np.ndarray:
    """A Pillow image as (height, width) uint8 (grey) or (height, width, 3|4) uint8."""
    mode = im.mode
    if mode == "P":
        mode = "PA" if "transparency" in im.info else "RGB"
    if mode in _TO_L:
        return _grey(im)
    # convert() to the image's own mode would copy it (36 MB at 12 MP) for nothing.
    if mode in _TO_RGBA:
        return np.asarray(im if im.mode == "RGBA" else im.convert("RGBA"))
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def _grey(im: Image.Image) -> np.ndarray:
    if im.mode in ("1", "L"):
        return np.asarray(im.convert("L"))
    if im.mode == "F":
        return np.clip(np.rint(np.asarray(im)), 0, 255).astype(np.uint8)
    # 16-bit (and Pillow's 32-bit "I", which is how 16-bit PNGs open): scale 0..65535 to 0..255, rounding.
    wide = np.asarray(im).astype(np.int64)
    return ((np.clip(wide, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)


def save_image(pixels: np.ndarray, target: BinaryIO, *, format: str) -> None:
    """Write (h, w) or (h, w, 3|4) uint8 pixels to an open binary file in a format Pillow writes ("PNG", ...)."""
    _save(Image.fromarray(pixels), target, format)


# Formats that store a palette image exactly: writing the palette and one index per pixel keeps every pixel
# and is far smaller and faster than RGB (GIF would otherwise requantize RGB itself, losing colours).
_PALETTE_FORMATS = {"PNG", "GIF"}


def save_quantized(palette: np.ndarray, labels: np.ndarray, target: BinaryIO, *, format: str,
                   truecolor: bool = False) -> None:
    """Write the image palette[labels] to an open binary file in a Pillow format.

    palette (k, 1|3|4) uint8, labels (h, w) integers < k. With k <= 256, RGB or RGBA, and a format that
    stores palettes (PNG, GIF), the file is a palette image (PNG-8; alpha per entry in tRNS) unless truecolor;
    otherwise the pixels themselves are written. Either way the decoded pixels are the same.
    """
    k, channels = palette.shape
    if format.upper() == "GIF" and k > 256:
        warnings.warn(f"GIF holds at most 256 colours: Pillow reduces these {k}", KmqWarning, stacklevel=2)
    if truecolor or channels == 1 or k > 256 or format.upper() not in _PALETTE_FORMATS:
        pixels = palette[labels]
        save_image(pixels[:, :, 0] if channels == 1 else pixels, target, format=format)
        return
    _save(_palette_image(palette, labels), target, format)


def _palette_image(palette: np.ndarray, labels: np.ndarray) -> Image.Image:
    """A Pillow "P" image of palette (k <= 256, 3|4 channels; alpha per entry) and labels (h, w)."""
    height, width = labels.shape
    im = Image.frombytes("P", (width, height), labels.astype(np.uint8).tobytes())
    im.putpalette(palette.tobytes(), "RGBA" if palette.shape[1] == 4 else "RGB")
    return im


# lossless WebP stores at most 16383 pixels a side (libwebp's limit).
WEBP_MAX_SIDE = 16383


def png8_bytes(palette: np.ndarray, labels: np.ndarray) -> bytes | None:
    """The image palette[labels] as a PNG-8 made with care (Pillow, optimize=True); None above k = 256, which no
    8-bit PNG holds.

    A palette image (RGBA: alpha per entry in tRNS) whose entries are ordered by luminance (grey: by level):
    the same pixels, and at K <= 16, where PNG packs 2 to 8 indices per byte, about 10 % fewer bytes than in
    kmq's order by share. Grey: the smaller of that and an 8-bit grey PNG, which wins from about K = 128
    (PNG filters the levels, never palette indices).
    """
    k, channels = palette.shape
    if k > 256:
        return None
    luma = palette[:, 0] if channels == 1 else palette[:, :3].astype(np.float64) @ (0.299, 0.587, 0.114)
    order = np.argsort(luma, kind="stable")
    rank = np.empty(k, np.uint8)
    rank[order] = np.arange(k)
    colours = np.repeat(palette[order], 3, axis=1) if channels == 1 else palette[order]
    candidates = [_palette_image(colours, rank[labels])]
    if channels == 1:
        candidates.append(Image.fromarray(palette[labels][:, :, 0]))
    return min((_optimized_png(im) for im in candidates), key=len)


def _optimized_png(im: Image.Image) -> bytes:
    out = io.BytesIO()
    im.save(out, format="PNG", optimize=True)
    return out.getvalue()


def webp_lossless_bytes(pixels: np.ndarray) -> bytes | None:
    """(h, w) or (h, w, 3|4) uint8 pixels as lossless WebP at libwebp's most thorough setting (method 6),
    keeping the colour under transparent pixels too (exact), so the file holds exactly these pixels.
    None when a side exceeds WEBP_MAX_SIDE."""
    if max(pixels.shape[:2]) > WEBP_MAX_SIDE:
        return None
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="WEBP", lossless=True, method=6, exact=True)
    return out.getvalue()


def _save(im: Image.Image, target: BinaryIO, format: str) -> None:
    # Level 6 is zlib's and Pillow's default balance; the benchmark compares against Pillow at the same level.
    # WebP would be lossy by default: decompressing must give the decoded pixels, not an approximation.
    options = {"PNG": {"compress_level": 6}, "WEBP": {"lossless": True}}.get(format.upper(), {})
    try:
        im.save(target, format=format, **options)
    except (KeyError, ValueError, OSError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise  # a failed write, not a format problem: the caller reports it
        raise KmqError(f"cannot write {im.mode} pixels as {format}: {e}") from None


def format_for(path: str | Path) -> str:
    """The Pillow format name for an output path's extension, e.g. "out.webp" -> "WEBP"."""
    ext = Path(path).suffix.lower()
    registered = Image.registered_extensions()
    if ext not in registered:
        raise KmqError(f"{path}: unknown image extension {ext or '(none)'!r}; use e.g. .png")
    return registered[ext]


def _describe(source: ImageSource) -> str:
    if isinstance(source, (str, Path)):
        return str(source)
    return getattr(source, "name", None) or "<stdin>"


@contextmanager
def _no_pillow_bomb_limit() -> Iterator[None]:
    # We enforce our own max_pixels before decoding, so Pillow's fixed limit (and its warning) would only
    # stop a user who raised ours on purpose.
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved
