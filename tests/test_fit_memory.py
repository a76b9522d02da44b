"""What kmeans.fit holds while it polishes on the colours themselves."""
import gc

import numpy as np

from kmq import kmeans


def test_the_histogram_levels_are_let_go_before_the_polish(monkeypatch):
    # The polish keeps bounds for every colour; the levels the restarts climbed (each with an inverse over
    # every colour) were still held beside them: ~30 MB of a 0.5 MP RGBA photo's 187 MB at K = 256.
    colors = np.random.default_rng(0).integers(0, 256, (3 * kmeans._COARSE_ABOVE, 3), dtype=np.uint8)
    colors = np.unique(colors, axis=0)
    counts = np.ones(len(colors), np.int64)
    held = []
    polish = kmeans._hamerly

    def watched(pts, *args, **kwargs):
        if pts.m == len(colors):  # the polish (the climb's levels are fewer points)
            gc.collect()
            held.append(sum(1 for o in gc.get_objects() if isinstance(o, kmeans._Points) and o is not pts
                            and getattr(o, "inverse", None) is not None))
        return polish(pts, *args, **kwargs)

    monkeypatch.setattr(kmeans, "_hamerly", watched)
    centroids = kmeans.fit(colors, counts, 16, seed=0)
    assert held == [0]
    monkeypatch.setattr(kmeans, "_hamerly", polish)
    np.testing.assert_array_equal(centroids, kmeans.fit(colors, counts, 16, seed=0))


def test_the_climb_holds_only_its_last_levels_inverse_and_as_int32(monkeypatch):
    # Each histogram level's inverse spans every colour: at 48 MP (4.5 M colours) three of them as intp were
    # 108 MB of the climb's peak. The climb reads what it needs of the coarser ones first and lets them go;
    # the one the fit reads after it (the last level's) is int32.
    colors = np.unique(np.random.default_rng(1).integers(0, 96, (80_000, 3), dtype=np.uint8), axis=0)
    counts = np.random.default_rng(2).integers(1, 50, len(colors)).astype(np.int64)
    held = []
    hamerly = kmeans._hamerly

    def watched(pts, *args, **kwargs):
        if pts.m < len(colors):  # a level of the climb, not the polish
            gc.collect()
            held.append(sorted(str(o.inverse.dtype) for o in gc.get_objects() if isinstance(o, kmeans._Points)
                               and getattr(o, "inverse", None) is not None and len(o.inverse) == len(colors)))
        return hamerly(pts, *args, **kwargs)

    monkeypatch.setattr(kmeans, "_hamerly", watched)
    monkeypatch.setattr(kmeans, "_NARROW_FROM", 1000)  # (as from 2**21 colours)
    centroids = kmeans.fit(colors, counts, 16, seed=0)
    assert len(held) >= 2 and held[-1] == ["int32"]
    monkeypatch.setattr(kmeans, "_hamerly", hamerly)
    np.testing.assert_array_equal(centroids, kmeans.fit(colors, counts, 16, seed=0))


def test_the_colours_nearest_pass_in_chunks_is_exact(monkeypatch):
    # `_nearest_from` works through each thread's part a chunk of points at a time (its temporaries were
    # ~40 bytes a point over the whole part): chunks of a few points give the brute force's labels.
    rng = np.random.default_rng(5)
    points = rng.integers(0, 256, (20_000, 3), dtype=np.uint8)
    palette = np.unique(rng.integers(0, 256, (200, 3), dtype=np.uint8), axis=0)
    d = ((points[:, None, :].astype(np.int64) - palette[None].astype(np.int64)) ** 2).sum(-1)
    ref_lab, ref_dist = d.argmin(1), d.min(1)
    monkeypatch.setattr(kmeans, "_FROM_CHUNK", 777)
    for guess in (ref_lab, rng.integers(0, len(palette), len(points))):
        for dtype in (np.intp, np.int32):
            labels, dist = kmeans.nearest(points, palette, guess.astype(dtype))
            assert np.array_equal(labels, ref_lab) and np.array_equal(dist, ref_dist)


def test_the_fit_guesses_the_colours_entries_in_int32(monkeypatch):
    # The fit's clusters, an (M,) array held through the fit and the colours' nearest pass, are int32 and
    # become the guess in place (as intp, clusters and guess were 72 MB at 4.5 M colours).
    from kmq import api

    colors = np.unique(np.random.default_rng(3).integers(0, 256, (3000, 3), dtype=np.uint8), axis=0)
    counts = np.ones(len(colors), np.int64)
    seen = []
    nearest = kmeans.nearest

    def watched(points, palette, guess=None):
        seen.append(None if guess is None else guess.dtype)
        return nearest(points, palette, guess)

    monkeypatch.setattr(kmeans, "nearest", watched)
    palette, labels, j = api.quantize_colors(colors, counts, 128, seed=0)
    assert seen == [np.dtype(np.int32)]
    monkeypatch.setattr(kmeans, "nearest", nearest)
    again = api.quantize_colors(colors, counts, 128, seed=0)
    assert np.array_equal(palette, again[0]) and np.array_equal(labels, again[1]) and j == again[2]


def test_the_freed_memory_is_given_back_before_the_labels_are_made(monkeypatch):
    # `kmq compress` has malloc keep freed blocks; a fit over millions of colours leaves ~200 MB of them that
    # no later array reuses, and the colours' nearest pass and the pixels' labels came on top (48 MP: 570 or
    # 665 MB from run to run). They are handed back after the fit and before the labels are spread.
    from kmq import api

    events = []
    monkeypatch.setattr(api, "_GIVE_BACK_FROM", 1000)
    monkeypatch.setattr(api, "_give_back_freed", lambda: events.append("give back"))
    nearest, spread = kmeans.nearest, kmeans._Indexed.spread  # (a small image's colours keep their index)
    monkeypatch.setattr(kmeans, "nearest", lambda *a: events.append("nearest") or nearest(*a))
    monkeypatch.setattr(kmeans._Indexed, "spread", lambda self, v: events.append("spread") or spread(self, v))
    pixels = np.random.default_rng(4).integers(0, 256, (120, 100, 3), dtype=np.uint8)
    img = api.compress(pixels, k=32)
    assert events == ["give back", "nearest", "give back", "spread"]
    monkeypatch.setattr(api, "_GIVE_BACK_FROM", 1 << 60)
    events.clear()
    assert api.compress(pixels, k=32).to_bytes() == img.to_bytes() and events == ["nearest", "spread"]
    # A large image's labels (and their encoding) come after it whatever its colours (flower.jpg at 48 MP,
    # 1.2 M colours at K = 1024: 588 or 650 MB from run to run).
    monkeypatch.setattr(api, "_GIVE_BACK_PIXELS", pixels.shape[0] * pixels.shape[1])
    events.clear()
    assert api.compress(pixels, k=32).to_bytes() == img.to_bytes()
    assert events == ["nearest", "give back", "spread"]
