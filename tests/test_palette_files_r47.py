"""Round 47's game-developer trial: the palette files a game developer has (JASC .pal, Photoshop .act, an
indexed image as the engine's master palette) were refused as --palette. They are read (and .pal / .act
written) as exactly as the other palette files, and their faults named with the place."""
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import kmq
from kmq import palettes
from kmq.cli import main
from kmq.errors import KmqError, KmqWarning


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


RAMP = np.array([[255, 255, 255], [10, 0, 0], [255, 0, 0], [0, 0, 255], [9, 9, 9]], np.uint8)


def _indexed(path, palette=RAMP, used=None, **save):
    """An 8 x 5 palette image whose pixels use entries 0..used-1 (all by default)."""
    used = len(palette) if used is None else used
    im = Image.fromarray((np.arange(40) % used).astype(np.uint8).reshape(5, 8), "P")
    im.putpalette(palette.ravel().tolist())
    im.save(path, **save)
    return path


# --- JASC .pal -----------------------------------------------------------------------------------------

def test_a_jasc_palette_is_read_in_its_order_crlf_and_alpha_included(tmp_path):
    path = tmp_path / "p.pal"
    path.write_bytes(b"JASC-PAL\r\n0100\r\n3\r\n255 0 0\r\n0 128 0\r\n0 0 255\r\n")
    np.testing.assert_array_equal(palettes.read(path).colors, [[255, 0, 0], [0, 128, 0], [0, 0, 255]])
    path.write_bytes(b"JASC-PAL\n0100\n2\n1 2 3\n4 5 6 0\n\n")  # a 4th number: alpha
    np.testing.assert_array_equal(palettes.read(path).colors, [[1, 2, 3, 255], [4, 5, 6, 0]])


def test_a_jasc_palette_is_written_as_paint_shop_pro_did(tmp_path):
    palettes.write(tmp_path / "p.pal", RAMP[:2])
    assert (tmp_path / "p.pal").read_bytes() == b"JASC-PAL\r\n0100\r\n2\r\n255 255 255\r\n10 0 0\r\n"
    palettes.write(tmp_path / "g.pal", np.array([[7]], np.uint8))
    assert (tmp_path / "g.pal").read_bytes() == b"JASC-PAL\r\n0100\r\n1\r\n7 7 7\r\n"
    rgba = np.array([[1, 2, 3, 0], [4, 5, 6, 255]], np.uint8)
    palettes.write(tmp_path / "a.pal", rgba)
    np.testing.assert_array_equal(palettes.read(tmp_path / "a.pal").colors, rgba)


# --- Photoshop .act ------------------------------------------------------------------------------------

def test_an_act_of_768_bytes_is_256_colours(tmp_path):
    table = np.arange(768, dtype=np.uint32).astype(np.uint8)
    (tmp_path / "p.act").write_bytes(table.tobytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KmqWarning)  # (the table repeats itself after 85 entries)
        np.testing.assert_array_equal(palettes.read(tmp_path / "p.act").colors, table.reshape(256, 3))


def test_an_act_with_a_count_and_a_transparent_index(tmp_path):
    table = np.zeros((256, 3), np.uint8)
    table[:5] = RAMP
    path = tmp_path / "p.act"
    path.write_bytes(table.tobytes() + bytes([0, 5, 0xFF, 0xFF]))
    np.testing.assert_array_equal(palettes.read(path).colors, RAMP)
    path.write_bytes(table.tobytes() + bytes([0, 5, 0, 2]))  # entry 2 transparent: alpha 0
    colors = palettes.read(path).colors
    np.testing.assert_array_equal(colors[:, :3], RAMP)
    assert colors[:, 3].tolist() == [255, 255, 0, 255, 255]


def test_an_act_is_written_as_photoshop_does(tmp_path):
    palettes.write(tmp_path / "p.act", RAMP)
    data = (tmp_path / "p.act").read_bytes()
    assert len(data) == 772 and data[:15] == RAMP.tobytes() and data[15:768] == bytes(753)
    assert data[768:] == bytes([0, 5, 0xFF, 0xFF])
    full = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    palettes.write(tmp_path / "f.act", full)
    assert (tmp_path / "f.act").read_bytes() == full.tobytes()  # all 256, opaque: the classic 768 bytes
    clear = np.concatenate([RAMP, np.full((5, 1), 255, np.uint8)], axis=1)
    clear[3, 3] = 0
    palettes.write(tmp_path / "c.act", clear)
    assert (tmp_path / "c.act").read_bytes()[768:] == bytes([0, 5, 0, 3])
    np.testing.assert_array_equal(palettes.read(tmp_path / "c.act").colors, clear)


def test_what_an_act_cannot_hold_is_refused(tmp_path):
    with pytest.raises(KmqError, match=r"at most 256 colours, and this palette has 300; write"):
        palettes.write(tmp_path / "big.act", np.zeros((300, 3), np.uint8))
    half = np.array([[1, 2, 3, 128], [4, 5, 6, 255]], np.uint8)
    with pytest.raises(KmqError, match=r"only alpha is one fully transparent entry.*\(first: entry 0, alpha 128\)"):
        palettes.write(tmp_path / "half.act", half)
    assert not (tmp_path / "big.act").exists() and not (tmp_path / "half.act").exists()


def test_a_riff_pal_is_read(tmp_path):
    entries = bytes([255, 0, 0, 0, 0, 255, 0, 0])
    data = b"data" + (4 + len(entries)).to_bytes(4, "little") + bytes([0, 3, 2, 0]) + entries
    (tmp_path / "m.pal").write_bytes(b"RIFF" + (4 + len(data)).to_bytes(4, "little") + b"PAL " + data)
    np.testing.assert_array_equal(palettes.read(tmp_path / "m.pal").colors, [[255, 0, 0], [0, 255, 0]])


# --- a palette image ---------------------------------------------------------------------------------

def test_a_png8_gives_every_entry_it_declares_in_order(tmp_path):
    path = _indexed(tmp_path / "p.png", used=3)  # entries 3 and 4 used by no pixel: kept (index i = entry i)
    np.testing.assert_array_equal(palettes.read(path).colors, RAMP)


def test_a_gif_is_cut_after_the_last_entry_its_pixels_use(tmp_path):
    # Pillow writes the 5 entries as a table of 8 (a power of two): the 3 after them are padding
    np.testing.assert_array_equal(palettes.read(_indexed(tmp_path / "p.gif")).colors, RAMP)


@pytest.mark.parametrize("name", ["t.png", "t.gif"])
def test_a_palette_images_transparency_is_alpha(tmp_path, name):
    colors = palettes.read(_indexed(tmp_path / name, transparency=2)).colors
    np.testing.assert_array_equal(colors[:, :3], RAMP)
    assert colors[:, 3].tolist() == [255, 255, 0, 255, 255]
    partial = _indexed(tmp_path / "a.png", transparency=bytes([0, 128]))  # tRNS shorter than the palette
    assert palettes.read(partial).colors[:, 3].tolist() == [0, 128, 255, 255, 255]


# --- faults: what and where --------------------------------------------------------------------------

# (the new formats' faults are cases of tests/test_palettes.py::test_bad_palette_files_name_the_file_and_the_line)


def test_an_image_that_is_not_indexed_is_refused_saying_so(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "rgb.png")
    with pytest.raises(KmqError, match=r"rgb\.png: an image of mode RGB, not a palette image \(mode P: a PNG-8 "
                                       r"or GIF\); give one, or a \.gpl, \.txt, \.hex, \.json, \.pal, \.act or "
                                       r"\.kmq file$"):
        palettes.read(tmp_path / "rgb.png")


def test_a_palette_image_over_max_pixels_is_refused(tmp_path):
    path = _indexed(tmp_path / "p.png")
    with pytest.raises(KmqError, match=r"p\.png: 8x5 = 40 pixels exceeds the limit of 39 pixels"):
        palettes.read(path, max_pixels=39)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from([".pal", ".act", ".png", ".gif"]),
       data=st.one_of(st.binary(max_size=800),
                      st.lists(st.sampled_from(["JASC-PAL", "0100", "2", "1 2 3", "1 2 3 4", "300 0 0", "", "x",
                                                "-1 0 0", "RIFF"]), max_size=8).map(lambda x: "\n".join(x).encode())))
def test_fuzz_the_new_readers_read_or_refuse_cleanly(tmp_path, suffix, data):
    path = tmp_path / ("f" + suffix)
    path.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", KmqWarning)
            colors = palettes.read(path).colors
    except KmqError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
        return
    assert colors.dtype == np.uint8 and colors.shape[1] in (3, 4) and 1 <= len(colors) <= 256


# --- the command line -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["ramp.pal", "ramp.act", "ramp.png", "ramp.gif"])
def test_compress_maps_onto_a_pal_an_act_or_a_palette_image(tmp_path, name):
    if name.endswith((".pal", ".act")):
        palettes.write(tmp_path / name, RAMP)
    else:
        _indexed(tmp_path / name)
    Image.fromarray(np.repeat(RAMP[None, [4, 0, 2, 2]], 3, axis=0)).save(tmp_path / "art.png")
    result = run("compress", tmp_path / "art.png", "--palette", tmp_path / name, "-o", tmp_path / "art.kmq", "-q")
    assert result.exit_code == 0, result.output
    img = kmq.read(tmp_path / "art.kmq")
    np.testing.assert_array_equal(img.palette, RAMP)
    assert img.labels.ravel().tolist() == [4, 0, 2, 2] * 3
    assert img.metadata["palette_source"]["name"] == name


def test_palette_converts_to_and_from_pal_and_act(tmp_path):
    (tmp_path / "p.hex").write_text("".join(f"#{bytes(c).hex()}\n" for c in RAMP.tolist()))
    assert run("palette", tmp_path / "p.hex", "-o", tmp_path / "p.pal", "-q").exit_code == 0
    assert run("palette", tmp_path / "p.pal", "-o", tmp_path / "p.act", "-q").exit_code == 0
    result = run("palette", tmp_path / "p.act")
    assert result.stdout.split() == ["#ffffff", "#0a0000", "#ff0000", "#0000ff", "#090909"]


def test_palette_refuses_an_act_for_more_than_256_colours_before_writing(tmp_path):
    pixels = np.arange(300 * 3, dtype=np.uint32).reshape(1, 300, 3).astype(np.uint8)
    pixels[0, :, 2] = np.arange(300) // 256
    for i in range(2):
        Image.fromarray(pixels).save(tmp_path / f"s{i}.png")
    result = run("palette", tmp_path / "s0.png", tmp_path / "s1.png", "-k", 300, "-o", tmp_path / "p.act", "-q")
    assert result.exit_code == 1
    assert "p.act: a Photoshop colour table holds at most 256 colours, and this palette has 300" in result.stderr
    assert not (tmp_path / "p.act").exists()


def test_a_gif_whose_transparent_index_is_past_its_table_keeps_only_the_used_entries(tmp_path):
    # (h56r2) Pillow writes an unused transparent index past a GIF's table; it cut nothing, but it kept the
    # table's padding entry (K = 4 for 3 colours).
    im = Image.fromarray(np.array([[0, 1, 2]], np.uint8), "P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255])
    im.save(tmp_path / "p.gif", transparency=5)
    with Image.open(tmp_path / "p.gif") as check:
        assert check.info.get("transparency") == 5 and len(check.getpalette()) // 3 >= 4
    assert palettes.read(tmp_path / "p.gif").colors.tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
