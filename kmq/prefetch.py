"""A head start for `kmq compress IMAGE`: the image is decoded in a thread while numpy and kmq load.

Loading numpy, click and the library takes ~0.15 s of CPU, decoding a 12 MP PNG ~0.3 s, and Pillow releases
the GIL while its decoders run; so the command's entry point (kmq/__main__.py) opens the one image the
command line names, before importing anything else, and decodes it in a thread. kmq.imageio.load_image then
takes that image instead of opening the file again. It is a head start only: whenever the guess is wrong or
anything goes amiss (an error, a warning, a file changed meanwhile), load_image reads the file itself and
reports as usual. No numpy here, nor anything else heavy.
"""
from __future__ import annotations

import os
import stat
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

# Formats Pillow identifies without loading all its plugins, whose decoders release the GIL; GIF is left out
# (counting its frames reads the whole file).
_FORMATS = ("PNG", "JPEG", "BMP", "PPM")
# While the thread decodes, the main thread (importing) hands it the GIL within this many seconds of its
# asking, instead of Python's default 5 ms, so that it never waits longer than a decode call lasts.
_SWITCH = 0.0005
# Bytes the thread reads from the file and hands the decoder at a time. Each read and each decoder call
# releases the GIL, and getting it back costs up to _SWITCH while the main thread imports: in Pillow's 64 KiB
# steps (one per PNG IDAT chunk) a 12 MP PNG took 330 such round trips, and its decode ran ~0.1 s longer
# beside the imports than alone (0.18 s longer beside 0.3 s of busy Python); in 4 MiB steps, a handful.
_STEP = 4 << 20

_started: dict[str, tuple[tuple[int, ...], threading.Thread, list, float]] = {}


def start(args: list[str]) -> None:
    """Start decoding the image of `kmq compress` if args (the command line after `kmq`) name exactly one
    regular file, without --max-pixels (whose limit the decode would have to respect first)."""
    path = _the_image(args)
    if path is None:
        return
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return
        from PIL import Image

        # A buffer of _STEP bytes: Pillow's reads of the file are then served from memory, one system call
        # (one release of the GIL) per _STEP bytes.
        f = open(path, "rb", buffering=_STEP)  # noqa: SIM115 - closed by the thread, or below
    except Exception:  # noqa: BLE001 - load_image will say what is wrong with it
        return
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            im = Image.open(f, formats=_FORMATS)
        # Pillow refuses twice its MAX_IMAGE_PIXELS, kmq's default limit, and warns above it: with anything to
        # say, load_image says it.
        if caught or getattr(im, "n_frames", 1) != 1:
            im.close()
            f.close()
            return
    except Exception:  # noqa: BLE001 - as above
        f.close()
        return
    im.decodermaxblock = _STEP
    if im.format == "PNG":
        im.load_read = _gathered(im.load_read)  # an instance attribute: ImageFile.load calls it
    box: list = []

    def decode() -> None:
        try:
            im.load()
            box.append(im)
        except Exception:  # noqa: BLE001 - as above
            im.close()
        finally:
            f.close()
            # The wrapper holds the image (a cycle): gone, the image's 48 MB (12 MP) are freed as soon as
            # load_image is done with it, not at some later garbage collection.
            im.__dict__.pop("load_read", None)

    thread = threading.Thread(target=decode, daemon=True)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(_SWITCH)
    thread.start()
    _started[path] = (_identity(info), thread, box, switch)


def take(source: Any) -> Any:
    """The image decoded for `source` (a path as given on the command line), loaded, or None."""
    if not isinstance(source, (str, Path)) or str(source) not in _started:
        return None
    identity, thread, box, switch = _started.pop(str(source))
    thread.join()
    sys.setswitchinterval(switch)
    try:
        same = _identity(os.stat(source)) == identity
    except OSError:
        same = False
    if box and not same:
        box[0].close()
    return box[0] if box and same else None


def _gathered(read: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """A PNG's load_read (Pillow: the next piece of image data, at most the rest of one IDAT chunk; b"" at
    the end of them) that joins consecutive chunks up to _STEP bytes, so the decoder takes them in one call.
    Past the last chunk it returns b"" as before, so a truncated file fails alike."""
    def load_read(read_bytes: int) -> bytes:
        parts: list[bytes] = []
        size = 0
        while size < _STEP:
            piece = read(_STEP - size)
            if not piece:
                break
            parts.append(piece)
            size += len(piece)
        return b"".join(parts)

    return load_read


def _identity(info: os.stat_result) -> tuple[int, ...]:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _the_image(args: list[str]) -> str | None:
    """The one input of `kmq compress ARGS`: the only argument neither an option nor right after one (which
    may be its value: `-o out.kmq`), unless that is "-" (stdin); None when there is not exactly one."""
    if not args or args[0] != "compress" or any(a == "--" or a.startswith("--max-pixels") for a in args):
        return None
    rest = args[1:]
    inputs = [a for i, a in enumerate(rest)
              if not a.startswith("-") and not (i and rest[i - 1].startswith("-") and "=" not in rest[i - 1])]
    return inputs[0] if len(inputs) == 1 and inputs[0] != "-" else None
