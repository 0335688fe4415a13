"""DiffCut (Couairon et al., NeurIPS 2024) at tensor level: affinity, recursive NCut, concept assignment.

The image-level class lives in ``zeroseg.diffcut.segmenter``; PAMR is in ``zeroseg.refine.pamr``.
"""

from typing import TYPE_CHECKING

from zeroseg._lazy import lazy_exports

_EXPORTS = {
    "assemble_clusters": "zeroseg.diffcut.ncut",
    "assign_concepts": "zeroseg.diffcut.assign",
    "bipartition": "zeroseg.diffcut.ncut",
    "compute_affinity": "zeroseg.diffcut.affinity",
    "ncut_values": "zeroseg.diffcut.ncut",
    "normalize_features": "zeroseg.diffcut.affinity",
    "recursive_ncut": "zeroseg.diffcut.ncut",
    "segment_autosc": "zeroseg.diffcut.autosc",
    "segment_features": "zeroseg.diffcut.algorithm",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from zeroseg.diffcut.affinity import compute_affinity, normalize_features
    from zeroseg.diffcut.algorithm import segment_features
    from zeroseg.diffcut.assign import assign_concepts
    from zeroseg.diffcut.autosc import segment_autosc
    from zeroseg.diffcut.ncut import assemble_clusters, bipartition, ncut_values, recursive_ncut
