"""Survival analysis: a log-risk per subject trained with the Cox partial likelihood, for every survival model.

Batches are the dicts of ``zoo.data.survival``: ``inputs`` (list of tensors in the model's input order), ``time``
(B,), ``event`` (B,) 1 = event, 0 = censored, optional ``mask`` (B, N) of padded patch sets (passed to the model as
``mask=``), ``id`` (list of str). The model gives (B,) or (B, 1) log-risks (higher: earlier events).

Loss (:func:`zoo.tasks.survival_metrics.cox_loss`): the negative Cox partial log-likelihood over the whole batch,
risk sets taken by observed time (R_k = {j : T_j >= t_k}; the BioFusionNet release sorted by predicted risk, a bug
not copied), Efron ties (as lifelines' ``CoxPHFitter``) or Breslow, divided by the (weighted) number of events.
``event_weight`` w > 1 gives events weight w and censored subjects weight 1 in the numerator and in the risk sets
(the paper's weighted Cox loss as intended; the release passed uniform weights, which cancel). A batch without
events has no partial likelihood: its Cox loss is 0 and carries no gradient, the step is counted in
``train/batches_without_events`` and a warning says how to avoid it (larger batches). A model with an
``auxiliary_loss(*inputs, mask=...)`` (BioFusionNet's VAE stage) adds it, times ``auxiliary_weight``.

Metrics of "val" and "test", over the whole split: the Cox loss with risk sets over the split (``cox_nll``),
Harrell's C (monitored), Uno's C (censoring weights from the training part), the cumulative/dynamic AUC at the
data module's horizons and their mean, the integrated Brier score of Breslow survival curves (baseline hazard from
the training part's predictions), and the log-rank p-value between the predicted high- and low-risk groups (split
at the training median risk, as the BioFusionNet paper splits). Plot: Kaplan-Meier curves of the two groups with
the log-rank p-value (``plots/<stage>_kaplan_meier.png``).

``zoo predict`` writes a CSV: id, log-risk, risk group, the observed time and event (when the file has them), and
the survival probability at each horizon (Breslow baseline of the training part, kept in the checkpoint). Evaluated
on another file (no training part in the data module), the metrics use the checkpoint's baseline, training times
and risk-group threshold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from typing_extensions import override

from zoo.data.contracts import SurvivalCohort
from zoo.tasks import survival_metrics as sm
from zoo.tasks.base import ZooTask, write_csv
from zoo.tasks.gathering import gather_from_ranks
from zoo.tasks.registry import register_task


def _array(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def survival_metrics(time: np.ndarray, event: np.ndarray, risk: np.ndarray, train_time: np.ndarray,
                     train_event: np.ndarray, baseline: tuple[np.ndarray, np.ndarray], horizons: list[float],
                     threshold: float) -> dict[str, float]:
    """Every metric of one split (see the module docstring) from its risks, the training part's times and events
    and the Breslow ``baseline`` fitted on the training part's risks."""
    metrics = {"c_index": sm.harrell_c(time, event, risk),
               "uno_c_index": sm.uno_c(time, event, risk, train_time, train_event,
                                       tau=float(train_time[train_event > 0].max()) if train_event.any() else None)}
    aucs = sm.cumulative_dynamic_auc(time, event, risk, horizons, train_time, train_event)
    for horizon, auc in zip(horizons, aucs, strict=True):
        metrics[f"td_auc_{horizon:g}"] = auc
    finite = [a for a in aucs if np.isfinite(a)]
    metrics["td_auc_mean"] = float(np.mean(finite)) if finite else float("nan")
    metrics["ibs"] = sm.integrated_brier_score(time, event, risk, baseline, train_time, train_event)
    high = risk > threshold
    metrics["logrank_p"] = logrank_p(time, event, high)
    metrics["high_risk_fraction"] = float(high.mean()) if len(high) else float("nan")
    return metrics


def logrank_p(time: np.ndarray, event: np.ndarray, high: np.ndarray) -> float:
    """Log-rank test p-value between the high- and low-risk groups (lifelines); NaN when a group is empty."""
    if high.all() or not high.any():
        return float("nan")
    from lifelines.statistics import logrank_test

    return float(logrank_test(time[high], time[~high], event[high], event[~high]).p_value)


def kaplan_meier_figure(time: np.ndarray, event: np.ndarray, high: np.ndarray, title: str):
    """Kaplan-Meier curves (with 95 % bands) of the predicted high- and low-risk groups, log-rank p in the title."""
    import matplotlib.pyplot as plt
    from lifelines import KaplanMeierFitter

    figure, ax = plt.subplots(figsize=(6.5, 4.5), dpi=100)
    for name, members, colour in (("low risk", ~high, "tab:blue"), ("high risk", high, "tab:red")):
        if members.any():
            KaplanMeierFitter(label=f"{name} (n={int(members.sum())}, events {int(event[members].sum())})").fit(
                time[members], event[members]).plot_survival_function(ax=ax, color=colour)
    p = logrank_p(time, event, high)
    ax.set(xlabel="time", ylabel="survival probability", ylim=(0, 1.02),
           title=f"{title}: log-rank p = {p:.3g}" if np.isfinite(p) else title)
    ax.legend(loc="lower left")
    figure.tight_layout()
    return figure


@register_task("survival")
class SurvivalTask(ZooTask):
    """Cox partial likelihood training of any model that gives a log-risk per subject.

    Args:
        model_inputs: constructor arguments that follow from the data (linked from the data module's
            ``model_inputs``: e.g. ``in_features`` of a table, ``gene_features`` / ``clinical_features``).
        ties: "efron" (default, as lifelines) or "breslow".
        event_weight: weight of subjects with an event (censored ones weigh 1); 1 is the plain Cox loss.
        auxiliary_weight: factor on a model's own ``auxiliary_loss`` (BioFusionNet's VAE stage); 0 turns it off.
        horizons: times of the time-dependent AUC and of the predicted survival probabilities; None takes the
            data module's ``horizons`` (its default: quartiles of the training event times).
        **kwargs: the arguments of ``zoo.tasks.base.ZooTask`` (pretrained, model_kwargs, optimizer, ...).

    Example::

        zoo train medical/biofusionnet --model.event_weight 5 --data.horizons "[5, 10]"
    """

    monitor = "val/c_index"
    monitor_mode = "max"
    data_links = (("model_inputs", "model_inputs"),)
    prediction_output = "risks.csv"

    def __init__(self, model: str, model_inputs: dict[str, Any] | None = None, ties: str = "efron",
                 event_weight: float = 1.0, auxiliary_weight: float = 1.0, horizons: list[float] | None = None,
                 **kwargs: Any):
        super().__init__(model, **kwargs)
        if ties not in ("efron", "breslow"):
            raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
        if event_weight <= 0:
            raise ValueError(f"event_weight must be positive, got {event_weight}")
        if auxiliary_weight < 0:
            raise ValueError(f"auxiliary_weight must be 0 or more, got {auxiliary_weight}")
        self.save_hyperparameters()
        self.build_model(**(model_inputs or {}))
        self.horizons: list[float] = list(horizons or [])
        self.train_time = np.zeros(0)
        self.train_event = np.zeros(0)
        self.baseline: tuple[np.ndarray, np.ndarray] | None = None
        self.threshold = 0.0
        self.outputs: dict[str, list[dict[str, np.ndarray]]] = {"val": [], "test": []}
        self.batches_without_events = 0
        self._warned_no_events = False

    # --- the training part, from the data module ----------------------------------------------------------------
    @override
    def setup(self, stage: str) -> None:
        datamodule = self.datamodule
        if not isinstance(datamodule, SurvivalCohort) or datamodule.train_time is None:
            return
        self.train_time, self.train_event = _array(datamodule.train_time), _array(datamodule.train_event)
        if not self.hparams.horizons:
            self.horizons = [float(h) for h in datamodule.horizons or
                             default_horizons(self.train_time, self.train_event)]

    # --- forward and loss ---------------------------------------------------------------------------------------
    @override
    def forward(self, batch: dict[str, Any], model: torch.nn.Module | None = None) -> Tensor:
        """(B,) log-risks of one batch."""
        model = model or self.model
        extra = {"mask": batch["mask"]} if batch.get("mask") is not None else {}
        risk = model(*batch["inputs"], **extra)
        size = len(batch["time"]) if "time" in batch else len(batch["id"])  # new subjects have no outcomes
        if risk.ndim > 2 or (risk.ndim == 2 and risk.shape[1] != 1) or risk.numel() != size:
            raise ValueError(f"{self.model_id} gave log-risks of shape {tuple(risk.shape)} for a batch of "
                             f"{size}; a survival model gives (B,) or (B, 1)")
        return risk.reshape(-1)

    @override
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss = self.step(batch, "train")
        self.check_finite(loss)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch["time"]))
        return loss

    @override
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.log("val/loss", self.step(batch, "val"), on_epoch=True, sync_dist=True, batch_size=len(batch["time"]))

    @override
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.log("test/loss", self.step(batch, "test"), on_epoch=True, sync_dist=True, batch_size=len(batch["time"]))

    def sample_weights(self, event: Tensor) -> Tensor | None:
        """``event_weight`` for subjects with an event, 1 for censored ones (None when all weigh 1)."""
        w = float(self.hparams.event_weight)
        return None if w == 1.0 else torch.where(event > 0, w, 1.0).to(event.dtype)

    def cox(self, risk: Tensor, time: Tensor, event: Tensor) -> Tensor:
        return sm.cox_loss(risk, time, event, self.sample_weights(event), ties=self.hparams.ties)

    @override
    def step(self, batch: dict[str, Any], stage: str) -> Tensor:
        model = self.model if stage == "train" else self.eval_model
        risk = self(batch, model)
        risk = risk.float()  # under mixed precision too: bf16 would tie risks and round the times of the risk sets
        time, event = batch["time"].float(), batch["event"].float()
        loss = self.cox(risk, time, event)
        if stage == "train":
            if event.sum() == 0:
                self.note_batch_without_events(len(event))
            self.log("train/cox_loss", loss, on_step=False, on_epoch=True, batch_size=len(event))
            auxiliary = getattr(model, "auxiliary_loss", None)
            if callable(auxiliary) and self.hparams.auxiliary_weight > 0:
                extra = {"mask": batch["mask"]} if batch.get("mask") is not None else {}
                aux = auxiliary(*batch["inputs"], **extra)
                self.log("train/auxiliary_loss", aux, on_step=False, on_epoch=True, batch_size=len(event))
                loss = loss + self.hparams.auxiliary_weight * aux
            return loss
        self.outputs[stage].append({"risk": risk.detach().float().cpu().numpy(),
                                    "time": batch["time"].cpu().numpy(), "event": batch["event"].cpu().numpy()})
        return loss

    def note_batch_without_events(self, size: int) -> None:
        self.batches_without_events += 1
        self.log("train/batches_without_events", float(self.batches_without_events), on_step=True, on_epoch=False,
                 reduce_fx="max")
        if not self._warned_no_events:
            self._warned_no_events = True
            rank_zero_warn(f"a training batch of {size} subjects has no event: the Cox partial likelihood is "
                           "undefined there, so the step contributes no gradient. Use a larger --data.batch_size "
                           "(the count is logged as train/batches_without_events)")

    # --- the training part's risks: Breslow baseline and the risk-group threshold -------------------------------
    @torch.no_grad()
    def training_risks(self) -> np.ndarray | None:
        """Log-risks of the training part in order (the data module's ``baseline_dataloader``), or None when the
        data module holds no training part (evaluation of another file: the checkpoint's baseline is used)."""
        datamodule = self.datamodule
        if not isinstance(datamodule, SurvivalCohort) or datamodule.train_time is None:
            return None
        loader = datamodule.baseline_dataloader
        model, was_training = self.eval_model, self.eval_model.training
        model.eval()
        risks = []
        for batch in loader():
            batch = self.transfer_batch_to_device(batch, self.device, 0)
            risks.append(self(batch, model).float().cpu().numpy())
        model.train(was_training)
        return np.concatenate(risks) if risks else None

    def fit_baseline(self, train_risk: np.ndarray) -> None:
        self.baseline = sm.breslow_baseline(self.train_time, self.train_event, train_risk)
        self.threshold = float(np.median(train_risk))

    # --- metrics ------------------------------------------------------------------------------------------------
    @override
    def end_of_epoch(self, stage: str) -> None:
        outputs, self.outputs[stage] = self.outputs[stage], []
        if self.trainer.sanity_checking:
            return
        outputs = gather_from_ranks(outputs, self.trainer.world_size)
        if not outputs:
            return
        risk, time, event = (np.concatenate([o[k] for o in outputs]).astype(np.float64)
                             for k in ("risk", "time", "event"))
        metrics: dict[str, float] = {}
        with torch.no_grad():
            metrics["cox_nll"] = float(self.cox(torch.from_numpy(risk), torch.from_numpy(time),
                                                torch.from_numpy(event)))
        train_risk = self.training_risks()
        if train_risk is not None and len(train_risk) == len(self.train_time):
            self.fit_baseline(train_risk)
        if self.baseline is not None and len(self.train_time):  # fitted now, or the checkpoint's (other data)
            metrics |= survival_metrics(time, event, risk, self.train_time, self.train_event, self.baseline,
                                        self.horizons, self.threshold)
        else:
            metrics["c_index"] = sm.harrell_c(time, event, risk)
        # every process holds the same gathered value: sync_dist only tells Lightning so
        self.log(f"{stage}/c_index", metrics.pop("c_index"), prog_bar=True, sync_dist=True)
        self.log_dict({f"{stage}/{k}": float(v) for k, v in metrics.items()}, sync_dist=True)
        if stage == "test" or (stage == "val" and self.current_epoch == self.trainer.max_epochs - 1):
            high = risk > self.threshold
            self.log_figure(lambda: kaplan_meier_figure(time, event, high, f"{stage}: predicted risk groups"),
                            f"plots/{stage}_kaplan_meier.png")

    # --- predictions --------------------------------------------------------------------------------------------
    @override
    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        risk = self(batch, self.eval_model).float().cpu().numpy()
        out: dict[str, Any] = {"id": list(batch.get("id") or range(len(risk))), "risk": risk}
        for key in ("time", "event"):
            if key in batch:
                out[key] = batch[key].cpu().numpy()
        return out

    @override
    def write_predictions(self, predictions: list[dict[str, Any]], datamodule: Any, output: Path) -> str:
        """One CSV row per subject: id, risk (log-hazard ratio), group (high/low at the training median),
        time and event when known, and ``survival_at_<h>`` for each horizon when a baseline is known."""
        rows = []
        for batch in predictions:
            surv = None
            if self.baseline is not None and self.horizons:
                surv = sm.survival_curves(self.baseline, batch["risk"], self.horizons)
            for i, (name, risk) in enumerate(zip(batch["id"], batch["risk"], strict=True)):
                row: dict[str, Any] = {"id": name, "risk": f"{float(risk):.6g}",
                                       "risk_group": "high" if risk > self.threshold else "low"}
                if "time" in batch:
                    row["time"], row["event"] = f"{float(batch['time'][i]):g}", int(batch["event"][i])
                if surv is not None:
                    row |= {f"survival_at_{h:g}": f"{s:.4f}" for h, s in zip(self.horizons, surv[i], strict=True)}
                rows.append(row)
        return write_csv(rows, Path(output))

    # --- checkpoints --------------------------------------------------------------------------------------------
    @override
    def checkpoint_extras(self) -> dict[str, Any]:
        baseline = None if self.baseline is None else [self.baseline[0].tolist(), self.baseline[1].tolist()]
        return {"horizons": list(self.horizons), "threshold": self.threshold, "baseline": baseline,
                "train_time": self.train_time.tolist(), "train_event": self.train_event.tolist()}

    @override
    def load_checkpoint_extras(self, extras: dict[str, Any]) -> None:
        self.horizons = [float(h) for h in extras.get("horizons") or self.horizons]
        self.threshold = float(extras.get("threshold", self.threshold))
        if extras.get("baseline") is not None:
            self.baseline = (_array(extras["baseline"][0]), _array(extras["baseline"][1]))
        if extras.get("train_time") is not None:
            self.train_time, self.train_event = _array(extras["train_time"]), _array(extras["train_event"])


def default_horizons(time: np.ndarray, event: np.ndarray) -> list[float]:
    """Quartiles of the training event times (where time-dependent AUC has cases and controls)."""
    return [float(q) for q in np.quantile(time[event > 0], [0.25, 0.5, 0.75])] if event.any() else []
