"""TabR, TabR-S, MLP, MLP-PLR and LightGBM side by side on the same splits of tables bundled with scikit-learn.

Every deep model is trained by the zoo trainer (``zoo.tasks.TabularTask``) with its card's configuration (the
TabR paper's tuned California model) and that configuration's learning rate and weight decay, batch 64, the
paper's early stopping (patience 16 on the validation score, at most ``--max-epochs``), and is evaluated from its
best validation checkpoint. LightGBM (benchmark-only dependency: ``pip install zoo[bench]``) gets early stopping
on the same validation split. Scores: RMSE on the original scale (lower is better) for regression, accuracy
(higher is better) for classification. Nothing is tuned per dataset: this compares default configurations.

    python -m benchmarks.tabular_models [--tables diabetes breast_cancer wine digits] [--seeds 0] [--max-epochs 200]

Writes ``benchmarks/results/tabular.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from zoo.data.tabular import TabularData

from benchmarks._common import load_average, write_report
from zoo.tasks.tabular import TabularTask

# Learning rate and weight decay of each card's configuration (exp/<model>/california/*-evaluation/0.toml).
OPTIMIZERS = {
    "tabular/tabr": (0.00048205791080643796, 5.974523446218173e-06),
    "tabular/tabr_s": (0.000280842117039655, 0.0),
    "tabular/mlp": (0.0005261111893873331, 7.041081826641309e-06),
    "tabular/mlp_plr": (0.0006285731702443354, 6.340374384988119e-05),
}


def score_name(task_type: str) -> str:
    return "rmse" if task_type == "regression" else "acc"


def run_deep(model_id: str, table: str, seed: int, max_epochs: int, batch_size: int) -> tuple[float, float, int]:
    """(test score, seconds, epochs) of one deep model."""
    L.seed_everything(seed, verbose=False)
    data = TabularData(dataset=table, batch_size=batch_size, seed=0)  # the same split for every model and seed
    lr, weight_decay = OPTIMIZERS[model_id]
    task = TabularTask(model_id, num_classes=data.num_classes, feature_shapes=data.feature_shapes,
                       class_names=data.class_names, target_scaling=data.target_scaling, patience=16,
                       optimizer={"class_path": "torch.optim.AdamW",
                                  "init_args": {"lr": lr, "weight_decay": weight_decay}})
    with tempfile.TemporaryDirectory() as folder:
        best = ModelCheckpoint(dirpath=folder, monitor=task.monitor, mode=task.monitor_mode)
        trainer = L.Trainer(max_epochs=max_epochs, logger=False, callbacks=[best], enable_progress_bar=False,
                            enable_model_summary=False, accelerator="cpu", devices=1)
        start = time.perf_counter()
        trainer.fit(task, datamodule=data)
        seconds = time.perf_counter() - start
        metrics = trainer.test(task, datamodule=data, ckpt_path="best", verbose=False)[0]
    return float(metrics[f"test/{score_name(data.task_type)}"]), seconds, trainer.current_epoch


def run_lightgbm(table: str, seed: int) -> tuple[float, float, int]:
    import lightgbm

    data = TabularData(dataset=table, seed=0)
    data.setup("fit")
    parts = {s: data.split_tensors(s) for s in ("train", "val", "test")}
    x = {s: torch.cat([t.x_num, t.x_bin, t.x_cat.float()], 1).numpy() for s, t in parts.items()}
    y = {s: t.y.numpy() for s, t in parts.items()}
    common = dict(n_estimators=4000, learning_rate=0.05, random_state=seed, verbose=-1, n_jobs=2)
    model = lightgbm.LGBMRegressor(**common) if data.task_type == "regression" else \
        lightgbm.LGBMClassifier(**common)
    start = time.perf_counter()
    model.fit(x["train"], y["train"], eval_set=[(x["val"], y["val"])],
              callbacks=[lightgbm.early_stopping(50, verbose=False)])
    seconds = time.perf_counter() - start
    predicted = model.predict(x["test"])
    if data.task_type == "regression":
        std = data.target_scaling[1]
        score = float(np.sqrt(np.mean(((predicted - y["test"]) * std) ** 2)))
    else:
        score = float(np.mean(predicted == y["test"]))
    return score, seconds, int(model.best_iteration_ or 0)


def trivial(table: str) -> float:
    """Predict-the-training-mean RMSE, or the majority-class accuracy, on the test split."""
    data = TabularData(dataset=table, seed=0)
    data.setup("fit")
    train, test = data.split_tensors("train"), data.split_tensors("test")
    if data.task_type == "regression":
        return float((test.y - train.y.mean()).square().mean().sqrt() * data.target_scaling[1])
    majority = int(train.y.mode().values)
    return float((test.y == majority).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=["diabetes", "breast_cancer", "wine", "digits"])
    parser.add_argument("--models", nargs="+", default=["tabular/tabr", "tabular/tabr_s", "tabular/mlp",
                                                         "tabular/mlp_plr", "lightgbm"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "tabular.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    load_before = load_average()

    results: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    for table in args.tables:
        for model in args.models:
            for seed in args.seeds:
                run = run_lightgbm(table, seed) if model == "lightgbm" else \
                    run_deep(model, table, seed, args.max_epochs, args.batch_size)
                results.setdefault((table, model), []).append(run)
                print(f"{table:14s} {model:16s} seed {seed}: score {run[0]:.4f}, {run[1]:.1f} s, {run[2]} epochs"
                      "/trees", flush=True)

    names = [m.removeprefix("tabular/") for m in args.models]
    lines = ["# Tabular models on scikit-learn's bundled tables", "",
             f"Test score of the best validation checkpoint (mean over seeds {args.seeds}); RMSE on the original "
             "scale for regression (lower is better), accuracy for classification (higher is better). Same "
             "split for every model (seed 0: 60/20/20, stratified for classes). Deep models: the card's "
             "configuration (TabR paper, tuned on California) with its learning rate and weight decay, AdamW, "
             f"batch {args.batch_size}, early stopping with patience 16 (at most {args.max_epochs} epochs), "
             "intended weight-decay grouping. LightGBM: 0.05 learning rate, early stopping after 50 rounds.", "",
             "| table (task, train rows) | trivial | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    time_lines = ["", "Training time in seconds (epochs, or trees for LightGBM), same runs:", "",
                  "| table | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for table in args.tables:
        data = TabularData(dataset=table, seed=0)
        data.setup("fit")
        info = f"{table} ({data.task_type}, {score_name(data.task_type)}, {len(data.split_tensors('train'))})"
        cells, times = [], []
        for model in args.models:
            runs = results[(table, model)]
            cells.append(f"{statistics.mean(r[0] for r in runs):.4f}")
            times.append(f"{statistics.mean(r[1] for r in runs):.1f} ({round(statistics.mean(r[2] for r in runs))})")
        lines.append(f"| {info} | {trivial(table):.4f} | " + " | ".join(cells) + " |")
        time_lines.append(f"| {table} | " + " | ".join(times) + " |")
    lines += time_lines
    lines += ["", f"Machine: {os.cpu_count()} CPU cores shared with other jobs, {args.threads} torch threads, "
              f"torch {torch.__version__}.", f"Load before: `{load_before}`", f"Load after: `{load_average()}`", ""]
    write_report(args.output, lines)


if __name__ == "__main__":
    main()
