"""TLOB, MLPLOB and DeepLOB against files the official code wrote (LeonardoBerti00/TLOB @ aedcf83, MIT): the
official Engine's Lightning checkpoints of small random models, and one of the repository's own DeepLOB
checkpoints, each with a fixed input and the official model's output (tests/fixtures/official/*/README.md)."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

import torch

import zoo
from zoo.hub import sha256_of

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official"
TLOB_ENGINE = FIXTURES / "tlob" / "val_loss=1.168_epoch=0.pt"
MLPLOB_ENGINE = FIXTURES / "mlplob" / "val_loss=1.097_epoch=0.pt"
DEEPLOB_BTC_H10 = FIXTURES / "deeplob" / "val_loss=0.831_epoch=4.pt"


def _official(family: str, name: str = "io.pt") -> dict[str, torch.Tensor]:
    return torch.load(FIXTURES / family / name, weights_only=True)


def test_official_tlob_engine_checkpoint_gives_the_official_outputs():
    """LOBSTER configuration (46 features, the event type embedded), 2 heads, 2 layer pairs; EMA weights."""
    model = zoo.create_model("finance/tlob", pretrained=str(TLOB_ENGINE)).eval()
    assert (model.seq_len, model.num_features, model.hidden_dim, model.num_layers, model.num_heads,
            model.order_type_column) == (12, 46, 16, 2, 2, 41)
    official = _official("tlob")
    with torch.no_grad():
        torch.testing.assert_close(model(official["input"]), official["output"], rtol=1e-5, atol=1e-6)


def test_official_mlplob_engine_checkpoint_gives_the_official_outputs():
    """BTC configuration (40 features, no event type: read from the file's hyper-parameters, the tensors do not
    tell), 2 pairs of mixing blocks, the shrinking head (Linear 144 -> 36, GELU, Linear 36 -> 3)."""
    model = zoo.create_model("finance/mlplob", pretrained=str(MLPLOB_ENGINE)).eval()
    assert (model.seq_len, model.num_features, model.hidden_dim, model.order_type_column) == (48, 40, 48, None)
    assert [m.out_features for m in model.final_layers if isinstance(m, torch.nn.Linear)] == [36, 3]
    official = _official("mlplob")
    with torch.no_grad():
        torch.testing.assert_close(model(official["input"]), official["output"], rtol=1e-5, atol=1e-6)


def test_negative_bin_mixing_scalar_gives_the_official_outputs_in_eval():
    """The official BiN uses 0.01 for a negative mixing scalar on every forward, in eval too; the zoo uses it
    the same way in eval (without changing the loaded weights) and sets it in place when training."""
    path = FIXTURES / "tlob" / "negative_mixing_state_dict.pt"
    model = zoo.create_model("finance/tlob_lob40", pretrained=str(path)).eval()
    assert model.norm_layer.y1.item() == torch.tensor(-0.3).item()
    official = _official("tlob", "negative_mixing_io.pt")
    with torch.no_grad():
        torch.testing.assert_close(model(official["input"]), official["output"], rtol=1e-5, atol=1e-6)
    assert model.norm_layer.y1.item() == torch.tensor(-0.3).item()  # eval reads, never writes
    model.train()(official["input"])
    assert model.norm_layer.y1.item() == torch.tensor(0.01).item()


def _assert_official_deeplob(model):
    """The official module ends in a softmax; the zoo's returns the logits (model card)."""
    official = _official("deeplob")
    with torch.no_grad():
        log_probabilities = torch.log_softmax(model.eval()(official["input"]), dim=1)
    torch.testing.assert_close(log_probabilities, official["output"].log(), rtol=1e-5, atol=1e-6)


def test_the_repositorys_own_deeplob_checkpoint_loads_by_path_and_by_weight_set(http_server, monkeypatch, tmp_path):
    weights = zoo.get_card("finance/deeplob").weight_set("official_btc_h10")
    assert sha256_of(DEEPLOB_BTC_H10) == weights.sha256

    _assert_official_deeplob(zoo.create_model("finance/deeplob", pretrained=str(DEEPLOB_BTC_H10)))

    # by name: the card's URL, served from a loopback server with the repository's layout, sha256 checked
    root, base = http_server
    github = "https://github.com/LeonardoBerti00/TLOB/raw/main/"
    served = root / weights.url.removeprefix(github)
    served.parent.mkdir(parents=True)
    shutil.copy(DEEPLOB_BTC_H10, served)
    real_urlopen = urllib.request.urlopen
    requested = []

    def loopback(url, *args, **kwargs):
        requested.append(url)
        return real_urlopen(url.replace(github, base + "/"), *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", loopback)
    _assert_official_deeplob(zoo.create_model("finance/deeplob", pretrained="official_btc_h10"))
    assert requested == [weights.url]
    cached = next((tmp_path / "cache").rglob(weights.file_name))
    assert sha256_of(cached) == weights.sha256
