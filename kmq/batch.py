"""Many files at once: plan which inputs go where, run them in worker processes, summarise.

`plan_compress` / `plan_decompress` turn files and folders into Jobs (input -> output path); `run` executes a
task on every Job and yields one Result per Job as each finishes; `summarize` totals them. A failure is a
Result with an error, never an exception, so one bad file never stops the others. Nothing here prints.

Folder rules (documented in the README):
- a folder contributes, recursively, the files whose extension Pillow reads (compress) or `.kmq`
  (decompress); hidden files and folders (names starting with ".") are skipped and links to folders are
  not followed;
- with an output folder, each output keeps its path relative to the folder given (or just its name, for a
  file given directly), so `a/x.png` and `b/x.png` under one folder stay apart; without one, each output
  goes beside its input;
- two inputs that would write the same output (`x.png` and `x.jpg`) both stay in the plan, the second as a
  failure that names the first.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from PIL import Image

from .api import compress, export, read, write
from .errors import KmqError, KmqWarning
from .fileio import STDIO, reason
from .format import DEFAULT_MAX_PIXELS
from .stats import record

KMQ_SUFFIX = ".kmq"
# The keys of `summarize`, and of each entry of its "results" (Result.as_dict), in order.
SUMMARY_FIELDS = ("files", "succeeded", "failed", "bytes_before", "bytes_after", "mean_ratio", "mean_psnr")
RESULT_FIELDS = ("input", "output", "ok", "error", "bytes_before", "bytes_after", "k", "ratio", "psnr",
                 "seconds")


def image_suffixes() -> frozenset[str]:
    """The file extensions (lower case, with the dot) of every format this Pillow can open."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def suffix_for(fmt: str) -> str:
    """The extension to give a file written in Pillow format fmt: ".png" for "PNG", ".jpeg" for "JPEG"."""
    Image.init()
    fmt = fmt.upper()
    if fmt not in Image.SAVE:
        raise KmqError(f"unknown image format {fmt!r}; use e.g. PNG, WEBP or BMP")
    suffixes = [ext for ext, name in Image.registered_extensions().items() if name == fmt]
    preferred = "." + fmt.lower()
    return preferred if preferred in suffixes else suffixes[0]


@dataclass(frozen=True)
class Job:
    """One input file and the output it should become. size: the input's bytes (0 if it cannot be read).
    problem: why it must fail without running (e.g. another input already claims its output)."""
    index: int
    source: Path
    target: Path
    size: int
    problem: str | None = None


@dataclass
class Result:
    """What became of a Job. record: the stats record (kmq.stats.FIELDS) of the quantized image, or None if
    it failed; error: "<input>: <reason>" when it failed; warnings: messages raised along the way."""
    job: Job
    error: str | None = None
    bytes_after: int = 0
    record: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        """Keys RESULT_FIELDS; k, ratio and psnr are None for a failure, psnr also for a lossless file."""
        r = self.record or {}
        psnr = r.get("psnr")
        return {"input": str(self.job.source), "output": str(self.job.target), "ok": self.ok,
                "error": self.error, "bytes_before": self.job.size, "bytes_after": self.bytes_after,
                "k": r.get("k"), "ratio": r.get("ratio"),
                "psnr": None if psnr is None or math.isinf(psnr) else psnr, "seconds": self.seconds}


def plan_compress(inputs: Sequence[str | Path], output: str | Path | None = None) -> list[Job]:
    """Jobs compressing every image among inputs (files, and folders searched recursively) to .kmq."""
    suffixes = image_suffixes()
    return plan(inputs, output, wanted=lambda p: p.suffix.lower() in suffixes,
                rename=lambda p: p.with_suffix(KMQ_SUFFIX))


def plan_decompress(inputs: Sequence[str | Path], output: str | Path | None = None,
                    fmt: str = "PNG") -> list[Job]:
    """Jobs decoding every .kmq among inputs to an image named like the single-file default (x.kmq.png)."""
    suffix = suffix_for(fmt)
    return plan(inputs, output, wanted=lambda p: p.suffix.lower() == KMQ_SUFFIX,
                rename=lambda p: p.with_name(p.name + suffix))


def plan(inputs: Sequence[str | Path], output: str | Path | None, *, wanted: Callable[[Path], bool],
         rename: Callable[[Path], Path]) -> list[Job]:
    """Jobs for files as given and for the wanted files inside folders; outputs named by rename (see the
    module's folder rules). Raises KmqError only if output is "-" or exists and is not a folder."""
    if output is not None and str(output) == STDIO:
        raise KmqError("-o - (stdout) takes one input; with several inputs, -o names a folder")
    out = Path(output) if output is not None else None
    if out is not None and out.exists() and not out.is_dir():
        raise KmqError(f"{out} is not a folder; with several inputs, -o names a folder")
    pairs: list[tuple[Path, Path]] = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found = _files_in(path, wanted)
            if not found:
                warnings.warn(f"{path}: no files to convert in this folder", KmqWarning, stacklevel=2)
            pairs += [(f, f.relative_to(path)) for f in found]
        else:
            pairs.append((path, Path(path.name)))
    jobs: list[Job] = []
    claimed: dict[Path, Path] = {}
    for index, (source, relative) in enumerate(pairs):
        target = (out / rename(relative)) if out is not None else source.with_name(rename(relative).name)
        problem = None
        if str(source) == STDIO:
            problem = "stdin can only be read as the one and only input"
        elif target in claimed:
            problem = f"{target} is already the output of {claimed[target]}"
        claimed.setdefault(target, source)
        jobs.append(Job(index, source, target, _size(source), problem))
    return jobs


def _files_in(folder: Path, wanted: Callable[[Path], bool]) -> list[Path]:
    found: list[Path] = []

    def unreadable(e: OSError) -> None:
        warnings.warn(f"{e.filename}: skipped, {reason(e)}", KmqWarning, stacklevel=3)

    # followlinks=False: a link back up the tree would otherwise never end.
    for root, dirs, files in os.walk(folder, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root, f) for f in sorted(files) if not f.startswith(".") and wanted(Path(f))]
    return found


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class _Task:
    """What every task does around its _work: refuse an existing output early, catch any failure."""
    overwrite: bool

    def __call__(self, job: Job) -> Result:
        return _attempt(job, self._checked)

    def _checked(self, job: Job) -> tuple[int, dict[str, Any]]:
        # write_atomic refuses too, but only after the work: a re-run over a finished folder should be quick.
        if not self.overwrite and os.path.lexists(job.target):
            raise KmqError(f"{job.target} already exists (use -f to overwrite)")
        return self._work(job)

    def _work(self, job: Job) -> tuple[int, dict[str, Any]]:
        """Convert job.source to job.target: (bytes written, the stats record)."""
        raise NotImplementedError


@dataclass(frozen=True)
class CompressTask(_Task):
    """Compress one Job's image to its .kmq (options as kmq.compress). Picklable, for worker processes."""
    k: int = 16
    seed: int = 0
    max_iter: int = 300
    codec: str = "raw"
    max_pixels: int = DEFAULT_MAX_PIXELS
    overwrite: bool = False
    dither: str = "none"

    def _work(self, job: Job) -> tuple[int, dict[str, Any]]:
        img = compress(job.source, self.k, seed=self.seed, max_iter=self.max_iter, codec=self.codec,
                       max_pixels=self.max_pixels, dither=self.dither)
        _make_folder(job.target.parent)
        size = write(job.target, img, overwrite=self.overwrite)
        return size, record(img, str(job.target), size)


@dataclass(frozen=True)
class DecompressTask(_Task):
    """Decode one Job's .kmq to an image in Pillow format fmt. Picklable, for worker processes."""
    fmt: str = "PNG"
    max_pixels: int = DEFAULT_MAX_PIXELS
    overwrite: bool = False
    truecolor: bool = False

    def _work(self, job: Job) -> tuple[int, dict[str, Any]]:
        img = read(job.source, max_pixels=self.max_pixels)
        _make_folder(job.target.parent)
        export(img, job.target, format=self.fmt, overwrite=self.overwrite, truecolor=self.truecolor)
        return _size(job.target), record(img, str(job.source), _size(job.source))


def _attempt(job: Job, work: Callable[[Job], tuple[int, dict[str, Any]]]) -> Result:
    """Run work(job), turning any failure into a Result that says what went wrong with which file."""
    started = time.perf_counter()
    result = Result(job)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result.bytes_after, result.record = work(job)
        except KmqError as e:
            result.error = _about(job.source, str(e))
        except Exception as e:  # a bug or an odd file must still not cost the user the rest of the batch
            result.error = _about(job.source, f"unexpected {type(e).__name__}: {e}")
    result.warnings = [_about(job.source, str(w.message)) for w in caught]
    result.seconds = time.perf_counter() - started
    return result


def _make_folder(folder: Path) -> None:
    # Only once there is something to write, so a failed input leaves no empty folder behind.
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KmqError(f"cannot create folder {folder}: {reason(e)}") from None


def _about(source: Path, message: str) -> str:
    """Prefix a message with the input's name, unless the message already starts with it."""
    name = str(source)
    return message if message.startswith(name + ":") else f"{name}: {message}"


def run(jobs: Iterable[Job], task: Callable[[Job], Result], workers: int | None = None) -> Iterator[Result]:
    """Yield task(job) for every job, in the order they finish, using up to `workers` processes.

    workers: None for one per core; with 1 (or a single job) everything runs in this process. Jobs with a
    known problem fail at once without running; a worker that dies fails its job and the rest go on.
    """
    todo: list[Job] = []
    for job in jobs:
        if job.problem:
            yield Result(job, error=_about(job.source, job.problem))
        else:
            todo.append(job)
    workers = min(workers or os.cpu_count() or 1, len(todo))
    if workers <= 1:
        for job in todo:
            yield task(job)
        return
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        futures = {pool.submit(task, job): job for job in todo}
        for future in as_completed(futures):
            job = futures[future]
            try:
                yield future.result()
            except Exception as e:  # BrokenProcessPool: the worker was killed (out of memory, a signal)
                yield Result(job, error=_about(job.source, f"worker failed: {e}"))
    finally:
        # On Ctrl-C or an abandoned iteration, queued jobs are dropped rather than waited for.
        pool.shutdown(wait=True, cancel_futures=True)


def summarize(results: Sequence[Result]) -> dict[str, Any]:
    """Totals over results (keys SUMMARY_FIELDS). Bytes, ratio and PSNR count succeeded files only; the ratio
    is compressed_bits / original_bits as in kmq.stats; lossless files (infinite PSNR) stay out of the mean
    PSNR. A mean over no files is None."""
    done = [r for r in results if r.ok and r.record is not None]
    ratios = [r.record["ratio"] for r in done]
    psnrs = [r.record["psnr"] for r in done if r.record["psnr"] is not None and math.isfinite(r.record["psnr"])]
    return {"files": len(results), "succeeded": len(done), "failed": len(results) - len(done),
            "bytes_before": sum(r.job.size for r in done), "bytes_after": sum(r.bytes_after for r in done),
            "mean_ratio": sum(ratios) / len(ratios) if ratios else None,
            "mean_psnr": sum(psnrs) / len(psnrs) if psnrs else None}
