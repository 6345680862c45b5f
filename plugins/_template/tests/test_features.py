"""``template-features``, the template's method that does not learn: the core's conformance suite on all 12
``synthetic-room`` queries, accuracy, and failures that are counted instead of raised."""

import pytest
import torch

from maploc.data.synthetic import SyntheticRoom
from maploc.errors import DataError
from maploc.testing.conformance import check_method
from maploc_template.features import FeaturesConfig, FeaturesMethod


def test_features_conformance(tmp_path):
    """ORB at 320x240 (the config's ``data.image_height=240``). Measured: 12/12 queries within 5 cm / 5 deg,
    median 1.45 cm / 0.39 deg, worst 3.2 cm; about 20 s on a loaded 2-core machine."""
    metrics = check_method("template-features", tmp_path, max_queries=None)
    assert metrics["num_queries"] == 12 and metrics["num_failed"] == 0
    assert metrics["recall_5cm_5deg"] == 100.0, metrics
    assert not (tmp_path / "conformance-template-features" / "checkpoints").exists()  # nothing trained, nothing saved


def test_hard_queries_fail_without_raising():
    method = FeaturesMethod(FeaturesConfig(max_keypoints=300))
    method.build_map(SyntheticRoom(None, "map", image_height=120))
    query = SyntheticRoom(None, "query", image_height=120)[0]
    blank = type(query)(image=torch.full_like(query.image, 0.5), camera=query.camera, name="blank")
    (estimate,) = method.localize([blank])
    assert not estimate.success and estimate.extras["reason"] == "too few matches"


def test_map_without_depth_is_a_data_error():
    class NoDepth(SyntheticRoom):
        def __getitem__(self, index):
            sample = super().__getitem__(index)
            return type(sample)(image=sample.image, camera=sample.camera, T_cam2world=sample.T_cam2world,
                                name=sample.name)

    with pytest.raises(DataError, match="no map image has depth"):
        FeaturesMethod(FeaturesConfig()).build_map(NoDepth(None, "map"))
