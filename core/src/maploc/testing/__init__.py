"""Test support for maploc and its plugins: the conformance suite, hypothesis strategies, small fakes and
a tiny keypoint localizer (:mod:`maploc.testing.keypoints`, the reference for feature-based methods).

Installed with the core so that third-party plugins can run the same checks
(``from maploc.testing.conformance import check_method``).
"""
