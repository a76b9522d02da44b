"""Fuzzing the .kmq decoder with hypothesis: structured mutations of valid files of every registered codec.

Every mutated input must end in a KmqError or a successful decode, within a second and without a memory
blow-up (tools/fuzz.py judges; `make fuzz` runs the same judge over 100,000 random cases). Iterating over
kmq.codecs.NAMES covers a codec as soon as it is registered.
"""
import json
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmq.codecs import NAMES
from kmq.format import HEADER_FIELDS, MAGIC

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import fuzz  # noqa: E402

# Largest payload first: hypothesis leans towards the first choices, and those reach deepest into a codec.
CORPUS = {codec: sorted(fuzz.corpus(codec), key=lambda data: -fuzz.get_field(data, "payload_len"))
          for codec in NAMES}

FUZZ = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _truncate(draw, data):
    return data[:-draw(st.integers(1, len(data)))]


def _flip(draw, data):
    out = bytearray(data)
    for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
        out[position] ^= 1 << draw(st.integers(0, 7))
    return fuzz.recrc(bytes(out)) if draw(st.booleans()) else bytes(out)


def _forge(draw, data):
    name = draw(st.sampled_from(sorted(HEADER_FIELDS)))
    top = 1 << (8 * struct.calcsize(HEADER_FIELDS[name][1]))
    value = draw(st.sampled_from(fuzz.extremes(name)) | st.integers(0, top - 1))
    forged = fuzz.set_field(data, name, value)
    # Mostly with the CRC made right, so the forgery gets past the checksum to the checks behind it.
    return fuzz.recrc(forged) if draw(st.integers(0, 9)) else forged


def _delete(draw, data):
    start = draw(st.integers(0, len(data) - 1))
    return data[:start] + data[start + draw(st.integers(1, 64)):]


def _insert(draw, data):
    at = draw(st.integers(0, len(data)))
    out = data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    return fuzz.recrc(out) if draw(st.booleans()) else out


def _trailing(draw, data):
    return data + draw(st.binary(min_size=1, max_size=64))


def _payload(draw, data):
    start, end = fuzz.sections(data)["payload"]
    payload = bytearray(data[start:end])
    if payload and draw(st.booleans()):
        # A few bytes of a real stream changed: the codec decodes some way before it can notice.
        for position in draw(st.lists(st.integers(0, len(payload) - 1), min_size=1, max_size=4)):
            payload[position] = draw(st.integers(0, 255))
        payload = payload[:draw(st.integers(0, len(payload)))] if draw(st.booleans()) else payload
    else:
        payload = draw(st.binary(max_size=96))
    return fuzz.replace_section(data, "payload", bytes(payload))


_JSON = st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                  max_size=3), max_leaves=8)


def _meta(draw, data):
    meta = draw(st.binary(max_size=64)
                | st.dictionaries(st.sampled_from(["distortion", "seed", "x"]), _JSON, max_size=3).map(
                    lambda d: json.dumps(d).encode())
                | st.sampled_from([b"[" * 5000, b'{"distortion":' + b"9" * 400 + b"}", b'{"distortion":-1}']))
    return fuzz.replace_section(data, "meta", meta)


def _random(draw, data):
    return draw(st.binary(max_size=200))


def _magic_noise(draw, data):
    return MAGIC + draw(st.binary(max_size=200))


# The deep mutations first, for the same reason as the corpus order.
MUTATIONS = (_payload, _forge, _payload, _meta, _flip, _insert, _delete, _truncate, _trailing, _magic_noise, _random)


@st.composite
def mutated(draw, codec):
    data = draw(st.sampled_from(CORPUS[codec]))
    for _ in range(draw(st.integers(1, 3))):
        mutation = draw(st.sampled_from(MUTATIONS))
        try:
            data = mutation(draw, data) if data else data
        except struct.error:  # a section-aware mutation of a file an earlier one already broke
            pass
    return data


@pytest.mark.parametrize("codec", NAMES)
def test_every_mutation_is_a_clean_error_or_a_harmless_decode(codec):
    @FUZZ
    @given(mutated(codec))
    def check(data):
        outcome = fuzz.judge(data)
        assert not outcome.startswith("failure"), f"{outcome}\ninput: {data.hex()}"

    check()


@pytest.mark.parametrize("codec", NAMES)
def test_the_corpus_is_valid(codec):
    assert [fuzz.judge(data) for data in CORPUS[codec]] == ["decoded"] * len(fuzz.SHAPES)


@pytest.mark.parametrize("codec", NAMES)
@pytest.mark.parametrize("width, height", [(13377, 13377), (178_956_970, 1), (2, 89_478_485), (65536, 2730)])
def test_a_small_payload_forged_to_the_pixel_limit(codec, width, height):
    # The declared image is as large as the limit allows while the payload stays a few bytes: a decoder must
    # notice the payload cannot fill it (or, for k = 1, produce it) quickly and without a memory blow-up.
    for data in CORPUS[codec]:
        forged = fuzz.recrc(fuzz.set_field(fuzz.set_field(data, "width", width), "height", height))
        assert not fuzz.judge(forged).startswith("failure")


def test_the_long_run_driver(tmp_path, capsys):
    assert fuzz.main(["-n", "300", "--jobs", "2", "--save", str(tmp_path / "failures")]) == 0
    out = capsys.readouterr().out
    assert "300 cases in" in out and " failures" in out
    assert not (tmp_path / "failures").exists()
