"""Round 48 (h57a): a target's search on a large image held every file it made whole to its end, each with its
uint16 labels (48 MB at 24 MP: 8-9 of them, 366-412 MB of `--max-bytes 3M`'s 1.08 GB peak at 24 MP). From
target._PARK_PIXELS on, a file the search holds parks its labels (_Parked) but for the one in the making: a plain
file's are made again from its fit where read, an rdo file's kept as uint8 (K <= 256). The same files. Here the
threshold is lowered so that small images park as large ones do."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import target
from kmq.format import KmqImage
from conftest import SAMPLES


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A noisy photo of 144 x 150 pixels: rdo runs at a few K under a byte budget."""
    with Image.open(SAMPLES / "chelsea.png") as im:
        crop = np.asarray(im.convert("RGB"))[40:184, 100:250]
    rng = np.random.default_rng(48)
    return np.clip(crop.astype(np.int16) + rng.integers(-6, 7, crop.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def graphic() -> np.ndarray:
    """Flat blocks with a few edges of noise: lzma's search (its files compared for a twin)."""
    rng = np.random.default_rng(5)
    blocks = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    out = np.kron(blocks, np.ones((16, 16, 1), np.uint8))
    out[::16] = rng.integers(0, 256, out[::16].shape, dtype=np.uint8)
    return out


def _live(img: KmqImage) -> np.ndarray | None:
    """img's uint16 labels if it holds them (read from its fields: reading .labels would make parked ones again)."""
    labels = img.__dict__.get("labels")
    return labels if labels is not None and labels.dtype == np.uint16 else None


def _watched_search(image: np.ndarray, **case) -> tuple[dict, bytes]:
    """compress_to(image, **case) parking on any image: records, when each file is made, the search's other files
    that still hold uint16 labels and the label arrays its payload entries hold, and every file's labels as made;
    and the file it returns."""
    seen = {"held": [], "entries": [], "made": []}
    file = target._Search.file

    def watching(self, k: int, rdo: float = 0.0) -> KmqImage:
        new = (k, rdo) not in self.files
        img = file(self, k, rdo)
        if new:
            seen["held"].append(sum(_live(other) is not None for other in self.files.values() if other is not img))
            seen["entries"].append(sum(isinstance(entry[0], np.ndarray) for entries in self.payloads.values()
                                       for entry in entries))
            seen["made"].append((img, _live(img).copy()))
        return img

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(target, "_PARK_PIXELS", 0, raising=False)
        mp.setattr(target._Search, "file", watching)
        img = kmq.compress_to(image, **case)
    assert type(img) is KmqImage and img.labels.dtype == np.uint16
    return seen, img.to_bytes()


# Each search runs once for the module (a target search is the cost of these tests): the watched run's file is the
# parked file test_the_same_files_parked_or_not compares with the one made unparked.
_CASES = {"ctx 9000": {"codec": "ctx", "max_bytes": 9000}, "ctx psnr 33": {"codec": "ctx", "psnr": 33.0},
          "lzma 1500": {"codec": "lzma", "max_bytes": 1500}, "raw psnr 35": {"codec": None, "psnr": 35.0}}


@pytest.fixture(scope="module")
def searches(photo, graphic) -> dict[str, tuple[dict, bytes]]:
    cache: dict[str, tuple[dict, bytes]] = {}

    def search(name: str) -> tuple[dict, bytes]:
        if name not in cache:
            case = _CASES[name]
            cache[name] = _watched_search(graphic if case["codec"] != "ctx" else photo, **case)
        return cache[name]
    return search


@pytest.mark.parametrize("case, least", [("ctx 9000", 10), ("ctx psnr 33", 3)])
def test_a_search_holds_the_labels_of_no_file_but_the_one_made(searches, case, least):
    watched, _ = searches(case)
    made = len(watched["made"])
    assert made >= least
    # (before: every file made before it, its labels whole; the payload entries held them too)
    assert watched["held"] == [0] * made
    assert watched["entries"] == [0] * made


def test_parked_labels_are_made_again_as_they_were(searches):
    watched, _ = searches("ctx 9000")
    rdo_files = [img for img, _ in watched["made"] if img.metadata.get("rdo", 0) > 0]
    assert rdo_files and len(rdo_files) < len(watched["made"])
    # parked at the end: all but the last made and one read since (the file returned, whose labels it has)
    assert sum(_live(img) is None for img, _ in watched["made"]) >= len(watched["made"]) - 2
    for img, labels in watched["made"]:
        np.testing.assert_array_equal(img.labels, labels)


@pytest.mark.parametrize("case", list(_CASES))
def test_the_same_files_parked_or_not(photo, graphic, searches, case):
    kwargs = _CASES[case]
    kept = kmq.compress_to(graphic if kwargs["codec"] != "ctx" else photo, **kwargs).to_bytes()
    assert searches(case)[1] == kept
