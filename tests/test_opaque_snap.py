"""RGBA entries that round to nearly opaque are stored opaque (kmq.api.OPAQUE_FROM)."""
from __future__ import annotations

import numpy as np
import pytest

import kmq


def _image(opaque: int, rim_alpha: int, rim: int) -> np.ndarray:
    """One colour: `opaque` pixels at alpha 255 and `rim` at rim_alpha, in a row."""
    alpha = np.array([255] * opaque + [rim_alpha] * rim, np.uint8)
    rgba = np.zeros((1, len(alpha), 4), np.uint8)
    rgba[..., :3] = (10, 20, 30)
    rgba[..., 3] = alpha
    return rgba


def test_an_entry_rounding_to_253_is_stored_opaque():
    # Mean alpha (97 * 255 + 3 * 200) / 100 = 253.35: rounded 253, stored 255. J counts the rim's error
    # against 255: 3 * 55^2 / 100 = 90.75 (253 would give (97 * 2^2 + 3 * 53^2) / 100 = 88.15).
    img = kmq.compress(_image(97, 200, 3), 1)
    assert img.palette.tolist() == [[10, 20, 30, 255]]
    assert img.distortion == pytest.approx(90.75)
    assert (img.decode()[..., 3][0, :97] == 255).all()


def test_an_entry_below_253_keeps_its_alpha():
    # Mean (96 * 255 + 4 * 180) / 100 = 252.0 stays: J = (96 * 3^2 + 4 * 72^2) / 100 = 216.0.
    img = kmq.compress(_image(96, 180, 4), 1)
    assert img.palette.tolist() == [[10, 20, 30, 252]]
    assert img.distortion == pytest.approx(216.0)


def test_an_image_all_of_alpha_254_keeps_it():
    # No opaque pixel for a rim to pull down: the entry keeps the pixels' own alpha (was 255: J + 1).
    rgba = _image(0, 254, 10)
    rgba[0, 5:, :3] = (200, 100, 50)  # two colours, K = 1: a lossy fit, so the snap is reached
    img = kmq.compress(rgba, 1)
    # Centroid (105, 60, 40, 254): every pixel 95^2 + 40^2 + 10^2 = 10725 away; alpha 255 would add 1.
    assert img.palette.tolist() == [[105, 60, 40, 254]]
    assert img.distortion == pytest.approx(10725.0)
