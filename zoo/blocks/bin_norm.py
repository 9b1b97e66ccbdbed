"""BiN: bilinear input normalisation (Tran, Kanniainen, Gabbouj, Iosifidis, "Data Normalization for Bilinear
Structures in High-Frequency Financial Time-series", ICPR 2020, arXiv 2003.00598), as TLOB and MLPLOB use it.

Facts from the TLOB repository (LeonardoBerti00/TLOB, MIT licence, (c) Leonardo Berti), ``models/bin.py``; the
parameter names (``B1``, ``l1``, ``B2``, ``l2``, ``y1``, ``y2``) and shapes are the official ones so that official
checkpoints load as they are. Two departures, both of them fixes:

- the official forward re-creates a negative mixing scalar as a new ``torch.cuda.FloatTensor`` parameter of
  value 0.01, in training and in eval alike (which fails on CPU and leaves the optimiser updating a tensor the
  model no longer uses); here, in training, the same parameter is set to 0.01 in place, so it stays trained, and
  in eval a negative scalar is used as 0.01 without changing the weights, so a file holding a negative scalar
  gives the official outputs;
- a time step whose features are all equal gives a zero standard deviation in the feature branch, which the
  official code divides by (NaN); here such a standard deviation is taken as 1, as the temporal branch already does.
"""

from __future__ import annotations

import torch
from torch import nn

from zoo.errors import InputShapeError

__all__ = ["BiN"]


class BiN(nn.Module):
    """Bilinear normalisation of a (features x time) window: a learnt mix of a temporal and a feature z-score.

    temporal branch: each feature z-scored over time (unbiased std; std < 1e-4 taken as 1), then
    ``l2 * z + B2`` with a scale and bias per feature; feature branch: each time step z-scored over the
    features, then ``l1 * z + B1`` with a scale and bias per time step. Output ``y1 * feature + y2 * temporal``,
    with learnt mixing scalars kept non-negative (y1 = y2 = 0.5 at the start).

    Args:
        num_features: D, the number of features (rows of the window).
        seq_len: T, the number of time steps (columns of the window).
        eps: standard deviations below this count as zero and are replaced by 1.
    """

    def __init__(self, num_features: int, seq_len: int, eps: float = 1e-4):
        super().__init__()
        if num_features < 2 or seq_len < 2:
            raise ValueError(f"BiN needs at least 2 features and 2 time steps, got {num_features} x {seq_len}")
        self.num_features = num_features
        self.seq_len = seq_len
        self.eps = eps
        self.B1 = nn.Parameter(torch.zeros(seq_len, 1))
        self.l1 = nn.Parameter(torch.empty(seq_len, 1))
        self.B2 = nn.Parameter(torch.zeros(num_features, 1))
        self.l2 = nn.Parameter(torch.empty(num_features, 1))
        self.y1 = nn.Parameter(torch.full((1,), 0.5))
        self.y2 = nn.Parameter(torch.full((1,), 0.5))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.B1)
        nn.init.zeros_(self.B2)
        nn.init.xavier_normal_(self.l1)
        nn.init.xavier_normal_(self.l2)
        nn.init.constant_(self.y1, 0.5)
        nn.init.constant_(self.y2, 0.5)

    @torch.no_grad()
    def _keep_mixing_non_negative(self) -> None:
        for y in (self.y1, self.y2):
            y.copy_(torch.where(y < 0, torch.full_like(y, 0.01), y))

    @staticmethod
    def _mixing(y: torch.Tensor) -> torch.Tensor:
        """A mixing scalar as the official forward uses it: 0.01 in place of a negative value."""
        return torch.where(y < 0, torch.full_like(y, 0.01), y)

    def _std(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        std = x.std(dim=dim, keepdim=True)
        return torch.where(std < self.eps, torch.ones_like(std), std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D, T) -> (B, D, T)."""
        if x.ndim != 3 or x.shape[1:] != (self.num_features, self.seq_len):
            raise InputShapeError(f"BiN expects (batch, {self.num_features} features, {self.seq_len} steps), "
                                  f"got {tuple(x.shape)}")
        if self.training:
            self._keep_mixing_non_negative()
        temporal = (x - x.mean(dim=2, keepdim=True)) / self._std(x, 2)
        temporal = self.l2 * temporal + self.B2  # (D, 1) per feature
        feature = (x - x.mean(dim=1, keepdim=True)) / self._std(x, 1)
        feature = self.l1.T * feature + self.B1.T  # (1, T) per time step
        return self._mixing(self.y1) * feature + self._mixing(self.y2) * temporal

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, seq_len={self.seq_len}"
