"""TabR, TabR-S, MLP, MLP-PLR and LightGBM side by side on the same splits of tables bundled with scikit-learn.

Every deep model is trained by the zoo trainer (``zoo.tasks.TabularTask``) with its card's configuration (the
TabR paper's tuned California model) and that configuration's learning rate and weight decay, batch 64, the
paper's early stopping (patience 16 on the validation score, at most ``--max-epochs``), and is evaluated from its
best validation checkpoint. LightGBM (benchmark-only dependency: ``pip install zoo[bench]``) gets early stopping
on the same validation split. Scores: RMSE on the original scale (lower is better) for regression, accuracy
(higher is better) for classification. Nothing is tuned per dataset: this compares default configurations.

    python -m benchmarks.tabular_models [--tables diabetes breast_cancer wine digits] [--seeds 0 1 2]
        [--max-epochs 200]

Each deep model's seeds run as one ``zoo train MODEL --seeds 0,1,2`` group (the mean and sd come from its parent
run); the split stays the same for every seed (``--data.seed 0``).

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

import numpy as np
import torch
from zoo.data.tabular import TabularData

from benchmarks._common import load_average, write_report

# Learning rate and weight decay of each card's configuration (exp/<model>/california/*-evaluation/0.toml).
OPTIMIZERS = {
    "tabular/tabr": (0.00048205791080643796, 5.974523446218173e-06),
    "tabular/tabr_s": (0.000280842117039655, 0.0),
    "tabular/mlp": (0.0005261111893873331, 7.041081826641309e-06),
    "tabular/mlp_plr": (0.0006285731702443354, 6.340374384988119e-05),
}


def score_name(task_type: str) -> str:
    return "rmse" if task_type == "regression" else "acc"


def run_deep(model_id: str, table: str, seeds: list[int], max_epochs: int, batch_size: int
             ) -> list[tuple[float, float, int]]:
    """(test score, seconds, epochs) of each seed of one deep model, trained as one ``zoo train --seeds`` group
    (a parent MLflow run with a child per seed, in a throw-away store); the split is the same for every seed."""
    import contextlib
    import io

    from mlflow import MlflowClient

    from zoo.cli import main as zoo

    lr, weight_decay = OPTIMIZERS[model_id]
    old = Path.cwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        # the store of this group alone: MLflow keeps the last run's store in MLFLOW_TRACKING_URI
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        try:
            with contextlib.redirect_stdout(io.StringIO()) as printed:
                code = zoo(["train", model_id, "--seeds", ",".join(map(str, seeds)), "--data.dataset", table,
                            "--data.batch_size", str(batch_size), "--data.seed", "0", "--model.patience", "16",
                            "--trainer.max_epochs", str(max_epochs), "--optimizer.lr", str(lr),
                            "--optimizer.weight_decay", str(weight_decay), "--trainer.enable_progress_bar", "false"])
            if code != 0:
                raise RuntimeError(f"zoo train {model_id} on {table} failed:\n{printed.getvalue()[-2000:]}")
            client = MlflowClient(f"sqlite:///{Path(folder) / 'mlflow.db'}")
            runs = client.search_runs([client.get_experiment_by_name("zoo").experiment_id])
            children = sorted((r for r in runs if "mlflow.parentRunId" in r.data.tags),
                              key=lambda r: int(r.data.params["seed_everything"]))
            name = f"test/{score_name(TabularData(dataset=table, seed=0).task_type)}"
            return [(float(c.data.metrics[name]), (c.info.end_time - c.info.start_time) / 1000,
                     int(c.data.metrics.get("epoch", 0)) + 1) for c in children]
        finally:
            os.chdir(old)
            os.environ.pop("MLFLOW_TRACKING_URI", None)


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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
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
            runs = [run_lightgbm(table, seed) for seed in args.seeds] if model == "lightgbm" else \
                run_deep(model, table, args.seeds, args.max_epochs, args.batch_size)
            results[(table, model)] = runs
            for seed, run in zip(args.seeds, runs, strict=True):
                print(f"{table:14s} {model:16s} seed {seed}: score {run[0]:.4f}, {run[1]:.1f} s, {run[2]} epochs"
                      "/trees", flush=True)

    names = [m.removeprefix("tabular/") for m in args.models]
    lines = ["# Tabular models on scikit-learn's bundled tables", "",
             f"Test score of the best validation checkpoint, mean ± sample sd over seeds {args.seeds} (the deep "
             "models through `zoo train MODEL --seeds ...`: one MLflow parent run per model and table); RMSE on the "
             "original scale for regression (lower is better), accuracy for classification (higher is better). Same "
             "split for every model (seed 0: 60/20/20, stratified for classes). Deep models: the card's "
             "configuration (TabR paper, tuned on California) with its learning rate and weight decay, AdamW, "
             f"batch {args.batch_size}, early stopping with patience 16 (at most {args.max_epochs} epochs), "
             "intended weight-decay grouping. LightGBM: 0.05 learning rate, early stopping after 50 rounds.", "",
             "| table (task, train rows) | trivial | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    time_lines = ["", "Training time in seconds (epochs, or trees for LightGBM), same runs; a deep model's time is "
                  "its whole MLflow run (training, testing, logging the model):", "",
                  "| table | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for table in args.tables:
        data = TabularData(dataset=table, seed=0)
        data.setup("fit")
        info = f"{table} ({data.task_type}, {score_name(data.task_type)}, {len(data.split_tensors('train'))})"
        cells, times = [], []
        for model in args.models:
            runs = results[(table, model)]
            spread = f" ± {statistics.stdev(r[0] for r in runs):.4f}" if len(runs) > 1 else ""
            cells.append(f"{statistics.mean(r[0] for r in runs):.4f}{spread}")
            times.append(f"{statistics.mean(r[1] for r in runs):.1f} ({round(statistics.mean(r[2] for r in runs))})")
        lines.append(f"| {info} | {trivial(table):.4f} | " + " | ".join(cells) + " |")
        time_lines.append(f"| {table} | " + " | ".join(times) + " |")
    lines += time_lines
    lines += ["", f"Machine: {os.cpu_count()} CPU cores shared with other jobs, {args.threads} torch threads, "
              f"torch {torch.__version__}.", f"Load before: `{load_before}`", f"Load after: `{load_average()}`", ""]
    write_report(args.output, lines)


if __name__ == "__main__":
    main()
