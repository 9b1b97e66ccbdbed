"""The model beside its do-nothing baseline: which logged metric each evaluation metric is compared with, which way
is better, and the sentence that says it ("test PSNR 15.63 dB is below the unprocessed input's 16.01 dB").

The tasks log their baselines on the same examples as the model (restoration: the degraded input's own PSNR and
SSIM; classification and LOB: always the majority class; forecasting: persistence and seasonal naive; ICU: the SIRS
score); a few baselines are constants (a random ranking's C-index 0.5, the mean's R^2 0). ``zoo train``'s summary
and ``zoo validate|test`` print :func:`verdict_lines` of their metrics.

Example:
    >>> verdict_lines({"test/psnr": 15.63, "test/input_psnr": 16.01})
    ["WORSE than doing nothing: test PSNR 15.63 dB is below the unprocessed input's 16.01 dB"]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["BASELINES", "Baseline", "Comparison", "compare", "verdict_lines"]


@dataclass(frozen=True)
class Baseline:
    """One pairing: ``metric`` (the logged name without the stage, e.g. "psnr") against ``baseline``, the logged
    name of the baseline's value on the same examples ("input_psnr") or a constant (0.5).

    Attributes:
        label: what the metric is called in a sentence ("PSNR").
        baseline_label: the baseline in the possessive ("the unprocessed input's").
        higher_is_better: which way the metric improves.
        unit: appended to the values (" dB").
    """

    metric: str
    baseline: str | float
    label: str
    baseline_label: str
    higher_is_better: bool = True
    unit: str = ""


BASELINES: tuple[Baseline, ...] = (
    # image restoration: the degraded input, unprocessed
    Baseline("psnr", "input_psnr", "PSNR", "the unprocessed input's", unit=" dB"),
    Baseline("ssim", "input_ssim", "SSIM", "the unprocessed input's"),
    # classification and LOB trend: always the majority class
    Baseline("acc", "majority_acc", "accuracy", "always predicting the majority class's"),
    Baseline("f1_macro", "majority_f1_macro", "macro F1", "always predicting the majority class's"),
    # forecasting: every future step = the last observation; the value one season back
    Baseline("mae", "persistence_mae", "MAE", "the last-value (persistence) forecast's", higher_is_better=False),
    Baseline("rmse", "persistence_rmse", "RMSE", "the last-value (persistence) forecast's", higher_is_better=False),
    Baseline("mae", "seasonal_naive_mae", "MAE", "the seasonal-naive forecast's", higher_is_better=False),
    # ICU sequence labelling: the clinical SIRS score
    Baseline("auroc_hourly", "sirs_auroc_hourly", "hourly AUROC", "the SIRS score's"),
    Baseline("auroc_patient", "sirs_auroc_patient", "per-patient AUROC", "the SIRS score's"),
    Baseline("utility", "sirs_utility", "utility score", "the SIRS score's"),
    # survival: a random ranking
    Baseline("c_index", 0.5, "C-index", "a random ranking's"),
    Baseline("uno_c_index", 0.5, "Uno C-index", "a random ranking's"),
    # regression on tables: always the mean
    Baseline("r2", 0.0, "R^2", "always predicting the mean's"),
)


@dataclass(frozen=True)
class Comparison:
    """The model's ``value`` of a metric beside the baseline's, at one stage ("test", "val")."""

    stage: str
    pairing: Baseline
    value: float
    baseline_value: float

    @property
    def worse(self) -> bool:
        """The model does worse than doing nothing (not a tie)."""
        if self.tie:
            return False
        return (self.value < self.baseline_value) == self.pairing.higher_is_better

    @property
    def tie(self) -> bool:
        return math.isclose(self.value, self.baseline_value, rel_tol=1e-6, abs_tol=1e-9)

    def sentence(self) -> str:
        """"test PSNR 15.63 dB is below the unprocessed input's 16.01 dB", with how it reads for the model."""
        p = self.pairing
        model = f"{self.stage} {p.label} {self.value:.4g}{p.unit}"
        base = f"{p.baseline_label} {self.baseline_value:.4g}{p.unit}"
        if self.tie:
            return f"no better than doing nothing: {model} equals {base}"
        side = "above" if self.value > self.baseline_value else "below"
        if self.worse:
            return f"WORSE than doing nothing: {model} is {side} {base}"
        return f"{model} is {side} {base} (better)"


def _stage_of(metrics: Mapping[str, object]) -> str | None:
    stages = {key.split("/", 1)[0] for key in metrics if "/" in key}
    for stage in ("test", "val"):
        if stage in stages:
            return stage
    return None


def _number(value: object) -> float | None:
    try:
        number = float(value)  # tensors, numpy scalars and floats alike
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def compare(metrics: Mapping[str, object], stage: str | None = None) -> list[Comparison]:
    """Every pairing of :data:`BASELINES` whose metric and baseline are both in ``metrics`` (names
    ``"<stage>/<metric>"``, as the tasks log them; ``stage``: "test" when present, else "val")."""
    stage = stage or _stage_of(metrics)
    if stage is None:
        return []
    comparisons = []
    for pairing in BASELINES:
        value = _number(metrics.get(f"{stage}/{pairing.metric}"))
        baseline = pairing.baseline if isinstance(pairing.baseline, float) else \
            _number(metrics.get(f"{stage}/{pairing.baseline}"))
        if value is not None and baseline is not None:
            comparisons.append(Comparison(stage, pairing, value, baseline))
    return comparisons


def verdict_lines(metrics: Mapping[str, object], stage: str | None = None) -> list[str]:
    """One sentence per comparison, those where the model does worse first."""
    comparisons = compare(metrics, stage)
    comparisons.sort(key=lambda c: not (c.worse or c.tie))
    return [c.sentence() for c in comparisons]
