"""DiffSeg (Tian et al., CVPR 2024): unsupervised zero-shot segmentation by merging self-attention maps.

Tensor-level algorithm: :func:`segment_attention` turns captured self-attention maps into a label map via
:func:`aggregate_attention`, :func:`merge_by_kl`, the optional :func:`refine_proposals` and
:func:`proposals_to_labels`.
"""

from typing import TYPE_CHECKING

from zeroseg._lazy import lazy_exports

_EXPORTS = {
    "aggregate_attention": "zeroseg.diffseg.aggregate",
    "aggregation_weights": "zeroseg.diffseg.aggregate",
    "anchor_grid": "zeroseg.diffseg.merge",
    "greedy_merge": "zeroseg.diffseg.merge",
    "merge_by_kl": "zeroseg.diffseg.merge",
    "proposals_to_labels": "zeroseg.diffseg.proposals",
    "refine_proposals": "zeroseg.diffseg.kmeans",
    "segment_attention": "zeroseg.diffseg.algorithm",
    "symmetric_kl": "zeroseg.diffseg.merge",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from zeroseg.diffseg.aggregate import aggregate_attention, aggregation_weights
    from zeroseg.diffseg.algorithm import segment_attention
    from zeroseg.diffseg.kmeans import refine_proposals
    from zeroseg.diffseg.merge import anchor_grid, greedy_merge, merge_by_kl, symmetric_kl
    from zeroseg.diffseg.proposals import proposals_to_labels
