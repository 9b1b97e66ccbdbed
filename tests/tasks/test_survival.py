"""The survival task: the Cox loss equals lifelines' log-likelihood (Efron, with ties and weights) and a hand-written
Breslow sum; Harrell's C equals lifelines' ``concordance_index``; Uno's C and td-AUC reduce to Harrell / ROC AUC
without censoring; the Breslow baseline equals lifelines'; a batch without events is answered; a tiny Cox MLP trained
on the real GBSG2 cohort ranks test patients well above chance and writes its risk table."""

import csv

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from lifelines import CoxPHFitter
from lifelines.datasets import load_gbsg2, load_rossi
from lifelines.utils import concordance_index
from sklearn.metrics import roc_auc_score
from torch import nn

from zoo.registry import ModelCard, Paper, Risk, register_model
from zoo.tasks import survival_metrics as sm
from zoo.tasks.survival import SurvivalTask, kaplan_meier_figure, logrank_p

torch.set_num_threads(1)


def _rossi_fit(weights=None):
    frame = load_rossi()
    if weights is not None:
        frame = frame.assign(w=weights)
    # robust (sandwich) errors with weights only silence lifelines' warning; the likelihood is the same
    cph = CoxPHFitter().fit(frame, "week", "arrest", weights_col="w" if weights is not None else None,
                            robust=weights is not None)
    x = frame.drop(columns=["week", "arrest", *(["w"] if weights is not None else [])])
    eta = torch.tensor(x.to_numpy(float) @ cph.params_[x.columns].to_numpy(), dtype=torch.float64)
    return cph, eta, torch.tensor(frame.week.to_numpy(float)), torch.tensor(frame.arrest.to_numpy(float))


def test_efron_loss_equals_lifelines_log_likelihood_on_rossi():
    cph, eta, time, event = _rossi_fit()
    assert len(np.unique(time[event > 0])) < int(event.sum())  # the cohort has tied event weeks
    loss = sm.cox_loss(eta, time, event, reduction="sum")
    assert loss.item() == pytest.approx(-cph.log_likelihood_, rel=1e-9)
    mean = sm.cox_loss(eta, time, event)
    assert mean.item() == pytest.approx(-cph.log_likelihood_ / event.sum().item(), rel=1e-9)
    # the partial likelihood ignores a shift of all log-risks
    assert sm.cox_loss(eta + 3.0, time, event).item() == pytest.approx(mean.item(), rel=1e-9)


def test_weighted_efron_loss_equals_lifelines_with_weights():
    frame = load_rossi()
    weights = np.where(frame.arrest > 0, 5.0, 1.0)  # the paper's intent: events up-weighted
    cph, eta, time, event = _rossi_fit(weights)
    loss = sm.cox_loss(eta, time, event, torch.tensor(weights), reduction="sum")
    assert loss.item() == pytest.approx(-cph.log_likelihood_, rel=1e-9)
    # uniform weights cancel (the released code's event_weight x ones): only a constant shift of the loss
    uniform = sm.cox_loss(eta, time, event, torch.full_like(eta, 5.0))
    plain = sm.cox_loss(eta, time, event)
    assert uniform.item() == pytest.approx(plain.item() + np.log(5.0), rel=1e-9)


def _breslow_by_hand(eta, time, event):
    total = 0.0
    for t in sorted(set(time[event > 0].tolist())):
        dying = (time == t) & (event > 0)
        at_risk = time >= t
        total -= eta[dying].sum() - dying.sum() * np.log(np.exp(eta[at_risk]).sum())
    return total


def test_breslow_and_efron_on_a_hand_sized_batch_with_ties():
    eta = np.array([0.3, -1.2, 0.8, 0.1, 2.0, -0.4])
    time = np.array([2.0, 2.0, 3.0, 5.0, 5.0, 6.0])
    event = np.array([1, 1, 0, 1, 0, 1.0])
    args = [torch.tensor(a) for a in (eta, time, event)]
    assert sm.cox_loss(*args, ties="breslow", reduction="sum").item() == pytest.approx(
        _breslow_by_hand(eta, time, event), rel=1e-12)
    # Efron at t=2: two deaths {0, 1}, risk set all six
    r = np.exp(eta)
    efron = -(eta[0] + eta[1] - np.log(r.sum()) - np.log(r.sum() - 0.5 * (r[0] + r[1])))
    efron -= eta[3] - np.log(r[3:].sum())
    efron -= eta[5] - np.log(r[5])
    assert sm.cox_loss(*args, ties="efron", reduction="sum").item() == pytest.approx(efron, rel=1e-12)
    # risk sets follow the observed times, not the predicted risks: reordering the batch changes nothing
    order = torch.randperm(6)
    assert sm.cox_loss(*(a[order] for a in args)).item() == pytest.approx(sm.cox_loss(*args).item(), rel=1e-12)


def test_a_batch_without_events_has_zero_loss_and_no_gradient():
    eta = torch.randn(5, requires_grad=True)
    loss = sm.cox_loss(eta, torch.arange(5.0), torch.zeros(5))
    loss.backward()
    assert loss.item() == 0.0 and eta.grad.abs().sum() == 0
    with pytest.raises(ValueError, match="ties"):
        sm.cox_loss(eta, torch.arange(5.0), torch.ones(5), ties="exact")


def test_harrell_c_equals_lifelines_and_uno_and_auc_reduce_without_censoring():
    frame = load_gbsg2()
    rng = np.random.default_rng(0)
    risk = np.log1p(frame.pnodes.to_numpy(float)) + rng.normal(0, 1, len(frame))
    time, event = frame.time.to_numpy(float), frame.cens.to_numpy(float)
    assert sm.harrell_c(time, event, risk) == pytest.approx(concordance_index(time, -risk, event), abs=1e-12)
    # no censoring: G = 1, Uno's C is Harrell's and the AUC at t is the ROC AUC of T <= t against T > t
    ones = np.ones_like(time)
    assert sm.uno_c(time, ones, risk, time, ones) == pytest.approx(sm.harrell_c(time, ones, risk), abs=1e-12)
    t = float(np.median(time))
    (auc,) = sm.cumulative_dynamic_auc(time, ones, risk, [t], time, ones)
    assert auc == pytest.approx(roc_auc_score(time <= t, risk), abs=1e-12)


def test_breslow_baseline_equals_lifelines():
    cph, _, time, event = _rossi_fit()
    x = load_rossi().drop(columns=["week", "arrest"])
    centred = (x - x.mean()).to_numpy(float) @ cph.params_[x.columns].to_numpy()
    times, h0 = sm.breslow_baseline(time.numpy(), event.numpy(), centred)
    expected = cph.baseline_cumulative_hazard_.iloc[:, 0]
    np.testing.assert_allclose(h0, expected.loc[times].to_numpy(), rtol=1e-6)
    surv = sm.survival_curves((times, h0), centred[:3], [20.0, 40.0])
    lifelines_surv = cph.predict_survival_function(x.iloc[:3], times=[20.0, 40.0]).to_numpy().T
    np.testing.assert_allclose(surv, lifelines_surv, rtol=1e-6)


def test_logrank_and_the_kaplan_meier_figure():
    frame = load_gbsg2()
    time, event = frame.time.to_numpy(float), frame.cens.to_numpy(float)
    high = frame.pnodes.to_numpy() > 3
    assert logrank_p(time, event, high) < 1e-6  # many positive nodes: a known strong prognostic split
    assert np.isnan(logrank_p(time, event, np.ones(len(time), bool)))
    figure = kaplan_meier_figure(time, event, high, "GBSG2")
    assert "log-rank p" in figure.axes[0].get_title()


# --- training a tiny model on a real cohort ---------------------------------------------------------------------
class CoxMLP(nn.Module):
    def __init__(self, in_features: int = 9, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 1, bias=False))

    def forward(self, x):
        return self.net(x)[:, 0]


@pytest.fixture
def tiny_cox_model():
    """A throwaway survival model id, registered for one test and removed after it."""
    from zoo import registry

    def factory(**kwargs):
        return CoxMLP(**kwargs)

    factory.__module__ = "zoo.tasks.survival"
    card = ModelCard(task="survival", paper=Paper("test"), license="test", num_params=0, input_shape=(9,),
                     recipes={}, output=Risk())
    register_model("test/cox_mlp", card=card)(factory)
    yield "test/cox_mlp"
    registry._REGISTRY.pop("test/cox_mlp", None)


def test_a_tiny_cox_mlp_learns_on_gbsg2_and_writes_risks(tiny_cox_model, tmp_path):
    from zoo.data.survival import SurvivalTableData

    L.seed_everything(0)
    data = SurvivalTableData(dataset="gbsg2", batch_size=64)
    task = SurvivalTask(tiny_cox_model, model_inputs=data.model_inputs, event_weight=2.0,
                        optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}})
    trainer = L.Trainer(max_epochs=15, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(task, datamodule=data)
    (result,) = trainer.test(task, datamodule=data, verbose=False)
    print({k: round(v, 4) for k, v in result.items()})
    assert result["test/c_index"] > 0.62, result  # lifelines' CoxPHFitter reaches about 0.68 on GBSG2
    assert result["test/uno_c_index"] > 0.6
    assert 0.0 < result["test/ibs"] < 0.25  # better than the 0.25 of predicting 0.5 everywhere
    assert result["test/logrank_p"] < 0.05
    assert all(f"test/td_auc_{h:g}" in result for h in data.horizons)
    predictions = trainer.predict(task, datamodule=data)
    summary = task.write_predictions(predictions, data, tmp_path / "risks.csv")
    assert "wrote" in summary
    with open(tmp_path / "risks.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(data.sets["test"])
    assert {"id", "risk", "risk_group", "time", "event", f"survival_at_{data.horizons[0]:g}"} <= set(rows[0])
    frame = pd.DataFrame(rows).astype({"risk": float})
    assert set(frame.risk_group) == {"high", "low"}
    extras = task.checkpoint_extras()
    restored = SurvivalTask(tiny_cox_model, model_inputs=data.model_inputs)
    restored.load_checkpoint_extras(extras)
    assert restored.threshold == task.threshold and restored.horizons == task.horizons


def test_a_batch_without_events_is_counted_and_warned(tiny_cox_model):
    task = SurvivalTask(tiny_cox_model, model_inputs={"in_features": 3})
    batch = {"inputs": [torch.randn(4, 3)], "time": torch.arange(4.0), "event": torch.zeros(4), "id": list("abcd")}
    task.log = lambda *args, **kwargs: None  # outside a trainer
    with pytest.warns(UserWarning, match="no event"):
        loss = task.step(batch, "train")
    assert loss.item() == 0.0 and task.batches_without_events == 1
    with pytest.raises(ValueError, match="ties"):
        SurvivalTask(tiny_cox_model, model_inputs={"in_features": 3}, ties="exact")
