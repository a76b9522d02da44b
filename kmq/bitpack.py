"""Fixed-width label packing: each label as `bits` bits, most significant bit first, zero-padded last byte.

The bulk work is numpy (spreading each uint16 into its 16 bits) and bitarray (turning one byte per bit into packed
bits and back). Work is done in chunks of whole bytes so memory stays bounded for any image size.
"""
from __future__ import annotations

import numpy as np
from bitarray import bitarray

# Labels per chunk: a multiple of 8, so every chunk ends on a byte boundary whatever `bits` is.
_CHUNK = 1 << 20


def bits_for(k: int) -> int:
    """Bits per label for a palette of k entries: ceil(log2 k), and 0 for k = 1."""
    return (k - 1).bit_length()


def packed_size(count: int, bits: int) -> int:
    """Bytes that `count` labels of `bits` bits take once packed."""
    return (count * bits + 7) // 8


def pack(labels: np.ndarray, bits: int) -> bytes:
    """labels: 1-D integer array, every value < 2**bits. Returns packed_size(len(labels), bits) bytes."""
    labels = np.asarray(labels)
    if bits == 0:
        return b""
    if bits == 8:
        return labels.astype(np.uint8).tobytes()
    if bits == 16:
        return labels.astype(">u2").tobytes()
    out = bytearray()
    for start in range(0, labels.size, _CHUNK):
        big_endian = labels[start:start + _CHUNK].astype(">u2")
        # One byte (0 or 1) per bit: row i holds label i's 16 bits, most significant first.
        bit_rows = np.unpackbits(big_endian.view(np.uint8).reshape(-1, 2), axis=1)
        stream = bitarray(endian="big")
        stream.pack(np.ascontiguousarray(bit_rows[:, 16 - bits:]).tobytes())
        out += stream.tobytes()
    return bytes(out)


def unpack(data: bytes, bits: int, count: int) -> tuple[np.ndarray, bool]:
    """Inverse of pack. data must be exactly packed_size(count, bits) bytes.

    Returns (labels (count,) uint16, padding_is_zero). Raises ValueError on a wrong length.
    """
    if len(data) != packed_size(count, bits):
        raise ValueError(f"expected {packed_size(count, bits)} bytes, got {len(data)}")
    if bits == 0:
        return np.zeros(count, np.uint16), True
    if bits == 8:
        return np.frombuffer(data, np.uint8).astype(np.uint16), True
    if bits == 16:
        return np.frombuffer(data, ">u2").astype(np.uint16), True
    labels = np.empty(count, np.uint16)
    for start in range(0, count, _CHUNK):
        n = min(_CHUNK, count - start)
        offset = start * bits // 8
        stream = bitarray(endian="big")
        stream.frombytes(data[offset:offset + packed_size(n, bits)])
        bit_rows = np.frombuffer(stream.unpack(), np.uint8)[: n * bits].reshape(n, bits)
        padded = np.zeros((n, 16), np.uint8)
        padded[:, 16 - bits:] = bit_rows
        labels[start:start + n] = np.packbits(padded, axis=1).view(">u2").ravel()
    tail_bits = count * bits % 8
    padding_is_zero = tail_bits == 0 or (data[-1] & ((1 << (8 - tail_bits)) - 1)) == 0
    return labels, padding_is_zero
