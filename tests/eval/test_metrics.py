"""Matching and metrics on hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from zeroseg.errors import ConfigError
from zeroseg.eval.background import merge_background
from zeroseg.eval.matching import DatasetMatcher, confusion_matrix, match_image
from zeroseg.eval.metrics import IoUAccumulator, image_iou, image_scores
from zeroseg.eval.open_vocabulary import score_image, summarize


def test_confusion_matrix_counts_pairs_and_skips_ignore():
    gt = np.array([[0, 0, 1], [1, -1, 255]])
    pred = np.array([[2, 2, 0], [2, 1, 1]])
    hist = confusion_matrix(gt, pred, num_classes=2)
    # columns = max(2, 3) = 3; the two ignore pixels are skipped
    assert hist.tolist() == [[0, 0, 2], [1, 0, 1]]


def test_permuted_labelling_scores_one():
    gt = np.array([[0, 0, 1, 1], [2, 2, 1, 1]])
    pred = np.array([[5, 5, 3, 3], [0, 0, 3, 3]])
    counts = match_image(gt, pred, num_classes=3)
    assert counts.tp.tolist() == [2, 4, 2]
    assert counts.fp.sum() == 0 and counts.fn.sum() == 0
    acc = IoUAccumulator(3)
    acc.add(counts)
    assert acc.miou == 1.0 and acc.pixel_accuracy == 1.0


def test_hand_worked_image_with_extra_cluster_and_absent_class():
    # 3 classes, class 2 absent; 3 clusters. gt row 0: class 0 x4 ; row 1: class 1 x4.
    gt = np.array([[0, 0, 0, 0], [1, 1, 1, 1]])
    pred = np.array([[0, 0, 0, 1], [1, 1, 2, 2]])
    # hist (3 x 3): class0 -> [3,1,0]; class1 -> [0,2,2]; class2 -> [0,0,0]
    # best matching: 0->0 (3), 1->1 or 2 (2); scipy picks 1->1, 2->2 (total 5)
    counts = match_image(gt, pred, num_classes=3)
    assert counts.tp.tolist() == [3, 2, 0]
    assert counts.fn.tolist() == [1, 2, 0]
    # class 0's cluster 0 holds only class-0 pixels; class 1's cluster 1 holds 1 class-0 pixel;
    # the absent class 2 is matched to cluster 2, whose 2 pixels count as its false positives
    assert counts.fp.tolist() == [0, 1, 2]
    assert counts.valid == 8
    miou, acc = image_scores(counts)
    assert acc == pytest.approx(5 / 8)
    assert miou == pytest.approx(np.mean([3 / 4, 2 / 5, 0.0]))


def test_unmatched_extra_clusters_add_to_fn_only():
    gt = np.zeros((2, 4), dtype=int)  # one class
    pred = np.array([[0, 0, 1, 2], [3, 4, 0, 0]])
    counts = match_image(gt, pred, num_classes=1)
    assert counts.tp.tolist() == [4]
    assert counts.fn.tolist() == [4]
    assert counts.fp.tolist() == [0]


def test_accumulator_sums_over_images_and_nanmean_skips_never_seen_classes():
    acc = IoUAccumulator(3)
    # image 1: perfect on class 0 (4 px)
    acc.add(match_image(np.zeros((2, 2), int), np.zeros((2, 2), int), 3))
    # image 2: class 1 (2 px) + ignore; prediction splits class 1 in two clusters
    gt = np.array([[1, 1], [-1, -1]])
    pred = np.array([[0, 1], [0, 1]])
    acc.add(match_image(gt, pred, 3))
    # image 2: class 1 gets one of the two clusters (TP 1, FN 1); the absent class 0 gets the other one,
    # so its pixel is a false positive of class 0: IoU_0 = 4 / (4 + 1)
    ious = acc.per_class_iou()
    assert ious[0] == pytest.approx(4 / 5)
    assert ious[1] == pytest.approx(1 / 2)
    assert math.isnan(ious[2])
    assert acc.miou == pytest.approx((4 / 5 + 1 / 2) / 2)
    assert acc.pixel_accuracy == pytest.approx(5 / 6)


def test_dataset_level_matching_uses_one_assignment():
    m = DatasetMatcher(2)
    m.add(np.array([[0, 1]]), np.array([[0, 1]]))
    m.add(np.array([[0, 1]]), np.array([[1, 0]]))  # swapped in image 2: cannot be fixed per dataset
    counts = m.counts()
    assert counts.tp.tolist() == [1, 1]
    assert counts.fp.tolist() == [1, 1] and counts.fn.tolist() == [1, 1]


def test_image_iou_open_vocabulary_style():
    gt = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    # class 0: inter 1, union 2; class 1: inter 2, union 3; class 2 absent in both: left out
    assert image_iou(gt, pred, 3) == pytest.approx((1 / 2 + 2 / 3) / 2)
    # the open-vocabulary summary averages that per-image IoU over images
    records = [score_image(gt, pred, 3), score_image(gt, gt, 3)]
    assert summarize(records, ["a", "b", "c"])["miou"] == pytest.approx(((1 / 2 + 2 / 3) / 2 + 1) / 2)


def test_shape_mismatch_is_a_config_error():
    with pytest.raises(ConfigError, match="`pred`"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((3, 2), int), 2)


def test_background_merge_keeps_matched_foreground_clusters():
    # classes: 0 = cat, 1 = dog, 2 = background
    gt = np.array(
        [
            [0, 0, 2, 2, 2],
            [0, 0, 2, 2, 2],
            [2, 2, 2, 1, 1],
        ]
    )
    pred = np.array(
        [
            [0, 0, 1, 2, 2],
            [0, 0, 1, 3, 3],
            [4, 4, 4, 5, 5],
        ]
    )
    merged = merge_background(pred, gt, num_classes=3, background_class=2)
    assert merged.tolist() == [
        [0, 0, 6, 6, 6],
        [0, 0, 6, 6, 6],
        [6, 6, 6, 5, 5],
    ]
    counts = match_image(gt, merged, 3)
    assert counts.fp.sum() == 0 and counts.fn.sum() == 0


def test_background_merge_absent_class_keeps_nothing_and_void_is_skipped():
    gt = np.array([[2, 2, -1, 0]])
    pred = np.array([[1, 2, 0, 3]])
    merged = merge_background(pred, gt, num_classes=3, background_class=2)
    # class 0 is matched to cluster 3 and kept; clusters 1, 2 and 0 (over void) merge into id 4
    assert merged.tolist() == [[4, 4, 4, 3]]
