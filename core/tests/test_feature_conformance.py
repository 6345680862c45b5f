"""The conformance suite checks a keypoint method too: a tiny SIFT + PnP localizer
(:class:`maploc.testing.keypoints.KeypointPnPMethod`, registered here as ``keypoint-pnp``) runs through
:func:`maploc.testing.conformance.check_method` on ``synthetic-room`` and must localize its queries.

On the smooth-gradient room of before issue 24 (5-7 SIFT keypoints per image on average, none on many,
at any size from 64x48 to 320x240) this test fails: 11 of the 12 queries found too few matches.
"""

from __future__ import annotations

import pytest

from maploc.testing.conformance import check_method
from maploc.testing.keypoints import KeypointPnPMethod

ENTRY_POINTS = "[maploc.methods]\nkeypoint-pnp = maploc.testing.keypoints:KeypointPnPMethod\n"


@pytest.fixture
def keypoint_site(tmp_path_factory, monkeypatch):
    """A metadata-only distribution registering ``keypoint-pnp`` (real entry-point discovery, nothing installed)."""
    site = tmp_path_factory.mktemp("keypoint-site")
    dist = site / "maploc_keypoint_test-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: maploc-keypoint-test\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    return site


def test_keypoint_method_localizes_every_synthetic_query(keypoint_site, tmp_path):
    """All 12 queries within 5 cm / 5 deg at 160 x 120 px (``data.image_height=120``, the method's
    ``conformance_overrides``). Measured: 12/12 within 5 cm / 5 deg (and within 1 cm / 1 deg), median
    0.47 cm / 0.13 deg, worst 0.84 cm / 0.17 deg; about 20 s on a loaded 2-core machine."""
    assert KeypointPnPMethod.conformance_dataset == "synthetic-room"
    metrics = check_method("keypoint-pnp", tmp_path, max_queries=None)
    assert metrics["num_queries"] == 12 and metrics["num_failed"] == 0
    assert metrics["recall_5cm_5deg"] == 100.0, metrics
    assert metrics["median_translation_cm"] < 2.0 and metrics["median_rotation_deg"] < 1.0, metrics
