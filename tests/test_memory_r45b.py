"""Round 45 (h54b): at 48 MP `compress --codec lzma` peaked at 691-713 MB (liblzma's 9e encoder with a 64 MiB
dictionary: 673 MiB) and `kmq palette` at 668-702 MB (the labels' count widened all of them to intp). The
encoder's dictionary is now at most 32 MiB, which only payloads of more than 32 MiB of labels see, and labels
are counted a piece at a time."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from kmq import stats


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
