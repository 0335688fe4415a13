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
    layers = family.default_layers(backbone.denoiser, method)
    source = (family.default_layers.__doc__ or "").strip().splitlines()[0]
    if method in LAYER_SETTINGS:
        value = layers[0] if LAYER_SETTINGS[method] == "layer" else tuple(layers)
        found[LAYER_SETTINGS[method]] = Default(value, f"{family.name} family: {source}")
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
