"""File names as people read them (one line, nothing that drives the terminal) and as a TSV field holds
them: the command line's lines and tables, and the chart's legend (kmq.plot), show names the same way."""
from __future__ import annotations

import re
from pathlib import Path

from .errors import valid_unicode

# In TSV the backslash escapes (as in PostgreSQL's COPY text format): a field never holds a raw tab or line
# break, so `cut -f` and line-based tools see every record whole.
_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})

# The control characters one_line leaves: an escape sequence in a file name would drive the terminal
# (colours, cursor moves, a cleared screen) from a line that only reports on the file.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

# Invisible characters that reorder (U+202E) or break (U+2028) the rest of a line: shown as \uXXXX.
_FORMAT_CATEGORIES = frozenset({"Cf", "Zl", "Zp"})
# But the zero-width joiner and non-joiner between two characters beyond ASCII, which are letters' business
# there: they join an emoji sequence (👩‍💻) and shape Persian and Indic words, where a name shown with \u200d in
# it is not the name its owner typed. Elsewhere (a\u200db.png) they would only hide that two names differ.
_JOINED = re.compile("(?<=[^\x00-\x7f])[\u200c\u200d](?=[^\x00-\x7f])")


def one_line(text: str) -> str:
    """text escaped as a TSV field (a file name with a tab or a line break in it) and valid Unicode, so that
    a record stays one line on stdout (human output goes further: shown)."""
    return valid_unicode(text.translate(_TSV_ESCAPES))


def shown(text: str | Path) -> str:
    """text as human output shows it (file names in the line after each file, tables, Warning: and Error:
    lines, a chart's legend): one line as one_line escapes it, other control characters as \\xNN, invisible
    format characters and line or paragraph separators (Unicode Cf, Zl, Zp) as \\uXXXX, so no name can
    garble, reorder or restyle a line. Records for scripts (tsv, csv, json) keep their own documented escapes."""
    text = _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", one_line(str(text)))
    if text.isascii():
        return text
    joined = {m.start() for m in _JOINED.finditer(text)}
    return "".join(c if i in joined else _escaped_format(c) for i, c in enumerate(text))


def escaped(c: str) -> str:
    """A character as \\uXXXX (\\UXXXXXXXX above U+FFFF)."""
    return f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"


def _escaped_format(c: str) -> str:
    import unicodedata

    return escaped(c) if unicodedata.category(c) in _FORMAT_CATEGORIES else c
