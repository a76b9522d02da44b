"""The .kmq container (docs/FORMAT.md): KmqImage and its bytes, with every field validated on the way in.

Reading trusts nothing: the declared sizes are checked against the bytes actually present and against a pixel
limit before anything is allocated, and every failure is a FormatError that says what and where.
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass, field
from contextlib import contextmanager
from typing import Any, BinaryIO, Iterator, NamedTuple

import numpy as np

from . import codecs
from .bitpack import bits_for
from .errors import MAX_PIXELS_HINT, ChecksumError, FormatError, KmqError, valid_unicode
from .limits import DEFAULT_MAX_PIXELS, MAX_K

MAGIC = b"\x89KMQ"
VERSION = 1
CHANNELS = (1, 3, 4)
MAX_SIDE = 2**31 - 1
MAX_META = 65535

# No codec needs more than 4 bytes a pixel (twice the uncompressed 16-bit labels) plus a fixed overhead; the
# bound lets a reader refuse a forged payload_len before reading it, even from a pipe that never ends.
PAYLOAD_BYTES_PER_PIXEL = 4
PAYLOAD_OVERHEAD = 65536
_READ_CHUNK = 1 << 20
_DECODE_CHUNK = 1 << 18

_HEADER = struct.Struct("<4sBBBBIIIIQ")
_VERSION_AT = len(MAGIC)
MAX_META_DEPTH = 64  # docs/FORMAT.md: objects and arrays nest at most this deep in the metadata
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


def _field_offsets() -> dict[str, tuple[int, str]]:
    offsets, at = {}, len(MAGIC)
    for name, code in zip(Header._fields, _HEADER.format.removeprefix("<4s")):
        offsets[name] = (at, "<" + code)
        at += struct.calcsize("<" + code)
    return offsets


#: Where each header field after the magic lives, name -> (offset, struct format): for tools that forge headers.
HEADER_FIELDS = _field_offsets()


@dataclass(eq=False)
class KmqImage:
    """An image quantized to a palette.

    palette: (k, channels) uint8, channels 1 (L), 3 (RGB) or 4 (RGBA), 1 <= k <= 65536.
    labels: (height, width) uint16, every value < k.
    metadata: JSON-serialisable dict; kmq records "distortion" (J) and "seed".
    codec: payload codec used by to_bytes ("raw" by default, see kmq.codecs.NAMES).

    Example:
        >>> import numpy as np, kmq
        >>> img = kmq.KmqImage(np.array([[0, 0, 0], [255, 255, 255]], np.uint8), np.array([[0, 1], [1, 0]]))
        >>> img.k, img.width, img.height, img.labels.dtype
        (2, 2, 2, dtype('uint16'))
        >>> img.decode()[0, 1]  # pixel (row 0, column 1): palette entry 1
        array([255, 255, 255], dtype=uint8)
    """
    palette: np.ndarray
    labels: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    codec: str = "raw"
    # A payload kept by payload(keep=True), with what it was encoded from: (codec, palette bytes, blake2b of the
    # labels, payload). api weighs an rdo file whole before returning it (a ctx encode of 512k pixels: ~0.15 s of
    # CPU), and its writer would encode the same labels again.
    _kept: tuple | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError (TypeError for a field of the wrong kind) unless the fields make a valid image, and
        make the labels uint16. Run at creation and again by to_bytes and kmq.export: the fields can be
        replaced or edited in place since (raw would cut a label of 9 at K = 4 to 2 bits without a word)."""
        if not isinstance(self.metadata, dict):
            raise TypeError(f"metadata must be a dict, got {type(self.metadata).__name__}")
        if not isinstance(self.codec, str):
            raise TypeError(f"codec must be a codec's name (str), got {type(self.codec).__name__}")
        self.palette = np.asarray(self.palette)
        self.labels = np.asarray(self.labels)
        if self.palette.dtype != np.uint8 or self.palette.ndim != 2 or self.palette.shape[1] not in CHANNELS:
            raise ValueError(f"palette must be (k, 1|3|4) uint8, got {self.palette.shape} {self.palette.dtype}")
        if not 1 <= self.palette.shape[0] <= MAX_K:
            raise ValueError(f"palette must have 1 to {MAX_K} entries, got {self.palette.shape[0]}")
        if self.labels.ndim != 2 or 0 in self.labels.shape or self.labels.dtype.kind not in "ui":
            raise ValueError(f"labels must be a non-empty (height, width) integer array, got {self.labels.shape}")
        # Unsigned labels (kmq's own, uint16) cannot be negative: one pass over them instead of two.
        if (self.labels.dtype.kind == "i" and self.labels.min() < 0) or self.labels.max() >= self.k:
            raise ValueError(f"labels must lie in 0..{self.k - 1}")
        self.labels = self.labels.astype(np.uint16, copy=False)
        codecs.codec_id(self.codec)  # raises ValueError for an unknown name

    @property
    def width(self) -> int:
        """Pixels per row (the labels' second axis)."""
        return int(self.labels.shape[1])

    @property
    def height(self) -> int:
        """Rows (the labels' first axis)."""
        return int(self.labels.shape[0])

    @property
    def channels(self) -> int:
        """1 (grey), 3 (RGB) or 4 (RGBA): the palette's columns."""
        return int(self.palette.shape[1])

    @property
    def k(self) -> int:
        """The palette's size (entries, 1..65536)."""
        return int(self.palette.shape[0])

    @property
    def bits_per_label(self) -> int:
        """ceil(log2 k) (0 at k = 1): the bits a label takes in the raw codec."""
        return bits_for(self.k)

    @property
    def distortion(self) -> float | None:
        """J recorded at encode time, or None when the file carries no metadata."""
        value = self.metadata.get("distortion")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def seed(self) -> int | None:
        """The K-Means seed recorded at encode time, or None when the file records none."""
        value = self.metadata.get("seed")
        return value if isinstance(value, int) else None

    def decode(self) -> np.ndarray:
        """The reconstructed pixels: (height, width) uint8 for L, (height, width, channels) uint8 otherwise.
        Raises ValueError as to_bytes does for fields edited into an invalid image (a label >= k).

        Example:
            >>> import numpy as np, kmq
            >>> grey = kmq.compress(np.array([[0, 255], [255, 0]], np.uint8), k=2)
            >>> grey.decode()  # two colours at k=2: lossless
            array([[  0, 255],
                   [255,   0]], dtype=uint8)
        """
        self.validate()
        flat = self.labels.reshape(-1)
        pixels = np.empty((flat.size, self.channels), np.uint8)
        # In slices: indexing casts the labels to intp, and a whole image's worth (8 bytes a pixel) of that
        # temporary makes a large decode several times slower than the gather itself.
        for start in range(0, flat.size, _DECODE_CHUNK):
            part = slice(start, start + _DECODE_CHUNK)
            np.take(self.palette, flat[part], axis=0, out=pixels[part])
        shape = (self.height, self.width) if self.channels == 1 else (self.height, self.width, self.channels)
        return pixels.reshape(shape)

    def payload(self, *, keep: bool = False) -> bytes:
        """The labels encoded by the image's codec (the file's payload). keep: remember it, so that to_bytes
        encodes again only if the labels, palette or codec change in the meantime (checked by a digest)."""
        self.validate()
        return self._payload(keep)

    def _payload(self, keep: bool = False) -> bytes:
        key = self._kept and self._payload_key()
        if key and key == self._kept[:3]:
            return self._kept[3]
        payload = codecs.encode(codecs.codec_id(self.codec), self.labels, self.palette)
        if keep:
            self._kept = (*self._payload_key(), payload)
        return payload

    def keep_payload_of(self, *others: KmqImage) -> None:
        """Keep the payload the first of ``others`` kept for this image's labels, palette and codec, if one did."""
        kept = [other._kept for other in others if other._kept]
        key = kept and self._payload_key()
        self._kept = next((k for k in kept if k[:3] == key), self._kept)

    def _payload_key(self) -> tuple:
        labels = np.ascontiguousarray(self.labels)
        import hashlib  # only where payloads are kept (rdo, targets): OpenSSL's load kept out of start-up

        return self.codec, self.palette.tobytes(), hashlib.blake2b(labels.data, digest_size=32).digest()

    def _meta(self) -> bytes:
        # No metadata is meta_len = 0 (FORMAT.md), not "{}": a file without any reads back as {} and must be
        # written again as the same bytes (`kmq stats --codec all` re-encodes a file to report its sizes).
        if not self.metadata:
            return b""
        return json.dumps(self.metadata, sort_keys=True, separators=(",", ":"), allow_nan=False,
                          default=_scalar).encode()

    def overhead(self) -> int:
        """The file's bytes besides the payload (header, palette, metadata, checksum), without encoding it."""
        return HEADER_SIZE + self.k * self.channels + len(self._meta()) + CRC_SIZE

    def to_bytes(self) -> bytes:
        """The whole .kmq file. Raises ValueError (TypeError) for fields that no longer make a valid image,
        KmqError for a payload over what a reader accepts (max_payload).

        Example:
            >>> import numpy as np, kmq
            >>> data = kmq.compress(np.zeros((2, 3), np.uint8), k=1).to_bytes()
            >>> data[1:4], kmq.read(data).to_bytes() == data  # (data[0] is 0x89, as in a PNG's signature)
            (b'KMQ', True)
        """
        self.validate()
        problem = _not_json(self.metadata) or metadata_problem(self.metadata)
        if problem:  # a file kmq writes must be one kmq reads
            raise ValueError(f"metadata: {problem}")
        meta = self._meta()
        if len(meta) > MAX_META:
            raise ValueError(f"metadata is {len(meta)} bytes, more than {MAX_META}")
        cid = codecs.codec_id(self.codec)
        payload = self._payload()
        if len(payload) > max_payload(self.width, self.height):
            # Never seen (ctx's worst measured is 16.02 bits a label against the bound's 32; round 48's crafted
            # maps 8.5 on average), not proved impossible: the user's input, not a bug, so one Error: line.
            raise KmqError(f"codec {self.codec} made a {len(payload)}-byte payload for {self.width}x{self.height}"
                           f" pixels, more than the {max_payload(self.width, self.height)} a reader accepts: write "
                           f"it with --codec raw, which always fits")
        header = _HEADER.pack(MAGIC, VERSION, self.channels, cid, self.bits_per_label, self.width,
                              self.height, self.k, len(meta), len(payload))
        head = b"".join([header, self.palette.tobytes(), meta])
        # The CRC over head and payload in turn, and one copy of the payload into the file's bytes, not two.
        crc = zlib.crc32(payload, zlib.crc32(head))
        return b"".join([head, payload, struct.pack("<I", crc)])

    @classmethod
    def from_bytes(cls, data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> KmqImage:
        """Parse and validate a whole .kmq file (bytes, or any bytes-like object: bytearray, memoryview, a
        uint8 array). Raises FormatError (ChecksumError for a CRC mismatch).

        Example:
            >>> import numpy as np, kmq
            >>> img = kmq.compress(np.zeros((2, 3), np.uint8), k=1)
            >>> kmq.KmqImage.from_bytes(img.to_bytes()) == img
            True
        """
        if not isinstance(data, (bytes, bytearray)):
            try:
                data = memoryview(data).tobytes()
            except TypeError:
                raise TypeError(f"a .kmq file is bytes, got {type(data).__name__}") from None
        header = parse_header(data, max_pixels=max_pixels)
        check_crc(data)
        palette_end = HEADER_SIZE + header.k * header.channels
        palette = np.frombuffer(data, np.uint8, header.k * header.channels, HEADER_SIZE)
        metadata = _parse_metadata(data[palette_end:palette_end + header.meta_len], palette_end)
        payload_start = palette_end + header.meta_len
        payload = memoryview(data)[payload_start:payload_start + header.payload_len]  # not a copy of the file
        labels = codecs.decode(header.codec, payload, header.width, header.height,
                               palette.reshape(header.k, header.channels))
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
    header = _parse_fields(data, max_pixels)
    _check_size(header, len(data))
    return header


def max_payload(width: int, height: int) -> int:
    """The largest payload_len a reader accepts for a width x height image, whatever the codec."""
    return PAYLOAD_BYTES_PER_PIXEL * width * height + PAYLOAD_OVERHEAD


def read_kmq(f: BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS, head: bytes = b"") -> bytearray:
    """The bytes of one .kmq file read from a binary stream, whose first bytes `head` were already read.

    Only the header is read before its declared sizes are checked against the pixel limit and, for a regular
    file, against the bytes on disk; the rest is read in chunks up to the declared size plus one byte, so a
    forged header, a huge file or an endless stream (/dev/zero, a pipe) costs no more memory than the image
    the header may declare, held once (chunks joined at the end held it twice: a forged header before
    /dev/zero peaked at 698 MB for its declared 338). The result still needs KmqImage.from_bytes (CRC,
    payload, labels).
    """
    data = read_up_to(f, HEADER_SIZE - len(head), bytearray(head))
    header = _parse_fields(data, max_pixels)
    on_disk = _remaining_on_disk(f)
    if on_disk is not None:
        _check_size(header, len(data) + on_disk)
    read_up_to(f, header.file_size - len(data) + 1, data)
    if len(data) > header.file_size:
        raise FormatError(f"trailing bytes: expected {header.file_size} bytes {_parts(header)}, got more")
    _check_size(header, len(data))
    return data


def read_front(f: BinaryIO, *,
               max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[Header, np.ndarray, dict[str, Any]]:
    """The header, the (k, channels) palette and the metadata of a .kmq file read from the start of a stream.

    For readers that show what a file is before decoding it (the Pillow plugin): the sizes are checked as by
    read_kmq (against the bytes on disk for a regular file), at most 32 + 65536·4 + 65535 bytes are read, and
    the payload and CRC are left for KmqImage.from_bytes. max_pixels None: no pixel limit (the caller's own).
    """
    head = read_up_to(f, HEADER_SIZE)
    header = _parse_fields(head, MAX_SIDE * MAX_SIDE if max_pixels is None else max_pixels)
    on_disk = _remaining_on_disk(f)
    if on_disk is not None:
        _check_size(header, len(head) + on_disk)
    palette_len = header.k * header.channels
    front = bytes(read_up_to(f, palette_len + header.meta_len))  # (the palette a read-only view, as before)
    if len(front) < palette_len + header.meta_len:
        raise FormatError(f"truncated file: expected {header.file_size} bytes {_parts(header)}, "
                          f"got {len(head) + len(front)}")
    palette = np.frombuffer(front, np.uint8, palette_len).reshape(header.k, header.channels)
    return header, palette, _parse_metadata(front[palette_len:], HEADER_SIZE + palette_len)


def read_up_to(f: BinaryIO, n: int, into: bytearray | None = None) -> bytearray:
    """Up to n more bytes of f, appended to into (or a new bytearray), which is returned."""
    data = bytearray() if into is None else into
    # In chunks: read(n) with a huge n may reserve n bytes before the stream turns out to be short.
    while n > 0:
        part = f.read(min(n, _READ_CHUNK))
        if not part:
            break
        data += part
        n -= len(part)
    return data


def _remaining_on_disk(f: BinaryIO) -> int | None:
    """Bytes left in a regular file from the current position, or None for a pipe, a device, a buffer."""
    try:
        st = os.fstat(f.fileno())
        return st.st_size - f.tell() if stat.S_ISREG(st.st_mode) else None
    except (AttributeError, OSError, ValueError):
        return None


# The signatures of the image formats a .kmq reader is most often handed by mistake, with Pillow's names.
_IMAGE_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
                     (b"GIF89a", "GIF"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"),
                     (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG2000"), (b"\xff\x4f\xff\x51", "JPEG2000"),
                     (b"qoif", "QOI"), (b"\x00\x00\x01\x00", "ICO"))


def image_format(head: bytes) -> str | None:
    """The format (Pillow's name: PNG, JPEG, WEBP, ...) of the image whose first bytes are head, or None.

    From the bytes already read: a path may be a pipe, which a second open would wait on for ever."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((name for signature, name in _IMAGE_SIGNATURES if head.startswith(signature)), None)


@contextmanager
def told_if_image(instead: str = "kmq compress takes images") -> Iterator[None]:
    """A .kmq reader's refusal of bytes that are an image says so and what to run on it: "bad magic ff d8
    ff e0" alone leaves a new user guessing."""
    try:
        yield
    except FormatError as e:
        if e.image_format is None:
            raise
        raise FormatError(f"{e} (it is a {e.image_format} image: {instead})") from None


def _parse_fields(data: bytes, max_pixels: int) -> Header:
    """The header's fields, each checked on its own and against max_pixels, from at least its first 32 bytes."""
    if not data:
        raise FormatError("not a .kmq file: empty file")
    if data[:len(MAGIC)] != MAGIC[:len(data)]:
        refused = FormatError("not a .kmq file: bad magic " + data[:len(MAGIC)].hex(" "))
        refused.image_format = image_format(data)  # for a hint of what takes it, without opening it again
        raise refused
    # The version first: a later version's header need not be 32 bytes, so a short one is not "truncated".
    if len(data) > _VERSION_AT and data[_VERSION_AT] != VERSION:
        raise FormatError(f"unsupported .kmq version {data[_VERSION_AT]} (this kmq reads version {VERSION})")
    if len(data) < HEADER_SIZE:
        raise FormatError(f"truncated header: expected {HEADER_SIZE} bytes, got {len(data)}")
    _, *fields = _HEADER.unpack_from(data)
    header = Header(*fields)
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
                          f"{max_pixels} pixels {MAX_PIXELS_HINT}")  # as an image's says
    _check_range("payload_len", header.payload_len, 0, max_payload(header.width, header.height))
    return header


def _check_size(header: Header, size: int) -> None:
    if size < header.file_size:
        raise FormatError(f"truncated file: expected {header.file_size} bytes {_parts(header)}, got {size}")
    if size > header.file_size:
        raise FormatError(f"trailing bytes: expected {header.file_size} bytes {_parts(header)}, got {size}")


def _parts(header: Header) -> str:
    """Where a file's expected size comes from: the header's fields, which a flipped byte in meta_len or
    payload_len changes too (the checksum is checked only once the size is right)."""
    return (f"(header {HEADER_SIZE} + palette {header.k * header.channels} + metadata {header.meta_len} + "
            f"payload {header.payload_len} + checksum {CRC_SIZE})")


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise FormatError(f"header: {name} is {value}, must be {low} to {high}")


def check_crc(data: bytes) -> None:
    """Raise ChecksumError unless the CRC-32 in the last 4 bytes of a whole file matches the bytes before."""
    stored = struct.unpack_from("<I", data, len(data) - CRC_SIZE)[0]
    computed = zlib.crc32(memoryview(data)[:-CRC_SIZE])
    if stored != computed:
        raise ChecksumError(f"checksum mismatch: stored 0x{stored:08X}, computed 0x{computed:08X}")


def _parse_metadata(raw: bytes, offset: int = 0) -> dict[str, Any]:
    """The metadata by the rules of docs/FORMAT.md: strict RFC 8259 JSON in UTF-8, a top-level object, and
    valid values for the keys kmq defines (distortion, seed, rdo, target, palette_source, dither); other keys
    may hold any JSON value. offset: where raw starts in the file, for the messages."""
    if not raw:
        return {}
    try:
        text = raw.decode("utf-8")
        depth = _nesting(text)
        if depth > MAX_META_DEPTH:
            raise FormatError(f"metadata nests {depth} levels deep (at most {MAX_META_DEPTH})")
        metadata = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float,
                              parse_int=_int, object_pairs_hook=_unique_keys)
    except _NotStrict as e:
        raise FormatError(f"metadata is not strict JSON: {e}") from None
    except json.JSONDecodeError as e:
        # json's own words would tell a user to "decode using utf-8-sig"
        if raw.startswith(b"\xef\xbb\xbf"):
            raise FormatError("metadata is not UTF-8 JSON: it starts with a byte-order mark (ef bb bf)") from None
        what = e.msg.removesuffix(" at")  # "Invalid control character at"
        at = len(e.doc[:e.pos].encode("utf-8"))  # json counts characters; a hex dump shows bytes
        raise FormatError(f"metadata is not valid JSON: {what} at byte {at} of the metadata "
                          f"(file offset {offset + at})") from None
    except UnicodeDecodeError as e:
        raise FormatError(f"metadata is not UTF-8: byte 0x{raw[e.start]:02x} at byte {e.start} of the metadata "
                          f"(file offset {offset + e.start}; {e.reason})") from None
    if not isinstance(metadata, dict):
        raise FormatError(f"metadata must be a JSON object, got {type(metadata).__name__}")
    problem = metadata_problem(metadata)
    if problem:
        raise FormatError(f"metadata: {problem}")
    return metadata


def metadata_problem(metadata: dict[str, Any]) -> str | None:
    """What is wrong with the values of the keys kmq defines (docs/FORMAT.md's table), or None. null means
    unknown, as an absent key. numpy's number scalars count as the numbers they hold, as in the file."""
    metadata = {key: _plain(metadata.get(key)) for key in
                ("distortion", "seed", "max_iter", "tol", "rdo", "target", "palette_source", "dither")}
    distortion, seed = metadata.get("distortion"), metadata.get("seed")
    if distortion is not None and not _is_distortion(distortion):
        return f"distortion must be a finite number >= 0, got {_short(distortion)}"
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        return f"seed must be an integer >= 0, got {_short(seed)}"
    max_iter, tol = metadata.get("max_iter"), metadata.get("tol")
    if max_iter is not None and (isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1):
        return f"max_iter must be an integer >= 1, got {_short(max_iter)}"
    if tol is not None and not _is_distortion(tol):
        return f"tol must be a finite number >= 0, got {_short(tol)}"
    rdo, target = metadata.get("rdo"), metadata.get("target")
    if rdo is not None and not _is_distortion(rdo):
        return f"rdo must be a finite number >= 0, got {_short(rdo)}"
    if target is not None and not _is_target(target):
        return f'target must be {{"psnr": a number > 0}} or {{"max_bytes": an integer >= 1}}, got {_short(target)}'
    source = metadata.get("palette_source")
    if source is not None and not (isinstance(source, dict) and isinstance(source.get("name"), str)
                                   and isinstance(source.get("sha256"), str)):
        return f'palette_source must be {{"name": a string, "sha256": a string}}, got {_short(source)}'
    dither = metadata.get("dither")
    if dither is not None and dither != "fs":
        return f'dither must be "fs", got {_short(dither)}'
    return None


def _nesting(text: str) -> int:
    """How deep the objects and arrays of a JSON text nest (the top-level object is 1), counted without
    parsing it, so that a reader's limit does not depend on how deep its own call stack already is."""
    brackets = _STRINGS.sub("", text).encode("ascii", "ignore")
    steps = np.frombuffer(brackets, dtype=np.uint8)
    steps = (np.isin(steps, _OPENERS).astype(np.int32) - np.isin(steps, _CLOSERS))
    return int(np.cumsum(steps).max(initial=0))


# The closing quote optional: an unclosed string is removed in one pass (json then says so), not searched
# again from each of its escaped quotes (64 KiB of \" took 12 s).
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_OPENERS = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSERS = np.frombuffer(b"]}", dtype=np.uint8)


_EMPTY_KEY = '""'  # how a message names the key "" (a top-level key is named without quotes)


def _scalar(value: Any) -> Any:
    """numpy's number and bool scalars as the Python values they hold (json.dumps's default=): a count or a
    mean computed with numpy is as good a metadata value as a float, which np.float64 already is."""
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        held = value.item()
        if isinstance(held, (int, float)):  # (a longdouble's item() can stay a numpy scalar)
            return held
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _held(value: Any) -> Any:
    """value, or the Python value a numpy number or bool scalar holds (other numpy scalars as they are)."""
    try:
        return _scalar(value) if isinstance(value, np.generic) else value
    except TypeError:
        return value


def _plain(value: Any) -> Any:
    """_held of value, or of each value of a dict (target's number)."""
    return {key: _held(item) for key, item in value.items()} if isinstance(value, dict) else _held(value)


def _not_json(value: Any, where: str = "", depth: int = 1, top: str = "") -> str | None:
    """What keeps value from being written as the strict JSON a reader takes, naming where it is (x['y'][0]),
    or None (json.dumps would say "'<' not supported between instances of 'int' and 'str'" for a key 1).
    Too deep a value is named by its top-level key alone (top): its path would be 64 subscripts long."""
    value = _held(value)  # (a numpy scalar that holds no JSON value is named below)
    if isinstance(value, (dict, list, tuple)) and depth > MAX_META_DEPTH:
        return f"{top or _EMPTY_KEY} nests deeper than {MAX_META_DEPTH} levels"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"key {_short(key)}{' in ' + where if where else ''} is not a string, as JSON keys are"
            if valid_unicode(key) != key:
                return f"key {_short(valid_unicode(key))}{' in ' + where if where else ''} is not valid Unicode"
            path = f"{where}[{_short(key)}]" if where else key
            problem = _not_json(item, path, depth + 1, key if depth == 1 else top)
            if problem:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        items = (_not_json(item, f"{where}[{i}]", depth + 1, top) for i, item in enumerate(value))
        return next(filter(None, items), None)
    if isinstance(value, str) and valid_unicode(value) != value:
        return f"{where} is not valid Unicode (a lone surrogate): {_short(valid_unicode(value))}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where} is {value!r}, not a JSON number"
    if isinstance(value, int) and abs(value) >= 10 ** _INT_DIGITS:
        return f"{where} is an integer of more than {_INT_DIGITS:,} digits"
    if value is not None and not isinstance(value, (str, int, float)):
        return f"{where} is {type(value).__name__}, not a JSON value"
    return None


def _is_target(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((key, number),) = value.items()
    if key == "psnr":
        return _is_distortion(number) and number > 0
    return key == "max_bytes" and isinstance(number, int) and not isinstance(number, bool) and number >= 1


class _NotStrict(ValueError):
    """Python's json accepts what RFC 8259 does not (NaN, Infinity, duplicate keys, numbers past a double)."""


def _no_constant(name: str) -> Any:
    raise _NotStrict(f"{name} is not a JSON number")


def _int(text: str) -> int:
    # Python refuses longer integers with advice about sys.set_int_max_str_digits; no field needs them
    if len(text.lstrip("-")) > _INT_DIGITS:
        raise _NotStrict(f"an integer of {len(text.lstrip('-')):,} digits (at most {_INT_DIGITS:,})")
    return int(text)


_INT_DIGITS = 4300


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 would read as inf and could never be written back
        raise _NotStrict(f"number {text[:40]} is out of the range of a double")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _NotStrict(f"duplicate key {_short(key)}")
        seen.add(key)
    return dict(pairs)


def _is_distortion(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:  # an integer too large for a float
        return False


def _short(value: Any) -> str:
    """value as JSON writes it (true, "7"), where the message is about a file's JSON, cut to 40 characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # not JSON at all: to_bytes's _not_json says so
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_labels(labels: np.ndarray, header: Header) -> None:
    if header.k > int(labels.max()):
        return
    y, x = np.unravel_index(int(np.argmax(labels >= header.k)), labels.shape)
    raise FormatError(f"{codecs.codec_name(header.codec)} payload: label {int(labels[y, x])} at pixel ({x}, {y}) "
                      f"is not < k = {header.k}")


def palette_of(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The palette ((k, channels) uint8) of a whole .kmq file's bytes, checked (header, sizes, CRC) without
    decoding the labels. Raises FormatError."""
    header = parse_header(data, max_pixels=max_pixels)
    check_crc(data)
    return np.frombuffer(data, np.uint8, header.k * header.channels, HEADER_SIZE).reshape(header.k, -1).copy()
