"""What a run leaves in MLflow besides its metrics: its checkpoints (uploaded when the artifact store is remote), the
best weights as an MLflow model, the data set as the run's input, system metrics, and why it failed or stopped."""

from __future__ import annotations

import tempfile
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from zoo.blocks.retrieval import CANDIDATES_KEY
from zoo.checkpointing import flush_checkpoints, run_checkpoints
from zoo.checkpoints import read_checkpoint
from zoo.errors import RunStoppedError
from zoo.pyfunc import write_candidates
from zoo.tracking import CHECKPOINT_ARTIFACT_DIR, MAX_PARAM_LENGTH, mlflow_logger
from zoo.weights import save_pretrained

__all__ = ["RunArtifacts"]


class RunArtifacts(Callback):
    """Upload checkpoints when the artifact store is remote, log the best weights as an MLflow model, and record
    why a run failed; record the data set as the run's input and sample system metrics while it trains."""

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger = mlflow_logger(trainer)
        if logger is None or trainer.global_rank != 0:
            return
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None and not logger.resumed:  # a resumed run already lists its input
            logger.log_dataset(datamodule)
        logger.start_system_metrics()

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        flush_checkpoints(trainer)  # the files are read and uploaded next
        logger = mlflow_logger(trainer)
        checkpoints = run_checkpoints(trainer)
        if logger is None or trainer.global_rank != 0 or not checkpoints:
            return
        if logger.artifact_dir is None:
            for path in checkpoints.values():
                if path:
                    logger.log_artifact(path, CHECKPOINT_ARTIFACT_DIR)
        best = checkpoints.get("best") or checkpoints.get("last")
        if best:  # the weights of the best epoch, read once, are both the saved folder and the pyfunc model
            checkpoint = read_checkpoint(best)
            model = checkpoint.build_model().eval()
            with tempfile.TemporaryDirectory() as tmp:
                folder = save_pretrained(model, Path(tmp) / "model")
                if checkpoint.content.get(CANDIDATES_KEY):  # a retrieval model (TabR) predicts with its table
                    write_candidates(folder, checkpoint.content[CANDIDATES_KEY])
                model_id = checkpoint.model_id
                pl_module.logged_model_uri = logger.log_model_folder(
                    folder, model_id.rpartition("/")[2], {"zoo.model_id": model_id}, checkpoint.data_hparams,
                    model=model)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        logger = mlflow_logger(trainer)
        if logger is not None and logger.started and not isinstance(exception, RunStoppedError):
            logger.set_tags({"zoo.failure": f"{type(exception).__name__}: {exception}"[:MAX_PARAM_LENGTH]})
