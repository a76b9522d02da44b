"""--psnr / --max-bytes: kmq chooses K (and the rdo strength) to meet a target."""
import hashlib
import json
import math
import re
import warnings

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmq
from conftest import assert_compress_usage_error
from kmq import kmeans, target
from kmq.api import quantize_colors, quantized
from kmq.cli import ByteSize, main
from kmq.stats import psnr as psnr_of

KS = range(1, 25)


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    from conftest import SAMPLES
    with Image.open(SAMPLES / "chelsea.png") as im:
        return np.asarray(im.convert("RGB"))[80:112, 180:212].copy()


@pytest.fixture(scope="module")
def fits(crop):
    """The plain image at every K in KS."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [kmq.compress(crop, k) for k in KS]


def plain(fits, codec, target):
    """(bytes, psnr) of the plain file at every K in KS, carrying the metadata a target's file carries."""
    out = []
    for img in fits:
        meta = {**img.metadata, "rdo": 0.0, "target": target}
        out.append((len(kmq.KmqImage(img.palette, img.labels, meta, codec).to_bytes()), db(img)))
    return out


def db(img: kmq.KmqImage) -> float:
    return psnr_of(img.distortion, img.channels)


@pytest.mark.parametrize("codec, target", [("raw", 31.0), ("ctx", 26.0), ("lzma", 29.0)])
def test_psnr_target_met_no_larger_than_the_best_plain_k(crop, fits, codec, target):
    img = kmq.compress_to(crop, psnr=target, codec=codec)
    decoded = img.decode().astype(np.int64)
    assert 10 * np.log10(255**2 / np.mean((decoded - crop) ** 2)) >= target  # from the decoded pixels
    assert db(img) >= target
    assert img.metadata["target"] == {"psnr": target}
    assert img.metadata["rdo"] == 0 if codec == "raw" else img.metadata["rdo"] >= 0
    best = min(size for size, p in plain(fits, codec, {"psnr": target}) if p >= target)
    assert len(img.to_bytes()) <= best


@pytest.mark.parametrize("codec, budget", [("raw", 800), ("ctx", 450)])
def test_max_bytes_target_fits_no_worse_than_the_best_plain_k(crop, fits, codec, budget):
    img = kmq.compress_to(crop, max_bytes=budget, codec=codec)
    assert len(img.to_bytes()) <= budget
    assert img.metadata["target"] == {"max_bytes": budget}
    best = max(p for size, p in plain(fits, codec, {"max_bytes": budget}) if size <= budget)
    assert db(img) >= best


def test_k_bounds_the_search(crop):
    img = kmq.compress_to(crop, psnr=20, k=3, codec="ctx")
    assert img.k <= 3


def test_impossible_psnr_says_the_best_reachable(crop):
    best = db(kmq.compress(crop, 4))
    with pytest.raises(kmq.KmqError) as e:
        kmq.compress_to(crop, psnr=60, k=4)
    assert str(e.value) == f"PSNR 60 dB is out of reach: the best is {best:.2f} dB (K=4, the most k allows)"


def test_impossible_size_says_the_smallest_possible(crop):
    with pytest.raises(kmq.KmqError) as e:
        kmq.compress_to(crop, max_bytes=50)
    m = re.fullmatch(r"no \.kmq file of this image fits in 50 bytes: the smallest possible is (\d+) bytes "
                     r"\(K=1, the target recorded in it\)", str(e.value))
    assert m
    smallest = int(m.group(1))
    img = kmq.compress_to(crop, max_bytes=smallest)
    assert img.k == 1 and len(img.to_bytes()) == smallest


@pytest.mark.parametrize("kwargs, message", [
    ({}, "give exactly one target: psnr or max_bytes"),
    ({"psnr": 30, "max_bytes": 1000}, "give exactly one target: psnr or max_bytes"),
    ({"psnr": 0}, "psnr must be a number of dB above 0 and at most 1000, got 0"),
    ({"psnr": float("nan")}, "psnr must be a number of dB above 0 and at most 1000, got nan"),
    ({"psnr": 1e308}, "psnr must be a number of dB above 0 and at most 1000, got 1e"),
    ({"max_bytes": 0}, "max_bytes must be a positive integer, got 0"),
    ({"max_bytes": 1.5}, "max_bytes must be a positive integer, got 1.5"),
])
def test_bad_targets(crop, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        kmq.compress_to(crop, **kwargs)


@pytest.mark.parametrize("text, size", [("200000", 200000), ("200k", 200000), ("200kB", 200000),
                                        ("1.5M", 1500000), ("64KiB", 65536), ("2MiB", 2097152),
                                        ("1G", 10**9), ("1.0005k", 1000), ("50KB", 50000), ("50kb", 50000),
                                        ("3K", 3000), ("64kib", 65536), ("1mb", 10**6), ("1e6", 10**6),
                                        ("2.5E5", 250000), ("1.5e3k", 1500000),
                                        # exact, not through a float (99999999999999987351763694911488 before)
                                        ("99999999999999999999999G", 99999999999999999999999 * 10**9),
                                        ("123456789012345678901", 123456789012345678901)])
def test_byte_sizes(text, size):
    assert ByteSize().convert(text, None, None) == size


@pytest.mark.parametrize("text", ["12q", "0", "k", "-5", "inf", "1e-9", "12 MB MB", "nan", "1e999k", "1e", "e6",
                                  "1e308k", "1e300G"])
def test_bad_byte_sizes(text):
    with pytest.raises(click.BadParameter):
        ByteSize().convert(text, None, None)




@pytest.mark.parametrize("args, message", [
    (["--psnr", "0"], "Invalid value for '--psnr': 0.0 is not in the range 0<x<=1000.0."),
    (["--psnr", "inf"], "Invalid value for '--psnr': inf is not in the range 0<x<=1000.0."),
    (["--psnr", "nan"], "Invalid value for '--psnr': 'nan' is not a number"),
    (["--max-bytes", "0"], "Invalid value for '--max-bytes': '0' is less than 1 byte"),
    (["--max-bytes", "12q"], "Invalid value for '--max-bytes': '12q' is not a size: use bytes (200000), "
                             "k/M/G (200k, 1.5M: 1000s) or KiB/MiB/GiB (64KiB: 1024s)"),
    (["--psnr", "30", "--max-bytes", "1k"], "give --psnr or --max-bytes, not both"),
    (["--psnr", "30", "--rdo", "2", "--codec", "ctx"],
     "--rdo cannot be combined with --psnr or --max-bytes: the target chooses the rdo strength"),
])
def test_cli_usage_errors(image, args, message):
    assert_compress_usage_error(image, args, message)


def test_cli_psnr(image, tmp_path):
    out = tmp_path / "c.kmq"
    result = CliRunner().invoke(main, ["compress", str(image), "--codec", "ctx", "--psnr", "27", "-o", str(out)])
    assert result.exit_code == 0, result.output
    img = kmq.read(out)
    chosen = f"rdo {img.metadata['rdo']:g}%" if img.metadata["rdo"] else "rdo off"
    assert re.fullmatch(rf"{re.escape(str(image))} -> {re.escape(str(out))}: k={img.k}, codec ctx, "
                        rf"{chosen}, \d+ bits/label, packed/original bits \d\.\d\d, "
                        rf"{out.stat().st_size:,} bytes, PSNR \d+\.\d\d dB, \d+\.\d\d s\n", result.output)
    assert db(img) >= 27


def test_cli_a_target_that_chose_no_rdo_says_rdo_off(tmp_path):
    # Four colours: the target is met losslessly at K = 4, with nothing for rdo to trade.
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[:4] = 200
    pixels[:, :3, 1] = 90
    Image.fromarray(pixels).save(tmp_path / "four.png")
    out = tmp_path / "four.kmq"
    result = CliRunner().invoke(main, ["compress", str(tmp_path / "four.png"), "--codec", "ctx", "--psnr", "60",
                                       "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert kmq.read(out).metadata["rdo"] == 0
    assert re.fullmatch(rf"{re.escape(str(tmp_path / 'four.png'))} -> {re.escape(str(out))}: k=4, codec ctx, rdo off, "
                        rf"2 bits/label, packed/original bits 0\.15, 124 bytes, lossless, \d+\.\d\d s\n", result.output)


@pytest.mark.parametrize("args, codec", [([], "ctx"), (["--codec", "raw"], "raw"), (["--codec", "lzma"], "lzma")])
def test_cli_a_target_stores_ctx_unless_told(image, tmp_path, args, codec):
    # A new user's --max-bytes got raw (the compress default), which fit this budget only at K = 1.
    out = tmp_path / "t.kmq"
    result = CliRunner().invoke(main, ["compress", str(image), "--max-bytes", "900", "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    img = kmq.read(out)
    assert (img.codec, img.metadata["target"]) == (codec, {"max_bytes": 900})


def test_cli_a_bulk_target_stores_ctx_unless_told(tmp_path, crop):
    Image.fromarray(crop).save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "--psnr", "26", "-o",
                                       str(tmp_path / "out") + "/", "-q"])
    assert result.exit_code == 0, result.output
    assert kmq.read(tmp_path / "out" / "a.kmq").codec == "ctx"


def test_cli_plain_compress_still_stores_raw(image, tmp_path):
    out = tmp_path / "p.kmq"
    assert CliRunner().invoke(main, ["compress", str(image), "-k", "4", "-o", str(out)]).exit_code == 0
    assert kmq.read(out).codec == "raw"


def test_cli_impossible_target_is_an_error(image, crop):
    best = db(kmq.compress(crop, 2))
    result = CliRunner().invoke(main, ["compress", str(image), "--psnr", "70", "-k", "2"])
    assert result.exit_code == 1
    assert result.output == (f"Error: {image}: PSNR 70 dB is out of reach: the best is {best:.2f} dB (K=2, the most "
                             "-k allows)\n")
    assert not image.with_suffix(".kmq").exists()


def test_bulk_run_with_a_target(tmp_path, crop):
    for name, part in (("a.png", crop), ("b.png", crop[::-1].copy())):
        Image.fromarray(part).save(tmp_path / name)
    result = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--codec",
                                       "lzma", "--psnr", "28", "-o", str(tmp_path / "out") + "/", "-j", "1",
                                       "--summary", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    for name, entry in zip(("a", "b"), summary["results"]):
        img = kmq.read(tmp_path / "out" / f"{name}.kmq")
        assert db(img) >= 28 and img.metadata["target"] == {"psnr": 28.0}
        # what the target chose, for a script (second trial: only k was there)
        assert (entry["k"], entry["rdo"]) == (img.k, img.metadata.get("rdo"))


def test_an_output_that_exists_is_refused_before_the_search(image, monkeypatch):
    image.with_suffix(".kmq").write_bytes(b"keep")

    def searched(*args, **kwargs):
        raise AssertionError("the search ran before the output was checked")

    monkeypatch.setattr(kmq.api, "compress_to", searched)
    result = CliRunner().invoke(main, ["compress", str(image), "--codec", "ctx", "--psnr", "30"], prog_name="kmq")
    assert (result.exit_code, result.output) == (
        1, f"Error: {image.with_suffix('.kmq')} already exists (use -f to overwrite)\n")
    assert image.with_suffix(".kmq").read_bytes() == b"keep"


@pytest.fixture
def counted(monkeypatch):
    """The K of every K-Means fit and the strength of every rdo run a search makes."""
    from kmq import rdo, target
    seen = {"fits": [], "rdo": []}
    fit, optimise = target.quantize_colors, rdo.optimise

    def counting_fit(colors, counts, k, **kwargs):
        seen["fits"].append(k)
        return fit(colors, counts, k, **kwargs)

    def counting_optimise(pixels, distinct, palette, pct, prepared=None, margin=0, **kwargs):
        seen["rdo"].append(pct)
        return optimise(pixels, distinct, palette, pct, prepared, margin, **kwargs)
    monkeypatch.setattr(target, "quantize_colors", counting_fit)
    monkeypatch.setattr(rdo, "optimise", counting_optimise)
    return seen


# psnr 30's bracket fits 6 K and its line search over K (the slack spent on rdo) at most _PSNR_RUNS more;
# a byte budget's search over (K, rdo) adds at most 4 K, and the whole search makes at most _RUNS_MAX rdo runs.
# On an image this small (32x32) the plain files past the bracket are sized too, at most _SCAN_MAX K, and
# those of the _SCAN_BELOW K under it.
@pytest.mark.parametrize("spec, fits, runs", [
    ({"psnr": 30.0}, 6 + target._PSNR_RUNS + target._SCAN_MAX + target._SCAN_BELOW, target._PSNR_RUNS),
    ({"max_bytes": 700}, 9 + 4 + target._SCAN_MAX + target._SCAN_BELOW, target._RUNS_MAX)])
def test_a_search_fits_few_k_and_tries_few_rdo_strengths(crop, counted, spec, fits, runs):
    # The cost of a target is bounded by counting, not timing: each fit and rdo run costs about a plain
    # compress at its K, and each K is fitted once.
    img = kmq.compress_to(crop, codec="ctx", **spec)
    assert len(counted["fits"]) <= fits and len(set(counted["fits"])) == len(counted["fits"])
    assert len(counted["rdo"]) <= runs
    assert db(img) >= spec["psnr"] if "psnr" in spec else len(img.to_bytes()) <= spec["max_bytes"]


def test_a_byte_budget_never_fits_k_whose_palette_alone_does_not_fit(crop, counted):
    # A 32x32 crop has 1020 colours; 400 bytes hold at most ~100 RGB entries beside the rest of a K = 1 file.
    img = kmq.compress_to(crop, codec="ctx", max_bytes=400)
    room = (400 - len(kmq.compress(crop, 1, codec="ctx").to_bytes())) // 3 + 1
    assert len(img.to_bytes()) <= 400
    assert max(counted["fits"]) <= room < len(np.unique(crop.reshape(-1, 3), axis=0))


@pytest.mark.parametrize("kind, k", [("runs", 2), ("runs", 6), ("noise", 16), ("noise", 300), ("gradient", 40)])
def test_ctx_payload_bounds_hold_the_payload_closely(kind, k):
    # A search sizes ctx files by these bounds and encodes only where they cannot decide: they must hold,
    # and be tight enough to decide (the lane states' 2 bytes a lane, plus well under 1 % of the payload).
    from kmq.codecs import ctx, rans
    rng = np.random.default_rng(k)
    shape = (96, 130)
    labels = {"runs": np.repeat(rng.integers(0, k, (96, 13)), 10, axis=1),
              "noise": rng.integers(0, k, shape),
              "gradient": (np.add.outer(np.arange(96), np.arange(130)) * k // 226 + rng.integers(0, 2, shape)) % k
              }[kind].astype(np.uint16)
    palette = rng.integers(0, 256, (k, 3)).astype(np.uint8)
    low, high = ctx.payload_bounds(labels, palette)
    payload = len(ctx.encode(labels, palette))
    assert low <= payload <= high
    assert high - low <= 2 * rans.STATE_BYTES * (1 << ctx.lanes_log2(labels.size)) + 0.01 * payload
    assert ctx.payload_bounds(labels[:1, :1], palette[:1]) == (0, 0)


def test_overhead_is_the_file_but_the_payload(crop):
    img = kmq.compress_to(crop, psnr=28, codec="ctx")
    assert img.overhead() + len(kmq.codecs.ctx.encode(img.labels, img.palette)) == len(img.to_bytes())


@pytest.mark.parametrize("codec, base, factor, expected", [
    ("ctx", 100, 3, 256),  # from below the K where escapes turn costly, rdo's K stops there
    ("ctx", 60, 3, 180), ("ctx", 256, 1.5, 256), ("ctx", 300, 1.5, 450),  # already above: no limit
    ("lzma", 100, 3, 300), ("ctx", 100, 3, 200 - 1)])
def test_the_k_rdo_is_tried_at(codec, base, factor, expected):
    from types import SimpleNamespace

    from kmq import target
    cap = 199 if expected == 199 else 65536
    assert target._rdo_k(SimpleNamespace(codec=codec), base, factor, cap) == expected


def test_a_fit_passed_per_colour_gives_the_plain_file(crop):
    # A search keeps each K's per-colour fit and hands it on; the file must be the plain compress's.
    from kmq import kmeans
    from kmq.api import quantize_colors, quantized
    distinct = kmeans.distinct(crop.reshape(-1, 3))
    fit = quantize_colors(distinct.colors, distinct.counts, 7)
    img = quantized(crop, distinct, 7, seed=0, max_iter=300, codec="ctx", fit=fit)
    assert img.to_bytes() == kmq.compress(crop, 7, codec="ctx").to_bytes()


def test_progress_counts_each_fit_and_rdo_run_and_keeps_the_bytes(crop, counted):
    calls = []
    img = kmq.compress_to(crop, max_bytes=700, codec="ctx", progress=lambda done, total: calls.append((done, total)))
    made = len(counted["fits"]) + len(counted["rdo"])
    assert calls == [(n, None) for n in range(1, made + 1)]
    assert img.to_bytes() == kmq.compress_to(crop, max_bytes=700, codec="ctx").to_bytes()
    with pytest.raises(TypeError, match="progress must be callable or None, got 3"):
        kmq.compress_to(crop, psnr=30, progress=3)


@pytest.mark.parametrize("after, drawn", [(0.0, True), (60.0, False)])
def test_a_long_search_draws_a_bar_on_a_terminal_and_a_short_one_nothing(monkeypatch, terminal, after, drawn):
    from kmq import cli
    monkeypatch.setattr(cli.sys, "stderr", terminal)
    with cli._fit_progress(False, "Target search", after=after) as report:
        report(1, None)
        report(2, None)
    assert ("Target search" in terminal.text) == drawn


@pytest.mark.parametrize("colours, codec, max_bytes", [(2, "ctx", 120), (2, "lzma", 150), (3, "ctx", None)])
def test_a_budget_between_a_lossy_k_and_the_lossless_one_is_met(colours: int, codec: str,
                                                                max_bytes: int | None) -> None:
    # The smallest K that does not fit is the lossless one (J = 0): rdo there has nothing to spend, and the
    # search once divided by its J (ZeroDivisionError) instead of returning the lossy K that fits.
    rng = np.random.default_rng(7)
    levels = np.linspace(0, 255, colours).astype(np.uint8)
    img = levels[rng.integers(0, colours, (20, 20))][:, :, None].repeat(3, 2)
    if max_bytes is None:  # just under the lossless file
        max_bytes = len(kmq.compress(img, k=colours, codec=codec).to_bytes()) - 1
    out = kmq.compress_to(img, max_bytes=max_bytes, codec=codec)
    assert len(out.to_bytes()) <= max_bytes and out.k < colours


def _noisy_vignette(width: int, height: int) -> np.ndarray:
    """Gradients with noise and three flat shapes, under an alpha vignette that reaches 0 in the corners."""
    from PIL import ImageDraw

    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:800, 0:1200].astype(float)
    rgb = np.stack([255 * x / 1200, 255 * y / 800, 128 + 100 * np.sin(x / 90) * np.cos(y / 70)], -1)
    im = Image.fromarray(np.clip(rgb + rng.normal(0, 8, rgb.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    draw.ellipse((200, 150, 500, 450), fill=(220, 40, 40))
    draw.rectangle((700, 300, 1000, 700), fill=(30, 160, 60))
    draw.polygon([(100, 700), (400, 500), (600, 780)], fill=(250, 230, 20))
    alpha = np.clip(255 * (1 - ((x - 600) ** 2 / 600 ** 2 + (y - 400) ** 2 / 400 ** 2)), 0, 255).astype(np.uint8)
    rgba = np.dstack([np.asarray(im), alpha])
    return np.asarray(Image.fromarray(rgba, "RGBA").resize((width, height)))


def test_a_larger_budget_is_not_worse_where_the_search_stopped_at_a_small_k() -> None:
    # 3,500 bytes gave K = 30 with rdo 0.158 % at 24.03 dB, while 2,800 bytes gave K = 70 at 26.4 dB: the
    # steps before the search over (K, rdo) model bytes along K and along rdo apart, and stopped at K = 30.
    # (Before that, at 3,000 bytes: rdo at K = 15 with 0.099 % J fit in 2,622 bytes where the plain file is
    # 3,743; it used the little J it was given, so it did not count as topped out, and the search returned
    # it, 20.9 dB: one image at one budget checks both, the suite's time being what it is.)
    img = _noisy_vignette(600, 400)
    out = kmq.compress_to(img, max_bytes=3500, codec="ctx")
    assert len(out.to_bytes()) <= 3500 and out.k > 30 and db(out) > 26.4


@pytest.mark.parametrize("runs, added, asked", [
    ([], 0.1, 0.1),  # no run yet: ask for what is wanted
    ([(0.05, 0.075)], 0.1, 0.15),  # one run landed at 2/3 of its ask: ask 1.5x
    ([(0.05, 0.2)], 0.1, 0.2),  # at a quarter: at most 2x
    ([(0.2, 0.1)], 0.1, 0.1),  # one that overshot: never ask for less than is wanted
    ([(0.04, 0.16), (0.16, 0.32)], 0.08, math.sqrt(0.16 * 0.32)),  # between two: log against log
    ([(0.0, 0.3), (0.05, 0.075)], 0.1, 0.15),  # a run that added nothing says nothing
    ([(0.05, 0.075)], 0.0, 0.0),  # nothing wanted (the plain file fits): nothing asked, no log of 0
])
def test_rdo_is_asked_for_j_from_how_its_runs_landed(runs, added, asked):
    from kmq.target import _ask_from
    assert _ask_from(runs, added) == pytest.approx(asked)


@pytest.mark.parametrize("runs, expected", [
    # 2 % and 8 % straddle 1000 bytes (log 1100, log 950): the line in (log strength, log bytes) meets the goal
    ([(2.0, math.log(1100)), (8.0, math.log(950))], 2 * 4 ** (math.log(1100 / 990) / math.log(1100 / 950))),
    # 8 % fell off a cliff to 500 bytes: the line would aim next to 2 %, within a run's step of it; a quarter
    # of the way in log strength (the middle cost the trial's grey at 30 kB two runs more than the line)
    ([(2.0, math.log(1100)), (8.0, math.log(500))], 2 * 4 ** 0.25),
    # and once the line crept up on it (2 % then 2.2 %, both over), the middle
    ([(2.0, math.log(1100)), (2.2, math.log(1090)), (8.0, math.log(500))], math.sqrt(2.2 * 8)),
    # a run over the budget far below the nearest one over it is no creeping: the line, a quarter at least
    ([(1.0, math.log(1500)), (2.0, math.log(1100)), (8.0, math.log(500))], 2 * 4 ** 0.25),
    ([(2.0, math.log(1100)), (8.0, math.log(1050))], 0.0),  # nothing under the budget: nothing between
])
def test_rdo_between_two_runs_that_straddle_the_budget(runs, expected):
    assert target._between_runs(runs, 1000, math.log(990)) == pytest.approx(expected, abs=1e-3)


class _Runs:
    """A stand-in for a search's files: (K, rdo) -> (bytes, J), for _pick."""

    def __init__(self, files: dict) -> None:
        self.sizes = {key: (b, b) for key, (b, _) in files.items()}
        self._j = {key: j for key, (_, j) in files.items()}

    def estimate(self, k, rdo=0.0):
        return self.sizes[(k, rdo)][0]

    def file(self, k, rdo=0.0):
        return type("F", (), {"distortion": self._j[(k, rdo)]})()


def test_the_best_k_is_refined_first_when_its_runs_straddle_the_budget(monkeypatch):
    # K = 30: +4 % over the budget, +28 % under it (the best, J 100); K = 60 is predicted far better (40)
    # from K = 30's runs, K = 30 itself at 88: its runs between the two come first, at no fit nor sizing
    runs = _Runs({(30, 0.0): (110000, 80.0), (30, 4.0): (97000, 82.0), (30, 28.0): (19300, 100.0)})
    predicted = {30: 88.0, 60: 40.0, 42: 67.0}
    monkeypatch.setattr(target, "_predict", lambda s, k, goal: predicted[k])
    goal = math.log(40000) - target._INSIDE
    assert target._pick(runs, {30, 42, 60}, (30, 28.0), 40000, goal) == (30, True)
    # not when it is not predicted to beat the best (the predicted best K then)
    predicted[30] = 99.0
    assert target._pick(runs, {30, 42, 60}, (30, 28.0), 40000, goal) == (60, False)
    # nor when no run at it is over the budget: nothing to go between
    predicted[30] = 88.0
    del runs.sizes[(30, 4.0)]
    assert target._pick(runs, {30, 42, 60}, (30, 28.0), 40000, goal) == (60, False)


def test_a_larger_budget_never_gives_a_worse_file(samples):
    # A budget ladder on a camera crop: with at most 10 rdo runs, 3,400 bytes gave 32.95 dB (K = 20, after
    # 4 runs there) where 3,200 gave 33.42 (K = 13); the search may not trade a larger budget's file for cost.
    with Image.open(samples / "camera.png") as im:
        grey = np.asarray(im.crop((150, 100, 350, 250)))
    # (The pair that went wrong, not the whole ladder: the suite's time.)
    ladder = [kmq.compress_to(grey, max_bytes=b, codec="ctx") for b in (3200, 3400)]
    assert all(len(img.to_bytes()) <= b for img, b in zip(ladder, (3200, 3400)))
    dbs = [db(img) for img in ladder]
    assert dbs == sorted(dbs) and dbs[0] > 33


def test_three_near_misses_from_above_get_a_fourth_run_beyond_them(samples):
    # camera crop: at K = 11 three rdo runs gave 2,903, 2,789 and 2,703 bytes for 2,700 and the search ended
    # there, 1.1 dB under what 2,600 bytes gave (review); the line through the last two finds the budget.
    with Image.open(samples / "camera.png") as im:
        grey = np.asarray(im.crop((150, 100, 350, 250)))
    small, large = (kmq.compress_to(grey, max_bytes=b, codec="ctx") for b in (2600, 2700))
    assert len(large.to_bytes()) <= 2700 and db(large) >= db(small) > 31


@pytest.fixture(scope="module")
def grey_crop():
    from conftest import SAMPLES
    with Image.open(SAMPLES / "camera.png") as im:
        return np.asarray(im.crop((150, 100, 350, 250)))


@pytest.mark.parametrize("target, ks", [(22.0, (3, 4, 5, 6)), (34.0, (10, 13, 16, 20))])
def test_a_psnr_target_is_no_larger_than_a_small_k_rdo_grid(grey_crop, target, ks):
    # The file of K = 1.5x the bracket's top alone: 22 dB gave 1,216 bytes (K = 6, rdo 280 %, 22.81 dB: rdo
    # topped out far short of the slack) where K = 4 with rdo 80 % meets 22 dB in 837; 34 dB 3,572 (K = 20)
    # where K = 13 with rdo 17.5 % is 3,382.
    spec = {"psnr": target}
    img = kmq.compress_to(grey_crop, codec="ctx", **spec)
    assert db(img) >= target
    pixels = grey_crop[..., None]
    distinct = kmeans.distinct(pixels.reshape(-1, 1))
    grid = []
    for k in ks:  # the Ks around each target's best (a wider grid found nothing smaller)
        fit = quantize_colors(distinct.colors, distinct.counts, k, seed=0, max_iter=300)
        for pct in (0.0, 20.0, 80.0):
            # as the target's file would be written: its metadata records the target
            g = quantized(pixels, distinct, k, seed=0, max_iter=300, codec="ctx", rdo=pct, fit=fit,
                          extra={"target": spec})
            if db(g) >= target:
                grid.append(len(g.to_bytes()))
    assert len(img.to_bytes()) <= 1.02 * min(grid)  # (a line search in K: within 2 % of the grid's best)


def test_a_higher_psnr_target_never_gives_a_smaller_file(grey_crop):
    # Not a guarantee of the search (each target is a search of its own, and rdo lands unevenly), but a user
    # who asks for more quality and gets a smaller file has found a search that missed; this ladder never has.
    targets = (24.0, 30.0, 36.0)
    ladder = [kmq.compress_to(grey_crop, psnr=t, codec="ctx") for t in targets]
    assert all(db(img) >= t for img, t in zip(ladder, targets))
    sizes = [len(img.to_bytes()) for img in ladder]
    assert sizes == sorted(sizes)


def test_a_target_file_whose_rdo_kept_the_nearest_labels_records_rdo_0():
    # A 64x48 ramp at K = 15: rdo finds nothing cheaper, so the file holds plain K = 15's pixels; its --psnr 30
    # file said rdo 169.184 % (the strength asked, not used) and was 4 bytes larger for it.
    ramp = np.tile(np.linspace(0, 255, 64).round().astype(np.uint8), (48, 1))[..., None]
    distinct = kmeans.distinct(ramp.reshape(-1, 1))
    plain = quantized(ramp, distinct, 15, seed=0, max_iter=300, codec="ctx")
    img = quantized(ramp, distinct, 15, seed=0, max_iter=300, codec="ctx", rdo=169.184,
                    extra={"target": {"psnr": 30.0}})
    assert np.array_equal(img.labels, plain.labels) and np.array_equal(img.palette, plain.palette)
    assert img.metadata["rdo"] == 0 and img.metadata["target"] == {"psnr": 30.0}
    assert kmq.compress_to(ramp[..., 0], psnr=30, codec="ctx").metadata["rdo"] == 0


def _camera() -> np.ndarray:
    from conftest import SAMPLES
    with Image.open(SAMPLES / "camera.png") as im:
        return np.asarray(im)


def _rdo_ks(monkeypatch) -> list[int]:
    """The K of every rdo run a search makes from now on (a list filled as it runs)."""
    from kmq import rdo
    ks, optimise = [], rdo.optimise

    def counting(pixels, distinct, palette, pct, prepared=None, margin=0, **kwargs):
        ks.append(len(palette))
        return optimise(pixels, distinct, palette, pct, prepared, margin, **kwargs)
    monkeypatch.setattr(rdo, "optimise", counting)
    return ks


def test_a_psnr_search_that_gains_below_its_first_rdo_k_tries_no_larger_k(monkeypatch):
    # Smaller K first: on the benches' PSNR targets a K above the first rdo K never gave a smaller file, and its
    # fit and run cost most (noisy 384x256 at 30 dB: K = 850 after 567, 2.4 s of 8.5). camera at 36 dB: K = 22
    # first, 18 smaller, 15 not; K = 33 was tried too (32.5 kB against 29.3).
    ks = _rdo_ks(monkeypatch)
    img = kmq.compress_to(_camera(), psnr=36.0, codec="ctx")
    assert db(img) >= 36.0 and img.k < ks[0]
    assert max(ks) == ks[0]


def test_a_byte_budget_does_not_size_a_lossless_file_a_smaller_k_shows_far_over_it(counted):
    # camera at 15 kB: K = 16's plain file is 40 kB; the lossless one (256 grey levels) 127 kB.
    img = kmq.compress_to(_camera(), max_bytes=15000, codec="ctx")
    assert len(img.to_bytes()) <= 15000
    assert len(np.unique(_camera())) not in counted["fits"]


def test_a_byte_budget_on_a_large_image_does_not_size_a_lossless_file_a_smaller_k_shows_1_3x_over_it(counted):
    # camera (262,144 pixels, over _LEVEL_PIXELS) at 20 kB: K = 16's plain file is 39.7 kB, under twice the budget,
    # and the lossless one (256 grey levels) 127 kB; sizing it cost half a plain compress at the K chosen
    img = kmq.compress_to(_camera(), max_bytes=20000, codec="ctx")
    assert len(img.to_bytes()) <= 20000
    assert len(np.unique(_camera())) not in counted["fits"]


def test_a_byte_budget_spends_no_more_rdo_runs_where_rdo_moves_nothing_at_two_k(counted):
    # Flat shapes (bench/rdo.py's recipe for graphics, from a fresh generator: other shapes) in 450 bytes,
    # between K = 2's plain file and K = 3's: rdo kept the nearest labels at K = 6 and saved nothing at K = 3,
    # and a third run at K = 4 (each 3 to 4 plain compresses at K = 2) saved nothing either.
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:384]
    img = np.zeros((256, 384, 3), np.uint8)
    img[:] = (250, 250, 245)
    for _ in range(12):
        x0, y0 = rng.integers(0, 320), rng.integers(0, 200)
        img[y0:y0 + rng.integers(20, 90), x0:x0 + rng.integers(20, 120)] = rng.choice([0, 255], 3)
    img[(x - 192) ** 2 + (y - 128) ** 2 < 60 ** 2] = (230, 30, 30)
    out = kmq.compress_to(img, max_bytes=450, codec="ctx")
    assert len(out.to_bytes()) <= 450 and out.k == 2
    assert len(counted["rdo"]) <= 2


def _trial_jpeg(width: int, height: int) -> np.ndarray:
    """The new-user trial's noisy photo (as _noisy_vignette, without alpha) saved as JPEG at quality 90, resized."""
    import io
    buf = io.BytesIO()
    Image.fromarray(_noisy_vignette(1200, 800)[..., :3]).save(buf, "JPEG", quality=90)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB").resize((width, height), Image.Resampling.BOX))


def test_a_first_rdo_file_that_topped_out_far_under_the_budget_ends_the_runs_at_its_k(monkeypatch):
    # The trial's JPEG at 750x500 in 9,375 bytes: K_r = 96 with rdo 74 % added 16.5 % and gave 3.7 kB; four more
    # runs there (weaker rdo, then filling the budget) lost to K = 256, 13 runs in all; now the walk up goes
    # there at once: 5 runs, 32.36 dB against 32.58 (the plain K that fits: 25.2).
    from kmq import rdo
    img = _trial_jpeg(750, 500)
    # The search's own fits as kmeans.fit makes them (not rough: _ROUGH_BITS), the cascade this test is about
    # (rough ones bracket K = 30 to 37, and K_r = 90's first run lands at +15 % of +27 %: not topped out there)
    monkeypatch.setattr(target, "_ROUGH", False)
    ks, optimise = [], rdo.optimise

    def counting(pixels, distinct, palette, pct, prepared=None, margin=0, **kwargs):
        ks.append(len(palette))
        return optimise(pixels, distinct, palette, pct, prepared, margin, **kwargs)
    monkeypatch.setattr(rdo, "optimise", counting)
    out = kmq.compress_to(img, max_bytes=9375, codec="ctx")
    assert len(out.to_bytes()) <= 9375 and db(out) > 32.3
    assert ks.count(ks[0]) == 1 and len(ks) <= 6


def test_the_search_over_k_and_rdo_leaves_a_k_once_another_is_predicted_better(counted, samples):
    # chelsea in 16,912 bytes (bench/rdo.py's 1 bpp): after K = 54's first run (68 %, 19.1 kB) K = 38 was
    # predicted better, but a second run at 54 (111 %, 16.7 kB at a worse J) came first; the file is the same
    # (K = 38, rdo 51.563 %, 32.61 dB) in 6 runs, not 7.
    with Image.open(samples / "chelsea.png") as im:
        img = np.asarray(im.convert("RGB"))
    out = kmq.compress_to(img, max_bytes=16912, codec="ctx")
    assert len(out.to_bytes()) <= 16912 and db(out) > 32.6
    assert len(counted["rdo"]) <= 6


def test_the_search_over_k_and_rdo_takes_a_candidate_just_over_a_k_where_rdo_ran_at_that_k(counted, samples):
    # coffee reduced to 200x133 in 8,180 bytes: the search over (K, rdo) from K = 74 (rdo 10.7 %, 36.24 dB) had
    # fitted K = 106, 1.08x K = 98 where rdo had run; tried at 98, its own runs aim there, three fits fewer, and
    # the file is K = 98 with rdo 36.3 %, 36.45 dB. Round 46's fits of small images (h55c) take that budget another
    # way (K = 82 with rdo 17.8 %, 36.34 dB; no candidate near a K where rdo ran). In 8,800 bytes the candidate
    # K = 126, 1.11x K = 114 where rdo ran, is tried at 114: 12 fits, K = 114 with rdo 37.5 %, 36.88 dB; fitted at 126
    # (_snapped undone) 15 fits and K = 110 with rdo 34.8 %, 36.79 dB.
    with Image.open(samples / "coffee.png") as im:
        img = np.asarray(im.convert("RGB").resize((im.width // 3, im.height // 3), Image.Resampling.LANCZOS))
    out = kmq.compress_to(img, max_bytes=8800, codec="ctx")
    assert len(out.to_bytes()) <= 8800 and db(out) > 36.85
    assert 126 not in counted["fits"] and len(counted["fits"]) <= 12


def test_past_the_last_rdo_file_at_a_k_its_own_runs_give_the_slope():
    # The vignette in 3,500 bytes at K = 84: rdo files +3.7 %, +6.0 %, +7.4 % J at 3,944, 3,666 and 3,567
    # bytes, about -0.16 in log bytes per log of the J added where -0.28 is typical: aimed by that, each
    # step crept up on the budget from above (4 runs there; now 3, 14 -> 12 in all).
    from kmq import target
    pts = [(0.0, 0.0), (math.log(1.037), math.log(3944 / 8171)), (math.log(1.060), math.log(3666 / 8171))]
    slope = target._slope_past(pts)
    assert -0.2 < slope < -0.12
    assert target._slope_past(pts[:2]) == target._RDO_SLOPE  # one file: the typical slope
    assert target._slope_past([pts[0], pts[2], (math.log(1.1), pts[2][1])]) == target._RDO_SLOPE  # flat: no slope
    steep = [(0.0, 0.0), (math.log(1.01), 0.0), (math.log(1.02), -2.0)]
    assert target._slope_past(steep) == target._SLOPES[0]


def test_a_byte_budget_sizes_each_rdo_file_of_an_image_that_is_its_own_sample_once(monkeypatch, samples):
    # rdo judges its labelling by ctx's payload bounds where the image is its own sample; a target's search then
    # sized the file again (the same pixels' colours, the entries in the file's order): now rdo judges it in
    # that order, and the search takes its bounds (the same files: 0.3 of the sizings spared on the benches').
    from kmq import rdo
    from kmq.codecs import ctx
    with Image.open(samples / "chelsea.png") as im:
        pixels = np.asarray(im.convert("RGB"))[60:188, 120:312].copy()  # 128 x 192: its own sample
    sized = []
    bounds = ctx.payload_bounds

    def counting(labels, palette):
        sized.append(hashlib.sha256(np.asarray(palette)[labels].tobytes()).hexdigest())
        return bounds(labels, palette)
    monkeypatch.setattr(ctx, "payload_bounds", counting)
    made = []
    search = target._Search.__init__

    def keeping(self, *args, **kwargs):
        made.append(self)
        search(self, *args, **kwargs)
    monkeypatch.setattr(target._Search, "__init__", keeping)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress_to(pixels, max_bytes=6000, codec="ctx")
    assert len(img.to_bytes()) <= 6000
    files = [f for (k, r), f in made[0].files.items() if r > 0 and f.metadata["rdo"] > 0]
    assert len(files) >= 2
    for f in files:
        assert sized.count(hashlib.sha256(f.palette[f.labels].tobytes()).hexdigest()) == 1


class _Sized(_Runs):
    """_Runs that can be asked for more: each file made (bounds) fits just inside the budget, and the strengths
    asked are recorded."""

    def __init__(self, files: dict, budget: int) -> None:
        super().__init__(files)
        self.budget, self.asked = budget, []

    def fits(self, k, budget, rdo=0.0):
        return self.sizes[(k, rdo)][1] <= budget

    def can_run(self):
        return True

    def bounds(self, k, rdo=0.0):
        self.asked.append(rdo)
        self.sizes[(k, rdo)], self._j[(k, rdo)] = (self.budget - 100,) * 2, 140.0
        return self.sizes[(k, rdo)]


# The noisy photo at 100 kB (bench/targets.py), K = 256: the best file fits far under the budget and the nearest one
# over it is 0.2 % over: the fill starts between the two, a quarter of the way in log strength (+15.448 %; the
# geometric middle, +19.913 %, landed at 76 kB and took a run more to the same file). A file 30 % over keeps the
# middle (a noisy crop's line from such a file aimed too close to it).
@pytest.mark.parametrize("over, first", [(100_154, 15.448), (130_000, 19.913)])
def test_a_fill_from_a_file_just_over_the_budget_starts_between_the_two(over, first):
    files = {(256, 0.0): (171_971, 131.75), (256, 6.716): (123_519, 139.16), (256, 11.985): (over, 147.16),
             (256, 33.088): (70_639, 160.77)}
    s = _Sized(files, 100_000)
    target._fill(s, 100_000)
    assert s.asked == [pytest.approx(first, abs=2e-3)]


@pytest.fixture
def beyond_sample(monkeypatch):
    """A 128x96 crop of chelsea, larger than rdo's sample (made 4096 pixels here), as larger images are."""
    from conftest import SAMPLES
    from kmq import rdo
    monkeypatch.setattr(rdo, "_SAMPLE", 1 << 12)
    with Image.open(SAMPLES / "chelsea.png") as im:
        return np.asarray(im.convert("RGB"))[60:156, 150:278].copy()


def test_a_search_finds_payloads_sized_before_without_hashing_labels(beyond_sample, monkeypatch):
    # A file whose palette and labels were sized before (an rdo run whose moves were undone is its K's plain
    # file) takes their payload bounds again, found by comparing labels of the same palette: hashing every
    # file's labels cost 3 ms a file at 2.3 MP. (rdo still hashes its sample's labellings, and an image that is
    # its own sample's returned files.)
    from kmq import rdo
    hashed, sized = [], []
    digest, bounds = rdo.digest, target.ctx.payload_bounds
    monkeypatch.setattr(rdo, "digest", lambda palette, labels: hashed.append(labels.size) or digest(palette, labels))
    monkeypatch.setattr(target.ctx, "payload_bounds", lambda labels, palette: sized.append(labels.size) or bounds(
        labels, palette))
    searched = []
    original = target._Search.bounds

    def counting(self, k, rdo=0.0):
        if (k, rdo) not in self.sizes:
            searched.append((k, rdo))
        return original(self, k, rdo)
    monkeypatch.setattr(target._Search, "bounds", counting)
    img = kmq.compress_to(beyond_sample, codec="ctx", max_bytes=4000)
    whole = beyond_sample.shape[0] * beyond_sample.shape[1]
    assert len(img.to_bytes()) <= 4000 and whole not in hashed
    # every file sized by bounds, and no labelling sized twice
    assert 0 < sized.count(whole) <= len(searched)


def test_payloads_found_again_give_the_file_sizing_every_file_gives(beyond_sample, monkeypatch):
    found = kmq.compress_to(beyond_sample, codec="ctx", max_bytes=4000).to_bytes()
    monkeypatch.setattr(target._Search, "_payload", lambda self, img: None)  # every file's payload sized anew
    assert kmq.compress_to(beyond_sample, codec="ctx", max_bytes=4000).to_bytes() == found


def test_a_psnr_search_step_that_gains_under_1_pct_ends_its_way(monkeypatch):
    # camera at 36 dB: K = 22 first (29,617 bytes), 18 0.94 % smaller; bytes against log K flatten where they turn,
    # and K = 15 after it was 9.9 % larger: not tried now (a fit and a run). The file is the same.
    ks = _rdo_ks(monkeypatch)
    img = kmq.compress_to(_camera(), psnr=36.0, codec="ctx")
    assert ks == [22, 18]
    assert (img.k, len(img.to_bytes())) == (18, 29339) and db(img) >= 36.0


class _PlainFiles:
    """A search's plain files as _far_end reads them: (K, rdo) -> size bounds, and J per K."""

    def __init__(self, sizes: dict[int, int], js: dict[int, float]) -> None:
        self.sizes = {(k, 0.0): (n, n + 300) for k, n in sizes.items()}
        self.js = js

    def bounds(self, k: int, rdo: float = 0.0) -> tuple[int, int]:
        return self.sizes[(k, rdo)]

    def j(self, k: int) -> float:
        return self.js[k]


@pytest.mark.parametrize("budget, hi, j_best, expected", [
    (30000, 7, 50.0, 11),  # hi 7 % over: the least K far over the budget, at a J far over the file's
    (30000, 11, 50.0, 11),  # hi far over already: itself
    (32000, 7, 50.0, 16),  # K = 11 is not far over this budget: the next
    (30000, 7, 145.0, 7),  # K = 11's J (150) is not far over the file's, nor a larger K's: hi
])
def test_the_check_against_real_plain_files_starts_from_a_k_far_over_the_budget(budget, hi, j_best, expected):
    # The trial's noisy photo in 30 kB: rough K = 7 was 32.2 kB, its real file 29.6 kB, real 9 29.6 kB, real 12
    # 33.6 kB: three real fits (0.8 s of CPU) where one at rough K = 11 (33.5 kB) shows the same.
    s = _PlainFiles({3: 14600, 6: 27600, 7: 32200, 11: 33500, 16: 37100},
               {3: 300.0, 6: 220.0, 7: 200.0, 11: 150.0, 16: 120.0})
    assert target._far_end(s, budget, 1000, hi, j_best) == expected


def test_a_weaker_rdo_gets_its_own_run_after_a_stronger_one_stopped_short_of_it():
    # Review (round 29): a stronger run at K that added less J than a weaker strength allows is not the weaker
    # one's file: rdo's moves depend on its bound. A noisy 200x150 chelsea crop in 2,622 bytes (K <= 48): K = 6
    # at +39.547 % is its own run (2,584 bytes, 21.90 dB); stood in for by the +46.049 % file, the search went on
    # to 2,269 bytes at 21.66 dB. Round 46's fits of small images (h55c): +39.547 -> +39.322 % (2,584 -> 2,590 bytes,
    # 21.8967 -> 21.9077 dB); stood in for by a stronger run's file, the search ends at 2,231 bytes, 21.65 dB. Round 47's
    # noisy-tile climb (h56d): +39.884 % (2,576 bytes, 21.8827 dB), its own run though +46.231 % added 29.935 %;
    # with _dominated restored 2,245 bytes, 21.66 dB.
    from conftest import SAMPLES
    rng = np.random.default_rng(5)
    with Image.open(SAMPLES / "chelsea.png") as im:
        crop = np.asarray(im.convert("RGB"))[50:200, 100:300]
    rng.normal(0, 6, (150, 200, 3))  # (the reviewer's stream: a gradient's noise first)
    noisy = np.clip(crop + rng.normal(0, 18, crop.shape), 0, 255).astype(np.uint8)
    img = kmq.compress_to(noisy, max_bytes=2622, codec="ctx", k=48)
    assert (img.k, img.metadata["rdo"], len(img.to_bytes())) == (6, 39.884, 2576)
    assert db(img) > 21.85  # (21.8827)


class _PsnrRuns:
    """A stand-in search for _rdo_for_psnr: K's plain J 2000 / K, each rdo run lands just inside the target's J, and
    its file is bytes[K] bytes; the K given runs are recorded."""
    codec, k_hi, runs, cap, channels = "ctx", 4096, 0, 99, 3

    def __init__(self, sizes: dict) -> None:
        self.bytes, self.ran = sizes, []

    def j(self, k):
        return 2000.0 / k

    def can_run(self):
        return True

    def psnr(self, j):
        return 10 * math.log10(self.channels * 255**2 / j)

    def file(self, k, rdo=0.0):
        if rdo > 0 and k not in self.ran:
            self.ran.append(k)
        return type("F", (), {"distortion": self.j(k) * (1 + rdo / 100)})()

    def estimate(self, k, rdo=0.0):
        return self.bytes[k]

    def no_larger(self, a, b):
        return self.bytes[a[0]] <= self.bytes[b[0]]


# coffee at 32 dB (bench/rdo.py): from the bracket's top 27, K0 = 40 (28,201 bytes); 32, a step down, is larger; K = 60,
# the step up, was tried next (a fit and a run, 28,263 bytes). grace_hopper.jpg 512x600 at 32 dB: 94 was 6 bytes under
# K0 = 63 (34,808 against 34,814): the step up won on 1 of the 4 PSNR targets where it ran, by 0.02 %.
@pytest.mark.parametrize("hi, sizes, ran, found", [
    (27, {40: 28_201, 32: 29_000, 60: 28_263}, [40, 32], 40),
    (42, {63: 34_814, 50: 36_422, 94: 34_808}, [63, 50], 63),
    (41, {62: 30_000, 50: 29_000, 41: 28_990}, [62, 50, 41], 41),  # down while files get smaller
])
def test_a_psnr_search_tries_no_larger_k_than_its_first(hi, sizes, ran, found):
    s = _PsnrRuns(sizes)
    key = target._rdo_for_psnr(s, 32.0, target._j_for(s, 32.0), hi)
    assert s.ran == ran and key[0] == found


def test_a_plain_best_is_the_largest_k_that_fits_inside_a_bracket_ended_within_a_64th():
    # Above K = 64 the bracket ends within 1/64 of K (here lo = 256 fits, hi = 260 does not) without fitting the K
    # inside it; where no rdo file beats the plain lo, the K inside are bisected: 257 does not fit (its plain file
    # is 3,635 bytes), so K = 256 (3,369 bytes with the target recorded).
    img = _noisy_vignette(123, 141)
    out = kmq.compress_to(img, max_bytes=3500, codec="ctx")
    assert (out.k, out.metadata["rdo"], len(out.to_bytes())) == (256, 0.0, 3369)
    plain = kmq.compress(img, 256, codec="ctx")
    assert out.distortion == plain.distortion


@pytest.mark.parametrize("codec, db, k, size", [("ctx", 38.0, 890, 8959), ("raw", 34.0, 339, 23061)])
def test_a_plain_psnr_file_is_the_least_k_inside_a_bracket_ended_within_a_64th(codec, db, k, size):
    # The bracket ended at 889 / 892 (ctx) and 336 / 341 (raw), within 1/64; K = 890 and 339 meet the target in
    # fewer bytes than the top.
    img = _noisy_vignette(160, 120)
    out = kmq.compress_to(img, psnr=db, codec=codec)
    assert (out.k, out.metadata["rdo"], len(out.to_bytes())) == (k, 0.0, size)
    assert psnr_of(out.distortion, out.channels) >= db


def test_neighbours_bisects_to_the_least_k_that_is_ok():
    calls = []

    def ok(k):
        calls.append(k)
        return k >= 203

    assert target._neighbours(200, 208, ok) == (202, 203)
    assert calls == [204, 202, 203]
    assert target._neighbours(5, 6, ok) == (5, 6)


def test_a_byte_budget_is_no_worse_than_a_plain_k_past_the_first_that_does_not_fit():
    # Plain bytes do not always grow with K: this gradient's plain ctx files with the budget recorded are 249
    # bytes at K = 8 and 245 at K = 9, so in 248 bytes K = 9 fits (21.93 dB) past the least K that does not;
    # the search stopped at K = 7 (20.59 dB).
    y, x = np.mgrid[0:64, 0:96].astype(float)
    grad = np.stack([255 * x / 96, 255 * y / 64, 128 + 60 * np.sin(x / 50 + y / 70)], -1).astype(np.uint8)
    budget = 248
    out = kmq.compress_to(grad, max_bytes=budget, codec="ctx", k=16)
    assert len(out.to_bytes()) <= budget
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = [kmq.compress(grad, k, codec="ctx") for k in range(1, 17)]
    best = 0.0
    for img in fits:
        meta = {**img.metadata, "rdo": 0.0, "target": {"max_bytes": budget}}
        if len(kmq.KmqImage(img.palette, img.labels, meta, "ctx").to_bytes()) <= budget:
            best = max(best, psnr_of(img.distortion, img.channels))
    assert psnr_of(out.distortion, out.channels) >= best > 21.5


def test_a_budget_whose_ctx_file_stops_at_k_256_with_room_gets_lzma_above_it():
    # ctx's escapes make K = 257 far dearer than 256 (this noisy gradient's plain files: 10,161 bytes at K = 256,
    # 1.4x that from 257 on), so in 15,241 bytes ctx's search stops at K = 256 (31.22 dB) with a third of the
    # budget left. lzma's plain K = 256 file (1.40x ctx's) fits it, and lzma's search reaches K = 317 at 31.87 dB;
    # the old code ran lzma only where ctx's file was above K = 256.
    y, x = np.mgrid[0:120, 0:160]
    base = np.stack([x * 255 / 159, y * 255 / 119, (x + y) * 255 / 278], axis=-1)
    pixels = np.clip(base + np.random.default_rng(0).normal(0, 12, base.shape), 0, 255).round().astype(np.uint8)
    ctx_file = kmq.compress_to(pixels, max_bytes=15_241, codec="ctx")
    chosen = kmq.compress_to(pixels, max_bytes=15_241)
    assert ctx_file.k == 256 and len(ctx_file.to_bytes()) < 0.7 * 15_241
    assert chosen.codec == "lzma" and chosen.k > 256 and len(chosen.to_bytes()) <= 15_241
    assert psnr_of(chosen.distortion, 3) > psnr_of(ctx_file.distortion, 3) + 0.5


def test_lzma_search_at_ctx_edge_makes_no_large_k_fit_where_rdo_saves_little(monkeypatch):
    # The same noisy gradient in 15,241 bytes: rdo at lzma's bracket lo, asked for 25 % more J, saves under 27 %
    # of its plain bytes (_useless_rdo), so lzma's search skips rdo at 3 lo (K = 795, a large-K fit: 4-10x a fit
    # under kmeans._LARGE_K) and looks no higher than that with rdo; the old code fitted K = 795 for two runs
    # that did not fit. The file is the same: lzma K = 317, 31.87 dB (K = 315 since round 47's stand-in seeding, h56d).
    from test_target_cost_r42 import fits_inside
    from test_target_cost_r43 import noisy_gradient

    fitted = fits_inside(monkeypatch, "_better_with_lzma")  # lzma's search runs inside it
    chosen = kmq.compress_to(noisy_gradient(), max_bytes=15_241)
    assert chosen.codec == "lzma" and chosen.k == 315 and len(chosen.to_bytes()) <= 15_241
    assert fitted and max(fitted) < kmeans._LARGE_K


def test_a_real_plain_file_sized_after_the_search_is_weighed_though_the_search_fitted_its_k():
    # _checked_bytes' look past the real bracket (_past_top) sizes plain K in the real search; one the rough
    # search had fitted for real (not rough) but never sized was left out of _adopted's choice (the reviewer's).
    y, x = np.mgrid[0:48, 0:64]
    pixels = np.stack([x * 4, y * 5, (x + y) * 2], -1).astype(np.uint8)
    s = target._Search(pixels, 256, "ctx", 0, 300, {"max_bytes": 10**6})
    s.j(3), s.j(5)
    s.size(3)
    assert not s.rough
    r = s.real()
    r.size(5)
    assert r.j(5) < s.j(3)
    assert target._adopted(s, (3, 0.0), s.j(3), r.j).k == 5
    assert target._adopted(s, (5, 0.0), r.j(5), r.j).k == 5
