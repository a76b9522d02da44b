"""The CLI's stdout, made to fail cleanly: full, closed or with its reader gone.

Python leaves three holes here: a full stdout (`> /dev/full`) raises OSError from wherever text happens to be
written or flushed (a traceback, or noise at interpreter exit); a closed one (`>&-`) makes sys.stdout None,
which click silently skips and everything else trips over; a reader that goes away (`| head`) raises
BrokenPipeError, then again at exit. `guarded()` closes all three once, for every command, instead of each
command guarding its own writes.
"""
from __future__ import annotations

import errno
import io
import locale
import os
import signal
import sys
from contextlib import contextmanager
from typing import Iterator

from .fileio import reason


class StdoutError(OSError):
    """A write to stdout failed; errno says why (ENOSPC, EBADF for a closed stdout, EPIPE, ...)."""


class _Stdout(io.FileIO):
    """File descriptor 1, whose first failed write is remembered, raised as StdoutError, and then ends all
    output: the descriptor is pointed at /dev/null, so nothing buffered fails again later (at exit)."""

    failure: StdoutError | None = None

    def write(self, data) -> int:  # type: ignore[override]
        try:
            return super().write(data)
        except OSError as e:
            raise self.fail(e) from None

    def fail(self, e: OSError) -> StdoutError:
        if self.failure is None:
            self.failure = StdoutError(e.errno, e.strerror)
        _discard_output()
        return self.failure


_installed: _Stdout | None = None


def _discard_output() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return  # no /dev/null (a bare chroot): buffered output may then fail once more, at exit
    os.dup2(devnull, 1)
    os.close(devnull)


def _install() -> _Stdout | None:
    """Put a _Stdout under sys.stdout when it is the process's own (not, e.g., click's CliRunner's)."""
    if sys.stdout is not sys.__stdout__:
        return None
    original = sys.stdout
    if original is None:
        # Started with stdout closed. Descriptor 1 is then free, and the next file opened would take it;
        # /dev/null opened read-only takes it instead, so writing fails (EBADF) as it should.
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd != 1:
            os.dup2(fd, 1)
            os.close(fd)
    global _installed
    raw = _installed = _Stdout(1, "w", closefd=False)
    encoding = original.encoding if original else locale.getpreferredencoding(False)
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(raw), encoding=encoding,
                                  errors=original.errors if original else "strict",
                                  line_buffering=raw.isatty())
    return raw


def _die_of_sigpipe() -> None:
    """End as a Unix tool does when its reader is gone: killed by SIGPIPE, silently (the shell shows 141)."""
    if sys.stderr is not None:
        sys.stderr.flush()
    if not hasattr(signal, "SIGPIPE"):  # Windows has none: end quietly all the same
        sys.exit(1)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)


@contextmanager
def guarded() -> Iterator[None]:
    """Run the CLI with stdout failures made clean: `Error: cannot write to stdout: <reason>` on stderr and
    exit 1 for a full or closed stdout; a reader gone (EPIPE) ends the process by SIGPIPE, with nothing said.

    Commands may write to stdout any way they like (click.echo, rich, sys.stdout.buffer); whatever fails, or
    is still buffered at the end, is caught here. Meant to wrap a click command's main(), whose SystemExit
    passes through after the final flush.
    """
    raw = _install()
    if raw is None:
        yield
        return
    code: int | str | None = 0
    try:
        try:
            yield
        except SystemExit as e:
            code = e.code
            raise
        finally:
            sys.stdout.flush()  # buffered text must fail here, where it can be reported, not at exit
    except StdoutError:
        code = None  # reported just below, once
    finally:
        # A writer may also have caught the error and gone on as if all was well (code 0): the output is
        # incomplete all the same. A failure that already gave exit 1 (fileio's message) was reported.
        if raw.failure is not None and (raw.failure.errno == errno.EPIPE or code in (0, None)):
            _end(raw.failure)


def _end(failure: OSError) -> None:
    if failure.errno == errno.EPIPE:
        _die_of_sigpipe()
    if sys.stderr is not None:
        print(f"Error: cannot write to stdout: {reason(failure)}", file=sys.stderr)
    sys.exit(1)


@contextmanager
def watched() -> Iterator[None]:
    """Around a command: a broken pipe raised by code that wrote to descriptor 1 itself, not through
    sys.stdout (Pillow does, when saving), is noted as stdout's failure too, so guarded() ends quietly."""
    try:
        yield
    except OSError as e:
        if e.errno == errno.EPIPE and _installed is not None and not isinstance(e, StdoutError):
            _installed.fail(e)
        raise
