"""ReGENN, the Mamba forecaster and the LSTM baseline: counts, shapes, ReGENN's graph, Mamba's online step."""

import pytest
import torch
from zoo.timeseries.lstm import lstm_forecaster
from zoo.timeseries.mamba_forecaster import mamba_forecaster
from zoo.timeseries.regenn import cooccurrence_adjacency, official_to_zoo, regenn

from zoo.errors import InputShapeError

count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731


@pytest.mark.parametrize(("window", "horizon", "variables", "expected"),
                         [(7, 7, 3, 31_695), (14, 7, 3, 61_417), (24, 24, 36, 127_376)])
def test_regenn_parameter_counts_of_the_research_notes(window, horizon, variables, expected):
    model = regenn(window=window, horizon=horizon, variables=variables)
    assert count(model) == expected
    assert model(torch.rand(4, window, variables)).shape == (4, horizon, variables)


def test_cooccurrence_adjacency_by_hand():
    x = torch.tensor([[[1.0, 2.0, 0.0], [3.0, 0.0, 1.0]]])  # one sample, two steps, three variables
    a = cooccurrence_adjacency(x)
    # A[i, j] = sum of x_i where x_j > 0; off-diagonal kept, diagonal = max(2 A[i, i] - row sum, 0)
    raw = torch.tensor([[4.0, 1.0, 3.0], [2.0, 2.0, 0.0], [1.0, 0.0, 1.0]])
    loops = torch.clamp(2 * raw.diagonal() - raw.sum(1), min=0)
    assert torch.equal(a, raw - torch.diag(raw.diagonal()) + torch.diag(loops))


def test_regenn_adjacency_accumulates_once_in_training_and_is_fixed_at_inference():
    torch.manual_seed(0)
    model = regenn()
    batches = [torch.rand(8, 7, 3) for _ in range(3)]
    model.train()
    for i, x in enumerate(batches):
        model(x, batch_index=i)
    after_first_epoch = model.source_evolution.adjacency.clone()
    assert torch.allclose(after_first_epoch, sum(cooccurrence_adjacency(x) for x in batches))
    for i, x in enumerate(batches):  # the second epoch adds nothing
        model(x, batch_index=i)
    assert torch.equal(model.source_evolution.adjacency, after_first_epoch)
    model.eval()
    with torch.no_grad():
        first = model(torch.rand(5, 7, 3) * 10)
        second = model(torch.rand(5, 7, 3) * 10)
    assert torch.equal(model.source_evolution.adjacency, after_first_epoch)
    assert torch.equal(model.target_evolution.adjacency, torch.zeros(3, 3))
    assert first.shape == second.shape == (5, 7, 3) and (first >= 0).all()  # ReLU output, as the paper's default
    # the forecast of a sample does not depend on the other samples of its batch
    x = torch.rand(6, 7, 3)
    with torch.no_grad():
        assert torch.allclose(model(x)[:2], model(x[:2]), atol=1e-6)


def test_regenn_gradients_reach_every_trainable_parameter():
    torch.manual_seed(0)
    model = regenn(output_activation="identity")
    model.train()
    model(torch.rand(8, 7, 3), batch_index=0).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_regenn_loads_the_official_key_layout():
    model = regenn()
    official = {}
    names = {"source_evolution": "SourceEvolution", "time_encoder": "TimeEncoder", "time_gate": "TimeGate",
             "variable_sequencer": "VariableSequencer", "target_evolution": "TargetEvolution"}
    for key, value in model.state_dict().items():
        layer, _, rest = key.partition(".")
        if key == "autoregression":
            official["Autoregression.weights"] = torch.randn_like(value)
        elif key == "autoregression_bias":
            official["Autoregression.bias"] = torch.randn_like(value)
        elif rest == "adjacency":
            official[f"{names[layer]}.shared_adjacency"] = torch.rand_like(value)
            official[f"{names[layer]}.adjacency"] = torch.rand_like(value)
        elif rest != "batches_seen":
            official[f"{names[layer]}.{rest}"] = torch.randn_like(value)
    official["TargetEvolution.time_weights"] = torch.zeros(7, 7)  # the official layer keeps its unused time_dot
    official["TargetEvolution.time_bias"] = torch.zeros(7, 1)
    converted = official_to_zoo(official, model)
    model.load_state_dict(converted)  # strict: every key maps
    assert torch.equal(model.autoregression, official["Autoregression.weights"])
    assert torch.equal(model.source_evolution.adjacency, official["SourceEvolution.shared_adjacency"])


def test_mamba_step_equals_the_parallel_forecasts():
    torch.manual_seed(0)
    model = mamba_forecaster(variables=2, horizon=3, targets=2).eval()
    x = torch.randn(2, 12, 2)
    with torch.no_grad():
        parallel = model.forward_sequence(x)  # (B, L, H, T)
        state, online = None, []
        for t in range(x.shape[1]):
            forecast, state = model.step(x[:, t], state)
            online.append(forecast)
        assert parallel.shape == (2, 12, 3, 2)
        assert torch.allclose(torch.stack(online, 1), parallel, atol=1e-5)
        assert torch.allclose(model(x), parallel[:, -1], atol=1e-6)


def test_mamba_and_lstm_counts_and_bad_shapes():
    mamba = mamba_forecaster()
    lstm = lstm_forecaster()
    assert (count(mamba), count(lstm)) == (65_665, 50_497)
    assert mamba(torch.randn(2, 48, 1)).shape == lstm(torch.randn(2, 48, 1)).shape == (2, 1, 1)
    for model in (mamba, lstm, regenn()):
        with pytest.raises(InputShapeError, match="expects windows of shape"):
            model(torch.randn(2, 48, 5))
    with pytest.raises(ValueError, match="forecasts all of its 3 input variables"):
        regenn(targets=1)
