"""Distillation of the student (MobileNetVLAD): it can fit the teacher's descriptors, and its parts are consistent.

The overfit test is the check that failed before: a handful of images, the student's training step with its
optimizer must reach a mean cosine above 0.9 with the targets (in eval mode, the mode that encodes the map).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maploc_netvlad.config import MobileNetVLADConfig, StudentModelConfig
from maploc_netvlad.method import MobileNetVLADMethod
from maploc_netvlad.model import GlobalDescriptorNet
from maploc_netvlad.training import TrainingImages


def _images(n: int, seed: int = 0, h: int = 64, w: int = 64) -> torch.Tensor:
    """Smooth random colour images in [0, 1] (low-frequency noise upsampled), ``(n, 3, h, w)``."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, h // 8, w // 8, generator=g)
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)


def _student(n_images: int, dim: int, init: str) -> tuple[MobileNetVLADMethod, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    config = MobileNetVLADConfig(model=StudentModelConfig(num_clusters=8, descriptor_dim=dim, projection_init=init))
    method = MobileNetVLADMethod(config)
    method.model = method.configure_model()
    images = _images(n_images)
    targets = F.normalize(torch.randn(n_images, dim, generator=torch.Generator().manual_seed(1)), dim=1)
    method.train_images = TrainingImages(images=images, xyz=np.zeros((n_images, 3)), names=[str(i) for i in range(n_images)])
    method.targets = targets
    method.model.calibrate_batch_norm(images)
    method.model.init_clusters(images)
    return method, images, targets


def test_student_overfits_a_handful_of_images_from_a_random_head():
    # random projection (no closed-form start): the gradient path alone must fit 8 unrelated target descriptors
    method, images, targets = _student(8, 16, "random")
    assert method.training_cosine(images, targets) < 0.5
    optimizer, _ = method.configure_optimizers(method.model)
    first_conv = next(p for p in method.model.backbone.parameters() if p.ndim == 4)
    before = first_conv.detach().clone()
    for step in range(60):
        method.model.train()
        out = method.training_step(method.model, torch.arange(8), step)
        optimizer.zero_grad()
        out["loss"].backward()
        if step == 0:
            assert first_conv.grad is not None and float(first_conv.grad.abs().sum()) > 0  # reaches the backbone
        optimizer.step()
    assert not torch.equal(first_conv, before)
    cosine = method.training_cosine(images, targets)
    assert cosine > 0.9, cosine
    # the batch-norm statistics stayed the calibrated ones (frozen in the training step)
    bn = method.model.batch_norm_layers()[0]
    assert int(bn.num_batches_tracked) == 1


def test_ridge_projection_fits_the_targets_at_once():
    method, images, targets = _student(8, 16, "ridge")
    cosine = method.model.fit_projection(images, targets, ridge=1e-4)
    assert cosine > 0.99
    assert method.training_cosine(images, targets) == pytest.approx(cosine, abs=1e-3)
    with pytest.raises(ValueError, match="targets must be"):
        method.model.fit_projection(images, targets[:, :3])


def test_batch_norm_calibration_makes_eval_mode_match_train_mode():
    torch.manual_seed(0)
    net = GlobalDescriptorNet("mobilenetv2_035", 4, 8, projection_dim=16)
    images = _images(16, seed=3, h=128, w=128)
    net.eval()
    with torch.no_grad():
        uncalibrated = net.local_features(images)
        net.train()
        train_mode = net.local_features(images)
        assert not torch.allclose(uncalibrated, train_mode, atol=1e-2)  # a pretrained=False backbone: stats 0 / 1
        assert net.calibrate_batch_norm(images, batch_size=16) > 0
        net.eval()
        calibrated = net.local_features(images)
    def relative(a, b):
        return float((a - b).norm() / b.norm())

    # equal up to the running variance being unbiased (n - 1) where train mode divides by n, compounded over 51
    # layers (4 % here on 4x4 final maps)
    assert relative(uncalibrated, train_mode) > 0.3
    assert relative(calibrated, train_mode) < 0.06
