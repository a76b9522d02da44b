"""The size tables of the tutorial, for images and .kmq files, as plain records scripts can rely on."""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Sequence

from .api import compress
from .fileio import read_bytes
from .format import DEFAULT_MAX_PIXELS, MAGIC, KmqImage
from .imageio import load_image

# The record keys, in order. Scripts parse these: never rename or reorder them.
FIELDS = ("file", "width", "height", "channels", "k", "bits_per_label", "original_bits", "labels_bits",
          "codebook_bits", "compressed_bits", "ratio", "file_bytes", "distortion", "psnr")


def psnr(distortion: float | None, channels: int) -> float | None:
    """PSNR in dB from J: J / channels is the mean squared error per sample. inf when J = 0."""
    if distortion is None:
        return None
    mse = distortion / channels
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def record(img: KmqImage, file: str, file_bytes: int) -> dict[str, Any]:
    """One stats record (keys FIELDS) for a quantized image stored (or storable) in file_bytes bytes."""
    original_bits = img.width * img.height * img.channels * 8
    labels_bits = img.width * img.height * img.bits_per_label
    codebook_bits = img.k * img.channels * 8
    compressed_bits = labels_bits + codebook_bits
    return {
        "file": file, "width": img.width, "height": img.height, "channels": img.channels, "k": img.k,
        "bits_per_label": img.bits_per_label, "original_bits": original_bits, "labels_bits": labels_bits,
        "codebook_bits": codebook_bits, "compressed_bits": compressed_bits,
        "ratio": compressed_bits / original_bits, "file_bytes": file_bytes,
        "distortion": img.distortion, "psnr": psnr(img.distortion, img.channels),
    }


def measure(source: str | Path, ks: Sequence[int] = (16,), *, seed: int = 0, codec: str = "raw",
            max_pixels: int = DEFAULT_MAX_PIXELS) -> list[dict[str, Any]]:
    """Stats records for one input: a .kmq file (one record, as stored; ks do not apply) or an image
    (compressed in memory once per k in ks). The kind is told by the file's first bytes, not its name."""
    data = read_bytes(source)
    name = str(source)
    if data.startswith(MAGIC):
        return [record(KmqImage.from_bytes(data, max_pixels=max_pixels), name, len(data))]
    pixels = load_image(io.BytesIO(data) if name == "-" else source, max_pixels=max_pixels)
    records = []
    for k in ks:
        img = compress(pixels, k, seed=seed, codec=codec)
        records.append(record(img, name, len(img.to_bytes())))
    return records
