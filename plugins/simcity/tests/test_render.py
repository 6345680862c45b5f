"""maploc_simcity: scene, cameras, trajectories, offscreen rendering, conditions, writers, sim-city dataset.

The map is the tiny OSM XML city of conftest.py (about 240 m x 240 m; fixtures ``city_file`` and ``city``).

Rendering uses moderngl over EGL (Mesa llvmpipe on the CI machine); tests that render are marked ``egl`` and are
skipped, with the reason, where no OpenGL context can be created (see conftest.py). No network is needed.
"""

from __future__ import annotations

import ctypes.util
import json
import math

import attrs
import numpy as np
import pytest

from maploc.errors import ConfigError, DataError
from maploc_osm import parse_osm, rasterize
from maploc_simcity import (
    CONDITIONS,
    LABEL_NAMES,
    Renderer,
    RenderError,
    SimCity,
    build_scene,
    building_height,
    building_tags,
    camera_pose,
    create_gl_context,
    label_id,
    make_camera,
    opengl_projection,
    opengl_view,
    plan_route,
    pose_yaw,
    render_command,
    traversal_poses,
)
from maploc_simcity import dataset as dataset_module
from maploc_simcity.verify import (
    backproject,
    ground_label_agreement,
    multiview_consistency,
    project,
    raster_ground_lookup,
)


@pytest.fixture(scope="module")
def scene(city):
    return build_scene(city, seed=3)


@pytest.fixture(scope="module")
def renderer(scene):
    with Renderer(scene, make_camera()) as r:
        yield r


@pytest.fixture(scope="module")
def route(city):
    return plan_route(city, 120.0, seed=5, margin_m=20.0)  # seed 5: westwards along y = 0 past every building


# ---- cameras --------------------------------------------------------------------------------------------------
def test_camera_intrinsics_and_bad_parameters() -> None:
    cam = make_camera(320, 240, 70.0)
    assert cam.fx == pytest.approx(160 / math.tan(math.radians(35)))
    assert (cam.cx, cam.cy) == (159.5, 119.5)
    for kwargs, name in (
        ({"fov_deg": 190.0}, "fov_deg"), ({"fov_deg": 0.0}, "fov_deg"), ({"fov_deg": float("nan")}, "fov_deg"),
        ({"width": 0}, "width"), ({"height": -5}, "height"), ({"width": 320.5}, "width"),
    ):  # fmt: skip
        with pytest.raises(ValueError, match=name):
            make_camera(**kwargs)


def test_camera_pose_conventions() -> None:
    T = camera_pose(1.0, 2.0, 1.7, yaw=0.0)
    np.testing.assert_allclose(T[:3, 2], [1, 0, 0], atol=1e-12)  # optical axis east
    np.testing.assert_allclose(T[:3, 0], [0, -1, 0], atol=1e-12)  # image right = south
    np.testing.assert_allclose(T[:3, 1], [0, 0, -1], atol=1e-12)  # image down = down
    T = camera_pose(0, 0, 1.7, yaw=math.radians(30), pitch=math.radians(10), roll=math.radians(5))
    assert pose_yaw(T) == pytest.approx(math.radians(30))
    assert T[2, 2] == pytest.approx(math.sin(math.radians(10)))  # pitch up: the optical axis rises
    # roll: the image's right side goes down
    assert -T[2, 0] == pytest.approx(math.sin(math.radians(5)) * math.cos(math.radians(10)))
    np.testing.assert_allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(T[:3, :3]) == pytest.approx(1.0)


def test_opengl_matrices_project_like_K() -> None:
    cam = make_camera(320, 240, 70.0)
    T = camera_pose(3.0, -2.0, 1.6, yaw=0.7, pitch=0.05, roll=-0.02)
    rng = np.random.default_rng(0)
    cam_pts = np.c_[rng.uniform(-5, 5, (50, 2)), rng.uniform(2, 50, 50)]
    world = cam_pts @ T[:3, :3].T + T[:3, 3]
    clip = opengl_projection(cam, 0.1, 1000.0) @ opengl_view(T) @ np.c_[world, np.ones(50)].T
    ndc = clip[:2] / clip[3]
    u_gl = (ndc[0] + 1) / 2 * cam.width - 0.5  # window x = u + 0.5
    v_gl = cam.height - (ndc[1] + 1) / 2 * cam.height - 0.5  # rows flipped on read-back
    uv, z = project(world, cam.K.double().numpy(), T)
    np.testing.assert_allclose(u_gl, uv[:, 0], atol=1e-6)
    np.testing.assert_allclose(v_gl, uv[:, 1], atol=1e-6)
    np.testing.assert_allclose(z, cam_pts[:, 2], atol=1e-9)


# ---- scene ----------------------------------------------------------------------------------------------------
def test_building_heights_from_tags() -> None:
    rng = np.random.default_rng(0)
    assert building_height({"height": "12"}, rng) == (0.0, 12.0)
    assert building_height({"height": "12.5 m"}, rng) == (0.0, 12.5)
    assert building_height({"height": "30'"}, rng)[1] == pytest.approx(9.144)
    assert building_height({"building:levels": "4"}, rng) == (0.0, 12.0)
    assert building_height({"height": "bogus", "building:levels": "2"}, rng) == (0.0, 6.0)
    assert building_height({"height": "20", "min_height": "8"}, rng) == (8.0, 20.0)
    draws = [building_height({}, np.random.default_rng([5, k]))[1] for k in range(200)]
    assert 8.0 <= min(draws) and max(draws) <= 25.0 and np.std(draws) > 3.0


def test_scene_contents(scene, city) -> None:
    heights = {int(row[0]): (row[1], row[2]) for row in scene.buildings}
    ids = {a.osm_id: a for a in city.areas if a.class_name == "building"}
    assert len(scene.buildings) == 4 and len(ids) == 4
    tops = sorted(top for _, top in heights.values())
    assert tops[:3] == [6.0, 12.0, 12.0]  # the target (height=6), levels=4, the courtyard block (height=12)
    assert 8.0 <= tops[3] <= 25.0  # no tags: a seeded draw
    assert scene.stats["trees"] >= 4 and scene.stats["lamps"] == 5 and scene.stats["crossings"] == 1
    # The courtyard's hole is open: no roof over its centre, roof over the block.
    roofs = scene.vertices[(scene.vertices[:, 11] == 1) & (np.abs(scene.vertices[:, 2] - 12.0) < 1e-4)]
    from shapely.geometry import Point, Polygon

    tris = roofs[:, :2].reshape(-1, 3, 2)
    covered = [any(Polygon(t).buffer(1e-6).contains(Point(p)) for t in tris) for p in ((40, 40), (25, 25))]
    assert covered == [False, True]
    # Labels of meshes are OSM classes.
    assert {LABEL_NAMES[int(v)] for v in np.unique(scene.vertices[:, 12])} >= {"building", "tree", "lamp", "road"}


def test_scene_reads_tags_from_the_parsed_map_not_the_file(city, monkeypatch) -> None:
    import osmium

    tags = building_tags(city)
    assert {t.get("height") or t.get("building:levels") for t in tags.values()} == {"12", "4", "6"}
    assert tags[("way", next(a.osm_id for a in city.areas if a.tags.get("height") == "6"))]["building:colour"] == "#c05040"
    monkeypatch.setattr(osmium, "FileProcessor", lambda *a, **k: pytest.fail("the OSM file was read again"))
    scene = build_scene(city, seed=3)
    assert sorted(scene.buildings[:, 2])[:3] == [6.0, 12.0, 12.0]
    # Tags given explicitly replace the map's own (here: none, so every height is a seeded draw in 8-25 m).
    drawn = build_scene(city, seed=3, building_tags={})
    assert all(8.0 <= top <= 25.0 for top in drawn.buildings[:, 2])


def test_scene_is_deterministic(city, scene) -> None:
    again = build_scene(city, seed=3)
    np.testing.assert_array_equal(again.vertices, scene.vertices)
    np.testing.assert_array_equal(again.ground, scene.ground)
    other = build_scene(city, seed=4)
    assert not np.array_equal(other.buildings[:, 2], scene.buildings[:, 2])  # the untagged height changes


def test_scene_parameters_are_checked(city) -> None:
    with pytest.raises(ValueError, match="ground_resolution_m"):
        build_scene(city, ground_resolution_m=0.0)
    with pytest.raises(ValueError, match="clearance_m"):
        build_scene(city, clearance_m=-1.0)


# ---- trajectories ---------------------------------------------------------------------------------------------
def test_route_follows_roads(city, route) -> None:
    assert route.length >= 120.0
    steps = np.linalg.norm(np.diff(route.xy, axis=0), axis=1)
    assert steps.max() < 10.5  # consecutive road-graph nodes (10 m apart on this map)
    # every vertex is a road node: on the lines y in {-80, 0, 80} or x in {0, 90}
    on_road = np.isclose(route.xy[:, 1][:, None], [-80, 0, 80], atol=0.01).any(1) | np.isclose(
        route.xy[:, 0][:, None], [0, 90], atol=0.01).any(1)  # fmt: skip
    assert on_road.all()
    again = plan_route(city, 120.0, seed=5, margin_m=20.0)
    np.testing.assert_array_equal(again.node_ids, route.node_ids)
    assert not np.array_equal(plan_route(city, 120.0, seed=2, margin_m=20.0).node_ids[:8], route.node_ids[:8])


def test_traversals_are_aligned_by_place(route) -> None:
    a = traversal_poses(route, 20, spacing_m=5.0, traversal=0, traversals=2, seed=0)
    b = traversal_poses(route, 20, spacing_m=5.0, traversal=1, traversals=2, seed=0)
    for pa, pb in zip(a, b):
        assert pa.index == pb.index and pa.arc_length_m == pb.arc_length_m
        assert 1.5 <= pa.height_m <= 2.0 and pa.T_cam2world[2, 3] == pytest.approx(pa.height_m)
        assert pa.lateral_offset_m < -0.9 and pb.lateral_offset_m > 0.9  # right and left of the centreline
        assert pose_yaw(pa.T_cam2world) == pytest.approx(pa.pose2.yaw)
        np.testing.assert_allclose(pa.T_cam2world[:2, 3], [pa.pose2.x, pa.pose2.y])
        centre = route.point(pa.arc_length_m)
        assert np.linalg.norm(pa.T_cam2world[:2, 3] - centre) == pytest.approx(abs(pa.lateral_offset_m), abs=1e-6)
        # looking along the road (yaw jitter and corners smoothed over +-4 m: within 45 deg)
        heading = route.heading(pa.arc_length_m)
        assert abs(math.remainder(pa.pose2.yaw - heading, 2 * math.pi)) < math.radians(12)
    spacing = [b2.arc_length_m - b1.arc_length_m for b1, b2 in zip(a, a[1:])]
    np.testing.assert_allclose(spacing, 5.0)
    same = traversal_poses(route, 20, spacing_m=5.0, traversal=0, traversals=2, seed=0)
    np.testing.assert_array_equal(same[7].T_cam2world, a[7].T_cam2world)
    with pytest.raises(ValueError, match="frames"):
        traversal_poses(route, 0)
    with pytest.raises(ValueError, match="spacing_m"):
        traversal_poses(route, 3, spacing_m=-1.0)
    with pytest.raises(ValueError, match="route is"):
        traversal_poses(route, 1000, spacing_m=5.0)


def test_map_without_roads_is_a_clear_error(tmp_path, city_osm_xml) -> None:
    path = tmp_path / "no-roads.osm"
    path.write_text(city_osm_xml(with_roads=False), encoding="utf-8")
    osm_map = parse_osm(path)
    with pytest.raises(DataError, match="no road to place cameras on"):
        plan_route(osm_map, 100.0)
    with pytest.raises(DataError, match="no road"):
        render_command(str(path), 3, ["day"], tmp_path / "out", progress=False)


# ---- rendering ------------------------------------------------------------------------------------------------
@pytest.mark.egl
def test_frame_outputs(renderer, route) -> None:
    view = traversal_poses(route, 1)[0]
    frame = renderer.render(view.T_cam2world, "day")
    assert frame.rgb.shape == (240, 320, 3) and frame.rgb.dtype == np.uint8
    assert frame.depth.shape == (240, 320) and frame.depth.dtype == np.float32
    assert frame.labels.shape == (240, 320) and frame.labels.dtype == np.uint8
    sky = frame.labels == 0
    assert 0.05 < sky.mean() < 0.7 and (frame.depth[sky] == 0).all() and (frame.depth[~sky] > 0).all()
    assert sky[0].mean() > sky[-1].mean()  # sky at the top, ground at the bottom
    assert (frame.labels[-1] != 0).all() and frame.depth[-1].max() < 10.0
    assert frame.rgb[sky].mean(0)[2] > frame.rgb[sky].mean(0)[0]  # a blue sky
    assert len(np.unique(frame.labels)) >= 3
    with pytest.raises(ValueError, match="T_cam2world"):
        renderer.render(np.eye(3))
    with pytest.raises(ValueError, match="condition"):
        renderer.render(view.T_cam2world, "blizzard")


@pytest.mark.egl
def test_known_building_at_known_distance(renderer) -> None:
    """The target's north face is the plane y = -15 m, 6 m high, x in [-60, -20]."""
    cam = renderer.camera
    T = camera_pose(-40.0, 0.0, 1.7, yaw=-math.pi / 2)  # 15 m north of the face, looking south
    frame = renderer.render(T, "day")
    building = label_id("building")
    top = cam.cy - cam.fy * (6.0 - 1.7) / 15.0  # the roof line's row
    bottom = cam.cy + cam.fy * 1.7 / 15.0  # the wall's foot
    rows = slice(math.ceil(top) + 1, math.floor(bottom))
    centre = frame.depth[rows, 60:260]
    assert (frame.labels[rows, 60:260] == building).all()
    np.testing.assert_allclose(centre, 15.0, rtol=0.01)  # within 1 %
    assert abs(float(np.median(centre)) - 15.0) < 0.01
    above = frame.labels[math.floor(top) - 1, 60:260]
    assert (above != building).mean() > 0.9 or (frame.depth[math.floor(top) - 1, 60:260] > 20).all()
    # Left/right: looking south from x = -25, east is on the left: the wall's east end (x = -20) is at
    # u = cx - fx * 5 / 15 and the wall lies to its right.
    frame = renderer.render(camera_pose(-25.0, 0.0, 1.7, yaw=-math.pi / 2), "day")
    edge = cam.cx - cam.fx * 5.0 / 15.0
    row = round(cam.cy)
    assert (frame.labels[row, math.ceil(edge) + 1 :] == building).all()
    np.testing.assert_allclose(frame.depth[row, math.ceil(edge) + 1 :], 15.0, rtol=0.01)
    assert (frame.labels[row, : math.floor(edge) - 1] != building).all()


@pytest.mark.egl
def test_multiview_consistency(renderer, route) -> None:
    views = traversal_poses(route, 6, spacing_m=3.0, seed=2)
    frames = [renderer.render(v.T_cam2world, "day") for v in views]
    textured = [label_id("building")]
    for a, b in zip(frames, frames[1:]):
        stats = multiview_consistency(a, b)
        assert stats["pixels"] > 20_000
        assert stats["median_depth_rel"] < 0.01
        assert stats["seen_fraction"] > 0.8
        facade = multiview_consistency(a, b, labels=textured)
        assert facade["median_color_abs"] < 6.0
        # The same checks with B's pose 0.2 m too high fail: the test can tell. (Moves within the ground plane
        # leave the ground's depth unchanged, so they are no test.)
        T_wrong = b.T_cam2world.copy()
        T_wrong[2, 3] += 0.2
        wrong = multiview_consistency(a, b, T_b=T_wrong)
        assert wrong["median_depth_rel"] > 0.01
        wrong_facade = multiview_consistency(a, b, labels=textured, T_b=T_wrong)
        assert wrong_facade["mean_color_abs"] > 2 * facade["mean_color_abs"]
    # Facade texture is real texture: colours vary a lot within a facade.
    a = frames[0]
    assert a.rgb[a.labels == textured[0]].std(0).mean() > 10.0


@pytest.mark.egl
def test_ground_labels_agree_with_the_osm_raster(renderer, route, city, scene) -> None:
    views = traversal_poses(route, 10, spacing_m=6.0, traversal=1, traversals=2, seed=5)
    frames = [renderer.render(v.T_cam2world, "day") for v in views]
    seen = set(np.unique(np.concatenate([f.labels.ravel() for f in frames])).tolist())
    assert label_id("road") in seen and len(seen & {label_id(n) for n in ("path", "cycleway", "park", "grass")}) >= 1
    # The OSM raster (maploc_osm.rasterize) at the scene's resolution, and at the default 0.5 m.
    same = raster_ground_lookup(rasterize(city, scene.ground_georef.resolution_m))
    assert ground_label_agreement(frames, same) > 0.95
    assert ground_label_agreement(frames, raster_ground_lookup(rasterize(city, 0.5))) > 0.95
    # and exactly the renderer's own rule (shader == numpy), up to float rounding at ties
    assert ground_label_agreement(frames, scene.ground_label_at) > 0.998
    # A wrong pose (1.5 m sideways) disagrees more: the check can fail.
    shifted = []
    for f in frames:
        T = f.T_cam2world.copy()
        T[:3, 3] += T[:3, 0] * 1.5
        shifted.append(attrs.evolve(f, T_cam2world=T))
    assert ground_label_agreement(shifted, scene.ground_label_at) < 0.97


@pytest.mark.egl
def test_conditions_change_colours_only(renderer, route) -> None:
    view = traversal_poses(route, 8, spacing_m=6.0, seed=0)[4]
    frames = {name: renderer.render(view.T_cam2world, name) for name in CONDITIONS}
    day = frames["day"]
    for name, frame in frames.items():
        np.testing.assert_array_equal(frame.depth, day.depth, err_msg=name)
        np.testing.assert_array_equal(frame.labels, day.labels, err_msg=name)
    brightness = {name: float(f.rgb.mean()) for name, f in frames.items()}
    assert brightness["night"] < 0.45 * brightness["day"]
    assert brightness["night"] < brightness["dusk"] < brightness["day"]
    assert brightness["overcast"] != brightness["day"]
    # Night: lamps and windows light some pixels well above the dark ambient.
    assert (frames["night"].rgb.max(-1) > 150).mean() > 0.002
    # Same frame twice: identical (deterministic rendering).
    np.testing.assert_array_equal(renderer.render(view.T_cam2world, "night").rgb, frames["night"].rgb)


@pytest.mark.egl
def test_autumn_foliage(renderer) -> None:
    T = camera_pose(10.0, 5.0, 1.7, yaw=math.pi / 2, pitch=math.radians(15))  # looking at the tree at (10, 15)
    day, autumn = renderer.render(T, "day"), renderer.render(T, "autumn")
    tree = day.labels == label_id("tree")
    assert tree.mean() > 0.05
    red_minus_green = [float((f.rgb[tree][:, 0].astype(int) - f.rgb[tree][:, 1]).mean()) for f in (day, autumn)]
    assert red_minus_green[1] > red_minus_green[0] + 15


# ---- errors about OpenGL ----------------------------------------------------------------------------------------
def test_missing_egl_names_the_library(monkeypatch) -> None:
    real = ctypes.util.find_library
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None if name == "EGL" else real(name))
    with pytest.raises(RenderError, match=r"libEGL.*libegl1.*apt install libegl1"):
        create_gl_context("egl")


def test_failing_context_says_what_to_install(monkeypatch) -> None:
    import moderngl

    def broken(*args, **kwargs):
        raise Exception("eglInitialize failed")

    monkeypatch.setattr(moderngl, "create_context", broken)
    with pytest.raises(RenderError, match=r"eglInitialize failed.*libgl1-mesa-dri"):
        create_gl_context("egl")


# ---- command, layouts, dataset ------------------------------------------------------------------------------------
@pytest.mark.egl
def test_render_command_layouts_and_dataset(rendered, city_file, tmp_path) -> None:
    from maploc.data.dsac_layout import DSACLayout

    out = rendered
    assert (out / "render.json").is_file() and (out / "contact_sheet.png").is_file()
    for seq in ("t0_day", "t0_night", "t1_day", "t1_night"):
        folder = out / "traversals" / seq
        assert sorted(p.name for p in (folder / "rgb").iterdir()) == [f"{i:06d}.png" for i in range(4)]
        assert len((folder / "poses.txt").read_text().splitlines()) == 4
    # DSAC*: traversal 0 trains, traversal 1 tests; the DSAC* reader loads it with the same poses and depth
    train, test = DSACLayout(out / "dsac", "train"), DSACLayout(out / "dsac", "query")
    assert len(train) == 8 and len(test) == 8
    query = SimCity(out, "query")
    assert len(query) == 12 and SimCity(out, "map").names() == [f"t0_day/{i:06d}" for i in range(4)]
    sample = query[query.names().index("t1_day/000002")]
    dsac_sample = test[test.names().index("seq-02_t1_day_000002")]
    assert sample.T_cam2world.allclose(dsac_sample.T_cam2world, atol=1e-5)
    valid = (dsac_sample.depth > 0) & (dsac_sample.depth < 60)
    np.testing.assert_allclose(sample.depth[valid], dsac_sample.depth[valid], atol=0.006)
    assert sample.image.shape == (3, 72, 96) and sample.pose2 is not None
    assert sample.extras["labels"].shape == (72, 96) and sample.condition == "day"
    assert (sample.extras["labels"].numpy() == 0).any()  # some sky
    np.testing.assert_allclose(sample.T_cam2world.t[:2].double().numpy(), [sample.pose2.x, sample.pose2.y], atol=1e-4)
    night = query[query.names().index("t1_night/000002")]
    assert float(night.image.mean()) < 0.6 * float(sample.image.mean())
    assert SimCity(out, "query", image_height=36)[0].image.shape == (3, 36, 48)
    # MGL-style dump: one view per frame with its SE(2) pose and the map reference
    dump = json.loads((out / "mgl" / "dump.json").read_text())
    assert len(dump["views"]) == 16 and dump["map"]["sha256"] and dump["map"]["georef"]["origin_lat"]
    from maploc_osm import MapRaster

    raster = MapRaster.load_npz(out / "mgl" / dump["map"]["raster"])
    assert raster.resolution_m == 0.5 and raster.mask("building").any()
    view = dump["views"]["t1_day/000002"]
    assert view["pose2"]["x"] == pytest.approx(sample.pose2.x) and (out / "mgl" / view["image"]).is_file()
    with pytest.raises(ValueError, match="width"):
        render_command(str(city_file), 2, ["day"], tmp_path / "bad", width=0, progress=False)
    with pytest.raises(ValueError, match="condition"):
        render_command(str(city_file), 2, ["rain"], tmp_path / "bad", progress=False)


@pytest.mark.egl
def test_sim_city_renders_on_demand_into_the_cache(city_file, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MAPLOC_DATA", str(tmp_path / "cache"))
    options = SimCity.Options(map=str(city_file), frames=6, traversals=1, conditions="dusk", width=64, height=48,
                              map_condition="dusk")  # fmt: skip
    first = SimCity(None, "map", options=options)
    assert first.folder.parent == tmp_path / "cache" / "sim-city"
    assert first.names() == ["t0_dusk/000000", "t0_dusk/000002", "t0_dusk/000004"]
    assert SimCity(None, "query", options=options).names() == ["t0_dusk/000001", "t0_dusk/000003", "t0_dusk/000005"]
    rendered = json.loads((first.folder / "render.json").read_text())["options"]
    assert rendered["frames"] == 6 and rendered["conditions"] == ["dusk"] and rendered["lateral_offset_m"] == 1.2
    monkeypatch.setattr(dataset_module, "render_command", lambda *a, **k: pytest.fail("rendered twice"))
    again = SimCity(None, "map", options=options)
    assert again.folder == first.folder
    np.testing.assert_array_equal(again[1].image.numpy(), first[1].image.numpy())
    # The split options choose sequences of the same render: no new render (render_command would fail the test).
    assert SimCity(None, "map", options=attrs.evolve(options, query_conditions=("dusk",))).folder == first.folder


@pytest.mark.egl
def test_extra_training_routes(city_file, tmp_path) -> None:
    """``train_routes``: independent walks under the first condition, in the train split only."""
    out = render_command(str(city_file), 4, ["day", "night"], tmp_path / "routes", seed=1, traversals=2,
                         train_routes=2, width=48, height=36, progress=False)  # fmt: skip
    summary = json.loads((out / "render.json").read_text())
    assert summary["options"]["train_routes"] == 2
    assert summary["sequences"] == ["t0_day", "t0_night", "t1_day", "t1_night", "r1_day", "r2_day"]
    assert not (out / "dsac" / "train" / "rgb").exists() or not any(
        "r1" in p.name for p in (out / "dsac" / "train" / "rgb").iterdir())  # fmt: skip
    assert any(v.startswith("r2_day/") for v in json.loads((out / "mgl" / "dump.json").read_text())["views"])
    train, map_, query = (SimCity(out, s) for s in ("train", "map", "query"))
    assert {n.split("/")[0] for n in train.names()} == {"t0_day", "r1_day", "r2_day"} and len(train) == 12
    assert {n.split("/")[0] for n in map_.names()} == {"t0_day"}
    assert {n.split("/")[0] for n in query.names()} == {"t0_night", "t1_day", "t1_night"}
    sample = train[len(train) - 1]
    assert sample.extras["route"] == 2 and sample.condition == "day" and sample.image.shape[-2:] == (36, 48)
    # each route is its own walk: other places than the main route's
    main = np.array([[train.metadata(i).pose2.x, train.metadata(i).pose2.y] for i in range(4)])
    extra = np.array([[train.metadata(i).pose2.x, train.metadata(i).pose2.y] for i in range(4, 12)])
    assert not np.allclose(main, extra[:4]) and not np.allclose(extra[:4], extra[4:])
    # The routes are rendered under the first condition: training under another is a clear error.
    with pytest.raises(ConfigError, match="extra training routes rendered under 'day'"):
        SimCity(out, "train", options=SimCity.Options(map_condition="night"))
    assert len(SimCity(out, "map", options=SimCity.Options(map_condition="night"))) == 4
    # A folder without them trains only when none are asked for; evaluating (map, query) never asks.
    plain = render_command(str(city_file), 4, ["day", "night"], tmp_path / "plain", seed=1, traversals=2,
                           width=48, height=36, layouts=("traversals",), progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="rendered with train_routes=0"):
        SimCity(plain, "train", options=SimCity.Options(train_routes=2))
    assert len(SimCity(plain, "query", options=SimCity.Options(train_routes=2))) == 12
    with pytest.raises(ValueError, match="stream"):
        plan_route(parse_osm(city_file), 50.0, stream=-1)


@pytest.mark.egl
def test_training_routes_cycle_through_train_conditions(city_file, tmp_path) -> None:
    """``train_conditions``: route k under the ((k-1) mod n)-th condition, all in the train split, whatever
    ``map_condition`` is; checked against a folder for the train split only."""
    out = render_command(str(city_file), 3, ["day", "night"], tmp_path / "mixed", seed=1, traversals=2,
                         train_routes=3, train_conditions=["day", "overcast"], width=48, height=36,
                         layouts=("traversals",), progress=False)  # fmt: skip
    summary = json.loads((out / "render.json").read_text())
    assert summary["sequences"][-3:] == ["r1_day", "r2_overcast", "r3_day"]
    assert summary["options"]["train_conditions"] == ["day", "overcast"]
    train = SimCity(out, "train", options=SimCity.Options(train_routes=3, train_conditions="day,overcast"))
    assert {n.split("/")[0] for n in train.names()} == {"t0_day", "r1_day", "r2_overcast", "r3_day"}
    conditions = {train[i].condition for i in range(len(train))}
    assert conditions == {"day", "overcast"}
    # the overcast route is rendered under overcast light: another image than the same pose by day would give
    day_route = render_command(str(city_file), 3, ["day"], tmp_path / "day", seed=1, traversals=2, train_routes=2,
                               width=48, height=36, layouts=("traversals",), progress=False)  # fmt: skip
    by_day = SimCity(day_route, "train", options=SimCity.Options(train_routes=2, conditions=("day",)))
    k_mixed = next(i for i, n in enumerate(train.names()) if n.startswith("r2_overcast/"))
    k_day = next(i for i, n in enumerate(by_day.names()) if n.startswith("r2_day/"))
    assert train.metadata(k_mixed).pose2 == by_day.metadata(k_day).pose2
    assert (train[k_mixed].image - by_day[k_day].image).abs().mean() > 0.02
    assert len(SimCity(out, "train", options=SimCity.Options(train_routes=3, train_conditions="day,overcast",
                                                             map_condition="night"))) == 12  # fmt: skip
    asked = SimCity.Options(train_routes=2, conditions=("day",), train_conditions="day,overcast")
    with pytest.raises(ConfigError, match="rendered with train_conditions=; .*--train-conditions day,overcast"):
        SimCity(day_route, "train", options=asked)
    assert len(SimCity(day_route, "query", options=asked)) == 3


def test_sequence_names_round_trip() -> None:
    from maploc_simcity.writers import parse_sequence_name, sequence_name

    for route, traversal, condition in ((0, 0, "day"), (0, 3, "night"), (7, 0, "autumn")):
        assert parse_sequence_name(sequence_name(traversal, condition, route)) == (route, traversal, condition)
    for bad in ("day", "x1_day", "t_day", "r2_", "tt1_day"):
        with pytest.raises(ValueError, match="not a sim-city sequence name"):
            parse_sequence_name(bad)


def test_backproject_inverts_project() -> None:
    cam = make_camera(64, 48, 60.0)
    T = camera_pose(1.0, 2.0, 1.5, yaw=0.3, pitch=0.1)
    depth = np.random.default_rng(0).uniform(1, 30, (48, 64)).astype(np.float32)
    world = backproject(depth, cam.K.numpy(), T)
    uv, z = project(world, cam.K.double().numpy(), T)
    v, u = np.mgrid[0:48, 0:64]
    np.testing.assert_allclose(uv[..., 0], u, atol=1e-6)
    np.testing.assert_allclose(uv[..., 1], v, atol=1e-6)
    np.testing.assert_allclose(z, depth, rtol=1e-6)


@pytest.mark.egl
def test_cli_data_render(maploc_main, city_file, tmp_path) -> None:
    out = tmp_path / "cli-out"
    status, stdout, stderr = maploc_main(
        "data", "render", "--map", str(city_file), "--frames", "3", "--conditions", "day,night", "--out", str(out),
        "--width", "64", "--height", "48", "--seed", "2", "--lateral-offset", "0.5",
    )  # fmt: skip
    assert status == 0, stderr
    assert f"wrote {out}" in stdout and "rendering" in stderr  # the progress bar
    assert (out / "contact_sheet.png").is_file()
    assert sorted(p.name for p in (out / "traversals").iterdir()) == ["meta.json", "t0_day", "t0_night"]
    assert json.loads((out / "render.json").read_text())["options"]["lateral_offset_m"] == 0.5
    # The folder is a sim-city root.
    assert SimCity(out, "query").names()[0] == "t0_night/000000"


def test_cli_data_render_bad_input_is_one_line(maploc_main, city_file, tmp_path) -> None:
    """Answered before any rendering: no OpenGL needed."""
    out = tmp_path / "cli-out"
    for args, needle in (
        (("--fov", "200"), "fov_deg"),
        (("--conditions", "day,rain"), "unknown condition 'rain'"),
        (("--frames", "0"), "frames must be a positive integer"),
        (("--lateral-offset", "-1"), "lateral_offset_m"),
        (("--train-routes", "-1"), "train_routes must be an integer in [0, 1000]"),
        (("--train-conditions", "overcast"), "set train_routes >= 1 too"),
        (("--train-routes", "2", "--train-conditions", "day,fog"), "unknown condition 'fog'"),
    ):
        status, _, stderr = maploc_main("data", "render", "--map", str(city_file), "--out", str(out), *args)
        assert status == 2 and needle in stderr and "Traceback" not in stderr, (args, stderr)
        assert len(stderr.strip().splitlines()) == 1, stderr
    status, _, stderr = maploc_main("data", "render", "--map", str(tmp_path / "missing.osm.pbf"), "--out", str(out))
    assert status == 2 and "OSM file not found" in stderr and len(stderr.strip().splitlines()) == 1
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    status, _, stderr = maploc_main("data", "render", "--map", str(city_file), "--out", str(blocker / "sub"))
    assert status == 2 and "is a file" in stderr and len(stderr.strip().splitlines()) == 1


def test_data_help_lists_render(maploc_main) -> None:
    status, stdout, _ = maploc_main("data", "--help")
    assert status == 0 and "render" in stdout and "street-level views" in stdout
    status, stdout, _ = maploc_main("data", "render", "--help")
    assert status == 0 and "--lateral-offset" in stdout and "--conditions" in stdout


def test_hook_module_is_cheap_and_lists_every_condition() -> None:
    """``maploc --help`` imports the hook module: it must not pull in the renderer, torch or OpenGL."""
    import subprocess
    import sys

    code = (
        "import sys, maploc_simcity.hooks as h\n"
        "heavy = [m for m in ('torch', 'moderngl', 'trimesh', 'shapely', 'cv2', 'osmium') if m in sys.modules]\n"
        "print(heavy, ','.join(h.CONDITION_NAMES))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]", ",".join(CONDITIONS)]


@pytest.mark.egl
def test_egl_context_then_lightning_import_does_not_crash():
    """Mesa's llvmpipe and Triton both bundle LLVM; Triton imported after an EGL context used to segfault."""
    import subprocess
    import sys

    code = (
        "from maploc_simcity.gl import create_gl_context\n"
        "ctx = create_gl_context()\n"
        "import lightning_fabric\n"
        "print('ok', ctx.info['GL_RENDERER'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    assert proc.stdout.startswith("ok")
