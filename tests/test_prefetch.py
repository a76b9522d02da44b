"""kmq.prefetch (the input of `kmq compress` decoded while kmq loads) and the light `import kmq` it needs."""
from __future__ import annotations

import io
import os
import platform
import struct
import subprocess
import sys
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from kmq import prefetch
from kmq.errors import KmqError
from kmq.imageio import clear_transparent, load_image


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
    for _, thread, _, _ in prefetch._started.values():
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


def _chunk(kind: bytes, body: bytes) -> bytes:
    """A PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _rechunked_png(data: bytes, size: int) -> bytes:
    """The same PNG with its image data cut into IDAT chunks of `size` bytes (encoders differ: libpng
    writes 8 KiB ones, Pillow 64 KiB)."""
    pos, head, idat, tail = 8, [], [], []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        (idat.append(body) if kind == b"IDAT" else (tail if idat else head).append(_chunk(kind, body)))
        pos += 12 + length
    stream = b"".join(idat)
    pieces = [_chunk(b"IDAT", stream[i:i + size]) for i in range(0, len(stream), size)]
    return data[:8] + b"".join(head + pieces + tail)


def _png(pixels: np.ndarray, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", **options)
    return buf.getvalue()


def _with_height(data: bytes, height: int) -> bytes:
    """The PNG with its IHDR saying `height` rows (its image data unchanged)."""
    ihdr = data[12:16] + data[16:20] + struct.pack(">I", height) + data[24:29]
    return data[:8] + data[8:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + data[33:]


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The prefetch with tiny inflated pieces, few waiting; the sizes of the pieces the decoder took."""
    monkeypatch.setattr(prefetch, "_PIECE", 1000)
    monkeypatch.setattr(prefetch, "_AHEAD", 2)
    taken: list[int] = []
    real = prefetch._Inflated.__call__

    def counted(self, n: int) -> bytes:
        piece = real(self, n)
        taken.append(len(piece))
        return piece

    monkeypatch.setattr(prefetch._Inflated, "__call__", counted)
    return taken


@pytest.mark.parametrize("stdlib", [False, True])  # ISA-L's zlib (a dependency) or Python's own
@pytest.mark.parametrize("size, options", [(1, {}), (97, {"compress_level": 0}), (5000, {"compress_level": 9}),
                                           (300, {"optimize": True})])
def test_png_data_is_inflated_ahead_in_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              small_pieces: list[int], size: int, options: dict,
                                              stdlib: bool) -> None:
    if stdlib:
        monkeypatch.setattr(prefetch, "_zlib", lambda: zlib)
    pixels = np.random.default_rng(1).integers(0, 256, (60, 70, 3), dtype=np.uint8)
    pixels[20:40] = pixels[20]  # some rows compress well
    path = tmp_path / "chunks.png"
    path.write_bytes(_rechunked_png(_png(pixels, **options), size))
    threads = threading.active_count()
    prefetch.start(["compress", str(path)])
    im = prefetch.take(str(path))
    assert im is not None and np.array_equal(np.asarray(im), pixels)
    assert "load_read" not in im.__dict__  # no cycle keeps the image's memory alive
    assert threading.active_count() == threads  # the inflating thread has ended too
    # 60 rows of 1 + 70 * 3 bytes inflated: 12 pieces of 1000 bytes in a stored block (a 5-byte header; the
    # first after the 2-byte zlib header), whatever the chunks' size, then the last 660 bytes with the last
    # (empty) block and the checksum; the decoder, done, asks no more.
    assert small_pieces == [1007] + [1005] * 11 + [5 + 660 + 5 + 4]


@pytest.mark.parametrize("stdlib", [False, True])
def test_the_inflater_is_fed_a_little_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                small_pieces: list[int], stdlib: bool) -> None:
    """Each inflate call gets at most _FEED compressed bytes: where its output limit stops it, zlib copies
    the input left over (`unconsumed_tail`), and whole 4 MiB groups made ~50 MB of such copies at 12 MP."""
    monkeypatch.setattr(prefetch, "_FEED", 500, raising=False)
    real = zlib if stdlib else prefetch._zlib()
    fed: list[int] = []

    class Counted:
        def __init__(self) -> None:
            self._inflater = real.decompressobj()

        def decompress(self, data, max_length=0):
            fed.append(len(data))
            return self._inflater.decompress(data, max_length)

        def __getattr__(self, name: str):
            return getattr(self._inflater, name)

    class Zlib:
        error, adler32 = real.error, staticmethod(real.adler32)

        @staticmethod
        def decompressobj() -> Counted:
            return Counted()

    monkeypatch.setattr(prefetch, "_zlib", lambda: Zlib)
    pixels = np.random.default_rng(8).integers(0, 256, (60, 70, 3), dtype=np.uint8)
    path = tmp_path / "fed.png"
    path.write_bytes(_rechunked_png(_png(pixels, compress_level=0), 10**6))  # one IDAT chunk of ~12.7 kB
    prefetch.start(["compress", str(path)])
    im = prefetch.take(str(path))
    assert im is not None and np.array_equal(np.asarray(im), pixels)
    assert sum(fed) >= 60 * 211 and max(fed) <= 500


@pytest.mark.parametrize("stdlib", [False, True])
@pytest.mark.parametrize("junk", [b"JUNK", bytes(2000)])
def test_bytes_after_the_zlib_stream_are_ignored_as_pillow_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                small_pieces: list[int], stdlib: bool,
                                                                junk: bytes) -> None:
    """Python's zlib kept the bytes after the stream as an unconsumed tail for ever: the inflating thread
    spun and `kmq compress` hung, where Pillow alone reads the file."""
    if stdlib:
        monkeypatch.setattr(prefetch, "_zlib", lambda: zlib)
    pixels = np.random.default_rng(4).integers(0, 256, (60, 70, 3), dtype=np.uint8)
    data = _rechunked_png(_png(pixels), 10**6)  # one IDAT chunk, then IEND
    at = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[at:at + 4])[0]
    body = data[at + 8:at + 8 + length] + junk
    path = tmp_path / "junk.png"
    path.write_bytes(data[:at] + _chunk(b"IDAT", body) + data[at + 12 + length:])
    assert np.array_equal(np.asarray(Image.open(path)), pixels)
    threads = threading.active_count()
    prefetch.start(["compress", str(path)])
    (_, decoding, _, _), = prefetch._started.values()
    decoding.join(timeout=30)
    assert not decoding.is_alive(), "the decode hangs"
    im = prefetch.take(str(path))
    assert im is not None and np.array_equal(np.asarray(im), pixels)
    assert threading.active_count() == threads


def test_an_image_that_ends_before_its_data_lets_the_inflating_thread_end(tmp_path: Path,
                                                                          small_pieces: list[int]) -> None:
    pixels = np.random.default_rng(2).integers(0, 256, (60, 70, 3), dtype=np.uint8)
    path = tmp_path / "short.png"
    path.write_bytes(_with_height(_png(pixels), 10))  # the decoder stops after 10 of the 60 rows
    threads = threading.active_count()
    prefetch.start(["compress", str(path)])
    im = prefetch.take(str(path))
    assert im is not None and np.array_equal(np.asarray(im), pixels[:10])
    assert threading.active_count() == threads and len(small_pieces) < 5


def _adam7_png(pixels: np.ndarray) -> bytes:
    """An interlaced (Adam7) RGB PNG of pixels, made by hand: Pillow reads these but writes none."""
    height, width = pixels.shape[:2]
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    rows = [b"\x00" + row.tobytes() for x0, y0, dx, dy in passes for row in pixels[y0::dy, x0::dx]
            if pixels[y0::dy, x0::dx].size]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + _chunk(b"IEND", b""))


def test_an_interlaced_png_is_inflated_ahead_alike(tmp_path: Path, small_pieces: list[int]) -> None:
    pixels = np.random.default_rng(4).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    path = tmp_path / "adam7.png"
    path.write_bytes(_adam7_png(pixels))
    assert Image.open(path).info.get("interlace") == 1 and np.array_equal(np.asarray(Image.open(path)), pixels)
    prefetch.start(["compress", str(path)])
    im = prefetch.take(str(path))
    assert im is not None and np.array_equal(np.asarray(im), pixels) and len(small_pieces) > 3


@pytest.mark.parametrize("mode", ["P", "L", "LA", "RGBA", "I;16"])
def test_pngs_of_every_mode_decode_alike(tmp_path: Path, rgb_small: np.ndarray, mode: str) -> None:
    path = tmp_path / "m.png"
    image = Image.fromarray(rgb_small)
    if mode == "I;16":
        image = Image.fromarray(rgb_small[:, :, 0].astype(np.uint16) * 257)
    (image.quantize(7) if mode == "P" else image.convert(mode) if mode != "I;16" else image).save(path)
    prefetch.start(["compress", str(path)])
    im = prefetch.take(str(path))
    assert im is not None and np.array_equal(np.asarray(im), np.asarray(Image.open(path)))
    assert im.mode == Image.open(path).mode


def test_corrupt_png_data_is_left_to_load_image(tmp_path: Path, photo: Path) -> None:
    data = bytearray(_rechunked_png(photo.read_bytes(), 1 << 20))
    start = data.index(b"IDAT") + 4
    length = struct.unpack(">I", data[start - 8:start - 4])[0]
    data[start + length // 2] ^= 0xFF  # damage the deflate stream, with the chunk's CRC made to match
    data[start + length:start + length + 4] = struct.pack(">I", zlib.crc32(bytes(data[start - 4:start + length])))
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    prefetch.start(["compress", str(path)])
    assert prefetch.take(str(path)) is None
    with pytest.raises(KmqError, match="bad.png: cannot read image"):
        load_image(str(path))


def test_a_truncated_png_is_left_to_load_image(tmp_path: Path, photo: Path) -> None:
    path = tmp_path / "cut.png"
    path.write_bytes(_rechunked_png(photo.read_bytes(), 50)[:-200])
    prefetch.start(["compress", str(path)])
    assert prefetch.take(str(path)) is None
    with pytest.raises(KmqError, match="cut.png: cannot read image"):
        load_image(str(path))


def test_the_command_ends_at_once_with_its_output_flushed(tmp_path: Path, photo: Path) -> None:
    # `kmq` ends by os._exit after a success (kmq/__main__.py): stdout must still hold the whole file, and
    # an error still exits 1 with its message.
    run = subprocess.run([sys.executable, "-m", "kmq", "compress", str(photo), "-k", "4", "-o", "-"],
                         capture_output=True, check=True)
    from kmq.api import compress

    assert run.stdout == compress(str(photo), 4).to_bytes() and run.stderr.startswith(b"%s -> -: k=4" % bytes(photo))
    bad = subprocess.run([sys.executable, "-m", "kmq", "compress", str(tmp_path / "none.png")], capture_output=True,
                         text=True)
    assert bad.returncode == 1 and bad.stderr == f"Error: {tmp_path / 'none.png'}: no such file or directory\n"


def test_a_program_that_runs_kmq_inside_its_own_process_goes_on_after_it() -> None:
    """The quick exit is the command's own: runpy (IPython's %run -m, a wrapper) gets SystemExit back."""
    code = ("import runpy, sys; sys.argv = ['kmq', '--version']\n"
            "try:\n    runpy.run_module('kmq', run_name='__main__')\n"
            "except SystemExit as e:\n    print('SystemExit', e.code)\n"
            "from kmq.__main__ import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    print('SystemExit', e.code)\n"
            "print('the host goes on')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    from kmq import __version__

    assert out.splitlines() == [f"kmq, version {__version__}", "SystemExit 0"] * 2 + ["the host goes on"]


@pytest.mark.parametrize("given", [None, "1"])
def test_the_command_asks_numpy_for_no_huge_pages_unless_told(given: str | None) -> None:
    """Compacting memory for a huge page at a fault cost a 12 MP compress up to 1.5 s of system time
    (kmq/__main__.py); a value the user set stays, and numpy loads with it."""
    code = ("import sys; sys.argv = ['kmq', '--version']\n"
            "from kmq.__main__ import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "import os, numpy\n"
            "print(os.environ['NUMPY_MADVISE_HUGEPAGE'], numpy._core.multiarray._set_madvise_hugepage(True))")
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if given is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = given
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.splitlines()[-1] == ("0 False" if given is None else "1 True")


def _in_mapped_memory(pixels: np.ndarray) -> bool:
    """Whether pixels view the memory kmq.prefetch.map_pixels decodes into (not a copy from Pillow)."""
    import mmap

    base = pixels
    while isinstance(base, (np.ndarray, memoryview)):
        base = base.base if isinstance(base, np.ndarray) else base.obj
    return isinstance(base, mmap.mmap)


@pytest.fixture
def map_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefetch, "_MAP_FROM", 1)  # every image, however small, decodes into kmq's memory


@pytest.mark.parametrize("through_prefetch", [False, True])
@pytest.mark.parametrize("mode, ext", [("RGB", "png"), ("RGB", "jpg"), ("RGBA", "png"), ("L", "png"),
                                       ("opaque RGBA", "png")])
def test_an_image_decoded_into_kmq_memory_gives_the_same_pixels(tmp_path: Path, rgb_small: np.ndarray,
                                                                map_all: None, mode: str, ext: str,
                                                                through_prefetch: bool) -> None:
    rgba = np.dstack([rgb_small, np.arange(rgb_small[:, :, 0].size, dtype=np.uint8).reshape(rgb_small.shape[:2])])
    image = {"RGB": Image.fromarray(rgb_small), "RGBA": Image.fromarray(rgba), "L": Image.fromarray(rgb_small[:, :, 1]),
             "opaque RGBA": Image.fromarray(rgb_small).convert("RGBA")}[mode]
    path = tmp_path / f"m.{ext}"
    image.save(path)
    with Image.open(path) as im:
        # As load_image always gave them: opaque RGBA without its alpha, through Pillow's own memory.
        want = np.asarray(im.convert("RGB") if mode == "opaque RGBA" else im)
        want = clear_transparent(want) if want.ndim == 3 and want.shape[2] == 4 else want
    for padded in (False, True):
        if through_prefetch:
            prefetch.start(["compress", str(path)])
        got = load_image(str(path), padded=padded)
        assert got.dtype == np.uint8 and np.array_equal(got, want)
        # Only RGB stays in its RGBX layout, and only when the caller asked for it; grey and RGBA with
        # transparency come as they are, anything else as a contiguous copy.
        assert _in_mapped_memory(got) == (padded or mode in ("L", "RGBA"))
        assert got.flags.c_contiguous == (not padded or mode in ("L", "RGBA"))


def test_an_image_turned_by_its_exif_orientation_is_read_from_pillow(tmp_path: Path, map_all: None) -> None:
    pixels = np.zeros((2, 3, 3), np.uint8)
    pixels[0, 0] = 255  # top-left white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "turned.png"
    Image.fromarray(pixels).save(path, exif=exif)
    prefetch.start(["compress", str(path)])
    got = load_image(str(path), padded=True)
    assert got.shape == (3, 2, 3) and got[0, 1].tolist() == [255, 255, 255] and not _in_mapped_memory(got)


def test_a_malformed_exif_is_left_to_load_image_to_report(tmp_path: Path, rgb_small: np.ndarray,
                                                         map_all: None) -> None:
    # An ImageDescription of 1000 bytes past the end of the EXIF; with a JFIF density, Pillow's open does not
    # read the EXIF: whoever does first gets the warning (once), which must be load_image's, named by the CLI.
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 270, 2, 1000, 4096) + struct.pack("<I", 0)
    path = tmp_path / "bad-exif.jpg"
    Image.fromarray(rgb_small).save(path, dpi=(72, 72), exif=b"Exif\x00\x00" + tiff)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prefetch.start(["compress", str(path)])
    assert caught == []
    with pytest.warns(UserWarning, match="Tag data larger than file"):
        load_image(str(path))


def test_compress_of_an_image_in_its_rgbx_layout_writes_the_same_file(tmp_path: Path, map_all: None) -> None:
    import kmq

    rng = np.random.default_rng(3)
    pixels = (rng.integers(0, 8, (40, 30, 3)) * 36).astype(np.uint8)
    path = tmp_path / "p.png"
    Image.fromarray(pixels).save(path)
    assert _in_mapped_memory(load_image(str(path), padded=True))
    assert kmq.compress(str(path), k=5).to_bytes() == kmq.compress(pixels, k=5).to_bytes()


@pytest.mark.parametrize("ext, mode, extra", [("tif", "RGB", {"tiff_rotated": 8}),
                                              ("tif", "RGBA", {"compression": "tiff_lzw", "tiff_rotated": 6}),
                                              ("icns", "RGBA", {}), ("gbr", "L", {})])
def test_formats_that_may_not_decode_into_given_memory_are_read_from_pillow(tmp_path: Path, map_all: None,
                                                                          ext: str, mode: str, extra: dict) -> None:
    # Pillow 13 decodes a rotated TIFF at its unrotated size (an error in memory of the turned size), and the
    # ICNS and GBR plugins skip decoding into memory that already exists (a blank image): none is mapped.
    rng = np.random.default_rng(5)
    shape = (32, 32) if ext == "icns" else (20, 28)  # a TIFF turned a quarter changes its shape
    pixels = rng.integers(0, 256, (*shape, len(mode)), dtype=np.uint8)
    image = Image.fromarray(pixels[:, :, 0] if mode == "L" else pixels)
    path = tmp_path / f"f.{ext}"
    rotated = extra.pop("tiff_rotated", None)
    if rotated:
        exif = Image.Exif()
        exif[0x0112] = rotated
        extra["exif"] = exif
    if ext == "gbr":
        _write_gbr(path, pixels[:, :, 0])
    else:
        image.save(path, **extra)
    with Image.open(path) as im:
        want = np.asarray(ImageOps.exif_transpose(im))
    if want.ndim == 3 and want.shape[2] == 4:
        want = want[:, :, :3] if (want[:, :, 3] == 255).all() else clear_transparent(want)
    got = load_image(str(path), padded=True)
    assert np.array_equal(got, want) and not _in_mapped_memory(got)


def _write_gbr(path: Path, grey: np.ndarray) -> None:
    """A GIMP brush (version 2, one byte per pixel), the format Pillow reads but does not write."""
    h, w = grey.shape
    name = b"kmq\0"
    path.write_bytes(struct.pack(">IIIII4sI", 28 + len(name), 2, w, h, 1, b"GIMP", 10) + name + grey.tobytes())


def test_compress_loads_numpy_random_before_it_waits_for_the_image() -> None:
    """numpy.random (the fit's seeding, ~8 ms to load) is loaded before compress waits for a prefetched image
    to decode, not by the fit after it."""
    code = ("import sys, numpy as np, kmq.api as api; assert 'numpy.random' not in sys.modules\n"
            "take = api._as_pixels\n"
            "def watched(*a, **k):\n"
            "    print('numpy.random' in sys.modules)\n"
            "    return take(*a, **k)\n"
            "api._as_pixels = watched\n"
            "api.compress(np.zeros((4, 4, 3), np.uint8), k=2)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "True\n"


@pytest.mark.parametrize("suffix, plugin", [(".png", "PIL.PngImagePlugin"), (".jpg", "PIL.JpegImagePlugin"),
                                            (".bmp", None)])
def test_a_png_or_jpeg_is_opened_by_its_own_plugin_alone(tmp_path: Path, rgb_small: np.ndarray, suffix: str,
                                                          plugin: str | None) -> None:
    # Named .img: the signature decides, not the name. Other formats go through Image.open as before.
    path = tmp_path / "p.img"
    Image.fromarray(rgb_small).save(path, format={".png": "PNG", ".jpg": "JPEG", ".bmp": "BMP"}[suffix])
    code = ("import sys; from kmq import prefetch; prefetch.start(['compress', sys.argv[1]]); "
            "im = prefetch.take(sys.argv[1]); assert im is not None, 'no head start'; "
            "print(im.format, sorted(m for m in sys.modules if m.endswith('ImagePlugin')))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    with Image.open(path) as im:
        assert out.split()[0] == im.format
    if plugin is not None:
        assert out.split(" ", 1)[1].strip() == str([plugin])


def test_a_png_above_pillows_pixel_limit_is_left_to_load_image(photo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # the photo is larger: Pillow's warning, load_image's
    prefetch.start(["compress", str(photo)])
    assert not prefetch._started


def test_a_multi_picture_jpeg_keeps_its_warning_with_a_head_start(tmp_path: Path, rgb_small: np.ndarray) -> None:
    # A phone's MPO: JpegImagePlugin's opener makes it the image of its 2 frames, which the head start leaves
    # to load_image to warn of (as Image.open did); the JPEG class alone saw 1 frame and said nothing.
    path = tmp_path / "stereo.jpg"
    Image.fromarray(rgb_small).save(path, format="MPO", save_all=True, append_images=[Image.fromarray(rgb_small)])
    run = subprocess.run([sys.executable, "-m", "kmq", "compress", str(path), "-k", "2", "-o",
                          str(tmp_path / "s.kmq")], capture_output=True, text=True)
    assert run.returncode == 0
    assert run.stderr == (f"Warning: {path}: a JPEG of 2 images (MPO: a camera's preview or depth map, or a "
                          "stereo pair); using the first, the main image\n")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and malloc_stats are glibc's")
def test_the_command_allocates_from_one_arena_in_every_thread() -> None:
    # The decoding threads' freed blocks (the compressed PNG, the inflated pieces) then serve the main
    # thread's later arrays, instead of fresh pages: glibc would give each thread an arena of its own.
    code = ("import ctypes, sys, threading\n"
            "from kmq.__main__ import _keep_freed_memory\n"
            "_keep_freed_memory()\n"
            "t = threading.Thread(target=lambda: bytearray(300_000)); t.start(); t.join()\n"
            "sys.stderr.flush(); ctypes.CDLL(None).malloc_stats()\n")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert "Arena 0:" in err and "Arena 1:" not in err


def test_the_image_data_is_read_from_the_mapped_file_and_pillow_reads_on_after_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The IDAT chunks' data handed to the inflater as views of the mapped file, not read by Pillow one chunk
    # at a time (~300 reads into 20 MB of fresh memory at 12 MP, before the inflater could start); Pillow's
    # reader is left past them, so that it reads the chunks after the image data as usual (here a tEXt).
    from PIL import PngImagePlugin

    pixels = np.random.default_rng(4).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    data = _rechunked_png(_png(pixels), 300)  # 20 IDAT chunks
    end = data.rindex(b"IEND") - 4
    path = tmp_path / "text_after.png"
    path.write_bytes(data[:end] + _chunk(b"tEXt", b"note\x00after the image") + data[end:])
    reads: list[int] = []
    real = PngImagePlugin.PngImageFile.load_read
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load_read", lambda self, n: reads.append(n) or real(self, n))
    prefetch.start(["compress", str(path)])
    im = prefetch.take(str(path))
    assert im is not None and np.array_equal(np.asarray(im), pixels)
    assert len(reads) == 1  # once, past the last chunk: no more image data there
    assert im.text == {"note": "after the image"}


def test_image_data_read_ahead_survives_the_file_cut_short(tmp_path: Path) -> None:
    # The IDAT chunks were views of the file mapped into memory: a file cut short (another program saving it)
    # while the inflating thread read them ended the process by SIGBUS (the test above did, now and then, in
    # the whole suite). Read at once, the views hold what was read. In a process of its own: a bus error
    # would end pytest's.
    path = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(path)
    code = (
        "import os, sys\n"
        "from PIL import Image\n"
        "from kmq import prefetch\n"
        "im = Image.open(sys.argv[1]); im.load_prepare()\n"
        "views = prefetch._idat_read(im.load_read)\n"
        "assert views and sum(len(v) for v in views) > 1_000_000\n"
        "os.truncate(sys.argv[1], 100)\n"
        "print(sum(bytes(v).count(0) for v in views) > 0)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "True\n"), done.stderr
