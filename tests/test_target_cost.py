"""What a target's search spends its CPU on (issue 9: "a target costs at most about 8 plain compresses"): steps
whose result no later choice reads are not made. With lzma every file the search weighs is encoded to be
sized, so rdo's own judgement of a run by ctx's bytes (rdo._worse: two ctx sizings per run where the image is
its own sample) decides nothing the search does not decide again, exactly, from lzma's bytes."""
import warnings

import numpy as np
import pytest

import kmq
from kmq import kmeans, rdo
from kmq.codecs import ctx


def _grey() -> np.ndarray:
    """A smooth grey photo-like image with noise (its own rdo sample: 96 x 80 pixels)."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:80, 0:96]
    base = 128 + 60 * np.sin(x / 9.0) * np.cos(y / 13.0) + 0.6 * x
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)[..., None]


def _ctx_sizings(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = ctx.payload_bounds
    monkeypatch.setattr(ctx, "payload_bounds", lambda labels, palette: (calls.append(labels.size),
                                                                        original(labels, palette))[1])
    return calls


@pytest.mark.parametrize("budget", [1500, 2500])
def test_lzma_budget_search_sizes_nothing_with_ctx(monkeypatch, budget):
    pixels = _grey()
    calls = _ctx_sizings(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress_to(pixels, max_bytes=budget, codec="lzma")
    assert img.codec == "lzma" and len(img.to_bytes()) <= budget
    assert img.metadata["rdo"] > 0  # (rdo ran: the case the judgement was made in)
    assert calls == []


def test_lzma_psnr_search_sizes_nothing_with_ctx(monkeypatch):
    pixels = _grey()
    calls = _ctx_sizings(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress_to(pixels, psnr=34, codec="lzma")
    assert img.codec == "lzma" and calls == []


def test_unjudged_run_is_the_judged_one_when_the_judgement_keeps_it():
    """Without the judgement a warm run returns the labelling the judged one returns when ctx finds it cheaper
    (the same palette, labels and J, in a file's order once api orders them)."""
    pixels = _grey()
    distinct = kmeans.distinct(pixels.reshape(-1, 1))
    palette = kmq.api.quantize_distinct(distinct, 8, seed=0, max_iter=300)[0]
    judged = rdo.optimise(pixels, distinct, palette, 30.0, rdo.prepare(pixels, distinct, palette, warm=True))
    free = rdo.optimise(pixels, distinct, palette, 30.0,
                        rdo.prepare(pixels, distinct, palette, warm=True, judge=False))
    assert judged[2] == free[2]
    order = lambda p, l: kmq.api._by_share(p, np.asarray(l).reshape(-1).astype(np.uint16), None)  # noqa: E731
    (pj, lj), (pf, lf) = order(*judged[:2]), order(*free[:2])
    np.testing.assert_array_equal(pj, pf)
    np.testing.assert_array_equal(lj, lf)


def test_cold_runs_are_always_judged():
    """`--rdo` (no warm search) keeps its promise of a payload no larger than the nearest labelling's."""
    pixels = _grey()
    distinct = kmeans.distinct(pixels.reshape(-1, 1))
    palette = kmq.api.quantize_distinct(distinct, 8, seed=0, max_iter=300)[0]
    assert rdo.prepare(pixels, distinct, palette, judge=False).judge
    assert rdo.prepare(pixels, distinct, palette, warm=True).judge
    assert not rdo.prepare(pixels, distinct, palette, warm=True, judge=False).judge


@pytest.mark.parametrize("codec, target", [("ctx", {"max_bytes": 1500}), ("lzma", {"max_bytes": 2500}),
                                           ("ctx", {"psnr": 34})])
def test_target_rdo_files_come_in_file_order_without_a_recount(monkeypatch, codec, target):
    # rdo.optimise(ordered=True) hands back a target's rdo files as a file holds them (entries by decreasing
    # share, ties by colour), from the counts it kept: api._by_share need not count each file's labels again
    # (a 1920x1200 screenshot in 40 kB: 15 files, 0.24 s of a 2.2 s search).
    from kmq import api

    recounts, runs = [], []
    by_share, optimise = api._by_share, rdo.optimise
    monkeypatch.setattr(api, "_by_share", lambda palette, labels, counts: (
        recounts.append(counts is None), by_share(palette, labels, counts))[1])
    monkeypatch.setattr(rdo, "optimise", lambda *a, **kw: (runs.append(kw.get("ordered")), optimise(*a, **kw))[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress_to(_grey(), codec=codec, **target)
    assert len(runs) >= 2 and all(runs)  # (the search made rdo files, each asked for in the file's order)
    assert not any(recounts)
    share = np.bincount(img.labels.ravel(), minlength=img.k)
    assert np.all(share[:-1] >= share[1:])
