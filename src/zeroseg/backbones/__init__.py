"""The diffusion backbone: loading a model of a registered family, encoding images, capturing what it sees.

This is the only package that imports diffusers and transformers; the methods work on the tensors it returns.
Family-specific behaviour lives in one adapter per family (:mod:`zeroseg.backbones.families`).
"""

from zeroseg.backbones.backbone import Backbone
from zeroseg.backbones.capture import capture_features, capture_self_attention, denoiser_layers
from zeroseg.backbones.encode import add_noise, empty_prompt_conditioning, encode_images
from zeroseg.backbones.families import BackboneFamily, family_names, get_family, register_family
from zeroseg.backbones.hub import HubUnreachableError
from zeroseg.backbones.loading import load_backbone, resolve_device
from zeroseg.backbones.presets import MODEL_ALIASES, resolve_model

__all__ = [
    "MODEL_ALIASES",
    "Backbone",
    "BackboneFamily",
    "HubUnreachableError",
    "add_noise",
    "capture_features",
    "capture_self_attention",
    "denoiser_layers",
    "empty_prompt_conditioning",
    "encode_images",
    "family_names",
    "get_family",
    "load_backbone",
    "register_family",
    "resolve_device",
    "resolve_model",
]
