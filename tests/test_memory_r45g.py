"""Round 45 (h54g): ctx's stream keeps an escape's uniform offset as a 2-byte key into the model's table of
(freq - 1, cum) by R·k + rank, not as its (freq - 1, cum), 4 bytes, when the 5·k keys fit in uint16 (k <= 13107):
a noisy 48 MP photo's `compress --codec ctx -k 4096` 645 -> 563 MB, the same bytes."""
from __future__ import annotations

import numpy as np
import pytest

from kmq.codecs import ctx, rans
from test_codecs import pal
from test_memory_r45 import all_escapes, noisy, one_escape


def stream_bytes(monkeypatch, labels: np.ndarray, k: int) -> tuple[bytes, int]:
    """The payload and the bytes the stream's parts hold symbol by symbol (the tables keys index left out)."""
    held = []
    code = rans.encode_parts

    def counted(parts, lanes, **kw):
        held.append(sum(p[0].nbytes if len(p) == 3 else p[0].nbytes + p[1].nbytes for p in parts))
        return code(parts, lanes, **kw)
    monkeypatch.setattr(rans, "encode_parts", counted)
    return ctx.encode(labels, pal(k)), held[0]


@pytest.mark.parametrize("k", [257, 4096, 13107])
def test_ctx_stream_keeps_an_escapes_offset_in_2_bytes(monkeypatch, k):
    # Every pixel escapes: 3 symbols each (stage 1, bucket, offset). The old code held 12 bytes a pixel here (a
    # first piece's small batches kept as (freq - 1, cum): 4 bytes), the offsets 4 of them; now 10.
    labels = all_escapes(120, 100, k)
    _, held = stream_bytes(monkeypatch, labels, k)
    assert held / labels.size < 10.5


_SHAPES = [(1, 1), (1, 2), (2, 1), (7, 5), (5, 7), (1, 300), (300, 1), (23, 31)]


@pytest.mark.parametrize("k", [2, 5, 257, 4096, 13107])
@pytest.mark.parametrize("shape, make", [(shape, make) for shape in _SHAPES for make in (all_escapes, one_escape, noisy)
                                         if make is not noisy or min(shape) >= 2])  # (blobs need 2 rows, 2 columns)
def test_ctx_offset_keys_give_the_bytes_of_the_offsets_themselves(monkeypatch, k, shape, make):
    # The payload with the offsets as keys is the one coded from their (freq - 1, cum) (the code before, which
    # K > 13107 still takes), with tiny stripes and escape groups too; and decodes; and payload_bounds agrees.
    labels = make(*shape, k)
    palette = pal(k, seed=k)
    new = ctx.encode(labels, palette)
    low, high = ctx.payload_bounds(labels, palette)
    assert low <= len(new) <= high
    assert np.array_equal(ctx.decode(new, shape[1], shape[0], palette), labels)
    monkeypatch.setattr(ctx, "_ESCAPE_GROUP", 3)
    monkeypatch.setattr(ctx, "_STRIPE_PIXELS", 7)
    assert ctx.encode(labels, palette) == new
    monkeypatch.setattr(ctx._Model, "_offset_tables", lambda self: (None, None))
    assert ctx.encode(labels, palette) == new
    assert ctx.payload_bounds(labels, palette) == (low, high)


@pytest.mark.parametrize("k, tables", [(13107, True), (13108, False), (65536, False)])
def test_ctx_offset_tables_only_where_their_keys_fit_in_uint16(k, tables):
    model = ctx._Model(k, pal(k))
    assert (model.offset_less is not None) == tables
    if tables:
        assert len(model.offset_less) == len(model.offset_cum) == 5 * k <= 1 << 16
