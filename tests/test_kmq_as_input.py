"""A damaged .kmq given to `compress` (which quantizes a .kmq's pixels again) gets the .kmq reader's words,
as `decompress` does: a truncated one was 'not an image Pillow can read', a flipped byte named the file twice."""
import numpy as np
import pytest
from click.testing import CliRunner

import kmq
from kmq.cli import main


@pytest.fixture
def good(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "g.kmq"
    kmq.write(path, kmq.compress(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), 8))
    return path


def _said(command, path, tmp_path):
    out = ["-o", str(tmp_path / ("o.kmq" if command == "compress" else "o.png"))]
    result = CliRunner().invoke(main, [command, str(path), *(["-k", "4"] if command == "compress" else []), *out])
    return result.exit_code, result.output


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_compress_names_a_damaged_kmq_as_decompress_does(good, tmp_path, damage):
    data = bytearray(good.read_bytes())
    if damage == "truncated":
        data = data[:60]
    else:
        data[50] ^= 1
    bad = tmp_path / "bad.kmq"
    bad.write_bytes(bytes(data))
    code, said = _said("compress", bad, tmp_path)
    assert (code, said) == _said("decompress", bad, tmp_path)
    assert code == 1 and said.count(str(bad)) == 1
    assert said.startswith(f"Error: {bad}: " + ("truncated file: expected" if damage == "truncated"
                                                else "checksum mismatch: stored 0x"))


def test_a_truncated_kmq_from_a_stream(good):
    import io

    with pytest.raises(kmq.KmqError, match=r"^<stream>: truncated file: expected \d+ bytes \(.*\), got 60$"):
        kmq.compress(io.BytesIO(good.read_bytes()[:60]), 4)
