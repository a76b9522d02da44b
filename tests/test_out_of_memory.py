"""Running out of memory is one `Error:` line, exit 1, nothing written: a 48 MP compress under a 1 GB limit
printed a 40-line traceback (a bulk run's workers already said it per file)."""
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import kmq
from kmq import api, kmeans
from kmq.cli import main


def _no_memory(message):
    def fail(*args, **kwargs):
        raise MemoryError(*(message,) if message else ())
    return fail


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    return tmp_path / "p.png"


@pytest.mark.parametrize("message, said", [
    ("Unable to allocate 184. MiB for an array with shape (48000000,) and data type float32",
     "Error: out of memory (Unable to allocate 184. MiB for an array with shape (48000000,) and data type "
     "float32)\n"),
    (None, "Error: out of memory\n"),
])
def test_a_compress_out_of_memory_is_one_line(photo, tmp_path, monkeypatch, message, said):
    monkeypatch.setattr(kmeans, "fit", _no_memory(message))
    result = CliRunner().invoke(main, ["compress", str(photo), "-k", "4", "-o", str(tmp_path / "p.kmq")])
    assert (result.exit_code, result.output) == (1, said)
    assert not (tmp_path / "p.kmq").exists()


def test_reading_an_image_out_of_memory_is_not_blamed_on_the_file(photo, tmp_path, monkeypatch):
    """It was `cannot read image: MemoryError: ` (an empty reason); the library lets MemoryError through."""
    monkeypatch.setattr(Image.Image, "load", _no_memory(None))
    with pytest.raises(MemoryError):
        kmq.compress(photo, 4)
    result = CliRunner().invoke(main, ["compress", str(photo), "-k", "4", "-o", str(tmp_path / "p.kmq")])
    assert (result.exit_code, result.output) == (1, "Error: out of memory\n")


def test_a_decompress_out_of_memory_is_one_line(photo, tmp_path, monkeypatch):
    kmq.write(tmp_path / "p.kmq", kmq.compress(photo, 4))
    monkeypatch.setattr(api, "save_quantized", _no_memory("Unable to allocate 1.00 GiB"))
    result = CliRunner().invoke(main, ["decompress", str(tmp_path / "p.kmq"), "-o", str(tmp_path / "out.png")])
    assert (result.exit_code, result.output) == (1, "Error: out of memory (Unable to allocate 1.00 GiB)\n")
    assert not (tmp_path / "out.png").exists()


def test_a_bulk_run_says_out_of_memory_for_the_file(photo, tmp_path, monkeypatch):
    """It said `unexpected MemoryError: ...`."""
    monkeypatch.setattr(kmeans, "fit", _no_memory("Unable to allocate 8.00 MiB"))
    result = CliRunner().invoke(main, ["compress", str(photo), "-k", "4", "-o", str(tmp_path / "out") + "/",
                                       "-j", "1", "-q"])
    assert result.exit_code == 1
    assert f"Error: {photo}: out of memory (Unable to allocate 8.00 MiB)\n" in result.output
    assert not list(tmp_path.glob("out/*.kmq"))


def test_a_png_chunk_over_pillows_limit_is_named(tmp_path):
    """Pillow's words were 'Decompressed data too large for PngImagePlugin.MAX_TEXT_CHUNK'."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = tmp_path / "z.png"
    Image.new("RGB", (4, 4)).save(png)
    data = png.read_bytes()
    at = data.index(b"IDAT") - 4
    png.write_bytes(data[:at] + chunk(b"zTXt", b"note\x00\x00" + zlib.compress(b"a" * (2 << 20))) + data[at:])
    result = CliRunner().invoke(main, ["compress", str(png), "-k", "2", "-o", str(tmp_path / "z.kmq")])
    assert (result.exit_code, result.output) == (1, f"Error: {png}: cannot read image: a PNG text or colour "
                                                    f"profile chunk inflates to over 1 MiB, Pillow's limit "
                                                    f"against decompression bombs\n")
