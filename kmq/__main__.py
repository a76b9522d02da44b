"""The `kmq` command (and `python -m kmq`): its input image starts decoding before the rest of kmq loads
(kmq.prefetch), then kmq.cli runs, and a command that succeeded ends without the interpreter's teardown
(`run`, the console script; `main` raises SystemExit as click does, for a program that runs kmq inside its
own process)."""
import sys


def run() -> None:
    """`main`, then, when the command succeeded, the end of the process at once (see `_end_now`). Only
    here, where kmq owns the process, does malloc keep freed memory (`_keep_freed_memory`)."""
    _keep_freed_memory()
    _terminable()
    try:
        main()
    except SystemExit as e:
        if e.code in (0, None):
            _end_now()
        raise
    except BaseException as e:
        # As PID 1, SIGTERM during the imports, before click's handling (kmq.cli), had been a traceback.
        from .fileio import Terminated, end_by

        if isinstance(e, Terminated):
            end_by(e.signum)
        raise


def main() -> None:
    import os

    # OpenBLAS (numpy's) starts a thread per core as numpy loads, and each spins while it waits for work:
    # ~0.07 s of CPU at `import numpy` on two cores (0.18 s instead of 0.11), taken from the threads that
    # decode the image meanwhile. kmq splits its own work between threads (kmq.parallel) and hands BLAS only
    # tiny products, so one BLAS thread loses nothing; a value set by the user stays.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # numpy asks for transparent huge pages for its large arrays (madvise), and where the kernel's THP defrag
    # is "madvise" (its default) a fault on such memory compacts memory on the spot when free huge pages are
    # few, as on any machine that has run a while: a 12 MP compress at K = 16 spent 0.6-1.5 s of system time
    # (0.55 -> 1.0-1.9 s end to end, 2 runs in 3) for 0.7 s of user time; 12 MP RGBA under random alpha
    # at K = 256 1.7-2.5 s (1.8 -> 3.0-3.8 s). With 4 KiB pages the faults are 2.5x as many and cost 0.15 s,
    # every run; with huge pages to spare (just after compacting) the best runs were the same. The input's
    # own buffer (kmq.prefetch) still asks for them: it is one mapping, made at the start.
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    _hold_stdout()
    from . import prefetch

    prefetch.start(sys.argv[1:])
    from .cli import main as cli

    cli()


# glibc's malloc serves blocks from 128 KiB up by fresh mappings, given back when freed, and raises that
# threshold (to at most 32 MiB, keeping twice as much freed memory before trimming) only once a mapped
# block is freed. A 12 MP compress allocates and frees hundreds of arrays of 0.5-30 MB; each fresh one
# costs a page fault per 4 KiB touched (~2 us each). These are the values glibc itself would reach.
_MMAP_THRESHOLD = 32 << 20
_TRIM_THRESHOLD = 64 << 20
# glibc also gives each thread that allocates its own arena, and memory freed in one arena serves no other:
# the 20 MB of compressed PNG data and the inflated pieces that the decoding threads allocate and free were
# never reused by the main thread, whose fit and labels then faulted in fresh pages. One arena for all:
# these few threads allocate large blocks seldom (Python's small objects never reach malloc), so they
# hardly contend for it. 12 MP PNGs at K = 16, peak 272-280 -> 250 MB, ~6 000 fewer page faults.
_ARENA_MAX = 1


def _keep_freed_memory() -> None:
    """Have malloc reuse freed memory for blocks up to _MMAP_THRESHOLD from the start, as it does by itself
    after the first large free: a 12 MP compress then faults in ~20 000 pages instead of ~50 000 (its
    allocations no longer wait for Pillow to free its copy of the image, which kmq no longer makes; see
    kmq.prefetch.map_pixels), ~0.1 s less CPU. Set by `run` only, which owns its process: never by the
    library, nor by `main`, which a program may call inside its own. Elsewhere than glibc (no mallopt)
    nothing changes."""
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except Exception:  # noqa: BLE001 - no C library to ask (Windows), or no mallopt in it (macOS, musl)
        return
    mallopt(-3, _MMAP_THRESHOLD)  # M_MMAP_THRESHOLD
    mallopt(-1, _TRIM_THRESHOLD)  # M_TRIM_THRESHOLD
    mallopt(-8, _ARENA_MAX)  # M_ARENA_MAX: before any thread has made its own


def _hold_stdout() -> None:
    """A stdout closed at the start (`>&-`) leaves descriptor 1 free, and the input file the prefetch opens
    first would take it: kmq.stdout, which points descriptor 1 at /dev/null, then did so under the decode, and
    the command ended with status 120 and a traceback now and then (a clean-clone CI run of round 48). /dev/null
    read-only takes it here first, as kmq.stdout would: writing to it fails (EBADF), as to a closed stdout."""
    import os

    try:
        os.fstat(1)
    except OSError:
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd != 1:
            os.dup2(fd, 1)
            os.close(fd)


def _terminable() -> None:
    """As PID 1 (a container without an init, where `docker stop` sends SIGTERM) the kernel ignores a signal
    whose action is the default: SIGTERM then had no effect until the SIGKILL 10 s later, the one signal that
    can leave a temporary file behind. There it unwinds as during a write and ends the process (kmq.fileio)."""
    import os

    if os.getpid() == 1:
        import signal

        from .fileio import raise_terminated

        signal.signal(signal.SIGTERM, raise_terminated)


def _end_now() -> None:
    """Exit 0 at once once a command has succeeded: its files are written and closed, and what remains of the
    interpreter's teardown (clearing numpy's and every other module, ~0.05-0.1 s of CPU after a 12 MP
    compress, a tenth of its own work) changes nothing the user sees. The exit handlers still run and
    stdout and stderr are flushed; whenever anything might still be running (a thread that is not a daemon,
    a child process) or a flush fails, this returns and the usual exit follows, reporting as usual."""
    import atexit
    import os
    import threading

    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_handlers is None or any(t.is_alive() and not t.daemon and t is not threading.main_thread()
                                        for t in threading.enumerate()):
        return
    if "multiprocessing" in sys.modules and sys.modules["multiprocessing"].active_children():
        return
    try:
        run_exit_handlers()
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            if stream is not None:
                stream.flush()
    except Exception:  # noqa: BLE001 - the usual exit reports it
        return
    os._exit(0)


if __name__ == "__main__":
    # `python -m kmq` is the process; runpy.run_module("kmq") from a host program (argv[0] the host's), or
    # `python -i`, must get SystemExit back, not an ended process.
    run() if sys.argv[0] == __file__ and not sys.flags.inspect else main()
