"""ResNLS: the paper's design (the LSTM reads the residual-refined window), its counts and its input checks."""

import pytest
import torch
from zoo.finance.resnls import resnls, resnls_lstm

from zoo.errors import InputShapeError


def test_parameter_counts_of_the_paper_and_the_ablation():
    model = resnls()
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(model) == 32_711
    assert (count(model.cnn), count(model.lstm), count(model.head), model.w.numel()) == (14_469, 18_176, 65, 1)
    assert count(resnls_lstm()) == 18_241
    assert float(model.w.detach()) == 0.0  # w starts at 0: the model starts as the LSTM on the raw window


def test_cnn_branch_and_w_receive_gradient():
    """The released code feeds x to the LSTM, so its CNN branch never learns; here the LSTM reads r = x + w CNN(x)."""
    torch.manual_seed(0)
    model = resnls()
    x, y = torch.randn(16, 5, 1), torch.randn(16, 1, 1)
    torch.nn.functional.mse_loss(model(x), y).backward()
    assert model.w.grad is not None and model.w.grad.abs() > 0
    # with w = 0 the CNN's gradient is w * (...) = 0; one step moves w, then the CNN learns too
    with torch.no_grad():
        model.w.fill_(0.5)
    model.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.cnn.parameters())


def test_output_shape_and_bad_inputs():
    model = resnls().eval()
    assert model(torch.randn(3, 5, 1)).shape == (3, 1, 1)
    with pytest.raises(InputShapeError, match=r"\(batch, 5, 1\)"):
        model(torch.randn(3, 5))
    with pytest.raises(ValueError, match="one series one step ahead"):
        resnls(variables=3)
    assert resnls(window=10)(torch.randn(2, 10, 1)).shape == (2, 1, 1)
