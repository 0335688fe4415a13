"""Attention processors that record head-averaged self-attention among image tokens while the denoiser runs.

Two kinds, both adding each layer's head mean to one running ``(B, N, N)`` float32 sum per grid side in blocks of
query rows, so no ``(heads, N, N)`` map and no per-layer map is ever held:

- :class:`ExplicitRecorder` (UNet ``attn1``): computes softmax(QK^T * scale) V itself and the layer output from
  those probabilities, so recording costs no second score product.
- :class:`ObservingRecorder` (diffusion transformers): runs the layer's stock processor unchanged (the layer's
  output keeps its bits) and computes the image-image probabilities beside it from the image tokens' queries and
  keys, read by the family's :data:`~zeroseg.backbones.families.base.QKReader`. For a joint text-image attention
  this is the image-image block renormalised over the image keys, which equals the softmax of the image-image
  scores alone, so the text tokens are never needed.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from zeroseg.backbones.families.base import QKReader

# Elements of one block of attention scores (heads x query rows x keys): about 8 MiB on CPU, to stay in the
# last-level cache; larger on CUDA, where bigger kernels are faster.
BLOCK_ELEMENTS = {False: 1 << 21, True: 1 << 26}


class StopForward(Exception):
    """Raised inside the denoiser once everything needed is captured, to skip the rest of the forward pass."""


class AttentionAccumulator:
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

    def add(self, side: int, query: torch.Tensor, key: torch.Tensor, scale: float) -> None:
        """Add the head mean of softmax(q k^T * scale) for ``(B, heads, N, d)`` queries and keys."""
        batch, heads, tokens, _ = query.shape
        total = self.buffer(side, batch, query.device)
        rows = max(1, BLOCK_ELEMENTS[query.device.type == "cuda"] // (heads * tokens))
        for b in range(batch):
            keys = key[b].float().transpose(-1, -2)
            queries = query[b].float() * scale
            for start in range(0, tokens, rows):
                stop = min(tokens, start + rows)
                probs = torch.matmul(queries[:, start:stop], keys).softmax(dim=-1)
                total[b, start:stop] += probs.sum(dim=0).mul_(1.0 / heads)
                del probs

    def done(self, side: int) -> bool:
        """Count one recorded layer of ``side``; whether every expected layer is recorded now."""
        self.counts[side] = self.counts.get(side, 0) + 1
        self.remaining -= 1
        return self.remaining == 0

    def means(self) -> dict[int, torch.Tensor]:
        return {side: total.div_(self.counts[side]) for side, total in self.sums.items()}


class ExplicitRecorder:
    """Attention processor for a diffusers self-attention ``Attention`` (the UNets' ``attn1``).

    It produces the same output as diffusers' processors (softmax(QK^T * scale) V, then the output projection)
    in blocks of query rows covering all heads, and adds each block's head mean to the running sum of its grid
    side. Probabilities are formed in float32 whatever the denoiser's dtype.
    """

    def __init__(self, side: int, accumulator: AttentionAccumulator, stop_when_done: bool):
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
        if self.accumulator.done(self.side) and self.stop_when_done:
            raise StopForward
        return hidden_states


class ObservingRecorder:
    """Wraps a layer's stock processor: the output is the stock one, the image-image attention is recorded."""

    def __init__(
        self, stock: Any, reader: QKReader, side: int, accumulator: AttentionAccumulator, stop_when_done: bool
    ):
        self.stock = stock
        self.reader = reader
        self.side = side
        self.accumulator = accumulator
        self.stop_when_done = stop_when_done
        self.signature = inspect.signature(stock.__call__)

    def __call__(self, attn: Any, *args: Any, **kwargs: Any) -> Any:
        output = self.stock(attn, *args, **kwargs)
        call = self.signature.bind(attn, *args, **kwargs).arguments
        query, key, scale = self.reader(attn, call, self.side * self.side)
        self.accumulator.add(self.side, query, key, scale)
        if self.accumulator.done(self.side) and self.stop_when_done:
            raise StopForward
        return output


def attention_qk(attn: Any, call: dict[str, Any], image_tokens: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Queries and keys of a diffusers ``Attention`` whose ``hidden_states`` are the image tokens (SD3's joint
    attention image stream, SD3.5's ``attn2``, PixArt's ``attn1``): projections, heads, then the q/k norms."""
    hidden = call["hidden_states"][:, -image_tokens:]
    batch = hidden.shape[0]
    query, key = attn.to_q(hidden), attn.to_k(hidden)
    head_dim = key.shape[-1] // attn.heads
    query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
    key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    return query, key, attn.scale
