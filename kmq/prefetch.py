"""A head start for `kmq compress IMAGE`: the image is decoded in a thread while numpy and kmq load.

Loading numpy, click and the library takes ~0.15 s of CPU, decoding a 12 MP PNG ~0.3 s, and Pillow releases
the GIL while its decoders run; so the command's entry point (kmq/__main__.py) opens the one image the
command line names, before importing anything else, and decodes it in a thread. kmq.imageio.load_image then
takes that image instead of opening the file again. A PNG is inflated in one more thread, ahead of Pillow's
decoder (`_Inflated`). While it waits for the decode, the caller of `take` may work on the rows already decoded
(an RGB PNG or JPEG, see `_Rows`): kmq.compress counts their colours meanwhile. It is a head start only:
whenever the guess is wrong or anything goes amiss (an error, a warning, a file changed meanwhile),
load_image reads the file itself and reports as usual. No numpy here, nor anything else heavy.
"""
from __future__ import annotations

import mmap
import os
import queue
import stat
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

# Formats Pillow identifies without loading all its plugins, whose decoders release the GIL; GIF is left out
# (counting its frames reads the whole file).
_FORMATS = ("PNG", "JPEG", "BMP", "PPM")
# While the thread decodes, the main thread (importing) hands it the GIL within this many seconds of its
# asking, instead of Python's default 5 ms, so that it never waits longer than a decode call lasts.
_SWITCH = 0.0005
# Bytes the thread reads from the file, and hands the decoder or inflates, at a time. Each read and each such
# call releases the GIL, and getting it back costs up to _SWITCH while the main thread imports: in Pillow's
# 64 KiB steps (one per PNG IDAT chunk) a 12 MP PNG took 330 such round trips, and its decode ran ~0.1 s
# longer beside the imports than alone (0.18 s longer beside 0.3 s of busy Python); in 4 MiB steps, a handful.
_STEP = 4 << 20
# A PNG's inflated data goes to the decoder in pieces of this many bytes, at most _AHEAD of them waiting (a
# bound on the memory they take); a smaller piece starts the decoder sooner, a larger one switches less.
_PIECE = 2 << 20
_AHEAD = 8
# Compressed bytes per inflate call at most (see `_groups`): a 12 MP PNG in ~80 calls.
_FEED = 256 << 10
# A PNG of at least this many bytes of filtered rows is decoded in two halves, in two threads (`_Halves`),
# its lower half from the first row at or after the middle, up to `_SPLIT_LAST` of the height, whose filter
# (None or Sub) does not read the row above; the upper half's pieces may then wait, up to _AHEAD_SPLIT of
# them, while the inflater runs ahead to that row.
_SPLIT_FROM = 8 << 20
_SPLIT_LAST = 0.75
_AHEAD_SPLIT = 16
# A row's bytes per pixel in a PNG's filtered data, for the modes Pillow reads unchanged (8 bits a sample).
_SPLIT_BYTES = {"L": 1, "RGB": 3, "RGBA": 4}

# Modes whose pixels Pillow keeps as numpy reads them, and the bytes a pixel takes there: RGB padded to four
# (RGBX), so that `pixels` views three of every four bytes.
_MAPPED = {"L": 1, "RGB": 4, "RGBA": 4}
# Formats whose plugins decode through ImageFile.load into the image memory they find (checked pixel for
# pixel against Pillow's own). Others may not: ICNS and GBR skip decoding when memory exists (a blank
# image), and Pillow 13 decodes a rotated TIFF at its unrotated size (an error).
_MAP_FORMATS = {"PNG", "JPEG", "BMP", "PPM", "WEBP"}
# Images from this many bytes of pixels are decoded into memory of kmq's own (see `map_pixels`); below,
# the mapping would cost more than the page faults it spares.
_MAP_FROM = 4 << 20

# A JPEG is handed to its decoder in about this many reads, so that its rows come out in steps (`_Rows`)
# rather than in one call: each read ends one decoder call, when the rows decoded so far are published.
_JPEG_READS = 16
_JPEG_READ_MIN = 1 << 16

_started: dict[str, tuple[tuple[int, ...], threading.Thread, list, _Rows | None]] = {}


def start(args: list[str]) -> None:
    """Start decoding the image of `kmq compress` if args (the command line after `kmq`) name exactly one
    regular file, without --max-pixels (whose limit the decode would have to respect first)."""
    path = _the_image(args)
    if path is None:
        return
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return
        from PIL import Image

        # A buffer of _STEP bytes: Pillow's reads of the file are then served from memory, one system call
        # (one release of the GIL) per _STEP bytes.
        f = open(path, "rb", buffering=_STEP)  # noqa: SIM115 - closed by the thread, or below
    except Exception:  # noqa: BLE001 - load_image will say what is wrong with it
        return
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            im = _open(f)
            # Read here, where a warning Pillow gives of a malformed EXIF (once: it then keeps the EXIF) is
            # load_image's to say, as any other below; outside, it reached stderr as Pillow's own line.
            followable = _Rows.followable(im)
        # Pillow refuses twice its MAX_IMAGE_PIXELS, kmq's default limit, and warns above it: with anything to
        # say, load_image says it. A grey or RGB colour key (tRNS) must be read against the undecoded layout
        # (kmq.imageio._key_of), before the load: such images are rare, and load_image reads them itself; so
        # are 16-bit colour ones, whose depth (for kmq.imageio._warn_if_cut) only the undecoded layout tells.
        if (caught or getattr(im, "n_frames", 1) != 1 or (im.mode != "P" and "transparency" in im.info)
                or sixteen_bit_colour(im)):
            im.close()
            f.close()
            return
    except Exception:  # noqa: BLE001 - as above
        f.close()
        return
    im.decodermaxblock = _STEP
    map_pixels(im)
    inflated = None
    if im.format == "PNG":
        inflated = im.load_read = _Inflated(im.load_read)  # an instance attribute: ImageFile.load calls it
    rows = _Rows.of(im, info.st_size) if followable else None
    if inflated is not None:
        inflated.halves = _Halves.of(im, rows)
    box: list = []

    switch = sys.getswitchinterval()

    def decode() -> None:
        try:
            im.load()
            if inflated is not None and inflated.halves is not None:
                inflated.halves.wait(im)  # the lower half's decoder, where the rows were split (its error)
            box.append(im)
        except Exception:  # noqa: BLE001 - as above
            im.close()
        finally:
            # Here rather than in take(): the image may never be taken (load_image given the path in
            # another spelling, or an error first), and the short interval would slow the rest of the run.
            sys.setswitchinterval(switch)
            f.close()
            if inflated is not None:
                inflated.close()
                if inflated.halves is not None:
                    inflated.halves.join()
            if rows is not None:
                rows.end()
            # The wrapper holds the image (a cycle): gone, the image's 48 MB (12 MP) are freed as soon as
            # load_image is done with it, not at some later garbage collection.
            im.__dict__.pop("load_read", None)

    thread = threading.Thread(target=decode, daemon=True)
    sys.setswitchinterval(_SWITCH)
    thread.start()
    _started[_key(path)] = (_identity(info), thread, box, rows)


# A PNG's or JPEG's own plugin, by the file's first bytes: Image.open of a file object first imports Pillow's
# five common plugins (preinit), ~5 ms of the decoding thread's start spent on the ones it will not use
# (JpegImagePlugin alone loads subprocess: 3 ms).
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PngImagePlugin", "PNG"), (b"\xff\xd8\xff", "JpegImagePlugin", "JPEG"))


def _open(f: Any) -> Any:
    """Image.open(f, formats=_FORMATS), a PNG or JPEG opened by its own plugin alone."""
    import importlib

    from PIL import Image

    head = f.read(16)
    f.seek(0)
    bomb_check = getattr(Image, "_decompression_bomb_check", None)  # private: without it, Image.open
    for signature, module, kind in _SIGNATURES:
        if head.startswith(signature) and bomb_check is not None:
            importlib.import_module("PIL." + module)
            # The opener the plugin registers, as Image.open calls it: for a JPEG, jpeg_factory, which makes a
            # multi-picture file (MPO) the image of its frames, or warns of a malformed one.
            im = Image.OPEN[kind][0](f, "")
            bomb_check(im.size)  # as Image.open does: an error, or a warning (caught)
            return im
    return Image.open(f, formats=_FORMATS)


def sixteen_bit_colour(im: Any) -> bool:
    """Whether Pillow will decode im from 16-bit colour samples (RGB, RGBA, grey with alpha), which it cuts to
    8 bits (PNG and TIFF: their high bytes; PPM: scaled by its maxval); known only before im.load, from the
    undecoded layout (kmq.imageio._warn_if_cut). 16-bit grey (mode I;16) is read whole: not here."""
    tile = getattr(im, "tile", None)  # (a plain Image, made by a program, has none)
    if not tile or im.mode not in ("RGB", "RGBA"):
        return False
    codec, args = tile[0][0], tile[0][3]  # (Pillow 10's tiles are plain tuples, without Pillow 11's names)
    if codec == "ppm":  # args (rawmode, maxval)
        return isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], int) and args[1] > 255
    return ";16" in str(args if isinstance(args, str) else (args[0] if args else ""))


def take(source: Any, on_rows: Callable[[Any, tuple[int, int, int], int, int], None] | None = None) -> Any:
    """The image decoded for `source` (a path as given on the command line), loaded, or None.

    on_rows(memory, (height, width, 4), start, stop): called in this thread while the image decodes, in
    order, with each run of rows decoded since the last call (rows start..stop of the RGBX pixels in memory,
    the image's own: never to be written), as the decode publishes its rows (`_Rows`), never once it has
    ended; a failed decode returns None, and whatever on_rows made of the rows is moot."""
    if not isinstance(source, (str, Path)) or _key(source) not in _started:
        return None
    identity, thread, box, rows = _started.pop(_key(source))
    if on_rows is not None and rows is not None:
        rows.follow(on_rows)
    thread.join()
    try:
        same = _identity(os.stat(source)) == identity
    except OSError:
        same = False
    if box and not same:
        box[0].close()
    return box[0] if box and same else None


class _Rows:
    """The rows of an RGB image decoded so far into memory of kmq's own (`map_pixels`), published between
    the decoder's calls, so that `take` can hand them on while the rest decodes.

    Pillow's decoders write whole rows in order, and an RGB pixel as RGBX with X = 255 into memory that
    starts zeroed: the rows decoded are those up to the last whose last X is 255. Only between two decoder
    calls (each read of data, see `_watched`) is that counted, in the decoding thread itself, and handed
    over under a lock, so that every byte of those rows is there for the thread that reads them. Only a PNG
    that is not interlaced (Adam7 fills rows in passes) and a JPEG (libjpeg: scanlines in order; a
    progressive one's come at the end), upright (EXIF orientation 1: otherwise the image turns after its
    decode, and its pixels are a copy)."""

    def __init__(self, memory: Any, width: int, height: int) -> None:
        self._view = memoryview(memory)
        self.shape = (height, width, 4)
        self._memory = memory
        self._done = 0  # rows decoded
        self._ended = False
        self._changed = threading.Condition()
        # The rows below this one are decoded in order: the image's height, or while its lower half decodes
        # in a thread of its own (`_Halves`), the first row of that half, whose rows the search must not see.
        self._limit = height
        self._searching = threading.Lock()

    @staticmethod
    def followable(im: Any) -> bool:
        """Whether im, opened and not loaded, is of a kind whose rows `of` may follow (its EXIF read now)."""
        if im.mode != "RGB" or im.format not in ("PNG", "JPEG") or im.info.get("interlace"):
            return False
        from . import icc

        # Converted to sRGB once decoded (kmq.icc), into memory of their own: a count of these rows would be of
        # other colours, and `distinct` would only drop it (kmeans.Marks.take).
        if icc.foreign(im.info) is not None:
            return False
        try:
            # A PNG's EXIF may follow its image data, which Pillow's getexif would then decode first, here:
            # such a turned PNG is only a wasted head start (its pixels are not in this memory, which kmq checks).
            return not ((im.format == "JPEG" or "exif" in im.info) and im.getexif().get(_ORIENTATION, 1) != 1)
        except Exception:  # noqa: BLE001 - an EXIF Pillow cannot read, say: load_image reports it, if it must
            return False

    @classmethod
    def of(cls, im: Any, size: int) -> _Rows | None:
        """The rows of im (`followable`), as `map_pixels` mapped its memory; None if it did not."""
        mapped = getattr(im, "kmq_mapped", None)
        if mapped is None:
            return None
        rows = cls(mapped[1], im.width, im.height)
        im.load_read = rows._watched(getattr(im, "load_read"))
        if im.format == "JPEG":
            im.decodermaxblock = max(_JPEG_READ_MIN, min(_STEP, size // _JPEG_READS))
        return rows

    def _watched(self, read: Callable[[int], bytes]) -> Callable[[int], bytes]:
        def watched(read_bytes: int) -> bytes:
            self.update()
            return read(read_bytes)

        return watched

    def update(self) -> None:
        """Publish the rows decoded so far (between two calls of a decoder)."""
        with self._searching:
            self._publish(self._decoded())

    def limit(self, row: int) -> None:
        """Only rows below `row` are decoded in order from now on (`_Halves`: row starts the lower half, which
        another decoder fills; the image's height once the upper half is done, when all are in order again)."""
        with self._searching:
            self._limit = row

    def _decoded(self) -> int:
        """The rows whose last pixel's X is 255: a binary search, the rows being written in order."""
        _, width, _ = self.shape
        low, high = self._done, self._limit
        while low < high:
            mid = (low + high) // 2
            if self._view[(mid * width + width - 1) * 4 + 3] == 255:
                low = mid + 1
            else:
                high = mid
        return max(low, self._done)

    def _publish(self, done: int) -> None:
        with self._changed:
            if done > self._done:
                self._done = done
                self._changed.notify()

    def end(self) -> None:
        """The decode is over (however it ended): the rows it decoded, then no more."""
        with self._searching:
            done = self._decoded()
        self._view.release()  # no export of the memory left behind
        with self._changed:
            self._done = max(self._done, done)
            self._ended = True
            self._changed.notify()

    def follow(self, on_rows: Callable[[Any, tuple[int, int, int], int, int], None]) -> None:
        """on_rows for each run of rows decoded while the decode goes on (see `take`); the rows found once it
        has ended are left to the caller, who has every core for them then."""
        start = 0
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._done > start or self._ended)
                stop, ended = self._done, self._ended
            if ended:
                return
            on_rows(self._memory, self.shape, start, stop)
            start = stop


_ORIENTATION = 0x0112  # the EXIF tag


def map_pixels(im: Any) -> None:
    """Have a large image that is not loaded yet decode into memory of kmq's own, which `pixels` then hands
    numpy as it is, instead of into Pillow's, which numpy could only copy.

    At 12 MP Pillow's own image memory (48 MB) is ~12 000 fresh 4 KiB pages, faulted in by the decoding
    thread, and numpy's copy 9 000 more plus the copy itself (~0.03 s); this memory asks for huge pages
    (MADV_HUGEPAGE, as numpy does for its large arrays): load_image of the smooth 12 MP photo faulted
    20 600 pages before, ~600 now, and took ~0.06 s less CPU. The decoder writes the same bytes either way
    (Image.frombuffer maps memory the same way). An image that ends up elsewhere (a plugin that makes its
    own, an EXIF rotation) is simply read from Pillow as before (see `pixels`).
    """
    per_pixel = _MAPPED.get(im.mode)
    if (per_pixel is None or im.format not in _MAP_FORMATS or _core(im) is not None
            or im.width * im.height * per_pixel < _MAP_FROM):
        return
    try:
        from PIL import Image

        # Private: shared anonymous memory (the default) gets huge pages only where shmem is set to.
        memory = mmap.mmap(-1, im.width * im.height * per_pixel, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_HUGEPAGE"):
            memory.madvise(mmap.MADV_HUGEPAGE)
        core = Image.core.map_buffer(memory, im.size, "raw", 0, (im.mode, 0, 1))
        im.im = core  # ImageFile.load decodes into the image memory it finds of the right mode and size
    except Exception:  # noqa: BLE001 - Pillow then makes its own, as usual
        return
    im.kmq_mapped = (core, memory, per_pixel)


def pixels(im: Any) -> tuple[Any, int] | None:
    """(memory, bytes per pixel) of a loaded image that `map_pixels` mapped, if its pixels are still there:
    the image's own, of the mode and size it was mapped with."""
    mapped = getattr(im, "kmq_mapped", None)
    if mapped is None:
        return None
    core, memory, per_pixel = mapped
    if _core(im) is not core or im.mode != core.mode or im.size != core.size:
        return None
    return memory, per_pixel


def _core(im: Any) -> Any:
    """The image memory Pillow holds for im, None before it is loaded (Pillow 11 on: `_im`; before, `im`)."""
    held = vars(im)
    return held["_im"] if "_im" in held else held.get("im")


def _key(path: str | Path) -> str:
    """One spelling per path: the CLI hands load_image `a.png` for `./a.png` (pathlib)."""
    return os.path.normpath(path)


class _Inflated:
    """A PNG's load_read (Pillow: the next piece of image data; b"" after the last) that inflates the image
    data in a thread of its own, ahead of Pillow's decoder, and hands that decoder the inflated bytes in
    stored (uncompressed) deflate blocks, which it only copies.

    Pillow's PNG decoder inflates and then undoes the PNG filters, row by row, in one thread: inflating is
    about half of it (12 MP photos at zlib level 1: 0.12-0.21 s of 0.26-0.40 s), so the two halves in two
    threads take ~0.1-0.15 s less. The stream is the same zlib stream, checksum included (Python's zlib checks
    the file's, Adler-32 over the same bytes ends the new one): the pixels are Pillow's, bit for bit. Any
    error in here fails the decode, and load_image then reads the file itself and reports as usual.
    """

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read  # Pillow's: the rest of the current IDAT chunk, at most n bytes
        self._compressed: list[bytes] | None = None
        self._out: queue.Queue = queue.Queue(_AHEAD)
        self._stop = False
        self._ended = False
        # Set before the first call: the lower half of the rows goes to a decoder of its own (see `_Halves`),
        # Pillow's then getting a stream of the upper half only, which ends where that half does.
        self.halves: _Halves | None = None

    def __call__(self, read_bytes: int) -> bytes:
        if self._compressed is None:
            # Every IDAT chunk first, here: Pillow goes on reading the file (the chunks after them) once the
            # image is decoded, which may be before the last bytes of the stream (its checksum) are inflated.
            chunks = _idat_read(self._read)
            chunks += iter(lambda: self._read(_STEP), b"")  # all of them, where the file could not be read at once
            if self.halves is not None:
                self._out = queue.Queue(_AHEAD_SPLIT)  # the upper half may wait while the inflater runs ahead
            threading.Thread(target=self._inflate, args=(chunks,), daemon=True).start()
            self._compressed = chunks  # only once the thread runs: close() then waits for its last piece
        if self._ended:
            return b""
        piece = self._out.get()
        if isinstance(piece, BaseException):
            self._ended = True
            raise piece
        self._ended = not piece
        return piece

    def close(self) -> None:
        """Let the inflating thread end, whatever the decoder took (it stops at the image's last row, or at
        an error): the thread's last piece is always b"" or an exception."""
        self._stop = True
        while self._compressed is not None and not self._ended:
            piece = self._out.get()
            self._ended = not piece or isinstance(piece, BaseException)

    def _inflate(self, chunks: list[bytes]) -> None:
        out = _Stream(self._out)  # the stream Pillow's decoder reads; from the split row on, the lower half's
        try:
            zlib = _zlib()
            inflater = zlib.decompressobj()
            split = self.halves.rows() if self.halves is not None else None  # rows where it may split
            at = 0  # inflated bytes so far
            for compressed in _groups(chunks):
                if inflater.eof:  # what follows the stream is junk, which Pillow ignores too
                    break
                while not self._stop:
                    # _PIECE inflated bytes at a time at most: a flat image inflates a thousandfold. Output cut
                    # short may still be pending with all the input taken (ISA-L holds input itself): ask
                    # again until an answer falls short.
                    want = _PIECE - out.size
                    raw = inflater.decompress(compressed, want)
                    if not raw and compressed and len(inflater.unconsumed_tail) == len(compressed):
                        raise zlib.error("the image data makes no progress")  # never a hang: Pillow decides
                    compressed = inflater.unconsumed_tail
                    # (not at the very start of a piece: the upper half's last bytes and its stream's end
                    # must reach Pillow's decoder in one call, or it waits for rows that never come)
                    cut = None if split is None else split.find(raw, at, out.size > 0)
                    if cut is None:
                        out.add(zlib, raw)
                    else:  # the upper half's stream ends here, and the lower half's starts
                        split = None
                        out.add(zlib, raw[:cut])
                        lower = self.halves.start(queue.Queue(_AHEAD))
                        out.end(zlib)
                        out = _Stream(lower)
                        out.add(zlib, raw[cut:])
                    at += len(raw)
                    # At the stream's end Python's zlib may keep what follows it as an unconsumed tail for
                    # ever: the end, not an empty tail, ends the loop there.
                    if inflater.eof or (not compressed and len(raw) < want):
                        break
            if not self._stop:
                if not inflater.eof:
                    raise zlib.error("the image data ends early")
                out.end(zlib)
            else:
                out.queue.put(b"")
        except BaseException as e:  # noqa: BLE001 - raised in the thread decoding that stream
            out.queue.put(e)


class _Stream:
    """A zlib stream of stored blocks (see `_Inflated`) handed to a decoder in pieces of about _PIECE bytes
    through `queue`, then b"" (or an exception, put by its writer)."""

    def __init__(self, pieces: queue.Queue) -> None:
        self.queue = pieces
        self._adler = 1
        self._out = [b"\x78\x01"]  # zlib's header (deflate, 32 KiB window, no dictionary), then stored blocks
        self.size = 0  # inflated bytes in _out

    def add(self, zlib: Any, raw: bytes) -> None:
        """raw, inflated, next in the stream (less than _PIECE bytes with those waiting)."""
        self._adler = zlib.adler32(raw, self._adler)
        self._out += _stored(raw)
        self.size += len(raw)
        if self.size == _PIECE:
            self.queue.put(b"".join(self._out))
            self._out, self.size = [], 0

    def end(self, zlib: Any) -> None:
        """The last block, empty, then the checksum of everything in the stream, in the same piece as its last
        bytes (a decoder given a stream that ends before the image's rows stops at its end there), then b"".
        """
        self._out.append(b"\x01\x00\x00\xff\xff" + self._adler.to_bytes(4, "big"))
        self.queue.put(b"".join(self._out))
        self.queue.put(b"")


class _Halves:
    """A PNG's rows decoded by two of Pillow's decoders at once, in two threads, into the same image memory.

    Pillow undoes the PNG filters row by row in one thread, and a Paeth row needs the row above it undone
    first: 0.19 s of CPU for a 12 MP mosaic of photos saved at level 6 (2 273 Paeth rows of 3 000), the
    longest thread of the decode. A row filtered None or Sub needs nothing from above, so from such a row on
    (the first at or after the middle) the rows are a PNG image of their own: the inflating thread ends
    Pillow's stream there (its decoder stops at the end of a stream, with the rows it has) and hands the
    rest to a second decoder of the same kind, which `setimage` places at that row; the first decoder's
    rows are those `_Rows` follows meanwhile. Each decoder undoes the same filters over the same bytes: the
    pixels are Pillow's, bit for bit. The split row is found by the inflating thread, as the rows pass: a
    file whose rows after the middle are all Up, Average or Paeth (up to `_SPLIT_LAST` of the height) is
    decoded whole, as before."""

    def __init__(self, im: Any, core: Any, stride: int, rows: _Rows | None) -> None:
        self._decoder = (im.mode, im.tile[0][3], im.decoderconfig)
        self._core = core
        self._size = im.size
        self.stride = stride
        self._rows = rows
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._search: _SplitRow | None = None

    @classmethod
    def of(cls, im: Any, rows: _Rows | None) -> _Halves | None:
        """The halves of a PNG opened and not loaded, if it is one to split: mapped (`map_pixels`), one tile
        of 8-bit samples as its mode holds them, not interlaced, and large enough to pay for a thread."""
        mapped = getattr(im, "kmq_mapped", None)
        if mapped is None or im.info.get("interlace") or len(im.tile) != 1:
            return None
        name, extents, _, args = im.tile[0]
        per_pixel = _SPLIT_BYTES.get(im.mode)
        if (name != "zip" or args != im.mode or per_pixel is None or tuple(extents) != (0, 0, *im.size)
                or im.decoderconfig):
            return None
        stride = 1 + im.width * per_pixel
        if stride * im.height < _SPLIT_FROM:
            return None
        return cls(im, mapped[0], stride, rows)

    def rows(self) -> _SplitRow:
        """The search for the split row, which the inflating thread runs over the rows as they pass."""
        height = self._size[1]
        self._search = _SplitRow(self.stride, height // 2, int(height * _SPLIT_LAST))
        return self._search

    def start(self, pieces: queue.Queue) -> queue.Queue:
        """Decode the stream of the rows from the split row on, put into `pieces`, in a thread (called by
        the inflating thread before the upper half's stream ends)."""
        row = self._search.found
        if self._rows is not None:
            self._rows.limit(row)  # before the lower half's first row can be written
        thread = threading.Thread(target=self._decode, args=(pieces, row), daemon=True)
        thread.start()  # kept only once it runs: `join` of one never started raises, and the decode's end
        self._thread = thread  # (`_Rows.end`, which `take` waits for) would never come
        return pieces

    def _decode(self, pieces: queue.Queue, row: int) -> None:
        from PIL import Image

        ended = False  # the stream's last piece taken
        try:
            mode, rawmode, config = self._decoder
            decoder = Image._getdecoder(mode, "zip", rawmode, config)
            try:
                decoder.setimage(self._core, (0, row, *self._size))
                done = False
                while not done:
                    piece = pieces.get()
                    if isinstance(piece, BaseException):
                        ended = True
                        raise piece
                    if not piece:
                        ended = True
                        raise OSError("the image data ends early")
                    n, error = decoder.decode(piece)
                    if n < 0:
                        if error < 0:
                            raise OSError(f"decoder error {error}")
                        done = True
                    if self._rows is not None and self._rows._limit == self._size[1]:
                        self._rows.update()  # the upper half is done: these rows follow its rows in order
            finally:
                decoder.cleanup()
        except BaseException as e:  # noqa: BLE001 - the decode fails with it (`wait`)
            self._error = e
        while not ended:  # the inflating thread's pieces up to its last, so that it ends
            piece = pieces.get()
            ended = not piece or isinstance(piece, BaseException)

    def wait(self, im: Any) -> None:
        """Once Pillow's decoder is done with im: the lower half decoded, its rows followed on; its error
        raised, as is an image whose memory is no longer the one both halves were decoded into."""
        if self._rows is not None:
            self._rows.limit(self._size[1])
            self._rows.update()
        self.join()
        if self._error is not None:
            raise self._error
        if self._thread is not None and _core(im) is not self._core:
            raise OSError("the image was decoded elsewhere than its lower half")

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()


class _SplitRow:
    """The inflating thread's search for the row the lower half starts at (see `_Halves`)."""

    def __init__(self, stride: int, first: int, last: int) -> None:
        self._stride = stride
        self._row = first  # the next row to look at
        self._last = last
        self.found: int | None = None

    def find(self, raw: bytes, at: int, first: bool = True) -> int | None:
        """Where in raw (the inflated bytes from `at` on) the split row starts, if it is in raw (at its first
        byte only if `first`)."""
        while self._row <= self._last:
            offset = self._row * self._stride - at
            if offset >= len(raw):
                return None
            if offset >= (0 if first else 1) and raw[offset] in (0, 1):  # None, Sub: nothing from above
                self.found = self._row
                return offset
            self._row += 1
        return None


def _idat_read(read: Callable[[int], bytes]) -> list:
    """The data of a PNG's IDAT chunks from the one Pillow's load_read (`read`) is in, as views of the file
    read into memory at once, and Pillow's reader moved past them as its own reads of the same chunks would have
    moved it; [] (Pillow's reader untouched) where the file cannot be read so or looks amiss.

    Through load_read, each chunk's data was a read of its own (~300 of 64 KiB at 12 MP), Python code that
    took the GIL from the imports in turn, into 20 MB of fresh memory, before the inflating thread could
    start: china12's took 72-116 ms from the first read to the inflater's start on a loaded machine (~15 ms
    of CPU, mostly the copy and its page faults), mapped 2-8 ms. Read, not mapped: the file read at once
    (os.pread, one call) costs about what mapping it did, and a file cut short or rewritten meanwhile (another
    program saving it) is then a short read, which Pillow's own reads report; mapped, the inflating thread's
    touch of a page past the new end ended the process by SIGBUS (seen in the test suite: a file rewritten
    while its head start read it)."""
    im = getattr(read, "__self__", None)
    try:
        fp = im.fp
        left = im._PngImageFile__idat  # the bytes of the current chunk not read yet (private: without it, [])
        at = fp.tell()
        data = os.pread(fp.fileno(), os.fstat(fp.fileno()).st_size, 0)
    except Exception:  # noqa: BLE001 - no file to read so, or another Pillow: its own reads, as before
        return []
    size = len(data)  # (short of the file's size where it was cut meanwhile: the chunks' walk then stops)
    spans = []
    while True:
        if not 0 <= left <= size - at:
            return []  # a chunk running past the end: Pillow's reads say so
        if left:
            spans.append((at, at + left))
        at += left
        if at + 12 > size:
            return []
        # the chunk's CRC (not checked: Pillow's load_read skips it too), then the next one's length and type
        length, kind = int.from_bytes(data[at + 4:at + 8], "big"), data[at + 8:at + 12]
        if kind != b"IDAT":
            break
        at += 12
        left = length
    # Pillow's reader where its own last read of image data would leave it: its next read finds the chunk
    # after (keeping it for load_end) and says no more, as below; anything else is read its own way.
    fp.seek(at)
    im._PngImageFile__idat = 0
    view = memoryview(data)
    return [view[start:stop] for start, stop in spans]


def _groups(chunks: list[bytes]) -> Iterator[memoryview]:
    """The IDAT chunks' data joined into groups of about _STEP bytes (a few inflate calls each, not one per
    chunk), each chunk's memory freed once joined, and handed on in views of at most _FEED bytes (no copy).

    Whenever an inflate call stops at its output limit, Python's zlib (and ISA-L's) copies the input left
    over into a new bytes object, `unconsumed_tail`: fed whole 4 MiB groups, a 12 MP PNG that inflates under
    twofold (a mosaic of photos at level 6: 21 MB to 36 MB) had up to 3 MB copied per call, ~50 MB of fresh
    memory in all; fed _FEED bytes at a time, at most that (its inflating thread: 0.078 -> 0.072 s of CPU,
    ~5 600 -> ~2 500 page faults; the same bytes out)."""
    group: list[bytes] = []
    size = 0
    for i in range(len(chunks)):
        group.append(chunks[i])
        size += len(chunks[i])
        chunks[i] = b""
        if size >= _STEP or i == len(chunks) - 1:
            view = memoryview(b"".join(group))
            group, size = [], 0
            for at in range(0, len(view), _FEED):
                yield view[at:at + _FEED]


def _zlib() -> Any:
    """ISA-L's zlib (the isal package, a dependency) where installed, else Python's: the same streams and
    errors, inflated in ~60 % of the time (12 MP photos: 0.06-0.14 s of CPU instead of 0.12-0.22 s)."""
    try:
        from isal import isal_zlib
    except ImportError:
        import zlib

        return zlib
    return isal_zlib


def _stored(raw: bytes) -> list[bytes]:
    """raw as stored deflate blocks (none the last): a 5-byte header, then up to 65535 bytes as they are."""
    view = memoryview(raw)
    parts: list[bytes] = []
    for s in range(0, len(raw), 0xFFFF):
        n = min(0xFFFF, len(raw) - s)
        parts += (bytes((0, n & 0xFF, n >> 8, ~n & 0xFF, (~n >> 8) & 0xFF)), view[s:s + n])
    return parts


def _identity(info: os.stat_result) -> tuple[int, ...]:
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _the_image(args: list[str]) -> str | None:
    """The one input of `kmq compress ARGS`: the only argument neither an option nor right after one (which
    may be its value: `-o out.kmq`), unless that is "-" (stdin); None when there is not exactly one."""
    if not args or args[0] != "compress" or any(a == "--" or a.startswith("--max-pixels") for a in args):
        return None
    rest = args[1:]
    inputs = [a for i, a in enumerate(rest)
              if not a.startswith("-") and not (i and rest[i - 1].startswith("-") and "=" not in rest[i - 1])]
    return inputs[0] if len(inputs) == 1 and inputs[0] != "-" else None
