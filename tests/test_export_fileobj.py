"""kmq.export and kmq.write into file objects (round 44's library trial: paths only, so a notebook or a web
handler wrote a temporary file to get the bytes of a PNG)."""
import io

import numpy as np
import pytest
from PIL import Image

import kmq


@pytest.fixture
def img(rgb_small):
    return kmq.compress(rgb_small, 5)


def test_export_writes_the_image_at_the_object_s_position(img):
    out = io.BytesIO(b"head")
    out.seek(4)
    assert kmq.export(img, out) == "PNG"
    with Image.open(io.BytesIO(out.getvalue()[4:])) as im:
        assert im.format == "PNG" and im.mode == "P"  # K <= 256: a palette PNG, as to a file
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), img.decode())
    assert out.getvalue()[:4] == b"head"


def test_export_takes_a_format_and_a_real_file(img, tmp_path):
    out = io.BytesIO()
    assert kmq.export(img, out, format="webp", truecolor=True) == "WEBP"
    with Image.open(io.BytesIO(out.getvalue())) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), img.decode())  # lossless
    with open(tmp_path / "x.bin", "wb") as f:
        kmq.export(img, f, format="gif")
    assert (tmp_path / "x.bin").read_bytes()[:4] == b"GIF8"


def test_write_gives_the_file_s_bytes(img):
    out = io.BytesIO()
    assert kmq.write(out, img) == len(out.getvalue())
    assert out.getvalue() == img.to_bytes() and kmq.read(io.BytesIO(out.getvalue())) == img


def test_a_refused_format_writes_nothing(rgb_small):
    rgba = np.dstack([rgb_small, np.full(rgb_small.shape[:2], 7, np.uint8)])
    out = io.BytesIO()
    with pytest.raises(kmq.KmqError, match="unknown image format 'xyz'"):
        kmq.export(kmq.compress(rgba, 3), out, format="xyz")
    assert out.getvalue() == b""


def test_a_text_object_is_refused_with_what_to_do(img):
    for call in (kmq.export, lambda f, i: kmq.write(f, i)):
        target = io.StringIO()
        args = (img, target) if call is kmq.export else (target, img)
        with pytest.raises(TypeError, match=r"written as bytes: open it in binary mode \('wb'\)"):
            call(*args)


def test_a_failure_while_encoding_leaves_the_object_as_it_was(img, monkeypatch):
    import kmq.api

    def half_then_fail(palette, labels, target, **kwargs):
        target.write(b"\x89PNG half")
        raise OSError("disk gone")

    monkeypatch.setattr(kmq.api, "save_quantized", half_then_fail)
    out = io.BytesIO()
    with pytest.raises(OSError, match="disk gone"):
        kmq.export(img, out)
    assert out.getvalue() == b""


def test_an_open_file_s_extension_names_the_format(img, tmp_path):
    # (h54r1: open("x.jpg", "wb") got PNG bytes, where a path's extension picks the format)
    with open(tmp_path / "x.gif", "wb") as f:
        assert kmq.export(img, f) == "GIF"
    assert (tmp_path / "x.gif").read_bytes()[:4] == b"GIF8"


class _Trickle(io.RawIOBase):
    """A raw file object that takes at most 10 bytes a call, as an unbuffered pipe or socket may."""

    def __init__(self):
        self.data = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.data += bytes(b[:10])
        return min(10, len(b))


def test_a_raw_object_that_takes_a_few_bytes_a_call_gets_them_all(img):
    out = _Trickle()
    assert kmq.write(out, img) == len(img.to_bytes()) and bytes(out.data) == img.to_bytes()
    out = _Trickle()
    kmq.export(img, out)
    with Image.open(io.BytesIO(bytes(out.data))) as im:
        np.testing.assert_array_equal(np.asarray(im.convert("RGB")), img.decode())
