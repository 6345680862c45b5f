"""Bad input gives one clear line naming the file or setting (exit 2), before any work."""

import numpy as np
import pytest


def _write_two_pass(root, ref_sizes, query_sizes, ground_truth=True):
    import cv2

    for folder, sizes in (("ref", ref_sizes), ("query", query_sizes)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i, (h, w) in enumerate(sizes):
            img = (np.random.default_rng(i).random((h, w, 3)) * 255).astype(np.uint8)
            cv2.imwrite(str(root / folder / f"{i:07d}.png"), img)
    if ground_truth:
        rows = ["query,matching_refs"] + [f"{i},{min(i, len(ref_sizes) - 1)}" for i in range(len(query_sizes))]
        (root / "ground_truth.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture
def run_cli(capsys, monkeypatch, tmp_path):
    from maploc.cli import main

    monkeypatch.delenv("MAPLOC_RUN_DIR", raising=False)

    def run(*args):
        capsys.readouterr()
        status = main(["run", "--no-progress", "--out", str(tmp_path / "run"), *args])
        captured = capsys.readouterr()
        return status, captured.err.strip()

    return run


BASE = ("--method", "netvlad", "--dataset", "two-pass", "-o", "train.max_steps=0", "-o", "train.epochs=0")


def test_missing_ground_truth_names_the_file(tmp_path, run_cli):
    _write_two_pass(tmp_path / "d", [(24, 32)] * 4, [(24, 32)] * 4, ground_truth=False)
    status, err = run_cli(*BASE, "--data-root", str(tmp_path / "d"))
    assert status == 2 and len(err.splitlines()) == 1 and "ground_truth.csv" in err


def test_mismatched_image_sizes_name_both_images(tmp_path, run_cli):
    _write_two_pass(tmp_path / "d", [(24, 32), (24, 32), (30, 40)], [(24, 32)] * 2)
    status, err = run_cli(*BASE, "--data-root", str(tmp_path / "d"), "-o", "data.image_height=null")
    assert status == 2 and len(err.splitlines()) == 1
    assert "0000002" in err and "data.image_height" in err


def test_empty_map_is_an_error(tmp_path, run_cli):
    _write_two_pass(tmp_path / "d", [], [(24, 32)] * 2, ground_truth=False)
    (tmp_path / "d" / "ground_truth.csv").write_text("query,matching_refs\n")
    status, err = run_cli(*BASE, "--data-root", str(tmp_path / "d"))
    assert status == 2 and len(err.splitlines()) == 1
    assert "(ref) has no images" in err or "map split" in err and "empty" in err


def test_index_of_another_dimension_names_the_file(tmp_path, run_cli):
    from maploc_netvlad.index import MapIndex

    _write_two_pass(tmp_path / "d", [(24, 32)] * 3, [(24, 32)] * 2)
    rng = np.random.default_rng(0)
    MapIndex(7).build(rng.standard_normal((3, 7)).astype(np.float32), ["ref/0000000", "ref/0000001",
                                                                       "ref/0000002"]).save(tmp_path / "idx")
    status, err = run_cli(*BASE, "--data-root", str(tmp_path / "d"), "-o", "data.image_height=24",
                          "-o", f"index.load_from={tmp_path / 'idx'}")
    assert status == 2 and len(err.splitlines()) == 1
    assert "index.faiss holds 7-d descriptors" in err
