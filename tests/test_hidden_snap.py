"""A transparent background decodes exactly transparent: where no entry has alpha 0, the entry nearest
(0, 0, 0, 0) among those of alpha 2 or less gets alpha 0 (api.HIDDEN_TO)."""
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

import kmq
from kmq import api


def _icon(size=64, seed=0):
    """A noisy disc with a soft drop shadow on a transparent background: the shadow's long faint tail pulls
    the background's centroid to alpha 1-2 at K = 16."""
    rng = np.random.default_rng(seed)
    shadow = Image.new("L", (size, size), 0)
    ImageDraw.Draw(shadow).ellipse((size * 0.25, size * 0.3, size * 0.8, size * 0.85), fill=160)
    shadow = np.asarray(shadow.filter(ImageFilter.GaussianBlur(size / 10)))
    disc = Image.new("L", (size, size), 0)
    ImageDraw.Draw(disc).ellipse((size * 0.15, size * 0.15, size * 0.7, size * 0.7), fill=255)
    disc = np.asarray(disc.filter(ImageFilter.GaussianBlur(0.7))).astype(float) / 255
    colour = np.clip(rng.normal((200, 90, 40), 25, (size, size, 3)), 0, 255)
    rgb = colour * disc[..., None]  # the shadow is black
    alpha = disc * 255 + (1 - disc) * shadow
    return np.dstack([np.rint(rgb), np.rint(alpha)]).astype(np.uint8)


@pytest.mark.parametrize("size, k", [(64, 16), (64, 32), (128, 32)])
def test_the_background_of_an_icon_decodes_exactly_transparent(size, k):
    """Before, its entry had alpha 2, 1 and 1."""
    pixels = _icon(size)
    img = kmq.compress(pixels, k)
    hidden = pixels[..., 3] == 0
    assert hidden.sum() > 700
    assert np.all(img.decode()[..., 3][hidden] == 0)
    assert np.count_nonzero(img.palette[:, 3] == 0) == 1


def test_one_entry_only_and_only_alpha_changes():
    centroids = np.array([[10.2, 20.0, 30.0, 1.4], [0.4, 0.2, 0.1, 2.2], [200, 100, 50, 1.0], [5, 5, 5, 255]])
    palette, _ = api._rounded(centroids, 4, hidden=True)
    rows = {tuple(int(v) for v in row) for row in palette}
    assert rows == {(10, 20, 30, 1), (0, 0, 0, 0), (200, 100, 50, 1), (5, 5, 5, 255)}


@pytest.mark.parametrize("centroids, hidden", [
    ([[0.4, 0.2, 0.1, 0.0], [10, 20, 30, 1.0]], True),  # an entry of alpha 0 already: nothing moves
    # the entry nearest (0, 0, 0, 0), which the hidden pixels take, is not faint enough: a faint glow elsewhere
    # is not hidden in its place
    ([[3, 3, 3, 3], [200, 100, 50, 2]], True),
    ([[0.4, 0.2, 0.1, 3.0], [10, 20, 30, 4.0]], True),  # none faint enough
    ([[0.4, 0.2, 0.1, 2.0], [10, 20, 30, 1.0]], False),  # no pixel of alpha 0
])
def test_left_alone(centroids, hidden):
    palette, _ = api._rounded(np.array(centroids, dtype=float), 2, hidden=hidden)
    np.testing.assert_array_equal(np.sort(palette, axis=0), np.sort(np.rint(centroids), axis=0).astype(np.uint8))


def test_a_gif_of_the_icon_gets_its_transparent_colour(tmp_path):
    img = kmq.compress(_icon(seed=1), 16)
    with pytest.warns(kmq.KmqWarning, match="composited"):  # the shadow's partial alpha, over white
        kmq.export(img, tmp_path / "icon.gif")
    with Image.open(tmp_path / "icon.gif") as gif:
        assert "transparency" in gif.info


@pytest.mark.parametrize("size, k", [(64, 32), (128, 32)])
def test_rdo_keeps_the_background_transparent(size, k):
    """rdo's refined palette (each entry the mean of its pixels) put the background back at alpha 1-3."""
    pixels = _icon(size)
    img = kmq.compress(pixels, k, codec="ctx", rdo=2)
    assert np.all(img.decode()[..., 3][pixels[..., 3] == 0] == 0)


@pytest.mark.parametrize("k", [32, 64])
def test_rdo_keeps_opaque_entries_opaque(k):
    """Before, 13 and 18 of the refined entries had alpha 253-254 (the plain palette none)."""
    img = kmq.compress(_icon(64), k, codec="ctx", rdo=2)
    assert not np.isin(img.palette[:, 3], (253, 254)).any()
    assert np.count_nonzero(img.palette[:, 3] == 255) > k // 4


def _soft_disc(seed=5):
    """Smooth colours under a radial alpha that is 255 in the middle and fades out: rdo refined an entry of
    alpha 252 to 253 here (K = 48, 68), which the plain palette's rule would have made 255."""
    rng = np.random.default_rng(seed)
    h, w = 107, 160
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2))
    alpha = np.clip(255 * (1.3 - r) * 1.5, 0, 255)
    rgb = np.dstack([128 + 100 * np.sin(xx / 9), 128 + 100 * np.cos(yy / 7), 128 + 80 * np.sin((xx + yy) / 13)])
    rgb = rgb + rng.normal(0, 6, (h, w, 3))
    return np.clip(np.dstack([rgb, alpha]), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("k, rdo", [(48, 5), (68, 20)])
def test_rdo_makes_its_refined_near_opaque_entries_opaque(k, rdo):
    img = kmq.compress(_soft_disc(), k, codec="ctx", rdo=rdo)
    assert not np.isin(img.palette[:, 3], (253, 254)).any()
