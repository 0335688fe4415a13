"""The methods run on the device of their capture: every tensor they make is placed beside their inputs, and only
small, named steps go to the host (DiffSeg's K x K merge matrix, DiffCut's NCut) until the label map.

Without an accelerator this is checked on the CPU with the default device set to ``meta``: a tensor made without
an explicit device lands there and the first operation that mixes it with the inputs fails, as it would on CUDA.
The tensor forms run (the compiled kernels are for the CPU only), and the host copies are recorded.
"""

from __future__ import annotations

import traceback

import pytest
import torch
from torch.overrides import TorchFunctionMode

import zeroseg.diffcut.algorithm as diffcut_algorithm
from zeroseg.diffcut.algorithm import segment_features
from zeroseg.diffcut.tree import NCutTree, ncut_tree_from_features
from zeroseg.diffseg.algorithm import segment_attention
from zeroseg.refine.compiled import TENSOR_FORM_VARIABLE

HOST_STEPS = {"greedy_merge", "_ncut_on_host"}
"""The functions allowed to copy to the host before the label map: small matrices, data-dependent loops."""


class HostCopies(TorchFunctionMode):
    """Records the function of zeroseg that asks for each ``.cpu()`` / ``.numpy()`` outside the host steps."""

    def __init__(self) -> None:
        super().__init__()
        self.callers: set[str] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in ("cpu", "numpy"):
            frames = [f for f in traceback.extract_stack() if "zeroseg" in f.filename and "tests" not in f.filename]
            if frames and not HOST_STEPS & {f.name for f in frames}:
                self.callers.add(frames[-1].name)
        return func(*args, **(kwargs or {}))


def _on_the_cpu(function):
    """``function`` run with the CPU as default device: the host steps make their own CPU tensors."""

    def run(*args, **kwargs):
        with torch.device("cpu"):
            return function(*args, **kwargs)

    return run


def _attention(side: int, generator: torch.Generator) -> torch.Tensor:
    maps = torch.rand(side * side, side * side, generator=generator)
    return maps / maps.sum(1, keepdim=True)


def _cases() -> dict:
    generator = torch.Generator().manual_seed(0)
    maps = {16: _attention(16, generator), 8: _attention(8, generator)}
    features = torch.randn(64, 16, 16, generator=generator)
    image = torch.rand(3, 40, 50, generator=generator)
    tree = ncut_tree_from_features(features, alpha=10.0, max_tau=0.95, exact_reference=False)
    cut = {"tau": 0.9, "pamr_iters": 2, "pamr_dilations": (1, 2)}
    return {
        "diffseg": lambda: segment_attention(maps, out_size=(40, 50)),
        "diffseg-refine": lambda: segment_attention(maps, out_size=(40, 50), refine=True, kl_threshold=0.5),
        "diffseg-exact": lambda: segment_attention(maps, out_size=(40, 50), exact_reference=True),
        "diffcut": lambda: segment_features(features, out_size=(40, 50), image=image, **cut),
        "diffcut-working-size": lambda: segment_features(
            features, out_size=(80, 100), image=image, pamr_max_pixels=40 * 50, **cut
        ),
        "diffcut-exact": lambda: segment_features(features, out_size=(40, 50), tau=0.9, exact_reference=True),
        "diffcut-tree": lambda: segment_features(features, out_size=(40, 50), image=image, tree=tree, **cut),
    }


@pytest.mark.parametrize("case", sorted(_cases()))
def test_the_method_makes_its_tensors_on_the_device_of_its_inputs(case, monkeypatch):
    monkeypatch.setenv(TENSOR_FORM_VARIABLE, "1")
    monkeypatch.setattr(diffcut_algorithm, "recursive_ncut", _on_the_cpu(diffcut_algorithm.recursive_ncut))
    monkeypatch.setattr(NCutTree, "cut", _on_the_cpu(NCutTree.cut))
    run = _cases()[case]
    reference = run()
    recorder = HostCopies()
    with torch.device("meta"), recorder:
        labels = run()
    assert labels.device.type == "cpu" and torch.equal(labels, reference)
    assert not recorder.callers, f"host copies on the hot path: {sorted(recorder.callers)}"
