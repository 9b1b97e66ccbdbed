"""The framework's import layers, as declared in pyproject.toml's import-linter contracts, hold: nothing imports
upward, no package has an import cycle (lazy imports inside functions count), and building a model imports neither
Lightning nor MLflow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOMAINS = ("data", "vision", "audio", "finance", "medical", "tabular", "timeseries")


def layered_tree(folder: Path) -> Path:
    """One ``zoo/`` package with the domain folders inside it, as they are installed (``zoo.data``,
    ``zoo.vision``, ...), made of links to the sources: import-linter reads a package from one folder."""
    package = folder / "zoo"
    package.mkdir()
    for item in (ROOT / "zoo").iterdir():
        if item.name != "__pycache__":
            (package / item.name).symlink_to(item)
    for domain in DOMAINS:
        (package / domain).symlink_to(ROOT / domain)
    return folder


def test_imports_follow_the_declared_layers(tmp_path):
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint_imports is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]' brings import-linter")
    tree = layered_tree(tmp_path)
    result = subprocess.run([lint_imports, str(ROOT / "pyproject.toml"), "--no-cache"], cwd=tree,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)}, capture_output=True, text=True,
                            timeout=120)
    assert "Contracts: 2 kept, 0 broken." in result.stdout, result.stdout[-4000:] + result.stderr[-2000:]


def test_building_a_model_imports_neither_lightning_nor_mlflow():
    code = ("import sys, zoo; zoo.create_model('vision/eca_resnet18'); zoo.list_models(); "
            "print(sorted(m for m in ('lightning', 'mlflow', 'torchmetrics') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]", f"imported: {result.stdout.strip()}"
