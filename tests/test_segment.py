"""Segmentation views, masks, the montage and swatches, checked by their pixels."""
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kmq
from kmq import segment
from kmq.errors import KmqError, KmqWarning
from kmq.stats import palette_entries, shares


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    """250 x 60 RGB: wide enough to need no scaling in a montage, small enough to cluster fast."""
    with Image.open(Path(__file__).resolve().parent.parent / "samples" / "ihc-303x227.png") as im:
        return np.asarray(im.convert("RGB"))[80:140, 20:270].copy()


@pytest.fixture(scope="module")
def quantized(crop):
    return kmq.compress(crop, k=4)


def test_label_colours_are_distinct_stable_and_start_like_scikit_image():
    colours = segment.label_colors(65536)
    assert colours.shape == (65536, 3) and colours.dtype == np.uint8
    assert len(np.unique(colours, axis=0)) == 65536
    np.testing.assert_array_equal(segment.label_colors(3), [(255, 0, 0), (0, 0, 255), (255, 255, 0)])
    np.testing.assert_array_equal(segment.label_colors(300), colours[:300])


def test_overlay_blends_each_cluster_colour_over_grey(crop, quantized):
    out = segment.overlay(quantized.labels, crop, quantized.k)
    assert out.shape == crop.shape and out.dtype == np.uint8
    expected = 0.3 * segment.label_colors(quantized.k)[quantized.labels] + 0.7 * segment.grey(crop)[:, :, None]
    assert np.abs(out.astype(float) - expected).max() <= 0.5 + 1e-3


def test_overlay_of_a_flat_image_has_one_distinct_colour_per_cluster():
    labels = np.arange(60).reshape(6, 10) % 6
    out = segment.overlay(labels, np.full((6, 10), 128, np.uint8), 6)
    colours = [np.unique(out[labels == i], axis=0) for i in range(6)]
    assert all(len(c) == 1 for c in colours)
    assert len(np.unique(np.concatenate(colours), axis=0)) == 6


def test_label_map_is_the_labels_in_8_or_16_bits(quantized):
    small = segment.label_map(quantized.labels, quantized.k)
    assert small.dtype == np.uint8
    np.testing.assert_array_equal(small, quantized.labels)
    wide = segment.label_map(np.array([[0, 299]], np.uint16), 300)
    assert wide.dtype == np.uint16 and wide.tolist() == [[0, 299]]


def test_boundaries_mark_exactly_the_pixels_before_a_change():
    labels = np.zeros((4, 6), np.uint16)
    labels[:, 3:] = 1
    labels[3, :] = 2
    base = np.full((4, 6), 50, np.uint8)
    out = segment.boundaries(labels, base)
    marked = (out == segment.BOUNDARY_COLOR).all(axis=2)
    expected = np.zeros((4, 6), bool)
    expected[:3, 2] = True       # left of the 0 | 1 edge
    expected[2, :] = True        # above the row of 2s
    np.testing.assert_array_equal(marked, expected)
    assert (out[~marked] == 50).all()


def test_masks_partition_the_image(quantized):
    stack = np.stack(list(segment.masks(quantized.labels, quantized.k)))
    assert stack.shape == (quantized.k, *quantized.labels.shape) and stack.dtype == bool
    assert (stack.sum(axis=0) == 1).all()
    np.testing.assert_array_equal(stack.argmax(axis=0), quantized.labels)


def test_write_masks_then_read_them_back(tmp_path, quantized):
    paths = segment.write_masks(quantized, tmp_path / "m", "crop")
    assert [p.name for p in paths] == [f"crop-cluster-{i}.png" for i in range(quantized.k)]
    read = np.stack([np.asarray(Image.open(p)) for p in paths])
    assert read.dtype == bool and (read.sum(axis=0) == 1).all()
    np.testing.assert_array_equal(read.argmax(axis=0), quantized.labels)


def test_write_masks_refuses_before_writing_anything(tmp_path, quantized):
    (tmp_path / "crop-cluster-2.png").write_bytes(b"keep")
    with pytest.raises(KmqError, match="crop-cluster-2.png already exists"):
        segment.write_masks(quantized, tmp_path, "crop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crop-cluster-2.png"]
    segment.write_masks(quantized, tmp_path, "crop", overwrite=True)
    assert Image.open(tmp_path / "crop-cluster-2.png").mode == "1"


@pytest.mark.parametrize("overwrite, stopped_after", [(False, 1), (False, 3), (True, 1), (True, 3)])
def test_a_ctrl_c_just_after_a_mask_is_renamed_leaves_no_mask(tmp_path, quantized, monkeypatch, overwrite,
                                                              stopped_after):
    """The interrupt lands after write_atomic has put the mask in place, before the loop counts it."""
    if overwrite:
        for name in segment.mask_names("crop", quantized.k):
            (tmp_path / name).write_bytes(b"old")
    calls = []

    def write_then_stop(path, *args, **kwargs):
        real_write_atomic(path, *args, **kwargs)
        calls.append(path)
        if len(calls) == stopped_after:
            raise KeyboardInterrupt

    real_write_atomic = segment.write_atomic
    monkeypatch.setattr(segment, "write_atomic", write_then_stop)
    with pytest.raises(KeyboardInterrupt):
        segment.write_masks(quantized, tmp_path, "crop", overwrite=overwrite)
    # with overwrite, a replaced mask takes the old ones with it (old and new together partition nothing)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("stopped_after", [0, 2])
def test_a_failed_mask_run_takes_back_the_folders_it_made(tmp_path, quantized, monkeypatch, stopped_after):
    """A full disk or Ctrl-C left the folders the run had made behind, empty (h52e); one that was there stays."""
    import errno

    calls = []

    def write_then_fail(path, *args, **kwargs):
        if len(calls) == stopped_after:
            raise KmqError(f"cannot write {path}: {os.strerror(errno.ENOSPC)}")
        real_write_atomic(path, *args, **kwargs)
        calls.append(path)

    real_write_atomic = segment.write_atomic
    monkeypatch.setattr(segment, "write_atomic", write_then_fail)
    (tmp_path / "kept").mkdir()
    with pytest.raises(KmqError, match="cannot write"):
        segment.write_masks(quantized, tmp_path / "kept" / "new" / "masks", "crop")
    assert list(tmp_path.iterdir()) == [tmp_path / "kept"] and list((tmp_path / "kept").iterdir()) == []


def test_a_kmq_input_is_told_by_its_magic_and_keeps_its_labels(tmp_path, quantized):
    disguised = tmp_path / "looks-like.png"
    kmq.write(disguised, quantized)
    with pytest.warns(KmqWarning, match=r"looks-like.png: a .kmq keeps its own K \(4\); -k 2 does not apply$"):
        img, base = segment.quantized(disguised, k=2)
    assert img == quantized
    np.testing.assert_array_equal(base, quantized.decode())
    np.testing.assert_array_equal(segment.render(img, base, "mean"), quantized.decode())


def test_grey_and_rgba_views_are_rgb():
    labels = np.array([[0, 1], [1, 0]])
    grey = np.array([[0, 255], [255, 0]], np.uint8)
    rgba = np.zeros((2, 2, 4), np.uint8)  # fully transparent: composited over white
    assert segment.overlay(labels, grey, 2).shape == (2, 2, 3)
    assert (segment.opaque_rgb(rgba) == 255).all()


def test_montage_has_the_original_then_one_panel_per_k(crop):
    figure = segment.montage(crop, [2, 5])
    assert [p.title for p in figure.panels] == ["original", "K = 2", "K = 5"]
    assert figure.panels[0].record is None
    for panel, expected in zip(figure.panels, [crop, kmq.compress(crop, 2).decode(), kmq.compress(crop, 5).decode()]):
        x0, y0, x1, y1 = panel.box
        np.testing.assert_array_equal(figure.pixels[y0:y1, x0:x1], expected)
    record = figure.panels[2].record
    assert figure.panels[2].subtitle == f"ratio {record['ratio']:.3f}, PSNR {record['psnr']:.2f} dB"
    # The titles are drawn: the band above each panel is not blank.
    x0, y0, x1, _ = figure.panels[1].box
    assert (figure.pixels[y0 - 40:y0, x0:x1] < 128).any()


def test_montage_enlarges_a_tiny_image_by_a_whole_factor(rgb_small):
    figure = segment.montage(rgb_small, [3], columns=1)
    x0, y0, x1, y1 = figure.panels[0].box
    factor = (x1 - x0) // rgb_small.shape[1]
    assert factor * rgb_small.shape[1] >= segment.PANEL_MIN and (y1 - y0) == factor * rgb_small.shape[0]
    np.testing.assert_array_equal(figure.pixels[y0:y1:factor, x0:x1:factor], rgb_small)
    assert figure.panels[1].box[1] > y1  # columns=1: the reconstruction sits below


def test_montage_of_a_kmq_file_is_refused(tmp_path, quantized):
    kmq.write(tmp_path / "q.kmq", quantized)
    with pytest.raises(KmqError, match="holds one K and not the original"):
        segment.montage_file(tmp_path / "q.kmq", [2])


def test_swatch_grid_has_one_cell_per_entry_and_white_gutters():
    palette = segment.label_colors(20)
    out = segment.swatch(palette)
    step = segment.SWATCH_CELL + 2
    assert out.shape == (2 * step + 2, 16 * step + 2, 3)
    centres = [out[2 + (i // 16) * step + 24, 2 + (i % 16) * step + 24] for i in range(20)]
    np.testing.assert_array_equal(centres, palette)
    assert (out[:2] == 255).all() and (out[step + 2 + 24, 4 * step + 2 + 24] == 255).all()  # past entry 19


def test_proportional_swatch_widths_follow_the_shares():
    palette = np.array([[0], [100], [200]], np.uint8)
    out = segment.swatch(palette, np.array([0.5, 0.25, 0.25]), proportional=True)
    width, height = segment.PROPORTIONAL_SIZE
    assert out.shape == (height, width)
    assert [int((out[0] == v).sum()) for v in (0, 100, 200)] == [width // 2, width // 4, width // 4]


def test_rgba_swatch_gutters_are_transparent():
    out = segment.swatch(np.array([[10, 20, 30, 255]], np.uint8))
    assert out.shape[2] == 4 and out[0, 0, 3] == 0 and out[10, 10].tolist() == [10, 20, 30, 255]


def test_palette_entries_for_grey_rgb_and_rgba():
    labels = np.array([[0, 0, 0, 1]])
    assert shares(labels, 3).tolist() == [0.75, 0.25, 0.0]
    assert palette_entries(np.array([[7], [255], [0]], np.uint8), labels)[0] == {
        "index": 0, "hex": "#070707", "rgb": [7, 7, 7], "share": 0.75}
    (first, second) = palette_entries(np.array([[1, 2, 3, 128], [255, 0, 0, 0]], np.uint8), labels)
    assert first == {"index": 0, "hex": "#01020380", "rgb": [1, 2, 3], "share": 0.75, "alpha": 128}
    assert second["hex"] == "#ff000000" and second["alpha"] == 0


def test_write_masks_at_a_smaller_k_leaves_no_stale_masks(tmp_path, quantized):
    """A run at K = 4 then at K = 2 (-f) must leave masks that partition the image, not 4 of which 2 are old."""
    for i in range(quantized.k, quantized.k + 3):
        (tmp_path / f"crop-cluster-{i}.png").write_bytes(b"old")
    (tmp_path / "crop-cluster-100000.png").write_bytes(b"not ours")  # no K reaches it: not a name kmq writes
    (tmp_path / "other-cluster-9.png").write_bytes(b"another stem")
    with pytest.raises(KmqError, match=rf"crop-cluster-{quantized.k}.png already exists"):
        segment.write_masks(quantized, tmp_path, "crop")
    segment.write_masks(quantized, tmp_path, "crop", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"crop-cluster-{i}.png" for i in range(quantized.k)] + ["crop-cluster-100000.png", "other-cluster-9.png"])


def test_a_palette_does_not_apply_to_a_kmq_input(tmp_path, quantized):
    kmq.write(tmp_path / "q.kmq", quantized)
    with pytest.warns(KmqWarning, match=r"q.kmq: a .kmq is used as stored; --palette does not apply$"):
        img, _ = segment.quantized(tmp_path / "q.kmq", palette=np.zeros((2, 3), np.uint8))
    assert img == quantized
