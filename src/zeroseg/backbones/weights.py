"""Which weight files of a diffusers model to load or download: the variant per component and nothing else.

A component folder may hold its weights several times (``.safetensors`` and ``.bin``, full and ``fp16``
variants, Flax or ONNX exports). Only one set is needed: safetensors over pickles, and the ``fp16`` variant
when the UNet runs in float16 anyway (CUDA's default), which halves the download; full weights where a
component has no such variant. An explicit variant always wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch

from zeroseg.errors import WeightsNotFoundError

AUTO_VARIANT = "fp16"
WEIGHT_FORMATS = (".safetensors", ".bin")
# Files never needed for PyTorch inference (other frameworks' exports, original checkpoints).
FOREIGN_SUFFIXES = (".msgpack", ".onnx", ".onnx_data", ".pb", ".ckpt", ".h5", ".xml", ".mlmodel")
# name[.variant][-00001-of-00002].safetensors|bin, or the shard index name.safetensors.index[.variant].json
_WEIGHT = re.compile(r"^[^.]+(?:\.(?P<variant>[^.-]+))?(?:-\d{5}-of-\d{5})?(?P<format>\.safetensors|\.bin)$")
_INDEX = re.compile(r"^[^.]+(?P<format>\.safetensors|\.bin)\.index(?:\.(?P<variant>[^.]+))?\.json$")


def weight_file(name: str) -> tuple[str, str | None] | None:
    """``(format, variant)`` of a weight file or shard index name, ``None`` for any other file."""
    match = _WEIGHT.match(name) or _INDEX.match(name)
    return (match["format"], match["variant"]) if match else None


def component_weights(files: Iterable[str], component: str) -> dict[tuple[str, str | None], list[str]]:
    """The weight files of one component folder grouped by ``(format, variant)``."""
    groups: dict[tuple[str, str | None], list[str]] = {}
    for path in files:
        folder, _, name = path.rpartition("/")
        kind = weight_file(name) if folder == component else None
        if kind is not None:
            groups.setdefault(kind, []).append(path)
    return groups


def wants_auto_variant(dtype: torch.dtype) -> bool:
    """Whether weights are cast to float16 anyway, so the ``fp16`` variant loses nothing."""
    return dtype == torch.float16


def choose_variants(
    files: Iterable[str], components: Iterable[str], *, dtype: torch.dtype, variant: str | None, model: str
) -> dict[str, str | None]:
    """The weight variant to load per component (``None`` = the full weights).

    Args:
        files: every file of the model, as paths relative to its root (``unet/config.json``).
        components: the sub-folders the family loads.
        dtype: the precision the model will run in; float16 picks the ``fp16`` variant where there is one.
        variant: an explicit variant, used for every component that has weights (an error where one lacks it).
        model: the model as the user named it, for error messages.

    A component that has only variant weights uses them whatever ``dtype`` is; one without weights files
    (tokenizer, scheduler) is left out.

    Raises:
        WeightsNotFoundError: ``variant`` was asked for and a component has no weights of that variant.
    """
    files = list(files)
    chosen: dict[str, str | None] = {}
    for component in components:
        variants = {kind[1] for kind in component_weights(files, component)}
        if not variants:
            continue
        if variant is not None:
            if variant not in variants:
                raise WeightsNotFoundError(
                    f"model `{model}`: `variant` {variant!r} has no {component} weights "
                    f"(available: {', '.join(sorted(v or 'full' for v in variants))})"
                )
            chosen[component] = variant
        elif None not in variants or (wants_auto_variant(dtype) and AUTO_VARIANT in variants):
            chosen[component] = AUTO_VARIANT if AUTO_VARIANT in variants else sorted(variants)[0]
        else:
            chosen[component] = None
    return chosen


def needed_files(files: Iterable[str], components: Iterable[str], variants: dict[str, str | None]) -> list[str]:
    """The files to download: ``model_index.json``, each component's configs and its one chosen weight set."""
    files = list(files)
    needed = [path for path in files if path == "model_index.json"]
    for component in components:
        for path in files:
            folder, _, name = path.rpartition("/")
            if folder == component and weight_file(name) is None and not name.endswith(FOREIGN_SUFFIXES):
                needed.append(path)
        if component in variants:
            groups = component_weights(files, component)
            formats = [fmt for fmt in WEIGHT_FORMATS if (fmt, variants[component]) in groups]
            needed += groups[(formats[0], variants[component])]
    return needed
