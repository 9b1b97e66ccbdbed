"""The Cox partial likelihood and the survival metrics, implemented once for every survival model.

- :func:`cox_loss`: negative Cox partial log-likelihood, risk sets by observed time, Efron (default) or Breslow
  ties, optional per-sample weights (lifelines' weighted form), ``sum`` or ``mean`` (per weighted event);
- :func:`harrell_c`, :func:`uno_c`: concordance indices (Uno's with inverse-probability-of-censoring weights);
- :func:`cumulative_dynamic_auc`: time-dependent AUC at set horizons (cases T <= t with an event, controls T > t);
- :func:`breslow_baseline`, :func:`survival_curves`, :func:`integrated_brier_score` (IPCW Brier score);
- :func:`kaplan_meier`: step function of a (time, event) sample.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def cox_loss(risk: Tensor, time: Tensor, event: Tensor, weights: Tensor | None = None, ties: str = "efron",
             reduction: str = "mean") -> Tensor:
    """Negative Cox partial log-likelihood of log-risks ``risk`` (B,) at observed ``time`` (B,), ``event`` (B,).

    Risk sets are R_k = {j : T_j >= t_k} for each distinct event time t_k (never sorted by predicted risk).
    Breslow: -sum_k [sum_{D_k} w_i eta_i - W_k log sum_{R_k} w_j e^eta_j]; Efron subtracts l/d_k of the tied
    events' sum for l = 0..d_k-1 (each term weighted by the tied events' mean weight, as lifelines does).
    ``mean`` divides by the weighted number of events. A batch without events has no partial likelihood: the
    loss is 0 (with a graph, so training continues) and carries no gradient.
    """
    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    with torch.autocast(risk.device.type, enabled=False):  # the risk-set sums are products: float32 under AMP too
        return _cox_loss(risk.reshape(-1), time, event, weights, ties, reduction)


def _cox_loss(risk: Tensor, time: Tensor, event: Tensor, weights: Tensor | None, ties: str, reduction: str
              ) -> Tensor:
    dtype = torch.float64 if risk.dtype == torch.float64 else torch.float32
    eta = risk.to(dtype)
    time = time.reshape(-1).to(dtype)
    event = event.reshape(-1).to(dtype)
    w = torch.ones_like(eta) if weights is None else weights.reshape(-1).to(dtype)
    if event.sum() == 0:
        return risk.sum() * 0.0
    event_times = torch.unique(time[event > 0])                                  # (K,)
    at_risk = (time[None, :] >= event_times[:, None]).to(dtype)                  # (K, B)
    dies = ((time[None, :] == event_times[:, None]) & (event[None, :] > 0)).to(dtype)  # (K, B)
    shift = eta.max().detach()
    e = w * torch.exp(eta - shift)                                                # (B,)
    s_risk = at_risk @ e                                                          # (K,)
    d = dies.sum(1)                                                               # (K,)
    w_events = dies @ w                                                           # (K,)
    numerator = (dies * (w * eta)[None, :]).sum()
    if ties == "breslow":
        log_terms = (w_events * (torch.log(s_risk) + shift)).sum()
    else:
        s_dead = dies @ e                                                         # (K,)
        steps = torch.arange(int(d.max().item()), dtype=dtype, device=eta.device)  # (L,)
        valid = (steps[None, :] < d[:, None]).to(dtype)                           # (K, L)
        frac = steps[None, :] / d[:, None]
        inner = (s_risk[:, None] - frac * s_dead[:, None]).clamp_min(torch.finfo(dtype).tiny)
        log_terms = ((torch.log(inner) + shift) * valid).sum(1)
        log_terms = (log_terms * w_events / d).sum()
    nll = -(numerator - log_terms)
    if reduction == "mean":
        nll = nll / (event * w).sum()
    elif reduction != "sum":
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return nll  # float32 (float64 for float64 risks), never the bf16 of a mixed-precision model output


# --- step functions ------------------------------------------------------------------------------------------
def kaplan_meier(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate: distinct times and S(t) right after each."""
    time, event = np.asarray(time, float), np.asarray(event, float)
    times = np.unique(time)
    at_risk = (time[None, :] >= times[:, None]).sum(1)
    deaths = ((time[None, :] == times[:, None]) & (event[None, :] > 0)).sum(1)
    return times, np.cumprod(1.0 - deaths / np.maximum(at_risk, 1))


def _step(times: np.ndarray, values: np.ndarray, at: np.ndarray, before: float = 1.0) -> np.ndarray:
    index = np.searchsorted(times, at, side="right") - 1
    return np.where(index >= 0, values[np.clip(index, 0, None)], before)


def censoring_survival(train_time: np.ndarray, train_event: np.ndarray):
    """G(t) = P(censored after t), the Kaplan-Meier of the censoring times; returns a function of t."""
    times, g = kaplan_meier(train_time, 1 - np.asarray(train_event))
    return lambda at: np.maximum(_step(times, g, np.asarray(at, float)), 1e-8)


# --- concordance ---------------------------------------------------------------------------------------------
def _concordance(time, event, risk, pair_weight) -> float:
    time, event, risk = (np.asarray(a, float) for a in (time, event, risk))
    # i fails first; a censoring at the same time counts as later (as lifelines and sksurv do)
    later = (time[:, None] < time[None, :]) | ((time[:, None] == time[None, :]) & (event[None, :] == 0))
    comparable = later & (event[:, None] > 0)
    score = (risk[:, None] > risk[None, :]) + 0.5 * (risk[:, None] == risk[None, :])
    weights = comparable * pair_weight[:, None]
    total = weights.sum()
    return float((weights * score).sum() / total) if total > 0 else float("nan")


def harrell_c(time, event, risk) -> float:
    """Harrell's C: share of comparable pairs (T_i < T_j, event_i) ordered by risk (risk ties count 1/2)."""
    return _concordance(time, event, risk, np.ones(len(np.asarray(time))))


def uno_c(time, event, risk, train_time, train_event, tau: float | None = None) -> float:
    """Uno's C: Harrell's pairs weighted by 1/G(T_i)^2 (censoring KM of the training data), T_i < tau."""
    time = np.asarray(time, float)
    g = censoring_survival(train_time, train_event)
    weight = 1.0 / g(time) ** 2
    if tau is not None:
        weight = weight * (time < tau)
    return _concordance(time, event, risk, weight)


def cumulative_dynamic_auc(time, event, risk, horizons, train_time, train_event) -> list[float]:
    """AUC(t) per horizon: cases (T_i <= t, event) weighted by 1/G(T_i) against controls (T_j > t)."""
    time, event, risk = (np.asarray(a, float) for a in (time, event, risk))
    g = censoring_survival(train_time, train_event)
    out = []
    for t in horizons:
        cases = (time <= t) & (event > 0)
        controls = time > t
        if not cases.any() or not controls.any():
            out.append(float("nan"))
            continue
        w = 1.0 / g(time[cases])
        r_case, r_ctrl = risk[cases][:, None], risk[controls][None, :]
        score = ((r_case > r_ctrl) + 0.5 * (r_case == r_ctrl)).mean(1)
        out.append(float((w * score).sum() / w.sum()))
    return out


# --- calibration: Breslow baseline and the integrated Brier score --------------------------------------------
def breslow_baseline(time, event, risk) -> tuple[np.ndarray, np.ndarray]:
    """Breslow cumulative baseline hazard H0 at the distinct event times of the training data."""
    time, event, risk = (np.asarray(a, float) for a in (time, event, risk))
    times = np.unique(time[event > 0])
    e = np.exp(risk - risk.max())
    at_risk = (time[None, :] >= times[:, None]) @ e
    deaths = ((time[None, :] == times[:, None]) & (event[None, :] > 0)).sum(1)
    return times, np.cumsum(deaths / at_risk) * np.exp(-risk.max())


def survival_curves(baseline: tuple[np.ndarray, np.ndarray], risk, at) -> np.ndarray:
    """S(t | x) = exp(-H0(t) e^eta): (N, len(at))."""
    h0 = _step(baseline[0], baseline[1], np.asarray(at, float), before=0.0)
    return np.exp(-np.exp(np.asarray(risk, float))[:, None] * h0[None, :])


def brier_scores(time, event, surv: np.ndarray, at, train_time, train_event) -> np.ndarray:
    """IPCW Brier score at each time of ``at`` for survival curves ``surv`` (N, len(at))."""
    time, event, at = np.asarray(time, float), np.asarray(event, float), np.asarray(at, float)
    g = censoring_survival(train_time, train_event)
    died = (time[:, None] <= at[None, :]) & (event[:, None] > 0)
    alive = time[:, None] > at[None, :]
    score = surv ** 2 * died / g(time)[:, None] + (1 - surv) ** 2 * alive / g(at)[None, :]
    return score.mean(0)


def integrated_brier_score(time, event, risk, baseline, train_time, train_event, grid: int = 50) -> float:
    """IBS over ``grid`` times from the 10th to the 90th percentile of the observed times (trapezoid rule,
    divided by the span), with Breslow survival curves."""
    time = np.asarray(time, float)
    at = np.linspace(np.percentile(time, 10), np.percentile(time, 90), grid)
    if at[-1] <= at[0]:
        return float("nan")
    scores = brier_scores(time, event, survival_curves(baseline, risk, at), at, train_time, train_event)
    return float(np.trapezoid(scores, at) / (at[-1] - at[0]))
