"""The methods zeroseg offers, declared once: every list of methods in the code is derived from this registry.

A :class:`MethodSpec` names the segmenter and config classes (imported lazily, so listing methods and building
command-line options stays free of torch), the evaluation protocol and baselines, and whether the method
refines its own output. A third method is one :func:`register_method` call.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from zeroseg.errors import ConfigError


@dataclass(frozen=True)
class MethodSpec:
    """One segmentation method.

    Attributes:
        name: the name users type (``--method NAME``).
        segmenter: ``"module:Class"`` of its :class:`~zeroseg.segmenter.Segmenter` subclass.
        config: ``"module:Class"`` of its frozen config dataclass (fields declared with
            :func:`zeroseg.options.setting`).
        summary: one line for help texts.
        protocol: evaluation protocol name (:mod:`zeroseg.eval.protocols`).
        baselines: evaluation baselines that run on its captures.
        refines_itself: the method runs its own refinement (the config's ``pamr`` setting); evaluation then
            applies its refinement stage only as the method's settings say.
        open_vocabulary_settings: method settings the open-vocabulary protocol uses (a self-refining method's
            ``pamr_iters`` / ``pamr_dilations`` come from that protocol's refinement defaults).
    """

    name: str
    segmenter: str
    config: str
    summary: str
    protocol: str
    baselines: tuple[str, ...] = ()
    refines_itself: bool = False
    open_vocabulary_settings: tuple[tuple[str, Any], ...] = ()

    def segmenter_class(self) -> type:
        """The segmenter class (imports torch)."""
        return _import(self.segmenter)

    def config_class(self) -> type:
        """The config dataclass (imports no torch)."""
        return _import(self.config)


_METHODS: dict[str, MethodSpec] = {}
DEFAULT_METHOD = "diffcut"


def register_method(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add a method; ``replace=True`` allows re-registering a name (tests, plugins)."""
    if spec.name in _METHODS and not replace:
        raise ConfigError(f"method {spec.name!r} is registered already")
    _METHODS[spec.name] = spec
    return spec


def unregister_method(name: str) -> None:
    """Remove a method (tests that register a toy method clean up with this)."""
    _METHODS.pop(name, None)


def list_methods() -> list[str]:
    """Names of the available methods, sorted."""
    return sorted(_METHODS)


def get_method(name: str) -> MethodSpec:
    """The spec of ``name``.

    Raises:
        ConfigError: unknown method (the message lists the known ones).
    """
    try:
        return _METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(list_methods())}") from None


def method_class(method: str) -> type:
    """The segmenter class of ``method``."""
    return get_method(method).segmenter_class()


def config_class(method: str) -> type:
    """The config dataclass of ``method`` (imports no torch)."""
    return get_method(method).config_class()


def create_segmenter(method: str = DEFAULT_METHOD, **kwargs: Any) -> Any:
    """Build a segmenter by method name; keyword arguments go to its constructor (model, device, settings)."""
    return method_class(method)(**kwargs)


def _import(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


register_method(
    MethodSpec(
        name="diffcut",
        segmenter="zeroseg.diffcut.segmenter:DiffCut",
        config="zeroseg.diffcut.config:DiffCutConfig",
        summary="DiffCut (NeurIPS 2024): recursive Normalized Cut of UNet encoder features, PAMR refinement.",
        protocol="diffcut",
        baselines=("kmeans-c", "kmeans-s", "autosc"),
        refines_itself=True,
        open_vocabulary_settings=(("pamr", True),),
    )
)
register_method(
    MethodSpec(
        name="diffseg",
        segmenter="zeroseg.diffseg.segmenter:DiffSeg",
        config="zeroseg.diffseg.config:DiffSegConfig",
        summary="DiffSeg (CVPR 2024): self-attention maps merged by KL divergence.",
        protocol="diffseg",
        baselines=("kmeans-c", "kmeans-s"),
    )
)
