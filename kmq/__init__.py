"""kmq: compress images by K-Means vector quantization into measurable .kmq files.

>>> import numpy as np, kmq
>>> img = kmq.compress(np.zeros((4, 4, 3), np.uint8), k=2)   # warns: only 1 distinct colour
>>> kmq.KmqImage.from_bytes(img.to_bytes()) == img
True
"""
from .api import compress, compress_to, export, read, write
from .errors import ChecksumError, FormatError, KmqError, KmqWarning
from .format import KmqImage

__version__ = "1.0.0"
__all__ = ["compress", "compress_to", "read", "write", "export", "KmqImage", "KmqError", "FormatError", "ChecksumError", "KmqWarning",
           "__version__"]


def _register_with_pillow() -> None:
    """Image.open, im.save and Image.registered_extensions know .kmq (kmq/pilplugin.py); the plugin module,
    and PIL.ImageFile with it, is imported only when Pillow first opens or saves a .kmq."""
    from PIL import Image

    from .format import MAGIC
    from .imageio import KMQ_FORMAT

    def open_kmq(fp, filename=None):  # noqa: ANN001, ANN202 - Pillow's factory signature
        from .pilplugin import KmqImageFile
        return KmqImageFile(fp, filename)

    def save_kmq(im, fp, filename):  # noqa: ANN001, ANN202
        from .pilplugin import save
        save(im, fp, filename)

    Image.register_open(KMQ_FORMAT, open_kmq, lambda prefix: prefix[:len(MAGIC)] == MAGIC)
    Image.register_save(KMQ_FORMAT, save_kmq)
    Image.register_extension(KMQ_FORMAT, ".kmq")
    Image.register_mime(KMQ_FORMAT, "image/x-kmq")


_register_with_pillow()
