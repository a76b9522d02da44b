"""The public functions: compress pixels into a KmqImage, read and write .kmq files.

These validate; kmq.kmeans computes.
"""
from __future__ import annotations

import functools
import io
import json
import math
import os
import stat
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Union

import numpy as np
from PIL import Image

from . import codecs, coreset, kmeans
from .codecs import NAMES as CODECS
from .dither import METHODS as DITHERS
from .dither import distortion as dither_distortion
from .dither import floyd_steinberg
from .errors import KmqError, naming, warn
from .fileio import STDIO, check_writable, open_input, reading, stdin, write_atomic
from .format import DEFAULT_MAX_PIXELS, MAGIC, MAX_K, KmqImage, image_format, read_kmq, read_up_to
from .imageio import (ImageSource, check_max_pixels, clear_transparent, drop_alpha, format_for, from_pillow, load_image,
                      opaque, save_quantized, source_name, warn_extension_mismatch, writable_format)
from .limits import MAX_PSNR, MAX_RDO

if TYPE_CHECKING:  # kmq.palettes is imported where a palette is given: not by a plain compress
    from . import palettes

__all__ = ["compress", "compress_to", "read", "write", "export", "quantize", "load"]


# K-Means' defaults: a file records max_iter and tol only when they differ (_fit_meta).
MAX_ITER = 300
TOL = 1e-4
DEFAULT_K = 16  # K when none is given (with a palette, K is its size)

# What load() reads, and kmq.stats and kmq.segment with it: what compress (but its arrays and images) and read take.
Source = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]


def compress(image: np.ndarray | Image.Image | KmqImage | ImageSource, k: int | None = None, *, seed: int = 0,
             max_iter: int = MAX_ITER, tol: float = TOL, codec: str = "raw",
             max_pixels: int = DEFAULT_MAX_PIXELS, rdo: float = 0.0, palette: Any = None,
             dither: str = "none", progress: kmeans.Progress | None = None) -> KmqImage:
    """Quantize an image to at most k colours.

    image: a (height, width) or (height, width, 1|3|4) uint8 array (never modified), a Pillow image (its
    current frame), a KmqImage (its decoded pixels, quantized again), or an image file: a path (str or
    os.PathLike; "-" reads stdin), its bytes, or a binary file object (read from its start). A file is read
    upright (EXIF orientation) and in sRGB (a colour profile converted, with a KmqWarning).
    k: the palette's size (16 if None). Returns a KmqImage whose palette has k entries, or fewer (with a
    KmqWarning) when the image has fewer distinct colours than k; each label is the nearest palette entry;
    metadata holds "distortion" and "seed".
    seed: K-Means' seed (np.random.default_rng(seed)): the same image, k and seed give the same bytes.
    max_iter, tol: K-Means' limits: the most Lloyd updates, and the end once the centroids' summed squared
    shift in an update is at most tol times the pixels' mean per-channel variance (scikit-learn's tol); each
    is recorded in the metadata when not the default.
    codec: "raw" (default; labels packed at ceil(log2 k) bits), "ctx" or "lzma" (see docs/CODECS.md).
    max_pixels: larger images are refused (KmqError) before they are decoded.
    Raises ValueError or TypeError for a bad argument, KmqError for an image that cannot be read or is over
    max_pixels.
    rdo: a percentage (default 0, off). Labels (and then the palette) may move where that makes them cheaper
    for the codec (ctx or lzma; with raw every labelling costs the same, so rdo > 0 is a ValueError), for a
    distortion J at most (1 + rdo/100) times the nearest-colour J; metadata then also holds "rdo" (not when
    rdo keeps the nearest labelling: the file is then the plain one, byte for byte). Unused or coinciding
    entries are dropped, so k may shrink.

    progress: an optional callable(done, total), called now and then by a long K-Means (large k), e.g. to
    draw a bar; it does not change the result.

    palette: a given palette instead of K-Means: an (n, 1|3|4) uint8 array, a palette file's path (.gpl,
    .txt, .hex, .json, .pal, .act, .kmq or a palette image, see kmq.palettes) or a kmq.palettes.Palette.
    Every pixel then gets its nearest entry (ties to the lower index), in the palette's order, all n entries
    kept (a k other than n is a ValueError; seed, max_iter and tol are not used); metadata holds "distortion"
    and "palette_source" ({"name", "sha256"}). Grey, RGB and RGBA meet as kmq.palettes.layout says; an image
    with transparency needs a palette with alpha (KmqError).

    dither: "none", or "fs" for Floyd–Steinberg error diffusion onto the palette (metadata "dither": "fs";
    the distortion is then that of the dithered labels, higher than the nearest entries' but smoother to the
    eye).

    >>> img = compress(np.zeros((2, 2, 3), np.uint8), k=1)
    >>> img.k, img.distortion
    (1, 0.0)
    """
    _check_k(DEFAULT_K if k is None else k)
    _check_common(seed, max_iter, codec, tol)
    _check_rdo(rdo, codec)
    _check_progress(progress)
    check_max_pixels(max_pixels)
    if dither not in DITHERS:
        raise ValueError(f"unknown dither {dither!r}; choose from {', '.join(DITHERS)}")
    if dither != "none" and rdo > 0:
        raise ValueError(DITHER_RDO)
    if palette is not None:
        if rdo > 0:
            raise ValueError(PALETTE_RDO)
        from . import palettes

        given = palettes.as_palette(palette, max_pixels=max_pixels)
        if k is not None and k != len(given.colors):
            raise ValueError(f"k={k} cannot be used with a palette of {len(given.colors)} entries (the palette is used "
                             f"exactly as given: its size is K)")
        return _with_palette(image, given, codec, max_pixels, dither)
    k = DEFAULT_K if k is None else k
    # Only K-Means reads the pixels then, with numpy: a decoded RGB image may stay in its padded layout, and
    # its distinct colours' first pass may run over its rows while it decodes (kmeans.Marks).
    plain = rdo == 0 and dither == "none"
    # numpy loads numpy.random (the fit's seeding) when first used: ~8 ms of CPU, on the critical path after
    # the decode if left to the fit; loaded here, it runs while a prefetched image still decodes.
    import numpy.random  # noqa: F401
    marks = kmeans.Marks() if plain else None
    pixels = _as_pixels(image, max_pixels, padded=plain, on_rows=marks)
    if plain and coreset.applies(pixels.reshape(-1, pixels.shape[2]), int(k)):
        done = _from_histogram(pixels, int(k), seed=int(seed), max_iter=max_iter, tol=tol, codec=codec,
                               progress=progress)
        if done is not None:
            return done
    distinct = kmeans.distinct(pixels.reshape(-1, pixels.shape[2]), marks)
    del marks
    return quantized(pixels, distinct, int(k), seed=int(seed), max_iter=max_iter, tol=tol, codec=codec,
                     rdo=float(rdo), dither=dither, progress=progress)


def compress_to(image: np.ndarray | Image.Image | KmqImage | ImageSource, *, psnr: float | None = None,
                max_bytes: int | None = None, k: int | None = None, codec: str | None = None, seed: int = 0,
                max_iter: int = MAX_ITER, max_pixels: int = DEFAULT_MAX_PIXELS,
                progress: Callable[[int, int | None], None] | None = None) -> KmqImage:
    """Compress to a target instead of a K: exactly one of psnr (dB: the smallest file whose decoded PSNR is at
    least this) and max_bytes (the best-PSNR file of at most this many bytes).

    image, seed, max_iter, max_pixels: as kmq.compress. Raises ValueError for no target or both, or a bad
    value.

    kmq chooses K (1 .. k, default 65536) and, for ctx and lzma, the rdo strength; metadata records
    "target" ({"psnr": DB} or {"max_bytes": N}) and "rdo". KmqError when no file meets the target, saying
    the best that can be done.

    codec: "raw", "ctx" or "lzma" is searched as given. None (the default) chooses ctx or lzma: ctx for
    photos (under 40 % of the pixels in their 16 commonest colours: the file codec="ctx" gives, byte for
    byte); for others, from how each codes the plain labels of a K the search fits anyway: lzma when it
    takes under 0.8x ctx's bytes (text and screenshots, whose repeated glyphs ctx does not model), ctx
    from 0.95x, and between both searched, the better file kept. img.codec says which.

    progress: an optional callable(done, total), called after each K-Means fit and rdo run of the search
    (total None: the search decides as it goes how many it needs), e.g. to show that a long search lives.

    Example:
        >>> import numpy as np, kmq
        >>> ramp = np.repeat(np.arange(0, 256, 4, dtype=np.uint8)[None], 8, axis=0)  # 64 levels of grey
        >>> img = kmq.compress_to(ramp, psnr=30)  # the smallest file whose PSNR is at least 30 dB
        >>> img.metadata["target"], img.k < 64
        ({'psnr': 30.0}, True)
    """
    if (psnr is None) == (max_bytes is None):
        raise ValueError("give exactly one target: psnr or max_bytes")
    if psnr is not None and (isinstance(psnr, bool) or not isinstance(psnr, (int, float, np.number))
                             or not 0 < psnr <= MAX_PSNR):
        raise ValueError(f"psnr must be a number of dB above 0 and at most {MAX_PSNR:g}, got {psnr!r}")
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer))
                                  or max_bytes < 1):
        raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    if k is not None:
        _check_k(k)
    _check_common(seed, max_iter, "ctx" if codec is None else codec)
    _check_progress(progress)
    check_max_pixels(max_pixels)
    from . import target

    pixels = _as_pixels(image, max_pixels)
    return target.search(pixels, psnr=None if psnr is None else float(psnr),
                         max_bytes=None if max_bytes is None else int(max_bytes), k_max=int(k or MAX_K),
                         codec=codec, seed=int(seed), max_iter=max_iter, progress=progress)


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")


def _check_progress(progress: Any) -> None:
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable or None, got {progress!r}")


def _check_common(seed: int, max_iter: int, codec: str, tol: float = TOL) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer of at least 1, got {max_iter!r}")
    # Checked before the fit: a file records a tol that is not the default, and a file's tol must be finite.
    if isinstance(tol, bool) or not isinstance(tol, (int, float, np.number)) or not 0 <= tol < math.inf:
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")


# Pixels up to which rdo's lzma file and the nearest labelling's are both made whole to keep the smaller
# (_smaller).
_JUDGED = 1 << 18
# ... and rdo's ctx file (ctx judges its own moves, on a sample above 2 x 2^17 pixels, from the restart
# rdo.choose picked): whole files up to this many pixels, none above. Two ctx encodes cost ~0.3 s of CPU per
# 512k pixels: at 12 MP a band's 0.29 s took --rdo 2 from 1.91x to 2.12x a plain compress (the noisy photo).
_CTX_JUDGED = 1 << 19
# Pixels up to which a ctx rdo compress has the fit keep restarts for rdo.choose (kmq.api._rdo). --rdo 2 at
# K = 16, files with them over files without: 0.27-1 MP photos 0.95x (coffee, chelsea), 0.99x, 1.0x, 1.0x,
# 1.004x; above 2 MP, where choose judges them on a sample of under 6 % of the image, nothing gained: 2-4 MP
# 1.0x, 1.0x, 1.021x; 12 MP (the five of bench/photos.py and three more) 0.985x (noisy), 1.013x (a saturated
# flower), six 1.0x, while the fit cost +18-210 % of CPU (0.01-0.19 s; 12 MP detailed 0.09 s, a tenth of a
# plain compress).
_OTHERS_MAX = 1 << 21
# In the library's words (the command line says --rdo, --codec, --dither fs: kmq.cli's own).
RAW_RDO = "every labelling costs the same bytes with codec='raw', so rdo cannot help; use codec='ctx' (or 'lzma')"
# rdo ends by moving palette entries to the mean of their pixels: a given palette must stay as it is.
PALETTE_RDO = "rdo refines the palette it fits; a given palette is kept exactly, so rdo > 0 cannot be used with one"
DITHER_RDO = ("dither='fs' cannot be combined with rdo > 0: rdo moves labels into runs the codec stores cheaply, "
              "dithering spreads them into noise, and each undoes the other")


def _check_rdo(rdo: float, codec: str) -> None:
    if isinstance(rdo, bool) or not isinstance(rdo, (int, float, np.number)) or not 0 <= rdo <= MAX_RDO:
        raise ValueError(f"rdo must be a percentage from 0 to {MAX_RDO:g}, got {rdo!r}")
    if rdo > 0 and codec == "raw":
        raise ValueError(RAW_RDO)


def quantized(pixels: np.ndarray, distinct: kmeans.Distinct, k: int, *, seed: int, max_iter: int,
              tol: float = TOL, codec: str, rdo: float = 0.0, fit: tuple | None = None,
              extra: dict | None = None, dither: str = "none",
              progress: kmeans.Progress | None = None, prepared=None) -> KmqImage:
    """The KmqImage of (H, W, C) pixels (whose distinct colours are ``distinct``) at k, with rdo (or dither)
    applied. fit: a (palette, per-colour labels, J) of quantize_colors already computed for this k (its labels
    are spread to the pixels only if neither rdo nor dithering replaces them); extra: more metadata;
    prepared: rdo.prepare for fit's palette, when several rdo strengths are tried at this k."""
    if rdo > 0:  # rdo sizes labellings by their ctx bounds, and encodes the files it weighs whole (_smaller)
        from .codecs.ctx import recording
    with recording() if rdo > 0 else nullcontext():
        return _quantized(pixels, distinct, k, seed=seed, max_iter=max_iter, tol=tol, codec=codec, rdo=rdo,
                          fit=fit, extra=extra, dither=dither, progress=progress, prepared=prepared)


def _quantized(pixels: np.ndarray, distinct: kmeans.Distinct, k: int, *, seed: int, max_iter: int, tol: float,
               codec: str, rdo: float, fit: tuple | None, extra: dict | None, dither: str,
               progress: kmeans.Progress | None, prepared) -> KmqImage:
    height, width, channels = pixels.shape
    labels = None  # per pixel; made from color_labels only when neither rdo nor dithering replaces them
    judged: list[KmqImage] = []  # files weighed whole (_smaller): the one returned takes its payload from them
    # ctx rdo may start from another of the fit's restarts than the plain file's (rdo.choose), up to _OTHERS_MAX
    others: list | None = ([] if rdo > 0 and codec == "ctx" and not extra and prepared is None
                           and height * width <= _OTHERS_MAX else None)
    if fit is None:
        palette, color_labels, distortion = quantize_colors(distinct.colors, distinct.counts, k, seed=seed,
                                                            max_iter=max_iter, tol=tol, what="the image has",
                                                            progress=progress, others=others)
    else:
        palette, color_labels, distortion = fit
    meta = _fit_meta(distortion, seed, max_iter, tol)
    # A lossless image leaves rdo nothing to trade, so its file is the plain one, byte for byte (a target
    # still records the rdo it chose, 0 included).
    if (rdo > 0 and distortion > 0) or extra:
        meta["rdo"] = rdo
        if rdo > 0 and distortion > 0:
            nearest = (palette, distortion)
            # ctx's own judgement counts the bytes recording rdo costs (and 2 for J's digits); lzma's below.
            margin = 0 if extra or codec != "ctx" else len(json.dumps({"rdo": float(rdo)}, separators=",:")) + 1
            palette, labels, distortion, ordered = _rdo(pixels, distinct, palette, distortion, rdo, margin, prepared,
                                                        others)
            if not ordered:
                palette, labels = _by_share(palette, labels.reshape(-1), None)
            meta["distortion"] = distortion
            kept = {key: v for key, v in meta.items() if key != "rdo"}
            # A target's search weighs the plain file against this one itself, exactly. ctx too (up to
            # _CTX_JUDGED pixels): rdo judges its own labelling against its start's nearest one, but its start
            # may be another restart of the fit (rdo.choose), judged on a sample, and the file's J and rdo cost
            # digits: a 600x500 blocky noise at K = 16 made 21,085 bytes against the plain 20,864, at a higher J.
            if not extra and (codec != "ctx" or labels.size <= _CTX_JUDGED):
                near = distinct.spread(color_labels.astype(np.uint16)).reshape(height, width)
                plain = KmqImage(nearest[0], near, {**kept, "distortion": nearest[1]}, codec)
                judged += [KmqImage(palette, labels.reshape(height, width), meta, codec), plain]
                if not _smaller(*judged, _CTX_JUDGED if codec == "ctx" else _JUDGED):
                    palette, labels, distortion = plain.palette, near, nearest[1]
                    meta["distortion"] = distortion
            if distortion == nearest[1] and np.array_equal(palette, nearest[0]):
                # Same palette and J: rdo moved nothing, or only pixels tied between two entries, which may
                # make the labels cheaper or (rdo judges ctx's bytes roughly) dearer. Unless they are smaller,
                # the plain file, not 10 bytes more; a target's file records the rdo it used, 0 (a 64x48
                # ramp's --psnr 30 file said rdo 169 % with plain K = 15's pixels).
                near = distinct.spread(color_labels.astype(np.uint16))
                # A target's file records its rdo either way: the plain one as 0.
                plain_meta = {**kept, "rdo": 0.0} if extra else kept
                moved = KmqImage(palette, labels.reshape(height, width), meta, codec)
                plain = KmqImage(palette, near.reshape(height, width), plain_meta, codec)
                judged += [moved, plain]
                if np.array_equal(labels.ravel(), near) or not _smaller(moved, plain):
                    labels = near
                    if extra:
                        meta["rdo"] = 0.0
                    else:
                        del meta["rdo"]
    if _dithers(dither, palette, distortion):
        flat = floyd_steinberg(pixels, palette)
        palette, labels = _by_share(palette, flat.ravel(), None)
        meta.update(distortion=dither_distortion(pixels, palette, labels), dither="fs")
    if labels is None:
        if len(color_labels) >= _GIVE_BACK_FROM or height * width >= _GIVE_BACK_PIXELS:
            _give_back_freed()
        labels = distinct.spread(color_labels.astype(np.uint16))
    meta.update(extra or {})
    img = KmqImage(palette, labels.reshape(height, width), meta, codec)
    img.keep_payload_of(*judged)
    return img


def _rdo(pixels: np.ndarray, distinct: kmeans.Distinct, palette: np.ndarray, distortion: float, rdo: float,
         margin: int, prepared: Any, others: list | None) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """rdo.optimise of the palette, or of one of ``others`` (palettes of the fit's other restarts) that rdo.choose
    finds cheaper, within the same J budget: (1 + rdo/100) x this palette's J. Restarts of about the same J
    end in local optima whose labels cost ctx up to 4 % apart; rdo keeps its own share of that (the samples
    at K = 16 and 64: 0.848x of plain ctx bytes where it was 0.865x). An other palette is dropped when its
    own J leaves no budget or rdo would keep its nearest labelling (that file would be no plain one).
    Returns rdo.optimise's result and whether it comes as a file holds it (its ``ordered``: asked for where
    no other palette is weighed, a target's search's runs included: _by_share counted the labels of each
    file again, 15 files and 0.24 s of a 1920x1200 screenshot's 2.2 s search in 40 kB)."""
    from . import rdo as rdo_module

    if others:
        pick, bounds = rdo_module.choose(pixels, distinct, [(palette, 0.0), *others], rdo / 100)

        def own() -> tuple[tuple[np.ndarray, np.ndarray, float], Any]:
            ready = rdo_module.prepare(pixels, distinct, palette)
            ready.bounds = bounds[0]
            return rdo_module.optimise(pixels, distinct, palette, rdo, ready, margin), ready

        if pick:
            n = pixels.shape[0] * pixels.shape[1]
            # (the fit's J is an exact sum over n: rdo's own budget, floor(that sum x ratio))
            budget = math.floor(round(distortion * n) * (1 + rdo / 100))
            alt = others[pick - 1][0]
            ready = rdo_module.prepare(pixels, distinct, alt)
            if ready.plain.total < budget:
                ready.bounds = bounds[pick]
                out = rdo_module.optimise(pixels, distinct, alt, rdo, ready, margin, budget)
                if out[2] != ready.plain.total / n:
                    if not ready.whole:
                        return (*out, False)
                    # choose's guess misses now and then: where the image is its own sample (up to 2^18
                    # pixels, where a second rdo run costs little), both results are weighed exactly (a smooth
                    # gradient at K = 16: rdo from a palette of 0.06 % lower J, fewer nearest label bytes,
                    # made 540 bytes against the plain palette's 528, spending none of the budget; the RGBA
                    # logo at K = 64 28,902 against 28,399, at J 1.02x either way).
                    mine, prepared = own()
                    return (*(out if rdo_module.fewer_bytes(ready, out, prepared, mine, margin) else mine), False)
            # The other palette's whole-image labelling is let go before the plain palette's is made: each holds
            # the image's labels (48 MB at 12 MP), and nothing reads the first one again.
            ready = out = None
        return (*own()[0], False)
    return (*rdo_module.optimise(pixels, distinct, palette, rdo, prepared, margin, ordered=True), True)


def _dithers(dither: str, palette: np.ndarray, distortion: float) -> bool:
    """Whether dithering can change a label: not where every pixel has its exact colour (J = 0) or the
    palette one entry, whose file would only record "dither" (14 bytes) over the same labels."""
    return dither == "fs" and distortion > 0 and palette.shape[0] > 1


def _fit_meta(distortion: float, seed: int, max_iter: int, tol: float) -> dict:
    """The metadata of a K-Means palette: J and what the fit was started with; max_iter and tol only when not
    the defaults, so that a file made with them can be made again (and a default file stays as it was)."""
    meta: dict = {"distortion": distortion, "seed": seed}
    if max_iter != MAX_ITER:
        meta["max_iter"] = int(max_iter)
    if tol != TOL:
        meta["tol"] = float(tol)
    return meta


def _smaller(moved: KmqImage, plain: KmqImage, whole: int | None = None) -> bool:
    """Whether rdo's file is smaller than the nearest labelling's (or as small at a lower J). rdo judges its
    moves by ctx's payload (given the bytes recording "rdo" costs); lzma mostly agrees, not always (a 600x400
    gradient at K = 16 made 1,493 bytes against 1,461, at a higher J), and moves between tied entries may
    cost ctx bytes too; ctx's own judgement is on a sample, from the restart rdo.choose picked. Up to `whole`
    (default _JUDGED) pixels the whole files are compared; above, both payloads on a band of rows through the
    middle of the image of _JUDGED pixels: lzma takes ~9 s of CPU for 12 MP of labels, ~0.2 s for the band."""
    if moved.labels.size <= (_JUDGED if whole is None else whole):
        # (each keeps its payload: the one returned is written without a second encode)
        ours = moved.overhead() + len(moved.payload(keep=True))
        theirs = plain.overhead() + len(plain.payload(keep=True))
    else:
        band = max(1, _JUDGED // moved.width)
        rows = slice((moved.height - band) // 2, (moved.height - band) // 2 + band)
        cid = codecs.codec_id(moved.codec)
        ours = len(codecs.encode(cid, np.ascontiguousarray(moved.labels[rows]), moved.palette))
        theirs = len(codecs.encode(cid, np.ascontiguousarray(plain.labels[rows]), plain.palette))
    return ours < theirs or (ours == theirs and moved.distortion < plain.distortion)


def _from_histogram(pixels: np.ndarray, k: int, *, seed: int, max_iter: int, tol: float,
                    codec: str, progress: kmeans.Progress | None = None) -> KmqImage | None:
    """compress of a large RGBA image whose alpha varies through its 6-bit histogram (kmq.coreset), or None
    when that histogram has too few bins for k (the distinct colours are then the way)."""
    height, width, channels = pixels.shape
    flat = np.ascontiguousarray(pixels.reshape(-1, channels))  # each pixel's 4 bytes read as one word
    hist = coreset.Histogram(flat, min_bins=coreset.min_bins(k), coarse_bins=coreset.coarse_bins(k))
    if hist.ids is None:
        return None
    # From _GIVE_BACK_PIXELS the freed heap is handed back between the phases (the counting's, the fit's and
    # the bins' arrays, ~80-150 MB each at 48 MP): the labels (96 MB) are a fresh mapping that would come on
    # top of it. The bins are let go before the labels are made (`coreset.label`), and hist (the pixels'
    # index, where kept) before they are renumbered. (Not handed back after renumber: flower at 48 MP under
    # random alpha, K = 1024, peaks in its 10-bit encoding at 674-765 MB either way.)
    large = flat.shape[0] >= _GIVE_BACK_PIXELS
    give_back = _give_back_freed if large else (lambda: None)
    give_back()
    alpha = flat[:, 3]
    palette = _rounded(coreset.fit(hist, k, seed=seed, max_iter=max_iter, tol=tol, progress=progress), k,
                       opaque=bool(alpha.max() == 255), hidden=bool(alpha.min() == 0))[0]
    give_back()
    labels, count, err = coreset.label(flat, hist, palette, release=give_back if large else None)
    del hist
    order, rank = kmeans.share_order(palette, count)
    coreset.renumber(labels, rank.astype(np.uint16))
    meta = _fit_meta(err / flat.shape[0], seed, max_iter, tol)
    return KmqImage(palette[order], labels.reshape(height, width), meta, codec)


def _with_palette(image: Any, given: palettes.Palette, codec: str, max_pixels: int,
                  dither: str = "none") -> KmqImage:
    from . import palettes

    pixels = _as_pixels(image, max_pixels)
    height, width, channels = pixels.shape
    with naming(image, KmqError) if isinstance(image, (str, Path)) else nullcontext():
        palette, labels, distortion = palettes.apply(pixels.reshape(-1, channels), given.colors,
                                                     source=given.name)
    meta = {"distortion": distortion, "palette_source": given.source}
    if _dithers(dither, palette, distortion):
        # Onto the palette as stored, in its layout and order: a given palette is never re-sorted.
        pixels = palettes.convert(pixels.reshape(-1, channels), palette.shape[1]).reshape(height, width, -1)
        seen = palettes.as_seen(palette)
        labels = floyd_steinberg(pixels, seen)
        meta.update(distortion=dither_distortion(pixels, seen, labels), dither="fs")
    return KmqImage(palette, labels.reshape(height, width), meta, codec)


def quantize(pixels: np.ndarray, k: int, *, seed: int = 0, max_iter: int = MAX_ITER,
             tol: float = TOL, progress: kmeans.Progress | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """pixels (N, C) uint8 -> (palette (k', C) uint8, labels (N,) uint16, distortion J), k' <= k.

    The pixels are taken as given: `compress` reads alpha 0 as (0, 0, 0, 0) before it calls this.

    K-Means runs over the distinct colours weighted by their counts (the same result as over the pixels, much
    cheaper); see `quantize_colors`.
    """
    return quantize_distinct(kmeans.distinct(pixels), k, seed=seed, max_iter=max_iter, tol=tol,
                             progress=progress)


def quantize_distinct(distinct: kmeans.Distinct, k: int, *, seed: int = 0, max_iter: int = MAX_ITER,
                      tol: float = TOL, progress: kmeans.Progress | None = None
                      ) -> tuple[np.ndarray, np.ndarray, float]:
    """quantize, given the image's distinct colours (so that several k can share them)."""
    palette, color_labels, distortion = quantize_colors(distinct.colors, distinct.counts, k, seed=seed,
                                                        max_iter=max_iter, tol=tol, what="the image has",
                                                        progress=progress)
    # One table look-up per pixel from its colour to its label: no (N,) index array is ever built.
    return palette, distinct.spread(color_labels.astype(np.uint16)), distortion


def quantize_colors(colors: np.ndarray, counts: np.ndarray, k: int, *, seed: int = 0, max_iter: int = MAX_ITER,
                    tol: float = TOL, what: str = "the image has", progress: kmeans.Progress | None = None,
                    others: list | None = None, stand_in: Callable | None = None, quiet: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """Distinct colours (M, C) uint8 with their pixel counts (M,) -> (palette (k', C) uint8 in decreasing
    share, each colour's label (M,), distortion J over the pixels), k' <= k.

    The centroids are rounded to uint8 and merged where they coincide, and every distinct colour is
    labelled with its nearest palette entry, so J is that of the stored palette. what: the subject and verb
    of the warning when there are fewer colours than k ("the images have"). others: a list that receives
    (palette (rounded, not in share order), J over this J - 1 as the fit saw it) of the fit's other finished
    restarts (kmeans.fit's others). stand_in: kmeans.fit's (the restarts' stand-in on a histogram level).
    quiet: no warning (a fit a search only weighs: fewer colours than k is expected there).
    """
    if len(colors) <= k:
        if len(colors) < k and not quiet:
            colours = "1 distinct colour" if len(colors) == 1 else f"{len(colors):,} distinct colours"
            warn(f"{what} only {colours}, fewer than k={k}: using k={len(colors)}, lossless")
        palette, color_labels, sq_dist = colors, np.arange(len(colors)), np.zeros(len(colors))
    else:
        # int32, not intp: at 48 MP (4.5 M colours) each (M,) array held through the fit and the labelling is
        # 18 MB less, and the guess below is made in its place rather than beside it.
        clusters = (np.full(len(colors), -1, dtype=np.int32) if kmeans.takes_guess(*colors.shape, k) else None)
        more: list | None = None if others is None else []
        centroids = kmeans.fit(colors, counts, k, seed=seed, max_iter=max_iter, tol=tol, progress=progress,
                               clusters=clusters, others=more, stand_in=stand_in)
        if len(colors) >= _GIVE_BACK_FROM:
            _give_back_freed()
        opaque = colors.shape[1] == 4 and bool(colors[:, 3].max() == 255)
        hidden = colors.shape[1] == 4 and bool(colors[:, 3].min() == 0)
        palette, entry = _rounded(centroids, k, opaque=opaque, hidden=hidden, quiet=quiet)
        if more:
            others.extend((_rounded(c, k, opaque=opaque, hidden=hidden, quiet=True)[0], excess)
                          for c, excess in more)
        # Each colour's cluster, as its palette entry, is a near guess of its nearest entry.
        guess = None
        if clusters is not None and clusters.min() >= 0:
            guess, entry = clusters, entry.astype(np.int32)
            for start in range(0, len(guess), _CHUNK):
                guess[start:start + _CHUNK] = entry[guess[start:start + _CHUNK]]
        del clusters
        color_labels, sq_dist = kmeans.nearest(colors, palette, guess)
    palette, color_labels = _by_share(palette, color_labels, counts)
    # Integer sums (exact; numpy hands float dot products to multi-threaded BLAS, a cost under -j N).
    distortion = int(np.dot(np.asarray(sq_dist).astype(np.int64), counts)) / int(counts.sum())
    return palette, color_labels, distortion


# Distinct colours from which the memory freed by the fit (and by the labelling) is handed back to the system
# before the next (M,) and per-pixel arrays are made (`_give_back_freed`).
_GIVE_BACK_FROM = 1 << 21
# ... and pixels from which it is handed back before their labels are spread, whatever the colours: the
# labels and their encoding (bitpack at 10 bits: ~370 MB of temporaries at 48 MP) are fresh mappings on top.
_GIVE_BACK_PIXELS = 1 << 25


def _give_back_freed() -> None:
    """Return the pages of the blocks malloc holds freed to the system (glibc's malloc_trim; elsewhere nothing).
    `kmq compress` has malloc keep freed blocks of up to 32 MB for reuse (kmq.__main__), and a fit over
    millions of colours frees ~200 MB of them in the middle of its heap, which no later array reuses: the
    colours' nearest entries and the pixels' labels (96 MB at 48 MP) then came on top, a 48 MP noisy photo
    (4.5 M colours) at K = 256 peaking at 570 or at 665 MB from run to run."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, looked up once; None where the C library has none (macOS, musl) or cannot be
    loaded (Windows: CDLL(None) is a TypeError)."""
    import ctypes

    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None


# An RGBA entry whose alpha rounds to this or more is stored opaque (255): under 1 % see-through.
OPAQUE_FROM = kmeans.OPAQUE_FROM
# ... and, where no entry has alpha 0, the entry nearest (0, 0, 0, 0) (what pixels of alpha 0 are read as, so the
# one they take) gets alpha 0 if its alpha rounds to this or less: under 1 % seen.
HIDDEN_TO = 2


def _rounded(centroids: np.ndarray, k: int, *, opaque: bool = False, hidden: bool = False,
             quiet: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The palette of the centroids: rounded to uint8, coinciding ones merged (with a KmqWarning), sorted; and
    each centroid's entry in it.
    opaque: the image has opaque (alpha 255) pixels, which an entry of alpha OPAQUE_FROM or more is then made.
    hidden: the image has pixels of alpha 0; where no entry has alpha 0, the one nearest (0, 0, 0, 0) is then
    given it if its alpha is HIDDEN_TO or less.
    quiet: no warning (a palette only weighed, not stored)."""
    rounded = np.clip(np.rint(centroids), 0, 255)
    # A transparent background's centroid takes in a few faint rim pixels and rounds to alpha 1 or 2 (icons at
    # K = 16-32: 22 of 24 images at K = 16): the background decoded faintly visible, and a GIF, whose one
    # transparent colour is the entry of alpha 0, got none. One entry only: snapping every faint one merged
    # the faint rim entries of K = 256 files (J +9-49 %). Only its alpha is set, so J moves by a few units of
    # alpha squared for the rim pixels of that entry.
    if rounded.shape[1] == 4 and hidden and not (rounded[:, 3] == 0).any():
        background = int(np.argmin((rounded ** 2).sum(axis=1)))
        if rounded[background, 3] <= HIDDEN_TO:
            rounded[background, 3] = 0
    # Only where there are opaque pixels for the rim to pull down: an image all of alpha 254 keeps its 254.
    if rounded.shape[1] == 4 and opaque:
        # An opaque region's centroid takes in a few rim pixels of lower alpha and rounds to 253 or 254: its
        # pixels, ~97 % of them opaque in the cut-outs measured, decoded see-through. 255 keeps opaque pixels
        # opaque for J +0.15 % at most there (K = 8..256), +0.25 % on a feathered cut-out, and +3.8 % of a J
        # near zero (0.24, K = 256) on an anti-aliased logo: a price in J, paid for exact opacity.
        rounded[:, 3] = np.where(rounded[:, 3] >= OPAQUE_FROM, 255, rounded[:, 3])
    palette, entry = np.unique(rounded.astype(np.uint8), axis=0, return_inverse=True)
    if len(palette) < k and not quiet:
        merged = "1 centroid" if k - len(palette) == 1 else f"{k - len(palette)} centroids"
        warn(f"{merged} rounded to the same colour as another: using k={len(palette)}")
    return palette, entry.reshape(-1)


def _by_share(palette: np.ndarray, color_labels: np.ndarray,
              counts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Order palette entries by decreasing pixel count, ties by colour, and relabel to match.

    color_labels: one label per distinct colour, each counts[i] pixels; counts None: one label per pixel, and
    the labels come back as a file holds them, uint16 (gathered as such: at 12 MP the int64 gather and its
    narrowing took 0.07-0.2 s of CPU, 0.03 s this way)."""
    if counts is None:
        # (a chunk at a time: bincount and take widen their indices to intp, 96 MB at 12 MP; counted 0.023 s
        # against 0.014, relabelled 0.018 against 0.011)
        share = np.zeros(len(palette), np.int64)
        chunks = [slice(start, start + _CHUNK) for start in range(0, len(color_labels), _CHUNK)]
        for part in chunks:
            share += np.bincount(color_labels[part], minlength=len(palette))
        order, rank = kmeans.share_order(palette, share)
        rank, labels = rank.astype(np.uint16), np.empty(len(color_labels), np.uint16)
        for part in chunks:
            np.take(rank, color_labels[part], out=labels[part])
        return palette[order], labels
    order, rank = kmeans.share_order(palette, np.bincount(color_labels, weights=counts, minlength=len(palette)))
    return palette[order], rank[color_labels].astype(color_labels.dtype, copy=False)


_CHUNK = 1 << 18  # labels at a time (_by_share's per-pixel ones; quantize_colors' guesses, made in place)


def _as_pixels(image: np.ndarray | Image.Image | ImageSource, max_pixels: int, padded: bool = False,
               on_rows: Any = None) -> np.ndarray:
    """Any accepted image input -> (height, width, channels) uint8 with channels 1, 3 or 4 (padded, on_rows:
    see load_image)."""
    image = _source(image, "an image")
    if isinstance(image, KmqImage):
        if image.width * image.height > max_pixels:
            raise KmqError(f"{image.width}x{image.height} pixels exceed the limit of {max_pixels}")
        image = image.decode()  # quantized again, as `kmq compress x.kmq` does
    if isinstance(image, Image.Image):
        if 0 in image.size:
            raise ValueError(f"the image is empty: {image.width}x{image.height}")
        if image.width * image.height > max_pixels:
            raise KmqError(f"{image.width}x{image.height} pixels exceed the limit of {max_pixels}")
        pixels = from_pillow(image)
    elif isinstance(image, np.ndarray):
        pixels = np.asarray(image)  # a subclass (np.matrix) indexes otherwise
        if pixels.dtype != np.uint8:
            hint = " (values 0..1: (a * 255).round().astype(np.uint8))" if pixels.dtype.kind == "f" else ""
            raise ValueError(f"pixel arrays must be uint8, got {pixels.dtype}{hint}")
        if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (1, 3, 4)):
            raise ValueError(f"pixel arrays must be (h, w) or (h, w, 1|3|4), got {pixels.shape}")
        if 0 in pixels.shape[:2]:
            raise ValueError(f"the image is empty: {pixels.shape}")
        if pixels.shape[0] * pixels.shape[1] > max_pixels:
            raise KmqError(f"{pixels.shape[1]}x{pixels.shape[0]} pixels exceed the limit of {max_pixels}")
        if pixels.ndim == 3 and pixels.shape[2] == 4:
            pixels = drop_alpha(pixels) if opaque(pixels) else clear_transparent(pixels)
    elif isinstance(image, (str, Path, bytes, bytearray, memoryview)) or hasattr(image, "read"):
        _warn_if_misnamed(image)
        if isinstance(image, (bytearray, memoryview)):
            image = bytes(image)
        elif isinstance(image, (str, Path)) and str(image) == STDIO:
            image = stdin()
        pixels = load_image(image, max_pixels=max_pixels, padded=padded, on_rows=on_rows)
    else:
        raise TypeError(f"an image is a path, a file object, bytes, a uint8 numpy array, a Pillow image or a "
                        f"KmqImage; got {type(image).__name__}")
    return pixels.reshape(pixels.shape[0], pixels.shape[1], -1)


def read(source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO, *,
         max_pixels: int = DEFAULT_MAX_PIXELS) -> KmqImage:
    """Read and validate a .kmq file: a path ("-": stdin), the file's bytes, or a binary file object read from
    its current position. Raises KmqError (FormatError for a malformed file).

    Example:
        >>> import io, numpy as np, kmq
        >>> data = kmq.compress(np.zeros((2, 3, 3), np.uint8), k=1).to_bytes()
        >>> kmq.read(data).k, kmq.read(io.BytesIO(data)).width  # or kmq.read("photo.kmq")
        (1, 3)
    """
    check_max_pixels(max_pixels)
    source = _source(source, "a .kmq file")
    if isinstance(source, (bytes, bytearray, memoryview)):
        with naming(source_name(source)):
            return KmqImage.from_bytes(source, max_pixels=max_pixels)
    if isinstance(source, (str, Path)):
        with reading(source) as f, naming(source):
            return KmqImage.from_bytes(read_kmq(f, max_pixels=max_pixels), max_pixels=max_pixels)
    if not callable(getattr(source, "read", None)):
        raise TypeError(f"read takes a path, a .kmq file's bytes or a binary file object, got "
                        f"{type(source).__name__}")
    with naming(source_name(source)):
        return KmqImage.from_bytes(read_kmq(source, max_pixels=max_pixels), max_pixels=max_pixels)


def load(source: Source, *, max_pixels: int = DEFAULT_MAX_PIXELS,
         name: str | None = None) -> tuple[KmqImage | np.ndarray, int]:
    """Either kind of input, told apart by its first bytes (not its name), and its size in bytes.

    A .kmq file gives a validated KmqImage; any other file is read as an image: (h, w) or (h, w, 3|4) uint8.
    The source is anything kmq.compress and kmq.read take but arrays and images: a path ("-": stdin), bytes, a
    bytearray, a memoryview or a binary file object, read from its current position. A file named *.kmq is held
    to be one, so a damaged one is reported as such (FormatError), not as "not an image", unless it starts as an
    image does (a PNG renamed): that is read as an image, with a KmqWarning. A .kmq that is no path is named
    `name` in its errors (default input_name(source)); an image's errors are load_image's.

    Example:
        >>> import io, numpy as np, kmq
        >>> from PIL import Image
        >>> png = io.BytesIO()
        >>> Image.fromarray(np.zeros((2, 3), np.uint8)).save(png, "PNG")
        >>> pixels, size = kmq.api.load(png.getvalue())  # or kmq.api.load("photo.png")
        >>> pixels.shape, size
        ((2, 3), 68)
        >>> kmq.api.load(kmq.compress(pixels, k=1).to_bytes())[0].k  # a .kmq: its KmqImage
        1
    """
    if not isinstance(source, (str, os.PathLike)):
        return _load_unnamed(source, input_name(source) if name is None else name, max_pixels)
    check_max_pixels(max_pixels)
    with open_input(source) as f:
        head = f.read(len(MAGIC))
        if head == MAGIC or (str(source) != STDIO and Path(source).suffix.lower() == ".kmq"
                             and not _misnamed(source, head + f.peek(12)[:12 - len(head)])):
            with naming(source):
                data = read_kmq(f, max_pixels=max_pixels, head=head)
                return KmqImage.from_bytes(data, max_pixels=max_pixels), len(data)
        info = None if str(source) == STDIO else os.fstat(f.fileno())
        if info is not None and not stat.S_ISFIFO(info.st_mode):
            # Pillow names the file in its errors, and reads only what it needs: /dev/zero is refused at once.
            return load_image(source, max_pixels=max_pixels), info.st_size
        # stdin and pipes (<(...), mkfifo) are read once: opened again, they hold what is left or nothing
        data = head + f.read()
    named = io.BytesIO(data)
    named.name = "<stdin>" if str(source) == STDIO else str(source)  # what load_image's messages call it
    return load_image(named, max_pixels=max_pixels), len(data)


def _load_unnamed(source: bytes | bytearray | memoryview | BinaryIO, name: str,
                  max_pixels: int) -> tuple[KmqImage | np.ndarray, int]:
    """load() of a source that is no path: bytes or a binary file object."""
    check_max_pixels(max_pixels)
    data = contents(source)
    # (a raw pipe's read(4) may return fewer: a .kmq whose first bytes came late was read as an image)
    head = data[:len(MAGIC)] if isinstance(data, bytes) else bytes(read_up_to(data, len(MAGIC)))
    if head == MAGIC:
        with naming(name):
            # A stream bounded by the header's declared sizes, as a path is: an endless one cannot fill memory.
            data = data if isinstance(data, bytes) else read_kmq(data, max_pixels=max_pixels, head=head)
            return KmqImage.from_bytes(data, max_pixels=max_pixels), len(data)
    whole = data if isinstance(data, bytes) else head + data.read()
    named = io.BytesIO(whole)
    named.name = source_name(source)  # what load_image's messages call it
    return load_image(named, max_pixels=max_pixels), len(whole)


def input_name(source: Source) -> str:
    """What records, warnings and errors call an input: its path, as kmq.compress names the others ("<bytes>",
    "<stdin>", a file object's name, else "<stream>")."""
    return str(source) if isinstance(source, os.PathLike) else source_name(source)


def contents(source: Source, what: str = "an image") -> bytes | BinaryIO:
    """A source that is no path as kmq.read takes it: bytes (a bytearray or memoryview copied, as kmq.compress
    does), parsed whole, or a binary file object, read from its position. A text-mode file is a TypeError in
    kmq.compress's words for `what` (kmq.read's: "a .kmq file")."""
    source = _source(source, what)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, io.BytesIO):
        # In memory already: parsed whole, as bytes are, so a .kmq's trailing bytes are counted ("got 68", not
        # "got more") as before for a bulk run's stdin, which kmq.batch hands over as one.
        return source.read()
    if callable(getattr(source, "read", None)):
        return source
    raise TypeError(f"{what} is a path, bytes or a binary file object; got {type(source).__name__}")


def _warn_if_misnamed(source: ImageSource) -> None:
    """compress reads a .kmq as Pillow does (through kmq's plugin) and any other image by its content: an
    image named *.kmq is warned about as every other command warns (load). Regular files only: a pipe's first
    bytes cannot be read twice."""
    if not isinstance(source, (str, Path)) or str(source) == STDIO or Path(source).suffix.lower() != ".kmq":
        return
    try:
        if not stat.S_ISREG(os.stat(source).st_mode):
            return
        with open(source, "rb") as f:
            _misnamed(source, f.read(12))
    except OSError:
        return  # reading the image says why


def _misnamed(source: str | Path, head: bytes) -> bool:
    """An image named *.kmq (kmq info suggests reading it with stats or palette): warned, and read as one."""
    fmt = image_format(head)
    if fmt is not None:
        warn(f"{source}: named .kmq but a {fmt} image; read as an image")
    return fmt is not None


def export(img: KmqImage, path: str | Path | BinaryIO, *, format: str | None = None, overwrite: bool = False,
           truecolor: bool = False) -> str:
    """Write img's pixels as an image file, atomically ("-" for stdout). Returns the Pillow format used.

    format: a Pillow format name; by default the one path's extension names (PNG for stdout). Given, and the
    extension names another format, a KmqWarning says so (the file is written as format). With K <= 256 a
    PNG or GIF is written as a palette image (the same pixels, about half the bytes) unless truecolor: its
    entries by luminance (fewer bytes), or, for an image made on a given palette (metadata "palette_source"),
    in that palette's order, every entry kept: index i is entry i of the user's palette file.
    Refuses to replace an existing file unless overwrite is true (KmqError).
    path may also be a binary file object (io.BytesIO, a file opened "wb"): the image, in format, else the
    one its name's extension names (an open file's), else PNG, is encoded whole first, then written to it at
    its position (nothing written on a failure).

    Example:
        >>> import io, numpy as np, kmq
        >>> img = kmq.compress(np.zeros((2, 3, 3), np.uint8), k=1)
        >>> buffer = io.BytesIO()  # or a path: kmq.export(img, "photo.kmq.png")
        >>> kmq.export(img, buffer), buffer.getvalue()[1:4]
        ('PNG', b'PNG')
    """
    _check_image(img)
    writer = _writer(path)
    img.validate()  # its fields may have been replaced or edited since it was made
    if writer is not None:
        name = getattr(writer, "name", None)
        named = isinstance(name, str) and Path(name).suffix != ""
        fmt = writable_format(format) if format else format_for(name) if named else "PNG"
        encoded = io.BytesIO()
        save_quantized(img.palette, img.labels, encoded, format=fmt, truecolor=truecolor,
                       name=name if isinstance(name, str) else "the file object", in_order=_given(img))
        _write_all(writer, encoded.getbuffer())
        return fmt
    path = _target(path)
    fmt = writable_format(format) if format else ("PNG" if str(path) == STDIO else format_for(path))
    name = "<stdout>" if str(path) == STDIO else str(path)
    if format and str(path) != STDIO:
        check_writable(path, overwrite=overwrite)  # a refusal first: no warning about a file that is not written
        warn_extension_mismatch(path, fmt)  # before the file: a filter set to "error" stops it unwritten
    write_atomic(path, lambda f: save_quantized(img.palette, img.labels, f, format=fmt, truecolor=truecolor,
                                                name=name, in_order=_given(img)), overwrite=overwrite)
    return fmt


def _given(img: KmqImage) -> bool:
    # A game's engine or a palette-swap shader reads a palette PNG's indices: made on the user's palette, they
    # are its entries' (round 47's game-developer trial found them sorted by luminance, a given order lost).
    return "palette_source" in img.metadata


def write(path: str | Path | BinaryIO, img: KmqImage, *, overwrite: bool = False) -> int:
    """Write img to path atomically (a temporary file, then a rename; "-" writes to stdout). Returns the
    bytes written (img.to_bytes() gives them without a file). path may also be a binary file object: the
    file's bytes are written to it at its position.

    Raises KmqError for an existing file (unless overwrite is true) or a failed write, leaving no file;
    ValueError for fields of img that no longer make a valid file; TypeError for a path that is not one.

    Example:
        >>> import io, numpy as np, kmq
        >>> img = kmq.compress(np.zeros((2, 3, 3), np.uint8), k=1)
        >>> buffer = io.BytesIO()  # or a path: kmq.write("photo.kmq", img)
        >>> kmq.write(buffer, img) == len(buffer.getvalue()) == len(img.to_bytes())
        True
    """
    _check_image(img)
    writer = _writer(path)
    if writer is not None:
        data = img.to_bytes()
        _write_all(writer, data)
        return len(data)
    path = _target(path)
    data = img.to_bytes()
    write_atomic(path, data, overwrite=overwrite)
    return len(data)


def _source(source: Any, what: str) -> Any:
    """A path-like source as a Path; a text-mode file refused with what to do (its str lines are no image)."""
    if isinstance(source, os.PathLike) and not isinstance(source, Path):
        return Path(os.fspath(source))  # e.g. py.path.local, which also has a read() of text
    if isinstance(source, io.TextIOBase):
        raise TypeError(f"{what} is read as bytes: open the file in binary mode ('rb'), or use sys.stdin.buffer")
    if isinstance(source, str) and not source:
        raise ValueError("the path is empty")
    return source


def _writer(path: Any) -> BinaryIO | None:
    """path if it is a file object to write to (not a path), refusing a text-mode one; else None."""
    if isinstance(path, (str, bytes, os.PathLike)) or not callable(getattr(path, "write", None)):
        return None
    if isinstance(path, io.TextIOBase):
        raise TypeError("the file object is written as bytes: open it in binary mode ('wb'), or use "
                        "sys.stdout.buffer")
    return path


def _write_all(writer: BinaryIO, data: Any) -> None:
    """Every byte of data: a raw (unbuffered) file object may take fewer than it is given per call."""
    view = memoryview(data)
    while len(view):
        done = writer.write(view)
        if done is None or done >= len(view):  # (None: a buffered or custom writer that says nothing)
            return
        if done <= 0:  # (a non-blocking raw object that is full: the loop would never end)
            raise OSError(f"the file object took {done} of {len(view)} bytes left to write")
        view = view[done:]


def _target(path: Any) -> str | Path:
    """A path to write to (str or os.PathLike; "-" for stdout), as a str or Path."""
    if isinstance(path, os.PathLike):
        return Path(os.fspath(path))
    if not isinstance(path, str):
        raise TypeError(f"path must be a str, an os.PathLike ('-' for stdout) or a binary file object, got "
                        f"{type(path).__name__}; img.to_bytes() gives a .kmq file's bytes")
    if not path:
        raise ValueError("the path is empty")
    return path


def _check_image(img: Any) -> None:
    if not isinstance(img, KmqImage):
        raise TypeError(f"img must be a KmqImage (kmq.compress or kmq.read make one), got {type(img).__name__}")
