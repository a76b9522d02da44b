"""RGBA at K = 64 (8 restarts, round 48 h57i): seeded on the 4-bit level, ranked on its stand-in, the best few
re-ranked on every bin; checked by the work's shape, never by time, and J bounded on a toy."""

import inspect

import numpy as np
import pytest
from test_kmeans_rgba_r48 import _j, _photo

from kmq import kmeans


def _runs_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """(points, runs, max_iter) of every `kmeans._split_runs` call from now on."""
    seen: list[tuple[int, int, int]] = []
    orig = kmeans._split_runs
    signature = inspect.signature(orig)

    def spy(*args, **kwargs):
        given = signature.bind(*args, **kwargs).arguments
        seen.append((given["pts"].m, given["starts"].shape[0], given["max_iter"]))
        return orig(*args, **kwargs)

    monkeypatch.setattr(kmeans, "_split_runs", spy)
    return seen


def test_rgba_k64_restarts_ranked_on_the_stand_in_and_the_best_re_ranked_on_every_bin(monkeypatch) -> None:
    """K = 64's 8 restarts run on the stand-in of the 4-bit level (before round 48 h57i: on every bin), then its
    best `_RERANK_RGBA` go on for `_RERANK_ITER` updates on every bin."""
    colors, counts = _photo(150, 200)
    assert kmeans._restarts(64) == 8
    seen = _runs_calls(monkeypatch)
    kmeans.fit(colors, counts, 64, seed=0)
    four = kmeans._pyramid(colors, counts, (4,))[0]
    stand = kmeans._rgba_stand_in(four)
    assert stand is not None and stand.m < four.m
    assert [(p, r) for p, r, _ in seen] == [(stand.m, 8), (stand.m, 4), (four.m, kmeans._RERANK_RGBA)]
    assert seen[-1][2] == kmeans._RERANK_ITER


def test_rgba_k64_seeds_drawn_on_every_bin(monkeypatch) -> None:
    """k-means++ draws K = 64's seeds on every 4-bit bin, as before the stand-in (its draws there, not the
    stand-in's: seeded on the stand-in one cell of 27 ended +1.4 %)."""
    colors, counts = _photo(150, 200)
    seen: list[int] = []
    orig = kmeans._kmeanspp
    monkeypatch.setattr(kmeans, "_kmeanspp", lambda pts, *a, **kw: seen.append(pts.m) or orig(pts, *a, **kw))
    kmeans.fit(colors, counts, 64, seed=0)
    assert seen == [kmeans._pyramid(colors, counts, (4,))[0].m]


@pytest.mark.parametrize("seed", [0, 1])
def test_rgba_k64_j_within_a_percent_of_every_bin_ranked(monkeypatch, seed: int) -> None:
    """J at K = 64 at most 1 % above the fit whose restarts all run on every bin."""
    colors, counts = _photo(150, 200)
    got = _j(colors, counts, kmeans.fit(colors, counts, 64, seed=seed))
    monkeypatch.setattr(kmeans, "_RERANKED_MAX_RGBA", 16)
    plain = _j(colors, counts, kmeans.fit(colors, counts, 64, seed=seed))
    assert got <= 1.01 * plain
