"""Rate-distortion charts of stats records: PSNR against bits per pixel, drawn with matplotlib.

matplotlib is an optional extra (`pip install 'kmq[plot]'`), imported here only when a chart is drawn. The
figure is rendered off-screen by the Agg canvas (no display, no pyplot global state) and written atomically.
"""
from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path
from typing import Any, Iterable

from .errors import KmqError, KmqWarning
from .fileio import check_writable, write_atomic
from .names import escaped, shown

INSTALL = "pip install 'kmq[plot]'"
FORMATS = ("png", "svg", "pdf")
# The reference formats of `stats --reference`: record key, legend name, marker, colour. Greys, outside the
# colour cycle that codecs and inputs take, so that no line ever wears a reference's colour.
_REFERENCES = (("png8_bytes", "PNG-8", "s", "0.15"), ("webp_bytes", "WebP lossless", "^", "0.55"))
_LINE_STYLES = ("-", "--", "-.", ":")
# With the line styles, what tells the inputs apart: 24 inputs get 24 different lines (the references' marks
# are "s" and "^"). Past that a warning says the lines repeat.
_MARKERS = ("o", "D", "v", "P", "X", "*")
_BPP_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32)


def available() -> bool:
    """Whether matplotlib can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("matplotlib") is not None
    except ValueError:  # a module set to None in sys.modules: as good as missing
        return False


def check_target(path: str | Path, *, overwrite: bool = False) -> str:
    """The chart format path's extension names ("png", "svg", "pdf"); KmqError for another extension or
    an existing file without overwrite. Checked before any work, so a refusal costs nothing."""
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise KmqError(f"{path}: a chart is written as .png, .svg or .pdf, not {Path(path).suffix or '(none)'!r}")
    check_writable(path, overwrite=overwrite)
    return fmt


def points(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records a chart can place: those with a finite PSNR (a lossless record has no place on it)."""
    return [r for r in records if r["psnr"] is not None and math.isfinite(r["psnr"])]


def write_chart(records: list[dict[str, Any]], path: str | Path, *, overwrite: bool = False,
                title: str | None = None) -> int:
    """Draw the records as a rate-distortion chart into path (.png, .svg or .pdf), atomically.

    One line per (input, codec) through its records ordered by bits per pixel, each point labelled with its
    K; with reference sizes (stats --reference), PNG-8 and WebP marks at the same PSNR (the same pixels).
    Returns the number of kmq points drawn. KmqError when no record has a finite PSNR.
    """
    fmt = check_target(path, overwrite=overwrite)
    placed = points(records)
    if not placed:
        raise KmqError("nothing to plot: every record is lossless (PSNR inf)")
    drawn = {r["file"] for r in placed}
    for file in dict.fromkeys(r["file"] for r in records if r["file"] not in drawn):
        warnings.warn(f"{file}: lossless at every K asked (or J unknown): no line on the chart", KmqWarning,
                      stacklevel=2)
    figure, lacking = _figure(placed, title)
    if lacking:
        warnings.warn(f"the chart's font has no glyph for {len(lacking)} character(s) of its names: written as "
                      f"{', '.join(escaped(c) for c in sorted(lacking))}", KmqWarning, stacklevel=2)
    write_atomic(path, lambda f: _save(figure, f, fmt), overwrite=overwrite)
    return len(placed)


# No software version or date in the file: the same records give the same bytes.
_METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
             "pdf": {"CreationDate": None, "Creator": None, "Producer": None}}


def _save(figure: Any, f: Any, fmt: str) -> None:
    import matplotlib  # (imported by _figure already)

    # An SVG's element ids are random unless salted: the same records would give other bytes on each run.
    with matplotlib.rc_context({"svg.hashsalt": "kmq"}):
        figure.savefig(f, format=fmt, metadata=_METADATA[fmt])


def _names(files: list[str]) -> tuple[dict[str, str], set[str]]:
    """Each file's name as chart text, and the characters of them the chart's font lacks.

    As the command line shows a name (one line, valid Unicode: a name that is not UTF-8 holds lone surrogates,
    which the renderer refuses; no U+202E drawing the rest reversed), its dollar signs literal (between two,
    matplotlib would read maths), and a character the font has no glyph for written \\uXXXX: matplotlib would
    draw a box, which tells no name from another, and warn once per character and drawing (a CJK name as SVG:
    a dozen lines)."""
    from matplotlib import font_manager

    # The first font of the default family only: a fallback list set by the user (rcParams) is not searched.
    font = font_manager.get_font(font_manager.findfont(font_manager.FontProperties()))
    names = {file: shown(Path(file).name).replace("$", r"\$") for file in files}
    lacking = {c for name in names.values() for c in name if not c.isascii() and font.get_char_index(ord(c)) == 0}
    if lacking:
        names = {file: "".join(escaped(c) if c in lacking else c for c in name) for file, name in names.items()}
    return names, lacking


def _figure(records: list[dict[str, Any]], title: str | None) -> tuple[Any, set[str]]:
    import logging

    # Where HOME is read-only matplotlib logs two lines about its config and cache folders (it then uses a
    # temporary one, and draws the same chart): not in kmq's `Warning:` form, and nothing for the user to do.
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    except ImportError:
        raise KmqError(f"plotting needs matplotlib: {INSTALL}") from None
    inputs = list(dict.fromkeys(r["file"] for r in records))
    names, lacking = _names(inputs)
    codecs = list(dict.fromkeys(r["codec"] for r in records))
    figure = Figure(figsize=(7.5, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    colours = {codec: f"C{i % 10}" for i, codec in enumerate(codecs)}
    if len(inputs) > len(_LINE_STYLES) * len(_MARKERS):
        warnings.warn(f"{len(inputs)} inputs on one chart: past {len(_LINE_STYLES) * len(_MARKERS)} their lines "
                      "repeat (plot fewer at a time to tell them apart)", KmqWarning, stacklevel=3)
    # One codec for several inputs: the inputs take the colours, which tell lines apart better than styles.
    by_input = len(codecs) == 1 and len(inputs) > 1
    for n, file in enumerate(inputs):
        style = _LINE_STYLES[n % len(_LINE_STYLES)]
        dot = _MARKERS[n // len(_LINE_STYLES) % len(_MARKERS)]
        suffix = f" · {names[file]}" if len(inputs) > 1 else ""
        mine = [r for r in records if r["file"] == file]
        for codec in codecs:
            line = sorted((r for r in mine if r["codec"] == codec), key=lambda r: r["bits_per_pixel"])
            if not line:
                continue
            colour = f"C{n % 10}" if by_input else colours[codec]
            xs, ys = [r["bits_per_pixel"] for r in line], [r["psnr"] for r in line]
            ax.plot(xs, ys, style, marker=dot, markersize=4, color=colour, label=f"kmq {codec}{suffix}")
            for r in line:
                ax.annotate(str(r["k"]), (r["bits_per_pixel"], r["psnr"]), textcoords="offset points",
                            xytext=(0, 5), ha="center", fontsize=7, color=colour)
        # One mark per distinct quantization: every codec's record of it carries the same reference sizes.
        by_k = {(r["k"], r["distortion"]): r for r in mine}
        for key, name, marker, grey in _REFERENCES:
            marks = sorted((r[key] * 8 / (r["width"] * r["height"]), r["psnr"]) for r in by_k.values()
                           if r.get(key) is not None)
            if marks:
                ax.plot(*zip(*marks), style, marker=marker, markersize=5, linewidth=0.7, color=grey,
                        markerfacecolor="none", label=f"{name} (same pixels){suffix}")
    # Log bits per pixel: halving the rate is the same step at K = 2 as at K = 256; ticks in plain numbers.
    ax.set_xscale("log")
    low, high = ax.get_xlim()
    ax.xaxis.set_major_locator(FixedLocator([t for t in _BPP_TICKS if low <= t <= high]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("bits per pixel (file)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title or ("Rate–distortion: " + (names[inputs[0]] if len(inputs) == 1 else
                                                   f"{len(inputs)} inputs")) + " (K at the points)")
    ax.grid(True, which="both", linewidth=0.4, alpha=0.5)
    # A long legend (several inputs) goes beside the axes, where it hides no point.
    if len(ax.get_legend_handles_labels()[1]) > 5:
        figure.set_size_inches(10, 4.8)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        ax.legend(fontsize=8, loc="lower right")
    return figure, lacking
