"""An lzma search encodes (preset 9 | EXTREME, ~0.8 of a plain compress each) no label map _lzma_share coded
already (round 38)."""
import collections
import hashlib

import numpy as np
import pytest

import kmq
from kmq import target
from kmq.codecs import lzma_codec
from test_target_hint import text  # noqa: F401 (a fixture: a 160x120 screenshot of 157 colours, lzma chosen)


@pytest.fixture
def encodes(monkeypatch):
    """Each label map lzma_codec.encode codes in the test, counted by (labels, palette)."""
    coded: collections.Counter = collections.Counter()
    original = lzma_codec.encode

    def encode(labels, palette):
        labels, palette = np.ascontiguousarray(labels), np.asarray(palette)
        coded[(len(palette), hashlib.sha256(labels.tobytes() + palette.tobytes()).hexdigest())] += 1
        return original(labels, palette)
    monkeypatch.setattr(lzma_codec, "encode", encode)
    return coded


def written_is_encoded(img: kmq.KmqImage) -> bool:
    """Whether the file written carries lzma_codec.encode's payload of its labels (a copy that kept none encodes)."""
    fresh = kmq.KmqImage(img.palette.copy(), img.labels.copy(), dict(img.metadata), img.codec)
    return img.codec == "lzma" and img.to_bytes() == fresh.to_bytes()


def test_the_codec_tests_labels_are_not_encoded_again_by_lzmas_search(encodes, text):
    # The image is its own sample (under target._SAMPLE_PIXELS): _lzma_share coded the plain labels of ctx's
    # bracket's top whole, and lzma's search, starting from that bracket, sized the same plain file again
    img = kmq.compress_to(text, max_bytes=600)
    assert img.codec == "lzma" and len(img.to_bytes()) <= 600
    assert max(encodes.values()) == 1, "a label map was encoded twice"
    assert written_is_encoded(img)


def test_a_lossless_file_that_fits_is_still_found():
    # 5 flat colours: the lossless file is the best in a budget it fits
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:, 12:24] = (200, 30, 30)
    pixels[:, 24:36] = (30, 200, 30)
    pixels[10:20] = (30, 30, 200)
    pixels[30:] = (250, 250, 0)
    img = kmq.compress_to(pixels, max_bytes=400, codec="lzma")
    assert img.distortion == 0 and len(img.to_bytes()) <= 400
