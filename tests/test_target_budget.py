"""A target's search works within a budget of plain compresses, counted from a model of its steps (never a
clock, so the same input and options always give the same file)."""
import warnings

import numpy as np
import pytest

import kmq
from kmq import target


@pytest.fixture
def searches(monkeypatch):
    """Every _Search a target makes, to read the work it counted."""
    made = []

    class Recorded(target._Search):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)
    monkeypatch.setattr(target, "_Search", Recorded)
    return made


def _noisy(grey: bool) -> np.ndarray:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:96, 0:128]
    base = np.stack([x * 2, y * 2 + 40, 255 - x - y], -1)
    noisy = np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)
    return noisy.mean(-1).astype(np.uint8) if grey else noisy


def test_the_model_counts_each_fit_bound_and_rdo_run_once():
    pixels = np.zeros((4, 5, 3), np.uint8)
    pixels[:, :2] = (200, 10, 10)
    pixels[0, 0] = (0, 0, 255)
    s = target._Search(pixels, 16, "ctx", 0, 300, {"max_bytes": 100})
    fit2 = 3 * 3 * target._FIT_COST * 2  # 3 colours x 3 channels, 1 + log2(2) bits
    assert s.cost(2) == pytest.approx(fit2 + 20 * target._BOUND_COST)
    assert s.cost(2, 10.0) == pytest.approx(fit2 + 20 * (3 * target._RDO_COST + target._BOUND_COST))
    s.bounds(2)
    assert s.spent == pytest.approx(fit2 + 20 * target._BOUND_COST)
    assert s.cost(2) == 0
    s.bounds(2)
    s.size(2)  # an encoding, where the bounds could not decide
    assert s.spent == pytest.approx(fit2 + 20 * (target._BOUND_COST + target._ENCODE_COST))
    assert s.plain(2) == pytest.approx(fit2 + 20 * target._ENCODE_COST)
    # ctx above the ranked K escapes: each pixel costs more
    assert s._per_pixel(target.ctx.RANKED_K_MAX + 1, 1.0) == 20 * target._ESCAPES


@pytest.mark.parametrize("grey, budget", [(False, 500), (False, 1000), (True, 500), (True, 800)])
def test_optional_steps_stop_at_the_budget(searches, monkeypatch, grey, budget):
    # Noise: rdo tops out far under the budget, so the walk up to larger K and the filling with weaker rdo
    # would go on; they stop where the next would pass the budget, which the steps every search must make
    # (the bracket) leave room for here. Without the budget the same searches do more work.
    pixels = _noisy(grey)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress_to(pixels, max_bytes=budget, codec="ctx")
        s = searches[-1]
        assert len(img.to_bytes()) <= budget
        assert s.spent <= target._BUDGET * s.plain(img.k)
        spent = s.spent
        monkeypatch.setattr(target._Search, "affords", lambda self, *files, at=0: True)
        again = kmq.compress_to(pixels, max_bytes=budget, codec="ctx")
    assert searches[-1].spent > spent
    assert len(again.to_bytes()) <= budget


def test_a_budget_search_is_the_same_every_time():
    pixels = _noisy(False)
    files = {kmq.compress_to(pixels, max_bytes=1500, codec="ctx").to_bytes() for _ in range(2)}
    assert len(files) == 1
