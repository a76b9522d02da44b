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
