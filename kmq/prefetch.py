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
from typing import Any

# Formats Pillow identifies without loading all its plugins, whose decoders release the GIL; GIF is left out
# (counting its frames reads the whole file).
_FORMATS = ("PNG", "JPEG", "BMP", "PPM")
# While the thread decodes, the main thread (importing) hands it the GIL within this many seconds of its
# asking, instead of Python's default 5 ms, so that it never waits longer than a decode call lasts.
_SWITCH = 0.0005

_started: dict[str, tuple[tuple[int, ...], threading.Thread, list]] = {}


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

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            im = Image.open(path, formats=_FORMATS)
        # Pillow refuses twice its MAX_IMAGE_PIXELS, kmq's default limit, and warns above it: with anything to
        # say, load_image says it.
        if caught or getattr(im, "n_frames", 1) != 1:
            im.close()
            return
    except Exception:  # noqa: BLE001 - load_image will say what is wrong with it
        return
    box: list = []

    switch = sys.getswitchinterval()

    def decode() -> None:
        try:
            im.load()
            box.append(im)
        except Exception:  # noqa: BLE001 - as above
            im.close()
        finally:
            # Here rather than in take(): the image may never be taken (load_image given the path in
            # another spelling, or an error first), and the short interval would slow the rest of the run.
            sys.setswitchinterval(switch)

    thread = threading.Thread(target=decode, daemon=True)
    sys.setswitchinterval(_SWITCH)
    thread.start()
    _started[_key(path)] = (_identity(info), thread, box)


def take(source: Any) -> Any:
    """The image decoded for `source` (a path as given on the command line), loaded, or None."""
    if not isinstance(source, (str, Path)) or _key(source) not in _started:
        return None
    identity, thread, box = _started.pop(_key(source))
    thread.join()
    try:
        same = _identity(os.stat(source)) == identity
    except OSError:
        same = False
    if box and not same:
        box[0].close()
    return box[0] if box and same else None


def _key(path: str | Path) -> str:
    """One spelling per path: the CLI hands load_image `a.png` for `./a.png` (pathlib)."""
    return os.path.normpath(path)


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
