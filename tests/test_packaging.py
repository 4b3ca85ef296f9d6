"""What `pip install` puts into site-packages: everything under cskd's own name (the repository's
analysis/ and app/ folders as cskd.analysis and cskd.app), no generic top-level package."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_package_list_is_the_package_tree():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    tree = {".".join(p.relative_to(ROOT).parent.parts) for p in (ROOT / "cskd").rglob("__init__.py")}
    tree |= {"cskd.analysis", "cskd.app"}
    assert set(config["packages"]) == tree
    assert config["package-dir"] == {"cskd.analysis": "analysis", "cskd.app": "app"}


@pytest.mark.slow
def test_the_wheel_holds_only_cskd(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    wheel = next(tmp_path.glob("cskd-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.startswith("cskd")} == set(), tops
    assert "cskd/analysis/calibration.py" in names and "cskd/app/main.py" in names
    assert "cskd/app/views/calibration.py" in names  # the dashboard's page scripts travel as data
