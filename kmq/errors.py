"""The exceptions and the warning kmq raises.

KmqError is the base of everything kmq raises on bad input; FormatError means a .kmq file (or bytes) is
malformed; ChecksumError is the FormatError for a CRC mismatch.
"""
from __future__ import annotations

import os
import sys
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def out_of_memory(e: MemoryError) -> str:
    """A MemoryError in words (numpy's says what it could not allocate; Python's own says nothing)."""
    return f"out of memory ({e})" if str(e) else "out of memory"


class KmqError(Exception):
    """Bad input, a failed read or write: anything the user can fix. Its message says what and where."""


class FormatError(KmqError):
    """A .kmq file or byte string is malformed (truncated, forged, unknown version or codec, ...).

    image_format: when the bytes are an image's instead (Pillow's name of its format: "PNG"), else None."""
    image_format: str | None = None


class ChecksumError(FormatError):
    """The CRC-32 stored in a .kmq file does not match its bytes."""


# The library's words for a refused replacement; the CLI says its own (-f) in their place.
OVERWRITE_HINT = "(overwrite=True replaces it)"
# How to allow a larger image, in the library's words (the command line says --max-pixels: cli._reworded).
MAX_PIXELS_HINT = "(raise max_pixels to allow it)"
# A target out of reach under the K it was capped at, and a montage too large: the same, in the library's words.
K_CAP_HINT = ", the most k allows)"
MONTAGE_HINT = "(fewer ks, or raise max_pixels)"
# What the command line says in their place (cli._reworded).
CLI_WORDS = {OVERWRITE_HINT: "(use -f to overwrite)", MAX_PIXELS_HINT: "(raise it with --max-pixels)",
             K_CAP_HINT: ", the most -k allows)", MONTAGE_HINT: "(fewer -k, or raise --max-pixels)"}


def valid_unicode(text: str) -> str:
    """text as valid Unicode: the bytes of a file name that are not UTF-8 (which Python keeps as lone
    surrogates, and strict JSON readers refuse) become the four characters \\xNN."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file name decodes to
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")


def exists(path: str | Path) -> KmqError:
    """The error for an output that exists when overwrite was not asked for."""
    return KmqError(f"{path} already exists {OVERWRITE_HINT}")


class KmqWarning(UserWarning):
    """Degenerate but usable input, e.g. fewer distinct colours than K."""


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _pillows(frame: Any) -> bool:
    """Whether a frame is Pillow's own: a kmq warning raised under it came through kmq's plugin (im.save(...,
    k=8)), called from the user's line above it. (By module name: errors does not import Pillow.)"""
    return frame.f_globals.get("__name__", "").startswith("PIL.")


def warn(message: str, also: tuple[str, ...] = ()) -> None:
    """A KmqWarning at the first frame outside kmq (and outside the folders `also`: Pillow's, for its
    plugin): raised several frames deep (in a load, in a write's callback), a warning with a fixed
    stacklevel named one of kmq's own lines. Warned at once, not recorded and raised again later, so a
    warnings filter set to "error" still stops the work before any file is written, and nothing
    process-wide is swapped (threads calling kmq keep their warnings)."""
    inside = (_PACKAGE, *also)
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and (frame.f_code.co_filename.startswith(inside) or _pillows(frame)):
        frame, level = frame.f_back, level + 1
    names = getattr(_NAMES, "stack", None)
    warnings.warn(about(names[-1], message) if names else message, KmqWarning, stacklevel=level)


# The file each thread's kmq warnings are about (named_warnings). Thread-local: warnings.catch_warnings swaps
# process-wide state, so around a whole compress in several threads it swallowed other threads' warnings and,
# where two overlapped, left a filter and a recorder in place for good (a library user's trial).
_NAMES = threading.local()
# Held around the few short blocks the library still records warnings in (Pillow's own, in its words): kmq's
# threads then never overlap two of them.
WARNINGS_LOCK = threading.RLock()


@contextmanager
def named_warnings(path: str | Path) -> Iterator[None]:
    """kmq's warnings inside (errors.warn) name the file they are about, in this thread alone: with several
    inputs, "the image has only 2 distinct colours" must say which image."""
    stack = _NAMES.__dict__.setdefault("stack", [])
    stack.append(path)
    try:
        yield
    finally:
        stack.pop()


@contextmanager
def naming(path: str | Path, kind: type[KmqError] = FormatError) -> Iterator[None]:
    """Prefix the message of a FormatError (or another kind of KmqError) raised inside with the file it is
    about ("a.kmq: truncated ..."), unless it names it already.

    The container code sees only bytes, the palette's checks only pixels; this is where a file name is
    known. "-" is named <stdin>.
    """
    try:
        yield
    except kind as e:
        named = type(e)(about(path, str(e)))
        named.__dict__.update(e.__dict__)  # image_format
        raise named from None


def counted(n: int, word: str) -> str:
    """"1 pixel", "2,048 pixels": a count in a message, with thousands separators."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def plural_bytes(n: int) -> str:
    """"1 byte", "2,048 bytes": a size in a message."""
    return counted(n, "byte")


def about(path: str | Path, message: str) -> str:
    """message prefixed with the file it is about, unless it already starts with that name and a colon."""
    name = "<stdin>" if str(path) == "-" else str(path)
    return message if message.startswith(name + ":") else f"{name}: {message}"


@contextmanager
def warnings_about(path: str | Path) -> Iterator[None]:
    """Warnings raised inside, Pillow's too, raised again naming the file they are about. It swaps the
    process's warning state (warnings.catch_warnings): for the command line, which owns its process; the
    library names its own warnings with named_warnings."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        # Also when an error follows them (a warning says why the error came), and only once the recording
        # has stopped: warned inside it, each would be recorded again while this loop reads the list.
        for w in caught:
            warnings.warn(about(path, str(w.message)), w.category, stacklevel=3)
