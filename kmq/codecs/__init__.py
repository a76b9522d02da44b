"""Payload codecs: how the labels of a .kmq file are turned into payload bytes and back.

Each codec is a module with ``encode(labels, palette) -> bytes`` and
``decode(payload, width, height, palette) -> labels``: ``palette`` is the file's (k, channels) uint8 palette
(k = len(palette), so a codec may model labels by their colours) and ``labels`` a (height, width) uint16 array
of values < k. ``decode`` must raise FormatError, never another exception, on any payload, and must not
allocate more than the image's own size warrants.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import FormatError

# id in the header -> (name, module name). Ids are never reused: files written before must still read.
# A codec's module is imported when first used, so that `kmq compress` (raw) does not pay for the others.
_CODECS: dict[int, tuple[str, str]] = {
    0: ("raw", "raw"),
    1: ("lzma", "lzma_codec"),
    2: ("ctx", "ctx"),
}

NAMES: tuple[str, ...] = tuple(name for name, _ in _CODECS.values())


def codec_id(name: str) -> int:
    for cid, (cname, _) in _CODECS.items():
        if cname == name:
            return cid
    raise ValueError(f"unknown codec {name!r}; choose from {', '.join(NAMES)}")


def codec_name(cid: int) -> str:
    try:
        return _CODECS[cid][0]
    except KeyError:
        raise FormatError(f"unknown codec {cid}") from None


def _module(cid: int) -> tuple[str, ModuleType]:
    name = codec_name(cid)
    return name, importlib.import_module(f".{_CODECS[cid][1]}", __name__)


def encode(cid: int, labels, palette) -> bytes:
    """Encode (height, width) labels, each < len(palette), with codec ``cid``."""
    return _module(cid)[1].encode(labels, palette)


def decode(cid: int, payload: bytes, width: int, height: int, palette):
    """Decode a payload of codec ``cid`` into (height, width) uint16 labels < len(palette)."""
    return _module(cid)[1].decode(payload, width, height, palette)
