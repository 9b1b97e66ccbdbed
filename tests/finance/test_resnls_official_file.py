"""ResNLS: the official module's state dict loads through ``create_model`` and gives the released outputs where
the zoo computes as released (w = 0, or the LSTM-only model); with w != 0 the zoo feeds r = x + w CNN(x) to the
LSTM, as the paper says, and differs by design (fixture made by the official code: tests/fixtures/official/resnls)."""

from pathlib import Path

import torch

import zoo

RESNLS = Path(__file__).parents[1] / "fixtures" / "official" / "resnls"


def relative_difference(out: torch.Tensor, official: torch.Tensor) -> float:
    return ((out - official).abs().max() / official.abs().max()).item()


def test_official_state_dict_loads_and_matches_where_the_zoo_computes_as_released(tmp_path):
    path = RESNLS / "resnls_state_dict.pt"
    io = torch.load(RESNLS / "io.pt")
    x, official = io["x"].transpose(1, 2), io["output"]  # official (B, 1, 5) -> zoo (B, 5, 1); output (B, 1)
    with torch.no_grad():
        lstm_only = zoo.create_model("finance/resnls_lstm", pretrained=str(path)).eval()
        assert relative_difference(lstm_only(x).view(-1, 1), official) <= 1e-5

        paper = zoo.create_model("finance/resnls", pretrained=str(path)).eval()
        assert paper.w.item() == torch.load(path)["weight"].item() != 0
        assert relative_difference(paper(x).view(-1, 1), official) > 1e-3  # the CNN branch is used here

        # a file trained on CUDA has no `weight` (the released Parameter.to(device) is not registered): w = 0,
        # where the paper's model and the released forward agree
        state = torch.load(path)
        del state["weight"]
        torch.save(state, tmp_path / "cuda_trained.pt")
        at_zero = zoo.create_model("finance/resnls", pretrained=str(tmp_path / "cuda_trained.pt")).eval()
        assert at_zero.w.item() == 0.0
        assert relative_difference(at_zero(x).view(-1, 1), official) <= 1e-5
