"""kmq.prefetch (the input of `kmq compress` decoded while kmq loads) and the light `import kmq` it needs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kmq import prefetch
from kmq.imageio import load_image


@pytest.mark.parametrize("args, image", [
    (["compress", "a.png", "-k", "16"], "a.png"),
    (["compress", "-k", "16", "-o", "x.kmq", "a.png", "-f", "-q"], "a.png"),
    (["compress", "--seed=3", "a.png"], "a.png"),
    (["compress", "-f", "a.png"], None),  # after an option: maybe its value, so not guessed
    (["compress", "a.png", "b.png"], None),
    (["compress", "-", "-o", "-"], None),
    (["compress", "a.png", "--max-pixels", "10"], None),
    (["compress", "--", "a.png"], None),
    (["stats", "a.png"], None),
    ([], None),
])
def test_the_image_named_on_the_command_line(args: list[str], image: str | None) -> None:
    assert prefetch._the_image(args) == image


@pytest.fixture(autouse=True)
def nothing_left_started():
    yield
    prefetch._started.clear()


@pytest.fixture
def photo(tmp_path: Path, rgb_small: np.ndarray) -> Path:
    path = tmp_path / "p.png"
    Image.fromarray(rgb_small).save(path)
    return path


def test_the_decoded_image_is_taken_once(photo: Path) -> None:
    prefetch.start(["compress", str(photo), "-k", "4"])
    assert prefetch.take(photo.with_name("other.png")) is None
    im = prefetch.take(str(photo))
    assert im is not None and np.array_equal(np.asarray(im), np.asarray(Image.open(photo)))
    assert prefetch.take(str(photo)) is None  # a second read opens the file


def test_another_spelling_of_the_path_is_taken(photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(photo.parent)
    prefetch.start(["compress", "./p.png"])
    assert prefetch.take(Path("./p.png")) is not None  # pathlib spells it "p.png"


def test_the_switch_interval_comes_back_though_nobody_takes_the_image(photo: Path) -> None:
    before = sys.getswitchinterval()
    prefetch.start(["compress", str(photo)])
    for _, thread, _ in prefetch._started.values():
        thread.join()
    assert sys.getswitchinterval() == before


def test_a_file_changed_meanwhile_is_read_again(photo: Path, rgb_small: np.ndarray) -> None:
    prefetch.start(["compress", str(photo)])
    Image.fromarray(rgb_small[::-1].copy()).save(photo)
    os.utime(photo, ns=(1, 1))  # a new mtime even on a coarse clock
    assert prefetch.take(str(photo)) is None
    assert np.array_equal(load_image(str(photo)), rgb_small[::-1])


def test_what_is_not_a_plain_image_is_left_to_load_image(tmp_path: Path, photo: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"not an image")
    for args in (["compress", str(tmp_path / "x.png")], ["compress", str(tmp_path)],
                 ["compress", str(tmp_path / "missing.png")]):
        prefetch.start(args)
    assert not prefetch._started


def test_import_kmq_loads_no_numpy_until_used() -> None:
    code = ("import sys, kmq; assert 'numpy' not in sys.modules and 'kmq.api' not in sys.modules; "
            "assert 'compress' in dir(kmq) and kmq.compress is kmq.api.compress and 'numpy' in sys.modules; "
            "from kmq import KmqImage; print(KmqImage.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "KmqImage\n"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        import kmq
        kmq.nothing  # noqa: B018


def test_the_command_with_a_head_start_writes_the_same_file(tmp_path: Path, photo: Path) -> None:
    from click.testing import CliRunner

    from kmq.cli import main

    assert CliRunner().invoke(main, ["compress", str(photo), "-k", "4", "-o", str(tmp_path / "a.kmq")]).exit_code == 0
    subprocess.run([sys.executable, "-m", "kmq", "compress", str(photo), "-k", "4", "-o", str(tmp_path / "b.kmq"), "-q"],
                   check=True)
    assert (tmp_path / "a.kmq").read_bytes() == (tmp_path / "b.kmq").read_bytes()
