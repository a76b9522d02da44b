"""The size tables of the tutorial, for images and .kmq files, as plain records scripts can rely on."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .api import compress, load
from .codecs import NAMES as CODECS
from .codecs import codec_name
from .errors import naming
from .fileio import read_bytes
from .format import DEFAULT_MAX_PIXELS, KmqImage, parse_header

# The record keys, in order. Scripts parse these: never rename or reorder them; new keys go at the end.
FIELDS = ("file", "width", "height", "channels", "k", "bits_per_label", "original_bits", "labels_bits",
          "codebook_bits", "compressed_bits", "ratio", "file_bytes", "distortion", "psnr", "codec",
          "bits_per_pixel")


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
        "distortion": img.distortion, "psnr": psnr(img.distortion, img.channels), "codec": img.codec,
        "bits_per_pixel": file_bytes * 8 / (img.width * img.height),
    }


def measure(source: str | Path, ks: Sequence[int] = (16,), *, seed: int = 0, codec: str | None = None,
            max_pixels: int = DEFAULT_MAX_PIXELS, dither: str = "none") -> list[dict[str, Any]]:
    """Stats records for one input, told apart by the file's first bytes, not its name.

    A .kmq file gives one record, as stored (ks do not apply). An image is compressed in memory once per k in
    ks. codec: None keeps a .kmq file's own codec and stores images raw; a codec name, or "all" for every
    codec, re-encodes the labels and reports the size the file would have with it (one record per codec).
    dither: as kmq.compress, for images (a .kmq file is reported as stored).
    """
    loaded, size = load(source, max_pixels=max_pixels)
    name = str(source)
    chosen = list(CODECS) if codec == "all" else [codec] if codec else []
    if isinstance(loaded, KmqImage):
        if not chosen:
            return [record(loaded, name, size)]
        quantized = [loaded]
    else:
        quantized = [compress(loaded, k, seed=seed, dither=dither) for k in ks]
    records = []
    for img in quantized:
        for name_of_codec in chosen or ["raw"]:
            encoded = replace(img, codec=name_of_codec)
            records.append(record(encoded, name, len(encoded.to_bytes())))
    return records


# `kmq info --format json`: the keys of the object, in order, and of each palette entry (RGBA adds "alpha").
INFO_FIELDS = ("file", "file_bytes", "version", "width", "height", "channels", "mode", "codec", "k",
               "bits_per_label", "meta_bytes", "payload_bytes", "ratio", "distortion", "psnr", "seed",
               "metadata", "palette")
PALETTE_FIELDS = ("index", "hex", "rgb", "share")
MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def shares(labels: np.ndarray, k: int) -> np.ndarray:
    """(k,) float64: the fraction of the pixels (labels, any shape) carrying each label 0..k-1; sums to 1."""
    return np.bincount(labels.ravel(), minlength=k) / labels.size


def palette_entries(palette: np.ndarray, labels: np.ndarray) -> list[dict[str, Any]]:
    """One record per palette entry (keys PALETTE_FIELDS, plus "alpha" for RGBA) with its share of the pixels.

    palette: (k, 1|3|4) uint8; labels: (h, w) integers < k. hex is "#rrggbb" ("#rrggbbaa" for RGBA); rgb is
    [r, g, b] (for grey, the level three times); share is the fraction of pixels, the shares summing to 1.
    """
    k, channels = palette.shape
    share = shares(labels, k)
    colours = np.repeat(palette, 3, axis=1) if channels == 1 else palette  # RGB or RGBA, as hex spells it
    entries = []
    for i, colour in enumerate(colours.tolist()):
        entry = {"index": i, "hex": "#" + bytes(colour).hex(), "rgb": colour[:3], "share": float(share[i])}
        if channels == 4:
            entry["alpha"] = colour[3]
        entries.append(entry)
    return entries


def describe(source: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    """Everything a .kmq file says about itself (keys INFO_FIELDS): header, codec, metadata and palette.

    Raises FormatError for anything that is not a valid .kmq file.
    """
    data = read_bytes(source)
    with naming(source):
        header = parse_header(data, max_pixels=max_pixels)
        img = KmqImage.from_bytes(data, max_pixels=max_pixels)
    r = record(img, str(source), len(data))
    return {
        "file": str(source), "file_bytes": len(data), "version": header.version, "width": img.width,
        "height": img.height, "channels": img.channels, "mode": MODES[img.channels],
        "codec": codec_name(header.codec), "k": img.k, "bits_per_label": img.bits_per_label,
        "meta_bytes": header.meta_len, "payload_bytes": header.payload_len, "ratio": r["ratio"],
        "distortion": img.distortion, "psnr": r["psnr"], "seed": img.seed, "metadata": img.metadata,
        "palette": palette_entries(img.palette, img.labels),
    }
