"""One palette for many images: K-Means over the pooled distinct colours of a set of files.

Each file is read (in worker processes, by kmq.batch) down to its distinct colours and their pixel counts;
these are merged as they arrive into one sorted table of colours and counts, so memory follows the number of
distinct colours in the set (at most 2^24 for RGB), never the number of images. K-Means over that table,
each colour weighted by its count, is exactly K-Means over all the pixels of all the files: the same fit as
over the files stitched into one image, at the cost of reading them.
"""
from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from . import kmeans
from .api import load, quantize_colors
from .errors import KmqError, KmqWarning, counted
from .format import DEFAULT_MAX_PIXELS, KmqImage
from .palettes import convert

if TYPE_CHECKING:
    from .batch import Job, Result

KMQ_SUFFIX = ".kmq"


@dataclass
class SharedPalette:
    """The palette fitted over a set: palette (k, C) uint8 in decreasing share; shares (k,) summing to 1;
    distortion: J over all the pixels of all the files; files, pixels and colours (distinct) pooled."""
    palette: np.ndarray
    shares: np.ndarray
    distortion: float
    files: int
    pixels: int
    colours: int


def plan(inputs: Sequence[str | Path]) -> list[Job]:
    """Read-only jobs for every image and .kmq among inputs (folders searched as in bulk runs)."""
    from . import batch

    suffixes = batch.image_suffixes() | {KMQ_SUFFIX}
    # kind: folders holding nothing to pool are an error, as for stats, not a warning before one
    jobs = batch.plan_read(inputs, lambda p: p.suffix.lower() in suffixes, kind="images or .kmq files")
    _warn_copies(jobs)
    _warn_masks(jobs)
    return jobs


# What `kmq segment --masks` names its masks: <stem>-cluster-<i>.png.
_MASK_NAME = re.compile(r".+-cluster-\d+\.png")


def _warn_masks(jobs: list[Job]) -> None:
    """A series' masks, written into the folder it was read from (segment d/ --masks d/m/), are pooled by a
    later fit over d/ as images: black and white took 76 % of a 6-colour palette in a trial. Said once, not
    skipped: the names are all there is to go by."""
    masks = [Path(j.source) for j in jobs if _MASK_NAME.fullmatch(Path(j.source).name)]
    if masks:
        which = (f"1 file pooled has the name of a kmq segment mask ({masks[0]})" if len(masks) == 1 else
                 f"{counted(len(masks), 'file')} pooled have the names of kmq segment's masks (first: {masks[0]})")
        warnings.warn(f"{which}, <stem>-cluster-<i>.png: if they are masks, give the images only", KmqWarning,
                      stacklevel=3)


def _warn_copies(jobs: list[Job]) -> None:
    """`kmq compress slides/` leaves x.kmq beside x.png, and a later fit over slides/ would pool both: each
    image twice, once quantized. Said, not skipped: the user may mean it."""
    images = {(p.parent, p.stem): p for p in (Path(j.source) for j in jobs) if p.suffix.lower() != KMQ_SUFFIX}
    for job in jobs:
        path = Path(job.source)
        twin = images.get((path.parent, path.stem)) if path.suffix.lower() == KMQ_SUFFIX else None
        if twin is not None:
            warnings.warn(f"{path}: pooled as well as {twin.name}, of which it looks like the compressed "
                          f"copy; give only one of them to count those pixels once", KmqWarning, stacklevel=3)


def colours_of(source: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    """{"colors": (M, C) uint8 ascending, "counts": (M,) int64} of an image file, or of a .kmq file's decoded
    pixels (its palette entries by label count). An RGBA image opaque everywhere gives RGB colours."""
    loaded, _ = load(source, max_pixels=max_pixels)
    if isinstance(loaded, KmqImage):
        counts = np.bincount(loaded.labels.ravel(), minlength=loaded.k)
        used = counts > 0
        colors, counts = _merge([(loaded.palette[used], counts[used].astype(np.int64))])
    else:
        pixels = loaded.reshape(loaded.shape[0] * loaded.shape[1], -1)
        distinct = kmeans.distinct(pixels)
        colors, counts = distinct.colors, distinct.counts
    if colors.shape[1] == 4 and np.all(colors[:, 3] == 255):
        colors = np.ascontiguousarray(colors[:, :3])
    return {"colors": colors, "counts": counts}


class Pool:
    """The distinct colours of many files, merged as they are added: per layout (grey, RGB, RGBA) a sorted
    table of colours and pixel counts. `colours()` brings them to the widest layout present."""

    def __init__(self) -> None:
        self._tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.files = 0

    def add(self, colors: np.ndarray, counts: np.ndarray) -> None:
        channels = colors.shape[1]
        have = self._tables.get(channels)
        # colours_of gives each file's colours ascending and distinct, as a merge would.
        self._tables[channels] = (colors, counts) if have is None else _merge([have, (colors, counts)])
        self.files += 1

    def colours(self) -> tuple[np.ndarray, np.ndarray]:
        """(colors (M, C) uint8 ascending, counts (M,) int64) of everything added, in one layout."""
        if not self._tables:
            raise KmqError("no images or .kmq files among the inputs; no palette written")
        channels = max(self._tables)
        return _merge([(convert(c, channels), n) for c, n in self._tables.values()])


def _merge(tables: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Colour tables of one layout ((M_i, C) uint8, (M_i,) counts) -> one table: ascending distinct colours,
    each with the sum of its counts. Each input sorted, a stable sort merges them in linear time."""
    channels = tables[0][0].shape[1]
    keys = np.concatenate([kmeans._pack(np.ascontiguousarray(c)) for c, _ in tables])
    counts = np.concatenate([n for _, n in tables]).astype(np.int64, copy=False)
    order = np.argsort(keys, kind="stable")
    keys, counts = keys[order], counts[order]
    first = np.empty(len(keys), dtype=bool)
    first[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return kmeans._unpack(keys[starts], channels), np.add.reduceat(counts, starts)


def fit(jobs: Sequence[Job], k: int, *, seed: int = 0, max_iter: int = 300, tol: float = 1e-4,
        max_pixels: int = DEFAULT_MAX_PIXELS, workers: int | None = None,
        on_read: Callable[[Result], None] | None = None,
        before_fit: Callable[[np.ndarray], None] | None = None) -> SharedPalette:
    """K-Means (as kmq.compress: k-means++ from `seed`, entries in decreasing share) over all the pixels of
    the jobs' files, read on `workers` processes (None: one per core).

    on_read(result) is called as each file is read (for progress; its error and warnings are then the
    caller's to report, else they are raised and re-warned here). Any file that cannot be read fails the
    whole fit: KmqError, and no palette. before_fit(colours) may refuse the pooled colours (a KmqError)
    before the K-Means: an output that cannot hold them says so without waiting for the fit.
    """
    from . import batch

    pool = Pool()
    failed: list[str] = []
    task = batch.ReadTask(functools.partial(colours_of, max_pixels=max_pixels))
    for result in batch.run(jobs, task, workers):
        if on_read is not None:
            on_read(result)
        else:
            for message in result.warnings:
                warnings.warn(message, KmqWarning, stacklevel=2)
        if result.error:
            failed.append(result.error)
        elif result.record is not None:
            pool.add(result.record["colors"], result.record["counts"])
    if failed:
        first = "" if on_read is not None else f" ({failed[0]})"
        raise KmqError(f"{len(failed)} of {len(jobs)} inputs could not be read{first}; no palette written")
    colors, counts = pool.colours()
    if before_fit is not None:
        before_fit(colors)
    palette, color_labels, distortion = quantize_colors(colors, counts, k, seed=seed, max_iter=max_iter,
                                                        tol=tol, what="the images have")
    shares = np.bincount(color_labels, weights=counts, minlength=len(palette)) / counts.sum()
    return SharedPalette(palette, shares, distortion, pool.files, int(counts.sum()), len(colors))
