"""Shipped vocabularies (the official class lists) and user class lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from zeroseg.errors import ConfigError
from zeroseg.openvocab.naming import SegmentNamer
from zeroseg.openvocab.text import VILD_TEMPLATES, build_text_classifier, classify_embeddings, logit_scale_of
from zeroseg.openvocab.vocabularies import (
    Vocabulary,
    list_vocabularies,
    load_vocabulary,
    parse_class_list,
    resolve_vocabulary,
)

OFFICIAL_LISTS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "benchmark-metadata" / "openvocab"
"""The official lists converted to JSON, beside the repository when available (not part of the project)."""

VOC_DINING_TABLE = 11


@pytest.mark.parametrize(
    ("name", "num_classes", "num_synonyms", "background_index"),
    [
        ("voc", 21, 153, 0),
        ("context", 60, 161, 0),
        ("coco-object", 81, 174, 0),
        ("ade20k", 150, 403, None),
        ("coco-stuff", 171, 328, None),
        ("cityscapes", 19, 60, None),
    ],
)
def test_shipped_vocabulary_sizes_and_background(name, num_classes, num_synonyms, background_index):
    vocabulary = load_vocabulary(name)
    assert vocabulary.num_classes == num_classes
    assert sum(len(synonyms) for synonyms in vocabulary.classes) == num_synonyms
    assert vocabulary.background_index == background_index
    assert len(set(vocabulary.names)) == num_classes  # display names are unique
    if background_index is not None:
        assert vocabulary.names[background_index] == "background"


def test_voc_background_has_long_synonym_list_and_others_only_the_word():
    assert len(load_vocabulary("voc").classes[0]) > 20
    assert load_vocabulary("context").classes[0] == ("background",)
    assert load_vocabulary("coco-object").classes[0] == ("background",)


def test_benchmark_class_order_matches_dataset_label_plus_one():
    voc = load_vocabulary("voc").names
    assert voc[1] == "aeroplane" and voc[15] == "person" and voc[20] == "tv monitor"
    coco = load_vocabulary("coco-object").names
    assert coco[1] == "person" and coco[80] == "toothbrush"
    context = load_vocabulary("context").names
    assert context[1] == "aeroplane" and context[59] == "wood"
    stuff = load_vocabulary("coco-stuff").names
    assert stuff[79] == "toothbrush" and stuff[80] == "banner" and stuff[170] == "wood"
    assert load_vocabulary("ade20k").names[:3] == ["wall", "building", "sky"]


@pytest.mark.parametrize("name", ["voc", "context", "coco-object", "ade20k", "coco-stuff", "cityscapes"])
def test_shipped_vocabulary_is_the_official_list(name):
    path = OFFICIAL_LISTS / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"official class lists not available at {OFFICIAL_LISTS}")
    official = json.loads(path.read_text(encoding="utf-8"))["classes"]
    assert load_vocabulary(name).classes == tuple(tuple(synonyms) for synonyms in official)


def test_official_synonyms_typos_and_repeats_are_kept():
    voc = load_vocabulary("voc")
    assert voc.classes[0].count("bag") == 2 and voc.classes[0].count("tiles") == 2
    assert voc.classes[VOC_DINING_TABLE] == (
        "diningtable", "dining table", "diningtables", "dining tables", "plate", "plates"
    )  # fmt: skip
    assert "childeren" in voc.classes[15]
    assert load_vocabulary("ade20k").classes[71].count("kitchen range") == 2


def test_display_names_are_the_dataset_names_not_the_first_synonym():
    voc = load_vocabulary("voc")
    assert voc.names[VOC_DINING_TABLE] == "dining table" and voc.classes[VOC_DINING_TABLE][0] == "diningtable"
    assert voc.names[16] == "potted plant" and voc.names[20] == "tv monitor"
    assert load_vocabulary("context").names[19] == "computer"  # official first synonym: "computer case"
    assert load_vocabulary("cityscapes").names == [synonyms[0] for synonyms in load_vocabulary("cityscapes").classes]


def test_display_names_must_match_the_classes():
    with pytest.raises(ConfigError, match="`display_names`"):
        Vocabulary(name="x", classes=(("a",), ("b",)), display_names=("a",))
    with pytest.raises(ConfigError, match="`display_names`"):
        Vocabulary(name="x", classes=(("a",),), display_names=(" ",))


class _RecordingTokenizer:
    """Wraps a tokenizer and keeps every prompt it is given, in order."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.prompts: list[str] = []

    def __call__(self, prompts):
        self.prompts.extend(prompts)
        return self.tokenizer(prompts)


def test_text_classifier_scores_exactly_the_official_synonyms_in_order(tiny_clip):

    voc = load_vocabulary("voc")
    tokenizer = _RecordingTokenizer(tiny_clip.tokenizer)
    classifier = build_text_classifier(tiny_clip.model, tokenizer, voc)
    synonyms = [synonym for names in voc.classes for synonym in names]
    assert tokenizer.prompts == [template.format(s) for s in synonyms for template in VILD_TEMPLATES]
    assert classifier.class_index.tolist() == [i for i, names in enumerate(voc.classes) for _ in names]
    assert "dining table" in synonyms and "table" not in synonyms  # display names are never scored on their own


def test_a_synonym_only_the_official_list_has_decides_the_class(tiny_clip):
    # A segment whose embedding is the text embedding of "plates", a synonym of VOC's dining table that the
    # earlier hand-written list ("dining table", "table", "desk") did not have.
    namer = SegmentNamer(vocabulary="voc", clip=tiny_clip)
    classifier = namer.text_classifier()
    synonyms = [synonym for names in namer.vocabulary.classes for synonym in names]
    segment = classifier.embeddings[synonyms.index("plates")][None]
    scale = logit_scale_of(tiny_clip.model)
    logits, probabilities = classify_embeddings(segment, classifier, logit_scale=scale)
    assert int(probabilities.argmax()) == VOC_DINING_TABLE
    assert namer.class_names[VOC_DINING_TABLE] == "dining table"
    assert float(logits[0, VOC_DINING_TABLE]) == pytest.approx(scale, rel=1e-5)  # the max is the "plates" synonym

    classes = list(namer.vocabulary.classes)
    classes[VOC_DINING_TABLE] = ("dining table", "table", "desk")
    hand_written = Vocabulary(name="hand-written", classes=tuple(classes), background_index=0)
    other = SegmentNamer(vocabulary=hand_written, clip=tiny_clip).text_classifier()
    logits_without, probabilities_without = classify_embeddings(segment, other, logit_scale=scale)
    assert int(probabilities_without.argmax()) != VOC_DINING_TABLE
    assert float(logits_without[0, VOC_DINING_TABLE]) < float(logits_without.max())


def test_a_labels_list_of_the_official_synonyms_names_segments_as_the_shipped_vocabulary(tiny_clip):
    voc = load_vocabulary("voc")
    labels = ",".join("|".join(synonyms) for synonyms in voc.classes)  # what a user would pass as --labels
    custom = SegmentNamer(vocabulary=labels, clip=tiny_clip)
    shipped = SegmentNamer(vocabulary="voc", clip=tiny_clip)
    assert custom.vocabulary.classes == voc.classes
    segments = np.zeros((64, 64), dtype=np.int64)
    segments[:, 32:] = 1
    segments[40:] += 2
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    for a, b in zip(custom.name_segments(image, segments), shipped.name_segments(image, segments), strict=True):
        np.testing.assert_array_equal(a.probabilities, b.probabilities)
        assert a.class_index == b.class_index


def test_list_vocabularies_names_all_shipped_files():
    for name in list_vocabularies():
        assert load_vocabulary(name).name == name


def test_parse_class_list_with_synonyms_and_duplicates():
    vocabulary = parse_class_list(" cat, dog ,sky|clouds,cat,")
    assert vocabulary.classes == (("cat",), ("dog",), ("sky", "clouds"))
    assert vocabulary.names == ["cat", "dog", "sky"]
    assert vocabulary.background_index is None
    assert parse_class_list(["grass|lawn", "tree"]).classes == (("grass", "lawn"), ("tree",))


def test_add_background_prepends_once():
    vocabulary = parse_class_list("cat,dog", add_background=True)
    assert vocabulary.names == ["background", "cat", "dog"] and vocabulary.background_index == 0
    already = parse_class_list("cat,background|floor", add_background=True)
    assert already.names == ["cat", "background"] and already.background_index == 1


def test_resolve_vocabulary_dispatch():
    assert resolve_vocabulary("voc").name == "voc"
    assert resolve_vocabulary("cat,dog").names == ["cat", "dog"]
    vocabulary = Vocabulary(name="x", classes=(("a",),))
    assert resolve_vocabulary(vocabulary) is vocabulary


@pytest.mark.parametrize("bad", ["", " , ,", "cat,|dog", ["cat", 3]])
def test_bad_class_lists_raise_config_error(bad):
    with pytest.raises(ConfigError, match="`vocabulary`"):
        parse_class_list(bad)


def test_unknown_shipped_name_lists_choices():
    with pytest.raises(ConfigError, match="coco-object"):
        load_vocabulary("pascal")
