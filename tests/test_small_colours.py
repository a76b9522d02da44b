"""RGB images of 8 000-20 000 distinct colours (a 256x256 tile of a photo) on the colours' path: their restarts are
seeded and ranked on the colours' 5-bit histogram, 2x as many (3x before round 46), the best few finished on the colours
(`kmeans._ranked_on_bins`); fewer colours, more, RGBA, one restart and 5-bit bins over half the colours (a quarter before round 46)
keep their paths."""

import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import kmeans as km


def tile(samples, mask: int = 0xFF, alpha: bool = False) -> np.ndarray:
    px = np.asarray(Image.open(samples / "chelsea.png").convert("RGB"))[100:260, 150:310] & mask
    if alpha:  # varying alpha: RGBA's own paths
        a = np.linspace(40, 255, px.shape[1]).astype(np.uint8)[None, :, None].repeat(px.shape[0], 0)
        px = np.concatenate([px, a], axis=2)
    return np.ascontiguousarray(px)


def colours(px: np.ndarray) -> int:
    return len(km.distinct(px.reshape(-1, px.shape[2])).counts)


def ranked_bins(px: np.ndarray, k: int):
    d = km.distinct(px.reshape(-1, px.shape[2]))
    return km._ranked_on_bins(d.colors, d.counts, k)


def spread(n: int = 120) -> np.ndarray:
    """n x n pixels of random 6-bit colours: ~14 000 colours that fill ~11 000 5-bit bins."""
    return (np.random.default_rng(4).integers(0, 64, (n, n, 3)) * 4).astype(np.uint8)


def ranked_on_colours(monkeypatch, px: np.ndarray, k: int) -> list[int]:
    """How many restarts each `_best_runs` call on the colours themselves seeded on a stand-in."""
    m, calls, best_runs = colours(px), [], km._best_runs

    def spy(pts, k, rng, restarts, *args, **kw):
        ranked = kw.get("ranked", args[4] if len(args) > 4 else None)  # (max_iter, tol_abs, near, most, ranked)
        if ranked is not None and pts.m == m:
            calls.append(restarts)
        return best_runs(pts, k, rng, restarts, *args, **kw)

    monkeypatch.setattr(km, "_best_runs", spy)
    kmq.compress(px, k=k)
    return calls


@pytest.mark.parametrize("k, restarts", [(16, 32), (32, 32), (64, 16)])
def test_rgb_of_8000_to_20000_colours_ranks_2x_the_restarts_on_the_5_bit_histogram(monkeypatch, samples, k,
                                                                                   restarts):
    px = tile(samples)
    assert km._RANKED_ABOVE < colours(px) <= km._COARSE_ABOVE and colours(px) * k <= km._COARSE_WORK
    bins = ranked_bins(px, k)
    assert bins is not None and bins.m * km._RANKED_SHARE <= colours(px)
    assert ranked_on_colours(monkeypatch, px, k) == [restarts]


@pytest.mark.parametrize("case", ["few colours", "rgba", "one restart", "histogram path", "bins spread"])
def test_other_images_keep_their_paths(monkeypatch, samples, case):
    px = {"few colours": lambda: tile(samples, mask=0xFC), "rgba": lambda: tile(samples, alpha=True),
          "bins spread": spread}.get(case, lambda: tile(samples))()
    k = 256 if case == "one restart" else 16
    if case == "few colours":
        assert colours(px) <= km._RANKED_ABOVE
    if case == "bins spread":
        assert km._RANKED_ABOVE < colours(px) <= km._COARSE_ABOVE
    if case == "histogram path":  # as if over _COARSE_ABOVE: the histograms' restarts, not this
        monkeypatch.setattr(km, "_COARSE_ABOVE", colours(px) - 1)
    assert ranked_bins(px, k) is None
    assert ranked_on_colours(monkeypatch, px, k) == []


@pytest.mark.parametrize("k", [16, 64])
def test_labels_are_the_nearest_entry_and_files_deterministic(samples, k):
    px = tile(samples)
    img = kmq.compress(px, k=k, seed=3)
    assert kmq.compress(px, k=k, seed=3).to_bytes() == img.to_bytes()
    flat = px.reshape(-1, 3).astype(np.int64)
    d = ((flat[:, None, :] - img.palette.astype(np.int64)[None]) ** 2).sum(axis=2)
    labels = img.labels.reshape(-1).astype(np.intp)
    assert np.array_equal(d[np.arange(len(flat)), labels], d.min(axis=1))
    assert img.distortion == pytest.approx(float(d.min(axis=1).mean()), rel=1e-12)


def test_the_lowest_finished_j_is_kept(monkeypatch, samples):
    """Of the runs finished on the colours the fit returns the one of least J, not the best-ranked."""
    px = tile(samples)
    colors, counts = (lambda d: (d.colors, d.counts))(km.distinct(px.reshape(-1, 3)))
    finished, best_runs = [], km._best_runs

    def spy(*args, **kw):
        runs = best_runs(*args, **kw)
        finished.extend(runs)
        return runs

    monkeypatch.setattr(km, "_best_runs", spy)
    centroids = km.fit(colors, counts, 16, seed=1)
    least = min(finished, key=lambda run: run[1])
    assert np.array_equal(centroids, least[0])
