"""The order-flow imbalance of the LOB benchmark (benchmarks/lob.py) on a hand-made book with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.lob import ofi_features, order_flow_imbalance

# best level only: ask price, ask size, bid price, bid size
BOOK = np.array([
    [10.01, 200, 10.000, 300],
    [10.01, 200, 10.000, 400],  # bid queue grows by 100: +100
    [10.01, 100, 10.000, 400],  # a market buy takes 100 off the ask queue: +100
    [10.01, 100, 10.005, 50],  # a buy limit order improves the bid: +50 (the new queue)
    [10.008, 70, 10.005, 50],  # a sell limit order improves the ask: -70
    [10.008, 70, 10.000, 400],  # the best bid queue is emptied, the bid falls back: -50 (the queue that left)
    [10.01, 100, 10.000, 400],  # the best ask queue is emptied, the ask rises: +70
])


def test_order_flow_imbalance_of_a_hand_made_book():
    np.testing.assert_allclose(order_flow_imbalance(BOOK), [0, 100, 100, 50, -70, -50, 70])


def test_ofi_features_sum_the_blocks_back_from_each_window_end():
    features = ofi_features(BOOK, np.array([3, 6]), blocks=((0, 2), (2, 4)))
    # end 3: e[2..3] = 150, e[0..1] = 100; end 6: e[5..6] = 20, e[3..4] = -20
    np.testing.assert_allclose(features, [[150, 100], [20, -20]])
    with pytest.raises(ValueError, match="window ends"):
        ofi_features(BOOK, np.array([2]), blocks=((0, 4),))
