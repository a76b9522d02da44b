"""The CLI beyond one file: segment, montage, info, palette, and bulk compress / decompress."""
import io
import json
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmq
from kmq import batch, segment
from kmq.cli import main
from kmq.stats import INFO_FIELDS, PALETTE_FIELDS
from imagefiles import pixels_of


@pytest.fixture
def runner():
    return CliRunner()


def run(runner, *args, **kwargs):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)


@pytest.fixture
def crop(tmp_path, samples):
    """A 250 x 60 crop of the tutorial's sample, as a PNG, and its pixels."""
    with Image.open(samples / "ihc-303x227.png") as im:
        pixels = np.asarray(im.convert("RGB"))[80:140, 20:270].copy()
    Image.fromarray(pixels).save(tmp_path / "c.png")
    return tmp_path / "c.png", pixels


@pytest.fixture
def stored(tmp_path, crop):
    """c.kmq: the crop at K = 5."""
    img = kmq.compress(crop[1], 5)
    kmq.write(tmp_path / "c.kmq", img)
    return tmp_path / "c.kmq", img


def test_segment_labels_of_a_kmq_are_its_stored_labels(runner, tmp_path, stored):
    path, img = stored
    result = run(runner, "segment", path, "--style", "labels", "-o", tmp_path / "labels.png")
    assert result.exit_code == 0
    assert result.output == f"{path} -> {tmp_path / 'labels.png'}: labels, k=5, 250x60\n"
    with Image.open(tmp_path / "labels.png") as im:
        assert im.mode == "L"
        np.testing.assert_array_equal(np.asarray(im), img.labels)


def test_segment_labels_above_256_clusters_are_16_bit(runner, tmp_path):
    labels = np.arange(300, dtype=np.uint16).reshape(15, 20)
    kmq.write(tmp_path / "many.kmq", kmq.KmqImage(segment.label_colors(300), labels))
    assert run(runner, "segment", tmp_path / "many.kmq", "--style", "labels", "-o", tmp_path / "l.png",
               "-q").exit_code == 0
    with Image.open(tmp_path / "l.png") as im:
        assert im.mode.startswith("I")
        np.testing.assert_array_equal(np.asarray(im), labels)


def test_segment_tells_a_kmq_by_its_magic_not_its_name(runner, tmp_path, stored):
    disguised = tmp_path / "disguised.png"
    shutil.copy(stored[0], disguised)
    assert run(runner, "segment", disguised, "-k", "2", "--style", "labels", "-o", tmp_path / "l.png",
               "-q").exit_code == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "l.png")), stored[1].labels)


def test_segment_masks_partition_the_image(runner, tmp_path, stored):
    path, img = stored
    result = run(runner, "segment", path, "--masks", tmp_path / "m")
    assert result.output == (f"{path} -> {tmp_path / 'm'}: 5 masks, c-cluster-0.png .. c-cluster-4.png\n")
    masks = np.stack([np.asarray(Image.open(tmp_path / "m" / f"c-cluster-{i}.png")) for i in range(5)])
    assert (masks.sum(axis=0) == 1).all()
    np.testing.assert_array_equal(masks.argmax(axis=0), img.labels)


def test_segment_overlay_of_an_image(runner, tmp_path, crop):
    path, pixels = crop
    assert run(runner, "segment", path, "-k", "3", "-o", tmp_path / "o.png", "-q").exit_code == 0
    out = np.asarray(Image.open(tmp_path / "o.png"))
    img = kmq.compress(pixels, 3)
    np.testing.assert_array_equal(out, segment.overlay(img.labels, pixels, 3))
    assert out.shape == pixels.shape


@pytest.mark.parametrize("style", ["mean", "boundaries"])
def test_segment_other_styles(runner, tmp_path, stored, style):
    path, img = stored
    assert run(runner, "segment", path, "--style", style, "-o", tmp_path / "s.png", "-q").exit_code == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "s.png")),
                                  segment.render(img, img.decode(), style))


def test_segment_needs_an_output_and_never_clobbers(runner, tmp_path, stored):
    result = run(runner, "segment", stored[0])
    assert result.exit_code == 2 and "give -o OUT.png, --masks DIR, or both" in result.output
    (tmp_path / "o.png").write_bytes(b"keep")
    result = run(runner, "segment", stored[0], "-o", tmp_path / "o.png")
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path / 'o.png'} already exists (use -f to overwrite)\n"
    assert run(runner, "segment", stored[0], "-o", tmp_path / "o.png", "-f", "-q").exit_code == 0


def test_montage_writes_the_library_figure(runner, tmp_path, crop):
    path, pixels = crop
    result = run(runner, "montage", path, "-k", "2", "-k", "4", "-o", tmp_path / "grid.png")
    expected = segment.montage(pixels, [2, 4])
    height, width = expected.pixels.shape[:2]
    assert result.output == f"{path} -> {tmp_path / 'grid.png'}: original and K = 2, 4, {width}x{height}\n"
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "grid.png")), expected.pixels)


def test_montage_of_a_kmq_is_an_error(runner, tmp_path, stored):
    result = run(runner, "montage", stored[0], "-o", tmp_path / "g.png")
    assert result.exit_code == 1
    assert result.output == (f"Error: {stored[0]}: a .kmq file holds one K and not the original; "
                             "give montage the image\n")


def test_info_json_has_the_documented_keys_and_shares_summing_to_one(runner, stored):
    path, img = stored
    result = run(runner, "info", path, "--format", "json")
    info = json.loads(result.output)
    assert list(info) == list(INFO_FIELDS)
    assert (info["width"], info["height"], info["k"], info["codec"], info["mode"]) == (250, 60, 5, "raw", "RGB")
    assert info["file_bytes"] == path.stat().st_size and info["seed"] == 0
    assert info["distortion"] == img.distortion
    assert [list(e) for e in info["palette"]] == [list(PALETTE_FIELDS)] * 5
    assert sum(e["share"] for e in info["palette"]) == pytest.approx(1)
    assert [e["rgb"] for e in info["palette"]] == img.palette.tolist()
    assert [e["hex"] for e in info["palette"]] == ["#" + bytes(c).hex() for c in img.palette.tolist()]


def test_info_table(runner, stored):
    path, img = stored
    lines = run(runner, "info", path).output.splitlines()
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in lines if line.count("│") == 3}
    assert rows["Image"] == "250 x 60, RGB"
    assert rows["K"] == "5 (3 bits per label)"
    assert rows["Distortion J"] == f"{img.distortion:.2f}"
    assert rows["Seed"] == "0"
    share = np.bincount(img.labels.ravel()) / img.labels.size
    entry = "#" + bytes(img.palette[0].tolist()).hex()
    (row,) = [line for line in lines if entry in line]
    assert row.split("│")[1].strip() == "0" and row.split("│")[5].strip() == f"{share[0]:.2%}"


def test_info_of_an_image_is_an_error(runner, crop):
    result = run(runner, "info", crop[0])
    assert result.exit_code == 1 and result.output == (f"Error: {crop[0]}: not a .kmq file: bad magic 89 50 4e 47 "
                                                       f"(it is a PNG image: kmq stats and kmq palette take images)\n")


def test_palette_prints_hex_codes_and_shares(runner, stored):
    path, img = stored
    share = np.bincount(img.labels.ravel(), minlength=5) / img.labels.size
    expected = "".join(f"#{bytes(c).hex()} {s:.4f}\n" for c, s in zip(img.palette.tolist(), share))
    assert run(runner, "palette", path).output == expected


def test_palette_swatch_image(runner, tmp_path, stored):
    path, img = stored
    result = run(runner, "palette", path, "-o", tmp_path / "p.png", "--proportional")
    assert result.output == f"{path} -> {tmp_path / 'p.png'}: 5 colours, proportional\n"
    share = np.bincount(img.labels.ravel(), minlength=5) / img.labels.size
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "p.png")),
                                  segment.swatch(img.palette, share, proportional=True))


@pytest.mark.parametrize("command", ["segment", "montage", "info", "palette"])
def test_new_commands_have_help_with_an_example(runner, command):
    result = run(runner, command, "--help")
    assert result.exit_code == 0 and "Example:" in result.output and f"kmq {command} " in result.output


@pytest.fixture
def folder(tmp_path, rgb_small):
    """in/{a.png, x/a.png, x/bad.png, notes.txt}"""
    (tmp_path / "in" / "x").mkdir(parents=True)
    Image.fromarray(rgb_small).save(tmp_path / "in" / "a.png")
    Image.fromarray(rgb_small[::-1]).save(tmp_path / "in" / "x" / "a.png")
    (tmp_path / "in" / "x" / "bad.png").write_bytes(b"junk")
    (tmp_path / "in" / "notes.txt").write_text("skip me")
    return tmp_path / "in"


def test_bulk_compress_writes_all_but_the_broken_file_and_exits_1(runner, tmp_path, folder):
    out = tmp_path / "out"
    result = run(runner, "compress", folder, "-k", "4", "-o", out, "-j", "2")
    assert result.exit_code == 1
    assert result.stderr == f"Error: {folder / 'x' / 'bad.png'}: not an image Pillow can read\n"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["a.kmq", "x", "x/a.kmq"]
    for name in ("a", "x/a"):
        assert kmq.read(out / f"{name}.kmq") == kmq.compress(folder / f"{name}.png", 4)
    lines = result.stdout.splitlines()
    assert sorted(line.split(":")[0] for line in lines if " -> " in line) == [
        f"{folder / 'a.png'} -> {out / 'a.kmq'}", f"{folder / 'x' / 'a.png'} -> {out / 'x' / 'a.kmq'}"]
    assert "│ Files                     │ 2 of 3 (1 failed) │" in lines


def test_bulk_summary_json(runner, tmp_path, folder):
    shutil.copy(folder / "a.png", folder / "b.png")
    result = run(runner, "compress", folder / "a.png", folder / "b.png", folder / "x" / "a.png", "-k", "3",
                 "-o", tmp_path / "o", "--format", "json", "-j", "1")
    assert result.exit_code == 1
    clash = f"{folder / 'x' / 'a.png'}: {tmp_path / 'o' / 'a.kmq'} is already the output of {folder / 'a.png'}"
    assert result.stderr == f"Error: {clash}\n"
    summary = json.loads(result.stdout)
    assert list(summary) == [*batch.SUMMARY_FIELDS, "results"]
    assert (summary["files"], summary["succeeded"], summary["failed"]) == (3, 2, 1)
    assert [list(r) for r in summary["results"]] == [[*batch.RESULT_FIELDS, *batch.LATE_RESULT_FIELDS]] * 3
    assert [(r["output"], r["ok"], r["error"]) for r in summary["results"]] == [
        (str(tmp_path / "o" / "a.kmq"), True, None), (str(tmp_path / "o" / "b.kmq"), True, None),
        (str(tmp_path / "o" / "a.kmq"), False, clash)]
    assert summary["bytes_after"] == sum(r["bytes_after"] for r in summary["results"])
    assert summary["results"][0]["k"] == 3 and summary["results"][2]["k"] is None


def test_bulk_keeps_two_same_names_apart_and_refuses_to_clobber(runner, tmp_path, folder):
    (folder / "x" / "bad.png").unlink()
    out = tmp_path / "out"
    assert run(runner, "compress", folder, "-k", "2", "-o", out, "-q").exit_code == 0
    before = (out / "a.kmq").read_bytes()
    result = run(runner, "compress", folder, "-k", "3", "-o", out, "-q", "-j", "1")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == "".join(
        f"Error: {folder / name}.png: {out / name}.kmq already exists (use -f to overwrite)\n"
        for name in ("a", "x/a"))
    assert (out / "a.kmq").read_bytes() == before
    # A script reading --summary json is told what stderr says, in the command line's words.
    result = run(runner, "compress", folder, "-k", "3", "-o", out, "-j", "1", "--summary", "json")
    errors = [r["error"] for r in json.loads(result.stdout)["results"]]
    assert [f"Error: {e}\n" for e in errors] == result.stderr.splitlines(keepends=True)
    assert run(runner, "compress", folder, "-k", "3", "-o", out, "-q", "-f").exit_code == 0
    assert kmq.read(out / "x" / "a.kmq").k == 3


def test_bulk_decompress_a_folder(runner, tmp_path, folder):
    (folder / "x" / "bad.png").unlink()
    run(runner, "compress", folder, "-k", "4", "-o", tmp_path / "kmqs", "-q")
    result = run(runner, "decompress", tmp_path / "kmqs", "-o", tmp_path / "back", "--summary", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["succeeded"] == 2
    for name in ("a", "x/a"):
        np.testing.assert_array_equal(pixels_of(tmp_path / "back" / f"{name}.kmq.png"),
                                      kmq.read(tmp_path / "kmqs" / f"{name}.kmq").decode())


def test_one_file_with_an_output_folder_is_a_bulk_run(runner, tmp_path, folder):
    result = run(runner, "compress", folder / "a.png", "-o", f"{tmp_path / 'o'}/", "-k", "2")
    assert result.exit_code == 0 and (tmp_path / "o" / "a.kmq").exists()
    assert re.match(rf"{re.escape(str(folder / 'a.png'))} -> {re.escape(str(tmp_path / 'o' / 'a.kmq'))}: k=2, ",
                    result.stdout)
    assert "Summary" in result.stdout


def test_segment_refused_by_an_existing_output_writes_no_masks(runner, tmp_path, samples):
    out = tmp_path / "seg.png"
    out.write_bytes(b"keep")
    result = run(runner, "segment", samples / "ihc-303x227.png", "-k", "3", "-o", out, "--masks", tmp_path / "m")
    assert result.exit_code == 1 and result.output == f"Error: {out} already exists (use -f to overwrite)\n"
    assert out.read_bytes() == b"keep" and not (tmp_path / "m").exists()


def test_info_table_shows_target_rdo_and_dither(runner, crop, tmp_path):
    """What the metadata records beyond K and seed is in the table too, not only in --format json."""
    crop = crop[0]
    target, dithered = tmp_path / "t.kmq", tmp_path / "d.kmq"
    assert run(runner, "compress", crop, "--codec", "ctx", "--psnr", "25", "-o", target).exit_code == 0
    assert run(runner, "compress", crop, "-k", "4", "--dither", "fs", "-o", dithered).exit_code == 0
    rows = {}
    for path in (target, dithered):
        lines = run(runner, "info", path).output.splitlines()
        rows[path] = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in lines
                      if line.count("│") == 3}
    rdo = kmq.read(target).metadata["rdo"]
    assert rows[target]["Target"] == "PSNR >= 25 dB"
    assert rows[target].get("RDO") == (f"J up to {rdo:g} % over the nearest colours'" if rdo else None)
    assert rows[dithered]["Dither"] == "Floyd-Steinberg (fs)"
    assert "Target" not in rows[dithered] and "RDO" not in rows[dithered]


def test_decompress_png8_orders_its_palette_by_luminance(runner, crop, tmp_path):
    """Nearby indices for nearby colours: PNG's filters and deflate store them in fewer bytes."""
    path = tmp_path / "x.kmq"
    assert run(runner, "compress", crop[0], "-k", "16", "-o", path).exit_code == 0
    assert run(runner, "decompress", path, "-o", tmp_path / "x.png").exit_code == 0
    img = kmq.read(path)
    with Image.open(tmp_path / "x.png") as png:
        assert png.mode == "P"
        entries = np.array(png.getpalette()[:48]).reshape(16, 3)
        np.testing.assert_array_equal(np.asarray(png.convert("RGB")), img.decode())
    luma = entries @ (0.299, 0.587, 0.114)
    assert np.all(np.diff(luma) >= 0)
    by_share = io.BytesIO()
    level = kmq.imageio.png_level(img.width * img.height)
    kmq.imageio._palette_image(img.palette, img.labels).save(by_share, format="PNG", compress_level=level)
    assert (tmp_path / "x.png").stat().st_size < len(by_share.getvalue())


def test_montage_line_names_the_ks_its_panels_show(runner, tmp_path):
    Image.new("RGB", (50, 40), (10, 20, 30)).save(tmp_path / "one.png")
    result = run(runner, "montage", tmp_path / "one.png", "-k", "2", "-k", "3", "-o", tmp_path / "m.png")
    assert result.exit_code == 0
    assert re.search(r": original and K = 1, \d+x\d+\n$", result.stdout)  # one picture: one panel


@pytest.mark.parametrize("command", ["compress", "stats", "segment", "montage", "palette", "decompress"])
def test_help_names_only_options_the_command_has(command):
    """Shared option helps once listed --sweep on compress, --psnr on stats, --rdo on montage."""
    from kmq.cli import main as cli

    cmd = cli.commands[command]
    own = {o for p in cmd.params for o in p.opts}
    for p in cmd.params:
        for clause in re.findall(r"Not with ([^.]*)\.", p.help or ""):
            named = re.findall(r"-{1,2}[a-z][a-z-]*", clause)
            assert named and set(named) <= own, (p.name, clause)


def test_stats_refuses_stdin_twice_before_reading_it(runner, crop):
    """The second '-' would find stdin already empty; say so instead of 'not an image'."""
    result = runner.invoke(main, ["stats", "-", str(crop[0]), "-"], input=crop[0].read_bytes())
    assert result.exit_code == 2
    assert "Error: stdin (-) can be read only once: give it once among the inputs" in result.output
    assert "Sizes" not in result.output


def test_stats_table_titles_tell_apart_files_of_one_base_name(runner, tmp_path, crop):
    (tmp_path / "sub").mkdir()
    shutil.copy(crop[0], tmp_path / "sub" / "c.png")
    shutil.copy(crop[0], tmp_path / "d.png")
    inputs = [str(crop[0]), str(tmp_path / "sub" / "c.png"), str(tmp_path / "d.png")]
    result = runner.invoke(main, ["stats", *inputs, "-k", "2"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    titles = [cell.strip() for cell in result.output.splitlines()[2].split("┃")[2:-1]]
    assert titles == [inputs[0], inputs[1], "d.png"]


def test_stats_reports_the_good_inputs_when_one_fails(runner, tmp_path, rgb_small):
    # One bad file among many used to cost every record (new-user trial): now only its own, and exit 1.
    good = tmp_path / "good.png"
    Image.fromarray(rgb_small).save(good)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    result = run(runner, "stats", good, bad, good, "-k", "2", "--format", "tsv")
    assert result.exit_code == 1
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["file", str(good), str(good)]
    assert result.stderr == f"Error: {bad}: not an image Pillow can read\nError: 1 input of 3 failed\n"
    result = run(runner, "stats", good, bad, "-k", "2", "--plot", tmp_path / "rd.png")
    assert result.exit_code == 1 and result.stderr.endswith("Error: 1 input of 2 failed; no chart\n")
    assert not (tmp_path / "rd.png").exists()
    result = run(runner, "stats", bad, "-k", "2")  # alone: just its error, as before
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", f"Error: {bad}: not an image Pillow can read\n")


def test_montage_names_every_k_that_shares_the_lossless_picture(runner, tmp_path):
    # stats said so for each K asked; montage named only the K it fitted (the largest).
    Image.new("RGB", (50, 40), (10, 20, 30)).save(tmp_path / "one.png")
    result = run(runner, "montage", tmp_path / "one.png", "-k", "2", "-k", "3", "-k", "8", "-o", tmp_path / "m.png")
    one = tmp_path / "one.png"
    assert result.stderr == (f"Warning: {one}: the image has only 1 distinct colour, fewer than k=8: using k=1, "
                             f"lossless\nWarning: {one}: K = 2, 3 give the same lossless picture as K = 8 (k=1, "
                             f"every colour of the image)\n")


def test_a_palette_of_one_file_given_twice_says_1_file(runner, tmp_path):
    Image.new("RGB", (5, 4), (10, 20, 30)).save(tmp_path / "one.png")
    result = run(runner, "palette", tmp_path / "one.png", tmp_path / "one.png", "-k", "1", "-o", tmp_path / "p.gpl")
    assert result.exit_code == 0
    assert result.stdout == f"1 file (20 pixels, 1 colour) -> {tmp_path / 'p.gpl'}: 1 colour, J 0.00\n"


def test_a_palette_of_one_pixel_says_1_pixel(runner, tmp_path):
    Image.new("RGB", (1, 1), (10, 20, 30)).save(tmp_path / "a.png")
    Image.new("RGB", (1, 1), (10, 20, 30)).save(tmp_path / "b.png")
    result = run(runner, "palette", tmp_path / "a.png", tmp_path / "b.png", "-k", "1", "-o", tmp_path / "p.gpl")
    assert result.stdout == f"2 files (2 pixels, 1 colour) -> {tmp_path / 'p.gpl'}: 1 colour, J 0.00\n"
    Image.new("RGB", (1, 1), (10, 20, 30)).save(tmp_path / "c.png")
    result = run(runner, "palette", tmp_path / "c.png", tmp_path / "c.png", "-k", "1", "-o", tmp_path / "q.gpl", "-f")
    assert result.stdout.startswith("1 file (1 pixel, 1 colour) -> ")
    assert "1 file, 1 pixel, J 0.00" in (tmp_path / "q.gpl").read_text()
