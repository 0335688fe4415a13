"""Refinement and label post-processing shared by the methods: PAMR, the 3x3 median filter, relabelling.

The PAMR propagation itself is ``zeroseg.refine.pamr.pamr`` (not re-exported here, so that the name keeps
pointing at its module).
"""

from zeroseg.refine.pamr import median_filter3, refine_labels
from zeroseg.refine.relabel import relabel_sequential

__all__ = ["median_filter3", "refine_labels", "relabel_sequential"]
