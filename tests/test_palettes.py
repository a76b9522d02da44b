"""One palette for many images: palette files, mapping onto a given palette, the pooled fit, and the CLI."""
import hashlib
import json
import shutil
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import kmq
from kmq import KmqWarning, kmeans, palettes, shared
from kmq.cli import main
from kmq.errors import KmqError, KmqWarning

from conftest import SAMPLES


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def crops():
    """Three small RGB photo crops of different sizes and sources: a 'series' that clusters fast."""
    out = []
    for name, box in (("chelsea", (150, 50, 230, 110)), ("coffee", (200, 100, 270, 150)),
                      ("astronaut", (100, 100, 160, 190))):
        with Image.open(SAMPLES / f"{name}.png") as im:
            out.append(np.asarray(im.convert("RGB").crop(box)).copy())
    return out


@pytest.fixture
def series(tmp_path, crops):
    paths = []
    for i, pixels in enumerate(crops):
        path = tmp_path / "slides" / f"s{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


# --- mapping onto a given palette: hand-computed -------------------------------------------------------

def test_each_pixel_gets_its_nearest_entry_ties_to_the_lower_index():
    pixels = np.array([[0, 0, 0], [10, 10, 10], [200, 200, 200], [5, 5, 5]], np.uint8)
    palette = np.array([[0, 0, 0], [10, 10, 10]], np.uint8)
    stored, labels, distortion = palettes.apply(pixels, palette)
    np.testing.assert_array_equal(stored, palette)
    assert labels.tolist() == [0, 1, 1, 0]  # (5, 5, 5) is 75 from both: the lower index
    assert distortion == (3 * 190**2 + 75) / 4


def test_the_order_is_kept_and_unused_entries_stay():
    pixels = np.zeros((2, 3, 3), np.uint8)
    pixels[..., 2] = 250  # all blue
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    img = kmq.compress(pixels, palette=palette)
    np.testing.assert_array_equal(img.palette, palette)
    assert img.k == 3 and np.all(img.labels == 2) and img.distortion == 25.0
    assert img.metadata == {"distortion": 25.0, "palette_source": {
        "name": "<array>", "sha256": hashlib.sha256(palette.tobytes()).hexdigest()}}


@pytest.mark.parametrize("image, palette, channels, stored", [
    # grey image, grey-valued RGB palette (a .gpl of a grey series): the file stays grey
    ([[0, 100]], [[0, 0, 0], [90, 90, 90]], 1, [[0], [90]]),
    # grey image, colour palette: the image becomes R = G = B
    ([[0, 100]], [[0, 0, 0], [90, 90, 120]], 3, [[0, 0, 0], [90, 90, 120]]),
    # RGB image, grey palette (a grey .kmq's): the palette becomes R = G = B
    ([[[0, 0, 0], [100, 90, 80]]], [[0], [90]], 3, [[0, 0, 0], [90, 90, 90]]),
    # opaque RGBA image, RGB palette: RGB
    ([[[0, 0, 0, 255], [100, 90, 80, 255]]], [[0, 0, 0], [90, 90, 90]], 3, [[0, 0, 0], [90, 90, 90]]),
    # RGB image, RGBA palette with alpha: the image is opaque RGBA
    ([[[0, 0, 0], [100, 90, 80]]], [[0, 0, 0, 200], [90, 90, 90, 255]], 4, [[0, 0, 0, 200], [90, 90, 90, 255]]),
    # RGB image, opaque RGBA palette (#rrggbbff): RGB
    ([[[0, 0, 0], [100, 90, 80]]], [[0, 0, 0, 255], [90, 90, 90, 255]], 3, [[0, 0, 0], [90, 90, 90]]),
])
def test_layouts_meet_without_losing_anything(image, palette, channels, stored):
    img = kmq.compress(np.array(image, np.uint8), palette=np.array(palette, np.uint8))
    assert img.channels == channels
    np.testing.assert_array_equal(img.palette, stored)
    assert img.labels.tolist() == [[0, 1]]


def test_transparency_with_a_palette_without_alpha_is_an_error_naming_both(tmp_path):
    path = tmp_path / "t.png"
    Image.fromarray(np.array([[[0, 0, 0, 0], [9, 9, 9, 255]]], np.uint8)).save(path)
    with pytest.raises(KmqError, match=rf"^{path}: the image has transparency \(RGBA\) but <array> has no alpha; "
                                       r"give a palette with #rrggbbaa entries \(\.txt, \.hex, \.json\) or flatten"):
        kmq.compress(path, palette=np.zeros((2, 3), np.uint8))


def test_a_bad_palette_array_is_a_value_error():
    for bad in (np.zeros((2, 2), np.uint8), np.zeros((0, 3), np.uint8), np.zeros((2, 3), np.int64),
                np.zeros((65537, 3), np.uint8)):
        with pytest.raises(ValueError, match="a palette must"):
            kmq.compress(np.zeros((2, 2, 3), np.uint8), palette=bad)


def test_a_k_other_than_the_palettes_size_is_a_value_error():
    # The CLI refuses -k with --palette; the library took k=4 and wrote the palette's 3 entries, silently.
    pixels, palette = np.zeros((2, 2, 3), np.uint8), np.array([[0, 0, 0], [9, 9, 9], [99, 99, 99]], np.uint8)
    with pytest.raises(ValueError, match=r"^k=4 cannot be used with a palette of 3 entries \(the palette is used "):
        kmq.compress(pixels, 4, palette=palette)
    assert kmq.compress(pixels, 3, palette=palette).to_bytes() == kmq.compress(pixels, palette=palette).to_bytes()
    with pytest.warns(KmqWarning, match="fewer than k=16"):  # no k, no palette: K = 16
        kmq.compress(pixels)


@pytest.mark.parametrize("channels, target", [(3, 3), (1, 1), (1, 3)])
def test_the_table_path_for_large_images_gives_what_the_distinct_colours_give(channels, target, rgb_small):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (20000, channels), dtype=np.uint8)
    pixels[:500] = pixels[500:1000]  # repeated colours too
    palette = rng.integers(0, 256, (40, target), dtype=np.uint8)
    palette[1] = palette[0]  # a tie: the lower index must win
    wide = palettes.convert(pixels, target)
    labels, distortion = palettes._by_table(wide, palette)
    expected, sq_dist = kmeans.nearest(wide, palette)
    np.testing.assert_array_equal(labels, expected)
    assert labels.dtype == np.uint16 and distortion == sq_dist.mean()
    stored, labels, distortion = palettes.apply(pixels, palette)  # small: through the distinct colours
    np.testing.assert_array_equal(labels, expected)
    assert distortion == pytest.approx(sq_dist.mean(), rel=1e-12)


# --- palette files: reading and writing exactly ----------------------------------------------------------

def test_a_gimp_palette_is_read_as_gimp_documents_it(tmp_path):
    path = tmp_path / "p.gpl"
    path.write_text("GIMP Palette\nName: stain\nColumns: 4\n#\n# a comment\n"
                    "255   0   0\tred\n  0 128 255 sky blue\n\n 10  20  30\n")
    p = palettes.read(path)
    np.testing.assert_array_equal(p.colors, [[255, 0, 0], [0, 128, 255], [10, 20, 30]])
    assert p.name == "p.gpl" and p.sha256 == hashlib.sha256(bytes([255, 0, 0, 0, 128, 255, 10, 20, 30])).hexdigest()


def test_hex_lines_with_or_without_hash_shares_and_alpha(tmp_path):
    path = tmp_path / "p.hex"
    path.write_text("; lospec style\nff0000\n#00FF80 0.25\n\n#0a0b0c80\n")
    np.testing.assert_array_equal(palettes.read(path).colors,
                                  [[255, 0, 0, 255], [0, 255, 128, 255], [10, 11, 12, 128]])


def test_json_entries_of_every_accepted_shape(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"palette": [{"index": 0, "hex": "#010203", "rgb": [1, 2, 3], "share": 0.5},
                                            {"rgb": [4, 5, 6]}, "#070809", [10, 11, 12]]}))
    np.testing.assert_array_equal(palettes.read(path).colors, [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]])
    path.write_text(json.dumps([{"rgb": [1, 2, 3], "alpha": 0}, [4, 5, 6, 7]]))
    np.testing.assert_array_equal(palettes.read(path).colors, [[1, 2, 3, 0], [4, 5, 6, 7]])


@pytest.mark.parametrize("suffix", [".gpl", ".txt", ".hex", ".json"])
def test_every_format_round_trips_exactly(tmp_path, suffix):
    colours = np.random.default_rng(1).integers(0, 256, (300, 3), dtype=np.uint8)
    path = tmp_path / f"p{suffix}"
    palettes.write(path, colours, np.full(300, 1 / 300), name="series", comment="two\nlines")
    np.testing.assert_array_equal(palettes.read(path).colors, colours)


def test_rgba_and_grey_round_trip_where_the_format_holds_them(tmp_path):
    rgba = np.array([[1, 2, 3, 4], [5, 6, 7, 255]], np.uint8)
    for suffix in (".txt", ".hex", ".json"):
        palettes.write(tmp_path / f"a{suffix}", rgba)
        np.testing.assert_array_equal(palettes.read(tmp_path / f"a{suffix}").colors, rgba)
    with pytest.raises(KmqError, match="a GIMP palette has no alpha and this palette is RGBA"):
        palettes.write(tmp_path / "a.gpl", rgba)
    assert not (tmp_path / "a.gpl").exists()
    palettes.write(tmp_path / "g.gpl", np.array([[0], [77]], np.uint8))
    np.testing.assert_array_equal(palettes.read(tmp_path / "g.gpl").colors, [[0, 0, 0], [77, 77, 77]])


def test_a_written_gpl_is_gimps_format(tmp_path):
    path = tmp_path / "stain.gpl"
    palettes.write(path, np.array([[202, 112, 64], [0, 5, 255]], np.uint8), np.array([0.75, 0.25]),
                   name="stain", comment="kmq: 2 colours")
    assert path.read_text() == ("GIMP Palette\nName: stain\nColumns: 2\n# kmq: 2 colours\n"
                                "202 112  64\t#ca7040 75.00%\n  0   5 255\t#0005ff 25.00%\n")


def test_a_gpl_names_a_file_name_that_is_not_utf8(tmp_path):
    path = tmp_path / "n.gpl"
    palettes.write(path, np.array([[1, 2, 3]], np.uint8), name="st\udce9in", comment="from st\udce9in.png")
    assert path.read_bytes() == b"GIMP Palette\nName: st\\xe9in\nColumns: 1\n# from st\\xe9in.png\n  1   2   3\t#010203\n"


def test_a_kmq_gives_its_palette_whatever_its_name(tmp_path, rgb_small):
    img = kmq.compress(rgb_small, k=4)
    kmq.write(tmp_path / "x.bin", img)
    p = palettes.read(tmp_path / "x.bin")
    np.testing.assert_array_equal(p.colors, img.palette)
    assert p.name == "x.bin"


def _kmq_bytes(rgb_small):
    return kmq.compress(rgb_small, k=4).to_bytes()


@pytest.mark.parametrize("name, content, message", [
    ("e.txt", b"", "no colours in the file"),
    ("e.gpl", b"GIMP Palette\nName: x\n# only comments\n", "no colours in the file"),
    ("e.json", b"[]", "no colours in the file"),
    ("h.gpl", b"255 0 0 red\n", "line 1: not a GIMP palette: the first line must be 'GIMP Palette'"),
    ("v.gpl", b"GIMP Palette\n0 0 0\n1 256 3\n", "line 3: 256 is not a colour value (0..255)"),
    ("m.gpl", b"GIMP Palette\n0 0 0\n1 2\n", "line 3: expected 'R G B name' (three integers 0..255), got '1 2'"),
    ("n.gpl", b"GIMP Palette\n-1 0 0\n", "line 2: expected 'R G B name' (three integers 0..255), got '-1 0 0'"),
    ("m.txt", b"#ff0000\n\n#ff00\n", "line 3: expected #rrggbb or #rrggbbaa (optionally followed by a number), "
                                     "got '#ff00'"),
    ("w.hex", b"#ff0000 red\n", "line 1: expected #rrggbb or #rrggbbaa (optionally followed by a number), "
                                "got '#ff0000 red'"),
    ("b.txt", b"#ff0000\n#00ff00\n\xff\xfe\x00junk", "line 3: not UTF-8 text (byte 0xff)"),
    ("z.gpl", b"GIMP Palette\n\x00\x00\x00", "line 2: not text (a NUL byte)"),
    ("j.json", b'{"palette": [\n"#ff0000",\n]}', "line 3: not JSON: Expecting value"),
    ("k.json", b'{"colours": []}', "expected a list of colours, or an object whose 'palette' is one"),
    ("v.json", b'[[1, 2, 300]]', "entry 0: 300 is not a colour value (0..255)"),
    ("t.json", b'["#010203", true]', "entry 1: expected '#rrggbb', '#rrggbbaa', [r, g, b(, a)] or an object"),
    ("s.png", b"\x89PNG\r\n\x1a\n", "not a palette file: give a .gpl, .txt, .hex, .json, .pal, .act or .kmq file, "
                                    "or a palette image (PNG-8, GIF)"),
    ("j.kmq", b"junk", "not a .kmq file: bad magic 6a 75 6e 6b"),
    # round 47: JASC and RIFF .pal, Photoshop .act, palette images
    ("h.pal", b"JASC\n0100\n1\n0 0 0\n", "line 1: not a JASC palette: the first line must be 'JASC-PAL', got 'JASC'"),
    ("v.pal", b"JASC-PAL\n0101\n1\n0 0 0\n", "line 2: expected the version '0100', got '0101'"),
    ("n.pal", b"JASC-PAL\n0100\nmany\n", "line 3: expected the number of colours, got 'many'"),
    ("e.pal", b"JASC-PAL\n0100\n", "line 3: expected the number of colours, got ''"),
    ("f.pal", b"JASC-PAL\n0100\n2\n1 2 3\n4 5\n", "line 5: expected 3 numbers 0..255 (a 4th: alpha), got '4 5'"),
    ("r.pal", b"JASC-PAL\n0100\n1\n1 2 256\n", "line 4: 256 is not a colour value (0..255)"),
    ("c.pal", b"JASC-PAL\n0100\n16\n1 2 3\n4 5 6\n", "line 3: says 16 colours, the file has 2"),
    ("z.pal", b"JASC-PAL\n0100\n0\n", "no colours in the file"),
    ("b.pal", b"JASC-PAL\n0100\n1\n\xff\n", "line 4: not UTF-8 text (byte 0xff)"),
    ("w.pal", b"RIFFxxxxWAVEdata", "a RIFF file of type 'WAVE', not a palette ('PAL ')"),
    ("short.pal", b"RIFFxx", "a RIFF file of 6 bytes, too short for its header (12 bytes)"),
    ("raw.pal", bytes(range(256)) * 3, "not a JASC or RIFF palette: 768 bytes, perhaps a game's 256 raw RGB "
                                        "triples; if its levels are 0..255, rename it .act, which holds exactly that"),
    ("t.pal", b"RIFF\x10\x00\x00\x00PAL data\x0c\x00\x00\x00\x00\x03\x09\x00", "byte 12: its data chunk says 9 "
                                                                            "colours but holds 0: truncated"),
    ("s.act", bytes(767), "767 bytes: a Photoshop colour table (.act) is 768 bytes, or 772 with its number of "
                          "colours and transparent index"),
    ("c.act", bytes(768) + bytes([1, 1, 0xFF, 0xFF]), "byte 768: says 257 colours; an .act holds 1 to 256"),
    ("t.act", bytes(768) + bytes([0, 4, 0, 4]), "byte 770: its transparent index 4 is not one of its 4 colours"),
    ("x.bin", b"junk", "not a palette file: give a .gpl, .txt, .hex, .json, .pal, .act or .kmq file, or a palette "
                       "image (PNG-8, GIF)"),
])
def test_bad_palette_files_name_the_file_and_the_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(KmqError) as e:
        palettes.read(path)
    assert str(e.value).startswith(f"{path}: {message}")


def test_more_than_65536_colours_is_refused_at_the_line_that_passes_it(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("".join(f"#{i:06x}\n" for i in range(65537)))
    with pytest.raises(KmqError, match=rf"^{path}: line 65537: more than 65,536 colours$"):
        palettes.read(path)


def test_a_truncated_kmq_palette(tmp_path, rgb_small):
    data = _kmq_bytes(rgb_small)
    path = tmp_path / "cut.kmq"
    path.write_bytes(data[:-5])
    with pytest.raises(KmqError, match=rf"^{path}: truncated file: expected {len(data)} bytes \(.*\), got {len(data) - 5}"):
        palettes.read(path)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(KmqError, match=rf"^{path}: checksum mismatch"):
        palettes.read(path)


def test_repeated_entries_warn(tmp_path):
    path = tmp_path / "r.txt"
    path.write_text("#000000\n#ffffff\n#000000\n")
    with pytest.warns(KmqWarning, match=r"r\.txt: 1 entry repeats an earlier colour \(first: entry 2\); "
                                        r"no pixel gets it$"):
        assert len(palettes.read(path).colors) == 3
    path.write_text("#000000\n#ffffff\n#000000\n#ffffff\n")
    with pytest.warns(KmqWarning, match=r"r\.txt: 2 entries repeat an earlier colour \(first: entry 2\); "
                                        r"no pixel gets them$"):
        assert len(palettes.read(path).colors) == 4


_READ_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _read_or_refuse(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", KmqWarning)
            p = palettes.read(path)
    except KmqError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
        return
    assert p.colors.dtype == np.uint8 and p.colors.shape[1] in (1, 3, 4) and 1 <= len(p.colors) <= 65536


@_READ_SETTINGS
@given(suffix=st.sampled_from([".gpl", ".txt", ".hex", ".json", ".kmq"]), data=st.binary(max_size=300))
def test_fuzz_random_bytes_are_read_or_refused_cleanly(tmp_path, suffix, data):
    _read_or_refuse(tmp_path, "f" + suffix, data)


_TOKENS = st.sampled_from(["GIMP Palette", "Name: x", "Columns: 3", "#", "# c", "255 0 0", "0 0 0 black", "1 2",
                           "256 0 0", "#ff00aa", "ff00aa80", "#ff00aa 0.5", "#ff00", ";", "[", "]", "{", "}",
                           '"palette":', '"#010203"', "[1, 2, 3]", ",", '{"rgb": [1, 2, 3]}', "-1", "1e9", "\t",
                           "\u00e9", "\x00"])


@_READ_SETTINGS
@given(suffix=st.sampled_from([".gpl", ".txt", ".hex", ".json"]),
       lines=st.lists(st.lists(_TOKENS, max_size=4).map(" ".join), max_size=12))
def test_fuzz_palette_like_text_is_read_or_refused_cleanly(tmp_path, suffix, lines):
    _read_or_refuse(tmp_path, "t" + suffix, "\n".join(lines).encode())


@_READ_SETTINGS
@given(suffix=st.sampled_from([".gpl", ".txt", ".json"]), at=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_fuzz_a_mutated_written_palette_is_read_or_refused_cleanly(tmp_path, suffix, at, byte):
    path = tmp_path / f"w{suffix}"
    palettes.write(path, np.arange(24, dtype=np.uint8).reshape(8, 3), np.full(8, 0.125), overwrite=True)
    data = bytearray(path.read_bytes())
    data[at % len(data)] = byte
    _read_or_refuse(tmp_path, f"m{suffix}", bytes(data))


# --- one palette fitted over many images -------------------------------------------------------------------

def test_the_pooled_fit_is_kmeans_over_the_images_stitched_into_one(series, crops):
    fitted = shared.fit(shared.plan(series), 8, workers=1)
    stitched = kmq.compress(np.concatenate([c.reshape(-1, 1, 3) for c in crops]), k=8)
    np.testing.assert_array_equal(fitted.palette, stitched.palette)
    assert fitted.distortion == pytest.approx(stitched.distortion, rel=1e-12)
    assert (fitted.files, fitted.pixels) == (3, sum(c.shape[0] * c.shape[1] for c in crops))
    np.testing.assert_allclose(fitted.shares, kmq.stats.shares(stitched.labels, 8))
    # J of each file with the shared palette, weighted by its pixels, is the pooled J.
    total = sum(kmq.compress(p, palette=fitted.palette).distortion * c.shape[0] * c.shape[1]
                for p, c in zip(series, crops))
    assert total / fitted.pixels == pytest.approx(fitted.distortion, rel=1e-12)


def test_the_pool_merges_layouts_and_kmq_files(tmp_path):
    grey = np.array([[0, 0, 200]], np.uint8)
    rgb = np.array([[[0, 0, 0], [1, 2, 3]]], np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    Image.fromarray(rgb).save(tmp_path / "c.png")
    kmq.write(tmp_path / "k.kmq", kmq.KmqImage(np.array([[1, 2, 3], [9, 9, 9], [1, 2, 3]], np.uint8),
                                                np.array([[0, 2, 2, 0]])))
    pool = shared.Pool()
    for name in ("g.png", "c.png", "k.kmq"):
        found = shared.colours_of(tmp_path / name)
        pool.add(found["colors"], found["counts"])
    colors, counts = pool.colours()
    assert colors.tolist() == [[0, 0, 0], [1, 2, 3], [200, 200, 200]]
    assert counts.tolist() == [3, 5, 1]


def test_a_kmq_beside_its_image_is_pooled_with_a_warning(tmp_path):
    """After `kmq compress slides/`, a fit over slides/ would count each image twice, once quantized."""
    (tmp_path / "s").mkdir()
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    Image.fromarray(pixels).save(tmp_path / "s" / "a.png")
    Image.fromarray(pixels[::-1]).save(tmp_path / "s" / "b.png")
    kmq.write(tmp_path / "s" / "a.kmq", kmq.compress(pixels, 2))
    kmq.write(tmp_path / "s" / "c.kmq", kmq.compress(pixels, 2))
    with pytest.warns(kmq.KmqWarning) as caught:
        jobs = shared.plan([tmp_path / "s"])
    assert len(jobs) == 4
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / 's' / 'a.kmq'}: pooled as well as a.png, of which it looks like the compressed copy; give "
        "only one of them to count those pixels once"]


def test_an_unreadable_file_fails_the_whole_fit(series, tmp_path):
    (tmp_path / "slides" / "bad.png").write_bytes(b"not an image")
    with pytest.raises(KmqError, match=r"^1 of 4 inputs could not be read \(.*bad\.png: not an image Pillow "
                                       r"can read\); no palette written$"):
        shared.fit(shared.plan([tmp_path / "slides"]), 4, workers=1)


def test_a_file_given_twice_is_read_once_silently(series, tmp_path, recwarn):
    jobs = shared.plan([tmp_path / "slides", series[0]])
    assert not recwarn.list
    assert [j.source for j in jobs] == series and [j.index for j in jobs] == [0, 1, 2]


# --- the command line ---------------------------------------------------------------------------------------

def test_a_shared_run_gives_every_file_the_palette_file_in_its_order(series, tmp_path):
    result = run("palette", tmp_path / "slides", "-k", "6", "-o", tmp_path / "p.gpl", "-j", "2")
    assert result.exit_code == 0, result.output
    fitted = shared.fit(shared.plan(series), 6, workers=1)
    assert result.output == (f"3 files ({fitted.pixels:,} pixels, {fitted.colours:,} colours) -> "
                             f"{tmp_path / 'p.gpl'}: 6 colours, J {fitted.distortion:.2f}\n")
    written = palettes.read(tmp_path / "p.gpl").colors
    np.testing.assert_array_equal(written, fitted.palette)
    result = run("compress", tmp_path / "slides", "--palette", tmp_path / "p.gpl", "-o", tmp_path / "out/",
                 "--summary", "json", "-j", "1")
    assert result.exit_code == 0, result.output
    for path in series:
        img = kmq.read(tmp_path / "out" / (path.stem + ".kmq"))
        np.testing.assert_array_equal(img.palette, written)
        assert img.metadata["palette_source"] == {"name": "p.gpl",
                                                  "sha256": hashlib.sha256(written.tobytes()).hexdigest()}
        assert "seed" not in img.metadata
        pixels = np.asarray(Image.open(path)).reshape(-1, 3)
        expected, _ = kmeans.nearest(pixels, written)
        np.testing.assert_array_equal(img.labels.ravel(), expected)


def test_palette_printed_text_reads_back_as_a_palette(series, tmp_path):
    result = run("palette", *series, "-k", "4")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 4 and all(len(line.split()) == 2 for line in lines)
    (tmp_path / "p.txt").write_text(result.output)
    np.testing.assert_array_equal(palettes.read(tmp_path / "p.txt").colors,
                                  [list(bytes.fromhex(line[1:7])) for line in lines])


def test_one_input_writes_a_palette_file_of_its_own_palette(tmp_path, samples):
    image = tmp_path / "c.png"
    shutil.copy(samples / "ihc-303x227.png", image)
    result = run("palette", image, "-k", "3", "-o", tmp_path / "p.json")
    assert result.output == f"{image} -> {tmp_path / 'p.json'}: 3 colours\n"
    img = kmq.compress(image, k=3)
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc == {"palette": kmq.stats.palette_entries(img.palette, img.labels)}


def test_k_or_seed_with_palette_is_a_usage_error(tmp_path, series):
    palettes.write(tmp_path / "p.txt", np.zeros((2, 3), np.uint8))
    for command, option in (["compress", "-k"], ["compress", "--seed"], ["compress", "--rdo"],
                            ["compress", "--psnr"], ["compress", "--max-bytes"], ["stats", "-k"], ["stats", "--rdo"],
                            ["segment", "-k"], ["montage", "-k"]):
        output = [] if command == "stats" else ["-o", tmp_path / "x.png"]
        codec = ["--codec", "ctx"] if option in ("--rdo", "--psnr", "--max-bytes") else []
        result = run(command, series[0], option, "3", "--palette", tmp_path / "p.txt", *codec, *output)
        assert result.exit_code == 2
        assert result.output.endswith(f"Error: {option} cannot be used with --palette (the palette is used "
                                      f"exactly as given: its size is K, no K-Means runs)\n"), result.output
    assert not (tmp_path / "x.png").exists()


def test_a_bad_palette_file_is_one_error_and_nothing_is_written(tmp_path, series):
    (tmp_path / "p.gpl").write_text("GIMP Palette\n1 2 3\n4 5 x\n")
    for args in (["compress", series[0], "-o", tmp_path / "x.kmq"],
                 ["compress", tmp_path / "slides", "-o", tmp_path / "out/"],
                 ["stats", series[0]], ["segment", series[0], "-o", tmp_path / "x.png"],
                 ["montage", series[0], "-o", tmp_path / "x.png"]):
        result = run(*args, "--palette", tmp_path / "p.gpl")
        assert result.exit_code == 1
        assert result.output == (f"Error: {tmp_path / 'p.gpl'}: line 3: expected 'R G B name' (three integers "
                                 f"0..255), got '4 5 x'\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.gpl", "slides"]


def test_stats_segment_and_montage_use_the_palette(tmp_path, series):
    palette = np.array([[40, 30, 30], [120, 100, 90], [220, 210, 200]], np.uint8)
    palettes.write(tmp_path / "p.hex", palette)
    result = run("stats", *series[:2], "--palette", tmp_path / "p.hex", "--format", "json")
    records = json.loads(result.output)
    assert [r["k"] for r in records] == [3, 3]
    assert records[0]["distortion"] == pytest.approx(kmq.compress(series[0], palette=palette).distortion)
    for path in series[:2]:
        result = run("segment", path, "--palette", tmp_path / "p.hex", "--masks", tmp_path / "m", "-q")
        assert result.exit_code == 0
        expected = kmq.compress(path, palette=palette).labels
        for i in range(3):
            mask = np.asarray(Image.open(tmp_path / "m" / f"{path.stem}-cluster-{i}.png"))
            np.testing.assert_array_equal(mask, expected == i)
    result = run("montage", series[0], "--palette", tmp_path / "p.hex", "-o", tmp_path / "m.png")
    assert result.exit_code == 0
    assert result.output.startswith(f"{series[0]} -> {tmp_path / 'm.png'}: original and K = 3 (p.hex), ")


def test_a_proportional_palette_file_is_a_usage_error(series, tmp_path):
    result = run("palette", *series, "-o", tmp_path / "p.gpl", "--proportional")
    assert result.exit_code == 2 and "--proportional draws a swatch image" in result.output


def test_info_names_the_palette_instead_of_a_seed(tmp_path, series):
    palettes.write(tmp_path / "p.txt", np.array([[0, 0, 0], [255, 255, 255]], np.uint8))
    assert run("compress", series[0], "--palette", tmp_path / "p.txt", "-o", tmp_path / "x.kmq").exit_code == 0
    digest = hashlib.sha256(bytes([0, 0, 0, 255, 255, 255])).hexdigest()
    assert f"│ Palette              │ p.txt (sha256 {digest[:16]}...)" in run("info", tmp_path / "x.kmq").output


def test_the_readmes_slide_series_example_is_what_kmq_prints(tmp_path, monkeypatch):
    # The README shows the output of its own recipe; a change to the fit must show up here, not in a user's
    # terminal (the new-user trial found it stale).
    readme = (SAMPLES.parent / "README.md").read_text()
    start = readme.index("$ kmq palette slides/ -k 6 -o stain.gpl -j 2\n")
    shown = readme[start:readme.index("```", start)].splitlines()
    slides = tmp_path / "slides"
    slides.mkdir()
    with Image.open(SAMPLES / "ihc.png") as im:
        for i, (x, y) in enumerate([(0, 0), (256, 0), (0, 256), (256, 256)]):
            im.crop((x, y, x + 256, y + 256)).save(slides / f"s{i}.png")
    monkeypatch.chdir(tmp_path)
    result = run("palette", "slides/", "-k", "6", "-o", "stain.gpl", "-j", "1")
    assert result.exit_code == 0, result.output
    assert [shown[1], *shown[3:]] == [*result.output.splitlines(), *(tmp_path / "stain.gpl").read_text().splitlines()]


def test_a_palette_file_as_the_one_input_is_shown_and_converted_in_its_order(tmp_path):
    colors = np.array([[255, 0, 0], [0, 16, 255], [7, 7, 7]], np.uint8)
    palettes.write(tmp_path / "p.gpl", colors)
    result = run("palette", tmp_path / "p.gpl")
    assert (result.exit_code, result.output) == (0, "#ff0000\n#0010ff\n#070707\n")  # no shares: none are known
    result = run("palette", tmp_path / "p.gpl", "-o", tmp_path / "q.json")
    assert result.output == f"{tmp_path / 'p.gpl'} -> {tmp_path / 'q.json'}: 3 colours\n"
    np.testing.assert_array_equal(palettes.read(tmp_path / "q.json").colors, colors)
    result = run("palette", tmp_path / "p.gpl", "-o", tmp_path / "s.png")
    assert result.exit_code == 0 and Image.open(tmp_path / "s.png").size[0] > 0


def test_a_palette_file_as_input_warns_of_k_and_seed_and_refuses_proportional(tmp_path):
    palettes.write(tmp_path / "p.hex", np.array([[1, 2, 3, 4]], np.uint8))
    result = CliRunner().invoke(main, ["palette", str(tmp_path / "p.hex"), "-k", "3"])
    assert (result.exit_code, result.stdout) == (0, "#01020304\n")
    assert result.stderr == f"Warning: {tmp_path / 'p.hex'}: a palette file is shown as it is; -k 3 does not apply\n"
    result = run("palette", tmp_path / "p.hex", "-o", tmp_path / "s.png", "--proportional")
    assert result.exit_code == 2
    assert result.output.endswith(f"Error: {tmp_path / 'p.hex'} is a palette file, which holds no shares: "
                                  f"--proportional has no bar to draw\n")
    assert not (tmp_path / "s.png").exists()
