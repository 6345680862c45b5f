"""Street-level views rendered from real OpenStreetMap maps: a simulated city with exact poses, depth and labels.

Pipeline (each step usable on its own):

1. :func:`maploc_osm.parse_osm` reads the map; :func:`build_scene` makes the 3-D city (ground coloured by
   OSM class, buildings extruded from footprints with holes, trees, street lamps, furniture; trimesh with
   mapbox-earcut) in the map frame with z up.
2. :func:`plan_route` walks the road graph; :func:`traversal_poses` places cameras every few metres (1.5-2 m
   high, looking along the road, seeded jitter), frame indices aligned by place across traversals.
3. :class:`Renderer` draws RGB, metric z-depth and semantic labels offscreen with moderngl (EGL: Mesa's
   llvmpipe on a CPU, the GPU driver elsewhere) under a :class:`Condition` (day, overcast, dusk, night, autumn).
4. :func:`render_command` (``maploc data render``) writes traversals, DSAC* and map-localization layouts and a
   contact sheet; :class:`SimCity` (dataset ``sim-city``) reads them, rendering on first use into the cache.

Frames: world = OSM map frame (x east, y north, metres) with z up and the ground at z = 0; cameras in OpenCV's
frame (x right, y down, z forward); ``T_cam2world`` maps camera points to world points. Map data © OpenStreetMap
contributors (ODbL 1.0).
"""

from .camera import camera_pose, make_camera, opengl_projection, opengl_view, pose_yaw
from .command import LAYOUTS, render_command, resolve_map
from .conditions import CONDITIONS, Condition, get_condition
from .dataset import SimCity
from .gl import RenderError, RenderParameterError, create_gl_context
from .labels import GROUND_LABEL, GROUND_PRIORITY, LABEL_NAMES, SKY_LABEL, ground_labels, label_id
from .options import SimCityOptions
from .renderer import RenderedFrame, Renderer
from .scene import Scene, build_scene, building_height
from .tags import building_tags
from .trajectory import Route, ViewPose, plan_route, traversal_offsets, traversal_poses

__all__ = [
    "CONDITIONS",
    "GROUND_LABEL",
    "GROUND_PRIORITY",
    "LABEL_NAMES",
    "LAYOUTS",
    "SKY_LABEL",
    "Condition",
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
    "render_command",
    "resolve_map",
    "traversal_offsets",
    "traversal_poses",
]
