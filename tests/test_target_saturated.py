"""rdo that has topped out at a K (kmq.target._saturated): a stronger run there added next to no J, so the model of
the search over (K, rdo) does not extrapolate past that K's files (_predict: inf), and no K is fitted and given
runs on a prediction rdo cannot reach (flower.jpg at 3000x2250 in 150 kB: K = 132, two runs 16 % over it)."""
import math
import types
import warnings

import numpy as np
import pytest

from kmq import target


def _search() -> target._Search:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:48, 0:64]
    base = np.stack([x * 4, y * 5, 128 + 0 * x], -1)
    pixels = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    s = target._Search(pixels, 256, "ctx", 0, 300, {"max_bytes": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k in (8, 10):
            s.bounds(k)  # plain J and bytes of both K known
    return s


def _runs(s: target._Search, k: int, runs: list[tuple[float, float, float]]) -> None:
    """Stand-in rdo files at k: (strength %, J over k's plain J, bytes over k's plain bytes) each."""
    plain = s.estimate(k)
    for pct, j_ratio, b_ratio in runs:
        s.files[(k, pct)] = types.SimpleNamespace(distortion=s.j(k) * j_ratio)
        size = round(plain * b_ratio)
        s.sizes[(k, pct)] = (size, size)


@pytest.mark.parametrize("k", [8, 10])
def test_a_stronger_run_that_added_no_j_means_rdo_cannot_go_past_its_file(k):
    s = _search()
    _runs(s, 8, [(40.0, 1.30, 0.80), (90.0, 1.305, 0.7999)])  # +50 % more asked, 0.5 % more J
    assert target._saturated(s, 8)
    goal = math.log(0.5 * s.estimate(k))  # far past the runs' bytes
    assert target._predict(s, k, goal) == math.inf
    # within the runs' bytes the prediction stands
    assert math.isfinite(target._predict(s, k, math.log(0.9 * s.estimate(k))))


def test_runs_that_keep_adding_j_are_extrapolated_as_before():
    s = _search()
    _runs(s, 8, [(40.0, 1.30, 0.80), (90.0, 1.60, 0.70)])
    assert not target._saturated(s, 8)
    assert math.isfinite(target._predict(s, 10, math.log(0.5 * s.estimate(10))))


def test_topping_out_is_judged_by_strength_not_by_order_and_needs_a_clear_step():
    s = _search()
    _runs(s, 8, [(40.0, 1.30, 0.80), (90.0, 1.30, 0.80)])  # the same J: topped out
    assert target._saturated(s, 8)
    s = _search()
    _runs(s, 8, [(90.0, 1.30, 0.80), (40.0, 1.30, 0.80)])  # (order of making is not what counts: strength is)
    assert target._saturated(s, 8)
    s = _search()
    _runs(s, 8, [(40.0, 1.30, 0.80), (42.0, 1.30, 0.80)])  # +2 % asked: too close to tell
    assert not target._saturated(s, 8)


def test_an_ask_like_one_made_is_scaled_by_how_that_run_landed():
    """_rdo_at's line aims by the J runs added; after a run that landed short of its ask it asked about the same
    again (flower.jpg at 3000x2250, K = 120: +46.241 % added 15.2 of 22.0, then +46.633 %)."""
    j_k = 47.5
    asked, got = [j_k * 1.46241], [15.2]
    again = target._ask_again(j_k, got, asked, 21.9)  # +46.1 %: within 2 % of the run made
    assert again > 21.9 * 1.3  # scaled by the shortfall, 22.0 / 15.2
    assert again <= 21.9 * target._ASK_MAX
    # an ask unlike any made stands
    assert target._ask_again(j_k, got, asked, 30.0) == 30.0
    assert target._ask_again(j_k, [], [], 21.9) == 21.9
