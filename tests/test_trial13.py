"""Fixes from round 13's new-user pass over the CLI: each test is the reported case, with the exact output."""
import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import batch, imageio
from kmq.cli import main


def run(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, prog_name="kmq")


@pytest.fixture
def one(tmp_path):
    Image.new("RGB", (1, 1), (10, 20, 30)).save(tmp_path / "one.png")
    return tmp_path / "one.png"


@pytest.fixture
def ramp(tmp_path):
    """64x48 grey ramp of 64 levels, every row the same: at K = 16 ctx labels nothing rdo can make cheaper."""
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))).save(tmp_path / "ramp.png")
    return tmp_path / "ramp.png"


# 1. A bulk run of lossless files only showed "Mean PSNR  unknown", as if the PSNR could not be measured.
def test_bulk_summary_of_lossless_files_only_says_lossless(runner, tmp_path, one):
    result = run(runner, "compress", one, "-o", f"{tmp_path}/out/", "-q")
    assert result.exit_code == 0
    result = run(runner, "compress", one, "-o", f"{tmp_path}/out/", "-f")
    assert result.stdout.splitlines()[-2] == "│ Mean PSNR                 │ lossless │"
    as_json = json.loads(run(runner, "compress", one, "-o", f"{tmp_path}/out/", "-f", "--summary", "json").stdout)
    assert as_json["mean_psnr"] is None  # json has no infinity: null, as a lossless record's psnr


def test_summarize_tells_lossless_from_unknown(tmp_path, one):
    (lossless,) = batch.run(batch.plan_compress([one]), batch.CompressTask(k=2), 1)
    assert batch.summarize([lossless])["mean_psnr"] == float("inf")
    assert batch.summarize([])["mean_psnr"] is None
    unknown = batch.Result(lossless.job, record={**lossless.record, "psnr": None})
    assert batch.summarize([unknown])["mean_psnr"] is None


# 2. A word where a number belongs got click's "'abc' is not a valid float range."
@pytest.mark.parametrize("option", ["--psnr", "--rdo"])
def test_a_word_for_a_number_says_it_is_not_a_number(runner, one, option):
    result = run(runner, "compress", one, "--codec", "ctx", option, "abc")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == f"Error: Invalid value for '{option}': 'abc' is not a number"


# 3. A negative byte budget was "not a size", with the list of units, as if the unit were wrong.
def test_a_negative_byte_budget_is_less_than_one_byte(runner, one):
    result = run(runner, "compress", one, "--codec", "ctx", "--max-bytes", "-3")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "Error: Invalid value for '--max-bytes': '-3' is less than 1 byte"


# 4. One mask was named as a range of one: "1 mask, one-cluster-0.png .. one-cluster-0.png".
def test_one_mask_is_named_once(runner, tmp_path, one):
    result = run(runner, "segment", one, "--masks", tmp_path / "m")
    assert result.exit_code == 0
    assert result.stdout == f"{one} -> {tmp_path / 'm'}: 1 mask, one-cluster-0.png\n"


# 5. --rdo that saved nothing keeps the plain file, which records no rdo: the line said nothing of rdo, so
# --rdo 100 looked ignored.
def test_rdo_that_saved_nothing_says_so(runner, tmp_path, ramp):
    run(runner, "compress", ramp, "--codec", "ctx", "-o", tmp_path / "plain.kmq")
    result = run(runner, "compress", ramp, "--codec", "ctx", "--rdo", "100", "-o", tmp_path / "rdo.kmq")
    assert result.exit_code == 0
    assert (tmp_path / "rdo.kmq").read_bytes() == (tmp_path / "plain.kmq").read_bytes()
    assert result.stdout.startswith(f"{ramp} -> {tmp_path / 'rdo.kmq'}: k=16, rdo 100% saved nothing (the plain "
                                    f"file), 4 bits/label, packed/original bits 0.51, 348 bytes, PSNR 35.12 dB, ")
    bulk = run(runner, "compress", ramp, "--codec", "ctx", "--rdo", "100", "-o", f"{tmp_path}/out/")
    assert bulk.stdout.startswith(f"{ramp} -> {tmp_path / 'out' / 'ramp.kmq'}: k=16, rdo 100% saved nothing")


# From the review: rdo that moved only tied pixels (each label as near as the other) kept the palette and J,
# and was taken for "saved nothing" and the plain file's metadata, though its labels were 24 bytes cheaper.
def test_rdo_that_moved_only_ties_is_rdo_not_the_plain_file(tmp_path):
    pixels = np.zeros((64, 64), np.uint8)
    pixels[:, 32:] = 10
    spots = np.random.default_rng(1).integers(0, 64, (2, 40))
    pixels[spots[0], spots[1]] = 5  # halfway between the two palette colours: a tie
    plain = kmq.compress(pixels, 2, codec="ctx")
    moved = kmq.compress(pixels, 2, codec="ctx", rdo=1)
    np.testing.assert_array_equal(moved.palette, plain.palette)
    assert moved.metadata["distortion"] == plain.metadata["distortion"]
    assert (moved.labels != plain.labels).any()
    assert moved.metadata["rdo"] == 1
    assert kmq.write(tmp_path / "moved.kmq", moved) < kmq.write(tmp_path / "plain.kmq", plain)


# 6. A grey or RGB PNG with a colour key (tRNS) lost its transparency: the keyed pixels were stored opaque,
# and the file reported "lossless". It becomes RGBA, as LA and palette images with transparency do.
KEYED = [("RGB", np.array([[255, 0, 0], [0, 0, 255]], np.uint8), (255, 0, 0), [0, 0, 255, 255]),
         ("L", np.array([7, 200], np.uint8), 7, [200, 200, 200, 255]),
         ("I;16", np.array([1000, 2570], np.uint16), 1000, [10, 10, 10, 255])]


@pytest.mark.parametrize("mode, two, key, seen", KEYED, ids=[k[0] for k in KEYED])
@pytest.mark.parametrize("half", [2, 1050], ids=["small", "decoded-into-kmq-memory"])  # 4.4 MP: >= 4 MiB of L
def test_a_colour_key_is_transparency(tmp_path, mode, two, key, seen, half):
    pixels = np.repeat(np.repeat(two[None], 2 * half, axis=0), half, axis=1)  # left half keyed, right seen
    Image.fromarray(pixels).save(tmp_path / "keyed.png", transparency=key)
    assert Image.open(tmp_path / "keyed.png").mode == mode
    got = imageio.load_image(tmp_path / "keyed.png")
    assert got.shape == (2 * half, 2 * half, 4)
    assert not got[:, :half].any()
    assert (got[:, half:] == seen).all()


def test_a_bilevel_colour_key_is_transparency(tmp_path):
    im = Image.new("1", (3, 1), 0)
    im.putpixel((2, 0), 1)
    im.save(tmp_path / "b.png", transparency=0)
    np.testing.assert_array_equal(imageio.load_image(tmp_path / "b.png"), [[[0] * 4, [0] * 4, [255] * 4]])


def png(path, width, height, depth, colour_type, rows, trns):
    """A PNG of bytes as the spec lays them out: Pillow writes no 2- or 4-bit grey and no 16-bit RGB key."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    head = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    body = zlib.compress(b"".join(b"\0" + row for row in rows))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"tRNS", trns) + chunk(b"IDAT", body)
                     + chunk(b"IEND", b""))
    return path


# From the review of the colour-key change: a bilevel key of 1 (white) was compared with numpy's bool pixels,
# a 2- or 4-bit grey key in sample units with pixels scaled to 0..255, and a 16-bit RGB key with 8-bit pixels.
def test_a_bilevel_key_of_white_is_transparency(tmp_path):
    png(tmp_path / "w.png", 8, 2, 1, 0, [b"\xff", b"\x00"], struct.pack(">H", 1))
    got = imageio.load_image(tmp_path / "w.png")
    assert not got[0].any()
    assert (got[1] == [0, 0, 0, 255]).all()


@pytest.mark.parametrize("depth, row, levels", [(2, b"\x1b", [0, 85, 170]), (4, b"\x01\x23\x45\x67\x89\xab\xcd\xef",
                                                                              list(range(0, 255, 17)))],
                         ids=["2-bit", "4-bit"])
def test_a_key_of_a_low_bit_depth_grey_is_in_its_sample_units(tmp_path, depth, row, levels):
    png(tmp_path / "g.png", 2 ** depth, 1, depth, 0, [row], struct.pack(">H", 2 ** depth - 1))  # key: white
    got = imageio.load_image(tmp_path / "g.png")
    np.testing.assert_array_equal(got[0, :-1], [[v, v, v, 255] for v in levels])
    assert not got[0, -1].any()


@pytest.mark.parametrize("key", [(0xFFFF, 0, 0), (0x00FF, 0, 0)])
def test_a_16_bit_rgb_key_that_8_bit_pixels_cannot_match_keys_nothing_and_says_so(tmp_path, key):
    row = struct.pack(">6H", 0xFFFF, 0, 0, 0x00FF, 0, 0)  # red, and a near-black whose 8-bit red is 0
    png(tmp_path / "c.png", 2, 1, 16, 2, [row], struct.pack(">3H", *key))
    with pytest.warns(kmq.KmqWarning, match=r"c\.png: a 16-bit colour key \(tRNS \(\d+, 0, 0\)\) cannot be "
                      "matched on 8-bit pixels: no pixel made transparent"):
        got = imageio.load_image(tmp_path / "c.png")
    np.testing.assert_array_equal(got, [[[255, 0, 0], [0, 0, 0]]])


def test_a_colour_key_that_no_pixel_has_changes_nothing(tmp_path):
    Image.new("RGB", (3, 2), (1, 2, 3)).save(tmp_path / "rgb.png", transparency=(9, 9, 9))
    np.testing.assert_array_equal(imageio.load_image(tmp_path / "rgb.png"), np.full((2, 3, 3), [1, 2, 3]))


def test_compress_keeps_a_colour_key(runner, tmp_path):
    Image.fromarray(np.array([[7, 7, 200]], np.uint8)).save(tmp_path / "k.png", transparency=7)
    result = run(runner, "compress", tmp_path / "k.png", "-k", "2", "-q")
    assert result.exit_code == 0
    img = kmq.read(tmp_path / "k.kmq")
    np.testing.assert_array_equal(img.decode(), [[[0, 0, 0, 0], [0, 0, 0, 0], [200, 200, 200, 255]]])


# 7. segment, montage and stats --plot wrote over their own input image with -f (compress, decompress and
# palette refuse that, -f or not): `kmq montage cc.png -o cc.png -f` replaced the photo with the montage.
@pytest.mark.parametrize("args", [("montage", "{in}", "-o", "{out}"), ("segment", "{in}", "-o", "{out}"),
                                  ("stats", "{other}", "{in}", "--plot", "{out}")],
                         ids=["montage", "segment", "stats"])
def test_an_image_command_never_writes_over_its_input(runner, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    photo = np.arange(48, dtype=np.uint8).reshape(4, 4, 3) * 5
    Image.fromarray(photo).save("in.png")
    Image.fromarray(photo[:2]).save("other.png")
    before = (tmp_path / "in.png").read_bytes()
    given = [a.format(**{"in": "in.png", "out": "./in.png", "other": "other.png"}) for a in args]
    result = run(runner, *given, "-f")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "Error: ./in.png: the input file itself; choose another output\n"
    assert (tmp_path / "in.png").read_bytes() == before


# 8. segment -o naming one of its own --masks: the masks were written, then "-o ... already exists" (kmq had
# just written it), exit 1 with the masks left; with -f the picture replaced mask 0.
@pytest.mark.parametrize("force", [[], ["-f"]], ids=["plain", "force"])
def test_segment_output_that_is_one_of_its_masks_is_refused_before_writing(runner, tmp_path, monkeypatch, force):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.arange(18, dtype=np.uint8).reshape(2, 3, 3) * 14).save("p.png")
    result = run(runner, "segment", "p.png", "-k", "2", "-o", "m/p-cluster-7.png", "--masks", "./m/", *force)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "Error: -o m/p-cluster-7.png is one of the --masks files; write it elsewhere"
    assert not (tmp_path / "m").exists()
    assert run(runner, "segment", "p.png", "-k", "2", "-o", "m/p-clusters.png", "--masks", "m").exit_code == 0


def test_is_mask(tmp_path):
    from kmq import segment
    assert segment.is_mask(tmp_path / "m" / "a-cluster-12.png", tmp_path / "m" / ".", "a")
    assert not segment.is_mask(tmp_path / "m" / "a-cluster-1.png", tmp_path, "a")
    assert not segment.is_mask(tmp_path / "m" / "b-cluster-1.png", tmp_path / "m", "a")
    assert not segment.is_mask(tmp_path / "m" / "a-cluster-x.png", tmp_path / "m", "a")
    # Only names write_masks gives, padded (K = 16: -cluster-01) or not (older kmq, K <= 10) (review: \d+ took
    # the others, which kmq never writes or removes).
    for name in ("a-cluster-0.png", "a-cluster-01.png", "a-cluster-00.png", "a-cluster-65535.png"):
        assert segment.is_mask(tmp_path / name, tmp_path, "a")
    for name in ("a-cluster-\u0663.png", "a-cluster-65536.png", "a-cluster-000001.png"):
        assert not segment.is_mask(tmp_path / name, tmp_path, "a")


# 9. An empty folder among other inputs warned "no files to convert in this folder", where the same folder
# alone is "no images found" (and stats says "no images or .kmq files in this folder").
@pytest.mark.parametrize("command, kind", [("compress", "images"), ("decompress", ".kmq files")])
def test_an_empty_folder_among_inputs_is_named_as_alone(runner, tmp_path, one, command, kind):
    (tmp_path / "e").mkdir()
    given = one if command == "compress" else tmp_path / "one.kmq"
    if command == "decompress":
        run(runner, "compress", one, "-q")
    result = run(runner, command, tmp_path / "e", given, "-o", f"{tmp_path}/out/", "-q")
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0] == f"Warning: {tmp_path / 'e'}: no {kind} in this folder"
    alone = run(runner, command, tmp_path / "e")
    assert alone.stderr == (f"Error: {tmp_path / 'e'}: no {kind} found (searched recursively; names starting "
                            f"with . are skipped)\n")


# 10. segment, montage and palette -o - wrote PNG bytes to a terminal (compress and decompress refuse).
@pytest.mark.parametrize("command", [["segment", "{png}", "-o", "-"], ["montage", "{png}", "-o", "-"],
                                     ["palette", "{png}", "-o", "-"], ["palette", "{png}", "{png}", "-o", "-"]],
                         ids=["segment", "montage", "palette", "palette-fit"])
def test_binary_output_is_not_written_to_a_terminal(tmp_path, one, command):
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    try:
        try:
            done = subprocess.run([sys.executable, "-m", "kmq", *(a.format(png=one) for a in command)],
                                  stdout=follower, stderr=subprocess.PIPE, timeout=60)
        finally:
            os.close(follower)  # then the leader reads to the end; closed on a timeout too
        written = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the pty reports EIO once the writer is gone
                break
            if not chunk:
                break
            written += chunk
    finally:
        os.close(leader)
    assert done.returncode == 1
    assert done.stderr.decode().splitlines()[-1] == (
        "Error: not writing binary data to a terminal; redirect stdout or give -o FILE")
    assert b"PNG" not in written


# 11. A write into a path under a file said "Not a directory", capitalised unlike every other reason.
def test_a_write_under_a_file_says_not_a_directory_in_lower_case(runner, tmp_path, one):
    run(runner, "compress", one, "-q")
    result = run(runner, "decompress", tmp_path / "one.kmq", "-o", tmp_path / "one.png" / "x.png")
    assert result.exit_code == 1
    assert result.stderr == f"Error: cannot write {tmp_path / 'one.png' / 'x.png'}: not a directory\n"
