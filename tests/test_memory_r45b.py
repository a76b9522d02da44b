"""Round 45 (h54b): at 48 MP `compress --codec lzma` peaked at 691-713 MB (liblzma's 9e encoder with a 64 MiB
dictionary: 673 MiB) and `kmq palette` at 668-702 MB (the labels' count widened all of them to intp). The
encoder's dictionary is now at most 32 MiB, which only payloads of more than 32 MiB of labels see, and labels
are counted a piece at a time."""
from __future__ import annotations

import hashlib
import lzma
import tracemalloc

import numpy as np
import pytest

from kmq import stats
from kmq.codecs import lzma_codec
from test_codecs import blobs, pal


class _Made(Exception):
    pass


def encoder_filters(monkeypatch, labels, k) -> list[dict]:
    """The filters lzma_codec.encode gives liblzma's encoder (stopped there, before any coding)."""
    seen = []

    def made(**kwargs):
        seen.append(kwargs["filters"])
        raise _Made

    monkeypatch.setattr(lzma, "LZMACompressor", made)
    with pytest.raises(_Made):
        lzma_codec.encode(labels, pal(k))
    return seen[0]


@pytest.mark.parametrize("k, shape", [(256, (6000, 8000)), (4096, (3000, 6000))])
def test_lzma_encoder_dictionary_is_at_most_32_mib_at_48_mp(monkeypatch, k, shape):
    # 48 MB (K <= 256) and 36 MB (K > 256) of labels: the whole dictionary (64 MiB) made the encoder need 673 MiB.
    # (calloc'd zeros: never touched, so not allocated)
    labels = np.zeros(shape, np.uint8 if k <= 256 else np.uint16)
    (spec,) = encoder_filters(monkeypatch, labels, k)
    assert spec["dict_size"] == 32 << 20
    assert spec["preset"] == 9 | lzma.PRESET_EXTREME  # the match finder and effort of before


@pytest.mark.parametrize("k, shape, size", [(256, (4096, 8192), 32 << 20), (4096, (2048, 4096), 16 << 20),
                                            (16, (3000, 4000), 16 << 20), (65536, (3000, 4000), 32 << 20)])
def test_lzma_encoder_dictionary_up_to_32_mib_is_the_one_of_before(monkeypatch, k, shape, size):
    # Up to 32 MiB of labels (12 MP at any K, 33 MP up to K = 256) the stream is the one of before.
    labels = np.zeros(shape, np.uint8 if k <= 256 else np.uint16)
    (spec,) = encoder_filters(monkeypatch, labels, k)
    assert spec["dict_size"] == size == lzma_codec.dict_size(labels.size * lzma_codec.label_bytes(k))


def repeated_far(k: int) -> np.ndarray:
    # 5,000 random labels repeated 4 times: each repeat lies beyond a 4 KiB dictionary (of 1 byte a label)
    block = np.random.default_rng(3).integers(0, k, 5000)
    return np.tile(block, 4).astype(np.uint16).reshape(100, 200)


@pytest.mark.parametrize("k", [256, 300])
def test_lzma_a_capped_stream_and_a_whole_one_both_decode(monkeypatch, k):
    # The decoder configures dict_size(n) whatever the encoder used: files written with the whole dictionary
    # (kmq before round 45, over 32 MiB of labels) and with the capped one both read. Here at 4 KiB.
    labels = repeated_far(k)
    palette = pal(k)
    whole = lzma_codec.encode(labels, palette)
    monkeypatch.setattr(lzma_codec, "_ENCODER_DICT", 4096)
    capped = lzma_codec.encode(labels, palette)
    assert len(capped) > len(whole) * 2  # the repeats, out of reach, are coded again
    for payload in (whole, capped):
        assert np.array_equal(lzma_codec.decode(payload, 200, 100, palette), labels)


def test_lzma_payloads_are_the_files_of_before():
    # sha256 of payloads the code before round 45 wrote (6e6ad44): pieces of 2^18 bytes, K <= 256 and above.
    for k, digest in ((16, "1238ea7e3f0d8c4940f163c65273ee7222e749c66d2740f337fd07a762ff65ee"),
                      (4096, "368c2fe6f6ad50908b809766c96f3711b928b6430e1742938ec2f78e96f14040")):
        labels = blobs(700, 500, k, seed=k)
        payload = lzma_codec.encode(labels, pal(k))
        assert hashlib.sha256(payload).hexdigest() == digest
        assert np.array_equal(lzma_codec.decode(payload, 500, 700, pal(k)), labels)


@pytest.mark.parametrize("k", [1, 16, 4096, 65536])
def test_label_counts_across_pieces_are_bincounts(k):
    labels = np.random.default_rng(k).integers(0, k, (1100, 1000)).astype(np.uint16)  # 1.1 M: past a piece
    assert np.array_equal(stats.label_counts(labels, k), np.bincount(labels.ravel(), minlength=k))
    assert np.array_equal(stats.label_counts(labels[:0], k), np.zeros(k, np.int64))


def test_label_counts_hold_no_intp_copy_of_the_labels():
    # `kmq palette` at 48 MP: np.bincount's intp copy of the uint16 labels was 384 MB of its 668 MB.
    labels = np.random.default_rng(0).integers(0, 256, (2048, 2048)).astype(np.uint16)  # 8 MB
    tracemalloc.start()
    try:
        stats.label_counts(labels, 256)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < labels.size * 3  # the whole intp copy: 8 bytes a label
