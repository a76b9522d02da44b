"""A second codec's search of a byte budget starts from the first one's plain bracket, and rdo is not asked for
next to nothing (round 34, h43e)."""
import warnings

import numpy as np
import pytest
from PIL import Image, ImageDraw

from kmq import target
from kmq.api import MAX_ITER


@pytest.fixture(scope="module")
def text() -> np.ndarray:
    """A small screenshot: lines of text on a light ground, a few coloured boxes (ctx and lzma both searched)."""
    im = Image.new("RGB", (160, 120), (245, 245, 245))
    d = ImageDraw.Draw(im)
    for i in range(8):
        d.text((4 + 3 * i, 4 + 14 * i), f"lorem ipsum {i} dolor", fill=(20, 20, 20))
    d.rectangle((100, 70, 150, 110), fill=(200, 40, 40))
    d.rectangle((110, 10, 150, 40), fill=(40, 90, 200))
    return np.asarray(im)


def search(pixels: np.ndarray, codec: str, budget: int) -> target._Search:
    return target._Search(pixels, 65536, codec, 0, MAX_ITER, {"max_bytes": budget})


def test_a_bracket_probes_the_k_given_first():
    probed: list[int] = []

    def ok(k: int) -> bool:
        probed.append(k)
        return k >= 300
    # another codec's bracket (260, 310) is already within _COARSE: closed by those two probes, not from K = 16
    assert target._bracket(65536, ok, float, 300.0, 16, coarse=target._COARSE, first=(260, 310)) == (260, 310)
    assert probed == [260, 310]
    # ones outside the bracket as it stands are skipped; the search goes on from the last probe
    probed.clear()
    lo, hi = target._bracket(65536, ok, float, 300.0, 16, coarse=target._COARSE, first=(400, 500))
    assert probed[0] == 400 and 500 not in probed and 16 not in probed
    assert lo < 300 <= hi <= target._COARSE * lo


def test_the_lzma_search_starts_from_ctx_s_bracket(text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = search(text, "ctx", 1500)
        k_cap = target._k_cap(s, 1500)
        bracket = target._bytes_bracket(s, 1500, k_cap)
        other = s.with_codec("lzma")
        assert other.hint == bracket
        sized: list[int] = []
        size = other.size

        def spy(k: int, rdo: float = 0.0) -> int:
            if (k, rdo) not in other.sizes:
                sized.append(k)
            return size(k, rdo)
        other.size = spy  # type: ignore[method-assign]
        target._bytes_bracket(other, 1500, target._k_cap(other, 1500))
    assert [k for k in sized if k > 1][:2] == [k for k in bracket if 1 < k <= k_cap][:2]


def test_rdo_is_not_asked_for_next_to_nothing(text, monkeypatch):
    """Where the plain curve times rdo's share fits at k's plain J, the first run was asked for +0.1 % (the
    800x500 screenshot in 6,000 B: K = 9 and 6, 7,274 and 6,942 bytes, their plain files' give or take a few
    bytes): now hi's J, where a file that fits beats every plain K."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = search(text, "lzma", 1500)
        monkeypatch.setattr(target, "_rdo_aim", lambda s, hi, k, goal, share: s.j(k))
        asked: list[float] = []
        file = s.file

        def spy(k: int, rdo: float = 0.0):
            if rdo > 0 and (k, rdo) not in s.files:
                asked.append(rdo)
            return file(k, rdo)
        s.file = spy  # type: ignore[method-assign]
        target._rdo_at(s, 9, 1500, 3, 4, target._RDO_STEPS, target._RDO_SHARE)
    assert asked and asked[0] == min(target.MAX_RDO, target._pct(s.j(4) / s.j(9))) > 1.0
