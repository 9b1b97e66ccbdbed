"""Exact L2 retrieval: the faiss and torch backends find the same neighbours, and self-exclusion works."""

from __future__ import annotations

import pytest
import torch

from zoo.blocks.retrieval import faiss_available, nearest_neighbors

needs_faiss = pytest.mark.skipif(not faiss_available(), reason="faiss-cpu is not installed")


def brute_force(queries: torch.Tensor, keys: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    distances = torch.cdist(queries.double(), keys.double()).square()
    d, i = distances.topk(k, largest=False)
    return d.float(), i


@pytest.mark.parametrize("backend", [pytest.param("faiss", marks=needs_faiss), "torch"])
def test_matches_brute_force(backend):
    torch.manual_seed(0)
    queries, keys = torch.randn(64, 24), torch.randn(3000, 24)
    distances, indices = nearest_neighbors(queries, keys, 10, backend=backend)
    expected_d, expected_i = brute_force(queries, keys, 10)
    assert torch.equal(indices, expected_i)
    torch.testing.assert_close(distances, expected_d, rtol=1e-4, atol=1e-4)
    assert distances.shape == (64, 10) and indices.dtype == torch.int64


@needs_faiss
def test_faiss_equals_torch_chunked():
    torch.manual_seed(1)
    queries, keys = torch.randn(200, 32), torch.randn(20_000, 32)
    d_faiss, i_faiss = nearest_neighbors(queries, keys, 96, backend="faiss")
    # A tiny block budget forces both query and key chunking in the torch backend.
    d_torch, i_torch = nearest_neighbors(queries, keys, 96, backend="torch", block_elements=50_000)
    # Same neighbour sets; the order of two keys at (float32-)equal distance may differ.
    assert torch.equal(i_faiss.sort(1).values, i_torch.sort(1).values)
    assert (i_faiss != i_torch).float().mean() < 0.01
    torch.testing.assert_close(d_faiss, d_torch, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("backend", [pytest.param("faiss", marks=needs_faiss), "torch"])
def test_self_exclusion(backend):
    torch.manual_seed(2)
    keys = torch.randn(500, 8)
    rows = torch.arange(100, 164)
    distances, indices = nearest_neighbors(keys[rows], keys, 5, exclude=rows, backend=backend)
    assert not (indices == rows[:, None]).any()  # without exclusion each row's nearest key is itself
    expected = brute_force(keys[rows], keys, 6)[1][:, 1:]
    assert torch.equal(indices, expected)
    assert torch.isfinite(distances).all()


def test_exclusion_keeps_duplicates():
    keys = torch.zeros(10, 4)  # every key equal: the query's duplicates may be retrieved, itself never
    _, indices = nearest_neighbors(keys[:3], keys, 9, exclude=torch.arange(3), backend="torch")
    for row in range(3):
        assert row not in indices[row].tolist() and len(set(indices[row].tolist())) == 9


def test_errors_are_clear():
    with pytest.raises(ValueError, match="share d"):
        nearest_neighbors(torch.randn(2, 3), torch.randn(5, 4), 1)
    with pytest.raises(ValueError, match="cannot retrieve 5 neighbours from 5 candidates"):
        nearest_neighbors(torch.randn(2, 3), torch.randn(5, 3), 5, exclude=torch.arange(2))
    with pytest.raises(ValueError, match="unknown retrieval backend"):
        nearest_neighbors(torch.randn(2, 3), torch.randn(5, 3), 1, backend="annoy")
