"""What round 45's web trial (h54e) found: small palette images for the web."""
import json

import numpy as np
import pytest
from PIL import Image

import kmq

from test_cli import run, runner  # noqa: F401 - runner is a fixture
from test_skip_existing import frames  # noqa: F401 - a fixture


def test_decompress_and_segment_summaries_give_the_file_s_rdo(runner, frames, tmp_path):
    # (round 45's web trial: decompress --summary json said "rdo": null for a file that recorded its rdo)
    from conftest import SAMPLES

    out = tmp_path / "k"
    with Image.open(SAMPLES / "chelsea.png") as im:
        photo = np.asarray(im.convert("RGB"))[:64, :64]
    for i in range(2):
        Image.fromarray(np.roll(photo, 3 * i, axis=0)).save(frames / f"f{i}.png")
    assert run(runner, "compress", frames / "f0.png", frames / "f1.png", "-k", "8", "--codec", "ctx", "--rdo", "50",
               "-o", f"{out}/", "-q").exit_code == 0
    rdo = [kmq_file_rdo(out / f"f{i}.kmq") for i in range(2)]
    assert any(r is not None for r in rdo)
    for command in (["decompress", out, "-o", f"{tmp_path / 'png'}/"],
                    ["segment", out, "-o", f"{tmp_path / 'seen'}/"]):
        s = json.loads(run(runner, *command, "--summary", "json").stdout)
        assert [r["rdo"] for r in s["results"]] == rdo


def kmq_file_rdo(path):
    import kmq

    return kmq.read(path).metadata.get("rdo")


def _logo(size: int) -> np.ndarray:
    """A disc and a triangle over a soft drop shadow, drawn at 4x and shrunk: an icon's anti-aliased edge."""
    from PIL import ImageDraw, ImageFilter

    big = size * 4
    shadow = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    ImageDraw.Draw(shadow).ellipse((big * .12, big * .16, big * .9, big * .94), fill=(0, 0, 0, 110))
    shadow = shadow.filter(ImageFilter.GaussianBlur(big * 0.03))
    front = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(front)
    draw.ellipse((big * .08, big * .08, big * .86, big * .86), fill=(30, 120, 220, 255))
    draw.polygon([(big * .3, big * .25), (big * .7, big * .47), (big * .3, big * .7)], fill=(255, 255, 255, 255))
    pixels = np.array(Image.alpha_composite(shadow, front).resize((size, size), Image.LANCZOS))
    pixels[pixels[..., 3] == 0] = 0
    return pixels


@pytest.mark.parametrize("k, rdo", [(256, 2), (256, 100), (64, 20), (64, 100)])
def test_rdo_keeps_a_transparent_background_transparent(k, rdo):
    # (round 45's web trial: --rdo gave transparent pixels a neighbour's label of alpha 1-19 along an icon's
    # shadow, and hid shadow pixels of alpha up to 16 where the plain file hid those of alpha 3 at most)
    src = _logo(64)
    img = kmq.compress(src, k, codec="ctx", rdo=rdo)
    plain = kmq.compress(src, k, codec="ctx")
    assert img.metadata.get("rdo") == rdo  # rdo did move labels
    alpha, plain_alpha = img.decode()[..., 3], plain.decode()[..., 3]
    assert np.count_nonzero((src[..., 3] == 0) & (alpha != 0)) == 0
    vanished = src[..., 3][(src[..., 3] > 0) & (alpha == 0)]
    if k == 256:  # as the nearest labels: none
        assert np.array_equal(alpha == 0, plain_alpha == 0)
    else:  # rdo may start from another restart of the fit, which hides other faint pixels
        assert vanished.max(initial=0) <= 5
    assert img.distortion <= plain.distortion * (1 + rdo / 100) + 1e-9


def _chunks(png: bytes) -> dict[bytes, bytes]:
    import struct

    chunks, at = {}, 8
    while at < len(png):
        (length,), kind = struct.unpack(">I", png[at:at + 4]), png[at + 4:at + 8]
        chunks[kind] = png[at + 8:at + 8 + length]
        at += 12 + length
    return chunks


@pytest.mark.parametrize("k", [16, 256])
def test_a_png8_s_trns_holds_only_the_see_through_entries(k):
    # (round 45's web trial: Pillow wrote an alpha for every entry, opaque ones last included: a wordmark's
    # PNG-8 was 3,020 bytes where 2,807 hold the same pixels, pngquant's 2,793)
    import io

    img = kmq.compress(_logo(64), k)
    out = io.BytesIO()
    kmq.export(img, out)
    chunks = _chunks(out.getvalue())
    alpha = np.frombuffer(chunks[b"tRNS"], np.uint8)
    see_through = int(np.count_nonzero(img.palette[:, 3] < 255))
    assert 0 < see_through < img.k
    assert len(alpha) == see_through and (alpha < 255).all()  # they come first, and nothing after them
    with Image.open(io.BytesIO(out.getvalue())) as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im.convert("RGBA")), img.decode())
    from kmq.imageio import png8_bytes

    assert len(png8_bytes(img.palette, img.labels)) <= len(out.getvalue())  # --reference's too
