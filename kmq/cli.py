"""The `kmq` command. Each command parses its options, calls one library function and renders the result."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import click

from . import __version__, api, segment, stats
from .codecs import NAMES as CODECS
from .dither import METHODS as DITHERS
from .errors import KmqError
from .fileio import STDIO, check_distinct, write_atomic
from .format import DEFAULT_MAX_PIXELS, MAX_K
from .imageio import format_for, save_image

if TYPE_CHECKING:  # kmq.batch (process pools) is imported only by the bulk runs that use it
    from . import batch

K_RANGE = click.IntRange(1, MAX_K)


@contextmanager
def _reported() -> Iterator[None]:
    """Library errors become `Error: ...` with exit 1; library warnings become `Warning: ...` on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except KmqError as e:
            raise click.ClickException(str(e)) from None
        finally:
            for w in caught:
                click.echo(f"Warning: {w.message}", err=True)


def _max_pixels_option(f):
    return click.option("--max-pixels", type=click.IntRange(1), default=DEFAULT_MAX_PIXELS, show_default=True,
                        help="Refuse images (and .kmq files) with more pixels than this.")(f)


def _dither_option(f):
    return click.option("--dither", type=click.Choice(DITHERS), default="none", show_default=True,
                        help="fs: Floyd–Steinberg error diffusion onto the palette: smooth gradients instead "
                             "of bands, at a higher J and a larger file with lzma or ctx.")(f)


def _bulk_options(*summary_names: str):
    """-j and the summary's format, shared by compress and decompress (whose --format is the image's)."""
    def decorate(f):
        f = click.option(*summary_names, "summary", type=click.Choice(["table", "json"]), default=None,
                         help="The summary of a bulk run: table (default) for people, json for scripts.")(f)
        return click.option("-j", "--jobs", "workers", type=click.IntRange(1), default=None,
                            help="Worker processes for several inputs (default: one per core).")(f)
    return decorate


def _is_bulk(inputs: tuple[str, ...], output: str | None, summary: str | None) -> bool:
    """Several inputs, a folder, an -o ending in "/" or a summary asked for: the bulk runner. Anything else
    keeps the single-file behaviour, messages and pipes exactly."""
    return (len(inputs) > 1 or summary is not None or any(Path(i).is_dir() for i in inputs if i != STDIO)
            or (output is not None and output.endswith(("/", os.sep))))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


@main.command()
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...",
                type=click.Path(dir_okay=True, allow_dash=True))
@click.option("-k", "k", type=K_RANGE, default=16, show_default=True, help="Palette size (1 to 65536).")
@click.option("-o", "--output", type=click.Path(allow_dash=True),
              help="Output .kmq file (default: IMAGE with its suffix replaced by .kmq; '-' for stdout); "
                   "with several inputs or a folder, the output folder (default: beside each input).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="K-Means random seed.")
@click.option("--max-iter", type=click.IntRange(1), default=300, show_default=True,
              help="Most Lloyd iterations.")
@click.option("--codec", type=click.Choice(CODECS), default="raw", show_default=True,
              help="How the labels are stored.")
@_dither_option
@_max_pixels_option
@click.option("-f", "--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but warnings and errors.")
@_bulk_options("--format", "--summary")
def compress(images: tuple[str, ...], k: int, output: str | None, seed: int, max_iter: int, codec: str,
             dither: str, max_pixels: int, force: bool, quiet: bool, workers: int | None,
             summary: str | None) -> None:
    """Quantize each IMAGE to K colours and write a .kmq file.

    Several files or folders (searched recursively for images Pillow reads) are compressed in parallel,
    with a progress bar on a terminal and a summary at the end; a failed file does not stop the others.

    \b
    Example:
      kmq compress photo.png -k 16           # writes photo.kmq
      kmq compress - -k 8 -o - < a.png > a.kmq
      kmq compress a.png photos/ -k 16 -o out/ -j 4
      kmq compress sky.png -k 16 --dither fs # gradients without bands
    """
    if _is_bulk(images, output, summary):
        from . import batch

        task = batch.CompressTask(k=k, seed=seed, max_iter=max_iter, codec=codec, max_pixels=max_pixels,
                                  overwrite=force, dither=dither)
        with _reported():
            jobs = batch.plan_compress(images, output)
        _run_bulk(jobs, task, workers, summary or "table", quiet, _compressed_line)
        return
    (image,) = images
    output = output or (STDIO if image == STDIO else str(Path(image).with_suffix(".kmq")))
    started = time.perf_counter()
    with _reported():
        _check_output(output, image)
        img = api.compress(sys.stdin.buffer if image == STDIO else image, k, seed=seed, max_iter=max_iter,
                           codec=codec, max_pixels=max_pixels, dither=dither)
        size = api.write(output, img, overwrite=force)
    if not quiet:
        click.echo(_compressed_line(image, output, stats.record(img, output, size), size,
                                    time.perf_counter() - started), err=output == STDIO)


def _check_output(output: str, source: str) -> None:
    if output == STDIO and sys.stdout.isatty():
        raise KmqError("not writing binary data to a terminal; redirect stdout or give -o FILE")
    check_distinct(output, source)


def _compressed_line(image: str | Path, output: str | Path, r: dict[str, Any], size: int, seconds: float) -> str:
    return (f"{image} -> {output}: k={r['k']}, {r['bits_per_label']} bits/label, ratio {r['ratio']:.2f}, "
            f"{size:,} bytes, PSNR {_db(r['psnr'])}, {seconds:.2f} s")


@main.command()
@click.argument("files", nargs=-1, required=True, metavar="FILE...",
                type=click.Path(dir_okay=True, allow_dash=True))
@click.option("-o", "--output", type=click.Path(allow_dash=True),
              help="Output image (default: FILE + .png; '-' for stdout). Its extension picks the format. "
                   "With several inputs or a folder, the output folder (default: beside each input).")
@click.option("--format", "fmt", metavar="NAME",
              help="Image format when writing to stdout or overriding the extension (e.g. PNG, WEBP, BMP).")
@click.option("--truecolor", is_flag=True,
              help="Write RGB(A) pixels even when K <= 256 (by default PNG and GIF get a palette image: "
                   "the same pixels in fewer bytes).")
@_max_pixels_option
@click.option("-f", "--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but warnings and errors.")
@_bulk_options("--summary")
def decompress(files: tuple[str, ...], output: str | None, fmt: str | None, truecolor: bool, max_pixels: int,
               force: bool, quiet: bool, workers: int | None, summary: str | None) -> None:
    """Decode each .kmq FILE back to an image.

    Several files or folders (searched recursively for *.kmq) are decoded in parallel, as for compress;
    each output is named FILE + .png (or the --format's extension).

    \b
    Example:
      kmq decompress photo.kmq               # writes photo.kmq.png
      kmq decompress photo.kmq -o photo.webp
      kmq decompress out/ -o restored/ --summary json
    """
    if _is_bulk(files, output, summary):
        from . import batch

        fmt = fmt.upper() if fmt else "PNG"
        with _reported():
            jobs = batch.plan_decompress(files, output, fmt)
        task = batch.DecompressTask(fmt=fmt, max_pixels=max_pixels, overwrite=force, truecolor=truecolor)
        _run_bulk(jobs, task, workers, summary or "table", quiet,
                  lambda file, out, r, size, seconds: _decompressed_line(file, out, r, fmt, seconds))
        return
    (file,) = files
    output = output or (STDIO if file == STDIO else file + ".png")
    started = time.perf_counter()
    with _reported():
        _check_output(output, file)
        img = api.read(file, max_pixels=max_pixels)
        fmt = api.export(img, output, format=fmt, overwrite=force, truecolor=truecolor)
    if not quiet:
        size = {"width": img.width, "height": img.height}
        click.echo(_decompressed_line(file, output, size, fmt, time.perf_counter() - started),
                   err=output == STDIO)


def _decompressed_line(file: str | Path, output: str | Path, r: dict[str, Any], fmt: str, seconds: float) -> str:
    return f"{file} -> {output}: {r['width']}x{r['height']} {fmt}, {seconds:.2f} s"


@main.command("stats")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=True, allow_dash=True))
@click.option("-k", "ks", type=K_RANGE, multiple=True, help="Palette size for image inputs; repeat it "
              "for several (default 16). Ignored for .kmq inputs, which report their own.")
@click.option("--format", "fmt", type=click.Choice(["table", "tsv", "csv", "json"]), default="table",
              show_default=True, help="table for people; tsv, csv or json for scripts.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="K-Means random seed.")
@click.option("--codec", type=click.Choice([*CODECS, "all"]),
              help="Report file_bytes with this codec, or with each codec ('all'). Default: images as raw, "
                   ".kmq files as stored.")
@_dither_option
@_max_pixels_option
def stats_command(inputs: tuple[str, ...], ks: tuple[int, ...], fmt: str, seed: int, codec: str | None,
                  dither: str, max_pixels: int) -> None:
    """Print the size tables (in bits, as the tutorial counts them) for images and .kmq files.

    Keys: file, width, height, channels, k, bits_per_label, original_bits, labels_bits, codebook_bits,
    compressed_bits, ratio, file_bytes, distortion, psnr, codec, bits_per_pixel. An image is compressed in
    memory once per -k.

    \b
    Example:
      kmq stats photo.png -k 2 -k 3 -k 6 -k 16
      kmq stats photo.kmq --format json
      kmq stats photo.png -k 64 --codec all   # raw vs lzma vs ctx
    """
    records: list[dict[str, Any]] = []
    with _reported():
        for source in inputs:
            records += stats.measure(source, ks or (16,), seed=seed, codec=codec, max_pixels=max_pixels,
                                     dither=dither)
        # Through fileio, so a full disk or a closed pipe on stdout is one clean error, not a traceback.
        write_atomic(STDIO, (_RENDER[fmt](records) + ("" if fmt == "csv" else "\n")).encode())


def _db(value: float | None) -> str:
    if value is None:
        return "unknown"
    return "inf dB" if math.isinf(value) else f"{value:.2f} dB"


def _plain(value: Any) -> str:
    """A value as scripts read it in tsv/csv: full precision, empty for unknown."""
    return "" if value is None else str(value)


def _finite(record: dict[str, Any]) -> dict[str, Any]:
    # JSON has no infinity: a lossless file's psnr is null, recognisable by its distortion of 0.
    return {key: (None if isinstance(v, float) and math.isinf(v) else v) for key, v in record.items()}


def _as_json(records: list[dict[str, Any]]) -> str:
    return json.dumps([_finite(r) for r in records], indent=2)


def _as_tsv(records: list[dict[str, Any]]) -> str:
    lines = ["\t".join(stats.FIELDS)]
    lines += ["\t".join(_plain(r[key]) for key in stats.FIELDS) for r in records]
    return "\n".join(lines)


def _as_csv(records: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(stats.FIELDS)
    writer.writerows([_plain(r[key]) for key in stats.FIELDS] for r in records)
    return out.getvalue()


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


def _as_table(records: list[dict[str, Any]]) -> str:
    from rich.table import Table

    table = Table(title="Sizes in bits")
    table.add_column("Metric")
    for r in records:
        table.add_column(f"{Path(r['file']).name}\nK={r['k']}", justify="right")
    for name, cell in _TABLE_ROWS:
        table.add_row(name, *(cell(r) for r in records))
    return _text(table, max(80, 26 + 16 * len(records)))


def _text(renderable: Any, width: int = 80) -> str:
    """A rich renderable as plain text (no colour, no terminal codes), the same wherever it is printed."""
    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=width, force_terminal=False, color_system=None).print(renderable)
    return out.getvalue().rstrip("\n")


_RENDER = {"table": _as_table, "tsv": _as_tsv, "csv": _as_csv, "json": _as_json}


# --- bulk runs -------------------------------------------------------------------------------------------

def _run_bulk(jobs: list[batch.Job], task: Any, workers: int | None, fmt: str, quiet: bool, line: Any) -> None:
    """Run the jobs, reporting each file as it finishes, then the summary; exit 1 if any file failed."""
    from . import batch

    results: list[batch.Result] = []
    with _progress(jobs, quiet) as (say, advance):
        for result in batch.run(jobs, task, workers):
            results.append(result)
            for warning in result.warnings:
                say(f"Warning: {warning}", True)
            if result.error:
                say(f"Error: {result.error}", True)
            elif not quiet and fmt == "table":
                say(line(result.job.source, result.job.target, result.record, result.bytes_after,
                         result.seconds), False)
            advance(result.job)
    results.sort(key=lambda r: r.job.index)
    summary = batch.summarize(results)
    if fmt == "json":
        click.echo(json.dumps({**summary, "results": [r.as_dict() for r in results]}, indent=2))
    elif not quiet:
        click.echo(_summary_table(summary))
    if summary["failed"]:
        click.get_current_context().exit(1)


@contextmanager
def _progress(jobs: list[batch.Job], quiet: bool) -> Iterator[tuple[Any, Any]]:
    """(say(text, to_stderr), advance(job)): on a terminal a rich bar on stderr (files, bytes, ETA) with the
    lines printed above it; piped or with -q, plain lines and no bar."""
    if quiet or not (sys.stdout.isatty() and sys.stderr.isatty()):
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
    failed = f" ({s['failed']} failed)" if s["failed"] else ""
    for name, value in [("Files", f"{s['succeeded']} of {s['files']}{failed}"),
                        ("Bytes before", f"{s['bytes_before']:,}"), ("Bytes after", f"{s['bytes_after']:,}"),
                        ("Mean ratio", "unknown" if s["mean_ratio"] is None else f"{s['mean_ratio']:.2f}"),
                        ("Mean PSNR", _db(s["mean_psnr"]))]:
        table.add_row(name, value)
    return _text(table)


# --- seeing the clusters ---------------------------------------------------------------------------------

def _save(output: str, pixels: Any, force: bool) -> None:
    """Write pixels as an image whose format the output's extension picks (PNG on stdout)."""
    fmt = "PNG" if output == STDIO else format_for(output)
    write_atomic(output, lambda f: save_image(pixels, f, format=fmt), overwrite=force)


def _stem(path: str) -> str:
    return "stdin" if path == STDIO else Path(path).stem


def _clustering_options(f):
    """-k and --seed for commands whose INPUT is an image (clustered first) or a .kmq (used as stored)."""
    f = click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="K-Means random seed.")(f)
    return click.option("-k", "k", type=K_RANGE, default=16, show_default=True,
                        help="Palette size for an image INPUT (a .kmq INPUT has its own).")(f)


@main.command("segment")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=True, allow_dash=True))
@_clustering_options
@click.option("-o", "--output", type=click.Path(allow_dash=True),
              help="Output image; its extension picks the format ('-' for PNG on stdout).")
@click.option("--style", type=click.Choice(segment.STYLES), default="overlay", show_default=True,
              help="overlay: cluster colours over the grey image; labels: pixel values are the labels; "
                   "mean: the reconstruction; boundaries: cluster edges over the image.")
@click.option("--masks", "masks_dir", type=click.Path(file_okay=False),
              help="Also write one binary PNG per cluster to this folder: STEM-cluster-I.png.")
@_max_pixels_option
@click.option("-f", "--force", is_flag=True, help="Replace outputs that exist.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but warnings and errors.")
def segment_command(input_path: str, k: int, seed: int, output: str | None, style: str, masks_dir: str | None,
                    max_pixels: int, force: bool, quiet: bool) -> None:
    """Show the clusters of INPUT: an image (clustered at K first) or a .kmq file (its stored labels).

    The labels style is an 8-bit PNG (16-bit above K = 256) whose pixel values are the labels; the masks
    partition the image (each pixel is white in exactly one).

    \b
    Example:
      kmq segment photo.png -k 3 -o clusters.png
      kmq segment photo.kmq --style labels -o labels.png --masks masks/
    """
    if output is None and masks_dir is None:
        raise click.UsageError("give -o OUT.png, --masks DIR, or both")
    with _reported():
        if output is not None and output != STDIO and not force and os.path.lexists(output):
            raise KmqError(f"{output} already exists (use -f to overwrite)")
        img, base = segment.quantized(input_path, k, seed=seed, max_pixels=max_pixels)
        # Masks first: write_masks checks every name before writing any, so a refusal leaves nothing.
        masks = [] if masks_dir is None else segment.write_masks(img, masks_dir, _stem(input_path),
                                                                  overwrite=force)
        if output is not None:
            _save(output, segment.render(img, base, style), force)
    if quiet:
        return
    if output is not None:
        click.echo(f"{input_path} -> {output}: {style}, k={img.k}, {img.width}x{img.height}", err=output == STDIO)
    if masks:
        click.echo(f"{input_path} -> {masks_dir}: {len(masks)} masks, {masks[0].name} .. {masks[-1].name}",
                   err=output == STDIO)


@main.command()
@click.argument("image", type=click.Path(dir_okay=True, allow_dash=True))
@click.option("-k", "ks", type=K_RANGE, multiple=True,
              help="A K to show; repeat it (default: 2, 3, 6 and 16, as the tutorial).")
@click.option("-o", "--output", type=click.Path(allow_dash=True), required=True,
              help="Output image; its extension picks the format ('-' for PNG on stdout).")
@click.option("--columns", type=click.IntRange(1), help="Panels per row (default: rows of at most four).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="K-Means random seed.")
@_dither_option
@_max_pixels_option
@click.option("-f", "--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but warnings and errors.")
def montage(image: str, ks: tuple[int, ...], output: str, columns: int | None, seed: int, dither: str,
            max_pixels: int, force: bool, quiet: bool) -> None:
    """Draw IMAGE beside its reconstruction at each K, every panel titled with K, the ratio and the PSNR.

    \b
    Example:
      kmq montage photo.png -k 2 -k 3 -k 6 -k 16 -o grid.png
    """
    ks = ks or (2, 3, 6, 16)
    with _reported():
        figure = segment.montage_file(image, ks, seed=seed, columns=columns, max_pixels=max_pixels,
                                      dither=dither)
        _save(output, figure.pixels, force)
    if not quiet:
        height, width = figure.pixels.shape[:2]
        click.echo(f"{image} -> {output}: original and K = {', '.join(map(str, ks))}, {width}x{height}",
                   err=output == STDIO)


@main.command()
@click.argument("file", type=click.Path(dir_okay=True, allow_dash=True))
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
    with _reported():
        described = stats.describe(file, max_pixels=max_pixels)
    if fmt == "json":
        click.echo(json.dumps(_finite(described), indent=2))
        return
    from rich.console import Console

    Console(highlight=False).print(*_info_tables(described))


_INFO_ROWS_SHOWN = 256


def _info_tables(d: dict[str, Any]) -> list[Any]:
    from rich.table import Table
    from rich.text import Text

    header = Table(title=f"{d['file']}", show_header=False, title_justify="left")
    for name, value in [
            ("File", f"{d['file_bytes']:,} bytes, .kmq version {d['version']}"),
            ("Image", f"{d['width']} x {d['height']}, {d['mode']}"),
            ("K", f"{d['k']} ({d['bits_per_label']} bits per label)"),
            ("Codec", f"{d['codec']}: payload {d['payload_bytes']:,} bytes, metadata {d['meta_bytes']} bytes"),
            ("Ratio", f"{d['ratio']:.2f}"),
            ("Distortion J", "unknown" if d["distortion"] is None else f"{d['distortion']:.2f}"),
            ("PSNR", _db(d["psnr"])),
            ("Seed", "unknown" if d["seed"] is None else str(d["seed"]))]:
        header.add_row(name, value)
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


@main.command("palette")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=True, allow_dash=True))
@_clustering_options
@click.option("-o", "--output", type=click.Path(allow_dash=True),
              help="Write the swatch image here (its extension picks the format); without -o, print text.")
@click.option("--proportional", is_flag=True, help="One bar, each colour as wide as its share of the pixels.")
@_max_pixels_option
@click.option("-f", "--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but warnings and errors.")
def palette_command(input_path: str, k: int, seed: int, output: str | None, proportional: bool,
                    max_pixels: int, force: bool, quiet: bool) -> None:
    """The palette of INPUT (an image, clustered at K, or a .kmq file) as a swatch image, or as text.

    Without -o, one line per palette entry: its hex code and its share of the pixels (the shares sum to 1).

    \b
    Example:
      kmq palette photo.png -k 8                        # hex codes and shares
      kmq palette photo.kmq -o swatch.png --proportional
    """
    with _reported():
        img, _ = segment.quantized(input_path, k, seed=seed, max_pixels=max_pixels)
        share = stats.shares(img.labels, img.k)
        if output is not None:
            _save(output, segment.swatch(img.palette, share, proportional=proportional), force)
    if output is None:
        for entry in stats.palette_entries(img.palette, img.labels):
            click.echo(f"{entry['hex']} {entry['share']:.4f}")
    elif not quiet:
        click.echo(f"{input_path} -> {output}: {img.k} colours{', proportional' if proportional else ''}",
                   err=output == STDIO)
