"""The public functions: compress pixels into a KmqImage, read and write .kmq files.

These validate; kmq.kmeans computes.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from . import kmeans
from .codecs import NAMES as CODECS
from .dither import METHODS as DITHERS
from .dither import distortion as dither_distortion
from .dither import floyd_steinberg
from .errors import KmqError, KmqWarning, naming
from .fileio import STDIO, open_input, write_atomic
from .format import DEFAULT_MAX_PIXELS, MAGIC, MAX_K, KmqImage, read_kmq
from .imageio import ImageSource, format_for, load_image, save_quantized, to_array

__all__ = ["compress", "read", "write", "export", "quantize", "load"]


def compress(image: np.ndarray | Image.Image | ImageSource, k: int = 16, *, seed: int = 0,
             max_iter: int = 300, tol: float = 1e-4, codec: str = "raw",
             max_pixels: int = DEFAULT_MAX_PIXELS, dither: str = "none") -> KmqImage:
    """Quantize an image to at most k colours.

    image: a (height, width) or (height, width, 1|3|4) uint8 array, a Pillow image, or a path / binary file /
    bytes of an image file.
    Returns a KmqImage whose palette has k entries, or fewer (with a KmqWarning) when the image has fewer
    distinct colours than k; each label is the nearest palette entry; metadata holds "distortion" and "seed".
    dither: "none", or "fs" for Floyd–Steinberg error diffusion onto the palette (metadata "dither": "fs";
    the distortion is then that of the dithered labels, higher than the nearest entries' but smoother to the
    eye).

    >>> img = compress(np.zeros((2, 2, 3), np.uint8), k=1)
    >>> img.k, img.distortion
    (1, 0.0)
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
    if dither not in DITHERS:
        raise ValueError(f"unknown dither {dither!r}; choose from {', '.join(DITHERS)}")
    pixels = _as_pixels(image, max_pixels)
    height, width, channels = pixels.shape
    palette, labels, distortion = quantize(pixels.reshape(-1, channels), int(k), seed=int(seed),
                                           max_iter=max_iter, tol=tol)
    meta = {"distortion": distortion, "seed": int(seed)}
    if dither == "fs":
        labels = floyd_steinberg(pixels, palette)
        palette, labels = _by_share(palette, labels.ravel(), None)
        meta.update(distortion=dither_distortion(pixels, palette, labels), dither="fs")
    return KmqImage(palette, labels.reshape(height, width), meta, codec)


def quantize(pixels: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 300,
             tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray, float]:
    """pixels (N, C) uint8 -> (palette (k', C) uint8, labels (N,) uint16, distortion J), k' <= k.

    K-Means runs over the distinct colours weighted by their counts (the same result as over the pixels, much
    cheaper); the centroids are rounded to uint8 and merged where they coincide, and every distinct colour is
    labelled with its nearest palette entry, so J is that of the stored palette.
    """
    distinct = kmeans.distinct(pixels)
    colors, counts = distinct.colors, distinct.counts
    if len(colors) <= k:
        if len(colors) < k:
            warnings.warn(f"the image has only {len(colors)} distinct colours, fewer than k={k}: "
                          f"using k={len(colors)}, lossless", KmqWarning, stacklevel=3)
        palette, color_labels, sq_dist = colors, np.arange(len(colors)), np.zeros(len(colors))
    else:
        centroids = kmeans.fit(colors, counts, k, seed=seed, max_iter=max_iter, tol=tol)
        palette = np.unique(np.clip(np.rint(centroids), 0, 255).astype(np.uint8), axis=0)
        if len(palette) < k:
            warnings.warn(f"{k - len(palette)} centroids rounded to the same colour as another: "
                          f"using k={len(palette)}", KmqWarning, stacklevel=3)
        color_labels, sq_dist = kmeans.nearest(colors, palette)
    palette, color_labels = _by_share(palette, color_labels, counts)
    distortion = float(np.dot(np.asarray(sq_dist, np.float64), counts) / counts.sum())
    # One table look-up per pixel from its colour to its label: no (N,) index array is ever built.
    return palette, distinct.spread(color_labels.astype(np.uint16)), distortion


def _by_share(palette: np.ndarray, color_labels: np.ndarray,
              counts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Order palette entries by decreasing pixel count, ties by colour, and relabel to match.

    color_labels: one label per distinct colour, each counts[i] pixels; counts None: one label per pixel."""
    share = np.bincount(color_labels, weights=counts, minlength=len(palette))
    # lexsort's last key is the primary one; palette columns break ties in colour order.
    order = np.lexsort((*palette.T[::-1], -share))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return palette[order], rank[color_labels].astype(color_labels.dtype, copy=False)


def _as_pixels(image: np.ndarray | Image.Image | ImageSource, max_pixels: int) -> np.ndarray:
    """Any accepted image input -> (height, width, channels) uint8 with channels 1, 3 or 4."""
    if isinstance(image, Image.Image):
        pixels = to_array(image)
    elif isinstance(image, np.ndarray):
        pixels = image
        if pixels.dtype != np.uint8:
            raise ValueError(f"pixel arrays must be uint8, got {pixels.dtype}")
        if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (1, 3, 4)):
            raise ValueError(f"pixel arrays must be (h, w) or (h, w, 1|3|4), got {pixels.shape}")
        if 0 in pixels.shape[:2]:
            raise ValueError(f"the image is empty: {pixels.shape}")
        if pixels.shape[0] * pixels.shape[1] > max_pixels:
            raise KmqError(f"{pixels.shape[1]}x{pixels.shape[0]} pixels exceed the limit of {max_pixels}")
    else:
        pixels = load_image(image, max_pixels=max_pixels)
    return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)


def read(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> KmqImage:
    """Read and validate a .kmq file. Raises KmqError (FormatError for a malformed file)."""
    with open_input(path) as f, naming(path):
        return KmqImage.from_bytes(read_kmq(f, max_pixels=max_pixels), max_pixels=max_pixels)


def load(source: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[KmqImage | np.ndarray, int]:
    """Either kind of input, told apart by its first bytes (not its name), and its size in bytes.

    A .kmq file gives a validated KmqImage; any other file is read as an image: (h, w) or (h, w, 3|4) uint8.
    "-" reads stdin.
    """
    with open_input(source) as f:
        head = f.read(len(MAGIC))
        if head == MAGIC:
            with naming(source):
                data = read_kmq(f, max_pixels=max_pixels, head=head)
                return KmqImage.from_bytes(data, max_pixels=max_pixels), len(data)
        if str(source) != STDIO:
            # Pillow names the file in its errors, and reads only what it needs: /dev/zero is refused at once.
            return load_image(source, max_pixels=max_pixels), os.fstat(f.fileno()).st_size
        data = head + f.read()
    return load_image(io.BytesIO(data), max_pixels=max_pixels), len(data)


def export(img: KmqImage, path: str | Path, *, format: str | None = None, overwrite: bool = False,
           truecolor: bool = False) -> str:
    """Write img's pixels as an image file, atomically ("-" for stdout). Returns the Pillow format used.

    format: a Pillow format name; by default the one path's extension names (PNG for stdout). With K <= 256 a
    PNG or GIF is written as a palette image (the same pixels, about half the bytes) unless truecolor.
    Refuses to replace an existing file unless overwrite is true (KmqError).
    """
    fmt = format.upper() if format else ("PNG" if str(path) == STDIO else format_for(path))
    write_atomic(path, lambda f: save_quantized(img.palette, img.labels, f, format=fmt, truecolor=truecolor),
                 overwrite=overwrite)
    return fmt


def write(path: str | Path, img: KmqImage, *, overwrite: bool = False) -> int:
    """Write img to path atomically (a temporary file, then a rename). Returns the bytes written.

    Refuses to replace an existing file unless overwrite is true (KmqError).
    """
    data = img.to_bytes()
    write_atomic(path, data, overwrite=overwrite)
    return len(data)
