"""A PSNR near the lossless K (kmq.target._crossing's zero): J there goes as (colours - K), and the probes aim by
it rather than halving colours - K from a K far below (a 256x300 photo at 80 dB: 21 fits, now 9)."""
import warnings

import numpy as np
import pytest
from PIL import Image

import kmq
from conftest import SAMPLES
from kmq import kmeans, target
from kmq.api import quantize_colors
from kmq.stats import psnr as psnr_of


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    with Image.open(SAMPLES / "chelsea.png") as im:  # 80x80: 5,327 colours, past the small images' scans
        return np.asarray(im.convert("RGB"))[100:180, 150:230].copy()


@pytest.mark.parametrize("db", [60.0, 70.0])
def test_a_psnr_near_lossless_fits_few_k_and_finds_the_least_k_that_meets_it(photo, db, monkeypatch):
    fitted: list[int] = []
    fit = target.quantize_colors

    def counted(*args, **kwargs):
        fitted.append(args[2])
        return fit(*args, **kwargs)
    monkeypatch.setattr(target, "quantize_colors", counted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress_to(photo, psnr=db, codec="ctx")
    k = len(img.palette)
    distinct = kmeans.distinct(photo.reshape(-1, 3))
    assert k < len(distinct.colors) and img.metadata["rdo"] == 0  # (a plain file: rdo has no room there)
    assert psnr_of(img.distortion, 3) >= db
    assert psnr_of(quantize_colors(distinct.colors, distinct.counts, k - 1)[2], 3) < db  # the least K that meets it
    # 17 fits each before (16, 292, 1247, 2578, 3706, 4443, ...: colours - K halved per probe), 8 and 9 now
    assert len(fitted) <= 10


def test_crossing_near_the_lossless_k_is_linear_in_the_log_of_colours_minus_k():
    zero = (1001, 0.5)
    j = {1: 1000.0, 401: 600.0, 501: 500.0, 901: 100.0, 1001: 0.0}.get
    # J from 500 at K = 501 (500 below the lossless K) to 100 at 901 (100 below): the goal halfway in log J falls
    # where log(1002 - K) is halfway, not at K's geometric middle
    x = target._crossing(501, 901, j, (500.0 * 100.0) ** 0.5, zero)
    assert abs(np.log(1002 - x) - (np.log(501) + np.log(101)) / 2) < 1e-9
    # the lossless K itself stands in with zero's J, not the geometric middle of the bracket (708)
    assert target._crossing(501, 1001, j, 50.0, zero) > 900
    # far below it (the top under half the lossless K) and without a zero: log J linear in log K, as always
    assert target._crossing(1, 401, j, 700.0, zero) == target._crossing(1, 401, j, 700.0)


def test_closing_a_bracket_of_a_smooth_j_takes_fewer_probes_than_bisection():
    # J convex in K, as near a photo's lossless K (a 400x250 RGBA photo at 60 dB: K = 62,649 .. 63,627, bisected
    # in 10 fits of 1 s each)
    def j(k: int) -> float:
        return (70_000 - k) ** 1.3

    goal = (j(63_101) + j(63_102)) / 2  # K = 63,102 is the least that meets it
    probed: list[int] = []

    def ok(k: int) -> bool:
        probed.append(k)
        return j(k) <= goal
    assert target._neighbours(62_649, 63_627, ok, (j, goal, None)) == (63_101, 63_102)
    assert len(probed) <= 6
    probed.clear()
    assert target._neighbours(62_649, 63_627, ok) == (63_101, 63_102)  # (bisection: 10)
    assert len(probed) == 10


def test_the_codec_share_of_a_file_whose_entries_merged_is_taken_at_the_k_fitted(monkeypatch):
    # the file of K = 300 holds 290 entries (rounded entries coincided): fitting K = 290 only to code its labels both
    # ways cost a plain compress
    pixels = np.zeros((4, 4, 3), np.uint8)
    s = target._Search(pixels, 1000, "ctx", 0, 300, {"psnr": 60.0})
    img = kmq.KmqImage(np.zeros((290, 3), np.uint8), np.zeros((4, 4), np.uint16), {}, "ctx")
    s.files[(300, 0.0)] = img
    shared: list[int] = []
    monkeypatch.setattr(target, "_run", lambda *args: img)
    monkeypatch.setattr(target, "_lzma_share", lambda s, k: shared.append(k) or 2.0)
    assert target._ctx_first(s, 60.0, None) is img
    assert shared == [300]
