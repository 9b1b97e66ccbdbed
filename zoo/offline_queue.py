"""What a run could not log while its MLflow tracking server was away: kept in order, retried, and replayed.

A run on a tracking server (``http(s)://``) writes through :class:`BufferedClient`: a write that fails while the
server's ``/health`` page does not answer is queued instead of failing the run, retried at most once every
:data:`SERVER_RETRY_INTERVAL_S` seconds, and what is left at the end goes to ``<run folder>/unlogged/unlogged.json``,
which :func:`replay` (``python -m zoo.tracking replay FILE``) logs once the server is back.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.logged_model import log_model_to

__all__ = ["SERVER_RETRY_INTERVAL_S", "UNLOGGED_FILE", "BufferedClient", "apply_entry", "replay", "server_answers"]

SERVER_RETRY_INTERVAL_S = 30.0  # while the server is away, one attempt to reach it per this many seconds
UNLOGGED_FILE = "unlogged.json"


def server_answers(uri: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=3):
            return True
    except OSError:
        return False


class BufferedClient:
    """An MlflowClient whose writes to a tracking server that went away are kept instead of raising.

    Writes (``log_batch``, ``set_tag``, ``log_text``, ``log_figure``, ``log_artifact``, ``set_terminated``) that
    fail while the server's ``/health`` page does not answer are appended, in order, to a local queue: figures and
    texts are written as files under ``<folder>/files``. The queue is retried (oldest first) at most once every
    :data:`SERVER_RETRY_INTERVAL_S` seconds on the next write, and what is left at the end of the run is written to
    ``<folder>/unlogged.json`` for :func:`replay`. Reads pass through unchanged. Only used for ``http(s)`` stores.
    """

    def __init__(self, client: Any, uri: str, folder: Path):
        self._client, self._uri, self.folder = client, uri, folder
        self.queue: list[dict[str, Any]] = []
        self._last_failure = 0.0
        self.warned = False
        self.buffered_values = 0  # metric values queued, in total
        self.replayed_values = 0  # of which logged later, during the run

    def __getattr__(self, name: str) -> Any:
        if name == "_client":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self._client, name)

    def _file(self, name: str) -> Path:
        path = self.folder / "files" / f"{len(self.queue):05d}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _apply(self, entry: dict[str, Any]) -> None:
        apply_entry(self._client, entry)

    def _write(self, entry: dict[str, Any]) -> None:
        import time

        if self.queue:
            if time.monotonic() - self._last_failure < SERVER_RETRY_INTERVAL_S:
                self._enqueue(entry)
                return
            self.flush()
            if self.queue:
                self._enqueue(entry)
                return
        try:
            self._apply(entry)
        except Exception:
            if server_answers(self._uri):
                raise  # the server is there: a real error, not an outage
            self._last_failure = time.monotonic()
            self._enqueue(entry)
            if not self.warned:
                self.warned = True
                print(f"zoo: the MLflow tracking server {self._uri} does not answer; training goes on, what cannot "
                      f"be logged is kept in {self.folder} and retried every {SERVER_RETRY_INTERVAL_S:.0f} s",
                      file=sys.stderr, flush=True)

    def _enqueue(self, entry: dict[str, Any]) -> None:
        self.queue.append(entry)
        self.buffered_values += len(entry.get("metrics", ()))

    def flush(self) -> bool:
        """Log the queue, oldest first; stop at the first failure. Returns whether the queue is empty."""
        import time

        while self.queue:
            try:
                self._apply(self.queue[0])
            except Exception:
                self._last_failure = time.monotonic()
                return False
            self.replayed_values += len(self.queue.pop(0).get("metrics", ()))
        return True

    def save(self) -> Path:
        """Write the queue to ``<folder>/unlogged.json`` (see :func:`replay`)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / UNLOGGED_FILE
        path.write_text(json.dumps({"tracking_uri": self._uri, "entries": self.queue}, indent=1) + "\n")
        return path

    # --- the writes a zoo run makes ---------------------------------------------------------------------------
    def log_batch(self, run_id: str, metrics=(), params=(), tags=(), **_: Any) -> None:
        self._write({"kind": "batch", "run_id": run_id,
                     "metrics": [[m.key, m.value, m.timestamp, m.step] for m in metrics],
                     "params": [[p.key, p.value] for p in params], "tags": [[t.key, t.value] for t in tags]})

    def set_tag(self, run_id: str, key: str, value: Any, **_: Any) -> None:
        self._write({"kind": "batch", "run_id": run_id, "tags": [[key, str(value)]]})

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        path = self._file(Path(artifact_file).name)
        path.write_text(text)
        self._write({"kind": "artifact", "run_id": run_id, "path": str(path),
                     "artifact_path": str(Path(artifact_file).parent) if "/" in artifact_file else None})

    def log_figure(self, run_id: str, figure: Any, artifact_file: str, **_: Any) -> None:
        path = self._file(Path(artifact_file).name)
        figure.savefig(path)
        self._write({"kind": "artifact", "run_id": run_id, "path": str(path),
                     "artifact_path": str(Path(artifact_file).parent) if "/" in artifact_file else None})

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        self._write({"kind": "artifact", "run_id": run_id, "path": str(Path(local_path).resolve()),
                     "artifact_path": artifact_path})

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        self._write({"kind": "terminate", "run_id": run_id, "status": status, "end_time": end_time})


def apply_entry(client: Any, entry: dict[str, Any]) -> None:
    from mlflow.entities import Metric, Param, RunTag

    kind, run_id = entry["kind"], entry["run_id"]
    if kind == "batch":
        client.log_batch(run_id, metrics=[Metric(*m) for m in entry.get("metrics", ())],
                         params=[Param(*p) for p in entry.get("params", ())],
                         tags=[RunTag(*t) for t in entry.get("tags", ())])
    elif kind == "artifact":
        client.log_artifact(run_id, entry["path"], entry.get("artifact_path"))
    elif kind == "terminate":
        client.set_terminated(run_id, entry.get("status"), entry.get("end_time"))
    elif kind == "model":
        uri = log_model_to(client, entry["experiment_id"], run_id, Path(entry["folder"]), entry["name"],
                           entry["tags"], entry.get("data_hparams"), entry.get("register_as"), entry["tracking_uri"])
        print(f"logged model {uri}")
    else:
        raise ZooError(f"unknown entry kind {kind!r} in an unlogged-run file")


def replay(path: str | Path, tracking_uri: str | None = None) -> int:
    """Log what a run could not log while its tracking server was away (``<run folder>/unlogged.json``).

    Returns the number of entries logged; the file is renamed ``*.done`` when all went through.
    """
    from mlflow import MlflowClient

    path = Path(path)
    if not path.is_file():
        raise ZooError(f"no unlogged-run file {path}")
    content = json.loads(path.read_text())
    uri = tracking_uri or content["tracking_uri"]
    client = MlflowClient(uri)
    entries = content["entries"]
    for done, entry in enumerate(entries):
        try:
            apply_entry(client, entry)
        except Exception as err:
            path.write_text(json.dumps({**content, "entries": entries[done:]}, indent=1) + "\n")
            raise ZooError(f"could not log entry {done + 1} of {len(entries)} to {uri} ({type(err).__name__}); "
                           f"the rest stays in {path}") from None
    path.rename(path.with_suffix(".json.done"))
    return len(entries)
