"""DiffSeg on images: capture self-attention with one UNet step, then merge it into segments."""

from __future__ import annotations

import logging
from typing import Any

import torch

from zeroseg.backbones import capture_self_attention
from zeroseg.diffseg.algorithm import segment_attention
from zeroseg.diffseg.config import DiffSegConfig
from zeroseg.segmenter import Segmenter

logger = logging.getLogger(__name__)

ATTENTION_PREFIX = "attn_"


class DiffSeg(Segmenter):
    """DiffSeg (Tian et al., CVPR 2024) on a loaded Stable Diffusion model.

    Example:
        >>> seg = DiffSeg("CompVis/stable-diffusion-v1-4", device="cuda", kl_threshold=0.9)
        >>> result = seg.segment("photo.jpg")   # result.labels: (H, W) int32 at the photo's resolution

    The image is resized (not cropped) to ``image_size``; the merged attention proposals are upsampled to the
    original resolution and each pixel takes its best proposal, so the label map covers the whole image.
    Settings: see :class:`DiffSegConfig`.

    References:
        Tian et al., "Diffuse, Attend, and Segment: Unsupervised Zero-Shot Segmentation using Stable
        Diffusion", CVPR 2024; official code google/diffseg.
    """

    method = "diffseg"
    config_class = DiffSegConfig

    @torch.inference_mode()
    def capture(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Self-attention maps of every grid side, ``{"attn_<r>": (r*r, r*r)}`` per image (float32, on
        :attr:`method_device`)."""
        cfg = self.config
        latents, conditioning = self.denoiser_inputs(images, noise_seed=cfg.seed if cfg.noise else None)
        maps = capture_self_attention(self.backbone, latents, cfg.timestep, conditioning, layers=cfg.layers)
        return [
            {f"{ATTENTION_PREFIX}{side}": maps[side][b].to(self.method_device) for side in sorted(maps, reverse=True)}
            for b in range(latents.shape[0])
        ]

    def segment_capture(
        self,
        capture: dict[str, torch.Tensor],
        *,
        output_size: tuple[int, int],
        image: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Merge the captured maps into a label map of ``output_size`` (``image`` is not used by DiffSeg)."""
        cfg = self.config
        maps = attention_maps(capture)
        anchors = min(cfg.anchors, max(maps))
        if anchors < cfg.anchors:
            logger.info(
                "%d anchors per side exceed the %dx%d attention grid; using %d",
                cfg.anchors,
                max(maps),
                max(maps),
                anchors,
            )
        return segment_attention(
            maps,
            kl_threshold=cfg.kl_threshold,
            iterations=cfg.iterations,
            anchors=anchors,
            refine=cfg.refine,
            exact_reference=cfg.exact_reference,
            out_size=tuple(output_size),
        )


def attention_maps(capture: dict[str, Any]) -> dict[int, torch.Tensor]:
    """``{side: map}`` from a capture's ``attn_<side>`` entries, in float32 (a cache may store float16)."""
    return {
        int(name[len(ATTENTION_PREFIX) :]): value.float()
        for name, value in capture.items()
        if name.startswith(ATTENTION_PREFIX)
    }
