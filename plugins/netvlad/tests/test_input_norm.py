"""``model.input_norm`` (issue 25): the option reaches the network, and a typo is a ConfigError."""

import pytest
import torch

from maploc.config import structure
from maploc.errors import ConfigError
from maploc_netvlad.config import MobileNetVLADConfig, NetVLADConfig
from maploc_netvlad.method import MobileNetVLADMethod, build_teacher


def _images():
    return torch.rand(2, 3, 64, 80, generator=torch.Generator().manual_seed(0))


def _teacher(norm):
    torch.manual_seed(0)
    config = structure(NetVLADConfig, {"model": {"input_norm": norm, "num_clusters": 8}})
    return build_teacher(config).eval()


@torch.no_grad()
def test_per_image_teacher_ignores_exposure_and_imagenet_does_not():
    images = _images()
    darker = 0.5 * images + 0.1  # a global gain and offset, as from day to dusk
    per_image = _teacher("per_image")
    assert per_image.input_norm == "per_image"
    torch.testing.assert_close(per_image(darker), per_image(images), atol=1e-4, rtol=0)
    imagenet = _teacher("imagenet")
    assert not torch.allclose(imagenet(darker), imagenet(images), atol=1e-3)


@torch.no_grad()
def test_default_is_imagenet_and_checkpoints_load_either_way():
    assert NetVLADConfig().model.input_norm == "imagenet"
    default = _teacher("imagenet")
    per_image = _teacher("per_image")
    per_image.load_state_dict(default.state_dict())  # no normalisation buffers in the state: old checkpoints load
    # the same weights with another input normalisation encode differently: a saved index is not reused
    assert per_image.fingerprint() != default.fingerprint()


def test_student_gets_its_input_norm():
    config = structure(MobileNetVLADConfig, {"model": {"input_norm": "per_image", "num_clusters": 8,
                                                       "descriptor_dim": 16}})
    with torch.no_grad():
        net = MobileNetVLADMethod(config).configure_model().eval()
        images = _images()
        assert net.input_norm == "per_image"
        torch.testing.assert_close(net(0.5 * images + 0.1), net(images), atol=1e-4, rtol=0)


@pytest.mark.parametrize("cls, key", [(NetVLADConfig, "model"), (MobileNetVLADConfig, "model"),
                                      (MobileNetVLADConfig, "teacher")])
def test_typo_is_a_config_error_listing_the_modes(cls, key):
    data = {"model": {"input_norm": "perimage"}}
    with pytest.raises(ConfigError, match=r"input_norm.*'imagenet', 'per_image'.*'perimage'"):
        structure(cls, data if key == "model" else {"teacher": data})
