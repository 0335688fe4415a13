"""Read what one denoiser step computes: self-attention among image tokens (DiffSeg) or a layer's features (DiffCut).

Which layers exist and how to read them comes from the backbone's family adapter (``layers``: for the UNets found
from the module tree and the latent size, for the transformers their blocks). Both captures stop the forward pass
as soon as the last needed layer has run: no VAE decode, no unused decoder or later blocks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from zeroseg.backbones.backbone import Backbone
from zeroseg.backbones.families import Conditioning, DenoiserLayer
from zeroseg.backbones.recorders import AttentionAccumulator, ExplicitRecorder, ObservingRecorder, StopForward

__all__ = ["capture_features", "capture_self_attention", "denoiser_layers"]


def denoiser_layers(backbone: Backbone, latent_side: int) -> list[DenoiserLayer]:
    """The backbone's readable layers in forward order for latents of side ``latent_side``."""
    return backbone.adapter.layers(backbone.denoiser, latent_side)


def _run_denoiser(backbone: Backbone, latents: torch.Tensor, timestep: int, conditioning: Conditioning) -> None:
    try:
        backbone.adapter.run_denoiser(backbone, latents, timestep, conditioning)
    except StopForward:
        pass


def _choose(layers: list[DenoiserLayer], indices: Iterable[int] | None, sides: Iterable[int] | None):
    if indices is not None:
        indices = list(indices)
        bad = [i for i in indices if not 0 <= i < len(layers)]
        if bad:
            raise ValueError(f"layer index {bad[0]} out of range: this denoiser has {len(layers)} layers (0-based)")
        chosen = [layers[i] for i in sorted(set(indices))]
    else:
        chosen = list(layers)
    if sides is not None:
        wanted = set(sides)
        chosen = [layer for layer in chosen if layer.side in wanted]
        if not chosen:
            raise ValueError(f"no self-attention layer at grid sides {sorted(wanted)}")
    if not chosen:
        raise ValueError("no layer chosen")
    return chosen


@torch.inference_mode()
def capture_self_attention(
    backbone: Backbone,
    latents: torch.Tensor,
    timestep: int,
    conditioning: Conditioning,
    *,
    layers: Iterable[int] | None = None,
    sides: Iterable[int] | None = None,
    early_exit: bool = True,
) -> dict[int, torch.Tensor]:
    """Self-attention probabilities among image tokens, averaged over heads and over the chosen layers of each
    token-grid side.

    Args:
        latents: ``(B, C, h, w)`` denoiser input (square: ``h == w``).
        layers: indices into :func:`denoiser_layers` (default: every layer).
        sides: keep only layers of these grid sides (UNets have several). Layers not chosen keep their stock
            processor and never materialise probabilities.
        early_exit: stop the forward pass right after the last recorded layer.

    Returns:
        ``{side: (B, side*side, side*side)}`` float32 row-stochastic maps; rows are query tokens in row-major
        order, columns key tokens.
    """
    chosen = _choose(denoiser_layers(backbone, latents.shape[-1]), layers, sides)
    accumulator = AttentionAccumulator(len(chosen))
    originals = [layer.attention.processor for layer in chosen]
    try:
        for layer, stock in zip(chosen, originals, strict=True):
            if layer.image_qk is None:
                recorder = ExplicitRecorder(layer.side, accumulator, early_exit)
            else:
                recorder = ObservingRecorder(stock, layer.image_qk, layer.side, accumulator, early_exit)
            layer.attention.set_processor(recorder)
        _run_denoiser(backbone, latents, timestep, conditioning)
    finally:
        for layer, stock in zip(chosen, originals, strict=True):
            layer.attention.set_processor(stock)
    return accumulator.means()


@torch.inference_mode()
def capture_features(
    backbone: Backbone,
    latents: torch.Tensor,
    timestep: int,
    conditioning: Conditioning,
    *,
    layer: int | None = None,
    early_exit: bool = True,
) -> torch.Tensor:
    """DiffCut's features: the image-token output of one layer's attention, before the residual add.

    Args:
        layer: index into :func:`denoiser_layers`; default the family's (UNets: the last encoder self-attention).

    Returns ``(B, C, side, side)`` in the denoiser's dtype (UNets: C = 1280, side = S/32 for every released SD
    model; transformers: their width on the S/16 patch grid). With ``early_exit`` the forward pass stops right
    after that module; the features are the same as those of a full forward pass.
    """
    layers = denoiser_layers(backbone, latents.shape[-1])
    index = backbone.adapter.default_layers(backbone.denoiser, "diffcut")[0] if layer is None else layer
    (chosen,) = _choose(layers, [index], None)
    tokens = chosen.side * chosen.side
    captured: list[torch.Tensor] = []

    def keep(stream: torch.Tensor) -> None:
        captured.append(stream[:, -tokens:].detach().clone())
        if early_exit:
            raise StopForward

    if chosen.features_from_input:
        handle = chosen.features.register_forward_pre_hook(lambda _module, inputs: keep(inputs[0]))
    else:
        handle = chosen.features.register_forward_hook(
            lambda _module, _inputs, output: keep(output[0] if isinstance(output, tuple) else output)
        )
    try:
        _run_denoiser(backbone, latents, timestep, conditioning)
    finally:
        handle.remove()
    found = captured[0]
    batch, count, channels = found.shape
    side = math.isqrt(count)
    return found.transpose(1, 2).reshape(batch, channels, side, side)
