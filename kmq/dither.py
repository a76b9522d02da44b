"""Floyd–Steinberg error diffusion onto a given palette: labels whose decoded image looks, from a step back,
closer to the original than each pixel's nearest entry does.

Both paths run the same integer arithmetic (Pillow's): pixels in raster order; each pixel's value is its
colour plus ⌊(7·left + 3·above-right + 5·above + 1·above-left) / 16⌋ of its neighbours' errors (the division
truncating toward zero, as C's), clipped to 0..255 per channel; its label is the palette entry nearest that
value, and its error is the value minus that entry.

- RGB with K <= 256 goes through Pillow's quantizer (C, 0.3 s at 12 MP), unless more than 0.1 % of the pixels
  are exactly a palette colour that Pillow's colour cache draws as another entry (graphics: see
  _cache_loses_colours). Pillow matches each value through its colour cache: the entry nearest the value
  with the two low bits of every channel cleared (ties to the lower index), and its last column receives the
  blue channel's error from the row above in every channel. So its labels differ slightly from the exact
  path's (on the sample photos its blurred error is 2-3 % higher); both are tested against their own
  definition.
- Everything else (L, RGBA, K > 256) runs a wavefront. Grey too: Pillow would copy L values as indices, and
  through RGB its cache's 4-level steps are as coarse as a 64-entry grey palette (dithering at K = 64 then
  came out worse than none). Pixel (y, x) depends only on pixels of steps t − 1 .. t − 3 where t = x + 2y,
  so all the pixels of one step are diffused at once by numpy, with an exact nearest-entry search per step
  (ties to the lower index). No per-pixel Python loop.

RGBA bends the rule at alpha's ends (`alpha`): a pixel of alpha 0 takes no error and passes none on (its
label is its undithered nearest entry), and an opaque pixel takes no alpha error. Plain FS carried a soft
shadow's alpha error onto the transparent background and into the opaque interior: on six icons at
K = 8..256, 26 of 36 files showed background pixels up to alpha 21 and 17 had opaque pixels down to 132
(pngquant: at most 5, never below 217).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from PIL import Image

from . import kmeans
from .limits import DITHERS as METHODS  # noqa: F401  (kmq.api reads them here; kmq --help from limits, no numpy)

PILLOW_MAX_K = 256
_LOST_SHARE = 0.001  # pixels the colour cache would redraw (exact palette colours), at most, for Pillow's path
_BLOCK = 1 << 22  # elements of one step's (points x candidates) distance array
_MAX_CELLS = 1 << 12
_CELLS_FROM_K = 256  # above this, a grid of cells beats comparing every entry
_MAX_CELL_WORK = 1 << 26  # cells x K distances computed once to pick each cell's candidates


def floyd_steinberg(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(h, w, C) uint8 pixels, (k, C) uint8 palette -> (h, w) uint16 labels, dithered (see the module)."""
    h, w, channels = pixels.shape
    if palette.shape[0] == 1:
        return np.zeros((h, w), np.uint16)
    if channels == 3 and palette.shape[0] <= PILLOW_MAX_K and not _cache_loses_colours(pixels, palette):
        return _pillow(pixels, palette)
    return wavefront(pixels, palette, Matcher(palette), alpha=channels == 4)


def distortion(pixels: np.ndarray, palette: np.ndarray, labels: np.ndarray) -> float:
    """J of labels: the mean over pixels of the squared distance between a pixel and its palette colour."""
    flat = pixels.reshape(-1, pixels.shape[-1])
    labels = labels.ravel()
    total = 0
    step = max(1, _BLOCK // flat.shape[1])
    for s in range(0, flat.shape[0], step):
        diff = flat[s:s + step].astype(np.int32) - palette[labels[s:s + step]]
        total += int(np.einsum("nc,nc->", diff, diff, dtype=np.int64))
    return total / flat.shape[0]


def _cache_loses_colours(pixels: np.ndarray, palette: np.ndarray) -> bool:
    """Whether Pillow's colour cache would redraw many pixels that are exactly a palette colour: an entry
    whose own colour, bits cleared, is nearer another entry is drawn as that one even where nothing is
    diffused, and its error then spreads over a flat area (a screenshot at K = 64: white text background
    drawn #fbfcfd, J 26x no dithering's). Photos rarely hold an entry's exact colour; graphics do."""
    cleared = (palette & 0xFC).astype(np.int64)
    d2 = ((cleared[:, None, :] - palette[None, :, :].astype(np.int64)) ** 2).sum(axis=2)
    lost = np.flatnonzero(np.argmin(d2, axis=1) != np.arange(len(palette)))
    if lost.size == 0:
        return False
    hit = np.count_nonzero(np.isin(kmeans._pack(pixels.reshape(-1, 3)), kmeans._pack(palette[lost])))
    return hit > _LOST_SHARE * pixels.shape[0] * pixels.shape[1]


def _pillow(pixels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(h, w, 3) pixels, (k <= 256, 3) palette: Pillow's Floyd–Steinberg (see the module)."""
    target = Image.new("P", (1, 1))
    # Exactly k entries: Pillow searches only the palette's own size, so every label is < k.
    target.putpalette(np.ascontiguousarray(palette).tobytes(), "RGB")
    out = Image.fromarray(np.ascontiguousarray(pixels), "RGB").quantize(palette=target,
                                                                       dither=Image.Dither.FLOYDSTEINBERG)
    return np.asarray(out).astype(np.uint16)


def wavefront(pixels: np.ndarray, palette: np.ndarray, match: Callable[[np.ndarray], np.ndarray], *,
              values: np.ndarray | None = None, alpha: bool = False) -> np.ndarray:
    """Floyd–Steinberg by anti-diagonals t = x + 2y; match((n, C) int32 values in 0..255) -> (n,) labels.
    values: an optional (h·w, C) array that receives every pixel's value (its colour plus diffused error).
    alpha: RGBA's rule at alpha 0 and 255 (see the module).

    err_t[y + 1] holds the error of pixel (y, t − 2y), zero where that pixel does not exist (and in row 0,
    which stands for y = −1), so the four neighbours of step t are slices of the last three steps.
    """
    h, w, channels = pixels.shape
    flat = pixels.reshape(-1, channels)
    pal = palette.astype(np.int32)
    labels = np.empty(h * w, np.uint16)
    errs = [np.zeros((h + 1, channels), np.int32) for _ in range(4)]
    row_start = np.arange(h, dtype=np.intp) * (w - 2)  # + t: the flat index of pixel (y, t - 2y)
    for t in range(w + 2 * (h - 1)):
        lo, hi = max(0, (t - w + 2) // 2), min(h - 1, t // 2)
        cur, e1, e2, e3 = errs[t % 4], errs[(t - 1) % 4], errs[(t - 2) % 4], errs[(t - 3) % 4]
        acc = 7 * e1[lo + 1:hi + 2]
        acc += 3 * e1[lo:hi + 1]
        acc += 5 * e2[lo:hi + 1]
        acc += e3[lo:hi + 1]
        acc += 15 & (acc >> 31)  # then >> 4 divides by 16 truncating toward zero, as C does
        acc >>= 4
        index = row_start[lo:hi + 1] + t
        px = flat[index]
        if alpha:
            # Products, not masked writes: the same arithmetic on every pixel of the step, no gathers.
            seen = px[:, 3] != 0
            acc *= seen[:, None]
            acc[:, 3] *= px[:, 3] != 255
        acc += px
        np.clip(acc, 0, 255, out=acc)
        lab = match(acc)
        labels[index] = lab
        if values is not None:
            values[index] = acc
        cur[:] = 0
        cur[lo + 1:hi + 2] = acc - pal[lab]
        if alpha:
            cur[lo + 1:hi + 2] *= seen[:, None]
    return labels.reshape(h, w)


class Matcher:
    """The exact nearest palette entry (ties to the lower index) of integer colours in 0..255, for many small
    batches: the per-batch work is a table look-up (grey), K table sums (small K) or a few candidates per
    cell of a grid over the colour cube (large K), all prepared once."""

    def __init__(self, palette: np.ndarray) -> None:
        self.palette = np.ascontiguousarray(palette, np.uint8)
        k, channels = self.palette.shape
        self.lut = self.tables = self.flat = None
        if channels == 1:
            self.lut = kmeans.nearest(np.arange(256, dtype=np.uint8)[:, None], self.palette)[0]
            return
        if k > _CELLS_FROM_K:
            self._prepare_cells()
        else:
            v = np.arange(256, dtype=np.int32)[:, None]
            self.tables = [(v - self.palette[None, :, c].astype(np.int32)) ** 2 for c in range(channels)]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if self.lut is not None:
            return self.lut[values[:, 0]]
        if self.flat is not None:
            return self._by_cells(values)
        d = np.take(self.tables[0], values[:, 0], axis=0)
        for c in range(1, values.shape[1]):
            d += np.take(self.tables[c], values[:, c], axis=0)
        return np.argmin(d, axis=1)

    def _prepare_cells(self) -> None:
        """For each cell with centre z and half-diagonal r_c, the entries within r + 2·r_c of z, where r is
        the distance from z to its nearest entry: a point x of the cell has an entry within r + r_c, so its
        nearest entry e (and any tied with it) has |e − z| <= |e − x| + |x − z| <= r + 2·r_c."""
        k, channels = self.palette.shape
        per_axis = max(1, int(min(_MAX_CELLS, _MAX_CELL_WORK // k) ** (1 / channels) + 1e-9))
        width = 256 / per_axis
        coords = np.indices((per_axis,) * channels).reshape(channels, -1).T
        centres = (coords + 0.5) * width  # a cell holds the values v with v·per_axis // 256 = its coordinate
        half_diag = 0.5 * width * math.sqrt(channels)
        pal = self.palette.astype(np.float64)
        pp = np.einsum("kc,kc->k", pal, pal)
        rows, cols = [], []
        step = max(1, _BLOCK // k)
        for s in range(0, len(centres), step):
            z = centres[s:s + step]
            d = np.sqrt(np.maximum(np.einsum("mc,mc->m", z, z)[:, None] - 2.0 * (z @ pal.T) + pp, 0.0))
            # The slack only widens the sets, so float rounding in the bound never drops the nearest.
            r, c = np.nonzero(d <= d.min(axis=1, keepdims=True) + 2.0 * half_diag + 1e-6)
            rows.append(r + s)
            cols.append(c)
        # Row-major: each cell's entries, ascending, from starts[cell] to ends[cell] - 1 of the flat list.
        r, self.flat = np.concatenate(rows), np.concatenate(cols).astype(np.int32)
        self.ends = np.cumsum(np.bincount(r, minlength=len(centres)))
        self.starts = self.ends - np.bincount(r, minlength=len(centres))
        self.per_axis = per_axis
        self.pal32 = self.palette.astype(np.int32)

    def _by_cells(self, values: np.ndarray) -> np.ndarray:
        n, channels = values.shape
        cell = np.zeros(n, np.intp)
        for c in range(channels):
            cell *= self.per_axis
            cell += (values[:, c] * self.per_axis) >> 8
        start, last = self.starts[cell], self.ends[cell] - 1
        # Cells far from the palette have many candidates: points go in groups of similar counts (up to
        # twice the group's smallest), each compared with as many candidates as its largest count.
        count = last - start + 1
        order = np.argsort(count, kind="stable")
        count = count[order]
        bounds = np.searchsorted(count, 2 ** np.arange(1, int(count[-1]).bit_length() + 1), side="right")
        out = np.empty(n, np.intp)
        lo = 0
        for hi in np.unique(bounds):
            if hi == lo:
                continue
            rows = order[lo:hi]
            spread = np.arange(count[hi - 1])
            # Past its own entries a row repeats the cell's last one: a tie with itself, so argmin's first
            # minimum is still the lowest index among the true candidates.
            cand = self.flat[np.minimum(start[rows, None] + spread, last[rows, None])]
            v = values[rows]
            d = (self.pal32[cand, 0] - v[:, 0, None]) ** 2
            for c in range(1, channels):
                d += (self.pal32[cand, c] - v[:, c, None]) ** 2
            out[rows] = cand[np.arange(len(rows)), np.argmin(d, axis=1)]
            lo = hi
        return out


def blurred_error(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """The error seen from a step back: the mean squared difference per sample of a and b (same shape, any
    channels) after a Gaussian blur of standard deviation sigma pixels (edges mirrored), as the eye averages
    neighbouring pixels. How dithering is judged: it raises J but lowers this."""
    radius = max(1, math.ceil(3 * sigma))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    # Blur the difference: the blur is linear, so this is blur(a) - blur(b) in one pass.
    d = a.astype(np.float64) - b
    d = d.reshape(d.shape[0], d.shape[1], -1)
    for axis in (0, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        padded = np.pad(d, pad, mode="symmetric")
        n = d.shape[axis]
        d = sum(w * np.take(padded, np.arange(i, i + n), axis=axis) for i, w in enumerate(kernel))
    return float(np.mean(d ** 2))
