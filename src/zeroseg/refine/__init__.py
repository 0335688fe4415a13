"""Refinement and label post-processing shared by the methods."""

from zeroseg.refine.relabel import relabel_sequential

__all__ = ["relabel_sequential"]
