"""The core's conformance suite, run on this plugin's two methods."""

from maploc.testing.conformance import check_method


def test_template_conformance(tmp_path):
    metrics = check_method("template", tmp_path)
    assert metrics["num_queries"] == 4


def test_features_conformance(tmp_path):
    """ORB at 320x240 (the config's ``data.image_height=240``). Measured: 12/12 queries within 5 cm / 5 deg,
    median 1.45 cm / 0.39 deg, worst 3.2 cm; about 20 s on a loaded 2-core machine."""
    metrics = check_method("template-features", tmp_path, max_queries=None)
    assert metrics["num_queries"] == 12 and metrics["num_failed"] == 0
    assert metrics["recall_5cm_5deg"] == 100.0, metrics
    assert not (tmp_path / "conformance-template-features" / "checkpoints").exists()  # nothing trained, nothing saved


def test_evaluate_needs_no_method_plugin(maploc_main, monkeypatch, tmp_path):
    """`maploc evaluate RUN` scores the predictions files with the method's distribution blocked."""
    import json

    run = tmp_path / "run"
    status, _, err = maploc_main("run", "--method", "template", "-o", "train.max_steps=2", "--out", str(run),
                                 "--no-progress")
    assert status == 0, err
    monkeypatch.setenv("MAPLOC_BLOCKED_PLUGINS", "maploc-template")
    status, _, err = maploc_main("run", "--method", "template", "--out", str(tmp_path / "again"))
    assert status == 2 and "unknown method 'template'" in err  # the plugin is really gone
    status, _, err = maploc_main("evaluate", str(run), "--out", str(tmp_path / "rescored"))
    assert status == 0, err
    first = json.loads((run / "metrics.json").read_text())
    assert json.loads((tmp_path / "rescored" / "metrics.json").read_text()) == first
    assert first["num_queries"] == 12 and "coverage:median_translation_cm" in first
