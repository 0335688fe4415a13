"""Evaluation that reproduces the DiffSeg and DiffCut tables: datasets, matching, metrics, cache, runs.

Names are imported lazily so that the command line starts without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "evaluate": "zeroseg.eval.matching_scorer",
    "sweep": "zeroseg.eval.matching_scorer",
    "run": "zeroseg.eval.loop",
    "Scorer": "zeroseg.eval.loop",
    "evaluate_dataset": "zeroseg.eval.api",
    "sweep_dataset": "zeroseg.eval.api",
    "EvaluationReport": "zeroseg.eval.report",
    "write_report": "zeroseg.eval.report",
    "FeatureCache": "zeroseg.eval.cache",
    "Baseline": "zeroseg.eval.baselines",
    "PRESETS": "zeroseg.eval.protocols",
    "PROTOCOLS": "zeroseg.eval.protocols",
    "create_dataset": "zeroseg.eval.datasets",
    "list_datasets": "zeroseg.eval.datasets",
    "match_image": "zeroseg.eval.matching",
    "merge_background": "zeroseg.eval.background",
    "IoUAccumulator": "zeroseg.eval.metrics",
    "image_iou": "zeroseg.eval.metrics",
    "evaluate_open_vocabulary": "zeroseg.eval.open_vocabulary",
    "OpenVocabularyOptions": "zeroseg.eval.open_vocabulary",
    "EvaluationPlan": "zeroseg.eval.plan",
    "make_plan": "zeroseg.eval.plan",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zeroseg.eval' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
