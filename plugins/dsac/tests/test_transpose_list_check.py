"""`maploc list --check` reports transpose as not loadable where Open3D cannot be imported (libusb-1.0 missing)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_list_check_reports_transpose_without_libusb(tmp_path):
    site = tmp_path / "site"
    (site / "open3d").mkdir(parents=True)
    # the error Open3D's Linux wheel raises without the system library
    (site / "open3d" / "__init__.py").write_text(
        "raise ImportError('libusb-1.0.so.0: cannot open shared object file: No such file or directory')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p))
    proc = subprocess.run([sys.executable, "-m", "maploc.cli", "list", "--check", "--kind", "methods"],
                          capture_output=True, text=True, env=env, timeout=300)
    lines = proc.stdout.splitlines()
    transpose = [line for line in lines if " transpose " in line]
    assert len(transpose) == 1 and transpose[0].startswith("FAILED"), proc.stdout
    assert "libusb-1.0" in transpose[0] and "apt-get install libusb-1.0-0" in transpose[0]
    assert any(line.startswith("ok") and " dsac " in line for line in lines)  # DSAC* needs no Open3D
    assert proc.returncode == 1
