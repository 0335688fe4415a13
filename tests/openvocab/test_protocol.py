"""DiffCut's open-vocabulary evaluation protocol: class maps and targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroseg.errors import ConfigError
from zeroseg.openvocab import naming
from zeroseg.openvocab.naming import SegmentNamer
from zeroseg.openvocab.protocol import CLIP_IMAGE_SIZE, predict_open_vocabulary, prepare_open_vocabulary_target


@pytest.mark.parametrize(("dataset", "clip_side"), [("voc", 64), ("context", 64), ("coco-object", 128)])
def test_evaluation_feeds_clip_the_benchmark_side(dataset, clip_side, tiny_clip, monkeypatch):
    # the spec: CLIP sees the 1024 evaluation image, COCO-Object's upsampled to 2048; here at eval size 64
    from zeroseg.eval.open_vocabulary import OpenVocabularyOptions

    namer = SegmentNamer(vocabulary="cat,dog", add_background=True, clip=tiny_clip)
    seen = {}

    def planted(model, pixels, masks, **kwargs):
        seen["pixels"] = tuple(pixels.shape)
        return namer.text_classifier().embeddings[[1, 2]][None]

    monkeypatch.setattr(naming, "embed_segments", planted)
    side = OpenVocabularyOptions(eval_size=64).clip_side(dataset)
    segments = np.zeros((16, 16), dtype=np.int64)
    segments[8:] = 1
    prediction = predict_open_vocabulary(namer, torch.rand(3, 64, 64), segments, size=64, clip_image_size=side)
    assert seen["pixels"] == (1, 3, clip_side, clip_side) and side * 1024 // 64 == CLIP_IMAGE_SIZE[dataset]
    assert prediction[0, 0] == 1 and prediction[63, 0] == 2


def test_prediction_maps_each_segment_to_its_planted_class(tiny_clip, monkeypatch):
    namer = SegmentNamer(vocabulary="cat,dog", add_background=True, clip=tiny_clip, exact_reference=True)
    classifier = namer.text_classifier()  # synonyms: background, cat, dog
    seen = {}

    def planted(model, pixels, masks, **kwargs):
        seen["pixels"], seen["masks"] = pixels.shape, masks.shape
        return classifier.embeddings[[2, 0, 1]][None]  # segment order 0, 1, 2 → dog, background, cat

    monkeypatch.setattr(naming, "embed_segments", planted)
    segments = np.zeros((16, 16), dtype=np.int64)
    segments[:, 8:] = 1
    segments[12:, :] = 2
    prediction = predict_open_vocabulary(namer, torch.rand(3, 20, 20), segments, size=64, clip_image_size=96)
    assert prediction.shape == (64, 64) and prediction.dtype == torch.int64
    assert seen["pixels"] == (1, 3, 96, 96) and seen["masks"] == (1, 3, 64, 64)
    expected = np.repeat(np.repeat(np.array([2, 0, 1])[segments], 4, axis=0), 4, axis=1)
    np.testing.assert_array_equal(prediction.numpy(), expected)


def test_prediction_runs_on_the_tiny_model_and_is_consistent_with_naming(tiny_clip):
    namer = SegmentNamer(vocabulary="voc", clip=tiny_clip)
    segments = np.zeros((32, 32), dtype=np.int64)
    segments[:16] = 1
    image = torch.rand(3, 32, 32)
    prediction = predict_open_vocabulary(namer, image, segments, size=32)
    named = namer.name_segments(image, segments + 1)
    assert prediction[0, 0] == named[1].class_index and prediction[31, 0] == named[0].class_index


def test_prediction_rejects_float_maps(tiny_clip):
    namer = SegmentNamer(vocabulary="cat", clip=tiny_clip)
    with pytest.raises(ConfigError, match="`segment_labels`"):
        predict_open_vocabulary(namer, torch.rand(3, 8, 8), np.zeros((8, 8), dtype=np.float32), size=32)


def test_target_is_shifted_and_resized_nearest_exact():
    target = np.array([[-1, 0], [4, 19]])
    prepared = prepare_open_vocabulary_target(target, size=4)
    np.testing.assert_array_equal(prepared.numpy(), [[0, 0, 1, 1], [0, 0, 1, 1], [5, 5, 20, 20], [5, 5, 20, 20]])
    assert prepare_open_vocabulary_target(torch.zeros(8, 8, dtype=torch.long), size=8).shape == (8, 8)
