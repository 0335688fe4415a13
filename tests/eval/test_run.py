"""Whole evaluation runs with a fake segmenter: exact scores, saved predictions, cache, resume, sweep."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from zeroseg.eval.cache import FeatureCache
from zeroseg.eval.datasets import create_dataset
from zeroseg.eval.matching import match_image
from zeroseg.eval.matching_scorer import evaluate, sweep
from zeroseg.eval.metrics import IoUAccumulator
from zeroseg.eval.report import write_report

from .fakes import FakeConfig, FakeSegmenter, quadrant_image, write_png


def test_perfect_segmenter_scores_one_and_saved_pngs_recompute_the_metrics(quadrant_folder, tmp_path):
    dataset = create_dataset("folder", str(quadrant_folder), class_names=["red", "green", "blue", "black"])
    preds = tmp_path / "preds"
    report = evaluate(FakeSegmenter(), dataset, save_predictions=preds)
    assert report.num_images == 5
    assert report.miou == pytest.approx(1.0)
    assert report.pixel_accuracy == pytest.approx(1.0)
    assert set(report.per_class_iou) == {"red", "green", "blue", "black"}
    # recompute from what was saved: prediction before matching, ground truth as scored (ignore = 255)
    acc = IoUAccumulator(4)
    for sample in dataset:
        pred = np.asarray(Image.open(preds / f"{sample.id}.png")).astype(int)
        gt = np.asarray(Image.open(preds / f"{sample.id}_gt.png")).astype(int)
        assert pred.shape == gt.shape == (32, 32)
        assert (gt == 255).sum() == 4
        acc.add(match_image(np.where(gt == 255, -1, gt), pred, 4))
    assert acc.miou == pytest.approx(report.miou)
    assert acc.pixel_accuracy == pytest.approx(report.pixel_accuracy)


def test_scores_match_a_hand_computation_when_the_segmenter_misses_a_colour(quadrant_folder):
    dataset = create_dataset("folder", str(quadrant_folder), num_classes=4)
    # tau above every colour value: each image becomes one single cluster
    report = evaluate(FakeSegmenter(config=FakeConfig(tau=2.0)), dataset)
    # Per image the single cluster is matched to one class; with 4 equal quadrants (ignore in the top-left
    # quadrant: 256 - 4 px) the best class is a full one (256 px). Image 5 has two classes of 512 px.
    acc = IoUAccumulator(4)
    for sample in dataset:
        gt = dataset.load_labels(sample)[0]
        acc.add(match_image(gt, np.zeros_like(gt), 4))
    assert report.miou == pytest.approx(acc.miou)
    assert report.pixel_accuracy == pytest.approx((3 * 256 + 256 + 512) / (5 * 1024 - 20))


def test_cache_hit_and_miss_on_changed_setting(quadrant_folder, tmp_path):
    dataset = create_dataset("folder", str(quadrant_folder))
    cache = FeatureCache(tmp_path / "cache")
    seg = FakeSegmenter()
    evaluate(seg, dataset, cache=cache)
    assert seg.calls[0] == 5
    evaluate(seg.with_config(tau=0.9), dataset, cache=cache)
    assert seg.calls[0] == 5  # clustering setting changed: captures reused
    other = FakeSegmenter(image_size=16, calls=seg.calls)
    evaluate(other, dataset, cache=cache)
    assert seg.calls[0] == 10  # capture setting changed: no stale reuse
    entries = list((tmp_path / "cache" / "captures").glob("*/*.npz"))
    assert len(entries) == 10
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_cache_ignores_entry_when_image_file_changed(quadrant_folder, tmp_path):
    dataset = create_dataset("folder", str(quadrant_folder))
    cache = FeatureCache(tmp_path / "cache")
    seg = FakeSegmenter()
    evaluate(seg, dataset, cache=cache)
    image, _ = quadrant_image((3, 3, 3, 3))
    write_png(quadrant_folder / "images" / "img0.png", image)
    evaluate(seg, dataset, cache=cache)
    assert seg.calls[0] == 6


class _Killed(Exception):
    pass


def test_resume_after_kill_recomputes_same_totals(quadrant_folder, tmp_path):
    dataset = create_dataset("folder", str(quadrant_folder))
    results = tmp_path / "runs"
    cache = FeatureCache(tmp_path / "cache")
    seg = FakeSegmenter(config=FakeConfig(tau=0.7))

    def kill_after_three(done, total, miou):
        if done == 3:
            raise _Killed

    with pytest.raises(_Killed):
        evaluate(seg, dataset, cache=cache, results_dir=results, progress=kill_after_three)
    assert seg.calls[0] == 3
    log = next(results.glob("*.jsonl"))
    assert len(log.read_text().splitlines()) == 3
    with log.open("a") as handle:  # a line cut short by the kill
        handle.write('{"id": "img3", "cou')
    resumed = evaluate(seg, dataset, cache=cache, results_dir=results)
    assert seg.calls[0] == 5  # only the two missing images were captured
    assert resumed.timing["images_resumed"] == 3
    again = evaluate(seg, dataset, cache=cache, results_dir=results, restart=True)
    assert again.timing["images_resumed"] == 0 and len(log.read_text().splitlines()) == 5
    fresh = evaluate(FakeSegmenter(config=FakeConfig(tau=0.7)), dataset)
    assert resumed.num_images == fresh.num_images == 5
    assert resumed.miou == pytest.approx(fresh.miou)
    assert resumed.pixel_accuracy == pytest.approx(fresh.pixel_accuracy)


def test_sweep_reuses_captures(quadrant_folder, tmp_path):
    dataset = create_dataset("folder", str(quadrant_folder))
    seg = FakeSegmenter()
    reports = sweep(seg, dataset, {"tau": [0.5, 2.0]}, cache=FeatureCache(tmp_path / "c"))
    assert seg.calls[0] == 5
    assert [r.settings["tau"] for r in reports] == [0.5, 2.0]
    assert reports[0].miou == pytest.approx(1.0) and reports[1].miou < 0.5


def test_background_merge_in_a_run(tmp_path):
    # VOC layout: quadrant classes 1 (aeroplane) + background; the fake splits background into 3 clusters
    base = tmp_path / "VOCdevkit" / "VOC2012"
    image, labels = quadrant_image((0, 1, 2, 3))
    raw = np.where(labels == 0, 1, 0).astype(np.uint8)  # red quadrant = aeroplane, rest background
    write_png(base / "JPEGImages" / "a.png", image)
    (base / "JPEGImages" / "a.png").rename(base / "JPEGImages" / "a.jpg")
    write_png(base / "SegmentationClass" / "a.png", raw, mode="P")
    (base / "ImageSets" / "Segmentation").mkdir(parents=True)
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("a\n")
    dataset = create_dataset("voc", str(tmp_path))
    report = evaluate(FakeSegmenter(), dataset, protocol="diffseg", save_predictions=tmp_path / "p")
    assert report.miou == pytest.approx(1.0)
    pred = np.asarray(Image.open(tmp_path / "p" / "a.png"))
    # red kept, green/blue/black merged into one background segment; saved with canonical ids (top-left first)
    assert sorted(np.unique(pred)) == [0, 1] and (pred == pred[0, 0]).mean() == pytest.approx(0.25, abs=0.01)
    without = evaluate(FakeSegmenter(), dataset, protocol="diffseg", matching="per-image", limit=1)
    assert without.miou == pytest.approx(1.0)


def test_dataset_level_matching(quadrant_folder):
    dataset = create_dataset("folder", str(quadrant_folder))
    report = evaluate(FakeSegmenter(), dataset, matching="dataset")
    # the fake's cluster ids equal the colour classes, so one global assignment is perfect too
    assert report.miou == pytest.approx(1.0)


def test_bsds_style_mean_and_best_over_annotators(tmp_path):
    from scipy.io import savemat

    image, labels = quadrant_image((0, 1, 2, 3))
    base = tmp_path / "images" / "test"
    write_png(base / "x.png", image)
    (base / "x.png").rename(base / "x.jpg")
    good = labels.astype(np.uint16) + 1  # annotator 1: the four quadrants
    coarse = np.where(labels < 2, 1, 2).astype(np.uint16)  # annotator 2: top / bottom halves
    cell = np.empty((1, 2), dtype=object)
    for i, seg in enumerate((good, coarse)):
        cell[0, i] = {"Segmentation": seg, "Boundaries": np.zeros_like(seg, dtype=np.uint8)}
    (tmp_path / "groundTruth" / "test").mkdir(parents=True)
    savemat(tmp_path / "groundTruth" / "test" / "x.mat", {"groundTruth": cell})
    dataset = create_dataset("bsds500", str(tmp_path))
    # JPEG compression blurs colours slightly; the quadrant interiors stay well above tau
    report = evaluate(FakeSegmenter(), dataset)
    best, mean = report.annotators["best"], report.annotators["mean"]
    assert best["miou"] == pytest.approx(1.0)
    # annotator 2 (2 regions) vs 4 clusters: each half matched to one quadrant: IoU 1/2 each
    assert mean["miou"] == pytest.approx((1.0 + 0.5) / 2)
    assert mean["pixel_accuracy"] == pytest.approx((1.0 + 0.5) / 2)
    assert report.per_class_iou == {}


def test_report_files(quadrant_folder, tmp_path):
    dataset = create_dataset("folder", str(quadrant_folder))
    report = evaluate(FakeSegmenter(), dataset, preset=None)
    paths = write_report(report, tmp_path / "out" / "r.json")
    data = json.loads(paths[0].read_text())
    for key in ("miou", "pixel_accuracy", "per_class_iou", "num_images", "settings", "version", "capture"):
        assert key in data
    assert 0.0 <= data["miou"] <= 1.0
    write_report(report, tmp_path / "out" / "r.json")
    rows = paths[1].read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("created,dataset")
    assert "| mIoU | 100.00 |" in paths[2].read_text()


def test_resumed_run_with_a_new_predictions_folder_writes_every_prediction(quadrant_folder, tmp_path):
    dataset = create_dataset("folder", str(quadrant_folder))
    results, cache = tmp_path / "runs", FeatureCache(tmp_path / "cache")
    seg = FakeSegmenter()
    first = evaluate(seg, dataset, cache=cache, results_dir=results)
    assert first.resumed is None and first.resume_line() is None
    seen = []
    preds = tmp_path / "new-folder"
    second = evaluate(seg, dataset, cache=cache, results_dir=results, save_predictions=preds,
                      progress=lambda done, total, miou: seen.append((done, total)))  # fmt: skip
    assert sorted(p.name for p in preds.glob("img?.png")) == [f"img{i}.png" for i in range(5)]
    assert second.timing["images_resumed"] == 0 and second.timing["images_from_cache"] == 5
    assert seg.calls[0] == 5  # recomputed from the capture cache, no new backbone pass
    assert second.miou == pytest.approx(first.miou) and seen[-1] == (5, 5)
    (preds / "img2.png").unlink()
    seen.clear()
    third = evaluate(seg, dataset, cache=cache, results_dir=results, save_predictions=preds,
                     progress=lambda done, total, miou: seen.append((done, total)))  # fmt: skip
    assert (preds / "img2.png").is_file()
    assert third.timing["images_resumed"] == 4 and third.timing["images_from_cache"] == 1
    assert seen == [(4, 5), (5, 5)]  # the resumed images are counted before the first new one
    assert third.resumed == {"log": str(results / f"{third.run_id}.jsonl"), "images": 4, "of": 5}
    assert third.resume_line().startswith(f"Resumed run {third.run_id} from {results}")
    assert "reused 4 of 5 images" in third.resume_line()
    assert third.miou == pytest.approx(first.miou)


def test_self_refining_method_is_refined_after_the_background_merge(tmp_path):
    from zeroseg.eval.loop import RunTiming, score_capture
    from zeroseg.eval.matching_scorer import MatchingScorer
    from zeroseg.eval.protocols import get_protocol
    from zeroseg.refine.pamr import refine_labels
    from zeroseg.refine.stage import Refinement

    @dataclasses.dataclass(frozen=True)
    class Refining(FakeConfig):
        pamr: bool = True
        pamr_iters: int = 3
        pamr_dilations: tuple[int, ...] = (1, 2)

    base = tmp_path / "VOCdevkit" / "VOC2012"
    image, labels = quadrant_image((0, 1, 2, 3))
    write_png(base / "JPEGImages" / "a.png", image)
    (base / "JPEGImages" / "a.png").rename(base / "JPEGImages" / "a.jpg")
    write_png(base / "SegmentationClass" / "a.png", np.where(labels == 0, 1, 0).astype(np.uint8), mode="P")
    (base / "ImageSets" / "Segmentation").mkdir(parents=True)
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("a\n")
    dataset = create_dataset("voc", str(tmp_path))
    seg = FakeSegmenter(method="diffcut", config=Refining(), image_size=32)  # diffcut refines itself (registry)
    scorer = MatchingScorer(seg, dataset, get_protocol("diffseg"))
    assert scorer.refinement == Refinement(iterations=3, dilations=(1, 2))  # the method's own settings
    assert MatchingScorer(seg.with_config(pamr=False), dataset, get_protocol("diffseg")).refinement is None
    sample = next(iter(dataset))
    prepared, small = scorer.prepare(dataset.load_image(sample))
    capture = seg.capture(prepared[None])[0]
    unrefined, gts = scorer.segment(sample, capture)
    assert sorted(np.unique(unrefined.numpy())) == [0, 4]  # background clusters merged first
    scored = score_capture(scorer, sample, capture, small, RunTiming())
    expected = refine_labels(unrefined, small, num_iter=3, dilations=(1, 2))
    np.testing.assert_array_equal(scored.prediction, expected.numpy())
