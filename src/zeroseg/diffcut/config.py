"""Settings of DiffCut, with the official defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from zeroseg.errors import ConfigError
from zeroseg.options import setting
from zeroseg.validation import check_capture_settings

DEMO_PAMR_DILATIONS = (1, 2, 4, 8, 12, 24, 32, 64)


@dataclass(frozen=True)
class DiffCutConfig:
    """DiffCut hyperparameters (Couairon et al., NeurIPS 2024); defaults are the official code's and demo's.

    Each field's help text below is also its ``--help`` line and web control label (:mod:`zeroseg.options`).
    The benchmark protocol uses PAMR with 10 iterations and dilations (1, 2, 4, 8) at 128 px; the defaults are
    the official demo's.
    """

    tree_max_tau: ClassVar[float] = 0.9
    """The largest tau a kept NCut tree is cut up to (or the run's own tau, when larger): every tau up to it is
    then read from the tree without an eigensolve (the web page's tau slider, ``--save tree``)."""

    model: str = setting(
        "segmind/SSD-1B",
        "Short name (see `zeroseg models`), hub id, local diffusers folder or .safetensors file.",
        capture=True,
    )
    image_size: int | None = setting(
        None, "Side of the square the model sees; per model (SSD-1B: 1024, official code).", flag="size", capture=True
    )
    timestep: int | None = setting(
        None, "Training timestep of the single noised step; per model (SSD-1B: 50, official code).", capture=True
    )
    seed: int = setting(42, "Noise seed, one draw shared by a batch (official code).", capture=True)
    layer: int | None = setting(
        None,
        "Denoiser layer whose attention output is cut, an index into the model's layers; per model (UNets: the "
        "last encoder self-attention, official code).",
        capture=True,
    )
    max_cut_side: int = setting(
        32,
        "Largest token-grid side NCut works on: a larger feature grid (transformers at 1024 px: 64) is average-"
        "pooled to it, so the dense eigensolve, whose cost grows with the cube of the nodes (64x64 costs 64 times "
        "32x32), stays that of the UNets' 32x32 grid. 0 = no bound.",
        capture=True,
    )
    tau: float | None = setting(
        None, "NCut threshold; larger gives finer segments; per model (SSD-1B: 0.5, paper; SD 1.x: 0.2).", ui=True
    )
    alpha: float = setting(10.0, "Exponent of the cosine affinity, a soft threshold (official code).", ui=True)
    pamr: bool = setting(True, "PAMR refinement of the label map (official demo).", ui=True)
    pamr_iters: int = setting(30, "PAMR iterations (official demo).")
    pamr_dilations: tuple[int, ...] = setting(DEMO_PAMR_DILATIONS, "PAMR dilations, comma separated (official demo).")
    pamr_max_pixels: int = setting(
        1024 * 1024,
        "Bound on the pixels PAMR works at (the model input's count); larger images are refined at that many "
        "pixels with their aspect ratio and labelled from the upsampled refined masks, so the cost stays flat "
        "in the image size. 0 = the output size.",
    )
    exact_reference: bool = setting(
        False, "Reproduce the official code's numerics and quirks (node dropping, dot-product assignment)."
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "pamr_dilations", tuple(int(d) for d in self.pamr_dilations))
        check_capture_settings(self.image_size, self.timestep)
        if self.layer is not None and (isinstance(self.layer, bool) or self.layer < 0):
            raise ConfigError(f"must be a layer index >= 0 (got {self.layer!r})", setting="layer")
        if isinstance(self.max_cut_side, bool) or self.max_cut_side < 0:
            raise ConfigError(
                f"must be an integer >= 0, 0 = no bound (got {self.max_cut_side!r})", setting="max_cut_side"
            )
        if self.tau is not None and not 0 < self.tau:
            raise ConfigError(f"must be positive (got {self.tau})", setting="tau")
        if not self.alpha > 0:
            raise ConfigError(f"must be positive (got {self.alpha})", setting="alpha")
        if self.pamr_iters < 0:
            raise ConfigError(f"must be >= 0 (got {self.pamr_iters})", setting="pamr_iters")
        if not self.pamr_dilations or any(d < 1 for d in self.pamr_dilations):
            raise ConfigError(f"must be positive integers (got {list(self.pamr_dilations)})", setting="pamr_dilations")
        if (
            isinstance(self.pamr_max_pixels, bool)
            or not isinstance(self.pamr_max_pixels, int)
            or self.pamr_max_pixels < 0
        ):
            raise ConfigError(
                f"must be an integer >= 0, 0 = no bound (got {self.pamr_max_pixels!r})", setting="pamr_max_pixels"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary of every setting."""
        data = asdict(self)
        data["pamr_dilations"] = list(data["pamr_dilations"])
        return data
