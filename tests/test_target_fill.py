"""The byte budget's last fill (kmq.target._level_fill): weaker rdo at the K the walk found, until its file is within
_LEVEL_CLOSE of the budget."""
import numpy as np

import kmq
from kmq.stats import psnr as psnr_of

from test_target import _noisy_vignette


def test_the_fill_asks_rdo_when_the_slope_step_falls_under_the_plain_j():
    # 160x120 RGBA vignette in 2,600 bytes: the walk's best, K = 161 at +0.218 %, was 3 % under the budget; the
    # fill's step along _LEVEL_SLOPE asked a J under K = 161's plain J (no rdo at all), and the fill stopped there
    # (2,517 bytes, 30.905 dB) where the chord from the plain file asks +0.028 %: 2,575 bytes, 30.915 dB.
    img = _noisy_vignette(160, 120)
    out = kmq.compress_to(img, max_bytes=2600, codec="ctx")
    size = len(out.to_bytes())
    assert 0.98 * 2600 <= size <= 2600
    assert psnr_of(out.distortion, out.channels) > 30.91
