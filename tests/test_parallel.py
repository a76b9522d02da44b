"""kmq.parallel: work split between threads gives exactly the one-thread results."""
from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import kmeans, parallel
from conftest import SAMPLES


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch):
    """set(n): split work into up to n parts of at least 1000 items (tiny, so small images split too)."""
    monkeypatch.setattr(parallel, "MIN_PART", 1000)

    def set_threads(n: int) -> None:
        monkeypatch.setattr(parallel, "_threads", n)
    return set_threads


def test_parts_cover_the_range_in_order(threads) -> None:
    threads(3)
    assert parallel.parts(0) == [(0, 0)]
    assert parallel.parts(999) == [(0, 999)]
    assert parallel.parts(2500) == [(0, 1250), (1250, 2500)]  # no part under MIN_PART
    assert parallel.parts(3001) == [(0, 1001), (1001, 2002), (2002, 3001)]
    assert parallel.parts(100, cost=25) == [(0, 50), (50, 100)]  # 2500 items' work: 2 parts
    threads(1)
    assert parallel.parts(10 ** 6) == [(0, 10 ** 6)]


def test_map_parts_returns_in_order_and_raises_a_part_error(threads) -> None:
    threads(4)
    assert parallel.map_parts(lambda a, b: (a, b), 4000) == [(0, 1000), (1000, 2000), (2000, 3000),
                                                             (3000, 4000)]

    def fail_late(a: int, b: int) -> int:
        if a == 3000:
            raise MemoryError("part 4")
        return a

    with pytest.raises(MemoryError, match="part 4"):
        parallel.map_parts(fail_late, 4000)


def test_serial_means_one_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "_threads", 2)
    parallel.serial()
    assert parallel._threads == 1 and parallel.parts(10 ** 8) == [(0, 10 ** 8)]


@pytest.mark.parametrize("kind", ["grey", "rgb", "rgba one alpha", "rgba"])
@pytest.mark.parametrize("one_pass", [1 << 24, 0])  # colour index kept, or keys packed again when needed
def test_threads_give_the_one_thread_colours_and_files(samples, threads, monkeypatch, kind, one_pass) -> None:
    rgb = np.asarray(Image.open(samples / "chelsea.png").convert("RGB"))[:100, :150]
    alpha = np.random.default_rng(0).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    px = {"grey": rgb[:, :, 0], "rgb": rgb, "rgba one alpha": np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)]),
          "rgba": np.dstack([rgb, alpha])}[kind]
    monkeypatch.setattr(kmeans, "_BINCOUNT_FROM", 1)  # the table path, at this size
    monkeypatch.setattr(kmeans, "_SPLIT_FROM", 1)
    monkeypatch.setattr(kmeans, "_ONE_PASS", one_pass)
    monkeypatch.setattr(kmeans, "_INDEX_CHUNK", 1000)  # each part's colour indices counted in several chunks
    flat = px.reshape(px.shape[0] * px.shape[1], -1)
    results = []
    for n in (1, 2, 3):
        threads(n)
        d = kmeans.distinct(flat)
        results.append((d.colors.tobytes(), d.counts.tobytes(), d.index().tobytes(),
                        kmq.compress(px, k=16, seed=1).to_bytes()))
    assert results[0] == results[1] == results[2]
    colors, counts = np.unique(flat, axis=0, return_counts=True)
    assert results[0][:2] == (colors.tobytes(), counts.tobytes())


@pytest.mark.parametrize("exact", [True, False])  # uint8 colours (table look-ups) or float points (a histogram)
def test_assign_in_parts_gives_the_one_pass_nearest_and_runner_up(threads, monkeypatch, exact) -> None:
    rng = np.random.default_rng(3)
    colors = rng.integers(0, 256, (5000, 3), dtype=np.uint8)
    x = colors.astype(np.float64) + (0 if exact else rng.random((5000, 3)))
    pts = kmeans._Points(x, rng.integers(1, 9, 5000).astype(np.float64), colors if exact else None)
    centres = rng.random((7, 3)) * 255
    monkeypatch.setattr(kmeans, "_BLOCK", 7 * 300)  # blocks of 300 points, which the parts cut mid-block
    rows = np.flatnonzero(rng.random(5000) < 0.5)
    results = []
    for n in (1, 2, 3):
        threads(n)
        assert len(parallel.parts(5000, 7)) == n
        full = kmeans._assign(pts, centres, second=True)
        some = kmeans._assign(pts, centres, rows=rows)
        results.append([a.tobytes() for a in (*full, *some[:2])] + [some[2]])
    assert results[0] == results[1] == results[2]
    d = ((x.astype(np.float32)[:, None, :] - centres.astype(np.float32)[None]) ** 2).sum(axis=2)
    labels, best, second = kmeans._assign(pts, centres, second=True)
    assert np.array_equal(labels, d.argmin(axis=1))
    assert np.allclose(best, d.min(axis=1), rtol=1e-5) and np.allclose(second, np.sort(d, axis=1)[:, 1], rtol=1e-5)


def test_lloyd_runs_in_parts_give_the_one_pass_runs(threads, monkeypatch) -> None:
    rng = np.random.default_rng(4)
    pts = kmeans._Points(rng.random((3000, 3)) * 255, rng.integers(1, 9, 3000).astype(np.float64))
    starts = rng.random((3, 5, 3)) * 255
    monkeypatch.setattr(kmeans, "_CACHE_BLOCK", 15 * 200)  # blocks of 200 points, which the parts cut mid-block
    results = []
    for n in (1, 2, 3):
        threads(n)
        assert len(parallel.parts(3000, 15)) == n
        results.append([a.tobytes() for a in kmeans._lloyd_runs(pts, starts, 20, 0.0)])
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("channels, bits", [(3, 5), (3, 6), (4, 5)])
def test_a_histogram_made_in_parts_is_the_one_part_histogram(threads, channels: int, bits: int) -> None:
    rng = np.random.default_rng(channels + bits)
    keys = np.unique(rng.integers(0, 1 << (8 * channels), 9000, dtype=np.int64))
    colors = kmeans._unpack(keys, channels)
    counts = rng.integers(1, 2 ** 31 // 9000, keys.shape[0]).astype(np.int64)
    threads(1)
    one = kmeans._colour_histogram(colors, counts, bits)
    threads(4)
    assert len(parallel.parts(colors.shape[0], channels + 1)) == 4  # the parts the histogram is made in
    for a, b in zip(kmeans._colour_histogram(colors, counts, bits), one):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_a_histogram_of_many_bins_is_made_in_one_part(threads, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each part holds a (bins, channels + 1) array of its own: 200 MB a part at a 12 MP RGBA photo's 7 bits.
    rng = np.random.default_rng(5)
    keys = np.unique(rng.integers(0, 1 << 24, 9000, dtype=np.int64))
    colors, counts = kmeans._unpack(keys, 3), rng.integers(1, 1000, keys.shape[0]).astype(np.int64)
    threads(4)
    one = kmeans._colour_histogram(colors, counts, 6)
    bins = one[1].shape[0]
    calls = []
    map_parts = parallel.map_parts
    monkeypatch.setattr(parallel, "map_parts", lambda *a: calls.append(a) or map_parts(*a))
    for chunk, parted in ((bins, True), (bins - 1, False)):
        monkeypatch.setattr(kmeans, "_HIST_CHUNK", chunk)
        calls.clear()
        for a, b in zip(kmeans._colour_histogram(colors, counts, 6), one):
            assert np.array_equal(a, b)
        assert bool(calls) == parted


def test_the_variance_found_in_a_thread_gives_the_same_fit(threads, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    colors = np.unique(rng.integers(0, 256, (30000, 3), dtype=np.uint8), axis=0)
    counts = rng.integers(1, 50, colors.shape[0]).astype(np.int64)
    threads(2)
    monkeypatch.setattr(kmeans, "_VARIANCE_APART", 1 << 40)
    here = kmeans.fit(colors, counts, 16)
    monkeypatch.setattr(kmeans, "_VARIANCE_APART", 1)
    started = []
    later = parallel.later
    monkeypatch.setattr(parallel, "later", lambda fn: started.append(fn) or later(fn))
    assert np.array_equal(kmeans.fit(colors, counts, 16), here) and started


def test_the_set_flags_are_found_in_parts_in_order(threads) -> None:
    """The colours' keys (`kmeans._set_flags`): each part of the flags in a thread, the same keys as one pass."""
    rng = np.random.default_rng(5)
    for size, share in ((1 << 24, 1e-3), (5000, 0.5), (256, 0.0)):
        seen = rng.random(size) < share
        for n in (1, 2, 3):
            threads(n)
            keys = kmeans._set_flags(seen)
            assert keys.dtype == np.uint32 and np.array_equal(keys, np.flatnonzero(seen))


def _splits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of parts of each parallel.map_parts call from now on, as they are made."""
    split: list[int] = []
    real = parallel.map_parts

    def counted(fn, n, cost=1):
        split.append(len(parallel.parts(n, cost)))
        return real(fn, n, cost)

    monkeypatch.setattr(parallel, "map_parts", counted)
    return split


@pytest.mark.parametrize("exact", [True, False])  # uint8 colours (table look-ups) or float points (a histogram)
def test_seeding_many_runs_in_parts_gives_the_one_thread_centroids(threads, monkeypatch, exact) -> None:
    """`kmeans._kmeanspp` with several runs measures the candidates against the points in parts, in threads:
    the same centroids, bit for bit, as in one thread."""
    rng = np.random.default_rng(6)
    colors = rng.integers(0, 256, (3000, 3), dtype=np.uint8)
    w = rng.integers(1, 50, 3000).astype(np.float64)
    pts = (kmeans._Points(colors, w, colors) if exact
           else kmeans._Points(colors.astype(np.float64) + rng.random((3000, 3)), w))
    split = _splits(monkeypatch)
    seeded = []
    for n in (1, 2, 3):
        threads(n)
        split.clear()
        seeded.append(kmeans._kmeanspp(pts, 16, np.random.default_rng(2), runs=8).tobytes())
        assert max(split, default=1) == n  # the seeding's passes were split that many ways
    assert seeded[0] == seeded[1] == seeded[2]


@pytest.mark.parametrize("points, ways", [(3500, 1), (9000, 2)])
def test_seeding_splits_only_where_threads_pay(monkeypatch, points, ways) -> None:
    """Two threads slowed the seeding of a few thousand points (16 runs at K = 16: 3 500 points 17.6 ms in one
    thread, 23.4 ms in two; even at ~6 300; faster from ~9 000), so a small image's level is seeded in one."""
    rng = np.random.default_rng(8)
    colors = rng.integers(0, 256, (points, 3), dtype=np.uint8)
    pts = kmeans._Points(colors, rng.integers(1, 50, points).astype(np.float64), colors)
    split = _splits(monkeypatch)
    monkeypatch.setattr(parallel, "_threads", 2)
    kmeans._kmeanspp(pts, 16, np.random.default_rng(2), runs=16)
    assert set(split) == {ways}


@pytest.mark.parametrize("one_pass", [1 << 24, 0])  # colour index kept, or keys packed again when needed
def test_the_table_path_counts_the_colours_in_place(threads, monkeypatch, one_pass) -> None:
    """The colours' counts come from np.add.at into int32 counts, a chunk of indices at a time, not from
    np.bincount (an intp copy of every index, int64 counts: 12 MP, 0.072 s of CPU against 0.040 s)."""
    rng = np.random.default_rng(7)
    flat = rng.integers(0, 6, (20000, 3), dtype=np.uint8) * 50
    monkeypatch.setattr(kmeans, "_BINCOUNT_FROM", 1)
    monkeypatch.setattr(kmeans, "_ONE_PASS", one_pass)
    monkeypatch.setattr(kmeans, "_INDEX_CHUNK", 999)
    colors, counts = np.unique(flat, axis=0, return_counts=True)

    def no_bincount(*args, **kwargs):
        raise AssertionError("np.bincount")

    for n in (1, 3):
        threads(n)
        with monkeypatch.context() as patched:
            patched.setattr(np, "bincount", no_bincount)
            d = kmeans.distinct(flat)
        assert d.counts.dtype == np.int64
        assert np.array_equal(d.colors, colors) and np.array_equal(d.counts, counts)


@pytest.mark.parametrize("value, expected", [("1", 1), (" 1 ", 1), ("", None), ("99", None)])
def test_kmq_threads_caps_the_threads(monkeypatch, value, expected):
    monkeypatch.setenv("KMQ_THREADS", value)
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: set(range(3)), raising=False)
    assert parallel._default_threads() == (3 if expected is None else expected)  # never above the cores


@pytest.mark.parametrize("value", ["0", "-2", "x", "1e3", "\u0663"])
def test_a_bad_kmq_threads_warns_and_keeps_the_default(monkeypatch, value):
    monkeypatch.setenv("KMQ_THREADS", value)
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    with pytest.warns(kmq.KmqWarning, match=f"KMQ_THREADS={value!r} is not a whole number from 1: ignored, as if unset$"):
        assert parallel._default_threads() == 4


def test_the_command_says_a_bad_kmq_threads_once_in_its_words(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "KMQ_THREADS": "two"}
    done = subprocess.run([sys.executable, "-m", "kmq", "info", str(SAMPLES / "chelsea.png")], env=env,
                          capture_output=True, text=True)
    assert done.stderr.startswith("Warning: KMQ_THREADS='two' is not a whole number from 1: ignored, as if unset\n")
    assert done.stderr.count("KMQ_THREADS") == 1
