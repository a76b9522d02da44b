"""Round 49 (h58c): rdo's sweeps at 48 MP under 600 MB, the same files. A run's sweeps hold the labels as
their four polyphase parts only (the padded labels let go meanwhile, and made again after them: rdo._Phases),
and the pixels that may be away from their nearest entry, those the sweep visits and those the sweep before
visited as three bits of one byte a pixel (rdo._AWAY, _TODO, _BEFORE) where they were three masks. At 48 MP,
--rdo 28, K = 256 (uint16 labels): two copies of the labels and four masks were 336 MB of the 748 MB peak."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image

from kmq import rdo
from test_memory_r47 import digest, fitted, large  # noqa: F401 - large: rdo and the colours as at 48 MP


@pytest.fixture
def photo(samples) -> np.ndarray:
    """A noisy photo of 288 x 300 pixels (many colours, as a large one has)."""
    with Image.open(samples / "chelsea.png") as im:
        crop = np.asarray(im.convert("RGB"))[40:184, 100:250]
    rng = np.random.default_rng(49)
    return np.clip(np.kron(crop, np.ones((2, 2, 1), np.uint8)).astype(np.int16)
                   + rng.integers(-6, 7, (288, 300, 3)), 0, 255).astype(np.uint8)


def test_a_runs_sweeps_hold_the_labels_once_and_one_byte_of_masks_a_pixel(photo, large, monkeypatch):
    # (K = 256: uint16 labels, 2 bytes a pixel; their polyphase copy beside them and the stamp, away, todo and
    # before masks made 8 bytes a pixel; now the parts, the stamp and the flags, 4; the pieces a sweep works on
    # kept small, so that only what a sweep holds over the whole image counts)
    monkeypatch.setattr(rdo, "_CHUNK", 1 << 10)
    distinct, palette = fitted(photo, 256)
    start = rdo._start(photo, rdo._Colours(distinct), palette)
    refine, peaks = rdo._refine, []

    def measured(state, sample=False):
        peaks.append(tracemalloc.get_traced_memory()[1] - 4 * len(state.moved))  # (s.moved: int32 a move)
        return refine(state, sample)

    monkeypatch.setattr(rdo, "_refine", measured)
    tracemalloc.start()
    try:
        s = rdo._copy(start)  # (its labels traced: those a run lets go count)
        rdo._run(s, 400.0, 3)
    finally:
        tracemalloc.stop()
    assert len(s.moved) > photo[..., 0].size // 10  # (the three sweeps ran: strong rdo)
    assert peaks[0] < 5 * photo[..., 0].size  # (4.6 here; 6.5 before round 49)


def test_the_padded_labels_are_let_go_during_the_sweeps(photo, large, monkeypatch):
    # (a single-use run takes the nearest labelling's labels: that reference is let go too, and given back)
    distinct, palette = fitted(photo, 256)
    prepare, recount, made, seen = rdo.prepare, rdo._recount, [], []

    def prepared(*a, **kw):
        made.append(prepare(*a, **kw))
        return made[-1]

    def counted(s, to, away):
        if s.height == photo.shape[0]:  # (the image's run, not the sample's)
            seen.append((s.padded is None, made[0].plain.padded is None))
        return recount(s, to, away)

    monkeypatch.setattr(rdo, "prepare", prepared)
    monkeypatch.setattr(rdo, "_recount", counted)
    out = rdo.optimise(photo, distinct, palette, 28.0)
    assert seen and all(a and b for a, b in seen)
    assert made[0].plain.padded is not None
    monkeypatch.undo()
    assert digest(out) == PINNED[256, 28.0, "large"]


def test_the_next_sweeps_flags_are_the_masks_they_stand_for():
    # (_TODO: stamped in the sweep at step, after it; _BEFORE: the _TODO before; _AWAY kept)
    rng = np.random.default_rng(0)
    height, width = 37, 53
    stamp = rng.integers(0, 9, (height + 2, width + 2)).astype(np.int8)
    away, todo, before = (rng.random(height * width) < 0.3 for _ in range(3))
    flags = away.astype(np.uint8) | (todo.astype(np.uint8) << 1) | (before.astype(np.uint8) << 2)
    rdo._next_todo(flags, stamp, 4, width)
    np.testing.assert_array_equal(flags & rdo._AWAY, away)
    np.testing.assert_array_equal((flags & rdo._TODO) > 0, (stamp[1:-1, 1:-1] > 4).reshape(-1))
    np.testing.assert_array_equal((flags & rdo._BEFORE) > 0, todo)
    np.testing.assert_array_equal(rdo._positions(flags, rdo._AWAY), np.flatnonzero(away))


def test_the_phases_give_back_the_padded_labels():
    for shape in ((5, 7), (6, 8), (1, 9), (9, 1), (3, 3)):
        padded = np.random.default_rng(1).integers(0, 300, shape).astype(np.uint16)
        np.testing.assert_array_equal(rdo._Phases(padded).padded(), padded)


# rdo.optimise's results made by the code before this round (main a46b3f4): byte for byte the same. "large":
# in the `large` setting (the image's run after a sample's calibration, colours ranked); "whole": a crop that
# is its own sample; "column": one pixel wide.
PINNED = {
    (16, 2.0, "large"): "54f0987ac719f6df",
    (256, 28.0, "large"): "6b9dc928965d0f31",
    (64, 100.0, "large"): "c297e478526ccaa5",
    (256, 2.0, "large"): "4681430ff3320a7c",
    (256, 28.0, "whole"): "70d6fb6cb73c6420",
    (16, 28.0, "column"): "6c27783ceb9b672e",
}


@pytest.mark.parametrize("k, pct, kind", list(PINNED))
def test_rdo_makes_the_same_labels(photo, request, k, pct, kind):
    if kind == "large":
        request.getfixturevalue("large")
    pixels = {"large": photo, "whole": photo[:120, :150], "column": np.ascontiguousarray(photo[:, 100:101])}[kind]
    distinct, palette = fitted(pixels, k)
    assert digest(rdo.optimise(pixels, distinct, palette, pct)) == PINNED[k, pct, kind]


def test_a_spent_runs_file_labels_are_made_in_its_own_at_k_256(photo, large):
    # (the file's uint16 labels beside the run's uint16 padded labels: 96 MB more at 48 MP)
    distinct, palette = fitted(photo, 256)
    s = rdo._start(photo, rdo._Colours(distinct), palette)
    rdo._run(s, 400.0, 3)
    want = rdo._result(rdo._copy(s), True)
    buffer = s.padded
    got = rdo._result(s, True, spend=True)
    assert np.shares_memory(got[1], buffer) and s.padded is None
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
