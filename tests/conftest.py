"""Shared fixtures: tiny random-weight models written once per test session, fully offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(params=["compiled", "tensor"])
def kernel_form(request, monkeypatch):
    """Run a test on the refinement's compiled kernels and on its tensor form (the two give the same bits)."""
    from zeroseg.refine.compiled import TENSOR_FORM_VARIABLE

    if request.param == "compiled":
        pytest.importorskip("numba")
        monkeypatch.delenv(TENSOR_FORM_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(TENSOR_FORM_VARIABLE, "1")
    return request.param


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD 1.x-topology model folder (16 self-attention layers over four grid sides)."""
    from zeroseg.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sd", "sd")


@pytest.fixture(scope="session")
def tiny_sdxl_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SDXL-topology model folder (two text encoders, added time ids)."""
    from zeroseg.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-sdxl", "sdxl")


@pytest.fixture(scope="session")
def sd_backbone(tiny_sd_path: Path):
    from zeroseg.backbones import load_backbone

    return load_backbone(str(tiny_sd_path))


@pytest.fixture(scope="session")
def sdxl_backbone(tiny_sdxl_path: Path):
    from zeroseg.backbones import load_backbone

    return load_backbone(str(tiny_sdxl_path))


@pytest.fixture(params=["sd", "sdxl"])
def backbone(request: pytest.FixtureRequest):
    """Each tiny backbone in turn."""
    return request.getfixturevalue(f"{request.param}_backbone")
