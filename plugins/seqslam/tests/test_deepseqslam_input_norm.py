"""DeepSeqSLAM's ``input_norm`` (issue 25): the option reaches the network, and a typo is a ConfigError."""

import pytest
import torch

from maploc.config import apply_overrides
from maploc.errors import ConfigError
from maploc_seqslam.deepseqslam import DeepSeqSLAM, DeepSeqSLAMConfig, DeepSeqSLAMNet


def _net(norm: str) -> DeepSeqSLAMNet:
    config = apply_overrides(DeepSeqSLAMConfig(), [f"input_norm={norm}", "descriptor_dim=8", "hidden_size=8"])
    torch.manual_seed(0)
    return DeepSeqSLAM(config).configure_model().eval()


@torch.no_grad()
def test_per_image_network_ignores_exposure_and_imagenet_does_not():
    images = torch.rand(2, 3, 3, 48, 64, generator=torch.Generator().manual_seed(0))  # (B, L, 3, H, W)
    darker = 0.5 * images + 0.1
    net = _net("per_image")
    assert net.input_norm == "per_image"
    torch.testing.assert_close(net.describe(darker[0]), net.describe(images[0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(net(darker), net(images), atol=1e-4, rtol=0)
    default = _net("imagenet")
    assert DeepSeqSLAMConfig().input_norm == "imagenet" and default.input_norm == "imagenet"
    assert not torch.allclose(default.describe(darker[0]), default.describe(images[0]), atol=1e-3)
    # the same state (ImageNet buffers included) loads into either: old checkpoints keep loading
    net.load_state_dict(default.state_dict())


def test_typo_is_a_config_error_listing_the_modes():
    with pytest.raises(ConfigError, match=r"input_norm.*'imagenet', 'per_image'.*'perimage'"):
        apply_overrides(DeepSeqSLAMConfig(), ["input_norm=perimage"])
    with pytest.raises(ValueError, match="input_norm"):
        DeepSeqSLAMNet(1, input_norm="perimage")
