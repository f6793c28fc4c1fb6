"""The callbacks folder is installed as ``lightning_snn.callbacks``, never as a top-level package,
and the library never imports it; the same name works from a source checkout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib.util import find_spec

import pytest

from tests.conftest import REPO

IMPORTS_TOP_LEVEL_CALLBACKS = re.compile(r"^\s*(from|import)\s+callbacks\b", re.MULTILINE)


def copy_source(dest):
    """The files a user's clone has that matter for packaging (no venv, no build outputs)."""
    for name in ("lightning_snn", "callbacks"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, dest / name)
    return dest


def test_no_module_imports_a_top_level_callbacks_package():
    offenders = [
        str(p.relative_to(REPO))
        for folder in ("lightning_snn", "callbacks", "benchmarks", "tests")
        for p in (REPO / folder).rglob("*.py")
        if IMPORTS_TOP_LEVEL_CALLBACKS.search(p.read_text())
    ]
    assert offenders == []
    assert (REPO / "train.py").read_text().count("import callbacks") == 0


def test_every_subpackage_is_listed_for_installation():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "lightning_snn").rglob("__init__.py")}
    on_disk.add("lightning_snn.callbacks")
    assert set(config["packages"]) == on_disk, "list new subpackages of lightning_snn/ in pyproject.toml"
    assert config["package-dir"] == {"lightning_snn.callbacks": "callbacks"}


def test_wheel_installs_callbacks_under_the_project_namespace_only(tmp_path):
    if find_spec("setuptools") is None:
        pytest.skip("building the wheel offline needs setuptools in this environment")
    src = copy_source(tmp_path / "src")
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("lightning_snn-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top_level == {"lightning_snn"}
    assert "lightning_snn/callbacks/snn_conversion.py" in names

    # the installed package resolves lightning_snn.callbacks from site-packages, not from a checkout
    target = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert callbacks_origin(tmp_path, target) == str(target / "lightning_snn/callbacks/__init__.py")


def test_checkout_resolves_lightning_snn_callbacks_to_its_own_folder(tmp_path):
    """``python train.py`` from a clone: its lightning_snn shadows any install and has no callbacks/."""
    src = copy_source(tmp_path / "clone")
    assert callbacks_origin(src, src) == str(src / "callbacks/__init__.py")


def callbacks_origin(cwd, path) -> str:
    """Where a fresh interpreter with ``path`` first on sys.path finds ``lightning_snn.callbacks``
    (found, not executed: the check needs no Lightning import)."""
    code = "import importlib.util as u; print(u.find_spec('lightning_snn.callbacks').origin)"
    env = dict(os.environ, PYTHONPATH=str(path))
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def test_every_callbacks_class_path_in_the_docs_resolves():
    import importlib

    pattern = re.compile(r"lightning_snn\.callbacks(?:\.\w+)+")
    files = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "lightning_snn").rglob("*.py")]
    files += [*(REPO / "callbacks").glob("*.py")]
    names = {m.group(0) for f in files for m in pattern.finditer(f.read_text())}
    assert "lightning_snn.callbacks.SNNConversion" in names
    for name in sorted(names):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            module, _, attr = name.rpartition(".")
            assert hasattr(importlib.import_module(module), attr), name
