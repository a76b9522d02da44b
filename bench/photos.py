"""Test photos for the speed bench, made from different sources so that no one photo decides a target.

Nothing big is committed: every photo is rebuilt from samples/ (and synthetic content) by `make`, with a fixed
seed, so the bench sees the same pixels on every run.

12 MP kinds (4000x3000):
- ``astronaut``: samples/astronaut.png resampled (Lanczos): a photo with fine texture, ~850 000 colours.
- ``smooth``: chelsea.png cropped to 4:3 and upscaled 10x (bicubic), then a gentle diagonal light gradient:
  large soft areas, like a retina phone photo (few hundred thousand colours).
- ``noisy``: coffee.png upscaled (Lanczos) plus Gaussian sensor-like noise (sigma 10 per channel, seed 0):
  millions of distinct colours.
- ``saturated``: a synthetic full-saturation hue/value sweep with flat shapes, logo.png (composited on white)
  pasted as a grid over it: saturated graphics, hard edges, clipped channels.
- ``detailed``: a mosaic of 1:1 crops of every sample (astronaut, ihc, coffee, chelsea, camera as grey), each
  flipped/rotated differently: high-frequency detail everywhere, no resampling blur.
- ``phone`` (the speed bench's 12 MP series only, not its bulk tiles): ihc.png at 1200x900 with noise (sigma
  14, seed 1), upscaled (Lanczos): grain of a few pixels, as a phone's denoised sensor noise; saved as a JPEG
  (quality 90, 4:2:0) as a phone would: ~480 000 distinct colours once decoded. The tutorial's pipeline
  decodes the same JPEG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
W, H = 4000, 3000


def _sample(name: str) -> Image.Image:
    im = Image.open(SAMPLES / f"{name}.png")
    if im.mode == "RGBA":  # the logo: composite on white as a page would show it
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    return im.convert("RGB")


def astronaut(w: int = W, h: int = H) -> Image.Image:
    src = _sample("astronaut")
    return src if (w, h) == src.size else src.resize((w, h), Image.Resampling.LANCZOS)


def smooth(w: int = W, h: int = H) -> Image.Image:
    src = _sample("chelsea")  # 451x300 -> 400x300 centre crop, 4:3
    src = src.crop((25, 0, 425, 300)).resize((w, h), Image.Resampling.BICUBIC)
    a = np.asarray(src).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    light = 0.85 + 0.3 * (xx / w + yy / h) / 2  # a soft light falloff across the frame
    return Image.fromarray(np.clip(a * light[:, :, None], 0, 255).astype(np.uint8))


def noisy(w: int = W, h: int = H) -> Image.Image:
    src = _sample("coffee").resize((w, h), Image.Resampling.LANCZOS)
    a = np.asarray(src).astype(np.float32)
    rng = np.random.default_rng(0)
    a += rng.normal(0.0, 10.0, a.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def saturated(w: int = W, h: int = H) -> Image.Image:
    hue = np.linspace(0, 255, w, dtype=np.float32)[None, :].repeat(h, 0)
    val = np.linspace(255, 96, h, dtype=np.float32)[:, None].repeat(w, 1)
    hsv = np.stack([hue, np.full_like(hue, 255), val], axis=2).astype(np.uint8)
    im = Image.fromarray(hsv, "HSV").convert("RGB")
    draw = ImageDraw.Draw(im)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255),
               (0, 0, 0), (255, 255, 255)]
    rng = np.random.default_rng(0)
    for i in range(60):  # flat shapes in pure colours
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(40, 300))
        box = (x - r, y - r, x + r, y + r)
        (draw.ellipse if i % 2 else draw.rectangle)(box, fill=colours[i % len(colours)])
    logo = _sample("logo").resize((400, 400), Image.Resampling.LANCZOS)
    for y in range(0, h, 1000):
        for x in range(0, w, 1000):
            im.paste(logo, (x + 300, y + 300))
    return im


def detailed(w: int = W, h: int = H) -> Image.Image:
    tiles = [_sample(n) for n in ("astronaut", "ihc", "coffee", "chelsea", "camera")]
    size = 250  # 16 x 12 tiles of 1:1 crops
    im = Image.new("RGB", (w, h))
    i = 0
    for y in range(0, h, size):
        for x in range(0, w, size):
            t = tiles[i % len(tiles)]
            ox = (i * 97) % (t.width - size)
            oy = (i * 61) % (t.height - size)
            tile = t.crop((ox, oy, ox + size, oy + size))
            tile = [tile, ImageOps.mirror(tile), ImageOps.flip(tile), tile.rotate(90)][(i // len(tiles)) % 4]
            im.paste(tile, (x, y))
            i += 1
    return im


def logo_cutout() -> np.ndarray:
    """samples/logo.png (500x500, RGBA but opaque everywhere) cut out along its disc: alpha 0 outside, 255
    inside, anti-aliased over ~1.5 px at the rim: an icon or sprite with real transparency, (500, 500, 4)."""
    rgb = np.asarray(Image.open(SAMPLES / "logo.png").convert("RGB"))
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(xx - (w - 1) / 2, yy - (h - 1) / 2)
    alpha = np.clip((w / 2 - 4 - r) / 1.5 * 255, 0, 255)
    return np.dstack([rgb, np.rint(alpha).astype(np.uint8)])


def phone(w: int = W, h: int = H) -> Image.Image:
    # Noise added at 0.3x the size, so that JPEG's quantization keeps it, as it keeps a phone's grain.
    small = (max(1, w * 3 // 10), max(1, h * 3 // 10))
    a = np.asarray(_sample("ihc").resize(small, Image.Resampling.LANCZOS)).astype(np.float32)
    a += np.random.default_rng(1).normal(0.0, 14.0, a.shape).astype(np.float32)
    noisy = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    return noisy.resize((w, h), Image.Resampling.LANCZOS)


KINDS = {"astronaut": astronaut, "smooth": smooth, "noisy": noisy, "saturated": saturated,
         "detailed": detailed}
# Written as JPEG by `make`: the 12 MP series holds them too (TWELVE_MP), the bulk tiles do not.
JPEG_KINDS = {"phone": phone}
TWELVE_MP = [*KINDS, *JPEG_KINDS]


def make(kind: str, path: Path, w: int = W, h: int = H) -> Path:
    """Write photo `kind` at w x h as a fast-to-decode PNG (compress_level 1), or for a JPEG kind as a JPEG of
    quality 90 named with .jpg; returns the path written."""
    if kind in JPEG_KINDS:
        path = path.with_suffix(".jpg")
        JPEG_KINDS[kind](w, h).save(path, quality=90, subsampling=2)
    else:
        KINDS[kind](w, h).save(path, compress_level=1)
    return path
