"""The core's conformance suite, once per method of this plugin (netvlad / mobilenetvlad render a tiny sim-city).

Besides the run itself it checks that ``maploc eval --checkpoint`` gives the same metrics (the saved faiss index
is reused) and that ``maploc evaluate RUN`` reproduces ``metrics.json`` from the predictions files.

What the run wrote is then checked against a recomputation from the checkpoint and the rendered images, sharing
no code with the method past the network's forward pass:

* the ranked list of every query is the exact inner-product ranking of the map by the run's descriptors: for
  ``netvlad`` the NetVLAD vectors PCA-whitened here in NumPy (Arandjelović et al. CVPR 2016, Sec. 5.1: centred on
  the map's mean, projected on its top principal directions scaled by 1/sqrt(variance), L2-normalised; as many
  dimensions as the run kept), for ``mobilenetvlad`` the student's projected descriptors (Sarlin et al. CoRL 2018,
  Sec. III-A), which must be unit vectors of ``model.descriptor_dim``;
* the recall rows of the method, of its ``thumbnails`` baseline and the chance row are counted here from the
  predictions files and the poses (a match: a map image within 25 m, or 10 m for ``_within_10m``; chance: a
  uniformly random ranking, ``1 - C(M - P, N) / C(M, N)`` with ``P`` true map images among ``M``).
"""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from maploc.config import structure, structure_dataset_options
from maploc.engine import load_checkpoint
from maploc.engine.runner import load_run_config
from maploc.plugins import load_component
from maploc.testing.conformance import check_method


def _datasets(run: Path):
    cfg = load_run_config(run / "config.yaml")
    cls = load_component("datasets", cfg["dataset"])
    data = cfg["config"]["data"]
    options = structure_dataset_options(cls, data.get("options") or {})
    return [cls(None, split, image_height=data["image_height"], options=options) for split in ("map", "query")]


def _ranked(path: Path) -> dict[str, list[tuple[str, float]]]:
    """query name -> [(map name, score)] in file order (best first)."""
    out: dict[str, list[tuple[str, float]]] = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        q, m, s = line.split()
        out.setdefault(q, []).append((m, float(s)))
    return out


def _descriptors(name: str, run: Path, map_images: torch.Tensor, query_images: torch.Tensor):
    from maploc_netvlad.config import MobileNetVLADConfig, NetVLADConfig
    from maploc_netvlad.method import MobileNetVLADMethod, NetVLADMethod

    cfg = load_run_config(run / "config.yaml")
    cls, config_cls = (NetVLADMethod, NetVLADConfig) if name == "netvlad" else (MobileNetVLADMethod, MobileNetVLADConfig)
    method = cls(structure(config_cls, cfg["config"]))
    net = method.configure_model()
    net.load_state_dict(load_checkpoint(run / "checkpoints" / "last.ckpt")["model"])
    net.eval()
    with torch.no_grad():
        if name == "mobilenetvlad":
            m, q = net(map_images).double().numpy(), net(query_images).double().numpy()
            dim = method.config.model.descriptor_dim
            assert m.shape == (len(map_images), dim) and q.shape == (len(query_images), dim)
            np.testing.assert_allclose(np.linalg.norm(np.concatenate([m, q]), axis=1), 1.0, atol=1e-5)
            return m, q
        vm, vq = net.vlad(map_images).double().numpy(), net.vlad(query_images).double().numpy()
    with np.load(run / "index" / "whitening.npz") as z:
        kept = z["projection"].shape[0]
        np.testing.assert_allclose(z["mean"], vm.mean(axis=0), atol=1e-5)  # learned on this map
    mean = vm.mean(axis=0)
    _, s, vt = np.linalg.svd(vm - mean, full_matrices=False)
    proj = vt[:kept] / np.sqrt(s[:kept] ** 2 / (len(vm) - 1) + 1e-6)[:, None]

    def whiten(x):
        y = (x - mean) @ proj.T
        return y / np.linalg.norm(y, axis=1, keepdims=True)

    return whiten(vm), whiten(vq)


def _student_against_teacher(run: Path, dims: int) -> tuple[float, float]:
    """Mean cosine of the student's descriptors of its training images (the map traversal) with its targets, the
    teacher's NetVLAD vectors (``RUN/teacher.ckpt``) PCA-whitened in NumPy to ``dims`` and zero-padded; and the
    share of those images whose most similar other image is the same by the student as by the teacher."""
    from maploc_netvlad.config import MobileNetVLADConfig, NetVLADConfig
    from maploc_netvlad.method import MobileNetVLADMethod, NetVLADMethod

    cfg = load_run_config(run / "config.yaml")
    cls = load_component("datasets", cfg["dataset"])
    data = cfg["config"]["data"]
    train = cls(None, "train", image_height=data["image_height"],
                options=structure_dataset_options(cls, data.get("options") or {}))  # fmt: skip
    images = torch.stack([train[i].image.float() for i in range(len(train))])
    student = MobileNetVLADMethod(structure(MobileNetVLADConfig, cfg["config"])).configure_model()
    student.load_state_dict(load_checkpoint(run / "checkpoints" / "last.ckpt")["model"])
    saved = load_checkpoint(run / "teacher.ckpt")
    teacher = NetVLADMethod(structure(NetVLADConfig, saved["config"])).configure_model()
    teacher.load_state_dict(saved["model"])
    with torch.no_grad():
        s = student.eval()(images).double().numpy()
        v = teacher.eval().vlad(images).double().numpy()
    mean = v.mean(axis=0)
    _, sv, vt = np.linalg.svd(v - mean, full_matrices=False)
    t = (v - mean) @ (vt[:dims] / np.sqrt(sv[:dims] ** 2 / (len(v) - 1) + 1e-6)[:, None]).T
    t = np.pad(t / np.linalg.norm(t, axis=1, keepdims=True), ((0, 0), (0, s.shape[1] - dims)))
    cosine = float((s * t).sum(axis=1).mean())
    S, T = s @ s.T, t @ t.T
    np.fill_diagonal(S, -np.inf)
    np.fill_diagonal(T, -np.inf)
    return cosine, float((S.argmax(axis=1) == T.argmax(axis=1)).mean())


def _recall(ranked, q_names, positions, n: int, radius: float) -> float:
    hits = [any(np.linalg.norm(positions[m] - positions[q]) <= radius for m, _ in ranked[q][:n]) for q in q_names]
    return 100.0 * float(np.mean(hits))


def _chance(q_names, map_names, positions, n: int, radius: float) -> float:
    M = len(map_names)
    out = []
    for q in q_names:
        P = sum(np.linalg.norm(positions[m] - positions[q]) <= radius for m in map_names)
        n_drawn = min(n, M)  # a list longer than the map holds all of it
        out.append(1.0 - math.comb(M - P, n_drawn) / math.comb(M, n_drawn))
    return 100.0 * float(np.mean(out))


@pytest.mark.parametrize("name", ["netvlad", "mobilenetvlad", "hloc"])
def test_conformance(tmp_path, name, request):
    if name != "hloc":
        pytest.importorskip("maploc_simcity")
        request.getfixturevalue("needs_render")
    # the student gets 40 distillation steps: its first Adam steps move it off the ridge start (cosine 1.0 to the
    # teacher on its training images, 0.70 after 2 steps, 0.998 after 40; under load: 10 s more than 2 steps)
    metrics = check_method(name, tmp_path, train_steps=40 if name == "mobilenetvlad" else 2)
    assert metrics["num_queries"] == 4
    if name == "hloc":
        assert "coverage:median_translation_cm" in metrics
        return
    assert "num_queries_outside_test_region" not in metrics  # a 44 m route: no split (see method._CONFORMANCE)
    run = tmp_path / f"conformance-{name}"
    map_data, query_data = _datasets(run)
    ranked = _ranked(run / "predictions" / f"{name}.txt")
    q_names = list(ranked)
    assert len(q_names) == 4
    q_index = {query_data.metadata(i).name: i for i in range(len(query_data))}
    map_names = [map_data.metadata(i).name for i in range(len(map_data))]
    map_images = torch.stack([map_data[i].image.float() for i in range(len(map_data))])
    query_images = torch.stack([query_data[q_index[q]].image.float() for q in q_names])
    # the ranked lists: the exact inner-product ranking of the map by the recomputed descriptors
    m_desc, q_desc = _descriptors(name, run, map_images, query_images)
    sim = q_desc @ m_desc.T
    for i, q in enumerate(q_names):
        order = np.argsort(-sim[i], kind="stable")[:len(ranked[q])]
        assert [m for m, _ in ranked[q]] == [map_names[j] for j in order], q
        np.testing.assert_allclose([s for _, s in ranked[q]], sim[i, order], atol=1e-4)
    if name == "mobilenetvlad":  # the distilled student describes its training images as its teacher does
        report = (run / "report.txt").read_text()
        dims = int(report.split("training teacher_dims: ")[1].split()[0])
        cosine, same_neighbour = _student_against_teacher(run, dims)
        reported = float(report.split("cosine_to_teacher_at_end: ")[1].split()[0])
        assert abs(reported - cosine) < 1.5e-3, (reported, cosine)  # the run's own figure, recomputed
        assert cosine > 0.95 and same_neighbour >= 0.9, (cosine, same_neighbour)
    # the recall rows, counted by hand from the predictions files and the poses
    positions = {meta.name: meta.T_cam2world.t.double().numpy().reshape(3)
                 for meta in [map_data.metadata(i) for i in range(len(map_data))] +
                 [query_data.metadata(q_index[q]) for q in q_names]}  # fmt: skip
    thumbs = _ranked(run / "predictions" / "thumbnails.txt")
    for n in (1, 5, 10, 20):
        for suffix, radius in (("", 25.0), ("_within_10m", 10.0)):
            key = f"recall_at_{n}{suffix}"
            assert metrics[key] == pytest.approx(_recall(ranked, q_names, positions, n, radius)), key
            assert metrics[f"thumbnails:{key}"] == pytest.approx(_recall(thumbs, q_names, positions, n, radius)), key
            assert metrics[f"chance:{key}"] == pytest.approx(_chance(q_names, map_names, positions, n, radius)), key
