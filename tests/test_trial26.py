"""What round 45's web trial (h54e) found: small palette images for the web."""
import json

import numpy as np
from PIL import Image

from test_cli import run, runner  # noqa: F401 - runner is a fixture
from test_skip_existing import frames  # noqa: F401 - a fixture


def test_decompress_and_segment_summaries_give_the_file_s_rdo(runner, frames, tmp_path):
    # (round 45's web trial: decompress --summary json said "rdo": null for a file that recorded its rdo)
    from conftest import SAMPLES

    out = tmp_path / "k"
    with Image.open(SAMPLES / "chelsea.png") as im:
        photo = np.asarray(im.convert("RGB"))[:64, :64]
    for i in range(2):
        Image.fromarray(np.roll(photo, 3 * i, axis=0)).save(frames / f"f{i}.png")
    assert run(runner, "compress", frames / "f0.png", frames / "f1.png", "-k", "8", "--codec", "ctx", "--rdo", "50",
               "-o", f"{out}/", "-q").exit_code == 0
    rdo = [kmq_file_rdo(out / f"f{i}.kmq") for i in range(2)]
    assert any(r is not None for r in rdo)
    for command in (["decompress", out, "-o", f"{tmp_path / 'png'}/"],
                    ["segment", out, "-o", f"{tmp_path / 'seen'}/"]):
        s = json.loads(run(runner, *command, "--summary", "json").stdout)
        assert [r["rdo"] for r in s["results"]] == rdo


def kmq_file_rdo(path):
    import kmq

    return kmq.read(path).metadata.get("rdo")
