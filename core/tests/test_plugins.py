"""Discovery: listing without imports, duplicates, unknown names, blocking, autoload, hooks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from maploc.errors import PluginError
from maploc.plugins import check_entry_points, find_entry_point, get_plugin_manager, list_entry_points, load_component


def make_fake_distribution(site: Path, name: str, entry_points: str, modules: dict[str, str] | None = None) -> None:
    """Writes an installed-looking distribution (``*.dist-info``) plus modules into ``site``."""
    info = site / f"{name.replace('-', '_')}-0.0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for mod, source in (modules or {}).items():
        (site / f"{mod}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def fake_site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    return site


def test_builtins_are_listed():
    entries = list_entry_points()
    assert "nn-retrieval" in [e.name for e in entries["methods"]]
    assert {"7scenes", "dsac", "cambridge", "synthetic-room"} <= {e.name for e in entries["datasets"]}
    hooks = {e.name: e.distribution for e in entries["hooks"]}
    assert hooks["maploc-builtins"] == "maploc-core"  # the core registers itself like any plugin


def test_list_imports_no_plugin_code_and_no_torch_and_is_fast():
    code = (
        "import sys, time; t=time.perf_counter(); from maploc.cli import main; main(['list']); "
        "print('TORCH', 'torch' in sys.modules, 'PLUGIN', 'maploc.methods.nn_retrieval' in sys.modules, "
        "'TIME', time.perf_counter()-t)"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    assert "nn-retrieval" in proc.stdout
    assert "TORCH False PLUGIN False" in proc.stdout
    print(f"maploc list: {wall:.3f} s wall including interpreter start")


def test_unknown_name_lists_installed():
    with pytest.raises(PluginError, match=r"unknown method 'dsca'; installed methods: .*nn-retrieval"):
        load_component("methods", "dsca")
    with pytest.raises(PluginError, match="unknown plugin kind"):
        load_component("metods", "x")


def test_duplicate_name_names_both_distributions(fake_site):
    make_fake_distribution(fake_site, "maploc-dup-a", "[maploc.methods]\nsame = dup_a:M\n")
    make_fake_distribution(fake_site, "maploc-dup-b", "[maploc.methods]\nsame = dup_b:M\n")
    with pytest.raises(PluginError) as e:
        find_entry_point("methods", "same")
    assert "maploc-dup-a" in str(e.value) and "maploc-dup-b" in str(e.value)


def test_only_the_requested_plugin_is_imported(fake_site):
    make_fake_distribution(
        fake_site, "maploc-lazy",
        "[maploc.methods]\nlazy-one = lazy_one:X\nlazy-two = lazy_two:X\n",
        {"lazy_one": "X = 1\n", "lazy_two": "raise RuntimeError('lazy_two must not be imported')\n"},
    )
    assert load_component("methods", "lazy-one") == 1
    assert "lazy_two" not in sys.modules


def test_check_reports_each_broken_plugin(fake_site):
    make_fake_distribution(
        fake_site, "maploc-broken",
        "[maploc.methods]\nbroken-a = broken_a:X\nbroken-b = no_such_module:X\n",
        {"broken_a": "import numpy\nraise ImportError('needs libfoo')\n"},
    )
    results = {e.name: err for e, err in check_entry_points()}
    assert "needs libfoo" in results["broken-a"]
    assert "No module named 'no_such_module'" in results["broken-b"]
    assert results["nn-retrieval"] is None
    with pytest.raises(PluginError, match="cannot import maploc.methods entry point 'broken-a'.*maploc-broken"):
        load_component("methods", "broken-a")


def test_check_runs_the_components_runtime_check(fake_site, monkeypatch):
    """A module that imports fine but whose component needs a native library at run time (Open3D without
    libusb) is reported as not loadable; without the runtime check it would say ok."""
    make_fake_distribution(
        fake_site, "maploc-lazyo3d",
        "[maploc.methods]\nneeds-o3d = lazy_o3d_method:M\nplain = lazy_o3d_method:Plain\n",
        {
            "lazy_o3d_method": """
                class M:
                    @classmethod
                    def check_runtime(cls):
                        import fake_open3d  # noqa: F401

                class Plain:
                    pass
            """,
            "fake_open3d": "raise ImportError('libusb-1.0.so.0: cannot open shared object file: No such file or directory')\n",
        },
    )
    results = {e.name: err for e, err in check_entry_points("methods")}
    assert "libusb-1.0.so.0" in results["needs-o3d"] and "imports but cannot run" in results["needs-o3d"]
    assert "maploc-lazyo3d" in results["needs-o3d"]
    assert results["plain"] is None
    assert {e.group for e, _ in check_entry_points("methods")} == {"maploc.methods"}
    monkeypatch.delitem(sys.modules, "fake_open3d", raising=False)
    (fake_site / "fake_open3d.py").write_text("VERSION = 1\n")
    assert {e.name: err for e, err in check_entry_points("methods")}["needs-o3d"] is None


def test_blocked_plugins(fake_site, monkeypatch):
    make_fake_distribution(fake_site, "maploc-blockme", "[maploc.methods]\nblockme = blockme:X\n")
    assert find_entry_point("methods", "blockme")
    monkeypatch.setenv("MAPLOC_BLOCKED_PLUGINS", "other, maploc-blockme")
    with pytest.raises(PluginError, match="unknown method 'blockme'"):
        find_entry_point("methods", "blockme")
    monkeypatch.setenv("MAPLOC_BLOCKED_PLUGINS", "blockme")
    assert "blockme" not in [e.name for e in list_entry_points("methods")["methods"]]


HOOK_MODULE = """
from maploc.hookspecs import hookimpl

@hookimpl
def maploc_report_sections(run_dir, metrics, method_name):
    return [("fake", "42")]
"""


def test_hook_plugins_autoload_and_can_be_disabled(fake_site, monkeypatch):
    make_fake_distribution(fake_site, "maploc-fakehooks", "[maploc.hooks]\nfake-hooks = fake_hooks\n",
                           {"fake_hooks": HOOK_MODULE})
    pm = get_plugin_manager()
    assert pm.get_plugin("fake-hooks") is not None and pm.get_plugin("maploc-builtins") is not None
    assert [("fake", "42")] in pm.hook.maploc_report_sections(run_dir=".", metrics={}, method_name="x")
    monkeypatch.setenv("MAPLOC_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = get_plugin_manager()
    assert pm.get_plugin("fake-hooks") is None and pm.get_plugin("maploc-builtins") is not None
    monkeypatch.delenv("MAPLOC_DISABLE_PLUGIN_AUTOLOAD")
    monkeypatch.setenv("MAPLOC_BLOCKED_PLUGINS", "fake-hooks")
    assert get_plugin_manager().get_plugin("fake-hooks") is None


def test_hook_with_unknown_name_is_rejected(fake_site):
    make_fake_distribution(fake_site, "maploc-typo", "[maploc.hooks]\ntypo = typo_hooks\n", {
        "typo_hooks": "from maploc.hookspecs import hookimpl\n@hookimpl\ndef maploc_extra_metric(metrics):\n    return {}\n"
    })
    with pytest.raises(PluginError, match="maploc_extra_metric"):
        get_plugin_manager()
