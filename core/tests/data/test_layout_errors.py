"""A file-based dataset's missing-file error says which layout it expects and names the README section
that describes it (``README.md#<dataset>-layout``), and that section exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from maploc.data.cambridge import CambridgeLandmarks
from maploc.data.dsac_layout import DSACLayout
from maploc.data.gardens_point import GardensPoint
from maploc.data.layouts import expected_layout, readme_anchor
from maploc.data.nordland import Nordland
from maploc.data.sevenscenes import SevenScenes
from maploc.data.two_pass import TwoPass
from maploc.errors import DataError

README = Path(__file__).resolve().parents[3] / "README.md"


def readme_anchors() -> set[str]:
    """GitHub's anchors of the README's headings (lower case, spaces to hyphens, punctuation dropped)."""
    anchors = set()
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def _partial_7scenes(root: Path) -> str:
    (root / "TrainSplit.txt").write_text("sequence1\n")
    return "seq-01: sequence folder not found"


def _partial_dsac(root: Path) -> str:
    (root / "train" / "rgb").mkdir(parents=True)
    (root / "train" / "rgb" / "frame-000000.png").write_bytes(b"not decoded while scanning")
    return "train/calibration: folder not found"


def _partial_cambridge(root: Path) -> str:
    (root / "dataset_train.txt").write_text("Visual Landmark Dataset V1\nImageFile, Camera Position [X Y Z W P Q R]\n\n"
                                            "seq1/frame00001.png 1 2 3 1 0 0 0\n")
    return "seq1/frame00001.png: image not found"


def _partial_two_pass(root: Path) -> str:
    (root / "ref").mkdir()
    return "query: folder not found"


def _partial_gardens_point(root: Path) -> str:
    (root / "day_left").mkdir()
    return "day_left: no ImageNNN.jpg frames found"


def _partial_nordland(root: Path) -> str:
    (root / "summer").mkdir()
    return "winter: folder not found"


CASES = [
    (SevenScenes, "TrainSplit.txt: file not found", _partial_7scenes, "TestSplit.txt"),
    (DSACLayout, "train: DSAC* split folder not found", _partial_dsac, "calibration/"),
    (CambridgeLandmarks, "dataset_train.txt: Cambridge pose list not found", _partial_cambridge, "dataset_test.txt"),
    (TwoPass, "ref: folder not found", _partial_two_pass, "ground_truth.csv"),
    (GardensPoint, "day_left: folder not found", _partial_gardens_point, "night_right/"),
    (Nordland, "summer: folder not found", _partial_nordland, "winter/"),
]


@pytest.mark.parametrize(("cls", "empty_error", "partial", "layout_word"), CASES, ids=[c[0].name for c in CASES])
def test_missing_files_name_the_layout_and_its_readme_section(tmp_path, cls, empty_error, partial, layout_word):
    anchor = readme_anchor(cls.name)
    assert anchor.partition("#")[2] in readme_anchors(), f"README has no section for {anchor}"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as e:
        cls(empty, "train")
    message = str(e.value)
    assert empty_error in message and f"the {cls.name} dataset expects" in message
    assert layout_word in message and message.endswith(f"(see {anchor})") and "\n" not in message
    root = tmp_path / "partial"
    root.mkdir()
    expected = partial(root)
    with pytest.raises(DataError) as e:
        cls(root, "train")
    assert expected in str(e.value) and str(e.value).endswith(f"(see {anchor})")


def test_the_hint_is_added_once():
    with pytest.raises(DataError) as e:
        with expected_layout("outer", "A"):
            with expected_layout("inner", "B"):
                raise DataError("x: file not found")
    assert str(e.value) == "x: file not found; the inner dataset expects B (see README.md#inner-layout)"


def test_cli_names_the_layout_before_any_work(run_cli, tmp_path):
    root = tmp_path / "X"
    root.mkdir()
    proc = run_cli("run", "--method", "nn-retrieval", "--dataset", "dsac", "--data-root", str(root),
                   "--out", str(tmp_path / "run"), "--no-progress")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "X/train: DSAC* split folder not found" in lines[0]
    assert "the dsac dataset expects <root>/train/ and <root>/test/" in lines[0]
    assert lines[0].endswith("(see README.md#dsac-layout)")
    assert not (tmp_path / "run").exists()


def test_strecha_and_colmap_errors_name_a_readme_section_that_exists(tmp_path):
    from maploc.data.strecha import LAYOUT_ANCHOR, Strecha

    anchors = readme_anchors()
    assert LAYOUT_ANCHOR == readme_anchor("strecha") and LAYOUT_ANCHOR.partition("#")[2] in anchors
    with pytest.raises(DataError, match="README.md#strecha-layout"):
        Strecha(tmp_path, "map")
    colmap = pytest.importorskip("maploc_features.colmap_dataset")
    assert colmap.LAYOUT_ANCHOR == readme_anchor("colmap") and colmap.LAYOUT_ANCHOR.partition("#")[2] in anchors
