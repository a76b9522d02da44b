"""Round 44's library trial (h53f, kmq called from Python, from threads): what it found, each failing on the
code before it."""
import contextlib
import io
import threading
import warnings

import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import errors, segment

WAIT = 20  # seconds: a bound on each wait below, so a broken ordering fails instead of hanging


def test_overlapping_opens_put_back_pillows_bomb_limit(tmp_path, monkeypatch):
    """Each load set Image.MAX_IMAGE_PIXELS to None and put back what it had seen: a load that began inside
    another saw None, ended last and left Pillow's limit off for the whole process."""
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(tmp_path / "a.png")
    saved = Image.MAX_IMAGE_PIXELS
    real_open = Image.open
    second_in, first_done = threading.Event(), threading.Event()
    order: list[str] = []

    def gated_open(*args, **kwargs):
        first = not order
        order.append("first" if first else "second")
        if first:
            assert second_in.wait(WAIT)  # the second load is inside its open while the first is
        else:
            second_in.set()
            assert first_done.wait(WAIT)  # and ends after the first has ended
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", gated_open)
    results: list = []

    def load(done: threading.Event | None) -> None:
        results.append(kmq.compress(tmp_path / "a.png", 2))
        if done is not None:
            done.set()

    threads = [threading.Thread(target=load, args=(first_done,))]
    threads[0].start()
    while not order:
        threading.Event().wait(0.001)
    threads.append(threading.Thread(target=load, args=(None,)))
    threads[1].start()
    for t in threads:
        t.join(WAIT)
    assert len(results) == 2 and results[0] == results[1]
    assert Image.MAX_IMAGE_PIXELS == saved


def test_a_limit_kmq_does_not_exceed_is_left_alone(tmp_path, monkeypatch):
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(tmp_path / "a.png")
    seen = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: (seen.append(Image.MAX_IMAGE_PIXELS), real_open(*a, **k))[1])
    kmq.compress(tmp_path / "a.png", 2, max_pixels=Image.MAX_IMAGE_PIXELS)
    kmq.compress(tmp_path / "a.png", 2)
    # The default (twice Pillow's limit, where Pillow refuses) no longer sets it aside (round 48: set aside for
    # every open, the limit was off for a server's other threads' own Pillow opens 2 % of the time).
    assert seen == [Image.MAX_IMAGE_PIXELS, Image.MAX_IMAGE_PIXELS]
    kmq.compress(tmp_path / "a.png", 2, max_pixels=2 * Image.MAX_IMAGE_PIXELS + 1)
    assert seen[-1] is None  # above where Pillow refuses: set aside for the open


def test_a_target_swaps_no_process_wide_warning_state(monkeypatch, recwarn):
    """compress_to silenced its fits with warnings.catch_warnings: process-wide, so other threads' warnings
    were lost while it ran, and two overlapping searches left an "ignore" filter in place for good."""
    from kmq import target

    before = (list(warnings.filters), warnings.showwarning)
    during = []
    real = target.quantize_colors

    def spy(*args, **kwargs):
        during.append((list(warnings.filters), warnings.showwarning))
        return real(*args, **kwargs)

    monkeypatch.setattr(target, "quantize_colors", spy)
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[:4] = 200  # two colours: the search's fits at K > 2 have fewer colours than K
    img = kmq.compress_to(pixels, psnr=30, codec="ctx")
    assert img.k == 2 and not recwarn.list
    assert during and all(state == before for state in during)


def test_a_files_warnings_are_named_in_its_own_thread_only(monkeypatch):
    """segment and stats renamed warnings by recording them (catch_warnings): a warning of another thread
    meanwhile was taken into the recording and came out named after this thread's file."""
    inside, other_warned = threading.Event(), threading.Event()

    def slow_compress(pixels, k, **kwargs):
        inside.set()
        assert other_warned.wait(WAIT)
        errors.warn("fewer colours than k")
        return kmq.compress(pixels, k)

    monkeypatch.setattr(segment, "compress", slow_compress)
    png = io.BytesIO()
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(png, format="PNG")
    png.seek(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        worker = threading.Thread(target=segment.quantized, args=(png, 1), kwargs={"name": "a.png"})
        with contextlib.ExitStack() as stack:
            stack.callback(worker.join, WAIT)
            stack.callback(other_warned.set)
            worker.start()
            assert inside.wait(WAIT)
            warnings.warn("the main thread's own", UserWarning)
    assert sorted(str(w.message) for w in caught) == ["a.png: fewer colours than k", "the main thread's own"]


def test_writing_to_a_text_stdout_is_a_type_error_that_says_so(monkeypatch):
    """Under contextlib.redirect_stdout(io.StringIO()) (or a notebook's stdout), kmq.write("-", img) raised a
    raw AttributeError: '_io.StringIO' object has no attribute 'buffer'."""
    img = kmq.compress(np.zeros((2, 2, 3), np.uint8), 1)
    with contextlib.redirect_stdout(io.StringIO()):
        with pytest.raises(TypeError, match="stdout is a text stream here, with no bytes to write to: give a path"):
            kmq.write("-", img)
        with pytest.raises(TypeError, match="stdout is a text stream here"):
            kmq.export(img, "-")


def test_a_float_array_is_refused_with_the_conversion():
    with pytest.raises(ValueError, match=r"pixel arrays must be uint8, got float64 \(values 0\.\.1: \(a \* 255\)"
                                         r"\.round\(\)\.astype\(np\.uint8\)\)"):
        kmq.compress(np.zeros((2, 2, 3)), 2)
    with pytest.raises(ValueError, match=r"pixel arrays must be uint8, got uint16$"):
        kmq.compress(np.zeros((2, 2, 3), np.uint16), 2)


@pytest.mark.parametrize("module", ["palettes", "segment", "stats"])
def test_the_modules_the_docs_name_are_attributes_of_kmq(module):
    """kmq.palettes and kmq.segment (named in compress's docstring and docs/CLI.md) were AttributeErrors
    unless imported first."""
    import subprocess
    import sys

    code = f"import kmq; print(kmq.{module}.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == f"kmq.{module}\n"


def test_the_command_line_names_pillows_warnings_of_each_file(runner, tmp_path, monkeypatch):
    """Since the library names only its own warnings (per thread), Pillow's (a deprecated IM file) came out of
    stats, segment, montage and palette without the file's name (h53r1)."""
    from kmq.cli import main

    monkeypatch.chdir(tmp_path)
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Image.fromarray(pixels).save("a.im")
    Image.fromarray(pixels).save("b.png")
    for args in (["stats", "a.im", "b.png", "-k", "4", "--format", "tsv"], ["segment", "a.im", "-k", "2", "-o", "s.png"],
                 ["montage", "a.im", "-k", "2", "-o", "m.png"], ["palette", "a.im", "-k", "2"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
        said = [line for line in result.stderr.splitlines() if "IM image format is deprecated" in line]
        assert said and all(line.startswith("Warning: a.im: IM image format") for line in said), (args, said)


def _header_png(path, width, height):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))


def test_an_image_over_pillows_limit_is_refused_in_kmqs_words_under_a_lower_max_pixels(tmp_path):
    """With max_pixels at or under Pillow's limit (which kmq then leaves in force), an image over twice that
    limit got Pillow's message, with its limit, not kmq's (h53r1)."""
    _header_png(tmp_path / "big.png", 20000, 10000)
    with pytest.raises(kmq.KmqError, match=r"big.png: 20000x10000 = 200000000 pixels exceeds the limit of 1000 "
                                           r"pixels \(raise max_pixels to allow it\)$"):
        kmq.compress(tmp_path / "big.png", 2, max_pixels=1000)
    with open(tmp_path / "big.png", "rb") as f:  # a file object is read again from where it was
        with pytest.raises(kmq.KmqError, match="exceeds the limit of 1000 pixels"):
            kmq.compress(f, 2, max_pixels=1000)
    assert Image.MAX_IMAGE_PIXELS == 89_478_485
