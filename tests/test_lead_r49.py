"""Round 49 (lead): kmq.api.load takes every source kmq.stats and kmq.segment take, and the CLI's names."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import api


@pytest.fixture()
def png(tmp_path):
    pixels = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    path = tmp_path / "p.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, io.BytesIO])
def test_load_reads_bytes_and_streams_as_it_reads_a_path(png, wrap):
    path, pixels = png
    data = path.read_bytes()
    loaded, size = api.load(wrap(data))
    assert size == len(data) and np.array_equal(loaded, pixels)
    assert np.array_equal(api.load(path)[0], loaded)


def test_load_names_an_unnamed_kmq_in_its_errors():
    data = kmq.compress(np.zeros((2, 3, 3), np.uint8), k=1).to_bytes()
    assert api.load(data)[0].k == 1
    with pytest.raises(kmq.FormatError, match="^upload: "):
        api.load(data[:-3], name="upload")
