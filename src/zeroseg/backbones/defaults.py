"""Model-aware defaults of method settings: a setting left unset (``None``) takes its model's value.

Values come from the model (:data:`~zeroseg.backbones.presets.MODEL_DEFAULTS`, where it differs from its family),
else from the family (each family's ``defaults``, with the source of each value), and the layers a method reads
from the family's ``default_layers``. An explicit value always wins. Each resolved value keeps its source, which
``zeroseg models`` lists and every result's settings record.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from zeroseg.backbones.families import Default, get_family
from zeroseg.backbones.presets import MODEL_DEFAULTS, resolve_model

if TYPE_CHECKING:
    from zeroseg.backbones.backbone import Backbone

LAYER_SETTINGS = {"diffseg": "layers", "diffcut": "layer"}
"""The setting that names the layers each method reads (DiffSeg several, DiffCut one)."""


def family_defaults(family: str, method: str) -> dict[str, Default]:
    """The family's declared defaults for ``method`` (without the layers, which depend on the loaded model)."""
    return dict(get_family(family).defaults.get(method, {}))


def model_defaults(backbone: Backbone, method: str) -> dict[str, Default]:
    """Every model-aware default of ``method`` for this loaded backbone, with its source."""
    family = backbone.adapter
    found = family_defaults(backbone.family, method)
    for name, (value, source) in MODEL_DEFAULTS.get(resolve_model(backbone.model), {}).get(method, {}).items():
        found[name] = Default(value, source)
    if method in LAYER_SETTINGS:
        layers = family.default_layers(backbone.denoiser, method)
        value = layers[0] if LAYER_SETTINGS[method] == "layer" else tuple(layers)
        found[LAYER_SETTINGS[method]] = Default(value, family.layer_sources[method])
    return found


def resolve_defaults(method: str, config: Any, backbone: Backbone) -> tuple[Any, dict[str, str]]:
    """``config`` with every unset (``None``) model-aware setting filled from the backbone's defaults, and the
    source of each value filled."""
    defaults = model_defaults(backbone, method)
    unset = [f.name for f in fields(config) if getattr(config, f.name) is None and f.name in defaults]
    if not unset:
        return config, {}
    resolved = replace(config, **{name: defaults[name].value for name in unset})
    return resolved, {name: defaults[name].source for name in unset}


def layer_default_text(family: str, method: str) -> str:
    """Which layers ``method`` reads by default on the family's models, in words, with the source."""
    return get_family(family).layer_sources[method]


def family_of_model(model: str) -> str | None:
    """The family of a short name or known hub id, or of a local diffusers folder (read from its configs, no
    weights); ``None`` when it cannot be told without the hub."""
    from pathlib import Path

    from zeroseg.backbones.families import detect_folder_family
    from zeroseg.backbones.presets import ALIAS_FAMILIES, MODEL_ALIASES

    if model.lower() in ALIAS_FAMILIES:
        return ALIAS_FAMILIES[model.lower()]
    by_hub_id = {hub_id: ALIAS_FAMILIES[alias] for alias, hub_id in MODEL_ALIASES.items()}
    if model in by_hub_id:
        return by_hub_id[model]
    path = Path(model).expanduser()
    if path.is_dir():
        try:
            return detect_folder_family(path, model=model).name
        except Exception:  # not a model folder: loading will say why
            return None
    return None


def known_defaults(model: str, method: str) -> dict[str, Any]:
    """The values of ``method``'s model-aware settings for ``model`` as far as they are known before loading
    (the web page's initial control values); the layers are left out."""
    family = family_of_model(model)
    if family is None:
        return {}
    values = {name: default.value for name, default in family_defaults(family, method).items()}
    for name, (value, _) in MODEL_DEFAULTS.get(resolve_model(model), {}).get(method, {}).items():
        values[name] = value
    return values
