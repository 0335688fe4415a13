"""DiffCut on images: encoder features from one UNet step, then recursive Normalized Cut."""

from __future__ import annotations

import torch

from zeroseg.backbones import capture_features
from zeroseg.diffcut.algorithm import segment_features
from zeroseg.diffcut.config import DiffCutConfig
from zeroseg.diffcut.tree import NCutTree, ncut_tree_from_features
from zeroseg.refine.pamr import StepProgress
from zeroseg.segmenter import Segmenter, TreeSpec


class DiffCut(Segmenter):
    """DiffCut (Couairon et al., NeurIPS 2024) on a loaded Stable Diffusion model.

    Example:
        >>> seg = DiffCut("segmind/SSD-1B", device="cuda", tau=0.5)
        >>> result = seg.segment("photo.jpg")   # result.labels: (H, W) int32 at the photo's resolution

    Only the UNet encoder runs (the forward pass stops after the feature layer). Segment concepts are
    assigned to every pixel of the original resolution, then refined by PAMR there (``pamr=False`` to skip).
    Settings: see :class:`DiffCutConfig`.

    References:
        Couairon et al., "DiffCut: Catalyzing Zero-Shot Semantic Segmentation with Diffusion Features and
        Recursive Normalized Cut", NeurIPS 2024; official code PaulCouairon/DiffCut.
    """

    method = "diffcut"
    config_class = DiffCutConfig
    tree_spec = TreeSpec(setting="tau", bound=DiffCutConfig.tree_max_tau)

    @torch.inference_mode()
    def capture(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Features ``{"features": (C, h, w)}`` per image (float32, on :attr:`method_device`), average-pooled to
        ``max_cut_side`` where the grid is larger."""
        latents, conditioning = self.denoiser_inputs(images, noise_seed=self.config.seed)
        features = capture_features(self.backbone, latents, self.config.timestep, conditioning, layer=self.config.layer)
        bound = self.config.max_cut_side
        if bound and features.shape[-1] > bound:  # bounds NCut's dense eigensolve (a transformer's 64x64 grid)
            features = torch.nn.functional.adaptive_avg_pool2d(features.float(), bound)
        return [{"features": f.float().to(self.method_device)} for f in features]

    def segment_capture(
        self,
        capture: dict[str, torch.Tensor],
        *,
        output_size: tuple[int, int],
        image: torch.Tensor | None = None,
        tree: NCutTree | None = None,
        progress: StepProgress | None = None,
    ) -> torch.Tensor:
        """Cut the features and assign concepts at ``output_size``; PAMR runs there when ``image`` is given
        and the config enables it. With ``tree`` (:meth:`ncut_tree` of this capture) the cut is read from it.
        ``progress`` hears each PAMR iteration (:func:`zeroseg.refine.pamr.pamr`)."""
        cfg = self.config
        return segment_features(
            capture["features"].float(),
            tau=cfg.tau,
            alpha=cfg.alpha,
            out_size=tuple(output_size),
            image=image if cfg.pamr else None,
            pamr_iters=cfg.pamr_iters,
            pamr_dilations=cfg.pamr_dilations,
            exact_reference=cfg.exact_reference,
            pamr_max_pixels=cfg.pamr_max_pixels,
            tree=tree,
            progress=progress,
        )

    def build_tree(
        self, capture: dict[str, torch.Tensor], *, bound: float | None = None, progress: StepProgress | None = None
    ) -> NCutTree:
        """The NCut tree of a capture, cut up to ``bound`` (default :attr:`DiffCutConfig.tree_max_tau`) or this
        config's tau when larger; ``progress`` hears the segments found (see ``build_ncut_tree``)."""
        max_tau = max(self.tree_spec.bound if bound is None else bound, self.config.tau)
        return self.ncut_tree(capture, max_tau=max_tau, progress=progress)

    def tree_fits(self, tree: NCutTree) -> bool:
        """Whether ``tree`` was built with this config's alpha and exact_reference, and up to its tau."""
        cfg = self.config
        return tree.fits(tau=cfg.tau, alpha=cfg.alpha, exact_reference=cfg.exact_reference)

    def ncut_tree(
        self, capture: dict[str, torch.Tensor], *, max_tau: float, progress: StepProgress | None = None
    ) -> NCutTree:
        """The NCut tree of a capture with this config's ``alpha`` and ``exact_reference``, cut up to ``max_tau``:
        :meth:`segment_capture` with it and any ``tau <= max_tau`` needs no eigensolve. The tree is built and
        kept on the CPU, whatever device the capture is on; ``progress`` hears the segments found."""
        cfg = self.config
        return ncut_tree_from_features(
            capture["features"].float().cpu(),
            alpha=cfg.alpha,
            max_tau=max_tau,
            exact_reference=cfg.exact_reference,
            progress=progress,
        )
