"""What `--dither fs` buys and costs: the error seen from a step back, J, ctx file size and time.

Run from the repository root (`make bench`, or `.venv/bin/python bench/dither.py`). Prints Markdown and writes
it to bench/results/dither.md.

For each image and K, kmq.compress runs twice (dither "none" and "fs", same seed, codec ctx). The blurred error
is kmq.dither.blurred_error: the mean squared difference per sample between the original and the decoded
image, both blurred by a Gaussian of sigma = 1.5 px (what the eye averages from a viewing distance). The
claim is about photos, in every mode: the samples' photos as L, RGB and RGBA (with a real alpha channel:
a soft vignette and a transparent disc) at K = 8, 16, 64, 300 (K = 300 is lossless for L, so not counted).
Other kinds of image (a smooth gradient, noise, flat graphics, a grey ramp, the RGBA logo) are reported apart.

Speed: in-process, best of 2, on astronaut resampled to 4000x3000 (12 MP, as bench/speed.py) at K = 16.

`bench/dither.py --figure` remakes docs/dither.png, the README's side-by-side crop.
"""
from __future__ import annotations

import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import kmq  # noqa: E402
import photos as kinds  # noqa: E402  (dither.py has its own photos())
from kmq import dither  # noqa: E402
from kmq.imageio import clear_transparent  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "dither.md"
SAMPLES = ROOT / "samples"
PHOTOS = ["astronaut", "chelsea", "coffee", "ihc"]
KS = [8, 16, 64, 300]
SEED = 0


def with_alpha(rgb: np.ndarray) -> np.ndarray:
    """RGB -> RGBA with a real alpha: a soft radial vignette (opaque centre) and a fully transparent disc."""
    h, w = rgb.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot((x - w / 2) / (w / 2), (y - h / 2) / (h / 2))
    alpha = np.clip(255 * (1.3 - r), 0, 255)
    alpha[np.hypot(x - w * 0.8, y - h * 0.25) < min(h, w) * 0.12] = 0
    return np.dstack([rgb, alpha.astype(np.uint8)])


def photos() -> list[tuple[str, np.ndarray]]:
    out = []
    for name in PHOTOS:
        rgb = np.asarray(Image.open(SAMPLES / f"{name}.png").convert("RGB"))
        out += [(f"{name} L", np.asarray(Image.fromarray(rgb).convert("L"))), (f"{name} RGB", rgb),
                (f"{name} RGBA", with_alpha(rgb))]
    out.append(("camera L", np.asarray(Image.open(SAMPLES / "camera.png").convert("L"))))
    return out


def others() -> list[tuple[str, np.ndarray]]:
    y, x = np.mgrid[0:384, 0:512].astype(np.float64)
    gradient = np.dstack([x / 511 * 255, y / 383 * 255, 128 + 100 * np.sin(x / 80)]).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    # Flat colours with anti-aliased edges: drawn at 4x, reduced.
    big = Image.new("RGB", (2048, 1536), (245, 245, 240))
    draw = ImageDraw.Draw(big)
    for i, colour in enumerate([(200, 30, 40), (20, 90, 200), (250, 200, 0), (30, 150, 60), (90, 40, 120)]):
        draw.ellipse((100 + 350 * i, 200 + 120 * i, 600 + 350 * i, 700 + 120 * i), fill=colour)
        draw.rectangle((80 * i, 1200 - 60 * i, 400 + 80 * i, 1500), fill=colour[::-1])
    graphics = np.asarray(big.resize((512, 384), Image.Resampling.LANCZOS))
    ramp = np.broadcast_to(np.linspace(0, 255, 512)[None, :], (128, 512)).astype(np.uint8)
    logo = kinds.logo_cutout()  # logo.png itself is opaque: cut out, it has real alpha
    return [("gradient RGB", gradient), ("noise RGB", noise), ("graphics RGB", graphics), ("ramp L", ramp),
            ("logo RGBA", logo)]


def case(name: str, pixels: np.ndarray, k: int) -> dict | None:
    plain = kmq.compress(pixels, k, seed=SEED, codec="ctx")
    if plain.distortion == 0:
        return None  # lossless at this K: nothing to dither
    fs = kmq.compress(pixels, k, seed=SEED, codec="ctx", dither="fs")
    # Against the pixels as kmq reads them: alpha 0 as (0, 0, 0, 0), its hidden colour not kept.
    seen = clear_transparent(pixels) if pixels.ndim == 3 and pixels.shape[2] == 4 else pixels
    blur_plain = dither.blurred_error(seen, plain.decode().reshape(pixels.shape))
    blur_fs = dither.blurred_error(seen, fs.decode().reshape(pixels.shape))
    return {"image": name, "k": plain.k, "j_plain": plain.distortion, "j_fs": fs.distortion,
            "blur_plain": blur_plain, "blur_fs": blur_fs, "bytes_plain": len(plain.to_bytes()),
            "bytes_fs": len(fs.to_bytes())}


def geomean(values: list[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def table(rows: list[dict]) -> list[str]:
    lines = ["| image | K | blurred error none → fs | ratio | J none → fs | ratio | ctx bytes none → fs "
             "| ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['image']} | {r['k']} | {r['blur_plain']:.2f} → {r['blur_fs']:.2f} | "
                     f"{r['blur_fs'] / r['blur_plain']:.3f} | {r['j_plain']:.1f} → {r['j_fs']:.1f} | "
                     f"{r['j_fs'] / r['j_plain']:.2f} | {r['bytes_plain']:,} → {r['bytes_fs']:,} | "
                     f"{r['bytes_fs'] / r['bytes_plain']:.2f} |")
    return lines


def summary(rows: list[dict]) -> dict:
    def ratios(a, b):
        return [r[a] / r[b] for r in rows]
    blur, j, size = ratios("blur_fs", "blur_plain"), ratios("j_fs", "j_plain"), ratios("bytes_fs", "bytes_plain")
    worst = max(rows, key=lambda r: r["blur_fs"] / r["blur_plain"])
    return {"n": len(rows), "below": sum(b < 1 for b in blur), "blur_gm": geomean(blur), "blur_worst": max(blur),
            "blur_best": min(blur), "worst_case": f"{worst['image']} K={worst['k']}", "j_gm": geomean(j),
            "j_worst": max(j), "size_gm": geomean(size), "size_worst": max(size)}


def summary_line(label: str, s: dict) -> str:
    return (f"| {label} | {s['n']} | {s['below']} of {s['n']} | {s['blur_gm']:.3f} | {s['blur_worst']:.3f} "
            f"({s['worst_case']}) | {s['blur_best']:.3f} | {s['j_gm']:.2f} (worst {s['j_worst']:.2f}) | "
            f"{s['size_gm']:.2f} (worst {s['size_worst']:.2f}) |")


def best_of(n: int, fn) -> float:
    best = math.inf
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def speed() -> list[tuple[str, float]]:
    big = np.asarray(Image.open(SAMPLES / "astronaut.png").convert("RGB")
                     .resize((4000, 3000), Image.Resampling.LANCZOS))
    rows = [("12 MP RGB K=16: kmq.compress, dither none", best_of(2, lambda: kmq.compress(big, 16, seed=SEED))),
            ("12 MP RGB K=16: kmq.compress, dither fs", best_of(2, lambda: kmq.compress(big, 16, seed=SEED,
                                                                                         dither="fs")))]
    modes = [("L", np.asarray(Image.fromarray(big).convert("L"))[:, :, None]), ("RGB", big),
             ("RGBA", with_alpha(big))]
    for mode, pixels in modes:
        palette, _, _ = kmq.api.quantize(pixels.reshape(-1, pixels.shape[2]), 16, seed=SEED)
        path = "Pillow" if mode == "RGB" else "wavefront"
        rows.append((f"12 MP {mode} K=16: floyd_steinberg alone ({path})",
                     best_of(1 if mode == "RGBA" else 2, lambda: dither.floyd_steinberg(pixels, palette))))
    small = big[::2, ::2][:1224, :1632].copy()
    palette, _, _ = kmq.api.quantize(small.reshape(-1, 3), 300, seed=SEED)
    rows.append(("2 MP RGB K=300: floyd_steinberg alone (wavefront)",
                 best_of(1, lambda: dither.floyd_steinberg(small, palette))))
    return rows


FIGURE = ROOT / "docs" / "dither.png"
FIGURE_CROP = ("coffee", 16, (0, 0, 300, 200))  # image, K (fitted on the whole image), box
FIGURE_SCALE = 2  # nearest-neighbour, so single pixels stay visible


def figure() -> None:
    """docs/dither.png: the same crop at K = 16, plain beside --dither fs, each captioned with its J."""
    name, k, box = FIGURE_CROP
    rgb = np.asarray(Image.open(SAMPLES / f"{name}.png").convert("RGB"))
    panels = []
    for mode in ("none", "fs"):
        img = kmq.compress(rgb, k, seed=SEED, dither=mode)
        crop = Image.fromarray(img.decode()).crop(box)
        crop = crop.resize((crop.width * FIGURE_SCALE, crop.height * FIGURE_SCALE), Image.Resampling.NEAREST)
        caption = f"K = {k}, --dither {mode}: J {img.distortion:.0f}, blurred error " \
                  f"{dither.blurred_error(rgb, img.decode()):.1f}"
        panels.append((crop, caption))
    gap, head = 12, 28
    w, h = panels[0][0].size
    canvas = Image.new("RGB", (2 * w + 3 * gap, h + head + gap), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (crop, caption) in enumerate(panels):
        x = gap + i * (w + gap)
        draw.text((x, 6), caption, fill=(34, 34, 34), font=ImageFont.load_default(size=15))
        canvas.paste(crop, (x, head))
    canvas.save(FIGURE, optimize=True)
    print(f"wrote {FIGURE.relative_to(ROOT)}: {FIGURE.stat().st_size:,} bytes")


def main() -> None:
    if "--figure" in sys.argv:
        figure()
        return

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    photo_rows, other_rows = [], []
    for rows, images in ((photo_rows, photos()), (other_rows, others())):
        for name, pixels in images:
            for k in KS:
                log(f"{name} K={k}")
                r = case(name, pixels, k)
                if r is not None:
                    rows.append(r)
    log("speed")
    timings = speed()
    sp, so = summary(photo_rows), summary(other_rows)
    added = timings[1][1] - timings[0][1]
    lines = [
        "# Dithering: what `--dither fs` buys and costs",
        "",
        f"Measured by `bench/dither.py` ({platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}); reproduce with `make bench`. Blurred error: mean squared difference per "
        "sample between original and decoded image after a Gaussian blur of sigma 1.5 px "
        "(`kmq.dither.blurred_error`). Ratios are fs / none at the same K and seed; files use codec ctx.",
        "",
        "## Targets",
        "",
        "| target | measured | status |",
        "|---|---|---|",
        f"| photos, every mode, K = 8..300: fs's blurred error below none's on each | {sp['below']} of {sp['n']} "
        f"(worst ratio {sp['blur_worst']:.3f}, {sp['worst_case']}) | "
        f"**{'met' if sp['below'] == sp['n'] else 'not met'}** |",
        f"| photos: geometric mean of the ratio ≤ 0.85 | {sp['blur_gm']:.3f} | "
        f"**{'met' if sp['blur_gm'] <= 0.85 else 'not met'}** |",
        f"| 12 MP RGB, K = 16: dithering adds ≤ 1 s | {added:+.2f} s "
        f"({timings[0][1]:.2f} s → {timings[1][1]:.2f} s) | "
        f"**{'met' if added <= 1 else 'not met'}** |",
        "",
        "## Summary",
        "",
        "| images | cases | fs below none | blurred-error ratio, geometric mean | worst | best | J ratio | "
        "ctx size ratio |",
        "|---|---|---|---|---|---|---|---|",
        summary_line("photos (L, RGB, RGBA)", sp),
        summary_line("other kinds", so),
        "",
        "## Time",
        "",
        "| what | seconds |",
        "|---|---|",
        *[f"| {what} | {t:.2f} |" for what, t in timings],
        "",
        "## Photos",
        "",
        *table(photo_rows),
        "",
        "## Other kinds of image",
        "",
        *table(other_rows),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
