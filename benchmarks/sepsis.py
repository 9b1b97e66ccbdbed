"""Sepsis prediction side by side on one patient split of the simulated PhysioNet 2019 cohort (or real files):
the sepsis transformer, the GRU baseline, LightGBM on the same hourly features (the paper's strongest baseline;
benchmark-only dependency, ``pip install zoo[bench]``) and the SIRS criteria.

The deep models are trained by the zoo sequence-labelling task with the quick-start recipe's settings (AdamW,
batch 16, weight decay 1e-3 except biases; transformer d_model 256, dropout 0.5, lr 2e-4; GRU d_model 64, lr 1e-3)
for ``--epochs`` epochs and evaluated from their last epoch. LightGBM gets the same z-scored hourly features plus
the hour encoding, ``scale_pos_weight`` = (1 - p) / p, 300 trees. Every model's decision threshold is the one that
maximises the utility on the validation split; SIRS alarms at >= 2 criteria.

    python -m benchmarks.sepsis [--root physionet2019/] [--patients 1000] [--epochs 8]

Writes ``benchmarks/results/sepsis.md``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from zoo.data.icu import SepsisData

from zoo.tasks.sequence_labelling import (
    SequenceLabellingTask,
    alarm_statistics,
    normalised_utility,
    threshold_at_recall,
    utility_curve,
)

RESULTS = Path(__file__).parent / "results" / "sepsis.md"
DEEP = {
    "medical/sepsis_transformer": ({"d_model": 256, "num_layers": 2, "num_heads": 8, "dropout": 0.5}, 2e-4),
    "medical/sepsis_gru": ({"d_model": 64, "num_layers": 1, "dropout": 0.1}, 1e-3),
}


def scores_of(outputs):
    return [o["score"] for o in outputs], [np.nan_to_num(o["label"]) for o in outputs]


def summarise(val, test) -> dict[str, float]:
    """Patient/hourly AUROC, utility at the val-chosen threshold, and the 80 %-recall operating point on test."""
    (vs, vy), (ts, ty) = val, test
    thresholds, utilities = utility_curve(vs, vy)
    threshold = float(thresholds[np.nanargmax(utilities)])
    septic = np.array([y.any() for y in ty])
    op = alarm_statistics(ts, ty, threshold_at_recall(ts, ty, 0.8))
    return {"patient AUROC": roc_auc_score(septic, [s.max() for s in ts]),
            "hourly AUROC": roc_auc_score(np.concatenate(ty), np.concatenate(ts)),
            "utility": normalised_utility(ty, [s >= threshold for s in ts]),
            "precision @80% recall": op["precision"], "median earliness (h)": op["earliness_h"]}


def run_deep(model_id, kwargs, lr, data, epochs) -> tuple[dict[str, float], float]:
    L.seed_everything(0)
    task = SequenceLabellingTask(model_id, in_features=data.in_features, model_kwargs=kwargs, pretrained=None,
                                 decay_norm_and_bias=False, lr_scheduler=None, ema_decay=None,
                                 optimizer={"class_path": "torch.optim.AdamW",
                                            "init_args": {"lr": lr, "weight_decay": 1e-3}})
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(task, data)
    seconds = time.perf_counter() - start
    outputs = {}
    task.eval()
    with torch.no_grad():
        for stage, loader in (("val", data.val_dataloader()), ("test", data.test_dataloader())):
            task.outputs["test"] = []
            for batch in loader:
                task.step(batch, "test")  # collects each patient's hourly scores
            outputs[stage] = task.outputs["test"]
    return summarise(scores_of(outputs["val"]), scores_of(outputs["test"])), seconds


def hourly_table(data, split):
    patients = data.datasets[split].patients
    mean, std = data.feature_mean, data.feature_std
    x = [np.concatenate([p["time"], np.nan_to_num((p["features"] - mean) / std)], axis=1) for p in patients]
    return x, [np.nan_to_num(p["labels"]) for p in patients]


def run_lightgbm(data) -> tuple[dict[str, float], float] | None:
    try:
        import lightgbm
    except ImportError:
        return None
    x, y = hourly_table(data, "train")
    p = data.positive_fraction
    model = lightgbm.LGBMClassifier(n_estimators=300, learning_rate=0.05, num_leaves=31,
                                    scale_pos_weight=(1 - p) / p, verbose=-1, random_state=0)
    start = time.perf_counter()
    model.fit(np.concatenate(x), np.concatenate(y))
    seconds = time.perf_counter() - start
    out = {}
    for split in ("val", "test"):
        xs, ys = hourly_table(data, split)
        out[split] = ([model.predict_proba(a)[:, 1] for a in xs], ys)
    return summarise(out["val"], out["test"]), seconds


def run_sirs(data) -> dict[str, float]:
    out = {s: ([p["sirs"] / 4 for p in data.datasets[s].patients],
               [np.nan_to_num(p["labels"]) for p in data.datasets[s].patients]) for s in ("val", "test")}
    return summarise(out["val"], out["test"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=None)
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = SepsisData(root=args.root, num_patients=args.patients, batch_size=16)
    data.setup("fit")
    rows = {}
    for model_id, (kwargs, lr) in DEEP.items():
        rows[model_id] = run_deep(model_id, kwargs, lr, data, args.epochs)
    lgbm = run_lightgbm(data)
    if lgbm is not None:
        rows["LightGBM (hourly features)"] = lgbm
    rows["SIRS >= 2"] = (run_sirs(data), 0.0)
    columns = list(next(iter(rows.values()))[0])
    lines = [f"# Sepsis benchmark\n\n{data.describe()}\n",
             f"Deep models: {args.epochs} epochs on 2 CPU threads; thresholds chosen on validation; test split.\n",
             "| model | " + " | ".join(columns) + " | train s |", "|---" * (len(columns) + 2) + "|"]
    for name, (metrics, seconds) in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[c]:.3f}" for c in columns) + f" | {seconds:.0f} |")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
