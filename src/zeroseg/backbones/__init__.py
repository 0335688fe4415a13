"""The diffusion backbone: loading a Stable Diffusion model, encoding images, capturing what the UNet sees.

This is the only package that imports diffusers and transformers; the methods work on the tensors it returns.
"""

from zeroseg.backbones.capture import (
    capture_features,
    capture_self_attention,
    feature_layer,
    self_attention_layers,
)
from zeroseg.backbones.encode import add_noise, empty_prompt_conditioning, encode_images
from zeroseg.backbones.loading import Backbone, load_backbone, resolve_device
from zeroseg.backbones.presets import MODEL_ALIASES, resolve_model

__all__ = [
    "MODEL_ALIASES",
    "Backbone",
    "add_noise",
    "capture_features",
    "capture_self_attention",
    "empty_prompt_conditioning",
    "encode_images",
    "feature_layer",
    "load_backbone",
    "resolve_device",
    "resolve_model",
    "self_attention_layers",
]
