"""A search's rough fits where kmeans.fit runs its restarts on the colours themselves (kmq.target._ROUGH_COLOURS: a
small image of many colours below K = 64): K-Means on the colours merged by 4-bit cell, a few Lloyd updates on the
colours; and the check against the real plain files (`kmq compress -k K`) that keeps the promise."""
import warnings

import numpy as np
import pytest

import kmq
from kmq import target
from kmq.api import quantize_colors

from test_target import _noisy_vignette
from test_target_rough import _db, _plain, plain_files_of

K_MAX = 24
# 123x141 RGBA under a vignette: 10,156 colours, 17,343 pixels (fits at K <= 64 run on the colours themselves)
VIGNETTE = _noisy_vignette(123, 141)


@pytest.fixture(scope="module")
def plain_files():
    return plain_files_of(VIGNETTE, K_MAX, "ctx")


def test_a_searchs_fits_of_many_colours_on_the_colours_are_rough():
    s = target._Search(VIGNETTE, 1 << 16, "ctx", 0, 300, {"max_bytes": 1})
    j16 = s.j(16)
    assert s.rough == {16}
    palette, labels, _ = s.fitted[16]
    # a valid fit: each colour's label its nearest entry, J that of those labels, entries in decreasing share
    d = s.distinct
    d2 = ((d.colors[:, None, :].astype(int) - palette[None, :, :].astype(int)) ** 2).sum(-1)
    assert np.array_equal(d2[np.arange(len(labels)), labels], d2.min(1))
    assert j16 == pytest.approx(np.dot(d2.min(1), d.counts) / d.counts.sum())
    share = np.bincount(labels, d.counts, minlength=len(palette))
    assert np.all(np.diff(share) <= 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real = quantize_colors(d.colors, d.counts, 16)
    assert 0.97 < j16 / real[2] < 1.03
    assert s.real().j(16) == real[2] and 16 not in s.real().rough
    s.j(1)  # the mean
    s.j(200)  # on the histograms (colours x K over kmeans._COARSE_WORK): kmeans.fit's own
    assert s.rough == {16}
    # few colours: the fit is the plain one
    few = target._Search(VIGNETTE // 32 * 32, 1 << 16, "ctx", 0, 300, {"max_bytes": 1})
    few.j(16)
    assert not few.rough
    raw = target._Search(VIGNETTE, 1 << 16, "raw", 0, 300, {"max_bytes": 1})
    raw.j(16)
    assert not raw.rough


def _counted(monkeypatch):
    made = []
    rough = target._rough_on_cells
    monkeypatch.setattr(target, "_rough_on_cells", lambda *a: made.append(a[2]) or rough(*a))
    return made


@pytest.mark.parametrize("share", [0.3, 0.7])
def test_a_budget_with_rough_colour_fits_is_no_worse_than_every_real_plain_k(plain_files, monkeypatch, share):
    made = _counted(monkeypatch)
    sizes = [b for b, _ in _plain(plain_files, {"max_bytes": 1}).values()]
    budget = int(min(sizes) * (max(sizes) / min(sizes)) ** share)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress_to(VIGNETTE, max_bytes=budget, codec="ctx", k=K_MAX)
    best = max(p for b, p in _plain(plain_files, {"max_bytes": budget}).values() if b <= budget)
    assert made and len(img.to_bytes()) <= budget and _db(img) >= best


def test_a_psnr_target_with_rough_colour_fits_is_no_larger_than_every_real_plain_k(plain_files, monkeypatch):
    made = _counted(monkeypatch)
    dbs = [p for _, p in _plain(plain_files, {"psnr": 1.0}).values()]
    db = round(min(dbs) + 0.6 * (max(dbs) - min(dbs)), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress_to(VIGNETTE, psnr=db, codec="ctx", k=K_MAX)
    best = min(b for b, p in _plain(plain_files, {"psnr": db}).values() if p >= db)
    assert made and _db(img) >= db and len(img.to_bytes()) <= best
