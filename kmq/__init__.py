"""kmq: compress images by K-Means vector quantization into measurable .kmq files.

>>> import numpy as np, kmq
>>> img = kmq.compress(np.zeros((4, 4, 3), np.uint8), k=2)   # warns: only 1 distinct colour
>>> kmq.KmqImage.from_bytes(img.to_bytes()) == img
True
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ChecksumError, FormatError, KmqError, KmqWarning

if TYPE_CHECKING:
    from .api import compress, compress_to, export, read, write
    from .format import KmqImage

__version__ = "1.0.0"
__all__ = ["compress", "compress_to", "read", "write", "export", "KmqImage", "KmqError", "FormatError",
           "ChecksumError", "KmqWarning", "__version__"]

# The name Pillow knows .kmq by (kmq.imageio).
KMQ_FORMAT = "KMQ"

# The public functions and KmqImage load numpy and the library on first use (PEP 562), not at `import kmq`:
# so the `kmq` command (kmq/__main__.py) can start decoding its input image first, in a thread, while they
# load (kmq.prefetch).
_LAZY = {"compress": "api", "compress_to": "api", "export": "api", "read": "api", "write": "api",
         "KmqImage": "format"}


# Modules whose functions the docs name as kmq.<module>.<function> (docs/OUTPUT.md: kmq.stats.measure; the
# compress docstring and docs/CLI.md: kmq.palettes.read, kmq.segment.write_masks).
_MODULES = {"stats", "palettes", "segment"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        from importlib import import_module

        return import_module(f".{name}", __name__)
    if name not in _LAZY:
        raise AttributeError(f"module 'kmq' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # not the names this file imports for its own annotations
    return sorted((set(globals()) | set(_LAZY)) - {"annotations", "Any", "TYPE_CHECKING"})


def _register_with_pillow() -> None:
    """Image.open, im.save and Image.registered_extensions know .kmq (kmq/pilplugin.py); the plugin module,
    and PIL.ImageFile with it, is imported only when Pillow first opens or saves a .kmq, and kmq.format (numpy)
    only when Pillow first asks whether a file is one."""
    from PIL import Image

    def accept(prefix: bytes) -> bool:
        from .format import MAGIC

        return prefix[:len(MAGIC)] == MAGIC

    def open_kmq(fp, filename=None):  # noqa: ANN001, ANN202 - Pillow's factory signature
        from .pilplugin import KmqImageFile
        return KmqImageFile(fp, filename)

    def save_kmq(im, fp, filename):  # noqa: ANN001, ANN202
        from .pilplugin import save
        save(im, fp, filename)

    Image.register_open(KMQ_FORMAT, open_kmq, accept)
    Image.register_save(KMQ_FORMAT, save_kmq)
    Image.register_extension(KMQ_FORMAT, ".kmq")
    Image.register_mime(KMQ_FORMAT, "image/x-kmq")


_register_with_pillow()
