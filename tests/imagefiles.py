"""Reading back what kmq wrote, whatever the image mode (palette PNGs decode to their colours)."""
from pathlib import Path

import numpy as np
from PIL import Image


def pixels_of(path: str | Path) -> np.ndarray:
    """An image file's pixels as kmq's decode() gives them: (h, w) grey, (h, w, 3) RGB or (h, w, 4) RGBA."""
    with Image.open(path) as im:
        if im.mode == "P":
            return np.asarray(im.convert("RGBA" if "transparency" in im.info else "RGB"))
        return np.asarray(im)
