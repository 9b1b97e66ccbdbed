"""DeepSurv: the card's count, the linear Cox head, named input errors."""

import pytest
import torch

import zoo
from zoo.errors import InputShapeError


def test_count_linear_head_and_input_errors():
    model = zoo.create_model("medical/deepsurv")
    assert sum(p.numel() for p in model.parameters()) == 1_536 == zoo.get_card("medical/deepsurv").num_params
    linear = zoo.create_model("medical/deepsurv", in_features=4, hidden=[]).eval()
    x = torch.randn(5, 4)
    torch.testing.assert_close(linear(x), x @ linear.risk.weight[0])  # the Cox model's log-risk x^T beta
    with pytest.raises(InputShapeError, match=r"\(B, 4\)"):
        linear(torch.randn(5, 3))
