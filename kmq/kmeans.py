"""Weighted K-Means over the distinct colours of an image, and exact nearest-palette labelling.

Vocabulary: ``centroids`` are float64 while fitting, the ``palette`` is the uint8 table stored in the file,
``labels`` are indices into it, and the ``distortion`` J is the mean over pixels of the squared Euclidean
distance between a pixel and its palette colour (0..255 units, summed over channels).

Why distinct colours: K-Means with each distinct colour weighted by its pixel count has exactly the same
objective, the same Lloyd steps and so the same result as K-Means over the pixels, and a photo of
10^7 pixels has only 10^5..10^6 distinct colours.

Pure numpy; no per-pixel Python loop anywhere. Every function here assumes valid input: checking it is
the job of the public ``kmq.compress``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["distinct_colors", "fit", "nearest"]

# Cap on the elements of one (points x centroids) block of distances, so that memory stays bounded
# (2**21 float64 = 16 MiB) whatever the number of points or K.
_BLOCK = 1 << 21


# --------------------------------------------------------------------------------------------------
# distinct colours


def _pack(pixels: np.ndarray) -> np.ndarray:
    """(N, C) uint8 -> (N,) uint32 with channel 0 in the most significant byte, so that ascending packed
    value is the lexicographic order of the colours."""
    packed = pixels[:, 0].astype(np.uint32)
    for c in range(1, pixels.shape[1]):
        packed <<= 8
        packed |= pixels[:, c]
    return packed


def _unpack(packed: np.ndarray, channels: int) -> np.ndarray:
    """Inverse of `_pack`: (M,) integer -> (M, channels) uint8."""
    packed = packed.astype(np.uint32, copy=False)
    shifts = np.arange(channels - 1, -1, -1, dtype=np.uint32) * 8
    return ((packed[:, None] >> shifts[None, :]) & 0xFF).astype(np.uint8)


def _distinct_packed_small(packed: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values of a packed array whose values are < 2**24, by a bincount (no sort)."""
    full = np.bincount(packed)
    present = full != 0
    values = np.flatnonzero(present)
    counts = full[values].astype(np.int64, copy=False)
    del full  # the largest temporary (2**24 int64 = 128 MiB at worst): free it before the rank table
    rank = np.cumsum(present, dtype=np.int32)
    del present
    inverse = rank[packed].astype(np.intp)
    inverse -= 1
    return _unpack(values, channels), counts, inverse


def distinct_colors(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct colours of an image, exactly.

    pixels: (N, C) uint8, C in {1, 3, 4}.
    Returns (colors (M, C) uint8, counts (M,) int64, inverse (N,) intp) with ``colors[inverse] == pixels``
    and ``counts[i]`` the number of pixels of colour i. Colours come in ascending lexicographic order
    (channel 0 first), which is ascending packed value.

    C <= 3 (and RGBA whose alpha is the same everywhere) uses a bincount over the packed 24-bit value, which
    is linear and needs no sort; RGBA with varying alpha sorts the packed 32-bit values.
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    n, channels = pixels.shape
    if channels <= 3:
        return _distinct_packed_small(_pack(pixels), channels)
    # C == 4: an opaque (or uniformly translucent) image is really a 3-channel one.
    alpha = pixels[0, 3]
    if np.all(pixels[:, 3] == alpha):
        rgb, counts, inverse = _distinct_packed_small(_pack(pixels[:, :3]), 3)
        colors = np.empty((rgb.shape[0], 4), dtype=np.uint8)
        colors[:, :3] = rgb
        colors[:, 3] = alpha
        return colors, counts, inverse
    values, inverse, counts = np.unique(_pack(pixels), return_inverse=True, return_counts=True)
    return _unpack(values, 4), counts.astype(np.int64), inverse.reshape(n).astype(np.intp, copy=False)


# --------------------------------------------------------------------------------------------------
# nearest palette entry (exact, integer arithmetic)


def _nearest_brute(points: np.ndarray, palette: np.ndarray, index: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest of `palette` (or of its rows `index`, ascending) for each of `points` (uint8).

    The squared distance is |p|^2 - 2 p.c + |c|^2. With uint8 operands every product and partial sum is an
    integer below 2**24, so float32 matrix products are exact and the argmin (first minimum, hence the lower
    index on ties) is the true one. Returns (labels (M,) intp, squared distances (M,) int64).
    """
    cand = palette if index is None else palette[index]
    cf = cand.astype(np.float32)
    cc = np.einsum("kc,kc->k", cf, cf)
    m = points.shape[0]
    labels = np.empty(m, dtype=np.intp)
    dist = np.empty(m, dtype=np.int64)
    step = max(1, _BLOCK // max(1, cand.shape[0]))
    for start in range(0, m, step):
        p = points[start:start + step].astype(np.float32)
        d = p @ (-2.0 * cf.T)
        d += cc
        lab = np.argmin(d, axis=1)
        pp = np.einsum("mc,mc->m", p, p)
        dist[start:start + step] = (d[np.arange(lab.shape[0]), lab] + pp).astype(np.int64)
        labels[start:start + step] = lab
    if index is not None:
        labels = index[labels]
    return labels, dist


def _nearest_cells(points: np.ndarray, palette: np.ndarray, per_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest palette entry through a grid of cells over the colour cube, for large K.

    For a cell with centre z and half-diagonal h, let r be the distance from z to its nearest entry. Any
    point x of the cell has an entry within r + h, so its nearest entry e (or one tied with it) satisfies
    |e - z| <= |e - x| + |x - z| <= r + 2h: only entries in that ball are candidates, and since every
    entry outside it is strictly farther than some entry inside, ties still go to the lowest index.
    """
    m, channels = points.shape
    width = 256.0 / per_axis
    cell_coord = (points.astype(np.int32) * per_axis) >> 8  # (M, C) in 0..per_axis-1
    cell_id = np.zeros(m, dtype=np.int64)
    for c in range(channels):
        cell_id = cell_id * per_axis + cell_coord[:, c]
    order = np.argsort(cell_id, kind="stable")
    ids, starts, sizes = np.unique(cell_id[order], return_index=True, return_counts=True)
    coords = np.empty((ids.shape[0], channels), dtype=np.int64)
    rest = ids.copy()
    for c in range(channels - 1, -1, -1):
        coords[:, c] = rest % per_axis
        rest //= per_axis
    centres = (coords + 0.5) * width - 0.5  # colour values 0..255 sit at the centres of unit bins
    half_diag = 0.5 * width * math.sqrt(channels)

    pal = palette.astype(np.float64)
    pp = np.einsum("kc,kc->k", pal, pal)
    labels = np.empty(m, dtype=np.intp)
    dist = np.empty(m, dtype=np.int64)
    cells_per_block = max(1, _BLOCK // palette.shape[0])
    for b0 in range(0, ids.shape[0], cells_per_block):
        z = centres[b0:b0 + cells_per_block]
        d2 = np.einsum("mc,mc->m", z, z)[:, None] - 2.0 * (z @ pal.T) + pp[None, :]
        np.maximum(d2, 0.0, out=d2)
        d = np.sqrt(d2)
        # The small slack only widens the candidate set, so rounding in the float bound can never drop the
        # true nearest entry.
        radius = d.min(axis=1) + 2.0 * half_diag + 1e-6
        keep = d <= radius[:, None]
        for i in range(z.shape[0]):
            cell = b0 + i
            rows = order[starts[cell]:starts[cell] + sizes[cell]]
            lab, dd = _nearest_brute(points[rows], palette, np.flatnonzero(keep[i]))
            labels[rows] = lab
            dist[rows] = dd
    return labels, dist


def nearest(points: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact nearest palette entry of each point.

    points: (M, C) uint8; palette: (K, C) uint8.
    Returns (labels (M,) intp, squared distances (M,) int64); ties go to the lower palette index.
    Memory is bounded by chunking over the points; for large K the colour cube is cut into cells and each
    cell only compares against the entries that can be nearest to some colour in it.
    """
    points = np.ascontiguousarray(points, dtype=np.uint8)
    palette = np.ascontiguousarray(palette, dtype=np.uint8)
    m, channels = points.shape
    k = palette.shape[0]
    if k <= 32 or m < 4 * k:
        return _nearest_brute(points, palette)
    # Aim for ~8 entries per cell, within what a cell table of that size costs.
    per_axis = int(min(16, max(2, round((k / 8.0) ** (1.0 / channels)))))
    if per_axis <= 2 and channels == 1:
        return _nearest_brute(points, palette)
    return _nearest_cells(points, palette, per_axis)


# --------------------------------------------------------------------------------------------------
# K-Means


def _sq_dist_block(x: np.ndarray, xx: np.ndarray, c: np.ndarray, cc: np.ndarray) -> np.ndarray:
    """Squared distances (m, k) float64 between float rows x (with |x|^2 = xx) and centroids c (|c|^2 = cc)."""
    d = x @ (-2.0 * c.T)
    d += xx[:, None]
    d += cc[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def _assign(x: np.ndarray, xx: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of each row: (labels (m,) intp, squared distance (m,) float64). Chunked."""
    m, k = x.shape[0], c.shape[0]
    cc = np.einsum("kc,kc->k", c, c)
    labels = np.empty(m, dtype=np.intp)
    best = np.empty(m, dtype=np.float64)
    step = max(1, _BLOCK // k)
    for s in range(0, m, step):
        d = _sq_dist_block(x[s:s + step], xx[s:s + step], c, cc)
        lab = np.argmin(d, axis=1)
        labels[s:s + step] = lab
        best[s:s + step] = d[np.arange(lab.shape[0]), lab]
    return labels, best


def _weighted_means(x: np.ndarray, w: np.ndarray, labels: np.ndarray, k: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(sums / weights (k, C) with NaN rows for empty clusters, total weight (k,))."""
    wsum = np.bincount(labels, weights=w, minlength=k)
    sums = np.empty((k, x.shape[1]), dtype=np.float64)
    for c in range(x.shape[1]):
        sums[:, c] = np.bincount(labels, weights=w * x[:, c], minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / wsum[:, None]
    return means, wsum


def _reseed_empty(centroids: np.ndarray, wsum: np.ndarray, x: np.ndarray, dist: np.ndarray) -> None:
    """Move each empty centroid onto one of the points farthest from their centroid, in place.

    Deterministic: points are ranked by decreasing distance, ties by ascending index (a stable sort), and
    the empty clusters, in ascending order, take them in that order.
    """
    empty = np.flatnonzero(wsum == 0)
    if empty.size == 0:
        return
    far = np.argsort(-dist, kind="stable")[: empty.size]
    centroids[empty] = x[far]


def _kmeanspp(x: np.ndarray, xx: np.ndarray, w: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy weighted k-means++ (as scikit-learn): each new centroid is the best, by total weighted
    potential, of 2 + floor(ln k) candidates sampled with probability proportional to weight x D^2.
    Returns (k, C) float64."""
    m = x.shape[0]
    trials = 2 + int(math.log(k))
    centroids = np.empty((k, x.shape[1]), dtype=np.float64)
    cw = np.cumsum(w)
    first = min(int(np.searchsorted(cw, rng.random() * cw[-1], side="right")), m - 1)
    centroids[0] = x[first]
    closest = _sq_dist_block(x, xx, x[first:first + 1], xx[first:first + 1])[:, 0]
    for i in range(1, k):
        pot = np.cumsum(w * closest)
        total = pot[-1]
        if total <= 0.0:
            # Every point already sits on a centroid (only with duplicate rows): take unused rows in order.
            centroids[i] = x[i % m]
            continue
        cand = np.searchsorted(pot, rng.random(trials) * total, side="right")
        np.minimum(cand, m - 1, out=cand)
        d = _sq_dist_block(x, xx, x[cand], xx[cand])  # (m, trials)
        np.minimum(d, closest[:, None], out=d)
        best = int(np.argmin(w @ d))
        centroids[i] = x[cand[best]]
        closest = d[:, best].copy()
    return centroids


def _lloyd(x: np.ndarray, w: np.ndarray, centroids: np.ndarray, max_iter: int, tol_abs: float
           ) -> tuple[np.ndarray, float]:
    """Plain weighted Lloyd from `centroids` until the summed squared centroid shift is <= tol_abs, the
    labels stop changing, or max_iter. Returns (centroids (k, C) float64, weighted inertia)."""
    k = centroids.shape[0]
    xx = np.einsum("mc,mc->m", x, x)
    labels, dist = _assign(x, xx, centroids)
    for _ in range(max_iter):
        new, wsum = _weighted_means(x, w, labels, k)
        _reseed_empty(new, wsum, x, dist)
        shift = float(((new - centroids) ** 2).sum())
        centroids = new
        new_labels, dist = _assign(x, xx, centroids)
        changed = bool(np.any(new_labels != labels))
        labels = new_labels
        if not changed or shift <= tol_abs:
            break
    return centroids, float(w @ dist)


def fit(colors: np.ndarray, counts: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 300,
        tol: float = 1e-4) -> np.ndarray:
    """Weighted K-Means over distinct colours, which is K-Means over the pixels they stand for.

    colors: (M, C) uint8 distinct colours; counts: (M,) pixel count of each (the weights); M > k >= 1.
    k-means++ start from ``np.random.default_rng(seed)``, then Lloyd iterations, at most `max_iter`.
    tol is relative, as in scikit-learn: iterations stop once the sum over centroids of the squared shift
    (0..255 units squared) is at most ``tol`` times the mean per-channel weighted variance of the colours,
    or once no label changes. An empty cluster takes the point farthest from its centroid.
    Returns centroids (k, C) float64. Same input, k and seed -> identical output.
    """
    x = np.ascontiguousarray(colors, dtype=np.float64)
    w = np.ascontiguousarray(counts, dtype=np.float64)
    if k == 1:
        return ((w @ x) / w.sum())[None, :]
    mean = (w @ x) / w.sum()
    var = (w @ ((x - mean) ** 2)) / w.sum()
    tol_abs = float(tol * var.mean())
    rng = np.random.default_rng(seed)
    xx = np.einsum("mc,mc->m", x, x)
    centroids = _kmeanspp(x, xx, w, k, rng)
    centroids, _ = _lloyd(x, w, centroids, max_iter, tol_abs)
    return centroids
