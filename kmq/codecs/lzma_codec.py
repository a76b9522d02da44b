"""The ``lzma`` payload codec (id 1): the labels as bytes, compressed by LZMA2 from the standard library.

A baseline: general-purpose and well understood, but blind to the 2-D structure of a label map. The stream is
a *raw* LZMA2 stream (no .xz container, so no ~60 bytes of headers and checks the .kmq CRC already covers)
whose dictionary size both sides derive from the image size, so a forged payload cannot make the decoder
reserve more memory than the labels themselves need. The encoder may use a smaller dictionary than the
decoder configures (_ENCODER_DICT): a stream's matches then reach less far back, which any decoder with at
least that dictionary reads.
"""
from __future__ import annotations

import lzma

import numpy as np

from ..errors import FormatError

#: Largest dictionary used (the one of ``xz -9``); an image's labels rarely need more.
_MAX_DICT = 64 << 20
_MIN_DICT = 4096
#: Largest dictionary the encoder uses. liblzma's bt4 match finder (preset 9e) takes ~11.5 bytes per byte of
#: dictionary: 673 MiB at 64 MiB, all but the whole of a 48 MP encode's 600 MB (691-713 MB measured), and
#: 369 MiB at 32 MiB. Only payloads of more than 32 MiB of labels (over 33 MP up to K = 256, 16 MP above)
#: change; decoders still configure dict_size(), so files written with 64 MiB read as before.
_ENCODER_DICT = 32 << 20


def label_bytes(k: int) -> int:
    """Bytes per label in the uncompressed stream: 1 while labels fit in a byte, else 2 (little-endian)."""
    return 1 if k <= 256 else 2


def dict_size(n_bytes: int) -> int:
    """LZMA2 dictionary size for ``n_bytes`` of input: the next power of two, clamped to 4 KiB .. 64 MiB.

    A dictionary larger than the input buys nothing, and a small one keeps the decoder's memory small.
    """
    size = _MIN_DICT
    while size < n_bytes and size < _MAX_DICT:
        size <<= 1
    return size


def _filters(n_bytes: int, preset: int | None = None) -> list[dict]:
    spec: dict = {"id": lzma.FILTER_LZMA2, "dict_size": dict_size(n_bytes)}
    if preset is not None:
        spec["preset"] = preset
    return [spec]


def encode(labels: np.ndarray, palette: np.ndarray) -> bytes:
    """Compress a (height, width) uint16 label map with values < k into a raw LZMA2 stream."""
    k = len(palette)  # only the palette size matters to this codec
    # Each piece converted to the stream's bytes as it is fed (no copy where the labels already are them): a
    # whole converted copy was 48 MB of a 48 MP image's peak (its labels are uint16, the stream uint8).
    flat = np.asarray(labels).reshape(-1)
    dtype = np.dtype(np.uint8) if k <= 256 else np.dtype("<u2")
    n_bytes = flat.size * dtype.itemsize
    filters = _filters(n_bytes, preset=9 | lzma.PRESET_EXTREME)
    # The preset sets the match finder and effort; dict_size then overrides the preset's 64 MiB.
    filters[0]["dict_size"] = min(dict_size(n_bytes), _ENCODER_DICT)
    # Fed in pieces, the same stream: Python runs its signal handlers between calls, so a Ctrl-C ends a 12 MP
    # encode (~8 s in one call, which nothing interrupts) within a piece's time.
    enc = lzma.LZMACompressor(format=lzma.FORMAT_RAW, filters=filters)
    step = _PIECE // dtype.itemsize
    parts = [enc.compress(memoryview(np.ascontiguousarray(flat[i:i + step], dtype)).cast("B"))
             for i in range(0, flat.size, step)]
    return b"".join([*parts, enc.flush()])


_PIECE = 1 << 18  # bytes of labels per call: ~0.1 s of coding


def decode(payload: bytes, width: int, height: int, palette: np.ndarray) -> np.ndarray:
    """Decompress a raw LZMA2 stream into a (height, width) uint16 label map; FormatError on any bad input."""
    k = len(palette)  # only the palette size matters to this codec
    n_bytes = width * height * label_bytes(k)
    decomp = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_filters(n_bytes))
    try:
        # max_length bounds the output even if the stream claims more; one extra byte detects excess.
        data = decomp.decompress(bytes(payload), max_length=n_bytes + 1)
    except (lzma.LZMAError, EOFError, ValueError) as exc:
        raise FormatError(f"lzma payload: corrupt LZMA2 stream ({exc})") from None
    if len(data) != n_bytes:
        what = "more" if len(data) > n_bytes else f"only {len(data)}"
        raise FormatError(f"lzma payload: stream decodes to {what} bytes, expected {n_bytes} "
                          f"({width}x{height} labels of {label_bytes(k)} byte(s))")
    if not decomp.eof:
        raise FormatError("lzma payload: LZMA2 stream is truncated (no end marker)")
    if decomp.unused_data:
        raise FormatError(f"lzma payload: {len(decomp.unused_data)} trailing bytes after the LZMA2 stream")
    dtype = np.uint8 if k <= 256 else np.dtype("<u2")
    labels = np.frombuffer(data, dtype=dtype).astype(np.uint16).reshape(height, width)
    if k < 65536 and n_bytes:
        top = int(labels.max())
        if top >= k:
            bad = int(np.flatnonzero(labels.reshape(-1) >= k)[0])
            raise FormatError(f"lzma payload: label {int(labels.reshape(-1)[bad])} at pixel "
                              f"({bad % width}, {bad // width}) is not < k = {k}")
    return labels
