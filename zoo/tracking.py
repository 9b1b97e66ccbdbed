"""The MLflow logger of every zoo run: defaults, run tags, the resolved config, and the fixes Lightning's MLflow
pieces need with MLflow 3. (Writes kept while a server is away: :mod:`zoo.offline_queue`; the logged model:
:mod:`zoo.logged_model`; checkpoints, the data set and failures: :mod:`zoo.run_artifacts`.)

- The default store is embedded: ``sqlite:///<absolute cwd>/mlflow.db`` with artifacts in ``<cwd>/mlruns``
  (Lightning's own default, a ``file:`` store, fails in MLflow >= 3.13). ``MLFLOW_TRACKING_URI`` points elsewhere.
- With a local artifact store the checkpoints are written straight into the run's artifact folder, so the run
  holds them without a copy; with a remote server they are written under ``<cwd>/runs/<run_id>`` and uploaded.
- Params are logged untruncated up to MLflow's 6000-character limit (Lightning cuts at 250), and a resumed run
  keeps its params: settings that changed are recorded as a ``config-resume-N.yaml`` artifact instead of failing.
- The resolved config goes to the run as ``config.yaml`` and as params (LightningCLI's SaveConfigCallback cannot
  write it when the logger has no local log dir).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only
from typing_extensions import override

from zoo.data.contracts import ZooData
from zoo.errors import ZooError
from zoo.logged_model import log_model_to
from zoo.offline_queue import BufferedClient, server_answers
from zoo.store import default_tracking_uri, local_path, prepare_store

MAX_PARAM_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH
CHECKPOINT_ARTIFACT_DIR = "checkpoints"
# The experiment tag MLflow 3's UI reads to pick the workspace (it has no Python constant; the UI's enum
# ExperimentKind holds "custom_model_development" for model training, "genai_development" for GenAI).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
# MLflow 3.17's UI opens every experiment in its GenAI view in a browser that has not chosen "Model training" in
# the sidebar (the experiment kind does not switch it); a link with this query opens the model-training view.
UI_MODEL_TRAINING = "workflowType=machine_learning"
SYSTEM_METRICS_INTERVAL_S = 10.0  # MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it
SPLITS = ("train", "val", "test")
LIGHTNING_STATUS = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED"}  # as MLFlowLogger maps them


# MLflow retries a failed request for minutes by default; a run whose server went away keeps training instead
HTTP_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                       "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def once_more_on_clash(call: Any) -> Any:
    """``call()``, run once more when it failed because a run started at the same moment wrote the same row first
    (an experiment, its tag, a data set): the store answers that unique-key clash with RESOURCE_ALREADY_EXISTS or
    BAD_REQUEST, and the second call finds the row and uses or updates it."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import BAD_REQUEST, RESOURCE_ALREADY_EXISTS, ErrorCode

    try:
        return call()
    except MlflowException as err:
        if err.error_code not in (ErrorCode.Name(RESOURCE_ALREADY_EXISTS), ErrorCode.Name(BAD_REQUEST)):
            raise
        return call()


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = str(value)[:MAX_PARAM_LENGTH]
    return flat


def git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_tags(model_id: str | None) -> dict[str, str]:
    """Tags every zoo run carries: the model id, package versions, git commits and the command line."""
    import mlflow

    import zoo

    tags = {
        "zoo.version": zoo.__version__,
        "zoo.command": " ".join(["zoo", *sys.argv[1:]])[:MAX_PARAM_LENGTH],
        "versions.torch": torch.__version__,
        "versions.lightning": lightning.__version__,
        "versions.mlflow": mlflow.__version__,
        "versions.python": platform.python_version(),
    }
    if model_id:
        tags["zoo.model_id"] = model_id
    for name, path in (("zoo", Path(zoo.__file__).parent), ("cwd", Path.cwd())):
        commit = git_commit(path)
        if commit:
            tags[f"git.commit.{name}"] = commit
    if "git.commit.zoo" in tags:
        tags["mlflow.source.git.commit"] = tags["git.commit.zoo"]
    return tags


class ZooMLFlowLogger(MLFlowLogger):
    """Lightning's MLFlowLogger with zoo's defaults and MLflow 3 fixes.

    Args:
        experiment_name: MLflow experiment (created when missing).
        run_name: display name of the run (MLflow picks one when None).
        run_id: continue this existing run instead of creating one (``zoo train --resume`` sets it).
        tracking_uri: defaults to :func:`default_tracking_uri`.
        register_as: also register the trained model in the MLflow model registry under this name.
    """

    def __init__(self, experiment_name: str = "zoo", run_name: str | None = None, run_id: str | None = None,
                 tracking_uri: str | None = None, tags: dict[str, Any] | None = None, register_as: str | None = None):
        uri = tracking_uri or default_tracking_uri()
        prepare_store(uri)
        self._remote = uri.startswith(("http://", "https://"))
        if self._remote:
            for key, value in HTTP_RETRY_DEFAULTS.items():
                os.environ.setdefault(key, value)
        artifact_location = None
        if uri.startswith("sqlite:"):
            artifact_location = (Path.cwd().resolve() / "mlruns" / experiment_name.replace("/", "_")).as_uri()
        super().__init__(experiment_name=experiment_name, run_name=run_name, tracking_uri=uri, tags=tags,
                         log_model=False, artifact_location=artifact_location, run_id=run_id)
        self.resumed = run_id is not None
        self.resume_run_id = run_id
        self.started = False  # whether the MLflow run exists yet (it is created on first use)
        self.register_as = register_as
        self.tracking_uri, self.experiment_name = uri, experiment_name
        self.final_status: str | None = None  # "KILLED" when a signal stopped the run
        self._logged_steps: dict[str, int] | None = None  # a resumed run's last logged step of each metric
        self._kind_checked = False
        self._system_monitor = None
        self._buffered: Any = None  # a BufferedClient once the run exists on a remote server

    @property
    def experiment(self):
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

        try:
            client = once_more_on_clash(lambda: super(ZooMLFlowLogger, self).experiment)  # the experiment, created
        except MlflowException as err:
            if self.resumed and err.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
                raise ZooError(f"no MLflow run {self.resume_run_id} in {self.tracking_uri}") from err
            raise
        if rank_zero_only.rank != 0:  # Lightning's no-op experiment: only rank 0 logs, one run per DDP job
            return client
        self.started = True
        if not self._kind_checked:
            self._kind_checked = True
            self._mark_training_experiment(client)
        if not self._remote:
            return client
        if self._buffered is None:
            self._buffered = client  # self.run_id below asks for the experiment again: give it the plain client
            self._buffered = BufferedClient(client, self.tracking_uri, Path(self.save_dir) / self.run_id / "unlogged")
        return self._buffered

    def _mark_training_experiment(self, client) -> None:
        """Tag the experiment as model training (MLflow 3's UI opens untagged ones in the GenAI workspace);
        an experiment a person already gave a kind keeps it."""
        experiment = client.get_experiment(self.experiment_id)
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            once_more_on_clash(lambda: client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG,
                                                                 EXPERIMENT_KIND_TRAINING))

    @rank_zero_only
    def start_system_metrics(self) -> None:
        """Sample CPU, memory, disk, network (and GPU when there is one) into ``system/*`` metrics of the run,
        every ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` seconds (10 by default), until the run ends."""
        if self._system_monitor is not None:
            return
        import logging

        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop lines in the output
        monitor = SystemMetricsMonitor(self.run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S,
                                       resume_logging=self.resumed, tracking_uri=self.tracking_uri)
        monitor.start()
        self._system_monitor = monitor

    def stop_system_metrics(self) -> None:
        monitor, self._system_monitor = self._system_monitor, None
        if monitor is not None:
            monitor.finish()

    @rank_zero_only
    def log_dataset(self, datamodule: Any) -> None:
        """Record the data module as the run's input: name, source, a digest of what selects the data (its
        class and settings) and the split sizes, so the run page lists it under "Datasets"."""
        import hashlib

        from mlflow.entities import Dataset, DatasetInput, InputTag

        name = type(datamodule).__name__
        hparams = {k: str(v) for k, v in sorted(dict(datamodule.hparams or {}).items())}
        sizes = {}
        if isinstance(datamodule, ZooData):  # a plain LightningDataModule says nothing of its splits
            for split, subset in zip(SPLITS, (datamodule.train_set, datamodule.val_set, datamodule.test_set),
                                     strict=True):
                try:
                    sizes[split] = len(subset) if subset is not None else None
                except TypeError:  # an iterable data set without a length
                    sizes[split] = None
        sizes = {k: v for k, v in sizes.items() if v is not None}
        source_value = next((hparams[k] for k in ("source", "root", "path", "name") if hparams.get(k)), name)
        description = datamodule.describe() if isinstance(datamodule, ZooData) else name
        source = json.dumps({"datamodule": f"{type(datamodule).__module__}.{name}", "source": source_value,
                             "description": description})
        digest = hashlib.sha256(json.dumps([name, hparams, sizes]).encode()).hexdigest()[:8]
        profile = json.dumps({"num_rows": sum(sizes.values()), **{f"{k}_size": v for k, v in sizes.items()}})
        dataset = Dataset(name=name, digest=digest, source_type="zoo", source=source, profile=profile)
        tags = [InputTag("mlflow.data.context", "training")]
        tags += [InputTag(f"zoo.split.{k}", str(v)) for k, v in sizes.items()]
        once_more_on_clash(lambda: self.experiment.log_inputs(self.run_id, datasets=[DatasetInput(dataset, tags)]))

    @property
    def save_dir(self) -> str:
        """Local root for what Lightning writes next to a run (it has no local dir with a non-file store)."""
        return str(Path.cwd().resolve() / "runs")

    @property
    def artifact_dir(self) -> Path | None:
        """The run's artifact folder when the artifact store is local, else None (asked once: the server may
        be away later in the run)."""
        if not hasattr(self, "_artifact_uri"):
            self._artifact_uri = self.experiment.get_run(self.run_id).info.artifact_uri
        return local_path(self._artifact_uri)

    @property
    @override
    def version(self) -> str:
        """No version number: a zoo run is named by its MLflow run id (``run_id``), and Lightning's progress bar
        would show the id's last digits as ``v_num`` beside the metrics."""
        return ""

    def checkpoint_folder(self) -> Path:
        """Where this run's checkpoints go: inside the run's artifacts when they are local."""
        artifacts = self.artifact_dir
        if artifacts is not None:
            return artifacts / CHECKPOINT_ARTIFACT_DIR
        return Path(self.save_dir) / self.run_id / CHECKPOINT_ARTIFACT_DIR

    @property
    def ui_url(self) -> str:
        """The run's page in the MLflow UI (``zoo ui`` serves http://127.0.0.1:5000 for the local store)."""
        base = self.tracking_uri if self.tracking_uri.startswith("http") else "http://127.0.0.1:5000"
        return f"{base.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}?{UI_MODEL_TRAINING}"

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        """Log params untruncated; on a resumed run keep the first values and record changes as an artifact."""
        from mlflow.entities import Param

        params = _flatten(params if isinstance(params, Mapping) else vars(params))
        if self.resumed:
            existing = self.experiment.get_run(self.run_id).data.params
            changed = {k: (existing[k], v) for k, v in params.items() if k in existing and existing[k] != v}
            params = {k: v for k, v in params.items() if k not in existing}
            if changed:
                lines = [f"{k}: {new}  # was {old}" for k, (old, new) in sorted(changed.items())]
                count = sum(1 for a in self.experiment.list_artifacts(self.run_id) if a.path.startswith("config-"))
                self.log_text("\n".join(lines) + "\n", f"config-resume-{count + 1}.yaml")
                warnings.warn(f"resumed run {self.run_id}: {len(changed)} settings differ from the first run "
                              "(MLflow params cannot change); they are recorded in config-resume-*.yaml",
                              stacklevel=2)
        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.experiment.log_batch(run_id=self.run_id, params=items[start:start + 100])

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log metrics; a resumed run skips the steps it logged before it was killed (the resumed run recomputes
        them from the last checkpoint), so that each metric's history has every step once."""
        if self.resumed:
            if self._logged_steps is None:
                keys = self.experiment.get_run(self.run_id).data.metrics
                self._logged_steps = {k: max(m.step for m in self.experiment.get_metric_history(self.run_id, k))
                                      for k in keys}
            metrics = {k: v for k, v in metrics.items() if (step or 0) > self._logged_steps.get(k, -1)}
            if not metrics:
                return
        super().log_metrics(metrics, step)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        self.stop_system_metrics()
        status = self.final_status or status
        buffered = self._buffered
        if isinstance(buffered, BufferedClient) and buffered.queue and not buffered.flush():
            # The server is still away: Lightning's finalize would first ask it for the run; queue the end instead.
            if self.started:
                buffered.set_terminated(self.run_id, LIGHTNING_STATUS.get(status, status))
        else:
            super().finalize(status)
        if isinstance(buffered, BufferedClient) and buffered.queue:
            path = buffered.save()
            print(f"zoo: the tracking server {self.tracking_uri} did not come back: {len(buffered.queue)} updates of "
                  f"run {self.run_id} ({sum(len(e.get('metrics', ())) for e in buffered.queue)} metric values, the "
                  f"artifacts and the final status) are kept in {path}; once the server is up, log them with:\n"
                  f"  python -m zoo.tracking replay {path}", file=sys.stderr, flush=True)

    def mark_stopped(self, reason: str) -> str | None:
        """The run was stopped by a signal: it ends KILLED, tagged ``zoo.stopped`` with ``reason``; returns its id
        (None when it never started)."""
        if not self.started:
            return None
        self.final_status = "KILLED"
        self.set_tags({"zoo.stopped": reason})
        return self.run_id

    @rank_zero_only
    def log_text(self, text: str, artifact_file: str) -> None:
        self.experiment.log_text(self.run_id, text, artifact_file)

    @rank_zero_only
    def log_figure(self, figure: Any, artifact_file: str) -> None:
        self.experiment.log_figure(self.run_id, figure, artifact_file)

    @rank_zero_only
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.experiment.log_artifact(self.run_id, str(path), artifact_path)

    @rank_zero_only
    def set_tags(self, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.experiment.set_tag(self.run_id, key, value)

    @rank_zero_only
    def log_model_folder(self, folder: Path, name: str, tags: Mapping[str, str],
                         data_hparams: Mapping[str, Any] | None = None, model: Any = None) -> str | None:
        """Record a ``save_pretrained`` folder as an MLflow pyfunc model (a LoggedModel, the run's output);
        returns ``models:/<id>``, or None when the tracking server is away (the folder is then kept with the
        run's unlogged updates, see :func:`replay`).

        It loads with ``zoo.create_model(id, pretrained="models:/<id>")`` (registered versions with
        ``models:/<name>/<version>``) and with MLflow's own ``mlflow.pyfunc.load_model`` / ``mlflow models serve``
        (see :mod:`zoo.pyfunc`). ``data_hparams`` (the data module's, e.g. ``image_size``) shape the input example.
        """
        import shutil

        client = self.experiment
        buffered = client if isinstance(client, BufferedClient) else None
        raw = buffered._client if buffered is not None else client
        entry = {"kind": "model", "run_id": self.run_id, "experiment_id": self.experiment_id, "name": name,
                 "tags": dict(tags), "data_hparams": {k: str(v) if not isinstance(v, (int, float, bool, type(None)))
                                                      else v for k, v in dict(data_hparams or {}).items()},
                 "register_as": self.register_as, "tracking_uri": self.tracking_uri}
        if buffered is not None and (buffered.queue and not buffered.flush()):
            pass  # still away: keep the model with the rest
        else:
            try:
                return log_model_to(raw, self.experiment_id, self.run_id, folder, name, tags, data_hparams,
                                    self.register_as, self.tracking_uri, model)
            except Exception:
                if buffered is None or server_answers(self.tracking_uri):
                    raise
        kept = buffered.folder / "model"
        shutil.copytree(folder, kept, dirs_exist_ok=True)
        buffered._enqueue({**entry, "folder": str(kept)})
        return None


def mlflow_logger(trainer: Trainer) -> ZooMLFlowLogger | None:
    return next((lg for lg in trainer.loggers if isinstance(lg, ZooMLFlowLogger)), None)


class ZooSaveConfig(SaveConfigCallback):
    """Log the resolved config to MLflow (``config.yaml`` + params + tags) instead of a local log dir."""

    def __init__(self, parser, config, config_filename: str = "config.yaml", overwrite: bool = False,
                 multifile: bool = False, save_to_log_dir: bool = False):
        super().__init__(parser, config, config_filename, overwrite, multifile, save_to_log_dir=False)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        logger = mlflow_logger(trainer)
        if logger is None:
            return
        text = self.parser.dump(self.config, skip_unset=False)  # keep the None values: the config is complete
        model_id = getattr(pl_module, "model_id", None)
        if not logger.resumed:  # a resumed run keeps its first config.yaml; changes go to config-resume-N.yaml
            logger.log_text(text, self.config_filename)
        logger.log_hyperparams(self.config.as_dict() if hasattr(self.config, "as_dict") else dict(self.config))
        logger.set_tags(run_tags(model_id))


if __name__ == "__main__":  # python -m zoo.tracking replay FILE [--tracking-uri URI]
    import argparse

    from zoo.offline_queue import replay

    parser = argparse.ArgumentParser(prog="python -m zoo.tracking")
    commands = parser.add_subparsers(dest="command", required=True)
    replay_parser = commands.add_parser("replay", help="log what a run kept while its tracking server was away")
    replay_parser.add_argument("file")
    replay_parser.add_argument("--tracking-uri", default=None)
    arguments = parser.parse_args()
    try:
        print(f"logged {replay(arguments.file, arguments.tracking_uri)} updates")
    except ZooError as error:
        print(f"python -m zoo.tracking replay: error: {error}", file=sys.stderr)
        sys.exit(1)
