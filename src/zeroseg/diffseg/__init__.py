"""DiffSeg (Tian et al., CVPR 2024): unsupervised zero-shot segmentation by merging self-attention maps.

Tensor-level algorithm: :func:`segment_attention` turns captured self-attention maps into a label map via
:func:`aggregate_attention`, :func:`merge_by_kl`, the optional :func:`refine_proposals` and
:func:`proposals_to_labels`.
"""

from zeroseg.diffseg.aggregate import aggregate_attention, aggregation_weights
from zeroseg.diffseg.algorithm import segment_attention
from zeroseg.diffseg.kmeans import refine_proposals
from zeroseg.diffseg.merge import anchor_grid, greedy_merge, merge_by_kl, symmetric_kl
from zeroseg.diffseg.proposals import proposals_to_labels

__all__ = [
    "aggregate_attention",
    "aggregation_weights",
    "anchor_grid",
    "greedy_merge",
    "merge_by_kl",
    "proposals_to_labels",
    "refine_proposals",
    "segment_attention",
    "symmetric_kl",
]
