"""The `kmq` command. Each command parses its options, calls one library function and renders the result."""
from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import click

from . import __version__, api, stats
from .codecs import NAMES as CODECS
from .errors import KmqError
from .fileio import STDIO, write_atomic
from .format import DEFAULT_MAX_PIXELS, MAX_K
from .imageio import format_for, save_image

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="kmq")
def main() -> None:
    """Compress images by K-Means vector quantization into .kmq files.

    \b
    Example:
      kmq compress photo.png -k 16      # writes photo.kmq
      kmq decompress photo.kmq          # writes photo.kmq.png
      kmq stats photo.png -k 2 -k 16    # the size tables
    """


@main.command()
@click.argument("image", type=click.Path(dir_okay=True, allow_dash=True))
@click.option("-k", "k", type=K_RANGE, default=16, show_default=True, help="Palette size (1 to 65536).")
@click.option("-o", "--output", type=click.Path(allow_dash=True),
              help="Output .kmq file (default: IMAGE with its suffix replaced by .kmq; '-' for stdout).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="K-Means random seed.")
@click.option("--max-iter", type=click.IntRange(1), default=300, show_default=True,
              help="Most Lloyd iterations.")
@click.option("--codec", type=click.Choice(CODECS), default="raw", show_default=True,
              help="How the labels are stored.")
@_max_pixels_option
@click.option("-f", "--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but warnings and errors.")
def compress(image: str, k: int, output: str | None, seed: int, max_iter: int, codec: str, max_pixels: int,
             force: bool, quiet: bool) -> None:
    """Quantize IMAGE to K colours and write a .kmq file.

    \b
    Example:
      kmq compress photo.png -k 16           # writes photo.kmq
      kmq compress - -k 8 -o - < a.png > a.kmq
    """
    output = output or (STDIO if image == STDIO else str(Path(image).with_suffix(".kmq")))
    started = time.perf_counter()
    with _reported():
        img = api.compress(sys.stdin.buffer if image == STDIO else image, k, seed=seed, max_iter=max_iter,
                           codec=codec, max_pixels=max_pixels)
        size = api.write(output, img, overwrite=force)
    if not quiet:
        r = stats.record(img, output, size)
        click.echo(f"{image} -> {output}: k={r['k']}, {r['bits_per_label']} bits/label, "
                   f"ratio {r['ratio']:.2f}, {size:,} bytes, PSNR {_db(r['psnr'])}, "
                   f"{time.perf_counter() - started:.2f} s", err=output == STDIO)


@main.command()
@click.argument("file", type=click.Path(dir_okay=True, allow_dash=True))
@click.option("-o", "--output", type=click.Path(allow_dash=True),
              help="Output image (default: FILE + .png; '-' for stdout). Its extension picks the format.")
@click.option("--format", "fmt", metavar="NAME",
              help="Image format when writing to stdout or overriding the extension (e.g. PNG, WEBP, BMP).")
@_max_pixels_option
@click.option("-f", "--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but warnings and errors.")
def decompress(file: str, output: str | None, fmt: str | None, max_pixels: int, force: bool,
               quiet: bool) -> None:
    """Decode a .kmq FILE back to an image.

    \b
    Example:
      kmq decompress photo.kmq               # writes photo.kmq.png
      kmq decompress photo.kmq -o photo.webp
    """
    output = output or (STDIO if file == STDIO else file + ".png")
    started = time.perf_counter()
    with _reported():
        fmt = fmt.upper() if fmt else ("PNG" if output == STDIO else format_for(output))
        pixels = api.read(file, max_pixels=max_pixels).decode()
        write_atomic(output, lambda f: save_image(pixels, f, format=fmt), overwrite=force)
    if not quiet:
        click.echo(f"{file} -> {output}: {pixels.shape[1]}x{pixels.shape[0]} {fmt}, "
                   f"{time.perf_counter() - started:.2f} s", err=output == STDIO)


@main.command("stats")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=True, allow_dash=True))
@click.option("-k", "ks", type=K_RANGE, multiple=True, help="Palette size for image inputs; repeat it "
              "for several (default 16). Ignored for .kmq inputs, which report their own.")
@click.option("--format", "fmt", type=click.Choice(["table", "tsv", "csv", "json"]), default="table",
              show_default=True, help="table for people; tsv, csv or json for scripts.")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="K-Means random seed.")
@click.option("--codec", type=click.Choice(CODECS), default="raw", show_default=True,
              help="Codec whose file size image inputs report.")
@_max_pixels_option
def stats_command(inputs: tuple[str, ...], ks: tuple[int, ...], fmt: str, seed: int, codec: str,
                  max_pixels: int) -> None:
    """Print the size tables (in bits, as the tutorial counts them) for images and .kmq files.

    Keys: file, width, height, channels, k, bits_per_label, original_bits, labels_bits, codebook_bits,
    compressed_bits, ratio, file_bytes, distortion, psnr. An image is compressed in memory once per -k.

    \b
    Example:
      kmq stats photo.png -k 2 -k 3 -k 6 -k 16
      kmq stats photo.kmq --format json
    """
    records: list[dict[str, Any]] = []
    with _reported():
        for source in inputs:
            records += stats.measure(source, ks or (16,), seed=seed, codec=codec, max_pixels=max_pixels)
    click.echo(_RENDER[fmt](records), nl=fmt != "csv")


def _db(value: float | None) -> str:
    if value is None:
        return "unknown"
    return "inf dB" if math.isinf(value) else f"{value:.2f} dB"


def _plain(value: Any) -> str:
    """A value as scripts read it in tsv/csv: full precision, empty for unknown."""
    return "" if value is None else str(value)


def _as_json(records: list[dict[str, Any]]) -> str:
    # JSON has no infinity: a lossless file's psnr is null, recognisable by its distortion of 0.
    cleaned = [{key: (None if isinstance(v, float) and math.isinf(v) else v) for key, v in r.items()}
               for r in records]
    return json.dumps(cleaned, indent=2)


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
    ("File size (bytes)", lambda r: f"{r['file_bytes']}"),
    ("Distortion J", lambda r: "unknown" if r["distortion"] is None else f"{r['distortion']:.2f}"),
    ("PSNR", lambda r: _db(r["psnr"])),
)


def _as_table(records: list[dict[str, Any]]) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Sizes in bits")
    table.add_column("Metric")
    for r in records:
        table.add_column(f"{Path(r['file']).name}\nK={r['k']}", justify="right")
    for name, cell in _TABLE_ROWS:
        table.add_row(name, *(cell(r) for r in records))
    out = io.StringIO()
    Console(file=out, width=max(80, 26 + 16 * len(records)), force_terminal=False,
            color_system=None).print(table)
    return out.getvalue().rstrip("\n")


_RENDER = {"table": _as_table, "tsv": _as_tsv, "csv": _as_csv, "json": _as_json}
