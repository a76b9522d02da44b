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
