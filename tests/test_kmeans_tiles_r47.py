"""Noisy 256x256 RGB tiles (round 47, h56d). The colours' final labelling at K = 25-64: `kmq.kmeans.nearest`
starts from the fit's clusters (the entries near each colour's cluster), with the brute force's labels and
distances. The fit: with one run (K = 256) k-means++ seeds on the restarts' stand-in, not on every 5-bit bin; with
several (K = 16-128) each chosen run climbs its levels in a few updates over-relaxed then with momentum
(`kmq.kmeans._NOISY_LEVELS`), not plain Lloyd to tol. No timing here: speed is measured by bench/speed.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import kmq
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


def recorded(monkeypatch: pytest.MonkeyPatch) -> tuple[list, list]:
    """(points, updates, relax, momentum) of every `_hamerly` call, and the points every one-run k-means++ seeds."""
    calls: list[tuple] = []
    seeded: list[int] = []
    hamerly, seeding = km._hamerly, km._kmeanspp_one
    monkeypatch.setattr(km, "_hamerly", lambda pts, c, it, tol, guess=None, relax=1.0, momentum=None:
                        calls.append((pts.m, it, relax, momentum)) or hamerly(pts, c, it, tol, guess, relax, momentum))
    monkeypatch.setattr(km, "_kmeanspp_one", lambda pts, k, rng, labels=None, trials=None:
                        seeded.append(pts.m) or seeding(pts, k, rng, labels, trials))
    return calls, seeded


def test_one_run_seeds_on_the_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    # Uniform noise at K = 256: ~28 000 5-bit bins of ~2 pixels; k-means++ seeds on their stand-in (the bins of
    # under `_THIN_PIXELS` pixels merged by 4-bit cell), then the 5-bit level runs its `_NOISY` updates.
    px = np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    colors, counts, _ = km.distinct_colors(px.reshape(-1, 3))
    assert len(colors) >= km._NOISY_SHARE * counts.sum() and km._restarts(256) == 1
    calls, seeded = recorded(monkeypatch)
    km.fit(colors, counts, 256, seed=0)
    assert len(seeded) == 1
    coarse = calls[0][0]
    assert calls[0][1:] == (km._NOISY[1], km._RELAX, km._MOMENTUM)
    assert seeded[0] * 2 < coarse < len(colors)


def test_several_runs_climb_in_few_updates(monkeypatch: pytest.MonkeyPatch) -> None:
    # K = 64 (8 restarts): every run's levels and the colours' polish in at most 8 updates each, over-relaxed
    # then with momentum (each level ran plain Lloyd to tol: 300 updates allowed, 10-50 taken).
    px, _ = blobs(64, 9.0)
    colors, counts, _ = km.distinct_colors(px.reshape(-1, 3))
    assert len(colors) >= km._NOISY_SHARE * counts.sum() and km._restarts(64) > 1
    calls, _ = recorded(monkeypatch)
    km.fit(colors, counts, 64, seed=0)
    assert len(calls) >= 2 and calls[0][0] < len(colors)
    assert all(it <= 8 and (relax, momentum) == (km._RELAX, km._MOMENTUM) for _, it, relax, momentum in calls)
    assert calls[-1][0] == len(colors)
    # The same colours each twice the pixels are not noisy: their levels still run plain Lloyd to tol.
    calls.clear()
    km.fit(colors, counts * 2, 64, seed=0)
    assert all(c[1:] == (300, 1.0, None) for c in calls[:-1])


@pytest.mark.parametrize("k, sigma", [(16, 12.0), (64, 8.0), (256, 3.0)])
def test_blobs_end_near_their_centres(k: int, sigma: float) -> None:
    # k blobs well apart: J stays near the noise's own (3 sigma^2 around the true centres, on the rounded pixels),
    # the same file twice.
    px, centres = blobs(k, sigma)
    a, b = kmq.compress(px, k), kmq.compress(px, k)
    assert a.to_bytes() == b.to_bytes()
    x = px.reshape(-1, 3).astype(np.float64)
    truth = float(np.mean(np.sum((x - centres[np.arange(x.shape[0]) % k]) ** 2, axis=1)))
    assert a.distortion <= (1.02 if k < 256 else 1.25) * truth


def test_stand_in_seeding_keeps_j() -> None:
    # Uniform noise at K = 256, seeds 0-2: J within 0.5 % of k-means++ on every 5-bit bin (the policy before;
    # `_thinned` returning None restores it).
    px = np.random.default_rng(2).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    colors, counts, _ = km.distinct_colors(px.reshape(-1, 3))
    pts = km._Points(colors, counts, colors)

    def j(centroids: np.ndarray) -> float:
        return float(pts.w @ km._assign(pts, centroids)[1]) / float(counts.sum())

    new = [j(km.fit(colors, counts, 256, seed=s)) for s in range(3)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(km, "_thinned", lambda *a, **kw: None)
        old = [j(km.fit(colors, counts, 256, seed=s)) for s in range(3)]
    assert new != old
    assert np.exp(np.mean(np.log(np.array(new) / np.array(old)))) <= 1.005


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
