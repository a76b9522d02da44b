"""The `kmq` command. Each command parses its options, calls one library function and renders the result."""
from __future__ import annotations

import io
import json
import math
import os
import re
import signal
import sys
import time
import warnings
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import click
from PIL import Image
from click.core import ParameterSource

# The library (numpy with it) is imported by the commands that use it, not here: `kmq --help`, `--version` and
# a usage error end before any of it would be used (kmq.limits).
from . import __version__, stdout
from .codecs import NAMES as CODECS
from .errors import (CLI_WORDS, KmqError, KmqWarning, about, counted, out_of_memory, plural_bytes, valid_unicode,
                     warnings_about)
from .fileio import (STDIN_ALONE, STDIO, STDOUT_NOT_BULK, Terminated, check_distinct, check_writable, end_by,
                     is_special, names_stdout, stdin, write_atomic)
from .limits import DEFAULT_MAX_PIXELS, DITHERS, MAX_K, MAX_PSNR, MAX_RDO, STYLES
from .names import one_line as _one_line
from .names import shown as _shown

if TYPE_CHECKING:  # kmq.batch (process pools) is imported only by the bulk runs that use it
    from . import batch, palettes

class _K(click.IntRange):
    """-k: a whole number from 1 to MAX_K. Anything else says what a K is (click's own "not a valid integer
    range" reads as if a range A..B were wanted)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        try:
            number = value if isinstance(value, int) else int(str(value).strip())
        except ValueError:
            number = None
        if number is None or not 1 <= number <= MAX_K:
            self.fail(f"{value!r} is not a K: give a whole number from 1 to {MAX_K}", param, ctx)
        return number


K_RANGE = _K(1, MAX_K)
# A file or folder; "-" for stdin or stdout. Not checked here (click would make an unreadable input a usage
# error, exit 2, and stop a bulk run before it starts): each is checked where it is opened, so it fails alone
# with one `Error:` line.
class _Path(click.Path):
    """click.Path that refuses an empty name: pathlib reads "" as ".", so an unset shell variable
    (`kmq compress "$f"`) would otherwise run over the whole current folder."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if value == "":
            self.fail("an empty path names no file", param, ctx)
        return super().convert(value, param, ctx)


PATH = _Path(allow_dash=True, readable=False)


class _Output(_Path):
    """An output path; /dev/stdout (/dev/fd/1, /proc/self/fd/1) is "-", so that the summary line goes to stderr
    as it does for "-" rather than into the stream after the data."""

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        value = super().convert(value, param, ctx)
        return STDIO if names_stdout(value) else value


OUTPUT = _Output(allow_dash=True, readable=False)


@contextmanager
def _reported() -> Iterator[None]:
    """Library errors become `Error: ...` with exit 1; library warnings become `Warning: ...` on stderr."""
    with _warned():
        try:
            yield
        except KmqError as e:
            raise click.ClickException(_error(e)) from None


@contextmanager
def _warned(echo: Any = None) -> Iterator[None]:
    """Library warnings raised inside become `Warning: ...` lines on stderr when it ends, error or not.
    echo: what writes each line (a progress bar's, above it), click.echo to stderr by default."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Python's own about unclosed files (a Ctrl-C in the middle of an import, a file Pillow left open) is
        # for developers, and ignored by default: not a Warning: line for the user.
        warnings.simplefilter("ignore", ResourceWarning)
        # Pillow's of an image over its own limit (a --max-pixels at or under it leaves that limit in force):
        # kmq refuses any image over --max-pixels in its own words.
        warnings.filterwarnings("ignore", r".*Image size \(\d+ pixels\) exceeds limit")
        try:
            yield
        finally:
            # Once each: Pillow warns on every open of a deprecated format (IM: four lines for one compress).
            for message in dict.fromkeys(_shown(str(w.message)) for w in caught):
                (echo or _to_stderr)(f"Warning: {message}")


def _to_stderr(line: str) -> None:
    click.echo(line, err=True)


def _max_pixels_option(f):
    return click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS, show_default=True,
                        help="Refuse images (and .kmq files) with more pixels than this.")(f)


def _not_with(options: tuple[str, ...]) -> str:
    """' Not with A, B or C.' for a help text (empty for none)."""
    if not options:
        return ""
    listed = options[0] if len(options) == 1 else f"{', '.join(options[:-1])} or {options[-1]}"
    return f" Not with {listed}."


def _dither_option(*conflicts: str, files: bool = True):
    """--dither, its help naming only what the command has: the file cost and the options it excludes."""
    cost = "a higher J and a larger file with lzma or ctx" if files else "a higher J"
    return click.option("--dither", type=click.Choice(DITHERS), default="none", show_default=True,
                        help=f"fs: Floyd–Steinberg error diffusion onto the palette: smooth gradients instead "
                             f"of bands, at {cost}.{_not_with(conflicts)}")


def _bulk_options(*summary_names: str):
    """-j and the summary's format, shared by compress and decompress (whose --format is the image's)."""
    def decorate(f):
        f = click.option(*summary_names, "summary", type=click.Choice(["table", "json"]), default=None,
                         help="The summary of a bulk run: table (default) for people, json for scripts.")(f)
        return click.option("-j", "--jobs", "workers", type=click.IntRange(1), default=None,
                            help="Worker processes for several inputs (default: one per core).")(f)
    return decorate


def _skip_option(outputs: str = "its output is"):
    """--skip-existing, its help naming the command's own outputs."""
    return click.option("--skip-existing", "skip_existing", is_flag=True,
                        help=f"Leave an input alone when {outputs} there already: a re-run of a folder does only "
                             f"what is new. Not with -f.")


def _check_skip(skip_existing: bool, force: bool) -> None:
    if skip_existing and force:
        raise click.UsageError("give -f or --skip-existing, not both: one replaces existing outputs, the other "
                               "keeps them")


def _skipped_line(source: Any, target: Any, what: str = "it exists") -> str:
    return f"{_shown(source)} -> {_shown(target)}: skipped, {what}"


def _is_bulk(inputs: tuple[str, ...], output: str | None, summary: str | None) -> bool:
    """Several inputs, a folder, an -o ending in "/" or a summary asked for: the bulk runner. Anything else
    keeps the single-file behaviour, messages and pipes exactly."""
    return (len(inputs) > 1 or summary is not None or any(Path(i).is_dir() for i in inputs if i != STDIO)
            or (output is not None and output.endswith(("/", os.sep))))


class _Main(click.Group):
    def main(self, *args: Any, **kwargs: Any) -> Any:
        restore = _tolerant(sys.stdout)
        try:
            # One guard for every command: a full, closed or vanished stdout is one clean error (or a quiet end).
            with stdout.guarded():
                return super().main(*args, **kwargs)
        finally:
            restore()  # (a program running kmq in its own process keeps its stdout as it was)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with stdout.watched():
                return super().invoke(ctx)
        except MemoryError as e:
            # (a bulk run's workers say it per file; outputs were cleaned up on the way here, as for any error)
            raise click.ClickException(out_of_memory(e)) from None
        except (KeyboardInterrupt, Terminated) as e:
            # End as killed by SIGINT, as Python itself and SIGTERM do (status 130 in a shell), so a shell loop
            # or make running kmq stops too; click would print "Aborted!" and exit 1, which they take for a
            # handled interrupt. Every output was already cleaned up on the way here. (Terminated reaches here
            # only where the signal's own delivery did not end the process: PID 1.)
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError, AttributeError):
                    pass
            end_by(e.signum if isinstance(e, Terminated) else signal.SIGINT)
            raise


def _tolerant(stream: Any) -> Callable[[], None]:
    """A stdout whose encoding is not UTF (LANG=de_DE.ISO-8859-1, a Windows code page) writes what it cannot
    encode as \\uXXXX, as stderr always does, instead of ending the command with a traceback after its files
    were written (a name in another script, --help's dash). Tables choose ASCII borders for it (_text).
    Returns what puts the stream's own handling back."""
    errors = getattr(stream, "errors", None)
    if _encoding(stream).startswith("utf") or not callable(getattr(stream, "reconfigure", None)):
        return lambda: None
    stream.reconfigure(errors="backslashreplace")
    return lambda: stream.reconfigure(errors=errors)


def _encoding(stream: Any) -> str:
    """The stream's encoding by its codec's own name (cp65001 is utf-8); utf-8 where it has none or an unknown one."""
    import codecs

    try:
        return codecs.lookup(getattr(stream, "encoding", None) or "utf-8").name
    except LookupError:
        return "utf-8"


def _palette_option(*conflicts: str):
    """--palette, its help naming the command's own options that it excludes (as _given_palette refuses)."""
    return click.option("--palette", "palette_file", type=_Path(dir_okay=False),
                        help="Map every pixel onto this palette (.gpl, .txt, .hex, .json, .pal, .act, a .kmq's or a "
                             "palette image's: PNG-8, GIF) instead of K-Means: K is its size, its order is kept."
                             + _not_with(conflicts))


def _given_palette(palette_file: str | None, max_pixels: int, *excluded: str) -> palettes.Palette | None:
    """The --palette file read, or None; an option in excluded given on the command line is a usage error."""
    if palette_file is None:
        return None
    from . import palettes

    ctx = click.get_current_context()
    for name in excluded:
        if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None):
            option = next(o for p in ctx.command.params if p.name == name for o in p.opts)
            raise click.UsageError(f"{option} cannot be used with --palette (the palette is used exactly "
                                   f"as given: its size is K, no K-Means runs)")
    with _reported():
        return palettes.read(palette_file, max_pixels=max_pixels)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="kmq")
def main() -> None:
    """Compress images by K-Means vector quantization into .kmq files.

    \b
    Example:
      kmq compress photo.png -k 16      # writes photo.kmq
      kmq decompress photo.kmq          # writes photo.kmq.png
      kmq stats photo.png -k 2 -k 16    # the size tables
      kmq montage photo.png -o grid.png # what K does, at a glance
    """
    with _warned():
        from . import parallel  # noqa: F401 - its KMQ_THREADS warning said once, as a Warning: line


_TINY_EXPONENT = 40  # a size's number under 1e-40 is under a byte in any unit (the largest, GiB, ~1e9)


class ByteSize(click.ParamType):
    """A number of bytes: 200000, 200k or 200kB (k, M, G: powers of 1000), 64KiB (KiB, MiB, GiB: of 1024),
    fractions allowed with a unit (1.5M), rounded down to whole bytes, and exponents (1e6, 2.5e5); at least 1.
    Units in any case (50KB and 50kb are 50kB, as people write them)."""
    name = "SIZE"
    _UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
              "kib": 2**10, "mib": 2**20, "gib": 2**30}

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            size = value
        else:
            # 1e6 too, as scripts print sizes; "200 kB" too, but not "1\nk"
            match = re.fullmatch(r"\s*(-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?) *([A-Za-z]*)\s*", str(value))
            unit = self._UNITS.get(match.group(2).lower()) if match else None
            if unit is None or not math.isfinite(float(match.group(1)) * unit):  # 1e308k overflows to inf
                self.fail(f"{value!r} is not a size: use bytes (200000), k/M/G (200k, 1.5M: 1000s) "
                          f"or KiB/MiB/GiB (64KiB: 1024s)", param, ctx)
            # exact: a float kept 17 digits of 10**23 G (the target's metadata), and a Decimal 28 (1e28 % 1 raised)
            from decimal import Decimal
            from fractions import Fraction

            written = Decimal(match.group(1))
            if written.is_zero() or written.adjusted() < -_TINY_EXPONENT:
                # (under a byte whatever the unit; a Fraction of 1e-1000000000, or of 0e-1000000000, holds
                # 10**1000000000: it took hours)
                whole = unit != 1 or written.is_zero()
                self.fail(f"{value!r} is " + ("less than 1 byte" if whole else "not a whole number of bytes"),
                          param, ctx)
            number = Fraction(match.group(1))
            if unit == 1 and number.denominator != 1:
                self.fail(f"{value!r} is not a whole number of bytes", param, ctx)
            size = math.floor(number * unit)
        if size < 1:
            self.fail(f"{value!r} is less than 1 byte", param, ctx)
        return size


class _Finite(click.FloatRange):
    """A FloatRange that also refuses nan (which compares false with every bound, so passes FloatRange)."""

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        # FloatRange's own word for a non-number, "not a valid float range", reads as if a range was asked for.
        try:
            float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


RDO_OPTION = click.option("--rdo", type=_Finite(0, MAX_RDO), default=0.0, metavar="PCT",
                          help="Let J rise by up to PCT % over the nearest-colour J where that makes the "
                               "labels cheaper (ctx, lzma). Default 0: off.")


@main.command(short_help="Quantize images to K colours, into .kmq files.")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...",
                type=PATH)
@click.option("-k", "k", type=K_RANGE, default=None,
              help="Palette size (1 to 65536; default 16). With --psnr or --max-bytes: the largest K the search "
                   "may choose (default 65536).")
@RDO_OPTION
@click.option("--psnr", type=_Finite(0, MAX_PSNR, min_open=True), metavar="DB",
              help="Write the smallest file whose PSNR is at least DB: kmq chooses K (and the rdo).")
@click.option("--max-bytes", type=ByteSize(),
              help="Write the best-PSNR file its search finds of at most SIZE bytes (200000, 200k, 1.5M, "
                   "64KiB): kmq chooses K (and the rdo).")
@click.option("-o", "--output", type=OUTPUT,
              help="Output .kmq file (default: IMAGE with its suffix replaced by .kmq; '-' for stdout); "
                   "with several inputs or a folder, or ending in '/', the output folder (default: beside each input).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="K-Means random seed.")
@click.option("--max-iter", type=click.IntRange(1), default=300, show_default=True,
              help="Most Lloyd iterations.")
@click.option("--codec", type=click.Choice(CODECS),
              help="How the labels are stored. Default: raw (the tutorial's bit-packed labels); with --psnr or "
                   "--max-bytes, ctx or lzma, chosen per image (lzma on text and screenshots, ctx on photos).")
@_palette_option("-k", "--seed", "--max-iter", "--rdo", "--psnr", "--max-bytes")
@_dither_option("--rdo", "--psnr", "--max-bytes")
@_max_pixels_option
@click.option("-f", "--force", is_flag=True, help="Replace OUT if it exists.")
@_skip_option()
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but warnings and errors.")
@_bulk_options("--format", "--summary")
def compress(images: tuple[str, ...], k: int | None, rdo: float, psnr: float | None, max_bytes: int | None,
             output: str | None, seed: int, max_iter: int, codec: str | None, palette_file: str | None,
             dither: str, max_pixels: int,
             force: bool, skip_existing: bool, quiet: bool, workers: int | None, summary: str | None) -> None:
    """Quantize each IMAGE to K colours and write a .kmq file.

    Several files or folders (searched recursively for images Pillow reads) are compressed in parallel,
    with a progress bar on a terminal and a summary at the end; a failed file does not stop the others.
    With --palette, no K-Means: every pixel gets its nearest entry of the given palette, the same in every file.
    With --psnr or --max-bytes kmq chooses K (and, for ctx and lzma, the --rdo strength) to meet the target.

    \b
    Example:
      kmq compress photo.png -k 16           # writes photo.kmq
      kmq compress - -k 8 -o - < a.png > a.kmq
      kmq compress a.png photos/ -k 16 -o out/ -j 4
      kmq compress slides/ --palette stain.gpl -o out/
      kmq compress photo.png -k 16 --codec ctx --rdo 2
      kmq compress photo.png --psnr 32       # ctx or lzma, unless --codec says
      kmq compress photo.png --max-bytes 50k
      kmq compress sky.png -k 16 --dither fs # gradients without bands
    """
    from . import api, stats

    _check_rdo_options(rdo, psnr, max_bytes, codec, dither)
    _check_skip(skip_existing, force)
    # A target asks for the smallest file (or the best in a size), and raw packs every label in full: in 20 kB a
    # 512x600 photo fits raw only at K = 1 (10.7 dB), ctx at K = 30 with rdo (29.8 dB). None: its search picks
    # ctx or lzma per image (a screenshot in 5,000 bytes: ctx 24.25 dB, lzma 45.13).
    targeted = psnr is not None or max_bytes is not None
    if not targeted:
        codec = codec or "raw"
    palette = _given_palette(palette_file, max_pixels, "k", "seed", "max_iter", "rdo", "psnr", "max_bytes")
    if _is_bulk(images, output, summary):
        from . import batch

        task = batch.CompressTask(k=k, seed=seed, max_iter=max_iter, codec=codec, max_pixels=max_pixels,
                                  overwrite=force, palette=palette, rdo=rdo, psnr=psnr, max_bytes=max_bytes,
                                  dither=dither, skip_existing=skip_existing)
        jobs = batch.sparing(_bulk_plan(batch.plan_compress, images, output), palette_file, "the --palette file",
                             skip_existing)
        _run_bulk(jobs, task, workers, summary or "table", quiet,
                  partial(_compressed_line, rdo_asked=rdo, targeted=targeted))
        return
    (image,) = images
    started = time.perf_counter()
    with _reported():
        _refuse_folder(output)
        output = output or (STDIO if image == STDIO else _beside(image, str(Path(image).with_suffix(".kmq"))))
        if _skips(skip_existing, output, image, quiet):
            return
        _check_output(output, image, force)
        if palette_file is not None:
            check_distinct(output, palette_file, "the --palette file")
        source = stdin() if image == STDIO else image
        # The bar (after 1 s) covers the file's writing too: lzma codes 12 MP labels in about 8 s.
        with _fit_progress(quiet, "Target search: fits and rdo runs" if targeted else "Compressing",
                           percent=not targeted) as progress:
            with warnings_about(image):
                if not targeted:
                    img = api.compress(source, k, seed=seed, max_iter=max_iter, codec=codec,
                                       max_pixels=max_pixels, rdo=rdo, palette=palette, dither=dither,
                                       progress=progress)
                else:
                    try:
                        img = api.compress_to(source, psnr=psnr, max_bytes=max_bytes, k=k, codec=codec,
                                              seed=seed, max_iter=max_iter, max_pixels=max_pixels,
                                              progress=progress)
                    except KmqError as e:  # "no file fits in N bytes" names no file, as a bulk run's errors do
                        raise type(e)(about(image, str(e))) from None
            size = api.write(output, img, overwrite=force)
        if output != STDIO and _named_like_an_image(output):
            warnings.warn(f"{output}: a .kmq file named like an image; kmq decompress writes images",
                          KmqWarning, stacklevel=1)
    if not quiet:
        click.echo(_compressed_line(image, output, stats.record(img, output, size, choices=True), size,
                                    time.perf_counter() - started, rdo_asked=rdo, targeted=targeted),
                   err=output == STDIO)


_QUICK = 1.0  # seconds: a target search (or stats run) that reports before this draws nothing (most take less)


class _Bar:
    """_fit_progress's callable(done, total): a transient rich bar on stderr, drawn from `after` seconds in
    (by a timer, whether or not anything has reported) or at the first report when after is 0."""

    def __init__(self, what: str, after: float, percent: bool) -> None:
        import threading

        self.what, self.after, self.percent = what, after, percent
        self.lock = threading.Lock()
        self.done, self.total, self.closed = 0, None, False
        self.bar: Any = None
        self.started = time.perf_counter()
        self.timer = threading.Timer(after, self._draw) if after > 0 else None
        if self.timer is not None:
            self.timer.daemon = True
            self.timer.start()

    def __call__(self, done: int, total: int | None) -> None:
        if self.bar is None and time.perf_counter() - self.started >= self.after:
            self._draw()
        with self.lock:
            self.done, self.total = done, total
            if self.bar is not None:
                self.bar.update(self.task, completed=done, total=total)

    def echo(self, line: str) -> None:
        """A line on stderr, above the bar while it is drawn (a plain write there would join the bar's line)."""
        with self.lock:
            if self.bar is not None:
                self.bar.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
                return
        _to_stderr(line)

    def _draw(self) -> None:
        # rich is imported with no lock held: an import waits on Python's import locks, and a Ctrl-C inside an
        # import once left one of those taken, the timer waiting on it with this lock held and the command's
        # thread waiting on this lock (a hang; the timer thread is a daemon, so it cannot hold the exit now).
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn)

        with self.lock:
            if self.bar is not None or self.closed:
                return
            count = TaskProgressColumn() if self.percent else MofNCompleteColumn()
            # stdout stays the process's own: a .kmq written to it (-o -) goes there byte for byte.
            self.bar = Progress(TextColumn(self.what), BarColumn(), count, TimeElapsedColumn(),
                                console=Console(stderr=True), transient=True, redirect_stdout=False,
                                get_time=time.perf_counter)
            self.bar.start()
            self.task = self.bar.add_task("fit", total=self.total, completed=self.done, start=False)
            # Its elapsed time from the work's start, as the summary line counts, not from the bar's first draw.
            self.bar.tasks[-1].start_time = self.started

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        with self.lock:  # a timer firing now finds the bar closed, and draws nothing
            self.closed = True
            if self.bar is not None:
                self.bar.stop()


def _bars_drawn(stream: Any) -> bool:
    """Whether a progress bar can be drawn on stream: a terminal that can move its cursor (TERM=dumb, as Emacs'
    shell sets, cannot: rich then draws nothing but left a blank line at the end)."""
    return stream.isatty() and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")


@contextmanager
def _fit_progress(quiet: bool, what: str, after: float = _QUICK, percent: bool = True) -> Iterator[Any]:
    """A progress callback for a long K-Means (or a target's search, a stats run, a montage): on a terminal, a
    transient rich bar on stderr (`_Bar`). With after > 0 it appears `after` seconds in whether or not anything
    has reported by then (a long step, such as lzma coding 12 MP, would otherwise leave the screen blank), a
    count without an end until the first report; with after 0, at the first report. None when quiet or piped.
    percent: the bar shows a percentage, else done/total (a count, where the total is known only at the end)."""
    if quiet or not _bars_drawn(sys.stderr):
        yield None
        return
    bar = _Bar(what, after, percent)
    try:
        yield bar
    finally:
        bar.close()


def _bulk_plan(planner: Any, inputs: tuple[str, ...], output: str | None) -> list[batch.Job]:
    """The jobs of a bulk run. With one input that is not a folder, -o names the output file (as it does
    without --summary) unless it ends in "/"."""
    from . import batch

    if STDIO in inputs and len(inputs) > 1:
        raise click.UsageError(STDIN_ALONE)
    with _reported():
        if _names_a_file(inputs, output):
            _refuse_folder(output)
            return batch.single(inputs[0], output)
        _check_bulk_output(output)
        return planner(inputs, output)


def _beside(source: str, output: str) -> str:
    """output, the default name beside source, unless source is a pipe or a device (<(...), /dev/stdin):
    /dev/fd/63.kmq cannot be made, and /dev/stdin.kmq would be a file in /dev."""
    if is_special(source):
        raise click.UsageError(f"{_shown(source)} is a pipe or a device: name the output with -o")
    return output


def _named_like_an_image(path: str) -> bool:
    """Whether path ends in an image format's extension (.kmq is not one here, though Pillow knows it)."""
    suffix = Path(path).suffix.lower()
    return suffix != ".kmq" and suffix in Image.registered_extensions()


def _check_bulk_output(output: str | None) -> None:
    """A bulk run's -o is a folder: stdout cannot be one (usage error, as other options that do not go
    together), and a new one named like a file (x.kmq, x.png) is a slip, not a wish for a folder."""
    if output == STDIO:
        raise click.UsageError(STDOUT_NOT_BULK)
    if output is None or output.endswith(("/", os.sep)) or Path(output).exists():
        return
    if Path(output).suffix.lower() == ".kmq" or _named_like_an_image(output):
        raise click.UsageError(f"-o {_shown(output)} names a file, but a bulk run writes one file per input into "
                               f"a folder; end -o with a slash ({_shown(output)}/) if that is the folder you want")


def _names_a_file(inputs: tuple[str, ...], output: str | None) -> bool:
    return (output is not None and output != STDIO and not output.endswith(("/", os.sep)) and len(inputs) == 1
            and (inputs[0] == STDIO or not Path(inputs[0]).is_dir()))


def _refuse_folder(output: str | None) -> None:
    """-o names a file here: if it is a folder, say how to write into it."""
    if output is not None and output != STDIO and Path(output).is_dir():
        raise KmqError(f"{output} is a folder: to write into it, end -o with a slash ({output}/)")


def _check_rdo_options(rdo: float, psnr: float | None, max_bytes: int | None, codec: str | None,
                       dither: str = "none") -> None:
    if dither != "none" and (rdo or psnr is not None or max_bytes is not None):
        raise click.UsageError("--dither fs cannot be combined with --rdo or a target: rdo moves labels into runs "
                               "the codec stores cheaply, dithering spreads them into noise, and each undoes the "
                               "other")
    if psnr is not None and max_bytes is not None:
        raise click.UsageError("give --psnr or --max-bytes, not both")
    if rdo and (psnr is not None or max_bytes is not None):
        raise click.UsageError("--rdo cannot be combined with --psnr or --max-bytes: the target chooses the "
                               "rdo strength")
    if rdo and codec in (None, "raw"):
        # (with no --codec the user never named raw: say it is the default)
        raw = "raw, the default codec" if codec is None else "raw"
        raise click.UsageError(f"every labelling costs the same bytes with {raw}, so --rdo cannot help; use --codec "
                               "ctx (or lzma)")


def _skips(skip_existing: bool, output: str | None, source: str, quiet: bool, *, there: bool | None = None,
           shown: str | None = None, what: str = "it exists") -> bool:
    """--skip-existing in a single run: the output there already (``there``: every output, segment's) is said
    (unless -q; as ``shown``, ``what``) and left alone, as a bulk run's is (a missing input is still an error;
    stdin is read to its end, as there, so that what feeds it does not end on a broken pipe)."""
    from .fileio import read_bytes, written_before

    if not skip_existing or not (written_before(output) if there is None else there):
        return False
    if source != STDIO and not os.path.exists(source):
        raise KmqError(f"{source}: no such file or directory")  # (as the bulk run says, skipping or not)
    if output is not None:
        check_distinct(output, source)  # the input itself is not an output that was written before
    if source == STDIO:
        read_bytes(STDIO)
    if not quiet:
        click.echo(_skipped_line(source, shown or output, what))
    return True


def _check_output(output: str, source: str, force: bool = False) -> None:
    """What would refuse the output, checked before the work (a target's search can take seconds)."""
    _refuse_terminal(output)
    check_distinct(output, source)
    check_writable(output, overwrite=force)


def _refuse_terminal(output: str | None) -> None:
    """-o - on a terminal: the bytes of a file would garble it, so they need stdout redirected."""
    if output == STDIO and sys.stdout.isatty():
        raise KmqError("not writing binary data to a terminal; redirect stdout or give -o FILE")


def _compressed_line(image: str | Path, output: str | Path, r: dict[str, Any], size: int, seconds: float,
                     rdo_asked: float = 0.0, targeted: bool = False) -> str:
    psnr = _db(r["psnr"])
    # A target records the rdo it chose, 0 included: "rdo off" says it chose none (a "0%" read as a bug).
    # raw stores every labelling in the same bytes: a target's "rdo": 0 there says nothing. An --rdo whose
    # labels saved nothing leaves the plain file, which records no rdo: said, or --rdo 1000 looks ignored.
    rdo = r.get("rdo")
    if rdo is None and rdo_asked:
        chosen = f", rdo {rdo_asked:g}% saved nothing (the plain file)"
    else:
        chosen = "" if rdo is None or r["codec"] == "raw" else f", rdo {rdo:g}%" if rdo else ", rdo off"
    chosen += f", dither {r['dither']}" if r.get("dither") else ""
    # a target's search chose the codec too (ctx or lzma when none was given)
    chosen = f", codec {r['codec']}{chosen}" if targeted else chosen
    return (f"{_shown(image)} -> {_shown(output)}: k={r['k']}{chosen}, {_plural(r['bits_per_label'], 'bit')}/label, "
            f"{_RATIO.lower()} {r['ratio']:.2f}, {size:,} bytes, {psnr if psnr == 'lossless' else 'PSNR ' + psnr}, "
            f"{seconds:.2f} s")


# The tutorial's ratio (labels packed at bits_per_label plus the palette, over 8 bits per channel), as people
# read it: a bare "ratio" beside a file's bytes reads as bytes after / before, which it is not (ctx files are
# far smaller than their packed bits, and the input file is usually compressed already). Machine keys keep
# the name "ratio".
_RATIO = "Packed/original bits"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@main.command(short_help="Decode .kmq files back to images.")
@click.argument("files", nargs=-1, required=True, metavar="FILE...",
                type=PATH)
@click.option("-o", "--output", type=OUTPUT,
              help="Output image (default: FILE + .png; '-' for stdout). Its extension picks the format. "
                   "With several inputs or a folder, or ending in '/', the output folder (default: beside each input).")
@click.option("--format", "fmt", metavar="NAME",
              help="Image format when writing to stdout or overriding the extension (e.g. PNG, WEBP, BMP).")
@click.option("--truecolor", is_flag=True,
              help="Write RGB(A) pixels (grey: 8-bit levels) even when K <= 256 (by default PNG gets a "
                   "palette image: the same pixels in fewer bytes). Not for GIF, always a palette image.")
@_max_pixels_option
@click.option("-f", "--force", is_flag=True, help="Replace OUT if it exists.")
@_skip_option()
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but warnings and errors.")
@_bulk_options("--summary")
def decompress(files: tuple[str, ...], output: str | None, fmt: str | None, truecolor: bool, max_pixels: int,
               force: bool, skip_existing: bool, quiet: bool, workers: int | None, summary: str | None) -> None:
    """Decode each .kmq FILE back to an image.

    Several files or folders (searched recursively for *.kmq) are decoded in parallel, as for compress;
    each output is named FILE + .png (or the --format's extension).

    \b
    Example:
      kmq decompress photo.kmq               # writes photo.kmq.png
      kmq decompress photo.kmq -o photo.webp
      kmq decompress out/ -o restored/ --summary json
    """
    from . import api
    from .format import told_if_image
    from .imageio import format_for, writable_format

    _check_skip(skip_existing, force)
    if _is_bulk(files, output, summary):
        from . import batch

        with _reported():
            # One file with -o FILE: the format from its extension, as without --summary; else PNG.
            if _names_a_file(files, output):
                _refuse_folder(output)
                fmt = fmt or format_for(output)
            typed = fmt or "PNG"  # names the outputs as the user spelt it (--format jpg: x.kmq.jpg)
            fmt = writable_format(typed)
        jobs = _bulk_plan(lambda inputs, out: batch.plan_decompress(inputs, out, typed), files, output)
        task = batch.DecompressTask(fmt=fmt, max_pixels=max_pixels, overwrite=force, truecolor=truecolor,
                                    skip_existing=skip_existing)
        _run_bulk(jobs, task, workers, summary or "table", quiet,
                  lambda file, out, r, size, seconds: _decompressed_line(file, out, r, fmt, seconds))
        return
    (file,) = files
    started = time.perf_counter()
    with _reported():
        _refuse_folder(output)
        if output is None:
            from .imageio import suffix_for

            output = STDIO if file == STDIO else _beside(file, file + suffix_for(fmt or "PNG"))
        # A name kmq cannot write is a mistake to say, not an output written before.
        _ = writable_format(fmt) if fmt else _format_of(output)
        if _skips(skip_existing, output, file, quiet):
            return
        _check_output(output, file, force)
        with told_if_image():
            img = api.read(file, max_pixels=max_pixels)
        with warnings_about("<stdout>" if output == STDIO else output):  # Pillow's own (IM is deprecated) name none
            fmt = api.export(img, output, format=fmt, overwrite=force, truecolor=truecolor)
    if not quiet:
        size = {"width": img.width, "height": img.height}
        click.echo(_decompressed_line(file, output, size, fmt, time.perf_counter() - started),
                   err=output == STDIO)


def _decompressed_line(file: str | Path, output: str | Path, r: dict[str, Any], fmt: str, seconds: float) -> str:
    return f"{_shown(file)} -> {_shown(output)}: {r['width']}x{r['height']} {fmt}, {seconds:.2f} s"


@main.command("stats", short_help="Size tables in bits and bytes, J and PSNR, per K.")
@click.argument("inputs", nargs=-1, required=True, type=PATH)
@click.option("-k", "ks", type=K_RANGE, multiple=True, help="Palette size for image inputs; repeat it "
              "for several (default 16). A .kmq input reports its own (with a warning if -k differs).")
@click.option("--sweep", is_flag=True, help="Also K = 2, 4, 8, ..., 256 (powers of two): a rate-distortion "
              "curve, up to the first lossless K.")
@click.option("--format", "fmt", type=click.Choice(["table", "tsv", "csv", "json"]), default="table",
              show_default=True, help="table for people; tsv, csv or json for scripts.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="K-Means random seed.")
@click.option("--codec", type=click.Choice([*CODECS, "all"]),
              help="Report file_bytes with this codec, or with each codec ('all'). Default: images as raw, "
                   ".kmq files as stored.")
@click.option("--reference", is_flag=True, help="Also the bytes of the same pixels as PNG-8 and as lossless "
              "WebP (png8_bytes, webp_bytes).")
@click.option("--plot", "plot_path", type=_Path(dir_okay=False), metavar="FILE",
              help="Also draw the records as a rate-distortion chart (PSNR against bits per pixel) into FILE "
                   "(.png, .svg or .pdf). Needs matplotlib: pip install 'kmq[plot]'.")
@click.option("-f", "--force", is_flag=True, help="Replace the --plot FILE if it exists.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bar, no message about the --plot FILE (the records are printed).")
@RDO_OPTION
@_palette_option("-k", "--seed", "--sweep", "--rdo")
@_dither_option("--rdo")
@_max_pixels_option
def stats_command(inputs: tuple[str, ...], ks: tuple[int, ...], sweep: bool, fmt: str, seed: int,
                  codec: str | None, reference: bool, plot_path: str | None, force: bool, quiet: bool,
                  rdo: float, palette_file: str | None, dither: str, max_pixels: int) -> None:
    """Print the size tables (in bits, as the tutorial counts them) for images and .kmq files.

    Keys: file, width, height, channels, k, bits_per_label, original_bits, labels_bits, codebook_bits,
    compressed_bits, ratio, file_bytes, distortion, psnr, codec, bits_per_pixel, png8_bytes, webp_bytes
    (the last two null unless --reference). An image gives one record per -k, in the order given (a repeated
    -k, and a -k past the first lossless one, repeat a record: compressed in memory once).
    Folders are searched recursively for images and .kmq files.

    \b
    Example:
      kmq stats photo.png -k 2 -k 3 -k 6 -k 16
      kmq stats photo.kmq --format json
      kmq stats photo.png -k 64 --codec all   # raw vs lzma vs ctx
      kmq stats photo.png --sweep --codec ctx --reference --plot rd.png
      kmq stats slides/*.png --palette stain.gpl
      kmq stats photo.png -k 64 --codec ctx --rdo 2
    """
    from . import plot

    # The usage checks before a folder is walked (a big tree costs time), on the inputs as given.
    if plot_path == STDIO:
        raise click.UsageError("--plot needs a file name: stdout carries the records")
    if inputs.count(STDIO) > 1:
        raise click.UsageError("stdin (-) can be read only once: give it once among the inputs")
    if plot_path is not None and not plot.available():
        raise click.ClickException(f"--plot needs matplotlib: {plot.INSTALL}")
    if any(i != STDIO and Path(i).is_dir() for i in inputs):
        with _reported():
            try:
                inputs = _stats_inputs(inputs)
            except KmqError:  # folders with nothing to report: still [] or the header line for a script
                _print_records([], fmt)
                raise
    # .kmq files are reported as stored (with a warning that --rdo does not apply), whatever their codec:
    # only images would be reported raw by default.
    stored = codec is None and all(i != STDIO and Path(i).suffix.lower() == ".kmq" for i in inputs)
    _check_rdo_options(rdo, None, None, "ctx" if stored else codec, dither)
    palette = _given_palette(palette_file, max_pixels, "ks", "seed", "sweep", "rdo")
    records: list[dict[str, Any]] = []
    failed: list[KmqError] = []
    with _reported():
        if plot_path is not None:
            for source in inputs:
                check_distinct(plot_path, source)
            plot.check_target(plot_path, overwrite=force)
        with _fit_progress(quiet, "Measuring") as report:
            _measure_all(inputs, records, failed, report, ks=ks, seed=seed, codec=codec, reference=reference,
                         max_pixels=max_pixels, palette=palette, rdo=rdo, dither=dither, sweep=sweep)
        # The records first: they stand even when the chart cannot be drawn (every record lossless).
        _print_records(records, fmt)
        if len(inputs) == 1 and failed:
            raise failed[0]
        if failed:
            # No chart of some of the inputs: a chart is written whole or not at all.
            raise click.ClickException(f"{_plural(len(failed), 'input')} of {len(inputs)} failed"
                                       + ("; no chart" if plot_path is not None else ""))
        if plot_path is not None:
            drawn = plot.write_chart(records, plot_path, overwrite=force)
    if plot_path is not None and not quiet:
        click.echo(f"rate-distortion chart -> {_shown(plot_path)}: {_plural(drawn, 'point')}", err=True)


def _measure_all(inputs: tuple[str, ...], records: list[dict[str, Any]], failed: list[KmqError], report: Any,
                 **options: Any) -> None:
    """stats.measure over the inputs into records; each failed input's error into failed (and, among several,
    its Error: line at once). report: _fit_progress's callable (or None), told the share of the whole run;
    warnings and errors are written above its bar."""
    from . import stats

    echo = _to_stderr if report is None else report.echo
    for i, source in enumerate(inputs):
        share = None if report is None else \
            (lambda done, total, i=i: report(round(STEPS * (i + done / total) / len(inputs)), STEPS))
        # One unreadable input among many costs its own records only, as in a bulk compress.
        # Each input's warnings as it is done, beside its Error: line if it fails, not all at the end.
        try:
            with _warned(echo), warnings_about(source):  # (Pillow's too: the library names only kmq's own)
                records += stats.measure(source, progress=share, **options)
        except KmqError as e:
            failed.append(e if len(inputs) == 1 else KmqError(about(source, str(e))))
            if len(inputs) > 1:
                echo(f"Error: {_error(failed[-1])}")


STEPS = 1000  # a stats run's bar: per mille of the whole


def _print_records(records: list[dict[str, Any]], fmt: str) -> None:
    # A script parses json, tsv and csv even when every input failed: [] or the header line, not nothing.
    # Through fileio, as every byte stream to stdout (kmq.stdout makes a failure there one clean error).
    if records or fmt != "table":
        # Scripts' formats are UTF-8 wherever they go; the table, for people, in their terminal's encoding.
        encoding = ("utf-8", "strict") if fmt != "table" else (_encoding(sys.stdout), "backslashreplace")
        write_atomic(STDIO, (_RENDER[fmt](records) + ("" if fmt == "csv" else "\n")).encode(*encoding))


def _stats_inputs(inputs: tuple[str, ...]) -> tuple[str, ...]:
    """The inputs with each folder replaced by its images and .kmq files, found as bulk runs find them, but
    every input kept as given (a file given twice is reported twice, as without a folder)."""
    from . import batch

    suffixes = batch.image_suffixes() | {batch.KMQ_SUFFIX}
    jobs = batch.plan(inputs, None, wanted=lambda p: p.suffix.lower() in suffixes, rename=lambda p: p,
                      kind="images or .kmq files", once=False)
    # A file named on the command line keeps its spelling (./a.png, which Path shortens to a.png), as it does
    # without a folder among the inputs: a script matches the file column against what it passed.
    given = {Path(i): i for i in inputs if i != STDIO and not Path(i).is_dir()}
    return tuple(given.get(job.source, str(job.source)) for job in jobs)


def _db(value: float | None) -> str:
    if value is None:
        return "unknown"
    return "lossless" if math.isinf(value) else f"{value:.2f} dB"


def _plain(value: Any) -> str:
    """A value as scripts read it in tsv/csv: full precision, empty for unknown."""
    return "" if value is None else valid_unicode(str(value))


def _jsonable(value: Any) -> Any:
    """value ready for strict JSON: strings valid Unicode (errors.valid_unicode); infinity and NaN, which JSON
    lacks, null (a lossless file's psnr is null, recognisable by its distortion of 0)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return valid_unicode(value)
    if isinstance(value, dict):
        return {_jsonable(key): _jsonable(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _json(value: Any) -> str:
    return json.dumps(_jsonable(value), indent=2)


def _tsv_field(value: Any) -> str:
    return "" if value is None else _one_line(str(value))


def _error(e: KmqError | str) -> str:
    """A library error as an Error: line says it: in the command line's words (_reworded), shown."""
    return _shown(_reworded(str(e)))


def _reworded(message: str) -> str:
    """A library message in the command line's words: its hints at overwrite=True, max_pixels and k are -f,
    --max-pixels and -k here (errors.CLI_WORDS)."""
    for library, cli in CLI_WORDS.items():
        message = message.replace(library, cli)
    return message


def _cli_words(result: dict[str, Any]) -> dict[str, Any]:
    """A bulk run's result for --summary json, its error as the Error: line on stderr says it."""
    return {**result, "error": _reworded(result["error"])} if result["error"] else result


def _as_tsv(records: list[dict[str, Any]]) -> str:
    from . import stats

    lines = ["\t".join(stats.FIELDS)]
    lines += ["\t".join(_tsv_field(r[key]) for key in stats.FIELDS) for r in records]
    return "\n".join(lines)


def _as_csv(records: list[dict[str, Any]]) -> str:
    import csv
    from . import stats

    # Python's csv quotes a field for the characters of its line terminator, so "\n" alone left a bare "\r" in
    # a name unquoted, and csv.reader split the record there. Written with "\r\n", each record's own ending is
    # then made "\n" (inside quotes a "\r\n" stays as it is).
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    rows = [stats.FIELDS] + [[_plain(r[key]) for key in stats.FIELDS] for r in records]
    lines = []
    for row in rows:
        writer.writerow(row)
        lines.append(out.getvalue()[:-2] + "\n")
        out.seek(0)
        out.truncate()
    return "".join(lines)


# The tutorial's names for its table rows, then ours.
_TABLE_ROWS = (
    ("Original size", lambda r: f"{r['original_bits']}"),
    ("Compressed Image size", lambda r: f"{r['labels_bits']}"),
    ("Centroids size", lambda r: f"{r['codebook_bits']}"),
    ("Compressed size", lambda r: f"{r['compressed_bits']}"),
    ("Compression ratio", lambda r: f"{r['ratio']:.2f}"),
    ("Codec", lambda r: r["codec"]),
    ("File size (bytes)", lambda r: f"{r['file_bytes']}"),
    ("Bits per pixel (file)", lambda r: f"{r['bits_per_pixel']:.3f}"),
    ("Distortion J", lambda r: "unknown" if r["distortion"] is None else f"{r['distortion']:.2f}"),
    ("PSNR", lambda r: _db(r["psnr"])),
)
# Shown only when some record has them (stats --reference).
_REFERENCE_ROWS = (
    ("PNG-8 (bytes)", "png8_bytes"),
    ("WebP lossless (bytes)", "webp_bytes"),
)


def _as_table(records: list[dict[str, Any]]) -> str:
    """One column per record, as the tutorial has them; records that would not fit the terminal's width (80
    when stdout is not a terminal) go on to further tables below, each as wide as fits."""
    import shutil

    width = shutil.get_terminal_size((80, 24)).columns
    records = [r | {"title": t} for r, t in zip(records, _titles(records))]
    groups: list[list[dict[str, Any]]] = [[]]
    used = metric = _natural_width(_sizes_table([]))
    for r in records:
        extra = _natural_width(_sizes_table([r])) - metric  # this record's column, borders included
        if groups[-1] and used + extra > width:
            groups.append([])
            used = metric
        groups[-1].append(r)
        used += extra
    if len(groups) == 1:
        return _text(_sizes_table(records), width)
    tables, first = [], 1
    for group in groups:
        last = first + len(group) - 1
        title = f"Sizes in bits ({first}{'' if last == first else f'-{last}'} of {len(records)})"
        tables.append(_text(_sizes_table(group, title), width))
        first += len(group)
    return "\n\n".join(tables)


def _sizes_table(records: list[dict[str, Any]], title: str = "Sizes in bits") -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    # (row names folded at a narrow width, not cut: three rows had read "Compr…")
    table.add_column("Metric", overflow="fold")
    for r in records:
        # Text, not a str: rich would read a name's "[...]" as markup and drop it. The name folds, a number
        # is cut with an ellipsis (folded, 165074 over 4 reads as two numbers).
        table.add_column(Text(f"{r['title']}\nK={r['k']}", overflow="fold"), justify="right")
    for name, cell in _TABLE_ROWS:
        table.add_row(name, *(cell(r) for r in records))
    for name, key in _REFERENCE_ROWS:
        if any(r[key] is not None for r in records):
            table.add_row(name, *("-" if r[key] is None else f"{r[key]}" for r in records))
    return table


def _titles(records: list[dict[str, Any]]) -> list[str]:
    """Each record's column title: its file's base name, or the whole path as given where two different
    files share a base name (bulk/a.png and bulk/sub/a.png)."""
    names: dict[str, set[str]] = {}
    for r in records:
        names.setdefault(Path(r["file"]).name, set()).add(r["file"])
    return [_shown(Path(r["file"]).name if len(names[Path(r["file"]).name]) == 1 else r["file"])
            for r in records]


def _natural_width(renderable: Any) -> int:
    from rich.console import Console

    return Console(width=100_000).measure(renderable).maximum


def _text(renderable: Any, width: int | None = None) -> str:
    """A rich renderable as plain text (no colour, no terminal codes) for stdout: as wide as the terminal (80
    when stdout is none), its borders ASCII where stdout's encoding has no box-drawing characters."""
    import shutil

    from rich.console import Console

    out = _Encoded(_encoding(sys.stdout))
    width = shutil.get_terminal_size((80, 24)).columns if width is None else width
    Console(file=out, width=width, force_terminal=False, color_system=None).print(renderable)
    return out.getvalue().rstrip("\n")


class _Encoded(io.StringIO):
    """Text bound for a stream of this encoding: rich draws its tables in ASCII for one that is not UTF."""

    def __init__(self, encoding: str) -> None:
        super().__init__()
        self._encoding = encoding

    @property
    def encoding(self) -> str:  # (StringIO's own is None, which rich takes for UTF-8)
        return self._encoding


_RENDER = {"table": _as_table, "tsv": _as_tsv, "csv": _as_csv, "json": _json}


# --- bulk runs -------------------------------------------------------------------------------------------

def _run_bulk(jobs: list[batch.Job], task: Any, workers: int | None, fmt: str, quiet: bool, line: Any) -> None:
    """Run the jobs, reporting each file as it finishes, then the summary; exit 1 if any file failed."""
    from . import batch

    results: list[batch.Result] = []
    held: list[tuple[batch.Job, str]] = []
    with _progress(jobs, quiet) as (say, advance), _warned(lambda line: say(line, True)):
        for result in batch.run(jobs, task, workers):  # (its own warning: no worker processes could start)
            results.append(result)
            _say_problems(result, say, held)
            if result.skipped and not quiet and fmt == "table":
                say(_skipped_line(result.job.source, result.job.target), False)
            elif not result.error and not quiet and fmt == "table":
                say(line(result.job.source, result.job.target, result.record, result.bytes_after,
                         result.seconds), False)
            advance(result.job)
        for warning in batch.fewer_colours_lines(held, len(jobs)):
            say(f"Warning: {_shown(warning)}", True)
    results.sort(key=lambda r: r.job.index)
    summary = batch.summarize(results)
    if fmt == "json":
        extra = getattr(task, "EXTRA_FIELDS", ())
        click.echo(_json({**summary, "results": [_cli_words(r.as_dict(extra)) for r in results]}))
    elif not quiet:
        click.echo(_summary_table(summary))
    if summary["failed"]:
        click.get_current_context().exit(1)


def _say_problems(result: batch.Result, say: Any, held: list | None = None) -> None:
    """A bulk run's file's warnings and error, each one line on stderr; into held, if given, those that
    batch.fewer_colours_lines says once for the run."""
    from . import batch

    for warning in result.warnings:
        if held is not None and batch.fewer_colours(warning):
            held.append((result.job, warning))
        else:
            say(f"Warning: {_shown(warning)}", True)
    if result.error:
        say(f"Error: {_error(result.error)}", True)


@contextmanager
def _progress(jobs: list[batch.Job], quiet: bool) -> Iterator[tuple[Any, Any]]:
    """(say(text, to_stderr), advance(job)): on a terminal a rich bar on stderr (files, bytes, ETA) with the
    lines printed above it; piped or with -q, plain lines and no bar."""
    if quiet or not (sys.stdout.isatty() and _bars_drawn(sys.stderr)):
        yield (lambda text, err: click.echo(text, err=err)), (lambda job: None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[files]}"),
               DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        total = sum(job.size for job in jobs)
        task = bar.add_task("kmq", total=total or None, files=f"0/{len(jobs)} files")
        done = 0

        def advance(job: batch.Job) -> None:
            nonlocal done
            done += 1
            bar.update(task, advance=job.size, files=f"{done}/{len(jobs)} files")

        yield (lambda text, err: bar.console.print(text, markup=False, highlight=False, soft_wrap=True)), advance


def _summary_table(s: dict[str, Any]) -> str:
    from rich.table import Table

    table = Table(title="Summary", show_header=False)
    others = [f"{s[key]} {key}" for key in ("failed", "skipped") if s[key]]
    failed = f" ({', '.join(others)})" if others else ""
    for name, value in [("Files", f"{s['succeeded']} of {s['files']}{failed}"),
                        ("Bytes before", f"{s['bytes_before']:,}"), ("Bytes after", f"{s['bytes_after']:,}"),
                        (f"Mean {_RATIO.lower()}", "unknown" if s["mean_ratio"] is None else f"{s['mean_ratio']:.2f}"),
                        ("Mean PSNR", _db(s["mean_psnr"]))]:
        table.add_row(name, value)
    return _text(table)


# --- seeing the clusters ---------------------------------------------------------------------------------

def _format_of(output: str) -> str:
    from .imageio import format_for

    return "PNG" if output == STDIO else format_for(output)


def _save(output: str, pixels: Any, force: bool, fmt: str | None = None) -> None:
    """Write pixels as an image in fmt, or the format the output's extension picks (PNG on stdout)."""
    from .imageio import save_image

    fmt = fmt or _format_of(output)
    name = "<stdout>" if output == STDIO else output
    with warnings_about(name):  # Pillow's own (IM is deprecated) name no file
        write_atomic(output, lambda f: save_image(pixels, f, format=fmt, name=name), overwrite=force)


def _stem(path: str) -> str:
    return "stdin" if path == STDIO else Path(path).stem


def _clustering_options(f):
    """-k and --seed for commands whose INPUT is an image (clustered first) or a .kmq (used as stored)."""
    f = click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="K-Means random seed.")(f)
    return click.option("-k", "k", type=K_RANGE, default=None,
                        help="Palette size for an image INPUT (default 16; a .kmq INPUT has its own, and a "
                             "warning says so if -k differs).")(f)


@main.command("segment", short_help="Draw the clusters of images or .kmq files.")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...", type=PATH)
@_clustering_options
@click.option("-o", "--output", type=OUTPUT,
              help="Output image; its extension picks the format ('-' for PNG on stdout). With several inputs "
                   "or a folder, or ending in '/', the output folder: one DIR/<stem>.png per input (or the "
                   "--format's extension).")
@click.option("--format", "fmt", metavar="NAME",
              help="Image format of the pictures (e.g. PNG, WEBP, TIFF): for stdout, over -o's extension, or "
                   "for a bulk run's pictures (default PNG).")
@click.option("--style", type=click.Choice(STYLES), default="overlay", show_default=True,
              help="overlay: cluster colours over the grey image; labels: pixel values are the labels; "
                   "mean: the reconstruction; boundaries: cluster edges over the image.")
@click.option("--masks", "masks_dir", type=_Path(),
              help="Also write one binary PNG per cluster to this folder: STEM-cluster-I.png, I zero-padded to "
                   "the digits of K - 1 (K = 16: 00 .. 15), so the names sort in label order.")
@_palette_option("-k", "--seed")
@_max_pixels_option
@click.option("-f", "--force", is_flag=True, help="Replace outputs that exist.")
@_skip_option("its picture and, with --masks, a mask of its name are")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but warnings and errors.")
@_bulk_options("--summary")
def segment_command(inputs: tuple[str, ...], k: int | None, seed: int, output: str | None, fmt: str | None,
                    style: str, masks_dir: str | None, palette_file: str | None, max_pixels: int, force: bool,
                    skip_existing: bool, quiet: bool, workers: int | None, summary: str | None) -> None:
    """Show the clusters of each INPUT: an image (clustered at K first) or a .kmq file (its stored labels).

    The labels style is an 8-bit PNG (16-bit above K = 256) whose pixel values are the labels; the masks
    partition the image (each pixel is white in exactly one).

    Several files or folders (searched recursively for images and .kmq files) are drawn in parallel, as for
    compress. Each image is clustered on its own unless --palette maps them all onto one: only then does
    label i mean the same colour in every file (make the palette with kmq palette).

    \b
    Example:
      kmq segment photo.png -k 3 -o clusters.png
      kmq segment photo.kmq --style labels -o labels.png --masks masks/
      kmq segment s1.png --palette stain.gpl --masks m/  # mask i: colour i in all
      kmq segment slides/ --palette stain.gpl -o seen/ --masks masks/ -j 2
    """
    from . import segment
    from .imageio import writable_format

    bulk = _is_bulk(inputs, output, summary)
    _check_skip(skip_existing, force)
    if masks_dir == STDIO:
        # Many files cannot go to one stream; without this, one input would write into a folder named "-".
        raise click.UsageError("--masks takes a folder, not -")
    if output is None and masks_dir is None:
        raise click.UsageError(f"give -o {'DIR/' if bulk else 'OUT.png'}, --masks DIR, or both")
    if fmt is not None and output is None:
        # The masks are PNG whatever --format says: alone with them it would be silently ignored.
        raise click.UsageError("--format applies to the pictures; give -o")
    if (output is not None and masks_dir is not None and len(inputs) == 1
            and segment.is_mask(output, masks_dir, _stem(inputs[0]))):
        # The masks are written first: the picture would then replace one, or be refused as existing.
        raise click.UsageError(f"-o {_shown(output)} is one of the --masks files; write it elsewhere")
    if bulk:
        _segment_bulk(inputs, k, seed, output, fmt, style, masks_dir, palette_file, max_pixels, force,
                      skip_existing, quiet, workers, summary)
        return
    (input_path,) = inputs
    palette = _given_palette(palette_file, max_pixels, "k", "seed")
    with _reported():
        # (the format first: a name kmq cannot write is a mistake to say, not an output written before)
        fmt = None if output is None else writable_format(fmt) if fmt else _format_of(output)
        if _segment_skips(skip_existing, input_path, output, masks_dir, quiet):
            return
        if output is not None:
            _refuse_terminal(output)
            check_distinct(output, input_path)
            # before the clustering, which may take a while; the folder of the --masks is made first
            check_writable(output, overwrite=force, folder=masks_dir is None
                           or Path(output).parent.resolve() != Path(masks_dir).resolve())
            if style == "labels":
                segment.check_label_map_format(output, fmt)
        if masks_dir is not None and Path(masks_dir).exists() and not Path(masks_dir).is_dir():
            # An output problem (exit 1), as README lists them, found before any work or file.
            raise KmqError(f"cannot write masks into {masks_dir}: it is a file, not a folder")
        # The bar (after 1 s) covers the drawing and the masks too: 1,024 of them take seconds to write.
        with _fit_progress(quiet, "Segmenting") as progress:
            with warnings_about(input_path):  # (the input's; the picture's are named below, by its name)
                img, base = segment.quantized(input_path, k, seed=seed, max_pixels=max_pixels, palette=palette,
                                              progress=progress)
            if output is not None and style == "labels":
                segment.check_label_map_format(output, fmt, img.k)
            # The picture is encoded first (a format's refusal then comes before -f replaces any mask), the
            # masks written next (write_masks checks every name before writing any, so a refusal leaves
            # nothing), and a picture that cannot be written (a full disk) takes the masks just written with it.
            save = None
            view = None if output is None else segment.view_image(img, base, style)
            # The pixels are not needed once drawn: at 48 MP they were 144 MB beside the picture's encoding.
            del base
            if view is not None:
                name = "<stdout>" if output == STDIO else output
                with warnings_about(name):  # Pillow's own (IM is deprecated) name no file
                    picture = segment.encoded_picture(view, fmt, name)
                del view  # (nor is the view, once encoded, while the masks are written)
                save = partial(write_atomic, output, picture, overwrite=force)
            masks = segment.write_with_masks(img, masks_dir, _stem(input_path), save, overwrite=force)
    if quiet:
        return
    for line in _segmented_lines(input_path, output, style, (img.k, img.width, img.height), masks_dir,
                                 [m.name for m in masks]):
        click.echo(line, err=output == STDIO)


def _segment_skips(skip_existing: bool, input_path: str, output: str | None, masks_dir: str | None,
                   quiet: bool) -> bool:
    """--skip-existing in a single segment run: left alone when every output asked for is there."""
    if not skip_existing:
        return False
    from .batch import segment_there

    masks = None if masks_dir is None else Path(masks_dir) / _stem(input_path)
    shown, what = (output, "it exists") if output is not None else (masks_dir, "its masks exist")
    return _skips(True, output, input_path, quiet, there=segment_there(output, masks), shown=shown, what=what)


def _segment_bulk(inputs: tuple[str, ...], k: int | None, seed: int, output: str | None, fmt: str | None,
                  style: str, masks_dir: str | None, palette_file: str | None, max_pixels: int, force: bool,
                  skip_existing: bool, quiet: bool, workers: int | None, summary: str | None) -> None:
    """segment over several inputs or a folder: kmq.batch's runner, as compress's bulk run."""
    from . import batch, segment
    from .imageio import format_for, writable_format

    palette = _given_palette(palette_file, max_pixels, "k", "seed")
    with _reported():
        # One file with -o FILE: the format from its extension, as without --summary; else PNG.
        if output is not None and _names_a_file(inputs, output):
            fmt = fmt or format_for(output)
        typed = fmt or "PNG"  # names the pictures as the user spelt it (--format tif: x.tif)
        fmt = writable_format(typed)
        if output is not None and style == "labels":
            segment.check_label_map_format(_shown(output), fmt)
    clustered = k is not None or palette is not None
    jobs = _bulk_plan(lambda found, out: batch.plan_segment(found, out, masks_dir, typed, clustered=clustered),
                      inputs, output)
    task = batch.SegmentTask(k=k, seed=seed, max_pixels=max_pixels, palette=palette, style=style, fmt=fmt,
                             picture=output is not None, masks=masks_dir, overwrite=force,
                             skip_existing=skip_existing)
    _run_bulk(jobs, task, workers, summary or "table", quiet, _segmented_line)


def _segmented_line(source: Any, target: Any, r: dict[str, Any], size: int, seconds: float) -> str:
    """A bulk run's line(s) for one drawn file: as a single run's, the picture's then the masks'."""
    return "\n".join(_segmented_lines(source, None if r["style"] is None else target, r["style"],
                                       (r["k"], r["width"], r["height"]), r["masks_folder"], r["masks"]))


def _segmented_lines(source: Any, output: Any, style: str, shape: tuple[int, int, int], masks_dir: Any,
                     masks: list[str]) -> list[str]:
    """What segment says of one input: the picture's line, then the masks'. shape: (k, width, height)."""
    lines = []
    if output is not None:
        lines.append(f"{_shown(source)} -> {_shown(output)}: {style}, k={shape[0]}, {shape[1]}x{shape[2]}")
    if masks:
        names = _shown(masks[0]) + ("" if len(masks) == 1 else f" .. {_shown(masks[-1])}")
        lines.append(f"{_shown(source)} -> {_shown(masks_dir)}: {_plural(len(masks), 'mask')}, {names}")
    return lines


@main.command(short_help="An image beside its reconstruction at each K.")
@click.argument("image", type=PATH)
@click.option("-k", "ks", type=K_RANGE, multiple=True,
              help="A K to show; repeat it (default: 2, 3, 6 and 16, as the tutorial).")
@click.option("-o", "--output", type=OUTPUT, required=True,
              help="Output image; its extension picks the format ('-' for PNG on stdout).")
@click.option("--columns", type=click.IntRange(1), help="Panels per row (default: rows of at most four).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="K-Means random seed.")
@_palette_option("-k", "--seed")
@_dither_option(files=False)
@_max_pixels_option
@click.option("-f", "--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but warnings and errors.")
def montage(image: str, ks: tuple[int, ...], output: str, columns: int | None, seed: int,
            palette_file: str | None, dither: str, max_pixels: int, force: bool, quiet: bool) -> None:
    """Draw IMAGE beside its reconstruction at each K, every panel titled with K, the ratio and the PSNR.

    \b
    Example:
      kmq montage photo.png -k 2 -k 3 -k 6 -k 16 -o grid.png
      kmq montage s1.png --palette stain.gpl -o check.png  # the shared palette
    """
    from . import segment

    palette = _given_palette(palette_file, max_pixels, "ks", "seed")
    ks = ks or (2, 3, 6, 16)
    with _reported():
        _format_of(output)  # an output name without an image format refused before the clustering
        _refuse_terminal(output)
        check_distinct(output, image)
        check_writable(output, overwrite=force)  # before the clusterings
        with _fit_progress(quiet, "Fitting") as progress, warnings_about(image):
            figure = segment.montage_file(image, ks, seed=seed, columns=columns, max_pixels=max_pixels,
                                          palette=palette, dither=dither, progress=progress)
        _save(output, figure.pixels, force)
    if not quiet:
        height, width = figure.pixels.shape[:2]
        # The Ks the panels show: fewer colours than a K asked give that K's panel a smaller one.
        drawn = [str(p.record["k"]) for p in figure.panels if p.record is not None]
        shown = (f"K = {', '.join(drawn)}" if palette is None
                 else f"K = {len(palette.colors)} ({_shown(palette.name)})")
        click.echo(f"{_shown(image)} -> {_shown(output)}: original and {shown}, {width}x{height}", err=output == STDIO)


@main.command(short_help="What a .kmq holds: header, codec, J, palette.")
@click.argument("file", type=PATH)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="table for people (with colour swatches on a terminal); json for scripts.")
@_max_pixels_option
def info(file: str, fmt: str, max_pixels: int) -> None:
    """Show what a .kmq FILE holds: header, codec, distortion and seed, and its palette with each colour's
    share of the pixels.

    JSON keys: file, file_bytes, version, width, height, channels, mode, codec, k, bits_per_label,
    meta_bytes, payload_bytes, ratio, distortion, psnr, seed, metadata, palette; each palette entry has
    index, hex, rgb, share (and alpha for RGBA, whose hex is then #rrggbbaa).

    \b
    Example:
      kmq info photo.kmq
      kmq info photo.kmq --format json
    """
    from . import stats
    from .format import told_if_image

    with _reported():
        with told_if_image("kmq stats and kmq palette take images"):
            described = stats.describe(file, max_pixels=max_pixels)
    if fmt == "json":
        click.echo(_json(described))
        return
    from rich.console import Console

    Console(highlight=False).print(*_info_tables(described))


_INFO_ROWS_SHOWN = 256


def _seed_or_palette(d: dict[str, Any]) -> tuple[str, str]:
    source = d["metadata"].get("palette_source")
    if d["seed"] is None and isinstance(source, dict):  # made with a given palette: no K-Means, no seed
        return "Palette", f"{_shown(str(source.get('name')))} (sha256 {str(source.get('sha256'))[:16]}...)"
    return "Seed", "unknown" if d["seed"] is None else str(d["seed"])


def _made_with(meta: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows for the choices the metadata records beyond K and seed (the reader has checked their types)."""
    rows = []
    target = meta.get("target")
    if isinstance(target, dict):
        rows.append(("Target", f"PSNR >= {target['psnr']:g} dB" if "psnr" in target
                     else f"at most {target['max_bytes']:,} bytes"))
    if meta.get("rdo"):
        rows.append(("RDO", f"J up to {meta['rdo']:g} % over the nearest colours'"))
    if meta.get("dither") == "fs":
        rows.append(("Dither", "Floyd-Steinberg (fs)"))
    return rows


def _info_tables(d: dict[str, Any]) -> list[Any]:
    from rich.table import Table
    from rich.text import Text

    header = Table(title=Text(_shown(d["file"])), show_header=False, title_justify="left")
    for name, value in [
            ("File", f"{d['file_bytes']:,} bytes, .kmq version {d['version']}"),
            ("Image", f"{d['width']} x {d['height']}, {d['mode']}"),
            ("K", f"{d['k']} ({_plural(d['bits_per_label'], 'bit')} per label)"),
            ("Codec", f"{d['codec']}: payload {plural_bytes(d['payload_bytes'])}, "
                      f"metadata {plural_bytes(d['meta_bytes'])}"),
            (_RATIO, f"{d['ratio']:.2f}"),
            ("Distortion J", "unknown" if d["distortion"] is None else f"{d['distortion']:.2f}"),
            ("PSNR", _db(d["psnr"])),
            _seed_or_palette(d), *_made_with(d["metadata"])]:
        header.add_row(name, Text(value))  # Text: a palette file's "[...]" is not markup
    palette = Table(title="Palette", title_justify="left")
    for name in ("#", "colour", "hex", "rgb", "share"):
        palette.add_column(name, justify="right" if name in ("#", "share") else "left")
    for entry in d["palette"][:_INFO_ROWS_SHOWN]:
        rgb = "#" + bytes(entry["rgb"]).hex()
        palette.add_row(str(entry["index"]), Text(" " * 6, style=f"on {rgb}"), entry["hex"],
                        " ".join(f"{v:3d}" for v in entry["rgb"]), f"{entry['share']:.2%}")
    hidden = len(d["palette"]) - _INFO_ROWS_SHOWN
    if hidden > 0:
        palette.caption = f"and {hidden} more (all of them with --format json)"
    return [header, palette]


@main.command("palette", short_help="The palette of images or .kmq files; fit one for many.")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...",
                type=PATH)
@_clustering_options
@click.option("-o", "--output", type=OUTPUT,
              help="Write the palette here, in the format of its extension: .gpl (GIMP), .txt or .hex (one "
                   "#rrggbb a line), .json (as kmq info), .pal (JASC), .act (Photoshop), or an image extension "
                   "for a swatch. Without -o, print text.")
@click.option("--proportional", is_flag=True,
              help="Swatch: one bar, each colour as wide as its share of the pixels.")
@_max_pixels_option
@click.option("-f", "--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but warnings and errors.")
@click.option("-j", "--jobs", "workers", type=click.IntRange(1), default=None,
              help="Worker processes reading several inputs (default: one per core).")
def palette_command(inputs: tuple[str, ...], k: int | None, seed: int, output: str | None, proportional: bool,
                    max_pixels: int, force: bool, quiet: bool, workers: int | None) -> None:
    """The palette of INPUT (an image, clustered at K, or a .kmq file), or one palette fitted over several
    inputs (images, .kmq files, folders): K-Means over all their pixels together.

    Entries come in decreasing share of the pixels (a .kmq's in its stored order: by share, or one made
    with --palette in that palette's order). Without -o, one line per entry: its hex code and its
    share (the shares sum to 1). Give the palette file to compress, stats, segment or montage --palette
    so that label i means the same colour in every image. A palette file (.gpl, .txt, .hex, .json, .pal,
    .act) as the one INPUT is shown or converted as it is, in its order: hex codes only, since it holds no
    shares. A palette image file (PNG-8, GIF, 8-bit BMP) as the one INPUT without -k gives its own palette,
    every entry in its order, with each entry's share of its pixels (-k K, or stdin, clusters its pixels).

    \b
    Example:
      kmq palette photo.png -k 8                        # hex codes and shares
      kmq palette photo.kmq -o swatch.png --proportional
      kmq palette slides/ -k 6 -o stain.gpl -j 2        # one palette for a series
      kmq palette stain.gpl -o stain.png                # a palette file's swatch
    """
    from . import api, palettes, segment, stats

    if proportional and (output is None or _is_palette_file(output)):
        printed = "the printed palette" if output is None else "a palette file"
        raise click.UsageError(f"--proportional draws a swatch image (-o swatch.png); {printed} has no bar to draw")
    if STDIO in inputs and len(inputs) > 1:
        raise click.UsageError(STDIN_ALONE)
    single = len(inputs) == 1 and (inputs[0] == STDIO or not Path(inputs[0]).is_dir())
    if proportional and single and _is_palette_file(inputs[0]):
        raise click.UsageError(f"{_shown(inputs[0])} is a palette file, which holds no shares: --proportional "
                               f"has no bar to draw")
    with _reported():
        _refuse_terminal(output)
        if output is not None and output != STDIO:
            palettes.check_output(output)  # before the fit, which may take a while
            check_writable(output, overwrite=force)
        if single and _is_palette_file(inputs[0]):
            if output is not None:
                check_distinct(output, inputs[0])
            colors, share = _palette_file_shown(inputs[0], k, seed, max_pixels), None
            about = _shown(inputs[0])
            comment = f"kmq {__version__}: {_plural(len(colors), 'colour')} of {Path(inputs[0]).name}, in its order"
        elif single and (declared := _declared_palette(inputs[0], k, seed, max_pixels)) is not None:
            if output is not None:
                check_distinct(output, inputs[0])
            (colors, share), about = declared, _shown(inputs[0])
            comment = _fitted_comment(len(colors), Path(inputs[0]).name, None, False)
        elif single:
            if output is not None:
                check_distinct(output, inputs[0])
            with _fit_progress(quiet, "K-Means") as progress, warnings_about(inputs[0]):
                img, _ = segment.quantized(inputs[0], k, seed=seed, max_pixels=max_pixels, progress=progress)
            colors, share, about = img.palette, stats.shares(img.labels, img.k), _shown(inputs[0])
            # img's own seed and order: a .kmq input keeps those it was written with (--palette: none, its order)
            comment = _fitted_comment(len(colors), Path(inputs[0]).name if inputs[0] != STDIO else "stdin",
                                      img.seed, bool((share[:-1] >= share[1:]).all()))
        else:
            fitted = _fit_shared(inputs, api.DEFAULT_K if k is None else k, seed, output, max_pixels, workers,
                                 quiet)
            colors, share = fitted.palette, fitted.shares
            files, pixels = _plural(fitted.files, "file"), counted(fitted.pixels, "pixel")
            about = f"{files} ({pixels}, {counted(fitted.colours, 'colour')})"
            comment = _fitted_comment(len(colors), f"{files}, {pixels}, J "
                                                   f"{fitted.distortion:.2f}", seed)
        if output is not None:
            _write_palette(output, colors, share, proportional, force, comment)
    if output is None:
        for entry in palettes.entries(colors, share):
            click.echo(entry["hex"] if share is None else f"{entry['hex']} {entry['share']:.4f}")
    elif not quiet:
        extra = f", J {fitted.distortion:.2f}" if not single else ""
        click.echo(f"{about} -> {_shown(output)}: {_plural(len(colors), 'colour')}{extra}"
                   f"{', proportional' if proportional else ''}",
                   err=output == STDIO)


def _is_palette_file(output: str) -> bool:
    from . import palettes

    return output != STDIO and Path(output).suffix.lower() in palettes.FILE_SUFFIXES


def _fitted_comment(k: int, described: str, seed: int | None, by_share: bool = True) -> str:
    seeded = "" if seed is None else f", seed {seed}"
    order = "in decreasing share of the pixels" if by_share else "in the file's order"
    return f"kmq {__version__}: {_plural(k, 'colour')} of {described}{seeded}; {order}"


def _palette_file_shown(path: str, k: int | None, seed: int, max_pixels: int) -> Any:
    """The colours of a palette file given as palette's one input, in its order: nothing to fit."""
    from . import palettes

    asked = [o for o, on in ((f"-k {k}", k is not None), (f"--seed {seed}", seed != 0)) if on]
    if asked:
        verb = "does" if len(asked) == 1 else "do"
        warnings.warn(f"{path}: a palette file is shown as it is; {', '.join(asked)} {verb} not apply",
                      KmqWarning, stacklevel=2)
    return palettes.read(path, max_pixels=max_pixels).colors


def _declared_palette(path: str, k: int | None, seed: int, max_pixels: int) -> Any:
    """(colours, shares) of a palette image (PNG-8, GIF) given without -k as palette's one input: the palette
    it declares, in its order (as --palette reads it), each entry's share of its pixels; None for any other
    input (clustered). A game's master palette of 32 colours had come back as 16 clustered ones, by share."""
    from . import palettes

    # (a pipe or FIFO, stdin too, is read once: by the image's own read, clustered as before)
    if k is not None or path == STDIO or is_special(path) or Path(path).suffix.lower() == ".kmq":
        return None
    with warnings_about(path):
        declared = palettes.image_shares(path, max_pixels=max_pixels)
        if declared is not None and seed != 0:
            warnings.warn(f"{path}: a palette image's own palette is shown as it is; --seed {seed} does not apply "
                          f"(-k K clusters its pixels instead)", KmqWarning, stacklevel=2)
    return declared


def _fit_shared(inputs: tuple[str, ...], k: int, seed: int, output: str | None, max_pixels: int,
                workers: int | None, quiet: bool) -> Any:
    """shared.fit over the inputs' files with the bulk runs' progress bar; each unreadable file reported."""
    from . import shared

    jobs = shared.plan(inputs)
    for job in jobs:
        if output is not None:
            check_distinct(output, job.source)
    with _progress(jobs, quiet) as (say, advance):
        def on_read(result: batch.Result) -> None:
            _say_problems(result, say)
            advance(result.job)

        def holds(colours: Any) -> None:  # (an RGBA input makes an RGBA palette: refused before the fit)
            from . import palettes

            if output is not None and _is_palette_file(output):
                palettes.check_holds(output, colours.shape[1], min(k, len(colours)))

        return shared.fit(jobs, k, seed=seed, max_pixels=max_pixels, workers=workers, on_read=on_read,
                          before_fit=holds)


def _write_palette(output: str, colors: Any, share: Any, proportional: bool, force: bool, comment: str) -> None:
    from . import palettes, segment

    if _is_palette_file(output):
        palettes.write(output, colors, share, name=Path(output).stem, comment=comment, overwrite=force)
    else:
        _save(output, segment.swatch(colors, share, proportional=proportional), force)
