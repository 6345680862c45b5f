"""Offscreen rendering of a :class:`~.scene.Scene` with moderngl: RGB, metric depth and semantic labels.

One frame is drawn into three colour attachments (RGBA8 colour, R32F z-depth in metres, R8 label) and read back.
The depth is computed in the fragment shader from the interpolated world position (``dot(P - C, forward)``),
not recovered from the non-linear depth buffer, so it is exact up to float32 rounding. Sky pixels have depth 0
and label 0.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from maploc.types import Camera

from . import shaders
from .camera import opengl_projection, opengl_view
from .conditions import Condition, get_condition
from .gl import RenderError, RenderParameterError, create_gl_context
from .labels import GROUND_LABEL
from .scene import LAYERS, VERTEX_ATTRIBUTES, VERTEX_FORMAT, Scene

__all__ = ["RenderedFrame", "Renderer"]


@attrs.frozen(kw_only=True, eq=False)
class RenderedFrame:
    """One rendered view.

    Attributes:
        rgb: ``(H, W, 3)`` uint8 RGB, row 0 at the top.
        depth: ``(H, W)`` float32 z-depth along the optical axis, metres; 0 for the sky.
        labels: ``(H, W)`` uint8 label values (:data:`.labels.LABEL_NAMES`); 0 for the sky.
        T_cam2world: ``(4, 4)`` float64 camera-to-world, OpenCV camera frame, world = map frame + z up, metres.
        camera: the pinhole camera (``K`` in pixels, OpenCV pixel centres).
        condition: the condition's name.
    """

    rgb: np.ndarray
    depth: np.ndarray
    labels: np.ndarray
    T_cam2world: np.ndarray
    camera: Camera
    condition: str


def _check_pose(T: Any) -> np.ndarray:
    T = np.asarray(T.matrix() if hasattr(T, "matrix") else T, dtype=np.float64)
    if T.shape != (4, 4) or not np.isfinite(T).all():
        raise RenderParameterError(f"T_cam2world must be a finite (4, 4) matrix, got shape {T.shape}")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
        raise RenderParameterError("T_cam2world must have a rotation matrix in its upper-left 3x3 block")
    return T


class Renderer:
    """Renders views of a scene through one pinhole camera (an OpenGL context of its own).

    Args:
        scene: the scene (:func:`.scene.build_scene`).
        camera: intrinsics and image size (:func:`.camera.make_camera`).
        near: near clipping distance, metres (> 0). Surfaces closer than this are not drawn.
        far: far clipping distance, metres (> near); beyond it the sky shows.
        context: an existing ``moderngl.Context`` to draw with (default: a new EGL context).

    Raises:
        RenderError: no usable OpenGL (names the missing library and how to install it).
        RenderParameterError: ``near`` / ``far`` out of range, or a texture larger than the GL limit.

    Use as a context manager, or call :meth:`release`, to free the GL resources.
    """

    def __init__(
        self, scene: Scene, camera: Camera, *, near: float = 0.1, far: float = 1000.0, context: Any = None
    ) -> None:
        import moderngl

        if not (isinstance(near, (int, float)) and near > 0 and math.isfinite(near)):
            raise RenderParameterError(f"near must be a positive number of metres, got {near!r}")
        if not (isinstance(far, (int, float)) and far > near and math.isfinite(far)):
            raise RenderParameterError(f"far must be a number of metres larger than near={near}, got {far!r}")
        self.scene = scene
        self.camera = camera
        self.near, self.far = float(near), float(far)
        self.ctx = context if context is not None else create_gl_context()
        self._own_context = context is None
        ctx = self.ctx
        limit = int(ctx.info["GL_MAX_TEXTURE_SIZE"])
        gh, gw = scene.ground.shape[:2]
        if max(gh, gw) > limit:
            raise RenderParameterError(
                f"the ground grid is {gw}x{gh} texels, above this OpenGL's limit {limit}: build the scene with a "
                "larger ground_resolution_m"
            )
        try:
            self.sky = ctx.program(vertex_shader=shaders.SKY_VERTEX, fragment_shader=shaders.SKY_FRAGMENT)
            self.ground_prog = ctx.program(vertex_shader=shaders.GROUND_VERTEX, fragment_shader=shaders.GROUND_FRAGMENT)
            self.objects = ctx.program(vertex_shader=shaders.OBJECT_VERTEX, fragment_shader=shaders.OBJECT_FRAGMENT)
        except moderngl.Error as exc:  # pragma: no cover - a driver without GLSL 3.30
            raise RenderError(f"the OpenGL driver cannot compile the renderer's shaders: {exc}") from exc
        self._buffers = []
        sky_vbo = ctx.buffer(np.array([-1, -1, 3, -1, -1, 3], dtype="f4").tobytes())
        self.sky_vao = ctx.vertex_array(self.sky, [(sky_vbo, "2f", "in_ndc")])
        x0, y0, x1, y1 = scene.ground_extent
        quad = np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y0, 0], [x1, y1, 0], [x0, y1, 0]], dtype="f4")
        ground_vbo = ctx.buffer(quad.tobytes())
        self.ground_vao = ctx.vertex_array(self.ground_prog, [(ground_vbo, "3f", "in_pos")])
        self.ground_tex = ctx.texture((gw, gh), 3, np.ascontiguousarray(scene.ground).tobytes(), dtype="u1",
                                      alignment=1)  # fmt: skip
        self.ground_tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self._buffers += [sky_vbo, ground_vbo]
        if len(scene.vertices):
            vbo = ctx.buffer(np.ascontiguousarray(scene.vertices, dtype="f4").tobytes())
            self.object_vao = ctx.vertex_array(self.objects, [(vbo, VERTEX_FORMAT, *VERTEX_ATTRIBUTES)])
            self._buffers.append(vbo)
        else:
            self.object_vao = None
        W, H = camera.width, camera.height
        self.color_tex = ctx.texture((W, H), 4, dtype="f1")
        self.depth_tex = ctx.texture((W, H), 1, dtype="f4")
        self.label_tex = ctx.texture((W, H), 1, dtype="f1")
        self.depth_rb = ctx.depth_renderbuffer((W, H))
        self.fbo = ctx.framebuffer(
            color_attachments=[self.color_tex, self.depth_tex, self.label_tex], depth_attachment=self.depth_rb
        )
        g = scene.ground_georef
        self._set(self.ground_prog, "u_ground", 0)
        self._set(self.ground_prog, "u_grid_origin", (g.x_min, g.y_max))
        self._set(self.ground_prog, "u_grid_res", g.resolution_m)
        self._set(self.ground_prog, "u_grid_size", (gw, gh))
        self._set(self.ground_prog, "u_default_label", GROUND_LABEL)
        self.projection = opengl_projection(camera, self.near, self.far)
        self._layer_limits = np.asarray(list(LAYERS.values()), dtype=np.float64)
        self._layer_lod = np.asarray([lo > 0 or name.startswith("trees") for name, (lo, _) in LAYERS.items()])
        self.last_draw_calls = 0

    # ---- helpers -----------------------------------------------------------------------------------------------
    @staticmethod
    def _set(program: Any, name: str, value: Any) -> None:
        uniform = program.get(name, None)
        if uniform is not None:
            uniform.value = value

    def _visible_ranges(self, viewproj: np.ndarray, eye: np.ndarray) -> list[tuple[int, int]]:
        """Vertex ranges to draw, nearest first: tiles whose bounding sphere meets the view frustum and whose
        layer is drawn at the tile's distance (:data:`.scene.LAYERS`)."""
        spheres = self.scene.tile_spheres
        if len(spheres) == 0:
            return []
        m = viewproj
        planes = np.stack([m[3] + m[0], m[3] - m[0], m[3] + m[1], m[3] - m[1], m[3] + m[2], m[3] - m[2]])
        planes /= np.linalg.norm(planes[:, :3], axis=1, keepdims=True)
        signed = spheres[:, :3] @ planes[:, :3].T + planes[:, 3]
        visible = (signed > -spheres[:, 3:4]).all(axis=1)
        distance = np.linalg.norm(spheres[:, :3] - eye, axis=1)
        ranges = self.scene.tile_ranges
        lo, hi = self._layer_limits[ranges[:, 2], 0], self._layer_limits[ranges[:, 2], 1]
        lod = self._layer_lod[ranges[:, 2]]
        # LOD layers switch on the tile centre's distance; the others draw while any part is within range.
        near = np.where(lod, distance, distance - spheres[:, 3])
        visible &= (near < hi) & (np.where(lod, distance, distance + spheres[:, 3]) >= lo)
        index = np.flatnonzero(visible)
        index = index[np.argsort(distance[index], kind="stable")]
        return [(int(ranges[k, 0]), int(ranges[k, 1])) for k in index]

    def _set_condition(self, condition: Condition, eye: np.ndarray, forward: np.ndarray) -> None:
        lamps = self.scene.lamps
        nearest = np.zeros((0, 3))
        if condition.lamp_intensity > 0 and len(lamps):
            d2 = ((lamps[:, :2] - eye[:2]) ** 2).sum(1)
            order = np.argsort(d2, kind="stable")[: shaders.MAX_LAMPS]
            nearest = lamps[order[d2[order] < 150.0**2]]
        padded = np.zeros((shaders.MAX_LAMPS, 3))
        padded[: len(nearest)] = nearest
        values = {
            "u_cam_pos": tuple(eye),
            "u_cam_forward": tuple(forward),
            "u_sun_dir": condition.sun_direction,
            "u_sun_color": condition.sun_color,
            "u_sky_light": condition.sky_light,
            "u_ground_light": condition.ground_light,
            "u_fog_color": condition.fog_color,
            "u_fog_density": condition.fog_density,
            "u_lamp_intensity": condition.lamp_intensity,
            "u_lamp_color": condition.lamp_color,
            "u_num_lamps": len(nearest),
            "u_lamps": [tuple(p) for p in padded],
            "u_window_lit": condition.window_lit_fraction,
            "u_window_color": condition.window_color,
            "u_foliage": condition.foliage,
            "u_exposure": condition.exposure,
            "u_sky_zenith": condition.sky_zenith,
            "u_sky_horizon": condition.sky_horizon,
            "u_sun_glow": condition.sun_glow,
            "u_clouds": condition.clouds,
            "u_stars": condition.stars,
        }
        for program in (self.sky, self.ground_prog, self.objects):
            for name, value in values.items():
                self._set(program, name, value)

    # ---- API ---------------------------------------------------------------------------------------------------
    def render(self, T_cam2world: Any, condition: str | Condition = "day") -> RenderedFrame:
        """Renders one view.

        Args:
            T_cam2world: ``(4, 4)`` camera-to-world (array or :class:`maploc.types.Pose`), OpenCV camera frame,
                metres.
            condition: a name of :data:`.conditions.CONDITIONS` or a :class:`.conditions.Condition`.

        Returns:
            The frame (RGB, depth, labels, pose, camera).

        Raises:
            RenderParameterError: the pose is not a finite rigid transform, or the condition is unknown.
        """
        import moderngl

        T = _check_pose(T_cam2world)
        cond = get_condition(condition)
        view = opengl_view(T)
        viewproj = self.projection @ view
        eye, forward = T[:3, 3], T[:3, 2]
        ctx = self.ctx
        self.fbo.use()
        ctx.viewport = (0, 0, self.camera.width, self.camera.height)
        ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self._set_condition(cond, eye, forward)
        mvp = tuple(viewproj.T.astype("f4").ravel())
        # Nearest objects first, then the ground, then the sky where nothing was drawn (early depth test).
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.depth_func = "<="
        calls = 0
        if self.object_vao is not None:
            self._set(self.objects, "u_viewproj", mvp)
            for first, count in self._visible_ranges(viewproj, eye):
                self.object_vao.render(moderngl.TRIANGLES, vertices=count, first=first)
                calls += 1
        self._set(self.ground_prog, "u_viewproj", mvp)
        self.ground_tex.use(location=0)
        self.ground_vao.render(moderngl.TRIANGLES)
        self._set(self.sky, "u_inv_viewproj", tuple(np.linalg.inv(viewproj).T.astype("f4").ravel()))
        self.sky_vao.render(moderngl.TRIANGLES)
        calls += 2
        self.last_draw_calls = calls
        W, H = self.camera.width, self.camera.height
        rgb = np.frombuffer(self.fbo.read(components=3, attachment=0, alignment=1), np.uint8).reshape(H, W, 3)
        depth = np.frombuffer(self.fbo.read(components=1, attachment=1, dtype="f4"), np.float32).reshape(H, W)
        labels = np.frombuffer(self.fbo.read(components=1, attachment=2, alignment=1), np.uint8).reshape(H, W)
        depth = np.where(labels[::-1] == 0, np.float32(0.0), depth[::-1])
        return RenderedFrame(
            rgb=np.ascontiguousarray(rgb[::-1]),
            depth=np.ascontiguousarray(depth, dtype=np.float32),
            labels=np.ascontiguousarray(labels[::-1]),
            T_cam2world=T,
            camera=self.camera,
            condition=cond.name,
        )

    def release(self) -> None:
        """Frees the GL objects (and the context, if this renderer created it)."""
        for obj in [self.fbo, self.color_tex, self.depth_tex, self.label_tex, self.depth_rb, self.ground_tex,
                    *self._buffers, self.sky, self.ground_prog, self.objects]:  # fmt: skip
            obj.release()
        if self._own_context:
            self.ctx.release()

    def __enter__(self) -> Renderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
