"""Byte budgets on images where rdo has nothing to smooth (issue 9, round 49): a smooth gradient's rdo runs add next
to no J whatever strength they are given, so once two Ks' runs have shown that, the search over (K, rdo) and the walk
at one J (_plane, _level) are not made: each of their steps is a fit, a plain sizing and an rdo run for nothing."""
import warnings

import numpy as np

import kmq
from kmq import rdo


def gradient() -> np.ndarray:
    """bench/targets.py's gradient 97x63 (its two targets' table)."""
    y, x = np.mgrid[0:63, 0:97]
    return np.stack([x * 255 // 96, y * 255 // 62, np.full_like(x, 128)], -1).astype(np.uint8)


def search(monkeypatch, pixels: np.ndarray, budget: int, codec: str = "ctx") -> tuple[kmq.KmqImage, list]:
    """The file of a byte budget and the (K, rdo) of every rdo run it made."""
    runs = []
    optimise = rdo.optimise

    def counting_runs(pixels, distinct, palette, pct, *args, **kwargs):
        runs.append((len(palette), round(pct, 3)))
        return optimise(pixels, distinct, palette, pct, *args, **kwargs)
    monkeypatch.setattr(rdo, "optimise", counting_runs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress_to(pixels, max_bytes=budget, codec=codec)
    return img, runs


def test_a_gradients_budget_stops_where_rdo_moved_next_to_nothing(monkeypatch):
    # K = 69 given +84.7 % added 0.37 % of its J, K = 24 given +2.5 % nothing: before, K = 46, 32 and 34 were fitted
    # and run too (5 runs, 12x a plain compress), and the file was the plain K = 23 all the same (its --psnr 26 file).
    img, runs = search(monkeypatch, gradient(), 407)
    assert (img.k, img.metadata.get("rdo", 0), len(img.to_bytes())) == (23, 0, 407)
    assert len(runs) <= 2 and {k for k, _ in runs} <= {69, 24}


def test_a_textured_gradient_is_still_searched_past_one_idle_run(monkeypatch):
    # Under noise of +-2 the K = 33 run is idle but K = 12's was given too little to tell: the first rule of this
    # round stopped there (K = 12, 23.12 dB); the file is K = 17's, 24.70 dB, as before the round (review h58r2).
    rng = np.random.default_rng(1)
    pixels = np.clip(gradient().astype(np.int16) + rng.integers(-2, 3, (63, 97, 3)), 0, 255).astype(np.uint8)
    img, _ = search(monkeypatch, pixels, 461, codec="lzma")
    assert img.k == 17 and len(img.to_bytes()) <= 461
