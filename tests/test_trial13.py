"""Fixes from round 13's new-user pass over the CLI: each test is the reported case, with the exact output."""
import json

import numpy as np
import pytest
from PIL import Image

from kmq import batch
from kmq.cli import main


def run(runner, *args):
    return runner.invoke(main, [str(a) for a in args], catch_exceptions=False, prog_name="kmq")


@pytest.fixture
def one(tmp_path):
    Image.new("RGB", (1, 1), (10, 20, 30)).save(tmp_path / "one.png")
    return tmp_path / "one.png"


@pytest.fixture
def ramp(tmp_path):
    """64x48 grey ramp of 64 levels, every row the same: at K = 16 ctx labels nothing rdo can make cheaper."""
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))).save(tmp_path / "ramp.png")
    return tmp_path / "ramp.png"


# 1. A bulk run of lossless files only showed "Mean PSNR  unknown", as if the PSNR could not be measured.
def test_bulk_summary_of_lossless_files_only_says_lossless(runner, tmp_path, one):
    result = run(runner, "compress", one, "-o", f"{tmp_path}/out/", "-q")
    assert result.exit_code == 0
    result = run(runner, "compress", one, "-o", f"{tmp_path}/out/", "-f")
    assert result.stdout.splitlines()[-2] == "│ Mean PSNR                 │ lossless │"
    as_json = json.loads(run(runner, "compress", one, "-o", f"{tmp_path}/out/", "-f", "--summary", "json").stdout)
    assert as_json["mean_psnr"] is None  # json has no infinity: null, as a lossless record's psnr


def test_summarize_tells_lossless_from_unknown(tmp_path, one):
    (lossless,) = batch.run(batch.plan_compress([one]), batch.CompressTask(k=2), 1)
    assert batch.summarize([lossless])["mean_psnr"] == float("inf")
    assert batch.summarize([])["mean_psnr"] is None
    unknown = batch.Result(lossless.job, record={**lossless.record, "psnr": None})
    assert batch.summarize([unknown])["mean_psnr"] is None


# 2. A word where a number belongs got click's "'abc' is not a valid float range."
@pytest.mark.parametrize("option", ["--psnr", "--rdo"])
def test_a_word_for_a_number_says_it_is_not_a_number(runner, one, option):
    result = run(runner, "compress", one, "--codec", "ctx", option, "abc")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == f"Error: Invalid value for '{option}': 'abc' is not a number"


# 3. A negative byte budget was "not a size", with the list of units, as if the unit were wrong.
def test_a_negative_byte_budget_is_less_than_one_byte(runner, one):
    result = run(runner, "compress", one, "--codec", "ctx", "--max-bytes", "-3")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "Error: Invalid value for '--max-bytes': '-3' is less than 1 byte"


# 4. One mask was named as a range of one: "1 mask, one-cluster-0.png .. one-cluster-0.png".
def test_one_mask_is_named_once(runner, tmp_path, one):
    result = run(runner, "segment", one, "--masks", tmp_path / "m")
    assert result.exit_code == 0
    assert result.stdout == f"{one} -> {tmp_path / 'm'}: 1 mask, one-cluster-0.png\n"


# 5. --rdo that saved nothing keeps the plain file, which records no rdo: the line said nothing of rdo, so
# --rdo 100 looked ignored.
def test_rdo_that_saved_nothing_says_so(runner, tmp_path, ramp):
    run(runner, "compress", ramp, "--codec", "ctx", "-o", tmp_path / "plain.kmq")
    result = run(runner, "compress", ramp, "--codec", "ctx", "--rdo", "100", "-o", tmp_path / "rdo.kmq")
    assert result.exit_code == 0
    assert (tmp_path / "rdo.kmq").read_bytes() == (tmp_path / "plain.kmq").read_bytes()
    assert result.stdout.startswith(f"{ramp} -> {tmp_path / 'rdo.kmq'}: k=16, rdo 100% saved nothing (the plain "
                                    f"file), 4 bits/label, packed/original bits 0.51, 348 bytes, PSNR 35.12 dB, ")
    bulk = run(runner, "compress", ramp, "--codec", "ctx", "--rdo", "100", "-o", f"{tmp_path}/out/")
    assert bulk.stdout.startswith(f"{ramp} -> {tmp_path / 'out' / 'ramp.kmq'}: k=16, rdo 100% saved nothing")
