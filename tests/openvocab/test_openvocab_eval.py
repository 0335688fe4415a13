"""Open-vocabulary evaluation (DiffCut Tab. 4): class alignment, targets, metric, presets, command end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from zeroseg.cli.app import app
from zeroseg.errors import ConfigError
from zeroseg.eval.api import evaluate_dataset, make_plan
from zeroseg.eval.datasets import IGNORE
from zeroseg.eval.datasets.registry import get_dataset_class
from zeroseg.eval.open_vocabulary import (
    OpenVocabularyOptions,
    prepare_target,
    score_image,
    summarize,
    to_vocabulary_ids,
    vocabulary_lookup,
    vocabulary_name,
)
from zeroseg.eval.protocols import PRESETS
from zeroseg.openvocab.protocol import prepare_open_vocabulary_target
from zeroseg.openvocab.vocabularies import load_vocabulary

from .conftest import TINY_MODEL_NAME

runner = CliRunner()
VOC_IDS = ("2007_000001", "2007_000002")


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    (image.convert("P") if mode == "P" else image).save(path)


def _dataset_stub(name: str):
    """A dataset object with the class's class attributes, without files on disk."""
    cls = get_dataset_class(name)
    return cls.__new__(cls)


def _squash(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


@pytest.mark.parametrize(("dataset", "num_classes"), [("voc", 21), ("context", 60), ("coco-object", 81)])
def test_dataset_classes_line_up_with_the_vocabulary(dataset, num_classes):
    stub = _dataset_stub(dataset)
    names = load_vocabulary(vocabulary_name(dataset)).names
    table = vocabulary_lookup(stub, names)
    assert len(names) == num_classes and names[0] == "background"
    assert table[stub.background_class] == 0 and stub.background_class == num_classes - 1
    assert sorted(table.tolist()) == list(range(num_classes))  # a permutation
    for dataset_id, vocabulary_id in enumerate(table):
        assert _squash(stub.class_name(dataset_id)) == _squash(names[vocabulary_id])
    assert names[table[0]] == {"voc": "aeroplane", "context": "aeroplane", "coco-object": "person"}[dataset]


def test_misaligned_vocabulary_is_refused():
    stub = _dataset_stub("voc")
    names = load_vocabulary("voc").names
    swapped = [names[0], names[2], names[1], *names[3:]]
    with pytest.raises(ConfigError, match="disagree"):
        vocabulary_lookup(stub, swapped)
    with pytest.raises(ConfigError, match="21 classes"):
        vocabulary_lookup(stub, names[:-1])


def test_datasets_without_a_vocabulary_are_refused():
    with pytest.raises(ConfigError, match="no open-vocabulary class set"):
        vocabulary_name("coco-stuff-27")


def test_target_maps_background_to_zero_and_matches_the_official_shift():
    stub = _dataset_stub("voc")
    table = vocabulary_lookup(stub, load_vocabulary("voc").names)
    raw = np.array([[0, 15, 15], [20, 0, 1], [9, 9, 255]])  # raw VOC ids; 255 void
    dataset_ids = np.where(raw == 0, 20, np.where(raw == 255, IGNORE, raw - 1))  # PascalVOC.convert_label
    mapped = to_vocabulary_ids(dataset_ids, table)
    np.testing.assert_array_equal(mapped, np.where(raw == 255, IGNORE, raw))  # VOC vocabulary id = raw id
    # official convention: foreground 0..19, background -1, then `label + 1` after a nearest-exact resize
    official = np.where(raw == 0, -1, raw - 1)[:2, :2]
    ours = prepare_target(dataset_ids[:2, :2], table, crop_margin=0, eval_size=8)
    np.testing.assert_array_equal(ours, prepare_open_vocabulary_target(official, size=8).numpy())
    # the DiffCut crop (side min(H, W) - 1) keeps the centre square before the resize
    cropped = prepare_target(dataset_ids, table, crop_margin=1, eval_size=2)
    np.testing.assert_array_equal(cropped, [[0, 15], [20, 0]])


def test_score_image_leaves_out_classes_absent_from_both_maps():
    gt = np.array([[0, 0], [1, 2]])
    pred = np.array([[0, 1], [1, 1]])
    record = score_image(gt, pred, 21)
    # class 0: 1/2; class 1: 1/3 (one GT pixel, three predicted); class 2: 0/1; classes 3-20 absent
    assert record["iou"] == pytest.approx((1 / 2 + 1 / 3 + 0) / 3)
    assert record["intersection"][:3] == [1, 1, 0] and record["union"][:3] == [2, 3, 1]
    assert sum(record["union"][3:]) == 0
    assert (record["correct"], record["valid"]) == (2, 4)
    ignored = score_image(np.array([[0, IGNORE]]), np.array([[0, 5]]), 21)
    assert ignored["iou"] == 1.0 and ignored["valid"] == 1


def test_summary_averages_images_not_pixels():
    names = [f"c{i}" for i in range(3)]
    first = score_image(np.zeros((4, 4), int), np.zeros((4, 4), int), 3)  # 1.0
    second_gt = np.array([[1, 2]])
    second = score_image(second_gt, np.array([[1, 1]]), 3)  # class 1: 1/2, class 2: 0 -> 0.25
    summary = summarize([first, second], names)
    assert summary["miou"] == pytest.approx((1.0 + 0.25) / 2)
    assert summary["per_class_iou"] == {"c0": 1.0, "c1": pytest.approx(0.5), "c2": 0.0}
    assert summary["pixel_accuracy"] == pytest.approx(17 / 18) and summary["num_images"] == 2


def test_forced_pamr_refines_upsampled_segments_of_methods_without_their_own():
    import torch

    from zeroseg.eval.loop import RunTiming, Scored, score_capture
    from zeroseg.eval.open_vocabulary import NamingScorer, segment_at_eval_size
    from zeroseg.eval.protocols import OPEN_VOCABULARY_REFINEMENT
    from zeroseg.refine.pamr import refine_labels

    class Blocky:  # a segmenter that does not refine itself (as DiffSeg)
        method = "diffseg"
        image_size = 8
        config = object()

        def segment_capture(self, capture, *, output_size, image=None):
            labels = torch.zeros(output_size, dtype=torch.long)
            labels[:, output_size[1] // 2 - 1 :] = 1  # the boundary one column left of the image's edge
            return labels

    image = torch.zeros(3, 16, 16)
    image[:, :, 8:] = 1.0
    plain = segment_at_eval_size(Blocky(), {}, mask_side=8, eval_size=16)
    assert plain.shape == (16, 16) and plain[0].tolist() == [0] * 6 + [1] * 10

    class Namer:
        class_names = load_vocabulary("voc").names
        exact_reference = False

    for pamr, expected_refinement in ((None, None), (True, OPEN_VOCABULARY_REFINEMENT)):
        scorer = NamingScorer(Blocky(), _dataset_stub("voc"), Namer(), OpenVocabularyOptions(eval_size=32, pamr=pamr))
        assert scorer.refinement == expected_refinement
    scorer.segment = lambda sample, capture: (segment_at_eval_size(Blocky(), capture, mask_side=8, eval_size=16), None)
    scorer.score = lambda labels, image, targets, timing: Scored({}, labels.numpy(), [])
    refined = torch.from_numpy(score_capture(scorer, None, {}, image, RunTiming()).prediction)
    expected = refine_labels(plain, image, num_iter=15, dilations=(1, 2, 4, 8, 12, 24, 32, 64))
    assert torch.equal(refined, expected)
    assert refined[0].tolist() == [0] * 8 + [1] * 8  # the boundary moved onto the image's edge


def test_presets_run_the_official_open_vocabulary_settings():
    for dataset in ("voc", "context", "coco-object"):
        plan = make_plan(dataset=None, root=".", preset=f"diffcut-{dataset}-openvocab")
        assert plan.protocol == "open-vocabulary" and plan.method == "diffcut"
        assert plan.open_vocabulary == OpenVocabularyOptions(exact_reference=True)
        assert plan.settings["pamr"] is True and plan.settings["pamr_iters"] == 15
        assert tuple(plan.settings["pamr_dilations"]) == (1, 2, 4, 8, 12, 24, 32, 64)
        assert plan.settings["exact_reference"] is True and plan.dataset == dataset
    assert PRESETS["diffcut-voc-openvocab"].dataset_options == {"exact_reference": True}  # void as background
    assert OpenVocabularyOptions().clip_side("coco-object") == 2048
    assert OpenVocabularyOptions(eval_size=128).clip_side("coco-object") == 256
    assert OpenVocabularyOptions(eval_size=128).clip_side("voc") == 128


def test_plan_errors_name_the_fix():
    with pytest.raises(ConfigError, match="unsupervised protocol row"):
        make_plan(dataset=None, root=".", preset="diffcut-voc", open_vocabulary=True)
    with pytest.raises(ConfigError, match="add `open_vocabulary=True`"):
        make_plan(dataset="voc", root=".", method="diffcut", clip_model="x")
    with pytest.raises(ConfigError, match="baseline"):
        make_plan(dataset="voc", root=".", open_vocabulary=True, baseline="kmeans-c")
    plan = make_plan(dataset="voc", root=".", method="diffseg", open_vocabulary=True, open_vocabulary_pamr=True)
    assert plan.open_vocabulary.pamr is True and "pamr" not in plan.settings


def _voc_root(tmp_path: Path) -> Path:
    """Two VOC images (48 x 40) in the official layout: a person (15) and a cat (8) on background, a void rim."""
    base = tmp_path / "voc" / "VOCdevkit" / "VOC2012"
    rng = np.random.default_rng(0)
    for index, (image_id, cls) in enumerate(zip(VOC_IDS, (15, 8), strict=True)):
        image = np.zeros((40, 48, 3), np.uint8)
        image[:] = (30, 120, 40)
        labels = np.zeros((40, 48), np.uint8)
        labels[8:30, 10 + index * 10 : 34 + index * 10] = cls
        image[labels == cls] = (200, 60, 50) if cls == 15 else (60, 60, 220)
        labels[7, 10:34] = 255
        image = np.clip(image.astype(int) + rng.integers(-10, 10, image.shape), 0, 255).astype(np.uint8)
        (base / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(base / "JPEGImages" / f"{image_id}.jpg", quality=95)
        write_png(base / "SegmentationClass" / f"{image_id}.png", labels, mode="P")
    (base / "ImageSets" / "Segmentation").mkdir(parents=True)
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(VOC_IDS) + "\n")
    return tmp_path / "voc"


def _independent_image_iou(gt: np.ndarray, pred: np.ndarray) -> float:
    """Per-image IoU written from the definition: classes in the GT (ignore 255 skipped) or the prediction."""
    valid = gt != 255
    ious = []
    for cls in set(gt[valid].tolist()) | set(pred[valid].tolist()):
        g, p = (gt == cls) & valid, (pred == cls) & valid
        ious.append((g & p).sum() / (g | p).sum())
    return float(np.mean(ious))


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ZEROSEG_CACHE", str(tmp_path / "zeroseg-cache"))
    return tmp_path / "cache"


def _args(root: Path, model: Path, checkpoint: Path, cache: Path, *extra: str) -> list[str]:
    return ["evaluate", "--dataset", "voc", "--root", str(root), "--open-vocabulary", "--model", str(model),
            "--clip-model", TINY_MODEL_NAME, "--clip-weights", str(checkpoint), "--eval-size", "128",
            "--device", "cpu", "--cache", str(cache), "--dataset-option", "exact_reference=true", *extra]  # fmt: skip


def test_command_end_to_end_matches_a_recomputation_from_the_saved_pngs(
    tiny_sd_path, tiny_checkpoint, tmp_path, private_cache
):
    root = _voc_root(tmp_path)
    out, preds = tmp_path / "report.json", tmp_path / "preds"
    extra = ["--method", "diffcut", "--set", "image_size=128", "--set", "pamr_iters=2", "--set", "pamr_dilations=1,2",
             "--clip-exact-reference"]  # fmt: skip
    args = _args(root, tiny_sd_path, tiny_checkpoint, private_cache, *extra)
    result = runner.invoke(app, [*args, "--output", str(out), "--save-predictions", str(preds)])
    assert result.exit_code == 0, result.output
    assert "open-vocabulary" in result.output
    report = json.loads(out.read_text())
    assert report["protocol"] == "open-vocabulary" and report["num_images"] == 2 and report["method"] == "diffcut"
    ov = report["open_vocabulary"]
    assert ov["vocabulary"] == "voc" and ov["num_classes"] == 21 and ov["exact_reference"] is True
    assert (ov["eval_size"], ov["clip_image_size"], ov["crop_margin"], ov["mask_size"]) == (128, 128, 1, 128)
    assert ov["pamr"] == {"enabled": True, "by": "method setting", "iterations": 2, "dilations": [1, 2]}
    assert report["settings"]["pamr_iters"] == 2 and report["timing"]["images_captured"] == 2
    scores = []
    for image_id, cls in zip(VOC_IDS, (15, 8), strict=True):
        pred = np.asarray(Image.open(preds / f"{image_id}.png")).astype(int)
        gt = np.asarray(Image.open(preds / f"{image_id}_gt.png")).astype(int)
        assert pred.shape == gt.shape == (128, 128)
        assert set(np.unique(gt)) == {0, cls}  # background 0, VOC id = vocabulary id; void scored as background
        assert pred.max() < 21
        scores.append(_independent_image_iou(gt, pred))
    assert report["miou"] == pytest.approx(np.mean(scores))
    assert report["per_class_iou"]["background"] is not None and report["per_class_iou"]["bus"] is None


def test_python_api_with_diffseg_upsamples_segments_and_reuses_the_cache(tiny_sd_path, tiny_clip, tmp_path):
    from zeroseg.openvocab import SegmentNamer

    root, preds = _voc_root(tmp_path), tmp_path / "preds"
    namer = SegmentNamer(vocabulary="voc", clip=tiny_clip)  # an already loaded CLIP, reused by both runs
    options = {
        "method": "diffseg", "settings": {"image_size": 64, "anchors": 4}, "model": str(tiny_sd_path),
        "open_vocabulary": True, "eval_size": 128, "namer": namer, "cache_dir": str(tmp_path / "cache"), "limit": 1,
    }  # fmt: skip
    report = evaluate_dataset("voc", root, save_predictions=preds, **options)
    assert report.protocol == "open-vocabulary" and report.num_images == 1
    ov = report.open_vocabulary
    assert (ov["crop_margin"], ov["mask_size"], ov["eval_size"], ov["clip_image_size"]) == (0, 64, 128, 128)
    assert ov["pamr"]["enabled"] is False and ov["exact_reference"] is False
    pred = np.asarray(Image.open(preds / f"{VOC_IDS[0]}.png")).astype(int)
    gt = np.asarray(Image.open(preds / f"{VOC_IDS[0]}_gt.png")).astype(int)
    assert pred.shape == gt.shape == (128, 128)
    # segments at 64, nearest-exact 2x upsampling: every 2 x 2 block holds one class
    np.testing.assert_array_equal(pred, np.repeat(np.repeat(pred[::2, ::2], 2, axis=0), 2, axis=1))
    assert report.miou == pytest.approx(_independent_image_iou(gt, pred))
    again = evaluate_dataset("voc", root, resume=False, **options)
    assert again.timing["images_from_cache"] == 1 and again.timing["images_captured"] == 0
    assert again.miou == pytest.approx(report.miou)
    with pytest.raises(ConfigError, match="exact_reference"):
        evaluate_dataset("voc", root, clip_exact_reference=True, **options)


def test_command_errors_are_one_line(tiny_sd_path, tmp_path, private_cache, monkeypatch):
    root = _voc_root(tmp_path)
    folder = tmp_path / "folder"
    write_png(folder / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
    write_png(folder / "labels" / "a.png", np.zeros((8, 8), np.uint8))
    result = runner.invoke(app, ["evaluate", "--dataset", "folder", "--root", str(folder), "--open-vocabulary"])
    assert result.exit_code == 1 and "no open-vocabulary class set" in result.output
    result = runner.invoke(app, ["evaluate", "--dataset", "voc", "--root", str(root), "--clip-model", "x"])
    assert result.exit_code == 1 and "open_vocabulary=True" in result.output
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if the clip extra were not installed
    args = ["evaluate", "--dataset", "voc", "--root", str(root), "--open-vocabulary", "--model", str(tiny_sd_path),
            "--device", "cpu", "--cache", str(private_cache)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    assert "pip install 'zeroseg[clip]'" in " ".join(result.output.split())
