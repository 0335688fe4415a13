"""Canonical segment ids: raster order of each segment's first pixel, on planted maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroseg.refine.relabel import canonical_labels


def _reference(labels: np.ndarray) -> np.ndarray:
    """Renumbering by first appearance, written the slow obvious way."""
    order: dict[int, int] = {}
    for value in labels.ravel():
        if value >= 0 and int(value) not in order:
            order[int(value)] = len(order)
    return np.vectorize(lambda v: order.get(int(v), int(v)))(labels).astype(np.int32)


def test_hand_computed_map():
    labels = np.array([[2, 2, 0], [1, -1, 0], [3, 3, 3]])
    expected = np.array([[0, 0, 1], [2, -1, 1], [3, 3, 3]], dtype=np.int32)
    result = canonical_labels(labels)
    assert result.dtype == np.int32 and np.array_equal(result, expected)


def test_permuted_ids_give_one_map():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 7, (40, 50))
    permuted = rng.permutation(7)[base]
    assert np.array_equal(canonical_labels(base), canonical_labels(permuted))
    assert np.array_equal(canonical_labels(base), _reference(base))


@pytest.mark.parametrize("seed", range(20))
def test_random_maps_match_the_reference(seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(1, 90, 2)
    low = -1 if seed % 3 == 0 else 0
    labels = rng.integers(low, rng.integers(1, 40), (height, width))
    if seed % 4 == 0:
        labels = np.where(labels >= 0, labels * 100_003, labels)  # far-apart ids
    assert np.array_equal(canonical_labels(labels), _reference(labels))


def test_a_segment_met_only_in_the_last_chunk():
    labels = np.zeros((700, 300), np.int32)  # more pixels than one scan chunk
    labels[-1, -1] = 5
    labels[0, 1] = 9
    result = canonical_labels(labels)
    assert result[0, 0] == 0 and result[0, 1] == 1 and result[-1, -1] == 2


def test_already_canonical_int32_is_returned_as_is_and_tensors_are_accepted():
    labels = np.array([[0, 0, 1], [2, 1, 1]], dtype=np.int32)
    assert canonical_labels(labels) is labels
    assert np.array_equal(canonical_labels(torch.tensor([[3, 1]])), [[0, 1]])
    assert canonical_labels(np.full((2, 2), -1)).tolist() == [[-1, -1], [-1, -1]]
    with pytest.raises(TypeError, match="integers"):
        canonical_labels(np.zeros((2, 2), np.float32))


def test_merging_same_named_segments_keeps_canonical_ids():
    from zeroseg.openvocab.naming import NamedSegment, merge_same_label

    labels = canonical_labels(np.array([[5, 5, 1], [2, 7, 1], [2, 2, 7]]))  # ids 0..3 in raster order
    classes = {0: 1, 1: 0, 2: 1, 3: 0}  # segments 0 and 2 share class 1, 1 and 3 class 0
    named = []
    for segment_id, class_index in classes.items():
        mask = labels == segment_id
        ys, xs = np.nonzero(mask)
        probabilities = np.eye(2)[class_index]
        named.append(
            NamedSegment(
                segment_id=segment_id,
                label=f"c{class_index}",
                class_index=class_index,
                score=1.0,
                area=int(mask.sum()),
                bbox=(int(xs.min()), int(ys.min()), 1, 1),
                probabilities=probabilities,
            )
        )
    merged, _ = merge_same_label(labels, named)
    assert np.array_equal(merged, canonical_labels(merged))
