"""--rdo on an image larger than its sample spends the J its sample's lambda left unspent (round 47)."""
import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import kmeans, rdo
from kmq.codecs import ctx

PCT = 2.0


@pytest.fixture
def small_sample(monkeypatch):
    # A 64x64 tile (the image's top-left) stands in for the sample: a 128x192 crop is then larger than it, as
    # a photo of over 2 x 2^17 pixels is larger than its mosaic of tiles.
    monkeypatch.setattr(rdo, "_SAMPLE", 1 << 12)


@pytest.fixture
def crop(samples) -> np.ndarray:
    with Image.open(samples / "chelsea.png") as im:
        return np.asarray(im.convert("RGB"))[200:328, 200:392].copy()


def spent_and_bytes(pixels: np.ndarray, palette: np.ndarray) -> tuple[float, int, float, float]:
    """optimise at PCT: the share of the J allowed it spent, its ctx payload bytes, its J and the budget's."""
    distinct = kmeans.distinct(pixels.reshape(-1, pixels.shape[2]))
    j0 = rdo.prepare(pixels, distinct, palette).plain.total / (pixels.shape[0] * pixels.shape[1])
    out, labels, j = rdo.optimise(pixels, distinct, palette, PCT)
    size = len(ctx.encode(labels.reshape(pixels.shape[:2]), out))
    return (j / j0 - 1) / (PCT / 100), size, j, j0 * (1 + PCT / 100)


def test_an_image_larger_than_its_sample_spends_its_budget_for_a_cheaper_payload(small_sample, crop, monkeypatch):
    # At the sample's lambda this crop's run added 61 % of the J allowed (K = 8); a second run from it at a
    # lambda raised by the share left spends 99.9 % and codes the labels in 1,323 bytes, not 1,405.
    palette = kmq.compress(crop, 8, codec="ctx").palette
    spent, size, j, budget = spent_and_bytes(crop, palette)
    assert j <= budget
    assert spent > 0.97
    monkeypatch.setattr(rdo, "_SPENT", 0.0, raising=False)  # (no second run)
    first_spent, first_size, first_j, _ = spent_and_bytes(crop, palette)
    assert first_spent < 0.7 and first_j < j
    assert size < 0.96 * first_size


def test_the_second_run_keeps_the_file_bound_and_its_true_j(small_sample, crop):
    plain = kmq.compress(crop, 8, codec="ctx")
    img = kmq.compress(crop, 8, codec="ctx", rdo=PCT)
    assert plain.distortion * (1 + PCT / 100 - 1e-3) < img.distortion <= plain.distortion * (1 + PCT / 100)
    decoded = img.decode().reshape(crop.shape).astype(np.int64)
    assert img.distortion == pytest.approx(float(((decoded - crop) ** 2).sum(axis=2).mean()), rel=1e-12)
    assert len(img.to_bytes()) < len(plain.to_bytes())
    assert kmq.compress(crop, 8, codec="ctx", rdo=PCT).to_bytes() == img.to_bytes()
