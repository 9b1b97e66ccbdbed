"""Sequence labelling: one binary label per time step of padded sequences (a sepsis risk per ICU hour).

Batches are dicts (``zoo.data.icu.pad_patients``): ``features`` (B, T, F) unnormalised with NaN where missing,
``time`` (B, T, C) the step encoding, ``labels`` (B, T) 0/1 with NaN on padded or unlabelled steps, ``lengths``
(B,), ``patient`` names, and optionally ``sirs`` (B, T), the clinical score reported as a baseline. The task
z-scores the features with the training statistics the data module fitted (kept in the checkpoint), sets NaN to 0
after normalisation, and feeds ``cat(time, features)`` to the model, which gives (B, T, 1) logits.

Loss (the official multicenter-sepsis code): per-step BCE with logits, positive weight ``pos_weight * (1 - p) / p``
with p the share of positive labelled training steps, unlabelled steps masked, the sum over labelled steps divided
by their number.

Metrics of "val" and "test": per-step AUROC and AUPRC; per-patient AUROC (a patient's score is the maximum over
steps); the PhysioNet/CinC 2019 normalised utility score (:func:`normalised_utility`, written from the challenge's
definition) at the decision threshold chosen on the validation split (the one that maximises the utility); and at
the threshold where 80 % of septic patients are alarmed: patient precision, specificity and the median hours of
earliness before onset. The SIRS score (alarm at >= 2 criteria) is reported beside the model under ``*/sirs_*``.
Plots: ROC, utility against threshold, and one septic patient's timeline.

``zoo predict`` writes one file per patient, named as the input file, in the challenge's output format
(``PredictedProbability|PredictedLabel``, one row per hour) at the stored threshold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from typing_extensions import override

from zoo.data.contracts import NormalisedSequences
from zoo.errors import ZooError
from zoo.tasks.base import ZooTask
from zoo.tasks.gathering import gather_from_ranks
from zoo.tasks.registry import register_task

# the challenge's constants (evaluate_sepsis_score.py)
DT_EARLY, DT_OPTIMAL, DT_LATE = -12, -6, 3
MAX_U_TP, MIN_U_FN, U_FP, U_TN = 1.0, -2.0, -0.05, 0.0


def prediction_utility(labels: np.ndarray, predictions: np.ndarray) -> float:
    """The PhysioNet 2019 utility of one patient's binary hourly ``predictions`` against its ``labels`` (the
    challenge's SepsisLabel, already 1 from 6 h before onset).

    With onset t_s = (first hour labelled 1) + 6 and d = t - t_s: a positive prediction earns
    max((d + 12) / 6, -0.05) for d <= -6 (0 at 12 h before onset, 1 at 6 h before, never below the false-alarm
    cost) and (3 - d) / 9 for -6 < d <= 3; a negative prediction costs nothing for d <= -6 and -2 (d + 6) / 9 for
    -6 < d <= 3; nothing counts after d = 3. A patient who never develops sepsis: -0.05 per positive hour.
    """
    labels = np.asarray(labels)
    predictions = np.asarray(predictions).astype(bool)
    hours = np.arange(len(labels))
    if not labels.any():
        return float(np.where(predictions, U_FP, U_TN).sum())
    onset = int(np.argmax(labels)) - DT_OPTIMAL
    d = (hours - onset).astype(float)
    early_tp = np.maximum(MAX_U_TP / (DT_OPTIMAL - DT_EARLY) * (d - DT_EARLY), U_FP)
    late_tp = -MAX_U_TP / (DT_LATE - DT_OPTIMAL) * (d - DT_LATE)
    late_fn = MIN_U_FN / (DT_LATE - DT_OPTIMAL) * (d - DT_OPTIMAL)
    utility = np.where(predictions, np.where(d <= DT_OPTIMAL, early_tp, late_tp),
                       np.where(d <= DT_OPTIMAL, 0.0, late_fn))
    return float(np.where(d <= DT_LATE, utility, 0.0).sum())


def best_predictions(labels: np.ndarray) -> np.ndarray:
    """The predictions of highest utility: positive from 12 h before to 3 h after onset (none for non-septic)."""
    best = np.zeros(len(labels))
    if np.any(labels):
        onset = int(np.argmax(labels)) - DT_OPTIMAL
        best[max(0, onset + DT_EARLY): min(onset + DT_LATE + 1, len(labels))] = 1
    return best


def normalised_utility(labels: list[np.ndarray], predictions: list[np.ndarray]) -> float:
    """The challenge's score: (U - U_inaction) / (U_best - U_inaction) summed over patients, where U_inaction
    predicts nothing and U_best predicts :func:`best_predictions`. 1 is perfect, 0 is doing nothing."""
    observed = sum(prediction_utility(y, p) for y, p in zip(labels, predictions, strict=True))
    best = sum(prediction_utility(y, best_predictions(y)) for y in labels)
    inaction = sum(prediction_utility(y, np.zeros(len(y))) for y in labels)
    if best == inaction:
        return float("nan")
    return (observed - inaction) / (best - inaction)


def alarm_statistics(scores: list[np.ndarray], labels: list[np.ndarray], threshold: float) -> dict[str, float]:
    """Patient-level alarms at ``threshold`` (a patient is alarmed when any hour reaches it): recall, precision,
    specificity, and the median hours between the first alarm and onset (first label + 6) of alarmed cases."""
    septic = np.array([bool(np.any(y)) for y in labels])
    alarmed = np.array([bool(np.any(s >= threshold)) for s in scores])
    tp, fp = int((alarmed & septic).sum()), int((alarmed & ~septic).sum())
    early = [int(np.argmax(y)) - DT_OPTIMAL - int(np.argmax(s >= threshold))
             for s, y, a, c in zip(scores, labels, alarmed, septic, strict=True) if a and c]
    return {"recall": tp / max(1, septic.sum()), "precision": tp / max(1, tp + fp),
            "specificity": float((~alarmed & ~septic).sum() / max(1, (~septic).sum())),
            "earliness_h": float(np.median(early)) if early else float("nan")}


def threshold_at_recall(scores: list[np.ndarray], labels: list[np.ndarray], recall: float = 0.8) -> float:
    """The highest threshold at which at least ``recall`` of the septic patients are alarmed."""
    case_max = np.sort([float(np.max(s)) for s, y in zip(scores, labels, strict=True) if np.any(y)])[::-1]
    if len(case_max) == 0:
        return float("inf")
    return float(case_max[max(0, int(np.ceil(recall * len(case_max))) - 1)])


def utility_curve(scores: list[np.ndarray], labels: list[np.ndarray], num: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Normalised utility at ``num`` thresholds spanning the 0.5-99.5 percentiles of the hourly scores."""
    thresholds = np.unique(np.percentile(np.concatenate(scores), np.linspace(0.5, 99.5, num)))
    utilities = np.array([normalised_utility(labels, [s >= t for s in scores]) for t in thresholds])
    return thresholds, utilities


def _auc(y: np.ndarray, s: np.ndarray, average_precision: bool = False) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(average_precision_score(y, s) if average_precision else roc_auc_score(y, s))


@register_task("sequence_labelling")
class SequenceLabellingTask(ZooTask):
    """Masked per-step binary labelling with the PhysioNet 2019 metrics, the utility score and the SIRS baseline.

    Args:
        in_features: width of one step's model input (linked from the data module: time channels + features).
        pos_weight: factor on the class-imbalance weight (1 - p) / p of positive steps (the official hparam).
        recall: the patient recall of the reported operating point (0.8: the paper's headline).
        **kwargs: the arguments of ``zoo.tasks.base.ZooTask`` (pretrained, model_kwargs, optimizer, ...).
    """

    monitor = "val/loss"
    monitor_mode = "min"
    data_links = (("in_features", "in_features"),)
    dynamic_shapes = "its batches are padded to their longest sequence, a length that changes from batch to batch"
    prediction_output = "predictions"

    def __init__(self, model: str, in_features: int | None = None, pos_weight: float = 1.0, recall: float = 0.8,
                 **kwargs: Any):
        super().__init__(model, **kwargs)
        self.save_hyperparameters()
        self.build_model(**({"in_features": in_features} if in_features else {}))
        self.feature_mean: torch.Tensor | None = None
        self.feature_std: torch.Tensor | None = None
        self.positive_weight = 1.0
        self.threshold = 0.5
        self.outputs: dict[str, list[dict[str, np.ndarray]]] = {"val": [], "test": []}

    # --- statistics from the data module ------------------------------------------------------------------------
    @override
    def setup(self, stage: str) -> None:
        datamodule = self.datamodule
        if stage != "fit" or not isinstance(datamodule, NormalisedSequences):
            return
        if datamodule.feature_mean is None:
            datamodule.setup("fit")
        self.set_statistics(datamodule.feature_mean, datamodule.feature_std, datamodule.positive_fraction)

    def set_statistics(self, mean: Any, std: Any, positive_fraction: float | None) -> None:
        """The training split's feature mean/std (z-scoring) and share of positive steps (loss weight)."""
        self.feature_mean = torch.as_tensor(np.asarray(mean), dtype=torch.float32)
        self.feature_std = torch.as_tensor(np.asarray(std), dtype=torch.float32)
        p = positive_fraction
        cif = (1 - p) / p if p and 0 < p < 1 else 1.0
        self.positive_weight = float(self.hparams.pos_weight * cif)

    def inputs(self, batch: dict[str, Any]) -> torch.Tensor:
        """(B, T, C + F): the step encoding and the z-scored features, NaN -> 0 after normalisation."""
        features = batch["features"]
        if self.feature_mean is None:
            raise RuntimeError("no feature statistics: train with a data module, or load a checkpoint of this task")
        mean, std = self.feature_mean.to(features), self.feature_std.to(features)
        return torch.cat([batch["time"], torch.nan_to_num((features - mean) / std, nan=0.0)], dim=-1)

    @override
    def forward(self, batch: dict[str, Any], model: torch.nn.Module | None = None) -> torch.Tensor:
        """(B, T) logits of one batch."""
        return (model or self.model)(self.inputs(batch), batch["lengths"])[..., 0]

    def masked_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """BCE with logits over the labelled steps (NaN labels masked), the mean over labelled steps."""
        mask = ~torch.isnan(labels)
        weight = torch.tensor(self.positive_weight, device=logits.device, dtype=logits.dtype)
        losses = F.binary_cross_entropy_with_logits(logits, torch.nan_to_num(labels), pos_weight=weight,
                                                    reduction="none")
        return (losses * mask).sum() / mask.sum().clamp(min=1)

    @override
    def step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        logits = self(batch, self.model if stage == "train" else self.eval_model)
        loss = self.masked_loss(logits, batch["labels"])
        if stage != "train":
            probs = torch.sigmoid(logits).detach().cpu().numpy()
            labels = batch["labels"].cpu().numpy()
            sirs = batch.get("sirs")
            sirs = sirs.cpu().numpy() if sirs is not None else np.zeros_like(probs)
            for i, n in enumerate(batch["lengths"].tolist()):
                self.outputs[stage].append({"score": probs[i, :n], "label": labels[i, :n], "sirs": sirs[i, :n],
                                            "patient": batch["patient"][i]})
        return loss

    # --- metrics ------------------------------------------------------------------------------------------------
    def evaluate(self, outputs: list[dict[str, np.ndarray]], choose_threshold: bool) -> dict[str, float]:
        """Every metric of one stage; on the validation split also chooses the utility-maximising threshold."""
        outputs = [o for o in outputs if not np.isnan(o["label"]).all()]
        if not outputs:
            return {}
        scores = [o["score"] for o in outputs]
        labels = [np.nan_to_num(o["label"]) for o in outputs]
        sirs = [o["sirs"] for o in outputs]
        hour_y, hour_s, hour_sirs = np.concatenate(labels), np.concatenate(scores), np.concatenate(sirs)
        septic = np.array([bool(y.any()) for y in labels])
        if choose_threshold:
            thresholds, utilities = utility_curve(scores, labels)
            if np.isfinite(utilities).any():
                self.threshold = float(thresholds[np.nanargmax(utilities)])
        metrics = {
            "auroc_hourly": _auc(hour_y, hour_s), "auprc_hourly": _auc(hour_y, hour_s, average_precision=True),
            "auroc_patient": _auc(septic, np.array([s.max() for s in scores])),
            "utility": normalised_utility(labels, [s >= self.threshold for s in scores]),
            "threshold": self.threshold,
            "sirs_auroc_hourly": _auc(hour_y, hour_sirs),
            "sirs_auroc_patient": _auc(septic, np.array([s.max() for s in sirs])),
            "sirs_utility": normalised_utility(labels, [s >= 2 for s in sirs]),
        }
        at_recall = alarm_statistics(scores, labels, threshold_at_recall(scores, labels, self.hparams.recall))
        metrics |= {f"{k}_at_recall": v for k, v in at_recall.items() if k != "recall"}
        metrics |= {f"sirs_{k}": v for k, v in alarm_statistics(sirs, labels, 2).items()}
        return metrics

    @override
    def end_of_epoch(self, stage: str) -> None:
        outputs, self.outputs[stage] = self.outputs[stage], []
        if self.trainer.sanity_checking:
            return
        outputs = gather_from_ranks(outputs, self.trainer.world_size)
        metrics = self.evaluate(outputs, choose_threshold=stage == "val")
        self.log_dict({f"{stage}/{k}": float(v) for k, v in metrics.items()}, sync_dist=True)  # same on every process
        if stage == "test" or (stage == "val" and self.current_epoch == self.trainer.max_epochs - 1):
            self.log_figure(lambda: evaluation_figure(outputs, self.threshold), f"plots/{stage}_sepsis.png")

    # --- predictions --------------------------------------------------------------------------------------------
    @override
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[tuple[str, np.ndarray]]:
        probs = torch.sigmoid(self(batch, self.eval_model)).cpu().numpy()
        return [(name, probs[i, :n]) for i, (name, n) in enumerate(zip(batch["patient"], batch["lengths"].tolist(),
                                                                         strict=True))]

    @override
    def write_predictions(self, predictions: list[Any], datamodule: Any, output: Path) -> str:
        """One ``<patient>.psv`` per patient in ``output``: ``PredictedProbability|PredictedLabel`` per hour, at the
        threshold chosen on the validation split (the challenge's driver writes ``%g|%d``)."""
        output = Path(output)
        if output.suffix or output.is_file():  # a file name (scores.csv) would silently become a folder
            raise ZooError(f"--output {output}: this task writes one .psv file per patient, as the PhysioNet "
                           "challenge reads them; give a folder (default: predictions/)")
        output.mkdir(parents=True, exist_ok=True)
        count = 0
        for batch in predictions:
            for name, probs in batch:
                lines = ["PredictedProbability|PredictedLabel"]
                lines += [f"{p:g}|{int(p >= self.threshold)}" for p in probs.astype(float)]
                (output / f"{name}.psv").write_text("\n".join(lines) + "\n")
                count += 1
        return f"wrote {count} patient prediction files (threshold {self.threshold:.4g}) to {output.resolve()}"

    # --- checkpoints --------------------------------------------------------------------------------------------
    @override
    def checkpoint_extras(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "positive_weight": self.positive_weight,
                "feature_mean": None if self.feature_mean is None else self.feature_mean.tolist(),
                "feature_std": None if self.feature_std is None else self.feature_std.tolist()}

    @override
    def load_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        self.threshold = float(extras.get("threshold", self.threshold))
        self.positive_weight = float(extras.get("positive_weight", self.positive_weight))
        if extras.get("feature_mean") is not None:
            self.feature_mean = torch.tensor(extras["feature_mean"], dtype=torch.float32)
            self.feature_std = torch.tensor(extras["feature_std"], dtype=torch.float32)


def evaluation_figure(outputs: list[dict[str, np.ndarray]], threshold: float):
    """ROC (hourly, model and SIRS), utility against threshold, and the timeline of one septic patient."""
    import matplotlib.pyplot as plt

    outputs = [o for o in outputs if not np.isnan(o["label"]).all()]
    labels = [np.nan_to_num(o["label"]) for o in outputs]
    scores = [o["score"] for o in outputs]
    figure, (roc, util, timeline) = plt.subplots(1, 3, figsize=(15, 4))
    y, s = np.concatenate(labels), np.concatenate(scores)
    if len(np.unique(y)) == 2:
        for name, values in (("model", s), ("SIRS", np.concatenate([o["sirs"] for o in outputs]))):
            fpr, tpr, _ = roc_curve(y, values)
            roc.plot(fpr, tpr, label=name)
    roc.plot([0, 1], [0, 1], "k:", lw=0.8)
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="hourly ROC")
    roc.legend()
    thresholds, utilities = utility_curve(scores, labels)
    util.plot(thresholds, utilities)
    util.axvline(threshold, color="k", ls="--", lw=0.8)
    util.set(xlabel="threshold", ylabel="normalised utility", title="utility against threshold")
    septic = [i for i, lab in enumerate(labels) if lab.any()]
    if septic:
        i = max(septic, key=lambda k: len(labels[k]))
        timeline.plot(np.arange(1, len(scores[i]) + 1), scores[i], label="risk")
        onset = int(np.argmax(labels[i])) - DT_OPTIMAL + 1
        timeline.axvline(onset, color="r", label="onset")
        timeline.axhline(threshold, color="k", ls="--", lw=0.8, label="threshold")
        timeline.set(xlabel="ICU hour", ylabel="risk", title=f"patient {outputs[i]['patient']}")
        timeline.legend()
    figure.tight_layout()
    return figure
