"""Targets instead of K: the smallest file at a PSNR, or the best PSNR in a number of bytes.

Both searches lean on two near-monotone curves: J falls and the file grows as K grows. The image's distinct
colours are found once and every K is fitted at most once (its palette and per-colour labels kept, never
per-pixel ones). A search brackets the answer between a K that misses and one that meets the target and
narrows the bracket by interpolating in log K (log J, or log bytes, is close to linear in it), never by less
than a quarter of the bracket; beyond it, a probe goes where the line through the last two reaches the
target. While bracketing bytes with ctx, sizes are estimated from the information the payload codes
(ctx.information, about half an encoding); the bracket's ends are then checked exactly.

For ctx and lzma, rdo buys bytes far more cheaply than a smaller K does, so the best file is usually a
larger K with a strong rdo, and the plain bracket is only narrowed coarsely (hi <= 1.25 lo) before it:
  - PSNR: the file of 1.5 hi with the slack between its J and the target's spent on rdo. It is no larger
    than every plain K that meets the target when it is no larger than the plain file of lo (which
    misses it); only otherwise is the bracket narrowed to neighbouring K, the smaller file kept.
  - bytes: the file of K_r = 3 lo (lo the largest K found whose plain file fits) with the rdo strength
    searched: first at the J of hi (the smallest K found that does not fit), then on a line in (log of
    the J rdo adds, log bytes), at most _RDO_STEPS files. It beats every plain K that fits when its J is
    below that of hi; otherwise the bracket is narrowed and the better file kept.
K is capped where the palette alone would fill the byte budget. With raw the size depends on K only
through ceil(log2 K) and the palette, so the byte budget is solved from that formula.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np

from . import kmeans
from .api import MAX_RDO, quantize_colors, quantized
from .codecs import ctx, rans
from .errors import KmqError
from .format import KmqImage
from .stats import psnr as psnr_of

_MAX_STEPS = 12  # K probes of one bracket search, at most
_COARSE = 1.25  # the plain bracket's width (hi / lo) before rdo files are tried
_RDO_STEPS = 3  # rdo files tried under a byte budget, at most
# Under a PSNR target, rdo is tried at this multiple of the bracket's top: the best multiple is 1.25 to 2
# depending on the image (1.5 is within 3 % of the best on camera, chelsea and ihc at 30 to 40 dB; 2 was
# up to 8 % larger on camera).
_PSNR_K = 1.5
_RDO_K = 3  # under a byte budget, rdo is tried at this multiple of the largest plain K that fits
_INSIDE = 0.015  # and aimed this much (in log bytes) inside it
_RDO_SLOPE = -0.28  # typical d log bytes / d log (the J rdo adds) at a fixed K
_RDO_DIGITS = 3  # the rdo strength chosen is recorded (and used) to this many decimals


class _Search:
    """One image's fits and files, each computed at most once."""

    def __init__(self, pixels: np.ndarray, k_max: int, codec: str, seed: int, max_iter: int,
                 target: dict) -> None:
        self.pixels = pixels
        self.channels = pixels.shape[2]
        self.distinct = kmeans.distinct(pixels.reshape(-1, self.channels))
        # Above the number of distinct colours every K is lossless: no need to look there.
        self.k_hi = min(k_max, len(self.distinct.colors))
        self.codec, self.seed, self.max_iter, self.target = codec, seed, max_iter, target
        self.fits: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}  # palette, per-colour labels, J
        self.files: dict[tuple[int, float], tuple[KmqImage, int]] = {}
        self.guesses: dict[int, float] = {}

    def j(self, k: int) -> float:
        if k not in self.fits:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fewer colours than k is expected while searching
                self.fits[k] = quantize_colors(self.distinct.colors, self.distinct.counts, k, seed=self.seed,
                                               max_iter=self.max_iter)
        return self.fits[k][2]

    def psnr(self, j: float) -> float:
        return psnr_of(j, self.channels)

    def file(self, k: int, rdo: float = 0.0) -> tuple[KmqImage, int]:
        """The image at k with rdo, and its size in bytes (with the metadata it will carry)."""
        key = (k, rdo)
        if key not in self.files:
            self.j(k)
            palette, color_labels, j = self.fits[k]
            fit = (palette, self.distinct.spread(color_labels.astype(np.uint16)), j)
            img = quantized(self.pixels, self.distinct, k, seed=self.seed, max_iter=self.max_iter,
                            codec=self.codec, rdo=rdo, fit=fit, extra={"target": self.target})
            self.files[key] = (img, len(img.to_bytes()))
        return self.files[key]

    def size(self, k: int) -> int:
        return self.file(k)[1]

    def guess(self, k: int) -> float:
        """The plain file's size at k: exact for lzma (or once known); for ctx estimated from the information
        its payload codes, without coding it (within a few bytes per coder lane, ample for a bracket)."""
        if self.codec != "ctx" or (k, 0.0) in self.files or k == 1:
            return self.size(k)
        if k not in self.guesses:
            self.guesses[k] = self._guess(k)
        return self.guesses[k]

    def _guess(self, k: int) -> float:
        self.j(k)
        palette, color_labels, _ = self.fits[k]
        labels = self.distinct.spread(color_labels.astype(np.uint16))
        height, width = self.pixels.shape[:2]
        lanes = 1 << ctx.lanes_log2(height * width)
        # K = 1's file is all but the payload and the other entries; the coder's lane byte and states add
        # 1 + 5 bytes a lane, of which about one byte a lane is information already counted.
        return (self.size(1) + (len(palette) - 1) * self.channels + 1 + (rans.STATE_BYTES - 1) * lanes
                + ctx.information(labels.reshape(height, width), palette) / 8)


def search(pixels: np.ndarray, *, psnr: float | None, max_bytes: int | None, k_max: int, codec: str,
           seed: int, max_iter: int) -> KmqImage:
    """kmq.compress_to's work (arguments already checked)."""
    target = {"psnr": psnr} if psnr is not None else {"max_bytes": max_bytes}
    s = _Search(pixels, k_max, codec, seed, max_iter, target)
    if psnr is not None:
        return _for_psnr(s, psnr)
    assert max_bytes is not None
    return _for_bytes(s, max_bytes)


def _bracket(k_hi: int, ok: Callable[[int], bool], value: Callable[[int], float], goal: float,
             start: int, known: tuple[int, int] | None = None, coarse: float = 1.0) -> tuple[int, int]:
    """Narrow (lo, hi) with ok(lo) false and ok(hi) true, ok growing with K, to neighbours, or to
    hi <= coarse * lo (or as far as _MAX_STEPS probes get). lo = 0 means no K fails; hi = k_hi + 1 that none
    meets. value(k) is the curve whose logarithm is interpolated (J or bytes), goal its value at the target.
    known: a bracket found before, to narrow further."""
    lo, hi = known or (0, k_hi + 1)
    k = max(1, min(start, k_hi)) if known is None else _between(lo, hi, value, goal)
    prev: tuple[int, float] | None = None
    for _ in range(_MAX_STEPS):
        if hi - lo <= 1 or (known is not None and k is None):
            break
        if ok(k):
            hi = k
        else:
            lo = k
        if hi - lo <= 1 or (1 <= lo and hi <= k_hi and hi <= coarse * lo):
            break
        v = value(k)
        if lo == 0:
            k_next = _extrapolate(k, v, prev, goal) or _towards(k, v, 1, goal)
            k_next = max(1, min(hi - 1, k_next))
        elif hi == k_hi + 1:
            k_next = _extrapolate(k, v, prev, goal) or _towards(lo, value(lo), lo * 4, goal)
            k_next = min(k_hi, max(lo + 1, k_next))
        else:
            k_next = _between(lo, hi, value, goal)
        prev, k = (k, v), k_next
    return lo, hi


def _extrapolate(k: int, v: float, prev: tuple[int, float] | None, goal: float) -> int | None:
    """The K where the line through the last two probes (log value against log K) reaches the goal, the
    jump kept within 1.2x .. 8x."""
    if prev is None or prev[0] == k or min(v, prev[1], goal) <= 0 or v == prev[1]:
        return None
    slope = (math.log(v) - math.log(prev[1])) / (math.log(k) - math.log(prev[0]))
    step = math.log(goal / v) / slope
    if step == 0:
        return None
    step = math.copysign(min(math.log(8), max(math.log(1.2), abs(step))), step)
    return int(round(k * math.exp(step)))


def _towards(k: int, v: float, far: int, goal: float) -> int:
    """A first jump from k (curve value v) towards the goal: by the typical slope of J (or bytes) in log K."""
    if v <= 0 or goal <= 0:
        return far
    # A doubling of K divides J by about 1.8 (and multiplies bytes by about 1.5): aim for the goal by that.
    steps = abs(math.log(v / goal)) / math.log(1.6)
    factor = 2 ** max(0.5, steps)
    return int(round(k / factor)) if far < k else int(round(k * factor))


def _between(lo: int, hi: int, value: Callable[[int], float], goal: float) -> int:
    """Interpolate log value linearly in log K between lo and hi, kept in the middle half of the bracket."""
    a, b = value(lo), value(hi)
    if a > 0 and b > 0 and goal > 0 and a != b:
        t = (math.log(goal) - math.log(a)) / (math.log(b) - math.log(a))
        k = math.exp(math.log(lo) + min(1.0, max(0.0, t)) * (math.log(hi) - math.log(lo)))
    else:
        k = math.sqrt(lo * hi)
    quarter = (hi - lo) / 4
    return int(min(hi - 1, max(lo + 1, round(min(hi - quarter, max(lo + quarter, k))))))


def _for_psnr(s: _Search, db: float) -> KmqImage:
    j_goal = s.channels * 255**2 / 10 ** (db / 10)

    def ok(k: int) -> bool:
        return s.psnr(s.j(k)) >= db

    coarse = 1.0 if s.codec == "raw" else _COARSE
    lo, hi = _bracket(s.k_hi, ok, s.j, j_goal, 16, coarse=coarse)
    if hi > s.k_hi:
        best = s.psnr(s.j(s.k_hi))
        raise KmqError(f"PSNR {db:g} dB is out of reach: the best is {best:.2f} dB (K={s.k_hi}"
                       f"{', the most -k allows' if s.k_hi < len(s.distinct.colors) else ''})")
    if s.codec == "raw" or lo == 0:
        return s.file(hi)[0]
    # A larger K with the slack between its J and the target's spent on rdo is usually smaller than any
    # plain K that meets the target: rdo saves bytes at a far lower price in PSNR than a smaller K does.
    k = min(s.k_hi, round(_PSNR_K * hi))
    cand, size = s.file(k, _pct(j_goal / s.j(k)) if s.j(k) > 0 else 0.0)
    if s.psnr(cand.distortion) < db:
        cand, size = None, 0
    if cand is not None and size <= s.size(lo):
        return cand  # no larger than a plain K that misses, so than every plain K that meets
    lo, hi = _bracket(s.k_hi, ok, s.j, j_goal, 16, known=(lo, hi))
    img, plain = s.file(hi)
    return cand if cand is not None and size < plain else img


def _pct(ratio: float) -> float:
    """The rdo percentage for a J ratio, rounded down to _RDO_DIGITS decimals (so the bound holds)."""
    return max(0.0, math.floor((ratio - 1) * 100 * 10**_RDO_DIGITS) / 10**_RDO_DIGITS)


def _for_bytes(s: _Search, max_bytes: int) -> KmqImage:
    smallest = s.size(1)
    if smallest > max_bytes:
        # The file records the target itself, so the smallest possible size is the least n whose file,
        # recording n, fits in n bytes.
        base = smallest - len(str(max_bytes))
        need = base + 1
        while base + len(str(need)) > need:
            need += 1
        raise KmqError(f"no .kmq file of this image fits in {max_bytes:,} bytes: the smallest possible is "
                       f"{need:,} bytes (K=1)")
    if s.codec == "raw":
        return _raw_bytes(s, max_bytes)
    # No file of K entries is smaller than its palette: K beyond the budget's room for one need not be fitted.
    k_cap = max(1, min(s.k_hi, (max_bytes - smallest) // s.channels + 1))

    def ok(k: int) -> bool:  # "meets" here means "does not fit": the curve grows with K
        return s.size(k) > max_bytes

    # The bracket on estimated sizes first; only its ends are then coded, and only if they disagree is it
    # narrowed on exact ones.
    lo, hi = _bracket(k_cap, lambda k: s.guess(k) > max_bytes, s.guess, max_bytes, 16, coarse=_COARSE)
    if (lo >= 1 and ok(lo)) or (hi <= k_cap and not ok(hi)):
        lo, hi = _bracket(k_cap, ok, s.size, max_bytes, 16, coarse=_COARSE)
    if hi > k_cap:  # every K allowed fits
        return s.file(max(lo, 1))[0]
    cand = _rdo_in_bytes(s, max_bytes, lo, hi, k_cap) if lo >= 1 else None
    if cand is not None and cand.distortion < s.j(hi):
        return cand  # better than the smallest K that does not fit, so than every plain K that does
    lo, hi = _bracket(k_cap, ok, s.size, max_bytes, 16, known=(lo, hi))
    best = s.file(max(lo, 1))[0]
    return cand if cand is not None and cand.distortion < best.distortion else best


def _rdo_in_bytes(s: _Search, max_bytes: int, lo: int, hi: int, k_cap: int) -> KmqImage | None:
    """The best file of K_r = _RDO_K x lo (lo the largest K found whose plain file fits, hi the smallest that
    does not) with rdo that fits, None if none found. The rdo strength is first that of hi's J (rdo at a
    larger K usually fits there, and then beats every plain K that fits), then found on the line through
    the last two files in (log of the J rdo adds, log bytes), along which rdo files lie close to a line of
    slope about _RDO_SLOPE (the first step takes that slope)."""
    k = min(k_cap, _RDO_K * lo)
    if k <= hi or s.j(k) <= 0:
        return None
    j_k = s.j(k)
    if s.guess(k) <= max_bytes and s.size(k) <= max_bytes:
        return s.file(k)[0]
    goal = math.log(max_bytes) - _INSIDE  # aimed a little inside the budget: a file over it is wasted
    best: KmqImage | None = None
    points: list[tuple[float, float]] = []  # (log added J, log bytes) of the files tried
    added = s.j(hi) - j_k
    for _ in range(_RDO_STEPS):
        pct = min(MAX_RDO, _pct((j_k + added) / j_k))
        if pct <= 0:
            break
        img, size = s.file(k, pct)
        if img.distortion <= j_k:
            break
        points.append((math.log(img.distortion - j_k), math.log(size)))
        if size <= max_bytes and (best is None or img.distortion < best.distortion):
            best = img
        # The line through the nearest files either side of the budget once there are both, else the last two.
        over = [p for p in points if p[1] > math.log(max_bytes)]
        under = [p for p in points if p[1] <= math.log(max_bytes)]
        if over and under:
            (u1, y1), (u0, y0) = max(under, key=lambda p: p[1]), min(over, key=lambda p: p[1])
        else:
            (u1, y1), (u0, y0) = points[-1], points[-2] if len(points) > 1 else (math.nan, math.nan)
        slope = (y1 - y0) / (u1 - u0) if len(points) > 1 and u1 != u0 and y1 != y0 else _RDO_SLOPE
        nxt = math.exp(u1 + (goal - y1) / min(slope, -0.05))
        if abs(math.log(nxt) - u1) < 1e-3 or (best is None and nxt > s.j(lo) - j_k):
            break
        added = nxt
    return best


def _raw_bytes(s: _Search, max_bytes: int) -> KmqImage:
    """raw: the largest K whose file fits, from the size formula. Within a bit width the payload is the same,
    so the width's largest K that fits is the best; the metadata's length (J's digits) is then checked."""
    n = s.pixels.shape[0] * s.pixels.shape[1]
    fixed = s.size(1) - s.channels  # header, K = 1's metadata and crc (K = 1 has no payload)
    k = 1
    for bits in range(1, 17):
        room = (max_bytes - fixed - (-(-n * bits // 8))) // s.channels
        fits = min(1 << bits, s.k_hi, room)
        if fits <= 1 << (bits - 1):
            break
        k = fits
    while k > 1 and s.size(k) > max_bytes:  # a J with more digits than K = 1's: a few bytes more
        k -= max(1, -(-(s.size(k) - max_bytes) // s.channels))
    return s.file(max(1, k))[0]
