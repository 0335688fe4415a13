"""DiffCut (Couairon et al., NeurIPS 2024) at tensor level: affinity, recursive NCut, concept assignment.

The image-level class lives in ``zeroseg.diffcut.segmenter``; PAMR is in ``zeroseg.refine.pamr``.
"""

from zeroseg.diffcut.affinity import compute_affinity, normalize_features
from zeroseg.diffcut.algorithm import segment_features
from zeroseg.diffcut.assign import assign_concepts
from zeroseg.diffcut.autosc import segment_autosc
from zeroseg.diffcut.ncut import assemble_clusters, bipartition, ncut_values, recursive_ncut

__all__ = [
    "assemble_clusters",
    "assign_concepts",
    "bipartition",
    "compute_affinity",
    "ncut_values",
    "normalize_features",
    "recursive_ncut",
    "segment_autosc",
    "segment_features",
]
