"""SfM maps from posed views (maploc_features.sfm): exact points from noise-free projections, outlier matches and
contradictory tracks removed, the filters, leave-one-out maps without the held-out image, and the COLMAP model
pycolmap reads back."""

from __future__ import annotations

import numpy as np
import pytest
from maploc_features.sfm import (
    COLMAP_PIXEL_OFFSET,
    PosedView,
    SfMOptions,
    all_pairs,
    build_tracks,
    triangulate,
    view_pairs,
    write_colmap_model,
)

K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])


def _ring(n: int = 5, step_deg: float = 8.0, radius: float = 10.0) -> list[PosedView]:
    """Cameras on an arc around the origin, all looking at it."""
    views = []
    for i in range(n):
        a = np.radians(step_deg * (i - (n - 1) / 2))
        R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])  # columns: camera axes
        views.append(PosedView(name=f"{i:04d}", K=K, width=640, height=480, R_cam2world=R,
                               t_cam2world=-radius * R[:, 2], image_file=f"{i:04d}.jpg"))
    return views


def _scene(n_views=5, n_points=400, noise=0.0, seed=0):
    """Views, shuffled keypoints per view, the true point index of each keypoint and exact pair matches."""
    rng = np.random.default_rng(seed)
    views = _ring(n_views)
    X = rng.uniform(-2, 2, (n_points, 3))
    keypoints, point_of = [], []
    for v in views:
        uv, z = v.project(X)
        assert (z > 0).all()
        perm = rng.permutation(n_points)
        keypoints.append(uv[perm] + noise * rng.standard_normal((n_points, 2)))
        point_of.append(perm)
    matches = {}
    for i, j in all_pairs(n_views):
        inv_j = np.argsort(point_of[j])
        matches[(i, j)] = np.stack([np.arange(n_points), inv_j[point_of[i]]], axis=1)
    return views, X, keypoints, point_of, matches


def test_noise_free_matches_give_the_exact_points():
    views, X, keypoints, point_of, matches = _scene()
    tmap = triangulate(views, keypoints, matches)
    assert len(tmap) == 400
    s = tmap.stats()
    assert s["registered_images"] == 5 and s["mean_track_length"] == 5 and s["mean_reproj_error_px"] < 1e-6
    for p, track in enumerate(tmap.tracks):
        i, k = track[0]
        np.testing.assert_allclose(tmap.points3d[p], X[point_of[i][k]], atol=1e-6)
    xyz = tmap.keypoint_xyz(2)
    np.testing.assert_allclose(xyz, X[point_of[2]], atol=1e-6)


def test_outlier_matches_are_refused_or_rejected():
    views, X, keypoints, point_of, matches = _scene(noise=0.3, seed=1)
    rng = np.random.default_rng(2)
    for m in matches.values():
        m[:40, 1] = rng.integers(0, 400, 40)  # 10 % wrong matches
    tmap = triangulate(views, keypoints, matches, SfMOptions(max_reproj_error_px=2.0))
    assert len(tmap) > 350
    truth = np.stack([X[point_of[t[0, 0]][t[0, 1]]] for t in tmap.tracks])
    err = np.linalg.norm(tmap.points3d - truth, axis=1)
    assert np.median(err) < 0.02 and (tmap.errors <= 2.0).all()
    mixed = 0
    for track in tmap.tracks:
        mixed += len({int(point_of[i][k]) for i, k in track}) > 1
        assert len(set(track[:, 0].tolist())) == len(track)  # one keypoint per image
    # a wrong keypoint that happens to lie within 2 px of the point's projection stays (about 1.6 % per view)
    assert mixed <= 0.03 * len(tmap)
    assert tmap.dropped["refused_matches"] > 0


def test_track_building_refuses_two_keypoints_of_one_image():
    # pairs in order: 0:0 - 1:0, then 0:1 - 2:0; 1:0 - 2:0 would join keypoints 0 and 1 of image 0: refused
    matches = {(0, 1): np.array([[0, 0]]), (1, 2): np.array([[0, 0]]), (0, 2): np.array([[1, 0]])}
    tracks, refused = build_tracks([2, 1, 1], matches)
    assert refused == 1
    assert [t.tolist() for t in tracks] == [[[0, 0], [1, 0]], [[0, 1], [2, 0]]]
    matches[(0, 2)] = np.array([[0, 0]])  # consistent: one track through all three images
    tracks, refused = build_tracks([2, 1, 1], matches)
    assert refused == 0 and [t.tolist() for t in tracks] == [[[0, 0], [1, 0], [2, 0]]]
    tracks, refused = build_tracks([2, 1, 1], matches, exclude={1})
    assert refused == 0 and [t.tolist() for t in tracks] == [[[0, 0], [2, 0]]]


def test_small_triangulation_angle_is_filtered():
    views, X, keypoints, point_of, matches = _scene(n_views=2)
    # the two cameras are 8 deg apart: points near the origin are seen at about 8 deg
    assert len(triangulate(views, keypoints, matches, SfMOptions(min_tri_angle_deg=5.0))) == 400
    tmap = triangulate(views, keypoints, matches, SfMOptions(min_tri_angle_deg=12.0))
    assert len(tmap) == 0 and tmap.dropped["angle"] + tmap.dropped["ransac"] == 400


def test_leave_one_out_map_has_no_observation_of_the_held_out_image():
    views, X, keypoints, point_of, matches = _scene()
    full = triangulate(views, keypoints, matches)
    held = triangulate(views, keypoints, matches, exclude={2})
    assert (full.keypoint_point[2] >= 0).all()
    assert (held.keypoint_point[2] == -1).all() and np.isnan(held.keypoint_xyz(2)).all()
    assert all(2 not in t[:, 0] for t in held.tracks)
    assert held.stats()["registered_images"] == 4 and held.stats()["mean_track_length"] == 4
    # a point seen only by the held-out image and one other is gone: matches of pair (1, 2) alone
    only = {(1, 2): matches[(1, 2)], (0, 3): matches[(0, 3)][:10]}
    assert len(triangulate(views, keypoints, only, exclude={2})) == 10


def test_view_pairs_nearest_by_viewing_direction():
    views = _ring(5)
    assert view_pairs(views) == all_pairs(5)
    assert view_pairs(views, nearest=1) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert view_pairs(views, max_angle_deg=10.0) == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_colmap_model_is_read_back_by_pycolmap(tmp_path):
    pycolmap = pytest.importorskip("pycolmap")
    views, X, keypoints, point_of, matches = _scene()
    tmap = triangulate(views, keypoints, matches, exclude={4})
    write_colmap_model(views, keypoints, tmap, tmp_path / "model")
    rec = pycolmap.Reconstruction(str(tmp_path / "model"))
    assert rec.num_reg_images() == 4 and rec.num_points3D() == len(tmap)
    assert rec.compute_mean_reprojection_error() < 1e-4  # COLMAP's pixel convention applied to K and keypoints
    image = rec.find_image_with_name("0001.jpg")
    M = np.asarray(image.cam_from_world().matrix())
    np.testing.assert_allclose(M[:, :3].T, views[1].R_cam2world, atol=1e-9)
    np.testing.assert_allclose(-M[:, :3].T @ M[:, 3], views[1].t_cam2world, atol=1e-9)
    cam = rec.camera(image.camera_id)
    assert cam.model.name == "PINHOLE"
    np.testing.assert_allclose(cam.params, [500, 500, 319.5 + COLMAP_PIXEL_OFFSET, 239.5 + COLMAP_PIXEL_OFFSET])
    assert rec.find_image_with_name("0004.jpg") is None


def test_bad_options_and_inputs():
    from maploc.errors import ConfigError, DataError

    with pytest.raises(ConfigError):
        SfMOptions(max_reproj_error_px=0)
    with pytest.raises(ConfigError):
        SfMOptions(min_track_length=1)
    views, X, keypoints, point_of, matches = _scene(n_views=2)
    with pytest.raises(DataError, match="2 views but 1 keypoint sets"):
        triangulate(views, keypoints[:1], matches)
