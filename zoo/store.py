"""Where MLflow runs are stored (no Lightning needed: the hub reads ``runs:/`` and ``models:/`` URIs too)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else an absolute sqlite store in the current directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def local_path(uri: str) -> Path | None:
    """The filesystem path of a ``file:`` URI or plain path, or None for remote URIs."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None
