"""Shipped vocabularies and user class lists."""

from __future__ import annotations

import pytest

from zeroseg.errors import ConfigError
from zeroseg.openvocab.vocabularies import (
    Vocabulary,
    list_vocabularies,
    load_vocabulary,
    parse_class_list,
    resolve_vocabulary,
)


@pytest.mark.parametrize(
    ("name", "num_classes", "background_index"),
    [("voc", 21, 0), ("context", 60, 0), ("coco-object", 81, 0), ("ade20k", 150, None), ("coco-stuff", 171, None)],
)
def test_shipped_vocabulary_sizes_and_background(name, num_classes, background_index):
    vocabulary = load_vocabulary(name)
    assert vocabulary.num_classes == num_classes
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
