"""The scene coordinate regressor: output stride, mean offset, encoders, uncertainty head."""

from __future__ import annotations

import pytest
import torch

from maploc_dsac.network import GREY_MEAN, SceneCoordinateNetwork, output_size


@pytest.mark.parametrize("size,expected", [((48, 64), (6, 8)), ((50, 70), (7, 9)), ((240, 320), (30, 40))])
def test_output_stride_8_rounds_up(size, expected):
    assert output_size(*size) == expected
    net = SceneCoordinateNetwork(width=0.125)
    out = net(torch.rand(2, 3, *size))
    assert out["scene_coordinates"].shape == (2, 3, *expected)
    assert "log_variance" not in out


def test_mean_is_added_to_the_offsets():
    torch.manual_seed(0)
    net = SceneCoordinateNetwork(width=0.125).eval()
    x = torch.rand(1, 3, 32, 40)
    before = net(x)["scene_coordinates"]
    assert not bool(net.mean_initialized)
    net.set_mean(torch.tensor([1.5, -2.0, 0.25]))
    after = net(x)["scene_coordinates"]
    assert bool(net.mean_initialized)
    torch.testing.assert_close(after - before, torch.tensor([1.5, -2.0, 0.25]).view(1, 3, 1, 1).expand_as(after))
    with pytest.raises(ValueError, match="finite"):
        net.set_mean(torch.tensor([float("nan"), 0.0, 0.0]))


def test_mean_is_saved_in_the_state_dict():
    net = SceneCoordinateNetwork(width=0.125)
    net.set_mean(torch.tensor([1.0, 2.0, 3.0]))
    other = SceneCoordinateNetwork(width=0.125)
    other.load_state_dict(net.state_dict())
    assert other.mean.tolist() == [1.0, 2.0, 3.0] and bool(other.mean_initialized)


def test_grey_normalisation_matches_dsacstar():
    net = SceneCoordinateNetwork(width=0.125)
    x = torch.full((1, 3, 8, 8), GREY_MEAN)
    assert net.normalize(x).shape == (1, 1, 8, 8)
    torch.testing.assert_close(net.normalize(x), torch.zeros(1, 1, 8, 8), atol=1e-6, rtol=0)
    # white is (1 - 0.4) / 0.25 = 2.4
    torch.testing.assert_close(net.normalize(torch.ones(1, 3, 2, 2)), torch.full((1, 1, 2, 2), 2.4))
    rgb = SceneCoordinateNetwork(width=0.125, grayscale=False)
    assert rgb.normalize(torch.rand(1, 3, 4, 4)).shape == (1, 3, 4, 4)


def test_uncertainty_head_starts_at_unit_variance_and_learns():
    net = SceneCoordinateNetwork(width=0.125, uncertainty=True)
    out = net(torch.rand(2, 3, 24, 32))
    assert out["log_variance"].shape == (2, 1, 3, 4)
    assert torch.count_nonzero(out["log_variance"]) == 0  # zero-initialised: variance 1
    out["log_variance"].sum().backward()
    assert net.head.log_variance.weight.grad is not None and net.head.log_variance.weight.grad.abs().sum() > 0


def test_width_scales_the_parameter_count_quadratically():
    n_full = sum(p.numel() for p in SceneCoordinateNetwork(width=1.0).parameters())
    n_half = sum(p.numel() for p in SceneCoordinateNetwork(width=0.5).parameters())
    assert 3.5 < n_full / n_half < 4.1


def test_gradients_reach_the_first_layer():
    net = SceneCoordinateNetwork(width=0.125)
    net(torch.rand(1, 3, 16, 16))["scene_coordinates"].square().mean().backward()
    assert net.encoder.conv1.weight.grad.abs().sum() > 0


def test_timm_backbone_at_stride_8():
    net = SceneCoordinateNetwork(encoder="timm:resnet18", width=0.25, grayscale=False)
    out = net(torch.rand(1, 3, 64, 80))
    assert out["scene_coordinates"].shape == (1, 3, 8, 10)
    assert net.encoder.out_channels == 128  # resnet18's layer2 (stride 8)


def test_unknown_encoders_are_errors():
    with pytest.raises(ValueError, match="unknown encoder"):
        SceneCoordinateNetwork(encoder="vgg")
    with pytest.raises(ValueError, match="unknown timm model"):
        SceneCoordinateNetwork(encoder="timm:not_a_model_xyz")
    with pytest.raises(ValueError, match="width"):
        SceneCoordinateNetwork(width=0)
