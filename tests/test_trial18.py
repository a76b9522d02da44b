"""Round 19's new-user findings, each test failing before its fix."""
import warnings

import numpy as np
import pytest

import kmq
from kmq import api


def test_a_writers_own_warning_names_the_file_written(tmp_path, monkeypatch):
    # Pillow's "IM image format is deprecated" named no file: in a bulk decompress, no one could tell which.
    img = kmq.compress(np.zeros((2, 3, 3), np.uint8), k=1)
    real = api.save_quantized

    def warning_save(*args, **kwargs):
        warnings.warn("IM image format is deprecated", DeprecationWarning)
        return real(*args, **kwargs)
    monkeypatch.setattr(api, "save_quantized", warning_save)
    with pytest.warns(DeprecationWarning) as caught:
        api.export(img, tmp_path / "x.png")
    assert [str(w.message) for w in caught] == [f"{tmp_path / 'x.png'}: IM image format is deprecated"]
