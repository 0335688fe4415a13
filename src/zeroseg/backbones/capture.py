"""Read what one UNet step computes: self-attention probabilities (DiffSeg) or encoder features (DiffCut).

Which modules to read comes from the backbone's family adapter (for the UNet families: found from the module
tree and the latent size, never from hard-coded names). Both captures stop the forward pass as soon as the last
needed layer has run: no VAE decode, no unused decoder.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from zeroseg.backbones.backbone import Backbone
from zeroseg.backbones.families import Conditioning

# Elements of one block of attention scores (heads x query rows x keys): about 8 MiB on CPU, to stay in the
# last-level cache; far larger on CUDA, where bigger kernels are faster.
BLOCK_ELEMENTS = {False: 1 << 21, True: 1 << 27}


class _StopForward(Exception):
    """Raised inside the UNet once everything needed is captured, to skip the rest of the forward pass."""


class _AttentionAccumulator:
    """Running sum of head-averaged attention probabilities per grid side (never one map per layer)."""

    def __init__(self, expected: int):
        self.sums: dict[int, torch.Tensor] = {}
        self.counts: dict[int, int] = {}
        self.remaining = expected

    def buffer(self, side: int, batch: int, device: torch.device) -> torch.Tensor:
        """The ``(B, side^2, side^2)`` float32 sum that a layer of this side adds its head mean to."""
        if side not in self.sums:
            tokens = side * side
            self.sums[side] = torch.zeros(batch, tokens, tokens, dtype=torch.float32, device=device)
        return self.sums[side]

    def done(self, side: int) -> None:
        self.counts[side] = self.counts.get(side, 0) + 1
        self.remaining -= 1

    def means(self) -> dict[int, torch.Tensor]:
        return {side: total.div_(self.counts[side]) for side, total in self.sums.items()}


class AttentionProbabilityRecorder:
    """Attention processor that computes self-attention explicitly and records its probabilities.

    It produces the same output as diffusers' processors (softmax(QK^T * scale) V, then the output projection)
    in blocks of query rows covering all heads, and adds each block's head mean to the running sum of its grid
    side, so no full ``(N, N)`` map per head or per layer ever exists. Probabilities are formed in float32
    whatever the UNet's dtype.
    """

    def __init__(self, side: int, accumulator: _AttentionAccumulator, stop_when_done: bool):
        self.side = side
        self.accumulator = accumulator
        self.stop_when_done = stop_when_done

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        batch, tokens, _ = hidden_states.shape
        if tokens != self.side * self.side:
            raise RuntimeError(f"attention layer expected a {self.side}x{self.side} token grid, got {tokens} tokens")
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        heads = attn.heads
        head_dim = key.shape[-1] // heads
        query = query.view(batch, tokens, heads, head_dim).transpose(1, 2)
        key = key.view(batch, tokens, heads, head_dim).transpose(1, 2)
        value = value.view(batch, tokens, heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        out = torch.empty_like(query)
        total = self.accumulator.buffer(self.side, batch, query.device)
        # Blocks of query rows for all heads at once, sized to stay in cache: scores, softmax, the value product
        # and the head mean then run on cached data, and each layer touches its (N, N) sum only once.
        rows = max(1, BLOCK_ELEMENTS[query.device.type == "cuda"] // (heads * tokens))
        for b in range(batch):
            keys = key[b].float().transpose(-1, -2)
            queries = query[b].float() * attn.scale
            for start in range(0, tokens, rows):
                stop = min(tokens, start + rows)
                probs = torch.matmul(queries[:, start:stop], keys).softmax(dim=-1)
                out[b, :, start:stop] = torch.matmul(probs.to(value.dtype), value[b])
                total[b, start:stop] += probs.sum(dim=0).mul_(1.0 / heads)
                del probs
        hidden_states = out.transpose(1, 2).reshape(batch, tokens, heads * head_dim)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        hidden_states = hidden_states / attn.rescale_output_factor
        self.accumulator.done(self.side)
        if self.stop_when_done and self.accumulator.remaining == 0:
            raise _StopForward
        return hidden_states


def _run_unet(backbone: Backbone, latents: torch.Tensor, timestep: int, conditioning: Conditioning) -> None:
    try:
        backbone.adapter.run_denoiser(backbone, latents, timestep, conditioning)
    except _StopForward:
        pass


@torch.inference_mode()
def capture_self_attention(
    backbone: Backbone,
    latents: torch.Tensor,
    timestep: int,
    conditioning: Conditioning,
    *,
    sides: Iterable[int] | None = None,
    early_exit: bool = True,
) -> dict[int, torch.Tensor]:
    """Self-attention probabilities averaged over heads and over the layers of each grid side.

    Args:
        latents: ``(B, 4, h, w)`` UNet input (square: ``h == w``).
        sides: the grid sides to record (default: every side present). Layers of other sides keep their fast
            processor and never materialise probabilities.
        early_exit: stop the forward pass right after the last recorded layer.

    Returns:
        ``{side: (B, side*side, side*side)}`` float32 row-stochastic maps; rows are query tokens in row-major
        order, columns key tokens.
    """
    layers = backbone.adapter.self_attention_layers(backbone.unet, latents.shape[-1])
    wanted = set(sides) if sides is not None else {layer.side for layer in layers}
    chosen = [layer for layer in layers if layer.side in wanted]
    if not chosen:
        raise ValueError(f"no self-attention layer at grid sides {sorted(wanted)}")
    accumulator = _AttentionAccumulator(len(chosen))
    originals = {layer.name: layer.module.processor for layer in chosen}
    try:
        for layer in chosen:
            layer.module.set_processor(AttentionProbabilityRecorder(layer.side, accumulator, early_exit))
        _run_unet(backbone, latents, timestep, conditioning)
    finally:
        for layer in chosen:
            layer.module.set_processor(originals[layer.name])
    return accumulator.means()


@torch.inference_mode()
def capture_features(
    backbone: Backbone,
    latents: torch.Tensor,
    timestep: int,
    conditioning: Conditioning,
    *,
    early_exit: bool = True,
) -> torch.Tensor:
    """DiffCut's features: the output of the last encoder self-attention, before the residual add.

    Returns ``(B, C, h, w)`` in the UNet's dtype (C = 1280 for every released SD model, h = w = S/32).
    With ``early_exit`` the forward pass stops right after that module, so the decoder never runs; the
    features are the same as those of a full forward pass.
    """
    _, module = backbone.adapter.feature_layer(backbone.unet)
    captured: list[torch.Tensor] = []

    def hook(_module: Any, _inputs: Any, output: torch.Tensor) -> None:
        captured.append(output.detach().clone())
        if early_exit:
            raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        _run_unet(backbone, latents, timestep, conditioning)
    finally:
        handle.remove()
    tokens = captured[0]
    batch, count, channels = tokens.shape
    side = math.isqrt(count)
    return tokens.transpose(1, 2).reshape(batch, channels, side, side)
