"""Settings of DiffSeg, with the official defaults and the paper's per-dataset presets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

from zeroseg.errors import ConfigError
from zeroseg.validation import check_capture_settings


@dataclass(frozen=True)
class DiffSegConfig:
    """DiffSeg hyperparameters (Tian et al., CVPR 2024); defaults are the official code's COCO-Stuff settings.

    Attributes:
        model: diffusion model (short name, hub id or local path); SD 1.4 as in the paper.
        image_size: side of the square the image is resized to (512, official code).
        timestep: UNet timestep (300, both official notebooks).
        noise: add seeded noise at ``timestep``; the official code feeds the clean latent (False).
        seed: seed of that noise.
        kl_threshold: merge threshold tau on the half-symmetric KL, one value or one per iteration
            (1.1 COCO-Stuff, 0.9 Cityscapes and the demo; official code).
        iterations: merging passes, the anchor pass included (3, official code).
        anchors: anchors per side of the anchor grid (16, i.e. 256 anchors).
        refine: K-Means refinement of the proposals (off for benchmarks, on in the official demo).
        exact_reference: reproduce the official numerics (float16 KL in the anchor pass, NaN dropping).
    """

    model: str = "CompVis/stable-diffusion-v1-4"
    image_size: int = 512
    timestep: int = 300
    noise: bool = False
    seed: int = 42
    kl_threshold: float | tuple[float, ...] = 1.1
    iterations: int = 3
    anchors: int = 16
    refine: bool = False
    exact_reference: bool = False

    CAPTURE_FIELDS: ClassVar[tuple[str, ...]] = ("model", "image_size", "timestep", "noise", "seed")

    def __post_init__(self) -> None:
        if isinstance(self.kl_threshold, Sequence) and not isinstance(self.kl_threshold, str):
            object.__setattr__(self, "kl_threshold", tuple(float(v) for v in self.kl_threshold))
            values = self.kl_threshold
            if len(values) == 1:
                object.__setattr__(self, "kl_threshold", values[0])
            elif len(values) != self.iterations:
                raise ConfigError(
                    f"`kl_threshold` has {len(values)} values but `iterations` is {self.iterations}: give one value "
                    "or one per iteration"
                )
        else:
            values = (float(self.kl_threshold),)
            object.__setattr__(self, "kl_threshold", values[0])
        if any(not v > 0 for v in values):
            raise ConfigError(f"`kl_threshold` must be positive (got {self.kl_threshold})")
        check_capture_settings(self.image_size, self.timestep)
        if self.iterations < 1:
            raise ConfigError(f"`iterations` must be at least 1 (got {self.iterations})")
        if self.anchors < 2:
            raise ConfigError(f"`anchors` must be at least 2 per side (got {self.anchors})")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary of every setting."""
        data = asdict(self)
        if isinstance(data["kl_threshold"], tuple):
            data["kl_threshold"] = list(data["kl_threshold"])
        return data


# Named settings from the papers and the official notebooks.
DIFFSEG_PRESETS: dict[str, DiffSegConfig] = {
    "diffseg-coco": DiffSegConfig(kl_threshold=1.1),
    "diffseg-cityscapes": DiffSegConfig(kl_threshold=0.9),
    "diffseg-demo": DiffSegConfig(kl_threshold=0.9, refine=True),
}


def diffseg_preset(name: str, **overrides: Any) -> DiffSegConfig:
    """A preset by name, with fields overridden."""
    if name not in DIFFSEG_PRESETS:
        raise ConfigError(f"unknown DiffSeg preset {name!r}; choose one of {', '.join(DIFFSEG_PRESETS)}")
    return replace(DIFFSEG_PRESETS[name], **overrides)
