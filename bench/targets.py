"""Byte-budget targets (`--max-bytes`, ctx): the file the search finds against a reference, and its cost.

Images: the byte-budget cases of bench/rdo.py's target_images (sample photos at 1 bpp, RGBA with varying
alpha, grey, graphics, noise, shapes over a noisy sky, a logo cut out) and images like the new-user trial's,
made here deterministically (a noisy 1200x800 photo, its JPEG at quality 90, its grey, an RGBA vignette
600x400), several budgets each.
Reference: the best file of a (K, rdo) grid (K = 4..512 by doubling, rdo 0, 8, 32 %) that fits the
budget, from one grid per image. Cost: CPU time of the search over one plain ctx compress at the K chosen
(CPU time, not wall: the machine is shared). The requirement "a target costs at most about 8 plain
compresses" is judged on the worst case.

Second table: the two targets against each other on small images (crops and reductions of the samples, a
gradient, a flat graphic): a budget of exactly the bytes of the `--psnr` file (plus what the metadata's
record of the budget takes over that of the PSNR) must buy at least its PSNR, and a higher PSNR target never a
smaller file.

Prints Markdown and writes bench/results/targets.md. Run: .venv/bin/python bench/targets.py (about 7 min of CPU time).
"""
from __future__ import annotations

import io
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

import kmq  # noqa: E402
from kmq import kmeans  # noqa: E402
from kmq.api import quantize_colors, quantized  # noqa: E402
from kmq.stats import psnr  # noqa: E402
from rdo import cpu, geomean, target_images  # noqa: E402

GRID_K = (4, 8, 16, 32, 64, 128, 256, 512)
GRID_RDO = (0.0, 8.0, 32.0)
LIMIT = 8.0


def trial_images() -> list[tuple[str, np.ndarray, list[int]]]:
    """The new-user trial's images (its generator's recipe), with the budgets where the search went wrong."""
    rng = np.random.default_rng(1)
    w, h = 1200, 800
    y, x = np.mgrid[0:h, 0:w].astype(float)
    img = np.stack([255 * x / w, 255 * y / h, 128 + 100 * np.sin(x / 90) * np.cos(y / 70)], -1)
    img += rng.normal(0, 8, img.shape)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    draw.ellipse((200, 150, 500, 450), fill=(220, 40, 40))
    draw.rectangle((700, 300, 1000, 700), fill=(30, 160, 60))
    draw.polygon([(100, 700), (400, 500), (600, 780)], fill=(250, 230, 20))
    photo = np.asarray(im)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    jpeg = np.asarray(Image.open(buf).convert("RGB"))
    alpha = np.clip(255 * (1 - ((x - w / 2) ** 2 / (w / 2) ** 2 + (y - h / 2) ** 2 / (h / 2) ** 2)), 0, 255)
    vignette = np.asarray(Image.fromarray(np.dstack([photo, alpha.astype(np.uint8)]), "RGBA").resize((600, 400)))
    grey = np.asarray(im.convert("L"))
    return [("trial: noisy photo 1200x800", photo, [30000, 100000]),
            ("trial: its JPEG (q 90)", jpeg, [30000]),
            ("trial: grey 1200x800", grey, [30000]),
            ("trial: RGBA vignette 600x400", vignette, [3500, 20000])]


def small_images() -> list[tuple[str, np.ndarray]]:
    """Small images like the new-user trial's, where its two searches disagreed."""
    def sample(name: str, mode: str = "RGB") -> Image.Image:
        with Image.open(ROOT / "samples" / name) as im:
            return im.convert(mode)

    y, x = np.mgrid[0:63, 0:97]
    gradient = np.stack([x * 255 // 96, y * 255 // 62, np.full_like(x, 128)], -1).astype(np.uint8)
    big = Image.new("RGB", (480, 320), "white")  # drawn 4x and reduced: anti-aliased edges, a few dozen colours
    draw = ImageDraw.Draw(big)
    draw.rectangle((40, 40, 200, 160), fill=(255, 0, 0))
    draw.ellipse((250, 60, 440, 280), fill=(0, 0, 255))
    draw.line((20, 300, 460, 200), fill=(0, 0, 0), width=9)
    return [("chelsea crop 141x217", np.asarray(sample("chelsea.png").crop((200, 60, 341, 277)))),
            ("coffee 157x101", np.asarray(sample("coffee.png").resize((157, 101), Image.Resampling.LANCZOS))),
            ("grey camera 131x89", np.asarray(sample("camera.png", "L").resize((131, 89), Image.Resampling.LANCZOS))),
            ("gradient 97x63", gradient),
            ("flat graphic 120x80", np.asarray(big.resize((120, 80), Image.Resampling.LANCZOS))),
            ("ihc crop 320x240", np.asarray(sample("ihc.png").crop((100, 100, 420, 340))))]


def record_bytes(target: dict) -> int:
    return len(json.dumps({"target": target}, separators=(",", ":")))


def agreement() -> list[str]:
    """--max-bytes given the size of the --psnr file: its PSNR against that file's, per image and PSNR."""
    lines = ["## The two targets against each other (ctx, small images)", "",
             "Budget: the bytes of the `--psnr` file, plus what recording the budget takes over recording the "
             "PSNR. The budget's file must be at least as good.", "",
             "| image | PSNR target | --psnr file: K, rdo, bytes, PSNR | budget "
             "| --max-bytes file: K, rdo, bytes, PSNR "
             "| dB over the --psnr file |", "|---|---:|---|---:|---|---:|"]
    worse, far, unordered, deltas = 0, 0, 0, []
    for name, pixels in small_images():
        sizes = []
        for target in (26.0, 30.0, 34.0):
            a = kmq.compress_to(pixels, psnr=target, codec="ctx")
            size = len(a.to_bytes())
            sizes.append(size)
            budget = size
            while budget != size + record_bytes({"max_bytes": budget}) - record_bytes({"psnr": target}):
                budget = size + record_bytes({"max_bytes": budget}) - record_bytes({"psnr": target})
            b = kmq.compress_to(pixels, max_bytes=budget, codec="ctx")
            pa, pb = psnr(a.distortion, a.channels), psnr(b.distortion, b.channels)
            delta = pb - pa if math.isfinite(pa) or math.isfinite(pb) else 0.0
            worse += delta < -1e-9
            far += delta < -0.1
            deltas.append(delta)
            row = (f"| {name} | {target:g} dB | {a.k}, {a.metadata.get('rdo', 0):g} %, {size:,}, {pa:.2f} | "
                   f"{budget:,} | {b.k}, {b.metadata.get('rdo', 0):g} %, {len(b.to_bytes()):,}, {pb:.2f} | "
                   f"{delta:+.2f} |")
            lines.append(row)
            print(row, flush=True)
        unordered += sum(later < earlier for earlier, later in zip(sizes, sizes[1:]))
    lines += ["", f"Budgets worse than the --psnr file: {worse} of {len(deltas)}, by over 0.1 dB {far} "
              f"(worst {min(deltas):+.2f} dB); "
              f"a higher PSNR target giving a smaller file: {unordered} times.", ""]
    return lines


def grid(pixels: np.ndarray) -> list[tuple[int, float, int, float]]:
    """(K, rdo, bytes, PSNR) of every grid file (K up to the image's colours), each K fitted once."""
    px = pixels if pixels.ndim == 3 else pixels[..., None]
    distinct = kmeans.distinct(px.reshape(-1, px.shape[2]))
    out = []
    for k in GRID_K:
        if k > len(distinct.colors):
            break
        fit = quantize_colors(distinct.colors, distinct.counts, k, seed=0, max_iter=300)
        for pct in GRID_RDO:
            img = quantized(px, distinct, k, seed=0, max_iter=300, codec="ctx", rdo=pct, fit=fit)
            out.append((img.k, pct, len(img.to_bytes()), psnr(img.distortion, img.channels)))
    return out


def main() -> None:
    cases = [(name, px, [s["max_bytes"] for s in specs if "max_bytes" in s]) for name, px, specs in target_images()]
    lines = ["## Byte-budget targets (ctx): the file found against a (K, rdo) grid, and the cost", "",
             f"Reference: the best file that fits of K = {', '.join(map(str, GRID_K))} x rdo "
             f"{', '.join(f'{r:g}' for r in GRID_RDO)} %. Cost: CPU time of the search over one plain ctx "
             "compress at the K chosen.", "",
             "| image | budget | K | rdo | bytes | PSNR | grid best (K, rdo) | grid PSNR | dB over grid "
             "| x plain compress |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    costs, gains = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, pixels, budgets in cases + trial_images():
            ref = grid(pixels)
            for budget in budgets:
                t, img = cpu(lambda: kmq.compress_to(pixels, max_bytes=budget, codec="ctx"))
                n, p = len(img.to_bytes()), psnr(img.distortion, img.channels)
                t_plain, _ = cpu(lambda: kmq.compress(pixels, img.k, codec="ctx").to_bytes())
                fit = [r for r in ref if r[2] <= budget]
                best = max(fit, key=lambda r: r[3]) if fit else None
                gain = p - best[3] if best else math.nan
                cost = t / t_plain
                costs.append(cost)
                if best and math.isfinite(gain):
                    gains.append(gain)
                ref_text = f"{best[0]}, {best[1]:g} %" if best else "none fits"
                ref_db = f"{best[3]:.2f}" if best else "-"
                row = (f"| {name} | {budget:,} | {img.k} | {img.metadata.get('rdo', 0):g} | {n:,} | {p:.2f} | "
                       f"{ref_text} | {ref_db} | {gain:+.2f} | {cost:.1f} |")
                lines.append(row)
                print(row, flush=True)
    worst = max(costs)
    lines += ["", f"Over the grid: mean {np.mean(gains):+.2f} dB, worst {min(gains):+.2f} dB. "
              f"Cost: geomean {geomean(costs):.1f}x, worst {worst:.1f}x a plain compress.",
              f"Status of \"a target costs at most about {LIMIT:g} plain compresses\" (worst case): "
              f"{'met' if worst <= LIMIT * 1.1 else 'NOT met'}.", ""]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lines += agreement()
    text = "\n".join(lines)
    print(text)
    (ROOT / "bench" / "results" / "targets.md").write_text(text)


if __name__ == "__main__":
    main()
