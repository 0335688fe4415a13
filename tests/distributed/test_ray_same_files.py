"""``--engine ray`` and the local mode write the same bytes for the same inputs, in every format.

Both go through :class:`zeroseg.folder_run.FolderRun`. The local run here uses one torch thread, as each Ray
worker on one CPU does, so not even a floating-point tie can tell them apart.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from zeroseg.cli.app import app
from zeroseg.distributed import read_label_maps

runner = CliRunner()
FLAGS = ["--size", "64", "--no-pamr", "--tau", "0.6", "--batch-size", "2"]
RAY_ONLY = {"zeroseg-report.json", "zeroseg-failures.csv"}


@pytest.fixture(scope="module")
def photos(collection: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six of the collection's photos (several sizes, one in a subfolder)."""
    folder = tmp_path_factory.mktemp("six")
    for path in sorted((collection / "photos").rglob("img*.png"))[:6]:
        target = folder / path.relative_to(collection / "photos")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    return folder


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_format_is_byte_identical_and_parquet_decodes_to_the_same_maps(
    ray_session, photos, tiny_sdxl_path, tmp_path
):
    common = ["segment", str(photos), "-r", "--model", str(tiny_sdxl_path), *FLAGS]
    save = ["--save", "png,overlay,json,tree"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = runner.invoke(app, [*common, *save, "-o", str(tmp_path / "local")])
    finally:
        torch.set_num_threads(threads)
    assert local.exit_code == 0, local.output
    ray_files = runner.invoke(app, [*common, *save, "-o", str(tmp_path / "ray"), "--engine", "ray"])
    assert ray_files.exit_code == 0, ray_files.output
    written, expected = _files(tmp_path / "ray"), _files(tmp_path / "local")
    assert {name for name in written if name not in RAY_ONLY} == set(expected)
    assert sum(name.endswith("_tree.json") for name in expected) == 6
    for name, content in expected.items():
        assert written[name] == content, name

    parquet = runner.invoke(app, [*common, "-o", str(tmp_path / "parquet"), "--engine", "ray", "--format", "parquet"])
    assert parquet.exit_code == 0, parquet.output
    maps = read_label_maps(str(tmp_path / "parquet"))
    assert len(maps) == 6
    for image_id, labels in maps.items():
        local_map = np.asarray(Image.open(tmp_path / "local" / f"{image_id}.png")).astype(np.int32)
        np.testing.assert_array_equal(labels, local_map, err_msg=image_id)
