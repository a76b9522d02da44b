"""Targets instead of K: the smallest file at a PSNR, or the best PSNR in a number of bytes.

Both searches lean on two near-monotone curves: J falls and the file grows as K grows. The image's distinct
colours are found once and every K is fitted at most once. A search brackets the answer between a K that
misses and one that meets the target and narrows the bracket by interpolating in log K (log J, or log bytes,
is close to linear in it), never by less than a quarter of the bracket, down to neighbouring K.

For ctx and lzma, rdo buys bytes far more cheaply than a smaller K does, so the best file is usually a
larger K with a strong rdo. Under a PSNR target, K* (the smallest K whose plain file reaches it) is found,
then 1.5 K* and 2 K* with the slack between their J and the target's spent on rdo; the smallest file wins.
Under a byte budget, the PSNR is searched: for a PSNR p the file is 2 K*(p) with rdo up to p, and p is
narrowed by interpolating log bytes, from the plain best's PSNR up. The plain K is kept whenever it is
better. With raw the size depends on K only through ceil(log2 K) and the palette, so the byte budget is
solved from that formula.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np

from . import kmeans
from .api import quantize_distinct, quantized
from .errors import KmqError
from .format import KmqImage
from .stats import psnr as psnr_of

_MAX_STEPS = 12  # K probes of one bracket search, at most
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
        self.fits: dict[int, tuple] = {}
        self.files: dict[tuple[int, float], tuple[KmqImage, int]] = {}

    def j(self, k: int) -> float:
        if k not in self.fits:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fewer colours than k is expected while searching
                self.fits[k] = quantize_distinct(self.distinct, k, seed=self.seed, max_iter=self.max_iter)
        return self.fits[k][2]

    def psnr(self, j: float) -> float:
        return psnr_of(j, self.channels)

    def file(self, k: int, rdo: float = 0.0) -> tuple[KmqImage, int]:
        """The image at k with rdo, and its size in bytes (with the metadata it will carry)."""
        key = (k, rdo)
        if key not in self.files:
            self.j(k)
            img = quantized(self.pixels, self.distinct, k, seed=self.seed, max_iter=self.max_iter,
                            codec=self.codec, rdo=rdo, fit=self.fits[k], extra={"target": self.target})
            self.files[key] = (img, len(img.to_bytes()))
        return self.files[key]

    def size(self, k: int) -> int:
        return self.file(k)[1]


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
    for _ in range(_MAX_STEPS):
        if hi - lo <= 1 or (known is not None and k is None):
            break
        if ok(k):
            hi = k
        else:
            lo = k
        if hi - lo <= 1 or (1 <= lo and hi <= k_hi and hi <= coarse * lo):
            break
        if lo == 0:
            k = max(1, min(hi - 1, _towards(k, value(k), 1, goal)))
        elif hi == k_hi + 1:
            k = min(k_hi, max(lo + 1, _towards(lo, value(lo), lo * 4, goal)))
        else:
            k = _between(lo, hi, value, goal)
    return lo, hi


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

    lo, hi = _bracket(s.k_hi, ok, s.j, j_goal, 16)
    if hi > s.k_hi:
        best = s.psnr(s.j(s.k_hi))
        raise KmqError(f"PSNR {db:g} dB is out of reach: the best is {best:.2f} dB (K={s.k_hi}"
                       f"{', the most -k allows' if s.k_hi < len(s.distinct.colors) else ''})")
    img, size = s.file(hi)
    if s.codec != "raw":
        # A larger K with the slack between its J and the target's spent on rdo is often smaller still:
        # rdo saves bytes at a far lower price in PSNR than a smaller K does.
        for k in sorted({min(s.k_hi, round(hi * 1.5)), min(s.k_hi, 2 * hi)}):
            if s.j(k) <= 0:
                continue
            cand, cand_size = s.file(k, _pct(j_goal / s.j(k)))
            if cand_size < size and s.psnr(cand.distortion) >= db:
                img, size = cand, cand_size
    return img


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

    def ok(k: int) -> bool:  # "meets" here means "does not fit": the curve grows with K
        return s.size(k) > max_bytes

    if s.codec == "raw":
        return _raw_bytes(s, max_bytes)
    # A coarse bracket first: a larger K with rdo usually beats every plain K, and then the plain K need not
    # be known exactly. Only when it does not is the bracket narrowed to neighbouring K.
    lo, hi = _bracket(s.k_hi, ok, s.size, max_bytes, 16, coarse=1.5)
    if hi > s.k_hi:  # every K allowed fits
        return s.file(max(lo, 1))[0]
    cand = _by_psnr(s, max_bytes, s.psnr(s.j(max(lo, 1))))
    if cand is not None and cand.distortion < s.j(hi):
        return cand  # better than the smallest K that does not fit, so than every plain K that does
    lo, hi = _bracket(s.k_hi, ok, s.size, max_bytes, 16, known=(lo, hi))
    img = s.file(max(lo, 1))[0]
    return cand if cand is not None and cand.distortion < img.distortion else img


_DB_SLOPE = 0.18  # typical growth of log bytes per dB along the best files (K and rdo chosen together)
_DB_STEPS = 3


def _by_psnr(s: _Search, max_bytes: int, db: float) -> KmqImage | None:
    """The best file that fits found by searching the PSNR: for a PSNR p, the file of 2 K*(p) with rdo up to
    p (K*(p) the smallest K whose plain file reaches p), as the PSNR target's search makes; p narrowed by
    interpolating log bytes (starting from the plain best's PSNR, which such a file reaches in fewer
    bytes). None if nothing fits."""
    best: KmqImage | None = None
    lo: tuple[float, float] | None = None  # (p, log bytes) that fits
    hi: tuple[float, float] | None = None  # that does not
    p = db
    for _ in range(_DB_STEPS):
        img, size = _at_psnr(s, p)
        if img is None:
            break
        if size <= max_bytes:
            if best is None or img.distortion < best.distortion:
                best = img
            lo = (p, math.log(size))
        else:
            hi = (p, math.log(size))
        goal = math.log(max_bytes)
        if lo and hi:
            p = lo[0] + (goal - lo[1]) / (hi[1] - lo[1]) * (hi[0] - lo[0])
        elif lo:
            p = lo[0] + (goal - lo[1]) / _DB_SLOPE
        else:
            assert hi is not None
            p = hi[0] + (goal - hi[1]) / _DB_SLOPE
    return best


def _at_psnr(s: _Search, db: float) -> tuple[KmqImage | None, int]:
    j_goal = s.channels * 255**2 / 10 ** (db / 10)
    def ok(k: int) -> bool:
        return s.psnr(s.j(k)) >= db

    # Start from the K fitted so far: each search of this kind mostly narrows a bracket already known.
    below = [k for k in s.fits if not ok(k)]
    above = [k for k in s.fits if ok(k)]
    known = (max(below), min(above)) if below and above and max(below) < min(above) else None
    _, hi = _bracket(s.k_hi, ok, s.j, j_goal, 16, known=known, coarse=1.2)
    if hi > s.k_hi:
        return None, 0
    k = min(s.k_hi, 2 * hi)
    if s.j(k) <= 0:
        return s.file(k)
    return s.file(k, _pct(j_goal / s.j(k)))


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
