"""Given palettes as a game's art uses them (round 47's game developer's trial, left then):

- `kmq palette` of a palette image (PNG-8, GIF) without -k: the palette it declares, in its order, with
  shares (a 32-colour master palette had come back as 16 clustered colours by share); -k K still clusters;
- a transparent entry keyed on a colour (#ff00ff00): measured as kmq reads alpha 0, and kept in a GIF.
"""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kmq import palettes
from kmq.cli import main

ENTRIES = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (16, 32, 48)]
INDICES = [[0, 0, 2], [2, 2, 2]]  # entry 1 and 3 unused: 2/6, 0, 4/6, 0


def _palette_png(path, transparency=None):
    im = Image.fromarray(np.array(INDICES, np.uint8), "P")
    im.putpalette([c for rgb in ENTRIES for c in rgb])
    if transparency is None:
        im.save(path)
    else:
        im.save(path, transparency=transparency)
    return str(path)


def _run(*args):
    return CliRunner().invoke(main, ["palette", *args])


def test_every_declared_entry_in_order_with_its_share(tmp_path):
    result = _run(_palette_png(tmp_path / "m.png"))
    assert result.exit_code == 0, result.output
    assert result.output == "#ff0000 0.3333\n#00ff00 0.0000\n#0000ff 0.6667\n#102030 0.0000\n"


def test_transparency_becomes_alpha(tmp_path):
    result = _run(_palette_png(tmp_path / "t.png", transparency=bytes([0, 255, 128])))
    assert result.exit_code == 0, result.output
    assert result.output == "#ff000000 0.3333\n#00ff00ff 0.0000\n#0000ff80 0.6667\n#102030ff 0.0000\n"


def test_k_clusters_instead(tmp_path):
    result = _run(_palette_png(tmp_path / "m.png"), "-k", "2")
    assert result.exit_code == 0, result.output
    assert result.output == "#0000ff 0.6667\n#ff0000 0.3333\n"


def test_seed_does_not_apply(tmp_path):
    result = _run(_palette_png(tmp_path / "m.png"), "--seed", "3")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == "#ff0000 0.3333"
    assert result.stderr.endswith("m.png: a palette image's own palette is shown as it is; --seed 3 does not "
                                  "apply (-k K clusters its pixels instead)\n")


def test_written_palette_keeps_the_order(tmp_path):
    out = tmp_path / "m.gpl"
    result = _run(_palette_png(tmp_path / "m.png"), "-o", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "# kmq 1.0.0: 4 colours of m.png; in the file's order" in text
    assert [line.split("\t")[0].split() for line in text.splitlines()[-4:]] == [[str(c) for c in rgb]
                                                                              for rgb in ENTRIES]
    np.testing.assert_array_equal(palettes.read(out).colors, np.array(ENTRIES, np.uint8))


def test_an_rgb_image_is_still_clustered(tmp_path):
    rgb = np.array(ENTRIES, np.uint8)[np.array(INDICES)]
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    result = _run(str(tmp_path / "rgb.png"))
    assert result.exit_code == 0
    assert result.stdout == "#0000ff 0.6667\n#ff0000 0.3333\n"  # 2 colours, by share


def test_too_many_pixels_and_a_broken_image_are_one_error_line(tmp_path):
    path = _palette_png(tmp_path / "m.png")
    result = _run(path, "--max-pixels", "5")
    assert result.exit_code == 1
    assert result.output == f"Error: {path}: 3x2 = 6 pixels exceeds the limit of 5 pixels (raise it with " \
                            f"--max-pixels)\n"
    data = (tmp_path / "m.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])  # its pixels cut off
    result = _run(str(tmp_path / "cut.png"))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {tmp_path / 'cut.png'}: cannot read image: ")
    assert len(result.output.splitlines()) == 1


@pytest.mark.parametrize("suffix", [".gif", ".bmp"])
def test_other_palette_formats(tmp_path, suffix):
    path = tmp_path / f"m{suffix}"
    Image.open(_palette_png(tmp_path / "m.png")).save(path)
    result = _run(str(path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    shares = sorted(float(line.split()[1]) for line in lines)
    assert shares[-2:] == [0.3333, 0.6667] and sum(shares) == pytest.approx(1, abs=1e-3)


@pytest.mark.parametrize("k_extra", [0, 300])  # a GIF of up to 256 entries, and one reduced from more
def test_a_gif_keeps_the_transparent_entrys_own_colour(tmp_path, k_extra):
    """GIF's transparent index had carried white (the entry composited over white): a palette keyed on
    magenta came back magenta in the PNG and white in the GIF."""
    colours = ["#ff00ff00", "#ff0000", "#00ff00"] + [f"#{i:06x}" for i in range(1, 1 + k_extra)]
    (tmp_path / "key.hex").write_text("\n".join(colours) + "\n")
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:6, 2:6] = (255, 0, 0, 255)
    rgba[0, 0] = (0, 255, 0, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "sp.png")
    runner = CliRunner()
    assert runner.invoke(main, ["compress", str(tmp_path / "sp.png"), "--palette", str(tmp_path / "key.hex"),
                                "-o", str(tmp_path / "sp.kmq"), "-q"]).exit_code == 0
    assert runner.invoke(main, ["decompress", str(tmp_path / "sp.kmq"), "-o", str(tmp_path / "sp.gif"),
                                "-q"]).exit_code == 0
    with Image.open(tmp_path / "sp.gif") as gif:
        clear = gif.info["transparency"]
        assert gif.getpalette()[3 * clear:3 * clear + 3] == [255, 0, 255]
        back = np.asarray(gif.convert("RGBA"))
    shown = rgba[..., 3] == 255
    assert (back[..., 3] == 0).sum() == 64 - 17 and (back[shown, :3] == rgba[shown, :3]).all()


@pytest.mark.parametrize("dither", ["none", "fs"])
def test_a_transparent_entry_is_measured_as_kmq_reads_alpha_0(dither):
    """A palette keyed on magenta (#ff00ff00) beside a near-black: the cut-out's background (alpha 0, read as
    (0, 0, 0, 0)) went to the opaque near-black, nearer in RGBA, and J counted the hidden magenta."""
    import kmq

    palette = np.array([(255, 0, 255, 0), (255, 0, 0, 255), (0, 0, 1, 255)], np.uint8)
    rgba = np.zeros((6, 7, 4), np.uint8)
    rgba[1:4, 2:5] = (255, 0, 0, 255)
    img = kmq.compress(rgba, palette=palette, dither=dither)
    np.testing.assert_array_equal(img.palette, palette)  # the given entries as they are, magenta kept
    np.testing.assert_array_equal(img.labels, np.where(rgba[..., 3] == 0, 0, 1))
    assert img.metadata["distortion"] == 0


def test_a_hidden_colour_changes_nothing_else():
    from kmq import palettes

    opaque = np.array([(1, 2, 3, 255), (4, 5, 6, 0)], np.uint8)
    np.testing.assert_array_equal(palettes.as_seen(opaque[:1]), opaque[:1])
    np.testing.assert_array_equal(palettes.as_seen(opaque), [(1, 2, 3, 255), (0, 0, 0, 0)])
    np.testing.assert_array_equal(opaque[1], (4, 5, 6, 0))  # not changed in place
