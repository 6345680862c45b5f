"""The two-traversal place-recognition readers (two-pass, gardens-point, nordland), with fixtures
written in each dataset's exact layout, and the real corridor set through ``two-pass``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from maploc.data.gardens_point import GardensPoint, GardensPointOptions
from maploc.data.nordland import Nordland, NordlandOptions
from maploc.data.two_pass import PlaceMeta, TwoPass, TwoPassOptions
from maploc.errors import ConfigError, DataError
from maploc.evaluation import evaluate
from maploc.types import PoseEstimate

CORRIDOR = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "corridor"


def _write_images(folder: Path, names: list[str], seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        image = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / name), image)


def _two_pass(root: Path, n_ref: int = 6, n_query: int = 5, truth: str | None = None) -> Path:
    _write_images(root / "ref", [f"{i:07d}.jpg" for i in range(n_ref)])
    _write_images(root / "query", [f"{i:07d}.jpg" for i in range(n_query)], seed=1)
    if truth is None:
        truth = "query,matching_refs\n" + "".join(f"{i},{i} {i + 1}\n" for i in range(n_query))
    (root / "ground_truth.csv").write_text(truth)
    return root


def test_two_pass_layout(tmp_path: Path) -> None:
    root = _two_pass(tmp_path)
    ref, query = TwoPass(root, "map"), TwoPass(root, "query")
    train = TwoPass(root, "train")
    assert (len(ref), len(query), len(train)) == (6, 5, 6)
    sample = query[2]
    assert sample.image.shape == (3, 12, 16) and sample.T_cam2world is None
    assert sample.name == "query/0000002" and sample.timestamp == 2.0
    assert sample.extras["true_map_indices"] == (2, 3) and sample.condition == "query"
    meta = ref.metadata(3)
    assert isinstance(meta, PlaceMeta)
    assert meta.matching_queries == frozenset({"query/0000002", "query/0000003"})
    assert ref.metadata(0).matching_queries == frozenset({"query/0000000"})
    assert ref.metadata(5).matching_queries == frozenset({"query/0000004"})  # query 4: refs 4, 5
    assert TwoPass(root, "map", image_height=6)[0].image.shape == (3, 6, 8)


def test_two_pass_ground_truth_rows(tmp_path: Path) -> None:
    root = _two_pass(tmp_path, truth="query,matching_refs\n0,1\n2,\n")
    query = TwoPass(root, "query")
    assert [query[i].extras["true_map_indices"] for i in range(5)] == [(1,), (), (), (), ()]


@pytest.mark.parametrize(
    ("truth", "message"),
    [
        ("q,refs\n0,1\n", "line 1: expected the header"),
        ("query,matching_refs\n0,1,2\n", "line 2: expected 2 fields"),
        ("query,matching_refs\n0,a\n", "line 2: indices must be integers"),
        ("query,matching_refs\n9,1\n", "line 2: query index 9 outside"),
        ("query,matching_refs\n0,7\n", "line 2: reference index 7 outside"),
        ("query,matching_refs\n0,1\n0,2\n", "line 3: query 0 is listed twice"),
    ],
)
def test_two_pass_bad_ground_truth(tmp_path: Path, truth: str, message: str) -> None:
    root = _two_pass(tmp_path, truth=truth)
    with pytest.raises(DataError, match=message) as info:
        TwoPass(root, "query")
    assert "ground_truth.csv" in str(info.value)


def test_two_pass_missing_files(tmp_path: Path) -> None:
    root = _two_pass(tmp_path)
    (root / "ground_truth.csv").unlink()
    with pytest.raises(DataError, match="ground_truth.csv: ground truth file not found"):
        TwoPass(root, "map")
    with pytest.raises(DataError, match="query2: folder not found"):
        TwoPass(root, "map", options=TwoPassOptions(query_folder="query2"))


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    root = _two_pass(tmp_path)
    (root / "query" / "0000003.jpg").write_bytes(b"not a jpeg")
    query = TwoPass(root, "query")
    with pytest.raises(DataError, match=r"0000003\.jpg: cannot decode"):
        query.validate()
    with pytest.raises(DataError, match=r"0000003\.jpg"):
        query[3]


def _gardens(root: Path, n: int = 8, night: int | None = None) -> Path:
    for i, folder in enumerate(("day_left", "day_right", "night_right")):
        count = night if (folder == "night_right" and night is not None) else n
        _write_images(root / folder, [f"Image{j:03d}.jpg" for j in range(count)], seed=i)
    return root


def test_gardens_point_layout(tmp_path: Path) -> None:
    root = _gardens(tmp_path)
    ref, query = GardensPoint(root, "map"), GardensPoint(root, "query")
    assert len(ref) == len(query) == 8
    assert query[5].name == "night_right/Image005" and query[5].condition == "night_right"
    assert query[5].extras["true_map_indices"] == (3, 4, 5, 6, 7)
    assert ref.metadata(0).name == "day_left/Image000"
    opts = GardensPointOptions(ref_traversal="day_right", query_traversal="day_left", frame_tolerance=0)
    q = GardensPoint(root, "query", options=opts)
    assert q[1].extras["true_map_indices"] == (1,) and q.condition == "day_left"
    assert GardensPoint(root, "map", options=opts).metadata(1).matching_queries == frozenset({"day_left/Image001"})


def test_gardens_point_frames_sorted_numerically(tmp_path: Path) -> None:
    _write_images(tmp_path / "day_left", [f"Image{j}.jpg" for j in range(12)])
    _write_images(tmp_path / "night_right", [f"Image{j:03d}.jpg" for j in range(12)])
    ref = GardensPoint(tmp_path, "map")
    assert [ref.metadata(i).name for i in (2, 10)] == ["day_left/Image2", "day_left/Image10"]


def test_gardens_point_bad_input(tmp_path: Path) -> None:
    root = _gardens(tmp_path, night=7)
    with pytest.raises(DataError, match=r"night_right: 7 frames, but .*day_left has 8"):
        GardensPoint(root, "map")
    (root / "day_right" / "Image004.jpg").unlink()
    with pytest.raises(DataError, match=r"day_right: frame Image004.jpg is missing"):
        GardensPoint(root, "map", options=GardensPointOptions(ref_traversal="day_right"))
    with pytest.raises((ConfigError, ValueError), match="not a Gardens Point traversal"):
        GardensPointOptions(query_traversal="night_left")


def _nordland(root: Path, names: list[str], seasons: tuple[str, ...] = ("summer", "winter")) -> Path:
    for i, season in enumerate(seasons):
        _write_images(root / season, names, seed=i)
    return root


def test_nordland_layout(tmp_path: Path) -> None:
    names = [f"images-{i:05d}.png" for i in (10, 11, 12, 13, 14)]
    root = _nordland(tmp_path, names, ("summer", "winter", "fall"))
    ref, query = Nordland(root, "map"), Nordland(root, "query")
    assert len(ref) == len(query) == 5
    assert query[1].name == "winter/images-00011" and query[1].extras["true_map_indices"] == (0, 1, 2, 3)
    fall = Nordland(root, "query", options=NordlandOptions(query_season="fall", frame_tolerance=1))
    assert fall[4].extras["true_map_indices"] == (3, 4) and fall[4].sequence == "fall"


def test_nordland_missing_frame(tmp_path: Path) -> None:
    names = [f"images-{i:05d}.png" for i in range(4)]
    root = _nordland(tmp_path, names)
    (root / "winter" / "images-00002.png").unlink()
    with pytest.raises(DataError, match=r"winter/images-00002.png: missing"):
        Nordland(root, "map")
    ref = Nordland(root, "map", options=NordlandOptions(allow_missing=True))
    query = Nordland(root, "query", options=NordlandOptions(allow_missing=True))
    assert [ref.metadata(i).name for i in range(3)] == ["summer/images-00000", "summer/images-00001",
                                                       "summer/images-00003"]
    assert query[2].name == "winter/images-00003"
    with pytest.raises(DataError, match="autumn: folder not found"):
        Nordland(root, "map", options=NordlandOptions(query_season="autumn"))


def _estimate(match: str, confidence: float) -> PoseEstimate:
    from maploc.types import Retrieval

    return PoseEstimate(success=True, confidence=confidence, retrieval=Retrieval(indices=[int(match.split("/")[-1])]))


def test_evaluation_reads_index_ground_truth(tmp_path: Path) -> None:
    root = _two_pass(tmp_path)
    ref, query = TwoPass(root, "map"), TwoPass(root, "query")
    map_meta = [ref.metadata(i) for i in range(len(ref))]
    from maploc.api import SampleMeta

    metas = [SampleMeta.of(query[i]) for i in range(len(query))]  # what the runner hands over
    # queries 0..2 correct (true refs i, i+1), query 3 wrong with low confidence, 4 wrong with high
    matches = ["ref/0000000", "ref/0000002", "ref/0000003", "ref/0000000", "ref/0000001"]
    conf = [0.9, 0.8, 0.7, 0.1, 0.95]
    estimates = [_estimate(m, c) for m, c in zip(matches, conf)]
    result = evaluate("sequence", metas, estimates, map_samples=map_meta)
    assert [r["correct"] for r in result.rows] == [True, True, True, False, False]
    assert result.metrics["recall_at_100_precision"] == 0.0  # the most confident match is wrong
    # the same truth from the query side (full samples with extras) and for retrieval
    samples = [query[i] for i in range(len(query))]
    plain_map = [type(map_meta[0]).__mro__[1](name=m.name) for m in map_meta]
    result2 = evaluate("sequence", samples, estimates, map_samples=plain_map)
    assert [r["correct"] for r in result2.rows] == [True, True, True, False, False]
    retrieval = evaluate("retrieval", metas, estimates, map_samples=map_meta, recall_ns=(1,))
    assert retrieval.metrics["recall_at_1"] == pytest.approx(60.0)


@pytest.mark.data
def test_corridor_through_two_pass() -> None:
    if not (CORRIDOR / "ground_truth.csv").is_file():
        pytest.skip(f"real corridor set not found at {CORRIDOR}")
    ref, query = TwoPass(CORRIDOR, "map"), TwoPass(CORRIDOR, "query")
    assert len(ref) == len(query) == 111
    sample = query[50]
    assert sample.image.shape == (3, 120, 160)
    assert sample.extras["true_map_indices"] == (48, 49, 50, 51, 52)
    assert query[0].extras["true_map_indices"] == (0, 1, 2)
    ref.validate()
    # the index ground truth reaches the evaluation: a perfect diagonal match is always correct
    from maploc.api import SampleMeta

    metas = [SampleMeta(name=query.metadata(i).name) for i in range(len(query))]
    estimates = [_estimate(ref.metadata(i).name, 1.0) for i in range(len(query))]
    result = evaluate("sequence", metas, estimates, map_samples=[ref.metadata(i) for i in range(len(ref))])
    assert result.metrics["pr_auc"] == pytest.approx(1.0)
