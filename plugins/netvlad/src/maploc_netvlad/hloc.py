"""``hloc``: hierarchical localization, retrieval -> local matching -> PnP (Sarlin, Cadena, Siegwart & Dymczyk,
"From Coarse to Fine: Robust Hierarchical Localization at Large Scale", CVPR 2019, Sec. 3; and Sarlin et al.,
CoRL 2018, Sec. III), composed of parts by name.

1. Retrieval (``retrieval``): the ``top_k`` map images most similar to the query by global descriptor: a
   ``netvlad`` / ``mobilenetvlad`` checkpoint (``retrieval_checkpoint``) or, without one, the core's
   ``nn-retrieval`` thumbnail descriptors (``thumbnails``, so that ``hloc`` runs without training).
2. Local features (``features``, a ``maploc.encoders`` entry point of maploc-features: ``sift``, ``xfeat``,
   ``aliked``) of the query and each retrieved map image, matched by ``matcher`` (``maploc.matchers``: ``mnn``,
   ``lightglue``, ``lighterglue``). Features are cached per image in ``RUN/features/``.
3. 2D-3D: each matched map keypoint has a 3D point, lifted from the map image's depth where the dataset has depth
   (7-Scenes, sim-city) or triangulated from the matched, posed map images where it has none (Strecha, colmap;
   :mod:`maploc_features.sfm`, written to ``RUN/map_model/`` as a COLMAP model); ``map_points`` chooses.
4. Pose: an absolute-pose solver by name (``solver``, ``maploc.solvers``: ``poselib-pnp`` (default), ``pycolmap-pnp``,
   ``opencv-pnp`` of maploc-features, ``ransac-pnp`` of maploc-dsac).

Leave-one-out datasets (``strecha`` with ``split=loo``): the query's own image is never retrieved or matched, and
its map is triangulated from the pairs that do not involve it, so no 3D point has an observation in it.

A query with too few correspondences or inliers is returned as failed (``num_failed``), never raised. The failure
cause, the correspondence count and how the map points were made are columns of ``RUN/predictions/hloc.csv``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import attrs
import numpy as np
import torch

from maploc.api import Dataset, Method, PoseSolver, RunContext
from maploc.config import DataConfig, at_least, greater_than, in_range
from maploc.errors import CheckpointError, ConfigError
from maploc.types import Correspondences, PoseEstimate, Retrieval, Sample

from .hloc_map import MAP_POINTS, HlocMap
from .hloc_parts import FeatureStore, check_pair, lift_keypoints, make_extractor, make_matcher, make_solver

__all__ = ["HlocConfig", "HlocMethod", "make_solver", "lift_keypoints", "RETRIEVALS", "DEFAULT_SOLVER",
           "EXTRACTOR_DEFAULTS"]

#: global retrieval of hloc: the core's thumbnails or a trained checkpoint of one of this plugin's methods
RETRIEVALS = ("thumbnails", "netvlad", "mobilenetvlad")
#: the default solver: PoseLib's LO-RANSAC P3P (maploc-features)
DEFAULT_SOLVER = "poselib-pnp"
#: hloc's own defaults for an extractor's options, under ``features_options`` (hloc's SIFT before the parts
#: were shared: OpenCV's contrastThreshold 0.02, which finds more keypoints on JPEG-compressed 7-Scenes frames)
EXTRACTOR_DEFAULTS: Mapping[str, Mapping[str, Any]] = {"sift": {"contrast_threshold": 0.02}}

log = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class HlocConfig:
    """Config of ``hloc``.

    Attributes:
        top_k: map images retrieved per query and matched.
        retrieval: the global descriptor: ``thumbnails`` (the core's ``nn-retrieval`` descriptors), ``netvlad`` or
            ``mobilenetvlad`` (both need ``retrieval_checkpoint`` of that method); ``None`` (default): the
            checkpoint's method when ``retrieval_checkpoint`` is set, else ``thumbnails``.
        retrieval_checkpoint: a ``netvlad`` or ``mobilenetvlad`` checkpoint for retrieval.
        thumbnail_width: thumbnail width (pixels) of the fallback retrieval.
        features: the local-feature extractor, a ``maploc.encoders`` entry point of maploc-features (``sift``,
            ``xfeat``, ``aliked``; ``maploc list --kind encoders``).
        matcher: the matcher, a ``maploc.matchers`` entry point (``mnn`` for any features, ``lightglue`` for
            ``aliked``, ``lighterglue`` for ``xfeat``); a pair the matcher cannot match is refused when the config
            is built (:class:`~maploc.errors.ConfigError`), before any data is read.
        max_keypoints: keypoints per image, passed to the extractor (hloc's SIFT kept 2000).
        resize_max: longer image side (pixels) the extractor detects at (``None``: the dataset's resolution);
            keypoints stay in the dataset's pixels.
        features_options: further extractor options by name (``-o features_options.contrast_threshold=0.03``);
            over :data:`EXTRACTOR_DEFAULTS`. A name the extractor does not take is a one-line error.
        matcher_options: matcher options by name (``-o matcher_options.ratio=0.9``).
        map_points: ``auto`` (default: lifted from depth where every map image has depth, else triangulated),
            ``depth`` or ``triangulate``.
        map_pairs: triangulated maps: ``0`` matches every pair of map images whose optical axes differ by less
            than 90°; ``k > 0`` each image with its ``k`` nearest by viewing direction.
        sfm_max_reproj_error_px: triangulated maps: reprojection error a kept observation may have, pixels.
        sfm_min_tri_angle_deg: triangulated maps: the angle two rays of a kept point meet at least, degrees.
        solver: the absolute-pose solver, an entry point of ``maploc.solvers`` (``maploc list --kind solvers``):
            ``poselib-pnp`` (default; PoseLib LO-RANSAC P3P), ``pycolmap-pnp``, ``opencv-pnp``, ``ransac-pnp``
            (DSAC*'s RANSAC, maploc-dsac). It is built with those of its keyword arguments it names among
            ``inlier_threshold_px`` / ``max_reproj_error`` / ``inlier_threshold`` (= ``ransac_max_error_px``),
            ``max_iterations`` (= ``ransac_max_iterations``; ``ransac-pnp`` reads it as its number of hypotheses:
            set it to e.g. 64), ``min_inliers`` and ``seed`` (the run's seed); its other arguments keep their
            defaults.
        ransac_max_error_px: RANSAC inlier threshold (pixels, at the image's resolution).
        ransac_max_iterations: RANSAC iteration cap.
        min_inliers: fewer inliers = a failed query.
        data: dataset options (``image_height`` ``None`` = native resolution).
    """

    top_k: int = attrs.field(default=5, validator=at_least(1))
    retrieval: str | None = attrs.field(default=None, validator=attrs.validators.optional(
        attrs.validators.in_(RETRIEVALS)))
    retrieval_checkpoint: str | None = None
    thumbnail_width: int = attrs.field(default=32, validator=at_least(4))
    features: str = "sift"
    matcher: str = "mnn"
    max_keypoints: int | None = attrs.field(default=2000, validator=at_least(8))
    resize_max: int | None = attrs.field(default=None, validator=at_least(16))
    features_options: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    matcher_options: Mapping[str, Any] = attrs.field(factory=dict, converter=dict)
    map_points: str = attrs.field(default="auto", validator=attrs.validators.in_(MAP_POINTS))
    map_pairs: int = attrs.field(default=0, validator=at_least(0))
    sfm_max_reproj_error_px: float = attrs.field(default=4.0, validator=greater_than(0))
    sfm_min_tri_angle_deg: float = attrs.field(default=1.5, validator=in_range(0.0, 89.0))
    solver: str = DEFAULT_SOLVER
    ransac_max_error_px: float = attrs.field(default=8.0, validator=greater_than(0))
    ransac_max_iterations: int = attrs.field(default=10000, validator=at_least(10))
    min_inliers: int = attrs.field(default=12, validator=at_least(4))
    data: DataConfig = DataConfig()

    def __attrs_post_init__(self) -> None:
        # an extractor/matcher pair the matcher cannot match is refused with the config, before any data is read
        check_pair(self.features, self.matcher)


class HlocMethod(Method[HlocConfig]):
    """Hierarchical localization: retrieval, local features and a matcher by name, 2D-3D from depth or a
    triangulated map, a pose solver by name."""

    name: ClassVar[str] = "hloc"
    Config = HlocConfig
    presets_package: ClassVar[str | None] = None
    default_dataset: ClassVar[str] = "sim-city"
    metric_family: ClassVar[str] = "pose6dof"
    localize_batch_size: ClassVar[int] = 1
    conformance_dataset: ClassVar[str] = "synthetic-room"
    supports_leave_one_out: ClassVar[bool] = True

    def __init__(self, config: HlocConfig) -> None:
        super().__init__(config)
        self.map: HlocMap | None = None
        self.retriever: Any = None
        self.retrieval_name = "thumbnails"
        self.solver: PoseSolver | None = None
        self.extractor: Any = None
        self.matcher: Any = None
        self.store: FeatureStore | None = None
        self.stats = {"retrieval_s": 0.0, "features_s": 0.0, "matching_s": 0.0, "pnp_s": 0.0, "matches": 0,
                      "correspondences": 0, "queries": 0, "failed_few_matches": 0, "failed_pnp": 0,
                      "leave_one_out": 0}


    def _retrieval_model(self) -> tuple[str, Any]:
        """``(retrieval name, model or None)`` from ``retrieval`` and ``retrieval_checkpoint``.

        Raises:
            ConfigError: ``retrieval`` netvlad/mobilenetvlad without a checkpoint, ``thumbnails`` with one, or a
                checkpoint of another method than ``retrieval`` names.
            CheckpointError: an unreadable checkpoint, of another method, or that does not fit its model.
        """
        wanted, path = self.config.retrieval, self.config.retrieval_checkpoint
        if path is None:
            if wanted not in (None, "thumbnails"):
                raise ConfigError(f"retrieval={wanted} needs retrieval_checkpoint=RUN/checkpoints/last.ckpt of a "
                                  f"{wanted} run")
            return "thumbnails", None
        if wanted == "thumbnails":
            raise ConfigError("retrieval=thumbnails uses no checkpoint; drop retrieval_checkpoint or set "
                              "retrieval=netvlad|mobilenetvlad")
        from maploc.config import structure
        from maploc.engine.checkpoint import load_checkpoint

        from .config import MobileNetVLADConfig, NetVLADConfig
        from .method import build_teacher
        from .model import GlobalDescriptorNet

        state = load_checkpoint(path)
        kind = state.get("method")
        if wanted is not None and kind != wanted:
            raise ConfigError(f"retrieval={wanted} but retrieval_checkpoint {path} holds method {kind!r}")
        if kind == "netvlad":
            model = build_teacher(structure(NetVLADConfig, state["config"]))
        elif kind == "mobilenetvlad":
            m = structure(MobileNetVLADConfig, state["config"]).model
            model = GlobalDescriptorNet(m.backbone, m.layer, m.num_clusters, projection_dim=m.descriptor_dim,
                                        input_norm=m.input_norm)
        else:
            raise CheckpointError(f"retrieval_checkpoint {path} holds method {kind!r}, not netvlad or mobilenetvlad")
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as e:
            raise CheckpointError(f"retrieval_checkpoint {path} does not fit its model: {str(e).splitlines()[0]}") from None
        return str(kind), model.eval()

    @torch.no_grad()
    def _global(self, images: torch.Tensor) -> torch.Tensor:
        from maploc.methods.nn_retrieval import thumbnail_descriptors

        if self.retriever is None:
            return thumbnail_descriptors(images, self.config.thumbnail_width)
        return self.retriever.vlad(images) if not self.retriever.whitening.fitted else self.retriever(images)

    def _parts(self, context: RunContext) -> None:
        """Builds the solver, extractor and matcher by name and the feature cache; refuses an incompatible
        features/matcher pair or an unknown option first (before any image is read).

        Raises:
            ConfigError: the matcher cannot match these features, or an option a part does not take.
            PluginError: a part of that name is not installed, or its optional dependency is missing.
        """
        cfg = self.config
        check_pair(cfg.features, cfg.matcher)
        self.solver = make_solver(cfg.solver, max_error_px=cfg.ransac_max_error_px,
                                  max_iterations=cfg.ransac_max_iterations, min_inliers=cfg.min_inliers,
                                  seed=context.seed)
        options = {**EXTRACTOR_DEFAULTS.get(cfg.features, {}), **cfg.features_options}
        self.extractor = make_extractor(cfg.features, options,
                                        {"max_keypoints": cfg.max_keypoints, "resize_max": cfg.resize_max})
        self.matcher = make_matcher(cfg.matcher, cfg.features, cfg.matcher_options)
        folder = None if context.run_dir is None else Path(context.run_dir) / "features"
        self.store = FeatureStore(self.extractor, folder)

    def build_map(self, map_data: Dataset, context: RunContext = RunContext()) -> None:
        """Builds the parts, then local features, 3D points (depth-lifted or triangulated; a triangulated map is
        written to ``RUN/map_model/``) and a global descriptor of every map image.

        Raises:
            DataError: empty map, a map image without pose, or ``map_points=depth`` with a map image without depth.
            CheckpointError: an unusable ``retrieval_checkpoint``.
            ConfigError: ``retrieval`` and ``retrieval_checkpoint`` disagree; an incompatible features/matcher pair.
            PluginError: no part of a given name is installed.
        """
        from maploc_features.sfm import SfMOptions

        cfg = self.config
        self._parts(context)
        self.retrieval_name, self.retriever = self._retrieval_model()
        run_dir = None if context.run_dir is None else Path(context.run_dir)
        sfm = SfMOptions(max_reproj_error_px=cfg.sfm_max_reproj_error_px, min_tri_angle_deg=cfg.sfm_min_tri_angle_deg,
                         seed=context.seed)
        self.map = HlocMap.build(map_data, self.store, self.matcher, self._global, mode=cfg.map_points,
                                 sfm_options=sfm, pairs_nearest=cfg.map_pairs,
                                 model_dir=None if run_dir is None else run_dir / "map_model", logger=context.logger)
        self._run_dir = run_dir

    def localize(self, queries: Sequence[Sample], context: RunContext = RunContext()) -> list[PoseEstimate]:
        return [self._localize_one(q, context.leave_one_out) for q in queries]

    def _localize_one(self, q: Sample, leave_one_out: bool = False) -> PoseEstimate:
        cfg, hmap = self.config, self.map
        assert hmap is not None and self.solver is not None and self.store is not None, "build_map was not called"
        t0 = time.perf_counter()
        own = hmap.index_of(q.name) if leave_one_out else None
        sim = (self._global(q.image.float()[None]) @ hmap.global_descriptors.T)[0]
        if own is not None:
            sim[own] = float("-inf")  # the query's own image is never retrieved
            self.stats["leave_one_out"] += 1
        k = min(cfg.top_k, len(sim) - (own is not None))
        scores, order = sim.topk(k)
        top = order.tolist()
        retrieval = Retrieval(indices=top, scores=scores)
        t1 = time.perf_counter()
        qf = self.store.get(q.name, q.image)
        t2 = time.perf_counter()
        points = [hmap.points(r, own) for r in top]  # a held-out map is triangulated once, not timed per query
        t2b = time.perf_counter()
        p2d, p3d, matches = [], [], 0
        for r, X_all in zip(top, points):
            pairs = self.matcher.match(qf, hmap.images[r].features).pairs
            matches += len(pairs)
            if len(pairs):
                X = X_all[pairs[:, 1]]
                ok = np.isfinite(X).all(axis=1)
                p2d.append(qf.keypoints[pairs[ok, 0]].astype(np.float64))
                p3d.append(X[ok])
        t3 = time.perf_counter()
        self.stats["retrieval_s"] += t1 - t0
        self.stats["features_s"] += t2 - t1
        self.stats["matching_s"] += t3 - t2b
        self.stats["queries"] += 1
        self.stats["matches"] += matches
        n = sum(len(x) for x in p2d)
        self.stats["correspondences"] += n
        seconds = (t3 - t0) - (t2b - t2)
        extras = {"correspondences": n, "map_points": hmap.mode}
        if n < max(4, cfg.min_inliers):
            self.stats["failed_few_matches"] += 1
            return PoseEstimate(success=False, seconds=seconds, retrieval=retrieval,
                                extras={"reason": "too few 2D-3D correspondences", **extras})
        c = Correspondences(points2d=torch.from_numpy(np.concatenate(p2d)), points3d=torch.from_numpy(np.concatenate(p3d)),
                            camera=q.camera)
        est = self.solver.solve([c])[0]
        t4 = time.perf_counter()
        self.stats["pnp_s"] += t4 - t3
        seconds += t4 - t3
        inliers = int(est.num_inliers or 0)
        if not est.success or est.T_cam2world is None or inliers < cfg.min_inliers:
            self.stats["failed_pnp"] += 1
            return PoseEstimate(success=False, seconds=seconds, num_inliers=inliers, retrieval=retrieval,
                                extras={"reason": "too few PnP inliers", **extras})
        return PoseEstimate(T_cam2world=est.T_cam2world, success=True, num_inliers=inliers, confidence=inliers / n,
                            seconds=seconds, retrieval=retrieval, extras={"reason": "", **extras})

    def report_sections(self, run_dir: Path, metrics: Mapping[str, float]) -> list[tuple[str, str]]:
        """The pipeline's parts, how the map points were made (with the SfM statistics of a triangulated map),
        stage timings (ms per query), mean matches / correspondences and failure causes. Writes
        ``RUN/map_stats.json``."""
        cfg, s = self.config, self.stats
        q = max(1, s["queries"])
        what = (f"{self.retrieval_name} checkpoint {cfg.retrieval_checkpoint}" if cfg.retrieval_checkpoint
                else f"nn-retrieval thumbnails ({cfg.thumbnail_width} px)")
        lines = [
            f"retrieval: top-{cfg.top_k} by {what}" + (", the query's own image excluded (leave-one-out)"
                                                       if s["leave_one_out"] else ""),
            f"local features: {cfg.features} ({self.extractor!r}); matcher {cfg.matcher} ({self.matcher!r}); "
            f"features cache: {self.store.misses} extracted, {self.store.hits} reused" if self.store else "",
        ]
        if self.map is not None:
            lines += self.map.describe()
            lines.append("map model: RUN/map_model/ (COLMAP)" if self.map.mode == "triangulated" and run_dir else "")
            b = self.map.build_seconds
            lines.append("map build: " + ", ".join(f"{k} {v:.1f} s" for k, v in b.items()))
            if run_dir is not None:
                (Path(run_dir) / "map_stats.json").write_text(json.dumps(self.map.summary(), indent=1) + "\n")
        lines += [
            f"pose: solver {cfg.solver} ({self.solver!r}), {cfg.ransac_max_error_px} px, >= {cfg.min_inliers} inliers",
            f"failed: {int(s['failed_few_matches'])} with too few matches, {int(s['failed_pnp'])} in PnP, of "
            f"{int(s['queries'])} queries",
            f"per query: retrieval {1000 * s['retrieval_s'] / q:.1f} ms, features {1000 * s['features_s'] / q:.1f} ms, "
            f"matching {1000 * s['matching_s'] / q:.1f} ms, pose {1000 * s['pnp_s'] / q:.1f} ms; "
            f"{s['matches'] / q:.1f} matches, {s['correspondences'] / q:.1f} 2D-3D correspondences",
        ]
        return [("hloc pipeline", "\n".join(line for line in lines if line))]
