"""The size tables of the tutorial, for images and .kmq files, as plain records scripts can rely on."""
from __future__ import annotations

import math
import os
import warnings
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .api import DEFAULT_K, PALETTE_RDO, RAW_RDO, Source, compress, contents, input_name, load
from .codecs import NAMES as CODECS
from .codecs import codec_name
from .errors import KmqError, KmqWarning, about, named_warnings, naming, warn
from .fileio import reading
from .format import DEFAULT_MAX_PIXELS, KmqImage, parse_header, read_kmq
from .imageio import check_max_pixels, png8_bytes, webp_lossless_bytes

# The record keys, in order. Scripts parse these: never rename or reorder them; new keys go at the end.
FIELDS = ("file", "width", "height", "channels", "k", "bits_per_label", "original_bits", "labels_bits",
          "codebook_bits", "compressed_bits", "ratio", "file_bytes", "distortion", "psnr", "codec",
          "bits_per_pixel", "png8_bytes", "webp_bytes")

# `kmq stats --sweep`: the Ks of a rate-distortion curve, powers of two from 2 to 256.
SWEEP = tuple(2**b for b in range(1, 9))

# Steps' progress: callable(done, total), in these units per step (a fit, or a record's encodes).
STEP = 1000


class Steps:
    """A progress callable over a run of steps (measure's fits and records, a montage's fits): each step
    STEP units; a long fit's own reports (kmq.compress's progress) move within its step, so that a run of
    large K shows that it is working. progress None: nothing is reported."""

    def __init__(self, progress: Callable[[int, int], None] | None, total: int) -> None:
        self.progress, self.total, self.done = progress, max(total, 1), 0

    def within(self) -> Callable[[int, int], None] | None:
        """The progress callable for the step under way (None when nobody listens)."""
        if self.progress is None:
            return None
        return lambda done, total: self._report(self.done * STEP + (STEP * done // total if total else 0))

    def step(self) -> None:
        self.done = min(self.done + 1, self.total)
        self._report(self.done * STEP)

    def _report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(min(done, self.total * STEP), self.total * STEP)


def ignored_k(source: str | Path, img: KmqImage, ks: Sequence[int]) -> None:
    """Warn that Ks asked for a .kmq input do not apply, when they differ from the K it holds."""
    other = list(dict.fromkeys(k for k in ks if k != img.k))
    if other:
        asked = ", ".join(f"-k {k}" for k in other)
        verb = "does" if len(other) == 1 else "do"
        warnings.warn(about(source, f"a .kmq keeps its own K ({img.k}); {asked} {verb} not apply"), KmqWarning,
                      stacklevel=3)


def ignored_options(source: str | Path, *, palette: bool, rdo: float = 0.0, dither: str = "none",
                    sweep: bool = False, seed: int = 0) -> None:
    """Warn that options which make a new quantization do not apply to a .kmq, reported as stored."""
    asked = [o for o, on in (("--sweep", sweep), ("--palette", palette), (f"--rdo {rdo:g}", rdo > 0),
                             (f"--dither {dither}", dither != "none"), (f"--seed {seed}", seed != 0)) if on]
    if asked:
        verb = "does" if len(asked) == 1 else "do"
        warnings.warn(about(source, f"a .kmq is used as stored; {', '.join(asked)} {verb} not apply"),
                      KmqWarning, stacklevel=3)


def psnr(distortion: float | None, channels: int) -> float | None:
    """PSNR in dB from J: J / channels is the mean squared error per sample. inf when J = 0."""
    if distortion is None:
        return None
    mse = distortion / channels
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def record(img: KmqImage, file: str, file_bytes: int, *, choices: bool = False) -> dict[str, Any]:
    """One stats record (keys FIELDS) for a quantized image stored (or storable) in file_bytes bytes.

    The reference sizes (png8_bytes, webp_bytes) are None: measure(reference=True) fills them in.
    choices: also the keys "rdo" and "dither" (the metadata's, or None), for the compress summary lines.

    Example:
        >>> import numpy as np, kmq
        >>> img = kmq.compress(np.zeros((4, 4, 3), np.uint8), k=1)
        >>> r = kmq.stats.record(img, "black.kmq", len(img.to_bytes()))
        >>> r["file"], r["bits_per_label"], r["ratio"], r["psnr"]  # one colour: no label bits, only the palette's
        ('black.kmq', 0, 0.0625, inf)
    """
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
        "png8_bytes": None, "webp_bytes": None,
    } | ({"rdo": img.metadata.get("rdo"), "dither": img.metadata.get("dither")} if choices else {})


def reference_sizes(img: KmqImage) -> dict[str, int | None]:
    """The bytes of img's very pixels in the usual lossless formats: {"png8_bytes", "webp_bytes"}.

    PNG-8: a palette PNG (alpha in tRNS; grey: or 8-bit grey), the smallest of two palette orders by Pillow's
    optimize=True and zlib levels 9 and 6; None above K = 256. WebP: lossless, method 6 with quality 100
    (libwebp's most thorough), exact; None above 16383 pixels a side.
    Both decode to exactly img.decode() (kmq.imageio.png8_bytes, webp_lossless_bytes).
    """
    png = png8_bytes(img.palette, img.labels)
    webp = webp_lossless_bytes(img.decode())
    return {"png8_bytes": None if png is None else len(png), "webp_bytes": None if webp is None else len(webp)}


def measure(source: Source, ks: Sequence[int] = (), *, seed: int = 0, codec: str | None = None,
            reference: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
            palette: Any = None, rdo: float = 0.0, dither: str = "none",
            sweep: bool = False, progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Stats records for one input, told apart by the file's first bytes, not its name.

    A .kmq file gives one record, as stored (ks and palette do not apply: a KmqWarning says so if ks differ
    from its K). An image gives one record per k in ks, in that order (DEFAULT_K if none), compressed in memory
    once per distinct k: a repeated k repeats its record, and a k past the first lossless one gives that
    record again (its k is the image's number of colours; a KmqWarning names these ks), or once with palette
    (see kmq.compress) when one is given. codec: None keeps a .kmq file's own codec and stores images raw; a
    codec name, or "all" for every codec, re-encodes the labels and reports the size the file would have with
    it (one record per codec).
    reference: also give the bytes of the same pixels as PNG-8 and lossless WebP (see reference_sizes).
    rdo: as kmq.compress's, for image inputs: each codec's records are the files compress writes with it and
    rdo (labels weighed for that codec; raw's, with codec "all", the plain ones); with codec None or "raw", a
    ValueError, as kmq.compress's.
    dither: as kmq.compress, for images (a .kmq file is reported as stored).
    sweep: also K = SWEEP (2, 4, ..., 256), all in ascending order, each once, up to the first lossless one
    (J = 0): every larger K would give the same record again (an image with few colours); a k of ks past it
    still gives its record.
    progress: an optional callable(done, total), called as each fit and record is done (and now and then
    within a long fit), e.g. to draw a bar; done reaches total at the end. It does not change the records.
    source: a path ("-": stdin), the file's bytes (bytearray, memoryview) or a binary file object read from its
    current position, as kmq.read reads one; "file", warnings and errors name it as kmq.compress does: the
    path, or "<bytes>", a file object's name, else "<stream>". A text-mode file is a TypeError.

    Example:
        >>> import io, numpy as np, kmq
        >>> from PIL import Image
        >>> png = io.BytesIO()
        >>> Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(png, "PNG")  # 64 levels of grey
        >>> [(r["file"], r["k"], r["bits_per_label"]) for r in kmq.stats.measure(png.getvalue(), [2, 4])]
        [('<bytes>', 2, 1), ('<bytes>', 4, 2)]
    """
    name = input_name(source)
    with named_warnings(name):
        records = _measure(source, name, ks, seed=seed, codec=codec, reference=reference, max_pixels=max_pixels,
                           palette=palette, rdo=rdo, dither=dither, sweep=sweep, progress=progress)
    if progress is not None:
        progress(1, 1)
    return records


def _measure(source: Source, name: str, ks: Sequence[int], *, seed: int, codec: str | None, reference: bool,
             max_pixels: int, palette: Any, rdo: float, dither: str, sweep: bool,
             progress: Callable[[int, int], None] | None) -> list[dict[str, Any]]:
    loaded, size = load(source, max_pixels=max_pixels, name=name)
    chosen = list(CODECS) if codec == "all" else [codec] if codec else []
    if isinstance(loaded, KmqImage):
        ignored_k(name, loaded, ks)
        ignored_options(name, palette=palette is not None, rdo=rdo, dither=dither, sweep=sweep, seed=seed)
        if not chosen:
            return [{**record(loaded, name, size), **(reference_sizes(loaded) if reference else {})}]
        quantized = [loaded]
        steps = Steps(progress, 1)
    elif palette is not None:
        if rdo:  # as kmq.compress: rdo refines the palette it fits
            raise ValueError(PALETTE_RDO)
        steps = Steps(progress, 2)
        with naming(name, KmqError):  # the palette's checks see pixels, not the file
            quantized = [compress(loaded, palette=palette, dither=dither)]
        steps.step()
    else:
        if rdo and codec in (None, "raw"):  # as kmq.compress: an image's raw records would show rdo for nothing
            raise ValueError(RAW_RDO)
        fits = len(set(_order(ks, sweep))) * (len(chosen) if rdo else 1)
        steps = Steps(progress, 2 * fits)  # each fit, then its record(s)
        if rdo:
            return _rdo_records(loaded, ks, name, chosen, seed=seed, reference=reference, rdo=rdo, dither=dither,
                                sweep=sweep, steps=steps)
        quantized = _quantized(loaded, ks, seed=seed, rdo=rdo, dither=dither, sweep=sweep, steps=steps)
    # A quantization listed again (a repeated -k, a K past the lossless one) repeats its records, measured once.
    measured: dict[int, list[dict[str, Any]]] = {}
    for img in quantized:
        if id(img) not in measured:
            # The same pixels whatever the codec: measured once per quantization.
            sizes = reference_sizes(img) if reference else {}
            encoded = [replace(img, codec=name_of_codec) for name_of_codec in chosen or ["raw"]]
            measured[id(img)] = [{**record(e, name, len(e.to_bytes())), **sizes} for e in encoded]
            steps.step()
    return [dict(r) for img in quantized for r in measured[id(img)]]


def _rdo_records(image: np.ndarray, ks: Sequence[int], name: str, chosen: list[str], *, seed: int,
                 reference: bool, rdo: float, dither: str, sweep: bool, steps: Steps) -> list[dict[str, Any]]:
    """An image's records under rdo: each codec's the file `compress --codec C --rdo` writes, since rdo weighs
    labels by what they cost in that codec (lzma's records of ctx's labels were not any file compress makes);
    raw, which rdo cannot serve, the plain one. Per K, in the codecs' order."""
    per_codec = [_quantized(image, ks, seed=seed, rdo=0.0 if c == "raw" else rdo, dither=dither, sweep=sweep,
                            codec=c, steps=steps) for c in chosen]
    out, measured = [], {}
    for row in zip(*per_codec):
        for c, img in zip(chosen, row):
            if id(img) not in measured:  # a K repeated, or past the lossless one: the same record again
                sizes = reference_sizes(img) if reference else {}
                measured[id(img)] = {**record(img, name, len(img.to_bytes())), **sizes}
                steps.step()
            out.append(dict(measured[id(img)]))
    return out


def _order(ks: Sequence[int], sweep: bool) -> list[int]:
    """The Ks to quantize at, in order: those asked, repeats too (DEFAULT_K if none), or with sweep the sorted
    union of them and SWEEP."""
    return sorted({*ks, *SWEEP}) if sweep else list(ks) or [DEFAULT_K]


def _quantized(image: Any, ks: Sequence[int], *, seed: int, rdo: float, dither: str,
               sweep: bool, steps: Steps, codec: str = "ctx") -> list[KmqImage]:
    """The image quantized at each K asked, in the order asked (DEFAULT_K if none), each K once however often
    it is asked; with sweep, at the sorted union of ks and SWEEP up to the first lossless K. codec: the one rdo
    weighs labels for (without rdo, raw: the records re-encode the labels)."""
    done: dict[int, KmqImage] = {}
    lossless: tuple[int, KmqImage] | None = None  # the first K found lossless, and its quantization
    beyond: list[int] = []  # the Ks asked past it, given its record
    quantized = []
    for k in _order(ks, sweep):
        # Once a K is lossless, the image has at most that many colours (J = 0 only when every colour is an
        # entry), and every larger K would make the very same quantization: it is copied, not made again.
        if k not in done and lossless is not None and k >= lossless[1].k:
            if k not in ks:
                continue  # --sweep stops at its first lossless K
            beyond.append(k)
            done[k] = lossless[1]
        if k not in done:
            done[k] = compress(image, k, seed=seed, codec=codec if rdo else "raw", rdo=rdo, dither=dither,
                               progress=steps.within())
            steps.step()
            if done[k].distortion == 0 and lossless is None:
                lossless = k, done[k]
        quantized.append(done[k])
    if beyond and lossless is not None:
        asked = ", ".join(f"-k {k}" for k in beyond)
        warn(f"{asked} {'gives' if len(beyond) == 1 else 'give'} the same lossless record as -k {lossless[0]} "
             f"(k={lossless[1].k}, every colour of the image)")
    return quantized


# `kmq info --format json`: the keys of the object, in order, and of each palette entry (RGBA adds "alpha").
INFO_FIELDS = ("file", "file_bytes", "version", "width", "height", "channels", "mode", "codec", "k",
               "bits_per_label", "meta_bytes", "payload_bytes", "ratio", "distortion", "psnr", "seed",
               "metadata", "palette")
PALETTE_FIELDS = ("index", "hex", "rgb", "share")
MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def label_counts(labels: np.ndarray, k: int) -> np.ndarray:
    """(k,) int64: the pixels (labels, any shape) carrying each label 0..k-1."""
    flat = labels.reshape(-1)
    counts = np.zeros(k, np.int64)
    # A piece at a time: bincount widens its input to intp, and the whole of a 48 MP image's was 384 MB, the
    # peak of `kmq palette` (668 MB) beside the labels themselves.
    for start in range(0, flat.size, _COUNTED):
        counts += np.bincount(flat[start:start + _COUNTED], minlength=k)
    return counts


_COUNTED = 1 << 20  # labels counted at a time: an 8 MB intp temporary


def shares(labels: np.ndarray, k: int) -> np.ndarray:
    """(k,) float64: the fraction of the pixels (labels, any shape) carrying each label 0..k-1; sums to 1."""
    return label_counts(labels, k) / labels.size


def palette_entries(palette: np.ndarray, labels: np.ndarray) -> list[dict[str, Any]]:
    """One record per palette entry (keys PALETTE_FIELDS, plus "alpha" for RGBA) with its share of the pixels.

    palette: (k, 1|3|4) uint8; labels: (h, w) integers < k. hex is "#rrggbb" ("#rrggbbaa" for RGBA); rgb is
    [r, g, b] (for grey, the level three times); share is the fraction of pixels, the shares summing to 1.
    """
    from . import palettes  # not for compress's summary line, which loads this module

    return palettes.entries(palette, shares(labels, palette.shape[0]))


def describe(source: Source, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    """Everything a .kmq file says about itself (keys INFO_FIELDS): header, codec, metadata and palette.

    source: as kmq.read's, a path ("-": stdin), the file's bytes or a binary file object read from its current
    position; "file" is the path, or "<bytes>", a file object's name, else "<stream>".
    Raises FormatError for anything that is not a valid .kmq file.

    Example:
        >>> import numpy as np, kmq
        >>> data = kmq.compress(np.zeros((2, 3, 3), np.uint8), k=1).to_bytes()  # or kmq.stats.describe("a.kmq")
        >>> d = kmq.stats.describe(data)
        >>> d["file"], d["width"], d["height"], d["k"], d["codec"], d["palette"][0]["hex"]
        ('<bytes>', 3, 2, 1, 'raw', '#000000')
    """
    check_max_pixels(max_pixels)
    name = input_name(source)
    path = isinstance(source, (str, os.PathLike))
    with reading(source) if path else nullcontext(contents(source, "a .kmq file")) as f, naming(name):
        # Bounded by the header's declared sizes: reading everything first let /dev/zero or `yes |` fill memory.
        data = f if isinstance(f, bytes) else read_kmq(f, max_pixels=max_pixels)
        header = parse_header(data, max_pixels=max_pixels)
        img = KmqImage.from_bytes(data, max_pixels=max_pixels)
    r = record(img, name, len(data))
    return {
        "file": name, "file_bytes": len(data), "version": header.version, "width": img.width,
        "height": img.height, "channels": img.channels, "mode": MODES[img.channels],
        "codec": codec_name(header.codec), "k": img.k, "bits_per_label": img.bits_per_label,
        "meta_bytes": header.meta_len, "payload_bytes": header.payload_len, "ratio": r["ratio"],
        "distortion": img.distortion, "psnr": r["psnr"], "seed": img.seed, "metadata": img.metadata,
        "palette": palette_entries(img.palette, img.labels),
    }
