"""Small survival cohorts in 5-fold cross-validation: the zoo's survival recipe (``medical/deepsurv`` quick start,
and its linear variant) run through ``zoo train --data.folds 5`` beside lifelines' penalised ``CoxPHFitter``
fitted on exactly the same folds.

Cohorts: the real ones that ship with lifelines (GBSG2 and Rossi as ``--data.dataset``; lung without ``inst`` and
without rows with missing values, larynx and kidney_transplant written as CSV files) and a SIMULATED
high-dimensional one (:func:`simulate_cox_weibull`: Bender, Augustin & Blettner 2005, "Generating survival times to
simulate Cox proportional hazards models", Statistics in Medicine 24:1713; Weibull baseline hazard, a few
informative covariates among many noisy ones, uniform random censoring), written as a CSV like a user's table.

The recipe runs are ordinary ``zoo train`` groups (``zoo.cli.main`` in-process, each in its own MLflow store):
every fold a child run, the parent's ``test/c_index_mean`` / ``_sd`` and ``test/ibs_mean`` / ``_sd`` are
reported, and the children's best validation C-index (the early-stopping monitor, ``val/c_index``) is what the
settings are chosen by. ``CoxPHFitter`` gets each fold's split and standardised covariates from
``SurvivalTableData(..., folds=5, fold=k)`` (the fold sizes are checked against the recipe's log); its ridge
``penalizer`` is chosen from :data:`PENALIZERS` by the validation part's Harrell C, fitted on the training part
and scored on the test part like ``benchmarks.survival`` (Harrell C; IBS of Breslow curves from the training
part). Test numbers are never used to choose anything. sd: sample standard deviation over the 5 folds (n - 1).

    python -m benchmarks.survival_cv            # recipe and linear variant on all six cohorts (~15 min, 2 cores)
    python -m benchmarks.survival_cv --quick    # the recipe only, at most 40 epochs
    python -m benchmarks.survival_cv --tune     # candidate settings, mean validation C-index only

Writes ``benchmarks/results/survival_cv.md`` (``--tune``: ``survival_cv_tuning.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks._common import load_average, write_report
from benchmarks.survival import scores

RESULTS = Path(__file__).parent / "results"
FOLDS = 5
PENALIZERS = (10.0, 3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.001)  # strongest first: a tie keeps the stronger
LINEAR = ["--model.model_kwargs", json.dumps({"hidden": []})]
VARIANTS = {"DeepSurv (recipe)": [], "Cox head (linear)": LINEAR}


def mlp(hidden: list[int], dropout: float) -> list[str]:
    return ["--model.model_kwargs", json.dumps({"hidden": hidden, "dropout": dropout})]


def weight_decay(value: float) -> list[str]:
    return ["--optimizer.init_args.weight_decay", str(value)]


# candidate settings of the recipe (--tune); each is chosen or rejected by the mean validation C-index only
CANDIDATES = {
    "32-32, dropout 0.1, wd 1e-4 (recipe before)": mlp([32, 32], 0.1) + weight_decay(1e-4),
    "32-32, dropout 0.1, wd 1e-2": mlp([32, 32], 0.1) + weight_decay(1e-2),
    "32-32, dropout 0.3, wd 1e-3": mlp([32, 32], 0.3) + weight_decay(1e-3),
    "16, dropout 0.3, wd 1e-3": mlp([16], 0.3) + weight_decay(1e-3),
    "32-32, dropout 0.1, wd 1e-4, lr 1e-3": mlp([32, 32], 0.1) + weight_decay(1e-4)
    + ["--optimizer.init_args.lr", "0.001"],
    "linear, wd 1e-3": LINEAR + weight_decay(1e-3),
}


@dataclass
class Cohort:
    """A cohort as ``zoo train`` flags and as the same ``SurvivalTableData`` arguments."""

    name: str
    about: str
    data_kwargs: dict = field(default_factory=dict)

    def flags(self) -> list[str]:
        return [token for key, value in self.data_kwargs.items() for token in (f"--data.{key}", str(value))]


# --- the simulated cohort -----------------------------------------------------------------------------------------
def simulate_cox_weibull(n: int = 300, covariates: int = 50, censoring: float = 0.4, seed: int = 0) -> pd.DataFrame:
    """A Cox proportional-hazards cohort by Bender, Augustin & Blettner (2005): T = (-log U / (lam exp(x'beta)))
    ^ (1 / nu) with U ~ U(0, 1) is Weibull(lam, nu) with hazard lam nu t^(nu-1) exp(x'beta).

    Covariates: ``covariates`` Gaussian columns with AR(1) correlation 0.3 between neighbours (a few dichotomised
    at 0, like clinical yes/no variables); the first five carry log-hazard ratios 0.8, -0.6, 0.5 (binary), 0.4,
    -0.4 (binary), every other one is noise. Baseline: nu 1.5, lam chosen for a median survival of 24 months at
    x'beta = 0. Censoring: C ~ U(0, c) with c found so that ``censoring`` of the patients are censored.
    Returns columns time (months), event (1 event, 0 censored), x01..xNN.
    """
    rng = np.random.default_rng(seed)
    rho = 0.3 ** np.abs(np.subtract.outer(np.arange(covariates), np.arange(covariates)))
    x = rng.standard_normal((n, covariates)) @ np.linalg.cholesky(rho).T
    binary = [2, 4, *range(10, covariates, 7)]
    x[:, binary] = (x[:, binary] > 0).astype(float)
    beta = np.zeros(covariates)
    beta[:5] = [0.8, -0.6, 0.5, 0.4, -0.4]
    nu, lam = 1.5, math.log(2) / 24**1.5
    t = (-np.log(rng.uniform(size=n)) / (lam * np.exp(x @ beta))) ** (1 / nu)
    u = rng.uniform(size=n)
    low, high = 0.0, 100 * float(t.max())
    for _ in range(60):  # bisection on c: the censored share falls as c grows
        c = (low + high) / 2
        low, high = (c, high) if np.mean(u * c < t) > censoring else (low, c)
    observed = np.minimum(t, u * c)
    frame = pd.DataFrame(x, columns=[f"x{i + 1:02d}" for i in range(covariates)])
    frame[frame.columns[binary]] = frame[frame.columns[binary]].astype(int)
    frame.insert(0, "event", (t <= u * c).astype(int))
    frame.insert(0, "time", observed.round(2))
    return frame


def write_cohorts(folder: Path) -> list[Cohort]:
    """The six cohorts; lung, larynx, kidney_transplant and the simulated one are written into ``folder``."""
    import lifelines.datasets as ld

    tables = {
        "lung": (ld.load_lung().drop(columns="inst").dropna(), "time", "status",
                 "NCCTG advanced lung cancer (real, lifelines; without inst, complete rows)"),
        "larynx": (ld.load_larynx(), "time", "death", "larynx cancer (real, lifelines)"),
        "kidney_transplant": (ld.load_kidney_transplant(), "time", "death", "kidney transplant (real, lifelines)"),
        "simulated": (simulate_cox_weibull(), "time", "event",
                      "SIMULATED: Bender et al. 2005 Cox-Weibull, 5 informative + 45 noise covariates"),
    }
    cohorts = [Cohort("gbsg2", "GBSG2 breast cancer (real, lifelines)", {"dataset": "gbsg2"}),
               Cohort("rossi", "Rossi recidivism (real, lifelines)", {"dataset": "rossi"})]
    for name, (frame, time_column, event_column, about) in tables.items():
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        cohorts.append(Cohort(name, about, {"path": path, "time_column": time_column,
                                            "event_column": event_column}))
    return cohorts


# --- penalised Cox on the same folds ------------------------------------------------------------------------------
def fold_data(cohort: Cohort, fold: int):
    from zoo.data.survival import SurvivalTableData

    kwargs = {k: str(v) if isinstance(v, Path) else v for k, v in cohort.data_kwargs.items()}
    return SurvivalTableData(**kwargs, batch_size=128, folds=FOLDS, fold=fold)


def penalised_cox(data) -> dict[str, float]:
    """Ridge ``CoxPHFitter`` on the training part, penalizer chosen by the validation part's Harrell C."""
    from lifelines import CoxPHFitter

    from zoo.tasks import survival_metrics as sm

    columns = data.feature_names
    train, val = data.sets["train"], data.sets["val"]
    frame = pd.DataFrame(train.inputs[0], columns=columns).assign(T=train.time, E=train.event)
    best = None
    for penalizer in PENALIZERS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                beta = CoxPHFitter(penalizer=penalizer).fit(frame, "T", "E").params_[columns].to_numpy()
        except Exception:  # lifelines' ConvergenceError on a weak penalty: the stronger ones stand
            continue
        c = sm.harrell_c(val.time, val.event, val.inputs[0] @ beta)
        if best is None or c > best[0]:
            best = (c, penalizer, beta)
    c_val, penalizer, beta = best
    test = data.sets["test"]
    result = scores(data, train.inputs[0] @ beta, test.inputs[0] @ beta)
    return {"c_index": result["Harrell C"], "ibs": result["IBS"], "val_c_index": c_val, "penalizer": penalizer}


# --- the recipe through zoo train --data.folds ---------------------------------------------------------------------
@dataclass
class GroupResult:
    metrics: dict[str, float]  # the parent run's test/<metric>_mean and _sd
    val_c_index: list[float]  # each fold's best validation C-index
    best_epochs: list[int]  # each fold's epoch (0-based) of that best validation C-index
    epochs: list[int]  # each fold's number of epochs trained (early stopping)
    sizes: list[tuple[int, int, int]]  # each fold's train, val, test sizes as the runs printed them
    seconds: float


def run_recipe(cohort: Cohort, flags: list[str], folder: Path, max_epochs: int | None) -> GroupResult:
    """``zoo train medical/deepsurv --data.folds 5`` with the cohort's and the setting's flags, in ``folder``."""
    from mlflow import MlflowClient

    from zoo.cli import main

    folder.mkdir(parents=True)
    args = ["train", "medical/deepsurv", *cohort.flags(), "--data.folds", str(FOLDS), *flags,
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
    if max_epochs:
        args += ["--trainer.max_epochs", str(max_epochs)]
    old_cwd, old_uri = os.getcwd(), os.environ.pop("MLFLOW_TRACKING_URI", None)
    start = time.time()
    try:
        os.chdir(folder)
        with open("zoo_train.log", "w") as log, contextlib.redirect_stdout(log), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code = main(args)
    finally:
        os.chdir(old_cwd)
        if old_uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = old_uri
    output = (folder / "zoo_train.log").read_text()
    if code != 0:
        raise RuntimeError(f"zoo {' '.join(args)} failed ({code}):\n{output[-3000:]}")
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("zoo").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`zoo.run_type` = 'group'")
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    children.sort(key=lambda r: int(r.data.params["data/init_args/fold"]))
    histories = [[m.value for m in sorted(client.get_metric_history(c.info.run_id, "val/c_index"),
                                          key=lambda m: m.step)] for c in children]
    sizes = [tuple(map(int, s)) for s in re.findall(r"subjects, \d+ events; train (\d+), val (\d+), test (\d+)",
                                                       output)]
    return GroupResult(dict(parent.data.metrics), [max(h) for h in histories],
                       [int(np.argmax(h)) for h in histories], [len(h) for h in histories], sizes,
                       time.time() - start)


def check_same_folds(result: GroupResult, splits: list) -> None:
    expected = [(len(s.train), len(s.val), len(s.test)) for s in splits]
    if result.sizes[: len(expected)] != expected:
        raise RuntimeError(f"the recipe's folds {result.sizes} differ from SurvivalTableData's {expected}")


def cell(mean: float, sd: float) -> str:
    return f"{mean:.3f} ± {sd:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the recipe only (no linear variant), <= 40 epochs")
    parser.add_argument("--tune", action="store_true", help="candidate settings by mean validation C-index")
    parser.add_argument("--cohorts", default=None, help="comma-separated subset of the cohorts")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: on a loaded 2-core machine a second OpenMP thread made "
                             "each BatchNorm call wait ~40 ms, the whole run 5x slower)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    max_epochs = args.max_epochs or (40 if args.quick else None)
    variants = CANDIDATES if args.tune else ({"DeepSurv (recipe)": []} if args.quick else VARIANTS)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="survival_cv_") as tmp:
        folder = Path(tmp)
        cohorts = write_cohorts(folder)
        if args.cohorts:
            cohorts = [c for c in cohorts if c.name in args.cohorts.split(",")]
        rows, val_rows = [], {}
        for cohort in cohorts:
            data = [fold_data(cohort, k) for k in range(FOLDS)]
            n, events = len(data[0].split.train) + len(data[0].split.val) + len(data[0].split.test), None
            events = int(sum(float(d.sets["test"].event.sum()) for d in data))
            cox = [penalised_cox(d) for d in data]
            header = (f"{cohort.name}: {n} patients, {events} events, {data[0].model_inputs['in_features']} "
                      f"covariates")
            print(header, flush=True)
            cox_c = [r["c_index"] for r in cox]
            cox_ibs = [r["ibs"] for r in cox]
            cox_val = statistics.mean(r["val_c_index"] for r in cox)
            penalizers = ", ".join(f"{r['penalizer']:g}" for r in cox)
            rows.append((cohort, n, events, data[0].model_inputs["in_features"], "penalised CoxPHFitter "
                         f"(penalizer per fold {penalizers})", cox_val,
                         cell(statistics.mean(cox_c), statistics.stdev(cox_c)),
                         cell(statistics.mean(cox_ibs), statistics.stdev(cox_ibs)), ""))
            print(f"  penalised Cox: val C {cox_val:.3f}, test C {rows[-1][6]}", flush=True)
            for name, flags in variants.items():
                slug = re.sub(r"\W+", "_", name).strip("_")
                result = run_recipe(cohort, flags, folder / cohort.name / slug, max_epochs)
                check_same_folds(result, [d.split for d in data])
                m = result.metrics
                val = statistics.mean(result.val_c_index)
                val_rows.setdefault(name, {})[cohort.name] = (val, statistics.mean(result.best_epochs),
                                                              statistics.mean(result.epochs))
                rows.append((cohort, n, events, None, name, val, cell(m["test/c_index_mean"], m["test/c_index_sd"]),
                             cell(m["test/ibs_mean"], m["test/ibs_sd"]), f"{result.seconds:.0f} s"))
                print(f"  {name}: val C {val:.3f}" + ("" if args.tune else f", test C {rows[-1][6]}") +
                      f" ({result.seconds:.0f} s)", flush=True)
    load = load_average()
    if args.tune:
        write_report(RESULTS / "survival_cv_tuning.md", tuning_report(val_rows, rows, cohorts, load, started,
                                                                      max_epochs))
    else:
        write_report(RESULTS / "survival_cv.md", report(rows, load, started, args.quick, max_epochs))


def report(rows, load: str, started: float, quick: bool, max_epochs: int | None) -> list[str]:
    lines = ["# Small survival cohorts in 5-fold cross-validation: the zoo recipe vs penalised Cox", "",
             f"`python -m benchmarks.survival_cv{' --quick' if quick else ''}`: `zoo train medical/deepsurv "
             "--data.folds 5` (quick-start recipe" + (f", at most {max_epochs} epochs" if max_epochs else "") +
             "; the linear variant adds `--model.model_kwargs '{\"hidden\": []}'`) beside lifelines' ridge "
             "`CoxPHFitter` on the same folds (penalizer from "
             f"{', '.join(map(str, PENALIZERS))} by the validation part's C-index). Test Harrell C and "
             "integrated Brier score (IBS, lower is better): mean ± sd (n - 1) over the 5 test folds; val C: mean "
             "over folds of the validation C-index that chose the epoch (recipe) or the penalizer (Cox), the only "
             "number anything was chosen by. The simulated cohort is SIMULATED (Bender et al. 2005).", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {time.time() - started:.0f} s in all on "
             f"a shared 2-core machine, {load}.", "",
             "| cohort | patients / events / covariates | model | val C | test Harrell C | test IBS | time |",
             "|---|---|---|---|---|---|---|"]
    for cohort, n, events, covariates, name, val, c, ibs, seconds in rows:
        first = f"{cohort.name} | {n} / {events} / {covariates}" if covariates is not None else " | "
        lines.append(f"| {first} | {name} | {val:.3f} | {c} | {ibs} | {seconds} |")
    lines += ["", "Cohorts:"] + [f"- {cohort.name}: {cohort.about}" for cohort, *rest in rows if rest[2] is not None]
    return [*lines, ""]


def tuning_report(val_rows, rows, cohorts, load: str, started: float, max_epochs: int | None) -> list[str]:
    names = [c.name for c in cohorts]
    cox = {cohort.name: (val, math.nan, math.nan) for cohort, _, _, covariates, _, val, *_ in rows
           if covariates is not None}
    lines = ["# Choosing the deepsurv recipe for small cohorts: mean validation C-index over 5 folds", "",
             "`python -m benchmarks.survival_cv --tune`" + (f" (at most {max_epochs} epochs)" if max_epochs else "")
             + ": each setting is the quick-start recipe with the flags named; the number is the mean over the 5 "
             "folds of the best validation C-index (the early-stopping monitor); in brackets the mean epoch "
             "(0-based) of that best value / the mean number of epochs trained. Test folds are not looked at "
             "here. Penalised Cox's validation C-index (penalizer chosen on it) is shown for scale.", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {time.time() - started:.0f} s on a shared "
             f"2-core machine, {load}.", "",
             "| setting | " + " | ".join(names) + " | mean |", "|---" * (len(names) + 2) + "|"]
    for name, values in [("penalised CoxPHFitter", cox), *val_rows.items()]:
        cells = [values.get(n, (math.nan, math.nan, math.nan)) for n in names]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" + (f" ({best:.0f}/{ran:.0f})" if ran == ran else "")
                                                 for v, best, ran in cells)
                     + f" | {np.mean([c[0] for c in cells]):.3f} |")
    return [*lines, ""]


if __name__ == "__main__":
    main()
