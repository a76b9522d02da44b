"""A target with no codec named: its search picks ctx or lzma per image (kmq.target._lzma_share)."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

import kmq
from conftest import SAMPLES
from kmq import target
from kmq.cli import main
from kmq.stats import psnr as psnr_of


def screenshot() -> np.ndarray:
    """A 160x96 settings window: a title bar, six lines of text and check boxes (277 colours, anti-aliased)."""
    im = Image.new("RGB", (160, 96), (246, 246, 246))
    draw = ImageDraw.Draw(im)
    draw.rectangle((0, 0, 159, 11), fill=(40, 70, 140))
    draw.text((3, 0), "kmq - Settings", fill=(255, 255, 255))
    for i in range(6):
        draw.text((4, 14 + 13 * i), f"Option {i}: compress tiles", fill=(30, 30, 30))
        draw.rectangle((140, 16 + 13 * i, 150, 24 + 13 * i), outline=(90, 90, 90),
                       fill=(200, 220, 255) if i % 2 else None)
    return np.asarray(im)


@pytest.fixture(scope="module")
def shot() -> np.ndarray:
    return screenshot()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    with Image.open(SAMPLES / "chelsea.png") as im:
        return np.asarray(im.convert("RGB"))[60:124, 150:214].copy()


def db(img: kmq.KmqImage) -> float:
    return psnr_of(img.distortion, img.channels)


@pytest.mark.parametrize("spec", [{"max_bytes": 600}, {"max_bytes": 1200}])
def test_a_screenshot_in_a_budget_gets_lzma_and_a_better_file(shot, spec):
    # ctx: K = 2, 14.31 dB in 600 bytes, K = 4, 24.44 dB in 1,200; lzma K = 4 27.06 dB, K = 77 56.67 dB
    chosen, ctx = kmq.compress_to(shot, **spec), kmq.compress_to(shot, codec="ctx", **spec)
    assert chosen.codec == "lzma" and chosen.metadata["target"] == spec
    assert len(chosen.to_bytes()) <= spec["max_bytes"]
    assert db(chosen) > db(ctx) + 10
    assert chosen.to_bytes() == kmq.compress_to(shot, codec="lzma", **spec).to_bytes()


def test_a_screenshot_at_a_psnr_gets_lzma_and_a_smaller_file(shot):
    # ctx 1,451 bytes, lzma 611 (K = 5 both)
    chosen, ctx = kmq.compress_to(shot, psnr=30), kmq.compress_to(shot, psnr=30, codec="ctx")
    assert chosen.codec == "lzma" and db(chosen) >= 30
    assert len(chosen.to_bytes()) < 0.5 * len(ctx.to_bytes())


@pytest.mark.parametrize("spec", [{"psnr": 30}, {"max_bytes": 1500}])
def test_a_photo_keeps_ctx_and_its_bytes(photo, spec, monkeypatch):
    # under 40 % of its pixels in its 16 commonest colours: ctx, without coding its labels both ways
    original = target._lzma_share
    monkeypatch.setattr(target, "_lzma_share", lambda *a: pytest.fail("a photo's labels coded both ways"))
    chosen = kmq.compress_to(photo, **spec)
    monkeypatch.setattr(target, "_lzma_share", original)
    assert chosen.codec == "ctx"
    assert chosen.to_bytes() == kmq.compress_to(photo, codec="ctx", **spec).to_bytes()


@pytest.mark.parametrize("codec", ["ctx", "raw", "lzma"])
def test_a_named_codec_is_searched_alone(shot, monkeypatch, codec):
    def compared(*args):
        raise AssertionError("a named codec is not compared")
    monkeypatch.setattr(target, "_lzma_share", compared)
    img = kmq.compress_to(shot, max_bytes=1200, codec=codec)
    assert img.codec == codec


def test_between_the_shares_both_codecs_are_searched_and_the_better_kept(shot, monkeypatch):
    monkeypatch.setattr(target, "_lzma_share", lambda s, k: 0.9)
    both = kmq.compress_to(shot, psnr=30)
    assert both.to_bytes() == kmq.compress_to(shot, psnr=30, codec="lzma").to_bytes()
    monkeypatch.setattr(target, "_lzma_share", lambda s, k: 0.9)
    photo_like = np.repeat(np.repeat(shot[::4, ::4], 4, 0), 4, 1)
    for spec in ({"psnr": 25}, {"max_bytes": 900}):
        best = kmq.compress_to(photo_like, **spec)
        ctx = kmq.compress_to(photo_like, codec="ctx", **spec)
        lzma = kmq.compress_to(photo_like, codec="lzma", **spec)
        if "psnr" in spec:
            assert len(best.to_bytes()) == min(len(ctx.to_bytes()), len(lzma.to_bytes()))
        else:
            assert best.distortion == min(ctx.distortion, lzma.distortion)


def test_a_budget_only_ctx_fits_falls_back_to_ctx(shot):
    # lzma's K = 1 file is ~100 bytes more than ctx's: a budget between them fits ctx's only
    smallest = len(kmq.compress_to(shot, max_bytes=10**6, k=1, codec="ctx").to_bytes())
    img = kmq.compress_to(shot, max_bytes=smallest + 20)
    assert img.codec == "ctx" and len(img.to_bytes()) <= smallest + 20


def test_bands_sample_whole_rows_spread_down_the_image(monkeypatch):
    labels = np.arange(400 * 10).reshape(400, 10)
    assert np.array_equal(target._bands(labels[:3]), labels[:3])
    monkeypatch.setattr(target, "_BAND", 8)
    monkeypatch.setattr(target, "_SAMPLE_PIXELS", 5 * 8 * 10)
    starts = [0, 98, 196, 294, 392]  # 5 bands of 8 rows from 0 to 392, evenly
    assert np.array_equal(target._bands(labels), np.concatenate([labels[y:y + 8] for y in starts]))
    # at least _BANDS of them: a wide image's one band was its title bar
    monkeypatch.setattr(target, "_SAMPLE_PIXELS", 8 * 10)
    assert np.array_equal(target._bands(labels), np.concatenate([labels[y:y + 8] for y in (0, 131, 261, 392)]))
    # and a _SAMPLE_PART of a large image
    monkeypatch.setattr(target, "_SAMPLE_PART", 4)
    assert target._bands(labels).shape == (96, 10)  # 1,000 pixels: 12 bands of 80


def test_cli_says_the_codec_a_target_chose(tmp_path, shot, photo):
    Image.fromarray(shot).save(tmp_path / "shot.png")
    Image.fromarray(photo).save(tmp_path / "photo.png")
    for name, codec in (("shot", "lzma"), ("photo", "ctx")):
        out = tmp_path / f"{name}.kmq"
        result = CliRunner().invoke(main, ["compress", str(tmp_path / f"{name}.png"), "--psnr", "30", "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert f": k={kmq.read(out).k}, codec {codec}, " in result.output
        assert kmq.read(out).codec == codec
    # without a target the line is as before: the codec is the one asked for (raw by default)
    result = CliRunner().invoke(main, ["compress", str(tmp_path / "shot.png"), "-k", "4", "-f"])
    assert result.exit_code == 0 and ": k=4, 2 bits/label, " in result.output


def test_a_batch_chooses_per_file(tmp_path, shot, photo):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(shot).save(folder / "shot.png")
    Image.fromarray(photo).save(folder / "photo.png")
    result = CliRunner().invoke(main, ["compress", str(folder), "--psnr", "30", "-o", str(tmp_path / "out"),
                                       "-j", "1", "--summary", "json"])
    assert result.exit_code == 0, result.output
    assert kmq.read(tmp_path / "out" / "shot.kmq").codec == "lzma"
    assert kmq.read(tmp_path / "out" / "photo.kmq").codec == "ctx"
    assert hashlib.sha256((tmp_path / "out" / "photo.kmq").read_bytes()).digest() == hashlib.sha256(
        kmq.compress_to(photo, psnr=30, codec="ctx").to_bytes()).digest()
    # what a script reads: the codec each file's search chose (the summary had only rdo)
    chosen = {Path(r["output"]).name: r["codec"] for r in json.loads(result.stdout)["results"]}
    assert chosen == {"photo.kmq": "ctx", "shot.kmq": "lzma"}


@pytest.mark.parametrize("big, flat", [(10, True), (9, False)])
def test_flat_counts_the_share_of_the_16_commonest_colours(big, flat):
    # one colour of `big` pixels, 15 of 2 and the rest single: the 16 commonest cover big + 30 of 100 pixels
    counts = [big] + [2] * 15 + [1] * (100 - big - 30)
    # (in no order: in order, rows of a ramp would differ 10x more down than along them: _stretched)
    colours = np.random.default_rng(0).permutation(np.repeat(np.arange(len(counts)), counts))
    pixels = np.stack([colours % 256, colours // 256, np.zeros_like(colours)], -1).astype(np.uint8).reshape(10, 10, 3)
    assert not target._stretched(pixels)
    assert target._flat(target._Search(pixels, 100, "ctx", 0, 300, {})) is flat


@pytest.mark.parametrize("axis", [0, 1])
def test_a_gradient_along_one_axis_gets_lzma(axis):
    # every row (or column) the same 128 colours, none common: the colour rule took it for a photo, and ctx's
    # file at 35 dB was 529 bytes (columns: 549), lzma's 243 (241)
    x = np.arange(128)
    row = np.stack([x * 2, 255 - x * 2, (x * 3) % 256], -1).astype(np.uint8)[None].repeat(48, 0)
    pixels = np.ascontiguousarray(row if axis == 0 else row.swapaxes(0, 1))
    assert target._repeating(pixels) and target._flat(target._Search(pixels, 128, "ctx", 0, 300, {}))
    chosen = kmq.compress_to(pixels, psnr=35)
    assert chosen.codec == "lzma" and db(chosen) >= 35
    assert len(chosen.to_bytes()) < 0.5 * len(kmq.compress_to(pixels, psnr=35, codec="ctx").to_bytes())
    # half the rows repeating is enough, a photo's none are
    assert target._repeating(np.repeat(np.arange(40, dtype=np.uint8).reshape(20, 2, 1), 3, axis=2).repeat(2, 0))
    assert not target._repeating(noisy_gradient())


def test_a_stretched_image_gets_lzma_and_a_better_file():
    # 6 rows of 30 random colours widened 20x: long runs along each row, rows unrelated, no colour common and no
    # row repeated, so the other rules took it for a photo; in 700 bytes ctx's search gave K = 4 at J ~5,200,
    # lzma's K = 23 at ~1,350
    small = np.random.default_rng(1).integers(0, 256, (6, 30, 3), dtype=np.uint8)
    wide = np.asarray(Image.fromarray(small).resize((600, 6), Image.Resampling.BILINEAR))
    assert target._stretched(wide) and target._stretched(wide.swapaxes(0, 1)) and not target._repeating(wide)
    chosen = kmq.compress_to(wide, max_bytes=700)
    assert chosen.codec == "lzma" and len(chosen.to_bytes()) <= 700
    assert chosen.distortion < 0.5 * kmq.compress_to(wide, max_bytes=700, codec="ctx").distortion
    # a photo's neighbours differ about as much either way, and a strip of one row has no pairs across
    assert not target._stretched(noisy_gradient()) and not target._stretched(wide[:1])


def noisy_gradient(height: int = 96, width: int = 128) -> np.ndarray:
    """Three ramps under Gaussian noise (sigma 8): a photo by the colour rule (no flat areas), whose high
    PSNRs need K far above 256."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / (width - 1), y * 255 / (height - 1), (x + y) * 255 / (height + width - 2)], axis=-1)
    noise = np.random.default_rng(0).normal(0, 8, base.shape)
    return np.clip(base + noise, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def gradient_at_38() -> tuple[np.ndarray, kmq.KmqImage]:
    pixels = noisy_gradient()
    return pixels, kmq.compress_to(pixels, psnr=38, codec="ctx")


@pytest.mark.parametrize("flat", [False, True])
def test_a_ctx_file_above_k_256_gets_lzma_where_it_is_smaller(gradient_at_38, monkeypatch, flat):
    # ctx's search: K = 1,288 in 17,741 bytes; lzma's K = 1,289 in 17,348 (its plain labels at that K cost
    # lzma under ctx's bytes, so both are searched and the smaller kept). The same for an image with flat
    # areas that the share sends to ctx.
    pixels, ctx = gradient_at_38
    if flat:
        monkeypatch.setattr(target, "_flat", lambda s: True)
        share = target._lzma_share
        monkeypatch.setattr(target, "_lzma_share", lambda s, k: 0.96 if k <= 256 else share(s, k))
    chosen = kmq.compress_to(pixels, psnr=38)
    assert len(ctx.palette) > 256 and chosen.codec == "lzma" and db(chosen) >= 38
    assert len(chosen.to_bytes()) < len(ctx.to_bytes())


@pytest.mark.parametrize("spec", [{"max_bytes": 600}, {"max_bytes": 1200}, {"psnr": 30.0}])
def test_no_labels_are_lzma_encoded_twice_by_a_search_and_its_write(shot, spec, monkeypatch):
    # The file returned was sized (encoded) by the search: writing it takes the payload kept (the old code
    # encoded it again: a 4000x3000 screenshot's 3 s), and an rdo file whose moves api undid is its K's
    # plain labels, sized once (the old search encoded 3 labellings twice at 1,200 bytes, 1 at 600 and 30 dB).
    from kmq.codecs import lzma_codec
    encoded: list[bytes] = []
    encode = lzma_codec.encode

    def counted(labels, palette):
        encoded.append(hashlib.sha256(np.ascontiguousarray(labels).tobytes() + palette.tobytes()).digest())
        return encode(labels, palette)
    monkeypatch.setattr(lzma_codec, "encode", counted)
    img = kmq.compress_to(shot, codec="lzma", **spec)
    data = img.to_bytes()
    assert len(encoded) == len(set(encoded))
    monkeypatch.setattr(lzma_codec, "encode", encode)
    assert data == kmq.compress_to(shot, codec="lzma", **spec).to_bytes()


def _text_strips() -> np.ndarray:
    """A 64x48 page of five dark strips (one grey level each) on white: lzma's files reach far lower J."""
    rng = np.random.default_rng(0)
    px = np.full((48, 64, 3), 240, np.uint8)
    for y in range(4, 44, 8):
        px[y:y + 4, 4:60] = rng.integers(0, 90, (1, 56, 3))[:, :, :1]
    return px


@pytest.mark.parametrize("budget", [300, 500])
def test_ctx_file_is_not_encoded_only_to_rank_it_against_lzma(budget, monkeypatch):
    """In a budget the lower J comes first, bytes only break a tie: ctx's file, sized by bounds, is not encoded
    for its rank when the two J differ (an 800x500 screenshot in 6,000 bytes: 0.06 s, a fifth of a plain
    compress); the file chosen is the one the full ranking picks."""
    px = _text_strips()
    s = target._Search(px, 256, "ctx", 0, 300, {"max_bytes": budget})
    img = target._run(s, None, budget)
    key = next(k for k, made in s.files.items() if made is img)
    low, high = s.sizes[key]
    assert low < high  # (bounds: the comparison below would have to encode it)
    sized = []
    size = target._Search.size

    def spy(self, k, rdo=0.0):  # noqa: ANN001, ANN202
        if self.codec == "ctx":
            sized.append((k, rdo))
        return size(self, k, rdo)
    monkeypatch.setattr(target._Search, "size", spy)
    found = target._better_with_lzma(s, img, None, budget)
    assert sized == []
    assert found.codec == "lzma" and found.distortion < img.distortion


def test_equal_j_in_a_budget_is_ranked_by_exact_bytes():
    """Both searches reach the lossless file: bytes decide, ctx's file encoded for that (as before)."""
    px = _text_strips()
    s = target._Search(px, 256, "ctx", 0, 300, {"max_bytes": 1200})
    img = target._run(s, None, 1200)
    key = next(k for k, made in s.files.items() if made is img)
    found = target._better_with_lzma(s, img, None, 1200)
    assert img.distortion == 0 and s.sizes[key][0] == s.sizes[key][1]  # (encoded for the tie)
    if found is not img:
        assert found.distortion == 0 and len(found.to_bytes()) < s.size(*key)
