"""RGBA of `kmeans._FEW_FROM` colours up to `_PAIRS_FROM` at K <= 64 (round 43): the colours' nearest entries are
found from the fit's clusters above `_FEW_GUESS_K` entries, and through the pairs' tables up to it, instead of the
brute force. Every way gives the same labels and distances, so the
files are those of the brute force, byte for byte."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

import kmq
from kmq import kmeans as km


def photo_under_random_alpha(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth picture (gradients and blobs) under alpha uniform in 0-255 per pixel: nearly a colour a pixel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rgb = np.stack([200 * xx + 40 * np.sin(9 * yy), 180 * yy + 50 * np.cos(7 * xx), 120 + 90 * np.sin(5 * (xx + yy))],
                   axis=2)
    rgb = np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)
    return np.dstack([rgb, rng.integers(0, 256, (h, w), dtype=np.uint8)])


@pytest.mark.parametrize("k", [24, 32, 64])
def test_few_rgba_colours_take_the_fits_guess_above_16_entries(k):
    """175,000 RGBA colours (grace_hopper at 0.2 MP under random alpha) at K = 24-64 went through the brute force
    (42.9 ms at K = 64 against 14.4 from the guess): now the fit's clusters are asked for and read."""
    assert km._nearest_way(175_000, 4, k, guess=True) == "cells"
    assert km.takes_guess(175_000, 4, k)
    # without a guess (none made), the brute force as before; too few colours unchanged, RGB its own way (above
    # `_BRUTE_MAX_K` the entries near the guess since round 47)
    assert km._nearest_way(175_000, 4, k, guess=False) == "brute"
    assert km._nearest_way(175_000, 3, k, guess=True) == ("brute" if k <= km._BRUTE_MAX_K else "local")
    assert km._nearest_way(km._FEW_FROM - 1, 4, k, guess=True) == "brute"


def test_many_rgba_colours_at_16_entries_take_the_pairs():
    assert km._nearest_way(175_000, 4, 16, guess=True) == "pairs"
    assert km._nearest_way(175_000, 4, 16, guess=False) == "pairs"
    assert not km.takes_guess(175_000, 4, 16)
    assert km._nearest_way(km._FEW_FROM - 1, 4, 16) == "brute"
    assert km._nearest_way(175_000, 3, 16) == "brute"


@pytest.mark.parametrize("k", [8, 16, 17, 32, 48, 64])
def test_every_way_gives_the_brute_forces_labels_and_distances(k):
    """The fit's own clusters as the guess, and a poor guess (every colour on entry 0): the brute force's labels
    (ties to the lower index) and distances, on colours over `_FEW_FROM` (a small image's, repeated)."""
    colors = km.distinct(photo_under_random_alpha(90, 100, seed=k).reshape(-1, 4)).colors
    counts = np.ones(len(colors), dtype=np.int64)
    clusters = np.full(len(colors), -1, dtype=np.int32)
    palette = np.clip(np.rint(km.fit(colors, counts, k, clusters=clusters)), 0, 255).astype(np.uint8)
    palette[1] = palette[0]  # a tie everywhere entry 0 is nearest
    want = km._nearest_brute(km._columns(colors), slice(0, len(colors)), len(colors), palette)
    times = -(-km._FEW_FROM // len(colors))
    big = np.tile(colors, (times, 1))
    assert km._nearest_way(len(big), 4, k) == ("pairs" if k <= 16 else "cells")
    for guess in (clusters, np.zeros(len(colors), dtype=np.int32), None):
        got = km.nearest(big, palette, None if guess is None else np.tile(guess, times))
        assert np.array_equal(got[0], np.tile(want[0], times)) and np.array_equal(got[1], np.tile(want[1], times))


@pytest.mark.parametrize("k", [16, 32, 64])
def test_the_files_are_the_brute_forces(monkeypatch, k):
    """The same bytes with the colours labelled by the brute force (the way before), and the same bytes twice
    (`_FEW_FROM` lowered to this image's 13,000 colours, as 0.2 MP photos under random alpha have 175,000)."""
    image = photo_under_random_alpha(110, 120)
    m = len(km.distinct(image.reshape(-1, 4)).colors)
    monkeypatch.setattr(km, "_FEW_FROM", m)
    assert km._nearest_way(m, 4, k) == ("pairs" if k <= 16 else "cells")
    new = kmq.compress(image, k).to_bytes()
    assert kmq.compress(image, k).to_bytes() == new
    monkeypatch.setattr(km, "_FEW_FROM", km._PAIRS_FROM)
    assert km._nearest_way(m, 4, k) == "brute"
    old = kmq.compress(image, k).to_bytes()
    assert hashlib.sha256(new).hexdigest() == hashlib.sha256(old).hexdigest()
