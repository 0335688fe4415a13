"""Let PyPI's torchvision import beside a CPU-only build of torch (test environments only).

PyPI's Linux torchvision wheels are CUDA builds: beside the CPU build of torch their compiled operators cannot
load, and torchvision's Python code then fails at import while registering fake kernels for ``nms`` and
``qnms``. open_clip and timm need only torchvision's pure-Python parts (transforms, FrozenBatchNorm2d), so this
import hook declares those two operator schemas just before torchvision is imported. It does nothing when
torchvision's operators load normally. Installed into the test virtual environment as a ``.pth`` file by
``scripts/test``; never part of the zeroseg package.
"""

from __future__ import annotations

import importlib.abc
import sys


class _TorchvisionSchemaFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        try:
            import torch

            try:
                torch.ops.torchvision.nms  # noqa: B018 - probes whether the real operators are registered
            except (AttributeError, RuntimeError):
                import importlib.util

                spec = importlib.util.find_spec("torchvision")
                loaded = False
                if spec is not None and spec.submodule_search_locations:
                    import glob
                    import os

                    for lib in glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.so")):
                        try:
                            torch.ops.load_library(lib)
                            loaded = True
                        except (OSError, RuntimeError):
                            pass
                if not loaded:
                    lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 - kept alive below
                    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
                    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
                    _KEEP.append(lib)
        except ImportError:
            pass
        return None


_KEEP: list = []


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _TorchvisionSchemaFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionSchemaFinder())
