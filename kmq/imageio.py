"""Pillow at the edge: image files to pixel arrays and back.

kmq works on three layouts only: L (1 channel), RGB (3) and RGBA (4). Every other mode Pillow opens is mapped to
the nearest of them here, once, so the rest of the package never sees a Pillow mode.
"""
from __future__ import annotations

import importlib
import io
import os
import stat
import struct
import sys
import threading
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from . import icc, png8, prefetch
# `import kmq` registers .kmq with Pillow (kmq/pilplugin.py) so other programs read it; kmq's own image
# outputs leave it out: "decoding" to .kmq would quantize the pixels again, at a K nobody chose.
from . import KMQ_FORMAT
from .errors import MAX_PIXELS_HINT, WARNINGS_LOCK, KmqError, KmqWarning, warn
from .fileio import is_pipe, is_special, read_bytes, reason
from .format import DEFAULT_MAX_PIXELS

ImageSource = Union[str, Path, BinaryIO, bytes]

# Modes that carry transparency become RGBA; grey modes become L; everything else RGB.
_TO_RGBA = {"RGBA", "LA", "La", "RGBa", "PA"}
_TO_L = {"1", "L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS, padded: bool = False,
               on_rows: Any = None) -> np.ndarray:
    """Read an image file into (height, width) uint8 for grey or (height, width, 3|4) uint8 for RGB/RGBA.

    EXIF orientation is applied. A multi-frame image gives its first frame, with a KmqWarning.
    Raises KmqError for anything that is not a readable image within max_pixels.
    padded: a large RGB image (or RGBA opaque everywhere) may come as a view of three of every four bytes
    (strides (4 width, 4, 1)), the layout it was decoded in, rather than a contiguous copy (see
    kmq.prefetch.map_pixels); for a caller that reads it with numpy only (kmq.compress's K-Means).
    on_rows: handed the rows as they decode, where the image is being decoded ahead (kmq.prefetch.take).
    """
    check_max_pixels(max_pixels)
    name = source_name(source)
    if isinstance(source, bytes) or (not isinstance(source, (str, Path)) and not _seekable(source)):
        # As Pillow itself would read a pipe; here too so that an empty one can be told from a non-image.
        source = io.BytesIO(source if isinstance(source, bytes) else source.read())
    elif isinstance(source, (str, Path)) and is_pipe(source):
        # Pillow reads a named pipe (<(...), /dev/stdin) into memory too, but leaves the file it opened open
        source = io.BytesIO(read_bytes(source))
    try:
        with prefetch.take(source, on_rows) or _opened(source, max_pixels) as im:
            pixels = im.width * im.height
            if pixels > max_pixels:
                raise KmqError(f"{name}: {im.width}x{im.height} = {pixels} pixels exceeds the limit of "
                               f"{max_pixels} pixels {MAX_PIXELS_HINT}")
            if getattr(im, "n_frames", 1) > 1:
                warn(_frames_warning(im, name))
            key = _key_of(im, name)  # while the undecoded layout is known
            wide = prefetch.sixteen_bit_colour(im)
            prefetch.map_pixels(im)
            im.load()
            _upright(im, name)
            mapped = prefetch.pixels(im)
            profile = _profile(im)
            if profile is not None:
                array = _in_srgb(im, name, key, profile, own=True)
            elif mapped is None or im.info.get("transparency") is not None:  # a colour key: see _colour_keyed
                array = to_array(im, name, key=key)
            else:
                array = _mapped_array(im, *mapped, padded=padded, name=name)
            if wide:
                _warn_if_cut(name, array)
            return array
    except (KmqError, KmqWarning, MemoryError):  # a warning made an error by a filter is the caller's to catch
        raise  # as itself; memory is not the file's fault
    except UnidentifiedImageError:
        if _empty(source):  # most often a pipe or redirect that brought nothing: say so, not "not an image"
            raise KmqError(f"{name}: empty (0 bytes): no image to read") from None
        raise KmqError(f"{name}: {_kmq_problem(source, max_pixels) or 'not an image Pillow can read'}") from None
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise KmqError(f"{name}: {reason(e)}") from None
    except Image.DecompressionBombError as e:
        raise KmqError(f"{name}: {e} {MAX_PIXELS_HINT}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        if isinstance(e, OSError) and e.filename is not None and e.strerror:  # the system's, opening the file
            raise KmqError(f"{name}: {reason(e)}") from None  # (a symlink loop; ENAMETOOLONG)
        if isinstance(e.__cause__, KmqError):  # the .kmq plug-in's: its reader's words, the file named once
            raise KmqError(f"{name}: {e.__cause__}") from None
        if "MAX_TEXT_CHUNK" in str(e):  # Pillow's words name its internals, not the chunk
            from PIL import PngImagePlugin

            raise KmqError(f"{name}: cannot read image: a PNG text or colour profile chunk inflates to over "
                           f"{PngImagePlugin.MAX_TEXT_CHUNK // 2**20} MiB, Pillow's limit against decompression "
                           f"bombs") from None
        raise KmqError(f"{name}: cannot read image: {e}") from None
    except Exception as e:  # noqa: BLE001 - a malformed file trips Pillow's decoders in many ways
        raise KmqError(f"{name}: cannot read image: {type(e).__name__}: {e}") from None


def _frames_warning(im: Image.Image, name: str) -> str:
    # A phone's JPEG often holds a second image (a preview, a depth or gain map: Pillow opens it as MPO), which
    # "2 frames" made sound like an animation cut short (round 47's archive trial): its first is the photo.
    if im.format == "MPO":
        return (f"{name}: a JPEG of {im.n_frames} images (MPO: a camera's preview or depth map, or a stereo "
                "pair); using the first, the main image")
    return f"{name}: {im.n_frames} frames; using the first"


def from_pillow(im: Image.Image, name: str = "the image") -> np.ndarray:
    """A Pillow image a program hands kmq, as load_image reads its file: upright (EXIF orientation applied)
    and in sRGB where it carries another colour profile (im.info["icc_profile"]); its current frame."""
    key = _key_of(im, name)  # before getexif, which loads a PNG
    wide = prefetch.sixteen_bit_colour(im)
    # A .kmq keeps no EXIF: turned now, or stored sideways. Only an image read from a file (format set): Pillow's
    # rotate() and transpose() copy the EXIF, orientation and all, into an image that is already turned.
    if im.format is not None and _turned(im, name):
        im = ImageOps.exif_transpose(im)  # a turned copy: the caller's image stays as it was
    profile = _profile(im)
    array = to_array(im, name, key=key) if profile is None else _in_srgb(im, name, key, profile)
    if wide:
        _warn_if_cut(name, array)
    return array


_ORIENTATION = 0x0112  # the EXIF tag


def _turned(im: Image.Image, name: str) -> bool:
    """Whether im's EXIF orientation asks for a turn; an EXIF Pillow cannot read is upright, with a warning."""
    try:
        # A damaged block past its first entries is a UserWarning of Pillow's, which came out in its own words
        with WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            orientation = im.getexif().get(_ORIENTATION, 1)
    except Exception as e:  # noqa: BLE001 - Pillow's EXIF parser fails in many ways on a damaged block
        _unreadable_exif(name, e, upright=True)
        return False
    if caught:
        _unreadable_exif(name, caught[0].message, upright=orientation == 1)
    return orientation != 1


def _unreadable_exif(name: str, problem: object, upright: bool) -> None:
    # (Pillow's words come with double and trailing spaces: "Corrupt EXIF data.  Expecting ... got 10. ")
    words = " ".join(str(problem).split()) or type(problem).__name__
    warn(f"{name}: its EXIF cannot be read" + (f" ({words}); taken as upright" if upright else f" in full ({words})"))


def _upright(im: Image.Image, name: str) -> None:
    """im (kmq's own) turned in place as its EXIF orientation says; an EXIF Pillow cannot read leaves it as it is."""
    if _turned(im, name):
        ImageOps.exif_transpose(im, in_place=True)  # in place: no copy of an upright image
# Modes a colour profile describes the values of; Pillow's LAB, HSV and YCbCr are their own spaces, which
# its convert() maps to RGB itself.
_NOT_PROFILED = {"LAB", "HSV", "YCbCr"}


def _profile(im: Image.Image) -> bytes | None:
    return None if im.mode in _NOT_PROFILED else icc.foreign(im.info)


def _in_srgb(im: Image.Image, name: str, key: Any, profile: bytes, own: bool = False) -> np.ndarray:
    """The pixels of an image that carries a colour profile other than sRGB, converted to sRGB (kmq.icc), with
    a warning; where Little CMS cannot convert them, or the profile is not of the image's kind (a grey profile
    on a colour image: Pillow's convert("RGB") keeps the profile), as they are, with a warning that says so.
    own: im is kmq's own (load_image's), which an RGB image may be converted in, without copies."""
    what = icc.shown(profile)
    grey = im.mode in _TO_L or im.mode in ("LA", "La")
    kind = icc.space(profile)
    try:
        if im.mode == "CMYK":  # through its own profile, not Pillow's naive formula
            pixels = to_array(icc.to_srgb(im, profile, "RGB"), name)
        elif kind == "GRAY" and not grey:
            # Pillow's convert("RGB") of a grey scan keeps its profile: channels all equal are still its grey
            pixels = to_array(im, name, key=key)
            if not _equal_channels(pixels):
                raise ValueError("GRAY profile for a colour image")
            pixels = _converted(pixels, profile, True)
        elif kind != "GRAY" and grey:
            raise ValueError(f"{kind or 'no'} profile for a grey image")
        elif own and im.mode == "RGB" and key is None:
            # 12 MP: 0.24-0.27 s and 113 MB to read it, against 0.45-0.57 s and 261 MB through numpy's copies
            pixels = to_array(icc.to_srgb(im, profile, "RGB", in_place=True), name)
        else:
            pixels = _converted(to_array(im, name, key=key), profile, grey)
    except ValueError as e:
        warn(f"{name}: its colour profile ({what}) cannot be applied ({e}); its values are read as sRGB")
        return to_array(im, name, key=key)
    warn(f"{name}: converted to sRGB from its colour profile ({what})")
    return pixels


def _equal_channels(pixels: np.ndarray) -> bool:
    return pixels.ndim == 3 and all(np.array_equal(pixels[:, :, 0], pixels[:, :, c]) for c in (1, 2))


def _converted(pixels: np.ndarray, profile: bytes, grey: bool) -> np.ndarray:
    """kmq's pixels (L, RGB or RGBA) in the profile's space, in sRGB: alpha kept, the hidden colours cleared
    again. grey: of a grey image (an RGBA made from grey and alpha has equal channels: one is converted)."""
    if pixels.ndim == 2:
        return np.asarray(icc.to_srgb(Image.fromarray(pixels), profile, "L"))
    colour = np.ascontiguousarray(pixels[:, :, 0] if grey else pixels[:, :, :3])
    out = pixels.copy()
    new = np.asarray(icc.to_srgb(Image.fromarray(colour), profile, "L" if grey else "RGB"))
    out[:, :, :3] = new[:, :, None] if grey else new
    return clear_transparent(out) if out.shape[2] == 4 else out


def _seekable(stream: BinaryIO) -> bool:
    try:
        return stream.seekable()
    except (AttributeError, OSError, ValueError):
        return False


def _kmq_problem(source: str | Path | BinaryIO, max_pixels: int) -> str | None:
    """What is wrong with a source that starts as a .kmq does, in the .kmq reader's words: the plug-in refused
    it (a truncated file), and Image.open then said only that no format could read it. None for anything else,
    or a stream that cannot be read again."""
    from .format import MAGIC, FormatError, KmqImage, read_kmq

    try:
        with (open(source, "rb") if isinstance(source, (str, Path)) else nullcontext(source)) as f:
            f.seek(0)
            if f.read(len(MAGIC)) != MAGIC:
                return None
            KmqImage.from_bytes(read_kmq(f, max_pixels=max_pixels, head=MAGIC), max_pixels=max_pixels)
    except FormatError as e:
        return str(e)
    except (AttributeError, OSError, ValueError, KmqError):
        return None
    return None


def _empty(source: str | Path | BinaryIO) -> bool:
    """Whether an image source Pillow could not identify holds no bytes at all: a regular file of size 0, a
    seekable stream with nothing in it, or a device that gives nothing more (/dev/null; not /dev/zero or
    /dev/urandom, which seek to 0 at their "end" and were called empty)."""
    try:
        if isinstance(source, (str, Path)):
            info = os.stat(source)
            if stat.S_ISCHR(info.st_mode):
                with open(source, "rb") as f:
                    return _gives_nothing(f)
            return stat.S_ISREG(info.st_mode) and info.st_size == 0
        try:
            device = stat.S_ISCHR(os.fstat(source.fileno()).st_mode)
        except (AttributeError, OSError, ValueError):  # a stream of the program's own (io.BytesIO)
            device = False
        return _gives_nothing(source) if device else source.seek(0, io.SEEK_END) == 0
    except (AttributeError, OSError, ValueError):
        return False


def _gives_nothing(device: BinaryIO) -> bool:
    """Whether a character device is at its end (never asked of a terminal, which would wait for a key)."""
    return not os.isatty(device.fileno()) and device.read(1) == b""


def _mapped_array(im: Image.Image, memory: object, per_pixel: int, *, padded: bool, name: str) -> np.ndarray:
    """The pixels of an image decoded into memory of kmq's own (kmq.prefetch.map_pixels), as to_array gives
    them, without a copy where the layout allows: grey and RGBA with transparency always, RGB (stored as
    RGBX) when padded."""
    whole = np.frombuffer(memory, dtype=np.uint8).reshape(im.height, im.width, per_pixel)
    see_through = im.mode == "RGBA" and not opaque(whole)
    if see_through:
        _clear_hidden(whole)  # kmq's own memory: cleared in place, no second copy of a large image
    whole.flags.writeable = False  # read-only, as Pillow's own arrays are: callers never write into input
    if per_pixel == 1:
        return whole[:, :, 0]
    if see_through:
        return whole
    if im.mode == "RGBA":
        return whole[:, :, :3] if padded else drop_alpha(whole)  # to_array would read Pillow's copy again
    if not padded:
        # Pillow packs RGBX into RGB at ~1 GB/s; numpy's copy of three bytes in four is half as fast.
        return to_array(im, name)
    return whole[:, :, :3]


_UNREAD = object()  # to_array's key when the caller has not read it


def to_array(im: Image.Image, name: str = "the image", *, key: Any = _UNREAD) -> np.ndarray:
    """A Pillow image as (height, width) uint8 (grey) or (height, width, 3|4) uint8; name is for warnings.
    key: the colour key as `_key_of` gave it before the image was loaded; by default read here (exactly so
    only while the image is not loaded yet)."""
    mode = im.mode
    if mode == "P":
        # (not with a colour profile: PNG's is RGB for a palette image, and applied to RGB pixels)
        if "transparency" not in im.info and "icc_profile" not in im.info and _grey_palette(im):
            return _asarray(im.convert("L"))  # (exact: Pillow's luminance weights sum to 1 in fixed point)
        mode = "PA" if "transparency" in im.info else "RGB"
    if mode in _KEYED:
        key = _key_of(im, name) if key is _UNREAD else key
        if key is not None:
            return _colour_keyed(im, name, key)
    if mode in _TO_L:
        return _grey(im, name)
    # convert() to the image's own mode would copy it (36 MB at 12 MP) for nothing.
    if mode in _TO_RGBA:
        # Pillow has no La -> RGBA conversion (premultiplied grey): through LA, which undoes the premultiplying
        rgba = _asarray(im if im.mode == "RGBA" else (im.convert("LA") if im.mode == "La" else im).convert("RGBA"))
        if not opaque(rgba):
            return clear_transparent(rgba)
        return np.ascontiguousarray(rgba[:, :, 0]) if mode in ("LA", "La") else drop_alpha(rgba)
    return _asarray(im if im.mode == "RGB" else im.convert("RGB"))


def _grey_palette(im: Image.Image) -> bool:
    """Whether every entry of a palette image is grey: read as grey, it is stored as one channel, as the grey
    image it is (kmq writes grey palette PNGs of few levels; pngquant writes any grey image as one)."""
    entries = np.asarray(im.getpalette() or [0, 0, 0], dtype=np.uint8).reshape(-1, 3)
    return bool((entries == entries[:, :1]).all())


# Grey and RGB PNGs can mark one colour transparent (tRNS): Pillow keeps it only in info["transparency"], in
# the image's own sample values (16-bit ones for I;16), and its convert("RGBA") makes a 16-bit key opaque.
_KEYED = {"1", "L", "RGB", "I", "I;16", "I;16L", "I;16B", "I;16N"}


def _key_of(im: Image.Image, name: str) -> int | tuple | None:
    """A grey or RGB image's colour key as its decoded pixels hold it, or None for none. Exact for a PNG only
    before im.load, while its raw layout is known: Pillow keeps a 2- or 4-bit grey key in sample units but
    decodes the samples scaled to 0..255, and decodes 16-bit RGB to its high bytes, where a 16-bit key cannot
    be matched exactly: then no pixel is keyed (opaque, as Pillow's own convert("RGBA") makes it), with a
    warning. The image is not changed (it may be the caller's)."""
    key = im.info.get("transparency")
    if key is None or im.mode not in _KEYED or im.format != "PNG" or not im.tile:
        return key
    args = im.tile[0][3]  # (Pillow 10's tiles are plain tuples, without Pillow 11's .args)
    rawmode = args if isinstance(args, str) else args[0]
    if rawmode in ("L;2", "L;4") and isinstance(key, int):
        return key * (85 if rawmode == "L;2" else 17)
    if rawmode.startswith("RGB;16") and isinstance(key, tuple):
        warn(f"{name}: a 16-bit colour key (tRNS {key}) cannot be matched on 8-bit pixels: "
             "no pixel made transparent")
        return None
    return key


def _colour_keyed(im: Image.Image, name: str, key: int | tuple) -> np.ndarray:
    """A grey or RGB image with a colour key (`_key_of`) as to_array gives it, but RGBA, its keyed pixels
    (0, 0, 0, 0), when the key occurs (as an LA image is); otherwise as without the key."""
    pixels = _asarray(im) if im.mode == "RGB" else _grey(im, name)
    # A bilevel image's key is 0 or 255 (Pillow scales it), as its L pixels are; np.asarray would be bool.
    raw = pixels if im.mode in ("1", "L", "RGB") else np.asarray(im)
    if raw.ndim == 3:
        if not (isinstance(key, tuple) and len(key) == 3):
            return pixels
        # One channel at a time: 7x faster than comparing (h, w, 3) against the key and reducing with all.
        hidden = raw[:, :, 0] == key[0]
        for channel in (1, 2):
            hidden &= raw[:, :, channel] == key[channel]
    else:
        if not isinstance(key, int):
            return pixels
        hidden = raw == key
    if not hidden.any():
        return pixels
    rgba = np.empty((*hidden.shape, 4), np.uint8)
    rgba[:, :, :3] = pixels if pixels.ndim == 3 else pixels[:, :, None]
    rgba[:, :, 3] = 255
    np.putmask(rgba.view(np.uint32)[:, :, 0], hidden, 0)  # a whole pixel a word: 25x faster than rgba[hidden]
    return rgba


# Pillow hands numpy an image's bytes from `Image.tobytes`, which makes them in ImageFile.MAXBLOCK pieces
# (64 KiB) and joins those: two copies of the pixels. With one piece as large as the image, join returns
# that piece itself: one copy (12 MP RGB: 0.03 s instead of 0.06). The lock keeps threads from restoring
# each other's value; any Pillow makes the same array either way. The value is global: a Pillow call in
# another thread meanwhile (a save in a bulk run) sees it too, where it only sizes that call's buffer.
_MAXBLOCK_LOCK = threading.Lock()


def _asarray(im: Image.Image) -> np.ndarray:
    """np.asarray(im) (read-only) for an 8-bit mode, with one copy of the pixels made instead of two."""
    with _MAXBLOCK_LOCK:
        before = ImageFile.MAXBLOCK
        ImageFile.MAXBLOCK = max(before, im.width * im.height * 4)
        try:
            return np.asarray(im)
        finally:
            ImageFile.MAXBLOCK = before


def opaque(pixels: np.ndarray) -> bool:
    """Whether (h, w, 4) pixels have alpha 255 everywhere: no transparency to keep."""
    return bool(pixels[:, :, 3].min() == 255)


def clear_transparent(pixels: np.ndarray) -> np.ndarray:
    """(h, w, 4) pixels with every fully transparent one (alpha 0) as (0, 0, 0, 0); a copy only if any changes.

    Nobody sees the colour under alpha 0, yet it would count in J like any other: K-Means spent most of a
    cut-out's palette on it (a photo on a transparent background at K = 8: 6 entries, and the background
    decoded with alpha 1-2). PNG-8 quantizers and lossless WebP drop that colour too.
    """
    if not pixels.flags.c_contiguous:
        pixels = np.ascontiguousarray(pixels)
    # A pixel as one little-endian uint32: alpha is its top byte. Passes of whole words, no boolean
    # indexing of 12 M rows (which cost 0.1-0.3 s at 12 MP); a chunk at a time, so that the masks stay in
    # the cache and the search stops at the first hidden colour (12 MP photo under random alpha: 0.043 s
    # of CPU warm, 0.10 first, with masks of the whole image -> 0.020 and 0.059); then a copy cleared as
    # kmq's own decoded pixels are.
    words = _words(pixels).reshape(-1)
    n = words.shape[0]
    hidden = np.empty(min(n, _CLEAR_CHUNK), dtype=bool)
    shown = np.empty_like(hidden)
    for s in range(0, n, _CLEAR_CHUNK):
        e = min(s + _CLEAR_CHUNK, n)
        h, c = hidden[:e - s], shown[:e - s]
        np.less(words[s:e], _ALPHA_1, out=h)
        np.not_equal(words[s:e], 0, out=c)
        np.logical_and(h, c, out=c)
        if c.any():
            break
    else:
        return pixels
    out = pixels.copy()
    _clear_hidden(out)
    return out


_ALPHA_1 = np.uint32(1 << 24)  # the least word with alpha 1
_CLEAR_CHUNK = 1 << 16  # pixels per pass of `clear_transparent` and `_clear_hidden`


def _words(pixels: np.ndarray) -> np.ndarray:
    return pixels.view("<u4").reshape(pixels.shape[:2])


def _clear_hidden(pixels: np.ndarray) -> None:
    """Every fully transparent pixel of writable C-contiguous (h, w, 4) pixels made (0, 0, 0, 0), in place, a
    chunk at a time: a mask of the whole image would be another pass over memory as large as a quarter of it."""
    words = _words(pixels).reshape(-1)
    n = words.shape[0]
    hidden = np.empty(min(n, _CLEAR_CHUNK), dtype=bool)
    for s in range(0, n, _CLEAR_CHUNK):
        e = min(s + _CLEAR_CHUNK, n)
        np.less(words[s:e], _ALPHA_1, out=hidden[:e - s])
        np.copyto(words[s:e], 0, where=hidden[:e - s])


def drop_alpha(pixels: np.ndarray) -> np.ndarray:
    """(h, w, 4) pixels opaque everywhere -> (h, w, 3): an alpha channel that says nothing is not stored,
    so it neither costs palette bytes nor counts in the PSNR (whose J is per channel)."""
    return np.ascontiguousarray(pixels[:, :, :3])


def _grey(im: Image.Image, name: str) -> np.ndarray:
    if im.mode in ("1", "L"):
        return _asarray(im.convert("L"))
    if im.mode == "F":
        return _float_grey(np.asarray(im, dtype=np.float64), name)
    values = np.asarray(im)
    lo, hi = int(values.min()), int(values.max())
    # Pillow reads a PGM of more than 8 bits as mode I, its values scaled to 0..65535: 16-bit, whatever they are.
    if im.mode == "I" and im.format != "PPM":
        # 32-bit grey says nothing of its range: a TIFF may hold 8-bit levels, a scientific image anything.
        # Levels within 0..255 are kept as they are (not made near-black as 16-bit would); beyond 16 bits (or
        # negative), the data's own range is stretched to 0..255, with a warning.
        if lo >= 0 and hi <= 255:
            return values.astype(np.uint8)
        if lo < 0 or hi > 65535:
            warn(f"{name}: 32-bit grey values span {lo}..{hi}: scaled from that range to 0..255")
            wide = values.astype(np.int64)
            return (((wide - lo) * 255 + (hi - lo) // 2) // (hi - lo)).astype(np.uint8)
    _warn_if_dim(name, values, lo, hi)
    return _looked_up(_SIXTEEN_TO_EIGHT, values)


# 16-bit to 8-bit: v * 255 / 65535, rounded (v / 257). A table, since widening 48 MP of 16-bit values to do
# the sum took 930 MB (a lab trial's 16-bit TIFF, round 46).
_SIXTEEN_TO_EIGHT = ((np.arange(65536, dtype=np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
_LOOKUP_SPAN = 1 << 20


def _distinct_count(values: np.ndarray, lo: int) -> int:
    """How many distinct values (from lo, within 16 bits) an array holds, a span at a time (bincount widens
    its input to intp)."""
    flat = values.reshape(-1)
    seen = np.zeros(65536 - lo, bool)
    for start in range(0, flat.size, _LOOKUP_SPAN):
        part = flat[start:start + _LOOKUP_SPAN]
        seen |= np.bincount(part - np.asarray(lo, part.dtype), minlength=len(seen)).astype(bool)[:len(seen)]
    return int(np.count_nonzero(seen))


def _looked_up(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """table[values] for values within the table, a span at a time: numpy widens an index array to intp (8
    bytes a value) before it looks anything up."""
    out = np.empty(values.shape, table.dtype)
    flat, into = values.reshape(-1), out.reshape(-1)
    for start in range(0, flat.size, _LOOKUP_SPAN):
        into[start:start + _LOOKUP_SPAN] = table[flat[start:start + _LOOKUP_SPAN]]
    return out


def _warn_if_dim(name: str, values: np.ndarray, lo: int, hi: int) -> None:
    """A warning when 16-bit values kept in a narrow range (a 12-bit camera's 0..4095, a dim microscope
    image's 72..629) come out as a few 8-bit levels: kmq reads 16-bit as the whole 0..65535 range, and the
    detail would otherwise vanish without a word (round 46's lab trial: 547 values became 3 levels, "lossless").
    Not where the values are no more than the levels (a mask of 0 and 4095 loses nothing)."""
    low, high = int(_SIXTEEN_TO_EIGHT[lo]), int(_SIXTEEN_TO_EIGHT[hi])
    levels = high - low + 1
    if levels < 64 and hi - lo + 1 > 4 * levels and _distinct_count(values, lo) > levels:
        warn(f"{name}: its 16-bit values span {lo}..{hi} of 0..65535, 8-bit levels {low}..{high} ({levels} of "
             f"256): stretch its range first if that detail matters")


def _warn_if_cut(name: str, pixels: np.ndarray) -> None:
    """16-bit colour reaches kmq cut to 8 bits by Pillow, so a narrow range (a 12-bit camera's 0..4095, a dim
    image) is a few 8-bit levels: said as for 16-bit grey (round 46's lab trial found these cut without a word).
    The 16-bit values are gone by then, so the sign is a narrow span of 8-bit levels every one of which is
    used (a cut continuum), not a few values far apart (a mask of 0 and 4095: 0 and 15). (An 8-bit image
    stored as 16-bit in a narrow range warns too, though nothing was cut; gapped values say nothing.)"""
    colour = pixels if pixels.ndim == 2 else pixels[..., : 1 if pixels.shape[2] == 2 else 3]
    low, high = int(colour.min()), int(colour.max())
    levels = high - low + 1
    if 1 < levels < 64 and _distinct_count(colour, low) == levels:
        warn(f"{name}: its 16-bit samples reach kmq cut to 8 bits (as Pillow decodes 16-bit colour), "
             f"8-bit levels {low}..{high} ({levels} of 256): stretch its range first if that detail matters")


def _float_grey(values: np.ndarray, name: str) -> np.ndarray:
    """32-bit float grey (mode F, e.g. TIFF) -> uint8 levels. Floats have no set range either: 0..1 is the
    usual normalised one (scaled by 255), 0..255 levels are kept (rounded), anything else is stretched from
    its own range; a warning says which whenever values are scaled. NaN or infinity is a KmqError."""
    if not np.isfinite(values).all():
        raise KmqError(f"{name}: float grey values include NaN or infinity; kmq needs finite levels")
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0 and hi <= 1:
        if hi > 0:
            warn(f"{name}: float grey values span {lo:g}..{hi:g}: read as 0..1, scaled to 0..255")
        return np.rint(values * 255).astype(np.uint8)
    if lo >= 0 and hi <= 255:
        return np.rint(values).astype(np.uint8)
    warn(f"{name}: float grey values span {lo:g}..{hi:g}: scaled from that range to 0..255")
    return np.rint((values - lo) * (255 / (hi - lo))).astype(np.uint8)


def save_image(pixels: np.ndarray | Image.Image, target: BinaryIO, *, format: str, name: str = "the output") -> None:
    """Write (h, w) or (h, w, 3|4) uint8 pixels to an open binary file in a format Pillow writes ("PNG", ...).

    RGBA goes to a format without alpha as save_quantized says; name is the file the warning names. pixels
    may also be an RGB Pillow image (segment draws its largest views straight into one): written as is.
    """
    if isinstance(pixels, Image.Image):
        _check_sides(pixels.width, pixels.height, format.upper(), name)
        warn_lossy(format.upper(), name)
        _save(pixels, target, format, name)
        return
    _check_sides(pixels.shape[1], pixels.shape[0], format.upper(), name)
    if pixels.ndim == 3 and pixels.shape[2] == 4 and format.upper() not in ALPHA_FORMATS:
        if format.upper() == "GIF":
            # As a palette image, GIF can keep alpha 0: possible when there are few enough colours.
            words = np.ascontiguousarray(pixels).view(np.uint32)[:, :, 0]
            colours, labels = np.unique(words, return_inverse=True)
            if len(colours) <= 256:
                palette = colours.view(np.uint8).reshape(-1, 4)
                save_quantized(palette, labels.reshape(words.shape), target, format=format, name=name)
                return
        _holds_rgb(format, name)
        pixels = _flattened(pixels, format, name)
    warn_lossy(format.upper(), name)
    _save(Image.fromarray(pixels), target, format, name)


def warn_lossy(fmt: str, name: str) -> None:
    """A KmqWarning naming the output when its format (a Pillow name) changes the pixels it is given:
    every image kmq writes (decompress, segment, montage, swatch) says so in the same words."""
    if fmt in LOSSY_FORMATS:
        warn(f"{name}: {fmt} is lossy: the pixels written are not exactly the decoded ones (PNG or "
             "WebP keep them)")


# Formats that store a palette image exactly: writing the palette and one index per pixel keeps every pixel
# and is far smaller and faster than RGB (GIF would otherwise requantize RGB itself, losing colours).
_PALETTE_FORMATS = {"PNG", "GIF"}
# The formats Pillow writes (and reads back) with a whole alpha channel. Any other gets RGBA composited over
# white, with a warning, rather than alpha dropped silently (GIF, BMP, PPM) or a refusal (JPEG); GIF keeps
# alpha 0 as its one transparent colour.
ALPHA_FORMATS = frozenset({"PNG", "WEBP", "TIFF", "TGA", "AVIF", "JPEG2000", "ICO", "ICNS", "DDS", "IM",
                           "QOI", "SGI"})


def save_quantized(palette: np.ndarray, labels: np.ndarray, target: BinaryIO, *, format: str,
                   truecolor: bool = False, name: str = "the output", in_order: bool = False) -> None:
    """Write the image palette[labels] to an open binary file in a Pillow format.

    palette (k, 1|3|4) uint8, labels (h, w) integers < k. With k <= 256, RGB or RGBA, and a format that
    stores palettes (PNG, GIF), or grey of up to GREY_PALETTE_UP_TO levels as PNG (grey entries, which
    load_image reads back as grey), the file is a palette image (PNG-8; alpha per entry in tRNS) unless truecolor
    (which GIF ignores, with a KmqWarning: it is always a palette image);
    otherwise the pixels themselves are written. Either way the decoded pixels are the same, except for alpha
    in a format without it (not in ALPHA_FORMATS): the colours are composited over white, and a KmqWarning
    naming `name` says so when that changes any; GIF (always a palette image) makes the palette entries
    with alpha 0 its transparent colour and composites the others, and above 256 entries has the visible
    colours reduced to 255 beside it (256 without one).
    in_order: a palette image's entries in palette's order (else by luminance, which packs smaller).
    """
    k, channels = palette.shape
    fmt = format.upper()
    _check_sides(labels.shape[1], labels.shape[0], fmt, name)
    if fmt == "GIF" and k > 256:
        kept = "255 and its transparent colour" if channels == 4 and (palette[:, 3] == 0).any() else "256"
        warn(f"{name}: GIF holds at most 256 colours: Pillow reduces these {k} colours to {kept}")
    if fmt == "GIF" and truecolor:
        # Pillow would requantize RGB pixels for GIF itself: written as the palette image they are instead.
        warn(f"{name}: --truecolor does not apply to GIF, which is always a palette image")
        truecolor = False
    transparent = None
    if channels == 4 and fmt not in ALPHA_FORMATS:
        if fmt == "GIF":
            palette, labels, transparent = _gif_transparency(palette, labels, name)
            if k > 256:
                palette, labels, transparent = _gif_reduced(palette, labels, transparent)
                k = len(palette)
        else:
            _holds_rgb(format, name)
            palette = _flattened(palette[None], fmt, name)[0]
        channels = 3
    warn_lossy(fmt, name)
    if channels == 1 and fmt == "PNG" and np.isin(palette, (0, 255)).all() and not in_order:
        # Black and white as a 1-bit PNG: a 1-bit line drawing of 4,350 bytes came back as 5,856 in 8-bit grey.
        _save(_pixel_image(palette, labels).convert("1", dither=Image.Dither.NONE), target, format, name,
              compress_level=png_level(labels.size))
        return
    if truecolor or (channels == 1 and not (in_order or fmt == "PNG" and k <= GREY_PALETTE_UP_TO)) or k > 256 \
            or fmt not in _PALETTE_FORMATS:
        _save(_pixel_image(palette, labels), target, format, name)
        return
    if channels == 1:
        palette = np.repeat(palette, 3, axis=1)  # grey entries: kmq reads such a palette image back as grey
    # Entries by luminance: neighbouring pixels then tend to have nearby indices, which PNG's filters and
    # deflate store in 8-13 % fewer bytes at K = 16 on the sample photos than kmq's order by share (other
    # images: 11 % fewer to 6 % more; trying both would double the encode).
    order, rank = (np.arange(k), np.arange(k, dtype=np.uint8)) if in_order else _luminance_order(palette)
    if transparent is not None:
        transparent = int(rank[transparent])
    im = _palette_image(palette[order], rank[labels])
    if fmt == "PNG" and png8.bits_for(k) < 8 and labels.size <= PNG_BEST_PIXELS:
        target.write(_smaller_png(im))
        return
    _save(im, target, format, name, transparency=transparent,
          compress_level=png_level(labels.size) if fmt == "PNG" else None,
          optimize=False if in_order and fmt == "GIF" else None)  # (Pillow's GIF drops unused entries)


# A palette PNG of 1-4-bit indices is written both ways (Pillow's filtered rows, kmq.png8's unfiltered ones) up
# to this many pixels; above, bands of its rows (about this many pixels) choose the way the whole is written:
# zlib's level 9 took 0.08-0.41 s of CPU a way at 2 MP, where the second file was as often the larger (h55r1).
PNG_BOTH_UP_TO = 1 << 18


def _smaller_png(im: Image.Image) -> bytes:
    """The smaller of Pillow's PNG of a "P" image and png8's unfiltered one, at zlib level 9 (see kmq.png8)."""
    sample = None if im.width * im.height <= PNG_BOTH_UP_TO else _row_bands(im, PNG_BOTH_UP_TO)
    if sample is None or 2 * sample.height > im.height:  # (few rows: the bands would be most of the image)
        return min(_png(im, compress_level=9), png8.unfiltered(im, 9), key=len)
    if len(png8.unfiltered(sample, 9)) < len(_png(sample, compress_level=9)):
        return png8.unfiltered(im, 9)
    return _png(im, compress_level=9)


def _row_bands(im: Image.Image, pixels: int, bands: int = 8) -> Image.Image:
    """About `pixels` of a "P" image's pixels as `bands` bands of whole rows spread over its height, with its
    palette and transparency: a stand-in for how its rows compress."""
    rows = max(1, pixels // (im.width * bands))
    starts = np.linspace(0, im.height - rows, bands).astype(int)
    indices = np.asarray(im)
    picked = np.concatenate([indices[s:s + rows] for s in np.unique(starts)])
    sample = Image.frombytes("P", (im.width, len(picked)), picked.tobytes())
    sample.putpalette(im.getpalette())
    if "transparency" in im.info:
        sample.info["transparency"] = im.info["transparency"]
    return sample


# Grey of up to 32 levels as a palette PNG: 1-4-bit indices up to 16 and, unfiltered, fewer bytes than
# filtered levels up to 32 (round 46's peer trial: china grey at K = 16 25,646 bytes against pngquant's 18,265).
# On 4 grey photos palette / grey bytes were 0.60-0.72x at K = 2-16, 0.76-0.86x at 32, 0.85-1.10x at 64 and
# 1.18-1.37x at 256.
GREY_PALETTE_UP_TO = 32

# Formats whose encoders change pixels (Pillow's AVIF too, even at quality 100 and 4:4:4: its YUV rounding).
LOSSY_FORMATS = frozenset({"JPEG", "MPO", "AVIF", "PDF"})


def _luminance_order(palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, rank): the palette's entries by ascending luminance (grey: level), ties kept in index order;
    RGBA's entries with alpha under 255 first (by luminance too), so that a PNG's tRNS, which holds the
    alpha of entries 0..n-1 and makes the rest opaque, stops at the last of them (_palette_image): a
    wordmark's 3,020-byte PNG-8 was 2,807 with the trailing 255s dropped, icons 3-9 % smaller with the
    see-through entries first (round 45's web trial). rank[i] is entry i's position in that order (uint8:
    for palette images, k <= 256)."""
    k, channels = palette.shape
    luma = palette[:, 0] if channels == 1 else palette[:, :3].astype(np.float64) @ (0.299, 0.587, 0.114)
    if channels == 4:
        luma = luma + 256.0 * (palette[:, 3] == 255)  # (luminance is under 256)
    order = np.argsort(luma, kind="stable")
    rank = np.empty(k, np.uint8)
    rank[order] = np.arange(k)
    return order, rank


# Rows of pixels made at a time by _pixel_image (about this many pixels).
_BAND_PIXELS = 1 << 22


def _pixel_image(palette: np.ndarray, labels: np.ndarray) -> Image.Image:
    """A Pillow image (L, RGB or RGBA) of palette[labels], made a band of rows at a time: Pillow copies an
    array it is given, so the whole palette[labels] beside the image was one more copy of the pixels at the
    peak (a 48 MP RGB decompress: 144 MB of its 461)."""
    height, width = labels.shape
    channels = palette.shape[1]
    im = Image.new({1: "L", 3: "RGB", 4: "RGBA"}[channels], (width, height))
    rows = max(1, _BAND_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        band = palette[labels[top:top + rows]]
        im.paste(Image.fromarray(band[:, :, 0] if channels == 1 else band), (0, top))
    return im


def _palette_image(palette: np.ndarray, labels: np.ndarray) -> Image.Image:
    """A Pillow "P" image of palette (k <= 256, 3|4 channels; alpha per entry) and labels (h, w). RGBA: the
    alpha up to the last entry under 255 (its info["transparency"], a PNG's tRNS; Pillow writes one entry
    per colour of an RGBA palette, 255s at the end included)."""
    height, width = labels.shape
    im = Image.frombytes("P", (width, height), labels.astype(np.uint8).tobytes())
    im.putpalette(palette[:, :3].tobytes(), "RGB")
    if palette.shape[1] == 4:
        seen = np.flatnonzero(palette[:, 3] != 255)
        if len(seen):
            im.info["transparency"] = palette[:seen[-1] + 1, 3].tobytes()
    return im


# lossless WebP stores at most 16383 pixels a side (libwebp's limit).
WEBP_MAX_SIDE = 16383


def png8_bytes(palette: np.ndarray, labels: np.ndarray) -> bytes | None:
    """The image palette[labels] as a PNG-8 made with care (Pillow: the smallest of optimize=True and zlib
    levels 9 and 6; under 8 bits an index, also kmq.png8's unfiltered rows at level 9); None above k = 256,
    which no 8-bit PNG holds.

    A palette image (RGBA: alpha per entry in tRNS), the smaller of its entries ordered by luminance (grey:
    by level) and in kmq's order by share: the same pixels either way, and neither order always wins (at
    K = 16 luminance is 8-13 % smaller on the sample photos, 11 % smaller to 6 % larger on other images).
    Grey: also an 8-bit grey PNG, which wins from about K = 64-128 (Pillow filters 8-bit levels, never 8-bit
    indices).
    """
    k, channels = palette.shape
    if k > 256:
        return None
    order, rank = _luminance_order(palette)
    rgb = np.repeat(palette, 3, axis=1) if channels == 1 else palette
    candidates = [_palette_image(rgb[order], rank[labels]), _palette_image(rgb, labels)]
    made = [_png(im, **options) for im in candidates for options in _PNG8_SETTINGS]
    if png8.bits_for(k) < 8:  # (at 8 bits Pillow's rows are unfiltered already)
        made += [png8.unfiltered(im, 9) for im in candidates]
    if channels == 1:
        made += [_png(Image.fromarray(palette[labels][:, :, 0]), **options) for options in _PNG8_SETTINGS]
    return min(made, key=len)


# Pillow's optimize=True is not always its smallest: zlib's level 9 (what decompress writes up to
# PNG_BEST_PIXELS) gave 0-5 % fewer bytes than it on 20 images at K = 16-256 (chelsea at K = 16: 30,918 against
# 32,606), and at K = 16 level 6 was up to 3 % smaller than optimize (ihc: 18,211 bytes against 18,709).
_PNG8_SETTINGS = ({"optimize": True}, {"compress_level": 9}, {"compress_level": 6})


def _png(im: Image.Image, **options: object) -> bytes:
    out = io.BytesIO()
    im.save(out, format="PNG", **options)
    return out.getvalue()


def webp_lossless_bytes(pixels: np.ndarray) -> bytes | None:
    """(h, w) or (h, w, 3|4) uint8 pixels as lossless WebP at libwebp's most thorough setting (method 6 with
    quality 100, as `cwebp -lossless -z 9`), keeping the colour under transparent pixels too (exact), so the
    file holds exactly these pixels. None when a side exceeds WEBP_MAX_SIDE."""
    if max(pixels.shape[:2]) > WEBP_MAX_SIDE:
        return None
    out = io.BytesIO()
    # For lossless WebP quality is effort: at Pillow's default 80, method 6 gave files 2-20 % larger than
    # this (ihc at K = 16: 69,798 bytes against 59,238), and larger than method 4's; slower by seconds a photo.
    Image.fromarray(pixels).save(out, format="WEBP", lossless=True, method=6, quality=100, exact=True)
    return out.getvalue()


def _holds_rgb(format: str, name: str) -> None:
    """KmqError, as the write would give, when format takes no RGB pixels at all (XBM and MSP: 1-bit only),
    found on a 1 x 1 image before compositing alpha warns about a file that is never written."""
    _save(Image.new("RGB", (1, 1)), io.BytesIO(), format, name)


def _flattened(rgba: np.ndarray, fmt: str, name: str) -> np.ndarray:
    """(..., 4) uint8 -> (..., 3) uint8 composited over white, with a warning if any alpha was below 255."""
    if (rgba[..., 3] < 255).any():
        warn(f"{name}: {fmt} has no alpha: transparent pixels are composited over white "
             "(PNG or WebP keep alpha)")
    return over_white(rgba)


def over_white(rgba: np.ndarray) -> np.ndarray:
    """(..., 4) uint8 -> (..., 3) uint8: the colours composited over white, as a page shows them."""
    alpha = rgba[..., 3:].astype(np.float32) / 255
    return np.rint(rgba[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)


def _gif_transparency(palette: np.ndarray, labels: np.ndarray,
                      name: str) -> tuple[np.ndarray, np.ndarray, int | None]:
    """GIF's alpha: one transparent index. (k, 4) palette -> (k, 3) palette, labels with every alpha-0 entry
    mapped to the first one (then the transparent index, or None without any); partial alpha is composited
    over white, with a warning."""
    alpha = palette[:, 3]
    partial = int(((alpha > 0) & (alpha < 255)).sum())
    if partial:
        warn(f"{name}: GIF keeps only alpha 0 (as its transparent colour): partial alpha ({partial} "
             f"of {len(palette)} colours) composited over white (PNG or WebP keep alpha)")
    clear = np.flatnonzero(alpha == 0)
    rgb = over_white(palette)
    if len(clear) == 0:
        return rgb, labels, None
    # The transparent entry keeps its own colour, as in a PNG's palette: a game's palette keyed on magenta
    # (#ff00ff00) had come back white in the GIF, black in the PNG of the same file.
    rgb[clear] = palette[clear, :3]
    remap = np.arange(len(palette))
    remap[clear] = clear[0]
    return rgb, remap[labels], int(clear[0])


def _gif_reduced(palette: np.ndarray, labels: np.ndarray,
                 transparent: int | None) -> tuple[np.ndarray, np.ndarray, int | None]:
    """_gif_transparency's (k > 256, 3) palette and labels -> at most 256 entries: the visible pixels' colours
    reduced by Pillow's median cut (as Pillow reduces RGB for GIF) to 256, or to 255 beside the transparent
    entry, which comes last. Left to Pillow, the RGBA pixels were composited over white first: a cut-out's
    background came back opaque white, where at K <= 256 it is GIF's transparent colour."""
    visible = labels != transparent if transparent is not None else np.ones(labels.shape, bool)
    if not visible.any():  # (a KmqImage made by hand whose pixels are all transparent)
        return palette[[transparent]], np.zeros(labels.shape, np.uint16), 0
    room = 256 if transparent is None else 255
    # One row of the visible pixels alone: the background's colour would take an entry of its own.
    row = Image.fromarray(np.ascontiguousarray(palette[labels[visible]][None]), "RGB").quantize(room)
    reduced = np.asarray(row.getpalette("RGB"), np.uint8).reshape(-1, 3)
    reduced = reduced[:int(np.asarray(row).max()) + 1]
    out = np.full(labels.shape, len(reduced), np.uint16)
    out[visible] = np.asarray(row)[0]
    if transparent is None:
        return reduced, out, None
    return np.vstack([reduced, palette[transparent][None]]), out, len(reduced)


def suffix_for(fmt: str) -> str:
    """The extension to give a file written in Pillow format fmt: ".png" for "PNG", ".jpeg" for "JPEG", and
    the extension itself where fmt is one ("jpg" -> ".jpg", as the user typed it)."""
    name = writable_format(fmt)  # which imported the plugin of name (or all of them)
    suffixes = [ext for ext, of in Image.EXTENSION.items() if of == name]
    typed = "." + fmt.lower()
    return typed if typed in suffixes else suffixes[0]


def writable_format(name: str) -> str:
    """The Pillow format name for a user's format name ("png" -> "PNG"); KmqError if Pillow cannot write it."""
    # An extension's name too ("jpg", "tif"), as -o x.jpg would take it.
    fmt = _extension_format("." + name.lower()) or name.upper()
    if fmt == KMQ_FORMAT:
        raise KmqError(f"{name!r} is kmq's compressed format, not an image format to write; use e.g. PNG, WEBP, "
                       "GIF, JPEG, BMP or TIFF")
    if fmt not in Image.SAVE:
        raise KmqError(f"unknown image format {name!r}; use e.g. PNG, WEBP, GIF, JPEG, BMP or TIFF")
    return fmt


# Palette and 1-bit PNGs of up to this many pixels are written at zlib's level 9, others at its (and Pillow's)
# default 6. On one byte a pixel or less, level 9 finds more matches: 1-36 % fewer bytes (a 3000x600 banner at
# K = 64: 26,904 against 41,947; photos 0.3-4 %, screenshots and icons 3-11 %) for at most ~0.2 s more a
# megapixel up to here (1-2 s at 12 MP, on top of a 0.4 s decompress). Truecolor and 8-bit grey PNGs stay at 6:
# there level 9 cost 0.3-0.5 s a megapixel for 0.5-3.7 % (and segment's 1-bit masks, K of them, stay too).
PNG_BEST_PIXELS = 1 << 21


def png_level(pixels: int) -> int:
    """The zlib level kmq writes a palette image's PNG of this many pixels at (save_quantized's, 1-bit ones
    included; segment's masks stay at 6)."""
    return 9 if pixels <= PNG_BEST_PIXELS else 6


def _save(im: Image.Image, target: BinaryIO, format: str, name: str = "the output", **extra: object) -> None:
    if format.upper() == KMQ_FORMAT:
        raise KmqError("KMQ is not an image format to decode to (kmq compress writes .kmq); use e.g. PNG")
    # WebP would be lossy by default: decompressing must give the decoded pixels, not an approximation.
    # exact: libwebp would otherwise replace the colour under alpha 0, and the file would not hold the decoded
    # pixels (nor match stats --reference, which measures them with exact).
    # WebP stays at Pillow's method 4, quality 80, at every size, though at 48 MP it peaks at 1.08-1.59 GB: on top
    # of Pillow's image Pillow hands libwebp an ARGB copy, and its encoder adds 4 bytes a (packed) pixel of its
    # own copy and 4 of hash chain before any backward reference. Method 0, its least, still took 0.73-1.00 GB
    # (libwebp alone, in cwebp: 386 / 619 MB at K = 16 / 256) for 15-43 % more bytes at every size (round 46).
    # PDF: no dates, and no title (Pillow takes it from the file's name: the temporary file's, different each run),
    # so that the same pixels give the same bytes.
    # Level 6 is zlib's and Pillow's default balance (save_quantized asks for more where it pays).
    options = {"PNG": {"compress_level": 6}, "WEBP": {"lossless": True, "exact": True},
               "PDF": {"title": None, "creationDate": None, "modDate": None}}.get(format.upper(), {})
    if format.upper() == "QOI" and im.mode == "L":
        im = im.convert("RGB")  # QOI has no grey mode; RGB holds the same levels exactly
    options.update(_icon_sizes(im, format.upper(), name))
    options.update({key: value for key, value in extra.items() if value is not None})
    try:
        im.save(target, format=format, **options)
    # OverflowError, struct.error: a size field too small (GIF, TGA, SGI); RuntimeError: libavif's refusals.
    except (KeyError, ValueError, OSError, OverflowError, RuntimeError, struct.error) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise  # a failed write, not a format problem: the caller reports it
        raise KmqError(f"{name}: cannot write {im.mode} pixels as {format}: {e}") from None


# The largest side each format's writer takes (Pillow's, or its library's: libjpeg, libwebp, libavif); larger
# ones fail deep inside, as an OverflowError, a struct.error or a bare "broken data stream", and libjpeg prints
# a line of its own first. Measured with Pillow 13 on 1 x N and N x 1 images.
_MAX_SIDES = {"JPEG": 65500, "MPO": 65500, "PDF": 65500, "GIF": 65535, "PCX": 65535, "TGA": 65535,
              "SGI": 65535, "AVIF": 65536, "WEBP": WEBP_MAX_SIDE}


def _check_sides(w: int, h: int, format: str, name: str) -> None:
    """KmqError for a size format cannot hold; checked before anything is said about the pixels (a warning
    that JPEG is lossy, then an error, reads as two problems)."""
    most = _MAX_SIDES.get(format)
    if most is not None and max(w, h) > most:
        raise KmqError(f"{name}: {format} holds at most {most:,} pixels a side, not {w}x{h}; use e.g. PNG or TIFF")


# Icon formats hold fixed sizes, and Pillow silently shrinks (ICO: 400x300 -> 256x192, even 100x100 -> 64x64)
# or stretches (ICNS: everything -> 1024x1024) to them. ICO holds any size up to 256x256 exactly when asked
# for that one size. Pillow writes every ICNS size, each scaled from the image, and readers open the largest:
# only a 1024x1024 image is that entry itself (a 64x64 one would open stretched to 1024x1024).
ICO_MAX_SIDE = 256
ICNS_SIDE = 1024


def _icon_sizes(im: Image.Image, format: str, name: str) -> dict[str, object]:
    """The save options that keep an icon's pixels at their own size; KmqError for a size it cannot hold."""
    w, h = im.size
    if format == "ICO":
        if max(w, h) > ICO_MAX_SIDE:
            raise KmqError(f"{name}: ICO holds at most {ICO_MAX_SIDE}x{ICO_MAX_SIDE} pixels, not {w}x{h}; use e.g. PNG")
        return {"sizes": [(w, h)]}
    if format == "ICNS" and (w, h) != (ICNS_SIDE, ICNS_SIDE):
        raise KmqError(f"{name}: ICNS opens at {ICNS_SIDE}x{ICNS_SIDE} (its other sizes are scaled copies), "
                       f"so only a {ICNS_SIDE}x{ICNS_SIDE} image is kept as it is, not {w}x{h}; use e.g. PNG")
    return {}


def format_for(path: str | Path) -> str:
    """The Pillow format name for an output path's extension, e.g. "out.webp" -> "WEBP" (PNG for a device)."""
    ext = Path(path).suffix.lower()
    if not ext and is_special(path):
        return "PNG"  # /dev/stdout, /dev/full, a named pipe: as on stdout
    if not ext:
        raise KmqError(f"{path}: the name has no extension to choose the image format by; give it one, e.g. "
                       f"{SUGGESTED_EXTENSIONS}")
    fmt = _extension_format(ext)
    if fmt == KMQ_FORMAT:
        raise KmqError(f"{path}: .kmq is kmq's own compressed format (kmq compress writes it), not an image "
                       f"format; this writes images: use e.g. {SUGGESTED_EXTENSIONS}")
    if fmt is None:
        raise KmqError(f"{path}: unknown image extension {ext!r}; use e.g. {SUGGESTED_EXTENSIONS}")
    if fmt not in Image.SAVE:
        raise KmqError(f"{path}: Pillow reads {fmt} files but cannot write them; use e.g. .png")
    return fmt


def _extension_format(ext: str) -> str | None:
    """Image.registered_extensions().get(ext), for ext in lower case, and with the plugin that registers it
    imported. registered_extensions imports all ~45 of Pillow's plugins (Image.init: 15-25 ms, PdfParser's
    regular expressions among them) to answer for one extension; for one of Pillow's own extensions, only
    the plugin Pillow names for it is imported here, as Pillow's own im.save("x.png") does
    (Image._EXTENSION_PLUGIN). The answer is the same, and that plugin registers the format's writer too
    (tests/test_startup.py pins both for every extension there)."""
    if not ext:
        return None  # (no extension names no format: registered_extensions would load every plugin to say so)
    plugin = getattr(Image, "_EXTENSION_PLUGIN", {}).get(ext)  # private: without it, every plugin
    if plugin is not None:
        try:
            importlib.import_module(f"PIL.{plugin}")
        except ImportError:
            plugin = None
    if plugin is None or ext not in Image.EXTENSION:
        return Image.registered_extensions().get(ext)
    return Image.EXTENSION[ext]


# The image extensions an error suggests: the formats most people write, all of which kmq writes exactly
# but JPEG.
SUGGESTED_EXTENSIONS = ".png, .webp, .gif, .tiff, .bmp or .jpg"


def warn_extension_mismatch(path: str | Path, fmt: str) -> None:
    """A KmqWarning when an output's extension names an image format other than fmt, the format chosen for it
    (out.png written as WebP): said, not refused, since the format was asked for explicitly."""
    ext = Path(path).suffix.lower()
    named = _extension_format(ext)
    if named is not None and named != fmt:
        warn(f"{path}: written as {fmt}, as asked, though its extension {ext} says {named}")


def source_name(source: ImageSource) -> str:
    """What messages call an input: its path, <bytes>, <stdin>, or a file object's name (else <stream>)."""
    if isinstance(source, (str, Path)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if source is getattr(sys.stdin, "buffer", None):
        return "<stdin>"  # (its name, unless a harness has replaced it)
    return getattr(source, "name", None) or "<stream>"


def check_max_pixels(max_pixels: int) -> None:
    """ValueError unless max_pixels is an integer >= 1: compared with an image's size deep in the reader,
    'x' made a TypeError inside "cannot read image", and -1 an error about the image."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ValueError(f"max_pixels must be an integer of at least 1, got {max_pixels!r}")


# Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS, checked by Image.open) is process-wide. kmq enforces
# its own max_pixels before decoding; where that is above where Pillow refuses (twice its limit), Pillow's would
# stop an image the caller allowed, so it is set aside for the open alone (a header read, never the decode).
# Threads opening at once count themselves, and the last one out puts back the limit found by the first: each
# putting back what it saw left it off for good when two overlapped (a library user's trial, 4 threads). Not
# for kmq's default (twice Pillow's limit), nor under it: set aside for every open, the limit was off for other
# threads' own Pillow opens 2 % of the time in a server (round 48's trial); Pillow's warning of an image
# between its limit and twice it then reaches a library caller (the command line leaves it out).
_BOMB_LOCK = threading.Lock()
_bomb_aside: list[Any] = [0, None]  # opens under way with the limit set aside; the limit to put back


def _opened(source: Any, max_pixels: int) -> Image.Image:
    """Image.open(source), with Pillow's limit set aside where max_pixels is above twice it (where Pillow
    refuses). Where it is not, an image Pillow refuses (so over max_pixels) is opened again with it set aside,
    for kmq's own check to refuse in its words, as any image over max_pixels is."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None or max_pixels > 2 * limit:
        return _opened_aside(source)
    start = None if isinstance(source, (str, Path)) else source.tell()
    try:
        return Image.open(source)
    except Image.DecompressionBombError:
        if start is not None:
            source.seek(start)
        return _opened_aside(source)


def _opened_aside(source: Any) -> Image.Image:
    with _BOMB_LOCK:
        if _bomb_aside[0] == 0:
            _bomb_aside[1] = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
        _bomb_aside[0] += 1
    try:
        return Image.open(source)
    finally:
        with _BOMB_LOCK:
            _bomb_aside[0] -= 1
            if _bomb_aside[0] == 0:
                Image.MAX_IMAGE_PIXELS = _bomb_aside[1]
