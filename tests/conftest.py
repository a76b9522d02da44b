import io
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
T = TypeVar("T")

COMPRESS_USAGE = "Usage: kmq compress [OPTIONS] IMAGE...\nTry 'kmq compress --help' for help.\n\n"


def traced_peak(fn: Callable[[], T]) -> tuple[T, int]:
    """fn() and the peak of the memory Python and numpy allocated while it ran (tracemalloc; not Pillow's)."""
    import tracemalloc

    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def assert_compress_usage_error(image: Path, args: list[str], message: str) -> None:
    """`kmq compress image *args` exits 2 with the usage and `Error: message`, and writes no .kmq."""
    from click.testing import CliRunner

    from kmq.cli import main

    result = CliRunner().invoke(main, ["compress", str(image), *args], prog_name="kmq")
    assert result.exit_code == 2
    assert result.output == COMPRESS_USAGE + f"Error: {message}\n"
    assert not image.with_suffix(".kmq").exists()


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def rgb_small() -> np.ndarray:
    """A 13 x 11 RGB crop of a real photo: small enough for fast tests, varied enough to cluster."""
    from PIL import Image
    with Image.open(SAMPLES / "chelsea.png") as im:
        return np.asarray(im.convert("RGB"))[100:113, 200:211].copy()


class _Terminal(io.TextIOWrapper):
    """A stderr that says it is a terminal, keeping what is written; a real text stream over bytes, as the
    process's own is (click writes to its .buffer, which rich's redirection of sys.stderr does not see)."""

    def __init__(self):
        super().__init__(io.BytesIO(), encoding="utf-8", write_through=True)

    def isatty(self):
        return True

    @property
    def text(self) -> str:
        self.flush()
        return self.buffer.getvalue().decode()

    def clear(self) -> None:
        self.flush()
        self.buffer.seek(0)
        self.buffer.truncate()


@pytest.fixture
def terminal() -> _Terminal:
    """A terminal to put in place of sys.stderr, in the test's body (pytest restores its own capture between
    set-up and the test): progress bars draw there."""
    return _Terminal()


@pytest.fixture
def runner():
    from click.testing import CliRunner
    return CliRunner()


@pytest.fixture
def png(tmp_path, rgb_small) -> Path:
    """rgb_small as tmp_path/a.png."""
    from PIL import Image
    path = tmp_path / "a.png"
    Image.fromarray(rgb_small).save(path)
    return path


@pytest.fixture
def kmq_file(tmp_path, rgb_small) -> Path:
    """rgb_small compressed at K = 4 into tmp_path/a.kmq."""
    import kmq
    path = tmp_path / "a.kmq"
    kmq.write(path, kmq.compress(rgb_small, k=4))
    return path


@pytest.fixture
def image(tmp_path, crop) -> Path:
    """The module's `crop` fixture as tmp_path/c.png."""
    from PIL import Image
    path = tmp_path / "c.png"
    Image.fromarray(crop).save(path)
    return path
