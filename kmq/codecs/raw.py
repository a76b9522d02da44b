"""Codec 0, `raw`: the labels packed at ceil(log2 k) bits each, exactly the tutorial's layout."""
from __future__ import annotations

import numpy as np

from .. import bitpack
from ..errors import FormatError


def encode(labels: np.ndarray, palette: np.ndarray) -> bytes:
    """labels (height, width) uint16, values < k -> ceil(width·height·bits / 8) bytes."""
    k = len(palette)  # only the palette size matters to this codec
    return bitpack.pack(labels.ravel(), bitpack.bits_for(k))


def decode(payload: bytes, width: int, height: int, palette: np.ndarray) -> np.ndarray:
    """payload bytes -> labels (height, width) uint16. Raises FormatError on a wrong length or padding."""
    k = len(palette)  # only the palette size matters to this codec
    bits = bitpack.bits_for(k)
    expected = bitpack.packed_size(width * height, bits)
    if len(payload) != expected:
        raise FormatError(f"raw labels: expected {expected} bytes for {width}x{height} at {bits} bits, "
                          f"got {len(payload)}")
    labels, padding_is_zero = bitpack.unpack(payload, bits, width * height)
    if not padding_is_zero:
        raise FormatError("raw labels: non-zero padding bits in the last byte")
    return labels.reshape(height, width)
