"""The .kmq format as a Pillow plugin: after `import kmq`, every program built on Pillow opens and saves .kmq.

    >>> from PIL import Image
    >>> im = Image.open("photo.kmq")          # reads the header, palette and metadata only
    >>> im.mode, im.info["distortion"]        # P for K <= 256 colour, L for grey, RGB/RGBA above 256
    >>> im.save("small.kmq", k=16, codec="ctx")

kmq/__init__.py registers the format with factories that import this module on first use, so `import kmq`
does not pay for PIL.ImageFile. Errors follow Pillow's conventions with kmq's message: a file that starts like
a .kmq but whose header, palette or metadata is malformed raises UnidentifiedImageError (an OSError) from
Image.open, one over the pixel limit DecompressionBombError, and a payload or CRC that fails on load() OSError;
a file is never loaded in part (LOAD_TRUNCATED_IMAGES does not apply). verify() checks the size and CRC.
"""
from __future__ import annotations

import difflib
import inspect
import os
from typing import IO, Any

import numpy as np
from PIL import Image, ImageFile, ImagePalette, UnidentifiedImageError

from .api import compress, compress_to
from .errors import FormatError, warn
from .format import KmqImage, check_crc, read_front, read_kmq
from .imageio import KMQ_FORMAT

_DECODER = "kmq"

# Keys Pillow itself gives a meaning in im.info (savers read some of them back): a file's metadata key of
# that name is not copied there, so a forged .kmq cannot make a later im.save() misbehave. kmq defines none.
_PILLOW_INFO_KEYS = frozenset({
    "transparency", "icc_profile", "exif", "xmp", "dpi", "duration", "loop", "background", "comment",
    "gamma", "aspect", "compression", "interlace", "progressive", "jfif", "adobe", "srgb", "chromaticity",
    "version", "extension", "disposal", "blend", "default_image", "bbox",
})


def _limit() -> int | None:
    # Pillow's own decompression-bomb limit (an error above twice MAX_IMAGE_PIXELS, the same 178,956,970
    # pixels as kmq's default): in a Pillow program, Image.MAX_IMAGE_PIXELS is the knob users know and set.
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS


def _named(filename: str | bytes, message: object) -> str:
    name = filename.decode(errors="replace") if isinstance(filename, bytes) else filename
    return f"{name}: {message}" if name else str(message)


class KmqImageFile(ImageFile.ImageFile):
    """A .kmq file opened by Pillow: the header, palette and metadata at open, the labels on load()."""

    format = KMQ_FORMAT
    format_description = "kmq K-Means quantized image"

    def _open(self) -> None:
        assert self.fp is not None
        try:
            header, palette, metadata = read_front(self.fp, max_pixels=None)
        except FormatError as e:
            raise UnidentifiedImageError(_named(self.filename, e)) from e
        pixels, limit = header.width * header.height, _limit()
        if limit is not None and pixels > limit:
            raise Image.DecompressionBombError(_named(
                self.filename, f"image of {header.width}x{header.height} = {pixels} pixels exceeds the limit of "
                               f"{limit} pixels (Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS})"))
        # _size and _mode: Pillow >= 10.1's way for a plugin to set them (pyproject.toml requires it).
        self._size = (header.width, header.height)
        self.info.update((key, value) for key, value in metadata.items() if key not in _PILLOW_INFO_KEYS)
        if header.channels == 1:
            self._mode = "L"
        elif header.k > 256:
            self._mode = "RGBA" if header.channels == 4 else "RGB"
        else:
            # As a PNG-8 opens (what `kmq decompress` writes): an RGB palette, the alpha of each entry in
            # info["transparency"], which convert("RGBA") and the PNG and WebP savers understand (Pillow's GIF
            # saver takes one transparent index only: partial alpha needs convert("RGBA") first).
            self._mode = "P"
            self.palette = ImagePalette.raw("RGB", palette[:, :3].tobytes())
            if header.channels == 4:
                alpha = palette[:, 3]
                # Like PNG's reader: one fully transparent entry among opaque ones is its index (GIF keeps it).
                clear = np.flatnonzero(alpha == 0)
                simple = len(clear) == 1 and np.count_nonzero(alpha == 255) == len(alpha) - 1
                self.info["transparency"] = int(clear[0]) if simple else alpha.tobytes()
        # A plain tuple (not ImageFile._Tile) for Pillow 10; the palette as bytes, which compare as a value.
        self.tile = [(_DECODER, (0, 0) + self.size, 0, (self.filename, header, palette.tobytes()))]

    def verify(self) -> None:
        """Check the file's size and CRC without decoding its labels, as Pillow's verify() promises. A broken
        file raises SyntaxError, as a PNG with a bad checksum does; reopen the file to load it afterwards."""
        if self.fp is None:
            raise RuntimeError("verify must be called directly after open")
        self.fp.seek(0)
        try:
            check_crc(read_kmq(self.fp, max_pixels=self.width * self.height))
        except FormatError as e:
            raise SyntaxError(_named(self.filename, e)) from e
        finally:
            if self._exclusive_fp:
                self.fp.close()
            self.fp = None

    def load(self) -> Any:
        if self.tile and self.fp is None:
            raise OSError(_named(self.filename, "a load() failed and closed the file: open it again"))
        try:
            return super().load()
        except OSError:
            # As Pillow does when its own decoders fail (a PNG's broken data): the file it opened is closed,
            # where a plugin's raising decoder left it open until the image was collected (ResourceWarning).
            if self._exclusive_fp and self.fp is not None:
                self.fp.close()
                self.fp = None
            raise

    def load_read(self, read_bytes: int) -> bytes:
        # Never called (the decoder reads the file itself); its presence tells ImageFile.Parser that a .kmq
        # cannot be decoded chunk by chunk, so it keeps the bytes fed to it and opens them whole on close().
        assert self.fp is not None
        return self.fp.read(read_bytes)


class _Decoder(ImageFile.PyDecoder):
    """Reads and checks the whole file (CRC, payload, labels) before setting a single pixel."""

    _pulls_fd = True

    def decode(self, buffer: bytes | Image.SupportsArrayInterface) -> tuple[int, int]:
        filename, header, palette = self.args
        assert self.fd is not None
        try:
            # The header admitted at open is the limit: a file that grew since cannot decode more pixels.
            pixels = header.width * header.height
            img = KmqImage.from_bytes(read_kmq(self.fd, max_pixels=pixels), max_pixels=pixels)
        except FormatError as e:
            raise OSError(_named(filename, e)) from e
        as_opened = (img.width, img.height, img.k, img.channels) == (header.width, header.height, header.k,
                                                                     header.channels)
        if not as_opened or img.palette.tobytes() != palette:
            raise OSError(_named(filename, "the file changed between Image.open and load()"))
        if self.mode == "P":
            self.set_as_raw(img.labels.astype(np.uint8).tobytes(), "P")
        else:
            self.set_as_raw(img.decode().tobytes(), self.mode)
        return -1, 0


def _same(value: Any, default: Any) -> bool:
    """value == default for the plain values of keyword defaults; an array (a palette) is never a default."""
    return not isinstance(value, np.ndarray) and bool(value == default)


def save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """im.save(path, k=16, codec="ctx", seed=0, ...): any keyword kmq.compress takes, or psnr= / max_bytes=
    with kmq.compress_to's keywords (a target instead of k); others are ignored, as Pillow's savers ignore
    options they do not know, with a KmqWarning naming them."""
    info = im.encoderinfo
    encode = compress_to if info.get("psnr") is not None or info.get("max_bytes") is not None else compress
    accepted = set(inspect.signature(encode).parameters) - {"image"}
    if encode is compress_to:
        # A target chooses K and the rdo itself; options only compress knows would be silently dropped.
        defaults = {name: p.default for name, p in inspect.signature(compress).parameters.items()}
        clash = sorted(key for key in info if key in defaults and key not in accepted
                       and not _same(info[key], defaults[key]))
        if clash:
            raise ValueError(f"{', '.join(f'{key}=' for key in clash)} cannot be combined with a target (psnr= or "
                             f"max_bytes=): the target chooses K and the rdo")
    options: dict[str, Any] = {key: value for key, value in info.items() if key in accepted}
    _ignored(info)
    fp.write(encode(im, **options).to_bytes())


def _ignored(info: dict[str, Any]) -> None:
    """Options kmq does not know are ignored, as Pillow's savers do, but not silently: K=8 or a JPEG's
    quality= wrote a K = 16 file without a word."""
    known = sorted((set(inspect.signature(compress).parameters) | set(inspect.signature(compress_to).parameters))
                   - {"image"})
    unknown = [str(key) for key in info if key not in known]
    if unknown:
        named = [key + "=" + "".join(f" (did you mean {m}=?)" for m in difflib.get_close_matches(key.lower(), known, 1))
                 for key in unknown]
        warn(f"kmq ignores {', '.join(named)}; it takes {', '.join(key + '=' for key in known)}",
             also=(_PIL_DIR,))


_PIL_DIR = os.path.dirname(os.path.abspath(Image.__file__)) + os.sep


Image.register_decoder(_DECODER, _Decoder)
