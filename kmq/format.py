"""The .kmq container (docs/FORMAT.md): KmqImage and its bytes, with every field validated on the way in.

Reading trusts nothing: the declared sizes are checked against the bytes actually present and against a pixel
limit before anything is allocated, and every failure is a FormatError that says what and where.
"""
from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from . import codecs
from .bitpack import bits_for
from .errors import ChecksumError, FormatError

MAGIC = b"\x89KMQ"
VERSION = 1
CHANNELS = (1, 3, 4)
MAX_K = 65536
MAX_SIDE = 2**31 - 1
MAX_META = 65535
# Pillow refuses images over twice its MAX_IMAGE_PIXELS (2 x 89,478,485) as decompression bombs; so do we.
DEFAULT_MAX_PIXELS = 178_956_970

_HEADER = struct.Struct("<4sBBBBIIIIQ")
HEADER_SIZE = _HEADER.size  # 32
CRC_SIZE = 4


class Header(NamedTuple):
    """The fixed 32-byte header of a .kmq file, as declared (validated by parse_header)."""
    version: int
    channels: int
    codec: int
    bits: int
    width: int
    height: int
    k: int
    meta_len: int
    payload_len: int

    @property
    def file_size(self) -> int:
        return HEADER_SIZE + self.k * self.channels + self.meta_len + self.payload_len + CRC_SIZE


@dataclass(eq=False)
class KmqImage:
    """An image quantized to a palette.

    palette: (k, channels) uint8, channels 1 (L), 3 (RGB) or 4 (RGBA), 1 <= k <= 65536.
    labels: (height, width) uint16, every value < k.
    metadata: JSON-serialisable dict; kmq records "distortion" (J) and "seed".
    codec: payload codec used by to_bytes ("raw" by default, see kmq.codecs.NAMES).
    """
    palette: np.ndarray
    labels: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    codec: str = "raw"

    def __post_init__(self) -> None:
        self.palette = np.asarray(self.palette)
        self.labels = np.asarray(self.labels)
        if self.palette.dtype != np.uint8 or self.palette.ndim != 2 or self.palette.shape[1] not in CHANNELS:
            raise ValueError(f"palette must be (k, 1|3|4) uint8, got {self.palette.shape} {self.palette.dtype}")
        if not 1 <= self.palette.shape[0] <= MAX_K:
            raise ValueError(f"palette must have 1 to {MAX_K} entries, got {self.palette.shape[0]}")
        if self.labels.ndim != 2 or 0 in self.labels.shape or self.labels.dtype.kind not in "ui":
            raise ValueError(f"labels must be a non-empty (height, width) integer array, got {self.labels.shape}")
        if self.labels.min() < 0 or self.labels.max() >= self.k:
            raise ValueError(f"labels must lie in 0..{self.k - 1}")
        self.labels = self.labels.astype(np.uint16, copy=False)
        codecs.codec_id(self.codec)  # raises ValueError for an unknown name

    @property
    def width(self) -> int:
        return int(self.labels.shape[1])

    @property
    def height(self) -> int:
        return int(self.labels.shape[0])

    @property
    def channels(self) -> int:
        return int(self.palette.shape[1])

    @property
    def k(self) -> int:
        return int(self.palette.shape[0])

    @property
    def bits_per_label(self) -> int:
        return bits_for(self.k)

    @property
    def distortion(self) -> float | None:
        """J recorded at encode time, or None when the file carries no metadata."""
        value = self.metadata.get("distortion")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def seed(self) -> int | None:
        value = self.metadata.get("seed")
        return value if isinstance(value, int) else None

    def decode(self) -> np.ndarray:
        """The reconstructed pixels: (height, width) uint8 for L, (height, width, channels) uint8 otherwise."""
        pixels = self.palette[self.labels]
        return pixels[:, :, 0] if self.channels == 1 else pixels

    def to_bytes(self) -> bytes:
        """The whole .kmq file."""
        meta = json.dumps(self.metadata, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
        if len(meta) > MAX_META:
            raise ValueError(f"metadata is {len(meta)} bytes, more than {MAX_META}")
        cid = codecs.codec_id(self.codec)
        payload = codecs.encode(cid, self.labels, self.k)
        header = _HEADER.pack(MAGIC, VERSION, self.channels, cid, self.bits_per_label, self.width,
                              self.height, self.k, len(meta), len(payload))
        body = b"".join([header, self.palette.tobytes(), meta, payload])
        return body + struct.pack("<I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> KmqImage:
        """Parse and validate a whole .kmq file. Raises FormatError (ChecksumError for a CRC mismatch)."""
        header = parse_header(data, max_pixels=max_pixels)
        _check_crc(data)
        palette_end = HEADER_SIZE + header.k * header.channels
        palette = np.frombuffer(data, np.uint8, header.k * header.channels, HEADER_SIZE)
        metadata = _parse_metadata(data[palette_end:palette_end + header.meta_len])
        payload_start = palette_end + header.meta_len
        payload = data[payload_start:payload_start + header.payload_len]
        labels = codecs.decode(header.codec, payload, header.width, header.height, header.k)
        _check_labels(labels, header)
        return cls(palette.reshape(header.k, header.channels).copy(), labels, metadata,
                   codecs.codec_name(header.codec))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KmqImage):
            return NotImplemented
        return (self.codec == other.codec and self.metadata == other.metadata
                and np.array_equal(self.palette, other.palette) and np.array_equal(self.labels, other.labels))


def parse_header(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    """Validate the header against the rules of docs/FORMAT.md and the size of `data`; allocate nothing."""
    if data[:len(MAGIC)] != MAGIC[:len(data)] or len(data) == 0:
        raise FormatError("not a .kmq file: bad magic " + data[:4].hex(" ") if data else "empty file")
    if len(data) < HEADER_SIZE:
        raise FormatError(f"truncated header: expected {HEADER_SIZE} bytes, got {len(data)}")
    _, *fields = _HEADER.unpack_from(data)
    header = Header(*fields)
    if header.version != VERSION:
        raise FormatError(f"unsupported .kmq version {header.version} (this kmq reads version {VERSION})")
    if header.channels not in CHANNELS:
        raise FormatError(f"header: channels is {header.channels}, must be 1, 3 or 4")
    codecs.codec_name(header.codec)  # "unknown codec N"
    _check_range("width", header.width, 1, MAX_SIDE)
    _check_range("height", header.height, 1, MAX_SIDE)
    _check_range("k", header.k, 1, MAX_K)
    if header.bits != bits_for(header.k):
        raise FormatError(f"header: bits is {header.bits}, must be {bits_for(header.k)} for k={header.k}")
    _check_range("meta_len", header.meta_len, 0, MAX_META)
    pixels = header.width * header.height
    if pixels > max_pixels:
        raise FormatError(f"image of {header.width}x{header.height} = {pixels} pixels exceeds the limit of "
                          f"{max_pixels} pixels")
    if len(data) < header.file_size:
        raise FormatError(f"truncated file: expected {header.file_size} bytes, got {len(data)}")
    if len(data) > header.file_size:
        raise FormatError(f"trailing bytes: expected {header.file_size} bytes, got {len(data)}")
    return header


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise FormatError(f"header: {name} is {value}, must be {low} to {high}")


def _check_crc(data: bytes) -> None:
    stored = struct.unpack_from("<I", data, len(data) - CRC_SIZE)[0]
    computed = zlib.crc32(memoryview(data)[:-CRC_SIZE])
    if stored != computed:
        raise ChecksumError(f"checksum mismatch: stored 0x{stored:08X}, computed 0x{computed:08X}")


def _parse_metadata(raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        metadata = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise FormatError(f"metadata is not UTF-8 JSON: {e}") from None
    if not isinstance(metadata, dict):
        raise FormatError(f"metadata must be a JSON object, got {type(metadata).__name__}")
    distortion = metadata.get("distortion")
    if distortion is not None and not (isinstance(distortion, (int, float)) and math.isfinite(distortion)):
        raise FormatError(f"metadata: distortion must be a finite number, got {distortion!r}")
    return metadata


def _check_labels(labels: np.ndarray, header: Header) -> None:
    too_big = labels >= header.k
    if too_big.any():
        y, x = np.unravel_index(int(np.argmax(too_big)), labels.shape)
        raise FormatError(f"label {int(labels[y, x])} at pixel ({x}, {y}) is out of range for k={header.k}")
