"""A search's rough fits (restarts seeded and ranked on a 3-bit stand-in, kmq.target._ROUGH_BITS) and the check of
its file against the real plain files (`kmq compress -k K`, kmeans.fit's own restarts) that keeps the promise."""
import warnings

import numpy as np
import pytest

import kmq
from kmq import kmeans, target
from kmq.api import quantize_colors
from kmq.stats import psnr as psnr_of

K_MAX = 24


def _noisy() -> np.ndarray:
    """200x150 of a gradient under strong noise: 30,000 colours, the restarts' 5-bit level over 10,000 bins (where
    kmeans.fit thins it and a search's fits are rough)."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:150, 0:200]
    base = np.stack([x * 255 / 199, y * 255 / 149, 128 + 0 * x], -1)
    return np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)


NOISY = _noisy()


@pytest.fixture(scope="module")
def plain_files():
    """The real plain file of every K up to K_MAX: (image, payload bytes) by K."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {}
        for k in range(1, K_MAX + 1):
            img = kmq.compress(NOISY, k)
            out[k] = (img, len(img.to_bytes()) - img.overhead())
        return out


def _plain(plain_files, target_meta):
    """(bytes, PSNR) of each real plain K with the metadata a target's file carries."""
    out = {}
    for k, (img, payload) in plain_files.items():
        meta = {**img.metadata, "rdo": 0.0, "target": target_meta}
        out[k] = (kmq.KmqImage(img.palette, img.labels, meta, img.codec).overhead() + payload,
                  psnr_of(img.distortion, img.channels))
    return out


def _db(img):
    return psnr_of(img.distortion, img.channels)


def test_fit_seeds_its_restarts_on_a_stand_in_given():
    px = NOISY.reshape(-1, 3)
    d = kmeans.distinct(px)
    levels = []

    def stand_in(level):
        levels.append(level.m)
        return target._rough_stand_in(level, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rough = quantize_colors(d.colors, d.counts, 16, stand_in=stand_in)
        real = quantize_colors(d.colors, d.counts, 16)
    assert levels and levels[0] > 10000  # the restarts' level, merged to at most 2^9 cells
    assert len(target._rough_stand_in(_level(d), 16).w) <= 1 << 9
    assert len(target._rough_stand_in(_level(d), 100).w) <= 1 << 12
    assert 0.95 < rough[2] / real[2] < 1.05
    # without one, the fit is kmeans.fit's own: the plain file stays byte for byte
    again = quantize_colors(d.colors, d.counts, 16)
    assert np.array_equal(again[0], real[0]) and np.array_equal(again[1], real[1])


def _level(d):
    return kmeans._coarse(d.colors, d.counts, 5)


def test_a_searchs_fits_are_rough_where_the_restarts_level_is_thinned():
    s = target._Search(NOISY, 256, "ctx", 0, 300, {"max_bytes": 1})
    s.j(16)
    assert s.rough == {16}
    s.j(1)  # K = 1 is the mean, no restarts
    s.j(256)  # one restart: nothing to rank, the fit kmeans.fit's own
    assert s.rough == {16}
    assert s.real().j(16) == pytest.approx(s.j(16), rel=0.05) and 16 not in s.real().rough
    # a smooth image's level is not thinned: its fits are the plain ones, as before
    smooth = target._Search(NOISY[::4, ::4] // 64 * 64, 256, "ctx", 0, 300, {"max_bytes": 1})
    smooth.j(16)
    assert not smooth.rough
    # nor with raw, whose sizes depend on K alone
    raw = target._Search(NOISY, 256, "raw", 0, 300, {"max_bytes": 1})
    raw.j(16)
    assert not raw.rough


def _worse_rough_fits(monkeypatch):
    """Rough fits made far worse than the real ones (every entry moved by 9 levels a channel, J ~15 % up),
    as an unlucky stand-in could make them: the check at the end must then find the real plain files that
    beat the search's file. Returns the K so fitted."""
    original, rough = target.quantize_colors, []

    def fit(colors, counts, k, **kw):
        stand_in = kw.pop("stand_in", None)
        palette, labels, j = original(colors, counts, k, **kw)
        if stand_in is None or j == 0:
            return palette, labels, j
        rough.append(k)
        stand_in(kmeans._coarse(colors, counts, 5))  # (marks the fit rough)
        palette = np.unique(np.clip(palette.astype(int) + 9, 0, 255).astype(np.uint8), axis=0)
        labels, d2 = kmeans.nearest(colors, palette)
        return palette, labels, int(np.dot(d2.astype(np.int64), counts)) / int(counts.sum())
    monkeypatch.setattr(target, "quantize_colors", fit)
    return rough


@pytest.mark.parametrize("worse", [False, True])
@pytest.mark.parametrize("share", [0.3, 0.7])
def test_a_budget_with_rough_fits_is_no_worse_than_every_real_plain_k(plain_files, monkeypatch, share, worse):
    rough = _worse_rough_fits(monkeypatch) if worse else [True]
    sizes = [b for b, _ in _plain(plain_files, {"max_bytes": 1}).values()]
    budget = int(min(sizes) * (max(sizes) / min(sizes)) ** share)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress_to(NOISY, max_bytes=budget, codec="ctx", k=K_MAX)
    best = max(p for b, p in _plain(plain_files, {"max_bytes": budget}).values() if b <= budget)
    assert rough and len(img.to_bytes()) <= budget and _db(img) >= best


@pytest.mark.parametrize("worse", [False, True])
@pytest.mark.parametrize("share", [0.3, 0.7])
def test_a_psnr_target_with_rough_fits_is_no_larger_than_every_real_plain_k(plain_files, monkeypatch, share, worse):
    rough = _worse_rough_fits(monkeypatch) if worse else [True]
    dbs = [p for _, p in _plain(plain_files, {"psnr": 1.0}).values()]
    db = round(min(dbs) + share * (max(dbs) - min(dbs)), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress_to(NOISY, psnr=db, codec="ctx", k=K_MAX)
    best = min(b for b, p in _plain(plain_files, {"psnr": db}).values() if p >= db)
    assert rough and _db(img) >= db and len(img.to_bytes()) <= best


def test_a_real_plain_file_chosen_by_the_check_is_the_plain_compress_file(monkeypatch):
    # With rdo taken away (every run keeps the nearest labels), a budget's best file is a plain one: on
    # rough fits the bracket's lo, which the check replaces by the real plain file of the same K or a
    # better one; that file is `kmq compress -k K`'s pixels with the target's metadata.
    assert _worse_rough_fits(monkeypatch) is not None
    from kmq import api
    monkeypatch.setattr(api, "_rdo", lambda pixels, distinct, palette, distortion, *a, **kw: (
        palette, distinct.spread(kmeans.nearest(distinct.colors, palette)[0].astype(np.uint16)),
        distortion, False))
    adopted, adopt = [], target._Search.adopt
    monkeypatch.setattr(target._Search, "adopt", lambda self, img: adopted.append(img) or adopt(self, img))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress_to(NOISY, max_bytes=9000, codec="ctx", k=K_MAX)
        plain = kmq.compress(NOISY, img.k, codec="ctx")
    assert adopted == [img] and len(img.to_bytes()) <= 9000
    assert np.array_equal(img.palette, plain.palette) and np.array_equal(img.labels, plain.labels)
    assert img.metadata["target"] == {"max_bytes": 9000} and img.metadata["rdo"] == 0


def test_a_psnr_target_only_the_real_fit_of_the_largest_k_meets_is_met(plain_files, monkeypatch):
    # The rough fit of the largest K allowed misses the target where its real fit meets it: not "out of reach"
    # (the search's bracket is found again from the real fit).
    _worse_rough_fits(monkeypatch)
    img_max = plain_files[K_MAX][0]
    db = round(psnr_of(img_max.distortion, 3) - 0.005, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress_to(NOISY, psnr=db, codec="ctx", k=K_MAX)
    best = min(b for b, p in _plain(plain_files, {"psnr": db}).values() if p >= db)
    assert _db(img) >= db and len(img.to_bytes()) <= best
