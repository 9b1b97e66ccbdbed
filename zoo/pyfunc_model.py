"""MLflow "model from code" for a zoo model (see zoo/pyfunc.py): MLflow copies this file into the model folder
and runs it to load the model; the weights are the ``model.safetensors`` next to it (never a pickle)."""

from pathlib import Path

import mlflow
from mlflow.pyfunc import PythonModel

from zoo.pyfunc import ZooPythonModel


class ZooPyfunc(PythonModel):
    def __init__(self, folder: Path):
        self.runner = ZooPythonModel(folder)

    def load_context(self, context) -> None:
        if (self.runner.folder / "model.safetensors").exists():
            self.runner.load()

    def predict(self, context, model_input, params=None):
        return self.runner.predict(model_input)


mlflow.models.set_model(ZooPyfunc(Path(__file__).parent))
