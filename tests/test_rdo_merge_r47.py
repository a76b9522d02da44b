"""Round 47's merge of rdo's top-up (h56b) with its shared labels (h56c): where the refined palette's own nearest
labelling is over the budget, `_within` goes back to the first palette and finds the pixels off their colour's
entry with `_off_positions`, whether the run's labels are the plain labelling's own (a single-use run) or a copy.
"""
import numpy as np
import pytest

from kmq import api, kmeans, rdo


def _image():
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:600, 0:500]
    rgb = np.stack([xx * 255 / 499, yy * 255 / 599, (xx + yy) * 255 / 1098], axis=2) + rng.normal(0, 10, (600, 500, 3))
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("k, lam, sweeps", [(8, 400.0, 3), (32, 400.0, 3)])
def test_back_to_the_first_palette_is_the_same_with_shared_or_copied_labels(k, lam, sweeps):
    image = _image()
    pixels = image.reshape(-1, 3)
    distinct = kmeans.distinct(pixels)
    palette = np.asarray(api.quantize(pixels, k)[0], np.uint8)
    results = []
    for take in (True, False):
        prepared = rdo.prepare(image, distinct, palette)
        plain_total = prepared.plain.total
        s = rdo._image_run(prepared, lam, sweeps, take)
        over = s.nearest_total()
        assert over > plain_total  # the refined palette's nearest labelling costs more J than the first's
        budget = (plain_total + over) // 2
        rdo._within(s, prepared.plain, palette, budget)
        labels = s.labels.reshape(-1).astype(np.int64)
        assert np.array_equal(s.palette, palette)  # back to the first palette
        assert np.square(palette.astype(np.int64)[labels] - pixels).sum() == s.total <= budget  # J exact, within
        off = np.flatnonzero(labels != s.near(np.arange(labels.size)))
        assert np.isin(off, s.moved).all()  # every pixel off its nearest entry is a move the back-off knows
        results.append((s.labels.tobytes(), s.total))
    assert results[0] == results[1]
