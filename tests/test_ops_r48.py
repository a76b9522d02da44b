"""What an ops engineer deploying kmq met (round 48's packager trial): Pillow 10's tiles, a bulk run without
/dev/shm, the CPU affinity, SIGTERM / SIGINT as PID 1, and -f keeping a replaced file's permissions."""
from __future__ import annotations

import os
import signal
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kmq import __main__ as entry
from kmq import batch, fileio, imageio, parallel, prefetch
from kmq.cli import main


def _as_pillow_10(im: Image.Image) -> Image.Image:
    """Pillow 10 gives im.tile as plain tuples (decoder, extents, offset, args), without Pillow 11's names."""
    im.tile = [tuple(t) for t in im.tile]
    return im


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_grey_key_is_scaled_with_pillow_10s_tiles(tmp_path):
    # A 2-bit grey PNG keyed on level 1 (tRNS): Pillow decodes the samples scaled to 0..255 (85), the key stays 1.
    rows = b"\x00" + bytes([0b00011011])  # one row of levels 0, 1, 2, 3 (filter 0)
    png = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 1, 2, 0, 0, 0, 0))
           + _chunk(b"tRNS", struct.pack(">H", 1)) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b""))
    (tmp_path / "g.png").write_bytes(png)
    with Image.open(tmp_path / "g.png") as im:
        assert im.tile[0][3] == "L;2"
        assert imageio._key_of(_as_pillow_10(im), "g.png") == 85


def test_sixteen_bit_colour_is_seen_with_pillow_10s_tiles(tmp_path):
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / "c.png")
    rgb16 = (np.arange(18, dtype=">u2").reshape(2, 3, 3) * 3000).tobytes()
    Image.frombytes("RGB", (3, 2), rgb16, "raw", "RGB;16B").save(tmp_path / "c.ppm")  # 8-bit: maxval 255
    with Image.open(tmp_path / "c.png") as im:
        assert not prefetch.sixteen_bit_colour(_as_pillow_10(im))
    (tmp_path / "w.ppm").write_bytes(b"P6 3 2 65535\n" + rgb16)
    with Image.open(tmp_path / "w.ppm") as im:
        assert prefetch.sixteen_bit_colour(_as_pillow_10(im))


def _two_images(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.arange(60, dtype=np.uint8).reshape(4, 5, 3) * (i + 1)).save(folder / f"{i}.png")
    return folder


class _NoShm:
    def __init__(self, *args, **kwargs):
        raise OSError(30, "Read-only file system")


def test_a_bulk_run_without_worker_processes_runs_in_process(tmp_path, monkeypatch):
    """Without a writable /dev/shm multiprocessing can make no lock: the bulk run had ended in a traceback."""
    monkeypatch.setattr(batch, "ProcessPoolExecutor", _NoShm)
    result = CliRunner().invoke(main, ["compress", str(_two_images(tmp_path)), "-k", "2", "-o",
                                       str(tmp_path / "out") + "/", "-j", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ("Warning: cannot start worker processes (read-only file system): the files run one "
                             "at a time in this process\n")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.kmq", "1.kmq"]


def test_the_default_workers_are_the_cores_this_process_may_use(tmp_path, monkeypatch):
    """`taskset -c 0` on two cores had started two workers (os.cpu_count counts the machine's cores)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(batch, "ProcessPoolExecutor", _NoShm)  # a pool would warn
    assert parallel.cores() == 1
    result = CliRunner().invoke(main, ["compress", str(_two_images(tmp_path)), "-k", "2", "-o",
                                       str(tmp_path / "out") + "/", "-q"])
    assert result.exit_code == 0 and result.stderr == ""


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755])
def test_force_keeps_the_replaced_files_permissions(tmp_path, mode):
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "a.png")
    out = tmp_path / "a.kmq"
    runner = CliRunner()
    assert runner.invoke(main, ["compress", str(tmp_path / "a.png"), "-o", str(out), "-q"]).exit_code == 0
    out.chmod(mode)
    assert runner.invoke(main, ["compress", str(tmp_path / "a.png"), "-k", "1", "-o", str(out), "-f",
                                "-q"]).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == mode


def test_force_over_a_link_replaces_the_link_not_its_target(tmp_path):
    Image.fromarray(np.zeros((3, 3, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "target.kmq").write_bytes(b"mine")
    (tmp_path / "target.kmq").chmod(0o600)
    (tmp_path / "link.kmq").symlink_to("target.kmq")
    result = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "-o", str(tmp_path / "link.kmq"),
                                       "-f", "-q"])
    assert result.exit_code == 0
    assert not (tmp_path / "link.kmq").is_symlink() and (tmp_path / "target.kmq").read_bytes() == b"mine"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "link.kmq").stat().st_mode) == 0o666 & ~umask


class _Exited(Exception):
    pass


def test_a_signal_the_kernel_drops_still_ends_the_process(monkeypatch):
    """As PID 1 a signal at its default action is dropped: kmq exits with the signal's status itself."""
    exits = []
    monkeypatch.setattr(fileio.os, "kill", lambda pid, sig: None)  # (what PID 1 sees: nothing happens)

    def exit_(status):
        exits.append(status)
        raise _Exited

    monkeypatch.setattr(fileio.os, "_exit", exit_)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(_Exited):
            fileio.end_by(signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exits == [143]


def test_as_pid_1_sigterm_unwinds(monkeypatch):
    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(os, "getpid", lambda: 1)
    try:
        entry._terminable()
        assert signal.getsignal(signal.SIGTERM) is fileio.raise_terminated
        with pytest.raises(fileio.Terminated) as e:
            fileio.raise_terminated(signal.SIGTERM, None)
        assert e.value.signum == signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_not_pid_1_sigterm_keeps_its_default(monkeypatch):
    previous = signal.getsignal(signal.SIGTERM)
    entry._terminable()
    assert signal.getsignal(signal.SIGTERM) is previous


def test_a_chart_without_a_writable_home_says_nothing(tmp_path):
    """matplotlib logged two lines about its config and cache folders where HOME cannot hold them."""
    import subprocess
    import sys

    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(tmp_path / "a.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MPL", "XDG_"))}
    env.update(HOME="/dev/null", PYTHONPATH=str(Path(__file__).parent.parent))
    done = subprocess.run([sys.executable, "-m", "kmq", "stats", str(tmp_path / "a.png"), "-k", "2", "-k", "4",
                           "--plot", str(tmp_path / "rd.png"), "-q"], env=env, capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")
    assert (tmp_path / "rd.png").stat().st_size > 0


def test_a_payload_over_the_readers_bound_is_one_error_line(tmp_path, monkeypatch):
    """Never seen with ctx (16 bits a label at worst against 32), not proved impossible: it had been a
    ValueError traceback from the write."""
    from kmq import format as kmq_format

    monkeypatch.setattr(kmq_format, "max_payload", lambda width, height: 1)
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "-k", "4", "--codec", "ctx", "-o",
                                       str(tmp_path / "a.kmq")])
    assert result.exit_code == 1 and not (tmp_path / "a.kmq").exists()
    assert result.output.startswith("Error: ") and result.output.endswith(
        "more than the 1 a reader accepts: write it with --codec raw, which always fits\n")



def test_large_k_without_scipy_is_one_error_line(tmp_path, monkeypatch):
    """scipy serves K >= 512 only (pyproject says so): a packager who left it out met a traceback."""
    import sys

    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.spatial", None)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "n.png")
    result = CliRunner().invoke(main, ["compress", str(tmp_path / "n.png"), "-k", "1024", "-o",
                                       str(tmp_path / "n.kmq")])
    assert result.exit_code == 1 and not (tmp_path / "n.kmq").exists()
    assert result.output == ("Error: K-Means at this K needs scipy (its k-d tree), which is not installed: "
                             "pip install scipy\n")


def test_sigterm_as_pid_1_before_the_command_starts_ends_by_it(monkeypatch):
    """SIGTERM to PID 1 during the imports (before click's handling) had been a traceback with status 1."""
    ended = []

    def main_():
        raise fileio.Terminated(signal.SIGTERM)

    def end_by(signum):
        ended.append(signum)
        raise _Exited

    monkeypatch.setattr(entry, "main", main_)
    monkeypatch.setattr(fileio, "end_by", end_by)
    with pytest.raises(_Exited):
        entry.run()
    assert ended == [signal.SIGTERM]


def test_a_palette_image_through_a_pipe_is_clustered_as_before(tmp_path):
    """`kmq palette <(cat m.png)`: the pipe is read once, by the image's own read (checking its mode first had
    used it up: 'empty (0 bytes)'). In a process of its own, with a timeout: a pipe read twice may wait."""
    import subprocess
    import sys
    import threading

    from test_palettes_r48 import _palette_png

    data = Path(_palette_png(tmp_path / "m.png")).read_bytes()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            f.write(data)

    threading.Thread(target=feed, daemon=True).start()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    done = subprocess.run([sys.executable, "-m", "kmq", "palette", str(fifo)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert (done.returncode, done.stdout) == (0, "#0000ff 0.6667\n#ff0000 0.3333\n"), done.stderr


def test_a_closed_stdout_is_held_before_the_input_is_opened(tmp_path):
    """With stdout closed, the prefetch's open of the input took descriptor 1, which kmq.stdout then pointed at
    /dev/null under the decode: status 120 and a traceback now and then (round 48's CI)."""
    import subprocess
    import sys

    code = ("import os, sys; from kmq.__main__ import _hold_stdout; _hold_stdout(); "
            "fd = os.open(sys.argv[1], os.O_RDONLY); sys.stderr.write(str(fd))")
    (tmp_path / "x").write_bytes(b"x")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x")], env=env, capture_output=False,
                          stderr=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(1), timeout=60)
    assert done.returncode == 0 and done.stderr != "1", done.stderr


def test_no_worker_processes_after_a_pool_broke_loses_no_file(monkeypatch):
    """Pools that fail to start after a broken one: the jobs left still run, in-process, every one."""
    jobs = [batch.Job(i, Path(f"{i}.png"), Path(f"{i}.kmq"), 1) for i in range(4)]
    made = []

    def pooled(jobs_, task, workers):
        made.append(len(jobs_))
        if len(made) <= 2:  # two pools broken: every job lost, then each job in a pool of its own
            return list(jobs_)
        if len(made) == 3:
            yield task(jobs_[0])
            return []
        raise batch._NoWorkers("no /dev/shm", jobs_)  # the second job's own pool cannot start

    monkeypatch.setattr(batch, "_pooled", pooled)
    with pytest.warns(Warning, match="cannot start worker processes"):
        done = [r.job.index for r in batch.run(jobs, lambda job: batch.Result(job), 2)]
    assert sorted(done) == [0, 1, 2, 3]
