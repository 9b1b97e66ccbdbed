"""A prebuilt index of the built-in model cards, so that ``zoo list`` and ``zoo info`` answer in a fraction of a
second instead of importing torch and every model file.

The index (``card_index.json`` beside this file) holds, per model id, the row ``zoo list`` prints and the fields
``zoo info`` prints, plus a fingerprint of the sources they come from: the built-in domain packages' Python files
and recipes, and the card code. It is used only while that fingerprint matches and no third-party domain is
installed; otherwise the commands import the registry as before (slower, never wrong). ``python -m zoo.card_index``
rewrites it together with the README's model table.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from importlib import metadata
from pathlib import Path
from typing import Any

INDEX_FILE = Path(__file__).with_name("card_index.json")
_CARD_CODE = ("registry.py", "cards.py", "card_index.py")


def _entry_point_values() -> list[str]:
    from zoo.registry import ENTRY_POINT_GROUP

    return sorted(ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP))


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)  # finds the folder without importing the package
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def source_fingerprint(packages: list[str]) -> str:
    """sha256 over the Python files and recipes of ``packages`` and the card code (paths and contents)."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    files = [(f"zoo/{name}", here / name) for name in _CARD_CODE]
    for package in packages:
        folder = _package_dir(package)
        if folder is None:
            continue
        for path in sorted([*folder.rglob("*.py"), *folder.rglob("*.yaml")]):
            if "__pycache__" not in path.parts:
                files.append((f"{package}/{path.relative_to(folder).as_posix()}", path))
    for name, path in files:
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_index() -> dict[str, Any]:
    """The index of every registered model (imports the registry and every model file)."""
    from zoo.cards import card_fields, list_row
    from zoo.registry import list_models

    packages = _entry_point_values()
    return {
        "entry_points": packages,
        "fingerprint": source_fingerprint(packages),
        "models": {model_id: {"row": list_row(model_id), "info": card_fields(model_id)} for model_id in list_models()},
    }


def write_index(path: Path = INDEX_FILE) -> bool:
    """Rewrite the index file; returns whether anything changed."""
    text = json.dumps(build_index(), indent=1, ensure_ascii=False) + "\n"
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def load_index(path: Path = INDEX_FILE) -> dict[str, Any] | None:
    """The index when it describes exactly the installed models, else None (then the registry must be imported)."""
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    packages = _entry_point_values()
    if index.get("entry_points") != packages or not all(p.startswith("zoo.") for p in packages):
        return None  # a third-party domain is installed: its cards are not in the index
    if index.get("fingerprint") != source_fingerprint(packages):
        return None  # a model file or recipe changed since the index was written
    return index


if __name__ == "__main__":  # python -m zoo.card_index: refresh the README's model table and the card index
    from zoo.cards import update_readme

    print("README.md updated" if update_readme() else "README.md already up to date")
    print(f"{INDEX_FILE.name} updated" if write_index() else f"{INDEX_FILE.name} already up to date")
