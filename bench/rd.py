"""Rate-distortion: BD-rate of kmq ctx against pngquant --nofs and against PNG-8 of kmq's own pixels.

For every image, each coder gives a curve of (bytes, PSNR) points over K = 8, 16, ..., 256:
- kmq ctx (plain): kmq.compress(..., codec="ctx"), PSNR from its recorded J;
- kmq ctx --rdo 2 and the target mode (kmq.compress_to(psnr=...) aimed at each plain point's PSNR), when this
  build has them (they come from another branch; otherwise a row says so);
- PNG-8 of kmq's plain pixels (kmq.imageio.png8_bytes: the smallest of two palette orders by Pillow's
  optimize=True and zlib levels 9 and 6; grey: or 8-bit grey): the same PSNR as plain ctx;
- pngquant --nofs --speed 1 with K colours (when `pngquant` is on PATH), PSNR of its output against the input;
- lossless WebP of kmq's plain pixels (kmq.imageio.webp_lossless_bytes, method 6): one column, plain ctx against
  it, says how much of the gain is ctx's model of the labels (WebP's palette mode is the strongest general
  lossless coder of the same pixels at hand) rather than the quantizer.

BD-rate (Bjontegaard delta rate, VCEG-M33) of a test curve against a reference curve: fit log(bytes) as a
cubic polynomial of PSNR for each (numpy.polyfit), integrate both over the PSNR range the two curves share
(numpy.polyint), and take exp(mean difference) - 1: the average change in bytes at equal PSNR, negative when
the test coder is smaller. Fewer than 4 lossy points on either curve, or no shared range: no BD-rate ("-").

Images: the sample photos; two photos from outside samples/ (scikit-learn's china.jpg and flower.jpg, when
scikit-learn is installed: `pip install -e '.[bench]'`), summarised apart, as the issue's numbers must hold beyond
the samples; and generated images of other kinds (smooth gradient, noisy, saturated graphics, grey). Writes
bench/results/rd.md.

Run: .venv/bin/python bench/rd.py   (about 3 minutes on 2 cores)
"""
from __future__ import annotations

import inspect
import math
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import kmq  # noqa: E402
from kmq.imageio import load_image, png8_bytes, webp_lossless_bytes  # noqa: E402
from kmq.stats import psnr  # noqa: E402

SAMPLES = ["astronaut", "chelsea", "coffee", "ihc", "camera"]
KS = [8, 16, 32, 64, 128, 256]
GOAL = -45.0  # % BD-rate against pngquant (issue 9)
WEBP_COLUMN = "ctx vs WebP (lossless)"
GROUPS = {"samples": "sample photos", "other": "other photos", "gen": "generated"}  # by the name's prefix
RDO = 2.0

Curve = list[tuple[int, float]]  # (bytes, PSNR dB), lossy points only


def bd_rate(reference: Curve, test: Curve) -> float | None:
    """Bjontegaard delta rate of test against reference, in percent (negative: test needs fewer bytes)."""
    if min(len(reference), len(test)) < 4:
        return None
    fits, spans = [], []
    for curve in (reference, test):
        rate, quality = np.log([b for b, _ in curve]), np.array([q for _, q in curve])
        fits.append(np.polyfit(quality, rate, 3))
        spans.append((quality.min(), quality.max()))
    low, high = max(s[0] for s in spans), min(s[1] for s in spans)
    if high <= low:
        return None
    areas = [np.polyval(np.polyint(fit), high) - np.polyval(np.polyint(fit), low) for fit in fits]
    return float(np.expm1((areas[1] - areas[0]) / (high - low)) * 100)


def lossy(points: Curve) -> Curve:
    """Points with a finite PSNR: an image with fewer colours than K comes out lossless (inf dB)."""
    return [(b, q) for b, q in points if math.isfinite(q)]


# --- the coders ------------------------------------------------------------------------------------------

def quiet_compress(pixels: np.ndarray, k: int, **options) -> kmq.KmqImage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer colours than K: reported as a lossless point, skipped
        return kmq.compress(pixels, k, codec="ctx", **options)


def psnr_of(img: kmq.KmqImage) -> float:
    return psnr(img.distortion, img.channels)


def kmq_curve(pixels: np.ndarray, *, webp: bool = False, **options) -> tuple[Curve, Curve, Curve]:
    """(ctx curve, PNG-8 curve, lossless WebP curve: empty unless ``webp``) of kmq's quantization at each K."""
    ctx, png, lossless = [], [], []
    for k in KS:
        img = quiet_compress(pixels, k, **options)
        ctx.append((len(img.to_bytes()), psnr_of(img)))
        png.append((len(png8_bytes(img.palette, img.labels)), psnr_of(img)))
        if webp:
            lossless.append((len(webp_lossless_bytes(img.decode())), psnr_of(img)))
    return ctx, png, lossless


def target_curve(pixels: np.ndarray, targets: list[float]) -> Curve:
    points = []
    for target in targets:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = kmq.compress_to(pixels, psnr=target, codec="ctx")
        points.append((len(img.to_bytes()), psnr_of(img)))
    return points


def pngquant_curve(pixels: np.ndarray, exe: str) -> Curve:
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.png", Path(tmp) / "out.png"
        Image.fromarray(pixels[..., 0] if mode == "L" else pixels).save(src)
        for k in KS:
            subprocess.run([exe, "--nofs", "--speed", "1", "--force", "--output", str(out), str(k), str(src)],
                           check=True, capture_output=True)
            with Image.open(out) as im:
                got = np.asarray(im.convert(mode), np.float64).reshape(pixels.shape)
            j = float(((got - pixels) ** 2).sum(axis=2).mean())
            points.append((out.stat().st_size, psnr(j, pixels.shape[2])))
    return points


# --- images of other kinds -------------------------------------------------------------------------------

def generated() -> dict[str, np.ndarray]:
    """Deterministic 320 x 240 images unlike the sample photos."""
    rng = np.random.default_rng(9)
    h, w = 240, 320
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w]).reshape(2, 1, 1)
    smooth = np.stack([255 * x, 255 * y, 128 + 100 * np.sin(6 * x + 4 * y)], axis=2)
    noisy = smooth + rng.normal(0, 16, smooth.shape)
    # Saturated shapes and text over a hue ramp, drawn at 4x and reduced: flat areas with anti-aliased edges.
    big = Image.fromarray(np.uint8(np.stack([255 * x, 255 * (1 - x), 255 * y], axis=2))).resize((4 * w, 4 * h))
    draw = ImageDraw.Draw(big)
    for i in range(14):
        x0, y0 = rng.integers(0, 4 * w - 200), rng.integers(0, 4 * h - 200)
        box = (int(x0), int(y0), int(x0 + rng.integers(80, 400)), int(y0 + rng.integers(80, 300)))
        colour = tuple(int(c) for c in rng.choice([0, 255], 3))
        (draw.ellipse if i % 2 else draw.rectangle)(box, fill=colour, outline=(0, 0, 0), width=8)
    for row in range(6):
        draw.text((40, 60 + 150 * row), "kmq rate-distortion 0123456789", fill=(0, 0, 0), font_size=90)
    graphics = np.asarray(big.resize((w, h), Image.Resampling.LANCZOS))
    # Grey: a textured surface (blurred noise) under soft light, as a grey photo of a wall might be.
    texture = Image.fromarray(np.uint8(rng.integers(0, 256, (h, w)))).filter(ImageFilter.GaussianBlur(2))
    grey = 2.5 * (np.asarray(texture, np.float64) - 128) + 128 + 50 * np.cos(3 * x + 2 * y)
    as_u8 = lambda a: np.clip(np.rint(a), 0, 255).astype(np.uint8)  # noqa: E731
    return {"gen-smooth": as_u8(smooth), "gen-noisy": as_u8(noisy), "gen-graphics": graphics,
            "gen-grey": as_u8(grey)[..., None]}


def other_photos() -> dict[str, np.ndarray]:
    """scikit-learn's two sample photos (427 x 640, JPEG), none of ours; empty without scikit-learn."""
    try:
        from sklearn.datasets import load_sample_image
    except ImportError:
        return {}
    return {f"other-{name}": load_sample_image(f"{name}.jpg") for name in ("china", "flower")}


# --- the table -------------------------------------------------------------------------------------------

def variants() -> dict[str, Callable[[np.ndarray, Curve], Curve] | str]:
    """Name -> curve maker, or the reason this build lacks it."""
    out: dict[str, Callable[[np.ndarray, Curve], Curve] | str] = {"ctx": lambda px, plain: plain}
    if "rdo" in inspect.signature(kmq.compress).parameters:
        out[f"ctx --rdo {RDO:g}"] = lambda px, plain: kmq_curve(px, rdo=RDO)[0]
    else:
        out[f"ctx --rdo {RDO:g}"] = "not in this build (kmq.compress has no rdo)"
    if hasattr(kmq, "compress_to"):
        out["ctx --psnr (target)"] = lambda px, plain: target_curve(px, [q for _, q in lossy(plain)])
    else:
        out["ctx --psnr (target)"] = "not in this build (no kmq.compress_to)"
    return out


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f} %"


def _mean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else math.nan


def summary_rows(label: str, table: dict[str, list[float | None]], columns: list[str]) -> list[str]:
    rows = []
    for name, pick in (("mean", lambda v: sum(v) / len(v)), ("worst", max)):
        cells = []
        for column in columns:
            values = [v for v in table[column] if v is not None]
            cells.append(fmt(pick(values)) if values else "-")
        rows.append(f"| **{name}, {label}** | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    exe = shutil.which("pngquant")
    makers = variants()
    available = [name for name, maker in makers.items() if not isinstance(maker, str)]
    columns = [f"{v} vs {anchor}" for v in available for anchor in (["pngquant"] if exe else []) + ["PNG-8"]]
    columns.append(WEBP_COLUMN)
    head = ["image", *columns]
    lines = ["## Rate-distortion: BD-rate over K = 8..256", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    images = [(name, load_image(ROOT / "samples" / f"{name}.png")) for name in SAMPLES]
    images += list(other_photos().items()) + list(generated().items())
    groups: dict[str, dict[str, list[float | None]]] = {g: {c: [] for c in columns} for g in GROUPS}
    detail = ["### The points", "", "Bytes and PSNR (dB) per K: kmq ctx (plain), PNG-8 and lossless WebP of the same "
              "pixels, pngquant --nofs.", "", "| image | K | ctx bytes | PNG-8 bytes | WebP bytes | kmq PSNR | "
              "pngquant bytes | pngquant PSNR |", "|---|---|---|---|---|---|---|---|"]
    for name, pixels in images:
        pixels = pixels.reshape(pixels.shape[0], pixels.shape[1], -1)
        plain, png, webp = kmq_curve(pixels, webp=True)
        anchors = {"PNG-8": lossy(png)}
        quant = pngquant_curve(pixels, exe) if exe else [(0, math.nan)] * len(KS)
        if exe:
            anchors["pngquant"] = lossy(quant)
        for k, (c, q), (p, _), (w, _), (pb, pq) in zip(KS, plain, png, webp, quant):
            detail.append(f"| {name} | {k} | {c:,} | {p:,} | {w:,} | {q:.2f} | {pb:,} | {pq:.2f} |")
        group = groups[name.split("-")[0] if "-" in name else "samples"]
        cells = []
        for variant in available:
            curve = lossy(makers[variant](pixels, plain))
            for anchor in (["pngquant"] if exe else []) + ["PNG-8"]:
                value = bd_rate(anchors[anchor], curve)
                group[f"{variant} vs {anchor}"].append(value)
                cells.append(fmt(value))
        value = bd_rate(lossy(webp), lossy(plain))
        group[WEBP_COLUMN].append(value)
        cells.append(fmt(value))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    for group, label in GROUPS.items():
        if any(v is not None for v in groups[group]["ctx vs PNG-8"]):
            lines += summary_rows(label, groups[group], columns)
    for name, maker in makers.items():
        if isinstance(maker, str):
            lines.append(f"| {name} | {maker} |" + " |" * (len(columns) - 1))
    notes = [""]
    if exe:
        for group in ("samples", "other"):
            if not any(v is not None for v in groups[group]["ctx vs pngquant"]):
                continue
            means = {var: _mean(groups[group][f"{var} vs pngquant"]) for var in available}
            best = min(available, key=lambda var: means[var])
            notes.append(f"- Goal: BD-rate <= {GOAL:.0f} % against pngquant, {GROUPS[group]} (mean). Plain ctx: "
                         f"{means['ctx']:+.1f} %; best variant here, {best}: {means[best]:+.1f} % "
                         f"({'met' if means[best] <= GOAL else 'NOT met'}).")
    else:
        notes.append("- pngquant is not on PATH: its columns are skipped.")
    notes += [
        "- BD-rate: cubic fit of log(bytes) against PSNR for each curve, integrated over the PSNR range both "
        "cover (numpy polyfit/polyint); negative = fewer bytes at equal PSNR. Worst = the largest (least "
        "negative) value. Points that came out lossless (fewer colours than K) are left out.",
        "- pngquant: `--nofs --speed 1` and K colours; its PSNR is that of its own output against the input. "
        "PNG-8: kmq's plain pixels as `stats --reference` saves them (Pillow optimize=True, palette ordered by "
        "luminance; grey: the smaller of that and 8-bit grey).",
        f"- {WEBP_COLUMN}: plain ctx against libwebp's lossless coder (method 6) of the very same pixels: what "
        "ctx's model of the labels gains over the strongest general lossless coder at hand. Where it is small, "
        "the labels themselves are the cost (fine texture), and a lower BD-rate must come from the quantizer.",
        "- Other photos: scikit-learn's china.jpg and flower.jpg (427 x 640), not in samples/.",
        "- Generated images (320 x 240): gen-smooth (gradients), gen-noisy (the same plus Gaussian noise, "
        "sigma 16), gen-graphics (saturated shapes and text, anti-aliased), gen-grey (blurred-noise texture "
        "under soft light, one channel).",
        "",
    ]
    text = "\n".join(lines + notes + detail) + "\n"
    print("\n".join(notes))
    out = ROOT / "bench" / "results" / "rd.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
