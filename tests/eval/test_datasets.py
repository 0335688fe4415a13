"""Each dataset loader on a tiny fixture in its real on-disk layout, and on the dev samples when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from zeroseg.errors import ConfigError, DatasetError
from zeroseg.eval.datasets import IGNORE, create_dataset, list_datasets
from zeroseg.eval.datasets.coco import curated_image_ids

from .fakes import write_png


def _jpg(path: Path, h: int = 6, w: int = 8) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 128, dtype=np.uint8)).save(path, format="JPEG")


def _label(path: Path, values: list[list[int]], mode: str | None = None) -> None:
    write_png(path, np.array(values, dtype=np.uint8), mode=mode)


def test_registry_lists_every_dataset():
    assert set(list_datasets()) >= {
        "coco-stuff-27", "coco-object", "cityscapes-27", "voc", "context", "ade20k", "bsds500", "camvid", "folder",
    }  # fmt: skip
    with pytest.raises(ConfigError, match="`dataset` must be one of"):
        create_dataset("nope", ".")
    with pytest.raises(ConfigError, match="does not accept"):
        create_dataset("camvid", ".", ignore_value=3)


def test_coco_stuff_27_val_layout_and_mapping(tmp_path):
    _jpg(tmp_path / "images" / "val2017" / "000000000139.jpg")
    # fine ids: 0 person -> 9, 1 bicycle -> 11, 91 banner -> 17 (textile), 255 -> ignore
    _label(tmp_path / "annotations" / "val2017" / "000000000139.png", [[0, 1], [91, 255]])
    ds = create_dataset("coco-stuff-27", str(tmp_path), split="val")
    assert len(ds) == 1 and ds.num_classes == 27
    labels = ds.load_labels(ds[0])[0]
    assert labels.tolist() == [[9, 11], [17, IGNORE]]
    assert ds.class_name(9) == "person" and ds.class_name(17) == "textile"
    assert ds.load_image(ds[0]).shape == (6, 8, 3)


def test_coco_curated_split_needs_every_listed_image(tmp_path, monkeypatch):
    ids = curated_image_ids()
    assert len(ids) == 2175 and len(set(ids)) == 2175 and ids[0] == "000000000139"
    ids = ids[:3]
    monkeypatch.setattr("zeroseg.eval.datasets.coco.curated_image_ids", lambda: ids)
    images, labels = tmp_path / "val2017", tmp_path / "stuffthingmaps_trainval2017" / "val2017"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for image_id in ids[:-1]:
        (images / f"{image_id}.jpg").touch()
        (labels / f"{image_id}.png").touch()
    with pytest.raises(DatasetError, match="1 of the 3 curated images are missing"):
        create_dataset("coco-stuff-27", str(tmp_path))
    (images / f"{ids[-1]}.jpg").touch()
    (labels / f"{ids[-1]}.png").touch()
    assert len(create_dataset("coco-object", str(tmp_path))) == 3


def test_coco_object_things_and_background(tmp_path):
    _jpg(tmp_path / "val2017" / "1.jpg")
    # 0 person -> 0; 12 stop sign -> 11; 89 hair drier -> 79 (last thing); 91 stuff -> bg; 255 -> bg
    _label(tmp_path / "stuffthingmaps_trainval2017" / "val2017" / "1.png", [[0, 12, 89], [91, 181, 255]])
    ds = create_dataset("coco-object", str(tmp_path), split="val")
    assert ds.num_classes == 81 and ds.background_class == 80
    assert ds.load_labels(ds[0])[0].tolist() == [[0, 11, 79], [80, 80, 80]]
    assert ds.class_name(79) == "toothbrush" and ds.class_name(80) == "background"


def test_cityscapes_27(tmp_path):
    _jpg(tmp_path / "x.jpg")
    image = tmp_path / "leftImg8bit" / "val" / "frankfurt" / "frankfurt_000000_000294_leftImg8bit.png"
    write_png(image, np.zeros((2, 3, 3), dtype=np.uint8))
    _label(tmp_path / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000294_gtFine_labelIds.png",
           [[0, 6, 7], [26, 33, 255]])  # fmt: skip
    ds = create_dataset("cityscapes-27", str(tmp_path))
    assert ds[0].id == "frankfurt_000000_000294"
    assert ds.load_labels(ds[0])[0].tolist() == [[IGNORE, IGNORE, 0], [19, 26, IGNORE]]
    assert ds.class_name(19) == "car"


def _voc(tmp_path: Path) -> None:
    base = tmp_path / "VOCdevkit" / "VOC2012"
    _jpg(base / "JPEGImages" / "2007_000033.jpg")
    _label(base / "SegmentationClass" / "2007_000033.png", [[0, 1, 20], [255, 15, 0]], mode="P")
    (base / "ImageSets" / "Segmentation").mkdir(parents=True)
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000033\n")


def test_voc_palette_labels_and_void_handling(tmp_path):
    _voc(tmp_path)
    ds = create_dataset("voc", str(tmp_path))
    assert ds.num_classes == 21 and ds.background_class == 20
    assert ds.load_labels(ds[0])[0].tolist() == [[20, 0, 19], [IGNORE, 14, 20]]
    exact = create_dataset("voc", str(tmp_path / "VOCdevkit"), exact_reference=True)
    assert exact.load_labels(exact[0])[0].tolist() == [[20, 0, 19], [20, 14, 20]]  # void scored as background
    with pytest.raises(DatasetError, match="train.txt"):
        create_dataset("voc", str(tmp_path), split="train")


def test_context_59_plus_background(tmp_path):
    base = tmp_path / "pascal_ctx_d2"
    _jpg(base / "images" / "val" / "2008_000002.jpg")
    _label(base / "annotations_ctx59" / "val" / "2008_000002.png", [[0, 58, 255]])
    ds = create_dataset("context", str(tmp_path))
    assert ds.num_classes == 60 and ds.background_class == 59
    assert ds.load_labels(ds[0])[0].tolist() == [[0, 58, 59]]
    assert ds.class_name(58) == "wood"


def test_ade20k_fixed_and_exact_reference(tmp_path):
    base = tmp_path / "ADEChallengeData2016"
    _jpg(base / "images" / "validation" / "ADE_val_00000001.jpg")
    _label(base / "annotations" / "validation" / "ADE_val_00000001.png", [[0, 1, 150]])
    ds = create_dataset("ade20k", str(tmp_path))
    assert ds.load_labels(ds[0])[0].tolist() == [[IGNORE, 0, 149]]
    assert ds.class_name(0) == "wall" and ds.class_name(149) == "flag"
    exact = create_dataset("ade20k", str(base), exact_reference=True)
    assert exact.load_labels(exact[0])[0].tolist() == [[0, 1, IGNORE]]
    assert exact.class_name(0) == "other"


def test_camvid_segnet_layout(tmp_path):
    write_png(tmp_path / "CamVid" / "test" / "0001TP_008550.png", np.zeros((2, 2, 3), dtype=np.uint8))
    _label(tmp_path / "CamVid" / "testannot" / "0001TP_008550.png", [[0, 10], [11, 3]])
    ds = create_dataset("camvid", str(tmp_path))
    assert ds.split == "test" and ds.num_classes == 11
    assert ds.load_labels(ds[0])[0].tolist() == [[0, 10], [IGNORE, 3]]


def test_folder_dataset_infers_classes_and_ignore(tmp_path):
    write_png(tmp_path / "images" / "a.png", np.zeros((2, 2, 3), dtype=np.uint8))
    _label(tmp_path / "labels" / "a.png", [[0, 4], [255, 2]])
    ds = create_dataset("folder", str(tmp_path))
    assert ds.num_classes == 5
    assert ds.load_labels(ds[0])[0].tolist() == [[0, 4], [IGNORE, 2]]
    named = create_dataset("folder", str(tmp_path), class_names=["a", "b", "c"], ignore_value=None)
    assert named.num_classes == 3
    assert named.load_labels(named[0])[0].tolist() == [[0, IGNORE], [IGNORE, 2]]
    assert create_dataset("folder", str(tmp_path), class_names="only").class_names == ("only",)


def test_missing_root_and_missing_labels_name_the_expected_files(tmp_path):
    with pytest.raises(DatasetError, match="does not exist.*leftImg8bit"):
        create_dataset("cityscapes-27", str(tmp_path / "absent"))
    with pytest.raises(DatasetError, match="stuffthingmaps_trainval2017"):
        create_dataset("coco-stuff-27", str(tmp_path))
    write_png(tmp_path / "images" / "a.png", np.zeros((2, 2, 3), dtype=np.uint8))
    (tmp_path / "labels").mkdir()
    with pytest.raises(DatasetError, match=r"1 of 1 images have no label file, e.g. .*labels/a.png"):
        create_dataset("folder", str(tmp_path))


def _dev_samples() -> Path | None:
    env = os.environ.get("ZEROSEG_DEV_SAMPLES")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "data" / "dev-samples")
    candidates.append(Path(__file__).resolve().parents[3] / "shared" / "dev-samples")
    return next((p for p in candidates if (p / "bsds500").is_dir() or (p / "camvid").is_dir()), None)


DEV = _dev_samples()
needs_dev = pytest.mark.skipif(DEV is None, reason="dev samples not present (set ZEROSEG_DEV_SAMPLES)")


@needs_dev
def test_bsds500_dev_samples():
    ds = create_dataset("bsds500", str(DEV / "bsds500"), split="train")
    assert len(ds) == 8
    sample = ds[0]
    image = ds.load_image(sample)
    annotations = ds.load_labels(sample)
    assert 4 <= len(annotations) <= 9
    for labels in annotations:
        assert labels.shape == image.shape[:2] and labels.shape in ((321, 481), (481, 321))
        assert labels.min() == 0 and labels.dtype == np.int64


@needs_dev
def test_camvid_dev_samples():
    ds = create_dataset("camvid", str(DEV / "camvid"), split="val")
    assert len(ds) == 8
    from PIL import Image

    labels = ds.load_labels(ds[0])[0]
    raw = np.asarray(Image.open(ds[0].label_paths[0]))
    assert labels.shape == (360, 480) == ds.load_image(ds[0]).shape[:2]
    assert ((labels == IGNORE) == (raw == 11)).all()  # void (11) is ignored, ids 0-10 kept as they are
    assert (labels[raw < 11] == raw[raw < 11]).all()
