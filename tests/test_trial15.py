"""Fixes from round 16's new-user trial: each test is the reported case."""
import gc
import json
import os
import signal
import threading
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmq
from kmq.cli import main
from kmq.imageio import load_image


def run(runner, *args, **kwargs):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, prog_name="kmq", **kwargs)


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def png_bytes(tmp_path):
    y, x = np.mgrid[0:12, 0:16]
    Image.fromarray(np.dstack([x * 16, y * 20, (x + y) * 9]).astype(np.uint8)).save(tmp_path / "g.png")
    return (tmp_path / "g.png").read_bytes()


@pytest.fixture
def fifo(tmp_path, png_bytes):
    """A named pipe a thread fills with the PNG once, when a reader first opens it (as <(cat g.png) would).
    A reader opening it again gets end of file at once (the writer is gone), never a wait for a writer."""
    path = tmp_path / "pipe"
    os.mkfifo(path)
    done = threading.Event()

    def fill():
        try:
            with open(path, "wb") as f:  # blocks until the reader opens its end
                f.write(png_bytes)
        except BrokenPipeError:
            pass  # the reader closed after a peek
        while not done.wait(0.01):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # a reader waiting: it reads nothing
            except OSError:
                pass  # no reader

    writer = threading.Thread(target=fill, daemon=True)
    writer.start()
    yield path
    done.set()
    if writer.is_alive():
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # the writer's first open, if nothing read the pipe
        writer.join(5)
        os.close(fd)


# 1. stats, segment, montage and palette read an image input twice (a peek at its first bytes, then Pillow):
# a pipe was empty the second time ("not an image Pillow can read").
@pytest.mark.parametrize("command", [["stats", "--format", "tsv"], ["segment", "-k", "2", "-o", "{out}"],
                                     ["montage", "-o", "{out}"], ["palette", "-k", "2"]])
def test_a_pipe_is_an_image_for_every_command(runner, tmp_path, fifo, command):
    out = tmp_path / "out.png"
    result = run(runner, *[a.format(out=out) for a in command[:1]], fifo,
                 *[a.format(out=out) for a in command[1:]])
    assert result.exit_code == 0, result.output
    assert "Warning" not in result.stderr


# 1. Pillow reads a named pipe into memory when given its path, leaving the file it opened unclosed: every
# command printed "Warning: ...: unclosed file <_io.BufferedReader ...>".
def test_loading_a_pipe_leaves_no_file_open(fifo, png_bytes):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pixels = load_image(str(fifo))
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert pixels.shape == (12, 16, 3)


# 1. With no -o, the output was named after the pipe: /dev/fd/63.kmq failed after the whole compress, and
# /dev/stdin.kmq was written into /dev.
@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_a_pipe_without_o_is_a_usage_error_before_any_work(runner, tmp_path, fifo, command):
    result = run(runner, command, fifo)
    assert result.exit_code == 2
    assert result.stderr.endswith(f"Error: {fifo} is a pipe or a device: name the output with -o\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png", "pipe"]


def test_a_pipe_with_o_compresses(runner, tmp_path, fifo):
    result = run(runner, "compress", fifo, "-k", "3", "-o", tmp_path / "x.kmq", "-q")
    assert result.exit_code == 0 and result.stderr == ""
    assert kmq.read(tmp_path / "x.kmq").k == 3


# 12. A missing output folder (or a file where the folder should be) was found only when the file was
# written, after the whole work (a --psnr search: seconds); an existing output was refused up front.
@pytest.mark.parametrize("command", [["compress", "{image}", "-k", "2"], ["compress", "{image}", "--psnr", "20"],
                                     ["decompress", "{kmq}"], ["segment", "{image}", "-k", "2"],
                                     ["montage", "{image}"], ["palette", "{image}", "-k", "2"],
                                     ["stats", "{image}", "--plot"]])
@pytest.mark.parametrize("where", ["missing", "a file"])
def test_an_output_folder_that_cannot_take_it_is_refused_before_the_work(runner, tmp_path, png_bytes, monkeypatch,
                                                                         command, where):
    image, kmq_file = tmp_path / "g.png", tmp_path / "g.kmq"
    kmq.write(kmq_file, kmq.compress(image, 2))
    if where == "a file":
        (tmp_path / "nodir").write_bytes(b"")
    out = tmp_path / "nodir" / ("x.kmq" if command[0] == "compress" else "x.png")
    from kmq import api, segment, stats
    def never(*args, **kwargs):
        raise AssertionError("the work started")
    for module, name in [(api, "compress"), (api, "compress_to"), (api, "read"), (segment, "quantized"),
                         (segment, "montage_file"), (stats, "measure")]:
        monkeypatch.setattr(module, name, never)
    args = [a.format(image=image, kmq=kmq_file) for a in command] + ([] if command[0] == "stats" else ["-o"])
    result = run(runner, *args, out)
    reason = "no such file or directory" if where == "missing" else "not a directory"
    assert (result.exit_code, result.stderr) == (1, f"Error: cannot write {out}: {reason}\n")


class _DiesOn:
    """A bulk task whose worker process is killed (as by the out-of-memory killer) on one file's job."""

    def __init__(self, name):
        self.name = name

    def __call__(self, job):
        from kmq import batch
        if os.path.basename(job.source) == self.name:
            os.kill(os.getpid(), signal.SIGKILL)
        return batch.Result(job, bytes_after=1)


# 6. One worker killed (out of memory) broke the pool, and every file not finished by then failed with
# "worker failed: A process in the process pool was terminated abruptly", queued ones too.
def test_a_killed_worker_fails_its_own_file_only(tmp_path, png_bytes):
    from kmq import batch
    names = [f"{c}.png" for c in "abcdefgh"]
    for name in names:
        (tmp_path / name).write_bytes(png_bytes)
    jobs = batch.plan_compress([tmp_path / n for n in names], tmp_path / "out")
    results = sorted(batch.run(jobs, _DiesOn("c.png"), 2), key=lambda r: r.job.index)
    assert [r.error for r in results] == [None, None] + [
        f"{tmp_path / 'c.png'}: worker failed: its process ended abruptly (out of memory? killed?)"] + [None] * 5


# 10. The Pillow plugin ignored options it does not know without a word: im.save("x.kmq", K=8) wrote K = 16.
def test_pillow_save_warns_of_options_it_ignores(tmp_path, png_bytes):
    im = Image.open(tmp_path / "g.png")
    with pytest.warns(kmq.KmqWarning, match=r"^kmq ignores K= \(did you mean k=\?\), quality=; it takes codec=, ") as w:
        im.save(tmp_path / "x.kmq", K=3, quality=50)
    assert w[0].filename == __file__ and kmq.read(tmp_path / "x.kmq").k == 16
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        im.save(tmp_path / "y.kmq", k=3, codec="ctx")


# 8. An image with transparency and a palette without alpha: segment, stats and montage did not name the file,
# a bulk compress named it twice ("in/la.png: in/la.png has transparency").
@pytest.mark.parametrize("command", [["compress", "{image}", "-o", "{out}.kmq"],
                                     ["segment", "{image}", "-o", "{out}.png"], ["stats", "{image}"],
                                     ["montage", "{image}", "-o", "{out}.png"],
                                     ["compress", "{folder}", "-o", "{out}/", "-q"]])
def test_an_rgba_image_with_a_palette_without_alpha_is_named_once(runner, tmp_path, command):
    (tmp_path / "in").mkdir()
    image = tmp_path / "in" / "la.png"
    Image.fromarray(np.dstack([np.arange(64, dtype=np.uint8).reshape(8, 8)] * 2), "LA").save(image)
    (tmp_path / "p.gpl").write_text("GIMP Palette\nName: p\n#\n  0   0   0 black\n255 255 255 white\n")
    args = [a.format(image=image, folder=tmp_path / "in", out=tmp_path / "out") for a in command]
    result = run(runner, *args, "--palette", tmp_path / "p.gpl")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: {image}: the image has transparency (RGBA) but p.gpl has no alpha; give a "
                             f"palette with #rrggbbaa entries (.txt, .hex, .json) or flatten the image\n")


# 5. A bulk decompress of stdin reported bytes_before 0 (a bulk compress of stdin reported what it read).
def test_a_bulk_decompress_of_stdin_reports_the_bytes_it_read(runner, tmp_path, png_bytes):
    data = kmq.compress(tmp_path / "g.png", 3).to_bytes()
    result = run(runner, "decompress", "-", "-o", f"{tmp_path / 'out'}/", "--summary", "json", input=data)
    summary = json.loads(result.stdout)
    assert (summary["bytes_before"], summary["results"][0]["bytes_before"]) == (len(data), len(data))
    result = run(runner, "decompress", "-", "-o", f"{tmp_path / 'out2'}/", "--summary", "json", input=png_bytes)
    assert json.loads(result.stdout)["results"][0]["bytes_before"] == len(png_bytes)
    assert result.stderr == ("Error: <stdin>: not a .kmq file: bad magic 89 50 4e 47 (it is a PNG image: kmq compress "
                             "takes images)\n")


# 11. A Pillow image in mode La (premultiplied grey and alpha) failed with Pillow's own ValueError
# ("conversion from La to L not supported"); RGBa worked.
def test_a_premultiplied_grey_image_is_read_as_grey_and_alpha():
    with pytest.warns(kmq.KmqWarning, match="only 1 distinct colour"):
        img = kmq.compress(Image.new("La", (4, 4), (100, 50)), k=4)
    assert img.palette.tolist() == [[255, 255, 255, 50]]  # 100 / (50 / 255), clipped: LA's own reading
    with pytest.warns(kmq.KmqWarning, match="only 1 distinct colour"):
        assert kmq.compress(Image.new("La", (4, 4), (20, 255)), k=4).palette.tolist() == [[20]]


# 13. kmq info of a PNG named .kmq suggested "kmq stats and kmq palette take images", and stats then refused
# it as a bad .kmq file (a file named .kmq was held to be one, whatever it starts with).
def test_an_image_named_kmq_is_read_as_an_image_with_a_warning(runner, tmp_path, png_bytes):
    (tmp_path / "x.kmq").write_bytes(png_bytes)
    result = run(runner, "info", tmp_path / "x.kmq")
    assert result.stderr.endswith("(it is a PNG image: kmq stats and kmq palette take images)\n")
    result = run(runner, "stats", tmp_path / "x.kmq", "-k", "2", "--format", "tsv")
    assert result.exit_code == 0 and result.stdout.splitlines()[1].startswith(f"{tmp_path / 'x.kmq'}\t16\t12\t3\t2\t")
    assert result.stderr == f"Warning: {tmp_path / 'x.kmq'}: named .kmq but a PNG image; read as an image\n"
    (tmp_path / "y.kmq").write_bytes(b"\x89KMQ" + png_bytes[4:])  # a damaged .kmq is still reported as one
    assert run(runner, "stats", tmp_path / "y.kmq").stderr.startswith(f"Error: {tmp_path / 'y.kmq'}: ")


@pytest.mark.parametrize("bulk", [False, True])
def test_compress_warns_of_an_image_named_kmq_as_the_other_commands_do(runner, tmp_path, png_bytes, bulk):
    # A new user's check: segment, stats and palette warned; compress said nothing, alone or in bulk.
    (tmp_path / "x.kmq").write_bytes(png_bytes)
    out = [f"{tmp_path / 'out'}/"] if bulk else [tmp_path / "y.kmq"]
    result = run(runner, "compress", tmp_path / "x.kmq", "-k", "2", "-o", *out, "-q", *(["-j", "1"] if bulk else []))
    assert result.exit_code == 0
    assert result.stderr == f"Warning: {tmp_path / 'x.kmq'}: named .kmq but a PNG image; read as an image\n"


# Nit: a bulk decompress with --format jpg wrote x.kmq.jpeg (a single file got x.kmq.jpg, as typed).
def test_a_bulk_decompress_names_its_outputs_as_the_format_was_typed(runner, tmp_path, png_bytes):
    (tmp_path / "in").mkdir()
    kmq.write(tmp_path / "in" / "a.kmq", kmq.compress(tmp_path / "g.png", 2))
    result = run(runner, "decompress", tmp_path / "in", "-o", f"{tmp_path / 'out'}/", "--format", "jpg", "-q")
    assert result.exit_code == 0 and [p.name for p in (tmp_path / "out").iterdir()] == ["a.kmq.jpg"]


# Nit: --dither fs on a lossless image or at K = 1 changed no label but recorded "dither" (14 bytes more).
@pytest.mark.parametrize("k", [1, 500])
def test_dithering_that_moves_nothing_is_not_recorded(tmp_path, png_bytes, k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer colours than k = 500
        plain, dithered = (kmq.compress(tmp_path / "g.png", k, dither=d) for d in ("none", "fs"))
    assert "dither" not in dithered.metadata and dithered.to_bytes() == plain.to_bytes()
    palette = kmq.compress(tmp_path / "g.png", 2).palette[:1]
    assert "dither" not in kmq.compress(tmp_path / "g.png", palette=palette, dither="fs").metadata


# A Ctrl-C during one of numpy's lazy imports left a .pyc file unclosed, and the ResourceWarning Python
# raises for it (ignored by default) came out as "Warning: big.png: unclosed file <...extras.cpython-311.pyc>"
# (tests/test_signals.py, now and then).
def test_python_resource_warnings_are_not_shown_as_kmq_warnings(runner, tmp_path, png_bytes, monkeypatch):
    from kmq import api
    compress = api.compress

    def leaky(*args, **kwargs):
        warnings.warn("unclosed file <_io.BufferedReader name='x.pyc'>", ResourceWarning)
        warnings.warn("a kmq warning", kmq.KmqWarning)
        return compress(*args, **kwargs)

    monkeypatch.setattr(api, "compress", leaky)
    result = run(runner, "compress", tmp_path / "g.png", "-k", "2", "-q")
    assert (result.exit_code, result.stderr) == (0, f"Warning: {tmp_path / 'g.png'}: a kmq warning\n")



@pytest.fixture
def warning_pillow_repeats(monkeypatch):
    # Pillow 13 warns four times in one open of an IM file (at each header line it parses); a stand-in
    # that does so for any format keeps the tests independent of Pillow's version.
    opened = Image.open

    def open_deprecated(*args, **kwargs):
        for _ in range(4):
            warnings.warn("XY image format is deprecated", DeprecationWarning, stacklevel=2)
        return opened(*args, **kwargs)

    monkeypatch.setattr(Image, "open", open_deprecated)


def shown_warnings(result):
    return [line for line in result.stderr.splitlines() if line.startswith("Warning:")]


@pytest.mark.usefixtures("warning_pillow_repeats")
def test_a_warning_pillow_repeats_is_shown_once(runner, tmp_path, png_bytes):
    (tmp_path / "a.png").write_bytes(png_bytes)
    result = run(runner, "compress", tmp_path / "a.png", "-k", "4")
    assert result.exit_code == 0, result.output
    assert shown_warnings(result) == [f"Warning: {tmp_path / 'a.png'}: XY image format is deprecated"]


@pytest.mark.usefixtures("warning_pillow_repeats")
def test_a_bulk_run_shows_a_repeated_warning_once_per_file(runner, tmp_path, png_bytes):
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(png_bytes)
    result = run(runner, "compress", tmp_path / "a.png", tmp_path / "b.png", "-k", "4", "-j", "1",
                 "--summary", "json")
    assert result.exit_code == 0, result.output
    assert shown_warnings(result) == [f"Warning: {tmp_path / n}: XY image format is deprecated"
                                      for n in ("a.png", "b.png")]
