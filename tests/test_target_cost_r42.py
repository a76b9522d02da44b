"""What a byte budget's search spends near its file's K (issue 9, round 42): where the best file is a plain K
from K = 64 on, the bracket is closed to neighbours by probes aimed where the plain bytes reach the budget, not by
bisection: each probe is a real fit, a plain compress there (flower.jpg's JPEG at 480x320 in 100 kB: 10 fits
-> 4 over ctx's and lzma's searches, the same file)."""
import warnings

import numpy as np

import kmq
from kmq import target


def _wavy() -> np.ndarray:
    """A 96x64 gradient with a wave and noise: 6,136 colours, so a budget near 14 kB asks K ~ 2,000."""
    y, x = np.mgrid[0:64, 0:96]
    base = np.stack([x * 255 / 95, y * 255 / 63, 128 + 60 * np.sin(x / 7.0) * np.cos(y / 5.0)], axis=-1)
    return np.clip(base + np.random.default_rng(2).normal(0, 10, base.shape), 0, 255).round().astype(np.uint8)


def fits_inside(monkeypatch, step: str) -> list[int]:
    """The K fitted while target.<step> runs (each a real fit: a plain compress's worth of CPU at large K)."""
    fitted: list[int] = []
    depth = [0]
    wrapped, fit = getattr(target, step), target.quantize_colors

    def entered(*args, **kwargs):
        depth[0] += 1
        try:
            return wrapped(*args, **kwargs)
        finally:
            depth[0] -= 1
    monkeypatch.setattr(target, step, entered)
    monkeypatch.setattr(target, "quantize_colors",
                        lambda colors, counts, k, **kw: (depth[0] and fitted.append(k), fit(colors, counts, k, **kw))[1])
    return fitted


def test_a_budget_closes_its_plain_bracket_where_the_bytes_reach_it(monkeypatch):
    # In 14,481 bytes (ctx) the file is K = 2,071 with rdo 0.542 %; its plain bracket, closed to neighbours, took 5
    # fits by bisection (2,066, 2,070, 2,072, 2,073, 2,074) and takes 2 aimed by the plain bytes of its ends (2,073,
    # 2,074). The same file either way.
    fitted = fits_inside(monkeypatch, "_neighbours")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress_to(_wavy(), max_bytes=14_481, codec="ctx")
    assert len(img.to_bytes()) <= 14_481 and img.k == 2071
    assert 1 <= len(fitted) <= 2


def test_lzma_budgets_keep_bisection_where_its_plain_bytes_jitter():
    # lzma's plain bytes for K = 779-783 here: 8,947 / 8,987 / 8,951 / 8,960 / 9,016: aimed by bytes, the bracket
    # closed at K = 779 (J worse than plain K = 782's, which fits: the promise broken); bisection finds 782.
    rng = np.random.default_rng(5)
    image = (rng.integers(0, 256, (60, 80, 3)) // 8 * 8).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kmq.KmqWarning)
        found = kmq.compress_to(image, max_bytes=9000, codec="lzma")
        plain = kmq.compress(image, 782, codec="lzma")
    assert len(plain.to_bytes()) <= 9000
    assert found.distortion <= plain.distortion
