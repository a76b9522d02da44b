"""What one `kmq` command loads: only what it uses (kmq.limits, kmq.imageio._extension_format)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest


def _modules_after(code: str, *argv: str, cwd=None) -> set[str]:
    """The modules loaded in a fresh interpreter after code (given sys.argv = ["kmq", *argv])."""
    script = (f"import json, sys\nsys.argv = ['kmq', *{list(argv)!r}]\n{code}\n"
              "sys.__stdout__.write('\\n' + json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


_COMMAND = "from kmq.__main__ import main\ntry:\n    main()\nexcept SystemExit:\n    pass"


def test_the_command_line_loads_no_library():
    """`import kmq.cli`, `kmq --help`, `--version` and a usage error load neither numpy nor the library, nor
    rich or matplotlib (~0.06 s of a 0.12 s run)."""
    library = {"numpy", "kmq.api", "kmq.format", "kmq.kmeans", "kmq.segment", "kmq.stats", "kmq.palettes",
               "kmq.plot", "rich", "matplotlib"}
    assert not _modules_after("import kmq.cli") & library
    for argv in (["--help"], ["--version"], ["compress", "--help"], ["compress"], ["compress", "x.png", "-k", "0"]):
        assert not _modules_after(_COMMAND, *argv) & library, argv


def test_a_compress_loads_no_other_command(tmp_path, samples):
    loaded = _modules_after(_COMMAND, "compress", str(samples / "chelsea.png"), "-o", str(tmp_path / "c.kmq"))
    assert (tmp_path / "c.kmq").exists()
    assert "numpy" in loaded
    assert not loaded & {"kmq.segment", "kmq.plot", "kmq.palettes", "kmq.batch", "rich", "csv"}


@pytest.mark.parametrize("k", ["16", "64", "256"])
def test_a_compress_loads_no_masked_arrays(tmp_path, samples, k):
    """np.median imported numpy.ma (~5 ms) for its NaN check: kmeans' own median needs none."""
    loaded = _modules_after(_COMMAND, "compress", str(samples / "chelsea.png"), "-k", k, "--codec", "ctx", "-o",
                            str(tmp_path / "c.kmq"))
    assert "kmq.kmeans" in loaded and "numpy.ma" not in loaded


def test_kmeans_median_is_numpys():
    from kmq import kmeans

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for n in [*range(1, 40), 1000, 1001, 65_536]:
            x = (rng.random(n) * rng.choice([1.0, 1e3, 1e7])).astype(dtype)
            x = np.round(x) if n % 3 == 0 else x  # ties among the middle values
            assert kmeans._median(x) == float(np.median(x))
            assert kmeans._median(x[::3]) == float(np.median(x[::3]))  # as _hamerly calls it: a strided view


def test_decompress_to_png_loads_one_of_pillows_plugins(tmp_path, samples):
    """Not all ~45 of them (Image.init, 15-25 ms): the output's name picks PNG by Pillow's own table."""
    subprocess.run([sys.executable, "-m", "kmq", "compress", str(samples / "chelsea.png"), "-o",
                    str(tmp_path / "c.kmq")], check=True, capture_output=True)
    for argv in (["-o", str(tmp_path / "d.png")], []):
        loaded = _modules_after(_COMMAND, "decompress", str(tmp_path / "c.kmq"), "-f", *argv)
        assert "PIL.PngImagePlugin" in loaded
        assert not {"PIL.PdfImagePlugin", "PIL.WebPImagePlugin", "PIL.TiffImagePlugin"} & loaded
    assert (tmp_path / "d.png").exists() and (tmp_path / "c.kmq.png").exists()


# Each extension of Pillow's table in a fresh fork of one interpreter that has loaded no plugin: the format,
# whether Pillow writes it and (if so) suffix_for's answer, the quick way; then the same after Image.init.
_PIN = """
import json, os
from PIL import Image
from kmq import imageio
from kmq.errors import KmqError

def answer(ext):
    fmt = imageio._extension_format(ext)
    try:
        suffix = imageio.suffix_for(ext[1:])
    except KmqError as e:
        suffix = str(e)
    return [fmt, fmt in Image.SAVE, suffix]

quick = {}
for ext in sorted(Image._EXTENSION_PLUGIN):
    read, write = os.pipe()
    if os.fork() == 0:
        os.close(read)
        assert not [m for m in __import__("sys").modules if m.endswith("ImagePlugin")]
        os.write(write, json.dumps(answer(ext)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        quick[ext] = json.loads(f.read())
    os.wait()
Image.init()
print(json.dumps([quick, {ext: answer(ext) for ext in quick}]))
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="each extension is looked up in a fork that loaded no plugin")
def test_the_quick_extension_lookup_answers_as_registered_extensions():
    out = subprocess.run([sys.executable, "-c", _PIN], capture_output=True, text=True, check=True)
    quick, full = json.loads(out.stdout)
    assert len(quick) > 40 and quick[".png"] == ["PNG", True, ".png"]
    assert quick == full

