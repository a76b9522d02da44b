"""What a byte budget with no codec given spends beyond the bench (issue 9, round 44), where both codecs' searches run:
lzma's search after ctx's fits no plain K that could not beat ctx's file (_beats: lzma's bracket's top already has a
J over it)."""
import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

import kmq
from kmq import target

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def jpeg(name: str, size: tuple[int, int]) -> np.ndarray:
    """A sample reduced to size and saved as a JPEG at quality 30: a photo of many colours that ctx codes best
    above K = 256, and lzma's search runs too."""
    with Image.open(SAMPLES / name) as im:
        small = im.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=30)
    return np.asarray(Image.open(buf).convert("RGB"))


def fits_by_step(monkeypatch, steps: tuple[str, ...]) -> list[tuple[str, str, int]]:
    """(codec searched, step, K) of each fit made while one of the steps runs."""
    fitted: list[tuple[str, str, int]] = []
    codecs: list[str] = []
    inside: list[str] = []
    for_bytes, fit = target._for_bytes, target.quantize_colors

    def searched(s, *args, **kwargs):
        codecs.append(s.codec)
        try:
            return for_bytes(s, *args, **kwargs)
        finally:
            codecs.pop()
    monkeypatch.setattr(target, "_for_bytes", searched)
    for step in steps:
        def entered(*args, _step=step, _wrapped=getattr(target, step), **kwargs):
            inside.append(_step)
            try:
                return _wrapped(*args, **kwargs)
            finally:
                inside.pop()
        monkeypatch.setattr(target, step, entered)

    def fitting(colors, counts, k, **kw):
        if inside and codecs:
            fitted.append((codecs[-1], inside[-1], k))
        return fit(colors, counts, k, **kw)
    monkeypatch.setattr(target, "quantize_colors", fitting)
    return fitted


def compress_to(pixels: np.ndarray, max_bytes: int) -> kmq.KmqImage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return kmq.compress_to(pixels, max_bytes=max_bytes)


def test_lzma_after_ctx_fits_no_k_past_its_bracket_whose_j_cannot_beat_ctx_file(monkeypatch):
    # chelsea 180x120 as a JPEG in 20,000 bytes: ctx's file is K = 978 with rdo 47.7 %; lzma's search follows (its
    # plain labels are cheaper above K = 256) and ends with a plain K near 630 whose J is far over ctx's file's.
    # Looking past its bracket for a plain K that fits at a lower J, it fitted K = 628-630 (_past_top), none of
    # which could come before ctx's file. The same file.
    fitted = fits_by_step(monkeypatch, ("_past_top", "_neighbours"))
    chosen = compress_to(jpeg("chelsea.png", (180, 120)), 20_000)
    assert chosen.codec == "ctx" and chosen.k == 978 and chosen.metadata["rdo"] == 47.654
    assert len(chosen.to_bytes()) == 19_668
    assert [k for codec, _, k in fitted if codec == "lzma"] == []


def test_lzma_after_ctx_does_not_close_its_bracket_where_its_top_cannot_beat_ctx_file(monkeypatch):
    # The same JPEG in 22,000 bytes: ctx's file K = 1,059 with rdo 13.0 %, J under that of lzma's plain bracket's top
    # (K ~ 845): lzma's search closed its bracket to neighbours (K = 841-844, _neighbours), then looked past it
    # (845-848) for plain files that would lose to ctx's file anyway. Past ctx's file's J it still looks (K over
    # 930: a plain lzma file there could beat it). The same file. Round 46's fits of small images (h55c): ctx's file
    # K = 1,059 -> 1,056, rdo 12.979 -> 10.906 %, 21,545 -> 21,743 bytes (45.45 -> 45.53 dB); lzma's fits are
    # _past_top's K = 951-953 (with _beats always true, _neighbours' 840-843 too).
    fitted = fits_by_step(monkeypatch, ("_past_top", "_neighbours"))
    chosen = compress_to(jpeg("chelsea.png", (180, 120)), 22_000)
    assert chosen.codec == "ctx" and chosen.k == 1056 and chosen.metadata["rdo"] == 10.906
    assert len(chosen.to_bytes()) == 21_743
    lzma = [(step, k) for codec, step, k in fitted if codec == "lzma"]
    assert all(step == "_past_top" and k > 900 for step, k in lzma)
