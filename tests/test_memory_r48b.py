"""Round 48 (h57h): a target's search on a large image peaked inside an rdo run on the whole image while its K's
warm Prepared kept two earlier runs beside it (~90 MB each at 24 MP, K = 153): a run pushed them out only once
made. Now the runs a Prepared lets go go before the run, and from rdo._ONE_RUN_AT pixels it keeps one. The same
results: a run depends on nothing but its (lambda, sweeps). Here rdo's sample is shrunk so that a small image is
larger than its sample (its runs are then the image's, kept by a warm Prepared), and the threshold lowered."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from kmq import kmeans, rdo
from kmq.api import quantize_colors

_PCTS = (4.0, 12.0, 4.0, 25.0, 12.0, 8.0)


@pytest.fixture
def photo(samples, monkeypatch) -> np.ndarray:
    """A noisy photo of 144 x 150 pixels, over twice rdo's (shrunk) sample of one 64 x 64 tile."""
    monkeypatch.setattr(rdo, "_SAMPLE", 1 << 12)
    with Image.open(samples / "chelsea.png") as im:
        crop = np.asarray(im.convert("RGB"))[40:184, 100:250]
    rng = np.random.default_rng(48)
    return np.clip(crop.astype(np.int16) + rng.integers(-6, 7, crop.shape), 0, 255).astype(np.uint8)


def _search(photo: np.ndarray, monkeypatch) -> tuple[list, list[int]]:
    """optimise at _PCTS on one warm Prepared (as a target's search at one K): its results, and how many runs
    the Prepared held while each run on the whole image was made."""
    distinct = kmeans.distinct(photo.reshape(-1, 3))
    palette = quantize_colors(distinct.colors, distinct.counts, 24)[0]
    prepared = rdo.prepare(photo, distinct, palette, warm=True)
    assert not prepared.whole
    held = []
    run = rdo._run

    def counting(s, *args, **kwargs):
        if s.height == photo.shape[0]:
            held.append(len(prepared.runs))
        return run(s, *args, **kwargs)

    monkeypatch.setattr(rdo, "_run", counting)
    out = [tuple(np.copy(a) if isinstance(a, np.ndarray) else a
                 for a in rdo.optimise(photo, distinct, palette, pct, prepared)) for pct in _PCTS]
    monkeypatch.setattr(rdo, "_run", run)
    return out, held


def test_no_run_let_go_is_alive_beside_the_run_made(photo, monkeypatch):
    _, held = _search(photo, monkeypatch)
    assert len(held) >= 3
    # (before: the runs kept, up to two, were let go only after the new one was made)
    assert max(held) <= rdo._RUNS_KEPT - 1


def test_a_large_image_keeps_one_run_and_the_same_results(photo, monkeypatch):
    kept, _ = _search(photo, monkeypatch)
    monkeypatch.setattr(rdo, "_ONE_RUN_AT", 0, raising=False)
    one, held = _search(photo, monkeypatch)
    assert len(held) >= 3
    assert held == [0] * len(held)
    assert len(one) == len(kept)
    for a, b in zip(one, kept):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert a[2] == b[2]
