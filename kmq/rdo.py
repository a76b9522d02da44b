"""Rate-distortion optimised labels: spend a stated share of extra distortion where it buys the most bytes.

Plain quantization gives every pixel its nearest palette colour, whatever that costs to store. The ctx codec
(and, less sharply, lzma) codes a label cheaply when it repeats its neighbours' labels and dearly when it
breaks a run, so a pixel whose colour is almost as close to a neighbour's label is often worth relabelling.
This module minimises, for a multiplier lambda,

    E = sum over pixels of d(pixel, palette[label]) + lambda * sum over neighbour pairs of w * [labels differ]

(a Potts model: w = 2 for the 4 axial neighbours, 1 for the 4 diagonal ones) by iterated conditional modes:
each pixel takes whichever of its current label, its nearest label and its neighbours' labels has the lowest
cost, the pixels updated together being those of one of the four (row, column) parity classes, so no two
of them are neighbours and E never rises. Only pixels that can move are visited: those at a label
boundary (or next to a pixel that just moved) and, among those at their nearest label, only the ones
holding less than half the neighbour weight (any other label holds at most the other half, and is no
nearer) and, up to K = 32, less than (12 - gap / lambda) / 2 of it, gap being how much farther the colour's
second nearest entry is than its nearest (a move would cost at least the gap for at most that much
agreement). Each round of sweeps is followed by a palette refinement (every entry becomes the rounded mean of
its pixels, which never raises J for fixed labels). lambda is found on a sample of the image (the image
itself up to 2 * _SAMPLE pixels) so that J lands at the budget (a sample's refinement only shifts the
entries as the moves shift its means: see _refine). On the whole image the final J is then measured exactly
and, when above the budget, the relabelled pixels that bought the least agreement per unit of distortion
return to their nearest entry until it is not; when well under it (an image larger than its sample), a
second run at a lambda raised by the J left spends the rest (_top_up). Last, the result's ctx payload is
compared with the nearest labelling's (on the sample) and the nearest labelling is returned when rdo saved
nothing (at once, when nothing moved on the sample).
Everything is array work over whole parity classes, and nothing is kept per pixel but the labels (the
nearest entries per distinct colour, the moved pixels as a list, J as a running total): at 12 MP each
per-pixel array would cost 48 MB and the time to fill it.

Tried and dropped (--rdo 2 bytes over plain on the 4 sample photos at K = 16 and 64, geometric mean; this
Potts model with 6 bisection steps: 0.868): a rate model of ctx's finest level (the bits of a label given
the equality pattern of its 4 main neighbours, learnt from the labelling, for the pixel and the neighbours
it predicts) alone, 0.922 (0.898 with the coarser level's too), or added to the Potts term, 0.869; an
escape term (the rank ctx gives a label none of its main neighbours holds), 0.866; relabelling whole small
regions, 0.865 at 3x the time; 3 sweeps 0.868, 2 rounds 0.867, 8 candidates 0.868, a falling lambda 0.870.
The secant calibration gave 0.866 at 4 runs; aiming at 99 % of the budget 0.866, 6 runs 0.866 (1.5x the
calibration time).
Where ctx spends the bytes: the coarse levels (a quarter of the pixels, coded from neighbours 2+ pixels
away) hold 37 % of a plain chelsea K = 16 payload, and rdo cuts them by 10 % against 22 % at the finest
level. Aimed at them, on chelsea and ihc at K = 16 and 64 (this model: 0.892): Potts terms between the
pixels of the even grid at distance 2, weight 1 0.893, weight 2 0.901; a 5 x 5 neighbourhood (outer ring
weight 0.25 / 0.5 / 1) 0.892 / 0.895 / 0.901; lambda x0.7 or x1.3 for the even-grid pixels 0.894 / 0.891,
for the diagonal pass's 0.892 / 0.892; diagonal pairs weighted only where ctx predicts across them
(odd-odd with even-even) 0.892; starting from the nearest labels of a 3 x 3 smoothed image (weight 0.3 /
0.6 / 1) 0.892; a concave weight of agreement (12 (a / 12)^g for the Potts a, g = 0.3 / 0.5 / 0.7 / 1.5 /
2) 0.896 / 0.891 / 0.890 / 0.896 / 0.899. A better start for J: Lloyd steps from the fitted palette lower J
by < 0.03 % (the fit has converged), and a smaller K buys 0.6 % bytes per 1 % of J where rdo buys 4-5 %.
With the sweeps as now (0.8667): Potts weights (axial, diagonal) (1, 1) 0.869, (3, 1) 0.866, (4, 1) 0.867,
(3, 2) 0.867; 3 sweeps 0.866 (K = 64 alone: 0.896 as with 2), 1 sweep 0.872.
With the calibration as now (0.8650; it was 0.8667 returning the largest lambda under the budget): aiming
the trials at 103 % / 108 % / 130 % / 180 % of the J allowed, then backing off, 0.8648 / 0.8647 / 0.8649 /
0.8661; backing off runs up to 1.3x or 4x the J allowed instead of 2x, 0.8650 either way. Before that
change: each trial kept a quarter (a tenth) of the bracket in log lambda inside it, 0.874 (0.869); the
parity classes swept in another order (3210, 0312, 3012), 0.8666 / 0.8665 / 0.8664. Entropy-
constrained palettes (rarely used entries dropped, so escapes rank among fewer): dropping the 2 cheapest
entries of a K = 64 palette, then Lloyd, already costs 2.9 % (chelsea) and 2.7 % (ihc) of J, over the whole
budget: the fitted entries are balanced, each worth about 1.4 % of J. The palette's local optimum matters
more than its J: at K = 16, K-Means seeds 0-5 give plain ctx files 0.969x-1.000x (ihc) and 0.984x-1.004x
(chelsea) of seed 0's at J within 0.3 %, and rdo keeps its own ratio (0.888-0.898, 0.823-0.840); picking
the best of 4 seeds' palettes for rdo gave 0.854x seed 0's plain file, but that is a search over fits
(4x the fit at 12 MP) that a plain compress could make as well, so not done here. Made cheap instead from the
fit's own restarts (kmq.api._rdo, kmeans.fit's others): with --rdo and ctx the fit also finishes its 3 next
best ranked restarts and, where it makes 4-15 restarts (K = 64: 8), as many more drawn after its own (the
fit's palette stays the same), and keeps the 2 of least J within 1 % of its own; choose weighs each palette's
nearest labelling of the sample (ctx.payload_bounds) against the budget its J leaves (x (1 + 5 x its excess
of J)), and rdo runs on the one found cheapest with the plain palette's budget (final J <= 1.02x the plain J,
as before). Where the image is its own sample, the plain palette's rdo runs too and the smaller result is
kept (choose's guess missed on the smooth gradient at K = 16 and the RGBA logo at K = 64). On the samples at K
= 16 and 64 0.8476 (0.8650); the fit's restarts alone (none drawn for others) 0.8518, the same as the best of
all 8 finished K = 16 restarts judged by their rdo files; 16 more restarts at every K, 8 climbing, 0.8486. The
chosen palettes' J were 0.991x-1.0006x the plain one's (a lower J leaves more budget). At 12 MP (K = 16) the
noisy photo gains (0.768x plain, was 0.778x); the other photos' restarts end over 1 % apart in J or lose to
the plain palette (a saturated flower: 1.013x its file without them), so above 2 MP none are kept
(kmq.api._OTHERS_MAX: the fit's +18-210 % of CPU bought nothing there). The restarts' inertia after
_RESTART_ITER updates does not foretell their final J (ranked
1.02-1.03x the best, they ended 0.999x-1.03x), and a sample's J strays from the image's (a 12 MP mosaic:
0.998x against 1.013x), so choose takes the fit's final J where the image is larger than its sample.
Where rdo takes the bytes from (astronaut, chelsea, ihc; coarse: the quarter of pixels coded from neighbours
2+ pixels away; stage 1 / escapes as in kmq/codecs/ctx.py): at K = 16 the finest level's stage 1 falls to
0.71-0.86x and its escapes to 0.68-0.75x, the coarse levels' (37-39 % of the payload) only to 0.88-0.97x; at
K = 64 escapes are 32-41 % of the payload and fall to 0.80-0.97x, the coarse levels' to 0.91-1.01x.
Aimed at that, with this model and calibration (0.8650): a cost lambda x E for a label none of ctx's main
neighbours holds (diagonal ones for the odd-odd class, axial ones for the others), E = 1 / 2 / 4, 0.8654 /
0.8650 / 0.8655; with the even-even class's at distance 2, E = 1 / 3, 0.8647 / 0.8644; that and the
neighbours a label turns into or out of escapes (those holding the pixel as a main neighbour) counted too,
E = 0.5 / 1 / 2 / 4, 0.8651 / 0.8654 / 0.8648 / 0.8662.
Palette and labels optimised together (rounds of sweeps and refinement at each trial's lambda, so the
calibration spends the J each refinement gives back): 2 / 3 / 5 / 8 rounds 0.8646 / 0.8637 / 0.8635 /
0.8635, at 1.15x / 1.3x / 1.7x / 2.3x the CPU time of rdo and the file's encoding: the alternation converges
within 3 rounds, 0.15 % smaller files for 30 % more time, not kept.
Against 0.8650 (the file's own J budget as the lever: --rdo 1.5 / 2.5 / 3 give 0.8806 / 0.8514 / 0.8396, so
0.85 at --rdo 2 needs about a quarter more bytes per unit of J): a metric Potts term, a pair of labels a, b
costing (d(a, b) / median d)^g instead of 1 (close colours' boundaries, which ctx codes in their own apart and
activity contexts, cheaper), g = 0.12 / 0.18 / 0.25 / 0.35 / 0.5 0.8640 / 0.8634 / 0.8640 / 0.8657 / 0.8704, g
= -0.25 0.8701, log(1 + d / (c median d)) 0.8757-0.8994, d capped at 1x / 0.5x / 2x the median (g = 0.18 / 0.3
/ 0.25) 0.8632 / 0.8651 / 0.8640; an escape term lambda A log2(1 + the rank ctx gives the label from its
reference entry), with the 1 / 3 entries nearest the reference as candidates: A = 0.5 / 1 / 2, 0.8648 / 0.8646
/ 0.8647; A = 1 with 3, 0.8640; plus lambda for any escape, 0.8649; a stage-1 cost by the rank among the main
neighbours' labels (ctx's order: by count, ties to the first neighbour) of lambda x (0, .1, .1, .1) / (0, .1,
.2, .3, escape .5) / (0, .3, .6, .9) / (0, 1, 2, 3) 0.8650 / 0.8652 / 0.8658 / 0.8681, rank 0 lambda / 2
cheaper 0.8660; lambda weighted by the nearest labelling's boundary density in a 5 x 5 window ((1 + b / B)^-G
normalised, the back-off weighted alike), G = 0.5 / -0.5 (B = 0.2) / 1 (B = 0.1) 0.8660 / 0.8654 / 0.8686; the
first of two sweeps at lambda x 0.5 / 0.75 / 1.3 0.8695 / 0.8658 / 0.8655. These stack: the metric (g = 0.18,
axial weight 2.5) with the escape term (A = 1, 3 candidates, for the even-even pixels too from their
neighbours at ctx's own level and distance: alone 0.8631) and 2 / 3 joint rounds 0.8583 / 0.8580 (dropping any
one of the three: 0.8610-0.8617), with 2 rounds at 2.7x the CPU time of rdo and the encode on the samples. At
12 MP (K = 16) they do not carry over: detailed 1,012,937 bytes with 1 round, 1,005,901 with 2, against
1,008,017 (the metric alone 1,009,070, the escape term alone 1,005,015, 2 rounds alone 1,019,183: a sample's
refinement is not the whole image's); noisy, against 1,384,356, 1,381,645 / 1,380,160 / 1,383,721 (the same
three alone); and a compress cost 6.5 s / 8.1 s of CPU against 3.9 s (2.8x / 3.5x a plain one, over the 2x
allowed). Not kept. The K = 64 fits of seeds 0-3 differ by up to 1 % in J (seed 0's budget is 2 %): a palette
of lower J would leave rdo more to spend, but that is K-Means' job, for plain files as much.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace

import numpy as np

from . import kmeans
from .codecs import ctx

# (row, column) offsets of the neighbours and their weights in the Potts term. Diagonal neighbours count
# too because ctx's finest diagonal pass predicts a pixel from exactly those.
_OFFSETS = ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))
_WEIGHTS = (2, 2, 2, 2, 1, 1, 1, 1)  # (_agreement relies on this layout)
_HALF = sum(_WEIGHTS) // 2
_SWEEPS = 2  # sweeps of every parity class per round; strong rdo (above _MANY_AT %) moves many more pixels,
_MANY_AT, _MANY_SWEEPS = 5.0, 3  # and gains from a third sweep (about 2 % smaller files at 50 %)
_ROUNDS = 1  # rounds of sweeps + palette refinement
_SAMPLE = 1 << 17  # pixels of the sample lambda is calibrated on
_TILE = 64  # side of the sample's tiles
_TRIALS = 4  # runs when calibrating lambda
# Where J jumps with lambda (grey, flat graphics at large K), the secant can end with every trial far over
# or far under the budget: up to _EXTRA more trials, halving the bracket in log lambda, while the best run
# under the budget adds less than _SHORT of the J allowed (photos converge in _TRIALS: no extra run).
_EXTRA = 2
_SHORT = 0.5
_OVER = 2  # a run that added at most this many times the J allowed is backed off to the budget (_calibrate)
_AIM = 0.98  # share of the J budget each trial aims at
_INSIDE = 1.02  # a new trial's lambda stays this factor inside the bracket
# Images of up to this many (distinct colours) x (K + 1) read their sweeps' distances from a table of them
# (_Colours.table: 1 MB of float32, kept in the cache): a grey photo, graphics, a screenshot.
_TABLE_MAX = 1 << 18
_DENSE = 10  # a sweep finds its pixels on views of the whole labels when todo holds over 1 / _DENSE of them


@dataclass
class _State:
    """A labelling in progress. labels are stored padded by one pixel of sentinel k, so every pixel has 8
    neighbours; pixels (H*W, C) uint8. Nothing else is kept per pixel (at 12 MP every such array costs
    48 MB and the time to fill it): the nearest entry and its distance are kept per distinct colour
    (near_c, dnear_c), ``moved`` holds (sorted, flat) every pixel that may not be at its nearest entry (with
    the pixels of the colours flagged in ``pending``, whose nearest entry changed: found only when needed),
    ``total`` is the summed distortion of the labels and ``counts`` the pixels of each entry."""
    pixels: np.ndarray
    height: int
    width: int
    palette: np.ndarray
    padded: np.ndarray
    colours: _Colours
    near_c: np.ndarray
    dnear_c: np.ndarray
    moved: np.ndarray
    total: int
    counts: np.ndarray
    pending: np.ndarray | None = None
    gap_c: np.ndarray | None = None  # per colour, up to _GAPS_MAX_K entries: _gaps
    movable: tuple | None = None  # (gap_c, lam, _movable's per-colour array) of the last sweep
    # [_ranked's tuple, or None until a back-off makes it], shared by the copies of a run a warm Prepared keeps
    # (_image_run): a search backs one run off to several budgets, each from the same ranking of its moves
    ranking: list | None = None

    @property
    def labels(self) -> np.ndarray:
        return self.padded[1:-1, 1:-1]

    def near(self, idx: np.ndarray) -> np.ndarray:
        """The nearest entry of the pixels idx (flat)."""
        return self.near_c[self.colours.at(idx)]

    def dnear(self, idx: np.ndarray) -> np.ndarray:
        return self.dnear_c[self.colours.at(idx)]

    def current(self, idx: np.ndarray) -> np.ndarray:
        """The labels of the pixels idx (flat)."""
        return self.padded.reshape(-1)[_padded_at(self, idx)]

    def nearest_total(self) -> int:
        """The distortion of the nearest labelling."""
        return int(self.dnear_c.astype(np.int64) @ self.colours.counts.astype(np.int64, copy=False))


def _pixels_at(s: _State, idx: np.ndarray) -> np.ndarray:
    """The pixels idx (flat), (m, C): take along the rows copies 4x faster than s.pixels[idx] (12 MP, 0.9 M
    pixels: 0.002 s against 0.009)."""
    return np.take(s.pixels, idx, axis=0)


def _padded_at(s: _State, idx: np.ndarray) -> np.ndarray:
    """Positions in the flat padded labels of the pixels idx (flat)."""
    return idx + 2 * (idx // s.width) + s.width + 3


def _dist(pixels: np.ndarray, palette: np.ndarray, labels: np.ndarray,
          channels: list[np.ndarray] | None = None) -> np.ndarray:
    """Squared distance of each pixel (m, C) integers 0..255 to palette[labels], int32; channels: the pixels'
    _channels, when made once for several calls."""
    d = np.zeros(labels.shape, np.int32)
    # (take casts its indices to intp: once here, not once per channel; 1.2 M colours at K = 15, 3 channels:
    # a refinement's distances of every colour 1.4x faster)
    at = labels.astype(np.intp)
    for ch, level in enumerate(_channels(pixels) if channels is None else channels):
        diff = np.take(palette[:, ch].astype(np.int16), at)
        diff -= level
        d += np.square(diff, dtype=np.int32)
    return d


def _channels(pixels: np.ndarray) -> list[np.ndarray]:
    """The channels of pixels (m, C) as int16 arrays, as _dist subtracts them."""
    return [pixels[:, ch].astype(np.int16) for ch in range(pixels.shape[1])]


class _Colours:
    """An image's distinct colours (with their pixel counts) and, per pixel, the index of its colour (found
    once: the nearest entry of every pixel is then one gather per palette). Above kmeans._ONE_PASS pixels,
    where the distinct colours keep no index, none is made: the pixels' colours are ranked where they are read
    (at): 48 MP, 192 MB not held through the run, for 2-3 s of CPU more at --rdo 28, K = 256 (+7-10 %; --rdo 2
    at K = 16 the same)."""

    def __init__(self, distinct: kmeans.Distinct) -> None:
        self.colors = distinct.colors
        self.counts = distinct.counts
        self.size = int(distinct.counts.sum())  # pixels
        self._distinct = distinct
        self.index = None if distinct.ranked else distinct.index()  # kept by _Indexed: no copy made
        self._weights: np.ndarray | None = None
        self._spread = distinct.spread if isinstance(distinct, kmeans._Indexed) else None
        self._sums: tuple | None = None  # nearest_sums' of the last nearest entries asked about
        self._renearest: tuple | None = None  # _renearest's inputs and result, the last asked about
        self._table: tuple | None = None  # table's palette and result, the last asked about

    @property
    def weights(self) -> np.ndarray:
        """counts as float64, as bincount weighs with them: given int64 weights and uint8 indices it took 10 ms
        per 1.5 M colours against 2 (numpy 2.4; the same sums)."""
        if self._weights is None:
            self._weights = self.counts.astype(np.float64)
        return self._weights

    def nearest_sums(self, near_c: np.ndarray, k: int, pixels: bool) -> tuple[list[np.ndarray], np.ndarray | None]:
        """Per entry of a palette of k, the summed channels (float64, exact) of the pixels whose colour has it
        nearest (near_c) and, if ``pixels``, how many they are. Kept for the last near_c (by identity: nearest
        entries are replaced, never written to), which every run from one nearest labelling refines from (a
        calibration's trials, a target's runs at one K: the noisy trial 1200x800 at K = 256, 640 000 colours,
        0.01 s a run)."""
        done = self._sums  # (read once: a bulk run's threads may share a state's colours)
        if done is None or done[0] is not near_c or done[1] != k or (pixels and done[3] is None):
            at = near_c.astype(np.intp)  # (bincount casts its labels to intp on every call: once here)
            sums = [np.bincount(at, weights=self.colors[:, ch] * self.weights, minlength=k)
                    for ch in range(self.colors.shape[1])]
            had = np.bincount(at, weights=self.weights, minlength=k) if pixels else None
            done = self._sums = (near_c, k, sums, had)
        return done[2], done[3]

    def table(self, palette: np.ndarray) -> np.ndarray | None:
        """Each colour's squared distance to each entry of ``palette`` and inf to the sentinel k (the padding),
        float32 (exact), flat: colour c's row at c·(k + 1); None over _TABLE_MAX entries or the image's pixels
        (a small image of many colours: its sweeps would not earn back a table made at each refinement). The
        sweeps read their candidates' distances here (_TableDist). Kept for the last palette asked about: a
        target's runs at one K start from the same palette, and each refinement makes a new one."""
        k, n = len(palette), len(self.colors)
        if n * (k + 1) > min(_TABLE_MAX, self.size):
            return None
        key = (palette.shape, palette.tobytes())
        done = self._table  # (read once: a bulk run's threads may share a state's colours)
        if done is not None and done[0] == key:
            return done[1]
        table = np.full((n, k + 1), np.inf, np.float32)
        pal = palette.astype(np.int32)
        dist = np.zeros((n, k), np.int32)
        for ch in range(palette.shape[1]):
            dist += np.square(self.colors[:, ch, None].astype(np.int32) - pal[None, :, ch])
        table[:, :k] = dist
        table = table.reshape(-1)
        self._table = (key, table)
        return table

    def spread(self, per_colour: np.ndarray) -> np.ndarray:
        """per_colour[index]: through the distinct colours' own spread where it reads this index (chunks of
        intp indices: 12 MP 0.022 s against 0.028), else a gather (theirs would rank every pixel again)."""
        if self.index is None:
            return self._distinct.spread(per_colour)
        return per_colour[self.index] if self._spread is None else self._spread(per_colour)

    def at(self, idx: np.ndarray) -> np.ndarray:
        """The colour index of the pixels idx (flat)."""
        return self._distinct.index_at(idx) if self.index is None else self.index[idx]

    def nearest(self, palette: np.ndarray, guess: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The nearest palette entry of each colour (as _label_type), its squared distance, int32, and up to
        _GAPS_MAX_K entries the colour's gap (_gaps; else None); guess: an entry near each colour (its nearest
        before a refinement moved the entries, or its cluster in the fit), which kmeans.nearest searches from
        (the same result, from fewer candidates)."""
        if len(palette) <= _GAPS_MAX_K:
            return _gaps(self.colors, palette)
        return (*_nearest_of(self.colors, palette, guess), None)


def _nearest_of(colors: np.ndarray, palette: np.ndarray, guess: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """kmeans.nearest of colors (as _label_type; the distances int32), from the guess where it reads one."""
    if guess is not None and kmeans.takes_guess(len(colors), colors.shape[1], len(palette)):
        labels, sq = kmeans.nearest(colors, palette, guess.astype(np.intp))
    else:
        labels, sq = kmeans.nearest(colors, palette)
    return labels.astype(_label_type(len(palette))), sq.astype(np.int32)


# Palettes up to this many entries find each colour's gap with its nearest entry (12 MP noisy photo, 1.5 M
# colours, K = 16: 0.042 s where kmeans.nearest took 0.036; K = 32: 0.08 / 0.065), which spares the sweeps
# most pixels at a label boundary (_movable).
_GAPS_MAX_K = 32
_GAPS_BLOCK = 1 << 15  # colours at a time: the running minima stay in the cache


def _gaps(colors: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kmeans.nearest of colors (M, C) uint8 (the same entries, ties to the lower index; as _label_type) with
    the squared distances, int32, and each colour's gap: the squared distance to its second nearest entry
    less that to its nearest (0 where two tie), int32."""
    k = len(palette)
    cols = [colors[:, ch].astype(np.int32) for ch in range(colors.shape[1])]
    labels = np.zeros(len(colors), _label_type(k))
    first = np.empty(len(colors), np.int32)
    gap = np.empty(len(colors), np.int32)
    for start in range(0, len(colors), _GAPS_BLOCK):
        part = slice(start, min(start + _GAPS_BLOCK, len(colors)))
        near, least = labels[part], first[part]
        second = np.full(len(near), np.iinfo(np.int32).max, np.int32)
        for e in range(k):
            d = np.square(cols[0][part] - int(palette[e, 0]))
            for ch in range(1, len(cols)):
                d += np.square(cols[ch][part] - int(palette[e, ch]))
            if e == 0:
                least[:] = d
                continue
            np.minimum(second, np.maximum(least, d), out=second)
            _put(near, e, d < least)  # (strictly: a tie keeps the lower index)
            np.minimum(least, d, out=least)
        np.subtract(second, least, out=gap[part])
    return labels, first, gap


def _label_type(k: int) -> type:
    """The smallest integer type that holds labels 0..k (k: the padding's sentinel): the sweeps' gathers
    and comparisons move a quarter of the bytes at K <= 255 that they would as int32."""
    return np.uint8 if k <= 255 else np.uint16 if k <= 65535 else np.int32


def _start(pixels: np.ndarray, colours: _Colours, palette: np.ndarray, guess: np.ndarray | None = None) -> _State:
    """The nearest-colour labelling (guess: as _Colours.nearest's)."""
    height, width, channels = pixels.shape
    flat = pixels.reshape(-1, channels)  # uint8: _dist widens what it gathers (12 MP: 144 MB not made)
    near_c, dnear_c, gap_c = colours.nearest(palette, guess)
    padded = np.full((height + 2, width + 2), len(palette), _label_type(len(palette)))
    padded[1:-1, 1:-1] = colours.spread(near_c).reshape(height, width)
    counts = np.bincount(near_c, weights=colours.weights, minlength=len(palette)).astype(np.int64)
    s = _State(flat, height, width, palette, padded, colours, near_c, dnear_c, np.zeros(0, np.intp), 0,
               counts, gap_c=gap_c)
    s.total = s.nearest_total()
    return s


def _settle(s: _State) -> None:
    """Add the pixels of the colours in s.pending that are not at their nearest entry to s.moved."""
    if s.pending is None:
        return
    mask = s.colours.spread(s.pending)
    mask[s.moved] = True
    # (in place, a _CHUNK of the image at a time: at 12 MP and --rdo 28, 5 M pixels' positions and gathers held
    # 100 MB at once)
    for at in _chunk_slices(len(mask)):
        idx = np.flatnonzero(mask[at])
        idx += at.start
        mask[idx] = s.current(idx) != s.near(idx)
    s.moved = _positions(mask)
    s.pending = None


def _recount(s: _State, to: np.ndarray, away: np.ndarray) -> None:
    """Bring s.counts up to date for pixels whose labels went from ``away`` to ``to``."""
    k = len(s.palette)
    s.counts += np.bincount(to, minlength=k) - np.bincount(away, minlength=k)


def _mark(s: _State, stamp: np.ndarray, at: np.ndarray, step: int) -> None:
    """Stamp (padded like the labels) the pixels within one pixel, in all 8 directions, of the pixels at
    ``at`` (flat positions in the padded labels) with ``step``, the latest step at which they or a
    neighbour changed."""
    flat = stamp.reshape(-1)
    base, shifts = _based(at, s.width)
    for off in (s.width + 3, *shifts):  # (the pixel itself: offset 0 less the low one)
        flat[off:][base] = step


def _based(pidx: np.ndarray, width: int) -> tuple[np.ndarray, list[int]]:
    """pidx less the farthest back of the 8 neighbours' offsets, and those offsets (_OFFSETS) less it: the
    neighbours at ``off`` of flat positions pidx are flat[off:][base], views where flat[pidx + off] would
    make an index array for each (12 MP: 8 gathers 0.012 s where they took 0.015, 9 scatters 0.009 / 0.012)."""
    offsets = [di * (width + 2) + dj for di, dj in _OFFSETS]
    low = offsets[4]  # (-1, -1)
    return pidx + low, [off - low for off in offsets]


# Bits of a run's per-pixel flags (_run): one byte a pixel where the three masks were three (48 MP: 96 MB fewer)
_AWAY = 1  # the pixel may be away from its nearest entry (a sweep moved it, or it was in s.moved)
_TODO = 2  # the sweep visits it (a neighbour or itself changed in the sweep before)
_BEFORE = 4  # the sweep before visited it


class _Phases:
    """The padded labels of a run's sweeps as their four polyphase parts (every other row and column), which
    stand in for them while the sweeps run (48 MP at K = 256: 96 MB of uint16 labels not held beside them): a
    parity class's neighbours at one offset all lie in one part, whose rows are contiguous (the comparisons on
    views of them are 2-3x faster than on views of the padded labels with a step of 2)."""

    def __init__(self, padded: np.ndarray) -> None:
        self.shape, self.dtype = padded.shape, padded.dtype
        self.parts = [[np.ascontiguousarray(padded[p::2, q::2]) for q in (0, 1)] for p in (0, 1)]

    def padded(self) -> np.ndarray:
        """The padded labels again."""
        padded = np.empty(self.shape, self.dtype)
        for p in (0, 1):
            for q in (0, 1):
                padded[p::2, q::2] = self.parts[p][q]
        return padded

    def view(self, a: int, b: int, di: int, dj: int, r0: int, r1: int, cols: int) -> np.ndarray:
        """The labels at (di, dj) from the pixels of class (a, b) in its rows r0..r1 (cols of them a row)."""
        r, c = 1 + a + di, 1 + b + dj
        return self.parts[r % 2][c % 2][r // 2 + r0:r // 2 + r1, c // 2:c // 2 + cols]

    def spots(self, a: int, b: int) -> list[tuple[np.ndarray, int, int]]:
        """For class (a, b), the pixel itself and its neighbours at _OFFSETS: (the flat part, its offset from
        row * its width + column in the class's grid, which of the two part widths it is)."""
        out = []
        for di, dj in ((0, 0), *_OFFSETS):
            r, c = 1 + a + di, 1 + b + dj
            part = self.parts[r % 2][c % 2]
            out.append((part.reshape(-1), (r // 2) * part.shape[1] + c // 2, c % 2))
        return out

    def width(self, q: int) -> int:
        return self.parts[0][q].shape[1]


def _sweep(s: _State, lam: float, todo: np.ndarray | None, stamp: np.ndarray | None = None, step: int = 0,
           before: np.ndarray | None = None) -> np.ndarray:
    """One pass over the four parity classes, visiting the pixels of ``todo`` ((H, W) mask; all if None)
    that could gain from a move, s.moved updated; returns the pixels (flat; sorted within each parity class)
    whose labels changed. stamp, step and before (the sweep before's todo): as _sweep_on's. (A sweep on its
    own, with masks: _run sweeps on its own flags and phases, _sweep_on, and the tests check this against a
    plain one.)"""
    _settle(s)
    flags = _away(s).view(np.uint8)  # (True is 1: _AWAY)
    for mask, bit in ((todo, _TODO), (before, _BEFORE)):
        if mask is not None:
            flags[mask.reshape(-1)] |= bit
    phases = _Phases(s.padded)
    changed: list[np.ndarray] = []
    _sweep_on(s, phases, lam, flags, todo is not None, stamp, step, before is not None, len(s.moved) > 0, changed)
    s.padded = phases.padded()
    s.moved = _positions(flags, _AWAY)
    return np.concatenate(changed) if changed else np.zeros(0, np.intp)


def _sweep_on(s: _State, phases: _Phases, lam: float, flags: np.ndarray, todo: bool, stamp: np.ndarray | None,
              step: int, before: bool, moved_any: bool, changed: list | None = None) -> int:
    """One pass over the four parity classes on the labels ``phases`` (s.padded is not read), visiting the
    pixels flagged _TODO (all if not ``todo``) that could gain from a move; returns how many moved, each
    flagged _AWAY in ``flags`` ((H*W,) uint8; s.moved is not read, but for the nearest entries, nor set) and,
    if ``changed`` is a list, added to it (flat, sorted within each parity class). stamp: _mark's, padded,
    int8, written here with step + 1 + the class for each class's moves; with todo, the steps of the sweep
    before are step - 3 .. step, and _BEFORE flags its todo (if ``before``; else it visited all). A pixel
    that sweep visited whose neighbours have all kept their labels since (none stamped after its own class's
    step there) would keep its label (it holds the least cost of the same candidates, and a tie keeps the
    current label), so it is not visited again: the same labels, and at 12 MP (K = 16, --rdo 2) a second
    sweep hands _choose 0.38-0.97x the pixels (noisy 1 006 000 -> 386 000, detailed 721 000 -> 356 000,
    china + noise 857 000 -> 587 000, astronaut 88 000 -> 86 000). moved_any: whether any pixel may be away
    from its nearest entry (else every pixel is: that candidate is its own label)."""
    height, width = s.height, s.width
    hidden = _hidden(s.palette)  # (the palette moves between sweeps, not within one)
    flags2 = flags.reshape(height, width)
    # When todo is much of the image, the pixels worth visiting are found on views of the whole labels
    # (those outside todo masked out): far cheaper than gathering todo's neighbours by index.
    dense = not todo or _flagged(flags, _TODO) * _DENSE > height * width

    def fresh(stamped: np.ndarray, f: np.ndarray, cls: int) -> np.ndarray:
        """Which pixels of class cls may gain from a visit, given their stamps and flags."""
        new = stamped > step - 3 + cls
        return new | ((f & _BEFORE) == 0) if before else new
    movable = _movable(s, lam)
    table = s.colours.table(s.palette)
    stamps = None if stamp is None else stamp[1:-1, 1:-1]
    count = 0
    for cls in range(4):
        a, b = divmod(cls, 2)
        spots = phases.spots(a, b)
        own, own_off, own_q = spots[0]
        # The class's pixels are taken a band of rows (dense) or _CHUNK of todo's at a time: no two of them are
        # neighbours, so a piece's moves change nothing another piece of the class reads (12 MP at --rdo 28:
        # a class's 3 M pixels held 290 MB of indices, gathers and costs at once).
        shape = ((height - a + 1) // 2, (width - b + 1) // 2)
        if dense:
            band = max(1, _CHUNK // max(1, shape[1]))
            pieces = [(r0, min(r0 + band, shape[0])) for r0 in range(0, shape[0], band)]
        else:
            pieces = _chunks(np.flatnonzero(np.bitwise_and(flags2[a::2, b::2], _TODO)))
        for piece in pieces:
            if dense:
                r0, r1 = piece
                f = flags2[a::2, b::2][r0:r1]  # (the class's flags in the band)
                agree = _agreement([phases.view(a, b, di, dj, r0, r1, shape[1]) for di, dj in _OFFSETS],
                                   phases.view(a, b, 0, 0, r0, r1, shape[1]))
                # A pixel at its nearest label that agrees with half the weight or more keeps it: any other
                # label agrees with at most the other half and is no nearer (and a pixel inside a region agrees
                # with all of it). Pixels not flagged _AWAY are at their nearest.
                live = agree < _HALF
                if movable is not None:  # (looked up only under half the weight: movable is at most _HALF)
                    at = np.flatnonzero(live)
                    rows = at // shape[1]
                    idx = (2 * (rows + r0) + a) * width + 2 * (at - rows * shape[1]) + b
                    live.reshape(-1)[at] = agree.reshape(-1)[at] < movable[s.colours.at(idx)]
                if moved_any:  # (else none is flagged: a run's first sweep spares a strided pass a class)
                    live |= np.bitwise_and(f, _AWAY).view(bool)
                if todo:
                    live &= np.bitwise_and(f, _TODO) != 0
                    if stamps is not None:
                        live &= fresh(stamps[a::2, b::2][r0:r1], f, cls)
                at = np.flatnonzero(live)
                rows = at // shape[1]
                cols = at - rows * shape[1]
                agree = agree.reshape(-1)[at]
                rows += r0
                idx = (2 * rows + a) * width + 2 * cols + b
                bases = [rows * phases.width(q) + cols for q in (0, 1)]
                cur = own[own_off:][bases[own_q]]
                nbs = [part[off:][bases[q]] for part, off, q in spots[1:]]
            else:
                # The class's pixels of todo, found on its view (every other row and column): ascending, as they
                # would be picked from all of todo's by parity, without dividing every one of todo's positions by
                # the width and comparing its parity four times (a 1920x1200 screenshot's search: 1.1 M in all)
                rows = piece // shape[1]
                cols = piece - rows * shape[1]
                idx = cols * 2
                idx += rows * (2 * width) + (a * width + b)
                if stamp is not None:
                    pidx = idx + 4 * rows + 2 * a + width + 3  # (_padded_at without its division)
                    keep = fresh(stamp.reshape(-1)[pidx], flags[idx], cls)
                    idx, rows, cols = idx[keep], rows[keep], cols[keep]
                bases = [rows * phases.width(q) + cols for q in (0, 1)]
                cur = own[own_off:][bases[own_q]]
                # Only pixels at a label boundary, or away from their nearest entry, can move (read before
                # the other 4 neighbours: at low rdo most of todo is neither).
                away = np.bitwise_and(flags[idx], _AWAY).view(bool)
                moving = away.copy()
                for part, off, q in spots[1:5]:  # (views, as below: no index array made per neighbour)
                    moving |= cur != part[off:][bases[q]]
                idx, rows, cols, cur, away = idx[moving], rows[moving], cols[moving], cur[moving], away[moving]
                bases = [base[moving] for base in bases]
                nbs = [part[off:][bases[q]] for part, off, q in spots[1:]]
                agree = _agreement(nbs, cur)
                live = (agree < (_HALF if movable is None else movable[s.colours.at(idx)])) | away
                # (filtering costs a copy of every array: worth it only when it drops most pixels)
                if 2 * np.count_nonzero(live) < len(live):
                    idx, rows, cols, cur, agree = idx[live], rows[live], cols[live], cur[live], agree[live]
                    bases = [base[live] for base in bases]
                    nbs = [nb[live] for nb in nbs]
            if len(idx) == 0:
                continue
            if table is not None:
                which = s.colours.at(idx)
                near = s.near_c[which] if moved_any else None
                dist = _TableDist(table, which, len(s.palette) + 1)
            else:
                near = s.near(idx) if moved_any else None
                dist = _PixelDist(s.palette, _pixels_at(s, idx))
            best_c, dcur = _choose(dist, lam, cur, near, nbs, agree, hidden)
            # (a pixel that stays keeps its distance: only the moves are written and summed)
            moves = np.flatnonzero(best_c != cur)
            to = best_c[moves]
            own[own_off:][bases[own_q][moves]] = to
            s.total += dist.moved_sum(moves, to) - int(dcur[moves].sum(dtype=np.int64))
            _recount(s, to, cur[moves])
            # (the class's moves are never read in this sweep's _AWAY flags: they are read only at the class's
            # own pixels, a piece's own; _mark needs no order)
            moved = idx[moves]
            flags[moved] |= _AWAY
            count += len(moves)
            if changed is not None:
                changed.append(moved)
            if stamp is not None:
                _mark(s, stamp, _padded_at(s, moved), step + 1 + cls)
    return count


def _flagged(flags: np.ndarray, bit: int) -> int:
    """How many of flags have ``bit``, a _CHUNK at a time (no mask the size of the image)."""
    return sum(np.count_nonzero(np.bitwise_and(flags[at], bit)) for at in _chunk_slices(len(flags)))


def _movable(s: _State, lam: float) -> np.ndarray | None:
    """Per colour, the agreement (int8) below which a pixel of it, at its nearest entry, may move at lam
    (None without s.gap_c): a move to any other label c costs at least its colour's gap in distance and
    gains lam x (A(c) - A(cur)) <= lam x (12 - 2 A(cur)) (the neighbours holding c and cur are apart), so
    it needs A(cur) < (12 - gap / lam) / 2. The gap is shrunk by 1 + lam / 10^4 first, far more than
    _choose's float32 costs can round by (an ulp of 2^18 + 12 lam is 1/32 + 12 lam / 2^23): every pixel
    that could move is visited, as before (12 MP noisy, K = 16, --rdo 2: 3.4 M pixels of the first sweep
    at a boundary, 1.1 M of them movable, 0.8 M moved). Kept for the next sweep at the same lam; read at the
    pixels' colours where a sweep asks (spread to the pixels, it held 1 byte a pixel: 48 MB at 48 MP)."""
    if s.gap_c is None or lam <= 0:
        return None
    if s.movable is None or s.movable[0] is not s.gap_c or s.movable[1] != lam:
        slack = s.gap_c.astype(np.float64) - (1 + lam / 1e4)
        per_colour = np.clip(np.ceil((2 * _HALF - slack / lam) / 2), 0, _HALF).astype(np.int8)
        s.movable = (s.gap_c, lam, per_colour)
    return s.movable[2]


def _hidden(palette: np.ndarray) -> np.ndarray | None:
    """Per entry and the sentinel k after them, whether it is fully transparent (alpha 0); None where no
    entry is (RGB, grey, or RGBA without one): what _choose keeps a neighbour's label from crossing."""
    if palette.shape[1] != 4 or not (palette[:, 3] == 0).any():
        return None
    return np.append(palette[:, 3] == 0, False)


def _choose(dist: _PixelDist | _TableDist, lam: float, cur: np.ndarray, near: np.ndarray | None,
            nbs: list[np.ndarray], agree: np.ndarray, hidden: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """The lowest-cost label of each pixel (``dist``: its distances to the entries) among its current label
    cur (agreeing with ``agree`` of the Potts weight), its nearest entry (None: cur is) and its 4 axial
    neighbours' labels (the first 4 of nbs; the sentinel k never); returns that label and the current
    label's distance (int32). hidden (_hidden): a neighbour's label is taken only on the same side of
    alpha 0 as cur: a few units of J bought an icon's transparent background labels of alpha 1-19 along
    its shadow (visible in a browser), or made an edge pixel vanish; the nearest entry is always a candidate.
    Costs are float32 (distances below 2^24 are exact, and so is each channel's
    square: the same costs as from the int32 distances; a tie within rounding goes to the earlier candidate,
    cur first). The chosen labels' distances are not returned: only the few moves' are read (12 MP china +
    noise, K = 16: 0.9 M pixels chosen for, 5 int32 selects each where the moves' distances are one gather)."""
    lam = np.float32(lam)
    best = dist(cur)
    dcur = best.astype(np.int32)
    best -= lam * agree
    best_c = cur.copy()
    side = None if hidden is None else hidden[cur]
    for i, c in enumerate(([] if near is None else [near]) + nbs[:4]):
        cost = dist(c)
        cost -= lam * _agreement(nbs, c)
        if side is not None and (near is None or i > 0):
            cost[hidden[c] != side] = np.inf
        better = cost < best
        np.minimum(best, cost, out=best)  # (where not better the two are equal or best is less)
        _put(best_c, c, better)
    return best_c, dcur


def _put(dst: np.ndarray, src: np.ndarray | int, mask: np.ndarray) -> None:
    """dst[mask] = src[mask] (or the integer src) in place, for unsigned integer dst: dst ^= (dst ^ src) x mask.
    np.copyto(where=) and boolean indexing cost 10-20x as much (a sweep's 200 000 uint8 labels: 0.38 ms and
    0.71 against 0.02)."""
    diff = np.bitwise_xor(dst, src if isinstance(src, np.ndarray) else dst.dtype.type(src))
    diff *= mask
    dst ^= diff


class _PixelDist:
    """The squared distances (float32, exact) of pixels ``px`` (m, C) to entries of ``palette`` given per
    pixel, from the palette's columns and the pixels' channels as float32. The columns have a spare entry for
    the sentinel k, so neighbours' labels index them as they are: an infinite colour, whose distance and cost
    are inf, never below best, where a mask set each inf (2 passes a candidate)."""

    def __init__(self, palette: np.ndarray, px: np.ndarray) -> None:
        self.palette, self.px = palette, px
        self.columns = np.full((px.shape[1], len(palette) + 1), np.inf, np.float32)
        self.columns[:, :-1] = palette.T
        self.levels = [px[:, ch].astype(np.float32) for ch in range(px.shape[1])]

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        columns, levels = self.columns, self.levels
        at = labels.astype(np.intp)  # (take casts its indices to intp: once for every channel)
        d = np.take(columns[0], at)
        d -= levels[0]
        np.square(d, out=d)
        for ch in range(1, len(levels)):
            e = np.take(columns[ch], at)
            e -= levels[ch]
            np.square(e, out=e)
            d += e
        return d

    def moved_sum(self, moves: np.ndarray, to: np.ndarray) -> int:
        """The summed distances of the pixels ``moves`` (positions in px) to their entries ``to``."""
        return int(_dist(np.take(self.px, moves, axis=0), self.palette, to).sum(dtype=np.int64))


class _TableDist:
    """_PixelDist's distances, read from _Colours.table (each distinct colour's distance to each entry) at
    the pixels' colours ``which``: one gather a candidate where _PixelDist makes 4 (grey) to 12 (RGB) array
    passes, and no pixels gathered. The same float32 values: exact integers either way."""

    def __init__(self, table: np.ndarray, which: np.ndarray, width: int) -> None:
        self.table = table
        self.rows = np.multiply(which, width, dtype=np.intp)

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        return self.table.take(np.add(self.rows, labels, dtype=np.intp))

    def moved_sum(self, moves: np.ndarray, to: np.ndarray) -> int:
        # (float64 sums of integers below 2^53: exact)
        return int(self.table.take(np.add(self.rows[moves], to, dtype=np.intp)).sum(dtype=np.float64))


def _agreement(nbs: list[np.ndarray], c: np.ndarray) -> np.ndarray:
    """The Potts weight of the neighbours ``nbs`` holding label c, int8: the axial ones (first 4) count
    2, the diagonal ones 1, as _WEIGHTS says (summed, then doubled once: a third fewer array passes)."""
    agree = np.equal(nbs[0], c).view(np.int8)
    for nb in nbs[1:4]:
        agree += np.equal(nb, c).view(np.int8)
    agree += agree
    for nb in nbs[4:]:
        agree += np.equal(nb, c).view(np.int8)
    return agree


def _refine(s: _State, sample: bool = False) -> None:
    """Every used palette entry becomes the rounded mean of its pixels (J cannot rise: the rounded mean is
    the integer colour nearest the mean, and the old entry is an integer colour too), but for RGBA's alpha
    rules (entries at alpha 0 and 255 stay there; 253-254 become 255 where the image has opaque pixels, which
    can raise J a little); then the nearest entries and the distortion are brought up to date.

    On a sample of the image (``sample``), an entry moves instead by as much as the moves shifted the mean
    of its pixels (from the nearest labelling's to the labels'): the palette was fitted to the whole image,
    whose entries are the means of their nearest pixels, and the sample's own means would fit it to the
    sample (12 MP noisy at --rdo 2: J 2.7 % below the nearest labelling's, where the whole image's
    refinement gives back 0.03 %; lambda came out 1.4x too high), while strong rdo does move the means.

    The means start from the nearest labelling, summed over distinct colours, and correct for the pixels
    that moved: a small share of the image, so nothing here costs a pass over every pixel."""
    _settle(s)
    colours = s.colours
    k, channels = s.palette.shape
    counts = s.counts.astype(np.float64)
    palette = s.palette.copy()
    used = counts > 0
    near_sums, had = colours.nearest_sums(s.near_c, k, sample)
    if sample:
        had = had[used]  # pixels nearest each entry
    # What the moves took from their nearest entries' sums and gave to their labels', a chunk of s.moved at a
    # time (integers in float64: exact, so the same sums in any order; whole, at 12 MP and --rdo 28, 5 M moved
    # pixels held 350 MB of gathers and casts at once).
    shift = np.zeros((channels, k))
    for part in _chunks(s.moved):
        off, to, which = _off_nearest(s, part)
        px = _pixels_at(s, part[off])
        # (bincount casts its labels to intp and its weights to float64 on every call: here once each)
        to_i, away_i = to.astype(np.intp), s.near_c[which].astype(np.intp)
        for ch in range(channels):
            level = px[:, ch].astype(np.float64)
            shift[ch] += np.bincount(to_i, weights=level, minlength=k) - np.bincount(away_i, weights=level,
                                                                                     minlength=k)
    for ch in range(channels):
        if sample:
            nearest = near_sums[ch][used] / np.maximum(had, 1)
        sums = near_sums[ch] + shift[ch]
        mean = sums[used] / counts[used]
        if sample:
            mean = np.where(had > 0, palette[used, ch] + mean - nearest, mean)
        palette[used, ch] = np.clip(np.rint(mean), 0, 255).astype(np.uint8)
    if channels == 4:
        # Entries stored exactly opaque or exactly transparent (api._rounded) stay so: their pixels' mean gave
        # 254 or alpha 1-3 again, and an icon's background under --rdo or a target decoded faintly visible;
        # and, as there, a refined entry of alpha 253-254 is made opaque where the image has opaque pixels.
        exact = np.isin(s.palette[:, 3], (0, 255))
        palette[exact, 3] = s.palette[exact, 3]
        if s.colours.colors[:, 3].max() == 255:
            palette[:, 3] = np.where(palette[:, 3] >= kmeans.OPAQUE_FROM, 255, palette[:, 3])
    _repalette(s, palette, s.moved)


def _repalette(s: _State, palette: np.ndarray, moved: np.ndarray) -> None:
    """Give s the palette ``palette`` for the same labels, ``moved`` (flat, sorted) holding every pixel not at
    its colour's nearest entry (s.near_c; others too, which are skipped): bring the nearest entries, the
    distortion and s.moved up to date. Pixels that did not move sit at their colour's old nearest entry: one
    distance per colour. The moved pixels are read a chunk at a time (_chunks)."""
    colours = s.colours
    per_colour = _dist(colours.colors, palette, s.near_c)
    near_c, dnear_c, gap_c = _renearest(s, palette, per_colour)
    total = int(per_colour.astype(np.int64) @ colours.counts.astype(np.int64, copy=False))
    keep = np.zeros(len(moved), bool)
    for at in _chunk_slices(len(moved)):
        part = moved[at]
        off, to, which = _off_nearest(s, part)
        total += int(_dist(_pixels_at(s, part[off]), palette, to).sum(dtype=np.int64)
                     - per_colour[which].sum(dtype=np.int64))
        off[off] = to != near_c[which]
        keep[at] = off
    s.total = total
    shifted = near_c != s.near_c
    # Pixels of colours whose nearest entry changed may now sit away from it, moved or not.
    s.pending = shifted if shifted.any() else None
    s.palette, s.near_c, s.dnear_c, s.gap_c = palette, near_c, dnear_c, gap_c
    s.moved = moved[keep]


_CHUNK = 1 << 18  # pixels at a time in the passes over moved or visited pixels (_chunks): 12 MP, --rdo 28 moves 5 M


def _chunk_slices(n: int) -> list[slice]:
    """Slices of _CHUNK of range(n), in order."""
    return [slice(start, min(start + _CHUNK, n)) for start in range(0, n, _CHUNK)]


def _chunks(idx: np.ndarray) -> list[np.ndarray]:
    """idx in consecutive views of up to _CHUNK."""
    return [idx[at] for at in _chunk_slices(len(idx))]


def _positions(mask: np.ndarray, bit: int | None = None) -> np.ndarray:
    """np.flatnonzero(mask) (of mask & bit, with a bit of _run's flags), as int32 where every padded position
    fits (_padded_at), filled a _CHUNK of mask at a time: what a state keeps as s.moved (12 MP at --rdo 28: 5 M
    pixels, 20 MB where intp held 40)."""
    n = mask.size
    flat = mask.reshape(-1)
    big = 3 * n + 6 >= 1 << 31  # (the padded labels' size is at most that, whatever the shape)
    out = np.empty(np.count_nonzero(flat) if bit is None else _flagged(flat, bit), np.intp if big else np.int32)
    end = 0
    for at in _chunk_slices(n):
        idx = np.flatnonzero(flat[at] if bit is None else np.bitwise_and(flat[at], bit))
        idx += at.start
        out[end:end + len(idx)] = idx
        end += len(idx)
    return out


def _off_nearest(s: _State, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which of the pixels idx (flat) are not at their colour's nearest entry (a mask), and their labels and
    colours."""
    which, cur = s.colours.at(idx), s.current(idx)
    off = cur != s.near_c[which]
    return off, cur[off], which[off]


def _renearest(s: _State, palette: np.ndarray, per_colour: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """_renearest_of, kept for the last state's nearest entries and palettes asked about (on s.colours): a
    target's runs at one K start from the same nearest labelling and their refinements often end at the
    same palette (3000x2250 flower in 150 kB: 3 runs at K = 120 refined to one palette, 0.07 s each). Nearest
    entries are replaced, never written to, so the same arrays serve each state."""
    key = (s.near_c, s.dnear_c, s.gap_c, s.palette.tobytes(), palette.shape, palette.tobytes())
    done = s.colours._renearest  # (read once: a bulk run's threads may share a state's colours)
    if done is not None and all(a is b for a, b in zip(done[0][:3], key[:3])) and done[0][3:] == key[3:]:
        return done[1]
    result = _renearest_of(s, palette, per_colour)
    s.colours._renearest = (key, result)
    return result


def _renearest_of(s: _State, palette: np.ndarray, per_colour: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """_Colours.nearest of ``palette``, which replaces s.palette (the entries s.near_c and s.gap_c are of);
    per_colour: each colour's distance to its old nearest entry in ``palette``. Where s.gap_c is known, a
    colour stays with its entry when that stays nearer than its old second nearest entry's distance less the
    farthest any entry moved, so only the others are searched (12 MP china + noise at --rdo 2, 1.5 M colours,
    entries moved by up to 1.4: 6 % searched, 0.044 s -> 0.015); without them (K > _GAPS_MAX_K, up to
    _separated_max), when it stays nearer than half its separation from the other entries. The gaps are then
    not kept (None): none is read after a refinement (a sweep without them would visit every pixel at a
    boundary, the same moves)."""
    colours = s.colours
    k = len(palette)
    if k != len(s.palette) or (s.gap_c is None and not _GAPS_MAX_K < k <= _separated_max(len(colours.colors))):
        # (a refinement moves entries by a few levels: the old nearest entries guide the search, 1 MP noisy
        # photo at K = 256: 0.1 of 0.3 s per rdo run)
        return colours.nearest(palette, s.near_c)
    if s.gap_c is None:
        # Without gaps (K > _GAPS_MAX_K), a colour x stays with its entry e' (as moved) where |x - e'| is below
        # half the least separation of e' from another entry f': |x - f'| >= |e' - f'| - |x - e'| > |x - e'|
        # (strictly: no tie). Only the others are searched (the noisy trial 1200x800 at K = 256: 58 % of 640 000
        # colours, 0.045 s -> 0.036; the RGBA vignette 600x400 at K = 740 and 1036: 53 % and 57 % of 109 000,
        # 0.070 -> 0.043 and 0.073 -> 0.053).
        reach = np.sqrt(_separation(palette))
        unsure = np.flatnonzero(2 * np.sqrt(per_colour) + 1e-6 >= reach[s.near_c])
    else:
        shift = math.sqrt(int(np.square(palette.astype(np.int32) - s.palette.astype(np.int32)).sum(axis=1).max()))
        second = s.dnear_c.astype(np.float64)
        second += s.gap_c
        # (sqrt's rounding, ~1e-13 here, is far inside the margin; a tie, gap 0, is always searched again)
        unsure = np.flatnonzero(np.sqrt(per_colour) + (shift + 1e-6) >= np.sqrt(second, out=second))
    near_c, dnear_c = s.near_c.copy(), per_colour.copy()
    if len(unsure):
        colors = colours.colors[unsure]
        near_c[unsure], dnear_c[unsure] = (_nearest_of(colors, palette, s.near_c[unsure]) if s.gap_c is None
                                           else _gaps(colors, palette)[:2])
    return near_c, dnear_c, None


# _renearest's bound costs K^2 distances (_separation: 0.005 s at K = 740, 0.02 at 1481) and spares a share of
# the colours' search: used up to K^2 = _SEPARATED_PER_COLOUR x the colours (the RGBA vignette's 109 000 at
# K = 1481: 0.080 s against 0.078), and K = _SEPARATED_MAX_K.
_SEPARATED_PER_COLOUR = 16
_SEPARATED_MAX_K = 2048
_SEPARATION_ROWS = 256  # entries at a time (_separation)


def _separated_max(colours: int) -> int:
    """The largest K whose refinements _renearest bounds by separations, for this many distinct colours."""
    return min(_SEPARATED_MAX_K, math.isqrt(_SEPARATED_PER_COLOUR * colours))


def _separation(palette: np.ndarray) -> np.ndarray:
    """Each entry's squared distance to the nearest other entry, float64 (inf for a single entry)."""
    k = len(palette)
    columns = [palette[:, ch].astype(np.int32) for ch in range(palette.shape[1])]
    least = np.empty(k, np.float64)
    for start in range(0, k, _SEPARATION_ROWS):
        rows = slice(start, min(start + _SEPARATION_ROWS, k))
        d = np.square(columns[0][rows, None] - columns[0][None, :])
        for col in columns[1:]:
            d += np.square(col[rows, None] - col[None, :])
        d[np.arange(d.shape[0]), np.arange(rows.start, rows.stop)] = np.iinfo(np.int32).max  # (not itself)
        least[rows] = d.min(axis=1)
    least[least == np.iinfo(np.int32).max] = np.inf
    return least


def _run(s: _State, lam: float, sweeps: int, sample: bool = False, rounds: int = _ROUNDS) -> None:
    """Rounds of sweeps at lam, each followed by a palette refinement; sample: s is a sample's (_refine). The
    sweeps run on the labels' polyphase parts, s.padded let go meanwhile (_Phases), and keep their masks as
    the bits of one byte a pixel (_AWAY, _TODO, _BEFORE): 48 MP at K = 256 held 96 MB of padded labels and
    144 of masks more (--rdo 28: 748 MB at the peak)."""
    for _ in range(rounds):
        _settle(s)
        phases = _Phases(s.padded)
        s.padded = None  # (made again from the phases after the sweeps)
        moved_any = len(s.moved) > 0
        flags = _away(s).view(np.uint8)  # (True is 1: _AWAY)
        # (a pixel can only gain from a move if a neighbour moved: _sweep_on)
        stamp = np.zeros((s.height + 2, s.width + 2), np.int8) if sweeps > 1 else None
        for sweep in range(sweeps):
            step = 4 * sweep
            changed = _sweep_on(s, phases, lam, flags, sweep > 0, stamp, step, sweep > 1, moved_any)
            if changed == 0 or sweep == sweeps - 1:
                break
            moved_any = True
            _next_todo(flags, stamp, step, s.width)
        s.moved = _positions(flags, _AWAY)  # (sorted, as the mask is)
        # (the sweeps' masks let go before the labels are made again and the refinement's passes)
        del stamp, flags
        s.padded = phases.padded()
        del phases
        _refine(s, sample)


def _next_todo(flags: np.ndarray, stamp: np.ndarray, step: int, width: int) -> None:
    """After the sweep at step: each pixel's _BEFORE becomes its _TODO, and _TODO whether it was stamped in that
    sweep, a band of rows at a time (no mask the size of the image)."""
    rows = flags.reshape(-1, width)
    inner = stamp[1:-1, 1:-1]
    band = max(1, _CHUNK // max(1, width))
    for r0 in range(0, len(rows), band):
        f = rows[r0:r0 + band]
        was = np.bitwise_and(f, _TODO)
        was <<= 1  # (_TODO -> _BEFORE)
        f &= _AWAY
        f |= was
        new = np.greater(inner[r0:r0 + band], step).view(np.uint8)
        new <<= 1  # (-> _TODO)
        f |= new


def _off_positions(s: _State) -> np.ndarray:
    """The pixels (flat, ascending) whose labels are not their colour's nearest entry s.near_c, a _CHUNK of the
    image at a time (without the nearest labelling's own labels: _image_run's take)."""
    found = [np.zeros(0, np.intp)]
    for at in _chunk_slices(s.height * s.width):
        idx = np.arange(at.start, at.stop)
        found.append(idx[s.current(idx) != s.near(idx)])
    return np.concatenate(found)


def _away(s: _State) -> np.ndarray:
    """s.moved as a (H*W,) mask."""
    away = np.zeros(s.height * s.width, bool)
    away[s.moved] = True
    return away


def _sample(pixels: np.ndarray) -> np.ndarray:
    """The image itself when small, else a mosaic of tiles spread evenly over it (about _SAMPLE pixels)."""
    height, width = pixels.shape[:2]
    if height * width <= 2 * _SAMPLE or height < _TILE or width < _TILE:
        return pixels
    n = max(1, _SAMPLE // (_TILE * _TILE))
    side = math.isqrt(n)
    rows = np.linspace(0, height - _TILE, side).astype(int)
    cols = np.linspace(0, width - _TILE, side).astype(int)
    return np.concatenate([np.concatenate([pixels[r:r + _TILE, c:c + _TILE] for c in cols], axis=1)
                           for r in rows], axis=0)


@dataclass
class _Trial:
    """The calibration's outcome: lambda, the sample, its nearest labelling and its labelling at lambda."""
    lam: float
    sample: np.ndarray
    plain: _State
    kept: _State | None


@dataclass
class Prepared:
    """What every rdo run with one palette on one image starts from (prepare): a target's search makes
    several runs at the same K, and the nearest labelling is 15-25 % of a run on photos (the nearest entry
    of every distinct colour). States here are never run on: each run works on a _copy."""
    palette: np.ndarray
    colours: _Colours
    plain: _State  # the image's nearest labelling
    whole: bool  # whether the image is its own sample
    sample: np.ndarray
    base: _State  # the sample's nearest labelling (plain itself when whole)
    bounds: tuple[int, int] | None = None  # ctx payload bounds of base's labels, once _worse needs them
    # _ctx_bounds of the sample's labellings judged (by digest): runs at two strengths can end at the same
    judged: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    # warm: each run's calibration starts from the earlier runs' trials (a target's search: its runs at one K
    # land 2-5x fewer trials apart), kept here per sweep count as (lambda, the sample's state as run)
    warm: bool = False
    trials: dict[int, list[tuple[float, _State]]] = field(default_factory=dict)
    # warm, where the image is its own sample: the ctx payload bounds of the labellings optimise returned, by
    # returned_key (they are the file's: _in_file_order)
    returned: dict[bytes, tuple[int, int]] = field(default_factory=dict)
    # warm, larger than its sample: the image's runs from plain at (lambda, sweeps), the latest _RUNS_KEPT (a
    # target's search lands at one K's lambda again with another strength: the grey trial 1200x800 made 4 runs
    # at one lambda, 0.08 s each; only the back-off to each budget differs)
    runs: dict[tuple[float, int], _State] = field(default_factory=dict)
    # the calibration sample_share made for a call of optimise still to come, by (ratio, sweeps): that call
    # takes it instead of calibrating again (the same trials, so the same result)
    pending: dict[tuple[float, int], _Trial] = field(default_factory=dict)
    # whether a run's result is judged by ctx's bytes against the nearest labelling's (_worse): not in a warm
    # search that codes its files with lzma, which sizes each file itself (ctx's bytes say nothing of lzma's)
    judge: bool = True


def prepare(pixels: np.ndarray, distinct: kmeans.Distinct, palette: np.ndarray, warm: bool = False,
            guess: np.ndarray | None = None, judge: bool = True) -> Prepared:
    """The state optimise starts from for (H, W, C) pixels (whose distinct colours are ``distinct``) and
    ``palette``, to pass to each of its calls with those three (the same result as without it, unless warm:
    then each call's lambda is calibrated from the trials of the calls before it, in a trial or two where a
    cold start takes four to six, and the result depends on those calls; where the image is its own sample,
    its entries come in a file's order, by share, as its sizing judged them: _in_file_order). guess: an entry
    near each distinct colour (the fit's per-colour labels), which finds the nearest ones sooner (the same
    ones). judge=False (warm only): results not judged by ctx's bytes (Prepared.judge)."""
    colours = _Colours(distinct)
    plain = _start(pixels, colours, palette, guess)
    sample = _sample(pixels)
    judge = judge or not warm
    if sample is pixels:
        return Prepared(palette, colours, plain, True, sample, plain, warm=warm, judge=judge)
    sampled = _Colours(kmeans.distinct(sample.reshape(-1, sample.shape[2])))
    return Prepared(palette, colours, plain, False, sample, _start(sample, sampled, palette), warm=warm,
                    judge=judge)


# Candidate palettes (choose) whose J is over this share above the first's are not judged: rdo buys about
# _BYTES_PER_J times the share of J it spends in bytes (the samples: 3.6-6), so 1 % less budget costs ~5 %.
_CHOICE_J = 0.01
_BYTES_PER_J = 5.0


def choose(pixels: np.ndarray, distinct: kmeans.Distinct, candidates: list[tuple[np.ndarray, float]],
           share: float = math.inf) -> tuple[int, list[tuple[int, int] | None]]:
    """Which of the candidates (palette, its J over the first's - 1 as the fit saw it; the first: the plain
    file's, whose J sets the budget) rdo should start from: the one whose nearest labelling of the sample
    costs the fewest ctx bytes (the middle of ctx.payload_bounds), each weighed by the J it leaves rdo to
    spend: x (1 + _BYTES_PER_J x its J's excess). Where the image is its own sample its exact J counts;
    else the fit's (a sample's J strays: a 12 MP mosaic's was 0.998x the first's where the image's is
    1.013x). share: the J rdo may add, over the first's (--rdo 0.2: 0.002); a candidate whose excess spends
    all of it is not judged (it would leave rdo nothing). Ties keep the earlier. Returns the index and, per
    candidate, those bounds (None for one not judged), which are Prepared.bounds of an rdo run from it (the
    same labelling: spares computing them)."""
    sample = _sample(pixels)
    height, width, channels = sample.shape
    whole = sample is pixels
    sampled = distinct if whole else kmeans.distinct(sample.reshape(-1, channels))
    index = sampled.index()
    counts = sampled.counts.astype(np.int64)
    best, best_cost, first, bounds = 0, math.inf, 0, []
    for i, (palette, excess) in enumerate(candidates):
        near, sq = kmeans.nearest(sampled.colors, palette)
        if whole:
            total = int(sq.astype(np.int64) @ counts)
            first = first or total
            excess = (total - first) / max(first, 1)
        if excess > _CHOICE_J or excess >= share:
            bounds.append(None)
            continue
        compact, labels = _compact(palette, near[index])
        low, high = ctx.payload_bounds(labels.reshape(height, width), compact)
        bounds.append((low, high))
        cost = (low + high) / 2 * (1 + _BYTES_PER_J * excess)
        if cost < best_cost:
            best, best_cost = i, cost
    return best, bounds


def fewer_bytes(a: Prepared, out_a: tuple, b: Prepared, out_b: tuple, margin: int) -> bool:
    """Whether optimise's result out_a (run with a) costs fewer ctx file bytes than out_b (with b), both of
    an image that is its own sample and out_a not a's nearest labelling: payload and palette (the digits
    of J aside); margin: the bytes recording rdo, which b's file spares when out_b is b's nearest
    labelling. From the bounds each run judged, encoded only when they overlap."""
    n = out_a[1].size
    ca = list(a.judged.values())[-1]
    nearest = out_b[2] == b.plain.total / n
    cb = b.bounds if nearest or not b.judged else list(b.judged.values())[-1]
    extra = (margin if nearest else 0) + out_a[0].size - out_b[0].size
    if ca[1] + extra < cb[0]:
        return True
    if ca[0] + extra > cb[1]:
        return False
    h, w = a.plain.height, a.plain.width
    return (len(ctx.encode(out_a[1].reshape(h, w), out_a[0])) + extra
            < len(ctx.encode(out_b[1].reshape(h, w), out_b[0])))


def _copy(s: _State) -> _State:
    """A state to run on from one just started: a run writes only the labels and the counts in place (the
    rest it replaces), so a copy of those two spares a nearest-entry search (5-15 % of an rdo call). The
    palette is copied too: it may reach the caller, whose writes must not change a kept run."""
    return replace(s, padded=s.padded.copy(), counts=s.counts.copy(), palette=s.palette.copy())


def _calibrate(prepared: Prepared, ratio: float, sweeps: int) -> _Trial:
    """The lambda of the run on a sample of the image that lands J at the factor ``ratio``, with that run's
    state (None if none does): the run that added the least J over that bound, backed off to it (_back_off),
    when it added at most _OVER times the J allowed; else the largest lambda tried that stays within it.
    Backing off a run over the budget keeps the moves worth most, which a run aimed under it leaves out as
    well as the least worth (the sample photos at K = 16 and 64: 0.8650x plain bytes against 0.8667x; a grey
    photo 1200x800 at K = 64, where J jumps with lambda, 0.962x against 0.978x). Only for weak rdo (up to
    _MANY_AT %): a strong one moves many neighbouring pixels together, which the back-off judges one by one
    (a target's 1200x900 shapes at K = 46 and 61.5 %: 58,039 bytes against 55,257; camera at K = 21 and
    368 %: 20,712 against 19,867). The J a run adds grows
    about as a power of lambda, so each trial is aimed by the line through the last two in log-log (a
    secant: 4 trials land closer to the budget than 6 of bisection did). Where that line would aim at or
    below the bracket's bottom, the trial halves the bracket in log lambda instead; and while the best run
    under the budget adds less than _SHORT of the J allowed, up to _EXTRA more trials do the same (a noisy
    grey 1200x800 at K = 16 ended at 1.0000x the J, 0.993x the bytes, with three of its four trials over the
    budget; now 1.020x, 0.929x)."""
    sample, base = prepared.sample, prepared.base
    j0 = float(base.total)
    lo, hi, kept, over = 0.0, None, None, None
    target = j0 * ratio
    if target <= j0:  # a lossless sample, or --rdo 1e-15: 1 + 1e-17 is 1.0 in floating point
        return _Trial(lo, sample, base, kept)
    known = prepared.trials.setdefault(sweeps, []) if prepared.warm else None
    if known:
        return _warm(prepared, ratio, sweeps, known)
    lam = j0 / len(base.pixels) * (ratio - 1) * 4 + 1.0
    last: tuple[float, float] | None = None  # (log lambda, log of the J it added) of the previous trial
    for trial in range(_TRIALS + _EXTRA):
        if trial >= _TRIALS:
            if hi is None or (kept is not None and kept.total - j0 >= _SHORT * (target - j0)):
                break
            lam = math.sqrt(lo * hi) if lo > 0 else hi / 4
        s = _copy(base)
        _run(s, lam, sweeps, sample=not prepared.whole)
        if known is not None:
            _remember(known, lam, s)
        j = float(s.total)
        if j > target:
            hi = lam
            if over is None or j < over[1].total:
                over = (lam, s)
        elif lam > lo:
            lo, kept = lam, s
        # The added J grows about as a power of lambda: aim the line through the last two trials at just
        # under the target (a trial over it is wasted), kept strictly inside the bracket found so far.
        point = (math.log(lam), math.log(max(j - j0, 1e-9 * j0)))
        aim = math.log((target - j0) * _AIM)
        if last is not None and point[1] != last[1] and j > j0:
            step = (aim - point[1]) * (point[0] - last[0]) / (point[1] - last[1])
            nxt = lam * math.exp(max(-3.0, min(3.0, step)))
        else:
            nxt = lam * 4 if hi is None else lam / 4
        if hi is not None and lo > 0:
            if hi <= lo * _INSIDE**2 or nxt <= lo * _INSIDE:
                nxt = math.sqrt(lo * hi)
            else:
                nxt = min(nxt, hi / _INSIDE)
        elif hi is not None:
            nxt = min(nxt, hi / 2)
        last, lam = point, nxt
    return _outcome(prepared, ratio, lo, kept, over)


def _outcome(prepared: Prepared, ratio: float, lo: float, kept: _State | None,
             over: tuple[float, _State] | None) -> _Trial:
    """_calibrate's choice between the least run over the budget (backed off to it) and the run kept under
    it. States a warm Prepared keeps are copied first: optimise and the back-off write to what they get."""
    sample, base = prepared.sample, prepared.base
    j0 = float(base.total)
    target = j0 * ratio
    if over is not None and over[1].total - j0 <= _OVER * (target - j0) and ratio <= 1 + _MANY_AT / 100:
        backed = _copy(over[1]) if prepared.warm else over[1]
        _back_off(backed, math.floor(target))
        # (pixels moved to an entry the refinement made their nearest cannot go back: it may stay over)
        if backed.total <= math.floor(target):
            return _Trial(over[0], sample, base, backed)
    if kept is not None and prepared.warm:
        kept = _copy(kept)
    return _Trial(lo, sample, base, kept)


# A warm calibration makes at most _TRIALS trials (those a cold one makes, without its extra ones), and stops
# at a run under the budget that adds this share of the J allowed (a cold one lands at 0.87-0.99)
_NEAR = 0.95
_FLAT = 0.05  # nor past every run when the J added grows with lambda slower than this power
_NEAR_OVER = 1.1  # or (where the back-off applies) over it that adds at most this multiple of it
_REMEMBERED = 6  # states a warm Prepared keeps per sweep count (the latest): at 12 MP each 0.5-2 MB of the sample


def _remember(known: list[tuple[float, _State]], lam: float, s: _State) -> None:
    known.append((lam, s))
    del known[:-_REMEMBERED]


def _warm(prepared: Prepared, ratio: float, sweeps: int, known: list[tuple[float, _State]]) -> _Trial:
    """_calibrate from the trials of earlier calls at the same sweep count: the run kept and the least run
    over the budget are chosen among all trials, old and new, and each new trial is aimed (log-log, as a cold
    calibration's) between the nearest known runs either side of the budget, or beyond the nearest two on
    its one side; it stops at a run close enough (_NEAR, _NEAR_OVER)."""
    base = prepared.base
    j0 = float(base.total)
    target = j0 * ratio
    allowed = target - j0
    backs = ratio <= 1 + _MANY_AT / 100
    aim = math.log(allowed * _AIM)
    for _ in range(_TRIALS):
        under = sorted(((lam, s) for lam, s in known if s.total <= target), key=lambda p: p[0])
        over = sorted(((lam, s) for lam, s in known if s.total > target), key=lambda p: p[0])
        kept = max(under, key=lambda p: p[1].total) if under else None  # (J is not quite monotone in lambda)
        least = min(over, key=lambda p: p[1].total) if over else None
        if kept is not None and kept[1].total - j0 >= _NEAR * allowed:
            break
        if backs and least is not None and least[1].total - j0 <= _NEAR_OVER * allowed:
            break
        lo = kept[0] if kept else 0.0
        hi = over[0][0] if over else None
        if hi is not None and hi <= lo:
            break  # J fell as lambda rose: no bracket to aim into
        if hi is not None and lo > 0:
            pair = [kept, over[0]]
        elif hi is None:
            pair = sorted(under, key=lambda p: p[1].total)[-2:]
            pair.sort(key=lambda p: p[0])
        else:
            pair = over[:2]
        pts = [(math.log(lam), math.log(max(s.total - j0, 1e-9 * j0))) for lam, s in pair]
        if len(pts) == 2 and pts[0][1] != pts[1][1] and pts[0][0] != pts[1][0]:
            (x0, y0), (x1, y1) = pts
            if hi is None and (y1 - y0) / (x1 - x0) < _FLAT:
                break  # topped out: a larger lambda merges regions without adding J (grey photo, K = 18: 1e5 to 1e9)
            step = (aim - y1) * (x1 - x0) / (y1 - y0)
            lam = pair[1][0] * math.exp(max(-3.0, min(3.0, step)))
        else:
            lam = pair[-1][0] * 4 if hi is None else pair[0][0] / 4
        if hi is not None and lo > 0:
            lam = math.sqrt(lo * hi) if hi <= lo * _INSIDE**2 else min(max(lam, lo * _INSIDE), hi / _INSIDE)
        elif hi is not None:
            lam = min(lam, hi / 2)
        s = _copy(base)
        _run(s, lam, sweeps, sample=not prepared.whole)
        _remember(known, lam, s)
    under = [(lam, s) for lam, s in known if s.total <= target]
    over_ = [(lam, s) for lam, s in known if s.total > target]
    kept = max(under, key=lambda p: p[1].total) if under else None
    least = min(over_, key=lambda p: p[1].total) if over_ else None
    return _outcome(prepared, ratio, kept[0] if kept else 0.0, kept[1] if kept else None, least)


def _ctx_bytes(s: _State, palette: np.ndarray, labels: np.ndarray) -> int:
    """The ctx payload bytes of ``labels`` (s's pixels, any shape) into ``palette``."""
    palette, labels = _compact(palette, labels.reshape(-1))
    return len(ctx.encode(labels.reshape(s.height, s.width), palette))


def _ctx_bounds(s: _State, palette: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """Guaranteed bounds on _ctx_bytes at 0.65 to 0.85 of its cost (ctx.payload_bounds)."""
    palette, labels = _compact(palette, labels.reshape(-1))
    return ctx.payload_bounds(labels.reshape(s.height, s.width), palette)


# the bounds for the last nearest labelling judged (a target tries several rdo)
_PLAIN: dict[bytes, tuple[int, int]] = {}


def _worse(trial: _Trial, judged: _State | _Labelling, palette: np.ndarray, prepared: Prepared,
           margin: int = 0) -> bool:
    """Whether the labelling ``judged`` of the sample costs more ctx bytes than its nearest labelling (or as
    many at no lower J), margin bytes added to its own; from bounds first, and encoded only when the bounds
    overlap."""
    plain = trial.plain
    a, b = _judge(trial, judged, palette, prepared)
    if a[1] + margin < b[0]:
        return False
    if a[0] + margin > b[1]:
        return True
    return (_ctx_bytes(judged, judged.palette, judged.labels) + margin, judged.total) >= (
        _ctx_bytes(plain, palette, plain.labels), plain.total)


def _judge(trial: _Trial, judged: _State | _Labelling, palette: np.ndarray, prepared: Prepared
           ) -> tuple[tuple[int, int], tuple[int, int]]:
    """ctx payload bounds of the sample's labelling ``judged`` and of its nearest labelling (into ``palette``),
    each sized once per Prepared (Prepared.judged, Prepared.bounds)."""
    if prepared.bounds is None:
        prepared.bounds = _plain_bounds(trial, palette)
    at = digest(judged.palette, judged.labels)
    if at not in prepared.judged:
        prepared.judged[at] = _ctx_bounds(judged, judged.palette, judged.labels)
    return prepared.judged[at], prepared.bounds


def digest(palette: np.ndarray, labels: np.ndarray) -> bytes:
    """A digest of a palette and labels: what a payload codes."""
    h = hashlib.blake2b(bytes(str(palette.shape), "ascii"))
    # (the arrays' buffers are read in place: the same bytes, without the copy tobytes makes)
    h.update(np.ascontiguousarray(palette))
    h.update(np.ascontiguousarray(labels))
    return h.digest()


def _plain_bounds(trial: _Trial, palette: np.ndarray) -> tuple[int, int]:
    """_ctx_bounds of the sample's nearest labelling, kept for the last sample and palette asked about (calls
    of optimise without a shared Prepared, e.g. one bulk run's files at several --rdo)."""
    plain = trial.plain
    key = hashlib.blake2b(trial.sample.tobytes() + palette.tobytes() + bytes(str(trial.sample.shape), "ascii")
                          ).digest()
    # read once: a bulk run's threads may replace the entry meanwhile
    b = _PLAIN.get(key)
    if b is None:
        b = _ctx_bounds(plain, palette, plain.labels)
        _PLAIN.clear()
        _PLAIN[key] = b
    return b


def _sweeps(pct: float) -> int:
    """The sweeps optimise makes at pct (sample_share's calibration must be keyed as optimise's)."""
    return _MANY_SWEEPS if pct > _MANY_AT else _SWEEPS


def optimise(pixels: np.ndarray, distinct: kmeans.Distinct, palette: np.ndarray, pct: float,
             prepared: Prepared | None = None, margin: int = 0, budget: int | None = None, ordered: bool = False
             ) -> tuple[np.ndarray, np.ndarray, float]:
    """Relabel (H, W, C) pixels for fewer label bytes at J <= (1 + pct/100) x the nearest-colour J of
    ``palette`` (whose distinct colours are ``distinct``); returns (palette (k', C) uint8, labels (H, W)
    int32, the exact J). Entries that end up unused or equal to another are dropped (k' <= k).

    The result is never a larger ctx payload than the nearest labelling, nor an equal one at no lower J:
    where it would be, the nearest labelling is returned. An image up to 2 * _SAMPLE pixels is its own
    sample, so there both payloads are compared exactly; a larger one is judged by its sample's (both
    encodings cost a small share of a 12 MP compress), but not with a warm ``prepared``: a target's search
    weighs the whole files it makes itself. The labels may be a view (of the padded labels, and
    of ``prepared``'s: not to be written to). prepared: prepare(pixels, distinct, palette), made once for
    several calls with these three (the same result, without the nearest labellings; a target's search prepares
    warm, which calibrates each call from the calls before it: prepare).
    margin: bytes the file costs besides the payload when rdo moved labels (its "rdo" metadata), which the
    payload must save on top where the image is its own sample (above, the payloads dwarf it).
    budget: the summed distortion allowed in place of (1 + pct/100) x the nearest labelling's (another
    palette's budget: see choose), at least that sum; pct then only sets the sweeps.
    ordered: the result as a file holds it, as kmq.api._by_share orders it (entries by share, ties by colour;
    the labels uint16, flat, contiguous): from the counts kept, where _by_share counts the labels again (12 MP:
    0.011 s against 0.026)."""
    sweeps = _sweeps(pct)
    single = prepared is None  # (the image's run may then take the nearest labelling's labels: _image_run)
    if prepared is None:
        prepared = prepare(pixels, distinct, palette)
    elif prepared.palette is not palette and not np.array_equal(prepared.palette, palette):
        raise ValueError("rdo.optimise: prepared for another palette")
    plain = prepared.plain
    j0 = plain.total
    if budget is None:
        ratio = 1 + pct / 100
        budget = math.floor(j0 * ratio)
    else:
        # the sample's J is aimed at the same share of its own (the calibration aims at 98 % of it)
        ratio = budget / j0 if j0 else 1.0
    trial = prepared.pending.pop((ratio, sweeps), None) or _calibrate(prepared, ratio, sweeps)
    prepared.pending.clear()
    whole = prepared.whole
    # With nothing moved on the sample, the sample's payloads tie and _worse would keep the nearest
    # labelling: spare the whole image's run.
    if trial.kept is None or (not whole and len(trial.kept.moved) == 0):
        return _nearest(plain, ordered)
    # (judged on the sample alone: the image's run would not be read). Not in a target's search (warm): it sizes
    # every file it makes on the whole image and weighs it against the plain files itself, and the judgment
    # is two sizings of the sample (0.03 s a K at 1 MP: the grey trial 1200x800 in 30 kB made them at K = 9,
    # 37, 18 and 26, 0.13 s of its 1.4); in the searches of images larger than their sample it never kept the nearest
    # labelling (bench/target_cases.py: 34 runs in 6 searches; 119 in 24 beyond them, lzma's included).
    if not whole and not prepared.warm and _worse(trial, trial.kept, palette, prepared):
        return _nearest(plain, ordered)
    # The sample's run at the lambda found is the image's own when the image is its sample.
    s = trial.kept if whole else _image_run(prepared, trial.lam, sweeps, single)
    _within(s, plain, palette, budget)
    if not whole and not prepared.warm and plain.height * plain.width <= _TOP_UP_MAX and pct <= _MANY_AT:
        _top_up(s, plain, palette, budget, trial.lam, sweeps)
    if whole and prepared.judge:
        judged = _in_file_order(s) if prepared.warm else s
        if _worse(trial, judged, palette, prepared, margin):
            return _nearest(plain, ordered)
        if isinstance(judged, _Labelling):
            prepared.returned[returned_key(judged.palette, judged.labels)] = prepared.judged[
                digest(judged.palette, judged.labels)]
            labels = judged.labels.astype(np.uint16).reshape(-1) if ordered else judged.labels
            return judged.palette, labels, s.total / labels.size
    palette, labels = _result(s, ordered, spend=s is not plain)
    return palette, labels, s.total / labels.size


def _within(s: _State, plain: _State, palette: np.ndarray, budget: int) -> None:
    """Bring the run s within the budget: back to the first palette where the refined one's own nearest
    labelling is over it, then _back_off."""
    if s.nearest_total() > budget:
        s.ranking = None  # (its moves are not the run's below)
        back = plain  # only its nearest entries (and the palette and gaps they are of) are read: its labels may
        # be the run's (_image_run's take); the pixels away from them are those off their colour's entry in back
        s.palette, s.near_c, s.dnear_c, s.gap_c = back.palette, back.near_c, back.dnear_c, back.gap_c
        _repalette(s, palette, _off_positions(s))
    _back_off(s, budget)


# An image larger than its sample can land well under the budget at the sample's lambda (the sample's
# refinement is not the image's: grace_hopper 600x512 at K = 64 spent 89 % of the J allowed, a 12 MP astronaut
# at K = 16 51 %): where its run spent under _SPENT of the J allowed, a second run from it at lambda x (J allowed
# / J added) spends the rest, and the back-off keeps the moves worth most. Not where that raise would be over
# _RAISE_MAX: there J has topped out (a smooth gradient 700x600 added 0.1 % of the J allowed; x4, a
# second run only reshuffled its ties, 909 bytes against 904, and a 12 MP gradient's cost +25 %). Nor above
# _TOP_UP_MAX pixels: the 12 MP astronaut at K = 16 (51 % spent) gained 0.880x -> 0.853x of the plain bytes, but
# its --rdo 2 compress rose from 1.7-1.8x to 2.1-2.4x a plain one's CPU, over the 2x allowed. Only for weak rdo,
# whose back-off judges moves well (_outcome).
_SPENT = 0.97
_RAISE_MAX = 4.0
_TOP_UP_MAX = 1 << 21


def _top_up(s: _State, plain: _State, palette: np.ndarray, budget: int, lam: float, sweeps: int) -> None:
    """A second run on s (the image's, within the budget) where it left over 1 - _SPENT of the J allowed."""
    allowed = budget - plain.total
    added = s.total - plain.total
    if allowed <= 0 or added >= _SPENT * allowed or added * _RAISE_MAX < allowed:
        return
    s.ranking = None
    _run(s, lam * allowed / added, sweeps)
    _within(s, plain, palette, budget)


def sample_share(prepared: Prepared, pct: float) -> float:
    """What share of its nearest labelling's ctx payload the sample's labelling at pct costs (the middle of
    the bounds): an estimate of optimise's payload share on the whole image, at the cost of its calibration
    alone, which the next optimise(..., pct, prepared) takes over (Prepared.pending: the same result as
    without this call). 1.0 where the sample moved nothing. Only for an image larger than its sample (on one
    that is its own sample the run is the image's)."""
    sweeps = _sweeps(pct)
    ratio = 1 + pct / 100
    trial = _calibrate(prepared, ratio, sweeps)
    prepared.pending[(ratio, sweeps)] = trial
    if trial.kept is None or len(trial.kept.moved) == 0:
        return 1.0
    a, b = _judge(trial, trial.kept, prepared.palette, prepared)
    return sum(a) / max(1, sum(b))


def _image_run(prepared: Prepared, lam: float, sweeps: int, take: bool = False) -> _State:
    """A run on the whole image (larger than its sample) from its nearest labelling at lam, to be written to;
    a warm Prepared keeps the latest runs (the same state each time: a run depends on nothing else). take
    (a Prepared made for one call, not warm): the run writes to the nearest labelling's own labels, which are
    read no more but through its nearest entries (48 MP at K = 256: a 96 MB copy not made)."""
    key = (lam, sweeps)
    done = prepared.runs.get(key)
    if done is None:
        plain = prepared.plain
        if prepared.warm:
            # let go before the run, not after it: the runs it would push out are not alive beside it (the same
            # runs kept once it is in)
            kept = _runs_kept(plain)
            while prepared.runs and len(prepared.runs) >= kept:
                del prepared.runs[next(iter(prepared.runs))]
        done = replace(plain, counts=plain.counts.copy(), palette=plain.palette.copy()) if take else _copy(plain)
        if take:  # (the run lets go of its labels during its sweeps: none else may hold them: _run)
            plain.padded = None
        _run(done, lam, sweeps, rounds=_image_rounds(prepared, sweeps))
        if take:
            plain.padded = done.padded
        if not prepared.warm:
            return done
        done.movable = None  # (only sweeps read it)
        # (settled once here, not in each copy's back-off: a pass over the image, 0.005 s at 2.3 MP)
        _settle(done)
        done.ranking = [None]
        if kept:  # (_RUNS_KEPT = 0: none)
            prepared.runs[key] = done
    return _copy(done)


# The image's run (of an image larger than its sample) makes _IMAGE_ROUNDS rounds up to _TOP_UP_MAX pixels: its
# refinement moves the entries to the means of the labels, which the sample's refinement only estimates (_refine),
# and a second round's sweeps at the same lambda take the moves the moved entries made cheap; the back-off then
# keeps the best within the budget. Round 48, --rdo 2 at K = 16 and 64 (0.27-0.31 MP photos, their audit
# variants and three more): 0.8448 -> 0.8421x the plain ctx bytes over 18 files, flower 0.729 -> 0.722 at
# K = 64, the dark china 0.824 -> 0.817 and a saturated flower 0.680 -> 0.671 at K = 16 (worst +0.1 %: china,
# a smooth photo and a screenshot at K = 64); 3 rounds 0.1 % more for a third more of the run. Not in a
# target's warm search (its pins and costs), not for strong rdo (unmeasured), not above 2 MP: a 12 MP sample's
# refinement gained nothing there and a round costs a sweep of the whole image (the 2x CPU allowed).
_IMAGE_ROUNDS = 2


def _image_rounds(prepared: Prepared, sweeps: int) -> int:
    """The rounds of the image's run (_IMAGE_ROUNDS's comment)."""
    plain = prepared.plain
    if prepared.warm or sweeps != _SWEEPS or plain.height * plain.width > _TOP_UP_MAX:
        return _ROUNDS
    return _IMAGE_ROUNDS


_RUNS_KEPT = 2  # (12 MP: each holds the image's labels, 12 MB at K <= 255, and its moved pixels, 8 bytes each)
# From this many pixels a warm Prepared keeps one run: at 24 MP a run with its ranking is ~90 MB, and a search's
# peak is inside a run beside its K's kept runs (issue 10); a run asked for again after another is made again
# (the same state)
_ONE_RUN_AT = 1 << 22


def _runs_kept(plain: _State) -> int:
    return 1 if plain.height * plain.width >= _ONE_RUN_AT else _RUNS_KEPT


@dataclass
class _Labelling:
    """A state's labels as its file will hold them (what _worse reads of a _State)."""
    palette: np.ndarray
    labels: np.ndarray
    total: int
    height: int
    width: int


def _in_file_order(s: _State) -> _Labelling:
    """s's labels with unused and equal entries dropped and the entries in a file's order (by share, ties by
    colour: api._by_share): where the image is its own sample, a target's search sizes each file it makes,
    and judged in that order rdo's sizing is the file's (Prepared.returned), 0.4 of a plain compress each."""
    palette, labels = _compact(s.palette, s.labels, s.counts)
    order, rank = kmeans.share_order(palette, np.bincount(labels.reshape(-1), minlength=len(palette)))
    return _Labelling(palette[order], rank[labels], s.total, s.height, s.width)


def returned_key(palette: np.ndarray, labels: np.ndarray) -> bytes:
    """The key of Prepared.returned for a file's palette and labels (a file holds its labels as uint16)."""
    return digest(palette, labels.astype(np.uint16, copy=False))


def _nearest(s: _State, ordered: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """The nearest labelling of a state just started, as optimise returns it."""
    palette, labels = _result(s, ordered)
    return palette, labels, s.total / labels.size


def _result(s: _State, ordered: bool, spend: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """s's palette and labels as optimise returns them: _compact's, or (ordered) as a file holds them. spend: s
    is read no more, and where its labels are uint16 (K >= 256) the file's are made in their place (48 MP: 96 MB
    not held twice); s.padded is then let go."""
    if not ordered:
        return _compact(s.palette, s.labels, s.counts)
    used = s.counts > 0
    kept, inverse = np.unique(s.palette[used], axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    # (distinct entries: share_order's order does not depend on the order they come in)
    order, rank = kmeans.share_order(kept, np.bincount(inverse, weights=s.counts[used], minlength=len(kept)))
    table = np.zeros(len(s.palette) + 1, np.uint16)
    table[:-1][used] = rank[inverse]
    if spend and s.padded.dtype == np.uint16:
        # (a band's labels are written where the bands before it were read: image row r at r x W, where the
        # padded labels hold it from (r + 1) x (W + 2))
        labels = s.padded.reshape(-1)[:s.height * s.width].reshape(s.height, s.width)
        for start in range(0, s.height, _ROWS):
            labels[start:start + _ROWS] = np.take(table, s.labels[start:start + _ROWS])
        s.padded = None
        return kept[order], labels.reshape(-1)
    labels = np.empty((s.height, s.width), np.uint16)
    for start in range(0, s.height, _ROWS):  # (take widens its indices to intp: a band at a time)
        np.take(table, s.labels[start:start + _ROWS], out=labels[start:start + _ROWS])
    return kept[order], labels.reshape(-1)


_ROWS = 64  # rows of labels relabelled at a time (_result)


def _back_off(s: _State, budget: int) -> None:
    """Return relabelled pixels to their nearest entry until the total distortion is within budget (possible
    whenever the nearest labelling is): first those that bought the least agreement per unit of distortion,
    as a lower lambda would."""
    excess = s.total - budget
    if excess <= 0:
        return
    shared = s.ranking
    ranked = shared[0] if shared else None
    if ranked is None:
        ranked = _ranked(s)
        if shared is not None:
            shared[0] = ranked
    delta, gain = ranked
    undo = _cheapest(_Worth(gain, delta), delta, excess)
    # (moves at no cost, delta 0, are not ranked: _cheapest's prefix has the same moves of cost with or without them)
    undo = undo[delta[undo] > 0]
    s.total -= int(delta[undo].sum(dtype=np.int64))
    # (a ranking not shared lets go here, not at the return: 5 bytes a move beside s.moved's copy below)
    del ranked, delta, gain
    # (the labels and nearest entries of the pixels undone, read again: the ranking's copies sat the run's labels)
    back = s.moved[undo]
    pidx = _padded_at(s, back)
    flat = s.padded.reshape(-1)
    cur, near = flat[pidx], s.near(back)
    flat[pidx] = near
    _recount(s, near, cur)
    del back, pidx, cur, near
    s.moved = np.delete(s.moved, undo)
    s.ranking = None  # (this state's moves are no longer the run's)


def _ranked(s: _State) -> tuple[np.ndarray, ...]:
    """_back_off's ranking of the pixels in s.moved: the distortion each added by moving away from its nearest
    entry (int32; 0 where it added none, which are not ranked) and the agreement it gained (int8; the worth,
    agreement bought per unit of distortion, is made from the two where read: _Worth). Read only, so the
    copies of one run share it. Made a chunk of s.moved at a time (_chunks), and only these two kept: at 12 MP
    and --rdo 28, 5 M moved pixels held 350 MB at once and kept 80 with their places in s.moved and a float64
    worth, 25 now."""
    _settle(s)
    flat = s.padded.reshape(-1)
    n = len(s.moved)
    delta = np.zeros(n, np.int32)
    gains = np.zeros(n, np.int8)  # (the agreement of 8 neighbours, -12..12)
    for at in _chunk_slices(n):
        moved = s.moved[at]
        pidx = _padded_at(s, moved)
        which = s.colours.at(moved)
        cur = flat[pidx]
        d = _dist(_pixels_at(s, moved), s.palette, cur) - s.dnear_c[which]
        g = np.flatnonzero(d > 0)
        pidx, cur, near, d = pidx[g], cur[g], s.near_c[which[g]], d[g]
        # (views of the labels from the farthest-back neighbour, as _sweep reads them: no index array per offset)
        base, shifts = _based(pidx, s.width)
        nbs = [flat[off:][base] for off in shifts]
        gain = _agreement(nbs, cur).astype(np.int32)
        gain -= _agreement(nbs, near)
        g += at.start
        delta[g] = d
        gains[g] = gain
    return delta, gains


class _Worth:
    """The worth of _ranked's moves, agreement gained per unit of distortion added (-1 where none is gained),
    float64, made for the positions asked about (an index array or slice) from the gains and deltas: 5 bytes
    a move kept, where the worth and the moves' places were 12 more."""

    def __init__(self, gain: np.ndarray, delta: np.ndarray) -> None:
        self.gain, self.delta = gain, delta

    def __len__(self) -> int:
        return len(self.gain)

    def __getitem__(self, at: np.ndarray | slice) -> np.ndarray:
        gain = self.gain[at].astype(np.int32)
        return np.where(gain > 0, gain / np.maximum(self.delta[at], 1), -1.0)


def _cheapest(worth: np.ndarray | _Worth, delta: np.ndarray, excess: int) -> np.ndarray:
    """The positions of the shortest prefix, in order of worth (ties by position), whose delta (> 0) sums to
    at least excess (> 0; all, if none does), in no particular order. Nothing is sorted but the few of the worth
    where the prefix ends: the positive worths are counted into buckets by the top bits of their floats
    (ordered as the numbers), delta summed per bucket finds the bucket holding the end, and only that one is
    sorted (12 MP china + noise, K = 16: 0.77 M moved, 0.18 M undone, 0.009 s where a partition and a stable
    sort of the least 0.3 M took 0.042). worth is read a _CHUNK at a time (a _Worth makes it so), and beside the
    result only a flag is held a move: at 48 MP and --rdo 28 the positive worths' positions (intp) and bucket
    keys were 12 bytes a move, the flags of the others 2."""
    if int(delta.sum(dtype=np.int64)) < excess:
        return np.arange(len(worth))
    n = len(worth)
    low = np.empty(n, bool)  # (-1 in _back_off: moves that bought no agreement)
    spent = 0
    least, most = np.inf, 0.0
    for at in _chunk_slices(n):
        w = worth[at]
        part = low[at]
        np.less_equal(w, 0, out=part)
        spent += int(delta[at].sum(dtype=np.int64, where=part))
        if not part.all():
            least = min(least, float(np.min(w, where=~part, initial=np.inf)))
            most = max(most, float(np.max(w, where=~part, initial=0.0)))
    if spent >= excess:
        return _prefix(np.flatnonzero(low), worth, delta, excess)
    # (a positive float's bits, read as an integer, grow with it; 2^12 buckets per octave)
    first, span = (int(np.array([v]).view(np.int64)[0]) >> 40 for v in (least, most))
    span -= first
    shift = (span // _BUCKETS).bit_length() if span >= _BUCKETS else 0
    span >>= shift

    def keys(at: slice) -> tuple[np.ndarray, np.ndarray]:
        """The bucket of each move in ``at`` (int64) and which of them are positive."""
        part = worth[at].view(np.int64) >> 40
        part -= first
        part >>= shift
        return part, ~low[at]

    # (float sums of integers below 2^53: exact in any order, so summed a _CHUNK at a time)
    sums = np.zeros(span + 1)
    for at in _chunk_slices(n):
        part, high = keys(at)
        sums += np.bincount(part[high], weights=delta[at][high], minlength=span + 1)
    b = int(np.searchsorted(np.cumsum(sums), excess - spent))
    # (the keys made again, not kept: 4 bytes a move)
    below, edge = [np.zeros(0, np.intp)], [np.zeros(0, np.intp)]
    for at in _chunk_slices(n):
        part, high = keys(at)
        below.append(np.flatnonzero(high & (part < b)) + at.start)
        edge.append(np.flatnonzero(high & (part == b)) + at.start)
    below = np.concatenate(below)
    spent += int(delta[below].sum(dtype=np.int64))
    return np.concatenate([np.flatnonzero(low), below, _prefix(np.concatenate(edge), worth, delta, excess - spent)])


_BUCKETS = 1 << 18  # at most this many buckets (_cheapest): _back_off's worths span ~22 octaves, 90 000


def _prefix(at: np.ndarray, worth: np.ndarray, delta: np.ndarray, excess: int) -> np.ndarray:
    """The shortest prefix of the positions ``at`` (ascending) in order of worth, ties by position, whose delta
    sums to at least excess."""
    order = at[np.argsort(worth[at], kind="stable")]
    return order[:int(np.searchsorted(np.cumsum(delta[order], dtype=np.int64), excess)) + 1]


def _compact(palette: np.ndarray, labels: np.ndarray, counts: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Drop unused entries and merge equal ones; counts: the pixels of each entry, if known."""
    if counts is None:
        counts = np.bincount(labels.reshape(-1), minlength=len(palette))
    used = counts > 0
    kept, inverse = np.unique(palette[used], axis=0, return_inverse=True)
    if len(kept) == len(palette):
        return palette, labels  # nothing to drop: spare a pass over the pixels
    remap = np.zeros(len(palette), np.int32)
    remap[used] = inverse.reshape(-1)
    return kept, remap[labels]
