"""Defects a new user's trial found in round 20, each fixed with a test that failed before."""
import gc
import io
import warnings

import numpy as np
import pytest
from PIL import Image

import kmq


@pytest.fixture
def small() -> np.ndarray:
    y, x = np.mgrid[0:12, 0:20]
    return np.dstack([x * 12, y * 20, (x + y) * 8]).astype(np.uint8)


@pytest.mark.parametrize("bad", [0, -1, "x", None, 2.5, True])
def test_a_bad_max_pixels_is_a_valueerror_naming_it(small, tmp_path, bad):
    # it was compared with the image's size deep in the reader: 'x' made "cannot read image: TypeError ...",
    # -1 "... exceeds the limit of -1 pixels"
    Image.fromarray(small).save(tmp_path / "a.png")
    kmq.write(tmp_path / "a.kmq", kmq.compress(small, 4))
    calls = [lambda: kmq.compress(tmp_path / "a.png", 4, max_pixels=bad),
             lambda: kmq.compress_to(tmp_path / "a.png", psnr=30, max_pixels=bad),
             lambda: kmq.read(tmp_path / "a.kmq", max_pixels=bad)]
    for call in calls:
        with pytest.raises(ValueError, match=f"max_pixels must be an integer of at least 1, got {bad!r}"):
            call()


def test_bytes_and_nameless_streams_are_not_called_stdin():
    with pytest.raises(kmq.KmqError, match=r"^<bytes>: not an image Pillow can read"):
        kmq.compress(b"photo.png")
    with pytest.raises(kmq.KmqError, match=r"^<stream>: not an image Pillow can read"):
        kmq.compress(io.BytesIO(b"photo.png"))


def test_read_takes_the_files_bytes_and_file_objects_as_compress_does(small, tmp_path):
    img = kmq.compress(small, 5, codec="ctx")
    data = img.to_bytes()
    (tmp_path / "a.kmq").write_bytes(data)
    with open(tmp_path / "a.kmq", "rb") as f:
        from_file = kmq.read(f)
    for read in (kmq.read(data), kmq.read(bytearray(data)), kmq.read(io.BytesIO(data)), from_file):
        assert read == img
    with pytest.raises(kmq.FormatError, match=r"^<bytes>: truncated file: expected \d+ bytes \(.*\), got \d+"):
        kmq.read(data[:-3])
    with pytest.raises(kmq.FormatError, match=r"^<stream>: truncated file"):
        kmq.read(io.BytesIO(data[:-3]))
    with pytest.raises(TypeError, match="read takes a path, a .kmq file's bytes or a binary file object, got int"):
        kmq.read(5)


def test_decode_checks_edited_labels(small):
    img = kmq.compress(small, 4)
    img.labels[0, 0] = 4  # an IndexError from numpy before
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.3"):
        img.decode()
    img.labels = img.labels.astype(np.int64)
    img.labels[0, 0] = -1  # palette[-1] before, silently
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.3"):
        img.decode()


def test_a_failed_load_closes_the_file_as_pillow_does(small, tmp_path):
    data = bytearray(kmq.compress(small, 4).to_bytes())
    data[-6] ^= 1  # in the payload: the CRC no longer matches
    (tmp_path / "bad.kmq").write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        im = Image.open(tmp_path / "bad.kmq")
        with pytest.raises(OSError, match="bad.kmq: checksum mismatch"):
            im.load()
        assert im.fp is None
        with pytest.raises(OSError, match="bad.kmq: a load\\(\\) failed and closed the file: open it again"):
            im.load()
        del im
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_warnings_through_pillows_save_name_the_users_line(tmp_path):
    # They named kmq/pilplugin.py (a stacklevel counted for kmq.compress called directly).
    two = np.zeros((4, 4, 3), np.uint8)
    two[:2] = 200
    with pytest.warns(kmq.KmqWarning, match="only 2 distinct colours") as caught:
        Image.fromarray(two).save(tmp_path / "a.kmq", k=8)
    assert [w.filename for w in caught] == [__file__]
    with pytest.warns(kmq.KmqWarning, match="only 2 distinct colours") as caught:
        kmq.compress(two, 8)
    assert [w.filename for w in caught] == [__file__]


def test_a_ctx_payload_that_runs_out_of_words_is_called_truncated_or_corrupt(small):
    # A bit flipped inside the word stream (under a CRC forged to match) was reported as "truncated".
    img = kmq.compress(small, 8, codec="ctx")
    payload = kmq.codecs.encode(kmq.codecs.codec_id("ctx"), img.labels, img.palette)
    with pytest.raises(kmq.FormatError, match=r"truncated or corrupt: the rANS word stream ends after \d+ words"):
        kmq.codecs.decode(kmq.codecs.codec_id("ctx"), payload[:-2], img.width, img.height, img.palette)
