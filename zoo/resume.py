"""Continuing an earlier training run (``zoo train MODEL --resume [RUN_ID]``): which run, its config and the
checkpoint it continues from; and the name a new run gets."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from zoo.errors import ZooError

__all__ = ["find_run_to_resume", "resume_args", "run_name", "write_temp_yaml"]


def write_temp_yaml(config: dict[str, Any]) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="zoo-", delete=False) as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    return handle.name


def find_run_to_resume(model_id: str, run_id: str | None):
    """The run ``--resume`` continues: the one named, or the latest *training* run of the model (evaluation and
    prediction runs are tagged ``zoo.run_type`` and never picked)."""
    from mlflow import MlflowClient

    from zoo.store import default_tracking_uri

    client = MlflowClient(default_tracking_uri())
    if run_id:
        try:
            return client.get_run(run_id)
        except Exception as err:
            raise ZooError(f"no MLflow run {run_id} in {default_tracking_uri()}: {err}") from None
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"tags.`zoo.model_id` = '{model_id}'", order_by=["start_time DESC"],
                              max_results=50) if experiments else []
    runs = [r for r in runs if r.data.tags.get("zoo.run_type", "train") == "train"]
    if not runs:
        raise ZooError(f"no earlier training run of {model_id} in {default_tracking_uri()} to resume")
    return runs[0]


def run_name(model_id: str, command: str) -> str:
    """A readable, unique run name: model, command, time and a random suffix (MLflow's own generator is seeded by
    the run's seed, so every run got the same name)."""
    import datetime
    import secrets

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{model_id.rsplit('/', 1)[-1]}-{command}-{stamp}-{secrets.token_hex(2)}"


def resume_args(model_id: str, run_id: str | None, extra_args: list[str]) -> tuple[list[str], str]:
    """Flags that continue an earlier run (its config, the same MLflow run) and its last checkpoint."""
    import mlflow

    from zoo.checkpointing import CHECKPOINT_EVERY_ENV, DEFAULT_CHECKPOINT_EVERY_S
    from zoo.store import default_tracking_uri, local_path
    from zoo.tracking import CHECKPOINT_ARTIFACT_DIR

    run = find_run_to_resume(model_id, run_id)
    run_id = run.info.run_id
    if run.info.status == "FINISHED" and not any(a.startswith("--trainer.max_epochs") for a in extra_args):
        raise ZooError(f"run {run_id} of {model_id} has finished all its epochs; to train it longer, resume it "
                       f"with more: zoo train {model_id} --resume {run_id} --trainer.max_epochs MORE")
    artifacts = local_path(run.info.artifact_uri)
    candidates = [Path.cwd() / "runs" / run_id / CHECKPOINT_ARTIFACT_DIR / "last.ckpt"]
    if artifacts is not None:
        candidates.insert(0, artifacts / CHECKPOINT_ARTIFACT_DIR / "last.ckpt")
    last = next((p for p in candidates if p.is_file()), None)
    mlflow.set_tracking_uri(default_tracking_uri())
    if last is None:
        try:
            last = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/{CHECKPOINT_ARTIFACT_DIR}/last.ckpt"))
        except Exception as err:
            raise ZooError(f"run {run_id} has no last.ckpt to resume from (was it killed before its first "
                           "checkpoint was written? A run writes it at an epoch end at most once every "
                           f"{CHECKPOINT_EVERY_ENV} seconds, {DEFAULT_CHECKPOINT_EVERY_S:g} by default): {err}") \
                from None
    try:
        config = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/config.yaml")
    except Exception:
        from zoo.checkpoints import read_checkpoint

        config = write_temp_yaml(read_checkpoint(last).config())
    print(f"resuming MLflow run {run_id} from {last}")
    return ["--config", str(config), "--trainer.logger.init_args.run_id", run_id, "--model.pretrained", "null"], \
        str(last)
