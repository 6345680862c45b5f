"""``template-features``, the template's method that does not learn: failures are counted, not raised (its
conformance test, with its accuracy, is in ``test_conformance.py``)."""

import pytest
import torch

from maploc.data.synthetic import SyntheticRoom
from maploc.errors import DataError
from maploc_template.features import FeaturesConfig, FeaturesMethod


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
