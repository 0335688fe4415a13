"""Settings of DiffCut, with the official defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from zeroseg.errors import ConfigError
from zeroseg.validation import check_capture_settings

DEMO_PAMR_DILATIONS = (1, 2, 4, 8, 12, 24, 32, 64)


@dataclass(frozen=True)
class DiffCutConfig:
    """DiffCut hyperparameters (Couairon et al., NeurIPS 2024); defaults are the official code's and demo's.

    Attributes:
        model: diffusion model (short name, hub id or local path); SSD-1B as in the paper.
        image_size: side of the square the image is resized to (1024, official code).
        timestep: noise level of the single UNet step (50, official code).
        seed: seed of the noise, one draw shared by every image of a batch (42, official code).
        tau: NCut threshold; a split is kept while its NCut value is below tau (0.5 for every dataset; larger
            gives finer segments).
        alpha: exponent of the cosine affinity, a soft threshold (10, official code).
        pamr: refine the label map with PAMR at the output size.
        pamr_iters / pamr_dilations: PAMR settings (30 and 1..64: the official demo's; the benchmark protocol
            uses 10 and (1, 2, 4, 8) at 128 px).
        pamr_max_pixels: bound on the PAMR working resolution (1024 * 1024, the model input's pixel count);
            larger outputs are refined at that many pixels with their aspect ratio and the labels taken from
            the upsampled refined masks, so the cost stays flat in the image size. 0 = the output size.
        exact_reference: reproduce the official code's quirks (sub-graph node dropping, dot-product concept
            assignment).
    """

    model: str = "segmind/SSD-1B"
    image_size: int = 1024
    timestep: int = 50
    seed: int = 42
    tau: float = 0.5
    alpha: float = 10.0
    pamr: bool = True
    pamr_iters: int = 30
    pamr_dilations: tuple[int, ...] = DEMO_PAMR_DILATIONS
    pamr_max_pixels: int = 1024 * 1024
    exact_reference: bool = False

    CAPTURE_FIELDS: ClassVar[tuple[str, ...]] = ("model", "image_size", "timestep", "seed")

    def __post_init__(self) -> None:
        object.__setattr__(self, "pamr_dilations", tuple(int(d) for d in self.pamr_dilations))
        check_capture_settings(self.image_size, self.timestep)
        if not 0 < self.tau:
            raise ConfigError(f"`tau` must be positive (got {self.tau})")
        if not self.alpha > 0:
            raise ConfigError(f"`alpha` must be positive (got {self.alpha})")
        if self.pamr_iters < 0:
            raise ConfigError(f"`pamr_iters` must be >= 0 (got {self.pamr_iters})")
        if not self.pamr_dilations or any(d < 1 for d in self.pamr_dilations):
            raise ConfigError(f"`pamr_dilations` must be positive integers (got {list(self.pamr_dilations)})")
        if (
            isinstance(self.pamr_max_pixels, bool)
            or not isinstance(self.pamr_max_pixels, int)
            or self.pamr_max_pixels < 0
        ):
            raise ConfigError(f"`pamr_max_pixels` must be an integer >= 0, 0 = no bound (got {self.pamr_max_pixels!r})")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dictionary of every setting."""
        data = asdict(self)
        data["pamr_dilations"] = list(data["pamr_dilations"])
        return data
