"""Targets instead of K: the smallest file at a PSNR, or the best PSNR in a number of bytes.

Both searches lean on two near-monotone curves: J falls and the file grows as K grows. The image's distinct
colours are found once and every K is fitted at most once (its palette and per-colour labels kept, never
per-pixel ones). A search brackets the answer between a K that misses and one that meets the target: beyond
the bracket a probe goes where the line through the last two (log J, or log bytes, against log K) reaches
the target; within it, where the line between its ends does, and after an end moves, at the farthest K
that would close the bracket if it fell on the other side. ctx files are sized by bounds from the
information their payload codes (ctx.payload_bounds: 0.65 to 0.85 of an encoding's time, about 0.5 % wide) and encoded
only where the bounds cannot decide a comparison, so every decision is exact.

For ctx and lzma, rdo buys bytes far more cheaply than a smaller K does, so the best file is usually a
larger K with a strong rdo, and the plain bracket is only narrowed coarsely (hi <= 1.25 lo) before it:
  - PSNR: the smallest file of a line search over K from 1.5 hi (down to hi in steps of 1.25x while files
    get smaller), each K's slack between its J and the target's spent on rdo (_rdo_for_psnr). It is no larger
    than every plain K that meets the target when it is no larger than the plain file of lo (which
    misses it); otherwise lo is raised (probes aimed just below the target) until it is, or the bracket
    reaches neighbouring K and the smaller file is kept.
  - bytes: the file of K_r = 3 lo (lo the largest K found whose plain file fits) with the rdo strength
    searched: first where the plain curve times _RDO_SHARE meets the budget (at most hi's J, hi the
    smallest K found that does not fit), then on a line in (log of the J rdo adds, log bytes), until a
    file fits within _CLOSE of the budget (at most _RDO_STEPS files, and one at hi's J if none fit), or one
    that topped out leaves most of it (_LEFT_FAR: the walk up below takes a larger K instead). It
    beats every plain K that fits when its J is below that of hi; otherwise hi is lowered until it does, or
    the bracket reaches neighbours and the better file is kept.
With ctx, rdo's K does not pass K = 256 from below it (escapes cost far more above: the plain bytes jump from
K = 256 to 257, so a byte budget's bracket across them is probed at 256 and 257 before any crossing). An rdo run
that adds less than half the J it was given has topped out: asking for more is not tried. Under a byte budget, when no
rdo file at K_r beats hi's J, the rdo runs left go to the geometric middle of hi and K_r (if the share of
the plain bytes rdo reached at K_r says a file could fit below hi's J there).
When the best file found still lands far under the byte budget (rdo topped out: on noise its labels
smooth away most of the bytes for a few % of J), larger K are tried with rdo (_walk_up). The file returned
is the best of every file the search sized that fits (or, for a PSNR, no larger than the plain top of
the bracket, the next K and, for images of few colours, the lossless file; with raw too, as its J = 0
takes fewer bytes in the metadata than a lossy J). Brackets end at neighbouring
K below K = 64 and within 1/64 above (fits there cost seconds and move J by about 1 %), unless the best
file is a plain one, an end of the bracket: then one of the K inside can be the better plain file, and the
bracket is bisected to neighbours (_neighbours; not on rough fits, checked by _checked_bytes/_checked_psnr); for a
PSNR from K = 64, by probes at J's crossing (_closing). Near the lossless K (a PSNR whose J is under what merging half
the colours adds: _zero), J goes as the colours - K, and the crossings are found in log(colours - K), not log K.
Last, a byte budget's search goes over (K, rdo) from the best file found (_plane): a model of bytes and J in
both, fitted on the files the search made (plain J and bytes along K, rdo's share of the plain bytes against
the J it added at the nearest K where it ran), predicts the least J each K around the best's reaches in the
budget; the most promising K is fitted and given the rdo predicted to fill the budget (asked from how rdo's
runs at that K landed against what they were asked), until another K is predicted better, at most
_PLANE_STEPS K. The cascade before it models
bytes along K and along rdo apart, and left budgets a third unused or stopped below K = 256 where a larger
K with rdo was far better.
On images larger than rdo's sample, the first rdo run at a K the search over (K, rdo) tries from another K's runs
is estimated from the sample first (_hopeless: the sample's share of the plain payload, from the calibration the
run then takes over) and not made when far over the budget; so is the walk up's middle strength at a K (past
_HOPELESS_UP: its stronger strength is run at once).
On images of at most _LEVEL_PIXELS, the search then walks K at one J as a PSNR search does (_level): the J the
best file would reach at the budget, each K given rdo up to it, then the budget filled at the best K.
A byte budget's search makes at most _RUNS_MAX rdo runs, _CASCADE_RUNS of them before the search over
(K, rdo), so its cost is bounded by counting (same input, same files), not by time.
On images of at most _SCAN_PIXELS pixels (a plain compress costs tens of milliseconds) the plain files of
the _SCAN_BELOW K under the bracket's top (--psnr) or bottom (--max-bytes) that could be chosen are sized
too (_scan_below: K inside a bracket 1/64 wide were never fitted, and J does not always fall with K), and those of
the K past the bracket's top, up to _SCAN_MAX of them (_scan: from one K to the next a plain file moves by
up to ~10 %; a 64x64 grey ramp with ctx is 384 bytes at K = 13, 352 at 14): the least K that meets a PSNR is
not always the smallest plain file that does, nor the largest K that fits a budget the best. Above, files
are taken to grow with K.
Where kmeans.fit thins the restarts' histogram level (noisy photos: over 10,000 5-bit bins), the search's own
fits are rough: their restarts seeded and ranked on that level merged by 3-bit cell (_ROUGH_BITS), 1.4-5.9x
less CPU below K = 200 for J within a few %. Their files are valid, but not `kmq compress -k K`'s, so last the
promise is checked against the real plain files (_checked_bytes, _checked_psnr): usually one real fit at the
bracket's end and one sizing, more only where a real plain file could be the better one.
K is capped where the palette alone would fill the byte budget. With raw the size depends on K only
through ceil(log2 K) and the palette, so the byte budget is solved from that formula.
With no codec given (search(codec=None)), the search picks ctx or lzma: ctx models photos, lzma the repeated
glyphs of text and screenshots (0.13-0.7x ctx's bytes there). Photos (_flat: under _FLAT_SHARE of the pixels
in the _FLAT_COLOURS commonest colours) get ctx's search untouched, unless its file lands above K = 256,
where lzma may code the labels in fewer bytes (_ctx_first: both searched then). Other images first run ctx's plain
bracket (its fits and sizings kept for whichever search follows) and code the labels of its top both ways
(_lzma_share, on bands of rows); lzma's search runs under _LZMA_SURE, ctx's from _CTX_SURE, both between,
keeping the better file. lzma's search starts from ctx's fits (they do not depend on the codec), so its file
is the one codec="lzma" gives.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from . import bitpack, kmeans
from .api import MAX_RDO, quantize_colors, quantized
from . import rdo as rdo_module
from .codecs import ctx, lzma_codec
from .errors import K_CAP_HINT, KmqError, plural_bytes
from .format import KmqImage
from .stats import psnr as psnr_of

# progress(done, None) after each fit or rdo run: how many a search makes is known only at its end
Progress = Callable[[int, "int | None"], None]
_MAX_STEPS = 12  # K probes of one bracket search, at most
_COARSE = 1.25  # the plain bracket's width (hi / lo) before rdo files are tried
# and its width at the end: neighbours below K = 64; above, K within 1/64 (~1.3 % of J, 0.05 dB) is not
# worth a fit that costs seconds (a 0.96 MP photo at 1.5 MB: K = 48 438 after 17 fits of ~9 s each)
_FINE = 1 + 1 / 64
_FINE_FROM = 64  # K from which that is wider than neighbours (and narrowing aims past the crossing: _near)
_RDO_STEPS = 3  # rdo files tried under a byte budget, at most
_NOTHING = 1e-2  # an lzma rdo run asked for at most this share of its K's plain J more moves next to nothing
# Under a PSNR target, rdo is tried at this multiple of the bracket's top: the best multiple is 1.25 to 2
# depending on the image (1.5 is within 3 % of the best on camera, chelsea and ihc at 30 to 40 dB; 2 was
# up to 8 % larger on camera).
_PSNR_K = 1.5
# down in steps of this factor, where rdo lands unevenly (a JPEG crop at 26 dB: K = 8 with rdo 151 % was 5.7 kB,
# 5 with 5 % 10.2 kB, 6 with 40 % 2.6 kB)
_PSNR_DOWN = 1.25
_PSNR_NEAR = 1.2  # but not to a K closer than this factor (where the bracket's top cuts the step short)
# a step of that search that made the file smaller by under this (log bytes) ends it: bytes against log K
# flatten where they turn, and the next step lost on each of the 4 PSNR targets where one gained under 1 %
# (astronaut at 32 dB: K = 68 -> 54 0.56 % smaller, 45 6.3 % larger; grace_hopper.jpg at 32 dB: 63 -> 94 0.01 %,
# 141 5.4 % larger, a fit and a run of 0.55 s of CPU in a 3.2 s search)
_PSNR_FLAT = 0.01
_PSNR_RUNS = 4  # at most this many rdo runs (each, with sizing its file, about a plain compress)
_RDO_ROOM = 1.5  # and only when that is at least this multiple of the smallest plain K that does not fit
_RDO_K = 3  # under a byte budget, rdo is tried at this multiple of the largest plain K that fits
_INSIDE = 0.015  # and aimed this much (in log bytes) inside it
_RDO_SLOPE = -0.28  # typical d log bytes / d log (the J rdo adds) at a fixed K
_RDO_SLOPE_GREY = -0.1  # ... and a grey photo's (_image_slope)
# but from a file under the budget, a step along a line to weaker rdo asks at least this share of the J that file
# added: rdo's bytes fall far faster with J on noise (slopes -0.5 to -1.1 there), and the line's steps of 4 to 50x
# weaker landed 1.5 to 2.7x over the budget (china.jpg at 2.5 MP under noise in 200 kB, K = 15: +59.4 % gave
# 104 kB, then +6.1 % 371 kB; a noisy flower 1200x800 in 50 kB, K = 12: +75.9 % 20 kB, then +1.6 % 126 kB)
_STEP_DOWN = 0.4
# rdo files at that K are about this share of the plain files of the same J (0.69 to 0.77 on camera,
# chelsea and coffee at 1 bpp, up to 0.88 on chelsea at 2.3 bpp), which aims the first rdo strength
_RDO_SHARE = 0.75
_LANDED = 0.8  # an rdo file that adds less than this share of the J it was given landed short of it
_SHORT = 0.5  # an rdo file that adds less than this share of the J it was given has topped out
_CLOSE = 0.02  # a fitting rdo file this close to the budget (in log bytes) ends the search
_RDO_DIGITS = 3  # the rdo strength chosen is recorded (and used) to this many decimals
_LOSSLESS_K = 4096  # the lossless file is also sized when the image has at most this many colours
_J_DIGITS = 21  # bytes a J's record in the metadata takes beyond J = 0's ("0.0"; repr of a float: up to 24)
# Images of at most this many pixels (a plain compress costs tens of milliseconds) have the plain files of the
# K past the bracket's top sized (_scan), up to _SCAN_SPAN x it (plain files move by up to ~10 % from one K to
# the next, and grow over a doubling of K by ~1.5x)
_SCAN_PIXELS = 64 * 64
_SCAN_SPAN = 2.0
_SCAN_MAX = 8  # plain files sized by one scan, at most (each a plain compress: 64x64, 0.05-0.1 s)
_SCAN_BELOW = 3  # K under the bracket fitted (and their plain files sized where they could be chosen)
_DROP = 1.3  # but not past a K whose plain file is over this multiple of the file to beat (or the budget)
_TOPPED = 0.05  # an rdo file this much over its K's plain J at most topped out: _rdo_at stops there
_FILL_NEAR = 2.0  # ... from a file over the budget by at most this factor (beyond, the middle is a guess)
_FILL_STEPS = 2  # rdo runs spent filling a budget the best file leaves far from full, at most
_FAR = 0.1  # a best file this far under a byte budget (in log bytes) leaves room for a larger K
# a first rdo file at K_r this far under it (in log bytes: under 45 % of the budget) that topped out ends the
# runs there (_rdo_at)
_LEFT_FAR = math.log(1 / 0.45)
_UP_STEPS = 3  # larger K tried then, at most
_UP_MAX = 8.0  # each at most this multiple of the best's K
_UNDER = 0.98  # a larger K's second rdo strength: J up to this share of the best's
# K tried by the search over (K, rdo), at most (at 4, only the trial's RGBA vignette in 3,500 bytes of the bench's
# 15 budgets tried a fourth, K = 168: a fit and a run, 2 plain compresses, and the same file)
_PLANE_STEPS = 3
# its candidate K, as multiples of the best's: a fit's cost grows with K, so not beyond 2x (a noisy photo at
# 30 kB: the fit of K = 717, 2.8 x 256, cost 5.7 plain compresses at 256 and lost). Not 2x either: a K twice the
# best's, predicted from the best's runs, is always predicted better than 1.4x (rdo's share of the plain bytes
# is carried over as it is, where at a larger K it is larger: +0.06 to +0.6 in log bytes), so it was tried first,
# and it lost on every budget of the benches where it was (astronaut 32 kB K = 168, chelsea 54, coffee 72,
# grace_hopper 66, a noisy RGBA china 96: a fit, a plain sizing and a run each, 1-2 plain compresses), the 1.4x
# K then found from the best's runs as before (the same files)
_PLANE_FACTORS = (0.5, 0.7, 1.0, 1.4)
_PLANE_CLOSE = 0.06  # a fitting file this close to the budget (in log bytes) ends the tries at its K
_ASK_MAX = 2.0  # rdo is asked for at most this multiple of the J wanted beyond its runs
# it tries a K predicted to beat the best's J by this factor, 0.1 dB (at 0.99, RGBA 400x300 in 20 kB: the
# same file after 5 rdo runs, 13.1x a plain compress, against 3 runs, 6.6x)
_GAIN = 0.977
# rdo runs one byte budget's search makes, at most: each, with sizing its file, costs 0.6 to 1.4 plain
# compresses at the K chosen. Not fewer: at 10, a camera crop in 3,400 bytes got 32.95 dB where 3,200 bytes
# got 33.42 (the budget ladder in tests/test_target.py); at 12, a logo (crop of a review's) in 3,245 bytes
# stopped with its best rdo file 5 bytes over, 33.59 dB where 3,000 bytes gave 33.75 (14: 34.77).
_RUNS_MAX = 14
_CASCADE_RUNS = 7  # of which the steps before the search over (K, rdo) may make at most this many: it is
# the step that finds the best file most often, and it starts from the best those steps found
# rdo runs per K of the search over (K, rdo), at most (the last only between two that straddle the budget,
# or beyond near misses)
_PLANE_RUNS = 4
# With no codec given, lzma alone is searched when it codes the plain labels of the bracket's top in under this
# share of ctx's bytes (_lzma_share), ctx alone from the second, both between: there the share does not tell
# (in 5,000 bytes an 800x500 graphic, 0.83, is 42.9 dB with ctx, 41.8 with lzma; a noisy gradient at 30 dB,
# 0.88, is 97.8 kB with ctx, 89.7 with lzma; text at 30 dB, 0.88, 21.2 kB and 19.5)
_LZMA_SURE = 0.8
_CTX_SURE = 0.95
# A photo's ctx file above K = 256 gets lzma's search too where lzma codes that K's plain labels in fewer bytes
# than ctx: the searches' files then came out 0.89-1.00x ctx's (noisy gradients at 40-42 dB, shares 0.87-0.99);
# china and flower crops at 42-46 dB had 1.03-1.07 and lzma's files were 1.06-1.18x.
_HIGH_K_SHARE = 1.0
# A ctx file at K = 256 in a budget it leaves room in: K = 257's escapes cost far more (a noisy 400x300 gradient's
# plain files 57,787 -> 93,598 bytes), so budgets up to 1.2-1.6x that file stop there, where lzma's bytes grow
# smoothly with K. lzma's search runs too where lzma's plain file of that K (share x ctx's) would fit the budget:
# on noisy gradients (sigma 6-12, 200x150 to 400x300, RGBA too) every budget there gave lzma +0.15 to +1.5 dB
# (lzma K = 275-518), none over it did (20 budgets at 1.02-1.30x); china crops: 1.00x +0.19 dB, noisy 0.98x
# nothing. Smooth photos (the astronaut, an RGBA vignette) gained at 1.05-1.14x too, with lzma's rdo at K over
# 500; coffee, chelsea under noise and the noisy gradients did not there, so above 1 the share does not tell.
_EDGE_FIT = 1.0
# (and only where the budget is this multiple of ctx's file at least: photos' shares there were 1.08-1.40, so
# nearer the file lzma's cannot fit, and the share's coding, 0.3-0.7 of a plain compress, is not paid)
_EDGE_ROOM = 1.05
_FLAT_COLOURS, _FLAT_SHARE = 16, 0.4  # and only on images whose 16 most common colours cover 40 % of them
_REPEAT_SHARE = 0.5  # or where this share of the rows (or columns) repeat the one before exactly
_REPEAT_PAIRS = 256  # judged on at most this many pairs of neighbouring rows (and columns), spread evenly
# or where neighbours across one axis differ this many times more than along the other (_stretched): banners
# and strips (china.jpg squeezed to 5000x30: 26x; 5000x3: 227x; a 640x40 crop widened 6x: 16x) have long runs
# along their rows and unrelated rows, and lzma's K = 16 labels there were 0.14-0.49x ctx's bytes; photos were
# 1.0-1.2x, screenshots and charts up to 1.6x, a 16-bit grey gradient 2.2x; china under a horizontal motion blur
# 3.1-6.5x, where lzma's labels were 0.92-1.04x ctx's: let in at 3x, its searches gave ctx's files again at up
# to 2.2x the CPU (both codecs searched)
_STRETCHED = 8.0
_SAMPLE_PIXELS = 1 << 17  # on at most about this many labels (both codings: ~0.07 s)
_BAND = 32  # in bands of this many rows
_BANDS = 4  # at least this many
_SAMPLE_PART = 16  # or on larger images, this part of the pixels
_PREPARED = 4  # Ks whose rdo starting state is kept (rdo.prepare): a search's rdo runs sit at a few Ks
# From this many pixels on, the files a search holds keep their labels parked (_Parked) but for the file in the
# making: a plain file's are made again from its fit where read (a spread: 0.1-0.2 s at 24 MP), an rdo file's
# are kept as uint8 up to K = 256. Each file held its uint16 labels to the end of the search, 48 MB at 24 MP:
# 8-9 files, 366-412 MB of a --max-bytes 3M search's 1.08 GB peak. Below, a file costs too little to matter
# (4 MP: 8 MB) and is read again as it is (bench/targets.py's images: each spread would be a share of a search).
_PARK_PIXELS = 1 << 22
# A search's own fits seed and rank K-Means' restarts on a stand-in of the restarts' histogram level with its
# bins merged by cell of this many bits per channel (_rough_stand_in), where kmeans.fit would merge only the
# lightest (a noisy photo's level: over 10,000 bins). Seeding and ranking 16 restarts there is most of a fit
# below K = 200 (the trial's JPEG at K = 40: 0.55 s of 0.80); on 512 cells it is next to nothing. Noisy
# 1200x800 photos, a JPEG of one, a noisy 384x256 gradient and noisy china/grace_hopper at K = 16 to 64: each
# fit 1.4-6.2x less CPU (JPEG K = 40 0.84 -> 0.34 s), J 0.983x-1.026x the fit's. A fit whose restarts
# ran on such a stand-in is "rough": its files are valid, but not `kmq compress -k K`'s, so the guarantee
# against the plain files is checked on real fits at the end (_checked_bytes, _checked_psnr).
_ROUGH_BITS = 3
# ... above this K by cell of one bit more: from K = 72 the 3-bit stand-in's 512 cells at most seeded runs that
# took longer to finish than the fit's own restarts (a noisy 512x600 portrait at K = 103: 1.09 s against 0.74;
# 4-bit cells 0.52 s, J 1.004x; a noisy 1200x800 photo at K = 128: 0.42 s against 0.80)
_ROUGH_FINE_FROM = 64
_ROUGH = True  # (False: every fit kmeans.fit's own, as before)


class _Parked(KmqImage):
    """A file a search holds whose labels it may drop (park) and makes again where they are read: from its fit's
    per-colour labels (a plain file: "from") or from a uint8 copy (an rdo file up to K = 256). Only the search
    sees one: search() returns a KmqImage (_unparked)."""

    def park(self) -> None:
        held = self.__dict__
        if held["labels"] is None or (held["from"] is None and self.k > 256):
            return
        if held["from"] is None and held["packed"] is None:
            held["packed"] = held["labels"].astype(np.uint8)
        held["labels"] = None

    @property  # type: ignore[override]
    def labels(self) -> np.ndarray:
        held = self.__dict__
        if held["labels"] is None:
            made = held["packed"] if held["from"] is None else held["distinct"].spread(held["from"].astype(np.uint16))
            held["labels"] = made.astype(np.uint16, copy=False).reshape(held["shape"])
        return held["labels"]

    @labels.setter
    def labels(self, value: np.ndarray) -> None:
        self.__dict__["labels"] = value

    @property
    def height(self) -> int:
        return int(self.__dict__["shape"][0])

    @property
    def width(self) -> int:
        return int(self.__dict__["shape"][1])

    def same(self, labels: np.ndarray) -> bool:
        """Whether labels are this file's: a spread sample of them first (made again only where it matches)."""
        held = self.__dict__
        if held["labels"] is None and not np.array_equal(held["sample"], labels.reshape(-1)[::_SAMPLE_STEP]):
            return False
        return np.array_equal(self.labels, labels)


_SAMPLE_STEP = 4099  # (a prime: not a multiple of a row)


def _parkable(img: KmqImage, distinct: kmeans.Distinct, from_fit: np.ndarray | None) -> KmqImage:
    """img, made a _Parked whose labels are distinct.spread(from_fit) (None: an rdo file's own)."""
    img.__class__ = _Parked
    img.__dict__.update({"from": from_fit, "distinct": distinct, "packed": None, "shape": img.labels.shape,
                         "sample": img.labels.reshape(-1)[::_SAMPLE_STEP].copy()})
    return img


def _unparked(img: KmqImage) -> KmqImage:
    """The file a search returns, a KmqImage with its labels (the same object)."""
    if isinstance(img, _Parked):
        labels = img.labels
        for key in ("from", "distinct", "packed", "shape", "sample"):
            del img.__dict__[key]
        img.__class__ = KmqImage
        img.labels = labels
    return img


def _same_labels(held: np.ndarray | KmqImage, labels: np.ndarray) -> bool:
    """Whether a payload entry's labels (an array, or a file's) are these."""
    if isinstance(held, _Parked):
        return held.same(labels)
    return np.array_equal(held.labels if isinstance(held, KmqImage) else held, labels)


def _labels_ref(img: KmqImage) -> np.ndarray | KmqImage:
    """What a payload entry holds of img's labels: img itself where it parks them (an entry would keep them)."""
    return img if isinstance(img, _Parked) else img.labels


class _Search:
    """One image's fits and files, each computed at most once; a file's size is bounded from the information
    its payload codes (ctx) and encoded only where the bounds cannot decide."""

    def __init__(self, pixels: np.ndarray, k_max: int, codec: str, seed: int, max_iter: int,
                 target: dict, progress: Progress | None = None, distinct: kmeans.Distinct | None = None,
                 rough: bool = True) -> None:
        self.pixels = pixels
        self.channels = pixels.shape[2]
        self.distinct = distinct or kmeans.distinct(pixels.reshape(-1, self.channels))
        # Above the number of distinct colours every K is lossless: no need to look there.
        self.k_hi = min(k_max, len(self.distinct.colors))
        self.codec, self.seed, self.max_iter, self.target = codec, seed, max_iter, target
        self.fitted: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}  # palette, per-colour labels, J
        self.files: dict[tuple[int, float], KmqImage] = {}
        self.prepared: dict[int, rdo_module.Prepared] = {}  # per K: the nearest labellings its rdo runs start from
        self.sizes: dict[tuple[int, float], tuple[int, int]] = {}  # bounds (low, high); low == high: exact
        # ctx payload bounds per labelling, as [labels, bounds] by palette: an rdo run that keeps the nearest
        # labelling (its moves saved nothing) gives its K's plain labels again, and they cost 0.65-0.85 of an
        # encoding. The labels are compared with those of the same palette, not hashed: a hash of every file's
        # labels (rdo.digest) cost 3 ms a file at 2.3 MP, 0.6 of a plain compress over a screenshot's search.
        self.payloads: dict[bytes, list[list]] = {}
        self.progress, self.made = progress, 0  # the fits and rdo runs made, reported to progress
        self.runs, self.cap = 0, _RUNS_MAX  # the rdo runs made, and how many the search may make
        # Whether fits may be rough (_ROUGH_BITS; not with raw, whose sizes depend on K alone: a rough fit
        # there only costs J), and the K whose fits are: their real fits are in _real's search
        self.rough_ok, self.rough = rough and _ROUGH and codec != "raw", set[int]()
        self._real: _Search | None = None
        # the plain bracket of a byte budget this search ended with (_bytes_bracket), and the one another codec's
        # search of the image did, whose ends are fitted: this codec's bracket is usually next to it
        self.bracket: tuple[int, ...] = ()
        self.hint: tuple[int, ...] = ()
        # lzma files of whole label maps coded outside the search (_lzma_share's, on an image of at most
        # _SAMPLE_PIXELS): lzma's search, whose plain file of that K has those labels, takes their payload
        self.coded: list[KmqImage] = []
        # lzma's search after ctx's file stopped at K = 256 (_at_edge) or above it: rdo is probed first
        # (_useless_rdo), and large-K rdo is skipped where its file keeps this share of the plain bytes (0: no probe)
        self.lean_share = 0.0
        # In a byte budget, the J of the other codec's file this search's file is weighed against (_first: the lower
        # J wins, the smaller file at the same J): its last steps look only where a plain K could reach it (_beats)
        self.beat = math.inf

    def with_codec(self, codec: str) -> _Search:
        """A search of the same image with another codec, from this one's fits (they do not depend on it)."""
        other = _Search(self.pixels, self.k_hi, codec, self.seed, self.max_iter, self.target, self.progress,
                        self.distinct)
        other.fitted, other.made, other.rough = dict(self.fitted), self.made, set(self.rough)
        other.hint, other.coded = self.bracket, self.coded
        other.rough_ok = self.rough_ok and codec != "raw"
        return other

    def real(self) -> _Search:
        """The search of the same image and codec whose fits are kmeans.fit's own (those of `kmq compress -k
        K`): this one's that are not rough, their plain files and sizes shared."""
        if self._real is None:
            self._real = _Search(self.pixels, self.k_hi, self.codec, self.seed, self.max_iter, self.target, None,
                                 self.distinct, rough=False)
            self._real.payloads, self._real._made = self.payloads, self._made  # (bounds of labels hold for any file)
        r = self._real
        for k, fit in self.fitted.items():  # (the search may have fitted more since the last call)
            if k not in self.rough and k not in r.fitted:
                r.fitted[k] = fit
                if (k, 0.0) in self.files and (k, 0.0) in self.sizes:
                    r.files[(k, 0.0)], r.sizes[(k, 0.0)] = self.files[(k, 0.0)], self.sizes[(k, 0.0)]
        return r

    def adopt(self, img: KmqImage) -> KmqImage:
        """img, a plain file of the real search, made this search's file of its K (with its fit and size): the
        file a search returns is one of its own (_first sizes it by its key)."""
        r = self.real()
        k = next(key[0] for key, made in r.files.items() if made is img)
        self.fitted[k], self.files[(k, 0.0)] = r.fitted[k], img
        self.sizes.pop((k, 0.0), None)  # (the rough file's)
        if (k, 0.0) in r.sizes:
            self.sizes[(k, 0.0)] = r.sizes[(k, 0.0)]
        self.rough.discard(k)
        for key in [key for key in self.files if key[0] == k and key[1] > 0]:  # rdo files of the rough fit
            del self.files[key]
            self.sizes.pop(key, None)
        self.prepared.pop(k, None)
        return img

    def can_run(self) -> bool:
        """Whether the search may make another rdo run."""
        return self.runs < self.cap

    def _made(self) -> None:
        self.made += 1
        if self.progress is not None:
            self.progress(self.made, None)

    def j(self, k: int) -> float:
        if k not in self.fitted:
            used: list[bool] = []

            def stand_in(level: kmeans._Points) -> kmeans._Points | None:
                thin = _rough_stand_in(level, k)
                used.append(thin is not None)
                return thin
            # quiet: fewer colours than k is expected while searching (and warnings.catch_warnings, which
            # swaps process-wide state, left other threads without warnings)
            self.fitted[k] = quantize_colors(self.distinct.colors, self.distinct.counts, k, seed=self.seed,
                                             max_iter=self.max_iter, stand_in=stand_in if self.rough_ok else None,
                                             quiet=True)
            if any(used):  # (else kmeans.fit ran as without it: where _thinned keeps the level, so does this)
                self.rough.add(k)
            self._made()
        return self.fitted[k][2]

    def psnr(self, j: float) -> float:
        return psnr_of(j, self.channels)

    def file(self, k: int, rdo: float = 0.0) -> KmqImage:
        """The image at k with rdo, carrying the metadata it will be written with (not encoded here)."""
        key = (k, rdo)
        if key not in self.files:
            self.j(k)
            park = self.pixels.shape[0] * self.pixels.shape[1] >= _PARK_PIXELS
            if park:  # (before the run: its peak is the search's)
                for made in self.files.values():
                    if isinstance(made, _Parked):
                        made.park()
                # and the image runs other Ks' Prepared keep, each the labels and moved pixels of a run (~90 MB at
                # 24 MP, K = 153), made again from the nearest labelling if asked for (the same state: rdo's
                # _image_run); a search's runs that meet one again sit at one K
                for kk, ready in self.prepared.items():
                    if kk != k:
                        ready.runs.clear()
            img = quantized(self.pixels, self.distinct, k, seed=self.seed, max_iter=self.max_iter,
                            codec=self.codec, rdo=rdo, fit=self.fitted[k], extra={"target": self.target},
                            prepared=self._prepared(k) if rdo > 0 and self.fitted[k][2] > 0 else None)
            # (a plain file's labels are its fit's spread: api's, the same uint16 array)
            self.files[key] = _parkable(img, self.distinct, self.fitted[k][1] if rdo == 0 else None) if park else img
            if rdo > 0:
                self.runs += 1
                self._made()
        return self.files[key]

    def _prepared(self, k: int) -> rdo_module.Prepared:
        """rdo's starting state at k's palette, made once per K (a few kept: 12 MP costs ~40 MB a K, and its
        warm trials up to 2 x rdo._REMEMBERED sample states more)."""
        if k not in self.prepared:
            if len(self.prepared) >= _PREPARED:
                del self.prepared[next(iter(self.prepared))]  # the K prepared longest ago
            # (lzma: its files are encoded to be sized, so ctx's judgement of each run is not needed: the lzma
            # grey photo in 15 kB made 12 ctx sizings for it, 0.25 s of a 1.05 s search)
            self.prepared[k] = rdo_module.prepare(self.pixels, self.distinct, self.fitted[k][0], warm=True,
                                                  guess=self.fitted[k][1], judge=self.codec == "ctx")
        return self.prepared[k]

    def bounds(self, k: int, rdo: float = 0.0) -> tuple[int, int]:
        """Bounds on the file's size in bytes: for ctx from the information its payload codes (about half an
        encoding, within about 0.5 %), otherwise (or once known) exact."""
        key = (k, rdo)
        if key not in self.sizes:
            img = self.file(k, rdo)
            if self.codec == "ctx":
                entry = self._payload(img)
                if entry is None:
                    # an rdo run on an image that is its own sample sized its labels as the file holds them
                    done = self.prepared[k].returned if rdo > 0 and k in self.prepared else {}
                    found = done.get(rdo_module.digest(img.palette, img.labels)) if done else None
                    entry = [_labels_ref(img), found, None] if found else self._bounded(img)
                    if found:
                        self._payloads(img).append(entry)
                low, high = entry[1]
                self.sizes[key] = (img.overhead() + low, img.overhead() + high)
            else:
                self.size(k, rdo)
        return self.sizes[key]

    def size(self, k: int, rdo: float = 0.0) -> int:
        """The file's size in bytes, exactly: encoded if not known, the payload kept on the file (the file
        returned is written without a second encode: a 12 MP lzma encode is 3-4 s), or taken from an lzma
        file of the same labels (_twin)."""
        key = (k, rdo)
        low, high = self.sizes.get(key, (0, -1))
        if low != high:
            img = self.file(k, rdo)
            twin = self._twin(k, img)
            if twin is not None:
                img.keep_payload_of(twin)
            elif self.codec == "lzma" and self.coded:
                img.keep_payload_of(*self.coded)
            img.payload(keep=True)
            low = len(img.to_bytes())  # (the whole file: what bench/rdo.py counts as a file encoded to be sized)
            self.sizes[key] = (low, low)
            if self.codec == "ctx":
                entry = self._payload(img)
                if entry is None:
                    entry = [_labels_ref(img), None, None]
                    self._payloads(img).append(entry)
                entry[1] = (low - img.overhead(),) * 2
        return low

    def _bounded(self, img: KmqImage) -> list:
        """img's entry [labels, payload bounds, ctx.payload_bounds' own], those bounds computed once per labelling:
        a plain file sized to its bytes keeps them for _lzma_share, which weighs lzma's coding of those same labels
        against ctx's bounds (a second ctx sizing of the file: 0.5-0.9 of a plain compress at ctx's K = 256 edge)."""
        entry = self._payload(img)
        if entry is None:
            entry = [_labels_ref(img), None, None]
            self._payloads(img).append(entry)
        if entry[2] is None:
            entry[2] = ctx.payload_bounds(img.labels, img.palette)
        if entry[1] is None:
            entry[1] = entry[2]
        return entry

    def _payloads(self, img: KmqImage) -> list[list]:
        """The [labels, payload bounds, ctx.payload_bounds' (None: not computed)] sized of img's palette."""
        return self.payloads.setdefault(bytes(str(img.palette.shape), "ascii") + img.palette.tobytes(), [])

    def _payload(self, img: KmqImage) -> list | None:
        """The [labels, payload bounds, ctx.payload_bounds' own] of img's palette and labels, if sized (None if not)."""
        return next((entry for entry in self._payloads(img) if _same_labels(entry[0], img.labels)), None)

    def _twin(self, k: int, img: KmqImage) -> KmqImage | None:
        """With lzma, a file of k sized exactly whose palette and labels are img's, so its payload too (an rdo
        file whose moves api undid is its K's plain labels, and two such files the same). Compared, not
        hashed as ctx's are for their bounds: a 12 MP hash is ~25 ms a file, the comparison a few only at K
        sized more than once."""
        if self.codec != "lzma":
            return None
        for (kk, rdo), (low, high) in self.sizes.items():
            other = self.files.get((kk, rdo))
            if (kk == k and low == high and other is not None and np.array_equal(other.palette, img.palette)
                    and _same_labels(other, img.labels)):
                return other
        return None

    def estimate(self, k: int, rdo: float = 0.0) -> float:
        return sum(self.bounds(k, rdo)) / 2

    def fits(self, k: int, budget: int, rdo: float = 0.0) -> bool:
        low, high = self.bounds(k, rdo)
        return high <= budget or (low <= budget and self.size(k, rdo) <= budget)

    def lossless(self) -> int:
        """The K of the lossless file when the search may choose it and it is cheap to look at (no K-Means:
        one K per colour, at most _LOSSLESS_K of them), else 0."""
        k = len(self.distinct.colors)
        return k if k <= min(self.k_hi, _LOSSLESS_K) else 0

    def exact(self, img: KmqImage) -> int:
        """The exact size of a file the search made."""
        return self.size(*next(key for key, made in self.files.items() if made is img))

    def no_larger(self, a: tuple[int, float], b: tuple[int, float]) -> bool:
        """Whether file a is no larger than file b (keys (k, rdo))."""
        (a_low, a_high), (b_low, b_high) = self.bounds(*a), self.bounds(*b)
        return a_high <= b_low or (a_low <= b_high and self.size(*a) <= self.size(*b))


def search(pixels: np.ndarray, *, psnr: float | None, max_bytes: int | None, k_max: int, codec: str | None,
           seed: int, max_iter: int, progress: Progress | None = None) -> KmqImage:
    """kmq.compress_to's work (arguments already checked); codec None: ctx, or on images with flat areas
    (_flat) lzma or both, by how each codes the plain labels of the bracket's top (_lzma_share): lzma's search
    under _LZMA_SURE, ctx's from _CTX_SURE, both between (the better file kept); a ctx file above K = 256
    also against lzma's where _ctx_first says."""
    with ctx.recording():  # (many of the files it sizes by their bounds are then encoded)
        return _unparked(_search(pixels, psnr=psnr, max_bytes=max_bytes, k_max=k_max, codec=codec, seed=seed,
                       max_iter=max_iter, progress=progress))


def _search(pixels: np.ndarray, *, psnr: float | None, max_bytes: int | None, k_max: int, codec: str | None,
            seed: int, max_iter: int, progress: Progress | None) -> KmqImage:
    target = {"psnr": psnr} if psnr is not None else {"max_bytes": max_bytes}
    s = _Search(pixels, k_max, codec or "ctx", seed, max_iter, target, progress)
    if codec is not None:
        return _run(s, psnr, max_bytes)
    if not _flat(s):
        return _ctx_first(s, psnr, max_bytes)
    share = _lzma_share(s, _probe_k(s, psnr, max_bytes))
    if share >= _CTX_SURE:
        return _ctx_first(s, psnr, max_bytes)
    if share >= _LZMA_SURE:
        return _better_with_lzma(s, _run(s, psnr, max_bytes), psnr, max_bytes)
    try:
        return _run(s.with_codec("lzma"), psnr, max_bytes)
    except KmqError:  # lzma's K = 1 file is ~100 bytes more than ctx's: a budget may fit ctx's only
        return _run(s, psnr, max_bytes)


def _ctx_first(s: _Search, psnr: float | None, max_bytes: int | None) -> KmqImage:
    """ctx's search's file, unless it lands above RANKED_K_MAX where lzma codes the plain labels of its K in
    fewer bytes (_HIGH_K_SHARE): there ctx's escapes cost far more, and a noisy photo at a high PSNR can land
    there (a 400x300 noisy gradient at 40 dB: K = 4,195 in 171,677 bytes; lzma's search K = 3,496 in 152,620),
    so lzma's search runs too and the better file is kept. Likewise in a budget whose file stopped at K = 256
    with room that lzma's plain file of its K would fit (_at_edge)."""
    img = _run(s, psnr, max_bytes)
    # (at the K whose fit gave the file: its palette can be smaller, where rounded entries coincided, and a fit of
    # that K costs what a plain compress does: a 400x250 RGBA photo at 60 dB, K = 63,103's file of 63,057 entries,
    # 1 s for K = 63,057)
    key = next((key for key, made in s.files.items() if made is img), (len(img.palette), 0.0))
    if len(img.palette) <= ctx.RANKED_K_MAX:
        return _better_with_lzma(s, img, psnr, max_bytes, _EDGE_SHARE) if _at_edge(s, key, max_bytes) else img
    if _lzma_share(s, key[0]) >= _HIGH_K_SHARE:
        return img
    return _better_with_lzma(s, img, psnr, max_bytes, _HIGH_LEAN_SHARE if max_bytes is not None else 0.0)


def _at_edge(s: _Search, key: tuple[int, float], max_bytes: int | None) -> bool:
    """Whether ctx's file of key stopped at ctx's edge in a byte budget (its K within _FINE under K = 256, more K
    allowed) with room for lzma's plain file of that K, by _lzma_share (_EDGE_ROOM, _EDGE_FIT)."""
    if max_bytes is None or key not in s.files or s.k_hi <= ctx.RANKED_K_MAX:
        return False
    if not ctx.RANKED_K_MAX / _FINE <= key[0] <= ctx.RANKED_K_MAX:
        return False
    if max_bytes < _EDGE_ROOM * s.bounds(*key)[1]:
        return False
    return _lzma_share(s, key[0]) * s.bounds(key[0])[0] <= _EDGE_FIT * max_bytes


def _better_with_lzma(s: _Search, img: KmqImage, psnr: float | None, max_bytes: int | None,
                      lean_share: float = 0.0) -> KmqImage:
    """img (ctx's search's file) or lzma's search's, whichever _first puts first. lean_share: ctx's file stopped
    at K = 256 (_at_edge) or above it in a byte budget, and lzma's search skips its large-K rdo where a probe keeps
    this share of the plain bytes (_useless_rdo; 0: no probe)."""
    key = next(key for key, made in s.files.items() if made is img)
    if s.codec == "ctx" and ctx.recorded(img.labels, img.palette):
        # what its bounds coded is still kept: encoded now, it is a replay (half an encoding); lzma's search's
        # sizings would drop that, and a file ctx's search chose is usually written
        s.size(*key)
    # their memory (12 MP: ~24 MB a file, ~40 MB an rdo start) is not needed now; img's file is, should its
    # exact size be (_first)
    s.files, s.prepared, s.payloads = {key: img}, {}, {}
    other = s.with_codec("lzma")
    other.lean_share = lean_share
    if max_bytes is not None:
        other.beat = img.distortion
    try:
        found = _run(other, psnr, max_bytes)
    except KmqError:  # lzma's K = 1 file is ~100 bytes more than ctx's: a budget may fit ctx's only
        return img
    return found if _first(other, found, s, key, psnr) else img


def _first(other: _Search, found: KmqImage, s: _Search, key: tuple[int, float], psnr: float | None) -> bool:
    """Whether found (other's file, sized exactly) comes before s's file of key: for a PSNR the smaller, then
    the lower J; in a budget the lower J, then the smaller. s's file is encoded only where that is needed to
    tell: its bounds, or J alone in a budget, decide it otherwise (an 800x500 screenshot in 6,000 bytes, lzma's
    file the better: ctx's K = 2 file, encoded for its rank alone, was 0.06 s, a fifth of a plain compress)."""
    img, size = s.files[key], other.exact(found)
    if psnr is None:
        if found.distortion != img.distortion:
            return found.distortion < img.distortion
        return size < s.size(*key)
    low, high = s.bounds(*key)
    if size < low or size > high:
        return size < low
    return (size, found.distortion) < (s.size(*key), img.distortion)


def _run(s: _Search, psnr: float | None, max_bytes: int | None) -> KmqImage:
    if psnr is not None:
        return _for_psnr(s, psnr)
    assert max_bytes is not None
    return _for_bytes(s, max_bytes)


def _probe_k(s: _Search, psnr: float | None, max_bytes: int | None) -> int:
    """The K where the codecs are compared: the top of the plain bracket ctx's search starts with (so its fits
    and sizings are the search's own, made once), 0 when there is none (no file meets the target)."""
    if psnr is not None:
        lo, hi = _psnr_bracket(s, psnr)
        return hi if hi <= s.k_hi else 0
    assert max_bytes is not None
    if s.size(1) > max_bytes:
        return 0
    k_cap = _k_cap(s, max_bytes)
    lo, hi = _bytes_bracket(s, max_bytes, k_cap)
    return hi if hi <= k_cap else max(lo, 1)


def _flat(s: _Search) -> bool:
    """Whether the image's _FLAT_COLOURS most common colours cover _FLAT_SHARE of it: text, screenshots and
    graphics (0.6-1.0) have flat areas whose edges repeat exactly, photos (0.002-0.36, a grey one's 256
    levels included) no repeats for lzma to find, and the test's codings would cost them 0.3-0.5 of a plain
    compress for nothing (photos' shares in _lzma_share are 1.05-1.8 up to K = 256). Or whether its rows
    (or columns) repeat (_repeating): a gradient along one axis has many colours, none common, and lzma
    codes its labels in 0.2-0.6x ctx's bytes (512x300 at --psnr 35: ctx 1,775 bytes, lzma 362). Or whether it
    is stretched along one axis (_stretched)."""
    counts = s.distinct.counts
    top = np.partition(counts, len(counts) - _FLAT_COLOURS)[-_FLAT_COLOURS:] if len(counts) > _FLAT_COLOURS else counts
    return int(top.sum()) >= _FLAT_SHARE * int(counts.sum()) or _repeating(s.pixels) or _stretched(s.pixels)


def _repeating(pixels: np.ndarray) -> bool:
    """Whether _REPEAT_SHARE of the rows, or of the columns, are exactly the one before (on at most
    _REPEAT_PAIRS pairs of each, spread evenly: a photo's rows never are; a letterboxed one's bars are
    under half of it)."""
    def share(image: np.ndarray) -> float:
        if len(image) < 2:
            return 0.0
        at = _spread(len(image) - 1)
        return float((image[at] == image[at + 1]).reshape(len(at), -1).all(axis=1).mean())
    return max(share(pixels), share(pixels.swapaxes(0, 1))) >= _REPEAT_SHARE


def _stretched(pixels: np.ndarray) -> bool:
    """Whether neighbouring pixels differ _STRETCHED times more on average across one axis than along the other
    (steps along at most _REPEAT_PAIRS rows and as many columns, spread evenly: _spread)."""
    if min(pixels.shape[:2]) < 2:
        return False

    def along(image: np.ndarray) -> float:  # the mean step from a pixel to the next in its row
        rows = image[_spread(len(image))].astype(np.int16)
        return float(np.abs(rows[:, 1:] - rows[:, :-1]).mean())
    across, down = along(pixels), along(pixels.swapaxes(0, 1))
    return max(across, down) > _STRETCHED * min(across, down)


def _spread(n: int) -> np.ndarray:
    """At most _REPEAT_PAIRS of the indices 0 .. n - 1, spread evenly (both ends in)."""
    return np.unique(np.linspace(0, n - 1, min(_REPEAT_PAIRS, n)).astype(np.intp))


def _lzma_share(s: _Search, k: int) -> float:
    """lzma's bytes for k's plain labels over ctx's (on bands of rows of at most about _SAMPLE_PIXELS in all;
    inf below K = 2): ctx models photos (smooth fields, noise), lzma finds repeats (the glyphs of text and
    screenshots: 0.16-0.7; photos 0.95-1.8 at the bracket's top, noise up to K = 256 1.0-1.2)."""
    if k < 2:
        return math.inf
    img = s.file(k)
    labels = _bands(img.labels)
    if labels is img.labels:  # the whole image: its payload is lzma's plain file's at k, should its search size it
        coded = KmqImage(img.palette, labels, codec="lzma")
        s.coded.append(coded)
        payload = coded.payload(keep=True)
        if s.codec == "ctx":  # (ctx's bounds of the same labels, as its search sized them)
            return len(payload) / s._bounded(img)[2][0]
    else:
        payload = lzma_codec.encode(labels, img.palette)
    return len(payload) / ctx.payload_bounds(labels, img.palette)[0]


def _bands(labels: np.ndarray) -> np.ndarray:
    """labels, or on a large image bands of _BAND rows spread evenly down it (whole lines of text, whose
    glyphs lzma finds again along the line), about _SAMPLE_PIXELS or a _SAMPLE_PART of the image in all, at
    least _BANDS of them: a 4000x3000 screenshot's one band was its title bar, where ctx took 0.6x lzma's
    bytes (ctx's search in 100 kB: 39.4 dB; lzma's, lossless in 30.5 kB). 20-row bands, 8 of them, took an
    800x500 graphic's share from 0.83 to 0.77 (lzma: 1.1 dB under ctx)."""
    height, width = labels.shape
    band = min(height, _BAND)
    count = max(_BANDS, max(_SAMPLE_PIXELS, height * width // _SAMPLE_PART) // (band * width))
    if count * band >= height:
        return labels
    starts = np.linspace(0, height - band, count).round().astype(int)
    return np.concatenate([labels[y:y + band] for y in starts])


def _bracket(k_hi: int, ok: Callable[[int], bool], value: Callable[[int], float], goal: float,
             start: int, coarse: float = _FINE, zero: tuple[int, float] | None = None,
             first: tuple[int, ...] = (), edge: int = 0) -> tuple[int, int]:
    """(lo, hi) with ok(lo) false and ok(hi) true, ok growing with K, narrowed to neighbours, or to
    hi <= coarse * lo (or as far as _MAX_STEPS probes get). lo = 0 means no K fails; hi = k_hi + 1 that none
    meets. value(k) is the curve whose logarithm is interpolated (J or bytes), goal its value at the target;
    zero the K where it is 0 (J of the lossless K) and a value standing in for it there, if any (_crossing).
    first: K probed before start (those inside the bracket as it stands), then on from the last as usual. edge:
    _narrow's."""
    lo, hi = 0, k_hi + 1
    queue = [k for k in first if 1 <= k <= k_hi]
    k = queue.pop(0) if queue else max(1, min(start, k_hi))
    prev: tuple[int, float] | None = None
    for _ in range(_MAX_STEPS):
        if ok(k):
            hi = k
        else:
            lo = k
        if hi - lo <= 1 or (1 <= lo and hi <= k_hi):
            break
        v = value(k)
        queue = [q for q in queue if lo < q < hi]
        if queue:
            k_next = queue.pop(0)
        elif lo == 0:
            k_next = _extrapolate(k, v, prev, goal) or _towards(k, v, 1, goal)
            k_next = max(1, min(hi - 1, k_next))
        else:
            k_next = _extrapolate(k, v, prev, goal) or _towards(lo, value(lo), lo * 4, goal)
            k_next = min(k_hi, max(lo + 1, k_next))
        prev, k = (k, v), k_next
    if 1 <= lo and hi <= k_hi:
        lo, hi = _narrow(lo, hi, ok, value, goal, lambda a, b: False, up=True, coarse=coarse, zero=zero, edge=edge)
    return lo, hi


def _narrow(lo: int, hi: int, ok: Callable[[int], bool], value: Callable[[int], float], goal: float,
            enough: Callable[[int, int], bool], up: bool, coarse: float = _FINE,
            zero: tuple[int, float] | None = None, edge: int = 0) -> tuple[int, int]:
    """Narrow a bracket (lo >= 1) to hi <= coarse * lo (neighbours when coarse * lo < lo + 1), or until
    enough(lo, hi). The first probe goes where log value, interpolated linearly in log K, reaches the goal
    (rounded up or down: which end the caller would rather move). After an end moves, the next probe is the
    farthest K from it that would end the narrowing if it fell on the other side (when that is still on
    the far side of the crossing), else the crossing again; after two moves of the same end, the crossing
    rounded towards the other; after three, the bracket's geometric middle (of zero - K near zero: _crossing).
    edge: a K past which the value jumps (ctx's plain bytes from K = 257: _edge), 0 if none. A bracket across it
    whose crossing lies under _EDGE_NEAR x edge is probed at edge, then (if that became its bottom) at edge + 1,
    before any crossing: one interpolated over the jump lands on neither side of it (a noisy 200x150 gradient in
    23,050 bytes, ctx's 240 / 553: 387, 330, 304, 270, 266, 262, 259, 249, 257, 254, where 256 then 257 close it).
    (edge first: a bottom of edge + 1 would take ctx's rdo past the edge, _rdo_k.)"""
    moved: list[bool] = []  # whether each probe moved hi
    for _ in range(_MAX_STEPS):
        if hi - lo <= 1 or (coarse > 1 and hi <= coarse * lo) or enough(lo, hi):
            break
        x = _crossing(lo, hi, value, goal, zero)
        if edge and lo < edge < hi and x < _EDGE_NEAR * edge:
            k = edge
        elif edge and lo == edge < hi - 1 and x < _EDGE_NEAR * edge:
            k = edge + 1
        elif len(moved) >= 3 and moved[-1] == moved[-2] == moved[-3]:
            k = (zero[0] + 1 - round(math.sqrt((zero[0] + 1 - lo) * (zero[0] + 1 - hi)))
                 if _lossless_end(lo, hi, zero) else round(math.sqrt(lo * hi)))
        elif len(moved) >= 2 and moved[-1] == moved[-2]:
            k = math.floor(x) if moved[-1] else math.ceil(x)
        elif moved and moved[-1]:
            close = math.ceil(hi / coarse) if coarse > 1 else hi - 1
            k = max(close, _near(x, 1 / math.sqrt(_FINE), lo)) if close <= x else math.ceil(x)
        elif moved:
            close = math.floor(coarse * lo) if coarse > 1 else lo + 1
            k = min(close, _near(x, math.sqrt(_FINE), lo)) if close >= x else math.floor(x)
        else:
            k = math.ceil(x - 1e-9) if up else math.floor(x + 1e-9)
        k = min(hi - 1, max(lo + 1, k))
        moved.append(ok(k))
        if moved[-1]:
            hi = k
        else:
            lo = k
    return lo, hi


# _narrow's edge probes only where the crossing is under this multiple of the edge: a photo's bracket across it far
# from the answer (chelsea 180x120 as a JPEG at q30 in 26,000 bytes: 225 / 1,800, K = 1,714 chosen) spent two fits
# there, whose sizes moved the search's models (its file +0.03 dB; probing them before the bracket's top, -0.30)
_EDGE_NEAR = 2.0


def _near(x: float, factor: float, lo: int) -> int:
    """With fits that cost seconds (lo >= _FINE_FROM), the probe after an end moved goes half the final
    width the far side of the crossing x (x * factor), not to the K that merely closes the coarse bracket:
    there curves are smooth and crossings close (0.96 MP photo at 1.5 MB: 48 627 aimed, 48 438 true), so
    the bracket often closes to its final width at once. Below, the K that closes it."""
    return round(x * factor) if lo >= _FINE_FROM else (0 if factor < 1 else 1 << 62)


def _zero(s: _Search, j_goal: float) -> tuple[int, float] | None:
    """_crossing's zero of J: the lossless K, with half the least J a merge of two colours adds (one pixel moved by
    one level: 1 / pixels) standing in for its 0, when the search may choose it and the goal is near it: under
    what merging half the colours at about twice that least J each adds (J x pixels under the colours). Not
    otherwise: far from it J goes as a power of K (an 800x500 screenshot of 1,125 colours at 60 dB: K = 185,
    J x pixels 78,000; aimed by zero - K, the bracket took 8 fits, not 4, and narrowing it by another path
    ended on K = 222 with rdo, 35 bytes over the plain K = 185: with lzma, plain K = 184 was larger)."""
    k, pixels = len(s.distinct.colors), int(s.distinct.counts.sum())
    return (k, 0.5 / pixels) if k <= s.k_hi and j_goal * pixels < k else None


def _lossless_end(lo: int, hi: int, zero: tuple[int, float] | None) -> bool:
    """Whether a bracket of J is narrowed near zero, the lossless K (J = 0): its top is zero or in the upper
    half below it. There J goes as zero - K (each merge of two colours adds about the same), not as a power
    of K: a 256x300 photo of 35,209 colours at 80 dB is K = 35,061, J = 0.0019 (1.3e-5 at K = 35,208,
    0.0013 at 35,109, 0.013 at 34,209, 0.64 at 15,209)."""
    return zero is not None and hi <= zero[0] and 2 * hi >= zero[0]


def _crossing(lo: int, hi: int, value: Callable[[int], float], goal: float,
              zero: tuple[int, float] | None = None) -> float:
    """Where between lo and hi log value, linear in log K, reaches the goal; near zero (_lossless_end), linear
    in log(zero + 1 - K), zero's stand-in for its J of 0 (which has no logarithm). Probes aimed in log K went
    to the geometric middle of lo and the lossless K, so neared it by halving zero - K: 21 fits for that
    photo at 80 dB, each 0.25 s."""
    a, b = value(lo), value(hi)
    if zero is not None and _lossless_end(lo, hi, zero) and a > 0 and goal > 0:
        b = b if b > 0 else zero[1]
        if a != b:
            t = min(1.0, max(0.0, (math.log(goal) - math.log(a)) / (math.log(b) - math.log(a))))
            u_lo, u_hi = math.log(zero[0] + 1 - lo), math.log(zero[0] + 1 - hi)
            return zero[0] + 1 - math.exp(u_lo + t * (u_hi - u_lo))
    if a > 0 and b > 0 and goal > 0 and a != b:
        t = (math.log(goal) - math.log(a)) / (math.log(b) - math.log(a))
        return math.exp(math.log(lo) + min(1.0, max(0.0, t)) * (math.log(hi) - math.log(lo)))
    return math.sqrt(lo * hi)


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
    # (at most 2^64: a budget of 1e215 bytes overflowed the float; the caller keeps the jump within its K)
    steps = min(64.0, abs(math.log(v / goal)) / math.log(1.6))
    factor = 2 ** max(0.5, steps)
    return int(round(k / factor)) if far < k else int(round(k * factor))


def _j_for(s: _Search, db: float) -> float:
    return s.channels * 255**2 / 10 ** (db / 10)


def _psnr_bracket(s: _Search, db: float) -> tuple[int, int]:
    """_bracket's plain K for a PSNR: lo misses it, hi meets it."""
    return _bracket(s.k_hi, lambda k: s.psnr(s.j(k)) >= db, s.j, _j_for(s, db), 16,
                    coarse=_FINE if s.codec == "raw" else _COARSE, zero=_zero(s, _j_for(s, db)))


def _for_psnr(s: _Search, db: float) -> KmqImage:
    j_goal = _j_for(s, db)
    zero = _zero(s, j_goal)

    def ok(k: int) -> bool:
        return s.psnr(s.j(k)) >= db

    lo, hi = _psnr_bracket(s, db)
    if hi > s.k_hi and s.k_hi in s.rough and s.real().psnr(s.real().j(s.k_hi)) >= db:
        s.adopt(s.real().file(s.k_hi))  # the real fit of the largest K meets it: the bracket again, from that
        lo, hi = _psnr_bracket(s, db)
    if hi > s.k_hi:
        best = s.psnr(s.j(s.k_hi))
        raise KmqError(f"PSNR {db:g} dB is out of reach: the best is {best:.2f} dB (K={s.k_hi}"
                       f"{K_CAP_HINT if s.k_hi < len(s.distinct.colors) else ')'}")
    if s.codec == "raw" or lo == 0:
        if lo >= 1 and not s.rough:
            lo, hi = _neighbours(lo, hi, ok, (s.j, j_goal, zero))
        pick = (hi, 0.0)
        if s.codec == "raw" and _raw_could_beat(s, s.lossless(), hi):
            # J = 0 is recorded in 3 bytes, a lossy J in up to 24: in hi's bit width the lossless file is
            # at times the smaller (1x41 grey, 39 levels, at 60 dB: K = 37 180 bytes, lossless 168)
            if not s.no_larger(pick, (s.lossless(), 0.0)):
                pick = (s.lossless(), 0.0)
        return _checked_psnr(s, db, _smallest_scanned(s, db, pick, hi), lo, hi)
    cand = _rdo_for_psnr(s, db, j_goal, hi)

    def beaten(lo: int, hi: int) -> bool:  # no larger than a plain K that misses, so than every one that meets
        return cand is not None and s.no_larger(cand, (lo, 0.0))

    # Otherwise the bracket is narrowed, each probe aimed just below the target so that lo rises.
    lo, hi = _narrow(lo, hi, ok, s.j, j_goal, beaten, up=False, zero=zero)
    if beaten(lo, hi) or (cand is not None and not s.no_larger((hi, 0.0), cand)):
        return _checked_psnr(s, db, _smallest_scanned(s, db, cand, hi), lo, hi)
    if not s.rough:
        lo, hi = _neighbours(lo, hi, ok, (s.j, j_goal, zero))  # the least K meeting db: the smallest file
    # Plain files grow with K only nearly: the next K's is at times a few bytes smaller (a 40x40 gradient
    # with lzma at 19.2 dB: 246 bytes at K = 7, 239 at 8), and so, for graphics, is the lossless one (5
    # colours: 172 bytes, K = 3 174).
    best = (hi, 0.0)
    for k in (hi + 1, s.lossless()):
        if hi < k <= s.k_hi and ok(k) and not s.no_larger(best, (k, 0.0)):
            best = (k, 0.0)
    return _checked_psnr(s, db, _smallest_scanned(s, db, best, hi), lo, hi)


def _rough_stand_in(level: kmeans._Points, k: int) -> kmeans._Points | None:
    """The stand-in a search's fit of k seeds and ranks its restarts on (_ROUGH_BITS): every bin of the level
    merged by cell, as kmq.coreset's for RGBA; None (kmeans.fit's own run) where kmeans._thinned leaves the
    level whole."""
    bits = _ROUGH_BITS if k <= _ROUGH_FINE_FROM else _ROUGH_BITS + 1
    return kmeans._thinned(level, share=1.0, bits=bits, channels=level.x.shape[1])


def _down(lo: int) -> int:
    """The K a bracket's lower end moves to when the real file there is on the wrong side: _COARSE down."""
    return max(0, min(lo - 1, math.floor(lo / _COARSE)))


def _up(hi: int, top: int) -> int:
    """Likewise its upper end, up to top + 1 (no K)."""
    return min(top + 1, max(hi + 1, math.ceil(hi * _COARSE)))


def _checked_psnr(s: _Search, db: float, key: tuple[int, float], lo: int, hi: int) -> KmqImage:
    """The file of key, or a real plain file that meets db in fewer bytes: with rough fits (s.rough) the
    search's bracket (lo misses db, hi meets it) was found on them, and the promise is about the real ones.
    The file is no larger than every real plain K that meets db where it is no larger than the real plain
    file of a K that misses it (plain files growing with K, as the whole search assumes): the bracket's lo
    (moved down while its real file meets db: then a candidate), usually at the cost of one fit and one
    sizing. Else the real bracket is narrowed as the search's own is, and its top, the next K and the
    lossless file are candidates as there."""
    if not s.rough:
        return s.file(*key)
    r = s.real()
    j_goal = _j_for(s, db)

    def ok(k: int) -> bool:
        return k >= 1 and r.psnr(r.j(k)) >= db

    size = s.bounds(*key)

    def beaten(lo: int, hi: int) -> bool:  # the file no larger than the real plain file of lo, which misses db
        low, high = r.bounds(lo)
        return size[1] <= low or (size[0] <= high and s.size(*key) <= r.size(lo))

    while lo >= 1 and ok(lo):
        lo, hi = _down(lo), lo
    if lo >= 1 and not beaten(lo, hi):
        while hi <= s.k_hi and not ok(hi):
            lo, hi = hi, _up(hi, s.k_hi)
        if hi <= s.k_hi:  # (else no real plain file meets db)
            lo, hi = _narrow(lo, hi, ok, r.j, j_goal, beaten, up=False)
            for k in (hi, hi + 1, r.lossless()):
                if lo < k <= s.k_hi and ok(k):
                    r.bounds(k)
    return _adopted(s, key, s.size(*key), lambda k: r.size(k) if ok(k) else None)


def _adopted(s: _Search, key: tuple[int, float], least: float, value: Callable[[int], float | None]) -> KmqImage:
    """The file of key (whose value is least), or the real plain file sized (in s.real()) of the least value
    under it (value(k): None where k's may not be chosen), made s's own (s.adopt). Only those whose fit is
    not s's, or whose plain file s did not size (_past_top sizes K past the real bracket that s may have
    fitted, e.g. a bisection's middle, and never sized): s's own plain files were weighed by its search."""
    r, found = s.real(), None
    for k, _ in sorted(r.sizes):
        v = value(k) if k in s.rough or k not in s.fitted or (k, 0.0) not in s.sizes else None
        if v is not None and v < least:
            least, found = v, k
    return s.file(*key) if found is None else s.adopt(r.file(found))


def _checked_bytes(s: _Search, max_bytes: int, k_cap: int, lo: int, hi: int, key: tuple[int, float]) -> KmqImage:
    """The search's file (of key, which fits), or a real plain file that is better: with rough fits
    (s.rough) the search's bracket (lo fits, hi does not) was found on them, and the promise is about the
    real ones. The file is no worse than every real plain K that fits where its J is under the real J of a
    K whose real plain file does not fit (J falling with K and files growing, as the whole search assumes):
    the bracket's hi (moved up while its real file fits: then a candidate), usually at the cost of one fit
    and one sizing. Else the real bracket is narrowed as the search's own is, and its lo is a candidate."""
    if not s.rough:
        return s.file(*key)
    r = s.real()
    j_best = s.file(*key).distortion

    def ok(k: int) -> bool:  # (as the search's: the real plain file does not fit)
        return k > k_cap or (k >= 1 and not r.fits(k, max_bytes))

    def beaten(lo: int, hi: int) -> bool:
        return hi <= k_cap and j_best < r.j(hi)

    hi = _far_end(s, max_bytes, k_cap, hi, j_best)
    while hi <= k_cap and not ok(hi):
        lo, hi = hi, _up(hi, k_cap)
    if not beaten(lo, hi):
        while lo >= 1 and ok(lo):
            lo, hi = _down(lo), lo
        lo = max(lo, 1)
        if hi > k_cap:  # (no K found too large: k_cap, the largest allowed, is the best plain K if it fits)
            lo, hi = (lo, k_cap) if ok(k_cap) else (k_cap, k_cap + 1)
        lo, hi = _narrow(lo, hi, ok, r.estimate, max_bytes, beaten, up=True, edge=_edge(r))
    _past_top(r, max_bytes, k_cap, hi, lambda: j_best)
    return _adopted(s, key, j_best, lambda k: None if ok(k) else r.j(k))


# _checked_bytes starts from a K whose search file (rough or real) is this much over the budget (its lower bound),
# at a J this much over the file's: a rough file near the budget is no sign of the real one's (the trial's noisy
# photo in 30 kB: rough K = 7 32.2 kB, real 29.6 kB; real 9 29.6 kB; real 12 33.6 kB)
_CHECK_OVER = 1.1
_CHECK_J = 1.05


def _far_end(s: _Search, max_bytes: int, k_cap: int, hi: int, j_best: float) -> int:
    """The K _checked_bytes checks first: the search's hi, unless its file is near the budget and a larger K's
    plain file (sized by the search) is far over it (_CHECK_OVER) at a J far over the file's (_CHECK_J): then
    the least such K. The check needs a K whose real file does not fit at a real J over the file's, and
    a rough file just over the budget is often a real one that fits, each a real fit more (the noisy photo in
    30 kB: real K = 7, 9 and 12, 0.8 s of a 4.8 s search; from rough K = 11, 33.5 kB, one). The outcome is the
    same: any K that does not fit at a J over the file's shows every real plain file that fits is worse."""
    if hi > k_cap or s.bounds(hi)[0] > _CHECK_OVER * max_bytes:
        return hi
    far = [k for (k, r), (low, _) in s.sizes.items()
           if r == 0 and hi < k <= k_cap and low > _CHECK_OVER * max_bytes and s.j(k) > _CHECK_J * j_best]
    return min(far, default=hi)


def _small(s: _Search) -> bool:
    """Whether a plain compress of the image is cheap enough to size the plain files of a window of K (_scan)."""
    return s.pixels.shape[0] * s.pixels.shape[1] <= _SCAN_PIXELS


def _scan(s: _Search, first: int, last: int, wanted: Callable[[int], bool], bound: int) -> None:
    """Size the plain file of each K from first to last (within 1 .. k_hi) that wanted(k) (from its fit)
    says could be chosen, until a plain file of a smaller K is known over _DROP x bound bytes, or
    _SCAN_MAX files are sized: no plain file is assumed smaller than 1 / _DROP of a smaller K's, so none
    beyond is within bound (the most seen with ctx at K <= 96: 1.09 on 64x64 crops of astronaut and camera,
    1.29 on a 64x64 grey ramp, K = 21 800 bytes, 29 621). _SCAN_MAX bounds the cost where files grow slowly
    (a 32x32 crop at 700 bytes: K = 50 to 68 are 2 to 16 % over; all of them doubled the search's cost)."""
    sized = 0
    for k in range(max(1, first), min(s.k_hi, last) + 1):
        if _sized_over(s, k, _DROP * bound) or sized >= _SCAN_MAX:
            return
        if wanted(k) and (k, 0.0) not in s.sizes:
            s.bounds(k)
            sized += 1


def _scan_below(s: _Search, top: int, wanted: Callable[[int], bool]) -> None:
    """Fit the _SCAN_BELOW K under top and size the plain file of each that wanted(k) says could be chosen. A K
    under the bracket's top can beat it: above K = 64 a bracket ends within 1/64 of K, so K inside it were
    never fitted (a 48x48 crop of ihc at 40 dB: bracket 109 to 111, K = 110 meets it in 7 bytes less), and J
    does not always fall with K (K-Means' optima differ by a few %: a 64x48 crop of flower.jpg in 1,500 bytes,
    K = 111 J 7.22 in 1,453 bytes, K = 112 J 7.37, the bracket's lo). Not further down: each fit costs
    tens of milliseconds there (eight K made a 48x48 crop's search 1.4x dearer), and J rises ~1 % a K."""
    for k in range(top - 1, max(0, top - 1 - _SCAN_BELOW), -1):
        if wanted(k) and (k, 0.0) not in s.sizes:
            s.bounds(k)


def _first_below(s: _Search, first: int, last: int, j_best: float) -> int:
    """The least K from first to last whose plain J is under j_best, by bisection (J falls with K, as the
    whole search assumes), last + 1 if none: K of no better J need not be sized, nor fitted one by one."""
    if first > last or s.j(first) < j_best:
        return first  # (the usual case: lo + 1, past a plain best)
    if s.j(last) >= j_best:
        return last + 1
    while first < last:
        mid = (first + last) // 2
        if s.j(mid) < j_best:
            last = mid
        else:
            first = mid + 1
    return first


def _smallest_scanned(s: _Search, db: float, pick: tuple[int, float], hi: int) -> tuple[int, float]:
    """pick, or on a small image the smallest file that meets db once the plain files of K from hi (the least
    K found to meet it) to _SCAN_SPAN x hi are sized (_scan): from one K to the next plain files move by up to
    ~10 % (64x64 grey ramp with ctx: K = 13 384 bytes, 14 352, 15 394), so the bracket's top is not always
    the smallest plain file that meets a target."""
    if not _small(s):
        return pick
    _scan(s, hi, math.floor(_SCAN_SPAN * hi), lambda k: s.psnr(s.j(k)) >= db, s.bounds(*pick)[1])
    _scan_below(s, hi, lambda k: s.psnr(s.j(k)) >= db)
    for key in sorted(s.sizes):
        if key != pick and s.psnr(s.file(*key).distortion) >= db and not s.no_larger(pick, key):
            pick = key
    return pick


def _raw_could_beat(s: _Search, k: int, base: int) -> bool:
    """Whether raw's plain file of k (> base) may be smaller than base's: its payload and palette grow by
    less than a J's digits can shrink the metadata."""
    if not base < k <= s.k_hi:
        return False
    n = s.pixels.shape[0] * s.pixels.shape[1]

    def payload(kk: int) -> int:
        return -(-n * bitpack.bits_for(kk) // 8)

    return payload(k) - payload(base) + s.channels * (k - base) < _J_DIGITS


def _rdo_for_psnr(s: _Search, db: float, j_goal: float, hi: int) -> tuple[int, float] | None:
    """The smallest file found of a K from the bracket's top up with the slack between its plain J and the
    target's spent on rdo: usually smaller than any plain K that meets the target, as rdo saves bytes at a far
    lower price in PSNR than a smaller K does. None where there is no slack to spend (a plain larger K is
    never smaller).

    Bytes against log K (the slack spent at each K) fall, then rise, and where they turn depends on the
    image (noisy600 at 22 dB: K = 3 with rdo 50 % is 3.9 kB, K = 4 with rdo 53 % 5.1 kB: rdo tops out, its
    file 1 dB over the target; a photo at 30 dB turns at 2-3x hi): a line search from _PSNR_K x hi down
    towards hi in steps of _PSNR_DOWN while files get smaller, at most _PSNR_RUNS rdo runs. Steps are
    compared by their files' estimates (bounds 0.5 % wide), the best by exact sizes."""
    tried: list[tuple[int, float]] = []

    def at(k: int) -> float:
        """The estimated bytes of k's file with the slack spent (inf when there is none, or no run left)."""
        if k < hi or k > s.k_hi or s.j(k) <= 0 or not s.can_run():
            return math.inf
        pct = min(MAX_RDO, _pct(j_goal / s.j(k)))
        if pct <= 0 or s.psnr(s.file(k, pct).distortion) < db:
            return math.inf
        tried.append((k, pct))
        return s.estimate(k, pct)

    s.cap = s.runs + _PSNR_RUNS
    k0 = _rdo_k(s, hi, _PSNR_K, s.k_hi)
    if k0 <= hi:
        return None
    best_k, best = k0, at(k0)
    if not math.isfinite(best):
        return None
    # Smaller K only, while files get smaller. Larger K were tried when the first smaller one was not smaller, and
    # cost a fit, a run and a sizing (1.4-2.6 plain compresses at the K chosen, a fifth to two fifths of the
    # search) for next to nothing: on the bench's 8 PSNR targets and 7 beyond it they ran on 6 (chelsea, coffee,
    # shapes over a noisy sky, china 640x427, a noisy china crop: larger; grace_hopper.jpg 512x600 at 32 dB: K = 94
    # 6 bytes, 0.02 %, under K0 = 63) and won on 1. An earlier bench's noisy600 at 26 dB found 2.7 % (K = 18
    # under K0 = 12), and a noisy 384x256 at 30 dB lost 2.4 s of an 8.5 s search at K = 850. (A first file whose
    # J lands well under the target's has topped out there: only smaller K would do better anyway; smooth crop
    # at 34 dB: K = 22 at 0.53 of the target's J, hi = 15 at 0.79 21 % smaller.)
    k = best_k
    while s.can_run():
        nxt = max(hi, round(k / _PSNR_DOWN))
        if abs(math.log(nxt / k)) < math.log(_PSNR_NEAR) or any(kk == nxt for kk, _ in tried):
            break  # (a step cut short by the bracket's top moves the bytes too little for its fit and run)
        size = at(nxt)
        if not size < best:
            break
        flat = math.log(best / size) < _PSNR_FLAT
        best_k, best, k = nxt, size, nxt
        if flat:
            break  # the curve has turned: a further step gains less than this one did, for a fit and a run
    key = tried[0]
    for other in tried[1:]:
        if s.no_larger(other, key) and other != key:
            key = other
    return key


def _rdo_k(s: _Search, base: int, factor: float, cap: int) -> int:
    """The K rdo is tried at: factor x base, but with ctx not across the K above which escapes are ranked by
    label (from base at or below it): a photo's plain file nearly doubles from K = 256 to 384, more than rdo
    wins back (street 1200x900 at 40 kB: rdo at 384 never fit, at 256 it saved 3.3 dB)."""
    k = min(cap, round(factor * base))
    if s.codec == "ctx" and base <= ctx.RANKED_K_MAX < k:
        k = ctx.RANKED_K_MAX
    return k


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
        raise KmqError(f"no .kmq file of this image fits in {plural_bytes(max_bytes)}: the smallest possible is "
                       f"{need:,} bytes (K=1, the target recorded in it)")
    if s.codec == "raw":
        return _raw_bytes(s, max_bytes)
    k_cap = _k_cap(s, max_bytes)

    def ok(k: int) -> bool:  # "meets" here means "does not fit": the curve grows with K
        return not s.fits(k, max_bytes)

    lo, hi = _bytes_bracket(s, max_bytes, k_cap)
    if hi > k_cap:  # every K allowed fits
        return _checked_bytes(s, max_bytes, k_cap, lo, hi, (max(lo, 1), 0.0))
    s.cap = _CASCADE_RUNS
    lean = s.lean_share > 0 and _useless_rdo(s, lo)
    cand = None if lean else _rdo_in_bytes(s, max_bytes, lo, hi, k_cap)

    def beaten(lo: int, hi: int) -> bool:  # better than the smallest K that does not fit, so than every one that does
        return cand is not None and s.file(*cand).distortion < s.j(hi)

    # Otherwise the bracket is narrowed, each probe aimed just above the budget so that hi falls.
    lo, hi = _narrow(max(lo, 1), hi, ok, s.estimate, max_bytes, beaten, up=True, edge=_edge(s))
    # (Not at a lossless hi: rdo has no J to spend there.)
    if _best_fitting(s, max_bytes)[1] == 0 and s.j(hi) > 0:
        # No rdo file beat the plain lo: the bracket's own top with a little rdo usually fits at a J between
        # its plain one and lo's.
        _try_rdo(s, hi, _pct(math.sqrt(s.j(lo) / s.j(hi))))
    _walk_up(s, max_bytes, k_cap)
    _fill(s, max_bytes)
    s.cap = _RUNS_MAX
    # (lean: nor K whose fits are kmeans' large-K ones, each 4-10x a fit under it)
    k_top = min(k_cap, kmeans._LARGE_K - 1) if lean else k_cap
    _plane(s, max_bytes, k_top)
    if s.pixels.shape[0] * s.pixels.shape[1] <= _LEVEL_PIXELS:
        _level(s, max_bytes, k_top)
    if s.lossless() and s.lossless() <= k_cap and not _sized_over(s, s.lossless(), _far_over(s) * max_bytes):
        s.bounds(s.lossless())  # graphics: often smaller than lossy K that miss the budget
    if _small(s):
        # plain files grow with K only over a doubling of K: a K past the bracket may fit where hi does not
        # (64x64 grey ramp with ctx in 400 bytes: K = 9 fit, 10 to 13 did not, 14 does at 3.8 dB more)
        _scan_below(s, lo, lambda k: s.j(k) < s.file(*_best_fitting(s, max_bytes)).distortion)
        j_best = s.file(*_best_fitting(s, max_bytes)).distortion
        last = min(k_cap, math.floor(_SCAN_SPAN * hi))
        _scan(s, _first_below(s, lo + 1, last, j_best), last, lambda k: s.j(k) < j_best, max_bytes)
    if not s.rough and s.file(*_best_fitting(s, max_bytes)).distortion >= s.j(hi) and _beats(s, s.j(hi)):
        # the largest K that fits has the least J (a noisy 123x141 RGBA image in 3,500 bytes: K = 255, 32.83 dB,
        # where K = 256 is also 3,361 bytes, at 32.84); so where the best file is lo's, or any whose J a plain
        # K inside the bracket may beat (not under hi's J): that image's K = 257 with rdo 0.67 %, J 135.24,
        # where plain K = 256 fits at J 134.89 (round 35's fits; the bracket had ended at 254 / 257)
        # (aimed where the plain bytes reach the budget on the line through the bracket's ends: over a 1/64 bracket
        # ctx's are nearly straight, and a fit there costs a plain compress; flower.jpg's JPEG at 480x320 in 100 kB:
        # ctx's 2,945 / 2,969 closed in 1 fit, bisection's 5). Not lzma's: its plain bytes jitter by +-1.5 % from one
        # K to the next, and the aim stopped a 60x80 image in 9,000 bytes at K = 779 where plain K = 782 fits
        # (8,947 / 8,987 / 8,951 / 8,960 bytes for K = 779-782), which bisection found.
        lo, hi = _neighbours(lo, hi, ok, (s.estimate, max_bytes, None) if s.codec == "ctx" else None)
    if not s.rough:
        _past_top(s, max_bytes, k_cap, hi, lambda: min(s.file(*_best_fitting(s, max_bytes)).distortion,
                                                       math.nextafter(s.beat, math.inf)))
    return _checked_bytes(s, max_bytes, k_cap, lo, hi, _best_fitting(s, max_bytes))


def _beats(s: _Search, j: float) -> bool:
    """Whether a file of J j would come before the other codec's file (s.beat; at the same J, by its bytes): plain K
    inside a bracket whose top's J is over it cannot (J falls with K, as the whole search assumes), nor those past it
    whose J is. Fitting them only to lose cost lzma's search after ctx's 3.7 s of a 16 s search (flower.jpg as a
    480x320 JPEG at q30 in 100 kB: ctx K = 5,938 with rdo 41.7 %, J 3.43; lzma's bracket 3,506 / 3,540 at J ~3.9, 8
    fits of ~0.46 s in _neighbours, K = 3,523-3,535, and _past_top, 3,536-3,538)."""
    return j <= s.beat


# lzma's search at ctx's K = 256 edge (_at_edge) first gives its plain bracket's lo rdo asking this much more J
# (percent), and where the file saves under 1 - _EDGE_SHARE of lo's plain bytes, rdo is not looked for at large K
# (_useless_rdo)
_EDGE_PROBE = 25.0
_EDGE_SHARE = 0.73
# ... and after a ctx file above K = 256 (_ctx_first), where lzma's bracket sits at K = 700-3,600 and every fit is a
# large-K one (0.3-0.6 s, a plain compress there): noisy gradients' probes kept 0.96-0.98 of the plain bytes, and
# their lzma files were plain; JPEGs of flower.jpg (q30) 0.84-0.85, where rdo at K ~ 3,800 won (320x214 in 60 kB:
# lzma K = 3,807 with rdo 10.4 %, 47.08 dB; lean at 0.73 gave ctx's 47.05): there the share does not tell, and the
# search stays whole
_HIGH_LEAN_SHARE = 0.9


def _useless_rdo(s: _Search, lo: int) -> bool:
    """Whether rdo at lo (the largest plain K found to fit), asked for _EDGE_PROBE % more J, saves under 1 -
    s.lean_share of lo's plain bytes (_EDGE_SHARE, or _HIGH_LEAN_SHARE above K = 256). Then lzma's search skips
    the steps that look past its plain bracket with rdo at large K: _rdo_in_bytes' K = 3 lo is not tried, and
    _plane and _level get no K from kmeans' large-K path (512; they clamp their candidates to 511; after a ctx
    file above K = 256 the bracket is there already, and they try none). Noise gives rdo nothing cheap to
    smooth, and there a fit from K = 512 costs 4-10 of one under it. _walk_up, _fill, _plane and _level may
    still choose an rdo file of K <= 511 (a 240x160 noisy gradient in 23,326 bytes: K = 386 with rdo 14.3 %, as
    before). The probe is one of the search's rdo runs, and its file is sized like the others, so later steps
    see it."""
    if lo < 2 or s.j(lo) <= 0 or not s.can_run():
        return False
    _try_rdo(s, lo, _EDGE_PROBE)
    return s.estimate(lo, _EDGE_PROBE) >= s.lean_share * s.estimate(lo)


# A plain file is taken to be at most this much smaller than a smaller K's (ctx, K = 2 to 160 of 12 images of 96x64 to
# 360x240: gradients, photo crops, grey, a chart, a screenshot, RGBA: at most 1.031x; a 64x64 grey ramp's 1.29 is
# _scan's),
_DIP = 1.05
# and at most this many K past the bracket's top are fitted to look for one that fits (_past_top): where bytes are
# flat in K a window 1.05x wide spans many (a 240x160 screenshot near 70 dB: K = 127 to 143 all within 1 %)
_PAST_FITS = 3


def _past_top(s: _Search, max_bytes: int, k_cap: int, hi: int, j_best: Callable[[], float]) -> None:
    """Size the plain files of the K just past hi (the least K found whose plain file does not fit) whose J is
    under j_best() (the best file's): plain bytes do not always grow with K (a 360x240 gradient with ctx: K = 61
    1,254 bytes, 62 1,244), so one of them can fit at a better J than the file's. From the least K whose J is
    under the best's (fitted, else on the line through the fitted K either side: _least_k_below) up to a K whose
    plain file is over _DIP x the budget, sized or on the polyline through the sized ones (none past it is
    assumed to fit); at most _PAST_FITS K fitted here. Where the best file is an rdo file far under hi's J, the K
    of a J under it lie where plain files are far over the budget: no fit."""
    fits, k, top = 0, hi + 1, min(k_cap, s.k_hi)
    while True:
        k = max(k, _least_k_below(s, j_best()))
        if k > top or _sized_over(s, k, _DIP * max_bytes) or _plain_bytes(s, k) > math.log(_DIP * max_bytes):
            return
        if k not in s.fitted:
            if fits >= _PAST_FITS:
                return
            fits += 1
        if s.j(k) < j_best():
            s.bounds(k)
        k += 1


def _neighbours(lo: int, hi: int, ok: Callable[[int], bool],
                j: tuple[Callable[[int], float], float, tuple[int, float] | None] | None = None) -> tuple[int, int]:
    """A bracket (ok(lo) false, ok(hi) true) narrowed to neighbours by bisection. Where the best file is a
    plain one, an end of the bracket, the K inside a bracket ended within 1/64 (above K = 64: _FINE) were never
    fitted, and one of them can be the better plain file: a few fits, only where rdo could not beat a plain
    file. j: (J, its goal, _zero) of a PSNR's bracket, or (plain bytes, the budget, None) of a byte budget's: from
    K = _FINE_FROM, or near the lossless K (_lossless_end), the probes go where it reaches the goal (_closing), as
    smooth there as J is: a 1/64 bracket at K = 35,000 is 550 K wide, 10 fits bisected, each 0.25 s (a 400x250
    RGBA photo at 60 dB, K = 63,000: 1 s each). The K found is the same where ok grows with K: bisection ends
    whatever _narrow left."""
    if j is not None and (lo >= _FINE_FROM or _lossless_end(lo, hi, j[2])):
        lo, hi = _closing(lo, hi, ok, *j)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return lo, hi


def _closing(lo: int, hi: int, ok: Callable[[int], bool], value: Callable[[int], float], goal: float,
             zero: tuple[int, float] | None) -> tuple[int, int]:
    """_neighbours' probes where J is smooth: each at the crossing (_crossing) rounded towards the end that did not
    move last, past it by 2^(n-1) - 1 after n moves of the same end (the crossing of a convex J nears it from one
    side: _narrow's geometric middle after three went from K = 63,102 back to 62,875). At most _MAX_STEPS."""
    run, last = 0, None  # how many times in a row the end last moved (hi: True) did
    for _ in range(_MAX_STEPS):
        if hi - lo <= 1:
            break
        x, past = _crossing(lo, hi, value, goal, zero), (1 << max(0, run - 1)) - 1
        k = min(hi - 1, max(lo + 1, math.ceil(x + past) if last is False else math.floor(x - past)))
        met = ok(k)
        run, last = run + 1 if met == last else 1, met
        lo, hi = (lo, k) if met else (k, hi)
    return lo, hi


def _k_cap(s: _Search, max_bytes: int) -> int:
    """No file of K entries is smaller than its palette: K beyond the budget's room for one need not be fitted.
    Counted from K = 1's file without its payload (lzma's is ~40 bytes even for no labels: a 60x60 graphic's
    K = 1 file was 150 bytes, K = 4's 151) and with a lossless J's shorter record."""
    overhead = s.file(1).overhead() - _J_DIGITS
    return max(1, min(s.k_hi, (max_bytes - overhead) // s.channels + 1))


def _bytes_bracket(s: _Search, max_bytes: int, k_cap: int) -> tuple[int, int]:
    """_bracket's plain K for a byte budget: lo's file fits, hi's does not."""
    lo, hi = _bracket(k_cap, lambda k: not s.fits(k, max_bytes), s.estimate, max_bytes, 16, coarse=_COARSE,
                      first=s.hint, edge=_edge(s))
    s.bracket = (lo, hi)
    return lo, hi


def _edge(s: _Search) -> int:
    """The K past which a byte budget's plain bytes jump (_narrow's edge): ctx's RANKED_K_MAX, where escapes start
    to cost far more (a noisy 200x150 gradient: 15,346 bytes at K = 256, over 23,050 at 257); 0 for other codecs."""
    return ctx.RANKED_K_MAX if s.codec == "ctx" else 0


def _sized_over(s: _Search, k: int, limit: float) -> bool:
    """Whether the plain file of a K under k was sized at over limit bytes (its lower bound): plain files
    grow with K but for a few bytes or %, so past _FAR_OVER x a budget k's cannot fit, and sizing it (a grey
    1200x800 photo at 30 kB: the lossless file, 233 colours, 411 kB) costs 1.4 plain compresses."""
    return any(r == 0 and kk < k and low > limit for (kk, r), (low, _) in s.sizes.items())


_FAR_OVER = 2.0
# ... on images over _LEVEL_PIXELS, this: their plain files dip by a few % at most from a smaller K's (ctx, K = 8 to
# 72: a 403x344 shaded relief 1.0 %, china.jpg 640x427 0.9 %, flower.jpg 400x300 2.4 %, a 960x600 screenshot
# 3.7 %), where a 64x64 diagonal grey ramp's K = 26 is 1.55x smaller than its K = 23. A grey photo's lossless file
# (256 levels) is many times the budget where K = 16's plain file is 1.3-2x it, and sizing it cost 0.5-0.7 plain
# compresses at the K chosen (camera 512x512 in 20 kB: 127 kB; a 900x600 grey china.jpg in 50 kB: 273 kB).
_FAR_OVER_LARGE = 1.3


def _far_over(s: _Search) -> float:
    """_sized_over's multiple of a byte budget past which the lossless file is not sized."""
    return _FAR_OVER if s.pixels.shape[0] * s.pixels.shape[1] <= _LEVEL_PIXELS else _FAR_OVER_LARGE


def _best_fitting(s: _Search, max_bytes: int) -> tuple[int, float]:
    """The least-J file sized so far that fits (encoded only where its bounds cannot tell): the search
    never returns a file worse than one it knows fits. K = 1 always fits here."""
    for key in sorted(s.sizes, key=lambda key: (s.file(*key).distortion, s.sizes[key][1], key)):
        if s.fits(key[0], max_bytes, key[1]):
            return key
    raise AssertionError("K = 1 fits")  # checked by _for_bytes before any search


def _try_rdo(s: _Search, k: int, pct: float) -> None:
    """Make and size the file of k with rdo pct (nothing when pct rounds to 0)."""
    if pct > 0 and s.can_run():
        s.bounds(k, min(MAX_RDO, pct))


def _fill(s: _Search, max_bytes: int) -> None:
    """Spend what the best file leaves of the budget (when it lands more than _FAR under it) on weaker rdo at
    its K: the geometric middle of its rdo and that of the nearest file of that K over the budget (by at
    most _FILL_NEAR x; shapes over a noisy sky at 40 kB: 2 runs missed from 23.5 kB and 3x over; from a file
    over it by at most _NEAR_MISS, the strength _between the two), at most
    _FILL_STEPS runs. Bytes fall steeply and unevenly with rdo there, so a line through the two aims too
    close to the file over the budget (a noisy 160x120 crop at 2 kB: K = 15 with rdo 71 % was 823 bytes,
    29.2 dB, 29.7 % over; the line's 34 % was over too)."""
    for _ in range(_FILL_STEPS):
        if not s.can_run():
            return
        best = _best_fitting(s, max_bytes)
        k, rdo = best
        if rdo <= 0 or math.log(max_bytes) - math.log(s.estimate(*best)) < _FAR:
            return
        over = [r for (kk, r) in s.sizes if kk == k and r < rdo and not s.fits(k, max_bytes, r)
                and s.estimate(k, r) <= _FILL_NEAR * max_bytes]
        if not over:
            return
        near = max(over)
        pct = _pct(1 + math.sqrt(max(near, 1e-3) * rdo) / 100)
        if math.log(s.estimate(k, near)) - math.log(max_bytes) <= _NEAR_MISS:
            # Just over the budget, the file over it is not far from what fits: the strength between the two
            # files either side (_between, at least a quarter of the way in log strength) is nearer the best
            # than the middle (the noisy photo at 100 kB, K = 256: +12.0 % was 0.2 % over, +33 % 71 kB; the
            # middle, +19.9 %, 76 kB and +15.4 %, 88 kB, came before +12.77 %, 97.8 kB: a run fewer, the same file)
            pct = _between(s, k, max_bytes, math.log(max_bytes) - _INSIDE) or pct
        if not near < pct < rdo:
            return
        _try_rdo(s, k, pct)


# The search at one J (_level), on images of at most this many pixels (a QVGA: a plain compress there costs 10 to
# 40 ms, the step's runs 0.05 to 0.3 s in all). Not above: on the benches' 15 budgets (0.12 to 1.1 MP) it made the
# search 1.1 to 2.0x dearer for +0.00 to +0.43 dB (grey camera 512x512 in 20 kB: 5.0 -> 10.2x a plain compress for
# +0.43 dB; the trial's grey 1200x800 in 30 kB 9.8 -> 12.9x for nothing), past the bench's worst, 10.2x.
_LEVEL_PIXELS = 320 * 240
_LEVEL_STEP = 1.25  # its steps in K, as the PSNR search's down
# rdo files of the K a PSNR search ends at add 36 to 67 % J (18 small images): a best file over 1.6x its K's plain
# J sits at too large a K (coffee 157x101 in 1,160 bytes: K = 12 at 2.23x, the PSNR search's K = 10), one under
# it at too small a K (chelsea 141x217 in 3,486 bytes: K = 15 at 1.42x, the PSNR search's 18)
_LEVEL_RATIO = 1.6
_LEVEL_PROBES = 3  # K tried at that J, at most (each a fit and an rdo run)
_LEVEL_FILLS = 2  # rdo runs then filling the budget at the K found, at most
_LEVEL_CLOSE = 0.01  # a fitting file this close to the budget (in log bytes) is not filled further
# d log bytes / d log J of rdo's files at one K, near the budget (-0.4 to -0.9 on the small images' searches)
_LEVEL_SLOPE = -0.6


def _projected(s: _Search, key: tuple[int, float], goal: float, plain: bool = False) -> float:
    """log J the file of key would reach at the goal (log bytes) by rdo's strength at its K (_LEVEL_SLOPE);
    a plain file under it its own J, unless plain (then projected as if rdo could reach it)."""
    j = math.log(s.file(*key).distortion)
    y = math.log(s.estimate(*key))
    if key[1] == 0 and y <= goal and not plain:
        return j
    return j + (goal - y) / _LEVEL_SLOPE


def _level(s: _Search, max_bytes: int, k_cap: int) -> None:
    """The PSNR search's walk, at the J the best file found would reach at the budget: K a step of _LEVEL_STEP
    apart, each given rdo up to that J, compared by the J each would reach at the budget (_projected), while
    they get better (at most _LEVEL_PROBES K); then the budget filled at the best K (_level_fill). From a best
    within _FAR of the budget the walk starts at its K, upwards when its rdo added under _LEVEL_RATIO; else
    (a plain best, or one far under the budget) at _PSNR_K x the least K whose plain J is under that J, down.

    The cascade and the search over (K, rdo) compare K by models of bytes along K and along rdo, fitted on
    files far from the budget, and tried K 1.4x apart; both missed the K a PSNR search finds (18 small images,
    the budget the bytes of their --psnr file: 13 worse than it, by up to 1.43 dB; coffee 157x101 in 1,160
    bytes: K = 12 with rdo 126 %, 25.29 dB, where the PSNR search's K = 10 with 47.5 % is 26.01). Files of
    two K at one J tell which K is better without a model: the walk needs one run a K."""
    goal = math.log(max_bytes) - _INSIDE
    best = _best_fitting(s, max_bytes)
    k_b, r_b = best
    if s.file(*best).distortion <= 0 or s.j(k_b) <= 0 or _nothing_to_move(s, idle=False):
        return
    if _nothing_to_move(s):
        # every K rdo ran at had its runs idle: taken as no K of the walk doing better (a guess, measured on
        # gradients, not a proof), but weaker rdo at the best's K still fills the budget (a gradient 160x120
        # with lzma in 800 bytes: K = 37 +1.313 % 788 bytes, +0.014 % 793 and 0.0002 dB better)
        _level_fill(s, k_b, max_bytes)
        return
    j_goal = math.exp(_projected(s, best, goal, plain=True))
    cur, cur_v = best, _projected(s, best, goal)
    probes, topped = 0, False

    def probe(k: int) -> bool:
        """Try k at j_goal; whether its file is the best of the walk."""
        nonlocal cur, cur_v, probes, topped
        if topped or not 2 <= k <= min(k_cap, s.k_hi) or s.j(k) >= j_goal or s.j(k) <= 0 or not s.can_run():
            return False
        pct = min(MAX_RDO, _pct(j_goal / s.j(k)))
        if pct <= 0 or (k, pct) in s.sizes:
            return False
        probes += 1
        _try_rdo(s, k, pct)
        # rdo that adds under half the J it is given has nothing to smooth at this J (gradients: +0.0 to 0.9 % of
        # +20 to 90 % asked): no K of the walk would do better, and each costs a fit and a run
        topped = s.file(k, pct).distortion - s.j(k) < _SHORT * (j_goal - s.j(k))
        v = _projected(s, (k, pct), goal)
        if v < cur_v:
            cur, cur_v = (k, pct), v
            return True
        return False

    if r_b > 0 and math.log(max_bytes) - math.log(s.estimate(*best)) < _FAR:
        k0 = k_b
        first = 1 if j_goal / s.j(k_b) < _LEVEL_RATIO else -1
    else:
        # (flat graphic 120x80 in 391 bytes: the best plain K = 5, 28.68 dB; K = 7 with rdo 47 % 29.86 dB)
        k0 = _rdo_k(s, _least_k_below(s, j_goal), _PSNR_K, k_cap)
        if s.codec == "ctx" and k_b <= ctx.RANKED_K_MAX:
            # nor past ctx's edge from a best under it, as _rdo_k: the least K reaching j_goal can lie past it
            # (a best plain K = 255 far under the budget), and escapes make those files hopeless (large-K fits)
            k0 = min(k0, ctx.RANKED_K_MAX)
        first = -1
        if not probe(k0):
            k0 = cur[0]
    for direction in (first, -first):  # the other way only when the first step did not move
        k, moved = k0, False
        while probes < _LEVEL_PROBES:
            nxt = round(k * _LEVEL_STEP) if direction > 0 else round(k / _LEVEL_STEP)
            nxt = nxt if nxt != k else k + direction
            if s.codec == "ctx" and k <= ctx.RANKED_K_MAX < nxt:
                nxt = ctx.RANKED_K_MAX
            if nxt == k or not probe(nxt):
                break
            k, moved = nxt, True
        if moved or probes >= _LEVEL_PROBES:
            break
    _level_fill(s, cur[0], max_bytes)


def _least_k_below(s: _Search, j: float) -> int:
    """The least K whose plain J is predicted under j (the line through the fitted K either side)."""
    known = sorted((kk, v[2]) for kk, v in s.fitted.items() if kk >= 1 and v[2] > 0)
    above = [kk for kk, jj in known if jj >= j]
    below = [kk for kk, jj in known if jj < j]
    if not below:
        return max(above) + 1
    k1 = min(below)
    lower = [kk for kk in above if kk < k1]
    if not lower:
        return k1
    k0 = max(lower)
    j0, j1 = s.j(k0), s.j(k1)
    t = (math.log(j0) - math.log(j)) / (math.log(j0) - math.log(j1))
    return max(k0 + 1, min(k1, math.ceil(math.exp(math.log(k0) + t * (math.log(k1) - math.log(k0))))))


def _level_fill(s: _Search, k: int, max_bytes: int) -> None:
    """Weaker rdo at k while its best fitting file leaves over _LEVEL_CLOSE of the budget (at most _LEVEL_FILLS
    runs): the J between the nearest files over and under the budget (log J linear in log bytes), or without
    one over it, by _LEVEL_SLOPE or the chord from the plain file, whichever asks the lower J. A file 2 % under
    the budget is ~0.2 dB from it (grey camera 131x89 in 911 bytes: 893 bytes 29.88 dB, 907 bytes 30.04)."""
    goal = math.log(max_bytes) - _INSIDE / 2
    for _ in range(_LEVEL_FILLS):
        if not s.can_run() or s.j(k) <= 0:
            return
        runs = [(math.log(s.file(k, r).distortion), math.log(s.estimate(k, r)), r) for kk, r in s.sizes
                if kk == k and r > 0]
        under = [p for p in runs if p[1] <= math.log(max_bytes)]
        over = [p for p in runs if p[1] > math.log(max_bytes)]
        if not under:
            return
        v1, y1, _ = max(under, key=lambda p: p[1])
        if math.log(max_bytes) - y1 < _LEVEL_CLOSE:
            return
        v = v1 + (goal - y1) / _LEVEL_SLOPE
        # the chord from the plain file: rdo's first bytes cost little J on flat graphics (flat 120x80: +58 %
        # J for 11 % fewer bytes, where the slope's step asked +0.5 % more J)
        y_plain = _plain_bytes(s, k)
        if y_plain > goal > y1 and v1 > math.log(s.j(k)):
            chord = math.log(s.j(k)) + (goal - y_plain) / (y1 - y_plain) * (v1 - math.log(s.j(k)))
            # ... but not the slope's step where it asks no rdo at all (a J under the plain one): from a file far
            # under the budget it did, and the fill stopped there (a 123x141 RGBA vignette in 3,450 and 3,500
            # bytes: 3,122 and 3,175 bytes at 29.46 and 29.57 dB; now 3,333 and 3,373 at 29.80 and 29.99)
            v = min(v, chord) if v > math.log(s.j(k)) else chord
        if over:
            v0, y0, _ = min(over, key=lambda p: p[1])
            if v0 < v1 and y0 != y1:
                v = v0 + min(1.0, max(0.0, (goal - y0) / (y1 - y0))) * (v1 - v0)
        pct = min(MAX_RDO, _pct(1 + _asked(s, k, math.exp(v) / s.j(k) - 1)))
        if pct <= 0 or any(kk == k and abs(math.log(max(r, 1e-6) / pct)) < 0.01 for kk, r in s.sizes):
            return
        _try_rdo(s, k, pct)


def _topped_out(s: _Search, key: tuple[int, float], max_bytes: int, strict: bool = True) -> bool:
    """Whether the file of key (K, rdo) fits far under the budget (by _FAR in log bytes) with rdo that added
    little J (at most _TOPPED): rdo smoothed away noise, and a larger K with rdo may fit (a noisy 1200x800
    photo at 20 kB: K = 12 with rdo +3 % J was 3.2 kB; K = 256 fits at 29.7 dB against 20.0). Not where
    rdo paid for its bytes in J (shapes over a noisy sky at 40 kB: K = 30, +25 % J for 23.5 kB; at
    K = 40 to 93, no rdo file fitted). Not strict: also where rdo added less than _SHORT of the J it was
    given (a noisy grey 1200x800 photo at 20 kB: K = 9, +53 % J of 442 % for 6.1 kB; 34.1 dB at K = 24
    against 31.1)."""
    k, rdo = key
    added = s.file(*key).distortion / s.j(k) - 1 if rdo > 0 and s.j(k) > 0 else math.inf
    return (added <= (_TOPPED if strict else max(_TOPPED, _SHORT * rdo / 100))
            and math.log(max_bytes) - math.log(s.estimate(*key)) >= _FAR)


def _walk_up(s: _Search, max_bytes: int, k_cap: int) -> None:
    """Larger K, when the best file found is an rdo file that topped out far under the budget, for as long as
    the best lands far under it (by _FAR in log bytes): rdo that adds little J (noise, which its labels smooth
    away) leaves files a fraction of the plain ones (a noisy 1200x800 photo at K = 12: 3.2 kB at +3 % J where
    the plain file is 34 kB), so a K several times larger fits with rdo. Each step's K is from the room left
    (bytes growing with K as the plain files' do, at least as K^0.15; at most _UP_MAX x, with ctx not across K
    = 256 from below), given rdo up to the geometric middle of its plain J and the best's J (not where rdo's sample
    puts that file past _HOPELESS_UP x the budget), then, if that file is over the budget (or was not made), up to
    just under the best's J; a K over the budget at both caps the next steps,
    which go to the geometric middle. At most _UP_STEPS K."""
    ceiling = k_cap + 1  # the least K found too large
    # Not strict, which includes strict: a file that used the little J it was given but added under _TOPPED
    # is as far from paying for its bytes in J (vignette RGBA in 3,000 bytes: K = 15, rdo 0.099 % fit in
    # 2,622 where the plain file is 3,743, and the walk did not start: 20.9 dB, against 26.4 at 2,800 bytes).
    if not _topped_out(s, _best_fitting(s, max_bytes), max_bytes, strict=False):
        return
    for _ in range(_UP_STEPS):
        if not s.can_run():
            return
        best = _best_fitting(s, max_bytes)
        room = math.log(max_bytes) - math.log(s.estimate(*best))
        if room < _FAR:
            return
        k_b, j_b = best[0], s.file(*best).distortion
        # Along rdo files that topped out, bytes grow with K about as the plain files do (noisy photo:
        # ~K^0.2, 8 to 32; noisy grey ~K^1).
        k = _rdo_k(s, k_b, min(_UP_MAX, max(1.5, math.exp(room / max(0.15, _plain_line(s)[2])))), k_cap)
        if k >= ceiling:
            k = round(math.sqrt(k_b * ceiling))
        if k <= k_b or k >= ceiling or s.j(k) >= j_b or s.j(k) <= 0:
            return
        tried = 0.0
        first = _pct(math.sqrt(j_b / s.j(k)))
        pred = _predict(s, k, math.log(max_bytes) - _INSIDE)
        if math.isfinite(pred) and pred > s.j(k):
            # Stronger, up to the second, where the files made so far predict the budget is reached (_predict):
            # a noisy grey photo's rdo files shrink slowly with J (1200x800 at 30 kB: the middle gave 93, 35
            # and 82 kB at K = 37, 18 and 26; at 26 the prediction asks the second's 561 % at once, a run less)
            first = min(_pct(_UNDER * j_b / s.j(k)), max(first, _pct(1 + _asked(s, k, pred / s.j(k) - 1))))
        second = min(MAX_RDO, _pct(_UNDER * j_b / s.j(k)))
        for pct in (first, second):
            pct = min(MAX_RDO, pct)
            if pct <= tried or not s.can_run():
                break
            tried = pct
            if pct < second and _hopeless(s, k, pct, max_bytes, _HOPELESS_UP):
                continue  # the middle far over the budget: the stronger second strength at once
            _try_rdo(s, k, pct)
            if pct <= 0 or s.fits(k, max_bytes, pct) or s.file(k, pct).distortion - s.j(k) < _SHORT * (
                    pct / 100 * s.j(k)):
                break  # fits, or rdo topped out short of the J it was given: more would buy nothing
        if _best_fitting(s, max_bytes)[0] != k:
            ceiling = k


def _rdo_in_bytes(s: _Search, max_bytes: int, lo: int, hi: int, k_cap: int) -> tuple[int, float] | None:
    """The best rdo file found that fits, as (K, rdo), None if none: at K_r = _RDO_K x lo (lo the largest K
    found whose plain file fits, hi the smallest that does not), and if none there beats hi's J, at the
    geometric middle of hi and K_r with the rdo runs left (of _RDO_STEPS): a K_r too large for rdo to reach
    the budget below hi's J would leave the plain K (logo cut out, 15 kB: K_r = 63 does not fit at hi's J,
    K = 40 with rdo 20 % fits at half that J, 44 dB against the plain K's 41.1)."""
    k = _rdo_k(s, lo, _RDO_K, k_cap)
    if k < _RDO_ROOM * hi:
        # rdo at a K barely above hi (-k or the colours cap it; lo = 0: none) cannot pay for itself: rdo at
        # hi, below, is the cheaper try (0.96 MP photo at 1.5 MB: 3 rdo runs at K = 65 536 over the budget).
        return None
    best, runs, share = _rdo_at(s, k, max_bytes, lo, hi, _RDO_STEPS, _RDO_SHARE)
    k_mid = round(math.sqrt(k * hi))
    goal = math.log(max_bytes) - _INSIDE
    # Only where the share of the plain bytes rdo reached at K_r would let a file fit below hi's J (it is no
    # help on a noisy grey photo: 1.1x the plain file of the same J at K = 21, grey 1200x900 at 200 kB).
    if (best is None or s.file(*best).distortion >= s.j(hi)) and runs < _RDO_STEPS and hi < k_mid < k \
            and share is not None and _rdo_aim(s, hi, k, goal, share) < s.j(hi):
        if s.codec == "ctx" and s.pixels.shape[0] * s.pixels.shape[1] > _LEVEL_PIXELS and _rdo_aim(
                s, hi, k_mid, goal, min(share, _RDO_SHARE)) <= s.j(k_mid):
            # The middle's aim asks next to no J (rdo's first run there +0.1 %): the line through hi and K_r says a
            # plain K about k_mid would fit, where K_r's files at the J it reached missed. Walked down from K_r at
            # that J instead, as a PSNR search (on smaller images _level does it later, from the best file found).
            # Not where the middle's aim asks J: there its runs found the logo's K = 40 in 15 kB, 43.84 dB, and the
            # walk's K = 50, 40 at K_r's J 43.56.
            before = s.runs
            walked = _walk_down(s, max_bytes, k, hi)
            if walked is not None:
                return walked
            # A walk that found nothing leaves the middle K one run at least: it had taken the last, and a
            # 480x320 screenshot in 11,800 bytes ended at K = 23, 36.71 dB, where the middle K's run gives K = 39,
            # 37.90 dB, in half the time (h52r3)
            runs = min(runs + s.runs - before, _RDO_STEPS - 1)
        # Aimed as K_r was: rdo does more at a smaller K (logo cut out: 0.84 of the plain bytes at 63, about
        # 0.7 at 40), so its share at K_r would aim too strong an rdo there.
        again, _, _ = _rdo_at(s, k_mid, max_bytes, lo, hi, _RDO_STEPS - runs, min(share, _RDO_SHARE))
        if again is not None and (best is None or s.file(*again).distortion < s.file(*best).distortion):
            best = again
    return best


# K_r's rdo files that all miss the budget are walked down from at one J as a PSNR search is (_walk_down), in steps of
# _PSNR_DOWN, at most this many
_WALK_DOWN_STEPS = 2


def _walk_down(s: _Search, max_bytes: int, k_r: int, hi: int) -> tuple[int, float] | None:
    """Where every rdo file at K_r missed the budget, the first file that fits of smaller K at the least J below hi's
    that K_r's files reached, each K _PSNR_DOWN under the last (the PSNR search's walk), while the files get smaller;
    None if none. At a fixed J, bytes against K fall then rise, and K_r = 3 lo can lie past the turn: there rdo's
    bytes flatten at a J far under hi's (a 3000x600 text banner in 9,700 bytes: K_r = 198 at J 19.7 and 21.5 both
    ~10.2 kB, and the geometric middle, K = 123, whose plain J is already 20.8, was given 0.1 % rdo; the search
    ended at K = 73, 37.38 dB, where K = 163 with rdo 22.8 % is 9,672 bytes at 40.00)."""
    j_hi = s.j(hi)
    ran = [(s.file(k_r, r).distortion, s.estimate(k_r, r)) for kk, r in s.sizes if kk == k_r and r > 0]
    ran = [(j, b) for j, b in ran if s.j(k_r) < j < j_hi]
    if not ran:
        return None
    j_goal, last = min(ran)
    k, key = k_r, None
    for _ in range(_WALK_DOWN_STEPS):
        nxt = round(k / _PSNR_DOWN)
        if nxt <= hi or not s.can_run() or s.j(nxt) <= 0 or s.j(nxt) >= j_goal:
            break
        pct = min(MAX_RDO, _pct(j_goal / s.j(nxt)))
        if pct <= 0:
            break
        _try_rdo(s, nxt, pct)
        if s.fits(nxt, max_bytes, pct) and s.file(nxt, pct).distortion < j_hi:
            return nxt, pct
        size = s.estimate(nxt, pct)
        if not size < last:
            break
        k, key, last = nxt, (nxt, pct), size
    if key is None or not s.can_run():
        return None
    # The smallest file of the walk missed the budget: its K with the J that rdo's files near a budget take to
    # shed the rest (_LEVEL_SLOPE), a little more where that stays under hi's J (the banner: K = 158 at J 19.74
    # was ~1 % over 9,700 bytes)
    j_w = s.file(*key).distortion
    j_fit = min(j_hi, math.exp(math.log(j_w) + (math.log(max_bytes) - _INSIDE - math.log(last)) / _LEVEL_SLOPE))
    pct = min(MAX_RDO, _pct(1 + _asked(s, k, j_fit / s.j(k) - 1)))
    if pct <= key[1]:
        return None
    _try_rdo(s, k, pct)
    if s.fits(k, max_bytes, pct) and s.file(k, pct).distortion < j_hi:
        return k, pct
    return None


def _plain_slope(s: _Search, hi: int, k: int) -> float:
    """d log bytes / d log J of the plain files, from hi to k (k's size from the trend: not encoded)."""
    return (_plain_trend(s, k) - math.log(s.estimate(hi))) / (math.log(s.j(k)) - math.log(s.j(hi)))


def _rdo_aim(s: _Search, hi: int, k: int, goal: float, share: float) -> float:
    """The J at which the plain files' curve (through hi and k) times share reaches the goal (log bytes),
    at most hi's J."""
    slope, j_hi = _plain_slope(s, hi, k), s.j(hi)
    if slope >= 0:
        return j_hi
    return min(j_hi, math.exp(math.log(j_hi) + (goal - math.log(share) - math.log(s.estimate(hi))) / slope))


def _rdo_at(s: _Search, k: int, max_bytes: int, lo: int, hi: int, steps: int, share: float
            ) -> tuple[tuple[int, float] | None, int, float | None]:
    """The best file of k with rdo that fits, as (k, rdo), None if none found; the rdo runs made (at most
    steps, and one more at hi's J); the least share of the plain bytes of the same J an rdo file reached
    (None if none was made). The first rdo strength is where the plain files' curve (log bytes against
    log J, through hi and k) times share meets the budget,
    at most hi's J (rdo at a larger K usually fits there, and then beats every plain K that fits); the next
    are found on the line through the last two files in (log of the J rdo adds, log bytes), along which rdo
    files lie close to a line of slope about _RDO_SLOPE (the first step takes that slope). The search stops
    at a file within _CLOSE of the budget."""
    if k <= hi or s.j(k) <= 0:
        return None, 0, None
    j_k, j_hi = s.j(k), s.j(hi)
    goal = math.log(max_bytes) - _INSIDE  # aimed a little inside the budget: a file over it is wasted
    aim = _rdo_aim(s, hi, k, goal, share)
    best: tuple[int, float] | None = None
    points: list[tuple[float, float, float]] = []  # (log added J, log bytes, log J) of the files tried
    asked: list[float] = []  # the J each rdo run was given
    short = False  # whether the last rdo run landed short of the J it was given
    # An aim at or under k's plain J (the plain curve times share fits there) asks rdo for next to nothing. With
    # lzma its file is k's plain one give or take a few bytes (an 800x500 screenshot in 6,000 B: K = 9 +0.1 % and
    # +0.2 %, K = 6 +0.1 %, 0.5 % under the plain file at most): hi's J instead, where a file that fits beats
    # every plain K. Not with ctx, whose rdo judges moves by ctx's own bits and a tiny J can cut a file by several
    # % (the small RGBA photo: K = 48 +0.4 % -6.9 %; hi's J there cost a 600x400 vignette in 3,500 B 0.8 dB).
    lzma = s.codec == "lzma" and aim <= j_k * (1 + _NOTHING)
    added = j_hi - j_k if lzma else max(aim - j_k, 1e-3 * j_k)
    for step in range(steps + 1):
        if step == steps:
            # An rdo run may land well below the J it is given (its lambda is calibrated in a few trials), which
            # can leave every file over the budget: then hi's J, where a file that fits beats every plain one.
            if best is not None or not asked or max(asked) >= j_hi or not short:
                break
            added = j_hi - j_k
        pct = min(MAX_RDO, _pct((j_k + added) / j_k))
        if pct <= 0 or not s.can_run():
            break
        asked.append(j_k + added)
        img = s.file(k, pct)
        if img.distortion <= j_k:
            break
        short = img.distortion - j_k < _LANDED * added
        points.append((math.log(img.distortion - j_k), math.log(s.estimate(k, pct)), math.log(img.distortion)))
        if s.fits(k, max_bytes, pct) and (best is None or img.distortion < s.file(*best).distortion):
            best = (k, pct)
        if best is not None and math.log(s.estimate(*best)) >= math.log(max_bytes) - _CLOSE:
            break
        if best is not None and (_topped_out(s, best, max_bytes) or (
                math.log(max_bytes) - math.log(s.estimate(*best)) >= _LEFT_FAR
                and _topped_out(s, best, max_bytes, strict=False))):
            # A larger K spends the room better (_walk_up) than weaker rdo here. Also where rdo added more J
            # than _TOPPED but under half what it was given, when its file left most of the budget (a noisy
            # photo's JPEG at 30 kB: K = 96, +19 % of 83 % asked, 7.3 kB): weaker rdo at this K must nearly
            # treble its bytes, and lands far under the J of the larger K the search ends at (there 4 more
            # runs at K = 96, 13 in all, 20x a plain compress at K = 256; now 6 runs, 10.7x, 0.06 dB less).
            # Not a file that left half of it (shapes over a noisy sky at 40 kB: K = 30, +49 % of 197 %,
            # 20.1 kB; the walk up from there found 0.2 dB more for 4 more runs, 16x -> 22x).
            break
        if best is None and img.distortion - j_k < _SHORT * added:
            # rdo stopped far short of the J it was given (it tops out where no lambda tried moves more), and
            # the file is over the budget: asking for more J buys nothing (street at K=384: +112 % gave +60 %,
            # +133 % gave +68 %, both 58 kB for 40).
            break
        if step >= steps - 1:
            continue
        over = [p for p in points if p[1] > math.log(max_bytes)]
        under = [p for p in points if p[1] <= math.log(max_bytes)]
        if over and under:
            # Between the nearest files either side of the budget, log bytes is close to linear in log J.
            (u1, y1, v1), (_, y0, v0) = max(under, key=lambda p: p[1]), min(over, key=lambda p: p[1])
            t = (goal - y1) / (y0 - y1) if y0 != y1 else 0.5
            nxt = math.exp(v1 + min(1.0, max(0.0, t)) * (v0 - v1)) - j_k
        else:
            # On the line through the last two in (log added J, log bytes), or of slope _RDO_SLOPE.
            (u1, y1, _), (u0, y0, _) = points[-1], points[-2] if len(points) > 1 else (math.nan,) * 3
            slope = (y1 - y0) / (u1 - u0) if len(points) > 1 and u1 != u0 and y1 != y0 else _RDO_SLOPE
            nxt = math.exp(u1 + (goal - y1) / min(slope, -0.05))
            if y1 < goal and not short:
                nxt = max(nxt, _STEP_DOWN * (img.distortion - j_k))
            if not under and max(asked) < j_hi < j_k + nxt and points[-1][1] > math.log(max_bytes) + 2 * _CLOSE:
                # Every file well over the budget and the line needs more than hi's J: only if rdo landed short of
                # the J it was given, hi's J (where a file that fits beats every plain K); else no rdo file here
                # beats hi (grey 1200x900 at 200 kB: +237 % at K=21 was 287 kB, +508 % still 227 kB).
                if not short:
                    break
                nxt = j_hi - j_k
        if nxt <= 0 or abs(math.log(nxt) - points[-1][0]) < 1e-3 or (best is None and nxt > s.j(lo) - j_k):
            break
        added = _ask_again(j_k, [math.exp(p[0]) for p in points], asked, nxt)
    slope = _plain_slope(s, hi, k)
    shares = [math.exp(y - math.log(s.estimate(hi)) - slope * (v - math.log(j_hi))) for _, y, v in points]
    return best, len(asked), min(shares) if shares and slope < 0 else None


def _ask_again(j_k: float, got: list[float], asked: list[float], added: float) -> float:
    """The J to add that _rdo_at asks rdo for next at a K of plain J j_k, its line aiming at added: added, unless
    that asks within _SAME_ASK (in log strength) of a run made (got: the J each run added; asked: the J each was
    given, plain J included). Then the run landed short of its ask, and the line, which aims by the J runs
    added, asks for about the same again; rdo would make about the same file: the ask is scaled by how the
    runs landed (_ask_from). flower.jpg at 3000x2250 in 150 kB, K = 120: +46.241 % added 15.2 of 22.0 asked,
    the line asked +46.633 %, which added 15.4, then +92.383 % 15.4 (1.2 s of CPU, the same bytes within
    0.01 %); the screenshot in 40 kB, K = 46: +3.997 % then +3.977 %, the same labels."""
    if any(abs(math.log(added / (a - j_k))) < _SAME_ASK for a in asked if a > j_k):
        return j_k * _ask_from([(g / j_k, a / j_k - 1) for g, a in zip(got, asked)], added / j_k)
    return added


_SAME_ASK = 0.02


def _plain_trend(s: _Search, k: int) -> float:
    """log bytes of the plain file at k on the least-squares line (log bytes against log K) through the plain
    files sized so far (K >= 2; a file's size moves up to ~10 % from one K to the next, so a line through
    all is steadier than one through the nearest two)."""
    x, y, slope = _plain_line(s)
    return y + slope * (math.log(k) - x)


def _plain_line(s: _Search) -> tuple[float, float, float]:
    """(mean log K, mean log bytes, slope) of that line; the slope 0.6 (a doubling of K: about 1.5x the
    bytes) when fewer than two K are known."""
    known = [(math.log(kk), math.log(sum(b) / 2)) for (kk, r), b in s.sizes.items() if r == 0 and kk >= 2]
    if not known:
        known = [(0.0, math.log(s.estimate(1)))]
    x, y = np.array([p[0] for p in known]), np.array([p[1] for p in known])
    slope = float(np.polyfit(x, y, 1)[0]) if len(known) >= 2 and np.ptp(x) > 0 else 0.6
    return float(x.mean()), float(y.mean()), slope


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
    top = k
    while k > 1 and s.size(k) > max_bytes:  # a J with more digits than K = 1's: a few bytes more
        k -= max(1, -(-(s.size(k) - max_bytes) // s.channels))
    k = max(1, k)
    lossless = s.lossless()
    if _raw_could_beat(s, lossless, top):
        # J = 0 is recorded in 3 bytes, a lossy J in up to 24: the lossless file can fit where lossy K of
        # its bit width do not (1x41 grey, 39 levels, in 170 bytes: lossless 170, K = 28 169 at 53.8 dB)
        if s.size(lossless) <= max_bytes:
            return s.file(lossless)
    if _small(s):
        # and any K the formula's K and the steps down from it passed over, a J shorter than theirs
        j_best = s.j(k)
        _scan(s, k + 1, top + _J_DIGITS // s.channels, lambda kk: s.j(kk) < j_best, max_bytes)
        return s.file(*_best_fitting(s, max_bytes))
    return s.file(k)


def _log_interp(points: list[tuple[float, float]], x: float) -> float:
    """y at x on the polyline through points (x sorted, distinct), extended by its end segments."""
    if len(points) == 1:
        return points[0][1]
    i = min(len(points) - 2, max(0, int(np.searchsorted([p[0] for p in points], x)) - 1))
    (x0, y0), (x1, y1) = points[i], points[i + 1]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def _plain_j(s: _Search, k: int) -> float:
    """The plain J of k: fitted if it is, else on the line (log J against log K) through the fitted K."""
    if k in s.fitted:
        return s.j(k)
    known = sorted((math.log(kk), math.log(v[2])) for kk, v in s.fitted.items() if v[2] > 0 and kk >= 2)
    if not known:
        return math.inf
    if len(known) == 1:  # a doubling of K divides J by about 1.8
        return math.exp(known[0][1] - math.log(1.8) / math.log(2) * (math.log(k) - known[0][0]))
    return math.exp(_log_interp(known, math.log(k)))


def _plain_bytes(s: _Search, k: int) -> float:
    """log bytes of the plain file of k: sized if it is, else on the polyline through the sized plain files
    (log bytes against log K)."""
    if (k, 0.0) in s.sizes:
        return math.log(s.estimate(k))
    known = sorted((math.log(kk), math.log(s.estimate(kk))) for (kk, r) in s.sizes if r == 0 and kk >= 2)
    if len(known) < 2:
        return _plain_trend(s, k)
    return _log_interp(known, math.log(k))


def _shares(s: _Search, k: int) -> list[tuple[float, float]]:
    """rdo's behaviour at the K nearest k (in log K) where rdo files were sized: (log J ratio, log bytes
    ratio) of each file against its K's plain one, from (0, 0), with bytes made non-increasing in J (a
    stronger rdo that gave more bytes is no better than a weaker one)."""
    near = _nearest_ran(s, k)
    return [(0.0, 0.0)] if near is None else _curve(s, near)


def _curve(s: _Search, k: int) -> list[tuple[float, float]]:
    """_shares' points of k's own rdo files."""
    base_j, base_b = math.log(s.j(k)), _plain_bytes(s, k)
    pts = sorted((math.log(s.file(k, r).distortion) - base_j, math.log(s.estimate(k, r)) - base_b)
                 for (kk, r) in s.sizes if kk == k and r > 0)
    out = [(0.0, 0.0)]
    for x, y in pts:
        if x > out[-1][0] + 1e-6:
            out.append((x, min(y, out[-1][1])))
    return out


def _nearest_ran(s: _Search, k: int) -> int | None:
    """The K nearest k (in log K) where rdo files were sized, None if none."""
    ks = {kk for (kk, r) in s.sizes if r > 0 and kk in s.fitted and s.j(kk) > 0}
    # (with ctx, not another K whose rdo files all added next to no J: see _TINY; lzma's, an icon sheet's in 3,304
    # bytes, went from 29.32 to 28.81 dB without them)
    ks = {kk for kk in ks if kk == k or s.codec != "ctx" or any(
        s.file(kk, r).distortion > (1 + _TINY) * s.j(kk) for k2, r in s.sizes if k2 == kk and r > 0)} or ks
    return min(ks, key=lambda kk: (abs(math.log(kk / k)), kk)) if ks else None


# ctx's rdo files that add under this share of their K's plain J tell nothing of rdo's curve at other K: on gradients
# and text (a 3000x600 banner) rdo's first moves, pixels nearly as close to a neighbour's entry, cut 8-10 % of the
# bytes for 0.1-0.7 % of J, and its bytes then fall far more slowly; carried to another K (the bracket's top with a
# little rdo, K = 73 at +0.34 %) _predict asked +0.1-0.2 % there, and each run at most twice the last (_ASK_MAX): the
# search over (K, rdo) crept up from +0.12 % to +0.58 % at K = 102 and ended at 37.38 dB in 9,700 bytes, where
# K = 163 with rdo 22.8 % is 9,672 bytes at 40.00
_TINY = 0.01


def _saturated(s: _Search, k: int) -> bool:
    """Whether rdo at k has topped out: a run there asked for over _SAT_ASK of k's plain J more than a weaker
    run did and added under _SAT_GOT of that extra J, so rdo has nothing more to move at k, whatever it is
    given (flower.jpg at 3000x2250 in 150 kB: K = 120 +46 % and +92 % gave J 62.7 and 62.9 of 47.5, K = 99
    +39 % and +49 % 68.8 and 69.1 of 54.3; bytes the same within 0.01 %). Only a model's guess: no file is
    taken to stand for another (rdo's moves depend on its bound: round 29's _dominated); it stops predictions
    past those files."""
    j_k = s.j(k)
    runs = sorted((r, s.file(k, r).distortion) for kk, r in s.sizes if kk == k and r > 0)
    return any(r1 - r0 > 100 * _SAT_ASK and j1 - j0 < _SAT_GOT * (r1 - r0) / 100 * j_k
               for i, (r0, j0) in enumerate(runs) for r1, j1 in runs[i + 1:])


_SAT_ASK, _SAT_GOT = 0.05, 0.1


def _predict(s: _Search, k: int, goal: float) -> float:
    """The least J a file of k is predicted to reach in goal (log bytes): its plain J when its plain file
    fits, else that J times the ratio rdo needed for the bytes share the goal leaves (from _shares:
    interpolated, or past the last file on the last segment, or at the typical slope); inf when rdo is not
    expected to get there."""
    j, y = _plain_j(s, k), goal - _plain_bytes(s, k)
    if y >= 0 or not math.isfinite(j):
        return j
    pts = _shares(s, k)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if y1 <= y <= y0:
            if x0 == 0 and y1 < 0 and s.codec == "ctx":
                # between the plain file and the first rdo one: rdo's first moves save the most (log bytes about
                # linear in the log of the J added, as past the last file). Not with lzma, whose rdo files a
                # screenshot's search then went past (160x96 in 600 bytes: 26.36 dB where it had 27.54)
                return j * (1 + math.expm1(x1) * math.exp((y - y1) / _image_slope(s)))
            return j * math.exp(x0 + (x1 - x0) * (y - y0) / (y1 - y0) if y0 != y1 else x0)
    near = _nearest_ran(s, k)
    if near is not None and _saturated(s, near):
        # Past the last file of a K where rdo topped out: rdo is not expected to get there (flower.jpg at
        # 3000x2250 in 150 kB: K = 132, predicted past K = 120's runs, was fitted and given two runs that both
        # topped out 16 % over the budget, 1.6 s of CPU, 1.4 plain compresses)
        return math.inf
    # Past the last file: rdo's bytes fall more slowly the more J it spends (log bytes about linear in the
    # log of the J it adds, slope _RDO_SLOPE).
    x1, y1 = pts[-1]
    added = math.expm1(x1) if x1 > 0 else 1e-3
    ratio = 1 + added * math.exp((y - y1) / (_slope_past(pts) if _ran_at(s, k) else _RDO_SLOPE))
    return j * ratio if ratio <= 1 + MAX_RDO / 100 else math.inf


def _image_slope(s: _Search) -> float:
    """d log bytes / d log (the J rdo adds) of this image: the median over the Ks with two rdo files or more of
    their last two files' slope (_slope_past), else _RDO_SLOPE (a grey image's _RDO_SLOPE_GREY). A grey photo's
    rdo saves most of what it can at once and little more after (400x300, K = 4: +0.2 % J -28 % bytes, +24 %
    -50 %; a slope of -0.08), where -0.28 predicted a smaller K with rdo no better than K = 8 at +206 %; K = 7 at
    +60 % was 1.5 dB better."""
    curves = [_curve(s, k) for k in {kk for (kk, r) in s.sizes if r > 0 and kk in s.fitted and s.j(kk) > 0}]
    slopes = [_slope_past(pts) for pts in curves if len(pts) >= 3]
    return float(np.median(slopes)) if slopes else (_RDO_SLOPE_GREY if s.channels == 1 else _RDO_SLOPE)


def _slope_past(pts: list[tuple[float, float]]) -> float:
    """d log bytes / d log (the J rdo adds) past the last of _shares' points: the last two rdo files' own
    (within _SLOPES) when there are two, else _RDO_SLOPE. rdo's files at one K can fall far more slowly than
    that (the vignette in 3,500 bytes, K = 84: about -0.16 from +3.7 % to +7.4 %), and steps aimed by
    -0.28 crept up on the budget from above, a run each (4 runs at K = 60, 4 at 84)."""
    if len(pts) < 3:
        return _RDO_SLOPE
    (x0, y0), (x1, y1) = pts[-2:]
    u0, u1 = math.log(math.expm1(x0)), math.log(math.expm1(x1))
    if not (u1 > u0 and y1 < y0):
        return _RDO_SLOPE
    return min(_SLOPES[1], max(_SLOPES[0], (y1 - y0) / (u1 - u0)))


_SLOPES = (-0.6, -0.1)


def _ran_at(s: _Search, k: int) -> bool:
    """Whether rdo files of k itself were sized (_shares then holds k's own runs)."""
    return any(kk == k and r > 0 for kk, r in s.sizes)


def _nothing_to_move(s: _Search, idle: bool = True) -> bool:
    """Whether rdo moved nothing or saved under 1 % at every K it ran at, two or more: flat graphics, where it
    has nothing to move at any K (450 bytes: K = 6, 3, then 4, each run 3 to 4 plain compresses at the K chosen,
    2); with idle, also where every run at each of those K either moved nothing or was given much J and added
    next to none of it (_idle): smooth gradients, whose labels have no noise to smooth (gradient 97x63 in 407 bytes:
    K = 69 +84.7 % added 0.37 %, K = 24 +2.5 % nothing; then 3 more K were fitted, sized and run for nothing, 12x a
    plain compress, the plain K = 23 the file). A K whose runs were given too little to tell does not count as
    stuck: taken so (round 49's first rule), one idle run at a large K decided the search alone, and textured
    gradients with lzma lost 0.9-1.7 dB (a 97x63 gradient under noise of +-2 in 461 bytes: K = 12, 23.12 dB, not
    K = 17, 24.70 dB)."""
    ran = {k for k, r in s.files if r > 0}
    return len(ran) >= 2 and all(_stuck(s, k, idle) for k in ran)


def _stuck(s: _Search, k: int, idle: bool = True) -> bool:
    """Whether rdo saved under 1 % at k, or every run there moved nothing (or was _idle, if idle)."""
    return _barren(s, k) or all(s.file(k, r).distortion <= s.j(k) or idle and _idle(s, k, r) for kk, r in s.files
                                if kk == k and r > 0)


def _idle(s: _Search, k: int, r: float) -> bool:
    """Whether the rdo run of k at r was given at least _IDLE_ASK of k's plain J and added under _IDLE_GOT of what
    it was given (photos' runs add most of it; a noisy grey photo's that topped out, K = 9 +442 %, added 12 %: idle,
    but its search's runs at other K were not, and _nothing_to_move needs every K stuck)."""
    return r / 100 >= _IDLE_ASK and s.file(k, r).distortion - s.j(k) < _IDLE_GOT * r / 100 * s.j(k)


_IDLE_ASK, _IDLE_GOT = 0.1, 0.15


def _plane(s: _Search, max_bytes: int, k_cap: int) -> None:
    """A local search over (K, rdo) from the best file found: each step predicts, for K around the best's
    (and the best's own when it leaves room), the least J a file of that K reaches in the budget (_predict:
    plain J along K, plain bytes along K, rdo's share of the plain bytes from the nearest K where rdo ran),
    and tries the most promising K at the rdo predicted to fill the budget, then up to twice more from what
    those files showed (a fourth run between two that straddle the budget, or just beyond three near misses:
    _between, _beyond). It stops when no K is predicted to beat the best by _GAIN. A candidate just over a K where
    rdo ran is tried at that K, or not at all where that K was tried already (_snapped). The cascade of steps
    before models bytes along K and along rdo separately and left budgets far from full (photo at 30 kB: 23.9 kB,
    29.0 dB where K = 128 with rdo 8 % is 29.2 kB, 29.9 dB) and did not cross K = 256 (vignette at 20 kB:
    33.2 dB where K = 600 with rdo 10 % is 35.4 dB in 15 kB)."""
    goal = math.log(max_bytes) - _INSIDE
    tried: set[int] = set()
    if _nothing_to_move(s):
        return
    for _ in range(_PLANE_STEPS):
        if not s.can_run():
            return  # (a K is fitted only to be given rdo)
        best = _best_fitting(s, max_bytes)
        j_best = s.file(*best).distortion
        if j_best <= 0:
            return
        k_b = best[0]
        factors = _PLANE_FACTORS
        if j_best <= (1 + _TOPPED) * s.j(k_b):
            # rdo at the best's K added next to no J (a vignette's K = 30 at +0.16 %): the room is in K, not in rdo,
            # and the search walks up by doubling K (the trial's RGBA vignette in 3,500 bytes: K = 30, 60, 120, then
            # 84, 28.08 dB; by 1.4x it ended at K = 83, 28.06 dB, a run more)
            factors += (2.0,)
        cands = {_snapped(s, min(k_cap, max(2, round(k_b * f)))) for f in factors}
        if s.codec == "ctx" and k_b * min(factors) <= ctx.RANKED_K_MAX <= min(k_cap, k_b * max(factors)):
            # the last K before ctx's escapes cost far more: a factor's step past it misses it (a noisy
            # photo's JPEG at 30 kB: K = 188 at 30.9 dB, 256 with rdo 32 % 31.4)
            cands.add(ctx.RANKED_K_MAX)
        if math.log(max_bytes) - math.log(s.estimate(*best)) < _CLOSE:
            cands.discard(k_b)
        if s.codec == "ctx" and k_b <= ctx.RANKED_K_MAX:
            # nor past it from below, as _rdo_k: escapes nearly double the plain bytes there, and a fit
            # above it costs several plain compresses at the best's K (a noisy photo at 30 kB: K = 512
            # cost 4.7 and its rdo file did not fit)
            cands = {k for k in cands if k <= ctx.RANKED_K_MAX}
        cands = {k for k in cands if k not in tried and k <= s.k_hi and not _barren(s, k)}
        if not cands:
            return
        k, own = _pick(s, cands, best, max_bytes, goal)
        if not _predict(s, k, goal) < _GAIN * j_best:
            return
        tried.add(k)
        # The plain J and bytes of k, now known. Not where k's own rdo runs (the walk up's, _fill's) are what its
        # predictions read and a smaller K's plain file was far over the budget (_sized_over): k's cannot fit, and
        # _predict weighs its bytes only against the budget's, its runs' against each other (the grey trial in
        # 30 kB: K = 26's 161 kB, 0.4 of a plain compress, where K = 16's is 109 kB; the same file)
        if not (_ran_at(s, k) and _sized_over(s, k, _far_over(s) * max_bytes)):
            s.bounds(k)
        if s.j(k) <= 0:
            continue  # lossless: no J for rdo to spend
        for run in range(_PLANE_RUNS):
            pred = _predict(s, k, goal)
            pct = min(MAX_RDO, _pct(1 + _asked(s, k, pred / s.j(k) - 1))) if math.isfinite(pred) else 0.0
            between = _between(s, k, max_bytes, goal)
            if run == _PLANE_RUNS - 1 and not between:
                between = _beyond(s, k, max_bytes, goal) or _weaker(s, k, max_bytes)
                if not between:
                    break  # a fourth run only between two that straddle the budget, or just beyond three near it
            pct = min(MAX_RDO, between or pct)  # _beyond may step past the cap: the key must be what is made
            if not pred < _GAIN * j_best or pct <= 0 or any(
                    kk == k and abs(math.log(max(r, 1e-6) / pct)) < 0.02 for kk, r in s.sizes) or not s.can_run():
                break
            if run == 0 and not own and not _ran_at(s, k) and _hopeless(s, k, pct, max_bytes):
                break
            _try_rdo(s, k, pct)
            if _barren(s, k) or (s.fits(k, max_bytes, pct)
                                 and math.log(max_bytes) - math.log(s.estimate(k, pct)) < _PLANE_CLOSE):
                break
            if not own and any(_predict(s, kk, goal) < _GAIN * _predict(s, k, goal)
                               for kk in cands if kk != k and kk not in tried):
                break  # another K is now predicted better than this one: the next step tries it


# A candidate K of the search over (K, rdo) at most this factor over a K where rdo files were sized is tried at that K
# (about a third of a step between its candidates, 1.4x): there its own runs aim the next, where the candidate
# was predicted from that K's runs carried over, and costs a fit and a plain sizing more (the 1920x1200 screenshot
# in 40 kB: K = 22, 1.05x K = 21's three runs, fitted, sized and given two runs that missed the budget as those had,
# 0.3 s of 2.1; coffee 200x133 in 8,180 bytes: K = 106 over 98, now 36.45 dB where it had 36.24, three fits fewer).
# Not to a K above: on 59 budgets that changed 4 files, two worse (the logo 250x250 in 4,106 bytes: K = 20 taken at
# 22, 38.11 -> 38.07 dB; an 800x600 chart in 8,000 bytes 35.99 -> 35.82); to K under it, on those and 3 more where a
# candidate was taken down, 3 files changed, each better (+0.001 to +0.48 dB), the other 3 kept theirs.
_SNAP = 1.12


def _snapped(s: _Search, k: int) -> int:
    """k, or the largest K under it within _SNAP where rdo files were sized, on k's side of K = 256 (ctx's
    RANKED_K_MAX, whatever the codec: the models along K are fitted on each side apart)."""
    ran = [kk for (kk, r) in s.sizes if r > 0 and kk in s.fitted and kk < k <= _SNAP * kk
           and (kk <= ctx.RANKED_K_MAX) == (k <= ctx.RANKED_K_MAX)]
    return max(ran, default=k)


# The first rdo run at a K the search over (K, rdo) tries from another K's runs is estimated from rdo's sample before
# the image is run (rdo.sample_share: its calibration, which the run takes over): the plain file's bytes times the
# share of its payload the sample's labelling costs. Over this multiple of the budget the run is not made. Estimates
# against the files (budget multiples) on the benches' budgets and 13 beyond: runs that lost 3.42 / 3.59 (shapes
# over a noisy sky, K = 42), 2.36 / 2.28, 1.74 / 1.68, 1.60 / 1.55 (noisy flower, its JPEG, noisy grace_hopper),
# 1.60 / 1.54 (china 2.5 MP under noise, K = 21); first runs at a K that became the file 0.86-1.04 (china 2.5 MP
# noise 6 K = 25 1.00 / 0.95, china RGBA 67 1.04 / 1.02, the noisy flower's JPEG 25 0.86 / 0.80); a screenshot's
# K = 4 1.06 / 1.32 (not cut: the sample's text is not the image's). Only where the image is larger than its
# sample (rdo._SAMPLE x 2): on one that is its own sample the calibration is the run. Not for the walk up's first
# strength (a second, stronger one follows): the grey trial's K = 37 at +396 % (93 kB for 30) was cut, the same
# file, but the trial's JPEG at 750x500 in 9,375 bytes lost 0.37 dB (K = 256: later steps read that run).
_HOPELESS = 1.3
# The walk up's first (middle) strength at a K, which a stronger one follows, is not run where its file is estimated
# over this multiple of the budget: the grey trial 1200x800 in 30 kB, K = 37 at +396 %, estimated 3.56x and 3.12x
# made (0.23 s of a 1.8 s search, 1.3 plain compresses), the stronger +1,000 % run either way. Not at _HOPELESS:
# the trial's JPEG at 750x500 in 9,375 bytes, K = 256 at +63 %, estimated 1.48x, made 0.67x, and later steps read it
# (0.37 dB when it was cut).
_HOPELESS_UP = 2.5


def _hopeless(s: _Search, k: int, pct: float, max_bytes: int, limit: float = _HOPELESS) -> bool:
    """Whether the rdo run of k at pct is estimated over limit x the budget from its sample (ctx, an image larger
    than its sample); the calibration made for it is then let go (Prepared.pending)."""
    if s.codec != "ctx" or pct <= 0 or s.j(k) <= 0 or not s.can_run() or (k, min(MAX_RDO, pct)) in s.files:
        return False
    prepared = s._prepared(k)
    if prepared.whole:
        return False
    # (the plain file's size as the search's models take it: sized, or between those sized, without sizing it;
    # its header and palette counted as payload, which only lowers the estimate)
    if math.exp(_plain_bytes(s, k)) * rdo_module.sample_share(prepared, min(MAX_RDO, pct)) <= limit * max_bytes:
        return False
    prepared.pending.clear()
    return True


def _pick(s: _Search, cands: set[int], best: tuple[int, float], max_bytes: int, goal: float) -> tuple[int, bool]:
    """The K the search over (K, rdo) tries next, and whether it is the best's own K taken first: that one when
    its runs straddle the budget and it is predicted to beat the best, else the K predicted best. A run between
    two at one K aims from runs at that K, another K's from a model fitted at others, and costs no fit nor
    plain sizing (shapes over a noisy sky at 40 kB: K = 60, then 42, predicted at 40 and 67 against K = 30's
    88, were fitted and given a run each, 5 plain compresses, that landed at 60 and 141 kB, before K = 30's
    two runs found the file)."""
    k_b = best[0]
    if k_b in cands and _between(s, k_b, max_bytes, goal) > 0 and (
            _predict(s, k_b, goal) < _GAIN * s.file(*best).distortion):
        return k_b, True
    return min(cands, key=lambda kk: (_predict(s, kk, goal), kk)), False


def _between(s: _Search, k: int, max_bytes: int, goal: float) -> float:
    """With rdo runs at k both over the budget and under it, the strength between the nearest two where
    log bytes, linear in log strength, meets the goal (rdo's J can jump with its strength, its bytes less:
    a noisy photo's JPEG at K = 188, +10.6 % gave 69.7 kB, +48 % and +82 % 11.1 kB for 30); else 0."""
    return _between_runs([(r, math.log(s.estimate(k, r))) for kk, r in s.sizes if kk == k and r > 0],
                         max_bytes, goal)


def _between_runs(runs: list[tuple[float, float]], max_bytes: int, goal: float) -> float:
    """_between from the runs at one K: (strength, log bytes) each."""
    over = [p for p in runs if p[1] > math.log(max_bytes)]
    under = [p for p in runs if p[1] <= math.log(max_bytes)]
    if not over or not under:
        return 0.0
    (r0, y0), (r1, y1) = max(over), min(under)
    if not r0 < r1 or y0 == y1:
        return 0.0
    t = min(1.0, max(0.0, (goal - y0) / (y1 - y0)))
    if math.log(max_bytes) - y1 > _FAR and any(r0 / _CREEP <= r < r0 for r, y in over):
        # The file under the budget is far under it and the line already aimed next to the file over it once
        # and landed over again: rdo's bytes fell off a cliff between the two (a noisy photo's JPEG at K = 188
        # in 30 kB: +14.3 % over it, +24.7 % 14.8 kB), where the line aims next to the file over it time and
        # again; halve the bracket in log strength instead. Not at once: where bytes fall smoothly that
        # overshoots (trial grey 1200x800 at 30 kB, K = 26: +402 % 30.1 kB, +561 % 20.1 kB; the halving took
        # +475, 437 and 419 %, 27.0 kB, where a quarter of the way takes +437 and 410.5 %, 28.8 kB).
        t = max(t, 0.5)
    elif math.log(max_bytes) - y1 > _FAR:
        # A quarter of the way at least: the goal sits just inside the budget, and the line's step from a file
        # just over it can be too small to cross it (the trial's JPEG at K = 256 in 30 kB: +22.69 % 30.2 kB,
        # +34.94 % 16 kB; the line's +23.0 % counts as the same run, and the search would stop at 16 kB).
        t = max(t, 0.25)
    return _pct(1 + math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0))) / 100)


def _beyond(s: _Search, k: int, max_bytes: int, goal: float) -> float:
    """With every rdo run at k over the budget, the two strongest within _NEAR_MISS of it: the strength where
    their line (log bytes against log strength) meets the goal, at most twice the strongest; else 0. Three
    timid steps from above (camera crop at K = 11, 2,700 bytes: +22.8, 31.5 and 37.8 % gave 2,903, 2,789 and
    2,703 bytes) ended the search at that K with a file 1 dB worse than a smaller budget's (review)."""
    runs = sorted((r, math.log(s.estimate(k, r))) for kk, r in s.sizes if kk == k and r > 0)
    if len(runs) < 2 or any(y <= math.log(max_bytes) for _, y in runs):
        return 0.0
    (r0, y0), (r1, y1) = runs[-2:]
    if y1 - math.log(max_bytes) > _NEAR_MISS or not y1 < y0:
        return 0.0
    t = (goal - y1) / (y1 - y0)  # steps of the last one's size in log strength, beyond r1
    return _pct(1 + min(2 * r1, math.exp(math.log(r1) + t * (math.log(r1) - math.log(r0)))) / 100)


_NEAR_MISS = math.log(1.05)  # over the budget by at most 5 %
_CREEP = 1.25  # an rdo run over the budget this close below the nearest one over it: the line crept up on it


# a fourth run at a K whose rdo files all fit far under the budget is this share of the weakest one's strength
# (the trial's JPEG at 750x500 in 9,375 bytes, K = 256: half of +26 %, +13 %, was over it; +19.75 % fit, 7.1 kB)
_WEAKER = 0.75


def _weaker(s: _Search, k: int, max_bytes: int) -> float:
    """With every rdo run at k far under the budget (by _FAR in log bytes) and k's plain file over it, _WEAKER
    x the weakest strength: rdo's bytes can stay flat over a range of strengths and then leap to the plain
    file's (that JPEG at K = 256: +63, +47, +34 and +26 % gave 6.3 to 6.7 kB, the plain file 34 kB), where
    _predict's line from the plain file to the runs aims at the flat part time and again (there 32.14 dB,
    where a run that had landed short of its +26 % gave 32.35 and this one 32.38); else 0."""
    runs = [r for kk, r in s.sizes if kk == k and r > 0]
    if not runs or (k, 0.0) not in s.sizes or s.fits(k, max_bytes) or any(
            math.log(max_bytes) - math.log(s.estimate(k, r)) < _FAR for r in runs):
        return 0.0
    return _pct(1 + _WEAKER * min(runs) / 100)


def _barren(s: _Search, k: int) -> bool:
    """Whether an rdo run at k saved under 1 % of its plain file (flat graphics: nothing to move), so more
    runs there would buy nothing."""
    return (k, 0.0) in s.sizes and any(kk == k and r > 0 and s.estimate(k, r) >= 0.99 * s.estimate(k)
                                       for kk, r in s.sizes)


def _asked(s: _Search, k: int, added: float) -> float:
    """The J share to ask rdo for at k so that it adds about added (_ask_from the runs made at k)."""
    return _ask_from([(s.file(k, r).distortion / s.j(k) - 1, r / 100) for kk, r in s.sizes if kk == k and r > 0],
                     added)


def _ask_from(runs: list[tuple[float, float]], added: float) -> float:
    """The J share to ask rdo for so that it adds about added, from runs (J share added, J share asked): an
    rdo run can land far short of the J it is given and jump (shapes over a noisy sky at K = 30: +17.4 %
    asked added 6.5 %, +28 % added 28 %), so the ask is interpolated (log against log) between the runs that
    added less and more, or scaled by the nearest run's shortfall beyond them, by at most _ASK_MAX (a noisy
    photo's JPEG at K = 188: +10.6 % asked added 1 %; 10x that, 227 %, fell off a cliff to 11 of 30 kB at
    30.1 dB where +18 % is 24.5 kB at 30.9); never less than added."""
    pts = sorted((math.log(got), math.log(ask)) for got, ask in runs if got > 0)
    if not pts or added <= 0:  # nothing to add: that K's plain file already fits the goal
        return added
    x = math.log(added)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 < x <= x1:
            return max(added, math.exp(y0 + (y1 - y0) * (x - x0) / (x1 - x0)))
    got, ask = min(pts, key=lambda p: abs(p[0] - x))
    return added * min(_ASK_MAX, max(1.0, math.exp(ask - got)))
