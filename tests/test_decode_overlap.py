"""The distinct colours' first pass over the rows of an image as they decode (kmeans.Marks fed by
kmq.prefetch's `_Rows`): the same colours, counts, indices and files as the pass after the decode."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import kmeans, prefetch
from kmq.imageio import load_image


@pytest.fixture(autouse=True)
def nothing_left_started():
    yield
    prefetch._started.clear()


@pytest.fixture
def small_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    # The table path and the marks from a few pixels on, and chunks that rows never line up with.
    monkeypatch.setattr(kmeans, "_BINCOUNT_FROM", 1)
    monkeypatch.setattr(kmeans, "_INDEX_CHUNK", 37)


def _rgbx(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(height, width, 4) RGBX pixels as Pillow decodes RGB (X = 255), of few enough colours to repeat."""
    rng = np.random.default_rng(seed)
    rgbx = np.full((height, width, 4), 255, np.uint8)
    rgbx[:, :, :3] = rng.integers(0, 6, (height, width, 3)) * 51
    return rgbx


def _same(a: kmeans.Distinct, b: kmeans.Distinct) -> None:
    assert np.array_equal(a.colors, b.colors) and np.array_equal(a.counts, b.counts)
    assert np.array_equal(a.index(), b.index())


@pytest.mark.parametrize("one_pass", [True, False])
@pytest.mark.parametrize("runs", [[1, 2, 3, 4], [7], [6], [3, 3], [1, 1, 1, 1, 1, 1, 1]])
def test_rows_marked_as_they_decode_count_the_same(small_tables: None, monkeypatch: pytest.MonkeyPatch,
                                                   one_pass: bool, runs: list[int]) -> None:
    if not one_pass:  # the keys packed again where needed, only the flags kept
        monkeypatch.setattr(kmeans, "_ONE_PASS", 0)
    rgbx = _rgbx(7, 13)
    pixels = rgbx.reshape(-1, 4)[:, :3]
    marks = kmeans.Marks()
    start = 0
    for run in runs:  # the runs as the decode hands them on; the rows after them are left to distinct
        marks(rgbx, rgbx.shape, start, start + run)
        start += run
    plain = kmeans.distinct(np.ascontiguousarray(pixels))
    _same(kmeans.distinct(pixels, marks), plain)
    assert marks.seen is None  # handed over, not kept


def test_marks_of_other_pixels_are_not_taken(small_tables: None) -> None:
    rgbx = _rgbx(5, 9)
    marks = kmeans.Marks()
    marks(rgbx, rgbx.shape, 0, 3)
    copy = rgbx.copy()
    copy[0, 0, :3] = 1  # a colour the marks never saw
    pixels = copy.reshape(-1, 4)[:, :3]
    assert marks.take(pixels)[0] == 0
    marks(rgbx, rgbx.shape, 0, 3)
    _same(kmeans.distinct(pixels, marks), kmeans.distinct(np.ascontiguousarray(pixels)))


def test_rows_out_of_turn_or_too_few_pixels_mark_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    rgbx = _rgbx(4, 5)
    marks = kmeans.Marks()
    marks(rgbx, rgbx.shape, 0, 4)  # 20 pixels, below _BINCOUNT_FROM
    assert marks.take(rgbx.reshape(-1, 4)[:, :3])[0] == 0
    monkeypatch.setattr(kmeans, "_BINCOUNT_FROM", 1)
    marks = kmeans.Marks()
    marks(rgbx, rgbx.shape, 1, 2)  # not the next rows
    assert marks.take(rgbx.reshape(-1, 4)[:, :3])[0] == 0


class _Decoder:
    """Stands for Pillow's decoder: writes rows of RGBX into memory a few at a time, reading between."""

    def __init__(self, rgbx: np.ndarray, steps: list[int]) -> None:
        self.rgbx, self.steps = rgbx, steps
        self.memory = bytearray(rgbx.nbytes)
        self.rows = prefetch._Rows(self.memory, rgbx.shape[1], rgbx.shape[0])
        self.read = self.rows._watched(lambda n: b"x")

    def run(self) -> None:
        out = np.frombuffer(self.memory, np.uint8).reshape(self.rgbx.shape)
        done = 0
        for step in self.steps:
            self.read(1)
            out[done:done + step] = self.rgbx[done:done + step]
            done += step
        self.read(1)
        self.rows.end()


@pytest.mark.parametrize("steps", [[2, 3, 2], [7], [1, 1, 1, 1, 1, 1, 1], [0, 4, 0, 3]])
def test_rows_are_handed_on_in_order_without_gaps_while_the_decode_goes_on(steps: list[int]) -> None:
    decoder = _Decoder(_rgbx(7, 6), steps)
    seen: list[tuple[int, int]] = []
    follower = threading.Thread(target=decoder.rows.follow, args=(lambda m, shape, a, b: seen.append((a, b)),))
    follower.start()
    decoder.run()
    follower.join(10)
    assert not follower.is_alive()
    # Each run starts where the last ended, and only rows published before the end are handed on.
    assert all(a < b for a, b in seen) and all(seen[i][1] == seen[i + 1][0] for i in range(len(seen) - 1))
    assert not seen or seen[0][0] == 0 and seen[-1][1] <= 7


def test_rows_found_after_the_decode_ended_are_left_to_the_caller() -> None:
    decoder = _Decoder(_rgbx(5, 4), [2, 3])
    decoder.run()
    seen: list = []
    decoder.rows.follow(lambda *a: seen.append(a))
    assert seen == []


def test_a_partly_written_row_is_not_counted() -> None:
    rgbx = _rgbx(3, 4)
    memory = bytearray(rgbx.nbytes)
    rows = prefetch._Rows(memory, 4, 3)
    out = np.frombuffer(memory, np.uint8).reshape(rgbx.shape)
    out[0] = rgbx[0]
    out[1, :3] = rgbx[1, :3]  # its last pixel not yet
    assert rows._decoded() == 1


@pytest.fixture
def photo_rgb() -> np.ndarray:
    """An RGB photo of 611 x 877 pixels (above _BINCOUNT_FROM; rows of an odd length)."""
    with Image.open(Path(__file__).resolve().parent.parent / "samples" / "coffee.png") as im:
        return np.asarray(im.convert("RGB").resize((611, 877)))


@pytest.fixture
def followed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The runs of rows (start, stop) that kmeans.Marks is handed while an image decodes, in order."""
    runs: list[tuple[int, int]] = []
    mark = kmeans.Marks.__call__

    def watched(self, memory, shape, start, stop):  # noqa: ANN001, ANN202
        runs.append((start, stop))
        mark(self, memory, shape, start, stop)

    monkeypatch.setattr(kmeans.Marks, "__call__", watched)
    return runs


@pytest.mark.parametrize("ext, options", [("png", {"compress_level": 1}), ("jpg", {"quality": 90})])
def test_compress_of_an_image_whose_rows_were_followed_writes_the_same_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, photo_rgb: np.ndarray, ext: str, options: dict,
        followed: list[tuple[int, int]]) -> None:
    path = tmp_path / f"p.{ext}"
    Image.fromarray(photo_rgb).save(path, **options)
    monkeypatch.setattr(prefetch, "_MAP_FROM", 1)
    pixels = load_image(str(path))
    # A slow decode in small steps: after each publishing of its rows it waits until the search has marked
    # them (up to a few seconds, the first time while the search starts), so that several runs are marked
    # however loaded the machine (a fixed 20 ms pause once left a single run on a busy one).
    monkeypatch.setattr(prefetch, "_PIECE", 1 << 15)
    monkeypatch.setattr(prefetch, "_JPEG_READ_MIN", 1 << 12)
    publish = prefetch._Rows._publish

    def slowly(self, done):  # noqa: ANN001, ANN202
        publish(self, done)
        deadline = time.monotonic() + (5.0 if not followed else 1.0)
        while done and not (followed and followed[-1][1] >= done) and time.monotonic() < deadline:
            time.sleep(0.001)

    monkeypatch.setattr(prefetch._Rows, "_publish", slowly)
    prefetch.start(["compress", str(path)])
    (_, _, _, rows), = prefetch._started.values()
    assert rows is not None
    got = kmq.compress(str(path), k=16)
    assert got.to_bytes() == kmq.compress(pixels, k=16).to_bytes()
    assert len(followed) > 1 and followed[0][0] == 0 and all(a < b for a, b in followed)


@pytest.mark.parametrize("make", ["interlaced", "grey", "rgba", "turned jpeg"])
def test_images_whose_rows_cannot_be_followed_are_decoded_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   photo_rgb: np.ndarray, make: str) -> None:
    monkeypatch.setattr(prefetch, "_MAP_FROM", 1)
    image = Image.fromarray(photo_rgb)
    path = tmp_path / ("p.jpg" if make == "turned jpeg" else "p.png")
    if make == "interlaced":
        from test_prefetch import _adam7_png  # Pillow writes no interlaced PNG

        path.write_bytes(_adam7_png(photo_rgb))
    elif make == "grey":
        image.convert("L").save(path)
    elif make == "rgba":
        image.convert("RGBA").save(path)
    else:
        exif = Image.Exif()
        exif[0x0112] = 6
        image.save(path, exif=exif)
    prefetch.start(["compress", str(path)])
    (_, _, _, rows), = prefetch._started.values()
    assert rows is None
    assert kmq.compress(str(path), k=8).to_bytes() == kmq.compress(load_image(str(path)), k=8).to_bytes()


def test_marks_that_run_out_of_memory_leave_the_pass_to_distinct(small_tables: None,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    rgbx = _rgbx(6, 7)
    marks = kmeans.Marks()
    marks(rgbx, rgbx.shape, 0, 2)
    mark, count = kmeans._mark, kmeans._count

    def short(*args):  # noqa: ANN002, ANN202
        raise MemoryError

    monkeypatch.setattr(kmeans, "_mark", short)  # the flags' pass (above _ONE_PASS) and the counts'
    monkeypatch.setattr(kmeans, "_count", short)
    marks(rgbx, rgbx.shape, 2, 4)
    monkeypatch.setattr(kmeans, "_mark", mark)
    monkeypatch.setattr(kmeans, "_count", count)
    marks(rgbx, rgbx.shape, 4, 6)
    pixels = rgbx.reshape(-1, 4)[:, :3]
    assert marks.take(pixels)[0] == 0
    _same(kmeans.distinct(pixels, marks), kmeans.distinct(np.ascontiguousarray(pixels)))
