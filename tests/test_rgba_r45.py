"""RGBA with varying alpha (round 45): the same fits in less work, measured by the work's shape, never by time.
The histogram's ranks are written only where a bin is occupied (`kmeans._bins_in_place`), the restarts' passes
run in blocks that stay in the cache (`kmeans._RUNS_BLOCK`), and `kmeans._reassign_near` lists at least 4
candidates with 4 channels, in blocks of `kmeans._NEAR_BLOCK` pairs. Files, RGB and RGBA, stay the same."""

import hashlib

import numpy as np
import pytest

import kmq
from kmq import kmeans


def _rgba(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth photo-like RGB under random alpha: a colour for nearly every pixel, as in issue 10."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rgb = np.stack([120 + 100 * np.sin(3 * xx + c) * np.cos(2 * yy - c) for c in range(3)], axis=-1)
    rgb += rng.normal(0, 6, rgb.shape)
    alpha = rng.integers(0, 256, (h, w))
    return np.clip(np.dstack([rgb, alpha]), 0, 255).astype(np.uint8)


def test_bins_rank_no_cumulative_sum_over_the_table(monkeypatch):
    """The table path ranks occupied bins without a cumulative sum over every id up to the largest (old code: one
    over 2**20 entries for 70 000 ids); the same bins as np.unique."""
    ids = np.random.default_rng(1).integers(0, 1 << 20, 70_000).astype(np.intp)
    ids[0] = (1 << 20) - 1
    assert ids.max() + 1 <= min(max(kmeans._HIST_TABLE, 4 * ids.size), kmeans._TABLE_PER_ITEM * ids.size)
    summed: list[int] = []
    cumsum = np.cumsum

    def spy(a, *args, **kwargs):
        summed.append(np.size(a))
        return cumsum(a, *args, **kwargs)

    monkeypatch.setattr(np, "cumsum", spy)
    inverse, occupied = kmeans._bins(ids)
    monkeypatch.undo()
    assert not [n for n in summed if n >= ids.size], summed
    want, want_inverse = np.unique(ids, return_inverse=True)
    assert np.array_equal(occupied, want) and np.array_equal(inverse, want_inverse)


def test_lloyd_runs_passes_in_cache_sized_blocks(monkeypatch):
    """Each of `_lloyd_runs`' distance passes covers at most 2**16 point-centroid pairs (old code: 2**18)."""
    colors, counts, _ = kmeans.distinct_colors(_rgba(120, 160).reshape(-1, 4))
    level = kmeans._pyramid(colors, counts, (4,))[0]
    starts = kmeans._kmeanspp(level, 16, np.random.default_rng(0), 16)
    pairs: list[int] = []
    orig = kmeans._along_dist2

    def spy(cols, centres, out=None):
        pairs.append(cols.shape[1] * centres.shape[0])
        return orig(cols, centres, out)

    monkeypatch.setattr(kmeans, "_along_dist2", spy)
    got = kmeans._lloyd_runs(level, starts, 3, 0.0)
    monkeypatch.undo()
    assert level.m * 256 > 1 << 18 and pairs and max(pairs) <= 1 << 16
    monkeypatch.setattr(kmeans, "_RUNS_BLOCK", 1 << 18)  # (h54r2: against the old block, not the same one again)
    want = kmeans._lloyd_runs(level, starts, 3, 0.0)  # (the block changes no bit)
    assert all(np.array_equal(a, b) for a, b in zip(got, want))


def test_reassign_near_rgba_widths_and_blocks(monkeypatch):
    """With 4 channels every candidate group lists at least 4 (old code: 2 for most points) and each block holds at
    most `_CACHE_BLOCK` candidate-point-channel values (old code: up to 2**21); RGB still starts at 2. The labels
    are those of measuring every centroid."""
    colors, counts, _ = kmeans.distinct_colors(_rgba(200, 200).reshape(-1, 4))
    seen: dict[int, list[tuple[int, int]]] = {3: [], 4: []}
    orig = kmeans._first_least
    channels = [4]

    def spy(d, first):
        seen[channels[0]].append(d.shape)
        return orig(d, first)

    monkeypatch.setattr(kmeans, "_first_least", spy)
    for c in (4, 3):
        channels[0] = c
        pts = kmeans._Points(colors[:, :c].astype(np.float64), counts.astype(np.float64))
        start = pts.x[np.random.default_rng(2).choice(pts.m, 64, replace=False)]
        centroids, inertia, labels = kmeans._hamerly(pts, start, 3, 0.0)
        d = ((pts.x[:, None, :] - centroids[None]) ** 2).sum(axis=2)
        assert np.array_equal(labels, d.argmin(axis=1))
    monkeypatch.undo()
    assert seen[4] and min(L for L, _ in seen[4]) >= 4
    assert max(L * n * 4 for L, n in seen[4]) <= kmeans._CACHE_BLOCK
    assert min(L for L, _ in seen[3]) == 2


# The files (sha256 and J at seed 0): round 44's main (6e6ad44); at K = 16 since round 48, whose restarts there are
# seeded and ranked on a stand-in (`kmeans._rgba_stand_in`; J 1511.395667 before); at K = 64 since round 48 h57i,
# whose restarts there run on it and its best 3 are re-ranked on every bin (J 563.982533 before); at K = 64 since
# round 49 h58d, whose seeding there draws 3 candidates a step (`kmeans._PP_TRIALS_RGBA`; J 565.132267 before).
_FILES = {
    16: ("b704631cb602fdce26f17d374d310cc40d63d04640f9f6221b7e9faeefc9392f", 1505.2923),
    64: ("38c8aa02ed035776dc953cb9f40a594cd809e654b0d3f1e35e267fc55c167d94", 565.863633),
}


@pytest.mark.parametrize("k", [16, 64])
def test_rgba_same_file_and_j(k):
    """RGBA of a colour for nearly every pixel: the same bytes twice, and the same file and J as before."""
    image = _rgba(150, 200)
    first, second = kmq.compress(image, k), kmq.compress(image, k)
    data = first.to_bytes()
    assert data == second.to_bytes()
    assert first.palette.shape[1] == 4
    want = _FILES[k]
    digest = hashlib.sha256(data).hexdigest()
    assert (digest, round(first.distortion, 6)) == want, (digest, first.distortion)
