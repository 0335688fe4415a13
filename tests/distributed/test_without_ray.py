"""What needs no Ray running: input expansion, option checks, and the local mode never importing Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from zeroseg.cli.app import app
from zeroseg.distributed.sources import expand_sources

runner = CliRunner()


def _touch_images(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16)).save(path)


def test_folders_and_globs_get_the_local_modes_output_names(tmp_path):
    _touch_images(tmp_path, "photos/a.png", "photos/2024/b.png", "other/a.png")
    items, problems = expand_sources([str(tmp_path / "photos"), str(tmp_path / "other" / "*.png")], recursive=True)
    assert problems == []
    assert sorted(item.image_id for item in items) == ["2024/b", "other/a", "photos/a"]


def test_text_lists_and_manifests_resolve_relative_paths_and_keep_their_image_ids(tmp_path):
    _touch_images(tmp_path, "data/x.png", "data/y.png", "data/z.png")
    (tmp_path / "data" / "list.txt").write_text("# a comment\nx.png\n\n")
    pq.write_table(pa.table({"path": ["y.png"], "image_id": ["train/0001"]}), tmp_path / "data" / "m.parquet")
    (tmp_path / "data" / "m.csv").write_text(f"uri\n{tmp_path / 'data' / 'z.png'}\n")
    arguments = [str(tmp_path / "data" / name) for name in ("list.txt", "m.parquet", "m.csv")]
    items, problems = expand_sources(arguments)
    assert problems == []
    assert {item.image_id: Path(item.location).name for item in items} == {
        "train/0001": "y.png",
        "x": "x.png",
        "z": "z.png",
    }


def test_uris_are_listed_through_pyarrow_file_systems(tmp_path):
    _touch_images(tmp_path, "bucket/a.png", "bucket/deep/b.png")
    (tmp_path / "bucket" / "readme.txt").write_text("not an image")
    items, _ = expand_sources([f"file://{tmp_path / 'bucket'}/"], recursive=True)
    assert sorted(item.location for item in items) == [
        f"file://{tmp_path / 'bucket'}/a.png",
        f"file://{tmp_path / 'bucket'}/deep/b.png",
    ]
    assert sorted(item.image_id for item in items) == ["a", "deep/b"]
    items, problems = expand_sources([f"file://{tmp_path / 'bucket'}/*.png", f"file://{tmp_path / 'nothing'}"])
    assert [item.image_id for item in items] == ["a"]
    assert problems == [f"file://{tmp_path / 'nothing'}: no such file or folder"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"file_name": ["a.png"]}, "manifest has no path column (path, uri, url, file, filename, image, image_path)"),
        ({"path": ["a.png"], "image_id": ["../escape"]}, "image_id '../escape' cannot name an output"),
    ],
)
def test_bad_manifests_are_one_line_problems(tmp_path, content, problem):
    pq.write_table(pa.table(content), tmp_path / "m.parquet")
    items, problems = expand_sources([str(tmp_path / "m.parquet")])
    assert items == [] and len(problems) == 1 and problem in problems[0] and str(tmp_path) in problems[0]


def test_ray_options_without_the_ray_engine_are_refused(tmp_path):
    _touch_images(tmp_path, "a.png")
    for flags in (["--format", "parquet"], ["--max-retries", "1"]):
        result = runner.invoke(app, ["segment", str(tmp_path / "a.png"), *flags])
        assert result.exit_code == 1 and "need `--engine ray`" in result.output
    result = runner.invoke(app, ["segment", str(tmp_path / "a.png"), "--engine", "spark"])
    assert result.exit_code == 1 and "`--engine` must be local or ray" in result.output


def test_the_local_mode_never_imports_ray(tiny_sd_path, tmp_path):
    _touch_images(tmp_path, "a.png")
    script = (
        "import sys; from zeroseg.cli.app import app\n"
        "try:\n"
        f"    app(['segment', {str(tmp_path / 'a.png')!r}, '--model', {str(tiny_sd_path)!r}, '--method', 'diffseg',"
        f" '--size', '64', '-o', {str(tmp_path / 'out')!r}])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print('ray' in sys.modules, 'zeroseg.distributed' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["False", "False"]
    assert (tmp_path / "out" / "a.png").is_file()


def test_the_failures_manifest_is_an_input_manifest_with_the_same_output_names(tmp_path):
    from zeroseg.distributed.report import FailureRow, failures_csv

    _touch_images(tmp_path, "photos/2024/b.png")
    failure = FailureRow("2024/b", str(tmp_path / "photos/2024/b.png"), "segment", 'b.png: failed, "quoted", twice')
    (tmp_path / "zeroseg-failures.csv").write_bytes(failures_csv([failure]))
    items, problems = expand_sources([str(tmp_path / "zeroseg-failures.csv")])
    assert problems == [] and [(item.image_id, item.location) for item in items] == [("2024/b", failure.path)]
