"""Text classifier: prompt templates averaged per synonym, max over synonyms, softmax over classes.

References:
    DiffCut (Couairon et al., NeurIPS 2024), official ``tools/clip_classifier.py`` (from FC-CLIP's
    ``open_vocabulary.get_text_classifier``); the 14 templates are ViLD's (Gu et al., ICLR 2022).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from zeroseg.openvocab.vocabularies import Vocabulary

logger = logging.getLogger(__name__)

VILD_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "This is a photo of a {}",
    "There is a {} in the scene",
    "There is the {} in the scene",
    "a photo of a {} in the scene",
    "a photo of a small {}.",
    "a photo of a medium {}.",
    "a photo of a large {}.",
    "This is a photo of a small {}.",
    "This is a photo of a medium {}.",
    "This is a photo of a large {}.",
    "There is a small {} in the scene.",
    "There is a medium {} in the scene.",
    "There is a large {} in the scene.",
)
"""The 14 ViLD prompt templates used by the official code."""

MAX_LOGIT_SCALE = 100.0
"""CLIP's temperature cap: logits use ``min(exp(logit_scale), 100)`` (official code)."""

_CACHE_SIZE = 8
_TEXT_CACHE: OrderedDict[tuple[Any, ...], TextClassifier] = OrderedDict()


@dataclass(frozen=True)
class TextClassifier:
    """Unit-norm text embeddings of every synonym of every class.

    Attributes:
        embeddings: ``(S, D)`` one row per synonym, template-averaged and unit-norm.
        class_index: ``(S,)`` long, the class each synonym belongs to.
        num_classes: number of classes N.
    """

    embeddings: torch.Tensor
    class_index: torch.Tensor
    num_classes: int


def encode_prompts(model: Any, tokenizer: Any, prompts: Sequence[str], *, batch_size: int = 256) -> torch.Tensor:
    """Encode prompts with the CLIP text tower: ``(P,)`` strings → ``(P, D)`` unit-norm embeddings."""
    device = next(model.parameters()).device
    chunks = []
    for start in range(0, len(prompts), batch_size):
        tokens = tokenizer(list(prompts[start : start + batch_size])).to(device)
        chunks.append(F.normalize(model.encode_text(tokens).float(), dim=-1))
    return torch.cat(chunks)


def average_templates(prompt_embeddings: torch.Tensor, num_templates: int) -> torch.Tensor:
    """Average unit-norm prompt embeddings per synonym and renormalise.

    Args:
        prompt_embeddings: ``(S * T, D)`` unit-norm embeddings, the T templates of each synonym consecutive.
        num_templates: T.

    Returns:
        ``(S, D)`` unit-norm synonym embeddings.
    """
    grouped = prompt_embeddings.reshape(-1, num_templates, prompt_embeddings.shape[-1])
    return F.normalize(grouped.mean(dim=1), dim=-1)


def build_text_classifier(
    model: Any,
    tokenizer: Any,
    vocabulary: Vocabulary,
    *,
    templates: Sequence[str] = VILD_TEMPLATES,
    cache_key: Any = None,
) -> TextClassifier:
    """Embed every synonym of every class with every template.

    Results are cached per ``(cache_key, vocabulary, templates)`` when ``cache_key`` is given (a model
    identity), so naming many images encodes the vocabulary once.

    Args:
        model: open_clip model (``encode_text``).
        tokenizer: its tokenizer.
        vocabulary: classes with synonyms.
        templates: prompt templates with one ``{}``; default the 14 ViLD templates.
        cache_key: model identity for the cache; ``None`` disables caching.

    Returns:
        The synonym embeddings and their class indices.
    """
    key = None if cache_key is None else (cache_key, vocabulary.key, tuple(templates))
    if key is not None and key in _TEXT_CACHE:
        _TEXT_CACHE.move_to_end(key)
        return _TEXT_CACHE[key]
    synonyms = [(index, synonym) for index, names in enumerate(vocabulary.classes) for synonym in names]
    prompts = [template.format(synonym) for _, synonym in synonyms for template in templates]
    logger.info("Encoding %d prompts for %d classes", len(prompts), vocabulary.num_classes)
    with torch.inference_mode():
        embeddings = average_templates(encode_prompts(model, tokenizer, prompts), len(templates))
    classifier = TextClassifier(
        embeddings=embeddings,
        class_index=torch.tensor([index for index, _ in synonyms], dtype=torch.long, device=embeddings.device),
        num_classes=vocabulary.num_classes,
    )
    if key is not None:
        _TEXT_CACHE[key] = classifier
        while len(_TEXT_CACHE) > _CACHE_SIZE:
            _TEXT_CACHE.popitem(last=False)
    return classifier


def clear_text_cache() -> None:
    """Forget every cached text classifier."""
    _TEXT_CACHE.clear()


def logit_scale_of(model: Any) -> float:
    """``min(exp(model.logit_scale), 100)`` (official code)."""
    return min(float(torch.exp(model.logit_scale.detach().float())), MAX_LOGIT_SCALE)


def classify_embeddings(
    image_embeddings: torch.Tensor, classifier: TextClassifier, *, logit_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Score segment embeddings against the classes.

    Synonym logit = ``logit_scale · cos(e, t)``; class logit = max over the class's synonyms; probabilities =
    softmax over classes.

    Args:
        image_embeddings: ``(Q, D)`` unit-norm segment embeddings.
        classifier: the text classifier.
        logit_scale: multiplier of the cosine similarities.

    Returns:
        ``(Q, N)`` class logits and ``(Q, N)`` class probabilities.
    """
    text = classifier.embeddings.to(image_embeddings.device, image_embeddings.dtype)
    synonym_logits = logit_scale * image_embeddings @ text.T
    index = classifier.class_index.to(image_embeddings.device).expand_as(synonym_logits)
    class_logits = torch.full(
        (image_embeddings.shape[0], classifier.num_classes),
        float("-inf"),
        dtype=synonym_logits.dtype,
        device=synonym_logits.device,
    ).scatter_reduce(1, index, synonym_logits, reduce="amax", include_self=True)
    return class_logits, class_logits.softmax(dim=-1)
