"""Text classifier: template averaging, max over synonyms, softmax, caching (planted embeddings)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zeroseg.openvocab.text import (
    VILD_TEMPLATES,
    TextClassifier,
    average_templates,
    build_text_classifier,
    classify_embeddings,
    clear_text_cache,
    logit_scale_of,
)
from zeroseg.openvocab.vocabularies import parse_class_list


def test_fourteen_vild_templates():
    assert len(VILD_TEMPLATES) == 14 and all("{}" in t for t in VILD_TEMPLATES)


def test_average_templates_normalises_mean_per_synonym():
    e1, e2 = torch.eye(4)[0], torch.eye(4)[1]
    prompts = torch.stack([e1, e2, e1, e1])  # synonym A: (e1, e2); synonym B: (e1, e1)
    out = average_templates(prompts, num_templates=2)
    expected_a = torch.tensor([1.0, 1.0, 0.0, 0.0]) / math.sqrt(2)
    torch.testing.assert_close(out, torch.stack([expected_a, e1]))


class _PlantedTextModel(torch.nn.Module):
    """encode_text returns a fixed vector per prompt; the tokenizer maps each prompt to its row."""

    def __init__(self, table: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.prompts = list(table)
        self.vectors = torch.nn.Parameter(torch.stack([table[p] for p in self.prompts]), requires_grad=False)
        self.calls = 0

    def tokenizer(self, prompts: list[str]) -> torch.Tensor:
        return torch.tensor([self.prompts.index(p) for p in prompts])

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return 3.0 * self.vectors[tokens]  # not unit-norm: the classifier must normalise


def test_build_text_classifier_on_planted_prompts_and_cache():
    templates = ("a {}", "the {}")
    basis = torch.eye(3)
    table = {
        "a cat": basis[0],
        "the cat": basis[1],
        "a sky": basis[2],
        "the sky": basis[2],
        "a clouds": basis[1],
        "the clouds": basis[1],
    }
    model = _PlantedTextModel(table)
    vocabulary = parse_class_list("cat,sky|clouds")
    clear_text_cache()
    classifier = build_text_classifier(model, model.tokenizer, vocabulary, templates=templates, cache_key="m")
    expected = torch.stack([F.normalize(basis[0] + basis[1], dim=0), basis[2], basis[1]])
    torch.testing.assert_close(classifier.embeddings, expected)
    assert classifier.class_index.tolist() == [0, 1, 1] and classifier.num_classes == 2
    again = build_text_classifier(model, model.tokenizer, vocabulary, templates=templates, cache_key="m")
    assert again is classifier and model.calls == 1
    build_text_classifier(model, model.tokenizer, vocabulary, templates=templates, cache_key=None)
    assert model.calls == 2


def test_classify_takes_max_over_synonyms_then_softmax():
    basis = torch.eye(3)
    # class 0 has one synonym (e0); class 1 has two (e1, e2)
    classifier = TextClassifier(embeddings=basis, class_index=torch.tensor([0, 1, 1]), num_classes=2)
    image = torch.stack([basis[2], basis[0], F.normalize(basis[0] + basis[1], dim=0)])
    logits, probabilities = classify_embeddings(image, classifier, logit_scale=10.0)
    s = 10.0 / math.sqrt(2)
    torch.testing.assert_close(logits, torch.tensor([[0.0, 10.0], [10.0, 0.0], [s, s]]))
    torch.testing.assert_close(probabilities, torch.softmax(logits, dim=-1))
    assert probabilities.argmax(dim=1).tolist()[:2] == [1, 0]


@pytest.mark.parametrize(("raw", "expected"), [(math.log(50.0), 50.0), (math.log(1000.0), 100.0)])
def test_logit_scale_is_capped_at_100(raw, expected):
    model = torch.nn.Module()
    model.logit_scale = torch.nn.Parameter(torch.tensor(raw))
    assert logit_scale_of(model) == pytest.approx(expected)


def test_real_tiny_text_tower_offline(tiny_clip):
    vocabulary = parse_class_list("cat,dog|puppy")
    classifier = build_text_classifier(tiny_clip.model, tiny_clip.tokenizer, vocabulary, cache_key=None)
    assert classifier.embeddings.shape == (3, 16)
    torch.testing.assert_close(classifier.embeddings.norm(dim=1), torch.ones(3))
