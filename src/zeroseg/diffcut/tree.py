"""The recursive Normalized Cut as a tree: cut once, then read the segmentation at any smaller tau.

``recursive_ncut`` splits a region while its best NCut is below ``tau``. The best split of a region does not
depend on ``tau``, so the recursion at a smaller ``tau`` visits a prefix-closed part of the recursion at a
larger one: the segmentation at ``tau`` is the tree built at ``max_tau`` with every split whose NCut is
``>= tau`` undone (its whole subtree dropped). :class:`NCutTree` keeps that tree; :meth:`NCutTree.cut` replays
the accepted splits in the same depth-first order through ``assemble_clusters``, so its labels equal
``recursive_ncut(affinity, tau=tau)`` exactly, without a single eigenvector more.

Example:
    >>> tree = build_ncut_tree(affinity, max_tau=0.9, grid=(32, 32))
    >>> coarse = tree.cut(0.5)           # (32, 32) labels, == recursive_ncut(affinity, tau=0.5).reshape(32, 32)
    >>> tree.thresholds()                # the tau values at which the segmentation changes
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from zeroseg.diffcut.affinity import compute_affinity, normalize_features
from zeroseg.diffcut.ncut import Bipartition, assemble_clusters, bipartition
from zeroseg.errors import ConfigError

TREE_FORMAT = "zeroseg.ncut-tree/1"
"""Name and version of the JSON document written by :meth:`NCutTree.to_dict`."""

NCUT_TREE_STEP = "NCut tree"
"""What :func:`build_ncut_tree` reports to its ``progress`` callback: the segments found so far."""


@dataclass(frozen=True)
class NCutNode:
    """One region of the recursion.

    Attributes:
        id: position in depth-first visiting order (the order ``recursive_ncut`` pops regions); root is 0.
        parent: id of the parent region, None for the root.
        depth: recursion level (0 for the root).
        members: (m,) long graph nodes of the region as its parent handed it over. Under ``exact_reference``
            the nodes with an exact zero in their affinity row are left out of the region's own graph below
            the top level (see ``recursive_ncut``); ``members`` still holds them, since the parent's split
            mask does.
        ncut: NCut value of the region's best split, or None when it has none (one node, failed eigensolve,
            no two-sided threshold).
        children: ids of the two sub-regions ("y > threshold" side first) when ``ncut < max_tau``; else None.
    """

    id: int
    parent: int | None
    depth: int
    members: torch.Tensor
    ncut: float | None
    children: tuple[int, int] | None

    @property
    def size(self) -> int:
        """Number of graph nodes in :attr:`members`."""
        return int(self.members.numel())


class NCutTree:
    """Every split of a recursive two-way NCut up to ``max_tau``; :meth:`cut` gives the labels at any tau <= it.

    Build with :func:`build_ncut_tree` (or :func:`ncut_tree_from_features`); store with :meth:`to_dict` and
    :meth:`from_dict`.

    Args:
        nodes: the regions in depth-first visiting order (``nodes[i].id == i``).
        num_nodes: graph size n (pixels of the feature grid).
        max_tau: the threshold the tree was built with; cuts are exact for ``tau <= max_tau``.
        grid: (h, w) of the feature grid, so that :meth:`cut` returns a 2-D map; None for flat labels.
        exact_reference: whether the recursion emulated the official ``idx2keep`` quirk.
        alpha: the affinity exponent, when the tree was built from features (so a caller can tell whether the
            tree still fits its settings).
    """

    def __init__(
        self,
        nodes: Sequence[NCutNode],
        *,
        num_nodes: int,
        max_tau: float,
        grid: tuple[int, int] | None = None,
        exact_reference: bool = False,
        alpha: float | None = None,
    ) -> None:
        if any(node.id != index for index, node in enumerate(nodes)):
            raise ConfigError("`nodes` must be listed in visiting order with ids 0..len-1")
        if grid is not None and grid[0] * grid[1] != num_nodes:
            raise ConfigError(f"`grid` {tuple(grid)} does not hold {num_nodes} nodes")
        self.nodes = tuple(nodes)
        self.num_nodes = int(num_nodes)
        self.max_tau = float(max_tau)
        self.grid = None if grid is None else (int(grid[0]), int(grid[1]))
        self.exact_reference = bool(exact_reference)
        self.alpha = None if alpha is None else float(alpha)

    def fits(self, *, tau: float, alpha: float, exact_reference: bool) -> bool:
        """Whether :meth:`cut` at ``tau`` gives what a direct run with these settings would."""
        return 0 < tau <= self.max_tau and self.alpha == float(alpha) and self.exact_reference == bool(exact_reference)

    def __repr__(self) -> str:
        splits = sum(node.children is not None for node in self.nodes)
        return f"NCutTree({self.num_nodes} nodes, {splits} splits, max_tau={self.max_tau})"

    def accepted_splits(self, tau: float) -> list[NCutNode]:
        """The regions split at ``tau``, in depth-first order (the order ``recursive_ncut`` accepts them)."""
        tau = self._check_tau(tau)
        split = [False] * len(self.nodes)
        accepted = []
        for node in self.nodes:
            reached = node.parent is None or split[node.parent]
            if reached and node.children is not None and node.ncut is not None and node.ncut < tau:
                split[node.id] = True
                accepted.append(node)
        return accepted

    def cut(self, tau: float) -> torch.Tensor:
        """Labels at ``tau``: equal to ``recursive_ncut(affinity, tau=tau, exact_reference=...)``.

        Args:
            tau: NCut threshold, positive and at most :attr:`max_tau`.

        Returns:
            (h, w) long labels 0..K-1 when the tree has a grid, else (n,).

        Raises:
            ConfigError: if ``tau`` is not a finite positive number or exceeds :attr:`max_tau`.
        """
        return _labels_of_splits(self.accepted_splits(tau), self.nodes, self.num_nodes, self.grid)

    def num_segments(self, tau: float) -> int:
        """Number of segments of :meth:`cut` at ``tau`` without assembling the labels."""
        return 1 + len(self.accepted_splits(tau))

    def thresholds(self) -> list[float]:
        """Sorted distinct tau values at which the segmentation changes: it gains splits just above each one.

        A split is accepted once tau exceeds its own NCut value and those of all the splits above it, so these
        are the path maxima of the split values, not the raw values.
        """
        return sorted(set(self._activation().values()))

    def _activation(self) -> dict[int, float]:
        """For each split region, the tau above which it is accepted (max NCut on its path from the root)."""
        activation: dict[int, float] = {}
        for node in self.nodes:
            if node.children is None or node.ncut is None:
                continue
            above = activation[node.parent] if node.parent is not None else 0.0
            activation[node.id] = max(above, node.ncut)
        return activation

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable document of the tree.

        Each graph node is stored once, as the deepest region holding it (``region_of_node``); a region's
        members are the nodes whose deepest region lies in its subtree. Regions carry id, parent, depth,
        size, NCut value of their best split (null when none) and children.
        """
        deepest = torch.zeros(self.num_nodes, dtype=torch.long)
        for node in self.nodes:  # parents come before children, so the deepest region writes last
            deepest[node.members] = node.id
        return {
            "format": TREE_FORMAT,
            "num_nodes": self.num_nodes,
            "grid": None if self.grid is None else list(self.grid),
            "max_tau": self.max_tau,
            "exact_reference": self.exact_reference,
            "alpha": self.alpha,
            "regions": [
                {
                    "id": node.id,
                    "parent": node.parent,
                    "depth": node.depth,
                    "size": node.size,
                    "ncut": node.ncut,
                    "children": None if node.children is None else list(node.children),
                }
                for node in self.nodes
            ],
            "region_of_node": deepest.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NCutTree:
        """Rebuild a tree written by :meth:`to_dict`.

        Raises:
            ConfigError: if the document is not an NCut tree of this format.
        """
        if not isinstance(data, dict) or data.get("format") != TREE_FORMAT:
            raise ConfigError(f"not an NCut tree document (expected format {TREE_FORMAT!r})")
        regions = data["regions"]
        deepest = torch.tensor(data["region_of_node"], dtype=torch.long)
        # Members of a region = nodes whose deepest region is in its subtree; children come after parents.
        subtree: list[list[int]] = [[index] for index in range(len(regions))]
        for region in reversed(regions):
            if region["parent"] is not None:
                subtree[region["parent"]].extend(subtree[region["id"]])
        nodes = []
        for region in regions:
            inside = torch.isin(deepest, torch.tensor(subtree[region["id"]], dtype=torch.long))
            children = region["children"]
            nodes.append(
                NCutNode(
                    id=region["id"],
                    parent=region["parent"],
                    depth=region["depth"],
                    members=torch.nonzero(inside).flatten(),
                    ncut=None if region["ncut"] is None else float(region["ncut"]),
                    children=None if children is None else (int(children[0]), int(children[1])),
                )
            )
        grid = data.get("grid")
        return cls(
            nodes,
            num_nodes=int(data["num_nodes"]),
            max_tau=float(data["max_tau"]),
            grid=None if grid is None else (int(grid[0]), int(grid[1])),
            exact_reference=bool(data.get("exact_reference", False)),
            alpha=data.get("alpha"),
        )

    def _check_tau(self, tau: float) -> float:
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
            raise ConfigError(f"`tau` must be a finite number > 0, got {tau!r}")
        if tau > self.max_tau:
            raise ConfigError(f"`tau` {tau} exceeds the {self.max_tau} the NCut tree was built with; build it again")
        return float(tau)


def _labels_of_splits(
    splits: Sequence[NCutNode], nodes: Sequence[NCutNode], num_nodes: int, grid: tuple[int, int] | None
) -> torch.Tensor:
    """Labels of the graph after ``splits`` (in depth-first order), as ``recursive_ncut`` numbers them."""
    masks = []
    for node in splits:
        mask = torch.zeros(num_nodes, dtype=torch.bool)
        mask[nodes[node.children[0]].members] = True  # type: ignore[index]
        masks.append(mask)
    labels = assemble_clusters(masks, num_nodes)
    return labels if grid is None else labels.reshape(grid)


def build_ncut_tree(
    affinity: torch.Tensor,
    *,
    max_tau: float,
    exact_reference: bool = False,
    grid: tuple[int, int] | None = None,
    split: Callable[[torch.Tensor], Bipartition | None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> NCutTree:
    """Run the recursive two-way NCut once at ``max_tau`` and keep every region and split.

    The recursion is that of ``recursive_ncut`` (same sub-graphs, same depth-first order, same
    ``exact_reference`` node dropping); a region whose best NCut is ``>= max_tau`` is kept as a leaf with that
    value recorded.

    Args:
        affinity: (n, n) symmetric non-negative affinity (see ``compute_affinity``).
        max_tau: the largest NCut threshold the tree will be cut at.
        exact_reference: emulate the official ``idx2keep`` quirk, as ``recursive_ncut`` does.
        grid: (h, w) of the feature grid with ``h * w == n``, so that cuts come back as 2-D maps.
        split: the two-way split of one graph; default ``bipartition`` with the eigensolver ``recursive_ncut``
            uses in that mode (the whole spectrum under ``exact_reference``).
        progress: called as ``progress("NCut tree", segments, 0)`` after each accepted split (segments at
            ``max_tau`` found so far; the total is not known yet) and ``progress("NCut tree", n, n)`` when the
            tree is done, so that a page shows the build advancing; None for silence.

    Returns:
        The tree; ``tree.cut(tau)`` equals ``recursive_ncut(affinity, tau=tau, exact_reference=...)`` for any
        ``0 < tau <= max_tau``.

    Raises:
        ConfigError: if ``affinity`` is not square or ``max_tau`` is not a finite positive number.
    """
    if affinity.dim() != 2 or affinity.shape[0] != affinity.shape[1] or affinity.shape[0] == 0:
        raise ConfigError(f"`affinity` must be a non-empty (n, n) tensor, got shape {tuple(affinity.shape)}")
    if isinstance(max_tau, bool) or not isinstance(max_tau, (int, float)) or not math.isfinite(max_tau) or max_tau <= 0:
        raise ConfigError(f"`max_tau` must be a finite number > 0, got {max_tau!r}")
    affinity = affinity.to(torch.float32)
    num_nodes = affinity.shape[0]
    has_zero = (affinity == 0).any(1) if exact_reference else None
    if split is None:
        split = functools.partial(bipartition, exact_reference=exact_reference)

    # Same traversal as recursive_ncut: (members, level, parent id); LIFO, "y > threshold" side first.
    records: list[dict[str, Any]] = []
    segments = 1
    stack: list[tuple[torch.Tensor, int, int | None]] = [(torch.arange(num_nodes), 0, None)]
    while stack:
        members, level, parent = stack.pop()
        record = {"id": len(records), "parent": parent, "depth": level, "members": members, "ncut": None}
        records.append(record)
        if parent is not None:
            records[parent].setdefault("child_ids", []).append(record["id"])
        nodes = members[~has_zero[members]] if has_zero is not None and level > 0 else members
        if nodes.numel() <= 1:
            continue
        graph = affinity if nodes.numel() == num_nodes else affinity[nodes][:, nodes]
        best = split(graph)
        if best is None:
            continue
        record["ncut"] = best.ncut
        if not best.ncut < max_tau:
            continue
        record["split"] = True
        stack.append((nodes[~best.side], level + 1, record["id"]))
        stack.append((nodes[best.side], level + 1, record["id"]))
        segments += 1
        if progress is not None:
            progress(NCUT_TREE_STEP, segments, 0)
    if progress is not None:
        progress(NCUT_TREE_STEP, segments, segments)

    tree_nodes = [
        NCutNode(
            id=r["id"],
            parent=r["parent"],
            depth=r["depth"],
            members=r["members"],
            ncut=r["ncut"],
            children=tuple(r["child_ids"]) if r.get("split") else None,  # type: ignore[arg-type]
        )
        for r in records
    ]
    return NCutTree(tree_nodes, num_nodes=num_nodes, max_tau=max_tau, grid=grid, exact_reference=exact_reference)


def ncut_tree_from_features(
    features: torch.Tensor,
    *,
    alpha: float = 10,
    max_tau: float,
    exact_reference: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> NCutTree:
    """The NCut tree of a captured (C, h, w) feature map, on the same affinity as ``segment_features``
    (``progress``: see :func:`build_ncut_tree`)."""
    feats = normalize_features(features)
    grid = (int(feats.shape[1]), int(feats.shape[2]))
    affinity = compute_affinity(feats, alpha=alpha)
    tree = build_ncut_tree(affinity, max_tau=max_tau, exact_reference=exact_reference, grid=grid, progress=progress)
    tree.alpha = float(alpha)
    return tree


EDIT_OPS = ("split", "merge")
"""Local edits of a cut: ``split`` a leaf region into its two children, ``merge`` a region with its sibling."""


class EditedTree:
    """An :class:`NCutTree` with local edits on top of the global tau: what ``segment_features`` cuts.

    ``edits`` is a list of ``{"op": "split" | "merge", "node": id}``. A split forces the split of region
    ``node`` (it must have children, i.e. an NCut below the tree's ``max_tau``); a merge undoes the split of
    ``node``'s parent, joining ``node`` with its sibling. A later edit of the same split overrides an earlier
    one; at any tau a split is accepted when its region is reached and it is forced, or it is not undone and
    its NCut is below tau. So the edits combine with the tau slider and :meth:`cut` keeps the tree's interface
    (``grid``, ``fits``, ``cut``), and ``segment_features(..., tree=edited)`` works unchanged.

    Raises:
        ConfigError: an edit is not one of these ops, names no region, or cannot apply (no children, root).
    """

    def __init__(self, tree: NCutTree, edits: Sequence[dict[str, Any]] = ()) -> None:
        self.base = tree
        self.edits = [{"op": str(edit["op"]), "node": int(edit["node"])} for edit in edits]
        self._forced: dict[int, bool] = {}
        for edit in self.edits:
            op, node = edit["op"], edit["node"]
            if op not in EDIT_OPS:
                raise ConfigError(f"edit op must be one of {', '.join(EDIT_OPS)}, got {op!r}")
            if not 0 <= node < len(tree.nodes):
                raise ConfigError(f"edit names region {node}, but the NCut tree has regions 0..{len(tree.nodes) - 1}")
            region = tree.nodes[node]
            if op == "split":
                if region.children is None:
                    raise ConfigError(f"region {node} has no split below the tree's max_tau {tree.max_tau}")
                self._forced[node] = True
            else:
                if region.parent is None:
                    raise ConfigError("the root region has no sibling to merge with")
                self._forced[region.parent] = False

    grid = property(lambda self: self.base.grid)
    nodes = property(lambda self: self.base.nodes)
    num_nodes = property(lambda self: self.base.num_nodes)
    max_tau = property(lambda self: self.base.max_tau)
    alpha = property(lambda self: self.base.alpha)
    exact_reference = property(lambda self: self.base.exact_reference)

    def fits(self, *, tau: float, alpha: float, exact_reference: bool) -> bool:
        """Whether the base tree fits these settings (see :meth:`NCutTree.fits`)."""
        return self.base.fits(tau=tau, alpha=alpha, exact_reference=exact_reference)

    def with_edit(self, op: str, node: int) -> EditedTree:
        """A new edited tree with one more edit (this one unchanged)."""
        return EditedTree(self.base, [*self.edits, {"op": op, "node": node}])

    def accepted_splits(self, tau: float) -> list[NCutNode]:
        """The regions split at ``tau`` with the edits applied, in depth-first order."""
        tau = self.base._check_tau(tau)
        split = [False] * len(self.nodes)
        accepted = []
        for node in self.nodes:
            reached = node.parent is None or split[node.parent]
            if not reached or node.children is None:
                continue
            forced = self._forced.get(node.id)
            if forced or (forced is None and node.ncut is not None and node.ncut < tau):
                split[node.id] = True
                accepted.append(node)
        return accepted

    def leaves(self, tau: float) -> list[int]:
        """Ids of the regions that are segments of :meth:`cut` at ``tau`` (reached and not split)."""
        accepted = {node.id for node in self.accepted_splits(tau)}
        return [n.id for n in self.nodes if (n.parent is None or n.parent in accepted) and n.id not in accepted]

    def regions(self, tau: float) -> torch.Tensor:
        """Per graph node, the id of the deepest region of the cut at ``tau`` holding it ((h, w) with a grid)."""
        accepted = {node.id for node in self.accepted_splits(tau)}
        region = torch.zeros(self.num_nodes, dtype=torch.long)
        for node in self.nodes:  # parents come before children: the deepest reached region writes last
            if node.parent is None or node.parent in accepted:
                region[node.members] = node.id
        return region if self.grid is None else region.reshape(self.grid)

    def cut(self, tau: float) -> torch.Tensor:
        """Labels at ``tau`` with the edits applied (as :meth:`NCutTree.cut`; equal to it without edits)."""
        return _labels_of_splits(self.accepted_splits(tau), self.nodes, self.num_nodes, self.grid)

    def num_segments(self, tau: float) -> int:
        """Number of segments of :meth:`cut` at ``tau``."""
        return 1 + len(self.accepted_splits(tau))

    def thresholds(self) -> list[float]:
        """The base tree's thresholds (see :meth:`NCutTree.thresholds`)."""
        return self.base.thresholds()

    def to_dict(self) -> dict[str, Any]:
        """The base tree's document with the edits recorded under ``"edits"``."""
        return self.base.to_dict() | {"edits": [dict(edit) for edit in self.edits]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EditedTree:
        """Rebuild an edited tree written by :meth:`to_dict` (a plain tree document gives no edits)."""
        return cls(NCutTree.from_dict(data), data.get("edits", ()))

    def __repr__(self) -> str:
        return f"EditedTree({self.base!r}, {len(self.edits)} edits)"
