"""Only the RGBA section of bench/speed.py: runs `bench_rgba` and puts its table and its two target rows
into bench/results/speed.md in place of the old ones, leaving every other number of that file as it was.

A full `make bench` takes many minutes; this takes about one. Run from the repository root:
`.venv/bin/python bench/speed_rgba.py`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed  # noqa: E402  (bench/speed.py, beside this script)


def splice(text: str, section: list[str], targets: list[tuple[str, str, str, bool]]) -> str:
    """text with its RGBA section and RGBA target rows replaced by the new ones."""
    lines = text.split("\n")
    start = lines.index(section[0])
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    lines[start:end] = section
    last = None  # a target row new to the file goes after the RGBA row before it
    for t, m, how, ok in targets:
        row = f"| {t} | {m} | {how} | {speed.mark(ok)} |"
        at = [i for i, line in enumerate(lines) if line.startswith(f"| {t} |")]
        if at:
            lines[at[0]] = row
            last = at[0]
        elif last is not None:
            last += 1
            lines.insert(last, row)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


def main() -> None:
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", file=sys.stderr, flush=True)

    speed.run_reaped([sys.executable, "-c", "pass"])  # the launcher starts while this process is small
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(speed.ROOT / "kmq")], check=True)
    load = speed.machine_load()
    with tempfile.TemporaryDirectory(prefix="kmq-rgba-") as tmp:
        rows = speed.bench_rgba(Path(tmp), log)
    targets: list[tuple[str, str, str, bool]] = []
    section = speed.report_rgba(rows, targets)
    section[2] += (f" Measured alone by `bench/speed_rgba.py` ({load} at the start, {speed.machine_load()} "
                   "at the end).")
    print("\n".join(section))
    for t in targets:
        print(t)
    speed.RESULTS.write_text(splice(speed.RESULTS.read_text(), section, targets))
    log(f"wrote {speed.RESULTS.relative_to(speed.ROOT)}")


if __name__ == "__main__":
    main()
