"""The colours' final labelling of RGB tiles at K = 25-64 (round 47, h56d): `kmq.kmeans.nearest` starts from the
fit's clusters (the entries near each colour's cluster), with the brute force's labels and distances. No timing
here: speed is measured by bench/speed.py.
"""

from __future__ import annotations

import numpy as np

from kmq import kmeans as km


def blobs(k: int, sigma: float, seed: int = 3, n: int = 65536) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels (256x256x3) of k well-apart blobs on a grid under Gaussian noise (nearly a colour a pixel), and
    the blobs' centres."""
    rng = np.random.default_rng(seed)
    side = round(k ** (1 / 3)) + 1
    grid = np.stack(np.meshgrid(*[np.linspace(24, 232, side)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    centres = grid[rng.choice(grid.shape[0], k, replace=False)]
    px = centres[np.arange(n) % k] + rng.normal(0, sigma, (n, 3))
    return np.clip(np.rint(px), 0, 255).astype(np.uint8).reshape(256, 256, 3), centres


def test_mid_k_labels_start_from_the_fit_guess() -> None:
    # RGB of a 256x256 tile at K = 25-64: `nearest` reads the entries near the fit's clusters (not all K: the
    # brute force stays up to K = 24, without a guess, and above 2**18 points), with the brute force's labels
    # and distances.
    assert km._nearest_way(61_399, 3, 64) == "local" and km.takes_guess(61_399, 3, 64)
    assert km._nearest_way(61_399, 3, 25) == "local"
    assert km._nearest_way(61_399, 3, 24) == km._nearest_way(61_399, 3, 64, guess=False) == "brute"
    assert km._nearest_way(1 << 19, 3, 64) == km._nearest_way(10_000, 4, 64) == "brute"
    px, _ = blobs(64, 9.0)
    colors, counts, _ = km.distinct_colors(px.reshape(-1, 3))
    for k in (40, 64):
        clusters = np.full(len(colors), -1, dtype=np.int32)
        palette = np.clip(np.rint(km.fit(colors, counts, k, seed=1, clusters=clusters)), 0, 255).astype(np.uint8)
        got = km.nearest(colors, palette, clusters)
        want = km._nearest_brute(km._columns(colors), slice(0, len(colors)), len(colors), palette)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
