"""One palette for many images: `kmq compress --palette` at 12 MP, and the pooled fit against K-Means over the
same images stitched into one.

Run from the repository root (`make bench`, or `.venv/bin/python bench/palette.py`). Prints Markdown and writes
it to bench/results/palette.md.

Every time is the wall time of a fresh `kmq` process (start-up, decode, mapping, file written), the best of 3
because the machine is shared; its peak memory is that process's own maximum resident set (os.wait4). The
12 MP images are made in a child process (so this one stays small): the astronaut photo resampled to
4000 x 3000 with Lanczos (~850 000 distinct colours), a smooth gradient, uniform noise (~9.5 million distinct
colours: the worst case for finding them), the photo in grey, and the photo with a real alpha gradient.
Each is compressed with a palette fitted by `kmq palette` on a 512 x 512 version of it (the realistic use: a
palette from a few slides, applied to a big one).

The pooled fit: `kmq.shared.fit` over the sample photos (grey `camera` pooled as R = G = B) against
`kmq.compress` of all their pixels stitched into one image, at K = 16 and 64; and a slide series, the four
quadrants of samples/ihc.png, against fitting each slide on its own.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "palette.md"
# This checkout's kmq, here and in every process started from here (workers, the kmq command), also where
# the venv's editable install is another checkout's (a git worktree measured with the main tree's venv).
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
KMQ = str(Path(sys.executable).parent / "kmq")
SAMPLES = ROOT / "samples"
TARGET_SECONDS = 0.6
SIZE = (4000, 3000)
KINDS = ["photo", "gradient", "noise", "grey", "rgba"]


def _make(kind: str, size: tuple[int, int]) -> Image.Image:
    w, h = size
    photo = Image.open(SAMPLES / "astronaut.png").convert("RGB").resize(size, Image.Resampling.LANCZOS)
    if kind == "photo":
        return photo
    if kind == "grey":
        return photo.convert("L")
    if kind == "rgba":
        alpha = np.broadcast_to(np.linspace(0, 255, w).astype(np.uint8), (h, w))
        return Image.fromarray(np.dstack([np.asarray(photo), alpha]))
    if kind == "gradient":
        y, x = np.mgrid[0:h, 0:w]
        return Image.fromarray(np.dstack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (w + h - 2)])
                               .astype(np.uint8))
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))


def make_images(folder: Path) -> None:
    for kind in KINDS:
        _make(kind, SIZE).save(folder / f"{kind}.png", compress_level=1)
        _make(kind, (512, 512)).save(folder / f"{kind}-small.png")


def reaped(cmd: list[str]) -> tuple[float, float, float]:
    """(wall seconds, peak resident MB, CPU seconds user + system) of cmd, run to completion; raises if it
    fails. On a loaded machine the CPU time is the steadier of the two times."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:]}")
    proc.stderr.close()
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def best_of(n: int, cmd: list[str]) -> tuple[float, float, float]:
    return min((reaped(cmd) for _ in range(n)), key=lambda r: r[0])


def speed_rows(tmp: Path) -> list[dict]:
    subprocess.run([sys.executable, __file__, "--make", str(tmp)], check=True)
    rows = []
    for kind, k in [("photo", 16), ("photo", 64), ("photo", 256), ("gradient", 16), ("noise", 16), ("grey", 16),
                    ("rgba", 16)]:
        palette = tmp / f"{kind}-{k}.txt"
        subprocess.run([KMQ, "palette", str(tmp / f"{kind}-small.png"), "-k", str(k), "-o", str(palette), "-f",
                        "-q"], check=True)
        image, out = tmp / f"{kind}.png", tmp / f"{kind}-{k}.kmq"
        seconds, mb, cpu = best_of(3, [KMQ, "compress", str(image), "--palette", str(palette), "-o", str(out),
                                       "-f", "-q"])
        row = {"kind": kind, "k": k, "seconds": seconds, "mb": mb, "cpu": cpu, "out": out, "fit_seconds": None}
        if kind == "photo":  # the K-Means reference only where it is quick enough to be worth the CPU
            row["fit_out"] = tmp / f"{kind}-{k}-fit.kmq"
            fit = best_of(1, [KMQ, "compress", str(image), "-k", str(k), "-o", str(row["fit_out"]), "-f", "-q"])
            row["fit_seconds"], row["fit_cpu"] = fit[0], fit[2]
        rows.append(row)
    import kmq  # only now: the children above were started from a small process

    for row in rows:
        img = kmq.read(row["out"])
        row["j"], row["channels"] = img.distortion, img.channels
        row["j_fit"] = kmq.read(row["fit_out"]).distortion if "fit_out" in row else None
    return rows


def pooled_rows() -> list[dict]:
    import kmq
    from kmq import shared

    names = ["astronaut", "chelsea", "coffee", "ihc", "camera"]
    paths = [SAMPLES / f"{n}.png" for n in names]
    pixels = [np.asarray(Image.open(p).convert("RGB")).reshape(-1, 1, 3) for p in paths]
    stitched_pixels = np.concatenate(pixels)
    rows = []
    for k in (16, 64):
        started = time.perf_counter()
        fitted = shared.fit(shared.plan(paths), k, workers=2)
        seconds = time.perf_counter() - started
        stitched = kmq.compress(stitched_pixels, k)
        own = sum(kmq.compress(p, k).distortion * len(p) for p in pixels) / len(stitched_pixels)
        rows.append({"set": "5 samples", "k": k, "j_pooled": fitted.distortion, "j_stitched": stitched.distortion,
                     "j_own": own, "seconds": seconds, "same": bool(np.array_equal(fitted.palette, stitched.palette))})
    return rows


def slide_rows(tmp: Path) -> list[dict]:
    import kmq
    from kmq import shared

    ihc = np.asarray(Image.open(SAMPLES / "ihc.png").convert("RGB"))
    slides = []
    for i, (y, x) in enumerate([(0, 0), (0, 256), (256, 0), (256, 256)]):
        slides.append(ihc[y:y + 256, x:x + 256])
        Image.fromarray(slides[-1]).save(tmp / f"slide{i}.png")
    paths = [tmp / f"slide{i}.png" for i in range(4)]
    k = 6
    fitted = shared.fit(shared.plan(paths), k, workers=2)
    stitched = kmq.compress(np.concatenate([s.reshape(-1, 1, 3) for s in slides]), k)
    own = [kmq.compress(s, k) for s in slides]
    n = sum(s.shape[0] * s.shape[1] for s in slides)
    return [{"set": "ihc quadrants", "k": k, "j_pooled": fitted.distortion, "j_stitched": stitched.distortion,
             "j_own": sum(o.distortion * o.labels.size for o in own) / n, "seconds": float("nan"),
             "same": bool(np.array_equal(fitted.palette, stitched.palette))}]


def report(speed: list[dict], pooled: list[dict]) -> str:
    photo16 = next(r for r in speed if r["kind"] == "photo" and r["k"] == 16)
    worst = max(speed, key=lambda r: r["seconds"])
    mean = sum(r["seconds"] for r in speed) / len(speed)
    worst_pool = max(abs(r["j_pooled"] / r["j_stitched"] - 1) for r in pooled)
    status = "**met**" if photo16["seconds"] <= TARGET_SECONDS else "**not met**"
    lines = [
        "# One palette for many images",
        "",
        f"Measured by `bench/palette.py` ({platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}); reproduce with `make bench`. Times: wall time of "
        f"a fresh `kmq` process end to end, best of 3 on a shared machine; memory: that process's peak resident "
        f"set. J: the distortion (mean squared error per pixel over the channels, 0..255 units). Load average "
        f"at the end of the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (above the core count, wall "
        f"times are inflated; the CPU time, user + system, is the steadier figure).",
        "",
        "## Targets",
        "",
        "| target | measured | status |",
        "|---|---|---|",
        f"| 12 MP photo, K = 16, `compress --palette` ≤ {TARGET_SECONDS} s | {photo16['seconds']:.2f} s, CPU "
        f"{photo16['cpu']:.2f} s (K-Means: {photo16['fit_seconds']:.2f} s, CPU {photo16['fit_cpu']:.2f} s) | "
        f"{status} |",
        f"| pooled J within 0.5 % of K-Means over the stitched images | worst {worst_pool:.3%} | "
        f"{'**met**' if worst_pool <= 0.005 else '**not met**'} |",
        "",
        f"## `kmq compress --palette` at 12 MP ({SIZE[0]} x {SIZE[1]})",
        "",
        f"Mean over the rows {mean:.2f} s; worst {worst['seconds']:.2f} s ({worst['kind']}, K = {worst['k']}).",
        "",
        "| image | K | with the palette | its CPU time | peak memory | J | K-Means at the same K | its J |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in speed:
        fit = "" if r["fit_seconds"] is None else f"{r['fit_seconds']:.2f} s | {r['j_fit']:.2f}"
        lines.append(f"| {r['kind']} ({r['channels']} ch) | {r['k']} | {r['seconds']:.2f} s | {r['cpu']:.2f} s | "
                     f"{r['mb']:.0f} MB | "
                     f"{r['j']:.2f} | {fit or ' |'} |")
    lines += [
        "",
        "The palette was fitted on a 512 x 512 version of the same image, so its J is a little above the image's "
        "own K-Means.",
        "",
        "## Pooled fit against K-Means over the stitched images",
        "",
        "| set | K | J pooled | J stitched | difference | same palette | J, each image its own K-Means | "
        "fit time (2 workers) |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in pooled:
        seconds = "" if r["seconds"] != r["seconds"] else f"{r['seconds']:.2f} s"
        lines.append(f"| {r['set']} | {r['k']} | {r['j_pooled']:.3f} | {r['j_stitched']:.3f} | "
                     f"{r['j_pooled'] / r['j_stitched'] - 1:+.3%} | {'yes' if r['same'] else 'no'} | "
                     f"{r['j_own']:.3f} | {seconds} |")
    lines += ["", "The pooled colours and counts are those of the stitched image, so the fit is the same: the "
              "difference is zero by construction. A shared palette costs J against each image's own palette "
              "(last column), the price of label i meaning the same colour in every image."]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--make":
        make_images(Path(sys.argv[2]))
        return
    with tempfile.TemporaryDirectory() as tmp:
        speed = speed_rows(Path(tmp))
        pooled = pooled_rows() + slide_rows(Path(tmp))
    text = report(speed, pooled)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
