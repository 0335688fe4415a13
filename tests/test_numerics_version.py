"""``NUMERICS_VERSION`` changes whenever the pinned outputs do.

The feature cache and the evaluation results logs are keyed by :data:`zeroseg._version.NUMERICS_VERSION`: new
numbers under the old version would let runs reuse captures and per-image results of the old numbers as current.
``numerics_versions.json`` records, per version, one digest per float-kernel machine (:mod:`pin_machine`) of that
machine's pins: the label maps (``pinned_labels.json``) and the backbone outputs (``backbones/pinned_outputs.json``).
The backbone outputs are in the digest because they are what the feature cache stores: a changed capture makes
cached entries stale just as a changed label map makes results logs stale.

Pins recorded for a new machine add its digest under the current version. After a deliberate change of the pins,
bump ``NUMERICS_VERSION`` in ``src/zeroseg/_version.py`` and record the new digests with
``PYTHONPATH=tests python tests/test_numerics_version.py --write``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

from zeroseg._version import NUMERICS_VERSION

HERE = Path(__file__).parent
PINS = {"labels": HERE / "pinned_labels.json", "backbone_outputs": HERE / "backbones" / "pinned_outputs.json"}
VERSIONS = HERE / "numerics_versions.json"
"""NUMERICS_VERSION -> {machine key: digest of that machine's pins}."""
WRITE = "PYTHONPATH=tests python tests/test_numerics_version.py --write"


def pin_digests() -> dict[str, str]:
    """sha256 of each machine's pins, as canonical JSON (sorted keys, no spaces)."""
    pins = {kind: json.loads(path.read_text()) for kind, path in PINS.items()}
    machines = sorted(set().union(*pins.values()))
    return {machine: _digest({kind: pinned.get(machine) for kind, pinned in pins.items()}) for machine in machines}


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def changed_machines(recorded: dict[str, str], digests: dict[str, str]) -> list[str]:
    """Machines whose pins differ from those recorded under the current version."""
    return [machine for machine, digest in digests.items() if recorded.get(machine, digest) != digest]


def test_numerics_version_changes_with_the_pinned_outputs():
    recorded = json.loads(VERSIONS.read_text()).get(str(NUMERICS_VERSION), {})
    digests = pin_digests()
    new = json.dumps({str(NUMERICS_VERSION + 1): digests}, indent=1)
    changed = changed_machines(recorded, digests)
    assert not changed, (
        f"the pinned outputs of {'; '.join(changed)} changed but NUMERICS_VERSION is still {NUMERICS_VERSION}: "
        f"bump it in src/zeroseg/_version.py, then run `{WRITE}` (it adds to {VERSIONS.name}: {new})"
    )
    missing = [machine for machine in digests if machine not in recorded]
    current = json.dumps({str(NUMERICS_VERSION): digests}, indent=1)
    assert not missing, (
        f"no digest recorded under NUMERICS_VERSION {NUMERICS_VERSION} for {'; '.join(missing)}: run `{WRITE}` "
        f"(it sets in {VERSIONS.name}: {current})"
    )


def test_a_changed_pin_asks_for_a_new_version(tmp_path, monkeypatch):
    labels = json.loads(PINS["labels"].read_text())
    machine = sorted(labels)[0]
    labels[machine][sorted(labels[machine])[0]] = ["0" * 16, "0" * 16]
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    monkeypatch.setitem(PINS, "labels", tmp_path / "labels.json")
    with pytest.raises(
        AssertionError, match=re.escape(f"the pinned outputs of {machine} changed but NUMERICS_VERSION")
    ):
        test_numerics_version_changes_with_the_pinned_outputs()


if __name__ == "__main__" and "--write" in sys.argv:  # record the current pins under the current version
    versions = json.loads(VERSIONS.read_text()) if VERSIONS.exists() else {}
    entry = versions.setdefault(str(NUMERICS_VERSION), {})
    if changed := changed_machines(entry, pin_digests()):
        sys.exit(f"the pins of {'; '.join(changed)} changed: bump NUMERICS_VERSION first")
    entry.update(pin_digests())
    ordered = {key: versions[key] for key in sorted(versions, key=int)}
    VERSIONS.write_text(json.dumps(ordered, indent=2) + "\n")
    print(f"recorded {len(entry)} machines under NUMERICS_VERSION {NUMERICS_VERSION} in {VERSIONS}")
