"""The image-level API shared by both methods: a loaded model that turns images into label maps.

Each method splits its work in two so that evaluation sweeps can cache the expensive half:
``capture`` (one denoiser pass over a batch, returning plain tensors) and ``segment_capture`` (the clustering,
cheap, driven by the method settings). ``segment`` chains them for one image at its own resolution.
"""

from __future__ import annotations

import copy
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import torch

from zeroseg.backbones import add_noise, denoiser_layers, empty_prompt_conditioning, encode_images, load_backbone
from zeroseg.backbones.backbone import Backbone
from zeroseg.backbones.defaults import resolve_defaults
from zeroseg.errors import ConfigError
from zeroseg.image import resize
from zeroseg.options import capture_fields
from zeroseg.refine.compiled import preload as preload_kernels
from zeroseg.types import SegmentationResult

logger = logging.getLogger(__name__)

ImageInput = Any  # a path, a PIL image, an (H, W, 3) array or a (3, H, W) tensor in [0, 1]


@dataclass(frozen=True)
class TreeSpec:
    """The reusable state a method offers: a segment tree built once per capture, from which the label map at
    any value of one setting up to a bound is read without clustering again (DiffCut's NCut tree and ``tau``).

    Attributes:
        setting: the method setting the tree answers (``"tau"``).
        bound: the largest value of that setting a kept tree is built for (or the run's own, when larger); the
            web page's slider ends there.
    """

    setting: str
    bound: float


class Segmenter(ABC):
    """A diffusion backbone plus one method's settings.

    Args:
        model: overrides ``config.model`` (short name, hub id, local folder or checkpoint file).
        config: the method's config dataclass (defaults to the official settings).
        device: ``auto``, ``cpu``, ``cuda`` or ``mps`` (library default CPU, as in diffusers).
        dtype: denoiser precision; ``None`` = float16 on CUDA, float32 elsewhere.
        backbone: an already loaded backbone to share (its model must match ``config.model``).
        revision / variant: hub revision and weight variant (``variant="fp16"`` halves the download).
        model_config: for a single checkpoint file, a diffusers folder or hub id describing its architecture.
        **settings: any config field, e.g. ``tau=0.6`` (see the method's config class). Settings left unset
            (``None``: image size, timestep, layers, DiffCut's tau) take the loaded model's defaults
            (:mod:`zeroseg.backbones.defaults`); :attr:`default_sources` says where each came from.
    """

    method: ClassVar[str]
    config_class: ClassVar[type]
    tree_spec: ClassVar[TreeSpec | None] = None
    """The segment tree this method can keep (:meth:`build_tree`), or ``None`` when it has none."""

    def __init__(
        self,
        model: str | None = None,
        *,
        config: Any = None,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
        backbone: Backbone | None = None,
        revision: str | None = None,
        variant: str | None = None,
        model_config: str | None = None,
        **settings: Any,
    ) -> None:
        config = config if config is not None else self.config_class()
        if model is not None:
            settings["model"] = model
        unknown = sorted(set(settings) - {f.name for f in fields(config)})
        if unknown:
            allowed = ", ".join(f.name for f in fields(config))
            raise ConfigError(f"unknown {self.method} setting(s) {', '.join(unknown)}; allowed: {allowed}")
        self.config = replace(config, **settings)
        preload_kernels()  # the refinement's compiled kernels load while the model does
        if backbone is None:
            backbone = load_backbone(
                self.config.model, device=device, dtype=dtype, revision=revision, variant=variant, config=model_config
            )
        self.backbone = backbone
        self.config, self.default_sources = resolve_defaults(self.method, self.config, backbone)
        self._check_layers()
        self.num_backbone_passes = 0

    def _check_layers(self) -> None:
        """Refuse layer indices the loaded denoiser does not have (one line naming the setting and the count)."""
        count = len(denoiser_layers(self.backbone, 64))
        for name in ("layers", "layer"):
            value = getattr(self.config, name, None)
            indices = (value,) if isinstance(value, int) else tuple(value or ())
            if any(i >= count for i in indices):
                raise ConfigError(
                    f"has index {max(indices)} but model `{self.backbone.model}` has {count} layers (0-{count - 1})",
                    setting=name,
                )

    @property
    def image_size(self) -> int:
        """Side of the square the backbone sees."""
        return int(self.config.image_size)

    @property
    def device(self) -> torch.device:
        """Where the denoiser runs."""
        return self.backbone.device

    @property
    def method_device(self) -> torch.device:
        """Where :meth:`capture` leaves its tensors, so :meth:`segment_capture` runs there: the backbone's CUDA
        device, else the CPU (the methods compute in float64 in places, which MPS lacks)."""
        device = torch.device(self.device)
        return device if device.type == "cuda" else torch.device("cpu")

    def capture_key(self) -> dict[str, Any]:
        """Everything that determines :meth:`capture`'s output, for cache keys (model identity included)."""
        key = {"method": self.method, "dtype": str(self.backbone.dtype).replace("torch.", "")}
        key |= self.backbone.identity()
        key |= {name: getattr(self.config, name) for name in capture_fields(type(self.config)) if name != "model"}
        return key

    def with_config(self, **overrides: Any) -> Segmenter:
        """The same loaded backbone with other method settings (what a sweep uses); capture settings are fixed."""
        changed = [
            name
            for name in capture_fields(type(self.config))
            if name in overrides and overrides[name] != getattr(self.config, name)
        ]
        if changed:
            raise ConfigError(
                f"`with_config` cannot change capture settings ({', '.join(changed)}); create a new "
                f"{type(self).__name__} instead"
            )
        clone = copy.copy(self)
        clone.config = replace(self.config, **overrides)
        return clone

    def settings(self) -> dict[str, Any]:
        """Every setting of this segmenter, JSON-serialisable."""
        data = {
            "method": self.method,
            **self.config.to_dict(),
            "device": str(self.device),
            "dtype": str(self.backbone.dtype).replace("torch.", ""),
        }
        if self.default_sources:
            data["defaults_from"] = dict(sorted(self.default_sources.items()))
        return data

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Resize ``(B, 3, H, W)`` images in [0, 1] to the backbone's square input (no crop, no antialias)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"`images` must be (B, 3, H, W) in [0, 1] (got shape {tuple(images.shape)})")
        side = self.image_size
        if images.shape[-2:] != (side, side):
            images = resize(images.float(), (side, side))
        return images.clamp(0.0, 1.0)

    def denoiser_inputs(self, images: torch.Tensor, *, noise_seed: int | None) -> tuple[torch.Tensor, Any]:
        """Latents (noised to the timestep when ``noise_seed`` is set) and empty-prompt conditioning for a batch."""
        self.backbone.check_image_size(self.image_size)
        batch = self.prepare(images)
        latents = encode_images(self.backbone, batch)
        latents = add_noise(self.backbone, latents, self.config.timestep, seed=noise_seed)
        return latents, empty_prompt_conditioning(self.backbone, batch.shape[0], self.image_size)

    @abstractmethod
    def capture(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Run the backbone on ``(B, 3, H, W)`` images in [0, 1]; one dict of tensors per image, on the CPU or,
        for a method that runs on the accelerator, on :attr:`method_device` (only its label maps come back)."""

    @abstractmethod
    def segment_capture(
        self,
        capture: dict[str, torch.Tensor],
        *,
        output_size: tuple[int, int],
        image: torch.Tensor | None = None,
        tree: Any = None,
    ) -> torch.Tensor:
        """Cluster one image's capture into an ``(H, W)`` label map of ``output_size`` (contiguous ids, in the
        method's own order); with ``tree`` (:meth:`build_tree` of this capture) the clustering is read from it."""

    def build_tree(self, capture: dict[str, torch.Tensor], *, bound: float | None = None) -> Any:
        """The segment tree of a capture with this config, built up to ``bound`` (default: the spec's bound, or
        the config's own value when larger); only for methods whose :attr:`tree_spec` is set."""
        raise ConfigError(f"{self.method} keeps no segment tree")

    def tree_fits(self, tree: Any) -> bool:
        """Whether ``tree`` (from :meth:`build_tree`) still answers this config."""
        return False

    def capture_images(self, images: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """:meth:`capture` for ``(3, H, W)`` images of any sizes, resized to the square input and run together."""
        self.num_backbone_passes += 1
        return self.capture(torch.stack([self.prepare(image[None])[0] for image in images]))

    def segment(self, image: ImageInput) -> SegmentationResult:
        """Segment one image; the label map has the image's own resolution."""
        return self.segment_batch([image])[0]

    def segment_batch(self, images: Sequence[ImageInput]) -> list[SegmentationResult]:
        """Segment several images, running the backbone on them together (see :mod:`zeroseg.pipeline`)."""
        from zeroseg.pipeline import Pipeline

        return Pipeline(self, batch_size=max(1, len(images)))(list(images))

    def iter_segment(self, images: Iterable[ImageInput], *, batch_size: int = 1) -> Iterator[SegmentationResult]:
        """Segment a stream of images in batches of ``batch_size``."""
        from zeroseg.pipeline import Pipeline

        yield from Pipeline(self, batch_size=batch_size).results(images)
