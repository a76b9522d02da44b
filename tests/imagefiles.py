"""Reading back what kmq wrote, whatever the image mode (palette PNGs decode to their colours)."""
from pathlib import Path

import numpy as np
from PIL import Image


def pixels_of(path: str | Path, channels: int | None = None) -> np.ndarray:
    """An image file's pixels as kmq's decode() gives them: (h, w) grey, (h, w, 3) RGB or (h, w, 4) RGBA. A
    palette image of grey entries is grey (as kmq writes grey of few levels), unless channels says 3."""
    with Image.open(path) as im:
        if im.mode == "P":
            entries = np.asarray(im.getpalette()).reshape(-1, 3)
            grey = (entries == entries[:, :1]).all() and channels != 3
            return np.asarray(im.convert("RGBA" if "transparency" in im.info else "L" if grey else "RGB"))
        return np.asarray(im)
