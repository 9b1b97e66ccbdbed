"""TabR: the checkpoint.pt that the official bin/tabr.py writes (model, optimizer, random_state, delu
ProgressTracker and Timer, report, training_log; numpy values inside) loads through ``create_model`` with the
feature counts, classes, dropouts and context size read from it, and gives the official evaluation outputs
(fixtures made by the official code: tests/fixtures/official/tabr)."""

from pathlib import Path

import pytest
import torch
from zoo.tabular.tabr import Candidates

import zoo

TABR = Path(__file__).parents[1] / "fixtures" / "official" / "tabr"


@pytest.mark.parametrize(("name", "shape"), [
    ("multiclass", {"n_num_features": 3, "n_bin_features": 2, "cat_cardinalities": [3, 4], "num_embeddings": "plr",
                    "encoder_n_blocks": 1, "predictor_n_blocks": 2, "context_size": 8}),
    ("regression", {"n_num_features": 4, "n_bin_features": 1, "cat_cardinalities": [], "num_embeddings": "lr",
                    "encoder_n_blocks": 0, "predictor_n_blocks": 1, "context_size": 8}),
])
def test_official_checkpoint_loads_and_matches(name, shape):
    model = zoo.create_model("tabular/tabr", pretrained=str(TABR / name / "checkpoint.pt")).eval()
    recorded = model.zoo_config["model_kwargs"]
    assert {k: recorded[k] for k in shape} == shape
    assert model.zoo_config["num_classes"] == (3 if name == "multiclass" else 1)
    io = torch.load(TABR / name / "io.pt")
    candidates = Candidates(io["candidate_x_num"], io["candidate_x_bin"], io.get("candidate_x_cat"),
                            io["candidate_y"])
    with torch.no_grad():
        out = model(io["x_num"], io["x_bin"], io.get("x_cat"), candidates=candidates).squeeze(-1)
    official = io["output"]
    assert out.shape == official.shape
    assert ((out - official).abs().max() / official.abs().max()).item() <= 1e-5
