import json
import re
import shutil

import numpy as np
import pytest
import click
from click.testing import CliRunner
from PIL import Image

import kmq
from kmq.cli import ByteSize, main
from kmq.stats import FIELDS
from imagefiles import pixels_of


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def image(tmp_path, samples):
    path = tmp_path / "c.png"
    shutil.copy(samples / "ihc-303x227.png", path)
    return path


def run(runner, *args, **kwargs):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)


def test_compress_then_decompress_with_default_names(runner, image, tmp_path):
    result = run(runner, "compress", image, "-k", "16")
    assert result.exit_code == 0, result.output
    kmq_path = tmp_path / "c.kmq"
    size = kmq_path.stat().st_size
    assert re.fullmatch(rf"{re.escape(str(image))} -> {re.escape(str(kmq_path))}: k=16, 4 bits/label, "
                        rf"packed/original bits 0\.17, {size:,} bytes, PSNR \d+\.\d\d dB, \d+\.\d\d s\n", result.output)
    result = run(runner, "decompress", kmq_path)
    assert result.exit_code == 0, result.output
    out = tmp_path / "c.kmq.png"
    assert re.fullmatch(rf"{re.escape(str(kmq_path))} -> {re.escape(str(out))}: 303x227 PNG, \d+\.\d\d s\n",
                        result.output)
    np.testing.assert_array_equal(pixels_of(out), kmq.read(kmq_path).decode())


def test_quiet_prints_nothing(runner, image):
    result = run(runner, "compress", image, "-q")
    assert result.exit_code == 0 and result.output == ""


def test_no_clobber_without_force(runner, image, tmp_path):
    assert run(runner, "compress", image, "-q").exit_code == 0
    kmq_path = tmp_path / "c.kmq"
    before = kmq_path.read_bytes()
    result = run(runner, "compress", image, "-k", "2", "-q")
    assert result.exit_code == 1
    assert result.output == f"Error: {kmq_path} already exists (use -f to overwrite)\n"
    assert kmq_path.read_bytes() == before
    assert run(runner, "compress", image, "-k", "2", "-q", "-f").exit_code == 0
    assert kmq_path.read_bytes() != before
    assert list(tmp_path.glob(".*tmp")) == []


def test_decompress_no_clobber(runner, image, tmp_path):
    run(runner, "compress", image, "-q")
    (tmp_path / "c.kmq.png").write_bytes(b"keep")
    result = run(runner, "decompress", tmp_path / "c.kmq")
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path / 'c.kmq.png'} already exists (use -f to overwrite)\n"
    assert (tmp_path / "c.kmq.png").read_bytes() == b"keep"


def test_output_format_follows_extension(runner, image, tmp_path):
    run(runner, "compress", image, "-q")
    assert run(runner, "decompress", tmp_path / "c.kmq", "-o", tmp_path / "c.bmp", "-q").exit_code == 0
    assert Image.open(tmp_path / "c.bmp").format == "BMP"
    result = run(runner, "decompress", tmp_path / "c.kmq", "-o", tmp_path / "c.xyz")
    assert result.exit_code == 1
    assert result.output == (f"Error: {tmp_path / 'c.xyz'}: unknown image extension '.xyz'; use e.g. .png, .webp, "
                             f".gif, .tiff, .bmp or .jpg\n")


def test_junk_kmq_is_a_clean_error_and_writes_nothing(runner, tmp_path):
    junk = tmp_path / "j.kmq"
    junk.write_bytes(b"junk")
    result = run(runner, "decompress", junk, "-o", tmp_path / "j.png")
    assert result.exit_code == 1
    assert result.output == f"Error: {junk}: not a .kmq file: bad magic 6a 75 6e 6b\n"
    assert not (tmp_path / "j.png").exists()


def test_truncated_kmq(runner, image, tmp_path):
    run(runner, "compress", image, "-q", "-k", "2")
    data = (tmp_path / "c.kmq").read_bytes()
    (tmp_path / "c.kmq").write_bytes(data[:500])
    result = run(runner, "decompress", tmp_path / "c.kmq")
    assert result.exit_code == 1
    h = kmq.format.parse_header(data)
    assert result.output == (f"Error: {tmp_path / 'c.kmq'}: truncated file: expected {len(data)} bytes (header 32 "
                             f"+ palette {h.k * h.channels} + metadata {h.meta_len} + payload {h.payload_len} + "
                             f"checksum 4), got 500\n")


@pytest.mark.parametrize("command", ["compress", "decompress", "stats"])
def test_missing_input(runner, tmp_path, command):
    result = run(runner, command, tmp_path / "nope.png")
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path / 'nope.png'}: no such file or directory\n"


def test_not_an_image(runner, tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("hello")
    result = run(runner, "compress", path)
    assert result.exit_code == 1
    assert result.output == f"Error: {path}: not an image Pillow can read\n"
    assert not (tmp_path / "notes.kmq").exists()


@pytest.mark.parametrize("k", ["0", "65537", "two"])
def test_k_out_of_range_is_a_usage_error(runner, image, k):
    result = run(runner, "compress", image, "-k", k)
    assert result.exit_code == 2
    assert "Invalid value for '-k'" in result.output


def test_unknown_option_is_a_usage_error(runner, image):
    assert run(runner, "compress", image, "--frobnicate").exit_code == 2


def test_fewer_colours_than_k_warns(runner, tmp_path):
    path = tmp_path / "flat.png"
    Image.new("RGB", (5, 4), (9, 8, 7)).save(path)
    result = run(runner, "compress", path, "-q")
    assert result.exit_code == 0
    assert result.output == (f"Warning: {path}: the image has only 1 distinct colour, fewer than k=16: using "
                             "k=1, lossless\n")


def test_stats_json_has_exactly_the_documented_keys(runner, image):
    result = run(runner, "stats", image, "-k", "2", "-k", "3", "-k", "6", "-k", "16", "--format", "json")
    assert result.exit_code == 0
    records = json.loads(result.output)
    assert [list(r) for r in records] == [list(FIELDS)] * 4
    assert [(r["k"], r["original_bits"], r["labels_bits"], r["codebook_bits"], r["compressed_bits"])
            for r in records] == [(2, 1650744, 68781, 48, 68829), (3, 1650744, 137562, 72, 137634),
                                  (6, 1650744, 206343, 144, 206487), (16, 1650744, 275124, 384, 275508)]
    assert [f"{r['ratio']:.2f}" for r in records] == ["0.04", "0.08", "0.13", "0.17"]


def test_stats_tsv_and_csv_of_a_kmq_file(runner, image, tmp_path):
    run(runner, "compress", image, "-k", "6", "-q")
    path = tmp_path / "c.kmq"
    img = kmq.read(path)
    psnr = 10 * np.log10(255**2 / (img.distortion / 3))
    row = [str(path), "303", "227", "3", "6", "3", "1650744", "206343", "144", "206487", str(206487 / 1650744),
           str(path.stat().st_size), str(img.distortion), str(float(psnr)), "raw",
           str(path.stat().st_size * 8 / (303 * 227)), "", ""]
    tsv = run(runner, "stats", path, "--format", "tsv").output
    assert tsv == "\t".join(FIELDS) + "\n" + "\t".join(row) + "\n"
    csv = run(runner, "stats", path, "--format", "csv").output
    assert csv == ",".join(FIELDS) + "\n" + ",".join(row) + "\n"


def test_stats_codec_all_compares_codecs_on_the_same_labels(runner, image):
    result = run(runner, "stats", image, "-k", "16", "--codec", "all", "--format", "json")
    records = json.loads(result.output)
    assert [r["codec"] for r in records] == list(kmq.codecs.NAMES)
    # the same quantization: only the payload differs
    assert len({(r["labels_bits"], r["distortion"]) for r in records}) == 1
    for r in records:
        assert r["bits_per_pixel"] == r["file_bytes"] * 8 / (303 * 227)
    sizes = {r["codec"]: r["file_bytes"] for r in records}
    assert sizes["raw"] == kmq.compress(image, 16).to_bytes().__len__()
    assert sizes["ctx"] < sizes["lzma"] < sizes["raw"]


def test_stats_of_a_kmq_file_reencoded_with_another_codec(runner, image, tmp_path):
    run(runner, "compress", image, "-k", "6", "-q")
    (stored,) = json.loads(run(runner, "stats", tmp_path / "c.kmq", "--format", "json").output)
    (lzma,) = json.loads(run(runner, "stats", tmp_path / "c.kmq", "--codec", "lzma", "--format", "json").output)
    assert (stored["codec"], lzma["codec"]) == ("raw", "lzma")
    assert stored["file_bytes"] == (tmp_path / "c.kmq").stat().st_size
    assert lzma["file_bytes"] < stored["file_bytes"] and lzma["distortion"] == stored["distortion"]


def test_stats_table_uses_the_tutorial_names(runner, image):
    result = run(runner, "stats", image, "-k", "2")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    for name, value in [("Original size", "1650744"), ("Compressed Image size", "68781"),
                        ("Centroids size", "48"), ("Compressed size", "68829"), ("Compression ratio", "0.04")]:
        (line,) = [line for line in lines if line.startswith(f"│ {name} ")]
        assert line.split("│")[2].strip() == value
    assert any(line.startswith("│ Distortion J ") for line in lines)
    assert any(re.match(r"│ PSNR +│ +\d+\.\d\d dB │", line) for line in lines)


def test_stats_psnr_of_a_lossless_file_is_null_in_json(runner, tmp_path):
    path = tmp_path / "two.png"
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(path)
    (record,) = json.loads(run(runner, "stats", path, "-k", "2", "--format", "json").output)
    assert record["distortion"] == 0.0 and record["psnr"] is None


def test_version(runner):
    result = run(runner, "--version")
    assert result.output == f"kmq, version {kmq.__version__}\n"


@pytest.mark.parametrize("command", [[], ["compress"], ["decompress"], ["stats"]])
def test_help_has_an_example(runner, command):
    result = run(runner, *command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output and "kmq " in result.output


def test_python_dash_m(image):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "kmq", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("kmq, version")


def test_pipes(runner, image):
    kmq_bytes = runner.invoke(main, ["compress", "-", "-k", "8", "-o", "-"], input=image.read_bytes())
    assert kmq_bytes.exit_code == 0
    assert kmq_bytes.stdout_bytes.startswith(b"\x89KMQ")
    png = runner.invoke(main, ["decompress", "-", "-o", "-", "-q"], input=kmq_bytes.stdout_bytes)
    assert png.exit_code == 0 and png.stdout_bytes.startswith(b"\x89PNG")


@pytest.mark.parametrize("channels, k, ext, mode", [(3, 16, "png", "P"), (4, 5, "png", "P"), (1, 8, "png", "P"),
                                                    (1, 40, "png", "L"), (3, 300, "png", "RGB"), (3, 16, "gif", "P"),
                                                    (3, 16, "bmp", "RGB")])
def test_decompress_writes_a_palette_image_when_it_can(runner, tmp_path, channels, k, ext, mode):
    rng = np.random.default_rng(channels)
    palette = np.unique(rng.integers(0, 256, (k + 20, channels), dtype=np.uint8), axis=0)[:k]
    img = kmq.KmqImage(palette, rng.integers(0, k, (9, 7)))
    kmq.write(tmp_path / "p.kmq", img)
    out = tmp_path / f"p.{ext}"
    assert run(runner, "decompress", tmp_path / "p.kmq", "-o", out, "-q").exit_code == 0
    assert Image.open(out).mode == mode
    np.testing.assert_array_equal(pixels_of(out), img.decode())


def test_truecolor_writes_the_pixels(runner, image, tmp_path):
    run(runner, "compress", image, "-q")
    assert run(runner, "decompress", tmp_path / "c.kmq", "--truecolor", "-q").exit_code == 0
    out = tmp_path / "c.kmq.png"
    assert Image.open(out).mode == "RGB"
    np.testing.assert_array_equal(np.asarray(Image.open(out)), kmq.read(tmp_path / "c.kmq").decode())


@pytest.mark.parametrize("command, out", [("compress", "c.png"), ("decompress", "c.kmq")])
def test_output_over_its_own_input_is_refused_even_with_force(runner, image, tmp_path, command, out):
    run(runner, "compress", image, "-q")
    source = tmp_path / ("c.png" if command == "compress" else "c.kmq")
    before = source.read_bytes()
    result = run(runner, command, source, "-o", tmp_path / out, "--format" if command == "decompress" else "-q",
                 *(["PNG"] if command == "decompress" else []), "-f")
    assert result.exit_code == 1
    assert result.output == f"Error: {source}: the input file itself; choose another output\n"
    assert source.read_bytes() == before


def test_webp_output_is_lossless(runner, image, tmp_path):
    run(runner, "compress", image, "-q")
    assert run(runner, "decompress", tmp_path / "c.kmq", "-o", tmp_path / "c.webp", "-q").exit_code == 0
    np.testing.assert_array_equal(pixels_of(tmp_path / "c.webp"), kmq.read(tmp_path / "c.kmq").decode())


def test_a_directory_given_as_a_file_is_bad_input_not_bad_usage(runner, tmp_path):
    result = run(runner, "info", tmp_path)
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "Traceback" not in result.output
    # palette and segment read a folder's images, as bulk runs do: an empty one has none, one Error: as for
    # stats (it was a Warning about the folder, then an Error: the new-user trial).
    for command in (["palette"], ["segment", "--masks", str(tmp_path / "m")]):
        result = run(runner, command[0], tmp_path, *command[1:])
        assert result.exit_code == 1
        assert result.output == (f"Error: {tmp_path}: no images or .kmq files found (searched recursively; names "
                                 "starting with . are skipped)\n")


@pytest.mark.parametrize("text, size", [("1.9", None), ("10000.5", None), ("0.5", None), ("10000.0", 10000),
                                        ("1.5k", 1500), ("2.5KiB", 2560), ("200kB", 200_000), ("7B", 7),
                                        # (1e28 and up raised decimal's InvalidOperation: 28 digits; a 35-digit
                                        # number of k was rounded to 28)
                                        ("1e28", 10**28), ("10000000000000000000000000000", 10**28),
                                        ("99999999999999999999999999999999999k", 10**38 - 1000),
                                        ("1.00000000000000000000000000000000001e35", 10**35 + 1),
                                        # (a Fraction of these would hold 10**1000000000)
                                        ("1e-1000000000", None), ("-1e-1000000000", None)])
def test_max_bytes_takes_fractions_only_with_a_unit(text, size):
    """1.9 bytes was read as 1 (and 0.5 refused as "less than 1 byte"): a bare number counts whole bytes."""
    if size is None:
        with pytest.raises(click.BadParameter, match=rf"'{re.escape(text)}' is not a whole number of bytes"):
            ByteSize().convert(text, None, None)
    else:
        assert ByteSize().convert(text, None, None) == size


@pytest.mark.parametrize("text", ["1e-1000000000k", "0e-1000000000", "0e-1000000000G", "-0.0"])
def test_max_bytes_under_a_byte_is_refused_at_once(text):
    # (a Fraction of 1e-1000000000 or of 0e-1000000000 holds 10**1000000000: that took hours)
    with pytest.raises(click.BadParameter, match=rf"'{re.escape(text)}' is less than 1 byte"):
        ByteSize().convert(text, None, None)


def test_a_budget_of_1e300_bytes_gets_the_best_file(tmp_path):
    # (the search's first jump in K was 2 ** 1,500 for it: OverflowError, a traceback)
    pixels = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "tiny.png")
    result = CliRunner().invoke(main, ["compress", str(tmp_path / "tiny.png"), "--max-bytes", "1e300", "-q"])
    assert (result.exit_code, result.output) == (0, "")
    assert kmq.read(tmp_path / "tiny.kmq").distortion == 0


def test_compress_to_an_image_name_warns(tmp_path, samples):
    result = CliRunner().invoke(main, ["compress", str(samples / "ihc-303x227.png"), "-k", "4", "-q", "-o",
                                       str(tmp_path / "out.png")])
    assert (result.exit_code, result.output) == (
        0, f"Warning: {tmp_path / 'out.png'}: a .kmq file named like an image; kmq decompress writes images\n")
    assert kmq.read(tmp_path / "out.png").k == 4


def test_webp_and_qoi_keep_every_decoded_pixel_also_under_alpha_0_and_grey(runner, tmp_path):
    """libwebp replaced the colour of transparent pixels unless told exact; QOI refused grey pixels."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (24, 32, 4), dtype=np.uint8)
    rgba[:, :16, 3] = 0
    grey = rng.integers(0, 256, (24, 32), dtype=np.uint8)
    for name, pixels in (("rgba", rgba), ("grey", grey)):
        kmq.write(tmp_path / f"{name}.kmq", kmq.compress(pixels, 16))
        for suffix in (".webp", ".qoi"):
            out = tmp_path / f"{name}{suffix}"
            result = run(runner, "decompress", tmp_path / f"{name}.kmq", "-o", out, "-q")
            assert result.exit_code == 0, result.output
            decoded = kmq.read(tmp_path / f"{name}.kmq").decode()
            with Image.open(out) as im:
                back = np.asarray(im)
            np.testing.assert_array_equal(back if back.ndim == decoded.ndim else back[:, :, 0], decoded)


@pytest.mark.parametrize("args", [["compress", ""], ["decompress", ""], ["palette", "", "-k", "2"],
                                  ["stats", ""], ["compress", "IMG", "-o", ""]])
def test_an_empty_path_is_a_usage_error_not_the_current_folder(runner, image, tmp_path, monkeypatch, args):
    """pathlib reads "" as ".": an unset $f in `kmq compress "$f"` compressed the whole tree."""
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run(runner, *[str(image) if a == "IMG" else a for a in args])
    assert result.exit_code == 2
    assert result.output.endswith(": an empty path names no file\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
