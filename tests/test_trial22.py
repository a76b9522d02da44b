"""Round 43's pipeline trial (h52e): small things it found, each failing on the code before it."""
import warnings

import numpy as np
import pytest
from PIL import Image

import kmq


def test_a_damaged_exif_past_its_first_entries_is_warned_in_kmqs_words(tmp_path):
    """Pillow's own UserWarning came out as it was: 'Corrupt EXIF data.  Expecting to read 12 bytes but only
    got 2. ' (double and trailing spaces), not the documented 'its EXIF cannot be read (...)'."""
    pixels = np.random.default_rng(2).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "e.png", exif=b"II*\x00\x08\x00\x00\x00\x05\x00\x01\x01")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = kmq.compress(tmp_path / "e.png", 4)
    said = [str(w.message) for w in caught]
    assert said == [f"{tmp_path / 'e.png'}: its EXIF cannot be read (Corrupt EXIF data. Expecting to read 12 "
                    f"bytes but only got 2.); taken as upright"]
    assert all(issubclass(w.category, kmq.KmqWarning) for w in caught)
    assert img == kmq.compress(pixels, 4)


def test_the_warning_obeys_the_callers_filter(tmp_path):
    Image.new("RGB", (4, 3)).save(tmp_path / "e.png", exif=b"II*\x00\x08\x00\x00\x00\x05\x00\x01\x01")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(kmq.KmqWarning, match="its EXIF cannot be read"):
            kmq.compress(tmp_path / "e.png", 1)
