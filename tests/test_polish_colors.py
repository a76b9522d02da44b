"""api.polish_colors: Lloyd updates from a palette fitted elsewhere (a target search's rough fits)."""
import numpy as np

from kmq.api import polish_colors


def test_one_update_moves_each_entry_to_the_mean_of_its_colours_and_keeps_an_unused_one():
    colors = np.array([[0], [2], [10], [12]], np.uint8)
    counts = np.array([1, 1, 1, 1])
    palette, labels, j = polish_colors(colors, counts, np.array([[0], [12], [200]], np.uint8), 1)
    np.testing.assert_array_equal(palette, [[1], [11], [200]])  # shares 2, 2, 0: ties by colour
    np.testing.assert_array_equal(labels, [0, 0, 1, 1])
    assert j == 1.0  # each colour 1 away from its entry


def test_counts_weigh_the_means_and_j():
    colors = np.array([[0, 0, 0], [4, 4, 4]], np.uint8)
    palette, labels, j = polish_colors(colors, np.array([3, 1]), np.array([[2, 2, 2]], np.uint8), 1)
    np.testing.assert_array_equal(palette, [[1, 1, 1]])  # (0 * 3 + 4) / 4
    np.testing.assert_array_equal(labels, [0, 0])
    assert j == (3 * 3 + 1 * 27) / 4


def test_no_update_only_labels_and_orders():
    colors = np.array([[5], [250], [251]], np.uint8)
    palette, labels, j = polish_colors(colors, np.array([1, 1, 1]), np.array([[0], [255]], np.uint8), 0)
    np.testing.assert_array_equal(palette, [[255], [0]])  # 255 nearest two colours, 0 one
    np.testing.assert_array_equal(labels, [1, 0, 0])
    assert j == (25 + 25 + 16) / 3
