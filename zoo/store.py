"""Where MLflow runs are stored (no Lightning needed: the hub reads ``runs:/`` and ``models:/`` URIs too)."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlparse

from zoo.errors import ZooError

SERVER_CHECK_TIMEOUT_S = 5


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else an absolute sqlite store in the current directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def local_path(uri: str) -> Path | None:
    """The filesystem path of a ``file:`` URI or plain path, or None for remote URIs."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None


def prepare_store(uri: str) -> None:
    """Make ``uri`` ready before a run uses it, failing fast with the URI named.

    - A tracking server (``http(s)://``) must answer its ``/health`` page within a few seconds (MLflow's own
      retries take minutes before they give up).
    - An sqlite store is created and migrated by one process at a time, under a file lock beside the database:
      several ``zoo train`` started at once in a fresh folder otherwise race in MLflow's schema migration
      ("duplicate column name").

    Raises:
        ZooError: the server cannot be reached.
    """
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=SERVER_CHECK_TIMEOUT_S):
                pass
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ZooError(f"the MLflow tracking server {uri} cannot be reached ({reason}); start it, or unset "
                           "MLFLOW_TRACKING_URI to use the local store in this folder") from None
    elif scheme == "sqlite":
        from filelock import FileLock
        from mlflow import MlflowClient

        database = Path(unquote(uri.removeprefix("sqlite:///").split("?", 1)[0]))
        database.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(database) + ".lock", timeout=300):
            MlflowClient(uri).search_experiments(max_results=1)  # creates and migrates the schema
