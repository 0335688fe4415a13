"""Settings of DiffSeg, with the official defaults."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from zeroseg.errors import ConfigError
from zeroseg.options import setting
from zeroseg.validation import check_capture_settings


@dataclass(frozen=True)
class DiffSegConfig:
    """DiffSeg hyperparameters (Tian et al., CVPR 2024); defaults are the official code's COCO-Stuff settings.

    Each field's help text below is also its ``--help`` line and web control label (:mod:`zeroseg.options`).
    Per dataset the official code uses ``kl_threshold`` 1.1 (COCO-Stuff) and 0.9 (Cityscapes, demo); the
    official demo also turns ``refine`` on.
    """

    model: str = setting(
        "CompVis/stable-diffusion-v1-4",
        "Short name (see `zeroseg models`), hub id, local diffusers folder or .safetensors file.",
        capture=True,
    )
    image_size: int | None = setting(
        None, "Side of the square the model sees; per model (SD 1.4: 512, official code).", flag="size", capture=True
    )
    timestep: int | None = setting(
        None, "Training timestep of the step; per model (SD 1.4: 300, both official notebooks).", capture=True
    )
    layers: tuple[int, ...] | None = setting(
        None,
        "Denoiser layers whose self-attention is aggregated, indices into the model's layers, comma separated; per "
        "model (UNets: every self-attention layer, official code).",
        capture=True,
    )
    noise: bool = setting(
        False, "Add seeded noise at the timestep; the official code feeds the clean latent.", capture=True
    )
    seed: int = setting(42, "Seed of that noise.", capture=True)
    kl_threshold: float | tuple[float, ...] = setting(
        1.1, "KL merge threshold, one value or one per iteration, comma separated (official code).", ui=True
    )
    iterations: int = setting(3, "Merging iterations, the anchor pass included (official code).")
    anchors: int = setting(16, "Anchors per side of the anchor grid (official code: 16, i.e. 256 anchors).", ui=True)
    refine: bool = setting(False, "K-Means refinement of the proposals (off for benchmarks, on in the demo).", ui=True)
    exact_reference: bool = setting(
        False, "Reproduce the official code's numerics (float16 KL in the anchor pass, NaN dropping)."
    )

    def __post_init__(self) -> None:
        if isinstance(self.kl_threshold, Sequence) and not isinstance(self.kl_threshold, str):
            values = tuple(float(v) for v in self.kl_threshold)
            object.__setattr__(self, "kl_threshold", values[0] if len(values) == 1 else values)
            if len(values) not in (1, self.iterations):
                raise ConfigError(
                    f"has {len(values)} values but `iterations` is {self.iterations}: give one value or one per "
                    "iteration",
                    setting="kl_threshold",
                )
        else:
            values = (float(self.kl_threshold),)
            object.__setattr__(self, "kl_threshold", values[0])
        if any(not v > 0 for v in values):
            raise ConfigError(f"must be positive (got {self.kl_threshold})", setting="kl_threshold")
        check_capture_settings(self.image_size, self.timestep)
        if self.layers is not None:
            layers = (self.layers,) if isinstance(self.layers, int) else tuple(int(i) for i in self.layers)
            if not layers or any(i < 0 for i in layers):
                raise ConfigError(f"must be layer indices >= 0 (got {self.layers!r})", setting="layers")
            object.__setattr__(self, "layers", layers)
        if self.iterations < 1:
            raise ConfigError(f"must be at least 1 (got {self.iterations})", setting="iterations")
        if self.exact_reference and self.iterations < 2:
            raise ConfigError(
                f"must be at least 2 with exact_reference (the official code fails with a single merging "
                f"iteration), got {self.iterations}",
                setting="iterations",
            )
        if self.anchors < 2:
            raise ConfigError(f"must be at least 2 per side (got {self.anchors})", setting="anchors")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary of every setting."""
        data = asdict(self)
        for name in ("kl_threshold", "layers"):
            if isinstance(data[name], tuple):
                data[name] = list(data[name])
        return data
