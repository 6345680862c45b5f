"""The README's quick start is what a new user reads first: the Debian/Ubuntu system packages (once, the same
list `.ci/run` installs) and the CPU-only torch line come before the install line."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APT_PACKAGES = "libegl1 libgl1 libgl1-mesa-dri libgbm1 libusb-1.0-0"


def quick_start() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("## Quick start", 1)[1].split("\n## ", 1)[0]


def test_system_packages_are_stated_once_in_the_quick_start_before_the_install():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(APT_PACKAGES) == 1
    assert not re.search(r"apt(-get)? install(?!.*libegl1 libgl1 libgl1-mesa-dri libgbm1 libusb-1\.0-0)", readme)
    section = quick_start()
    assert section.index(f"apt-get install -y {APT_PACKAGES}") < section.index("pip install -r requirements-dev.txt")
    assert APT_PACKAGES in (ROOT / ".ci" / "run").read_text(encoding="utf-8")  # CI installs the same list


def test_cpu_torch_comes_before_the_install_line():
    section = quick_start()
    cpu = section.index("pip install torch --index-url https://download.pytorch.org/whl/cpu")
    assert cpu < section.index("pip install -r requirements-dev.txt")
