"""numpy scalars in metadata (round 44's library trial: np.float64 was accepted, being a float, and np.int64,
a count from numpy, refused as "not a JSON value")."""
import io

import numpy as np
import pytest

import kmq


@pytest.fixture
def img():
    return kmq.compress(np.arange(4, dtype=np.uint8).reshape(2, 2), 2)


@pytest.mark.parametrize("value, stored", [
    (np.int64(3), 3), (np.uint8(255), 255), (np.bool_(True), True), (np.float32(1.5), 1.5),
    ([np.int16(-2), {"n": np.uint64(2 ** 63)}], [-2, {"n": 2 ** 63}]),
])
def test_numpy_numbers_are_written_as_the_json_they_hold(img, value, stored):
    img.metadata["x"] = value
    data = img.to_bytes()
    img.metadata["x"] = stored
    assert data == img.to_bytes()  # the same bytes as the Python value's
    back = kmq.read(io.BytesIO(data)).metadata["x"]
    assert back == stored and type(back) is type(stored)


@pytest.mark.parametrize("value, message", [
    (np.float32("nan"), "x is nan, not a JSON number"),
    (np.datetime64("2020"), "x is datetime64, not a JSON value"),
    (np.longdouble(1.5), "x is longdouble, not a JSON value"),
])
def test_what_json_cannot_hold_is_still_refused(img, value, message):
    img.metadata["x"] = value
    with pytest.raises(ValueError, match=f"metadata: {message}"):
        img.to_bytes()


def test_kmq_s_own_keys_take_them_too(img):
    # (h54r1: seed = np.int64(3) was refused as "seed must be an integer >= 0, got np.int64(3)")
    img.metadata.update(seed=np.int64(3), max_iter=np.uint16(50), tol=np.float32(0.5), rdo=np.float32(2.0),
                        distortion=np.float64(0.5), target={"max_bytes": np.int64(5000)})
    back = kmq.read(io.BytesIO(img.to_bytes())).metadata
    assert back == {"seed": 3, "max_iter": 50, "tol": 0.5, "rdo": 2.0, "distortion": 0.5,
                    "target": {"max_bytes": 5000}}
    img.metadata["seed"] = np.float64(1.5)
    with pytest.raises(ValueError, match=r"metadata: seed must be an integer >= 0, got 1\.5"):
        img.to_bytes()
