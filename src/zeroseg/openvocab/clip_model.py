"""Loading an open_clip model (by name + pretrained tag, or a local checkpoint) with clear errors.

open_clip is an optional dependency (``pip install 'zeroseg[clip]'``); it is imported here, lazily, and
nowhere else in zeroseg.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from zeroseg.errors import ConfigError, MissingDependencyError, WeightsNotFoundError, require

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "convnext_large_d_320"
"""FC-CLIP's frozen ConvNeXt-Large, as in DiffCut's official ``tools/clip_classifier.py``."""
DEFAULT_PRETRAINED = "laion2b_s29b_b131k_ft_soup"
"""Pretrained tag used by DiffCut's official open-vocabulary evaluation."""

_CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".ckpt")


@dataclass
class ClipModel:
    """An open_clip model in eval mode with its tokenizer.

    Attributes:
        model: the ``open_clip.CLIP`` module.
        tokenizer: callable mapping a list of strings to ``(N, context_length)`` token ids.
        name: model name (for messages and caching).
        pretrained: tag or checkpoint path it was loaded from (``None`` for random weights).
    """

    model: Any
    tokenizer: Any
    name: str
    pretrained: str | None

    @property
    def cache_key(self) -> tuple[str, str | None, int]:
        """Identity of the model for caching text embeddings."""
        return (self.name, self.pretrained, id(self.model))


def import_open_clip() -> ModuleType:
    """Import open_clip or raise :class:`MissingDependencyError` naming the ``clip`` extra.

    A torchvision built for another torch fails at import with a RuntimeError; that is reported the same way,
    with the hint to install the torchvision release matching torch.
    """
    try:
        return require("open_clip", "clip", "Open-vocabulary naming")
    except MissingDependencyError:
        raise
    except (RuntimeError, OSError) as exc:
        raise MissingDependencyError(
            f"Open-vocabulary naming needs open_clip, whose import failed ({exc}); install the torchvision "
            f"release built for torch {torch.__version__} (pip install 'zeroseg[clip]')"
        ) from exc


def _looks_like_path(pretrained: str) -> bool:
    return os.sep in pretrained or "/" in pretrained or pretrained.endswith(_CHECKPOINT_SUFFIXES)


def load_clip_model(
    model_name: str = DEFAULT_MODEL_NAME,
    pretrained: str | Path | None = DEFAULT_PRETRAINED,
    *,
    device: str | torch.device = "cpu",
    cache_dir: str | Path | None = None,
) -> ClipModel:
    """Create an open_clip model and load its weights.

    Args:
        model_name: an open_clip model name (``open_clip.list_models()``); default ConvNeXt-Large at 320 px.
        pretrained: an open_clip pretrained tag for ``model_name`` (downloaded from the hub or found in its
            cache), a local checkpoint file, or ``None`` for random weights (tests only).
        device: where the model runs.
        cache_dir: hub cache folder (open_clip's default when ``None``).

    Returns:
        The model (fp32, eval mode) and its tokenizer.

    Raises:
        MissingDependencyError: open_clip is not installed.
        ConfigError: unknown model name or tag.
        WeightsNotFoundError: the weights are neither in the cache nor downloadable, or the file is missing.
    """
    open_clip = import_open_clip()
    known = open_clip.list_models()
    if model_name not in known and not model_name.startswith(("hf-hub:", "local-dir:")):
        raise ConfigError(
            f"`model_name` {model_name!r} is not an open_clip model; use one of open_clip.list_models(), "
            f"e.g. {DEFAULT_MODEL_NAME!r}"
        )
    pretrained_arg: str | None = None if pretrained is None else str(pretrained)
    if pretrained_arg is not None:
        if os.path.isfile(pretrained_arg):
            pass
        elif _looks_like_path(pretrained_arg):
            raise WeightsNotFoundError(
                f"`pretrained` checkpoint {pretrained_arg!r} for open_clip model {model_name!r} does not exist"
            )
        elif model_name in known:
            tags = open_clip.list_pretrained_tags_by_model(model_name)
            if pretrained_arg not in tags:
                raise ConfigError(
                    f"`pretrained` {pretrained_arg!r} is not a tag of open_clip model {model_name!r}; "
                    f"use one of {tags} or a local checkpoint file"
                )
    try:
        model = open_clip.create_model(
            model_name,
            pretrained=pretrained_arg,
            device=device,
            cache_dir=None if cache_dir is None else str(cache_dir),
        )
    except RuntimeError as exc:
        message = str(exc)
        if "download" in message.lower() or "hub" in message.lower():
            raise WeightsNotFoundError(
                f"Weights of open_clip model {model_name!r} with tag {pretrained_arg!r} are not in the cache "
                "and could not be downloaded; download the checkpoint (open_clip_pytorch_model.bin) and pass "
                "its path as `pretrained` (--clip-weights PATH)"
            ) from exc
        raise
    model = model.to(device=device, dtype=torch.float32).eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    logger.info("Loaded open_clip %s (%s) on %s", model_name, pretrained_arg, device)
    return ClipModel(model=model, tokenizer=tokenizer, name=model_name, pretrained=pretrained_arg)
