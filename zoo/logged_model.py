"""The trained model as an MLflow LoggedModel: a ``save_pretrained`` folder logged as a pyfunc model that is the
run's output (``models:/<id>``), optionally registered under a name."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoo.pyfunc import save_pyfunc

__all__ = ["log_model_to"]


def log_model_to(client: Any, experiment_id: str, run_id: str, folder: Path, name: str, tags: Mapping[str, str],
                 data_hparams: Mapping[str, Any] | None, register_as: str | None, tracking_uri: str,
                 model: Any = None) -> str:
    """Log ``folder`` (``save_pretrained``) as a pyfunc LoggedModel that is ``run_id``'s output; ``models:/<id>``.
    ``model``: the folder's model when the caller holds it (else it is built from the folder)."""
    from mlflow.entities import LoggedModelOutput

    with tempfile.TemporaryDirectory() as tmp:
        try:
            content = save_pyfunc(folder, Path(tmp) / "model", dict(data_hparams or {}), model)
            model_type = "pyfunc"
        except Exception as err:  # the trained weights are logged all the same: a finished run never fails here
            warnings.warn(f"the logged model of run {run_id} is a zoo folder only (zoo.create_model loads it), not "
                          f"an MLflow pyfunc: {type(err).__name__}: {err}", stacklevel=2)
            content, model_type = folder, "zoo"
        logged = client.create_logged_model(experiment_id=experiment_id, name=name, source_run_id=run_id,
                                            tags=dict(tags), model_type=model_type)
        client.log_model_artifacts(logged.model_id, str(content))
    client.finalize_logged_model(logged.model_id, "READY")
    # Without the output link the run page shows "Logged models: -" (source_run_id alone does not list it).
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    uri = f"models:/{logged.model_id}"
    if register_as:
        import mlflow

        mlflow.set_tracking_uri(tracking_uri)
        mlflow.register_model(uri, register_as)
    return uri
