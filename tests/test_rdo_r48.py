"""--rdo on an image larger than its sample: the image's run makes two rounds of sweeps and refinement (round 48)."""
import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import kmeans, rdo
from kmq.codecs import ctx

# (small_sample: a 128x192 crop is then larger than its sample, as a photo of over 2 x 2^17 pixels is)
from test_rdo_r47 import PCT, small_sample  # noqa: F401 - small_sample is a fixture


@pytest.fixture
def crop(samples) -> np.ndarray:
    with Image.open(samples / "astronaut.png") as im:
        return np.asarray(im.convert("RGB"))[:128, :192].copy()


def payload_and_j(pixels: np.ndarray, palette: np.ndarray) -> tuple[int, float, float]:
    """optimise at PCT: its ctx payload bytes, its J and the budget's J."""
    distinct = kmeans.distinct(pixels.reshape(-1, pixels.shape[2]))
    j0 = rdo.prepare(pixels, distinct, palette).plain.total / (pixels.shape[0] * pixels.shape[1])
    out, labels, j = rdo.optimise(pixels, distinct, palette, PCT)
    return len(ctx.encode(labels.reshape(pixels.shape[:2]), out)), j, j0 * (1 + PCT / 100)


def test_a_second_round_on_the_image_codes_its_labels_cheaper_within_the_budget(small_sample, crop, monkeypatch):
    # K = 8: one round's labels cost 1,015 bytes, two rounds' 997, both at J 1.0199x the nearest labelling's.
    palette = kmq.compress(crop, 8, codec="ctx").palette
    size, j, budget = payload_and_j(crop, palette)
    assert j <= budget
    monkeypatch.setattr(rdo, "_IMAGE_ROUNDS", 1, raising=False)
    first_size, first_j, _ = payload_and_j(crop, palette)
    assert first_j <= budget
    assert size < 0.99 * first_size


def test_the_file_keeps_the_j_bound_its_true_j_and_its_bytes(small_sample, crop):
    plain = kmq.compress(crop, 8, codec="ctx")
    img = kmq.compress(crop, 8, codec="ctx", rdo=PCT)
    assert plain.distortion < img.distortion <= plain.distortion * (1 + PCT / 100)
    decoded = img.decode().reshape(crop.shape).astype(np.int64)
    assert img.distortion == pytest.approx(float(((decoded - crop) ** 2).sum(axis=2).mean()), rel=1e-12)
    assert len(img.to_bytes()) < len(plain.to_bytes())
    assert kmq.compress(crop, 8, codec="ctx", rdo=PCT).to_bytes() == img.to_bytes()


def test_a_target_search_and_strong_rdo_keep_one_round(small_sample, crop):
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette = kmq.compress(crop, 8, codec="ctx").palette
    assert rdo._image_rounds(rdo.prepare(crop, distinct, palette), rdo._sweeps(PCT)) == 2
    assert rdo._image_rounds(rdo.prepare(crop, distinct, palette, warm=True), rdo._sweeps(PCT)) == 1
    assert rdo._image_rounds(rdo.prepare(crop, distinct, palette), rdo._sweeps(30.0)) == 1
