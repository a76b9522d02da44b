"""--rdo: cheaper labels for a bounded rise of the distortion J."""
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmq
import kmq.api  # noqa: F401 - loaded on first use, not by `import kmq`: this file reads kmq.api.*
from conftest import assert_compress_usage_error
from kmq import kmeans, rdo
from kmq.cli import main


@pytest.fixture
def crop(samples) -> np.ndarray:
    with Image.open(samples / "chelsea.png") as im:
        return np.asarray(im.convert("RGB"))[60:124, 150:214].copy()


def true_j(img: kmq.KmqImage, pixels: np.ndarray) -> float:
    decoded = img.decode().reshape(pixels.shape).astype(np.int64)
    return float(((decoded - pixels.astype(np.int64)) ** 2).reshape(-1, img.channels).sum(axis=1).mean())


def test_toy_row_gives_the_odd_pixel_its_neighbours_label_then_refines_the_palette():
    # Palette 0 and 100: the 52 is nearest 100 (2304 against 2704). Taking the label of its neighbours
    # costs 400 more, within 20 %; then entry 100 is unused and entry 0 becomes the mean, 52/7 -> 7.
    pixels = np.array([[0, 0, 0, 52, 0, 0, 0]], np.uint8)[..., None]
    distinct = kmeans.distinct(pixels.reshape(-1, 1))
    palette, labels, j = rdo.optimise(pixels, distinct, np.array([[0], [100]], np.uint8), 20.0)
    np.testing.assert_array_equal(palette, [[7]])
    np.testing.assert_array_equal(labels, np.zeros((1, 7)))
    assert j == (6 * 7**2 + 45**2) / 7


def test_toy_row_keeps_the_odd_label_when_the_budget_is_too_small_and_refines_it():
    # 400 more is above 0.5 % of 2304: the 52 keeps its own label, whose entry becomes its mean, 52 (J = 0).
    pixels = np.array([[0, 0, 0, 52, 0, 0, 0]], np.uint8)[..., None]
    distinct = kmeans.distinct(pixels.reshape(-1, 1))
    palette, labels, j = rdo.optimise(pixels, distinct, np.array([[0], [100]], np.uint8), 0.5)
    assert j == 0
    np.testing.assert_array_equal(palette[labels[0]].reshape(-1), [0, 0, 0, 52, 0, 0, 0])


@pytest.mark.parametrize("codec", ["ctx", "lzma"])
@pytest.mark.parametrize("k", [8, 32])
def test_rdo_bound_true_j_and_fewer_bytes(crop, codec, k):
    plain = kmq.compress(crop, k, codec=codec)
    img = kmq.compress(crop, k, codec=codec, rdo=2)
    assert img.distortion <= plain.distortion * 1.02
    assert img.distortion == pytest.approx(true_j(img, crop), rel=1e-12)
    assert img.metadata["rdo"] == 2.0 and "rdo" not in plain.metadata
    assert len(img.to_bytes()) < len(plain.to_bytes())
    again = kmq.KmqImage.from_bytes(img.to_bytes())
    assert again == img


def test_an_rdo_too_small_to_count_adds_no_j(crop):
    # 1 + 1e-15 / 100 is 1.0 in floating point: the calibration took the log of 0 (review). Only moves
    # between equidistant entries are left (ties), so J is the plain J exactly.
    plain = kmq.compress(crop, 16, codec="ctx")
    img = kmq.compress(crop, 16, codec="ctx", rdo=1e-15)
    assert img.distortion == plain.distortion and len(img.to_bytes()) <= len(plain.to_bytes())


def test_same_input_and_options_give_the_same_bytes(crop):
    first = kmq.compress(crop, 16, codec="ctx", rdo=3, seed=2).to_bytes()
    assert kmq.compress(crop, 16, codec="ctx", rdo=3, seed=2).to_bytes() == first


@pytest.mark.parametrize("channels", [1, 4])
def test_grey_and_rgba(crop, channels):
    pixels = crop[..., :1] if channels == 1 else np.dstack([crop, crop[..., 1:2] // 2 + 100])
    plain = kmq.compress(pixels, 12, codec="ctx")
    img = kmq.compress(pixels, 12, codec="ctx", rdo=5)
    assert img.channels == channels
    assert img.distortion <= plain.distortion * 1.05
    assert img.distortion == pytest.approx(true_j(img, pixels), rel=1e-12)


def test_lossless_image_is_left_alone():
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[:, 4:] = 200
    img = kmq.compress(pixels, 2, codec="ctx", rdo=10)
    assert img.distortion == 0 and img.k == 2 and "rdo" not in img.metadata
    assert img.to_bytes() == kmq.compress(pixels, 2, codec="ctx").to_bytes()  # the plain file, not 10 bytes more


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), 1e308, 1000.5, True, "2"])
def test_bad_rdo_values(crop, bad):
    with pytest.raises(ValueError, match="rdo must be a percentage from 0 to 1000"):
        kmq.compress(crop, 4, codec="ctx", rdo=bad)


def test_raw_refuses_rdo(crop):
    with pytest.raises(ValueError, match="every labelling costs the same bytes with codec='raw'"):
        kmq.compress(crop, 4, rdo=2)




@pytest.mark.parametrize("args, message", [
    (["--rdo", "-1", "--codec", "ctx"], "Invalid value for '--rdo': -1.0 is not in the range 0<=x<=1000.0."),
    (["--rdo", "1e308", "--codec", "ctx"], "Invalid value for '--rdo': 1e+308 is not in the range 0<=x<=1000.0."),
    (["--rdo", "nan", "--codec", "ctx"], "Invalid value for '--rdo': 'nan' is not a number"),
    (["--rdo", "nan"], "Invalid value for '--rdo': 'nan' is not a number"),
    (["--rdo", "2"], "every labelling costs the same bytes with raw, the default codec, so --rdo cannot help; "
                     "use --codec ctx (or lzma)"),
    (["--rdo", "2", "--codec", "raw"], "every labelling costs the same bytes with raw, so --rdo cannot help; "
                                       "use --codec ctx (or lzma)"),
])
def test_cli_rdo_usage_errors(image, args, message):
    assert_compress_usage_error(image, args, message)


def test_cli_stats_refuses_rdo_with_raw(image):
    result = CliRunner().invoke(main, ["stats", str(image), "--rdo", "2"])
    assert result.exit_code == 2
    assert result.output.endswith("Error: every labelling costs the same bytes with raw, the default codec, so "
                                  "--rdo cannot help; use --codec ctx (or lzma)\n")


def test_cli_compress_and_stats_with_rdo(image, tmp_path):
    out = tmp_path / "c.kmq"
    result = CliRunner().invoke(main, ["compress", str(image), "-k", "8", "--codec", "ctx", "--rdo", "2",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"{image} -> {out}: k=8, rdo 2%, 3 bits/label, " in result.output
    img = kmq.read(out)
    assert img.metadata["rdo"] == 2.0
    result = CliRunner().invoke(main, ["stats", str(image), "-k", "8", "--codec", "ctx", "--rdo", "2",
                                       "--format", "tsv"])
    assert result.exit_code == 0, result.output
    row = dict(zip(*[line.split("\t") for line in result.output.splitlines()]))
    assert int(row["file_bytes"]) == out.stat().st_size
    assert float(row["distortion"]) == img.distortion


def test_rdo_that_costs_bytes_falls_back_to_the_nearest_labelling(crop, monkeypatch):
    # A run that scatters labels (what is left of it within the J budget costs escapes) would store a
    # larger payload: the nearest labelling comes back instead, with the palette as fitted.
    def scatter(s, *args, **kwargs):
        every = np.arange(len(s.pixels))
        near, dnear = s.near(every), s.dnear(every)
        other = (near + 1) % len(s.palette)
        extra = rdo._dist(s.pixels, s.palette, other) - dnear
        order = np.argsort(extra, kind="stable")
        moved = order[np.cumsum(extra[order]) <= dnear.sum() // 100]
        labels = s.labels.reshape(-1).copy()
        labels[moved] = other[moved]
        s.labels[...] = labels.reshape(s.labels.shape)
        s.moved = np.sort(moved)
        s.total = int(rdo._dist(s.pixels, s.palette, labels).sum())
        assert len(moved) > 50

    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, j = kmq.api.quantize_distinct(distinct, 8, seed=0, max_iter=300)
    monkeypatch.setattr(rdo, "_run", scatter)
    got_palette, got_labels, got_j = rdo.optimise(crop, distinct, palette, 2.0)
    assert got_j == j
    nearest = kmeans.nearest(crop.reshape(-1, 3), palette)[0]
    np.testing.assert_array_equal(got_palette[got_labels].reshape(-1, 3), palette[nearest])


@pytest.mark.parametrize("kind", ["noise", "gradient", "flat shapes with noise"])
def test_rdo_payload_never_larger_than_plain(kind):
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:48, 0:64]
    gradient = np.dstack([x * 4, y * 5, (x + y) * 2]).astype(np.uint8)
    pixels = {"noise": rng.integers(0, 256, (48, 64, 3)).astype(np.uint8), "gradient": gradient,
              "flat shapes with noise": np.clip((x // 16 * 60 + y // 12 * 20)[..., None].repeat(3, 2)
                                                + rng.integers(-3, 4, (48, 64, 3)), 0, 255).astype(np.uint8)}[kind]
    for k in (4, 16):
        plain = kmq.compress(pixels, k, codec="ctx")
        img = kmq.compress(pixels, k, codec="ctx", rdo=2)
        assert img.distortion <= plain.distortion * 1.02
        assert len(kmq.codecs.ctx.encode(img.labels, img.palette)) <= len(
            kmq.codecs.ctx.encode(plain.labels, plain.palette))


def test_rdo_that_keeps_the_nearest_labels_writes_the_plain_file_byte_for_byte():
    """Recording "rdo" there made the file 10 bytes larger than plain for nothing."""
    pixels = np.random.default_rng(0).integers(0, 256, (1, 50, 3), dtype=np.uint8)
    plain = kmq.compress(pixels, 16, codec="ctx")
    img = kmq.compress(pixels, 16, codec="ctx", rdo=2)
    assert "rdo" not in img.metadata
    assert img.to_bytes() == plain.to_bytes()


@pytest.mark.parametrize("codec", ["lzma", "ctx"])
def test_rdo_never_writes_a_larger_file_than_plain(codec):
    """rdo judged only ctx's payload: on this gradient it saved 2 bytes of it and cost 10 of metadata (ctx 259
    bytes against 257, lzma 454 against 446), each at a higher J. The plain file is written instead."""
    y, x = np.mgrid[0:120, 0:160]
    pixels = np.dstack([x * 255 // 159, y * 255 // 119, (x + y) * 255 // 278]).astype(np.uint8)
    plain = kmq.compress(pixels, 8, codec=codec)
    assert kmq.compress(pixels, 8, codec=codec, rdo=2).to_bytes() == plain.to_bytes()


def test_rdo_with_lzma_is_judged_on_a_band_through_the_middle_of_a_large_image(monkeypatch):
    # Above api._JUDGED pixels (lowered here) only a band of _JUDGED pixels is encoded. Outside it, rdo's
    # labels here are all 0 (far smaller whole), inside the same as plain's, at a higher J: judged on the band,
    # the payloads tie and the higher J loses; judged whole, rdo's would win.
    monkeypatch.setattr(kmq.api, "_JUDGED", 40 * 10)
    labels = np.random.default_rng(0).integers(0, 8, (40, 40)).astype(np.uint16)
    moved_labels = np.zeros_like(labels)
    moved_labels[15:25] = labels[15:25]  # the band: (40 - 10) // 2 = 15 .. 25
    palette = np.arange(24, dtype=np.uint8).reshape(8, 3)
    plain = kmq.KmqImage(palette, labels, {"distortion": 1.0, "seed": 0}, "lzma")
    moved = kmq.KmqImage(palette, moved_labels, {"distortion": 1.01, "seed": 0, "rdo": 2.0}, "lzma")
    assert not kmq.api._smaller(moved, plain)
    monkeypatch.setattr(kmq.api, "_JUDGED", 40 * 40)  # whole
    assert kmq.api._smaller(moved, plain)


@pytest.mark.parametrize("codec", ["ctx", "lzma"])
def test_an_rdo_file_weighed_whole_is_written_without_encoding_it_again(crop, codec, monkeypatch):
    # api._smaller encodes rdo's file and the plain one to keep the smaller; writing the kept one encoded
    # its labels a third time (a ctx encode of 512k pixels: ~0.15 s of CPU).
    expected = kmq.compress(crop, 16, codec=codec, rdo=2).to_bytes()
    calls = []
    encode = kmq.codecs.encode
    monkeypatch.setattr(kmq.codecs, "encode", lambda *a: calls.append(a) or encode(*a))
    img = kmq.compress(crop, 16, codec=codec, rdo=2)
    weighed = len(calls)
    assert weighed >= 2
    assert img.to_bytes() == expected
    assert len(calls) == weighed


def _plain_sweep(labels: np.ndarray, pixels: np.ndarray, palette: np.ndarray, lam: float,
                 todo: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """One sweep of the Potts ICM done plainly, as rdo's sweeps are defined: each parity class in turn, every
    pixel that when its class is visited is at a label boundary (4 axial neighbours) or away from its
    nearest entry, and in ``todo`` ((H, W) bool, all if None), takes the lowest-cost of its label, its
    nearest and its 4 axial neighbours'. Nothing else is skipped (rdo also skips pixels that hold half the
    Potts weight at their nearest entry): returns the labels and the (H, W) map of the changed ones."""
    height, width = labels.shape
    k = len(palette)
    sq = ((pixels[:, :, None, :].astype(np.int64) - palette[None, None].astype(np.int64)) ** 2).sum(-1)
    near = sq.argmin(-1)
    offsets = [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]
    weights = [2, 2, 2, 2, 1, 1, 1, 1]
    padded = np.pad(labels, 1, constant_values=k)
    start = labels.copy()
    for pi in (0, 1):
        for pj in (0, 1):
            now = padded[1:-1, 1:-1]
            visit = now != near
            for di, dj in offsets[:4]:
                visit |= now != padded[1 + di:1 + di + height, 1 + dj:1 + dj + width]
            if todo is not None:
                visit &= todo
            rows, cols = np.mgrid[pi:height:2, pj:width:2]
            rows, cols = rows[visit[rows, cols]], cols[visit[rows, cols]]
            nbs = [padded[rows + 1 + di, cols + 1 + dj] for di, dj in offsets]
            cur = padded[rows + 1, cols + 1]
            best_c, best = cur, None
            for i, c in enumerate([cur, near[rows, cols], *nbs[:4]]):
                agree = sum(w * (nb == c) for nb, w in zip(nbs, weights))
                cost = (sq[rows, cols, np.minimum(c, k - 1)].astype(np.float32)
                        - np.float32(lam) * agree.astype(np.float32))
                if i >= 2:
                    cost = np.where(c == k, np.inf, cost)
                if best is None:
                    best = cost
                else:
                    best_c, best = np.where(cost < best, c, best_c), np.minimum(cost, best)
            padded[rows + 1, cols + 1] = best_c
    labels = padded[1:-1, 1:-1]
    return labels, labels != start


@pytest.mark.parametrize("dense", [1, 10**9])  # todo's pixels gathered by index / found on views of all
@pytest.mark.parametrize("lam", [30.0, 300.0, 3000.0])
def test_sweeps_skip_only_pixels_that_cannot_move(crop, lam, dense, monkeypatch):
    monkeypatch.setattr(rdo, "_DENSE", dense)
    pixels = crop[:37, :45]
    distinct = kmeans.distinct(pixels.reshape(-1, 3))
    palette, _, _ = kmq.api.quantize_distinct(distinct, 8, seed=0, max_iter=300)
    s = rdo._start(pixels, rdo._Colours(distinct), palette)
    want, todo, want_todo, moves = s.labels.copy(), None, None, 0
    stamp, before = np.zeros((pixels.shape[0] + 2, pixels.shape[1] + 2), np.int8), None
    for sweep in range(4):
        changed = rdo._sweep(s, lam, todo, stamp, 4 * sweep, before)
        before = todo
        want, want_changed = _plain_sweep(want, pixels, palette, lam, want_todo)
        np.testing.assert_array_equal(s.labels, want)
        np.testing.assert_array_equal(np.sort(changed), np.flatnonzero(want_changed))
        moves += len(changed)
        todo = stamp[1:-1, 1:-1] > 4 * sweep
        grown = np.pad(want_changed, 1)
        want_todo = np.zeros(want.shape, bool)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                want_todo |= grown[1 + di:1 + di + want.shape[0], 1 + dj:1 + dj + want.shape[1]]
        np.testing.assert_array_equal(todo, want_todo)
    assert moves > 20
    flat = want.reshape(-1)
    assert s.total == rdo._dist(pixels.reshape(-1, 3), palette, flat).sum()
    np.testing.assert_array_equal(s.counts, np.bincount(flat, minlength=len(palette)))
    assert set(np.flatnonzero(flat != s.near(np.arange(flat.size)))) <= set(s.moved)


def test_back_off_lands_within_the_budget_after_a_refinement(crop):
    # A strong run, then its palette refined (some colours' nearest entry changes, so the pixels away from
    # their nearest entry include ones that never moved): the back-off returns pixels to their nearest
    # entries until J is within the budget, and the running J and counts stay exact.
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, _ = kmq.api.quantize_distinct(distinct, 8, seed=0, max_iter=300)
    s = rdo._start(crop, rdo._Colours(distinct), palette)
    budget = s.total * 102 // 100
    rdo._run(s, 200.0, 2)
    assert s.pending is not None and s.nearest_total() <= budget < s.total
    before = s.labels.copy()
    rdo._back_off(s, budget)
    flat = s.labels.reshape(-1)
    # it stops at the first pixel that brings J within budget (each pixel adds less than lambda * 12 here)
    assert budget - 200 * 12 < s.total == rdo._dist(crop.reshape(-1, 3), s.palette, flat).sum() <= budget
    np.testing.assert_array_equal(s.counts, np.bincount(flat, minlength=len(s.palette)))
    back = flat != before.reshape(-1)
    np.testing.assert_array_equal(flat[back], s.near(np.flatnonzero(back)))
    assert set(np.flatnonzero(flat != s.near(np.arange(flat.size)))) <= set(s.moved)


@pytest.fixture
def small_sample(monkeypatch):
    """rdo's sample made small (4 tiles of 16 x 16, for images over 2048 pixels), so a 64 x 64 image is
    judged and calibrated on a sample as a 12 MP one is."""
    monkeypatch.setattr(rdo, "_SAMPLE", 1 << 10)
    monkeypatch.setattr(rdo, "_TILE", 16)


def test_calibration_on_a_sample_refines_by_shifts_and_the_image_lands_within_budget(crop, small_sample,
                                                                                     monkeypatch):
    # The sample's own means would fit the palette to the sample and make its J look lower than the image's
    # run gives (12 MP noisy: -2.7 % against +3.8 %): lambda came out too high. Only the image is refined
    # to its means.
    refined = []
    original = rdo._refine
    monkeypatch.setattr(rdo, "_refine", lambda s, sample=False: (refined.append((s.labels.size, sample)),
                                                                 original(s, sample))[1])
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, j = kmq.api.quantize_distinct(distinct, 8, seed=0, max_iter=300)
    assert rdo._sample(crop).shape == (32, 32, 3)
    got_palette, labels, got_j = rdo.optimise(crop, distinct, palette, 5.0)
    # (the image's run makes _IMAGE_ROUNDS rounds, each refined on the image)
    assert refined[-2:] == [(64 * 64, False)] * 2 and set(refined[:-2]) == {(32 * 32, True)}
    assert j < got_j <= j * 1.05
    assert got_j * labels.size == rdo._dist(crop.reshape(-1, 3), got_palette, labels.reshape(-1)).sum()


@pytest.mark.parametrize("sample, want", [(False, [[1], [41]]), (True, [[2], [35]])])
def test_refine_to_the_means_or_by_the_shift_of_the_means(sample, want):
    # Nearest: 0 2 10 -> entry 5 (mean 4), 52 60 -> entry 50 (mean 56). The 10 moves to entry 50: the means
    # become 1 and 122 / 3 = 40.67; on a sample the entries move by as much: 5 - 3 = 2, 50 - 15.33 -> 35.
    pixels = np.array([[0, 2, 10, 52, 60]], np.uint8)[..., None]
    s = rdo._start(pixels, rdo._Colours(kmeans.distinct(pixels.reshape(-1, 1))), np.array([[5], [50]], np.uint8))
    s.labels[0, 2] = 1
    s.moved, s.counts = np.array([2]), np.array([2, 3])
    rdo._refine(s, sample)
    np.testing.assert_array_equal(s.palette, want)
    assert s.total == rdo._dist(pixels.reshape(-1, 1), s.palette, s.labels.reshape(-1)).sum()


def test_nothing_moved_on_the_sample_gives_the_nearest_labels_without_a_run_on_the_image(small_sample,
                                                                                        monkeypatch):
    # The sample's 4 corner tiles are flat (J > 0: their colour is off the palette) and cannot gain from
    # a move; the middle could, but the sample judges the image's payload, and it would tie: the image is
    # not swept at all.
    rng = np.random.default_rng(5)
    pixels = np.full((64, 64, 3), 101, np.uint8)
    pixels[16:48, 16:48] = rng.integers(0, 256, (32, 32, 3))
    runs = []
    original = rdo._run
    monkeypatch.setattr(rdo, "_run", lambda s, *args, **kwargs: (runs.append(s.labels.size),
                                                                  original(s, *args, **kwargs))[1])
    distinct = kmeans.distinct(pixels.reshape(-1, 3))
    palette = np.array([[100, 100, 100], [40, 200, 90], [200, 40, 160]], np.uint8)
    got_palette, labels, got_j = rdo.optimise(pixels, distinct, palette, 50.0)
    assert runs and set(runs) == {32 * 32}
    nearest = kmeans.nearest(pixels.reshape(-1, 3), palette)[0]
    np.testing.assert_array_equal(got_palette[labels].reshape(-1, 3), palette[nearest])
    assert got_j == rdo._dist(pixels.reshape(-1, 3), palette, nearest).sum() / labels.size


@pytest.mark.parametrize("share, skewed", [(0.001, False), (0.01, True), (0.3, False), (1.0, False),
                                           (2.0, False)])
def test_cheapest_is_the_prefix_of_the_stable_order_by_worth(share, skewed):
    # Few distinct worths, so ties straddle every threshold; skewed: the least worth move the least J; 2.0:
    # more than there is (all of them).
    rng = np.random.default_rng(4)
    worth = rng.integers(0, 40, 20000) / 8 - 1
    delta = np.where(worth < 1, 1, 100) if skewed else rng.integers(1, 100, 20000)
    excess = int(delta.sum() * share)
    order = np.argsort(worth, kind="stable")
    want = order[:int(np.searchsorted(np.cumsum(delta[order]), excess)) + 1]
    np.testing.assert_array_equal(np.sort(rdo._cheapest(worth, delta, excess)), np.sort(want))


@pytest.mark.parametrize("share", [0.0, 0.05, 0.2, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("spread", ["back_off", "wide"])
def test_cheapest_finds_the_prefix_through_buckets(share, spread):
    # As _back_off makes them: -1 (no agreement bought) or gain / delta, many tied, spanning ~20 octaves (a
    # bucket of the float bits holds several distinct worths where the prefix ends); "wide": positive worths
    # from 1e-30 to 1e30, more octaves than _BUCKETS allows at 2^12 buckets each.
    rng = np.random.default_rng(7)
    n = 50000
    delta = rng.integers(1, 200000, n) // rng.integers(1, 5000, n) + 1
    if spread == "back_off":
        gain = rng.integers(-3, 13, n)
        worth = np.where(gain > 0, gain / delta, -1.0)
    else:
        worth = 10.0 ** rng.uniform(-30, 30, n)
        worth[rng.integers(0, n, 2000)] = 1.0  # a large tie
    excess = max(1, int(delta.sum() * share))
    order = np.argsort(worth, kind="stable")
    want = order[:int(np.searchsorted(np.cumsum(delta[order]), excess)) + 1]
    got = rdo._cheapest(worth, delta, excess)
    assert len(np.unique(got)) == len(got)
    np.testing.assert_array_equal(np.sort(got), np.sort(want))


def test_calibration_that_overshoots_twice_still_spends_its_budget():
    # A noisy grey ring: J jumps with lambda, and the secant's 4 trials kept none of their moves (J 1.000x,
    # the file 0.986x plain). Halving the bracket while the best run under the budget used less than half
    # of the J allowed, then backing the least J over the budget off to it, lands at 1.020x the J, 0.893x
    # the bytes.
    y, x = np.mgrid[0:160, 0:240]
    noise = np.random.default_rng(0).normal(0, 4, x.shape)
    pixels = np.clip(np.hypot(x - 120, y - 80) * 1.7 + noise, 0, 255).astype(np.uint8)
    plain = kmq.compress(pixels, 16, codec="ctx")
    img = kmq.compress(pixels, 16, codec="ctx", rdo=2)
    assert 1.01 * plain.distortion <= img.distortion <= 1.02 * plain.distortion
    assert len(img.to_bytes()) < 0.95 * len(plain.to_bytes())


def test_calibration_keeps_the_run_just_over_the_budget_backed_off_to_it(crop, monkeypatch):
    # Of the trials, the one that added the least J over the budget (here within 2x of the J allowed) is
    # backed off to the budget and returned with its lambda, not the largest lambda that stayed under it.
    runs = []
    original = rdo._run
    monkeypatch.setattr(rdo, "_run", lambda s, lam, sweeps, sample=False, **kw: (
        original(s, lam, sweeps, sample, **kw), runs.append((lam, s.total)))[0])
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, _ = kmq.api.quantize_distinct(distinct, 8, seed=0, max_iter=300)
    prepared = rdo.prepare(crop, distinct, palette)
    j0 = prepared.plain.total
    budget = j0 * 102 // 100
    trial = rdo._calibrate(prepared, 1.02, 2)
    over = [(total, lam) for lam, total in runs if total > j0 * 1.02]
    assert over and min(over)[0] - j0 <= 2 * (j0 * 1.02 - j0)
    assert trial.lam == min(over)[1] and trial.kept.total <= budget
    assert trial.kept.total == rdo._dist(crop.reshape(-1, 3), trial.kept.palette, trial.kept.labels.reshape(-1)).sum()


@pytest.mark.parametrize("sampled", [False, True])
def test_a_prepared_state_shared_by_several_runs_gives_each_run_its_own_result(crop, small_sample, sampled,
                                                                                monkeypatch):
    # A target's search makes several rdo runs at one K from one rdo.prepare: no run may leave a trace in it
    # (a run writes labels and counts in place), so each gives the result it gives alone, byte for byte.
    if not sampled:
        monkeypatch.setattr(rdo, "_SAMPLE", 1 << 17)  # the crop is its own sample
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, _ = kmq.api.quantize_distinct(distinct, 8, seed=0, max_iter=300)
    prepared = rdo.prepare(crop, distinct, palette)
    assert prepared.whole is not sampled
    before = prepared.plain.labels.copy()
    for pct in (2.0, 50.0, 0.5, 2.0):
        shared = rdo.optimise(crop, distinct, palette, pct, prepared)
        alone = rdo.optimise(crop, distinct, palette, pct)
        np.testing.assert_array_equal(shared[0], alone[0])
        np.testing.assert_array_equal(shared[1], alone[1])
        assert shared[2] == alone[2]
    np.testing.assert_array_equal(prepared.plain.labels, before)
    with pytest.raises(ValueError, match="another palette"):
        rdo.optimise(crop, distinct, palette[::-1].copy(), 2.0, prepared)


@pytest.mark.parametrize("sampled", [False, True])
def test_a_warm_prepared_state_calibrates_each_run_from_the_trials_before_it(crop, small_sample, sampled,
                                                                             monkeypatch):
    # A target's search makes several rdo runs at one K: with prepare(warm=True) the first is calibrated as
    # a cold one is (the same result, byte for byte), the next start from its trials and take fewer (a cold
    # start takes 4), and each still lands within its own budget and near it.
    if not sampled:
        monkeypatch.setattr(rdo, "_SAMPLE", 1 << 17)  # the crop is its own sample
    runs = []
    original = rdo._run
    monkeypatch.setattr(rdo, "_run", lambda s, lam, sweeps, sample=False, **kw: (
        runs.append(lam), original(s, lam, sweeps, sample, **kw))[1])
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, j0 = kmq.api.quantize_distinct(distinct, 8, seed=0, max_iter=300)
    warm = rdo.prepare(crop, distinct, palette, warm=True)
    before = warm.plain.labels.copy()
    first = rdo.optimise(crop, distinct, palette, 20.0, warm)
    alone = rdo.optimise(crop, distinct, palette, 20.0)
    # (the same colour at every pixel: where the image is its own sample, a warm run's entries come in a
    # file's order)
    np.testing.assert_array_equal(first[0][first[1]], alone[0][alone[1]])
    assert first[2] == alone[2]
    for pct in (25.0, 30.0, 22.0):
        runs.clear()
        got = rdo.optimise(crop, distinct, palette, pct, warm)
        calibration = len(runs) - (0 if not sampled else 1)  # (a sampled image's own run at the lambda found)
        assert calibration < rdo._TRIALS
        assert j0 < got[2] <= j0 * (1 + pct / 100)
        cold = rdo.optimise(crop, distinct, palette, pct)
        assert got[2] - j0 >= 0.8 * (cold[2] - j0)
    np.testing.assert_array_equal(warm.plain.labels, before)
    assert sum(len(v) for v in warm.trials.values()) <= rdo._REMEMBERED * 2


def test_a_warm_prepared_state_keeps_the_images_runs_for_another_strength(crop, small_sample, monkeypatch):
    # A target's search lands at one K's lambda again with another strength: the image's run from its
    # nearest labelling is the same state, so a warm Prepared keeps the latest (rdo._RUNS_KEPT) and each call
    # backs a copy off to its own budget: the same results, byte for byte, as without them, fewer runs.
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, _ = kmq.api.quantize_distinct(distinct, 8, seed=0, max_iter=300)
    original = rdo._run
    results, whole_runs = [], []
    for kept in (rdo._RUNS_KEPT, 0):
        monkeypatch.setattr(rdo, "_RUNS_KEPT", kept)
        runs = []
        monkeypatch.setattr(rdo, "_run", lambda s, lam, sweeps, sample=False, **kw: (
            runs.append(s.height == crop.shape[0]), original(s, lam, sweeps, sample, **kw))[1])
        warm = rdo.prepare(crop, distinct, palette, warm=True)
        assert not warm.whole
        before = warm.plain.labels.copy()
        results.append([rdo.optimise(crop, distinct, palette, pct, warm) for pct in (3.0, 3.0, 3.2, 3.0, 2.9)])
        np.testing.assert_array_equal(warm.plain.labels, before)
        assert len(warm.runs) <= kept
        whole_runs.append(sum(runs))
    for got, want in zip(*results):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[2] == want[2]
    assert len({r[2] for r in results[0]}) > 1  # (the strengths differ in what they keep)
    assert whole_runs[0] < whole_runs[1]


def test_a_callers_writes_to_what_optimise_gave_do_not_change_a_kept_run(crop, small_sample):
    # the palette returned was the kept run's own array: zeroing it changed the next call's result
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, _ = kmq.api.quantize_distinct(distinct, 8, seed=0, max_iter=300)
    results = []
    for write in (False, True):
        warm = rdo.prepare(crop, distinct, palette, warm=True)
        assert not warm.whole  # (runs on the whole image are kept)
        first = rdo.optimise(crop, distinct, palette, 2.0, warm)
        if write:
            first[0][:] = 0
            first[1][:] = 0
        results.append(rdo.optimise(crop, distinct, palette, 2.0, warm))
    np.testing.assert_array_equal(results[1][0], results[0][0])
    np.testing.assert_array_equal(results[1][1], results[0][1])
    assert results[1][2] == results[0][2]


@pytest.mark.parametrize("lam", [30.0, 3000.0])
def test_a_run_keeps_one_mask_of_moved_pixels_over_its_sweeps(crop, lam):
    # _run hands its sweeps one mask of the pixels away from their nearest entry and reads s.moved from it
    # once: the same labels, J, counts and moved pixels as sweeps that each rebuild it from s.moved.
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, _ = kmq.api.quantize_distinct(distinct, 16, seed=0, max_iter=300)
    run = rdo._start(crop, rdo._Colours(distinct), palette)
    rdo._run(run, lam, 3)
    each = rdo._start(crop, rdo._Colours(distinct), palette)
    assert sum(len(c) for c in _sweeps(each, lam, 3)) > 0
    rdo._refine(each)
    np.testing.assert_array_equal(run.labels, each.labels)
    np.testing.assert_array_equal(run.palette, each.palette)
    np.testing.assert_array_equal(run.moved, each.moved)
    np.testing.assert_array_equal(run.counts, each.counts)
    assert run.total == each.total


@pytest.mark.parametrize("sample", [False, True])
def test_runs_from_one_nearest_labelling_share_its_sums_and_refine_alike(crop, sample):
    # Every run from one nearest labelling (a calibration's trials, a target's runs at one K) refines from
    # the sums of its nearest entries' pixels: kept once, the same palettes, labels and J as each run alone.
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, _ = kmq.api.quantize_distinct(distinct, 16, seed=0, max_iter=300)
    shared = rdo._start(crop, rdo._Colours(distinct), palette)
    for lam in (30.0, 300.0, 3000.0):
        run = rdo._copy(shared)
        rdo._run(run, lam, 2, sample)
        alone = rdo._start(crop, rdo._Colours(distinct), palette)
        rdo._run(alone, lam, 2, sample)
        np.testing.assert_array_equal(run.palette, alone.palette)
        np.testing.assert_array_equal(run.labels, alone.labels)
        assert run.total == alone.total
    sums, had = shared.colours.nearest_sums(shared.near_c, 16, sample)
    assert shared.colours.nearest_sums(shared.near_c, 16, sample)[0] is sums  # (kept)
    weights = distinct.counts.astype(np.float64)
    for ch in range(3):
        np.testing.assert_array_equal(sums[ch], np.bincount(shared.near_c, weights=distinct.colors[:, ch] * weights,
                                                            minlength=16))
    if sample:
        np.testing.assert_array_equal(had, np.bincount(shared.near_c, weights=weights, minlength=16))
    other = shared.near_c.copy()
    assert shared.colours.nearest_sums(other, 16, sample)[0] is not sums


@pytest.mark.parametrize("k", [40, 300])
@pytest.mark.parametrize("moved", [0, 1, 3])
def test_a_refinement_above_the_gaps_searches_only_colours_its_entry_may_lose(k, moved, monkeypatch):
    # Above _GAPS_MAX_K a refined palette's nearest entries come from each entry's separation from the
    # others (less twice the farthest move): the colours well inside their entry keep it, the rest are
    # searched. The same entries and distances as a search of every colour, ties and equal entries included.
    monkeypatch.setattr(rdo, "_SEPARATED_PER_COLOUR", 64)
    rng = np.random.default_rng(k + moved)
    colors = np.unique(rng.integers(0, 256, (6000, 3), dtype=np.uint8), axis=0)
    pixels = colors[rng.integers(0, len(colors), 90 * 80)].reshape(90, 80, 3)
    distinct = kmeans.distinct(pixels.reshape(-1, 3))
    palette = rng.integers(0, 256, (k, 3), dtype=np.uint8)
    palette[1] = palette[0]  # (two equal entries: no colour is sure of either)
    palette[2] = palette[3] + [1, 0, 0]  # (a close pair)
    s = rdo._start(pixels, rdo._Colours(distinct), palette)
    assert s.gap_c is None
    refined = np.clip(palette.astype(int) + rng.integers(-moved, moved + 1, palette.shape), 0, 255).astype(np.uint8)
    searched = []
    original = rdo._nearest_of
    monkeypatch.setattr(rdo, "_nearest_of", lambda colors, *a: (searched.append(len(colors)), original(colors, *a))[1])
    near, dnear, gap = rdo._renearest(s, refined, rdo._dist(distinct.colors, refined, s.near_c))
    assert gap is None and 0 < searched[0] < len(distinct.colors)
    want, want_d = kmeans.nearest(distinct.colors, refined)
    np.testing.assert_array_equal(near, want)
    np.testing.assert_array_equal(dnear, want_d)
    assert near.dtype == s.near_c.dtype and dnear.dtype == np.int32


@pytest.mark.parametrize("k", [12, 40])
def test_a_refinement_to_a_palette_met_before_is_not_searched_again(k, monkeypatch):
    # A target's runs at one K start from one nearest labelling and their refinements often end at one palette
    # (a 3000x2250 flower in 150 kB: 3 runs at K = 120): the nearest entries found for it are given again, the
    # same as a search finds; another palette, or other nearest entries to start from, are searched.
    rng = np.random.default_rng(k)
    pixels = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)
    distinct = kmeans.distinct(pixels.reshape(-1, 3))
    palette = rng.integers(0, 256, (k, 3), dtype=np.uint8)
    s = rdo._start(pixels, rdo._Colours(distinct), palette)
    searched = []
    for name in ("_nearest_of", "_gaps"):
        original = getattr(rdo, name)
        monkeypatch.setattr(rdo, name, lambda colors, *a, f=original: (searched.append(len(colors)), f(colors, *a))[1])

    def refined(shift):
        moved = np.clip(palette.astype(int) + shift, 0, 255).astype(np.uint8)
        return moved, rdo._dist(distinct.colors, moved, s.near_c)
    first = rdo._renearest(rdo._copy(s), *refined(3))
    assert searched
    again = rdo._renearest(rdo._copy(s), *refined(3))
    assert len(searched) == 1 and all(a is b for a, b in zip(first, again))
    want, want_d = kmeans.nearest(distinct.colors, refined(3)[0])
    np.testing.assert_array_equal(again[0], want)
    np.testing.assert_array_equal(again[1], want_d)
    rdo._renearest(s, *refined(-3))
    assert len(searched) == 2
    other = rdo._start(pixels, s.colours, palette)  # (its own nearest entries, equal to s's)
    before = len(searched)
    rdo._renearest(other, *refined(3))
    assert len(searched) == before + 1


def test_digest_reads_the_arrays_as_their_bytes():
    import hashlib
    palette = np.arange(21, dtype=np.uint8).reshape(7, 3)
    labels = (np.arange(600) % 7).astype(np.uint16).reshape(20, 30)
    for p, lab in ((palette, labels), (palette[::-1], labels[:, ::2]), (palette, labels.T)):
        want = hashlib.blake2b(bytes(str(p.shape), "ascii") + p.tobytes() + lab.tobytes()).digest()
        assert rdo.digest(p, lab) == want
    assert rdo.digest(palette, labels) != rdo.digest(palette, labels.astype(np.uint8))


def _checker_and_noise() -> np.ndarray:
    """64x64 grey: 3/4 random levels 150..250, the last quarter a checkerboard of 98 and 102."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(150, 251, (64, 64)).astype(np.uint8)
    yy, xx = np.mgrid[48:64, 0:64]
    pixels[48:] = np.where((yy + xx) % 2, 98, 102)
    return pixels[..., None]


def test_choose_prefers_the_palette_whose_labels_cost_fewer_bytes():
    # The first palette codes the checkerboard exactly (a costly checker of labels), the second as one
    # level 100 at J 4 there: 0.6 % more J over the image, far fewer label bytes.
    pixels = _checker_and_noise()
    distinct = kmeans.distinct(pixels.reshape(-1, 1))
    first = np.array([[98], [102], [175], [225]], np.uint8)
    other = np.array([[100], [175], [225]], np.uint8)
    assert rdo.choose(pixels, distinct, [(first, 0.0), (other, 0.5)])[0] == 1
    # A candidate whose J leaves rdo too little budget is not judged.
    worse = np.array([[100], [170], [230]], np.uint8)
    assert rdo.choose(pixels, distinct, [(first, 0.0), (worse, 0.0)])[0] == 0
    # Nor one whose J spends all the rdo asked for (0.6 % over, --rdo 0.5): it was picked, then dropped after
    # a whole-image labelling, and rdo ran from the plain palette anyway.
    assert rdo.choose(pixels, distinct, [(first, 0.0), (other, 0.5)], 0.005)[0] == 0
    assert rdo.choose(pixels, distinct, [(first, 0.0), (other, 0.5)], 0.02)[0] == 1


def test_rdo_from_another_palette_keeps_the_first_palettes_budget():
    from kmq import api

    pixels = _checker_and_noise()
    distinct = kmeans.distinct(pixels.reshape(-1, 1))
    first = np.array([[98], [102], [175], [225]], np.uint8)
    other = np.array([[100], [175], [225]], np.uint8)
    near, sq = kmeans.nearest(distinct.colors, first)
    j = int(sq.astype(np.int64) @ distinct.counts) / pixels.size
    palette, labels, got, _ = api._rdo(pixels, distinct, first, j, 2.0, 0, None, [(other, 0.0)])
    assert 98 not in palette and 102 not in palette  # rdo ran from the other palette
    assert j < got <= j * 1.02
    decoded = palette[labels].reshape(pixels.shape).astype(np.int64)
    assert got == ((decoded - pixels) ** 2).mean()
    # an other palette whose own J is the whole budget is not run
    worse = np.array([[100], [170], [230]], np.uint8)
    again = api._rdo(pixels, distinct, first, j, 2.0, 0, None, [(worse, 0.0)])
    assert 170 not in again[0] and again[2] <= j * 1.02


@pytest.mark.parametrize("k", [16, 64])  # (64: 8 restarts of its own, and 8 more drawn for others)
def test_fit_others_leave_the_fit_alone_and_stay_near_its_j(samples, k):
    with Image.open(samples / "chelsea.png") as im:
        pixels = np.asarray(im.convert("RGB"))
    distinct = kmeans.distinct(pixels.reshape(-1, 3))
    for colors, counts in ((distinct.colors, distinct.counts), (distinct.colors[::3], distinct.counts[::3])):
        others: list = []
        fitted = kmeans.fit(colors, counts, k, others=others)
        np.testing.assert_array_equal(fitted, kmeans.fit(colors, counts, k))
        assert 1 <= len(others) <= kmeans._OTHERS_RUNS
        for centroids, excess in others:
            assert centroids.shape == fitted.shape and excess <= kmeans._OTHERS_J
            assert not np.array_equal(centroids, fitted)


def test_rdo_chooses_among_the_fits_restarts_for_fewer_bytes(samples, monkeypatch):
    # chelsea at K = 16: the fit's 3rd restart (0.9992x its J) gives rdo 0.962x the bytes of its own.
    with Image.open(samples / "chelsea.png") as im:
        pixels = np.asarray(im.convert("RGB"))
    plain = kmq.compress(pixels, 16, codec="ctx")
    img = kmq.compress(pixels, 16, codec="ctx", rdo=2)
    assert img.to_bytes() == kmq.compress(pixels, 16, codec="ctx", rdo=2).to_bytes()
    assert img.distortion <= plain.distortion * 1.02
    assert img.distortion == pytest.approx(true_j(img, pixels), rel=1e-12)
    monkeypatch.setattr(kmeans, "_OTHERS_RUNS", 0)
    alone = kmq.compress(pixels, 16, codec="ctx", rdo=2)
    assert len(img.to_bytes()) < 0.98 * len(alone.to_bytes())
    assert kmq.compress(pixels, 16, codec="ctx").to_bytes() == plain.to_bytes()


def test_an_image_its_own_sample_keeps_the_plain_palettes_rdo_unless_the_other_is_smaller(crop, monkeypatch):
    from kmq import api
    from kmq.codecs import ctx

    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, j = api.quantize_colors(distinct.colors, distinct.counts, 8)
    real = rdo.choose
    monkeypatch.setattr(rdo, "choose", lambda *args: (1, real(*args)[1]))  # choose's guess, wrong or not
    other = np.roll(palette, 1, axis=0)  # the same colours in another order: a file of the same size
    got = api._rdo(crop, distinct, palette, j, 2.0, 0, None, [(other, 0.0)])
    own = rdo.optimise(crop, distinct, palette, 2.0)

    def size(out):
        return len(ctx.encode(out[1].reshape(crop.shape[:2]), out[0])) + out[0].size
    assert size(got) <= size(own) and got[2] <= j * 1.02
    if size(got) == size(own):
        np.testing.assert_array_equal(got[0], own[0])
        np.testing.assert_array_equal(got[1], own[1])


def test_gaps_toy_colours_with_a_tie():
    # Entries 0, 10 and 30 (grey): 4 is 16 from 0 and 36 from 10 (gap 20); 5 is 25 from both (a tie: the
    # lower index, gap 0); 29 is 1 from 30 and 361 from 10 (gap 360); 200 is 28,900 from 30, 36,100 from 10.
    labels, sq, gap = rdo._gaps(np.array([[4], [5], [29], [200]], np.uint8), np.array([[0], [10], [30]], np.uint8))
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, [0, 0, 2, 2])
    np.testing.assert_array_equal(sq, [16, 25, 1, 28900])
    np.testing.assert_array_equal(gap, [20, 0, 360, 7200])


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("k", [1, 2, 5, 32])
def test_gaps_agree_with_kmeans_nearest(channels, k):
    rng = np.random.default_rng(k * channels)
    colors = rng.integers(0, 256, (70000, channels), dtype=np.uint8)
    colors[:500] = colors[500:1000] // 4 * 4  # many ties on a coarse grid
    palette = np.unique(rng.integers(0, 256, (k, channels), dtype=np.uint8) // 4 * 4, axis=0)
    labels, sq, gap = rdo._gaps(colors, palette)
    want, want_sq = kmeans.nearest(colors, palette)
    np.testing.assert_array_equal(labels, want)
    np.testing.assert_array_equal(sq, want_sq)
    d = ((colors[:, None].astype(np.int64) - palette[None].astype(np.int64)) ** 2).sum(-1)
    d.sort(axis=1)
    np.testing.assert_array_equal(gap, d[:, 1] - d[:, 0] if len(palette) > 1 else np.iinfo(np.int32).max - d[:, 0])


def _count_choose(monkeypatch) -> list:
    """A list whose last entry counts the pixels handed to rdo._choose (append 0 to start a count)."""
    seen = []
    choose = rdo._choose

    def counted(*args):
        seen[-1] += len(args[2])
        return choose(*args)

    monkeypatch.setattr(rdo, "_choose", counted)
    return seen


def _same_moves(crop, k, lam, sweeps, monkeypatch, runs) -> list:
    """Runs of _sweeps on crop's nearest labelling at k, one per dict of runs (gaps: False drops _movable's
    gaps; stamped: as _sweeps'), which must make the same moves, labels, J and counts; returns the pixels each
    handed to rdo._choose and the moves of each sweep."""
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, _ = kmq.api.quantize_distinct(distinct, k, seed=0, max_iter=300)
    seen = _count_choose(monkeypatch)
    made = []
    for run in runs:
        s = rdo._start(crop, rdo._Colours(distinct), palette)
        assert s.gap_c is not None
        if not run.get("gaps", True):
            s.gap_c = None
        seen.append(0)
        changed = _sweeps(s, lam, sweeps, run.get("stamped", True))
        made.append((s.labels.copy(), s.total, s.counts.copy(), changed))
    for labels, total, counts, changed in made[1:]:
        np.testing.assert_array_equal(labels, made[0][0])
        assert total == made[0][1]
        np.testing.assert_array_equal(counts, made[0][2])
        for x, y in zip(changed, made[0][3]):
            np.testing.assert_array_equal(x, y)
    return seen, made[0][3]


def _sweeps(s, lam, n, stamped=True):
    """n sweeps as rdo._run makes them (no refinement), each visiting the pixels around the last one's moves
    (with stamped, only those of them that may gain); returns each sweep's moves."""
    stamp = np.zeros((s.height + 2, s.width + 2), np.int8)
    todo = before = None
    changed = []
    for sweep in range(n):
        changed.append(rdo._sweep(s, lam, todo, stamp if stamped else None, 4 * sweep, before))
        grown = stamp[1:-1, 1:-1] > 4 * sweep
        if not stamped:
            grown = np.zeros_like(grown)
            padded = np.pad(grown, 1)
            rows, cols = np.divmod(changed[-1], s.width)
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    padded[rows + 1 + di, cols + 1 + dj] = True
            grown = padded[1:-1, 1:-1]
        todo, before = grown, todo
    return changed


@pytest.mark.parametrize("lam", [3.0, 30.0, 300.0, 3000.0, 1e6])
def test_sweeps_with_gaps_skip_pixels_and_move_the_same(crop, lam, monkeypatch):
    # The gap held against lam (_movable) keeps pixels at a label boundary out of _choose only where no
    # label could win: the same labels, J and moves as with every boundary pixel visited (no gaps).
    seen, changed = _same_moves(crop, 16, lam, 3, monkeypatch, ({}, {"gaps": False}))
    assert seen[0] <= seen[1]
    if lam <= 300:  # (at 3000 every gap of this crop is below 12 lam: none is held)
        assert seen[0] < seen[1] and sum(len(c) for c in changed) > 0


def test_by_share_gives_a_file_s_uint16_labels():
    # Entry 1 holds 3 pixels, entry 0 two and entry 2 one: the order 1, 0, 2.
    palette, labels = kmq.api._by_share(np.array([[0], [9], [5]], np.uint8), np.array([1, 0, 1, 2, 0, 1]), None)
    np.testing.assert_array_equal(palette, [[9], [0], [5]])
    assert labels.dtype == np.uint16
    np.testing.assert_array_equal(labels, [0, 1, 0, 2, 1, 0])


@pytest.mark.parametrize("dense", [1, 10**9])
@pytest.mark.parametrize("lam", [30.0, 300.0, 3000.0])
def test_sweeps_revisit_only_pixels_whose_neighbours_moved_since(crop, lam, dense, monkeypatch):
    # A pixel visited by the sweep before whose neighbours have kept their labels since would keep its own
    # (the least cost of the same candidates; a tie keeps it): the stamped sweeps leave it out and make the
    # same moves, J and counts as sweeps visiting every pixel around the last sweep's moves, visiting fewer.
    monkeypatch.setattr(rdo, "_DENSE", dense)
    seen, changed = _same_moves(crop, 8, lam, 4, monkeypatch, ({}, {"stamped": False}))
    assert seen[0] < seen[1] and sum(len(c) for c in changed[1:]) > 0


@pytest.mark.parametrize("pct", [2.0, 30.0])
@pytest.mark.parametrize("k", [4, 16])
def test_optimise_ordered_is_the_files_order(crop, small_sample, pct, k):
    # ordered: the palette and labels as api._by_share would make them of the same result (by share, ties by
    # colour; uint16 labels), from the counts kept; the same J.
    pixels = np.asarray(Image.fromarray(crop).resize((96, 80), Image.Resampling.BICUBIC))
    distinct = kmeans.distinct(pixels.reshape(-1, 3))
    palette, _, _ = kmq.api.quantize_distinct(distinct, k, seed=0, max_iter=300)
    ready = rdo.prepare(pixels, distinct, palette)
    assert not ready.whole
    plain, labels, j = rdo.optimise(pixels, distinct, palette, pct, ready)
    got, got_labels, got_j = rdo.optimise(pixels, distinct, palette, pct, ready, ordered=True)
    want, want_labels = kmq.api._by_share(plain, labels.reshape(-1), None)
    assert got_j == j and got_labels.dtype == np.uint16 and got_labels.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got_labels, want_labels)
    # its nearest labelling too (a palette of more entries than colours leaves some unused)
    nearest = rdo._nearest(ready.plain, True)
    plain, labels, _ = rdo._nearest(ready.plain)
    want, want_labels = kmq.api._by_share(plain, labels.reshape(-1), None)
    np.testing.assert_array_equal(nearest[0], want)
    np.testing.assert_array_equal(nearest[1], want_labels)


def test_large_images_keep_no_restarts_for_rdo(crop, monkeypatch):
    # Above _OTHERS_MAX pixels the fit keeps no restarts for rdo.choose (none asked for, none judged); up to
    # it, a ctx rdo compress asks for them.
    pixels = np.asarray(Image.fromarray(crop).resize((128, 128), Image.Resampling.BICUBIC))
    asked, judged = [], []
    fit, choose = kmeans.fit, rdo.choose

    def spy(*args, others=None, **kwargs):
        asked.append(others is not None)
        return fit(*args, others=others, **kwargs)

    monkeypatch.setattr(kmeans, "fit", spy)
    monkeypatch.setattr(rdo, "choose", lambda *args: judged.append(1) or choose(*args))
    kmq.compress(pixels, 8, codec="ctx", rdo=2.0)
    assert asked == [True] and judged == [1]
    monkeypatch.setattr(kmq.api, "_OTHERS_MAX", 128 * 128 - 1)
    kmq.compress(pixels, 8, codec="ctx", rdo=2.0)
    assert asked == [True, False] and judged == [1]


@pytest.mark.parametrize("k, shift", [(1, 3), (2, 0), (5, 1), (16, 2), (16, 40), (32, 6)])
def test_renearest_after_a_refinement_is_a_full_search(k, shift):
    # The entries moved by up to ``shift`` levels per channel, and (k > 2) entry 2 moved onto entry 1, so some
    # colours tie between them (ties go to the lower index): only colours near a boundary are searched again,
    # the rest keep their entry, with their exact distance to its new place.
    rng = np.random.default_rng(10 * k + shift)
    pixels = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)
    distinct = kmeans.distinct(pixels.reshape(-1, 3))
    palette = rng.integers(0, 256, (k, 3)).astype(np.uint8)
    s = rdo._start(pixels, rdo._Colours(distinct), palette)
    moved = np.clip(palette.astype(int) + rng.integers(-shift, shift + 1, palette.shape), 0, 255).astype(np.uint8)
    if k > 2:
        moved[2] = moved[1]
    near, dnear, gap = rdo._renearest(s, moved, rdo._dist(distinct.colors, moved, s.near_c))
    want_near, want_dnear, _ = rdo._gaps(distinct.colors, moved)
    np.testing.assert_array_equal(near, want_near)
    np.testing.assert_array_equal(dnear, want_dnear)
    assert gap is None and near.dtype == want_near.dtype and dnear.dtype == np.int32


@pytest.mark.parametrize("pct", [2.0, 30.0])
def test_optimise_with_the_bounded_search_gives_the_full_searchs_labels(crop, small_sample, monkeypatch, pct):
    # The same palette, labels and J as when every refinement searches every colour again (the image judged
    # on a sample, as a 12 MP one is: the sample's refinement and the image's both use it), J within budget.
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, j = kmq.api.quantize_distinct(distinct, 16, seed=0, max_iter=300)
    got = rdo.optimise(crop, distinct, palette, pct)
    calls = []
    monkeypatch.setattr(rdo, "_renearest", lambda s, palette, per_colour: (
        calls.append(1), s.colours.nearest(palette, s.near_c))[1])
    want = rdo.optimise(crop, distinct, palette, pct)
    assert calls
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert j < got[2] <= j * (1 + pct / 100)


def test_a_kept_run_is_ranked_once_for_the_back_offs_to_each_budget(crop, small_sample, monkeypatch):
    # A target's search backs one kept run off to several budgets (the grey trial 1200x800 at K = 26: its 4
    # calls there, one run): the copies of the run share one ranking of its moves (_ranked), made by the first
    # back-off, and give the same results, byte for byte, as copies that each rank their own.
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, _ = kmq.api.quantize_distinct(distinct, 8, seed=0, max_iter=300)
    original, image_run = rdo._ranked, rdo._image_run
    results, ranks = [], []
    for shared in (True, False):
        ranked = []
        monkeypatch.setattr(rdo, "_ranked", lambda s: (ranked.append(s.height == crop.shape[0]), original(s))[1])
        if not shared:
            monkeypatch.setattr(rdo, "_image_run", lambda *a: replace(image_run(*a), ranking=None))
        warm = rdo.prepare(crop, distinct, palette, warm=True)
        assert not warm.whole
        results.append([rdo.optimise(crop, distinct, palette, pct, warm) for pct in (5.0, 4.0, 3.0, 2.0)])
        ranks.append(sum(ranked))
    for got, want in zip(*results):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        assert got[2] == want[2]
    assert len({r[2] for r in results[0]}) > 1
    assert 0 < ranks[0] < ranks[1]


def _brute_choose(palette, lam, px, cur, near, nbs, agree):
    """_choose one pixel at a time: the least cost of cur, near and the axial neighbours' labels (never the
    sentinel k), ties to the earlier candidate; float32 costs as _choose's."""
    k = len(palette)
    out = cur.copy()
    for i in range(len(cur)):
        def cost(c):
            d = np.float32(sum((np.float32(palette[c, ch]) - np.float32(px[i, ch])) ** 2 for ch in range(px.shape[1])))
            a = sum(w * (nb[i] == c) for w, nb in zip(rdo._WEIGHTS, nbs))
            return np.float32(d - np.float32(lam) * np.float32(a))
        best, best_c = cost(cur[i]), cur[i]
        for c in ([] if near is None else [near[i]]) + [nb[i] for nb in nbs[:4]]:
            if c == k:
                continue
            got = cost(c)
            if got < best:
                best, best_c = got, c
        out[i] = best_c
    return out


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("with_near", [False, True])
def test_choose_never_takes_the_sentinel_and_costs_it_as_an_infinite_colour(channels, with_near):
    # The padding's sentinel k (a neighbour outside the image) is an infinite colour in _choose's columns (and
    # in the colours' table of distances), so its cost is inf without a mask written per candidate: the same
    # choices as a pixel-by-pixel search that skips it, from the pixels or from the table alike.
    rng = np.random.default_rng(channels)
    k, m = 6, 400
    palette = rng.integers(0, 256, (k, channels)).astype(np.uint8)
    px = rng.integers(0, 256, (40, channels)).astype(np.uint8)[rng.integers(0, 40, m)]  # (a table of 40 x 7)
    cur = rng.integers(0, k, m).astype(np.uint8)
    near = rng.integers(0, k, m).astype(np.uint8) if with_near else None
    nbs = [rng.integers(0, k + 1, m).astype(np.uint8) for _ in range(8)]  # (k: the sentinel, 1 in 7)
    agree = rdo._agreement(nbs, cur)
    pixels = rdo._PixelDist(palette, px)
    assert np.isinf(pixels.columns[:, k]).all()
    colours = rdo._Colours(kmeans.distinct(px))
    table = colours.table(palette)
    assert np.isinf(table.reshape(-1, k + 1)[:, k]).all()
    for dist in (pixels, rdo._TableDist(table, colours.index, k + 1)):
        for lam in (0.0, 50.0, 5000.0):
            best_c, dcur = rdo._choose(dist, lam, cur, near, nbs, agree)
            np.testing.assert_array_equal(best_c, _brute_choose(palette, lam, px, cur, near, nbs, agree))
            assert (best_c < k).all()
            np.testing.assert_array_equal(dcur, rdo._dist(px, palette, cur))
            moves = np.flatnonzero(best_c != cur)
            assert dist.moved_sum(moves, best_c[moves]) == rdo._dist(px[moves], palette, best_c[moves]).sum()


def test_distances_and_refinement_sums_read_intp_labels_once(crop, monkeypatch):
    # take and bincount cast uint8 labels to intp (and bincount uint8 weights to float64) on every call: _dist
    # casts its labels once for all channels, and a refinement its labels and each channel's levels once, not
    # per channel and per bincount. The same palette, labels and J as before (test_runs_from_one_...).
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, _ = kmq.api.quantize_distinct(distinct, 16, seed=0, max_iter=300)
    s = rdo._start(crop, rdo._Colours(distinct), palette)
    for _ in range(2):
        rdo._sweep(s, 3000.0, None)
    assert len(s.moved)
    take, bincount = np.take, np.bincount
    indices, counted = [], []

    def spy_take(a, idx, *args, **kw):
        indices.append(np.asarray(idx).dtype)
        return take(a, idx, *args, **kw)

    def spy_bincount(x, weights=None, minlength=0):
        counted.append((np.asarray(x).dtype, None if weights is None else np.asarray(weights).dtype))
        return bincount(x, weights=weights, minlength=minlength)
    px, labels = rdo._pixels_at(s, s.moved), s.current(s.moved)
    want = ((px.astype(np.int64) - s.palette[labels]) ** 2).sum(axis=1)
    monkeypatch.setattr(np, "take", spy_take)
    d = rdo._dist(px, s.palette, labels)
    assert indices and all(t == np.intp for t in indices)
    np.testing.assert_array_equal(d, want)
    monkeypatch.setattr(np, "bincount", spy_bincount)
    s.colours._sums = None
    expect = rdo._copy(s)
    rdo._refine(s)
    assert counted and all(x == np.intp and w in (None, np.float64) for x, w in counted)
    monkeypatch.undo()
    expect.colours._sums = None
    rdo._refine(expect)
    np.testing.assert_array_equal(s.palette, expect.palette)
    assert s.total == expect.total


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_put_is_a_masked_copy(dtype):
    # _put writes src where mask holds, by xor and a product (np.copyto(where=) cost 10-20x as much): the same
    # array as the masked copy, for an array src and for an integer one.
    rng = np.random.default_rng(3)
    dst = rng.integers(0, np.iinfo(dtype).max, 1000).astype(dtype)
    src = rng.integers(0, np.iinfo(dtype).max, 1000).astype(dtype)
    mask = rng.random(1000) < 0.3
    for given in (src, 200):
        want = dst.copy()
        np.copyto(want, given, where=mask)
        got = dst.copy()
        rdo._put(got, given, mask)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("grey", [False, True])
@pytest.mark.parametrize("pct", [2.0, 30.0])
def test_sweeps_read_a_few_colours_distances_from_a_table_the_same(crop, small_sample, grey, pct, monkeypatch):
    # Up to _TABLE_MAX colours x (K + 1) (a grey photo, a screenshot) the sweeps read each candidate's
    # distance from the colours' table (one gather) instead of working it out from the pixels: the same
    # float32 distances, so the same files (here with a sample and image runs, as a large image's).
    pixels = crop[..., 0] if grey else crop // 32 * 32  # (8 levels a channel: at most 512 colours)
    read = []
    init = rdo._TableDist.__init__
    monkeypatch.setattr(rdo._TableDist, "__init__", lambda self, *a: read.append(1) or init(self, *a))
    with_table = kmq.compress(pixels, 12, codec="ctx", rdo=pct).to_bytes()
    assert read
    monkeypatch.setattr(rdo, "_TABLE_MAX", 0)
    read.clear()
    assert kmq.compress(pixels, 12, codec="ctx", rdo=pct).to_bytes() == with_table
    assert not read


def test_no_table_of_more_distances_than_pixels():
    # A small image of many colours makes no table (its sweeps would not earn it back at each refinement).
    rng = np.random.default_rng(4)
    palette = rng.integers(0, 256, (8, 3)).astype(np.uint8)
    few = rng.integers(0, 256, (20, 3)).astype(np.uint8)[rng.integers(0, 20, 500)]
    assert rdo._Colours(kmeans.distinct(few)).table(palette) is not None
    many = rng.integers(0, 256, (500, 3)).astype(np.uint8)
    assert rdo._Colours(kmeans.distinct(many)).table(palette) is None


def test_a_warm_run_on_an_image_larger_than_its_sample_is_not_judged_on_the_sample(crop, small_sample, monkeypatch):
    # A target's search (warm) sizes every file it makes on the whole image: the sample's two ctx sizings
    # (0.03 s a K at 1 MP) that judge a cold call's run are left to it. Where that judgment keeps the run, the
    # same result, with no sizing at all.
    from kmq.codecs import ctx
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    palette, _, _ = kmq.api.quantize_distinct(distinct, 8, seed=0, max_iter=300)
    sized = []
    original = ctx.payload_bounds
    monkeypatch.setattr(ctx, "payload_bounds", lambda labels, pal: (sized.append(labels.size),
                                                                   original(labels, pal))[1])
    cold = rdo.optimise(crop, distinct, palette, 20.0)
    assert sorted(sized) == [32 * 32, 32 * 32]  # (the sample's nearest labelling and its run)
    warm = rdo.prepare(crop, distinct, palette, warm=True)
    assert not warm.whole
    del sized[:]
    got = rdo.optimise(crop, distinct, palette, 20.0, warm)
    assert sized == []
    np.testing.assert_array_equal(got[0], cold[0])
    np.testing.assert_array_equal(got[1], cold[1])
    assert got[2] == cold[2] > rdo.prepare(crop, distinct, palette).plain.total / crop[..., 0].size
