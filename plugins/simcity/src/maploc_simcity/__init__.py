"""Street-level views rendered from real OpenStreetMap maps: a simulated city with exact poses, depth and labels.

Pipeline (each step usable on its own):

1. :func:`maploc_osm.parse_osm` reads the map; :func:`build_scene` makes the 3-D city (ground coloured by
   OSM class, buildings extruded from footprints with holes, trees, street lamps, furniture; trimesh with
   mapbox-earcut) in the map frame with z up.
2. :func:`plan_route` walks the road graph; :func:`traversal_poses` places cameras every few metres (1.5-2 m
   high, looking along the road, seeded jitter), frame indices aligned by place across traversals.
3. :class:`Renderer` draws RGB, metric z-depth and semantic labels offscreen with moderngl (EGL: Mesa's
   llvmpipe on a CPU, the GPU driver elsewhere) under a :class:`Condition` (day, overcast, dusk, night, autumn;
   the held-out smog), or one drawn by :func:`sample_conditions` for training (``train_conditions=random``).
4. :func:`render_command` (``maploc data render``) writes traversals, DSAC* and map-localization layouts and a
   contact sheet; :class:`SimCity` (dataset ``sim-city``) reads them, rendering on first use into the cache.

Frames: world = OSM map frame (x east, y north, metres) with z up and the ground at z = 0; cameras in OpenCV's
frame (x right, y down, z forward); ``T_cam2world`` maps camera points to world points. Map data © OpenStreetMap
contributors (ODbL 1.0).
"""
# The names below are imported on first use (PEP 562), so that importing a submodule such as
# ``maploc_simcity.hooks`` (the CLI's hook module) does not import the heavy dependencies.

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .camera import camera_pose, make_camera, opengl_projection, opengl_view, pose_yaw
    from .command import LAYOUTS, render_command, resolve_map
    from .condition_sheet import sampled_conditions_sheet
    from .conditions import CONDITIONS, Condition, get_condition
    from .dataset import SimCity
    from .gl import RenderError, RenderParameterError, create_gl_context
    from .labels import GROUND_LABEL, GROUND_PRIORITY, LABEL_NAMES, SKY_LABEL, ground_labels, label_id
    from .options import SimCityOptions
    from .renderer import RenderedFrame, Renderer
    from .sampler import DISTRIBUTIONS, HELD_OUT, ConditionDistribution, outside_sampler_range, sample_conditions
    from .scene import Scene, build_scene, building_height
    from .tags import building_tags
    from .trajectory import Route, ViewPose, plan_route, traversal_offsets, traversal_poses

#: public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    "CONDITIONS": "conditions",
    "Condition": "conditions",
    "ConditionDistribution": "sampler",
    "DISTRIBUTIONS": "sampler",
    "HELD_OUT": "sampler",
    "GROUND_LABEL": "labels",
    "GROUND_PRIORITY": "labels",
    "LABEL_NAMES": "labels",
    "LAYOUTS": "command",
    "RenderError": "gl",
    "RenderParameterError": "gl",
    "RenderedFrame": "renderer",
    "Renderer": "renderer",
    "Route": "trajectory",
    "SKY_LABEL": "labels",
    "Scene": "scene",
    "SimCity": "dataset",
    "SimCityOptions": "options",
    "ViewPose": "trajectory",
    "build_scene": "scene",
    "building_height": "scene",
    "building_tags": "tags",
    "camera_pose": "camera",
    "create_gl_context": "gl",
    "get_condition": "conditions",
    "ground_labels": "labels",
    "label_id": "labels",
    "make_camera": "camera",
    "opengl_projection": "camera",
    "opengl_view": "camera",
    "plan_route": "trajectory",
    "pose_yaw": "camera",
    "outside_sampler_range": "sampler",
    "render_command": "command",
    "resolve_map": "command",
    "sample_conditions": "sampler",
    "sampled_conditions_sheet": "condition_sheet",
    "traversal_offsets": "trajectory",
    "traversal_poses": "trajectory",
}

__all__ = [
    "CONDITIONS",
    "DISTRIBUTIONS",
    "GROUND_LABEL",
    "HELD_OUT",
    "GROUND_PRIORITY",
    "LABEL_NAMES",
    "LAYOUTS",
    "SKY_LABEL",
    "Condition",
    "ConditionDistribution",
    "RenderError",
    "RenderParameterError",
    "RenderedFrame",
    "Renderer",
    "Route",
    "Scene",
    "SimCity",
    "SimCityOptions",
    "ViewPose",
    "build_scene",
    "building_height",
    "camera_pose",
    "create_gl_context",
    "get_condition",
    "ground_labels",
    "label_id",
    "make_camera",
    "opengl_projection",
    "opengl_view",
    "plan_route",
    "pose_yaw",
    "building_tags",
    "outside_sampler_range",
    "render_command",
    "resolve_map",
    "sample_conditions",
    "sampled_conditions_sheet",
    "traversal_offsets",
    "traversal_poses",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
