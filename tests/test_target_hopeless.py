"""The search over (K, rdo) estimates a new K's first rdo run from its sample before running it on the whole image
(target._hopeless, rdo.sample_share): the calibration it makes is the run's own, so a run that goes ahead is the
same file, and one estimated far over the budget is not made."""
import warnings

import numpy as np
import pytest

import kmq
from kmq import kmeans, rdo, target


@pytest.fixture
def small_sample(monkeypatch):
    """rdo's sample made small (tiles of 16 x 16 for images over 2048 pixels), so a 64 x 64 image is calibrated
    on a sample as a large one is."""
    monkeypatch.setattr(rdo, "_SAMPLE", 1 << 10)
    monkeypatch.setattr(rdo, "_TILE", 16)


def _noisy() -> np.ndarray:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:64, 0:64]
    base = np.stack([x * 4, y * 4, 128 + 0 * x], -1).astype(np.float64)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _search(pixels: np.ndarray, budget: int) -> target._Search:
    s = target._Search(pixels, 256, "ctx", 0, 300, {"max_bytes": budget})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s.bounds(12)
    return s


def _counting(monkeypatch) -> list[float]:
    calls: list[float] = []
    original = rdo._calibrate
    monkeypatch.setattr(rdo, "_calibrate", lambda prepared, ratio, sweeps: (calls.append(ratio),
                                                                             original(prepared, ratio, sweeps))[1])
    return calls


@pytest.mark.parametrize("pct", [3.0, 40.0])
def test_sample_share_then_optimise_is_optimise_alone_with_one_calibration(small_sample, monkeypatch, pct):
    pixels = _noisy()
    distinct = kmeans.distinct(pixels.reshape(-1, 3))
    palette = kmq.api.quantize_distinct(distinct, 12, seed=0, max_iter=300)[0]
    alone = rdo.optimise(pixels, distinct, palette, pct, rdo.prepare(pixels, distinct, palette, warm=True))
    calls = _counting(monkeypatch)
    prepared = rdo.prepare(pixels, distinct, palette, warm=True)
    assert not prepared.whole
    share = rdo.sample_share(prepared, pct)
    after = rdo.optimise(pixels, distinct, palette, pct, prepared)
    assert len(calls) == 1 and not prepared.pending
    assert 0 < share < 1  # (noise: rdo smooths labels away on the sample too)
    np.testing.assert_array_equal(after[0], alone[0])
    np.testing.assert_array_equal(after[1], alone[1])
    assert after[2] == alone[2]


def test_a_run_estimated_far_over_the_budget_is_not_made(small_sample, monkeypatch):
    pixels = _noisy()
    s = _search(pixels, 200)  # (K = 12's plain file is several kB: no rdo file comes near 200 bytes)
    runs = s.runs
    assert target._hopeless(s, 12, 20.0, 200)
    assert s.runs == runs and (12, 20.0) not in s.files and not s.prepared[12].pending


def test_a_run_estimated_within_reach_is_the_file_it_would_have_been(small_sample, monkeypatch):
    pixels = _noisy()
    plain = _search(pixels, 10 ** 6).estimate(12)
    alone = _search(pixels, 10 ** 6).file(12, 20.0)
    calls = _counting(monkeypatch)
    s = _search(pixels, 10 ** 6)
    assert not target._hopeless(s, 12, 20.0, int(plain))
    made = s.file(12, 20.0)
    assert len(calls) == 1  # (the run took the estimate's calibration over)
    np.testing.assert_array_equal(made.palette, alone.palette)
    np.testing.assert_array_equal(made.labels, alone.labels)
    assert made.distortion == alone.distortion

