"""SegmentNamer on the tiny model: records, planted embeddings, background, image handling, merging."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zeroseg.errors import ConfigError, ImageError
from zeroseg.openvocab import naming
from zeroseg.openvocab.naming import NamedSegment, SegmentNamer, bounding_box, image_to_tensor, merge_same_label


@pytest.fixture()
def quadrant_labels() -> np.ndarray:
    labels = np.zeros((64, 96), dtype=np.int64)
    labels[:32, 48:] = 1
    labels[32:, :48] = 2
    labels[32:, 48:] = 5
    return labels


def test_name_segments_records(tiny_clip, quadrant_labels):
    namer = SegmentNamer(vocabulary="cat,dog,grass|lawn,sky", clip=tiny_clip)
    segments = namer.name_segments(torch.rand(3, 64, 96), quadrant_labels)
    assert [s.segment_id for s in segments] == [0, 1, 2, 5]
    for segment in segments:
        assert segment.area == 32 * 48
        assert segment.probabilities.shape == (4,)
        assert segment.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
        assert segment.class_index == int(np.argmax(segment.probabilities))
        assert segment.label == namer.class_names[segment.class_index]
        assert segment.score == pytest.approx(float(segment.probabilities.max()))
    assert segments[1].bbox == (48, 0, 48, 32) and segments[3].bbox == (48, 32, 48, 32)


def test_planted_segment_embeddings_get_their_class(tiny_clip, quadrant_labels, monkeypatch):
    """Segment q's embedding is planted on the text embedding of a chosen synonym: that class must win."""
    namer = SegmentNamer(vocabulary="cat,dog,grass|lawn,sky", clip=tiny_clip)
    classifier = namer.text_classifier()
    chosen_synonyms = [3, 0, 4, 1]  # synonyms: cat, dog, grass, lawn, sky → classes 2, 0, 3, 1
    planted = classifier.embeddings[chosen_synonyms][None]
    monkeypatch.setattr(naming, "embed_segments", lambda model, pixels, masks, **kwargs: planted)
    segments = namer.name_segments(torch.rand(3, 64, 96), quadrant_labels)
    assert [s.label for s in segments] == ["grass", "cat", "sky", "dog"]


def test_negative_labels_are_ignored(tiny_clip, quadrant_labels):
    quadrant_labels[quadrant_labels == 5] = -1
    segments = SegmentNamer(vocabulary="cat,dog", clip=tiny_clip).name_segments(torch.rand(3, 64, 96), quadrant_labels)
    assert [s.segment_id for s in segments] == [0, 1, 2]


def test_background_class_for_user_lists_and_voc(tiny_clip):
    namer = SegmentNamer(vocabulary="cat,dog", add_background=True, clip=tiny_clip)
    assert namer.class_names == ["background", "cat", "dog"]
    voc = SegmentNamer(vocabulary="voc", clip=tiny_clip)
    assert voc.class_names[0] == "background" and len(voc.class_names) == 21


def test_image_inputs_agree(tiny_clip, quadrant_labels):
    from PIL import Image

    array = (np.random.default_rng(0).random((64, 96, 3)) * 255).astype(np.uint8)
    tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(image_to_tensor(Image.fromarray(array))[0], tensor)
    torch.testing.assert_close(image_to_tensor(array)[0], tensor)
    namer = SegmentNamer(vocabulary="cat,dog", clip=tiny_clip)
    a = namer.name_segments(Image.fromarray(array), quadrant_labels)
    b = namer.name_segments(tensor, quadrant_labels)
    np.testing.assert_allclose(a[2].probabilities, b[2].probabilities, rtol=1e-5, atol=1e-6)
    with pytest.raises(ImageError, match="`image`"):
        image_to_tensor(np.zeros((4, 4)))


def test_exact_reference_skips_normalisation(tiny_clip):
    image = torch.rand(3, 32, 32)
    exact = SegmentNamer(vocabulary="cat", clip=tiny_clip, exact_reference=True).prepare_pixels(image, (32, 32))
    torch.testing.assert_close(exact[0], image)
    fixed = SegmentNamer(vocabulary="cat", clip=tiny_clip).prepare_pixels(image, (32, 32))
    mean = torch.tensor(getattr(tiny_clip.model.visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073))
    std = torch.tensor(getattr(tiny_clip.model.visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711))
    torch.testing.assert_close(fixed[0], (image - mean[:, None, None]) / std[:, None, None])


def test_image_size_resizes_clip_input(tiny_clip):
    namer = SegmentNamer(vocabulary="cat", clip=tiny_clip, image_size=64)
    assert namer.prepare_pixels(torch.rand(3, 40, 50), (40, 50)).shape == (1, 3, 64, 64)
    assert namer.prepare_pixels(torch.rand(3, 40, 50), (40, 50), image_size=96).shape == (1, 3, 96, 96)
    with pytest.raises(ConfigError, match="`image_size`"):
        SegmentNamer(vocabulary="cat", clip=tiny_clip, image_size=8)


def test_vit_model_is_rejected(tiny_clip, tiny_vit_clip):
    from zeroseg.openvocab.clip_model import ClipModel

    vit = ClipModel(model=tiny_vit_clip, tokenizer=tiny_clip.tokenizer, name="vit", pretrained=None)
    with pytest.raises(ConfigError, match="ConvNeXt"):
        SegmentNamer(vocabulary="cat", clip=vit)


def test_bad_labels_raise(tiny_clip):
    namer = SegmentNamer(vocabulary="cat", clip=tiny_clip)
    with pytest.raises(ConfigError, match="`labels`"):
        namer.name_segments(torch.rand(3, 8, 8), np.zeros((8, 8), dtype=np.float32))


def _segment(segment_id: int, class_index: int, probabilities: list[float], labels: np.ndarray) -> NamedSegment:
    mask = labels == segment_id
    return NamedSegment(
        segment_id=segment_id,
        label=["cat", "dog", "sky"][class_index],
        class_index=class_index,
        score=probabilities[class_index],
        area=int(mask.sum()),
        bbox=bounding_box(mask),
        probabilities=np.array(probabilities, dtype=np.float32),
    )


def test_merge_same_label_hand_computed():
    labels = np.array([[0, 0, 1, 1], [2, 2, 1, 1], [2, 3, 3, -1]])
    segments = [
        _segment(0, 1, [0.2, 0.6, 0.2], labels),  # dog, area 2
        _segment(1, 2, [0.1, 0.1, 0.8], labels),  # sky, area 4
        _segment(2, 1, [0.1, 0.9, 0.0], labels),  # dog, area 3
        _segment(3, 0, [0.5, 0.3, 0.2], labels),  # cat, area 2
    ]
    merged, out = merge_same_label(labels, segments)
    np.testing.assert_array_equal(merged, [[0, 0, 1, 1], [0, 0, 1, 1], [0, 2, 2, -1]])
    assert merged.dtype == np.int32
    assert [(s.segment_id, s.label, s.area) for s in out] == [(0, "dog", 5), (1, "sky", 4), (2, "cat", 2)]
    assert out[0].score == pytest.approx((2 * 0.6 + 3 * 0.9) / 5)
    assert out[0].bbox == (0, 0, 2, 3)
    np.testing.assert_allclose(out[1].probabilities, [0.1, 0.1, 0.8])


def test_merge_requires_every_segment_described():
    labels = np.array([[0, 1]])
    with pytest.raises(ConfigError, match="`segments`"):
        merge_same_label(labels, [_segment(0, 0, [1.0, 0.0, 0.0], labels)])
