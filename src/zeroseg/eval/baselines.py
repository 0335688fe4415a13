"""Baselines evaluated under the same protocol as the methods: K-Means-C, K-Means-S and AutoSC.

- K-Means-C: a constant K for every image (6 by default; DiffSeg paper, DiffCut Tab. 9).
- K-Means-S: K = number of ground-truth classes present in the image (DiffSeg paper, DiffCut Tab. 9 "K*").

On DiffSeg captures the samples are the 4096 rows of the aggregated attention (each a 64x64 distribution);
the cluster centroids are upsampled bilinearly and arg-maxed, as DiffSeg does with its proposals (integer
labels must never be upsampled bilinearly: google/diffseg issue #19). On DiffCut captures the samples are
the L2-normalised feature vectors, and labels are upsampled by DiffCut's concept assignment.
AutoSC (DiffCut Tab. 2) picks the number of clusters from the eigengap, on DiffCut features.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from zeroseg.errors import ConfigError, require

BASELINES = ("kmeans-c", "kmeans-s", "autosc")


@dataclass(frozen=True)
class Baseline:
    """A clustering baseline run on a method's capture.

    Attributes:
        name: ``kmeans-c``, ``kmeans-s`` or ``autosc``.
        k: clusters of K-Means-C (default 6).
        seed: K-Means random state.
    """

    name: str
    k: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        if self.name not in BASELINES:
            raise ConfigError(f"`baseline` must be one of {', '.join(BASELINES)}, got {self.name!r}")
        if self.k < 1:
            raise ConfigError(f"`k` must be >= 1, got {self.k}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return dataclasses.asdict(self)

    def predict(
        self,
        capture: dict[str, torch.Tensor],
        *,
        output_size: tuple[int, int],
        num_gt_classes: int,
    ) -> torch.Tensor:
        """Cluster one capture and return a ``(H, W)`` long label map at ``output_size``.

        Args:
            capture: a DiffSeg (``attn_<side>`` keys) or DiffCut (``features``) capture.
            output_size: evaluation size.
            num_gt_classes: classes present in the image's ground truth (K of K-Means-S).
        """
        if self.name == "autosc":
            if "features" not in capture:
                raise ConfigError("the `autosc` baseline needs DiffCut features (a capture with `features`)")
            from zeroseg.diffcut.autosc import segment_autosc

            return segment_autosc(capture["features"].float(), out_size=output_size).long()
        k = self.k if self.name == "kmeans-c" else max(1, num_gt_classes)
        if "features" in capture:
            return kmeans_on_features(capture["features"], k, output_size=output_size, seed=self.seed)
        return kmeans_on_attention(capture, k, output_size=output_size, seed=self.seed)


def run_kmeans(samples: np.ndarray, k: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """K-Means (scikit-learn, k-means++ init) on ``(N, D)`` samples; K capped at N. Returns labels, centroids."""
    cluster = require("sklearn.cluster", "eval", "the K-Means baselines")
    k = min(k, samples.shape[0])
    model = cluster.KMeans(n_clusters=k, n_init=1, random_state=seed).fit(samples)
    return model.labels_.astype(np.int64), model.cluster_centers_


def kmeans_on_attention(
    capture: dict[str, torch.Tensor], k: int, *, output_size: tuple[int, int], seed: int = 0
) -> torch.Tensor:
    """K-Means over the rows of DiffSeg's aggregated attention ``(S*S, S, S)``, centroids upsampled + argmax."""
    from zeroseg.diffseg.aggregate import aggregate_attention

    maps = {int(name.split("_")[1]): t.float() for name, t in capture.items() if name.startswith("attn_")}
    if not maps:
        raise ConfigError("K-Means on attention needs a DiffSeg capture with `attn_<side>` entries")
    aggregated = aggregate_attention(maps)
    side = aggregated.shape[-1]
    samples = aggregated.reshape(aggregated.shape[0], -1).double().numpy()
    _, centroids = run_kmeans(samples, k, seed=seed)
    proposals = torch.from_numpy(centroids).float().reshape(1, -1, side, side)
    up = F.interpolate(proposals, size=output_size, mode="bilinear", align_corners=False)
    return up[0].argmax(dim=0)


def kmeans_on_features(features: torch.Tensor, k: int, *, output_size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """K-Means over the L2-normalised ``(C, h, w)`` feature vectors, upsampled by concept assignment."""
    feats = F.normalize(features.float(), dim=0)
    c, h, w = feats.shape
    labels, _ = run_kmeans(feats.reshape(c, -1).T.double().numpy(), k, seed=seed)
    grid = torch.from_numpy(labels).reshape(h, w)
    from zeroseg.diffcut.assign import assign_concepts

    return assign_concepts(features.float(), grid, output_size).long()
