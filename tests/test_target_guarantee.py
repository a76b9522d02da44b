"""A target's file against a brute-force scan of every plain K: never worse (--max-bytes), never larger (--psnr).

The issue's promise, checked on small images of several kinds, each with the search's K bounded (-k) so that
the scan covers every K it may choose.
"""
import warnings

import numpy as np
import pytest
from PIL import Image

import kmq
from kmq.stats import psnr as psnr_of

K_MAX = 24
SIDE = 36


def _kinds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    from conftest import SAMPLES
    with Image.open(SAMPLES / "chelsea.png") as im:
        photo = np.asarray(im.convert("RGB"))[80:80 + SIDE, 180:180 + SIDE].astype(np.int64)
    graphics = np.full((SIDE, SIDE, 3), 255, np.uint8)
    graphics[5:20, 3:30] = (255, 0, 0)
    graphics[22:33, 10:34] = (0, 0, 255)
    graphics[::7] = 0
    graphics[:, 28:31] = (0, 200, 0)
    return {
        "smooth": np.stack([x * 255 // SIDE, y * 255 // SIDE, (x + y) * 127 // SIDE], -1).astype(np.uint8),
        "noisy": np.clip(photo + rng.normal(0, 20, photo.shape), 0, 255).astype(np.uint8),
        "graphics": graphics,
        "grey": photo.mean(-1).astype(np.uint8),
        "rgba": np.dstack([photo, np.clip(x * 8 - 60, 0, 255)]).astype(np.uint8),
    }


KINDS = _kinds()


@pytest.fixture(scope="module")
def plain_fits():
    """Every kind's plain image at every K up to K_MAX, and (by codec) each one's payload bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = {name: [kmq.compress(px, k) for k in range(1, K_MAX + 1)] for name, px in KINDS.items()}
    return fits, {}


def _plain(plain_fits, name, codec, target):
    """(bytes, PSNR) of every plain K, carrying the metadata a target's file carries (the payload encoded
    once: the metadata changes only the overhead)."""
    fits, payloads = plain_fits
    if (name, codec) not in payloads:
        payloads[name, codec] = [len(kmq.KmqImage(img.palette, img.labels, img.metadata, codec).to_bytes())
                                 - kmq.KmqImage(img.palette, img.labels, img.metadata, codec).overhead()
                                 for img in fits[name]]
    out = []
    for img, payload in zip(fits[name], payloads[name, codec]):
        meta = {**img.metadata, "rdo": 0.0, "target": target}
        out.append((kmq.KmqImage(img.palette, img.labels, meta, codec).overhead() + payload, _db(img)))
    return out


def _db(img):
    return psnr_of(img.distortion, img.channels)


# ctx on every kind; lzma where its files were not monotone in K (gradient, graphics) and on noise.
CASES = [(name, "ctx") for name in KINDS] + [("smooth", "lzma"), ("noisy", "lzma"), ("graphics", "lzma")]


@pytest.mark.parametrize("name, codec", CASES)
def test_a_byte_budget_is_no_worse_than_every_plain_k_that_fits(plain_fits, name, codec):
    sizes = [size for size, _ in _plain(plain_fits, name, codec, {"max_bytes": 1})]
    for share in (0.3, 0.85):  # budgets spread (in log bytes) over the plain files' sizes
        budget = int(min(sizes) * (max(sizes) / min(sizes)) ** share)
        img = kmq.compress_to(KINDS[name], max_bytes=budget, codec=codec, k=K_MAX)
        best = max(p for size, p in _plain(plain_fits, name, codec, {"max_bytes": budget}) if size <= budget)
        assert len(img.to_bytes()) <= budget
        assert _db(img) >= best, (budget, img.k, img.metadata["rdo"])


@pytest.mark.parametrize("name, codec", CASES)
def test_a_psnr_target_is_no_larger_than_every_plain_k_that_meets_it(plain_fits, name, codec):
    dbs = [p for _, p in _plain(plain_fits, name, codec, {"psnr": 1.0}) if np.isfinite(p)]
    for share in (0.2, 0.7):  # targets spread over the plain files' PSNRs
        db = round(min(dbs) + share * (max(dbs) - min(dbs)), 2)
        img = kmq.compress_to(KINDS[name], psnr=db, codec=codec, k=K_MAX)
        best = min(size for size, p in _plain(plain_fits, name, codec, {"psnr": db}) if p >= db)
        assert _db(img) >= db
        assert len(img.to_bytes()) <= best, (db, img.k, img.metadata["rdo"])


def test_a_budget_is_not_left_far_unused_where_rdo_tops_out():
    # Noise: rdo smooths labels away for little J, so its first file landed far under a budget (491 of 1500
    # bytes at K = 18, 21.3 dB) and the search stopped there; now it fills the budget (weaker rdo, or a
    # larger K: K = 18, rdo 27.5 %, 1,262 bytes at 22.26 dB; the search over (K, rdo) then finds K = 25 with
    # rdo 36.7 %: 1,148 bytes at 22.59 dB, a better file in fewer bytes).
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:96, 0:128]
    base = np.stack([x * 2, y * 2 + 40, 255 - x - y], -1)
    noisy = np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)
    img = kmq.compress_to(noisy, max_bytes=1500, codec="ctx")
    assert len(img.to_bytes()) <= 1500 and _db(img) > 22.5
