"""Exact nearest-neighbour search by L2 distance, for retrieval-augmented models (TabR).

Two interchangeable backends give the same neighbours:

- ``"faiss"``: ``faiss.IndexFlatL2`` (exact, brute force, BLAS-backed, multi-threaded), as the TabR code uses. The
  index is kept per width and refilled on every call (``reset`` + ``add``), which is much cheaper than building a
  new one. CPU tensors only (faiss-cpu); GPU tensors go to the torch backend.
- ``"torch"``: ``||q||^2 - 2 q.k + ||k||^2`` by matrix products and ``topk``, with the keys taken in chunks so
  that the (queries x chunk) distance block stays within a memory budget. Works on any device.

``"auto"`` picks faiss for CPU tensors when it is installed and torch otherwise.

Self-exclusion follows the TabR code: when row ``i`` of the queries is also row ``exclude[i]`` of the keys, search
``k + 1`` neighbours, set the distance to itself to +inf and drop the worst of the ``k + 1``, so an object never
retrieves itself (duplicates of it can still be retrieved).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor

__all__ = ["CANDIDATES_KEY", "Backend", "Candidates", "faiss_available", "nearest_neighbors"]

# where a checkpoint keeps a retrieval model's candidates: {"x_num", "x_bin", "x_cat", "y"} tensors
CANDIDATES_KEY = "tabular_candidates"

Backend = Literal["auto", "faiss", "torch"]
# Distance block size of the torch backend, in elements (64 MiB of float32).
DEFAULT_BLOCK_ELEMENTS = 1 << 24

_FAISS_INDEXES: dict[int, object] = {}


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve_backend(backend: Backend, device: torch.device) -> str:
    if backend == "auto":
        return "faiss" if device.type == "cpu" and faiss_available() else "torch"
    if backend == "faiss":
        if not faiss_available():
            raise ImportError("retrieval backend 'faiss' needs the faiss-cpu package (pip install faiss-cpu)")
        if device.type != "cpu":
            raise ValueError(f"retrieval backend 'faiss' (faiss-cpu) searches CPU tensors, got {device} tensors; "
                             "use backend 'torch' or 'auto'")
        return "faiss"
    if backend != "torch":
        raise ValueError(f"unknown retrieval backend {backend!r}; use 'auto', 'faiss' or 'torch'")
    return "torch"


def _faiss_search(queries: Tensor, keys: Tensor, k: int) -> tuple[Tensor, Tensor]:
    import faiss

    d = keys.shape[1]
    index = _FAISS_INDEXES.get(d)
    if index is None:
        index = _FAISS_INDEXES[d] = faiss.IndexFlatL2(d)
    index.reset()
    index.add(keys.detach().float().contiguous().numpy())
    distances, indices = index.search(queries.detach().float().contiguous().numpy(), k)
    index.reset()  # do not hold on to a copy of the keys between calls
    return torch.from_numpy(distances), torch.from_numpy(indices)


def _torch_search(queries: Tensor, keys: Tensor, k: int, block_elements: int) -> tuple[Tensor, Tensor]:
    queries, keys = queries.detach().float(), keys.detach().float()
    n_queries, n_keys = len(queries), len(keys)
    query_norms = queries.square().sum(1, keepdim=True)
    # Blocks of (query_chunk x key_chunk) distances: all queries at once unless that leaves < 1024 keys a block.
    query_chunk = max(1, min(n_queries, block_elements // 1024))
    key_chunk = max(k, block_elements // query_chunk)
    out_d, out_i = [], []
    for q0 in range(0, n_queries, query_chunk):
        q, q_norm = queries[q0:q0 + query_chunk], query_norms[q0:q0 + query_chunk]
        best_d = best_i = None
        for k0 in range(0, n_keys, key_chunk):
            block = keys[k0:k0 + key_chunk]
            distances = (q_norm - 2.0 * q @ block.T + block.square().sum(1)[None]).clamp_min_(0.0)
            d, i = distances.topk(min(k, len(block)), dim=1, largest=False, sorted=True)
            i = i + k0
            if best_d is not None:
                d, order = torch.cat([best_d, d], 1).topk(k, dim=1, largest=False, sorted=True)
                i = torch.cat([best_i, i], 1).gather(1, order)
            best_d, best_i = d, i
        out_d.append(best_d)
        out_i.append(best_i)
    return torch.cat(out_d), torch.cat(out_i)


@torch.no_grad()
def nearest_neighbors(queries: Tensor, keys: Tensor, k: int, *, exclude: Tensor | None = None,
                      backend: Backend = "auto", block_elements: int = DEFAULT_BLOCK_ELEMENTS
                      ) -> tuple[Tensor, Tensor]:
    """The ``k`` nearest keys of each query by squared L2 distance, nearest first.

    Args:
        queries: (B, d).
        keys: (N, d) candidates.
        k: neighbours per query (at most N, or N - 1 with ``exclude``).
        exclude: (B,) int64, the row of ``keys`` that each query must not retrieve (itself), or None.
        backend: "auto", "faiss" or "torch" (see the module docstring).
        block_elements: memory budget of one distance block of the torch backend, in elements.

    Returns:
        distances (B, k) float32 squared L2 distances, and indices (B, k) int64 rows of ``keys``, on the device
        of ``queries``.
    """
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(f"queries (B, d) and keys (N, d) must share d; got {tuple(queries.shape)} and "
                         f"{tuple(keys.shape)}")
    n_available = len(keys) - (1 if exclude is not None else 0)
    if not 0 < k <= n_available:
        raise ValueError(f"cannot retrieve {k} neighbours from {len(keys)} candidates"
                         + (" (one of them the query itself)" if exclude is not None else ""))
    device = queries.device
    search_k = k + (1 if exclude is not None else 0)
    if _resolve_backend(backend, device) == "faiss":
        distances, indices = _faiss_search(queries.cpu(), keys.cpu(), search_k)
        distances, indices = distances.to(device), indices.to(device)
    else:
        distances, indices = _torch_search(queries, keys.to(device), search_k, block_elements)
    if exclude is not None:
        distances = distances.masked_fill(indices == exclude.to(device)[:, None], float("inf"))
        order = distances.argsort(dim=1, stable=True)[:, :k]
        distances, indices = distances.gather(1, order), indices.gather(1, order)
    return distances, indices


class Candidates(NamedTuple):
    """The objects TabR retrieves from: N rows of the preprocessed training table and their labels.

    ``x_num`` (N, F_num) float, ``x_bin`` (N, F_bin) float, ``x_cat`` (N, F_cat) int64 (each None when absent),
    ``y`` (N,) float (regression, standardised) or int64 (class index).
    """

    x_num: Tensor | None
    x_bin: Tensor | None
    x_cat: Tensor | None
    y: Tensor

    @property
    def size(self) -> int:
        return len(self.y)

    def select(self, index: Tensor) -> Candidates:
        """The rows ``index`` (K,) of every tensor."""
        return Candidates(*(None if t is None else t[index] for t in self))

    def to(self, device: torch.device | str) -> Candidates:
        return Candidates(*(None if t is None else t.to(device) for t in self))
