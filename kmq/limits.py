"""The bounds and names that the command line's options show (`kmq --help`), in a module that loads no numpy:
so `kmq --help`, `kmq --version` and a usage error load neither numpy nor the library (kmq.cli), ~0.06 s of
a 0.12 s run. Each is defined here once: kmq.format, kmq.api, kmq.segment and kmq.dither take theirs from
here (their old names still work)."""
from __future__ import annotations

MAX_K = 65536
# Pillow refuses images over twice its MAX_IMAGE_PIXELS (2 x 89,478,485) as decompression bombs; so do we.
DEFAULT_MAX_PIXELS = 178_956_970

# Bounds that keep the searches' integer arithmetic finite; far beyond any useful value (a target's rdo
# rarely passes 300 %; 8-bit images top out near 140 dB short of lossless).
MAX_RDO = 1000.0
MAX_PSNR = 1000.0

# kmq segment --style.
STYLES = ("overlay", "labels", "mean", "boundaries")

# kmq compress --dither (kmq.dither.METHODS)
DITHERS = ("none", "fs")
