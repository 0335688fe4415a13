"""Evaluation datasets in their official on-disk layouts (see :func:`create_dataset`)."""

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
