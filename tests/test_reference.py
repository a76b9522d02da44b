"""`kmq stats --reference` (the same pixels as PNG-8 and WebP), `--sweep` and `--plot` (rate-distortion charts)."""
import io
import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmq
from kmq import plot, stats
from kmq.cli import main
from kmq.imageio import png8_bytes, webp_lossless_bytes
from kmq.stats import FIELDS


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def crop(tmp_path, samples):
    """A 64 x 48 crop of a photo: thousands of colours, small enough for a K sweep in a second."""
    path = tmp_path / "crop.png"
    with Image.open(samples / "chelsea.png") as im:
        im.convert("RGB").crop((200, 100, 264, 148)).save(path)
    return path


def pillow_png8(palette, labels):
    """Pillow's own way to a palette PNG, pixel by pixel through putdata, its entries darkest first (ties in
    index order) or in the palette's own order, whichever is smaller: the yardstick for png8_bytes."""
    rgb = np.repeat(palette, 3, axis=1) if palette.shape[1] == 1 else palette
    by_luma = sorted(range(len(rgb)), key=lambda i: (0.299 * rgb[i, 0] + 0.587 * rgb[i, 1] + 0.114 * rgb[i, 2], i))
    files = []
    for order in (by_luma, list(range(len(rgb)))):
        rank = {old: new for new, old in enumerate(order)}
        im = Image.new("P", (labels.shape[1], labels.shape[0]))
        im.putpalette(rgb[order].reshape(-1).tolist(), "RGBA" if palette.shape[1] == 4 else "RGB")
        im.putdata([rank[label] for label in labels.ravel().tolist()])
        files.append(png_of(im))
    return min(files, key=len)


def png_of(im):
    """The smallest of Pillow's optimize=True and zlib levels 9 and 6 (each can win)."""
    outs = []
    for options in ({"optimize": True}, {"compress_level": 9}, {"compress_level": 6}):
        outs.append(io.BytesIO())
        im.save(outs[-1], "PNG", **options)
    return min((out.getvalue() for out in outs), key=len)


def decoded(data):
    with Image.open(io.BytesIO(data)) as im:
        mode = im.mode
        if mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        pixels = np.asarray(im)
    return mode, pixels


def test_reference_bytes_are_what_pillow_gives_for_the_same_pixels(crop):
    (r,) = stats.measure(crop, [8], reference=True)
    img = kmq.compress(crop, 8)
    assert r["png8_bytes"] == len(pillow_png8(img.palette, img.labels))
    out = io.BytesIO()
    Image.fromarray(img.decode()).save(out, "WEBP", lossless=True, method=6, quality=100, exact=True)
    assert r["webp_bytes"] == len(out.getvalue())
    # and both files hold exactly the decoded pixels
    for data in (png8_bytes(img.palette, img.labels), webp_lossless_bytes(img.decode())):
        np.testing.assert_array_equal(decoded(data)[1], img.decode())


def test_png8_of_rgba_keeps_alpha_in_trns_and_grey_stays_8_bit_grey():
    palette = np.array([[255, 0, 0, 255], [0, 0, 255, 0], [9, 9, 9, 128]], np.uint8)
    labels = np.array([[0, 1, 2], [2, 1, 0]])
    mode, pixels = decoded(png8_bytes(palette, labels))
    assert mode == "P"
    np.testing.assert_array_equal(pixels, palette[labels])
    _, webp = decoded(webp_lossless_bytes(palette[labels]))
    np.testing.assert_array_equal(webp, palette[labels])  # exact: even the colour under alpha 0 is kept
    # grey: the smaller of a palette PNG and an 8-bit grey PNG, the same pixels either way
    for size, mode_of_smaller in [(2, "P"), (256, "L")]:
        grey = np.arange(size, dtype=np.uint8)[::-1, None]
        labels = np.add.outer(np.arange(64), np.arange(64)) % size
        data = png8_bytes(grey, labels)
        as_grey = png_of(Image.fromarray(grey[labels][:, :, 0]))
        assert len(data) == min(len(pillow_png8(grey, labels)), len(as_grey))
        mode, pixels = decoded(data)
        assert mode == mode_of_smaller
        np.testing.assert_array_equal(pixels[..., 0] if pixels.ndim == 3 else pixels, grey[labels][:, :, 0])


def test_no_png8_above_256_colours():
    rng = np.random.default_rng(0)
    palette = np.unique(rng.integers(0, 256, (400, 3), dtype=np.uint8), axis=0)[:300]
    img = kmq.KmqImage(palette, np.arange(300).reshape(15, 20), {"distortion": 1.0})
    sizes = stats.reference_sizes(img)
    assert sizes["png8_bytes"] is None and sizes["webp_bytes"] > 0


def test_reference_keys_come_last_and_are_null_unless_asked(crop, tmp_path):
    plain = json.loads(run("stats", crop, "-k", "4", "--format", "json").output)
    asked = json.loads(run("stats", crop, "-k", "4", "--codec", "all", "--reference", "--format", "json").output)
    assert list(FIELDS[-2:]) == ["png8_bytes", "webp_bytes"]
    assert [list(r) for r in plain + asked] == [list(FIELDS)] * 4
    assert (plain[0]["png8_bytes"], plain[0]["webp_bytes"]) == (None, None)
    # one quantization, so the same reference bytes on every codec's record
    assert len({(r["png8_bytes"], r["webp_bytes"]) for r in asked}) == 1 and asked[0]["png8_bytes"] > 0
    tsv = run("stats", crop, "-k", "4", "--reference", "--format", "tsv").output.splitlines()
    assert tsv[0].split("\t") == list(FIELDS)
    row = dict(zip(FIELDS, tsv[1].split("\t")))
    assert (row["png8_bytes"], row["webp_bytes"]) == (str(asked[0]["png8_bytes"]), str(asked[0]["webp_bytes"]))
    assert run("stats", crop, "-k", "4", "--format", "tsv").output.splitlines()[1].endswith("\t\t")


def test_reference_of_a_kmq_file_is_of_its_stored_pixels(crop, tmp_path):
    img = kmq.compress(crop, 5)
    kmq.write(tmp_path / "c.kmq", img)
    (r,) = stats.measure(tmp_path / "c.kmq", reference=True)
    assert r["png8_bytes"] == len(pillow_png8(img.palette, img.labels))


def test_table_shows_the_reference_rows_only_when_asked(crop):
    assert "PNG-8" not in run("stats", crop, "-k", "4").output
    r = json.loads(run("stats", crop, "-k", "4", "--reference", "--format", "json").output)[0]
    lines = run("stats", crop, "-k", "4", "--reference").output.splitlines()
    assert [line.split("│")[2].strip() for line in lines if line.startswith(("│ PNG-8 ", "│ WebP "))] == \
        [str(r["png8_bytes"]), str(r["webp_bytes"])]


def test_sweep_is_the_powers_of_two_and_joins_k(crop):
    records = json.loads(run("stats", crop, "--sweep", "-k", "3", "--format", "json").output)
    assert [r["k"] for r in records] == [2, 3, 4, 8, 16, 32, 64, 128, 256]
    psnrs = [r["psnr"] for r in records]
    assert psnrs == sorted(psnrs)


def test_sweep_stops_at_the_first_lossless_k(tmp_path):
    """Five colours: K = 2, 4 lossy, 8 lossless (k = 5); 16 .. 256 would repeat that row, one warning each."""
    pixels = np.zeros((8, 10, 3), np.uint8)
    pixels[:, 4:] = (255, 0, 0)
    pixels[:, 7:] = (0, 0, 255)
    pixels[:2] = (0, 255, 0)
    pixels[6:, 8:] = (9, 9, 9)
    Image.fromarray(pixels).save(tmp_path / "few.png")
    result = run("stats", tmp_path / "few.png", "--sweep", "--format", "json")
    assert [(r["k"], r["psnr"] is None) for r in json.loads(result.stdout)] == [(2, False), (4, False), (5, True)]
    assert result.stderr == (f"Warning: {tmp_path / 'few.png'}: the image has only 5 distinct colours, fewer "
                             "than k=8: using k=5, lossless\n")


def test_plot_writes_a_png_chart_and_says_so(crop, tmp_path):
    out = tmp_path / "rd.png"
    result = CliRunner().invoke(main, ["stats", str(crop), "-k", "4", "-k", "16", "--codec", "all", "--reference",
                                       "--format", "json", "--plot", str(out)])
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)) == 6  # the records still go to stdout
    assert result.stderr == f"rate-distortion chart -> {out}: 6 points\n"
    with Image.open(out) as im:
        assert (im.format, im.size) == ("PNG", (750, 480))
        # a drawn chart, not a blank page: many colours (lines, marks, anti-aliased text)
        assert len(im.convert("RGB").getcolors(1 << 16)) > 50
    assert 10_000 < out.stat().st_size < 200_000
    # same records, same bytes
    again = tmp_path / "again.png"
    run("stats", crop, "-k", "4", "-k", "16", "--codec", "all", "--reference", "--plot", again)
    assert again.read_bytes() == out.read_bytes()


def test_plot_takes_any_file_name_and_an_svg_is_the_same_bytes_again(crop, tmp_path):
    # a name that is not UTF-8, and dollar signs that matplotlib would read as maths ("\\bad" is no symbol)
    odd = [tmp_path / "gr\udce9d.png", tmp_path / "a$\\bad$.png"]
    for path in odd:
        path.write_bytes(crop.read_bytes())
    for files in ([odd[0]], [odd[1]], odd):
        result = run("stats", *files, "-k", "2", "-k", "4", "--format", "tsv", "--plot", tmp_path / "rd.svg", "-f")
        assert (result.exit_code, result.stderr) == (0, f"rate-distortion chart -> {tmp_path / 'rd.svg'}: "
                                                        f"{2 * len(files)} points\n")
    svg = (tmp_path / "rd.svg").read_text()
    # the names as human lines show them (a backslash doubled, round 49), not typeset
    assert "gr\\xe9d.png" in svg and "a$\\\\bad$.png" in svg
    run("stats", *odd, "-k", "2", "-k", "4", "--plot", tmp_path / "again.svg")
    assert (tmp_path / "again.svg").read_text() == svg


def test_plot_never_clobbers_without_force(crop, tmp_path):
    out = tmp_path / "rd.png"
    out.write_bytes(b"mine")
    result = run("stats", crop, "-k", "4", "--plot", out)
    assert (result.exit_code, result.output) == (1, f"Error: {out} already exists (use -f to overwrite)\n")
    assert out.read_bytes() == b"mine"
    result = run("stats", crop, "-k", "4", "--format", "tsv", "--plot", out, "-f", "-q")
    assert (result.exit_code, result.stderr) == (0, "")  # -q: no message, the records still printed
    assert result.stdout.startswith("\t".join(FIELDS) + "\n")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = run("stats", crop, "-k", "4", "--format", "json", "--plot", out, "-f")
    assert result.stderr == f"rate-distortion chart -> {out}: 1 point\n"


def test_plot_refuses_bad_targets_and_lossless_records(tmp_path, crop):
    result = run("stats", crop, "--plot", tmp_path / "rd.jpg")
    assert (result.exit_code, result.output) == (
        1, f"Error: {tmp_path / 'rd.jpg'}: a chart is written as .png, .svg or .pdf, not '.jpg'\n")
    result = run("stats", crop, "--plot", "-")
    assert result.exit_code == 2 and "--plot needs a file name: stdout carries the records" in result.output
    two = tmp_path / "two.png"
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(two)
    result = run("stats", two, "-k", "2", "--plot", tmp_path / "rd.png", "--format", "tsv")
    assert result.stderr.endswith("Error: nothing to plot: every record is lossless (PSNR inf)\n")
    assert result.exit_code == 1 and not (tmp_path / "rd.png").exists()
    assert result.stdout.splitlines()[1].startswith(f"{two}\t2\t1\t1\t2\t")  # the records still come out
    # With a lossy input too, the chart is drawn and the lossless one is named, not dropped unseen.
    result = run("stats", two, crop, "-k", "2", "--plot", tmp_path / "rd.png", "--format", "tsv")
    assert result.exit_code == 0
    assert result.stderr == (f"Warning: {two}: lossless at every K asked (or J unknown): no line on the chart\n"
                             f"rate-distortion chart -> {tmp_path / 'rd.png'}: 1 point\n")


def _records(files, codecs=("ctx",)):
    """Stats-like records of a made-up sweep: K = 2, 4, 8 of each file and codec."""
    return [{"file": f, "codec": c, "k": k, "bits_per_pixel": 0.1 * k * (1 + i), "psnr": 20.0 + k + i,
             "distortion": 100.0 / k, "width": 8, "height": 8}
            for i, f in enumerate(files) for c in codecs for k in (2, 4, 8)]


@pytest.mark.parametrize("codecs", [("ctx",), ("raw", "ctx")])
def test_plot_draws_every_input_as_a_line_of_its_own(codecs):
    # A new user's five photos with the old styles cycled by four: the first and the fifth drew the same line.
    files = [f"photo{i}.png" for i in range(5)]
    ax = plot._figure(_records(files, codecs), None)[0].axes[0]
    looks = {}
    for line in ax.get_lines():
        looks.setdefault(line.get_label().split(" · ")[1], set()).add(
            (line.get_linestyle(), line.get_marker(), line.get_color()))
    assert sorted(looks) == files and all(len(v) == len(codecs) for v in looks.values())
    drawn = [look for v in looks.values() for look in v]
    assert len(set(drawn)) == len(drawn)
    if len(codecs) == 1:  # one codec: each input its own colour too
        assert len({colour for _, _, colour in drawn}) == 5


@pytest.mark.parametrize("codecs", [("ctx",), ("raw", "lzma", "ctx")])
def test_plot_never_draws_a_line_in_a_references_colour(codecs):
    # Round 32's inputs took the colours after the references': the 9th and 10th input wore PNG-8's and WebP's.
    records = [dict(r, png8_bytes=10 * r["k"], webp_bytes=9 * r["k"])
               for r in _records([f"photo{i}.png" for i in range(10)], codecs)]
    lines = plot._figure(records, None)[0].axes[0].get_lines()
    refs = {line.get_color() for line in lines if "(same pixels)" in line.get_label()}
    kmq_lines = {line.get_color() for line in lines if line.get_label().startswith("kmq ")}
    assert len(refs) == 2 and not refs & kmq_lines
    assert len(kmq_lines) == (10 if len(codecs) == 1 else len(codecs))


def test_plot_warns_when_inputs_are_too_many_to_tell_apart():
    with pytest.warns(kmq.KmqWarning, match=r"^25 inputs on one chart: past 24 their lines repeat"):
        plot._figure(_records([f"p{i}.png" for i in range(25)]), None)


def test_plot_without_matplotlib_says_how_to_install_it(crop, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an import sees when it is not installed
    result = run("stats", crop, "-k", "4", "--plot", tmp_path / "rd.png")
    assert (result.exit_code, result.output) == (1, "Error: --plot needs matplotlib: pip install 'kmq[plot]'\n")
    assert not (tmp_path / "rd.png").exists()
    records = stats.measure(crop, [4])
    with pytest.raises(kmq.KmqError, match=r"^plotting needs matplotlib: pip install 'kmq\[plot\]'$"):
        plot.write_chart(records, tmp_path / "rd.png")
    assert not (tmp_path / "rd.png").exists()


def test_bd_rate_of_the_bench_on_hand_made_curves():
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("rd", Path(__file__).parent.parent / "bench" / "rd.py")
    rd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rd)
    reference = [(1000 * 2**i, 25 + 3 * i + 0.1 * i * i) for i in range(6)]
    assert rd.bd_rate(reference, reference) == pytest.approx(0, abs=1e-9)
    assert rd.bd_rate(reference, [(b / 2, q) for b, q in reference]) == pytest.approx(-50)
    # A curve 1 dB better, where 1 dB is worth about log2 bytes / 3 dB: about 2^(-1/3) - 1 = -21 % at the
    # bottom of the range, less where the curve flattens; between the two.
    assert -21 < rd.bd_rate(reference, [(b, q + 1) for b, q in reference]) < -15
    # no shared PSNR range, or too few points for a cubic: no value
    assert rd.bd_rate(reference, [(b, q + 100) for b, q in reference]) is None
    assert rd.bd_rate(reference, reference[:3]) is None


def test_png8_takes_the_palette_order_when_luminance_order_is_larger():
    """Labels that ramp 0..15 across the image compress best in that order; luminance order scrambles them."""
    rng = np.random.default_rng(3)
    palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    labels = np.tile(np.repeat(np.arange(16), 4), (64, 4))
    by_luma = _palette_image_bytes(*_luma_sorted(palette, labels))
    own = _palette_image_bytes(palette, labels)
    assert own < by_luma
    assert len(png8_bytes(palette, labels)) == own


def _luma_sorted(palette, labels):
    order, rank = kmq.imageio._luminance_order(palette)
    return palette[order], rank[labels]


def _palette_image_bytes(palette, labels):
    return len(png_of(kmq.imageio._palette_image(palette, labels)))
