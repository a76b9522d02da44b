"""The target cases of bench/targets.py (15 byte budgets) and bench/rdo.py (8 PSNR targets): the file each
search finds (K, rdo, bytes, PSNR, sha256), its counts (fits, rdo runs, payload sizings) and its cost (CPU
time of the search over one plain ctx compress at the K chosen, best of 2), as JSON lines. Quicker than the
two benches (no grid, no 12 MP rows), for comparing two checkouts: run each one's copy (it imports the kmq of
its own checkout, whatever the working directory or PYTHONPATH).

Run: .venv/bin/python bench/target_cases.py [--bytes] [substring of a case's name ...]
"""
from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
# Its own checkout's kmq first: a worktree's copy run with another venv (main's has kmq installed from the
# main tree) imported main's kmq, and an A/B of two checkouts measured main twice.
sys.path.insert(0, str(ROOT))

import kmq  # noqa: E402
from kmq import target  # noqa: E402
from kmq.codecs import ctx  # noqa: E402
from kmq.stats import psnr  # noqa: E402
from rdo import _Counter, cpu, target_images  # noqa: E402
from targets import trial_images  # noqa: E402


def cases() -> list[tuple[str, object, dict]]:
    out = []
    for name, px, specs in target_images():
        out += [(name, px, spec) for spec in specs]
    for name, px, budgets in trial_images():
        out += [(name, px, {"max_bytes": b}) for b in budgets]
    return out


def main(args: list[str]) -> None:
    only_bytes = "--bytes" in args
    args = [a for a in args if a != "--bytes"]
    for name, pixels, spec in cases():
        if only_bytes and "max_bytes" not in spec:
            continue
        label = f"{name} {'psnr ' + str(spec['psnr']) if 'psnr' in spec else spec['max_bytes']}"
        if args and not any(a in label for a in args):
            continue
        counter = _Counter()
        sized = [0]
        original = ctx.payload_bounds

        def bounds(*a, **kw):
            sized[0] += 1
            return original(*a, **kw)
        ctx.payload_bounds = bounds
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t, img = cpu(lambda: kmq.compress_to(pixels, codec="ctx", **spec))
            data = img.to_bytes()
            fits, runs, encodes = counter.fits, counter.rdo, counter.encodes - 1
        finally:
            counter.close()
            ctx.payload_bounds = original
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_plain = min(cpu(lambda: kmq.compress(pixels, img.k, codec="ctx").to_bytes())[0] for _ in range(2))
        print(json.dumps({"case": label, "k": img.k, "rdo": img.metadata.get("rdo", 0), "bytes": len(data),
                          "psnr": round(psnr(img.distortion, img.channels), 4),
                          "sha": hashlib.sha256(data).hexdigest()[:16], "fits": fits, "runs": runs,
                          "sizings": sized[0], "encodes": encodes, "t": round(t, 3), "t_plain": round(t_plain, 3),
                          "cost": round(t / t_plain, 2)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
