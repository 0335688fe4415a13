"""The overlapped pipeline: the same results as the sequential one, in order, with the input read one batch ahead."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from test_pins import pin_image
from zeroseg.pipeline import Failure, Pipeline
from zeroseg.registry import create_segmenter

SETTINGS = {
    "diffseg": ("sd", {"image_size": 64, "noise": True, "kl_threshold": 1e-4}),
    "diffcut": ("sdxl", {"image_size": 128, "tau": 0.9, "pamr_iters": 3, "pamr_dilations": (1, 2)}),
}


def _segmenter(method: str, request: pytest.FixtureRequest):
    family, settings = SETTINGS[method]
    backbone = request.getfixturevalue(f"{family}_backbone")
    return create_segmenter(method, model=backbone.model, backbone=backbone, **settings)


def _images(tmp_path) -> list:
    (tmp_path / "bad.png").write_text("not an image")
    return [pin_image(), tmp_path / "bad.png", pin_image(50, 60, seed=5), pin_image(80, 80, seed=4), pin_image(seed=6)]


def _stage_threads() -> list[str]:
    return [thread.name for thread in threading.enumerate() if thread.name.startswith("zeroseg-stream-")]


@pytest.mark.parametrize("method", sorted(SETTINGS))
def test_overlapped_results_are_the_sequential_ones_bit_for_bit(method, request, tmp_path):
    segmenter = _segmenter(method, request)
    images = _images(tmp_path)
    runs = {}
    for overlap in (False, True):
        before = segmenter.num_backbone_passes
        items = list(Pipeline(segmenter, batch_size=2, overlap=overlap).stream(iter(images)))
        runs[overlap] = (items, segmenter.num_backbone_passes - before)
    (sequential, passes), (overlapped, overlapped_passes) = runs[False], runs[True]
    assert passes == overlapped_passes == 3 and len(overlapped) == len(images)
    for first, second in zip(sequential, overlapped, strict=True):
        assert type(first) is type(second)
        if isinstance(first, Failure):
            assert first.error == second.error and "bad.png" in first.error
        else:
            np.testing.assert_array_equal(first.labels, second.labels)
    assert not _stage_threads()


def test_the_input_is_read_at_most_one_batch_ahead_of_the_capture(request):
    segmenter = _segmenter("diffseg", request)
    pulled, pulled_at_capture = [0], []
    capture = segmenter.capture

    def counted(images):
        pulled_at_capture.append(pulled[0])
        return capture(images)

    def images():
        for seed in range(7):
            pulled[0] += 1
            yield pin_image(seed=seed)

    segmenter.capture = counted
    items = list(Pipeline(segmenter, batch_size=2, overlap=True).stream(images()))
    assert len(items) == 7 and not any(isinstance(item, Failure) for item in items)
    assert all(count <= 2 * (batch + 2) for batch, count in enumerate(pulled_at_capture)), pulled_at_capture


def test_the_next_capture_runs_while_the_method_finishes_a_batch(request):
    segmenter = _segmenter("diffseg", request)
    second_capture = threading.Event()
    capture, segment = segmenter.capture, segmenter.segment_capture
    captures, overlapped = [0], []

    def tracked_capture(images):
        captures[0] += 1
        if captures[0] == 2:
            second_capture.set()
        return capture(images)

    def waiting_segment(*args, **kwargs):
        overlapped.append(second_capture.wait(timeout=30))
        return segment(*args, **kwargs)

    segmenter.capture, segmenter.segment_capture = tracked_capture, waiting_segment
    items = list(Pipeline(segmenter, batch_size=1, overlap=True).stream([pin_image(seed=s) for s in range(3)]))
    assert len(items) == 3 and overlapped[0], "the method of batch 0 never saw the capture of batch 1 start"


def test_a_failed_capture_fails_its_images_and_the_stream_goes_on(request):
    segmenter = _segmenter("diffseg", request)
    capture, calls = segmenter.capture, [0]

    def flaky(images):
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("device lost")
        return capture(images)

    segmenter.capture = flaky
    images = [pin_image(seed=s) for s in range(6)]
    items = list(Pipeline(segmenter, batch_size=2, overlap=True).stream(images))
    failed = [isinstance(item, Failure) for item in items]
    assert failed == [False, False, True, True, False, False]
    assert "device lost" in items[2].error


def test_a_stream_closed_early_stops_its_stage_threads(request):
    segmenter = _segmenter("diffseg", request)
    stream = Pipeline(segmenter, overlap=True).stream(pin_image(seed=s) for s in range(20))
    next(stream)
    stream.close()
    assert not _stage_threads()
    assert segmenter.num_backbone_passes <= 3


def test_overlap_is_on_by_default_only_off_the_cpu(request):
    segmenter = _segmenter("diffseg", request)
    assert not Pipeline(segmenter)._overlaps() and Pipeline(segmenter, overlap=True)._overlaps()

    class OnGpu:
        backbone = type("Backbone", (), {"device": "cuda:0"})()

    assert Pipeline(OnGpu())._overlaps() and not Pipeline(OnGpu(), overlap=False)._overlaps()
    assert not Pipeline(object())._overlaps()
