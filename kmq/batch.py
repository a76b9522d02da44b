"""Many files at once: plan which inputs go where, run them in worker processes, summarise.

`plan_compress` / `plan_decompress` / `plan_segment` turn files and folders into Jobs (input -> output path);
`run` executes a task on every Job and yields one Result per Job as each finishes; `summarize` totals them. A
failure is a Result with an error, never an exception, so one bad file never stops the others. Nothing here
prints.

Folder rules (documented in the README):
- a folder contributes, recursively, the files whose extension Pillow reads (compress) or `.kmq`
  (decompress); hidden files and folders (names starting with ".") are skipped and links to folders are
  not followed; inputs that are all folders without such a file are an error (nothing to do), an empty
  folder among other inputs a warning;
- with an output folder, each output keeps its path relative to the folder given (or just its name, for a
  file given directly), so `a/x.png` and `b/x.png` under one folder stay apart; without one, each output
  goes beside its input;
- inputs that are one file (`x.png ./x.png`, or a folder and a file in it) are planned once, where first met;
  two inputs that would write the same output (`x.png` and `x.jpg`) both stay in the plan, the second as a
  failure that names the first;
- stdin ("-") may be the only input; its output is named as if it were "stdin" (stdin.kmq, stdin.kmq.png).
"""
from __future__ import annotations

import functools
import io
import math
import os
import re
import signal
import stat
import threading
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Generator, Iterable, Iterator, Sequence

from PIL import Image

from . import parallel, segment
from .api import compress, compress_to, export, read, write
from .errors import KmqError, KmqWarning, about, counted, exists, naming, out_of_memory
from .fileio import (ENDING_SIGNALS, STDIN_ALONE, STDIO, STDOUT_NOT_BULK, check_distinct, check_writable,
                     ignore_signal, read_bytes, reason, write_atomic, written_before)
from .format import DEFAULT_MAX_PIXELS, KmqImage, told_if_image
from .imageio import KMQ_FORMAT, suffix_for
from .palettes import Palette
from .stats import label_counts, record

KMQ_SUFFIX = ".kmq"
# What stdin ("-") is called when its output needs a name: stdin.kmq, stdin.kmq.png.
STDIN_NAME = "stdin"
# The keys of `summarize`, and of each entry of its "results" (Result.as_dict), in order.
SUMMARY_FIELDS = ("files", "succeeded", "failed", "bytes_before", "bytes_after", "mean_ratio", "mean_psnr",
                  "skipped")
RESULT_FIELDS = ("input", "output", "ok", "error", "bytes_before", "bytes_after", "k", "ratio", "psnr",
                 "seconds", "rdo", "codec")
# After a task's EXTRA_FIELDS, which came first: keys are only ever added at the end.
LATE_RESULT_FIELDS = ("skipped",)


def image_suffixes() -> frozenset[str]:
    """The file extensions (lower case, with the dot) of every format this Pillow can open."""
    Image.init()
    # Not .kmq, though Pillow opens it since `import kmq`: a folder's .kmq files are outputs, not inputs.
    return frozenset(ext for ext, fmt in Image.registered_extensions().items()
                     if fmt in Image.OPEN and fmt != KMQ_FORMAT)


@dataclass(frozen=True)
class Job:
    """One input file and the output it should become. size: the input's bytes (0 if it cannot be read).
    problem: why it must fail without running (e.g. another input already claims its output); data: stdin's
    bytes once a CompressTask has read them (its size is unknown until then)."""
    index: int
    source: Path
    target: Path
    size: int
    problem: str | None = None
    data: bytes | None = field(default=None, repr=False, compare=False)
    masks: Path | None = None  # segment --masks: FOLDER/STEM, for FOLDER/STEM-cluster-<i>.png


@dataclass
class Result:
    """What became of a Job. record: the stats record (kmq.stats.FIELDS) of the quantized image (for a
    ReadTask, what its read returned), or None if it failed; error: "<input>: <reason>" when it failed;
    warnings: messages raised along the way."""
    job: Job
    error: str | None = None
    bytes_after: int = 0
    record: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: bool = False  # --skip-existing found its output(s) there: nothing done, nothing failed

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self, extra: Sequence[str] = ()) -> dict[str, Any]:
        """Keys RESULT_FIELDS, extra (a task's EXTRA_FIELDS: None for a failure or a skip), then
        LATE_RESULT_FIELDS; k, ratio and psnr are
        None for a failure, psnr also for a lossless file; rdo is the strength a compressed file used (--rdo,
        or a target's choice), else None; codec the file's payload codec (a target may choose it), None for a
        failure."""
        r = self.record or {}
        psnr = r.get("psnr")
        return {"input": str(self.job.source), "output": str(self.job.target), "ok": self.ok,
                "error": self.error, "bytes_before": self.job.size, "bytes_after": self.bytes_after,
                "k": r.get("k"), "ratio": r.get("ratio"),
                "psnr": None if psnr is None or math.isinf(psnr) else psnr, "seconds": self.seconds,
                "rdo": r.get("rdo"), "codec": r.get("codec"), **{key: r.get(key) for key in extra},
                **dict(zip(LATE_RESULT_FIELDS, [self.skipped]))}


# api's warning that an image has fewer distinct colours than k (so it is stored exactly, at a smaller K): normal
# for pixel art, where round 47's game-developer trial saw 64 of them over 154 sprites drown the run's other
# lines; a bulk run says them in one line (fewer_colours_lines).
_FEWER_COLOURS = re.compile(r": the image has only ([\d,]+) distinct colours?, fewer than k=(\d+): using k=[\d,]+, "
                            r"lossless$")


def fewer_colours(warning: str) -> tuple[int, int] | None:
    """(the image's distinct colours, the k asked) if warning says the image has fewer colours than k."""
    match = _FEWER_COLOURS.search(warning)
    return None if match is None else (int(match.group(1).replace(",", "")), int(match.group(2)))


def fewer_colours_lines(held: list[tuple[Job, str]], files: int) -> list[str]:
    """The warnings held back by fewer_colours ((job, warning) each), said once per k: one file's as it was,
    several as one line counting them and naming the first in input order."""
    by_k: dict[int, list[tuple[Job, str, int]]] = {}
    for job, warning in sorted(held, key=lambda h: h[0].index):
        colours, k = fewer_colours(warning)  # type: ignore[misc]
        by_k.setdefault(k, []).append((job, warning, colours))
    lines = []
    for k, group in by_k.items():
        job, warning, colours = group[0]
        lines.append(warning if len(group) == 1 else
                     f"{len(group):,} of {files:,} files have fewer distinct colours than k={k}: each stored "
                     f"exactly, with its own smaller K (first: {job.source}, {counted(colours, 'colour')})")
    return lines


# Images a folder of photos or art often holds that this Pillow may not read (HEIF without a plug-in, camera
# raw, Photoshop's, vector, HDR): left out with a word. Other files (notes, sidecars, a folder's .kmq
# outputs) are left out without one.
_UNREAD_IMAGES = frozenset((".heic", ".heif", ".avif", ".jxl", ".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw",
                            ".orf", ".rw2", ".raf", ".srw", ".pef", ".raw", ".3fr", ".erf", ".kdc", ".mos",
                            ".x3f", ".svg", ".svgz", ".exr", ".hdr", ".kra", ".xcf", ".ai", ".cdr"))


def plan_compress(inputs: Sequence[str | Path], output: str | Path | None = None) -> list[Job]:
    """Jobs compressing every image among inputs (files, and folders searched recursively) to .kmq."""
    suffixes = image_suffixes()
    passed: list[Path] = []

    def wanted(path: Path) -> bool:
        suffix = path.suffix.lower()
        if suffix in _UNREAD_IMAGES and suffix not in suffixes:
            passed.append(path)
        return suffix in suffixes

    try:
        return plan(inputs, output, wanted=wanted, rename=lambda p: p.with_suffix(KMQ_SUFFIX),
                    stdin_name=STDIN_NAME, kind="images")
    finally:  # (a folder of nothing else is "no images found": said before that error too)
        if passed:
            _left_out(passed)


def _left_out(passed: list[Path]) -> None:
    # A phone's .heic or a camera's raw files left out of an archive without a word looked like a finished
    # run (round 47's archive trial: "Files 1 of 1" in a folder of 5).
    if len(passed) == 1:
        message = f"{passed[0]}: left out, Pillow cannot read {passed[0].suffix.lower()} images here"
    else:
        kinds = Counter(path.suffix.lower() for path in passed)
        more = ", ..." if len(kinds) > 5 else ""
        message = (f"left out {len(passed)} image files of types Pillow cannot read "
                   f"({', '.join(f'{suffix} {n}' for suffix, n in kinds.most_common(5))}{more}), the first "
                   f"{passed[0]}")
    warnings.warn(message, KmqWarning, stacklevel=3)


def sparing(jobs: list[Job], read: str | Path | None, what: str, skip_existing: bool = False) -> list[Job]:
    """jobs, failing those whose output would replace ``read``, another file the run reads (``what``, e.g. the
    --palette file: a .kmq whose palette every job maps onto), even with -f; with skip_existing they are left
    for the task to skip (a series re-run whose palette is one of its own .kmq files)."""
    if read is None or str(read) == STDIO or skip_existing:
        return jobs
    real = os.path.realpath(read)
    return [replace(job, problem=f"{job.target} is {what} of this run; choose another -o")
            if job.problem is None and os.path.realpath(job.target) == real else job for job in jobs]


def plan_decompress(inputs: Sequence[str | Path], output: str | Path | None = None,
                    fmt: str = "PNG") -> list[Job]:
    """Jobs decoding every .kmq among inputs to an image named like the single-file default (x.kmq.png)."""
    suffix = suffix_for(fmt)
    return plan(inputs, output, wanted=lambda p: p.suffix.lower() == KMQ_SUFFIX,
                rename=lambda p: p.with_name(p.name + suffix), stdin_name=STDIN_NAME + KMQ_SUFFIX,
                kind=".kmq files")


def plan_segment(inputs: Sequence[str | Path], output: str | Path | None = None, masks: str | Path | None = None,
                 fmt: str = "PNG", *, clustered: bool = False) -> list[Job]:
    """Jobs drawing every image and .kmq among inputs: with output, the picture output/<stem>.<fmt's suffix>;
    with masks, the masks masks/<stem>-cluster-<i>.png (a file found in a folder keeps its relative folder
    under both, as in the module's folder rules). Without output, a Job's target is its masks' folder. Two
    inputs whose masks would share names (x.png and x.jpg) stay in the plan, the second as a failure; so does
    an input whose picture, or any of its masks' names (written or removed as stale), is an input of the run
    (the folder searched given as -o or --masks), even with overwrite: the run would destroy what it reads.
    A folder holding an image and a .kmq of one stem (what `kmq compress DIR` leaves) gives one of them: the
    image if clustered (-k or --palette, which apply to images only), else the .kmq (its stored labels)."""
    # By Path, which drops a trailing "/": os.path sees no "notadir/" where notadir is a file.
    if masks is not None and Path(masks).exists() and not Path(masks).is_dir():
        raise KmqError(f"cannot write masks into {masks}: it is a file, not a folder")
    suffix = suffix_for(fmt)
    root = output if output is not None else masks
    suffixes = image_suffixes() | {KMQ_SUFFIX}
    skipped: list[Path] = []
    jobs = plan(inputs, root, wanted=lambda p: p.suffix.lower() in suffixes,
                rename=lambda p: p.with_suffix(suffix) if output is not None else p.with_suffix(""),
                kind="images or .kmq files", pick=functools.partial(_one_per_stem, images=clustered,
                                                                     skipped=skipped))
    if skipped:
        what = counted(len(skipped), ".kmq file" if clustered else "image")
        why = ("-k and --palette draw the images" if clustered else
               "the .kmq is drawn, as stored; give -k or --palette to draw the images")
        warnings.warn(f"left out {what} beside {'an image' if clustered else 'a .kmq'} of the same stem (first: "
                      f"{skipped[0]}): {why}", KmqWarning, stacklevel=2)
    if output is not None:
        jobs = _without_own_pictures(jobs, inputs, Path(output))
    if masks is not None:
        jobs = _without_own_masks(jobs, inputs, root, Path(masks))
    inputs = _InputIndex(jobs)
    if output is not None:
        jobs = [inputs.picture_check(job) for job in jobs]
    if masks is None:
        return jobs
    planned: list[Job] = []
    claimed: dict[Path, Path] = {}
    for job in jobs:
        prefix = _masks_prefix(job, root, Path(masks))
        # Without pictures, plan's clash of two targets is the masks' clash, said below in their words.
        problem = job.problem if output is not None or job.problem == STDIN_ALONE else None
        if problem is None and prefix in claimed:
            problem = f"{prefix}-cluster-*.png are already the masks of {claimed[prefix]}"
        if problem is None:
            problem = inputs.masks_check(prefix)
        claimed.setdefault(prefix, job.source)
        planned.append(replace(job, target=job.target if output is not None else prefix.parent, masks=prefix,
                               problem=problem))
    if output is not None:
        # By (real folder, stem), so that each picture is looked up once: a run over thousands of files.
        owners: dict[tuple[str, str], Path] = {}
        for prefix, source in claimed.items():
            owners.setdefault((os.path.realpath(prefix.parent), prefix.name), source)
        planned = [_picture_not_a_mask(job, owners) for job in planned]
    return planned


def _masks_prefix(job: Job, root: str | Path | None, masks: Path) -> Path:
    """FOLDER/STEM of job's masks: its target's place under root, moved under masks."""
    relative = job.target.relative_to(root) if root is not None else Path(job.target.name)
    return masks / relative.with_suffix("")


def _without_own_pictures(jobs: list[Job], given: Sequence[str | Path], output: Path) -> list[Job]:
    """jobs less the files a folder search found in the output folder, when that lies inside the folder
    searched, that are the picture of another of its inputs: a second `segment DIR/ -o DIR/seen/` drew the
    first run's pictures again (into DIR/seen/seen/) and failed the inputs whose pictures they are. With -o the
    folder searched itself, nothing is skipped: there a picture's name may be a photo of the user's."""
    searched = [os.path.realpath(g) for g in given if str(g) != STDIO and os.path.isdir(g)]
    out = os.path.realpath(output) if searched else ""
    if not any(os.path.commonpath([out, folder]) == folder != out for folder in searched):
        return jobs
    named = _named_files(given)
    owner = {os.path.realpath(job.target): job.index for job in jobs if job.problem is None}
    kept = [job for job in jobs if str(job.source) == STDIO or not _own_picture(job, out, named, owner)]
    skipped = len(jobs) - len(kept)
    if skipped:
        warnings.warn(f"{output}: left out {skipped} file{'s' if skipped > 1 else ''} found there that "
                      f"{'are pictures' if skipped > 1 else 'is a picture'} this run draws of "
                      f"{'other inputs' if skipped > 1 else 'another input'}", KmqWarning, stacklevel=4)
    return kept


def _named_files(given: Sequence[str | Path]) -> set[str]:
    """The real paths of the files named on the command line (not found in a folder): they stay inputs."""
    return {os.path.realpath(g) for g in given if str(g) != STDIO and not os.path.isdir(g)}


def _own_picture(job: Job, out: str, named: set[str], owner: dict[str, int]) -> bool:
    real = os.path.realpath(job.source)
    return (real not in named and owner.get(real, job.index) != job.index
            and os.path.commonpath([real, out]) == out)


def _without_own_masks(jobs: list[Job], given: Sequence[str | Path], root: str | Path | None,
                       masks: Path) -> list[Job]:
    """jobs less the files a folder search found that are masks this run writes or removes for another of
    its inputs (--masks the folder searched, run again): drawing them would draw kmq's own masks, and their
    input's job would then fail, its masks being inputs. Files named on the command line stay (and fail
    their input's job, as any input the run would replace)."""
    named = _named_files(given)
    own = {(os.path.realpath(p.parent), p.name) for p in (_masks_prefix(job, root, masks) for job in jobs)}
    kept, skipped = [], 0
    for job in jobs:
        stem = None if str(job.source) == STDIO else segment.mask_stem(job.source.name)
        real = None if stem is None else os.path.realpath(job.source)
        if real is not None and real not in named and (os.path.dirname(real), stem) in own:
            skipped += 1
        else:
            kept.append(job)
    if skipped:
        warnings.warn(f"{masks}: left out {skipped} file{'s' if skipped > 1 else ''} found there that "
                      f"{'are' if skipped > 1 else 'is'} this run's masks of another input", KmqWarning,
                      stacklevel=4)
    return kept


class _InputIndex:
    """The files a run reads, by real path, and those of them named like a mask, by (real folder, stem): an
    output that is one of them would be replaced, or removed as a stale mask, while the run reads it."""

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.files: dict[str, Path] = {}
        self.masks: dict[tuple[str, str], Path] = {}
        for job in jobs:
            if str(job.source) == STDIO:
                continue
            real = os.path.realpath(job.source)
            self.files.setdefault(real, job.source)
            stem = segment.mask_stem(job.source.name)
            if stem is not None:
                self.masks.setdefault((os.path.dirname(real), stem), job.source)

    def picture_check(self, job: Job) -> Job:
        """job, failing if its picture would replace an input of the run (-o the folder searched)."""
        if job.problem != STDIN_ALONE and os.path.realpath(job.target) in self.files:
            return replace(job, problem=f"{job.target} is an input of this run; choose another -o")
        return job

    def masks_check(self, prefix: Path) -> str | None:
        """Why masks at prefix (FOLDER/STEM) must not be written: one of the names write_masks writes or
        removes (any K, any naming) is an input of the run (--masks the folder searched)."""
        found = self.masks.get((os.path.realpath(prefix.parent), prefix.name))
        if found is None:
            return None
        return f"{prefix}-cluster-*.png would replace or remove the input {found}; choose another --masks"


def _picture_not_a_mask(job: Job, owners: dict[tuple[str, str], Path]) -> Job:
    """job, failing if its picture would be one of another input's masks (-o and --masks one folder, and an
    input named like a mask: x-cluster-1.png beside x.png), which one of the two would replace or refuse.
    owners: the input whose masks each (real folder, stem) names."""
    stem = segment.mask_stem(job.target.name)
    if job.problem is not None or stem is None:
        return job
    source = owners.get((os.path.realpath(job.target.parent), stem))
    return job if source is None else replace(job, problem=f"{job.target} is one of the masks of {source}")


def plan_read(inputs: Sequence[str | Path], wanted: Callable[[Path], bool], kind: str | None = None) -> list[Job]:
    """Jobs that only read (target = source) every wanted file among inputs, each file once (see plan)."""
    return plan(inputs, None, wanted=wanted, rename=lambda p: p, kind=kind)


def plan(inputs: Sequence[str | Path], output: str | Path | None, *, wanted: Callable[[Path], bool],
         rename: Callable[[Path], Path], stdin_name: str = STDIN_NAME, kind: str | None = None,
         once: bool = True, pick: Callable[[str, list[str]], list[str]] | None = None) -> list[Job]:
    """Jobs for files as given and for the wanted files inside folders; outputs named by rename (see the
    module's folder rules); stdin ("-") is named stdin_name. Raises KmqError if output is "-" or exists
    and is not a folder, or, given the kind of file wanted ("images"), if the inputs are folders holding none
    (a run with nothing to do is a mistaken path, not a success); else an empty folder is a KmqWarning
    ("no <kind> in this folder"; without a kind, "no files to read").
    once=False keeps every input, each file as often as it is met (for runs that only read, as kmq stats).
    pick(folder, names): which of one folder's wanted file names (sorted) to take, where they are not
    independent."""
    if output is not None and str(output) == STDIO:
        raise KmqError(STDOUT_NOT_BULK)
    out = Path(output) if output is not None else None
    # (os.path's tests, not Path's, throughout: they say False for what cannot be looked at, a folder without
    # search permission, where Path's raised a traceback; the write or the read then says why)
    if out is not None and os.path.exists(out) and not os.path.isdir(out):
        raise KmqError(f"{out} is not a folder; with several inputs, a folder or -o ending in /, -o names a folder")
    # Found now, not once per input after its work: a file where the output folder would need a folder.
    blocking = next((p for p in out.parents if os.path.exists(p)), None) if out is not None else None
    if blocking is not None and not os.path.isdir(blocking):
        raise KmqError(f"cannot create the folder {out}: {blocking} is a file")
    jobs: list[Job] = []
    claimed: dict[Path, Path] = {}
    empty: list[str | Path] = []
    found = _found(inputs, wanted, empty, pick)
    pairs = list(_unique(found) if once else found)
    if not pairs and kind is not None:
        folders = ", ".join(dict.fromkeys(str(i) for i in inputs))
        raise KmqError(f"{folders}: no {kind} found (searched recursively; names starting with . are skipped)")
    for folder in empty:
        # Named as the error for folders that are all the inputs names them ("no images found").
        warnings.warn(f"{folder}: no {kind or 'files to read'} in this folder", KmqWarning, stacklevel=3)
    for source, relative in pairs:
        if str(source) == STDIO:
            relative = Path(stdin_name)
        target = (out / rename(relative)) if out is not None else source.with_name(rename(relative).name)
        problem = None
        there = str(source) == STDIO or os.path.exists(source)  # a missing one is reported as such, claiming nothing
        if str(source) == STDIO and len(pairs) > 1:
            problem = STDIN_ALONE
        elif there and target in claimed:
            problem = f"{target} is already the output of {claimed[target]}"
        if there:
            claimed.setdefault(target, source)
        jobs.append(Job(len(jobs), source, target, _size(source), problem))
    return jobs


def single(source: str | Path, target: str | Path) -> list[Job]:
    """The plan for one input whose output is named."""
    return [Job(0, Path(source), Path(target), _size(Path(source)))]


def _found(inputs: Sequence[str | Path], wanted: Callable[[Path], bool], empty: list[str | Path],
           pick: Callable[[str, list[str]], list[str]] | None = None) -> Iterator[tuple[Path, Path]]:
    """(file, its path relative to the folder it was found in, or its name) for each input; the folders
    holding no wanted file are appended to empty."""
    for given in inputs:
        path = Path(given)
        if str(given) != STDIO and os.path.isdir(path):
            found = _files_in(path, wanted, pick)
            if not found:
                empty.append(given)  # as given ("photos/"), as the error for all-empty inputs names it
            yield from ((f, f.relative_to(path)) for f in found)
        else:
            yield path, Path(path.name)


def _unique(pairs: Iterable[tuple[Path, Path]]) -> Iterator[tuple[Path, Path]]:
    """The pairs whose file was not met before: `x.png ./x.png`, or a folder and a file in it, name one file,
    to be done once (where it first appears)."""
    seen: set[str] = set()
    for source, relative in pairs:
        key = STDIO if str(source) == STDIO else os.path.realpath(source)
        if key not in seen:
            seen.add(key)
            yield source, relative


def _files_in(folder: Path, wanted: Callable[[Path], bool],
              pick: Callable[[str, list[str]], list[str]] | None = None) -> list[Path]:
    found: list[Path] = []

    def unreadable(e: OSError) -> None:
        warnings.warn(f"{e.filename}: skipped, {reason(e)}", KmqWarning, stacklevel=3)

    # followlinks=False: a link back up the tree would otherwise never end.
    for root, dirs, files in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = [f for f in sorted(files) if not f.startswith(".") and wanted(Path(root, f))]
        found += [Path(root, f) for f in (pick(root, names) if pick else names)]
    return [path for path in found if _regular(path)]


def _one_per_stem(folder: str, names: list[str], images: bool, skipped: list[Path]) -> list[str]:
    """A folder's names without the .kmq beside the one image of its stem (images) or without that image (the
    names left out appended to skipped). A stem of two images (x.png, x.jpg) keeps them all: which of them
    the .kmq was made of is unknown, and the clash of their outputs is reported as any other."""
    # (counted once, not with list.count or a search of the kept per name: a folder of 20,000 slides and their
    # .kmq files would take minutes)
    images_of = Counter(os.path.splitext(n)[0] for n in names if not n.lower().endswith(KMQ_SUFFIX))
    pairs = {n[:-len(KMQ_SUFFIX)] for n in names if n.lower().endswith(KMQ_SUFFIX)
             and images_of[n[:-len(KMQ_SUFFIX)]] == 1}
    kept = []
    for n in names:
        if os.path.splitext(n)[0] in pairs and n.lower().endswith(KMQ_SUFFIX) == images:
            skipped.append(Path(folder, n))
        else:
            kept.append(n)
    return kept


def _regular(path: Path) -> bool:
    """Whether a file found in a folder is one to read: a named pipe or a device there (os.walk lists them
    with the files) would block the run forever, waiting for a writer. Named on the command line, they are
    read (`kmq compress <(curl ...)`). A path that cannot be stat'ed is kept: its read says why."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return True
    if stat.S_ISREG(mode):
        return True
    kind = "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    warnings.warn(f"{path}: skipped, {kind}, not a file", KmqWarning, stacklevel=4)
    return False


def _size(path: Path) -> int:
    if str(path) == STDIO:
        return 0  # unknown until read
    try:
        return path.stat().st_size
    except OSError:
        return 0


class _Skip(Exception):
    """Raised by a task's checks under --skip-existing: its outputs are there already (not a failure)."""


class _Task:
    """What every task does around its _work: refuse (or, with skip_existing, skip) an existing output early,
    catch any failure."""
    overwrite: bool
    skip_existing: bool

    def __call__(self, job: Job) -> Result:
        # stdin is read whole first, so that its size is reported as a file's is, failure or not.
        if str(job.source) == STDIO and job.data is None:
            try:
                data = read_bytes(STDIO)
            except KmqError as e:
                return Result(job, error=about(job.source, str(e)))
            job = replace(job, size=len(data), data=data)
        return _attempt(job, self._checked)

    def _checked(self, job: Job) -> tuple[int, dict[str, Any]]:
        if str(job.source) != STDIO:
            # before its output's checks: a missing input's output may be another input's, written meanwhile;
            # in the system's words (a symlink loop was "no such file or directory": round 47's archive trial)
            try:
                os.stat(job.source)
            except OSError as e:
                raise KmqError(f"{job.source}: {reason(e)}") from None
        self._check_outputs(job)
        return self._work(job)

    def _check_outputs(self, job: Job) -> None:
        check_distinct(job.target, job.source)
        if self.skip_existing and written_before(job.target):
            raise _Skip
        # write_atomic refuses too, but only after the work: a re-run over a finished folder should be quick.
        check_writable(job.target, overwrite=self.overwrite, folder=False)  # its folder is made for it

    def _work(self, job: Job) -> tuple[int, dict[str, Any]]:
        """Convert job.source to job.target: (bytes written, the stats record)."""
        raise NotImplementedError


@dataclass(frozen=True)
class CompressTask(_Task):
    """Compress one Job's image to its .kmq (options as kmq.compress). Picklable, for worker processes."""
    k: int | None = None  # None: kmq.compress's default (16), or none at all with a palette
    seed: int = 0
    max_iter: int = 300
    codec: str | None = "raw"  # None with a target: each file's search chooses ctx or lzma
    max_pixels: int = DEFAULT_MAX_PIXELS
    overwrite: bool = False
    skip_existing: bool = False  # leave an input whose output(s) exist alone
    palette: Palette | None = None  # a given palette instead of K-Means (k, seed, max_iter unused)
    rdo: float = 0.0
    psnr: float | None = None  # a target (kmq.compress_to) instead of k: k is then the largest K allowed,
    max_bytes: int | None = None  # if given
    dither: str = "none"

    def _work(self, job: Job) -> tuple[int, dict[str, Any]]:
        source = job.source if job.data is None else io.BytesIO(job.data)
        if self.psnr is None and self.max_bytes is None:
            img = compress(source, self.k, seed=self.seed, max_iter=self.max_iter, codec=self.codec,
                           max_pixels=self.max_pixels, palette=self.palette, rdo=self.rdo, dither=self.dither)
        else:
            img = compress_to(source, psnr=self.psnr, max_bytes=self.max_bytes, k=self.k, codec=self.codec,
                              seed=self.seed, max_iter=self.max_iter, max_pixels=self.max_pixels)
        _make_folder(job.target.parent)
        size = write(job.target, img, overwrite=self.overwrite)
        return size, record(img, str(job.target), size, choices=True)


@dataclass(frozen=True)
class DecompressTask(_Task):
    """Decode one Job's .kmq to an image in Pillow format fmt. Picklable, for worker processes."""
    fmt: str = "PNG"
    max_pixels: int = DEFAULT_MAX_PIXELS
    overwrite: bool = False
    skip_existing: bool = False  # leave an input whose output(s) exist alone
    truecolor: bool = False

    def _work(self, job: Job) -> tuple[int, dict[str, Any]]:
        with told_if_image():
            if job.data is None:
                img = read(job.source, max_pixels=self.max_pixels)
            else:
                with naming(job.source):
                    img = KmqImage.from_bytes(job.data, max_pixels=self.max_pixels)
        _make_folder(job.target.parent)
        export(img, job.target, format=self.fmt, overwrite=self.overwrite, truecolor=self.truecolor)
        # (choices: the summary's rdo is the file's, as docs/CLI.md says; it was null for any file)
        size = _size(job.source) if job.data is None else job.size
        return _size(job.target), record(img, str(job.source), size, choices=True)


@dataclass(frozen=True)
class SegmentTask(_Task):
    """Draw one Job's clusters (kmq.segment): the picture job.target in style and Pillow format fmt when
    picture, the masks at job.masks (or masks/<stem>, for a Job planned as one file) when masks is given.
    Options as kmq.segment.quantized. Picklable, for worker processes."""
    k: int | None = None
    seed: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    palette: Palette | None = None
    style: str = "overlay"
    fmt: str = "PNG"
    picture: bool = True
    masks: str | None = None
    overwrite: bool = False
    skip_existing: bool = False  # leave an input whose output(s) exist alone
    # A series' measure (a stain's area in each slide): the pixels of each label, in label order.
    EXTRA_FIELDS = ("counts",)

    def _check_outputs(self, job: Job) -> None:
        prefix = self._prefix(job)
        if self.picture:
            check_distinct(job.target, job.source)
        if self.skip_existing and segment_there(job.target if self.picture else None, prefix):
            raise _Skip
        if not self.overwrite and prefix is not None:
            # Any mask of the stem, at any K, would stop write_masks: found now, before the clustering.
            found = segment.existing_masks(prefix.parent, prefix.name)
            if found:
                raise exists(found[0])
        if self.picture:
            check_writable(job.target, overwrite=self.overwrite, folder=False)

    def _prefix(self, job: Job) -> Path | None:
        if self.masks is None:
            return None
        if job.masks is not None:
            return job.masks
        return Path(self.masks) / (STDIN_NAME if str(job.source) == STDIO else Path(job.source).stem)

    def _work(self, job: Job) -> tuple[int, dict[str, Any]]:
        source = job.source if job.data is None else io.BytesIO(job.data)  # stdin, read by _Task.__call__
        img, base = segment.quantized(source, self.k, seed=self.seed, max_pixels=self.max_pixels,
                                      palette=self.palette, name=job.source)
        if self.picture and self.style == "labels":
            segment.check_label_map_format(job.target, self.fmt, img.k)
        prefix = self._prefix(job)
        save = None
        view = segment.view_image(img, base, self.style) if self.picture else None
        del base  # (as the single run: the pixels let go once drawn, the view once encoded)
        if view is not None:
            # Before the masks: a picture that cannot be written must not leave masks that a rerun stops on.
            _make_folder(job.target.parent)
            picture = segment.encoded_picture(view, self.fmt, str(job.target))
            del view
            save = functools.partial(write_atomic, job.target, picture, overwrite=self.overwrite)
        written = segment.write_with_masks(img, None if prefix is None else prefix.parent,
                                           "" if prefix is None else prefix.name, save, overwrite=self.overwrite)
        size = sum(_size(p) for p in written) + (_size(job.target) if self.picture else 0)
        r = record(img, str(job.target), size, choices=True)  # a .kmq's own rdo, as decompress's
        return size, {**r, "style": self.style if self.picture else None, "masks": [p.name for p in written],
                      "masks_folder": None if prefix is None else str(prefix.parent),
                      "counts": label_counts(img.labels, img.k).tolist()}


def segment_there(picture: str | Path | None, masks: Path | None) -> bool:
    """Whether every output of a segment run is there (what --skip-existing leaves alone): the picture (None:
    none asked) and a mask of the stem at any K at the masks' prefix FOLDER/STEM (None: none asked). With
    one of two there, the run is not a finished one: it goes on, and is refused as existing without -f."""
    return ((picture is None or written_before(picture))
            and (masks is None or bool(segment.existing_masks(masks.parent, masks.name))))


@dataclass(frozen=True)
class ReadTask:
    """Read one Job's input with `read` (a module-level function or a partial of one, so it pickles) and write
    nothing: the Result's record is what read returns, bytes_after 0."""
    read: Callable[[Path], dict[str, Any]]

    def __call__(self, job: Job) -> Result:
        return _attempt(job, self._work)

    def _work(self, job: Job) -> tuple[int, dict[str, Any]]:
        return 0, self.read(job.source)


def _attempt(job: Job, work: Callable[[Job], tuple[int, dict[str, Any]]]) -> Result:
    """Run work(job), turning any failure into a Result that says what went wrong with which file."""
    started = time.perf_counter()
    result = Result(job)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # (kmq's own limit rules)
        try:
            result.bytes_after, result.record = work(job)
        except _Skip:
            result.skipped = True
        except KmqError as e:
            result.error = about(job.source, str(e))
        except MemoryError as e:
            result.error = about(job.source, out_of_memory(e))
        except Exception as e:  # a bug or an odd file must still not cost the user the rest of the batch
            result.error = about(job.source, f"unexpected {type(e).__name__}: {e}")
    result.warnings = list(dict.fromkeys(about(job.source, str(w.message)) for w in caught))  # once each, as cli's
    result.seconds = time.perf_counter() - started
    return result


def _make_folder(folder: Path) -> None:
    # Only once there is something to write, so a failed input leaves no empty folder behind.
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KmqError(f"cannot create folder {folder}: {reason(e)}") from None


def run(jobs: Iterable[Job], task: Callable[[Job], Result], workers: int | None = None) -> Iterator[Result]:
    """Yield task(job) for every job, in the order they finish, using up to `workers` processes.

    workers: None for one per core; with 1 (or a single job) everything runs in this process. Jobs with a
    known problem fail at once without running. A worker that dies (killed, out of memory) breaks the pool,
    and every job not finished then is run again in a new one; after a second break, each of those runs in
    a pool of its own, so the job that kills its worker fails alone ("worker failed") and the rest finish.

    SIGINT and SIGTERM (received in the main thread) end the workers at once, then act as they would have:
    no job starts and no output is written after them (see _WorkersEndFirst).
    """
    todo: list[Job] = []
    for job in jobs:
        if job.problem:
            yield Result(job, error=about(job.source, job.problem))
        else:
            todo.append(job)
    workers = min(workers or parallel.cores(), len(todo))
    try:
        if workers > 1:
            for _ in range(_POOL_TRIES):
                todo = yield from _pooled(todo, task, workers)
            for n, job in enumerate(todo):
                try:
                    for lost in (yield from _pooled([job], task, 1)):
                        yield Result(lost, error=about(lost.source, _DIED))
                except _NoWorkers as e:
                    raise _NoWorkers(str(e), todo[n:]) from None  # (this job and every one after it)
            return
    except _NoWorkers as e:
        todo = e.jobs
        warnings.warn(f"cannot start worker processes ({e}): the files run one at a time in this process",
                      KmqWarning, stacklevel=2)
    for job in todo:
        yield task(job)


# Pools that a dead worker may break before the jobs left run one pool each (a job that kills its worker,
# out of memory, would do so again, taking the jobs beside it down with it).
_POOL_TRIES = 2
_DIED = "worker failed: its process ended abruptly (out of memory? killed?)"


def _pooled(jobs: list[Job], task: Callable[[Job], Result], workers: int) -> Generator[Result, None, list[Job]]:
    """Yield task(job) for the jobs from a pool of `workers` processes; return (as the generator's value) the
    jobs a dead worker's broken pool left unfinished, in their order."""
    try:
        pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_start, initargs=(_ignored_signals(),))
    except OSError as e:
        raise _NoWorkers(reason(e), jobs) from None
    except (NotImplementedError, ImportError) as e:  # (a platform without working named semaphores)
        raise _NoWorkers(str(e) or type(e).__name__, jobs) from None
    lost: list[Job] = []
    try:
        with _WorkersEndFirst(pool) as signals:
            futures = {pool.submit(task, job): job for job in jobs}
            for future in as_completed(futures):
                signals.check()
                job = futures[future]
                try:
                    yield future.result()
                except BrokenProcessPool:
                    lost.append(job)
                except Exception as e:  # noqa: BLE001 - the job's result could not be sent back
                    yield Result(job, error=about(job.source, f"worker failed: {e}"))
            signals.check()
    except BaseException:
        # Ctrl-C, SIGTERM or an abandoned iteration: running jobs stop now, queued ones never start.
        _end_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return sorted(lost, key=lambda job: job.index)


class _NoWorkers(Exception):
    """No pool of processes could be made (multiprocessing's locks need a writable /dev/shm, which sandboxes
    and serverless hosts may not give): a bulk run had ended in a traceback there; it now runs in-process."""

    def __init__(self, why: str, jobs: list[Job]) -> None:
        super().__init__(why)
        self.jobs = jobs


# Signals that end a bulk run: the parent ends its workers first (see _WorkersEndFirst).
# How long a worker may take to remove its temporary file after SIGTERM before it is killed outright.
_GRACE_SECONDS = 5.0


def _ignored_signals() -> tuple[int, ...]:
    return tuple(int(sig) for sig in ENDING_SIGNALS if signal.getsignal(sig) is signal.SIG_IGN)


def _worker_start(ignored: tuple[int, ...]) -> None:
    """Each worker: its signals as below, and one thread for its numpy work (kmq.parallel), since the other
    workers already use the other cores."""
    _worker_signals(ignored)
    parallel.serial()


def _worker_signals(ignored: tuple[int, ...]) -> None:
    """In each worker, SIGINT and SIGTERM end the process at once (a write in progress first removes its
    temporary file: kmq.fileio), unless the parent ignores them. With Python's KeyboardInterrupt instead, the
    pool would send the interrupt back as the job's result and the worker would start its next job."""
    for sig in ENDING_SIGNALS:
        signal.signal(sig, signal.SIG_IGN if sig in ignored else signal.SIG_DFL)


class _WorkersEndFirst:
    """While the pool runs, SIGINT and SIGTERM end its workers (and wait for them) before acting as they did
    before: KeyboardInterrupt, or the end of the process. So no output is started after the signal, even when
    it reaches only this process (`kill PID`).

    Python may swallow the KeyboardInterrupt, depending on where it strikes (e.g. in a fork hook while a worker
    starts), so check() acts on the signal again: call it after each wait."""

    def __init__(self, pool: ProcessPoolExecutor) -> None:
        self.pool = pool
        self.owner = os.getpid()
        self.before: dict[int, Any] = {}
        self.received: int | None = None
        self.checked = False

    def __enter__(self) -> _WorkersEndFirst:
        if threading.current_thread() is threading.main_thread():
            self.before = {sig: signal.getsignal(sig) for sig in ENDING_SIGNALS
                           if signal.getsignal(sig) not in (signal.SIG_IGN, None)}
        for sig in self.before:
            signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, action in self.before.items():
            signal.signal(sig, action)

    def _handler(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.owner:  # a worker forked before it set its own handlers: end as a worker
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        for sig in self.before:  # a second Ctrl-C must not cut the ending short
            signal.signal(sig, ignore_signal)
        self.received = signum
        _end_workers(self.pool)
        self._act()

    def check(self) -> None:
        """If a signal came and its KeyboardInterrupt was lost, raise it again (once)."""
        if self.received is not None and not self.checked:
            self.checked = True
            self._act()

    def _act(self) -> None:
        """Do what the signal received did before the pool: raise KeyboardInterrupt or end the process."""
        assert self.received is not None
        previous = self.before[self.received]
        if callable(previous):
            previous(self.received, None)
        else:
            signal.signal(self.received, previous)
            os.kill(os.getpid(), self.received)


def _end_workers(pool: ProcessPoolExecutor) -> None:
    """SIGTERM to every worker, then wait for them: each removes the temporary file it may be writing."""
    # ProcessPoolExecutor can stop its running workers only since Python 3.14 (terminate_workers), and
    # shutdown(cancel_futures=True) still lets each finish its current job, and the jobs queued for it.
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + _GRACE_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def summarize(results: Sequence[Result]) -> dict[str, Any]:
    """Totals over results (keys SUMMARY_FIELDS). Bytes, ratio and PSNR count succeeded files only; the ratio
    is compressed_bits / original_bits as in kmq.stats; lossless files (infinite PSNR) stay out of the mean
    PSNR, which is infinite when every file whose PSNR is known is lossless (json: null, as a lossless
    record's), not None, which a table shows as unknown. A mean over no files is None."""
    done = [r for r in results if r.ok and r.record is not None]
    skipped = sum(r.skipped for r in results)
    ratios = [r.record["ratio"] for r in done]
    known = [r.record["psnr"] for r in done if r.record["psnr"] is not None]
    psnrs = [psnr for psnr in known if math.isfinite(psnr)]
    mean_psnr = sum(psnrs) / len(psnrs) if psnrs else math.inf if known else None
    return {"files": len(results), "succeeded": len(done), "failed": len(results) - len(done) - skipped,
            "bytes_before": sum(r.job.size for r in done), "bytes_after": sum(r.bytes_after for r in done),
            "mean_ratio": sum(ratios) / len(ratios) if ratios else None,
            "mean_psnr": mean_psnr, "skipped": skipped}
