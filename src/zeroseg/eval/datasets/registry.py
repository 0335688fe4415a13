"""Dataset registry: names used by ``zeroseg evaluate --dataset`` and :func:`create_dataset`."""

from __future__ import annotations

import inspect
from typing import Any

from zeroseg.errors import ConfigError
from zeroseg.eval.datasets.base import SegmentationDataset

_DATASETS: dict[str, type[SegmentationDataset]] = {}


def register_dataset(cls: type[SegmentationDataset]) -> type[SegmentationDataset]:
    """Class decorator adding a dataset under ``cls.name``."""
    if cls.name in _DATASETS and _DATASETS[cls.name] is not cls:
        raise ConfigError(f"dataset name {cls.name!r} is already registered by {_DATASETS[cls.name].__name__}")
    _DATASETS[cls.name] = cls
    return cls


def _load_builtin() -> None:
    # Importing the modules registers their classes.
    from zeroseg.eval.datasets import (  # noqa: F401
        ade20k,
        bsds500,
        camvid,
        cityscapes,
        coco,
        folder,
        pascal,
    )


def list_datasets() -> list[str]:
    """Names of the registered datasets."""
    _load_builtin()
    return sorted(_DATASETS)


def get_dataset_class(name: str) -> type[SegmentationDataset]:
    """The dataset class registered as ``name``."""
    _load_builtin()
    try:
        return _DATASETS[name]
    except KeyError:
        raise ConfigError(f"`dataset` must be one of {', '.join(sorted(_DATASETS))}, got {name!r}") from None


def create_dataset(name: str, root: str, *, split: str | None = None, **options: Any) -> SegmentationDataset:
    """Open dataset ``name`` at ``root`` (its official layout), ``split`` defaulting to the papers' split.

    Args:
        name: a name from :func:`list_datasets`.
        root: the dataset folder.
        split: the split to evaluate; ``None`` for the default.
        **options: dataset-specific options (e.g. ``exact_reference`` for VOC and ADE20K, ``ignore_value`` for
            ``folder``).

    Raises:
        ConfigError: for an unknown name or option.
        DatasetError: if the folder is missing or not in the expected layout.
    """
    cls = get_dataset_class(name)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "root", "split"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"dataset {name!r} does not accept the option(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(sorted(accepted)) or 'none'}"
        )
    return cls(root, split=split, **options)
