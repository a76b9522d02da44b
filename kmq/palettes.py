"""Palette files people already use, read and written exactly, and pixels mapped onto a given palette.

Formats, chosen by the file's extension (a .kmq file by its magic bytes, whatever its name):

- `.gpl`: a GIMP palette (GIMP, Inkscape, Krita, Aseprite): the line `GIMP Palette`, then `Name:` and
  `Columns:` lines, `#` comments and one `R G B name` line per colour. RGB only.
- `.txt` / `.hex`: one `#rrggbb` or `#rrggbbaa` per line (the `#` may be left out, as Lospec's .hex files
  do); anything after the colour must be a number (the share `kmq palette` prints beside it); blank lines and
  `;` comments are skipped. One `#rrggbbaa` line makes the palette RGBA, the others opaque.
- `.json`: the `palette` list of `kmq info --format json` (the whole object or the list; each entry's `hex`,
  or its `rgb` and `alpha`; given both, they must agree), or a list of `#rrggbb[aa]` strings or of
  `[r, g, b(, a)]` lists.
- `.pal`: a JASC palette (Paint Shop Pro, Aseprite, many game tools): the lines `JASC-PAL`, `0100` and the
  number of colours, then one `R G B` line per colour (a fourth number, alpha, makes the palette RGBA); or a
  Microsoft RIFF palette (`RIFF....PAL `, its `data` chunk's entries), the other file named .pal.
- `.act`: a Photoshop colour table: 256 RGB triples (768 bytes), optionally followed by the number of colours
  in use and the index of the transparent one (two big-endian uint16, 0xffff for none), which becomes alpha 0.
- A palette image (mode P: a PNG-8, GIF, 8-bit BMP...): its palette's entries in order, every one it declares,
  used or not (index i stays entry i, as an engine's master palette needs); a GIF's colour table, whose size
  is a power of two, is cut after the last entry its first frame's pixels use. Transparency (PNG's tRNS, a
  GIF's transparent index) becomes alpha.
- `.kmq`: its palette (read without decoding the labels; the checksum is still verified).

Reading trusts nothing: every failure is a KmqError naming the file and the line (or entry) at fault.
"""
from __future__ import annotations

import io
import json
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import kmeans
from .errors import MAX_PIXELS_HINT, KmqError, KmqWarning, counted, naming
from .fileio import open_input, write_atomic
from .format import DEFAULT_MAX_PIXELS, MAGIC, MAX_K, palette_of, read_kmq, valid_unicode

TEXT_SUFFIXES = (".gpl", ".txt", ".hex", ".json")
# Files that are palettes by their extension; any other file may still be a palette image (mode P).
FILE_SUFFIXES = TEXT_SUFFIXES + (".pal", ".act")
FORMATS = ".gpl, .txt, .hex, .json, .pal, .act"
# No honest palette file comes near this (65,536 .json entries as `kmq info` writes them: ~6 MB); a larger
# input is refused before it is parsed, so /dev/zero or a huge file costs no memory.
MAX_FILE_BYTES = 64 << 20
GPL_HEADER = "GIMP Palette"
GPL_COLUMNS = 16
JASC_HEADER = ("JASC-PAL", "0100")
ACT_COLOURS = 256
ACT_NONE = 0xFFFF  # an .act's transparent index when no entry is transparent

_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{8})")


@dataclass(frozen=True, eq=False)
class Palette:
    """colors: (n, 1|3|4) uint8, in the file's order; name: where they came from (the file's name)."""
    colors: np.ndarray
    name: str

    @property
    def sha256(self) -> str:
        """The hash of the colours as the file gives them: n x channels bytes, in order."""
        import hashlib  # only for a given palette: kept out of every command's start-up

        return hashlib.sha256(np.ascontiguousarray(self.colors).tobytes()).hexdigest()

    @property
    def source(self) -> dict[str, str]:
        """The `palette_source` metadata of a .kmq made with this palette."""
        return {"name": self.name, "sha256": self.sha256}


def as_palette(palette: Any, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Palette:
    """A Palette from a Palette, a palette file's path, or an (n, 1|3|4) uint8 array (named "<array>")."""
    if isinstance(palette, Palette):
        return palette
    if isinstance(palette, (str, Path)):
        return read(palette, max_pixels=max_pixels)
    colors = np.asarray(palette)
    if colors.dtype != np.uint8 or colors.ndim != 2 or colors.shape[1] not in (1, 3, 4):
        raise ValueError(f"a palette must be an (n, 1|3|4) uint8 array, got {colors.shape} {colors.dtype}")
    if not 1 <= len(colors) <= MAX_K:
        raise ValueError(f"a palette must have 1 to {MAX_K} entries, got {len(colors)}")
    return Palette(colors.copy(), "<array>")


# --- reading -------------------------------------------------------------------------------------------

def read(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Palette:
    """Read a palette file (see the module's formats). Raises KmqError "<file>: <what> (line N)"."""
    with open_input(path) as f:
        head = f.read(len(MAGIC))
        if head == MAGIC:
            with naming(path):
                return _checked(palette_of(read_kmq(f, max_pixels=max_pixels, head=head),
                                           max_pixels=max_pixels), path)
        data = head + f.read(MAX_FILE_BYTES + 1 - len(head))
    suffix = Path(path).suffix.lower()
    if suffix == ".kmq":
        raise KmqError(f"{path}: not a .kmq file: bad magic {head.hex(' ') or '(empty file)'}")
    if len(data) > MAX_FILE_BYTES:
        raise KmqError(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB, too large for a palette file")
    try:
        colors = parse(data, suffix) if suffix in FILE_SUFFIXES else _image_palette(data, max_pixels)
        if not len(colors):
            raise _Bad("no colours in the file")
    except _Bad as e:
        raise KmqError(f"{path}: {e}") from None
    return _checked(colors, path)


def parse(data: bytes, suffix: str) -> np.ndarray:
    """The colours of a palette file's bytes, suffix one of FILE_SUFFIXES: (n, 3|4) uint8.

    Raises _Bad (a KmqError) saying what is wrong and where, without the file's name.
    """
    if suffix == ".act":
        rows = _parse_act(data)
    elif suffix == ".pal" and data[:4] == b"RIFF":
        rows = _parse_riff(data)
    elif suffix == ".pal" and len(data) == 768 and not data.startswith(JASC_HEADER[0].encode()):
        # DOS, Quake and Build-engine games keep 256 raw RGB triples as .pal (some in 6-bit VGA levels):
        # "not UTF-8 text" said nothing of that (h56r2)
        raise _Bad("not a JASC or RIFF palette: 768 bytes, perhaps a game's 256 raw RGB triples; if its levels "
                   "are 0..255, rename it .act, which holds exactly that")
    elif suffix == ".pal":
        rows = _parse_jasc(_text(data))
    elif suffix == ".gpl":
        rows = _parse_gpl(_text(data))
    elif suffix == ".json":
        rows = _parse_json(_text(data))
    else:
        rows = _parse_hex(_text(data))
    if not rows:
        raise _Bad("no colours in the file")
    width = max(len(r) for r in rows)
    # A #rrggbb line among #rrggbbaa ones is opaque.
    return np.array([r + [255] * (width - len(r)) for r in rows], np.uint8)


class _Bad(KmqError):
    """What is wrong with a palette file's content; read() adds the file's name."""


def _checked(colors: np.ndarray, path: str | Path) -> Palette:
    if len(colors) > MAX_K:
        raise KmqError(f"{path}: {len(colors):,} colours, more than the {MAX_K:,} a palette may have")
    _, first = np.unique(colors, axis=0, return_index=True)
    if len(first) < len(colors):
        repeated = np.setdiff1d(np.arange(len(colors)), first)
        which, them = (("1 entry repeats", "it") if len(repeated) == 1
                       else (f"{len(repeated):,} entries repeat", "them"))
        warnings.warn(f"{path}: {which} an earlier colour (first: entry {repeated[0]}); "
                      f"no pixel gets {them}", KmqWarning, stacklevel=3)
    return Palette(colors, "<stdin>" if str(path) == "-" else valid_unicode(Path(path).name))


def _text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise _Bad(f"line {line}: not UTF-8 text (byte 0x{data[e.start]:02x})") from None
    if "\x00" in text:
        raise _Bad(f"line {text[:text.index(chr(0))].count(chr(10)) + 1}: not text (a NUL byte)")
    return text.removeprefix("\ufeff")


def _lines(text: str) -> list[tuple[int, str]]:
    """(line number, stripped line) for every line that is neither blank nor a comment."""
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _limit(rows: list[list[int]], where: str) -> None:
    if len(rows) > MAX_K:
        raise _Bad(f"{where}: more than {MAX_K:,} colours")


def _parse_gpl(text: str) -> list[list[int]]:
    lines = _lines(text)
    if not lines or lines[0][0] != 1 or lines[0][1] != GPL_HEADER:
        raise _Bad(f"line 1: not a GIMP palette: the first line must be '{GPL_HEADER}'")
    rows = []
    for n, line in lines[1:]:
        if line.startswith("#") or re.match(r"(Name|Columns)\s*:", line):
            continue
        fields = line.split(None, 3)
        if len(fields) < 3 or not all(re.fullmatch(r"\d{1,9}", v) for v in fields[:3]):
            raise _Bad(f"line {n}: expected 'R G B name' (three integers 0..255), got {_quote(line)}")
        rows.append([_byte(int(v), n) for v in fields[:3]])
        _limit(rows, f"line {n}")
    return rows


def _parse_hex(text: str) -> list[list[int]]:
    rows = []
    for n, line in _lines(text):
        if line.startswith(";"):
            continue
        colour, *rest = line.split()
        match = _HEX.fullmatch(colour)
        if not match or len(rest) > 1 or (rest and not _is_number(rest[0])):
            raise _Bad(f"line {n}: expected #rrggbb or #rrggbbaa (optionally followed by a number), "
                       f"got {_quote(line)}")
        rows.append(list(bytes.fromhex(match.group(1))))
        _limit(rows, f"line {n}")
    return rows


def _parse_jasc(text: str) -> list[list[int]]:
    lines = text.splitlines()
    for n, expected in enumerate(JASC_HEADER, 1):
        got = lines[n - 1].strip() if len(lines) >= n else ""
        if got != expected:
            what = "not a JASC palette: the first line must be" if n == 1 else "expected the version"
            raise _Bad(f"line {n}: {what} '{expected}', got {_quote(got)}")
    said = lines[2].strip() if len(lines) > 2 else ""
    if not re.fullmatch(r"\d{1,9}", said):
        raise _Bad(f"line 3: expected the number of colours, got {_quote(said)}")
    rows = []
    for n, line in _lines("\n".join(lines[3:])):
        n += 3
        fields = line.split()
        if len(fields) not in (3, 4) or not all(re.fullmatch(r"\d{1,9}", v) for v in fields):
            raise _Bad(f"line {n}: expected 3 numbers 0..255 (a 4th: alpha), got {_quote(line)}")
        rows.append([_byte(int(v), n) for v in fields])
        _limit(rows, f"line {n}")
    if len(rows) != int(said):
        # A count that disagrees most often means a file cut short: refused rather than guessed at.
        raise _Bad(f"line 3: says {counted(int(said), 'colour')}, the file has {len(rows):,}")
    return rows


def _parse_act(data: bytes) -> list[list[int]]:
    table = 3 * ACT_COLOURS
    if len(data) not in (table, table + 4):
        raise _Bad(f"{counted(len(data), 'byte')}: a Photoshop colour table (.act) is {table} bytes, or "
                   f"{table + 4} with its number of colours and transparent index")
    rows = np.frombuffer(data, np.uint8, table).reshape(ACT_COLOURS, 3).tolist()
    if len(data) == table:
        return rows
    count, clear = int.from_bytes(data[table:table + 2], "big"), int.from_bytes(data[table + 2:], "big")
    if not 1 <= count <= ACT_COLOURS:
        raise _Bad(f"byte {table}: says {count:,} colours; an .act holds 1 to {ACT_COLOURS}")
    rows = rows[:count]
    if clear != ACT_NONE:
        if clear >= count:
            raise _Bad(f"byte {table + 2}: its transparent index {clear:,} is not one of its {count} colours")
        rows = [r + [0 if i == clear else 255] for i, r in enumerate(rows)]
    return rows


def _parse_riff(data: bytes) -> list[list[int]]:
    """A Microsoft RIFF palette: "RIFF" size "PAL " then chunks; "data" holds version (0x0300), the number of
    entries (little-endian uint16) and 4 bytes (R, G, B, flags) per entry."""
    if len(data) < 12:
        raise _Bad(f"a RIFF file of {counted(len(data), 'byte')}, too short for its header (12 bytes)")
    if data[8:12] != b"PAL ":
        kind = data[8:12].decode("latin-1").encode("unicode_escape").decode("ascii")
        raise _Bad(f"a RIFF file of type '{kind}', not a palette ('PAL ')")
    at = 12
    while at + 8 <= len(data):
        kind, size = data[at:at + 4], int.from_bytes(data[at + 4:at + 8], "little")
        if kind == b"data":
            body = data[at + 8:at + 8 + size]
            count = int.from_bytes(body[2:4], "little") if len(body) >= 4 else 0
            if len(body) < 4 + 4 * count:
                raise _Bad(f"byte {at}: its data chunk says {counted(count, 'colour')} but holds "
                           f"{max(len(body) - 4, 0) // 4:,}: truncated")
            rows = np.frombuffer(body, np.uint8, 4 * count, 4).reshape(count, 4)[:, :3].tolist()
            _limit(rows, f"byte {at}")
            return rows
        at += 8 + size + (size & 1)  # chunks are padded to an even size
    raise _Bad("a RIFF palette without a 'data' chunk")


def _image_palette(data: bytes, max_pixels: int) -> list[list[int]] | np.ndarray:
    """The palette of a palette image (mode P), in its order, every entry it declares (a GIF's cut after the
    last one its pixels use: its table's size is only a power of two); transparency as alpha."""
    from PIL import Image

    with _image_read():
        with Image.open(io.BytesIO(data)) as im:
            if im.mode != "P":
                raise _Bad(f"an image of mode {im.mode}, not a palette image (mode P: a PNG-8 or GIF); give one, "
                           f"or a {FORMATS} or .kmq file")
            return _declared(im, max_pixels)


def image_shares(path: str | Path, *,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray] | None:
    """A palette image's own palette (as read() gives it: every entry, in order) and each entry's share of its
    (first frame's) pixels, or None where path is no palette image (another image, or not one Pillow reads:
    the caller reads it as an image and says what is wrong). Raises KmqError naming path."""
    from PIL import Image

    try:
        im = Image.open(path)
    except Exception:  # noqa: BLE001 - not an image Pillow identifies: the caller's own read says why
        return None
    with im:  # (opened once: its header read once)
        if im.mode != "P":
            return None
        try:
            with _image_read():
                colors = np.asarray(_declared(im, max_pixels), np.uint8)
                counts = np.bincount(np.asarray(im).ravel(), minlength=len(colors))[:len(colors)]
        except _Bad as e:
            raise KmqError(f"{path}: {e}") from None
        return colors, counts / max(1, im.width * im.height)


def _declared(im: Any, max_pixels: int) -> list[list[int]] | np.ndarray:
    """An open palette image's entries as _image_palette says; raises _Bad."""
    if im.width * im.height > max_pixels:
        raise _Bad(f"{im.width}x{im.height} = {im.width * im.height} pixels exceeds the limit of "
                   f"{max_pixels} pixels {MAX_PIXELS_HINT}")
    mode = "RGBA" if im.palette is not None and im.palette.mode == "RGBA" else "RGB"
    colors = np.array(im.getpalette(mode) or [], np.uint8).reshape(-1, len(mode))
    clear = im.info.get("transparency")
    if im.format == "GIF":
        im.load()
        used = int(np.asarray(im).max(initial=0))
        # (a transparent index past the table, which Pillow writes for an unused one, cuts nothing)
        kept = -1 if clear is None or int(clear) >= len(colors) else int(clear)
        colors = colors[:max(used, kept) + 1]
    if isinstance(clear, bytes):  # PNG's tRNS: an alpha per entry, the entries after it opaque
        alpha = np.full(len(colors), 255, np.uint8)
        alpha[:len(clear)] = np.frombuffer(clear, np.uint8)[:len(colors)]
        colors = np.concatenate([colors[:, :3], alpha[:, None]], axis=1)
    elif isinstance(clear, int) and clear < len(colors):
        colors = np.concatenate([colors[:, :3], np.full((len(colors), 1), 255, np.uint8)], axis=1)
        colors[clear, 3] = 0
    return colors


@contextmanager
def _image_read() -> Iterator[None]:
    """Pillow's failures on a palette image as _Bad."""
    from PIL import Image, UnidentifiedImageError

    try:
        yield
    except _Bad:
        raise
    except UnidentifiedImageError:
        raise _Bad(f"not a palette file: give a {FORMATS} or .kmq file, or a palette image (PNG-8, GIF)") from None
    except Image.DecompressionBombError as e:
        raise _Bad(f"{e} {MAX_PIXELS_HINT}") from None
    except Exception as e:  # noqa: BLE001 - a malformed image trips Pillow in many ways
        raise _Bad(f"cannot read image: {type(e).__name__}: {e}") from None


def _parse_json(text: str) -> list[list[int]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise _Bad(f"line {e.lineno}: not JSON: {e.msg}") from None
    except RecursionError:
        raise _Bad("not JSON: nested too deeply") from None
    entries = doc.get("palette") if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        raise _Bad("expected a list of colours, or an object whose 'palette' is one (kmq info --format json)")
    rows = []
    for i, entry in enumerate(entries):
        rows.append(_json_colour(entry, i))
        _limit(rows, f"entry {i}")
    return rows


def _json_colour(entry: Any, i: int) -> list[int]:
    """One JSON palette entry: "#rrggbb[aa]", [r, g, b(, a)], or an object with "hex" or "rgb" (+ "alpha")."""
    if isinstance(entry, dict) and ("hex" in entry or "rgb" in entry):
        return _json_object(entry, i)
    if isinstance(entry, str) and _HEX.fullmatch(entry):
        return list(bytes.fromhex(entry.lstrip("#")))
    if (isinstance(entry, list) and len(entry) in (3, 4)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in entry)):
        return [_byte(v, i, "entry") for v in entry]
    raise _Bad(f"entry {i}: expected '#rrggbb', '#rrggbbaa', [r, g, b(, a)] or an object with 'hex' or 'rgb', "
               f"got {_quote(json.dumps(entry))}")


def _json_object(entry: dict, i: int) -> list[int]:
    """An entry of `kmq info --format json`'s palette, which says its colour twice (hex, and rgb + alpha):
    someone who edits one must not have the edit ignored, so every form given must name the same colour."""
    # Each form as kmq writes it: hex a string, rgb a list (a nested object is no colour, however deep).
    kinds = {"hex": str, "rgb": list}
    for key, kind in kinds.items():
        if key in entry and not isinstance(entry[key], kind):
            raise _Bad(f"entry {i}: its {key} {_quote(json.dumps(entry[key]))} is not a "
                       f"{'#rrggbb[aa] string' if kind is str else 'list [r, g, b(, a)]'}")
    forms = {key: _json_colour(entry[key], i) for key in kinds if key in entry}
    agree = True
    if "alpha" in entry:
        alpha = entry["alpha"]
        if not isinstance(alpha, int) or isinstance(alpha, bool):
            raise _Bad(f"entry {i}: alpha {_quote(json.dumps(alpha))} is not a number 0..255")
        alpha = _byte(alpha, i, "entry")
        # A colour of three values takes the alpha; one of four must already have it.
        forms = {key: colour + [alpha] if len(colour) == 3 else colour for key, colour in forms.items()}
        agree = all(colour[3] == alpha for colour in forms.values())
    if not agree or len({tuple(colour + [255] * (4 - len(colour))) for colour in forms.values()}) > 1:
        said = [f"{key} {json.dumps(entry[key])}" for key in ("hex", "rgb", "alpha") if key in entry]
        raise _Bad(f"entry {i}: its {', '.join(said[:-1])} and {said[-1]} are not one colour; edit them "
                   "together, or give only one")
    return max(forms.values(), key=len)


def _byte(value: int, where: int, what: str = "line") -> int:
    if not 0 <= value <= 255:
        raise _Bad(f"{what} {where}: {value} is not a colour value (0..255)")
    return value


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _quote(line: str) -> str:
    # Quoted, not repr'd: the command line escapes a tab or a control character itself (as \t), and a repr's
    # escape came out doubled there (\\t).
    return "'" + (line if len(line) <= 40 else line[:37] + "...") + "'"


# --- writing -------------------------------------------------------------------------------------------

def check_output(path: str | Path) -> None:
    """KmqError unless path's extension names a palette file (TEXT_SUFFIXES) or an image format kmq writes
    (a swatch), the message listing both."""
    from .imageio import SUGGESTED_EXTENSIONS, format_for

    if Path(path).suffix.lower() in FILE_SUFFIXES:
        return
    try:
        format_for(path)
    except KmqError:
        ext = Path(path).suffix
        what = f"{ext!r} names neither a palette file nor an image kmq writes" if ext else "no extension"
        raise KmqError(f"{path}: {what}; write .gpl (GIMP), .txt, .hex, .json, .pal (JASC) or .act (Photoshop) "
                       f"for a palette file, or "
                       f"e.g. {SUGGESTED_EXTENSIONS} for a swatch") from None


def write(path: str | Path, palette: np.ndarray, shares: np.ndarray | None = None, *, name: str = "kmq",
          comment: str = "", overwrite: bool = False) -> None:
    """Write palette ((k, 1|3|4) uint8, in order) to path, atomically, in the format of its extension
    (FILE_SUFFIXES). shares ((k,), summing to 1) go into .gpl entry names and .json entries. A grey palette is
    written as R = G = B; an RGBA one cannot be a .gpl, nor an .act unless its one transparent entry is its only
    alpha (KmqError)."""
    suffix = Path(path).suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise KmqError(f"{path}: a palette file is .gpl, .txt, .hex, .json, .pal or .act")
    rgb = np.repeat(palette, 3, axis=1) if palette.shape[1] == 1 else palette
    check_holds(path, rgb.shape[1], len(rgb))
    if suffix == ".gpl":
        content: str | bytes = _gpl(rgb, shares, name, comment)
    elif suffix == ".json":
        content = json.dumps({"palette": entries(palette, shares)}, indent=2) + "\n"
    elif suffix == ".pal":
        # CRLF as Paint Shop Pro wrote it; every reader seen (Aseprite, GIMP, engines' loaders) takes it
        content = "\r\n".join([*JASC_HEADER, str(len(rgb)), *(" ".join(map(str, c)) for c in rgb.tolist())]) + "\r\n"
    elif suffix == ".act":
        content = _act(path, rgb)
    else:
        content = "".join(f"#{bytes(c).hex()}\n" for c in rgb.tolist())
    write_atomic(path, content.encode() if isinstance(content, str) else content, overwrite=overwrite)


def check_holds(path: str | Path, channels: int, k: int | None = None) -> None:
    """KmqError if the palette file path cannot hold k entries of this many channels (a .gpl has no alpha, an
    .act at most 256 entries)."""
    suffix = Path(path).suffix.lower()
    if channels == 4 and suffix == ".gpl":
        raise KmqError(f"{path}: a GIMP palette has no alpha and this palette is RGBA; write .txt, .hex, .json "
                       f"or .pal")
    if k is not None and k > ACT_COLOURS and suffix == ".act":
        raise KmqError(f"{path}: a Photoshop colour table holds at most {ACT_COLOURS} colours, and this palette has "
                       f"{k:,}; write .gpl, .txt, .hex, .json or .pal")


def _act(path: str | Path, rgb: np.ndarray) -> bytes:
    """768 bytes of RGB, then (unless all 256 entries are opaque colours) the number in use and the
    transparent index, as Photoshop writes them."""
    clear = ACT_NONE
    if rgb.shape[1] == 4:
        alpha = rgb[:, 3]
        seen = np.flatnonzero(alpha != 255)
        if len(seen) > 1 or (len(seen) == 1 and alpha[seen[0]] != 0):
            entries = "entry" if len(seen) == 1 else "entries"
            raise KmqError(f"{path}: a Photoshop colour table's only alpha is one fully transparent entry, and "
                           f"this palette has {len(seen):,} {entries} with alpha below 255 (first: "
                           f"entry {seen[0]}, alpha {alpha[seen[0]]}); write .txt, .hex, .json or .pal")
        clear = int(seen[0]) if len(seen) else ACT_NONE
    table = np.zeros((ACT_COLOURS, 3), np.uint8)
    table[:len(rgb)] = rgb[:, :3]
    if len(rgb) == ACT_COLOURS and clear == ACT_NONE:
        return table.tobytes()
    return table.tobytes() + len(rgb).to_bytes(2, "big") + clear.to_bytes(2, "big")


def entries(palette: np.ndarray, shares: np.ndarray | None = None) -> list[dict[str, Any]]:
    """The `palette` list of `kmq info --format json`: {index, hex, rgb, share} (+ alpha for RGBA) per entry.

    hex is "#rrggbb" ("#rrggbbaa" for RGBA, the level three times for grey); share is None without shares.
    """
    k, channels = palette.shape
    colours = np.repeat(palette, 3, axis=1) if channels == 1 else palette
    out = []
    for i, colour in enumerate(colours.tolist()):
        entry = {"index": i, "hex": "#" + bytes(colour).hex(), "rgb": colour[:3],
                 "share": None if shares is None else float(shares[i])}
        if channels == 4:
            entry["alpha"] = colour[3]
        out.append(entry)
    return out


def _gpl(rgb: np.ndarray, shares: np.ndarray | None, name: str, comment: str) -> str:
    lines = [GPL_HEADER, f"Name: {_one_line(name)}", f"Columns: {min(len(rgb), GPL_COLUMNS)}"]
    lines += [f"# {_one_line(c)}" for c in comment.splitlines()]
    for i, colour in enumerate(rgb.tolist()):
        label = "#" + bytes(colour).hex() + ("" if shares is None else f" {shares[i]:.2%}")
        lines.append(f"{colour[0]:3d} {colour[1]:3d} {colour[2]:3d}\t{label}")
    return "\n".join(lines) + "\n"


def _one_line(text: str) -> str:
    # valid Unicode: a name from a file name that is not UTF-8 holds lone surrogates, which do not encode
    return " ".join(valid_unicode(text).split())


# --- mapping pixels onto a palette -----------------------------------------------------------------------

def apply(pixels: np.ndarray, palette: np.ndarray, *,
          source: str = "the palette") -> tuple[np.ndarray, np.ndarray, float]:
    """pixels (N, C) uint8 -> (palette as stored (k, C') uint8, labels (N,) uint16, distortion J).

    No K-Means: each pixel gets its nearest entry (exact; ties to the lower index), the order is kept and
    no entry is dropped. Layouts meet without losing anything (see `layout`); the stored palette is the
    given one in that layout, so its entries are the same colours in the same order.
    """
    n, channels = pixels.shape
    if channels < 4 and len(palette) <= _TABLE_K and (channels == 1 or n >= _TABLE_FROM):
        # A grey or RGB image's layout does not depend on its colours: no need to find them first.
        target = layout(pixels[:0], palette, source=source)
        if target < 4:
            stored = convert(palette, target)
            labels, distortion = _by_table(convert(pixels, target), stored)
            return stored, labels, distortion
    distinct = kmeans.distinct(pixels)
    colors, counts = distinct.colors, distinct.counts
    target = layout(colors, palette, source=source)
    colors, stored = convert(colors, target), convert(palette, target)
    color_labels, sq_dist = kmeans.nearest(colors, as_seen(stored))
    distortion = int(np.dot(sq_dist.astype(np.int64), counts)) / int(counts.sum())  # exact, and no BLAS
    return stored, distinct.spread(color_labels.astype(np.uint16)), distortion


def as_seen(palette: np.ndarray) -> np.ndarray:
    """An RGBA palette with every entry of alpha 0 as (0, 0, 0, 0), the colour kmq reads under alpha 0 (the
    palette itself if none changes): what a pixel is measured against. A palette keyed on magenta
    (#ff00ff00) had sent a cut-out's transparent background to an opaque near-black entry, nearer in RGBA,
    and had counted the hidden magenta in J (PSNR 4.35 dB for a file that was exact)."""
    if palette.shape[1] != 4 or not (hidden := palette[:, 3] == 0).any() or not palette[hidden, :3].any():
        return palette
    seen = palette.copy()
    seen[hidden] = 0
    return seen


# The table path packs a colour's label (< 2^14) and squared distance (< 3 x 255^2 < 2^18) in one uint32.
_LABEL_BITS = 14
_TABLE_K = 1 << _LABEL_BITS
# From this many pixels the table path's fixed cost (80 MiB of tables for RGB) is below that of sorting.
_TABLE_FROM = 1 << 21


def _by_table(pixels: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, float]:
    """Labels and J of grey or RGB pixels ((N, 1|3) uint8; palette (k <= 2^14, same channels) uint8)
    through a table over the packed colours: which colours occur (a flag per colour), each one's label and
    squared distance, then per pixel its colour's rank among them (`kmeans._BitRank`: bit counts that stay
    in cache) to gather those. Neither the colours' counts nor a sort of the pixels is needed.

    The pixels go through in chunks, packed again for the second pass, so that no (N,) array but the labels
    is ever allocated: fresh memory costs page faults, here about as much as the work on it."""
    channels = pixels.shape[1]
    pixels = np.ascontiguousarray(pixels)
    n = pixels.shape[0]
    present = np.zeros(1 << (8 * channels), dtype=bool)
    for s in range(0, n, _CHUNK):
        present[kmeans._pack(pixels[s:s + _CHUNK])] = True
    values = np.flatnonzero(present)
    ranks = kmeans._BitRank(present)
    del present
    labels, sq_dist = kmeans.nearest(kmeans._unpack(values, channels), palette)
    both = (sq_dist.astype(np.uint32) << _LABEL_BITS) | labels.astype(np.uint32)  # per colour
    pixel_labels = np.empty(n, dtype=np.uint16)
    step = kmeans._INDEX_CHUNK
    index = np.empty(min(n, step), dtype=np.int32)
    part = np.empty(min(n, step), dtype=np.uint32)
    total = 0
    for s in range(0, n, step):
        m = min(step, n - s)
        ranks.rank(kmeans._pack(pixels[s:s + step]), index[:m])
        np.take(both, index[:m].astype(np.intp), out=part[:m])
        np.bitwise_and(part[:m], _TABLE_K - 1, out=pixel_labels[s:s + m], casting="unsafe")
        part[:m] >>= _LABEL_BITS
        total += int(part[:m].sum(dtype=np.uint64))
    return pixel_labels, total / n


# Pixels per pass of `_by_table`: big enough that numpy's per-call cost vanishes, small enough to stay in cache
# and never fault in more than a few MB.
_CHUNK = 1 << 20


def layout(colors: np.ndarray, palette: np.ndarray, *, source: str = "the palette") -> int:
    """The channels (1, 3 or 4) in which colors (an image's, (M, C)) meet palette ((k, C')).

    The least layout that holds both exactly: RGBA if either side has real transparency (alpha below 255
    somewhere), else RGB if the image is RGB(A) or the palette has a colour that is not grey, else grey (a
    grey image with a palette of greys, R = G = B, as a .gpl of a grey series has). Grey becomes R = G = B
    and opaque alpha 255, so nothing is lost. The one mismatch that would lose something, an image with
    transparency and a palette without alpha, is a KmqError naming the palette (callers that know the
    image's file name it: errors.naming).
    """
    img_alpha = _has_alpha(colors)
    pal_alpha = _has_alpha(palette)
    if img_alpha and palette.shape[1] != 4:
        raise KmqError(f"the image has transparency (RGBA) but {source} has no alpha; give a palette with "
                       f"#rrggbbaa entries (.txt, .hex, .json) or flatten the image")
    colour = colors.shape[1] >= 3 or _has_colour(palette)
    return 4 if img_alpha or pal_alpha else 3 if colour else 1


def convert(colors: np.ndarray, channels: int) -> np.ndarray:
    """(M, C) uint8 colours in another layout that `layout` chose for them (no information is lost)."""
    have = colors.shape[1]
    if have == channels:
        return colors
    if channels == 1:
        return np.ascontiguousarray(colors[:, :1])
    rgb = np.repeat(colors, 3, axis=1) if have == 1 else colors[:, :3]
    if channels == 3:
        return np.ascontiguousarray(rgb)
    return np.concatenate([rgb, colors[:, 3:] if have == 4 else np.full((len(colors), 1), 255, np.uint8)],
                          axis=1)


def _has_alpha(colors: np.ndarray) -> bool:
    return colors.shape[1] == 4 and bool(np.any(colors[:, 3] != 255))


def _has_colour(colors: np.ndarray) -> bool:
    return colors.shape[1] >= 3 and bool(np.any(colors[:, 0] != colors[:, 1]) or
                                         np.any(colors[:, 1] != colors[:, 2]))
