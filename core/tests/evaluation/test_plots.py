"""Plots say what they show: error CDFs switch to a log x axis when the errors span more than two decades."""

from __future__ import annotations

import numpy as np
import pytest

import maploc.evaluation.report as report


@pytest.fixture
def figures(monkeypatch):
    """Keeps the figures the plot functions would save (and close)."""
    kept = []

    def keep(fig, path):
        kept.append(fig)
        return path

    monkeypatch.setattr(report, "_save", keep)
    return kept


def test_error_cdf_uses_a_log_axis_when_errors_span_metres_to_kilometres(tmp_path, figures):
    translation_cm = np.array([3.0, 40.0, 250.0, 1.2e4, 3.0e5, np.inf])  # 3 cm .. 3 km, one failure
    rotation_deg = np.array([0.5, 1.0, 2.0, 3.0, 4.0, np.inf])  # one decade: linear
    report.plot_error_cdf(tmp_path / "e.png", translation_cm, rotation_deg, "t")
    translation_ax, rotation_ax = figures[0].axes[:2]
    assert translation_ax.get_xscale() == "log"
    lo, hi = translation_ax.get_xlim()
    assert lo < 3.0 and hi > 3.0e5  # every finite error is on the axis (the linear axis cut at 3x the p90)
    assert "log scale" in translation_ax.get_xlabel()
    assert rotation_ax.get_xscale() == "linear" and rotation_ax.get_xlim()[0] == 0.0


def test_error_cdf_stays_linear_within_two_decades_and_with_zeros(tmp_path, figures):
    report.plot_se2_recall(tmp_path / "s.png", [0.0, 0.0, 0.5, 20.0], [0.0, 1.0, 2.0, np.inf], "t")
    position_ax, yaw_ax = figures[0].axes[:2]
    assert position_ax.get_xscale() == "linear" and yaw_ax.get_xscale() == "linear"
    report.plot_se2_recall(tmp_path / "s2.png", [0.0, 0.01, 0.5, 20.0], [1.0, 1.0, 1.0, 1.0], "t")
    position_ax = figures[1].axes[0]
    assert position_ax.get_xscale() == "log" and position_ax.get_xlim()[0] < 0.01  # zeros at the left end
