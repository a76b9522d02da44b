"""Round 46: K-Means on a screenshot (a flat background, anti-aliased text, a small photo) is fitted on its colours.

No timing here: speed is measured in bench/.
"""

from __future__ import annotations

import numpy as np

from kmq import kmeans as km


def screenshot_colours(grain: float) -> tuple[np.ndarray, np.ndarray]:
    """The distinct colours and counts of a drawn screenshot: 150 000 pixels of background, text in three inks
    whose edges step from the background to the ink in 64 levels, and a 100x60 photo-like patch (smooth hues
    with grain, nearly a colour a pixel)."""
    rng = np.random.default_rng(0)
    bg = np.array([245.0, 245.0, 245.0])
    parts = [np.repeat(bg[None], 150_000, axis=0)]
    for ink, n in (([20, 20, 20], 30_000), ([200, 30, 30], 8_000), ([40, 60, 90], 12_000)):
        a = rng.integers(0, 65, n)[:, None] / 64
        a[: n // 2] = 1.0  # the strokes' solid cores
        parts.append(bg * (1 - a) + np.array(ink, dtype=np.float64) * a)
    yy, xx = np.mgrid[0:60, 0:100] / 60.0
    photo = np.stack([60 + 120 * xx, 90 + 100 * np.sin(3 * yy), 160 - 60 * xx * yy], axis=-1)
    parts.append((photo + rng.normal(0, grain, photo.shape)).reshape(-1, 3))
    px = np.clip(np.rint(np.concatenate(parts)), 0, 255).astype(np.uint8)
    return np.unique(px, axis=0, return_counts=True)


def weighted_j(colors: np.ndarray, counts: np.ndarray, centroids: np.ndarray) -> float:
    x = colors.astype(np.float64)
    d = ((x[:, None, :] - centroids[None]) ** 2).sum(axis=2).min(axis=1)
    return float(counts @ d / counts.sum())


def reference_j(colors: np.ndarray, counts: np.ndarray, k: int, seed: int) -> float:
    """Slow and plain: weighted k-means++ (D^2 sampling, one candidate a step) on the colours, then weighted
    Lloyd on them until no label changes."""
    rng = np.random.default_rng(seed)
    x, w = colors.astype(np.float64), counts.astype(np.float64)
    c = np.empty((k, 3))
    c[0] = x[rng.choice(len(x), p=w / w.sum())]
    d = ((x - c[0]) ** 2).sum(axis=1)
    for i in range(1, k):
        p = w * d
        c[i] = x[rng.choice(len(x), p=p / p.sum())]
        d = np.minimum(d, ((x - c[i]) ** 2).sum(axis=1))
    labels = None
    for _ in range(300):
        new = ((x[:, None, :] - c[None]) ** 2).sum(axis=2).argmin(axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        wsum = np.bincount(labels, w, k)
        held = wsum > 0
        for ch in range(3):
            c[held, ch] = np.bincount(labels, w * x[:, ch], k)[held] / wsum[held]
    return weighted_j(colors, counts, c)


def test_screenshot_with_a_photo_at_k_256_is_near_plain_lloyd_on_its_colours() -> None:
    """Climbing the 5-bit histograms, such an image at K = 256 ended 1.34x the J of a plain Lloyd on its colours
    (the bins merge the text edges' heavy steps; the peer trial's screenshot: 1.28x scikit-learn's)."""
    colors, counts = screenshot_colours(grain=4.0)
    k = 256
    # the case: histograms would be climbed (enough colours x K, more than 4 bins per centroid on 5 bits)
    assert colors.shape[0] * k > km._COARSE_WORK and km._pyramid(colors, counts, (5,))[0].m > 4 * k
    ref = min(reference_j(colors, counts, k, seed) for seed in range(2))
    got = weighted_j(colors, counts, km.fit(colors, counts, k, seed=0))
    assert got <= 1.06 * ref, (got, ref)
    assert km._flat_ground(colors, counts, k)
    # determinism: the same seed, the same centroids
    assert np.array_equal(km.fit(colors, counts, k, seed=0), km.fit(colors, counts, k, seed=0))


def test_photos_keep_the_histograms() -> None:
    """No colour of a photo holds 1/8 of its pixels, and a letterboxed one's black band is one colour with no inks or
    text edges beside it: the histogram climb stays (their J and CPU unchanged)."""
    rng = np.random.default_rng(3)
    px = np.clip(np.rint(rng.normal(128, 40, (60_000, 3))), 0, 255).astype(np.uint8)
    colors, counts = np.unique(px, axis=0, return_counts=True)
    assert not km._flat_ground(colors, counts, 256)
    boxed = np.concatenate([px, np.zeros((15_000, 3), np.uint8)])
    colors, counts = np.unique(boxed, axis=0, return_counts=True)
    assert counts.max() >= km._FLAT_SHARE * counts.sum() and not km._flat_ground(colors, counts, 256)
