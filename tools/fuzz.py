"""Fuzz the .kmq decoder: structured mutations of valid files of every registered codec.

    python tools/fuzz.py [-n 100000] [--jobs 2] [--seed 0]      (or: make fuzz)

Each case is a valid file (from a small corpus: every codec, 1 to 4 channels, k from 1 to 65536) put through one
to three mutations: truncation, bit flips, a header field set to an extreme (the CRC recomputed, so the forgery
reaches the checks behind it), deletions, insertions, trailing junk, a rewritten payload or metadata, random
bytes, the magic followed by noise. Every case must end in a KmqError (a clean error) or a successful decode (a
harmless one). A failure is any other exception, a decode slower than 1 s, or a memory peak over 256 MiB; the
run prints the counts, saves the failing inputs and exits 1 if there was any.

The module is also imported by tests/test_fuzz.py for its corpus and forging helpers.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import signal
import struct
import sys
import time
import tracemalloc
import zlib
from collections import Counter
from pathlib import Path

# One BLAS thread per worker: the fuzzer's parallelism is its processes, and thread pools inflate RLIMIT_AS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from kmq.codecs import NAMES  # noqa: E402
from kmq.errors import KmqError  # noqa: E402
from kmq.format import CRC_SIZE, DEFAULT_MAX_PIXELS, HEADER_FIELDS, HEADER_SIZE, MAGIC, KmqImage  # noqa: E402

TIME_LIMIT = 1.0
# A decode may use memory in proportion to the image its header declares (within the pixel limit: a k = 1 file
# of 40 bytes may rightly describe 178 million pixels), plus this much; anything more is a blow-up.
MEMORY_LIMIT = 256 << 20
MEMORY_PER_PIXEL = 8
# (height, width, channels, k, with metadata): small enough that every decode takes milliseconds.
SHAPES = ((1, 1, 1, 1, True), (1, 3, 3, 2, True), (5, 7, 3, 3, False), (8, 6, 4, 16, True),
          (4, 9, 1, 256, True), (3, 5, 3, 300, False), (2, 2, 1, 65536, True))


def corpus(codec: str) -> list[bytes]:
    """Valid .kmq files of one codec, one per entry of SHAPES; deterministic."""
    rng = np.random.default_rng(0)
    files = []
    for height, width, channels, k, with_meta in SHAPES:
        palette = rng.integers(0, 256, (k, channels), dtype=np.uint8)
        # Mostly runs with some noise, so the context codecs see both structure and surprises.
        labels = np.repeat(rng.integers(0, k, (height, 1)), width, axis=1)
        noise = rng.random((height, width)) < 0.3
        labels[noise] = rng.integers(0, k, int(noise.sum()))
        labels[0, 0] = k - 1
        meta = {"distortion": 1.5, "seed": 7} if with_meta else {}
        files.append(KmqImage(palette, labels, meta, codec).to_bytes())
    return files


def with_crc(body: bytes) -> bytes:
    """body (a file without its CRC) followed by its correct CRC-32."""
    return body + struct.pack("<I", zlib.crc32(body))


def recrc(data: bytes) -> bytes:
    """data with its last 4 bytes replaced by the CRC-32 of the rest (when there is a rest)."""
    return with_crc(data[:-CRC_SIZE]) if len(data) > CRC_SIZE else data


def get_field(data: bytes, name: str) -> int:
    offset, fmt = HEADER_FIELDS[name]
    return struct.unpack_from(fmt, data, offset)[0]


def set_field(data: bytes, name: str, value: int) -> bytes:
    """data with one header field replaced (value wrapped to the field's width); the CRC is left alone."""
    offset, fmt = HEADER_FIELDS[name]
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value % (1 << (8 * struct.calcsize(fmt))))
    return bytes(out)


def extremes(name: str) -> list[int]:
    """Values at the edges of a field's range and of the reader's limits."""
    width = 8 * struct.calcsize(HEADER_FIELDS[name][1])
    values = {0, 1, 2, 3, 4, 7, 8, 15, 16, 17, 255, 256, 257, 65535, 65536, 65537, 2**31 - 1, 2**31, 2**32 - 1,
              2**63, 2**64 - 1, DEFAULT_MAX_PIXELS, DEFAULT_MAX_PIXELS + 1, 13377, 13378, 10**6}
    return sorted(v for v in values if v < 1 << width)


def sections(data: bytes) -> dict[str, tuple[int, int]]:
    """(start, end) of the palette, metadata and payload of a valid file."""
    channels, k = get_field(data, "channels"), get_field(data, "k")
    meta_len, payload_len = get_field(data, "meta_len"), get_field(data, "payload_len")
    palette_end = HEADER_SIZE + k * channels
    return {"palette": (HEADER_SIZE, palette_end), "meta": (palette_end, palette_end + meta_len),
            "payload": (palette_end + meta_len, palette_end + meta_len + payload_len)}


def replace_section(data: bytes, name: str, new: bytes) -> bytes:
    """A valid file's section replaced by `new`, its length field and the CRC made to match."""
    start, end = sections(data)[name]
    body = data[:start] + new + data[end:-CRC_SIZE]
    if name in ("meta", "payload"):
        body = set_field(body, "meta_len" if name == "meta" else "payload_len", len(new))
    return with_crc(body)


# --------------------------------------------------------------------------------------------------
# random mutations for the long run (tests/test_fuzz.py builds the same ones from hypothesis strategies)


def _noise(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def _forge(rng: random.Random, data: bytes) -> bytes:
    for name in rng.sample(sorted(HEADER_FIELDS), rng.choice((1, 1, 1, 2))):
        value = rng.choice(extremes(name) + [get_field(data, name) + rng.choice((-1, 1))])
        data = set_field(data, name, value)
    return recrc(data) if rng.random() < 0.9 else data


def _reshape(rng: random.Random, data: bytes) -> bytes:
    # Same payload, another declared size: what a codec must reject without allocating the declared image.
    pixels = max(1, get_field(data, "width") * get_field(data, "height"))
    width = rng.choice((1, 2, pixels, pixels + 1, 4096, 13377, 65536, 2**31 - 1))
    height = rng.choice((1, max(1, pixels // width), 4096, 13378, DEFAULT_MAX_PIXELS // width,
                         DEFAULT_MAX_PIXELS // width + 1))
    return recrc(set_field(set_field(data, "width", width), "height", height))


def _payload(rng: random.Random, data: bytes) -> bytes:
    start, end = sections(data)["payload"]
    payload = bytearray(data[start:end])
    choice = rng.randrange(4)
    if choice == 0 and payload:
        for _ in range(rng.randint(1, 4)):
            payload[rng.randrange(len(payload))] = rng.getrandbits(8)
    elif choice == 1:
        payload = payload[:rng.randint(0, len(payload))]
    elif choice == 2:
        at = rng.randint(0, len(payload))
        payload[at:at] = _noise(rng, rng.randint(1, 16))
    else:
        payload = bytearray(_noise(rng, rng.randint(0, 2 * len(payload) + 8)))
    return replace_section(data, "payload", bytes(payload))


def _meta(rng: random.Random, data: bytes) -> bytes:
    options = [b"", b"{}", b"[" * 5000, b'{"distortion":-1}', b'{"distortion":' + b"9" * 400 + b"}",
               b'{"distortion":NaN}', b"\xff\xfe", b'{"seed":' + b"1" * 5000 + b"}", _noise(rng, 40)]
    return replace_section(data, "meta", rng.choice(options))


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[:rng.randrange(len(data))]


def _flip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return recrc(bytes(out)) if rng.random() < 0.5 else bytes(out)


def _delete(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 16):]


def _insert(rng: random.Random, data: bytes) -> bytes:
    at = rng.randint(0, len(data))
    out = data[:at] + _noise(rng, rng.randint(1, 16)) + data[at:]
    return recrc(out) if rng.random() < 0.5 else out


def _trailing(rng: random.Random, data: bytes) -> bytes:
    return data + _noise(rng, rng.randint(1, 64))


def _random(rng: random.Random, data: bytes) -> bytes:
    return _noise(rng, rng.randint(0, 200))


def _magic_noise(rng: random.Random, data: bytes) -> bytes:
    return MAGIC + _noise(rng, rng.randint(0, 200))


MUTATIONS = (_forge, _forge, _reshape, _payload, _payload, _meta, _truncate, _flip, _flip, _delete, _insert,
             _trailing, _random, _magic_noise)


def mutate(rng: random.Random, data: bytes) -> bytes:
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        if not data:
            break
        try:
            data = rng.choice(MUTATIONS)(rng, data)
        except (struct.error, KeyError):  # a section-aware mutation of an already broken file
            data = _flip(rng, data)
    return data


# --------------------------------------------------------------------------------------------------
# one decode, judged


class _Timeout(BaseException):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Timeout()


def declared_pixels(data: bytes) -> int:
    """width x height as the header declares them, 0 when there is no header or they exceed the pixel limit."""
    if len(data) < HEADER_SIZE or not data.startswith(MAGIC):
        return 0
    pixels = get_field(data, "width") * get_field(data, "height")
    return pixels if pixels <= DEFAULT_MAX_PIXELS else 0


def judge(data: bytes, time_limit: float = TIME_LIMIT) -> str:
    """Parse and decode data: "error" (a KmqError), "decoded", or "failure: ..." saying what went wrong.

    A hard alarm at twice time_limit stops a decoder that would never finish. The palette look-up that turns a
    valid file's labels into pixels (KmqImage.decode) is not judged: it cannot fail, and its cost is plain work
    in proportion to the pixels, which the pixel limit bounds.
    """
    previous = signal.signal(signal.SIGALRM, _alarm)
    was_tracing = tracemalloc.is_tracing()
    if was_tracing:
        tracemalloc.reset_peak()
    else:
        tracemalloc.start()
    started = time.perf_counter()
    try:
        signal.setitimer(signal.ITIMER_REAL, 2 * time_limit)
        try:
            KmqImage.from_bytes(data)
            outcome = "decoded"
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except KmqError:
        outcome = "error"
    except _Timeout:
        outcome = f"failure: still decoding after {2 * time_limit:.1f} s"
    except Exception as e:  # noqa: BLE001 - any other exception is what we are looking for
        outcome = f"failure: {type(e).__name__}: {str(e)[:200]}"
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        if not was_tracing:
            tracemalloc.stop()
        signal.signal(signal.SIGALRM, previous)
    if outcome.startswith("failure"):
        return outcome
    if elapsed > time_limit:
        return f"failure: {outcome} after {elapsed:.2f} s"
    if peak > MEMORY_LIMIT + MEMORY_PER_PIXEL * declared_pixels(data):
        return f"failure: {outcome} with a memory peak of {peak >> 20} MiB"
    return outcome


# --------------------------------------------------------------------------------------------------
# the long run


_CORPUS: list[tuple[str, bytes]] = []


def _init_worker(address_space: int) -> None:
    # A hard cap behind tracemalloc, whose count misses allocations made outside Python (lzma's buffers).
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    _CORPUS.extend((codec, data) for codec in NAMES for data in corpus(codec))


def case(seed: int, index: int) -> tuple[str, bytes]:
    """The codec and the bytes of case number `index` of a run: the same for the same seed, on any machine."""
    rng = random.Random(seed * 1_000_003 + index)
    codec, data = _CORPUS[rng.randrange(len(_CORPUS))]
    return codec, mutate(rng, data)


def _run_batch(args: tuple[int, range]) -> tuple[Counter, list[tuple[int, str, str, bytes]]]:
    seed, indices = args
    counts: Counter = Counter()
    failures = []
    for index in indices:
        codec, data = case(seed, index)
        outcome = judge(data)
        if outcome.endswith(" s"):
            # Two processes share the memory bus and the cores: a slow decode counts only if it is slow again.
            outcome = judge(data)
        kind = "failure" if outcome.startswith("failure") else outcome
        counts[kind] += 1
        counts[codec, kind] += 1
        if kind == "failure":
            failures.append((index, codec, outcome, data))
    return counts, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--cases", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", type=Path, default=Path("fuzz-failures"),
                        help="folder for the failing inputs (made only if there are some)")
    args = parser.parse_args(argv)

    import multiprocessing

    started = time.perf_counter()
    # Room for the largest image the pixel limit allows, decoded (labels and RGBA pixels: 6 bytes a pixel).
    address_space = _current_address_space() + (1 << 30) + 6 * DEFAULT_MAX_PIXELS
    batch = 500
    batches = [(args.seed, range(i, min(i + batch, args.cases))) for i in range(0, args.cases, batch)]
    totals: Counter = Counter()
    failures: list[tuple[int, str, str, bytes]] = []
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(args.jobs, initializer=_init_worker, initargs=(address_space,)) as pool:
        for counts, found in pool.imap_unordered(_run_batch, batches):
            totals.update(counts)
            failures += found
    elapsed = time.perf_counter() - started

    print(f"{args.cases} cases in {elapsed:.0f} s ({args.jobs} processes, seed {args.seed}): "
          f"{totals['error']} clean errors, {totals['decoded']} harmless decodes, {totals['failure']} failures")
    for codec in NAMES:
        print(f"  {codec:>6}: {totals[codec, 'error']} clean errors, {totals[codec, 'decoded']} harmless decodes, "
              f"{totals[codec, 'failure']} failures")
    if failures:
        args.save.mkdir(parents=True, exist_ok=True)
        failures.sort()
        for index, codec, outcome, data in failures:
            (args.save / f"case-{index}-{codec}.kmq").write_bytes(data)
        for outcome, count in Counter(outcome for _, _, outcome, _ in failures).most_common(10):
            print(f"  {count} x {outcome}")
        index, codec, outcome, data = failures[0]
        print(f"first failure: case {index} ({codec}): {outcome}\n  input: {data.hex()}")
        print(f"all {len(failures)} failing inputs saved in {args.save}/")
        return 1
    return 0


def _current_address_space() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 1 << 30


if __name__ == "__main__":
    sys.exit(main())
