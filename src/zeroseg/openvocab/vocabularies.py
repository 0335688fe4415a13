"""Class vocabularies for open-vocabulary naming: shipped benchmark sets and user lists.

A class is a tuple of synonyms and a display name (by default its first synonym). The text classifier scores
every synonym and keeps the best one per class (see :mod:`zeroseg.openvocab.text`); the display name is only
shown. The shipped sets are the official FC-CLIP / ODISE lists that DiffCut's open-vocabulary evaluation
uses (Apache-2.0, see ``vocabularies/NOTICE.md``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from zeroseg.errors import ConfigError

logger = logging.getLogger(__name__)

SHIPPED_VOCABULARIES = ("voc", "context", "coco-object", "ade20k", "coco-stuff", "cityscapes")
SYNONYM_SEPARATOR = "|"
CLASS_SEPARATOR = ","


@dataclass(frozen=True)
class Vocabulary:
    """An ordered set of classes, each a tuple of synonyms.

    Attributes:
        name: shipped vocabulary name, or ``"custom"`` for a user list.
        classes: one tuple of synonyms per class, all of them scored, in this order. Class index = position.
        background_index: index of the background class, or ``None`` when the set has none.
        display_names: the name shown for each class; ``None`` shows each class's first synonym.
    """

    name: str
    classes: tuple[tuple[str, ...], ...]
    background_index: int | None = None
    display_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.classes:
            raise ConfigError(f"`vocabulary` {self.name!r} has no classes; give at least one class name")
        for index, synonyms in enumerate(self.classes):
            if not synonyms or any(not s.strip() for s in synonyms):
                raise ConfigError(f"`vocabulary` class {index} of {self.name!r} has an empty name: {synonyms!r}")
        if self.background_index is not None and not 0 <= self.background_index < len(self.classes):
            raise ConfigError(f"`background_index` is {self.background_index}, outside 0..{len(self.classes) - 1}")
        if self.display_names is not None:
            if len(self.display_names) != len(self.classes) or any(not n.strip() for n in self.display_names):
                raise ConfigError(
                    f"`display_names` of {self.name!r} must be {len(self.classes)} non-empty names, one per class; "
                    f"got {len(self.display_names)}"
                )

    @property
    def names(self) -> list[str]:
        """Display name of each class (its first synonym unless :attr:`display_names` says otherwise)."""
        if self.display_names is not None:
            return list(self.display_names)
        return [synonyms[0] for synonyms in self.classes]

    @property
    def num_classes(self) -> int:
        """Number of classes, background included."""
        return len(self.classes)

    @property
    def key(self) -> tuple[tuple[str, ...], ...]:
        """Hashable identity of the classes and synonyms (for caching text embeddings)."""
        return self.classes


def list_vocabularies() -> list[str]:
    """Names of the vocabularies shipped with zeroseg."""
    return list(SHIPPED_VOCABULARIES)


def load_vocabulary(name: str) -> Vocabulary:
    """Load a shipped vocabulary: the official class list, scored with exactly its synonyms in their order.

    ``voc``, ``context`` and ``coco-object`` have ``background`` at index 0, so class index = dataset
    label + 1 (VOC's background carries a long list of synonyms for scene stuff; the other two only the
    word itself), as in DiffCut's open-vocabulary evaluation. ``ade20k``, ``coco-stuff`` and ``cityscapes``
    have no background class. Display names are the datasets' own class names (``dining table``, not the
    first synonym ``diningtable``); they are never scored.

    Raises:
        ConfigError: ``name`` is not a shipped vocabulary.

    References:
        DiffCut (Couairon et al., NeurIPS 2024), official code ``eval_diffcut_openvoc.py`` (class sets,
        synonyms and background handling), with the prompt-engineered class lists of FC-CLIP (Yu et al.,
        NeurIPS 2023) and ODISE (Xu et al., CVPR 2023).
    """
    if name not in SHIPPED_VOCABULARIES:
        raise ConfigError(
            f"`vocabulary` {name!r} is not a shipped vocabulary; use one of "
            f"{', '.join(SHIPPED_VOCABULARIES)} "
            "or give class names such as 'cat,dog,sky|clouds'"
        )
    text = resources.files("zeroseg.openvocab").joinpath("vocabularies", f"{name}.json").read_text("utf-8")
    data = json.loads(text)
    return Vocabulary(
        name=name,
        classes=tuple(tuple(entry["synonyms"]) for entry in data["classes"]),
        background_index=data["background_index"],
        display_names=tuple(entry["name"] for entry in data["classes"]),
    )


def parse_class_list(classes: str | Sequence[str], *, add_background: bool = False) -> Vocabulary:
    """Build a vocabulary from user class names.

    Classes are separated by commas in a string (``"cat,dog,sky|clouds"``) or given as a list; synonyms of one
    class are separated by ``|``. Duplicate classes are dropped (first kept).

    Args:
        classes: the class names.
        add_background: prepend a ``background`` class at index 0 (as the spec does for Context and
            COCO-Object), unless a class already has ``background`` as its first synonym.

    Raises:
        ConfigError: no class names, or an empty synonym.
    """
    items = classes.split(CLASS_SEPARATOR) if isinstance(classes, str) else list(classes)
    parsed: list[tuple[str, ...]] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"`vocabulary` entries must be strings; got {item!r}")
        if not item.strip():
            continue
        synonyms = tuple(s.strip() for s in item.split(SYNONYM_SEPARATOR))
        if any(not s for s in synonyms):
            raise ConfigError(f"`vocabulary` entry {item!r} has an empty synonym; write e.g. 'sky|clouds'")
        if synonyms not in parsed:
            parsed.append(synonyms)
    if not parsed:
        raise ConfigError(f"`vocabulary` {classes!r} has no class names; give e.g. 'cat,dog,grass,sky'")
    background_index = next((i for i, c in enumerate(parsed) if c[0].lower() == "background"), None)
    if add_background and background_index is None:
        parsed.insert(0, ("background",))
        background_index = 0
    return Vocabulary(name="custom", classes=tuple(parsed), background_index=background_index)


def resolve_vocabulary(vocabulary: str | Sequence[str] | Vocabulary, *, add_background: bool = False) -> Vocabulary:
    """Turn a shipped name, a class list (string or sequence) or a :class:`Vocabulary` into a vocabulary.

    A string that names a shipped vocabulary loads it; any other string is a class list.
    ``add_background`` applies to class lists only (shipped sets already follow the spec).
    """
    if isinstance(vocabulary, Vocabulary):
        return vocabulary
    if isinstance(vocabulary, str) and vocabulary.strip() in SHIPPED_VOCABULARIES:
        return load_vocabulary(vocabulary.strip())
    return parse_class_list(vocabulary, add_background=add_background)
