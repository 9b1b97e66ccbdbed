"""Survival models side by side on the same splits of real lifelines cohorts (GBSG2, Rossi): lifelines'
``CoxPHFitter``, the zoo's linear Cox head (``medical/deepsurv`` with ``hidden=()``) and DeepSurv (hidden 32-32),
each scored on the test part with the same functions (``zoo.tasks.survival_metrics``): Harrell's C, Uno's C and the
integrated Brier score of Breslow survival curves fitted on the training part.

The networks are trained by the zoo survival task (Cox partial likelihood, Efron ties; Adam, whole-batch risk sets
of 128) for ``--epochs`` epochs and evaluated from the epoch of best validation C-index. ``CoxPHFitter`` is fitted
on the same training rows (the same standardised covariates) with a small ridge penalty (0.01) for stability.

    python -m benchmarks.survival [--epochs 60] [--seeds 3]

Writes ``benchmarks/results/survival.md``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
from lifelines import CoxPHFitter
from lightning.pytorch.callbacks import ModelCheckpoint
from zoo.data.survival import SurvivalTableData

from benchmarks._common import load_average, write_report
from zoo.tasks import survival_metrics as sm
from zoo.tasks.survival import SurvivalTask

RESULTS = Path(__file__).parent / "results" / "survival.md"
NETWORKS = {"zoo Cox head (linear)": {"hidden": []}, "DeepSurv 32-32": {"hidden": [32, 32], "dropout": 0.1}}


def scores(data: SurvivalTableData, train_risk: np.ndarray, test_risk: np.ndarray) -> dict[str, float]:
    train, test = data.sets["train"], data.sets["test"]
    baseline = sm.breslow_baseline(train.time, train.event, train_risk)
    return {"Harrell C": sm.harrell_c(test.time, test.event, test_risk),
            "Uno C": sm.uno_c(test.time, test.event, test_risk, train.time, train.event,
                              tau=float(train.time[train.event > 0].max())),
            "IBS": sm.integrated_brier_score(test.time, test.event, test_risk, baseline, train.time, train.event)}


def run_lifelines(data: SurvivalTableData) -> dict[str, float]:
    columns = data.feature_names
    train, test = data.sets["train"], data.sets["test"]
    frame = pd.DataFrame(train.inputs[0], columns=columns).assign(T=train.time, E=train.event)
    cph = CoxPHFitter(penalizer=0.01).fit(frame, "T", "E")
    beta = cph.params_[columns].to_numpy()
    return scores(data, train.inputs[0] @ beta, test.inputs[0] @ beta)


def run_network(data: SurvivalTableData, kwargs: dict, epochs: int, seed: int) -> dict[str, float]:
    L.seed_everything(seed, verbose=False)
    task = SurvivalTask("medical/deepsurv", model_inputs=data.model_inputs, model_kwargs=kwargs,
                        optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01, "weight_decay": 1e-4}})
    with tempfile.TemporaryDirectory() as folder:
        best = ModelCheckpoint(dirpath=folder, monitor="val/c_index", mode="max")
        trainer = L.Trainer(max_epochs=epochs, logger=False, callbacks=[best], enable_progress_bar=False,
                            enable_model_summary=False, default_root_dir=folder)
        trainer.fit(task, datamodule=data)
        task = SurvivalTask.load_from_checkpoint(best.best_model_path)
    task.eval()
    train, test = data.sets["train"], data.sets["test"]
    import torch

    with torch.no_grad():
        risk = [task.model(torch.as_tensor(s.inputs[0])).numpy() for s in (train, test)]
    return scores(data, *risk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    lines = ["# Survival: lifelines CoxPHFitter, the zoo Cox head and DeepSurv on the same splits", "",
             f"{args.epochs} epochs, best validation C-index; mean (sd) over data seeds 0..{args.seeds - 1} "
             "(each seed a different stratified 65/15/20 split). " + load_average(), ""]
    for cohort in ("gbsg2", "rossi"):
        results: dict[str, list[dict[str, float]]] = {}
        start = time.time()
        for seed in range(args.seeds):
            data = SurvivalTableData(dataset=cohort, batch_size=128, seed=seed)
            results.setdefault("lifelines CoxPHFitter", []).append(run_lifelines(data))
            for name, kwargs in NETWORKS.items():
                results.setdefault(name, []).append(run_network(data, kwargs, args.epochs, seed))
        lines += [f"## {cohort} ({data.source}; {time.time() - start:.0f} s)", "",
                  "| model | Harrell C | Uno C | IBS |", "|---|---|---|---|"]
        for name, runs in results.items():
            cells = [f"{np.mean([r[k] for r in runs]):.3f} ({np.std([r[k] for r in runs]):.3f})"
                     for k in ("Harrell C", "Uno C", "IBS")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
        print("\n".join(lines[-len(results) - 4:]), flush=True)
    write_report(RESULTS, lines)


if __name__ == "__main__":
    main()
