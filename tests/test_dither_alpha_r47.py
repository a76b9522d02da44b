"""Round 47's game-developer trial: `--dither fs` on RGBA keeps alpha 0 and alpha 255 where they are, and a GIF
of an RGBA file at K > 256 keeps its transparent background."""
import io
import warnings

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

import kmq
from kmq import dither, kmeans

CLEAR, FAINT, SOLID = (0, 0, 0, 0), (0, 0, 0, 40), (0, 0, 0, 255)


def _icon(seed: int, size: int = 64) -> np.ndarray:
    """An icon as the trial's (drawn at 4x, reduced): a disc and a white panel over a blurred drop shadow,
    on alpha 0."""
    rng = np.random.default_rng(seed)
    big = 4 * size
    shadow = Image.new("L", (big, big), 0)
    ImageDraw.Draw(shadow).ellipse((35, 40, 225, 230), fill=140)
    im = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    im.putalpha(shadow.filter(ImageFilter.GaussianBlur(10)))
    fg = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(fg)
    draw.ellipse((25, 25, 215, 215), fill=tuple(int(c) for c in rng.integers(0, 256, 3)) + (255,))
    draw.rectangle((88, 75, 162, 175), fill=(255, 255, 255, 255))
    draw.polygon([(100, 100), (150, 125), (100, 150)], fill=tuple(int(c) for c in rng.integers(0, 256, 3)) + (255,))
    return np.asarray(Image.alpha_composite(im, fg).resize((size, size), Image.Resampling.LANCZOS))


# --- by hand ------------------------------------------------------------------------------------------------

def test_no_error_flows_into_a_transparent_pixel():
    # Alpha 120 -> the entry of alpha 40 (error 80); FS handed the transparent pixel 7·80/16 = 35, which is
    # nearer 40 than 0: a speck of alpha 40 on the background. It takes its own entry and passes nothing on,
    # so the third pixel sees no error from it (120 -> 40 again).
    pixels = np.array([[[0, 0, 0, 120], CLEAR, [0, 0, 0, 120]]], np.uint8)
    palette = np.array([CLEAR, FAINT, SOLID], np.uint8)
    np.testing.assert_array_equal(dither.floyd_steinberg(pixels, palette), [[1, 0, 1]])


def test_an_opaque_pixel_takes_no_alpha_error():
    # Alpha 110 -> 200 (error -90); FS made the opaque pixel 255 - 39 = 216, nearer 200 than 255: a hole.
    pixels = np.array([[[0, 0, 0, 110], SOLID]], np.uint8)
    palette = np.array([CLEAR, [0, 0, 0, 200], SOLID], np.uint8)
    np.testing.assert_array_equal(dither.floyd_steinberg(pixels, palette), [[1, 2]])


def test_rgba_values_follow_fs_with_the_alpha_rule():
    """Every pixel at once against the rule's equations: a pixel of alpha 0 takes its own colour's nearest
    entry and passes no error on; an opaque one receives no alpha error; the rest is FS."""
    rng = np.random.default_rng(7)
    h, w = 19, 23
    pixels = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    pixels[..., 3] = rng.choice([0, 0, 255, 255, 30, 128, 200], (h, w))
    pixels[pixels[..., 3] == 0] = 0
    palette = np.unique(rng.integers(0, 256, (24, 4), dtype=np.uint8), axis=0)
    palette[:2, 3] = (0, 255)
    values = np.empty((h * w, 4), np.int32)
    labels = dither.wavefront(pixels, palette, dither.Matcher(palette), values=values, alpha=True)
    np.testing.assert_array_equal(labels, dither.floyd_steinberg(pixels, palette))
    v = values.reshape(h, w, 4).astype(np.int64)
    clear, solid = pixels[..., 3] == 0, pixels[..., 3] == 255
    e = np.zeros((h + 1, w + 2, 4), np.int64)
    e[1:, 1:-1] = np.where(clear[..., None], 0, v - palette[labels])
    acc = 7 * e[1:, :-2] + 3 * e[:-1, 2:] + 5 * e[:-1, 1:-1] + e[:-1, :-2]
    acc = np.trunc(acc / 16).astype(np.int64)
    acc[clear] = 0
    acc[solid, 3] = 0
    np.testing.assert_array_equal(v, np.clip(pixels + acc, 0, 255))
    np.testing.assert_array_equal(labels.ravel(), kmeans.nearest(values.astype(np.uint8), palette)[0])


def test_rgb_and_grey_dither_as_before():
    # The rule is for RGBA only: three channels (K > 256, the wavefront) and grey are plain FS.
    rng = np.random.default_rng(3)
    for pixels, k in ((rng.integers(0, 256, (12, 15, 3), dtype=np.uint8), 300),
                      (rng.integers(0, 256, (12, 15, 1), dtype=np.uint8), 5)):
        palette = np.unique(rng.integers(0, 256, (k, pixels.shape[2]), dtype=np.uint8), axis=0)
        np.testing.assert_array_equal(dither.floyd_steinberg(pixels, palette),
                                      dither.wavefront(pixels, palette, dither.Matcher(palette)))


# --- icons --------------------------------------------------------------------------------------------------

# Before round 47: (1, 8) an opaque pixel at alpha 165; (2, 16) and (5, 16) a background pixel at 14, 18.
@pytest.mark.parametrize("seed,k", [(1, 8), (2, 16), (5, 16)])
def test_dithered_icons_keep_their_background_and_their_opaque_pixels(seed, k):
    src = _icon(seed)
    clear, solid = src[..., 3] == 0, src[..., 3] == 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = kmq.compress(src, k)
        fs = kmq.compress(src, k, dither="fs")
    alpha = fs.decode()[..., 3]
    assert fs.metadata.get("dither") == "fs"
    # The background as the undithered file has it (its own entry of alpha 0), not specks of a shadow's.
    np.testing.assert_array_equal(alpha[clear], plain.decode()[..., 3][clear])
    assert alpha[clear].max() == 0
    assert alpha[solid].min() == 255
    # ... and the shadow still dithers: some of its pixels take another entry than their nearest.
    shadow = ~clear & ~solid
    assert (fs.decode()[shadow] != plain.decode()[shadow]).any()


# --- GIF at K > 256 -----------------------------------------------------------------------------------------

def _cut_out(colours: int = 400) -> np.ndarray:
    """The trial's cut-out: a 20x20 square of random opaque colours on a 40x40 alpha-0 background."""
    rng = np.random.default_rng(3)
    a = np.zeros((40, 40, 4), np.uint8)
    a[10:30, 10:30, :3] = rng.integers(0, 256, (20, 20, 3))
    a[10:30, 10:30, 3] = 255
    assert len(np.unique(a.reshape(-1, 4), axis=0)) == colours + 1
    return a


def _gif(img: kmq.KmqImage) -> tuple[Image.Image, list[str]]:
    buf = io.BytesIO()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        kmq.export(img, buf, format="GIF")
    return Image.open(io.BytesIO(buf.getvalue())), [str(w.message) for w in seen]


def test_gif_above_256_colours_keeps_the_transparent_background():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress(_cut_out(), 512)
    assert img.k == 401
    gif, said = _gif(img)
    rgba = np.asarray(gif.convert("RGBA"))
    assert said == ["the file object: GIF holds at most 256 colours: Pillow reduces these 401 colours to 255 and "
                    "its transparent colour"]
    assert gif.info["transparency"] is not None
    assert (rgba[..., 3] == 0).sum() == 1200
    assert (rgba[10:30, 10:30, 3] == 255).all()
    assert len(gif.getcolors()) <= 256


def test_gif_above_256_colours_without_alpha_0_is_composited_as_at_256():
    # Partial alpha only: no transparent colour to keep, so 256 colours over white and K <= 256's warning.
    src = _cut_out()
    src[..., 3] = 128
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = kmq.compress(src, 512)
    gif, said = _gif(img)
    assert "transparency" not in gif.info
    assert said[0].endswith("Pillow reduces these 401 colours to 256")
    assert said[1].startswith("the file object: GIF keeps only alpha 0 (as its transparent colour): partial alpha")
    assert len(gif.getcolors()) <= 256
