"""Seeing the clusters: segmentation views, the montage of reconstructions per K, and palette swatches.

Everything here returns uint8 (or uint16) arrays and plain records; numpy does the per-pixel work, Pillow only
draws text and converts colour spaces. The CLI writes what these functions return.
"""
from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from .api import Source, compress, input_name, load
from .errors import MONTAGE_HINT, KmqError, exists, named_warnings, naming, warn
from .fileio import reason, signals_unwind, write_atomic
from .format import DEFAULT_MAX_PIXELS, MAX_K, KmqImage
from .imageio import LOSSY_FORMATS, over_white, save_image
from .limits import STYLES
from .palettes import Palette
from .stats import Steps, ignored_k, ignored_options, record

OVERLAY_ALPHA = 0.3
BOUNDARY_COLOR = (255, 255, 0)

# scikit-image's label2rgb default colours, as CSS defines them (red, blue, yellow, magenta, green, indigo,
# darkorange, cyan, pink, yellowgreen): the first clusters, the ones people tell apart by eye, get these.
_FIRST_COLORS = np.array([
    (255, 0, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 128, 0),
    (75, 0, 130), (255, 140, 0), (0, 255, 255), (255, 192, 203), (154, 205, 50),
], np.uint8)
_PLASTIC = 1.324717957244746  # the generalised golden ratio in 3-D (Roberts' R3 sequence)


def label_colors(k: int) -> np.ndarray:
    """(k, 3) uint8 colours, all different, for labels 0..k-1 (k <= 65536); the same k always gives the same."""
    return _color_table()[:k]


@functools.lru_cache(maxsize=1)
def _color_table() -> np.ndarray:
    # After the fixed ten: a low-discrepancy walk over bright, saturated hues (well spread for any prefix),
    # then the same walk over the whole RGB cube, which is only there to keep 65536 colours unique.
    steps = 1 / _PLASTIC ** np.arange(1, 4)

    def walk(n: int) -> np.ndarray:
        return (0.5 + np.arange(n)[:, None] * steps) % 1

    x = walk(4096)
    hsv = np.stack([x[:, 0] * 256, 150 + 105 * x[:, 1], 170 + 85 * x[:, 2]], axis=1).astype(np.uint8)
    vivid = np.asarray(Image.fromarray(hsv[None], "HSV").convert("RGB"))[0]
    candidates = np.concatenate([_FIRST_COLORS, vivid, (walk(1 << 17) * 256).astype(np.uint8)])
    _, first = np.unique(candidates, axis=0, return_index=True)
    table = candidates[np.sort(first)][:65536]
    assert len(table) == 65536
    return table


def opaque_rgb(pixels: np.ndarray) -> np.ndarray:
    """(h, w) or (h, w, 1|3|4) uint8 -> (h, w, 3) uint8: grey repeated, alpha composited over white."""
    pixels = pixels.reshape(pixels.shape[0], pixels.shape[1], -1)
    if pixels.shape[2] == 1:
        return np.repeat(pixels, 3, axis=2)
    if pixels.shape[2] == 3:
        return pixels
    out = np.empty((*pixels.shape[:2], 3), np.uint8)
    for rows in _bands(pixels.shape):  # over_white's float32 temporaries were ~40 bytes a pixel at once
        out[rows] = over_white(pixels[rows])
    return out


def grey(pixels: np.ndarray) -> np.ndarray:
    """(h, w[, c]) uint8 -> (h, w) float32 luma in 0..255 (ITU-R 601 weights, as Pillow's "L")."""
    rgb = opaque_rgb(pixels).astype(np.float32)
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def overlay(labels: np.ndarray, base: np.ndarray, k: int, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Each cluster's colour blended over the grey image: (h, w) labels, (h, w[, c]) uint8 -> (h, w, 3) uint8.

    Like scikit-image's label2rgb(labels, image, alpha=0.3, bg_label=None): alpha * colour + (1 - alpha) * grey.
    """
    return _whole(_overlay_bands(labels, base, k, alpha), labels.shape)


def _overlay_bands(labels: np.ndarray, base: np.ndarray, k: int,
                   alpha: float = OVERLAY_ALPHA) -> Iterator[tuple[slice, np.ndarray]]:
    # By bands of whole rows: the whole image's float32 temporaries (and the labels cast to intp) took 1.6 GB
    # at 48 MP. Every pixel sees the same operations as in one pass (grey's product is taken row by row
    # either way), so the bytes are the same.
    colors = label_colors(k).astype(np.float32)
    for rows in _bands(labels.shape):
        blended = alpha * colors[labels[rows]] + (1 - alpha) * grey(base[rows])[:, :, None]
        yield rows, np.rint(blended).astype(np.uint8)


def label_map(labels: np.ndarray, k: int) -> np.ndarray:
    """The labels as an image whose pixel values are the labels: (h, w) uint8 when k <= 256, else uint16."""
    return labels.astype(np.uint8 if k <= 256 else np.uint16)


def edges(labels: np.ndarray) -> np.ndarray:
    """(h, w) bool: pixels whose right or lower neighbour is in another cluster.

    Marking one side of each edge only keeps the lines 1 px wide, so busy textures stay visible under them.
    """
    edge = np.zeros(labels.shape, bool)
    edge[:, :-1] |= labels[:, 1:] != labels[:, :-1]
    edge[:-1, :] |= labels[1:, :] != labels[:-1, :]
    return edge


def boundaries(labels: np.ndarray, base: np.ndarray, color: tuple[int, int, int] = BOUNDARY_COLOR) -> np.ndarray:
    """The cluster edges drawn in `color` over the image: -> (h, w, 3) uint8."""
    return _whole(_boundary_bands(labels, base, color), labels.shape)


def _boundary_bands(labels: np.ndarray, base: np.ndarray,
                    color: tuple[int, int, int] = BOUNDARY_COLOR) -> Iterator[tuple[slice, np.ndarray]]:
    # By bands, each with the row below it, which decides its last row's edges: three whole-image bool arrays
    # and a copy of the image were 288 MB at 48 MP.
    for rows in _bands(labels.shape):
        band = opaque_rgb(base[rows])
        if np.shares_memory(band, base):  # RGB comes back as itself: drawn on a copy
            band = band.copy()
        band[edges(labels[rows.start:rows.stop + 1])[:rows.stop - rows.start]] = color
        yield rows, band


def _whole(bands: Iterator[tuple[slice, np.ndarray]], shape: tuple[int, ...]) -> np.ndarray:
    """(h, w, 3) uint8 made of the bands of rows a generator yields."""
    out = np.empty((*shape[:2], 3), np.uint8)
    for rows, band in bands:
        out[rows] = band
    return out


_BAND_PIXELS = 1 << 18  # a band's float32 temporaries stay a few MB, within the caches' reach


def _bands(shape: tuple[int, ...]) -> Iterator[slice]:
    """Slices of whole rows covering an image of this shape, about _BAND_PIXELS each (at least one row)."""
    step = max(1, _BAND_PIXELS // max(1, shape[1]))
    for start in range(0, shape[0], step):
        yield slice(start, min(start + step, shape[0]))


def masks(labels: np.ndarray, k: int) -> Iterator[np.ndarray]:
    """One (h, w) bool mask per palette entry 0..k-1, in order; exactly one is true at every pixel."""
    for i in range(k):
        yield labels == i


def quantized(source: Source, k: int | None = None, *, seed: int = 0,
              max_pixels: int = DEFAULT_MAX_PIXELS, palette: Any = None, name: str | Path | None = None,
              progress: Callable[[int, int], None] | None = None) -> tuple[KmqImage, np.ndarray]:
    """(the quantized image, the pixels to draw under it) for an image file (clustered here, at k, 16 if None,
    or mapped onto palette when one is given, see kmq.compress) or a .kmq file (its stored labels; the pixels
    are then its reconstruction). Told apart by the magic bytes. A k given for a .kmq of another K, or a
    palette, does not apply: a KmqWarning says so. source: a path ("-" for stdin), the file's bytes, or a
    binary file object read from its current position (stdin's bytes, once a bulk run has read them);
    warnings and errors name it as name (by default the path, or "<bytes>", a file object's name, else
    "<stream>", as kmq.compress names them). progress: as kmq.compress's.

    Example:
        >>> import io, numpy as np, kmq
        >>> data = kmq.compress(np.array([[0, 255], [255, 0]], np.uint8), k=2).to_bytes()
        >>> img, base = kmq.segment.quantized(io.BytesIO(data))  # or a path, or an image file's bytes
        >>> img.k, base.shape
        (2, (2, 2))
    """
    if name is None:
        name = input_name(source)
    with named_warnings(name):
        loaded, _ = load(source, max_pixels=max_pixels, name=str(name))
        if isinstance(loaded, KmqImage):
            ignored_k(name, loaded, [] if k is None else [k])
            ignored_options(name, palette=palette is not None, seed=seed)
            return loaded, loaded.decode()
        with naming(name, KmqError):  # the palette's checks see pixels, not the file
            return compress(loaded, k, seed=seed, palette=palette, progress=progress), loaded


def write_masks(img: KmqImage, folder: str | Path, stem: str, *, overwrite: bool = False) -> list[Path]:
    """Write one 1-bit PNG per cluster, folder/<stem>-cluster-<i>.png (white where the label is i), i
    zero-padded to the digits of K - 1 (mask_names), so that the names sort in label order.

    Creates folder if needed. Checks every name first, so an existing mask (without overwrite) stops the
    run before anything is written. Masks of the same stem that this K does not write (left by a run at a
    larger K, or named another way by an older kmq: -cluster-3 where K = 16 now writes -cluster-03) count as
    existing; with overwrite they are removed once the new ones are written, so the folder's masks always
    partition the image. A failure (or Ctrl-C) while writing them removes the masks written so far and, with
    overwrite, the stem's older masks once one of them was replaced. Returns the paths written, in label order.
    """
    folder = Path(folder)
    paths = [folder / name for name in mask_names(stem, img.k)]
    stale = _stale_masks(folder, stem, img.k)
    if not overwrite:
        for path in paths + stale:
            if os.path.lexists(path):
                raise exists(path)
    new = _missing(folder)  # the folders this run makes, outermost first: a failed run takes them back
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KmqError(f"cannot create folder {folder}: {reason(e)}") from None
    written: list[Path] = []
    pending, before = None, None
    try:
        for path, mask in zip(paths, masks(img.labels, img.k)):
            pending, before = path, _identity(path)
            write_atomic(path, functools.partial(save_image, mask, format="PNG"), overwrite=overwrite)
            written.append(path)
    except BaseException:
        # A Ctrl-C can land after a mask's rename and before it is counted: it is this run's if it is there
        # and is not the file that was there before.
        if pending is not None and written[-1:] != [pending] and _identity(pending) not in (None, before):
            written.append(pending)
        # A full disk or Ctrl-C half-way left the first masks, which a rerun then stopped on (already exists)
        # and which partition nothing: the ones this run wrote go, and with overwrite the old ones of the stem
        # too once any was replaced (old and new together would partition nothing either).
        _remove(written + (paths[len(written):] + stale if overwrite and written else []))
        for made in reversed(new):  # (a full disk or Ctrl-C left them behind, empty)
            try:
                made.rmdir()
            except OSError:
                break
        raise
    for path in stale:
        try:
            path.unlink()
        except OSError as e:
            raise KmqError(f"cannot remove the stale mask {path}: {reason(e)}") from None
    return paths


def encoded_picture(pixels: np.ndarray | Image.Image, fmt: str, name: str) -> bytes:
    """The picture in fmt, encoded before any mask is written: a format's refusal (ICO over 256 pixels a side,
    RGB as XBM) then comes before the masks, and -f has not yet replaced the old ones."""
    out = io.BytesIO()
    save_image(pixels, out, format=fmt, name=name)
    return out.getvalue()


def write_with_masks(img: KmqImage, folder: str | Path | None, stem: str, save_picture: Callable[[], Any] | None,
                     *, overwrite: bool = False) -> list[Path]:
    """The masks (write_masks, if folder), then the picture (save_picture, if given); the masks just written
    are removed when the picture cannot be written, so a failed run leaves none that a rerun would stop on.
    Returns the masks' paths.

    A signal that would end the process at once (a bulk run's worker at Ctrl-C) unwinds the same way, wherever
    it strikes: between two masks, or while the picture is drawn."""
    with signals_unwind():
        written = [] if folder is None else write_masks(img, folder, stem, overwrite=overwrite)
        if save_picture is not None:
            try:
                save_picture()
            except BaseException:
                _remove(written)
                raise
    return written


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file path names (device, inode), or None if none."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _missing(folder: Path) -> list[Path]:
    """folder and its parents that do not exist yet, outermost first."""
    missing = []
    while not os.path.lexists(folder) and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


def mask_names(stem: str, k: int) -> list[str]:
    """The names of the k masks of stem, in label order: <stem>-cluster-<i>.png, i padded with zeros to the
    digits of k - 1 (k = 16: -cluster-00 .. -cluster-15; k <= 10: -cluster-0 .. -cluster-9)."""
    width = len(str(k - 1))
    return [f"{stem}-cluster-{i:0{width}d}.png" for i in range(k)]


def is_mask(path: str | Path, folder: str | Path, stem: str) -> bool:
    """Whether path names one of the masks folder/<stem>-cluster-<i>.png, at any K, padded or in an older
    kmq's unpadded naming (write_masks writes or removes every one of them)."""
    path = Path(path)
    return mask_stem(path.name) == stem and os.path.realpath(path.parent) == os.path.realpath(folder)


def existing_masks(folder: str | Path, stem: str) -> list[Path]:
    """The masks of stem (any K, any naming kmq used) in folder, in name order: without overwrite, any of
    them stops write_masks, whatever its K."""
    return _stale_masks(Path(folder), stem, 0)


def mask_stem(name: str) -> str | None:
    """The stem whose mask name is one of (at any K, padded or not), or None: "x-cluster-03.png" -> "x"."""
    parts = _mask_parts(name)
    return None if parts is None else parts[0]


# The names write_masks gives or gave, <stem>-cluster-<i>.png, i in ASCII digits (a -٣.png is not one), for
# any stem: it is what precedes the last "-cluster-", since the digits that follow it end the name.
_ANY_MASK = re.compile(rf"(.*)-cluster-([0-9]{{1,{len(str(MAX_K - 1))}}})\.png", re.DOTALL)


def _mask_parts(name: str) -> tuple[str, int] | None:
    """(stem, label) of a mask's name, or None: an index no K reaches (-cluster-99999.png) is not a name kmq
    writes, padded (K = 16: -cluster-03) or not (before padding: -cluster-3)."""
    match = _ANY_MASK.fullmatch(name)
    if match is None or int(match[2]) >= MAX_K:
        return None
    return match[1], int(match[2])


def _stale_masks(folder: Path, stem: str, k: int) -> list[Path]:
    """The masks of stem in folder that K = k does not write (none if folder does not exist yet), by label
    then name."""
    if not folder.is_dir():
        return []
    ours = set(mask_names(stem, k)) if k else set()
    found = []
    for entry in os.scandir(folder):
        parts = _mask_parts(entry.name)
        if parts is not None and parts[0] == stem and entry.name not in ours:
            found.append((parts[1], entry.name))
    return [folder / n for _, n in sorted(found)]


# A label map is data: its format must give back every value. Both sets are allowlists, checked by writing
# labels 0..255 (and 0..299 as 16-bit) through save_image and reading them back: any other format loses them
# (JPEG, AVIF, MPO, PDF are lossy; ICO and ICNS hold icon sizes only) or cannot write grey at all. Above K = 256
# the labels are 16-bit grey, which only the second set stores exactly (GIF, WebP, BMP... reduce or refuse it).
_EXACT_8_BIT = frozenset({"PNG", "TIFF", "PPM", "JPEG2000", "IM", "GIF", "WEBP", "BMP", "DIB", "TGA", "PCX",
                          "SGI", "DDS"})
_EXACT_16_BIT = frozenset({"PNG", "TIFF", "PPM", "JPEG2000", "IM"})


def check_label_map_format(name: str | Path, fmt: str, k: int | None = None) -> None:
    """Refuse (KmqError) a Pillow format that would not keep a label map's values exactly; k None: the part
    of the check that holds for any K, to be done before clustering."""
    if fmt in LOSSY_FORMATS:
        raise KmqError(f"{name}: {fmt} is lossy and would change the labels; write the label map as PNG")
    if fmt not in _EXACT_8_BIT:
        raise KmqError(f"{name}: {fmt} cannot store the labels exactly; write the label map as PNG")
    if k is not None and k > 256 and fmt not in _EXACT_16_BIT:
        raise KmqError(f"{name}: the labels of K = {k} are 16-bit, which {fmt} cannot store exactly; "
                       "write the label map as PNG")


def view_image(img: KmqImage, base: np.ndarray, style: str) -> np.ndarray | Image.Image:
    """render(img, base, style) as the picture to encode (kmq.imageio.save_image takes either): the overlay and
    the boundaries are drawn band by band straight into a Pillow image, which the encoder then reads; as one
    array beside Pillow's copy of it they were 144 MB more at 48 MP. The same pixels, so the same bytes."""
    bands = {"overlay": lambda: _overlay_bands(img.labels, base, img.k),
             "boundaries": lambda: _boundary_bands(img.labels, base)}.get(style)
    if bands is None:
        return render(img, base, style)
    canvas = Image.new("RGB", (img.width, img.height))
    for rows, band in bands():
        canvas.paste(Image.fromarray(band), (0, rows.start))
    return canvas


def render(img: KmqImage, base: np.ndarray, style: str) -> np.ndarray:
    """A segmentation view of img (see STYLES); base is the image drawn under overlay and boundaries.

    Example:
        >>> import numpy as np, kmq
        >>> pixels = np.array([[0, 255], [255, 0]], np.uint8)
        >>> img = kmq.compress(pixels, k=2)
        >>> kmq.segment.render(img, pixels, "labels")
        array([[0, 1],
               [1, 0]], dtype=uint8)
        >>> kmq.segment.render(img, pixels, "overlay").shape
        (2, 2, 3)
    """
    if style == "overlay":
        return overlay(img.labels, base, img.k)
    if style == "labels":
        return label_map(img.labels, img.k)
    if style == "mean":
        return img.decode()
    if style == "boundaries":
        return boundaries(img.labels, base)
    raise ValueError(f"unknown style {style!r}; choose from {', '.join(STYLES)}")


# --- the montage -------------------------------------------------------------------------------------------

PANEL_MIN = 240   # narrower images are enlarged (by a whole factor, nearest neighbour) so titles fit
PANEL_MAX = 640   # no panel is wider or taller (larger images are reduced), so five panels still fit a screen
_GAP = 12
_TITLE_SIZE = 22
_SUBTITLE_SIZE = 15
_HEAD = 10 + _TITLE_SIZE + 6 + _SUBTITLE_SIZE + 10
_INK = (34, 34, 34)
_MUTED = (96, 96, 96)


@dataclass
class Panel:
    """One cell of a montage: its titles, its image's box (x0, y0, x1, y1) in the montage, and for a
    reconstruction its stats record (kmq.stats.FIELDS; None for the original)."""
    title: str
    subtitle: str
    box: tuple[int, int, int, int]
    record: dict[str, Any] | None = None


@dataclass
class Montage:
    """pixels: (H, W, 3) uint8, the whole figure; panels: the original first, then one per K, in order (a K
    giving the same picture as one before it has none: see montage)."""
    pixels: np.ndarray
    panels: list[Panel] = field(default_factory=list)


def montage(pixels: np.ndarray, ks: Sequence[int], *, seed: int = 0, columns: int | None = None,
            max_pixels: int = DEFAULT_MAX_PIXELS, palette: Palette | None = None,
            dither: str = "none", progress: Callable[[int, int], None] | None = None) -> Montage:
    """The original beside its reconstruction at each K, every panel titled with K, the ratio and the PSNR.

    pixels: (h, w) or (h, w, 1|3|4) uint8. Panels are laid out in rows of at most four (five panels: 3 + 2)
    unless columns is given (at most one per panel); an image is reduced to fit PANEL_MAX x PANEL_MAX, or one
    narrower than PANEL_MIN enlarged by a whole factor within that box; a panel's cell is at least PANEL_MIN
    wide, for its titles. Raises KmqError, before any clustering, if the figure would exceed max_pixels.
    palette: instead of the ks, one reconstruction with this given palette, titled with its name.
    dither: as kmq.compress.
    Each picture is drawn once: a K repeated, or a K at or above the image's number of distinct colours
    (every such K gives the same lossless picture), has one panel, where its first K stands.
    progress: an optional callable(done, total), called as each K is fitted (and now and then within a long
    fit), last with done == total.
    """
    h, w = pixels.shape[:2]
    asked = list(dict.fromkeys(int(k) for k in ks))
    n = (1 if palette is not None else len(asked)) + 1
    # Checked for every K asked, before the clustering finds which coincide: at most that many panels.
    columns, size = _layout(n, columns, w, h)
    if size[0] * size[1] > max_pixels:
        raise KmqError(f"a montage of {n} panels would be {size[0]}x{size[1]} = {size[0] * size[1]} pixels, "
                       f"over the limit of {max_pixels} {MONTAGE_HINT}")
    pw, ph = _panel_size(w, h)

    def drawn(img: KmqImage) -> _Drawn:
        r = record(img, "", len(img.to_bytes()))
        rgb = opaque_rgb(img.decode())
        del img  # its labels (96 MB at 48 MP) go before Pillow copies the picture to scale it
        psnr = "lossless" if r["psnr"] == math.inf else f"PSNR {r['psnr']:.2f} dB"
        name = "" if palette is None else f" ({palette.name})"
        return _Drawn(_scaled(rgb, pw, ph), f"K = {r['k']}{name}", f"ratio {r['ratio']:.3f}, {psnr}", r)

    # Each picture is scaled to its panel as soon as it is made, and only the panel kept: every K's labels
    # and full-size picture at once took 1.35 GB at 48 MP.
    pictures = [_Drawn(_scaled(opaque_rgb(pixels), pw, ph), "original",
                       f"{w} x {h}, {_MODES[pixels.reshape(h, w, -1).shape[2]]}")]
    pictures += ([drawn(compress(pixels, palette=palette, dither=dither))] if palette is not None
                 else _distinct_pictures(pixels, asked, seed, dither, Steps(progress, len(asked)), drawn))
    if progress is not None:
        progress(1, 1)
    columns, size = _layout(len(pictures), columns, w, h)
    cw = max(pw, PANEL_MIN)
    from PIL import ImageDraw  # with its fonts, only where a montage is drawn: every command loads this module

    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    title_font, subtitle_font = _font(_TITLE_SIZE), _font(_SUBTITLE_SIZE)
    panels = []
    for i, picture in enumerate(pictures):
        x = _GAP + (i % columns) * (cw + _GAP)
        y = _GAP + (i // columns) * (_HEAD + ph + _GAP)
        draw.text((x, y + 10), picture.title, fill=_INK, font=title_font)
        draw.text((x, y + 10 + _TITLE_SIZE + 6), picture.subtitle, fill=_MUTED, font=subtitle_font)
        canvas.paste(picture.panel, (x, y + _HEAD))
        panels.append(Panel(picture.title, picture.subtitle, (x, y + _HEAD, x + pw, y + _HEAD + ph), picture.record))
    return Montage(np.asarray(canvas), panels)


@dataclass
class _Drawn:
    """One picture of a montage as its panel keeps it: scaled to the panel, titled, with its stats record."""
    panel: Image.Image
    title: str
    subtitle: str
    record: dict[str, Any] | None = None


_MODES = {1: "grey", 3: "RGB", 4: "RGBA"}


def _layout(n: int, columns: int | None, w: int, h: int) -> tuple[int, tuple[int, int]]:
    """(columns, (width, height) of the figure) for n panels of a w x h image."""
    columns = min(columns, n) if columns else math.ceil(n / math.ceil(n / 4))
    rows = math.ceil(n / columns)
    pw, ph = _panel_size(w, h)
    cw = max(pw, PANEL_MIN)
    return columns, (_GAP + columns * (cw + _GAP), _GAP + rows * (_HEAD + ph + _GAP))


def _distinct_pictures(pixels: np.ndarray, ks: list[int], seed: int, dither: str, steps: Steps,
                       drawn: Callable[[KmqImage], _Drawn]) -> list[_Drawn]:
    """drawn(compress(pixels)) at each of the distinct ks, in their order, each picture once: the largest K
    first, so that an image with fewer colours than it is found lossless at once (one warning, naming that
    K), and every K at or above its number of colours shares that one picture instead of being fitted again
    (a second warning names those Ks, as `kmq stats` does). Only what drawn keeps of each fit is held."""
    made: dict[int, _Drawn] = {}
    lossless: tuple[int, int, _Drawn] | None = None  # (the K asked, the k found, its picture)
    shared = []
    for k in sorted(ks, reverse=True):
        if lossless is not None and k >= lossless[1]:
            made[k] = lossless[2]
            if k > lossless[1]:  # asked for more colours than there are (a K of exactly them is no surprise)
                shared.append(k)
            continue
        made[k] = drawn(compress(pixels, k, seed=seed, dither=dither, progress=steps.within()))
        steps.step()
        if made[k].record["distortion"] == 0:
            lossless = k, made[k].record["k"], made[k]
    if shared and lossless is not None:
        asked = ", ".join(str(k) for k in sorted(shared))
        warn(f"K = {asked} {'gives' if len(shared) == 1 else 'give'} the same lossless picture as K = {lossless[0]} "
             f"(k={lossless[1]}, every colour of the image)")
    return list({id(made[k]): made[k] for k in ks}.values())


def montage_file(source: Source, ks: Sequence[int], *, seed: int = 0, columns: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, palette: Palette | None = None,
                 dither: str = "none", progress: Callable[[int, int], None] | None = None) -> Montage:
    """montage() of an image file: a path, its bytes or a binary file object (see kmq.api.load). A
    .kmq file is refused: it holds one K and not the original. Warnings name the source (kmq.api.input_name).

    Example:
        >>> import io, numpy as np, kmq
        >>> from PIL import Image
        >>> png = io.BytesIO()
        >>> Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(png, "PNG")  # or "photo.png"
        >>> m = kmq.segment.montage_file(png.getvalue(), [2, 4])
        >>> [p.title for p in m.panels], m.pixels.dtype
        (['original', 'K = 2', 'K = 4'], dtype('uint8'))
    """
    name = input_name(source)
    with named_warnings(name):
        loaded, _ = load(source, max_pixels=max_pixels, name=name)
        if isinstance(loaded, KmqImage):
            raise KmqError(f"{name}: a .kmq file holds one K and not the original; give montage the image")
        with naming(name, KmqError):  # the palette's checks see pixels, not the file
            return montage(loaded, ks, seed=seed, columns=columns, max_pixels=max_pixels, palette=palette,
                           dither=dither, progress=progress)


def _panel_size(w: int, h: int) -> tuple[int, int]:
    if w > PANEL_MAX or h > PANEL_MAX:
        scale = PANEL_MAX / max(w, h)
        return max(1, round(w * scale)), max(1, round(h * scale))
    # Enlarging is capped by the height too: a 1 x 500 column enlarged to 240 px wide would be 120,000 px tall.
    factor = max(1, min(math.ceil(PANEL_MIN / w), PANEL_MAX // w, PANEL_MAX // h))
    return w * factor, h * factor


def _scaled(rgb: np.ndarray, pw: int, ph: int) -> Image.Image:
    im = Image.fromarray(rgb)
    if im.size == (pw, ph):
        return im
    # Enlarging keeps the palette's hard edges; reducing averages, as any viewer would.
    return im.resize((pw, ph), Image.Resampling.NEAREST if pw > im.width else Image.Resampling.LANCZOS)


def _font(size: int) -> Any:
    from PIL import ImageFont

    # Pillow ships this font (no download); without FreeType it falls back to its small bitmap font.
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):
        return ImageFont.load_default()


# --- palette swatches --------------------------------------------------------------------------------------

SWATCH_CELL = 48
SWATCH_COLUMNS = 16
SWATCH_MAX = 800  # above 256 entries, more columns of smaller cells keep the grid within this many px a side
_SWATCH_GUTTER = 2
PROPORTIONAL_SIZE = (768, 96)


def swatch(palette: np.ndarray, shares: np.ndarray | None = None, *, proportional: bool = False) -> np.ndarray:
    """The palette as a picture, in the palette's channels: (k, c) uint8 -> (H, W) or (H, W, c) uint8.

    Default: one SWATCH_CELL square per entry, SWATCH_COLUMNS to a row, white gutters (transparent for
    RGBA); above 256 entries, a square grid of smaller cells about SWATCH_MAX px a side (3 px each at 65536).
    proportional: one PROPORTIONAL_SIZE bar, each entry as wide as its share of the pixels
    ((k,) floats summing to 1), rounded so the widths add up exactly; an entry too rare for a pixel is not drawn.
    """
    k, c = palette.shape
    if proportional:
        if shares is None:
            raise ValueError("a proportional swatch needs the shares")
        width, height = PROPORTIONAL_SIZE
        bounds = np.rint(np.concatenate([[0], np.cumsum(shares)]) * width).astype(np.int64)
        bounds[-1] = width
        columns = np.repeat(np.arange(k), np.diff(bounds))
        index = np.broadcast_to(columns, (height, width))
    else:
        cols = min(k, max(SWATCH_COLUMNS, math.ceil(math.sqrt(k))))
        rows = math.ceil(k / cols)
        step = min(SWATCH_CELL + _SWATCH_GUTTER, SWATCH_MAX // cols)
        gutter = _SWATCH_GUTTER if step >= 5 * _SWATCH_GUTTER else 0  # tiny cells need all their pixels
        y = np.arange(rows * step + gutter)[:, None]
        x = np.arange(cols * step + gutter)[None, :]
        entry = (y // step) * cols + x // step
        inside = (y % step >= gutter) & (x % step >= gutter) & (entry < k)
        index = np.where(inside, entry, k)  # k is the gutter colour appended below
    background = np.array([[255] * c if c != 4 else [255, 255, 255, 0]], np.uint8)
    pixels = np.concatenate([palette, background])[index]
    return pixels[:, :, 0] if c == 1 else pixels
