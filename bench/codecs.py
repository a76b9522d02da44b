"""Payload codecs against the usual palette-image formats, at identical pixels.

For each sample photo and K in 16, 64, 256: kmq quantizes once; the same labels and palette are then written
as .kmq with each codec (raw, lzma, ctx), as a PNG-8 made with care (kmq.imageio.png8_bytes, as `stats
--reference`), as lossless WebP of the decoded image twice (Pillow's method 6 at its default quality, as
issue 6 set its target, and libwebp's smallest, method 6 at quality 100, the `stats --reference` one), and,
when `pngquant` is on PATH, by pngquant fed the decoded image (pngquant re-quantizes, so its pixels may
differ: its bytes are reported as they come). Also times the codec stage
(labels -> payload -> labels) at 12 MP. Prints a Markdown table and writes it to bench/results/codecs.md.

Run: .venv/bin/python bench/codecs.py   (about 2-4 minutes on 2 cores)
"""
from __future__ import annotations

import dataclasses
import io
import math
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import kmq  # noqa: E402
from kmq import codecs  # noqa: E402
from kmq.imageio import png8_bytes as careful_png8, webp_lossless_bytes  # noqa: E402

SAMPLES = ["astronaut", "chelsea", "coffee", "ihc", "camera"]
KS = [16, 64, 256]
TARGET_WEBP, TARGET_PNG = 0.80, 0.60
BIG = (4000, 3000)


def decoded_image(img) -> Image.Image:
    pixels = img.decode()
    return Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)


def png8_bytes(img) -> int:
    """The same pixels as a PNG-8 made with care: kmq.imageio.png8_bytes, the `stats --reference` one
    (the smaller of two palette orders by Pillow's optimize=True and levels 9 and 6; RGBA with tRNS). 0 above
    K = 256."""
    data = careful_png8(img.palette, img.labels)
    return 0 if data is None else len(data)


def webp_bytes(img) -> int:
    """The same pixels as lossless WebP at libwebp's most thorough setting: kmq.imageio.webp_lossless_bytes,
    the `stats --reference` one (method 6, quality 100: `cwebp -lossless -z 9`)."""
    return len(webp_lossless_bytes(img.decode()))


def webp_m6_bytes(img) -> int:
    """Lossless WebP as issue 6 set its target: Pillow, method 6, at Pillow's default quality (80, which for
    lossless is the effort: 2-20 % larger files than quality 100 on the sample photos)."""
    buf = io.BytesIO()
    decoded_image(img).save(buf, "WEBP", lossless=True, method=6, exact=True)
    return len(buf.getvalue())


def pngquant_bytes(img, k: int) -> int | None:
    exe = shutil.which("pngquant")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.png"
        decoded_image(img).convert("RGB").save(src)
        out = Path(tmp) / "out.png"
        subprocess.run([exe, "--nofs", "--speed", "1", "--force", "--output", str(out), str(k), str(src)],
                       check=False, capture_output=True)
        return out.stat().st_size if out.exists() else None


def file_bytes(img, codec: str) -> int:
    return len(dataclasses.replace(img, codec=codec).to_bytes())


def codec_times(labels: np.ndarray, palette: np.ndarray, codec: str) -> tuple[float, float]:
    """Seconds to encode and to decode the labels with ``codec`` (checking the round trip)."""
    cid = codecs.codec_id(codec)
    t0 = time.perf_counter()
    payload = codecs.encode(cid, labels, palette)
    t1 = time.perf_counter()
    out = codecs.decode(cid, payload, labels.shape[1], labels.shape[0], palette)
    t2 = time.perf_counter()
    assert np.array_equal(out, labels)
    return t1 - t0, t2 - t1


def decode_peak(payload: bytes, labels: np.ndarray, palette: np.ndarray, codec: str) -> int:
    """Peak bytes numpy and Python allocate while decoding (a separate run: tracing slows numpy down)."""
    tracemalloc.start()
    codecs.decode(codecs.codec_id(codec), payload, labels.shape[1], labels.shape[0], palette)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def main() -> None:
    has_pngquant = shutil.which("pngquant") is not None
    head = ["image", "K", "raw", "lzma", "ctx", "PNG-8", "pngquant", "WebP m6", "WebP -z 9", "ctx/WebP m6",
            "ctx/WebP -z 9", "ctx/PNG-8", "ctx enc s", "ctx dec s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    r_webp, r_best, r_png = [], [], []
    for name in SAMPLES:
        for k in KS:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                img = kmq.compress(ROOT / "samples" / f"{name}.png", k)
            sizes = {c: file_bytes(img, c) for c in ("raw", "lzma", "ctx")}
            png, webp, best = png8_bytes(img), webp_m6_bytes(img), webp_bytes(img)
            pq = pngquant_bytes(img, k) if has_pngquant else None
            enc, dec = codec_times(img.labels, img.palette, "ctx")
            r_webp.append(sizes["ctx"] / webp)
            r_best.append(sizes["ctx"] / best)
            r_png.append(sizes["ctx"] / png)
            row = [name, str(img.k), *(f"{sizes[c]:,}" for c in ("raw", "lzma", "ctx")), f"{png:,}",
                   "-" if pq is None else f"{pq:,}", f"{webp:,}", f"{best:,}", f"{r_webp[-1]:.3f}",
                   f"{r_best[-1]:.3f}", f"{r_png[-1]:.3f}", f"{enc:.2f}", f"{dec:.2f}"]
            lines.append("| " + " | ".join(row) + " |")
            print(lines[-1], flush=True)
    gw, gb, gp = geomean(r_webp), geomean(r_best), geomean(r_png)
    summary = [
        "",
        f"Geometric means over the {len(r_webp)} rows: ctx/WebP m6 = {gw:.3f} (issue 6's target <= {TARGET_WEBP}, "
        f"against Pillow's method 6 at its default quality: {'met' if gw <= TARGET_WEBP else 'NOT met'}); "
        f"ctx/WebP -z 9 = {gb:.3f} (against libwebp's smallest lossless file, method 6 at quality 100, what "
        f"`stats --reference` reports: {'met' if gb <= TARGET_WEBP else 'NOT met'}); ctx/PNG-8 = {gp:.3f} "
        f"(target <= {TARGET_PNG}: {'met' if gp <= TARGET_PNG else 'NOT met'}).",
        "",
        "Sizes are whole files in bytes at identical pixels (kmq's K-Means labels and palette), except "
        + ("pngquant, which re-quantizes the decoded image with `--nofs` and K colours, so its pixels differ."
           if has_pngquant else "pngquant, not on PATH here, so skipped."),
        "",
    ]
    big = big_rows()
    text = "\n".join(["## Payload codecs", "", *lines, *summary, *big]) + "\n"
    print("\n".join(summary + big))
    out = ROOT / "bench" / "results" / "codecs.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out.relative_to(ROOT)}")


def big_rows() -> list[str]:
    """Codec-stage times at 12 MP: a sample upscaled to 4000x3000, quantized by Pillow (median cut, no
    dither) to keep the bench short; the labels' statistics are those of a smooth photo."""
    with Image.open(ROOT / "samples" / "coffee.png") as im:
        big = im.convert("RGB").resize(BIG, Image.Resampling.LANCZOS)
    lines = [f"Codec stage at {BIG[0]}x{BIG[1]} ({BIG[0] * BIG[1] / 1e6:.0f} MP, coffee.png upscaled, "
             "Pillow median-cut labels); targets: encode <= 3 s, decode <= 2 s.", "",
             "| K | codec | payload bytes | encode s | decode s | decode peak MB (numpy, traced) |",
             "|---|---|---|---|---|---|"]
    for k in (16, 256):
        q = big.quantize(k, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        labels = np.asarray(q).astype(np.uint16)
        kk = int(labels.max()) + 1
        palette = np.array(q.getpalette()[:3 * kk], np.uint8).reshape(kk, 3)
        for codec in ("lzma", "ctx"):
            cid = codecs.codec_id(codec)
            payload = codecs.encode(cid, labels, palette)
            enc, dec = codec_times(labels, palette, codec)
            peak = decode_peak(payload, labels, palette, codec)
            size = len(payload)
            lines.append(f"| {kk} | {codec} | {size:,} | {enc:.2f} | {dec:.2f} | {peak / 1e6:.0f} |")
            print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    main()
