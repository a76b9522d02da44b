from pathlib import Path

import numpy as np
import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def rgb_small() -> np.ndarray:
    """A 13 x 11 RGB crop of a real photo: small enough for fast tests, varied enough to cluster."""
    from PIL import Image
    with Image.open(SAMPLES / "chelsea.png") as im:
        return np.asarray(im.convert("RGB"))[100:113, 200:211].copy()
