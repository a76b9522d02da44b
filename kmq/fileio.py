"""Reading inputs and writing outputs safely: clean errors, atomic replacement, no clobbering, `-` for pipes."""
from __future__ import annotations

import errno
import io
import os
import re
import signal
import stat
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Union

from .errors import KmqError, exists

STDIO = "-"
# One wording wherever a run cannot take stdin or stdout (the CLI's usage errors, the library's KmqError).
STDIN_ALONE = "stdin (-) can only be the one and only input"
STDOUT_NOT_BULK = "-o - (stdout) cannot be used with several inputs, a folder or a summary"
# What link() says on a file system without hard links; only then is the no-clobber rename done without one.
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV}
Content = Union[bytes, Callable[[BinaryIO], None]]


def stdin() -> BinaryIO:
    """stdin for binary reading. Raises KmqError if the process was started with it closed (`<&-`): Python then
    has no sys.stdin at all."""
    if sys.stdin is None:
        raise KmqError("cannot read stdin: not open")
    return getattr(sys.stdin, "buffer", sys.stdin)  # a program's own binary stdin (io.BytesIO) has no buffer


@contextmanager
def open_input(path: str | Path) -> Iterator[BinaryIO]:
    """An input opened for binary reading: stdin for "-". Raises KmqError with the path and the reason."""
    if str(path) == STDIO:
        yield stdin()
        return
    try:
        f = open(path, "rb")
    except OSError as e:
        raise KmqError(f"{path}: {reason(e)}") from None
    with f:
        yield f


@contextmanager
def reading(path: str | Path) -> Iterator[BinaryIO]:
    """open_input, where an error while reading (EIO from a failing disk, /proc/self/mem) is a KmqError too."""
    with open_input(path) as f:
        try:
            yield f
        except OSError as e:
            raise KmqError(f"{path}: {reason(e)}") from None


def read_bytes(path: str | Path) -> bytes:
    """The whole content of a file, or of stdin for "-". Raises KmqError with the path and the reason."""
    with reading(path) as f:
        return f.read()


def check_distinct(output: str | Path, source: str | Path, what: str = "the input file") -> None:
    """Refuse to write an output over its own input (or another file the run reads: ``what`` it is), even
    with -f: that would destroy the data being read."""
    if STDIO in (str(output), str(source)):
        return
    try:
        same = os.path.samefile(output, source)
    except OSError:
        return  # the output does not exist yet (or the input is missing: reading will say so)
    if same:
        raise KmqError(f"{output}: {what} itself; choose another output")


def write_atomic(path: str | Path, content: Content, *, overwrite: bool = False) -> None:
    """Write bytes (or whatever a writer callback writes) to path, all or nothing.

    The data goes to a temporary file in the target's folder, which is then renamed over the target, so a
    failure at any point (full disk, Ctrl-C, an exception in the writer) leaves no file at the target and no
    temporary file. "-" writes to stdout instead.
    """
    if str(path) == STDIO:
        _write_stdout(content)
        return
    path = Path(path)
    check_writable(path, overwrite=overwrite)
    fd = descriptor(path)
    if fd is not None:
        _write_descriptor(fd, path, content)
        return
    if is_special(path):
        _write_special(path, content)
        return
    with signals_unwind():
        _write_via_temporary(path, content, overwrite)


def check_writable(path: str | Path, *, overwrite: bool = False, folder: bool = True) -> None:
    """What write_atomic refuses before writing, for a caller who must know before long work: a folder, or
    an existing file without overwrite, and (folder) a folder to write it in that is missing or takes no
    new files; a bulk run, which makes its folders, passes False: then the nearest folder that exists must
    take new ones (a read-only one failed each file only at its write, after its work: round 47's archive
    trial). stdout and devices (/dev/null, /dev/full) pass: they are written in place, and a full one says
    so when written."""
    if str(path) == STDIO:
        return
    fd = descriptor(path)
    if fd is not None:
        _check_descriptor(fd, path)
        return
    if is_special(path):
        return
    if os.path.isdir(path):  # (not Path's: it raised where the folder above cannot be searched)
        raise KmqError(f"cannot write {path}: is a directory")
    if not overwrite and os.path.lexists(path):
        raise exists(path)
    if folder:
        _check_folder(path)
    else:
        _check_makeable(path)


def written_before(path: str | Path) -> bool:
    """Whether path names an output a run would refuse as existing (what --skip-existing leaves alone): not
    stdout, a descriptor or a device, which are written in place, nor a folder, which is refused as one."""
    if str(path) == STDIO or descriptor(path) is not None or is_special(path) or Path(path).is_dir():
        return False
    return os.path.lexists(path)


def _check_descriptor(fd: int, path: str | Path) -> None:
    """Refused before the work, not after it: a descriptor this process does not hold (/dev/fd/7 with no 7)."""
    try:
        os.fstat(fd)
    except (OSError, OverflowError):
        raise KmqError(f"cannot write {path}: bad file descriptor") from None


def _check_folder(path: str | Path) -> None:
    parent = Path(path).parent
    try:
        mode = os.stat(parent).st_mode
    except OSError as e:
        raise KmqError(f"cannot write {path}: {reason(e)}") from None
    if not stat.S_ISDIR(mode):
        raise KmqError(f"cannot write {path}: not a directory")  # as the write itself would say
    _check_takes_entries(parent, path)


def _check_takes_entries(folder: Path, path: str | Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        # access() says no for a read-only mount too, where the write itself (a bulk run's) says why
        raise KmqError(f"cannot write {path}: {'read-only file system' if _read_only(folder) else 'permission denied'}")


def _check_makeable(path: str | Path) -> None:
    """The nearest folder above path that exists takes new entries (path's folder, or the one its missing
    folders would be made in). Anything else there (a file in the way, a folder not searchable) is left
    to the write to say, as before."""
    parent = Path(path).parent
    while not os.path.exists(parent) and parent != parent.parent:  # (os.path's: False for a folder it cannot see)
        parent = parent.parent
    if os.path.isdir(parent):
        _check_takes_entries(parent, path)


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _write_via_temporary(path: Path, content: Content, overwrite: bool) -> None:
    tmp = None
    try:
        with _signals_held():  # a signal between creating the file and learning its name would leave it behind
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            _fill(f, content)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path, overwrite))
        _publish(tmp, path, overwrite)
    except OSError as e:
        _remove(tmp)
        raise KmqError(f"cannot write {path}: {reason(e)}") from None
    except BaseException:
        _remove(tmp)
        raise


class Terminated(BaseException):
    """A signal arrived during a write that would otherwise end the process at once: raised so the temporary
    file is removed; the signal is then delivered again."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# SIGINT is here for processes where it ends the process outright (kmq.batch's workers); in a normal Python
# process it raises KeyboardInterrupt, which unwinds the write by itself.
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def signals_unwind() -> Iterator[None]:
    """While writing, a signal whose action is to end the process raises Terminated, so the temporary file is
    removed; then the signal is delivered again and ends the process as the sender meant.

    By default SIGTERM ends Python at once, skipping every cleanup and leaving the temporary file behind.
    Around several writes that stand or fall together (segment's masks and picture), a signal between two of
    them unwinds too. Nested, the outer one delivers the signal.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        for sig in caught:  # a second signal (the group's SIGINT, then the pool's SIGTERM) must not cut the cleanup
            signal.signal(sig, ignore_signal)
        raise Terminated(signum)

    caught = [sig for sig in ENDING_SIGNALS if signal.getsignal(sig) is signal.SIG_DFL]
    for sig in caught:
        signal.signal(sig, handler)
    try:
        yield
    except Terminated as e:
        if e.signum in caught:  # else an outer handler raised it and delivers it again itself
            # Held while the defaults return: a second signal arriving just then (the pool's SIGTERM after the
            # group's SIGINT, on a loaded machine) waits, and the lower-numbered one pending ends the process.
            with _signals_held():
                for sig in caught:
                    signal.signal(sig, signal.SIG_DFL)
                os.kill(os.getpid(), e.signum)
        raise
    finally:
        for sig in caught:
            signal.signal(sig, signal.SIG_DFL)


def end_by(signum: int) -> None:
    """End the process as killed by signum (status 128 + signum in a shell), so a shell loop or make running
    kmq stops too. As PID 1 (a container started without an init) the kernel drops a signal whose action is
    the default: the process then exits with that status itself (it had run on after SIGTERM, and said
    "Aborted!" with status 1 after Ctrl-C)."""
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)


def raise_terminated(signum: int, frame: object) -> None:
    """SIGTERM's handler where its default action would not end the process (PID 1): unwinds as a signal during
    a write does (Terminated), then the command line ends by it (end_by)."""
    raise Terminated(signum)


def ignore_signal(signum: int, frame: object) -> None:
    """A signal handler that does nothing. (With SIG_IGN instead, Python raises OSError for a signal that was
    already on its way.)"""


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends (where the platform can hold them back)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, ENDING_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


# Names of a descriptor this process already holds: what they lead to (a redirected stdout is a regular file)
# is the shell's, to be written through the descriptor, never renamed over (that replaced /dev/stdout itself).
_DESCRIPTOR = re.compile(r"/dev/(?:(stdin)|(stdout)|(stderr)|fd/([0-9]+))|/proc/self/fd/([0-9]+)")


def descriptor(path: str | Path) -> int | None:
    """The descriptor /dev/stdin, /dev/stdout, /dev/stderr, /dev/fd/N or /proc/self/fd/N names (0, 1, 2, N),
    else None."""
    try:
        match = _DESCRIPTOR.fullmatch(os.path.abspath(path)) if str(path) != STDIO else None
    except OSError:  # a relative path in a deleted working folder (getcwd fails): no descriptor's name
        return None
    if match is None:
        return None
    stdin, stdout, stderr, fd, proc = match.groups()
    return 0 if stdin else 1 if stdout else 2 if stderr else int(fd or proc)


def names_stdout(path: str | Path) -> bool:
    """/dev/stdout, /dev/fd/1 or /proc/self/fd/1: the same stream as "-"."""
    return descriptor(path) == 1


def is_special(path: str | Path) -> bool:
    """A device or a FIFO (/dev/null, /dev/stdout, a named pipe): written in place, never renamed over."""
    if descriptor(path) is not None:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISBLK(mode)


def is_pipe(path: str | Path) -> bool:
    """A named pipe (mkfifo, <(...), /dev/stdin on a pipe): what it holds can be read only once."""
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def _write_special(path: Path, content: Content) -> None:
    data = _rendered(content)
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise KmqError(f"cannot write {path}: {reason(e)}") from None


def _write_descriptor(fd: int, path: Path, content: Content) -> None:
    """Write through an open descriptor (a file the shell opened with > or >> stays as it opened it: reopening
    /proc/self/fd/1 would truncate what >> appends to)."""
    data = _rendered(content)
    sys.stdout.flush()  # whatever kmq itself printed there goes first
    try:
        with os.fdopen(fd, "wb", closefd=False) as f:
            f.write(data)
    except OSError as e:
        if e.errno == errno.EPIPE:
            raise  # as for "-": the reader went away
        raise KmqError(f"cannot write {path}: {reason(e)}") from None


def _mode_for(path: Path, overwrite: bool) -> int:
    """A new file's permissions as open() would give them; a replaced regular file's own, as cp and sed -i
    keep them (a private 0600 file had become 0644 on a re-run with -f). A replaced link is replaced, its
    target untouched, so a link's target lends nothing."""
    if overwrite:
        try:
            st = os.lstat(path)
        except OSError:
            pass
        else:
            if stat.S_ISREG(st.st_mode):
                return stat.S_IMODE(st.st_mode) & 0o777  # (no set-id bits on a file kmq writes)
    return 0o666 & ~_umask()


def _publish(tmp: str, path: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    # A hard link fails if the target appeared meanwhile, so another writer is never clobbered.
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise exists(path) from None
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise  # a full disk, a vanished folder: the caller reports it and removes tmp
        if os.path.lexists(path):
            raise exists(path) from None
        os.replace(tmp, path)  # the file system has no hard links (FAT, some network mounts)
        return
    os.unlink(tmp)


def _fill(f: BinaryIO, content: Content) -> None:
    if isinstance(content, (bytes, bytearray, memoryview)):
        f.write(content)
    else:
        content(f)


def _rendered(content: Content) -> bytes | bytearray | memoryview:
    """content as bytes, written in memory first where it goes to a pipe or a device: TIFF, PDF, JPEG 2000
    and others seek back to fill in offsets, which a pipe refuses and /dev/null ignores (a broken file), and
    a writer that fails half-way (PCX, IM) would leave half a file in the pipe."""
    if isinstance(content, (bytes, bytearray, memoryview)):
        return content
    buffer = io.BytesIO()
    content(buffer)
    return buffer.getbuffer()


def _write_stdout(content: Content) -> None:
    out = getattr(sys.stdout, "buffer", None)
    if out is None:  # (a notebook's or redirect_stdout's text stream: a raw AttributeError came out)
        raise TypeError("stdout is a text stream here, with no bytes to write to: give a path")
    data = _rendered(content)
    try:
        out.write(data)
        out.flush()
    except OSError as e:
        if e.errno == errno.EPIPE:
            raise  # the reader went away (`| head`): not an error to report; the CLI ends quietly (kmq.stdout)
        raise KmqError(f"cannot write to stdout: {reason(e)}") from None


def _remove(tmp: str | None) -> None:
    if tmp is None:
        return
    try:
        os.unlink(tmp)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def reason(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "no such file or directory"
    if isinstance(e, IsADirectoryError):
        return "is a directory"
    if isinstance(e, PermissionError):
        return "permission denied"
    if e.errno == errno.ENOSPC:
        return "no space left on device"
    if e.errno == errno.EBADF:
        return "not open for writing"  # e.g. stdout closed with `>&-`
    if e.strerror:  # "Not a directory", "Read-only file system": lower case, as the reasons above
        return e.strerror[0].lower() + e.strerror[1:]
    return str(e)
