"""RGBA with varying alpha at 0.15-0.5 MP (round 48): less work than RGB's twin's 2-3x, measured by the work's
shape (restarts' stand-in, the level the fit ends on, its updates), never by time; J bounded on a toy."""

import inspect

import numpy as np
import pytest
from test_rgba_mid2 import _blobs
from test_rgba_mid2 import _calls as _hamerly_calls

from kmq import kmeans


def _photo(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct colours of a smooth RGB pattern under random alpha (a colour for nearly every pixel)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rgb = np.stack([120 + 100 * np.sin(3 * xx + c) * np.cos(2 * yy - c) for c in range(3)], axis=-1)
    alpha = np.random.default_rng(0).integers(0, 256, (h, w))
    image = np.clip(np.dstack([rgb, alpha]), 0, 255).astype(np.uint8)
    colors, counts = np.unique(image.reshape(-1, 4), axis=0, return_counts=True)
    return colors, counts.astype(np.int64)


@pytest.fixture(scope="module")
def blobs():
    colors, counts = _blobs(190_000, 8)
    assert 150_000 < colors.shape[0] <= 200_000
    return colors, counts


def _j(colors: np.ndarray, counts: np.ndarray, centroids: np.ndarray) -> float:
    """Weighted J of the colours against their nearest centroid, in blocks."""
    x = colors.astype(np.float64)
    cc = (centroids * centroids).sum(1)
    total = 0.0
    for s in range(0, x.shape[0], 1 << 14):
        b = x[s:s + (1 << 14)]
        d = (b * b).sum(1)[:, None] - 2 * b @ centroids.T + cc[None]
        total += float((np.maximum(d.min(1), 0) * counts[s:s + (1 << 14)]).sum())
    return total


def test_rgba_restarts_seeded_and_ranked_on_a_stand_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """The restarts of RGBA's `fit` (several: K = 16) run on a stand-in of its 4-bit level, the bins of under
    `_THIN_PIXELS_RGBA` pixels merged by 3-bit cell (before round 48: on every bin)."""
    colors, counts = _photo(150, 200)
    seen: list[tuple[int, int | None, float, float | None]] = []
    orig = kmeans._best_runs
    signature = inspect.signature(orig)

    def spy(*args, **kwargs):
        given = signature.bind(*args, **kwargs)
        given.apply_defaults()
        stand = given.arguments["ranked"]
        seen.append((given.arguments["pts"].m, None if stand is None else stand.m,
                     float(given.arguments["pts"].w.sum()), None if stand is None else float(stand.w.sum())))
        return orig(*args, **kwargs)

    monkeypatch.setattr(kmeans, "_best_runs", spy)
    kmeans.fit(colors, counts, 16, seed=0)
    (bins, stand, w, sw), = seen
    four = kmeans._pyramid(colors, counts, (4,))[0]
    assert bins == four.m and stand is not None and stand * 4 <= bins * 3
    assert sw == w  # every pixel stands in
    light = int((four.w < kmeans._THIN_PIXELS_RGBA).sum())
    assert light and stand == bins - light + np.unique(
        np.minimum(four.x[four.w < kmeans._THIN_PIXELS_RGBA] // 32, 7).astype(int) @ (8 ** np.arange(3, -1, -1))).size


def test_rgba_one_run_of_150_000_to_200_000_colours_ends_on_the_mixed_level(monkeypatch, blobs) -> None:
    """One run (K = 256) of 150 000-200 000 RGBA colours ends on the mixed level in `_MIXED_UPDATES_ONE` momentum
    updates, never on the colours themselves (before round 48: 5 updates over every colour, as the mixed level
    began at 200 000 colours with one run)."""
    colors, counts = blobs
    m = colors.shape[0]
    assert kmeans._restarts(256) == 1
    seen = _hamerly_calls(monkeypatch)
    kmeans.fit(colors, counts, 256, seed=0)
    assert max(p for p, *_ in seen) * 3 <= m * 2
    assert seen[-1][1:] == (kmeans._MIXED_UPDATES_ONE, kmeans._RELAX, kmeans._MOMENTUM)
    # several restarts (K = 64): the mixed level's own updates (8 since round 49, 12 before), from 150 000 colours too
    seen.clear()
    kmeans.fit(colors, counts, 64, seed=0)
    assert max(p for p, *_ in seen) * 3 <= m * 2
    assert seen[-1][1:] == (kmeans._MIXED_UPDATES, kmeans._RELAX, kmeans._MOMENTUM) and kmeans._MIXED_UPDATES == 8


def test_mixed_level_where_it_keeps_up_to_two_thirds_of_the_colours() -> None:
    """`_mixed` stands in for the colours where it keeps at most 1/`_MIXED_SHARE` (2/3) of them, no longer only
    where it halves them: 180 000 colours spread evenly over a fifth of each channel's range keep ~60 %."""
    rng = np.random.default_rng(1)
    colors, counts = np.unique(rng.integers(0, 80, (183_000, 4)).astype(np.uint8), axis=0, return_counts=True)
    m = colors.shape[0]
    six = kmeans._pyramid(colors, counts, (4, 5, 6))[-1]
    assert m > 150_000 and six.m * 2 > m and six.m * 3 <= m * 2
    mixed = kmeans._mixed(six, colors, counts)
    assert mixed is not None and mixed.m * 3 <= m * 2
    np.testing.assert_array_equal(np.bincount(mixed.inverse, weights=counts, minlength=mixed.m), mixed.w)
    # over 2/3: none
    assert kmeans._mixed(six, colors, counts + kmeans._HEAVY) is None


@pytest.mark.parametrize("k", [16, 64, 256])
def test_rgba_j_within_a_percent_of_the_plain_schedule(monkeypatch: pytest.MonkeyPatch, blobs, k: int) -> None:
    """The fit's J against the same fit with the restarts on every bin and the colours polished (no mixed level):
    at most 1 % above it."""
    colors, counts = blobs
    got = _j(colors, counts, kmeans.fit(colors, counts, k, seed=0))
    monkeypatch.setattr(kmeans, "_THIN_PIXELS_RGBA", 0, raising=False)  # (no bin merged: no stand-in)
    monkeypatch.setattr(kmeans, "_MIXED_FROM", 1 << 30)
    plain = _j(colors, counts, kmeans.fit(colors, counts, k, seed=0))
    assert got <= 1.01 * plain
