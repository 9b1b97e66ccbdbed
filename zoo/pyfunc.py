"""A trained zoo model as an MLflow pyfunc model, so MLflow's own clients use it.

The model folder MLflow stores holds, side by side:

- ``MLmodel``, the environment files, a signature and an input example (what ``mlflow.pyfunc.load_model``,
  ``mlflow models serve`` and the model registry read);
- ``model.safetensors``, ``config.json`` and ``README.md``: the ``zoo.save_pretrained`` folder, which
  ``zoo.create_model(model_id, pretrained="models:/<id>")`` loads directly;
- ``candidates.safetensors`` for a retrieval model (TabR): the preprocessed training rows it retrieves from;
- ``pyfunc_model.py``: the model as code (MLflow's "models from code"). Nothing is pickled: loading runs that file,
  which rebuilds the network with ``zoo.create_model`` and reads the weights from the safetensors file.

``predict`` takes the model's input tensor(s) as numpy arrays, batch first, in the shapes of
:func:`zoo.inputs.example_inputs` (for an image model: (N, C, S, S) float32, already normalised as the data module
does), or a dict of named arrays for a model with several inputs, and returns the model's output as numpy
(a dict of arrays for a model that returns several).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.blocks.retrieval import Candidates
from zoo.inputs import example_inputs

MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
CANDIDATES_FILE = "candidates.safetensors"
EXAMPLE_BATCH = 2


def _to_numpy(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return output.detach().cpu().numpy()
    if isinstance(output, dict):
        return {k: _to_numpy(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        return {f"output_{i}": _to_numpy(v) for i, v in enumerate(output)}
    return np.asarray(output)


def write_candidates(folder: Path, stored: dict[str, torch.Tensor]) -> Path:
    """Write a retrieval model's candidates (the checkpoint's ``{"x_num", "x_bin", "x_cat", "y"}`` tensors: its
    preprocessed training table) as ``candidates.safetensors`` in a ``save_pretrained`` folder."""
    from safetensors.torch import save_file

    path = Path(folder) / CANDIDATES_FILE
    save_file({k: v.detach().cpu().contiguous() for k, v in stored.items() if v is not None}, str(path))
    return path


def read_candidates(folder: Path) -> Candidates | None:
    """The candidates :func:`write_candidates` wrote in ``folder``, or None when it holds none."""
    from safetensors.torch import load_file

    path = Path(folder) / CANDIDATES_FILE
    if not path.is_file():
        return None
    stored = load_file(str(path))
    return Candidates(stored.get("x_num"), stored.get("x_bin"), stored.get("x_cat"), stored["y"])


class ZooPythonModel:
    """Created by ``pyfunc_model.py`` (see the module docstring); ``folder`` holds the safetensors weights (and a
    retrieval model's candidates)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.model: torch.nn.Module | None = None
        self.names: list[str] = []
        self.slots: list[int | None] | None = None  # per positional argument of forward: its input (None: None)
        self.candidates: Candidates | None = None

    def load(self) -> None:
        from zoo.factory import create_model

        config = json.loads((self.folder / "config.json").read_text())
        self.model = create_model(config["model_id"], pretrained=str(self.folder)).eval()
        inputs = json.loads((self.folder / "inputs.json").read_text())
        if isinstance(inputs, list):  # written before the slots were kept
            inputs = {"names": inputs, "slots": None}
        self.names, self.slots = inputs["names"], inputs["slots"]
        self.candidates = read_candidates(self.folder)

    def predict(self, model_input: Any) -> Any:
        if self.model is None:
            self.load()
        if hasattr(model_input, "to_numpy") and not isinstance(model_input, np.ndarray):  # a pandas DataFrame
            model_input = {c: np.stack(model_input[c].to_list()) for c in model_input.columns} \
                if len(self.names) > 1 else model_input.to_numpy()
        if isinstance(model_input, dict):
            arrays = [np.asarray(model_input[n]) for n in self.names]
        else:
            arrays = [np.asarray(model_input)]
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
        tensors = [t.float() if t.dtype == torch.float64 else t for t in tensors]
        arguments = tensors if self.slots is None else [None if i is None else tensors[i] for i in self.slots]
        keywords = {} if self.candidates is None else {"candidates": self.candidates}
        with torch.no_grad():
            return _to_numpy(self.model(*arguments, **keywords))


def example_batch(model: torch.nn.Module, model_id: str, data_hparams: dict[str, Any] | None,
                  given_keywords: tuple[str, ...] = ()) -> tuple[Any, list[str], list[int | None]]:
    """A random input batch for the signature and input example, the names of the inputs, and per positional
    argument of ``forward`` the index of its input (None: passed as None)."""
    specs, slots = example_inputs(model, model_id, data_hparams, given_keywords=given_keywords)
    generator = torch.Generator().manual_seed(0)
    arrays = {s.name: s.sample(EXAMPLE_BATCH, generator).numpy() for s in specs}
    names = [s.name for s in specs]
    return (arrays[names[0]] if len(names) == 1 else arrays), names, slots


def save_pyfunc(folder: Path, destination: Path, data_hparams: dict[str, Any] | None = None,
                model: torch.nn.Module | None = None) -> Path:
    """Write an MLflow pyfunc model in ``destination`` from a ``save_pretrained`` ``folder``.

    Returns ``destination``; its files are what :meth:`ZooMLFlowLogger.log_model_folder` uploads.
    """
    import mlflow
    from mlflow.models import infer_signature

    from zoo.factory import create_model

    config = json.loads((folder / "config.json").read_text())
    if model is None:  # the folder's model, when the caller does not hold it already
        model = create_model(config["model_id"], pretrained=str(folder)).eval()
    candidates = read_candidates(folder)
    example, names, slots = example_batch(model, config["model_id"], data_hparams,
                                          ("candidates",) if candidates is not None else ())
    runner = ZooPythonModel(folder)
    runner.model, runner.names, runner.slots, runner.candidates = model, names, slots, candidates
    signature = infer_signature(example, runner.predict(example))
    requirements = [f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}",
                    f"numpy=={np.__version__}"]
    with warnings.catch_warnings():  # MLflow's advice to add type hints to predict: the signature is given
        warnings.filterwarnings("ignore", message=".*type hints to the `predict` method.*")
        mlflow.pyfunc.save_model(str(destination), python_model=str(MODEL_CODE), signature=signature,
                                 input_example=example, pip_requirements=requirements)
    for item in folder.iterdir():
        shutil.copy2(item, destination / item.name)
    (destination / "inputs.json").write_text(json.dumps({"names": names, "slots": slots}) + "\n")
    return destination
