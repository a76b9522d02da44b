"""Speed, memory and distortion of `kmq compress` against the tutorial's scikit-learn pipeline, Pillow's
quantizers, ImageMagick's and pngquant (those two when installed; kmeans-colors is a Rust crate, which this
machine's registries do not reach); the pixel-scaling table; `kmq decompress` against a plain Pillow PNG save.

Run from the repository root with the bench extra installed (`make bench`, or `.venv/bin/python
bench/speed.py`). Prints Markdown and writes it to bench/results/speed.md.

kmq's modules are byte-compiled first (`compileall`), as `pip install` does: without it, an environment
with PYTHONDONTWRITEBYTECODE=1 recompiles them in every process, ~0.1 s that no installed kmq pays.

Every measurement is a fresh child process: its wall time is the end-to-end time a user sees (interpreter
start, imports, decode, work, file written) and its peak memory is the child's own ru_maxrss (os.wait4).
Distortion J is the mean over pixels of the squared Euclidean distance (0..255 units, summed over
channels) between the original pixel and the one each tool's output decodes to; PSNR = 10 log10(255^2 /
(J / channels)). scikit-learn's J is measured as kmq's is (centroids rounded to a uint8 palette, every
pixel relabelled to its nearest entry) and also as the tutorial computes it (inertia_ / pixels, float
centroids, no file).

Large images are made by bench/photos.py from samples/ and synthetic content (astronaut resampled; chelsea
upscaled with a light gradient, "smooth"; coffee upscaled plus Gaussian noise, "noisy"; a full-saturation
hue sweep with flat shapes and the logo, "saturated"; a mosaic of 1:1 crops of every sample, "detailed"; ihc
upscaled with sensor-like noise and saved as a JPEG, "phone"); nothing big is committed. The bulk set is 48
tiles of 256x256 cut from the first five kinds made at 1024x768. At 48 MP the scaling table runs K = 16;
`bench_48mp` adds the peak memory at K = 256 and 1024 (the noisy kind, millions of colours, and it under random
alpha).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The RGBA rows' worker times kmq.compress in its own process: numpy loads there as in the kmq command, without
# huge pages (see kmq/__main__.py), so that the rows compare kmq with itself rather than with the kernel's
# compaction stalls (12 MP under random alpha at K = 256: 1.8 s, or 3.0-3.8 s with them).
if sys.argv[1:3] == ["--worker", "rgba"]:
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

import numpy as np  # noqa: E402
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
import photos  # noqa: E402  (bench/photos.py, beside this script)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "speed.md"
# This checkout's kmq, here and in every process started from here (workers, the kmq command), also where
# the venv's editable install is another checkout's (a git worktree measured with the main tree's venv).
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
BIN = Path(sys.executable).parent
SAMPLES = ["astronaut", "chelsea", "coffee", "ihc", "camera"]
KS = [16, 64, 256]
SEED = 0
PNG_LEVEL = 6  # the level kmq writes truecolor PNGs, and palette PNGs over 2^21 pixels, at (12 MP here)
SIZES = [("0.26 MP", 512, 512), ("2 MP", 1632, 1224), ("12 MP", 4000, 3000), ("48 MP", 8000, 6000)]


# ------------------------------------------------------------------------------------------------ workers
# `speed.py --worker NAME IMAGE K OUT` runs one contender once, in its own process, as a user would.


def _worker(name: str, image: str, k: int, out: str) -> None:
    if name == "tutorial":
        from sklearn.cluster import KMeans

        im = Image.open(image)
        pixels = np.asarray(im)
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        x = pixels.reshape(-1, channels).astype(np.float64)
        km = KMeans(n_clusters=k, n_init="auto", max_iter=300, random_state=42).fit(x)
        bits = max(1, math.ceil(math.log2(k)))
        labels = km.labels_.astype(np.uint32)
        # The tutorial's file: codebook as uint8 then the labels packed at ceil(log2 K) bits each.
        label_bits = ((labels[:, None] >> np.arange(bits - 1, -1, -1, dtype=np.uint32)) & 1).astype(np.uint8)
        with open(out, "wb") as f:
            f.write(np.clip(np.rint(km.cluster_centers_), 0, 255).astype(np.uint8).tobytes())
            f.write(np.packbits(label_bits.reshape(-1)).tobytes())
        np.savez(out + ".npz", centers=km.cluster_centers_, inertia=km.inertia_, n=len(x))
    elif name in ("mediancut", "fastoctree"):
        im = Image.open(image)
        rgb = im.convert("RGB")  # both methods want RGB; a grey image comes back grey via the palette
        method = Image.Quantize.MEDIANCUT if name == "mediancut" else Image.Quantize.FASTOCTREE
        rgb.quantize(colors=k, method=method, dither=Image.Dither.NONE).save(out, compress_level=PNG_LEVEL)
    elif name == "inproc":
        # K-Means of small photos in process (no start-up, no decode): the best of 5 per tile and K. The tiles:
        # IMAGE (the 256x256 astronaut) and the centre 256x256 of each kind made at 1024x768 (the bulk set's
        # kinds, not one of its tiles), since one photo's time said little of another's (noise: twice the
        # astronaut's).
        import kmq
        from kmq import kmeans

        tiles = {"astronaut 256x256": np.asarray(Image.open(image))}
        for kind, make in photos.KINDS.items():
            tiles[f"{kind} centre"] = np.asarray(make(1024, 768).crop((384, 256, 640, 512)))
        # Its CPU time too (least of the 5): on a shared machine the wall time also counts other jobs' turns.
        times: dict[str, dict] = {}
        for label, pixels in tiles.items():
            row: dict = {"colours": len(kmeans.distinct(pixels.reshape(-1, 3)).counts), "wall": {}, "cpu": {}}
            for kk in (16, 64, 256):
                wall = cpu = math.inf
                for _ in range(5):
                    t, c = time.perf_counter(), time.process_time()
                    kmq.compress(pixels, k=kk)
                    wall, cpu = min(wall, time.perf_counter() - t), min(cpu, time.process_time() - c)
                row["wall"][kk], row["cpu"][kk] = wall, cpu
            times[label] = row
        print(json.dumps(times))
    elif name == "rgba":
        # kmq.compress of an image in process, alpha kept or dropped (out = "rgb" | "rgba"): time and J.
        import kmq

        pixels = np.asarray(Image.open(image).convert("RGBA" if out == "rgba" else "RGB"))
        t, cpu = time.perf_counter(), time.process_time()
        img = kmq.compress(pixels, k=k)
        print(json.dumps({"inner": time.perf_counter() - t, "cpu": time.process_time() - cpu,
                          "j": img.distortion}))
    elif name == "decode":
        t = time.perf_counter()
        np.asarray(Image.open(image).convert("RGB"))
        print(json.dumps({"inner": time.perf_counter() - t}))
    elif name == "pillow-save":
        # The decoded pixels as an RGB array, which is what a program holding them would save.
        pixels = np.asarray(Image.open(image).convert("RGB"))
        t = time.perf_counter()
        Image.fromarray(pixels).save(out, compress_level=PNG_LEVEL)
        print(json.dumps({"inner": time.perf_counter() - t}))
    elif name == "pillow-save-palette":
        # The same pixels as the palette image kmq itself writes for K <= 256.
        im = Image.open(image)
        im.load()
        t = time.perf_counter()
        im.save(out, compress_level=PNG_LEVEL)
        print(json.dumps({"inner": time.perf_counter() - t}))
    else:
        raise SystemExit(f"unknown worker {name}")


# ------------------------------------------------------------------------------------------------ running


# A child's ru_maxrss starts from its parent's resident size at fork, and this process holds whole images:
# so every measured command is started by a small launcher process (no numpy, a few MB), which reaps it
# with os.wait4 and reports its wall time and its own peak memory.
_LAUNCHER_CODE = r"""
import json, os, subprocess, sys, tempfile, time
for line in sys.stdin:
    cmd, cwd = json.loads(line)
    out_f, err_f = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    out_f.seek(0); err_f.seek(0)
    print(json.dumps([wall, usage.ru_maxrss / 1024.0, os.waitstatus_to_exitcode(status),
                      out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace")[-2000:]]),
          flush=True)
"""
_launcher: subprocess.Popen | None = None


def run_reaped(cmd: list[str]) -> tuple[float, float, str]:
    """Run cmd to completion: (wall seconds, peak resident MB of that process alone, its stdout)."""
    global _launcher
    if _launcher is None:
        _launcher = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER_CODE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
    assert _launcher.stdin is not None and _launcher.stdout is not None
    _launcher.stdin.write(json.dumps([cmd, str(ROOT)]) + "\n")
    _launcher.stdin.flush()
    wall, mem, code, out, err = json.loads(_launcher.stdout.readline())
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({code}): {err}")
    return wall, mem, out


def best_of(n: int, cmd: list[str]) -> tuple[float, float, str]:
    """The fastest of n runs (the machine is shared: the minimum is the least disturbed), its memory."""
    runs = [run_reaped(cmd) for _ in range(n)]
    return min(runs, key=lambda r: r[0])


def worker_cmd(name: str, image: Path, k: int, out: Path) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", name, str(image), str(k), str(out)]


# ------------------------------------------------------------------------------------------------ measuring


def load_pixels(path: Path) -> np.ndarray:
    """(N, C) uint8 pixels of an image file, C = 1 for grey, 3 for colour."""
    im = Image.open(path)
    im = im.convert("L") if im.mode in ("L", "I", "I;16", "1") else im.convert("RGB")
    a = np.asarray(im)
    return a.reshape(a.shape[0] * a.shape[1], -1)


def distortion(original: np.ndarray, decoded: np.ndarray) -> float:
    d = original.astype(np.int64) - decoded.astype(np.int64)
    return float(np.einsum("nc,nc->", d, d) / original.shape[0])


def nearest_palette_j(original: np.ndarray, centers: np.ndarray) -> float:
    """J after rounding float centroids to a uint8 palette and relabelling every pixel to its nearest."""
    from kmq import kmeans

    palette = np.unique(np.clip(np.rint(centers), 0, 255).astype(np.uint8), axis=0)
    colors, counts, _ = kmeans.distinct_colors(original)
    _, sq = kmeans.nearest(colors, palette)
    return float(np.dot(sq.astype(np.float64), counts) / original.shape[0])


def psnr(j: float, channels: int) -> float:
    return float("inf") if j == 0 else 10 * math.log10(255.0**2 / (j / channels))


def decoded_output(path: Path, channels: int) -> np.ndarray:
    im = Image.open(path)
    im = im.convert("L") if channels == 1 else im.convert("RGB")
    a = np.asarray(im)
    return a.reshape(a.shape[0] * a.shape[1], -1)


def measure(name: str, image: Path, k: int, tmp: Path, original: np.ndarray, reps: int) -> dict:
    """One contender on one image at one K: time (s), peak memory (MB), J (as decoded), extra fields."""
    channels = original.shape[1]
    if name == "kmq":
        out = tmp / "out.kmq"
        cmd = [str(BIN / "kmq"), "compress", str(image), "-k", str(k), "-o", str(out), "-f", "-q",
               "--seed", str(SEED)]
        wall, mem, _ = best_of(reps, cmd)
        import kmq

        img = kmq.read(out)
        j = distortion(original, img.decode().reshape(original.shape[0], -1))
        return {"time": wall, "mem": mem, "j": j, "size": out.stat().st_size}
    if name == "tutorial":
        out = tmp / "tutorial.bin"
        wall, mem, _ = best_of(reps, worker_cmd("tutorial", image, k, out))
        z = np.load(str(out) + ".npz")
        return {"time": wall, "mem": mem, "j": nearest_palette_j(original, z["centers"]),
                "j_tutorial": float(z["inertia"]) / float(z["n"])}
    if name in ("mediancut", "fastoctree"):
        out = tmp / f"{name}.png"
        wall, mem, _ = best_of(reps, worker_cmd(name, image, k, out))
        return {"time": wall, "mem": mem, "j": distortion(original, decoded_output(out, channels))}
    if name == "imagemagick":
        # Its own quantizer (an adaptive colour tree), no dithering, written as a palette PNG.
        out = tmp / "imagemagick.png"
        wall, mem, _ = best_of(reps, [*imagemagick(), str(image), "+dither", "-colors", str(k), f"PNG8:{out}"])
        return {"time": wall, "mem": mem, "j": distortion(original, decoded_output(out, channels))}
    if name == "pngquant":
        out = tmp / "pngquant.png"
        cmd = ["pngquant", "--speed", "4", "--nofs", str(k), "--force", "--output", str(out), str(image)]
        wall, mem, _ = best_of(reps, cmd)
        return {"time": wall, "mem": mem, "j": distortion(original, decoded_output(out, channels))}
    raise ValueError(name)


@functools.cache
def imagemagick() -> list[str] | None:
    """ImageMagick's command (7's `magick`, 6's `convert`), or None: a `convert` that is not ImageMagick (some
    machines ship a stand-in that only converts to PPM) does not count."""
    if shutil.which("magick"):
        return ["magick"]
    if shutil.which("convert"):
        version = subprocess.run(["convert", "-version"], capture_output=True, text=True)
        if version.stdout.startswith("Version: ImageMagick"):
            return ["convert"]
    return None


def make_image(tmp: Path, label: str, width: int, height: int, kind: str = "astronaut") -> Path:
    return photos.make(kind, tmp / f"{kind}-{width}x{height}.png", width, height)


def machine_load() -> str:
    try:
        return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


# ------------------------------------------------------------------------------------------------ sections


def bench_photos(tmp: Path, log, known: dict[str, dict]) -> list[dict]:
    """Every 12 MP kind at K = 16: kmq against the tutorial, best of 2 each (one statistic for both: the best of
    two against one run favoured kmq), in the same run; `known`
    holds rows already measured (the astronaut headline)."""
    rows = []
    for kind in photos.TWELVE_MP:
        if kind in known:
            rows.append(known[kind])
            continue
        path = make_image(tmp, "12 MP", photos.W, photos.H, kind)
        px = load_pixels(path)
        from kmq import kmeans

        row = {"kind": kind, "colours": len(kmeans.distinct(px).counts)}
        log(f"12 MP {kind}: kmq")
        row["kmq"] = measure("kmq", path, 16, tmp, px, 2)
        log(f"12 MP {kind}: tutorial")
        row["tutorial"] = measure("tutorial", path, 16, tmp, px, 2)
        rows.append(row)
        del px
        path.unlink()
    return rows


def make_bulk(folder: Path) -> list[Path]:
    """48 photos of 256x256: the 12 tiles of each kind made at 1024x768, taken in turn (10, 10, 10, 9, 9)."""
    folder.mkdir()
    tiles = []
    for kind in photos.KINDS:
        im = photos.KINDS[kind](1024, 768)
        tiles.append([(f"{kind}-{i:02d}.png", im.crop(((i % 4) * 256, (i // 4) * 256, (i % 4 + 1) * 256,
                                                        (i // 4 + 1) * 256))) for i in range(12)])
    paths = []
    for name, tile in [t for row in zip(*tiles) for t in row][:48]:
        tile.save(folder / name)
        paths.append(folder / name)
    return paths


BULK_REPS = 3


def bench_bulk(tmp: Path, log, have_pngquant: bool) -> dict:
    """`kmq compress dir -j 2` against pngquant over the same 48 files 2 at a time, K = 16 and 256: the best of
    BULK_REPS runs each, kmq and pngquant taking turns, so that a burst of load from other jobs on the
    shared machine does not land on one side only (single runs here gave ratios from 1.3x to 7x)."""
    files = make_bulk(tmp / "bulk")
    originals = {p.name: load_pixels(p) for p in files}
    res: dict = {}
    for k in (16, 256):
        out = tmp / f"bulk-kmq-{k}"
        pq = tmp / f"bulk-pq-{k}"
        pq.mkdir()
        script = (f"printf '%s\\0' {' '.join(str(p) for p in files)} | xargs -0 -P 2 -I{{}} sh -c "
                  f"'pngquant --speed 4 --nofs {k} --force --output {pq}/$(basename {{}}) {{}}'")
        walls: dict[str, list[tuple[float, float]]] = {"kmq": [], "pngquant": []}
        for rep in range(BULK_REPS):
            log(f"bulk K={k}: kmq ({rep + 1}/{BULK_REPS})")
            wall, mem, _ = run_reaped([str(BIN / "kmq"), "compress", str(tmp / "bulk"), "-k", str(k), "-o",
                                       str(out), "-f", "-q", "-j", "2"])
            walls["kmq"].append((wall, mem))
            if have_pngquant:
                log(f"bulk K={k}: pngquant ({rep + 1}/{BULK_REPS})")
                wall, mem, _ = run_reaped(["sh", "-c", script])
                walls["pngquant"].append((wall, mem))
        import kmq

        js = [distortion(originals[p.name], kmq.read(out / (p.stem + ".kmq")).decode().reshape(256 * 256, -1))
              for p in files]
        wall, mem = min(walls["kmq"])
        res[("kmq", k)] = {"time": wall, "mem": mem, "js": js, "times": [w for w, _ in walls["kmq"]]}
        if have_pngquant:
            js = [distortion(originals[p.name], decoded_output(pq / p.name, 3)) for p in files]
            wall, mem = min(walls["pngquant"])
            res[("pngquant", k)] = {"time": wall, "mem": mem, "js": js, "times": [w for w, _ in walls["pngquant"]]}
    return res


def _aa_graphics(w: int, h: int) -> np.ndarray:
    """Flat shapes of four colours under an alpha of soft-edged discs (edges ~2 pixels wide): few RGB
    colours, each with every alpha along the edges."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    px = np.zeros((h, w, 4), np.uint8)
    px[..., :3] = [250, 250, 250]
    px[yy < h / 2, :3] = [200, 30, 30]
    px[(xx > w / 2) & (yy > h / 3), :3] = [20, 90, 200]
    px[((xx // (w / 8)) + (yy // (h / 6))) % 2 == 0, :3] = [240, 200, 20]
    a = np.zeros((h, w), np.float32)
    for cx, cy, r in [(0.3, 0.4, 0.2), (0.7, 0.6, 0.25), (0.5, 0.5, 0.45)]:
        a = np.maximum(a, np.clip((r * h - np.hypot(xx - cx * w, yy - cy * h)) / 2.0, 0, 1))
    px[..., 3] = (a * 255).astype(np.uint8)
    return px


RGBA_REPS = 3


def bench_rgba(tmp: Path, log) -> list[dict]:
    """The same photo with a varying alpha (a radial vignette) and without, at each size, in fresh processes;
    plus uniform noise, the worst case for the histograms. Then other kinds, outside the target's series:
    graphics with anti-aliased alpha edges, and the photo under uniformly random alpha (nearly every pixel
    a colour of its own: the worst case for distinct colours), and a 0.5 MP photo under a soft alpha. All at
    K = 16, then the 12 MP ones and the soft alpha at K = 256 and at K = 1024 (`rgba_cases`), a series each:
    from K = 512 RGBA fits on a finer histogram level than RGB. At K = 64 and 256, a second photo at 0.5 MP
    under finely blurred noise and under random alpha: where a new user found RGBA slowest against RGB."""
    return [row for k in (16, 64, 256, 1024) for row in bench_rgba_at(tmp, log, k)]


# A second photo for the random alpha rows (matplotlib's, installed with the test extra): one photo's bins
# said little of another's (grace_hopper under random alpha has 2.4x coffee's 5-bit bins).
GRACE = Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages" / \
    "matplotlib" / "mpl-data" / "sample_data" / "grace_hopper.jpg"


def rgba_cases(k: int) -> list[tuple[str, str, int, int]]:
    """(label, kind, width, height) of the RGBA rows at k: every size at K = 16, 12 MP above."""
    cases = [("noise 200x200", "noise", 200, 200), ("coffee 640x427", "vignette", 640, 427),
             ("coffee 1632x1224", "vignette", 1632, 1224), ("coffee 4000x3000", "vignette", 4000, 3000),
             ("graphics 4000x3000, anti-aliased alpha", "graphics", 4000, 3000),
             ("coffee 1632x1224, random alpha", "random", 1632, 1224),
             ("coffee 4000x3000, random alpha", "random", 4000, 3000)]
    if GRACE.exists():
        cases.append(("grace_hopper 4000x3000, random alpha", "grace", 4000, 3000))
    # A new user's find (round 33): half a megapixel under a soft alpha of every level has ~3x the distinct
    # colours of its RGB, under the size where RGBA turns to histograms; a series of its own at every K.
    cases.append(("coffee 860x580, soft alpha", "soft", 860, 580))
    # Round 34's audit (506 cells): the cells still over 2x were 0.25-4 MP photos of a colour per pixel,
    # 14 of 25 at K = 64 (grace_hopper at 0.5 MP under noise blurred by 2 px the worst), 9 at K = 256.
    mid = [("grace_hopper 860x580, fine noise alpha", "fine", 860, 580),
           ("grace_hopper 860x580, random alpha", "grace", 860, 580)] if GRACE.exists() else []
    if k == 64:
        return [c for c in cases if c[1] == "soft"] + mid
    return cases if k == 16 else [c for c in cases if c[2] == 4000 or c[1] == "soft"] + (mid if k == 256 else [])


def bench_rgba_at(tmp: Path, log, k: int) -> list[dict]:
    """The rows of `bench_rgba` at k (see `rgba_cases`)."""
    rows = []
    src = Image.open(ROOT / "samples" / "coffee.png").convert("RGB")
    for label, kind, w, h in rgba_cases(k):
        if kind == "graphics":
            rgba = _aa_graphics(w, h)
        else:
            if kind == "noise":
                rgb = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
            else:
                photo = Image.open(GRACE).convert("RGB") if kind in ("grace", "fine") else src
                rgb = np.asarray(photo.resize((w, h), Image.Resampling.LANCZOS))
            if kind in ("random", "grace"):
                alpha = np.random.default_rng(1).integers(0, 256, (h, w), dtype=np.uint8)
            elif kind == "soft":  # noise on a 16-pixel grid, upsampled and blurred: smooth, every level
                grid = np.random.default_rng(2).integers(0, 256, (h // 16 + 1, w // 16 + 1), dtype=np.uint8)
                alpha = np.asarray(Image.fromarray(grid).resize((w, h), Image.Resampling.BICUBIC)
                                   .filter(ImageFilter.GaussianBlur(4)))
            elif kind == "fine":  # white noise blurred by 2 px, stretched to every level (the audit's "blob2")
                noise = np.random.default_rng(3).integers(0, 256, (h, w), dtype=np.uint8)
                b = np.asarray(Image.fromarray(noise).filter(ImageFilter.GaussianBlur(2)), dtype=np.float32)
                lo, hi = np.percentile(b, [2, 98])
                alpha = np.clip((b - lo) / max(hi - lo, 1) * 255, 0, 255).round().astype(np.uint8)
            else:
                yy, xx = np.mgrid[0:h, 0:w]
                r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
                alpha = np.clip(255 * (1.2 - r), 0, 255).astype(np.uint8)
            rgba = np.dstack([rgb, alpha])
        path = tmp / "rgba.png"
        Image.fromarray(rgba, "RGBA").save(path, compress_level=1)
        row = {"case": label, "k": k, "series": kind in ("noise", "vignette") and k == 16,
               "series256": kind == "vignette" and k == 256, "series1024": k == 1024 and w == 4000,
               "other": kind in ("graphics", "random", "grace") and k < 1024 and w != 860, "soft": kind == "soft",
               "mid": w == 860 and k in (64, 256)}
        # The two modes take turns, so that both meet the same load on a shared machine; each keeps its
        # fastest run, and the least CPU time of its runs.
        for rep in range(RGBA_REPS):
            for mode in ("rgb", "rgba"):
                log(f"RGBA {label}, K = {k}: {mode} ({rep + 1}/{RGBA_REPS})")
                wall, mem, out = run_reaped(worker_cmd("rgba", path, k, Path(mode)))
                run = {"time": wall, "mem": mem, **json.loads(out)}
                best = row.get(mode)
                if best is None or run["inner"] < best["inner"]:
                    row[mode] = {**run, "cpu": min(run["cpu"], best["cpu"]) if best else run["cpu"]}
                else:
                    best["cpu"] = min(best["cpu"], run["cpu"])
        rows.append(row)
    return rows


def bench_48mp(tmp: Path, log, astronaut: Path, w: int = 8000, h: int = 6000) -> list[dict]:
    """Peak memory of `kmq compress` at 48 MP past the scaling table's K = 16 (round 37's audit found 48 MP at
    K = 256 over 600 MB on a noisy photo of 4.6 M colours): the astronaut at K = 256, the noisy kind (coffee
    under noise, millions of colours) at K = 256 and 1024 (10-bit labels), and the noisy kind under random
    alpha (RGBA, a colour for nearly every pixel) at K = 256. One run each (memory varies little)."""
    noisy = make_image(tmp, "48 MP", w, h, "noisy")
    rgba = tmp / f"noisy-random-alpha-{w}x{h}.png"
    rgb = np.asarray(Image.open(noisy).convert("RGB"))
    alpha = np.random.default_rng(1).integers(0, 256, (h, w), dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(rgba, compress_level=1)
    del rgb, alpha
    rows = []
    for label, path, k in [("astronaut", astronaut, 256), ("noisy", noisy, 256), ("noisy", noisy, 1024),
                           ("noisy, random alpha", rgba, 256)]:
        log(f"48 MP {label}, K = {k}")
        wall, mem, _ = best_of(1, [str(BIN / "kmq"), "compress", str(path), "-k", str(k), "-o",
                                   str(tmp / "big48.kmq"), "-f", "-q"])
        rows.append({"case": f"{label} {w}x{h}", "k": k, "time": wall, "mem": mem})
    noisy.unlink()
    rgba.unlink()
    return rows


def report_48mp(rows: list[dict], targets: list) -> list[str]:
    out = ["## 48 MP past K = 16: peak memory", "",
           "`kmq compress` in a fresh process, one run each: the process's peak resident set.", "",
           "| image | K | time | peak memory |", "|---|---:|---:|---:|"]
    out += [f"| {r['case']} | {r['k']} | {fmt_t(r['time'])} | {r['mem']:.0f} MB |" for r in rows]
    out.append("")
    worst = max(rows, key=lambda r: r["mem"])
    targets.append(("48 MP peak memory ≤ 600 MB past K = 16 (RGB and RGBA, K = 256 and 1024)",
                    f"worst {worst['mem']:.0f} MB ({worst['case']}, K = {worst['k']})", f"{len(rows)} runs",
                    worst["mem"] <= 600))
    return out


def bench_large_k(tmp: Path, log) -> tuple[str, int, list[dict], dict]:
    """kmq compress of a 0.27 MP photo (coffee at 640x427) at growing K, end to end; and a few-colour image."""
    from kmq import kmeans

    path = tmp / "coffee-640x427.png"
    Image.open(ROOT / "samples" / "coffee.png").convert("RGB").resize((640, 427), Image.Resampling.LANCZOS
                                                                     ).save(path)
    px = load_pixels(path)
    colours = len(kmeans.distinct(px).counts)
    rows = []
    for k in (256, 1024, 4096, 16384, 65536):
        log(f"large K: {k}")
        rows.append({"k": k, **measure("kmq", path, k, tmp, px, 1)})
    # Few colours: 3 000 distinct at K = 4096 - exact, with nothing to fit.
    few = tmp / "few.png"
    rng = np.random.default_rng(0)
    table = rng.integers(0, 256, (3000, 3), dtype=np.uint8)
    Image.fromarray(table[rng.integers(0, 3000, (427, 640))]).save(few)
    log("large K: few colours")
    few_px = load_pixels(few)
    few_row = {"colours": len(kmeans.distinct(few_px).counts), **measure("kmq", few, 4096, tmp, few_px, 2)}
    return "coffee.png resampled to 640x427", colours, rows, few_row


# ------------------------------------------------------------------------------------------------ report


def fmt_t(s: float) -> str:
    return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"


def mark(ok: bool) -> str:
    return "**met**" if ok else "**not met**"


def report_photos(rows: list[dict], targets: list) -> list[str]:
    out = [f"## 12 MP photos of {len(rows)} kinds, K = 16", "",
           "Each made by bench/photos.py at 4000x3000 from a different source (see its docstring). kmq and the "
           "tutorial: best of 2 each, in the same bench run. J ratio: kmq's J over scikit-learn's, both with the "
           "palette rounded and every pixel relabelled.", "",
           "| photo | distinct colours | kmq | tutorial | speed-up | kmq peak memory | kmq J | sklearn J | J ratio |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    speedups, jr = [], []
    for r in rows:
        q, t = r["kmq"], r["tutorial"]
        speedups.append(t["time"] / q["time"])
        jr.append(q["j"] / t["j"])
        out.append(f"| {r['kind']} | {r['colours']:,} | {fmt_t(q['time'])} | {fmt_t(t['time'])} | "
                   f"{speedups[-1]:.1f}x | {q['mem']:.0f} MB | {q['j']:.2f} | {t['j']:.2f} | {jr[-1]:.4f} |")
    gm = float(np.exp(np.mean(np.log(jr))))
    out += ["", f"Speed-up: geometric mean {float(np.exp(np.mean(np.log(speedups)))):.1f}x, worst "
                f"{min(speedups):.1f}x ({rows[int(np.argmin(speedups))]['kind']}). J ratio: geometric mean "
                f"{gm:.4f}, worst {max(jr):.4f} ({rows[int(np.argmax(jr))]['kind']}).", ""]
    each = ", ".join(f"{r['kind']} {s:.1f}x" for r, s in zip(rows, speedups))
    targets.append(("12 MP, K=16, every photo: ≥ 20x the tutorial", each, f"{len(rows)} photos",
                    min(speedups) >= 20))
    targets.append(("12 MP, K=16, every photo: goal 30x", f"worst {min(speedups):.1f}x", "", min(speedups) >= 30))
    targets.append(("12 MP, K=16, every photo: J ≤ 1.01x scikit-learn's",
                    ", ".join(f"{r['kind']} {j:.4f}" for r, j in zip(rows, jr)), "", max(jr) <= 1.01))
    targets.append(("12 MP, K=16: J geometric mean ≤ 1.00x scikit-learn's", f"{gm:.4f}", f"{len(rows)} photos",
                    gm <= 1.0))
    return out


def report_bulk(bulk: dict, inproc: dict, have_pngquant: bool, targets: list) -> list[str]:
    out = ["## Many small photos: 48 x 256x256, 2 at a time", "",
           "`kmq compress bulk/ -k K -o out/ -j 2` against pngquant (`--speed 4 --nofs K`, one process per file, "
           f"`xargs -P 2`), end to end: the best of {BULK_REPS} runs each, taking turns (every run's time in "
           "brackets). J: mean over the 48 files.", "",
           "| K | kmq time | pngquant time | time ratio | kmq J | pngquant J | files where kmq's J is lower |",
           "|---:|---:|---:|---:|---:|---:|---:|"]
    for k in (16, 256):
        q = bulk[("kmq", k)]
        qj = float(np.mean(q["js"]))
        if not have_pngquant:
            out.append(f"| {k} | {fmt_t(q['time'])} | not installed | | {qj:.2f} | | |")
            targets.append((f"Bulk 48 x 256x256, K={k}: ≤ 2x pngquant, lower J", "pngquant not on PATH: skipped",
                            "", False))
            continue
        p = bulk[("pngquant", k)]
        pj = float(np.mean(p["js"]))
        ratio = q["time"] / p["time"]
        wins = sum(a < b for a, b in zip(q["js"], p["js"]))
        every = {name: ", ".join(fmt_t(t) for t in r.get("times", [])) for name, r in (("kmq", q), ("pq", p))}
        out.append(f"| {k} | {fmt_t(q['time'])} ({every['kmq']}) | {fmt_t(p['time'])} ({every['pq']}) | "
                   f"{ratio:.2f}x | {qj:.2f} | {pj:.2f} | {wins}/48 |")
        targets.append((f"Bulk 48 x 256x256 -j 2, K={k}: ≤ 2x pngquant's time", f"{ratio:.2f}x "
                        f"({fmt_t(q['time'])} vs {fmt_t(p['time'])})", "goal: 1x", ratio <= 2))
        targets.append((f"Bulk 48 x 256x256, K={k}: J below pngquant's", f"mean {qj:.2f} vs {pj:.2f}; "
                        f"lower on {wins}/48", "", qj < pj))
    out += ["", "In process, K-Means of a 256x256 photo (`kmq.compress` on the pixels, best of 5 per tile and K; in "
                "brackets the least CPU time of the 5): the astronaut resampled, and the centre 256x256 of each "
                "kind made at 1024x768 (as the bulk tiles are cut).", "",
            "| tile | colours | K = 16 | K = 64 | K = 256 |", "|---|---:|---:|---:|---:|"]
    for label, row in inproc.items():
        out.append(f"| {label} | {row['colours']:,} | "
                   + " | ".join(f"{float(v):.3f} s ({float(row['cpu'][k]):.3f} s)" for k, v in row["wall"].items())
                   + " |")
    # The target on the slowest tile, by CPU time: the wall time on this shared machine also counts other jobs.
    worst = max(inproc, key=lambda label: float(inproc[label]["cpu"]["256"]))
    t256, c256 = float(inproc[worst]["wall"]["256"]), float(inproc[worst]["cpu"]["256"])
    out.append("")
    targets.append(("K-Means of a 65,536-pixel photo at K=256 ≤ 0.1 s in process",
                    f"{t256:.3f} s, the slowest of {len(inproc)} tiles ({worst})",
                    f"CPU time {c256:.3f} s (judged on it: the wall time counts other jobs)", c256 <= 0.1))
    return out


def bench_samples(tmp: Path, log, have_pngquant: bool) -> dict[tuple[str, int, str], dict]:
    """Every contender on every sample at every K of KS (kmq and the fast ones: best of 3)."""
    rows: dict[tuple[str, int, str], dict] = {}
    for s in SAMPLES:
        path = ROOT / "samples" / f"{s}.png"
        px = load_pixels(path)
        for k in KS:
            for name in ["kmq", "tutorial", "mediancut", "fastoctree", "imagemagick", "pngquant"]:
                if (name == "pngquant" and not have_pngquant) or (name == "imagemagick" and not imagemagick()):
                    continue
                log(f"{s} K={k}: {name}")
                rows[(s, k, name)] = measure(name, path, k, tmp, px, 3 if name != "tutorial" else 1)
    return rows


def report_samples(sample_rows: dict, have_pngquant: bool, targets: list) -> list[str]:
    out: list[str] = []
    out.append("## Samples")
    out.append("")
    out.append("J (and time) per sample and K. scikit-learn's J is measured like kmq's (palette rounded to "
               "uint8, every pixel relabelled to its nearest entry); its own figure (inertia / pixels, "
               "float centroids) is in brackets. Pillow's, ImageMagick's (`-colors K +dither`) and pngquant's J "
               "are of their output as written (no dithering).")
    out.append("")
    names = (["kmq", "tutorial", "mediancut", "fastoctree"] + (["imagemagick"] if imagemagick() else [])
             + (["pngquant"] if have_pngquant else []))
    out.append("| sample | K | " + " | ".join(names) + " | kmq J / sklearn J |")
    out.append("|---|---:|" + "---:|" * len(names) + "---:|")
    ratios = []
    pq_ok = True
    pq_detail = []
    for s in SAMPLES:
        for k in KS:
            cells = []
            for name in names:
                r = sample_rows[(s, k, name)]
                extra = f" [{r['j_tutorial']:.2f}]" if "j_tutorial" in r else ""
                cells.append(f"{r['j']:.2f}{extra} / {fmt_t(r['time'])}")
            kj, sj = sample_rows[(s, k, "kmq")]["j"], sample_rows[(s, k, "tutorial")]["j"]
            if kj == 0:
                # Fewer distinct colours than K: kmq keeps them all (lossless); no ratio to speak of.
                out.append(f"| {s} | {k} | " + " | ".join(cells) + " | lossless |")
            else:
                ratio = kj / sj
                ratios.append(ratio)
                out.append(f"| {s} | {k} | " + " | ".join(cells) + f" | {ratio:.4f} |")
            if have_pngquant:
                p = sample_rows[(s, k, "pngquant")]
                q = sample_rows[(s, k, "kmq")]
                ok = q["time"] < p["time"] and q["j"] < p["j"]
                pq_ok &= ok
                if not ok:
                    pq_detail.append(f"{s} K={k}")
    gm = float(np.exp(np.mean(np.log(ratios))))
    out.append("")
    targets.append(("Samples × K: geometric mean of kmq J / sklearn J ≤ 1.000", f"{gm:.4f}",
                    f"{len(ratios)} lossy cases", gm <= 1.0))
    targets.append(("Samples × K: no case above 1.01x", f"worst {max(ratios):.4f}", "", max(ratios) <= 1.01))
    if have_pngquant:
        targets.append(("Faster than pngquant at lower J on every sample", "every case" if pq_ok else
                        "fails: " + ", ".join(pq_detail), "all samples × K", pq_ok))
    else:
        targets.append(("Faster than pngquant at lower J on every sample", "pngquant not on PATH: skipped",
                        "", False))
    return out


def report_rgba(rows: list[dict], targets: list) -> list[str]:
    out = ["## RGBA with varying alpha", "",
           "The same pixels with a radial alpha vignette (RGBA) and without it (RGB): kmq.compress in a fresh "
           f"process, best of {RGBA_REPS} (the two taking turns); the time is the compress call's wall time, "
           "the CPU ratio that of its CPU time (least of the runs: less disturbed by other jobs on a shared "
           "machine), memory the process's peak. The target's series is the vignette at every size at K = 16; "
           "12 MP at K = 256, other kinds (random alpha, anti-aliased graphics), every 12 MP kind at K = 1024, "
           "a 0.5 MP photo under a soft alpha (every level) at K = 16, 64, 256 and 1024, and 0.5 MP of a colour "
           "per pixel at K = 64 and 256 (that photo, and a second one under finely blurred noise and under random "
           "alpha) are targets of their own.",
           "",
           "| image | K | RGB time | RGBA time | time ratio | CPU ratio | RGB peak | RGBA peak | memory ratio | "
           "RGB J | RGBA J |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        a, b = r["rgb"], r["rgba"]
        r["tr"], r["mr"], r["cr"] = b["inner"] / a["inner"], b["mem"] / a["mem"], b["cpu"] / a["cpu"]
        out.append(f"| {r['case']} | {r.get('k', 16)} | {fmt_t(a['inner'])} | {fmt_t(b['inner'])} | {r['tr']:.2f}x | "
                   f"{r['cr']:.2f}x | {a['mem']:.0f} MB | {b['mem']:.0f} MB | {r['mr']:.2f}x | {a['j']:.2f} | "
                   f"{b['j']:.2f} |")
    out.append("")
    for key, what in (("series", "at every size"), ("series256", "12 MP at K = 256"),
                      ("other", "under random alpha (two photos) and anti-aliased graphics, K = 16 and 256"),
                      ("series1024", "12 MP at K = 1024 (vignette, random alpha, graphics)"),
                      ("soft", "0.5 MP under a soft alpha, K = 16, 64, 256, 1024"),
                      ("mid", "0.5 MP of a colour per pixel (two photos, three alphas), K = 64 and 256")):
        series = [r for r in rows if r.get(key, key == "series")]
        if not series:
            continue
        worst = {m: max(series, key=lambda r: r[m]) for m in ("tr", "cr", "mr")}
        targets.append((f"RGBA with varying alpha: time within ~2x of RGB {what}",
                        f"worst {worst['tr']['tr']:.2f}x ({worst['tr']['case']}); CPU time: worst "
                        f"{worst['cr']['cr']:.2f}x ({worst['cr']['case']})", f"{len(series)} images",
                        worst["tr"]["tr"] <= 2.2))
        targets.append((f"RGBA with varying alpha: memory within ~2x of RGB {what}",
                        f"worst {worst['mr']['mr']:.2f}x ({worst['mr']['case']})", "", worst["mr"]["mr"] <= 2.2))
    return out


def report_large_k(src: str, colours: int, rows: list[dict], few: dict, targets: list) -> list[str]:
    out = [f"## Large K: {src} (0.27 MP, {colours:,} distinct colours)", "",
           "`kmq compress` end to end, 1 run each. From K = 512 the fit is a bisecting split then k-d tree Lloyd.",
           "", "| K | time | peak memory | J | PSNR (dB) |", "|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['k']} | {fmt_t(r['time'])} | {r['mem']:.0f} MB | {r['j']:.3f} | {psnr(r['j'], 3):.2f} |")
    out += ["", f"Few colours: a 640x427 image of {few['colours']:,} distinct colours at K = 4096 takes "
                f"{fmt_t(few['time'])} with J = {few['j']:.2f} (every colour kept).", ""]
    by_k = {r["k"]: r for r in rows}
    falling = all(a["j"] > b["j"] for a, b in zip(rows, rows[1:]) if b["j"] > 0 or a["j"] > 0)
    targets.append(("0.27 MP photo, K=4096 ≤ 10 s", fmt_t(by_k[4096]["time"]), "", by_k[4096]["time"] <= 10))
    targets.append(("0.27 MP photo, K=65536 ≤ 60 s", fmt_t(by_k[65536]["time"]), "", by_k[65536]["time"] <= 60))
    targets.append(("Large K: J still falling as K grows", " > ".join(f"{r['j']:.3f}" for r in rows),
                    "K = " + ", ".join(str(r["k"]) for r in rows), falling))
    targets.append(("Few colours relative to K: exact and immediate", f"J = {few['j']:.2f} in {fmt_t(few['time'])}",
                    f"{few['colours']:,} colours, K=4096", few["j"] == 0 and few["time"] < 2))
    return out


def main() -> None:
    have_pngquant = shutil.which("pngquant") is not None
    lines: list[str] = []
    targets: list[tuple[str, str, str, bool]] = []  # (target, measured, how, met)
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f} s] {msg}", file=sys.stderr, flush=True)

    load_start = machine_load()
    run_reaped([sys.executable, "-c", "pass"])  # start the launcher while this process is still small
    # An installed kmq has its bytecode (pip compiles it); an editable checkout run with
    # PYTHONDONTWRITEBYTECODE=1 would recompile every module in every process (~0.1 s), which no user pays.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "kmq")], check=True)
    with tempfile.TemporaryDirectory(prefix="kmq-speed-") as tmpdir:
        tmp = Path(tmpdir)
        images = {label: make_image(tmp, label, w, h) for label, w, h in SIZES}
        big = images["12 MP"]
        big_px = load_pixels(big)
        from kmq import kmeans

        distinct = {label: len(kmeans.distinct_colors(load_pixels(p))[0]) for label, p in images.items()
                    if label != "48 MP"}

        # ---------------------------------------------------------------- 12 MP headline
        log("12 MP: bare decode")
        decode_inner = min(json.loads(run_reaped(worker_cmd("decode", big, 0, tmp / "x"))[2])["inner"]
                           for _ in range(3))
        head: dict[tuple[str, int], dict] = {}
        for name, k, reps in [("kmq", 16, 2), ("tutorial", 16, 2), ("mediancut", 16, 1),
                              ("fastoctree", 16, 1), ("imagemagick", 16, 1), ("pngquant", 16, 1), ("kmq", 256, 1)]:
            if (name == "pngquant" and not have_pngquant) or (name == "imagemagick" and not imagemagick()):
                continue
            log(f"12 MP: {name} K={k}")
            head[(name, k)] = measure(name, big, k, tmp, big_px, reps)

        # ---------------------------------------------------------------- other 12 MP photos, bulk, RGBA, K
        photo_rows = bench_photos(tmp, log, {"astronaut": {"kind": "astronaut", "colours": distinct["12 MP"],
                                                           "kmq": head[("kmq", 16)],
                                                           "tutorial": head[("tutorial", 16)]}})
        bulk = bench_bulk(tmp, log, have_pngquant)
        small = make_image(tmp, "small", 256, 256)
        log("in-process K-Means of a 256x256 photo")
        inproc = json.loads(run_reaped(worker_cmd("inproc", small, 0, tmp / "x"))[2])
        rgba_rows = bench_rgba(tmp, log)
        large_src, large_colours, large_rows, few_row = bench_large_k(tmp, log)
        big48_rows = bench_48mp(tmp, log, images["48 MP"])

        # ---------------------------------------------------------------- samples
        sample_rows = bench_samples(tmp, log, have_pngquant)

        # ---------------------------------------------------------------- scaling
        scaling: dict[str, dict] = {}
        for label, _, _ in SIZES:
            if label == "12 MP":
                scaling[label] = {"kmq": head[("kmq", 16)], "tutorial": head[("tutorial", 16)]}
                continue
            log(f"scaling {label}")
            px = load_pixels(images[label])
            row = {"kmq": measure("kmq", images[label], 16, tmp, px, 2 if label != "48 MP" else 1)}
            if label in ("0.26 MP", "2 MP"):
                row["tutorial"] = measure("tutorial", images[label], 16, tmp, px, 1)
            scaling[label] = row
            del px

        # ---------------------------------------------------------------- decompress
        log("decompress")
        kmq_file = tmp / "big16.kmq"
        subprocess.run([str(BIN / "kmq"), "compress", str(big), "-k", "16", "-o", str(kmq_file), "-f", "-q"],
                       check=True)
        dec_png = tmp / "big16.png"
        dec_wall, dec_mem, _ = best_of(3, [str(BIN / "kmq"), "decompress", str(kmq_file), "-o", str(dec_png),
                                           "-f", "-q"])
        save_inner = min(json.loads(run_reaped(worker_cmd("pillow-save", dec_png, 0, tmp / "ref.png"))[2])["inner"]
                         for _ in range(3))
        save_wall = min(run_reaped(worker_cmd("pillow-save", dec_png, 0, tmp / "ref.png"))[0] for _ in range(3))
        save_palette = min(json.loads(run_reaped(worker_cmd("pillow-save-palette", dec_png, 0,
                                                            tmp / "ref8.png"))[2])["inner"] for _ in range(3))

    # -------------------------------------------------------------------- report
    ncpu = os.cpu_count()
    lines.append("# Speed: kmq against the tutorial's pipeline, Pillow and pngquant")
    lines.append("")
    lines.append(f"Measured by `bench/speed.py` ({platform.machine()}, {ncpu} cores, Python "
                 f"{platform.python_version()}, numpy {np.__version__}; {load_start} at the start, "
                 f"{machine_load()} at the end, on a machine shared with other jobs, so ratios within one "
                 "run mean more than absolute times); reproduce with `make bench`. "
                 "Every time is the wall time of a fresh process, end to end (start-up, decode, work, file "
                 "written, with kmq's bytecode compiled beforehand as an installed package's is); at 12 MP kmq "
                 "and the tutorial take the best of 2 runs each, because the machine is shared. Peak "
                 "memory is that process's own maximum resident set. J is the distortion of the decoded "
                 "output (mean squared error per pixel, summed over channels, 0..255 units).")
    lines.append("")
    # headline
    kq, tu = head[("kmq", 16)], head[("tutorial", 16)]
    speedup = tu["time"] / kq["time"]
    lines.append(f"## 12 MP photo, K = 16, against every contender (astronaut resampled to 4000x3000, "
                 f"{distinct['12 MP']:,} distinct colours)")
    lines.append("")
    lines.append("| contender | time | peak memory | J | PSNR (dB) | vs tutorial (time) |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    for (name, k), r in head.items():
        if k != 16:
            continue
        jt = f" (tutorial's own: {r['j_tutorial']:.2f})" if "j_tutorial" in r else ""
        lines.append(f"| {name} | {fmt_t(r['time'])} | {r['mem']:.0f} MB | {r['j']:.2f}{jt} | "
                     f"{psnr(r['j'], 3):.2f} | {tu['time'] / r['time']:.1f}x |")
    lines.append(f"| bare PNG decode (in process) | {fmt_t(decode_inner)} | | | | |")
    k256 = head[("kmq", 256)]
    lines.append("")
    lines.append(f"kmq at K = 256 on the same 12 MP image: {fmt_t(k256['time'])}, {k256['mem']:.0f} MB, "
                 f"J = {k256['j']:.2f} (PSNR {psnr(k256['j'], 3):.2f} dB).")
    lines.append("")
    lines.extend(report_photos(photo_rows, targets))
    lines.extend(report_bulk(bulk, inproc, have_pngquant, targets))
    lines.extend(report_rgba(rgba_rows, targets))
    lines.extend(report_large_k(large_src, large_colours, large_rows, few_row, targets))
    lines.extend(report_48mp(big48_rows, targets))
    targets.append(("12 MP astronaut, K=16: kmq ≥ 20x faster than the tutorial", f"{speedup:.1f}x "
                    f"({fmt_t(kq['time'])} vs {fmt_t(tu['time'])})", "end to end", speedup >= 20))
    targets.append(("12 MP astronaut, K=16: goal 30x, i.e. under 2x the bare decode",
                    f"{speedup:.1f}x; {kq['time'] / decode_inner:.1f}x the decode ({fmt_t(decode_inner)})",
                    "", speedup >= 30 and kq["time"] < 2 * decode_inner))
    targets.append(("12 MP astronaut, K=16: J ≤ scikit-learn's", f"{kq['j']:.2f} vs {tu['j']:.2f} "
                    f"({kq['j'] / tu['j']:.4f}x)", "both rounded + relabelled", kq["j"] <= tu["j"]))
    targets.append(("12 MP, K=256 under 10 s", fmt_t(k256["time"]), "", k256["time"] < 10))
    peak = max(kq["mem"], k256["mem"])
    targets.append(("12 MP peak memory ≤ 600 MB", f"{peak:.0f} MB (tutorial: {tu['mem']:.0f} MB)", "",
                    peak <= 600))

    lines.extend(report_samples(sample_rows, have_pngquant, targets))

    # scaling
    lines.append("## Cost against pixels (K = 16)")
    lines.append("")
    lines.append("| image | distinct colours | kmq time | kmq s / MP | kmq peak memory | tutorial time | "
                 "tutorial peak memory |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|")
    for label, w, h in SIZES:
        row = scaling[label]
        mp = w * h / 1e6
        q = row["kmq"]
        t = row.get("tutorial")
        tt = f"{fmt_t(t['time'])} | {t['mem']:.0f} MB" if t else "not run (minutes at this size) | "
        lines.append(f"| {label} ({w}x{h}) | {distinct.get(label, 0) or 'n/a'} | {fmt_t(q['time'])} | "
                     f"{q['time'] / mp:.3f} | {q['mem']:.0f} MB | {tt} |")
    lines.append("")
    lines.append("kmq's time includes a fixed start-up (interpreter, numpy, Pillow); per-pixel work is the "
                 "decode, the distinct-colour pass and the label packing, all linear.")
    lines.append("")

    # decompress
    ratio_dec = dec_wall / save_inner  # strict: kmq's whole process against Pillow's save call alone
    lines.append("## Decompress")
    lines.append("")
    lines.append(f"`kmq decompress` of the 12 MP K = 16 file to PNG: {fmt_t(dec_wall)} end to end "
                 f"({dec_mem:.0f} MB). Pillow saving the same pixels as PNG at compress_level={PNG_LEVEL}: "
                 f"{fmt_t(save_inner)} for the save call alone (RGB pixels), {fmt_t(save_wall)} as a process "
                 f"that loads them first. Ratio to the save call alone (the target): {ratio_dec:.2f}x; process "
                 f"to process: {dec_wall / save_wall:.2f}x. kmq writes a palette PNG (the same pixels, fewer "
                 f"bytes); Pillow saves that palette image in {fmt_t(save_palette)}, so kmq's own part (start-up, "
                 f"reading and unpacking the .kmq) is {fmt_t(max(0.0, dec_wall - save_palette))}.")
    lines.append("")
    targets.append((f"decompress ≤ 1.3x Pillow's PNG save (level {PNG_LEVEL})",
                    f"{ratio_dec:.2f}x ({fmt_t(dec_wall)} vs {fmt_t(save_inner)})",
                    f"whole kmq process vs the save call; process to process {dec_wall / save_wall:.2f}x",
                    ratio_dec <= 1.3))

    out: list[str] = lines[:4]
    out.append("## Targets")
    out.append("")
    out.append("| target | measured | note | status |")
    out.append("|---|---|---|---|")
    for t, m, how, ok in targets:
        out.append(f"| {t} | {m} | {how} | {mark(ok)} |")
    out.append("")
    out.extend(lines[4:])
    text = "\n".join(out) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    log(f"wrote {RESULTS.relative_to(ROOT)}")


# ------------------------------------------------------------------------------------------------ parts


def splice(text: str, sections: list[str], targets: list[tuple[str, str, str, bool]]) -> str:
    """text (speed.md) with each "## " section of `sections` (a list of lines) put in place of the one of the
    same title, and each target row replaced by the new row of the same target."""
    lines = text.split("\n")
    new_rows = {t: f"| {t} | {m} | {how} | {mark(ok)} |" for t, m, how, ok in targets}
    for i, line in enumerate(lines):
        if line.startswith("| ") and line.split(" | ")[0][2:] in new_rows:
            lines[i] = new_rows[line.split(" | ")[0][2:]]
    text = "\n".join(lines)
    for block in sections:
        title = block[0]
        start = text.index(title + "\n")
        end = text.find("\n## ", start + len(title))
        text = text[:start] + "\n".join(block).rstrip("\n") + "\n" + ("" if end < 0 else text[end:])
    return text


def main_parts(parts: list[str]) -> None:
    """Only the named parts ("photos": the six 12 MP photos at K = 16 against the tutorial; "bulk": the 48
    small photos and the in-process K-Means; "samples"), their
    sections and target rows rewritten in bench/results/speed.md and the rest left as measured before."""
    have_pngquant = shutil.which("pngquant") is not None
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f} s] {msg}", file=sys.stderr, flush=True)

    load_start = machine_load()
    run_reaped([sys.executable, "-c", "pass"])
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "kmq")], check=True)
    targets: list[tuple[str, str, str, bool]] = []
    sections: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="kmq-speed-") as tmpdir:
        tmp = Path(tmpdir)
        if "photos" in parts:  # every kind made here, the astronaut too (best of 2, as the others)
            sections.append(report_photos(bench_photos(tmp, log, {}), targets))
        if "bulk" in parts:
            bulk = bench_bulk(tmp, log, have_pngquant)
            small = make_image(tmp, "small", 256, 256)
            log("in-process K-Means of a 256x256 photo")
            inproc = json.loads(run_reaped(worker_cmd("inproc", small, 0, tmp / "x"))[2])
            sections.append(report_bulk(bulk, inproc, have_pngquant, targets))
        if "samples" in parts:
            sections.append(report_samples(bench_samples(tmp, log, have_pngquant), have_pngquant, targets))
    note = f"Measured on their own by `bench/speed.py --only {' '.join(parts)}` ({load_start} at the start, " \
           f"{machine_load()} at the end)."
    for block in sections:
        block.insert(2, note)
        block.insert(3, "")
    text = splice(RESULTS.read_text(), sections, targets)
    print(text)
    RESULTS.write_text(text)
    log(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=4, metavar=("NAME", "IMAGE", "K", "OUT"))
    ap.add_argument("--only", nargs="+", choices=["photos", "bulk", "samples"],
                    help="run only these parts and update their sections of the results file")
    a = ap.parse_args()
    if a.worker:
        _worker(a.worker[0], a.worker[1], int(a.worker[2]), a.worker[3])
    elif a.only:
        main_parts(a.only)
    else:
        main()
