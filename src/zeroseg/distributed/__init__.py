"""Distributed batch mode: segment image collections too big for one machine on a Ray cluster (Ray Data).

``zeroseg segment INPUT... --engine ray`` and :func:`segment_on_ray` run the library pipeline in a pool of
Ray actors, one model per worker, with reading and decoding in separate Ray tasks. Outputs are the local
mode's files or a Parquet dataset of per-segment rows; failed images go to a failures manifest, reruns skip
what is written. Ray itself is imported only when a job starts (the ``ray`` extra: ``pip install
'zeroseg[ray]'``).
"""

from zeroseg.distributed.engine import OUTPUT_FORMATS, RayOptions, segment_on_ray
from zeroseg.distributed.report import FAILURES_FILE, REPORT_FILE, RunReport
from zeroseg.distributed.sinks import read_label_maps
from zeroseg.distributed.sources import expand_sources

__all__ = [
    "FAILURES_FILE",
    "OUTPUT_FORMATS",
    "REPORT_FILE",
    "RayOptions",
    "RunReport",
    "expand_sources",
    "read_label_maps",
    "segment_on_ray",
]
