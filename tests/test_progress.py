"""Long runs show that they are working: stats.measure reports each fit and record (and a long fit's own
steps), and `kmq stats` draws them as one bar over all its inputs on a terminal; a montage reports its fits;
segment's and palette's one fit reports as compress's does."""
import time
from contextlib import contextmanager

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmq
from kmq import cli, segment, stats
from kmq.cli import main


@pytest.fixture
def crop(samples):
    return np.asarray(Image.open(samples / "chelsea.png").convert("RGB"))[:60, :80]


def _fractions(calls):
    return [d / t for d, t in calls]


@pytest.mark.parametrize("ks, options, steps", [
    ((4, 2, 4), {}, 4),                         # two fits, two records (the repeated K measured once)
    ((4,), {"codec": "all", "reference": True}, 2),
    ((3, 5), {"codec": "ctx", "rdo": 5.0}, 4),
])
def test_measure_reports_each_step_and_ends_at_its_total(tmp_path, crop, ks, options, steps):
    path = tmp_path / "crop.png"
    Image.fromarray(crop).save(path)
    calls = []
    records = stats.measure(path, ks, progress=lambda done, total: calls.append((done, total)), **options)
    assert records == stats.measure(path, ks, **options)
    fractions = _fractions(calls)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # One report per step, then the closing one (done == total).
    assert len(calls) == steps + 1 and calls[-2][0] == calls[-2][1]


def test_a_long_fit_reports_within_its_step(tmp_path, crop):
    path = tmp_path / "crop.png"
    Image.fromarray(crop).save(path)
    calls = []
    stats.measure(path, (1024,), progress=lambda done, total: calls.append((done, total)))
    assert len(calls) > 3  # the fit's own reports, then its record's and the end
    assert _fractions(calls) == sorted(_fractions(calls))
    assert 0 < calls[0][0] < stats.STEP  # inside the first of two steps


def test_a_kmq_input_and_a_lossless_k_end_at_the_total(tmp_path, crop):
    kmq_path = tmp_path / "crop.kmq"
    kmq.write(kmq_path, kmq.compress(crop, 4))
    for codec in (None, "all"):  # as stored (no step at all), or re-encoded by every codec (one step)
        calls = []
        stats.measure(kmq_path, codec=codec, progress=lambda done, total: calls.append((done, total)))
        assert calls[-1] == (1, 1) and len(calls) == (1 if codec is None else 2)
    few = np.zeros((8, 8, 3), np.uint8)
    few[4:] = 200
    png = tmp_path / "two.png"
    Image.fromarray(few).save(png)
    calls = []
    with pytest.warns(kmq.KmqWarning):
        stats.measure(png, (2, 4, 8), progress=lambda done, total: calls.append((done, total)))
    assert _fractions(calls) == sorted(_fractions(calls)) and calls[-1] == (1, 1)


def test_the_command_draws_one_bar_over_every_input(monkeypatch, tmp_path, crop):
    for name in ("a.png", "b.png"):
        Image.fromarray(crop).save(tmp_path / name)
    args = ["stats", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-k", "2", "-k", "8", "--format", "json"]
    plain = CliRunner().invoke(main, args, prog_name="kmq")
    seen = []

    class Bar:
        def __call__(self, done, total):
            seen.append((done, total))

        def echo(self, line):
            seen.append(line)

    @contextmanager
    def bar(quiet, what, after=cli._QUICK, percent=True):  # (as _fit_progress's defaults)
        seen.append((what, percent))
        yield None if quiet else Bar()

    monkeypatch.setattr(cli, "_fit_progress", bar)
    drawn = CliRunner().invoke(main, args, prog_name="kmq")
    assert drawn.exit_code == plain.exit_code == 0 and drawn.output == plain.output
    assert seen[0] == ("Measuring", True)
    reports = seen[1:]
    assert all(total == cli.STEPS for _, total in reports)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports) and reports[-1][0] == cli.STEPS
    assert any(d == cli.STEPS // 2 for d, _ in reports)  # the first of the two inputs done: half the bar
    seen.clear()
    assert CliRunner().invoke(main, [*args, "-q"], prog_name="kmq").output == plain.output
    assert seen == [("Measuring", True)]  # quiet: no reports


def test_a_montage_reports_each_fit_and_keeps_its_pixels(crop):
    calls = []
    drawn = segment.montage(crop, [1024, 2, 2, 8], progress=lambda done, total: calls.append((done, total)))
    assert np.array_equal(drawn.pixels, segment.montage(crop, [1024, 2, 2, 8]).pixels)
    assert _fractions(calls) == sorted(_fractions(calls)) and calls[-1] == (1, 1)
    steps = sorted({d for d, t in calls[:-1] if d % stats.STEP == 0})
    assert steps == [stats.STEP, 2 * stats.STEP, 3 * stats.STEP]  # three distinct Ks, the repeated one once
    assert len(calls) > 4  # K = 1024's own reports within its step


def test_segments_fit_passes_its_progress_on(tmp_path, crop):
    path = tmp_path / "crop.png"
    Image.fromarray(crop).save(path)
    calls = []
    img, _ = segment.quantized(path, 1024, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert img.to_bytes() == segment.quantized(path, 1024)[0].to_bytes()


def test_a_bar_appears_after_its_delay_though_nothing_reports(monkeypatch, terminal):
    # A long step that reports nothing (lzma coding 12 MP labels, ~8 s) still shows that it is working.
    monkeypatch.setattr(cli.sys, "stderr", terminal)
    with cli._fit_progress(False, "Compressing", after=0.01, percent=True):
        waited = time.perf_counter()
        while "Compressing" not in terminal.text and time.perf_counter() - waited < 30:
            time.sleep(0.01)
    assert "Compressing" in terminal.text
    terminal.clear()
    with cli._fit_progress(False, "Compressing", after=60.0) as report:
        report(1, 2)
    assert terminal.text == ""  # over before its delay: nothing drawn, and no timer left to draw later


def test_warnings_and_errors_go_above_a_drawn_bar(monkeypatch, terminal, tmp_path):
    # Written straight to stderr they joined the bar's line ("Measuring ━━╺━ 10% 0:00:00Warning: ...").
    monkeypatch.setattr(cli.sys, "stderr", terminal)
    few = tmp_path / "few.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(few)
    with cli._fit_progress(False, "Measuring", after=0.0, percent=True) as bar:
        bar(1, 10)
        records, failed = [], []
        cli._measure_all((str(few), str(tmp_path / "missing.png")), records, failed, bar, ks=(4,))
        bar(10, 10)
    text = terminal.text
    for line in ("Warning: ", "Error: "):
        at = text.index(line)
        # on a line of its own: after a newline, or after the bar's line is erased (ESC [2K)
        assert at == 0 or text[:at].endswith(("\n", "\x1b[2K")), repr(text[max(0, at - 40):at + 10])
    assert len(records) == 1 and len(failed) == 1


def test_segments_bar_covers_the_masks_written(monkeypatch, tmp_path, crop):
    # 1,024 masks took 4.5 s to write after the bar had closed, the screen blank.
    Image.fromarray(crop).save(tmp_path / "c.png")
    inside = []

    @contextmanager
    def bar(quiet, what, after=cli._QUICK, percent=True):  # (as _fit_progress's defaults)
        inside.append(what)
        yield None
        inside.append("closed")

    real = segment.write_with_masks
    monkeypatch.setattr(cli, "_fit_progress", bar)
    monkeypatch.setattr(segment, "write_with_masks", lambda *a, **kw: inside.append("masks") or real(*a, **kw))
    args = ["segment", str(tmp_path / "c.png"), "-k", "4", "--masks", str(tmp_path / "m"),
            "-o", str(tmp_path / "s.png")]
    assert CliRunner().invoke(main, args, prog_name="kmq").exit_code == 0
    assert inside == ["Segmenting", "masks", "closed"]
