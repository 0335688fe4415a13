"""The segmentation pipeline every front end calls: images in, filled :class:`SegmentationResult` records out.

image -> backbone capture -> method (with its refinement) -> optional naming and merging -> result. No console
and no files here: the command line, the web UI and the distributed mode call :meth:`Pipeline.stream` (or
:meth:`Pipeline.__call__`) and hand the results to :mod:`zeroseg.writers`.

Example:
    >>> pipe = build_pipeline(method="diffcut", model="segmind/SSD-1B", device="cuda", tau=0.6)
    >>> for item in pipe.stream(["a.jpg", "b.jpg"]):
    ...     print(item.source, item.error if isinstance(item, Failure) else item.num_segments)
"""

from __future__ import annotations

import copy
import itertools
import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from zeroseg.errors import ConfigError, ZeroSegError, one_line
from zeroseg.image import load_image, to_tensor
from zeroseg.refine.relabel import canonical_labels
from zeroseg.types import Segment, SegmentationResult, segments_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageItem:
    """An image with the name it is reported and written under (a path, URI or id)."""

    image: Any
    source: str | None = None


@dataclass
class Failure:
    """An image that could not be segmented: its source and a one-line error naming it and the problem."""

    source: str | None
    error: str
    exception: BaseException | None = None


@dataclass
class _Loaded:
    source: str | None
    pil: Image.Image
    tensor: torch.Tensor
    load_seconds: float


_Captured = tuple[_Loaded, dict[str, Any], float]
"""An image that went through the backbone: the image, its capture and the capture's seconds per image."""


@dataclass
class _InFlight:
    """A batch handed to the stage threads: its capture (all of its items, in order) and one outcome per item."""

    captured: Future
    outcomes: list[Future]


class Pipeline:
    """A loaded segmenter plus optional naming, run over images in batches.

    Args:
        segmenter: a :class:`~zeroseg.segmenter.Segmenter` (from :func:`zeroseg.registry.create_segmenter`).
        namer: a :class:`~zeroseg.openvocab.SegmentNamer` to name every segment, or ``None``.
        merge_same_label: merge segments that get the same name (label map and segments); needs ``namer``.
        batch_size: images per backbone pass.
        keep_capture: keep each image's capture in its result, so :meth:`resegment` can redo the method with
            other settings without a backbone pass (the web UI does this).
        keep_tree: for methods that offer a segment tree (:attr:`Segmenter.tree_spec`, DiffCut's NCut tree), build
            it and keep it in each result (``result.tree``): ``True`` up to the spec's bound, a number up to that
            value; :meth:`resegment` within the bound then reads the cut from the tree.
        overlap: run the stages of consecutive batches at once in :meth:`stream` (decoding batch i+2, the
            backbone pass of batch i+1, the method and naming of batch i, each in its own thread) so the
            accelerator does not wait for the host; ``None`` (default) overlaps when the backbone is not on the
            CPU, where the stages would share the same cores. Results are the same either way.

    Every label map carries canonical segment ids (:func:`zeroseg.refine.relabel.canonical_labels`: raster order
    of each segment's first pixel), whatever the method's internal order, so ids do not follow float noise.
    """

    def __init__(
        self,
        segmenter: Any,
        *,
        namer: Any = None,
        merge_same_label: bool = False,
        batch_size: int = 1,
        keep_capture: bool = False,
        naming_settings: dict[str, Any] | None = None,
        keep_tree: bool | float | None = None,
        overlap: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"must be at least 1 (got {batch_size})", setting="batch_size")
        if merge_same_label and namer is None:
            raise ConfigError("merging segments by name needs a namer (a vocabulary or labels)")
        self.segmenter = segmenter
        self.namer = namer
        self.merge_same_label = merge_same_label
        self.batch_size = batch_size
        self.keep_capture = keep_capture
        self.naming_settings = naming_settings or {}
        self.keep_tree = keep_tree
        self.overlap = overlap

    @property
    def method(self) -> str:
        """The method's name."""
        return self.segmenter.method

    def settings(self) -> dict[str, Any]:
        """Every setting of the run, JSON-serialisable (the segmenter's plus naming)."""
        settings = dict(self.segmenter.settings())
        if self.namer is not None:
            settings["naming"] = {**self.naming_settings, "merge_same_label": self.merge_same_label}
        return settings

    def __call__(self, images: Any) -> list[SegmentationResult]:
        """Segment ``images`` (one image or an iterable); raises the first problem met."""
        return list(self.results(images))

    def results(self, images: Any) -> Iterator[SegmentationResult]:
        """:meth:`stream` that raises the first problem instead of yielding a :class:`Failure`."""
        for item in self.stream(images):
            if isinstance(item, Failure):
                raise item.exception if item.exception is not None else ZeroSegError(item.error)
            yield item

    def stream(self, images: Any) -> Iterator[SegmentationResult | Failure]:
        """Segment ``images`` lazily in batches; a bad image gives a :class:`Failure` and the stream goes on.

        ``images``: a path, PIL image, ``(H, W, 3)`` uint8 array, ``(3, H, W)`` float tensor in [0, 1], an
        :class:`ImageItem`, or an iterable of them. Results come in input order. Items are pulled one batch at a
        time (overlapped: at most one batch ahead of the one in the backbone), so a generator that claims outputs
        as it yields only claims what is about to be worked on.
        """
        iterator = iter(_as_iterable(images))
        if not self._overlaps():
            while batch := self._next_batch(iterator):
                yield from self._run_batch(batch)
            return
        first = self._next_batch(iterator)
        second = self._next_batch(iterator) if first else []
        if not second:  # one batch: nothing to overlap
            yield from self._run_batch(first)
            return
        yield from self._stream_overlapped(iterator, first, second)

    def _overlaps(self) -> bool:
        """Whether :meth:`stream` overlaps the stages (see the ``overlap`` argument)."""
        if self.overlap is not None:
            return self.overlap
        return _device_type(self.segmenter) not in (None, "cpu")

    def _next_batch(self, iterator: Iterator[Any]) -> list[Any]:
        return list(itertools.islice(iterator, self.batch_size))

    def resegment(self, result: SegmentationResult, **overrides: Any) -> SegmentationResult:
        """Redo the method on a kept capture with other method settings (no backbone pass).

        Raises:
            ConfigError: the result has no capture, or a capture setting is changed.
        """
        if result.capture is None or result.image is None:
            raise ConfigError("this result kept no capture; build the pipeline with keep_capture=True")
        segmenter = self.segmenter.with_config(**overrides) if overrides else self.segmenter
        pil = Image.fromarray(result.image)
        loaded = _Loaded(result.source, pil, to_tensor(pil), 0.0)
        clone = copy.copy(self)
        clone.segmenter, clone.keep_capture = segmenter, True
        return clone._finish(loaded, result.capture, capture_seconds=0.0, tree=result.tree)

    # ------------------------------------------------------------------------------------------ stages

    def _run_batch(self, batch: list[Any]) -> list[SegmentationResult | Failure]:
        """One batch, in input order: load each image, one backbone pass for those that loaded, then finish."""
        return [self._finish_item(item) for item in self._capture(self._load(batch))]

    def _stream_overlapped(
        self, iterator: Iterator[Any], *batches: list[Any]
    ) -> Iterator[SegmentationResult | Failure]:
        """:meth:`stream` with one thread per stage: while batch i is finished (method, naming) and its results
        are yielded, batch i+1 is in the backbone and batch i+2 is decoded.

        At most three batches are held, two of them as captures: memory stays flat over a long stream. The input
        is read on the caller's thread, after batch i's capture ends (batch i+1's starts). Only the capture
        thread runs the backbone, and only the method thread the method, one image after another.
        """
        stages = [
            ThreadPoolExecutor(1, thread_name_prefix=f"zeroseg-stream-{name}") for name in ("load", "capture", "method")
        ]
        window: deque[_InFlight] = deque(self._submit(stages, batch) for batch in batches)
        try:
            while window:
                current = window[0]
                wait([current.captured])
                if batch := self._next_batch(iterator):
                    window.append(self._submit(stages, batch))
                for outcome in current.outcomes:
                    yield outcome.result()
                window.popleft()
        finally:
            _stop(stages, window)

    def _submit(self, stages: list[ThreadPoolExecutor], batch: list[Any]) -> _InFlight:
        """Queue one batch on the load, capture and method threads, each stage waiting for the one before."""
        loader, device, host = stages
        loaded = loader.submit(self._load, batch)
        captured = device.submit(lambda: self._capture(loaded.result()))
        outcomes = [host.submit(lambda k=k: self._finish_item(captured.result()[k])) for k in range(len(batch))]
        return _InFlight(captured, outcomes)

    def _load(self, batch: list[Any]) -> list[_Loaded | Failure]:
        """Decode every image of a batch: its loaded form, or a :class:`Failure` for one that does not load."""
        items: list[_Loaded | Failure] = []
        for entry in batch:
            item = entry if isinstance(entry, ImageItem) else ImageItem(entry, _source_of(entry))
            start = time.perf_counter()
            try:
                pil = load_image(item.image)
            except ZeroSegError as exc:
                items.append(Failure(item.source, _named(item.source, str(exc)), exc))
                continue
            items.append(_Loaded(item.source, pil, to_tensor(pil), time.perf_counter() - start))
        return items

    def _capture(self, items: list[_Loaded | Failure]) -> list[_Captured | Failure]:
        """One backbone pass for the images that loaded: per item its capture, or its :class:`Failure`."""
        loaded = [item for item in items if isinstance(item, _Loaded)]
        if not loaded:
            return list(items)
        start = time.perf_counter()
        try:
            captures = self.segmenter.capture_images([entry.tensor for entry in loaded])
        except (RuntimeError, ValueError, ZeroSegError) as exc:
            return [_capture_failure(item, exc) if isinstance(item, _Loaded) else item for item in items]
        seconds = (time.perf_counter() - start) / len(loaded)
        by_image = {id(entry): capture for entry, capture in zip(loaded, captures, strict=True)}
        return [(item, by_image[id(item)], seconds) if isinstance(item, _Loaded) else item for item in items]

    def _finish_item(self, item: _Captured | Failure) -> SegmentationResult | Failure:
        """The method (and naming) on one captured image; a failed image passes through."""
        if isinstance(item, Failure):
            return item
        entry, capture, seconds = item
        return self._finish_or_fail(entry, capture, seconds)

    def _finish_or_fail(self, entry: _Loaded, capture: dict[str, Any], seconds: float) -> SegmentationResult | Failure:
        try:
            return self._finish(entry, capture, capture_seconds=seconds)
        except ZeroSegError as exc:
            return Failure(entry.source, _named(entry.source, str(exc)), exc)
        except (RuntimeError, ValueError, OSError) as exc:
            return Failure(entry.source, f"{entry.source or 'image'}: {type(exc).__name__}: {one_line(exc)}", exc)

    def _tree_for(self, capture: dict[str, Any], kept: Any) -> Any:
        """The segment tree to cut (``kept`` when it fits the settings), or None when trees are off or unsupported."""
        if not self.keep_tree or self.segmenter.tree_spec is None:
            return None
        if kept is not None and self.segmenter.tree_fits(kept):
            return kept
        bound = None if self.keep_tree is True else float(self.keep_tree)
        return self.segmenter.build_tree(capture, bound=bound)

    def _finish(
        self, entry: _Loaded, capture: dict[str, Any], *, capture_seconds: float, tree: Any = None
    ) -> SegmentationResult:
        size = (entry.tensor.shape[1], entry.tensor.shape[2])
        start = time.perf_counter()
        tree = self._tree_for(capture, tree)
        extra = {"tree": tree} if tree is not None else {}
        labels = self.segmenter.segment_capture(capture, output_size=size, image=entry.tensor, **extra)
        labels = canonical_labels(labels)
        timings = {"load": entry.load_seconds, "capture": capture_seconds, "segment": time.perf_counter() - start}
        segments = None
        if self.namer is not None:
            start = time.perf_counter()
            labels, segments = name_segments(self.namer, entry.pil, labels, merge_same_label=self.merge_same_label)
            timings["name"] = time.perf_counter() - start
        return SegmentationResult(
            labels=labels,
            method=self.segmenter.method,
            settings=self.settings(),
            source=entry.source,
            segments=segments if segments is not None else segments_of(labels),
            image=np.asarray(entry.pil),
            capture=_on_host(capture) if self.keep_capture else None,
            tree=tree,
            timings=timings,
        )


def name_segments(
    namer: Any, image: Any, labels: np.ndarray, *, merge_same_label: bool = False, num_alternatives: int = 3
) -> tuple[np.ndarray, list[Segment]]:
    """Name every segment of ``labels`` (and merge same-named ones): the label map and its named segments."""
    from zeroseg.openvocab.naming import merge_same_label as merge_by_label

    named = namer.name_segments(image, labels)
    if merge_same_label:
        labels, named = merge_by_label(labels, named)
    names = namer.class_names
    segments = []
    for segment in named:
        order = np.argsort(-segment.probabilities)[1 : num_alternatives + 1]
        segments.append(
            Segment(
                id=segment.segment_id,
                area=segment.area,
                bbox=tuple(segment.bbox),
                label=segment.label,
                score=float(segment.score),
                class_index=segment.class_index,
                alternatives=[(names[i], float(segment.probabilities[i])) for i in order],
            )
        )
    return np.asarray(labels, np.int32), segments


def build_pipeline(
    method: str | None = None,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    revision: str | None = None,
    variant: str | None = None,
    model_config: str | None = None,
    naming: NamingOptions | None = None,
    batch_size: int = 1,
    keep_capture: bool = False,
    keep_tree: bool | float | None = None,
    overlap: bool | None = None,
    backbone: Any = None,
    config: Any = None,
    **settings: Any,
) -> Pipeline:
    """Validate every setting, then load the model (and CLIP when naming) and return the pipeline.

    Args:
        method: a registered method (default :data:`zeroseg.registry.DEFAULT_METHOD`).
        device / dtype / revision / variant / model_config: how the backbone loads (see
            :class:`~zeroseg.segmenter.Segmenter`).
        naming: open-vocabulary naming (:class:`NamingOptions`), or ``None``.
        batch_size / keep_capture / keep_tree / overlap: see :class:`Pipeline`.
        backbone: an already loaded backbone to share.
        config: an already validated method config (then ``settings`` must be empty).
        **settings: method config fields (text values are parsed as on the command line, e.g.
            ``kl_threshold="1.1,0.9,0.9"``).

    Raises:
        ConfigError: a bad setting, before anything is loaded.
    """
    from zeroseg.options import build_config
    from zeroseg.registry import DEFAULT_METHOD, create_segmenter

    method = method or DEFAULT_METHOD
    config = config if config is not None else build_config(method, settings)
    if naming is not None:
        naming.check()
    if batch_size < 1:
        raise ConfigError(f"must be at least 1 (got {batch_size})", setting="batch_size")
    segmenter = create_segmenter(
        method,
        config=config,
        device=device,
        dtype=dtype,
        revision=revision,
        variant=variant,
        model_config=model_config,
        backbone=backbone,
    )
    namer = naming.build(segmenter.device) if naming is not None and naming.enabled else None
    return Pipeline(
        segmenter,
        namer=namer,
        merge_same_label=bool(naming and naming.merge_same_label),
        batch_size=batch_size,
        keep_capture=keep_capture,
        keep_tree=keep_tree,
        overlap=overlap,
        naming_settings=naming.to_dict() if namer is not None else None,
    )


@dataclass(frozen=True)
class NamingOptions:
    """Open-vocabulary naming of segments (the ``clip`` extra); off unless labels or a vocabulary is given.

    Attributes:
        labels: class list, comma separated, ``|`` between synonyms (``"cat,dog,sky|clouds"``).
        vocabulary: a shipped vocabulary name (``voc``, ``context``, ``coco-object``, ``ade20k``,
            ``coco-stuff``, ``cityscapes``).
        merge_same_label: merge segments that get the same name.
        background: with ``labels``, add a ``background`` class at index 0.
        clip_model / clip_weights: open_clip model and pretrained tag or checkpoint file (official defaults).
        clip_size: side of the square image CLIP sees (official: 1024).
    """

    labels: str | None = None
    vocabulary: str | None = None
    merge_same_label: bool = False
    background: bool = False
    clip_model: str = "convnext_large_d_320"
    clip_weights: str = "laion2b_s29b_b131k_ft_soup"
    clip_size: int = 1024

    @property
    def enabled(self) -> bool:
        """Whether segments are named."""
        return bool(self.labels or self.vocabulary)

    def check(self) -> None:
        """Refuse contradictory options before any model is loaded."""
        if self.labels and self.vocabulary:
            raise ConfigError("give either `--labels` or `--vocabulary`, not both")
        if not self.enabled and (self.merge_same_label or self.background):
            raise ConfigError("`--merge-same-label` and `--background` need `--labels` or `--vocabulary`")
        if self.clip_size < 32:
            raise ConfigError(f"must be at least 32 (got {self.clip_size})", setting="clip_size")
        if self.vocabulary:
            from zeroseg.openvocab.vocabularies import SHIPPED_VOCABULARIES

            if self.vocabulary not in SHIPPED_VOCABULARIES:
                raise ConfigError(
                    f"names no shipped vocabulary (got {self.vocabulary!r}); choose one of "
                    f"{', '.join(SHIPPED_VOCABULARIES)}, or give your own classes with --labels",
                    setting="vocabulary",
                )

    def build(self, device: Any) -> Any:
        """Load the CLIP namer."""
        from zeroseg.openvocab import SegmentNamer

        return SegmentNamer(
            self.clip_model,
            self.clip_weights,
            vocabulary=self.labels or self.vocabulary,
            device=device,
            add_background=self.background,
            image_size=self.clip_size,
        )

    def to_dict(self) -> dict[str, Any]:
        """The settings, for the run's record."""
        return asdict(self)


def _as_iterable(images: Any) -> Iterable[Any]:
    if isinstance(images, (str, Path, Image.Image, np.ndarray, ImageItem)) or hasattr(images, "__fspath__"):
        return [images]
    if isinstance(images, torch.Tensor):
        return list(images) if images.ndim == 4 else [images]
    return images


def _device_type(segmenter: Any) -> str | None:
    """The type of the device the segmenter's backbone runs on (``None`` for a method without a backbone)."""
    backbone = getattr(segmenter, "backbone", None)
    device = getattr(backbone, "device", None)
    return None if device is None else torch.device(device).type


def _on_host(capture: dict[str, Any]) -> dict[str, Any]:
    """A capture with its tensors on the CPU, to keep in a result (an accelerator's memory holds only the
    batches in flight)."""
    return {name: value.cpu() if isinstance(value, torch.Tensor) else value for name, value in capture.items()}


def _capture_failure(entry: _Loaded, exc: BaseException) -> Failure:
    line = f"{entry.source or 'image'}: segmentation failed ({type(exc).__name__}: {one_line(exc)})"
    return Failure(entry.source, line, exc)


def _stop(stages: list[ThreadPoolExecutor], window: deque[_InFlight]) -> None:
    """Drop the queued work of a stream that ended early and wait for the running stages to return."""
    for batch in window:
        for future in [batch.captured, *batch.outcomes]:
            future.cancel()
    for stage in stages:
        stage.shutdown(wait=True, cancel_futures=True)


def _source_of(image: Any) -> str | None:
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        return str(image)
    return None


def _named(source: str | None, message: str) -> str:
    """A message that names its image (load errors of paths already do; arrays get their source)."""
    if source is None or message.startswith(source):
        return message
    return f"{source}: {message}"
