"""The core's conformance suite on ``bev_osm`` (synthetic dataset, tiny grids)."""

from maploc.testing.conformance import check_method


def test_bev_osm_conformance(tmp_path):
    metrics = check_method("bev_osm", tmp_path)
    assert metrics["num_queries"] == 4
    assert "test_blocks/single/recall_1m" in metrics or metrics["test_block_queries"] == 0
    assert (tmp_path / "conformance-bev_osm" / "bev_osm_recall.png").is_file()
