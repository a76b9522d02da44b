"""What a target with no codec given spends beyond the bench (issue 9, round 45): a labelling is sized by ctx's
bounds once per search. _lzma_share weighs lzma's coding of a plain file's labels against ctx's bounds of the same
labels, which ctx's search had just computed to size that file (the bracket's top of a graphic, or ctx's file at
its K = 256 edge): a second ctx sizing, 0.5-0.9 of a plain compress, for the same numbers."""
import hashlib
import sys
import warnings
from collections import Counter

import numpy as np
import pytest
from PIL import Image, ImageDraw

import kmq
from kmq.codecs import ctx


def graphic(width: int, height: int) -> np.ndarray:
    """Flat shapes drawn 4x and reduced (anti-aliased edges, a few dozen colours): a flat image, so with no codec
    ctx's and lzma's codings of the bracket's top are compared (_lzma_share)."""
    big = Image.new("RGB", (480, 320), "white")
    draw = ImageDraw.Draw(big)
    draw.rectangle((40, 40, 200, 160), fill=(255, 0, 0))
    draw.ellipse((250, 60, 440, 280), fill=(0, 0, 255))
    draw.line((20, 300, 460, 200), fill=(0, 0, 0), width=9)
    draw.rectangle((300, 20, 330, 300), fill=(0, 90, 0))
    return np.asarray(big.resize((width, height), Image.Resampling.LANCZOS))


def noisy_gradient(height: int, width: int, sigma: float) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / (width - 1), y * 255 / (height - 1), (x + y) * 255 / (height + width - 2)], axis=-1)
    noise = np.random.default_rng(0).normal(0, sigma, base.shape)
    return np.clip(base + noise, 0, 255).round().astype(np.uint8)


CASES = {
    # (image, target): the file the search gave before (codec, K, rdo, bytes), which must not change
    "graphic 96x64 at 35 dB": (lambda: graphic(96, 64), {"psnr": 35}),
    "graphic 120x80 in 800 bytes": (lambda: graphic(120, 80), {"max_bytes": 800}),
    # ctx's file stops at K = 256 with room left (_at_edge): the share is taken at that file's K
    "noisy gradient 60x80 in 3,600 bytes": (lambda: noisy_gradient(60, 80, 10), {"max_bytes": 3600}),
}


def sized_twice(monkeypatch, pixels: np.ndarray, spec: dict) -> tuple[kmq.KmqImage, int, int]:
    """The search's file, the labellings the search (kmq.target itself, not rdo's judging of its runs) gave
    ctx.payload_bounds, and how many of those calls repeated one."""
    seen: Counter = Counter()
    original = ctx.payload_bounds

    def bounds(labels, palette, *args, **kwargs):
        if sys._getframe(1).f_globals.get("__name__") == "kmq.target":
            key = np.ascontiguousarray(labels, dtype=np.uint16).tobytes() + np.asarray(palette).tobytes()
            seen[hashlib.sha256(key).digest()] += 1
        return original(labels, palette, *args, **kwargs)
    monkeypatch.setattr(ctx, "payload_bounds", bounds)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress_to(pixels, **spec)
    return img, sum(seen.values()), sum(n - 1 for n in seen.values())


@pytest.mark.parametrize("name", list(CASES))
def test_a_labelling_is_sized_once(monkeypatch, name):
    make, spec = CASES[name]
    img, calls, repeated = sized_twice(monkeypatch, make(), spec)
    assert calls > 0
    assert repeated == 0, f"{repeated} of {calls} ctx sizings repeated a labelling already sized"


def test_the_same_files(monkeypatch):
    """The files are the ones the searches gave before the cut (its numbers: ctx's bounds of the same labels)."""
    got = {}
    for name, (make, spec) in CASES.items():
        img, _, _ = sized_twice(monkeypatch, make(), spec)
        got[name] = (img.codec, img.k, img.metadata.get("rdo", 0), len(img.to_bytes()))
    assert got == EXPECTED


EXPECTED = {
    "graphic 96x64 at 35 dB": ("lzma", 14, 1.485, 484),
    "graphic 120x80 in 800 bytes": ("lzma", 45, 54.075, 759),
    "noisy gradient 60x80 in 3,600 bytes": ("ctx", 256, 0.0, 3114),
}
