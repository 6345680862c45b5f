"""hloc on real photographs without depth: a map triangulated from the posed Strecha fountain images (small
resolution, few keypoints, to stay fast) localizes a held-out photograph within centimetres, and its COLMAP model
reads back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from maploc.api import RunContext
from maploc.config import structure_dataset_options
from maploc_netvlad.hloc import HlocConfig, HlocMethod

FOUNTAIN = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "strecha" / "fountain-P11"


@pytest.mark.data
def test_triangulated_fountain_map_localizes_a_held_out_photo(tmp_path):
    if not (FOUNTAIN / "gt_dense_cameras").is_dir():
        pytest.skip(f"the Strecha scenes are not at {FOUNTAIN.resolve()}")
    import pycolmap

    from maploc.data.strecha import Strecha

    opts = structure_dataset_options(Strecha, {"split": "fixed", "query_images": "0005.jpg"})
    map_data = Strecha(FOUNTAIN, "map", image_height=256, options=opts)
    query = Strecha(FOUNTAIN, "query", image_height=256, options=opts)[0]
    method = HlocMethod(HlocConfig(max_keypoints=512, top_k=3, map_pairs=3))
    method.build_map(map_data, RunContext(run_dir=tmp_path))
    hmap = method.map
    assert hmap.mode == "triangulated"
    stats = hmap.full.stats()
    assert stats["registered_images"] == 10 and stats["points"] > 300 and stats["mean_reproj_error_px"] < 1.0
    rec = pycolmap.Reconstruction(str(tmp_path / "map_model"))
    assert rec.num_reg_images() == 10 and rec.num_points3D() == stats["points"]
    assert rec.find_image_with_name("0004.jpg") is not None and rec.find_image_with_name("0005.jpg") is None
    est = method.localize([query])[0]
    assert est.success and est.extras["map_points"] == "triangulated", est.extras
    gt = query.T_cam2world
    dt = float(np.linalg.norm(est.T_cam2world.t.double().numpy() - gt.t.double().numpy()))
    R = est.T_cam2world.R.double().numpy().T @ gt.R.double().numpy()
    dr = float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))
    assert dt < 0.10 and dr < 1.0, (dt, dr)
    sections = dict(method.report_sections(tmp_path, {}))
    assert "map points: triangulated" in sections["hloc pipeline"]
    assert (tmp_path / "map_stats.json").is_file()
