"""Evaluation datasets in their official on-disk layouts (see :func:`create_dataset`).

Expected layouts (``<root>`` is what ``--root`` names; labels are mapped as the DiffSeg/DiffCut loaders do):

- ``coco-stuff-27`` / ``coco-object``: ``<root>/val2017/*.jpg`` (or ``images/val2017``) and
  ``<root>/stuffthingmaps_trainval2017/val2017/*.png`` (or ``annotations/val2017``, ``annotation_val2017``);
  split ``curated`` (2175 images, default) or ``val``. 27 coarse classes / 80 things + background.
- ``cityscapes-27``: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` + ``gtFine/<split>/<city>/*_gtFine_labelIds.png``.
- ``voc``: ``VOCdevkit/VOC2012/{JPEGImages, SegmentationClass, ImageSets/Segmentation/<split>.txt}``; palette
  PNGs (index = class, 255 void); background is class 20.
- ``context``: FC-CLIP's ``prepare_pascal_ctx_sem_seg.py`` output ``pascal_ctx_d2/images/<split>/*.jpg`` and
  ``pascal_ctx_d2/annotations_ctx59/<split>/*.png`` (0-58, 255 background); background is class 59.
- ``ade20k``: ``ADEChallengeData2016/{images,annotations}/{training,validation}``.
- ``bsds500``: ``images/<split>/*.jpg`` + ``groundTruth/<split>/*.mat`` (or ``BSR/BSDS500/data/...``); several
  human segmentations per image.
- ``camvid``: SegNet layout ``<split>/*.png`` + ``<split>annot/*.png`` (0-10, 11 void).
- ``folder``: ``images/*`` + ``labels/<stem>.png`` (class ids; ``ignore_value``, optional ``class_names``).
"""

from zeroseg.eval.datasets.base import IGNORE, Sample, SegmentationDataset
from zeroseg.eval.datasets.registry import create_dataset, get_dataset_class, list_datasets, register_dataset

__all__ = [
    "IGNORE",
    "Sample",
    "SegmentationDataset",
    "create_dataset",
    "get_dataset_class",
    "list_datasets",
    "register_dataset",
]
