"""Defects a new user found in round 16, each with the test that failed before its fix."""
import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import KmqError, KmqImage


def test_the_pixel_limit_is_told_in_the_librarys_words(tmp_path):
    # The library said "raise it with --max-pixels", a flag a Python caller does not have (the CLI still says it).
    Image.fromarray(np.zeros((13, 11, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(KmqError, match=r"11x13 = 143 pixels exceeds the limit of 142 pixels \(raise max_pixels "
                                       r"to allow it\)$"):
        kmq.compress(tmp_path / "a.png", max_pixels=142)
    data = kmq.compress(np.zeros((13, 11, 3), np.uint8), 1).to_bytes()
    with pytest.raises(KmqError, match=r"pixels \(raise max_pixels to allow it\)$"):
        KmqImage.from_bytes(data, max_pixels=142)


def test_dir_shows_kmqs_names_not_its_typing_imports():
    names = dir(kmq)
    assert not {"Any", "TYPE_CHECKING", "annotations"} & set(names)
    assert set(kmq.__all__) <= set(names)


def test_the_librarys_refusals_name_its_own_arguments():
    # They named --rdo, --codec ctx and --dither fs, options a Python caller does not have.
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"^every labelling costs the same bytes with codec='raw', so rdo cannot "
                                         r"help; use codec='ctx' \(or 'lzma'\)$"):
        kmq.compress(pixels, 4, rdo=2)
    with pytest.raises(ValueError, match=r"^dither='fs' cannot be combined with rdo > 0: "):
        kmq.compress(pixels, 4, codec="ctx", rdo=2, dither="fs")
    with pytest.raises(ValueError, match=r"^rdo refines the palette it fits; a given palette is kept exactly"):
        kmq.compress(pixels, codec="ctx", rdo=2, palette=np.zeros((2, 3), np.uint8))


def test_the_k_hints_are_the_librarys_words_in_python_and_the_options_on_the_command_line(tmp_path):
    from click.testing import CliRunner

    from kmq import segment
    from kmq.cli import main

    pixels = np.random.default_rng(0).integers(0, 256, (13, 11, 3), dtype=np.uint8)
    with pytest.raises(KmqError, match=r"over the limit of 2000 \(fewer ks, or raise max_pixels\)$"):
        segment.montage(pixels, [2, 3], max_pixels=2000)
    with pytest.raises(KmqError, match=r"\(K=2, the most k allows\)$"):
        kmq.compress_to(pixels, psnr=70, k=2)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["montage", str(tmp_path / "a.png"), "-k", "2", "-k", "3", "-o",
                                       str(tmp_path / "m.png"), "--max-pixels", "2000"])
    assert result.exit_code == 1
    assert result.output.endswith("over the limit of 2000 (fewer -k, or raise --max-pixels)\n")
    result = CliRunner().invoke(main, ["compress", str(tmp_path / "a.png"), "--psnr", "70", "-k", "2"])
    assert result.exit_code == 1 and result.output.endswith("(K=2, the most -k allows)\n")
