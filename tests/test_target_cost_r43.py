"""What a byte budget's search spends past ctx's K = 256 edge (issue 9, round 43), where every fit is a large-K one
(kmeans' large-K path: a plain compress there, 4-10x a fit under it). lzma's search after ctx's file lands above
K = 256 probes rdo first, as at the edge (_useless_rdo, at _HIGH_LEAN_SHARE): where rdo saves little (noise), no K
is fitted for rdo beyond the plain bracket. ctx's walk at one J (_level) does not cross K = 256 from a best under
it."""
import warnings

import numpy as np

import kmq
from test_target_cost_r42 import fits_inside


def noisy_gradient() -> np.ndarray:
    """test_target's 120x160 noisy gradient (sigma 12): 18,000-odd colours, lzma's labels cheaper than ctx's above
    K = 256."""
    y, x = np.mgrid[0:120, 0:160]
    base = np.stack([x * 255 / 159, y * 255 / 119, (x + y) * 255 / 278], axis=-1)
    return np.clip(base + np.random.default_rng(0).normal(0, 12, base.shape), 0, 255).round().astype(np.uint8)


def test_lzma_after_a_ctx_file_above_k_256_fits_no_k_for_rdo_where_rdo_saves_little(monkeypatch):
    # In 22,000 bytes ctx's search lands above K = 256 and lzma's runs too; its file is plain K = 863 (21,948 bytes).
    # Its probe at lo (K = 740, +25 % J asked) kept 0.96 of the plain bytes; the old code fitted K = 1,080, 1,210
    # (the search over (K, rdo)) and 2,220 (rdo at 3 lo), each a plain compress there, for rdo files that lost.
    # Round 46's fits of small images (h55c): plain K = 863 -> 866 (21,948 -> 21,960 bytes, 35.049 -> 35.056 dB);
    # lzma's fits reach K = 890 (without _useless_rdo 1,078, 1,207, 1,263 and 2,226).
    fitted = fits_inside(monkeypatch, "_better_with_lzma")  # lzma's search runs inside it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chosen = kmq.compress_to(noisy_gradient(), max_bytes=22_000)
    assert chosen.codec == "lzma" and chosen.k == 866 and len(chosen.to_bytes()) == 21_960
    assert fitted and max(fitted) <= 1.05 * chosen.k


def test_the_walk_at_one_j_stays_under_ctx_edge_from_a_best_under_it(monkeypatch):
    # With ctx in 15,241 bytes (1.5x its plain K = 256 file) the best is plain K = 256, far under the budget: the J
    # it would reach at the budget lies past K = 256, and _level walked K = 810, 648 and 1,012 (large-K fits whose
    # ctx files, escapes ranked by label, cannot fit). As _rdo_k, it no longer crosses K = 256 from below; the same
    # file, K = 256 plain in 10,200 bytes (10,226 since round 47's stand-in seeding of one-run fits, h56d).
    fitted = fits_inside(monkeypatch, "_level")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chosen = kmq.compress_to(noisy_gradient(), max_bytes=15_241, codec="ctx")
    assert chosen.k == 256 and chosen.metadata["rdo"] == 0 and len(chosen.to_bytes()) == 10_226
    assert all(k <= 256 for k in fitted)
