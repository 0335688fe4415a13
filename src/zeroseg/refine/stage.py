"""The refinement stage of an evaluation: PAMR followed by the 3x3 median filter, with its settings.

Evaluation runs refinement itself, in one place, so that every protocol refines at the step its official code
does (DiffCut: after the background merge, at the evaluation size). A method that refines its own output
(``MethodSpec.refines_itself``) declares the settings ``pamr``, ``pamr_iters`` and ``pamr_dilations``; the stage
then follows them. Other methods are refined only when an evaluation asks for it, with the protocol's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from zeroseg.refine.pamr import refine_labels


@dataclass(frozen=True)
class Refinement:
    """PAMR with ``iterations`` and ``dilations``, then a 3x3 median filter and relabelling 0..K-1.

    Attributes:
        iterations: PAMR iterations.
        dilations: PAMR dilations.
    """

    iterations: int = 10
    dilations: tuple[int, ...] = (1, 2, 4, 8)

    def __call__(self, labels: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """Refine ``(h, w)`` integer labels on a ``(3, H, W)`` image in [0, 1]; the output has the image's size."""
        return refine_labels(labels.long(), image.float(), num_iter=self.iterations, dilations=self.dilations)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {"iterations": self.iterations, "dilations": list(self.dilations)}


def method_refinement(config: Any) -> Refinement | None:
    """The refinement a self-refining method's settings ask for (``None`` when its ``pamr`` is off)."""
    if not config.pamr:
        return None
    return Refinement(iterations=int(config.pamr_iters), dilations=tuple(int(d) for d in config.pamr_dilations))
