"""Palette PNGs of 1-, 2- and 4-bit indices with every row unfiltered, written by kmq itself.

Pillow filters each row of a palette PNG whose indices it packs under 8 bits (Sub, Up or Paeth, chosen by the
sum of the filtered bytes), though a filter predicts packed indices badly: on drawn graphics, logos and
screenshots at K = 4-16 the unfiltered rows took 0.74-0.93x its bytes (a 10-colour graphic 3,135 against 4,250;
pngquant, which never filters a palette image, wrote 3,047), on photos 0.91-1.16x (round 46's peer trial and
21 images of samples/ and beyond). Neither always wins, so imageio keeps the smaller. At 8 bits Pillow writes
its rows unfiltered already, byte for byte what this would.
"""
import struct
import zlib

import numpy as np
from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def bits_for(entries: int) -> int:
    """The bit depth of a palette PNG of this many entries, as Pillow picks it."""
    return 1 if entries <= 2 else 2 if entries <= 4 else 4 if entries <= 16 else 8


def unfiltered(im: Image.Image, level: int) -> bytes:
    """A "P" Pillow image (its palette, and info["transparency"] as bytes of alpha per entry when it has one)
    as PNG bytes: IHDR, PLTE, tRNS, one IDAT of unfiltered rows at zlib's `level`, IEND."""
    palette = bytes(im.getpalette() or [0, 0, 0])
    bits = bits_for(len(palette) // 3)
    rows = _packed(np.asarray(im), bits)
    raw = np.empty((rows.shape[0], rows.shape[1] + 1), np.uint8)
    raw[:, 0] = 0  # filter type None
    raw[:, 1:] = rows
    packer = zlib.compressobj(level, zlib.DEFLATED, 15, 9)
    idat = packer.compress(raw.tobytes()) + packer.flush()
    alpha = im.info.get("transparency")
    header = struct.pack(">IIBBBBB", im.width, im.height, bits, 3, 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"PLTE", palette)
            + (_chunk(b"tRNS", bytes(alpha)) if isinstance(alpha, bytes) and alpha else b"")
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def _packed(indices: np.ndarray, bits: int) -> np.ndarray:
    """(h, w) indices as rows of PNG samples: 8 // bits to a byte, the leftmost in the high bits, each row's
    last byte padded with zero bits."""
    if bits == 8:
        return indices.astype(np.uint8, copy=False)
    per = 8 // bits
    height, width = indices.shape
    padded = np.zeros((height, -(-width // per) * per), np.uint8)
    padded[:, :width] = indices
    groups = padded.reshape(height, -1, per)
    out = np.zeros(groups.shape[:2], np.uint8)
    for j in range(per):  # (at most 8 passes over the image, one per sample of a byte)
        out |= groups[:, :, j] << (8 - bits * (j + 1))
    return out


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
