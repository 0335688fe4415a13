"""The registry of backbone families, keyed by name, and explicit family detection from a model's configs.

Adding a family is one module defining a :class:`BackboneFamily` subclass (with its tiny test model) and one
:func:`register_family` line below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zeroseg.backbones.families.base import BackboneFamily, Conditioning, Default, DenoiserLayer, LoadedParts
from zeroseg.backbones.families.flux import Flux
from zeroseg.backbones.families.pixart import PixArt
from zeroseg.backbones.families.sd import StableDiffusion
from zeroseg.backbones.families.sd3 import StableDiffusion3
from zeroseg.backbones.families.sdxl import StableDiffusionXL
from zeroseg.errors import ConfigError, WeightsNotFoundError

FAMILIES: dict[str, BackboneFamily] = {}


def register_family(family: BackboneFamily) -> BackboneFamily:
    """Add a family to the registry under ``family.name`` (a second family of the same name is an error)."""
    if family.name in FAMILIES:
        raise ValueError(f"backbone family {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


def denoiser_folders() -> tuple[str, ...]:
    """Where the registered families keep their denoiser's config (``unet``, ``transformer``), each once."""
    return tuple(dict.fromkeys(family.denoiser_folder for family in FAMILIES.values()))


def family_names() -> tuple[str, ...]:
    """The registered family names, in registration order."""
    return tuple(FAMILIES)


def get_family(name: str) -> BackboneFamily:
    """The registered family called ``name``."""
    if name not in FAMILIES:
        raise ConfigError(f"`family` must be one of {', '.join(FAMILIES)} (got {name!r})")
    return FAMILIES[name]


def detect_family(model_index: dict[str, Any], denoiser_config: dict[str, Any], *, model: str) -> BackboneFamily:
    """The one registered family that recognises these configs.

    Raises:
        WeightsNotFoundError: no family (or more than one) recognises the model; the message names it.
    """
    matches = [family for family in FAMILIES.values() if family.recognises(model_index, denoiser_config)]
    if len(matches) == 1:
        return matches[0]
    pipeline = model_index.get("_class_name", "no pipeline class")
    if not matches:
        raise WeightsNotFoundError(
            f"model `{model}` ({pipeline}): not a model family zeroseg knows (known: {', '.join(FAMILIES)}); "
            f"it needs a diffusers model_index.json and the unet/ or transformer/ config.json of one of them"
        )
    names = ", ".join(family.name for family in matches)
    raise WeightsNotFoundError(f"model `{model}` ({pipeline}): recognised by several families ({names})")


def read_model_configs(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``model_index.json`` and the denoiser's ``config.json`` of a diffusers folder (``{}`` where missing).

    A folder without ``model_index.json`` (components saved one by one) gets one listing its sub-folders.
    """
    index_path = folder / "model_index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
    elif folder.is_dir():
        index = {child.name: ["", ""] for child in sorted(folder.iterdir()) if child.is_dir()}
    else:
        index = {}
    for name in denoiser_folders():
        path = folder / name / "config.json"
        if path.is_file():
            return index, json.loads(path.read_text())
    return index, {}


def detect_folder_family(folder: Path, *, model: str) -> BackboneFamily:
    """The family of a local diffusers folder, from its ``model_index.json`` and denoiser config."""
    index, denoiser = read_model_configs(folder)
    if not denoiser:
        raise WeightsNotFoundError(
            f"model `{model}`: the folder is not a complete diffusers model (need a model_index.json, unet/ or "
            f"transformer/, vae/, text encoders and scheduler/): no unet/ or transformer/ config.json in "
            f"{str(folder)!r}"
        )
    return detect_family(index, denoiser, model=model)


register_family(StableDiffusion())
register_family(StableDiffusionXL())
register_family(StableDiffusion3())
register_family(Flux())
register_family(PixArt())

__all__ = [
    "FAMILIES",
    "BackboneFamily",
    "Conditioning",
    "Default",
    "DenoiserLayer",
    "LoadedParts",
    "detect_family",
    "denoiser_folders",
    "detect_folder_family",
    "family_names",
    "get_family",
    "read_model_configs",
    "register_family",
]
