"""Mid-price trend on the SIMULATED limit-order book, one run side by side on the same test windows: TLOB, MLPLOB
and DeepLOB against the majority class, the always-stationary predictor and a logistic regression on order-flow
imbalance (OFI); then the training speed of TLOB against a same-size ``torch.nn.TransformerEncoder`` stack.

1. Trend. The data are the offline default of ``zoo.data.lob.LOBData``: one LOBSTER-format day simulated by the
   Cont-Stoikov-Talreja (2010) order-book model (not market data), split 80/10/10 in time, TLOB labels. For each
   horizon the data module labels (10, 20, 50, 100 snapshots) each model is trained once, one model per horizon as
   the data module (one horizon per instance) and the paper do, by ``zoo train``'s own pipeline (``ZooCLI``: the
   ``lob_trend`` task, the quick-start recipe's window, batch, Adam learning rate, EMA 0.99 and plateau schedule)
   with a shorter budget (``--epochs``, ``--batches`` per epoch), and evaluated with the EMA weights of its best
   validation-macro-F1 epoch, as ``zoo train`` tests. The models look back over different windows (TLOB 32,
   MLPLOB 64, DeepLOB 100 snapshots), so every predictor is scored on the test windows that end at the same
   snapshots: those with at least ``LOOKBACK`` (100) snapshots of history in the test split; their labels are
   checked to be identical. Baselines on those windows: the majority class of the training labels, always
   "stationary", and a multinomial logistic regression (scikit-learn, balanced class weights, standardised inputs)
   on the best-level OFI of Cont, Kukanov and Stoikov (2014) summed over the last 10 snapshots and three lagged
   blocks (10-20, 20-50, 50-100 snapshots back), computed from the raw (not z-scored) book, fitted on the training
   split.
2. Speed. Training steps per second (forward, backward, Adam step; CPU; warm-up, then interleaved timed rounds,
   median) of TLOB against ``nn.TransformerEncoder`` with the same d_model, heads, layer count (one encoder layer
   per TLOB layer: two per pair), sequence length and batch size, with the same input projection and a linear head
   on the flattened tokens; once as whole models and once as bare layer stacks on (B, T, d_model) tokens, with
   the floating-point operations of a step (``torch.utils.flop_counter``) beside the rates.

    OMP_NUM_THREADS=1 python -m benchmarks.lob [--epochs 3] [--batches 200] [--rounds 7]

Writes ``benchmarks/results/lob.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import nn
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score
from zoo.data.lob import LOBData

import zoo
from benchmarks._common import load_average, write_report
from zoo.tasks.lob import constant_predictor_metrics

RESULTS = Path(__file__).parent / "results" / "lob.md"
HORIZONS = (10, 20, 50, 100)
LOOKBACK = 100  # snapshots of history every scored window has (DeepLOB's window; the OFI blocks reach as far)
MODELS = ("finance/tlob", "finance/mlplob", "finance/deeplob")
OFI_BLOCKS = ((0, 10), (10, 20), (20, 50), (50, 100))  # (a, b): snapshots t-b+1 .. t-a of a window ending at t


# --- order-flow imbalance --------------------------------------------------------------------------------------
def order_flow_imbalance(book: np.ndarray) -> np.ndarray:
    """Best-level order-flow imbalance of every book update (Cont, Kukanov and Stoikov 2014, eq. 2).

    e_n = 1{Pb_n >= Pb_n-1} qb_n - 1{Pb_n <= Pb_n-1} qb_n-1 - 1{Pa_n <= Pa_n-1} qa_n + 1{Pa_n >= Pa_n-1} qa_n-1

    Args:
        book: (N, >= 4) snapshots in the LOBSTER column order (ask price, ask size, bid price, bid size of the
            best level first), raw prices and sizes (not z-scored).

    Returns:
        (N,) e_n, with e_0 = 0 (no earlier snapshot).
    """
    book = np.asarray(book, dtype=np.float64)
    if book.ndim != 2 or book.shape[1] < 4:
        raise ValueError(f"order_flow_imbalance needs (N, >= 4) snapshots (ask price, ask size, bid price, bid "
                         f"size), got shape {book.shape}")
    pa, qa, pb, qb = book[:, 0], book[:, 1], book[:, 2], book[:, 3]
    e = np.zeros(len(book))
    e[1:] = ((pb[1:] >= pb[:-1]) * qb[1:] - (pb[1:] <= pb[:-1]) * qb[:-1]
             - (pa[1:] <= pa[:-1]) * qa[1:] + (pa[1:] >= pa[:-1]) * qa[:-1])
    return e


def ofi_features(book: np.ndarray, ends: np.ndarray, blocks=OFI_BLOCKS) -> np.ndarray:
    """(len(ends), len(blocks)): OFI summed over snapshots t-b+1 .. t-a of each window ending at t, per block
    (a, b). Every end needs b - 1 earlier snapshots."""
    ends = np.asarray(ends)
    deepest = max(b for _, b in blocks)
    if len(ends) and (ends.min() < deepest - 1 or ends.max() >= len(book)):
        raise ValueError(f"window ends must lie in [{deepest - 1}, {len(book) - 1}] for blocks reaching {deepest} "
                         "snapshots back")
    cumulative = np.r_[0.0, np.cumsum(order_flow_imbalance(book))]  # cumulative[k] = sum of e[:k]
    return np.stack([cumulative[ends - a + 1] - cumulative[ends - b + 1] for a, b in blocks], axis=1)


def ofi_logistic(reference: LOBData) -> tuple[np.ndarray, float]:
    """Fit the OFI logistic regression on the training windows, predict the test windows of ``reference``
    (a data module with seq_len LOOKBACK, so its windows are the scored ones); (test predictions, fit seconds)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    arrays = reference._lobster_split_arrays(reference._simulated_folder())  # raw (messages, book) per split
    features = {}
    for (_, book), name in zip(arrays, ("train", "val", "test"), strict=True):
        labels = reference.splits[name].y.numpy()
        ends = np.arange(len(labels)) + LOOKBACK - 1
        features[name] = (ofi_features(book, ends), labels)
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))
    start = time.perf_counter()
    model.fit(*features["train"])
    return model.predict(features["test"][0]), time.perf_counter() - start


# --- the deep models through zoo train's pipeline --------------------------------------------------------------
class TrainTimer(L.Callback):
    """Seconds spent in training batches (forward, backward, optimiser, EMA), validation left out."""

    def __init__(self):
        self.seconds, self.steps, self._start = 0.0, 0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self._start
        self.steps += 1


def train_zoo(model_id: str, horizon: int, epochs: int, batches: int) -> dict:
    """Train ``model_id`` with its quick-start recipe at ``horizon`` as ``zoo train`` does, for ``epochs`` epochs
    of ``batches`` batches; returns the task (best checkpoint's weights), its data module and the timings."""
    from zoo.checkpointing import run_checkpoints
    from zoo.runner import ZooCLI, quiet_logs
    from zoo.tasks.registry import get_task_class

    entry = zoo.registry.get_entry(model_id)
    args = [arg for path in entry.recipe_paths("quickstart") for arg in ("--config", str(path))]
    args += ["--model.model", model_id, "--data.horizon", str(horizon), "--trainer.max_epochs", str(epochs),
             "--trainer.limit_train_batches", str(batches), "--trainer.enable_progress_bar", "false"]
    timer = TrainTimer()
    quiet_logs()
    with contextlib.redirect_stdout(io.StringIO()):
        cli = ZooCLI(get_task_class(entry.card.task), args, extra_callbacks=[timer], run=False)
        start = time.perf_counter()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        seconds = time.perf_counter() - start
    task = cli.model
    best = run_checkpoints(cli.trainer)["best"]
    task.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    return {"task": task.eval(), "data": cli.datamodule, "seconds": seconds, "train_seconds": timer.seconds,
            "steps": timer.steps, "best_epoch": torch.load(best, map_location="cpu", weights_only=True)["epoch"]}


@torch.no_grad()
def predict_scored_windows(task, data: LOBData) -> tuple[np.ndarray, np.ndarray]:
    """Predicted classes and labels of the test windows that end at or after snapshot LOOKBACK - 1."""
    test = data.splits["test"]
    skip = LOOKBACK - data.seq_len
    predictions = []
    for start in range(skip, len(test), 512):
        x = torch.stack([test[i][0] for i in range(start, min(start + 512, len(test)))])
        predictions.append(task.eval_model(x).argmax(-1))
    return torch.cat(predictions).numpy(), test.y[skip:].numpy()


def scores(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    p, y = torch.as_tensor(predicted), torch.as_tensor(labels)
    return {"f1_macro": float(multiclass_f1_score(p, y, num_classes=3, average="macro")),
            "acc": float(multiclass_accuracy(p, y, num_classes=3, average="micro"))}


# --- speed: TLOB against nn.TransformerEncoder ----------------------------------------------------------------
class EncoderClassifier(nn.Module):
    """The reference: Linear(F -> d) + position embedding -> ``nn.TransformerEncoder`` (post-norm, GELU, FFN 4d,
    no dropout) -> flatten -> Linear(T * d -> 3). (B, T, F) -> (B, 3)."""

    def __init__(self, num_features: int, seq_len: int, d_model: int, num_heads: int, num_layers: int):
        super().__init__()
        self.embed = nn.Linear(num_features, d_model)
        self.position = nn.Parameter(torch.zeros(seq_len, d_model))
        layer = nn.TransformerEncoderLayer(d_model, num_heads, 4 * d_model, dropout=0.0, activation="gelu",
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(seq_len * d_model, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x) + self.position).flatten(1))


class AxisStack(nn.Module):
    """``num_layers`` TLOB temporal layers (``zoo.blocks.dual_attention.AxisTransformerLayer``) on (B, T, d)."""

    def __init__(self, d_model: int, num_heads: int, num_layers: int):
        super().__init__()
        from zoo.blocks.dual_attention import AxisTransformerLayer

        self.layers = nn.ModuleList(AxisTransformerLayer(d_model, num_heads) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def encoder_stack(d_model: int, num_heads: int, num_layers: int) -> nn.Module:
    layer = nn.TransformerEncoderLayer(d_model, num_heads, 4 * d_model, dropout=0.0, activation="gelu",
                                       batch_first=True)
    return nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)


def step_flops(model: nn.Module, x: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model(x).float().pow(2).mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def training_rates(models: dict[str, nn.Module], x: torch.Tensor, steps: int, rounds: int) -> dict[str, float]:
    """Median steps/s over ``rounds`` interleaved rounds of ``steps`` steps each, after a warm-up round."""
    optimisers = {name: torch.optim.Adam(m.parameters(), lr=1e-4) for name, m in models.items()}

    def run(name: str, n: int) -> float:
        model, optimiser = models[name], optimisers[name]
        start = time.perf_counter()
        for _ in range(n):
            optimiser.zero_grad(set_to_none=True)
            model(x).float().pow(2).mean().backward()  # the same scalar loss for logits and for token stacks
            optimiser.step()
        return n / (time.perf_counter() - start)

    for name in models:
        run(name, max(2, steps // 2))
    samples = {name: [] for name in models}
    for r in range(rounds):
        order = list(models) if r % 2 == 0 else list(reversed(models))  # neither always runs first
        for name in order:
            samples[name].append(run(name, steps))
    return {name: statistics.median(v) for name, v in samples.items()}


def profile_step(model: nn.Module, x: torch.Tensor, rows: int = 12) -> str:
    """The ``rows`` operators with the most self CPU time in 5 training steps (torch.profiler)."""
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    for _ in range(2):
        model(x).float().pow(2).mean().backward()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            optimiser.zero_grad(set_to_none=True)
            model(x).float().pow(2).mean().backward()
            optimiser.step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


SPEED_CONFIGS = {  # name: (features, seq_len, d_model, heads, pairs, batch)
    "quick start (T 32, d 46, 2 pairs)": (46, 32, 46, 1, 2, 128),
    "paper LOBSTER (T 128, d 46, 4 pairs)": (46, 128, 46, 1, 4, 32),
}


def speed(steps: int, rounds: int) -> tuple[list[dict], dict[str, str]]:
    rows, profiles = [], {}
    for name, (features, seq_len, d, heads, pairs, batch) in SPEED_CONFIGS.items():
        torch.manual_seed(0)
        x = torch.randn(batch, seq_len, features)
        tokens = torch.randn(batch, seq_len, d)
        pairs_of = {
            "whole model": ({"TLOB": zoo.create_model("finance/tlob", seq_len=seq_len, num_layers=pairs,
                                                      num_heads=heads, order_type_column=None),
                             "TransformerEncoder": EncoderClassifier(features, seq_len, d, heads, 2 * pairs)}, x),
            "layer stack": ({"TLOB": AxisStack(d, heads, 2 * pairs),
                             "TransformerEncoder": encoder_stack(d, heads, 2 * pairs)}, tokens),
        }
        for part, (models, inputs) in pairs_of.items():
            for m in models.values():
                m.train()
            rates = training_rates(models, inputs, steps, rounds)
            flops = {k: step_flops(m, inputs) for k, m in models.items()}
            params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
            rows.append({"config": name, "part": part, "batch": batch, "rates": rates, "flops": flops,
                         "params": params, "load": load_average()})
            print(f"{name}, {part}: TLOB {rates['TLOB']:.2f} steps/s, TransformerEncoder "
                  f"{rates['TransformerEncoder']:.2f} steps/s, ratio {rates['TLOB'] / rates['TransformerEncoder']:.3f}"
                  f"; {load_average()}", flush=True)
            if part == "layer stack" and name.startswith("quick"):
                profiles = {k: profile_step(m, inputs) for k, m in models.items()}
    return rows, profiles


# --- the report ------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per model and horizon (quick start: 3)")
    parser.add_argument("--batches", type=int, default=200,
                        help="training batches per epoch (quick start: 250 TLOB and MLPLOB, 300 DeepLOB)")
    parser.add_argument("--horizons", type=int, nargs="+", default=list(HORIZONS))
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--steps", type=int, default=10, help="training steps per timed round (speed part)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds (speed part)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    started = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {load_average()}", flush=True)

    trend: dict[str, dict[int, dict]] = {m: {} for m in args.models}
    baselines: dict[str, dict[int, dict]] = {"majority class (training labels)": {}, "always stationary": {},
                                             "OFI logistic regression": {}}
    described = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        for horizon in args.horizons:
            reference = LOBData(dataset="simulated", horizon=horizon, seq_len=LOOKBACK, features="lob")
            reference.setup()
            described[horizon] = reference.describe()
            labels = reference.splits["test"].y.numpy()
            counts = torch.bincount(torch.as_tensor(labels), minlength=3)
            majority = int(torch.bincount(reference.splits["train"].y, minlength=3).argmax())
            baselines["majority class (training labels)"][horizon] = constant_predictor_metrics(counts, majority)
            baselines["always stationary"][horizon] = constant_predictor_metrics(counts, 1)
            predicted, fit_seconds = ofi_logistic(reference)
            baselines["OFI logistic regression"][horizon] = {**scores(predicted, labels), "seconds": fit_seconds}
            print(f"h{horizon}: {len(labels)} scored test windows, classes {counts.tolist()}, OFI LR macro F1 "
                  f"{baselines['OFI logistic regression'][horizon]['f1_macro']:.3f}", flush=True)
            for model_id in args.models:
                run = train_zoo(model_id, horizon, args.epochs, args.batches)
                predicted, model_labels = predict_scored_windows(run["task"], run["data"])
                if not np.array_equal(model_labels, labels):
                    raise RuntimeError(f"{model_id} at horizon {horizon} was scored on other labels than the "
                                       "baselines: the windows are not aligned")
                result = {**scores(predicted, labels), **{k: run[k] for k in ("seconds", "train_seconds", "steps",
                                                                               "best_epoch")},
                          "seq_len": run["data"].seq_len, "batch": run["data"].batch_size}
                trend[model_id][horizon] = result
                print(f"h{horizon} {model_id}: macro F1 {result['f1_macro']:.3f}, acc {result['acc']:.3f}, "
                      f"{result['steps']} steps in {result['train_seconds']:.0f} s "
                      f"({result['steps'] / result['train_seconds']:.2f} steps/s), fit {result['seconds']:.0f} s; "
                      f"{load_average()}", flush=True)
    trend_seconds = time.perf_counter() - started
    speed_rows, profiles = ([], {}) if args.skip_speed else speed(args.steps, args.rounds)

    command = "OMP_NUM_THREADS=1 python -m benchmarks.lob " + " ".join(sys.argv[1:])
    hs = args.horizons
    lines = [
        "# Limit-order-book trend benchmark (SIMULATED book)", "",
        "**The data are simulated**: one LOBSTER-format day of 40,000 events generated by the Cont, Stoikov and "
        "Talreja (2010) order-book model (`zoo.data.lob.simulate_cst_day`, the offline default of "
        "`zoo.data.lob.LOBData`), not market data. The numbers say how the models compare on that model's book, "
        "not how they do on real markets.", "",
        f"Reproduce: `{command.strip()}` (torch {torch.__version__}, {args.threads} CPU thread(s); the trend "
        f"part took {trend_seconds / 60:.1f} min).", "",
        "## 1. Macro F1 per horizon, test split", "",
        *[f"- h{h}: {described[h]}" for h in hs], "",
        f"Every row is scored on the same test windows: those ending at a snapshot with at least {LOOKBACK} "
        "snapshots of history in the test split (the labels each model was scored on are checked to be identical). "
        "One model per horizon (the data module labels one horizon per instance, as the paper trains), trained by "
        f"`zoo train`'s pipeline with its quick-start recipe (window, batch, Adam lr, EMA 0.99, plateau schedule) "
        f"for {args.epochs} epochs of {args.batches} batches (the quick start: 3 epochs of 250, DeepLOB 300), "
        "evaluated with the EMA weights of the best validation-macro-F1 epoch.", "",
        "| predictor | " + " | ".join(f"h{h} macro F1" for h in hs) + " | train s (all horizons) | steps/s |",
        "|---" * (len(hs) + 3) + "|",
    ]
    for model_id, per in trend.items():
        r0 = per[hs[0]]
        total = sum(per[h]["train_seconds"] for h in hs)
        rate = sum(per[h]["steps"] for h in hs) / total
        lines.append(f"| {model_id} (window {r0['seq_len']}, batch {r0['batch']}) | "
                     + " | ".join(f"{per[h]['f1_macro']:.3f}" for h in hs) + f" | {total:.0f} | {rate:.2f} |")
    for name, per in baselines.items():
        seconds = f"{sum(per[h].get('seconds', 0.0) for h in hs):.1f}" if name.startswith("OFI") else "-"
        lines.append(f"| {name} | " + " | ".join(f"{per[h]['f1_macro']:.3f}" for h in hs) + f" | {seconds} | - |")
    lines += ["", "Accuracy on the same windows:", "",
              "| predictor | " + " | ".join(f"h{h} acc" for h in hs) + " |", "|---" * (len(hs) + 1) + "|"]
    for name, per in {**trend, **baselines}.items():
        lines.append(f"| {name} | " + " | ".join(f"{per[h]['acc']:.3f}" for h in hs) + " |")
    lines += ["", "Per run (train s: training batches only, validation left out; fit s: the whole `trainer.fit`):",
              "", "| model | horizon | steps | train s | steps/s | fit s | best epoch |", "|---" * 7 + "|"]
    for model_id, per in trend.items():
        for h in hs:
            r = per[h]
            lines.append(f"| {model_id} | {h} | {r['steps']} | {r['train_seconds']:.1f} | "
                         f"{r['steps'] / r['train_seconds']:.2f} | {r['seconds']:.1f} | {r['best_epoch']} |")
    lines += ["", "OFI: best-level order-flow imbalance (Cont, Kukanov and Stoikov 2014) of every book update from "
              "the raw prices and sizes, summed over the snapshots 1-10, 11-20, 21-50 and 51-100 back from the "
              "window's end; `sklearn` StandardScaler + LogisticRegression(class_weight='balanced'), fitted on the "
              "training windows. Majority: the most frequent class of the training labels, as the `lob_trend` task "
              "reports it. Classes 0 up, 1 stationary, 2 down; macro F1 as torchmetrics computes it (the task's)."]
    if speed_rows:
        lines += ["", "## 2. Training speed: TLOB against `torch.nn.TransformerEncoder`", "",
                  f"Forward + backward + Adam step on CPU ({args.threads} thread(s)), one warm-up round, then "
                  f"{args.rounds} interleaved rounds of {args.steps} steps (order alternating), median. Reference: "
                  "`nn.TransformerEncoder` of `nn.TransformerEncoderLayer(d_model, heads, 4 d_model, dropout 0, "
                  "GELU, post-norm)`, one encoder layer per TLOB layer (TLOB's pair = a temporal and a feature "
                  "layer = 2 layers), same sequence length and batch. Whole model: TLOB (BiN, embedding, temporal "
                  "and feature layers, the shrinking head) vs Linear embedding + encoder + linear head. Layer "
                  "stack: `AxisTransformerLayer` (TLOB's layer, temporal axis only, no shrinking) vs encoder "
                  "layers on the same (B, T, d) tokens. GFLOP: one training step's forward and backward "
                  "(`torch.utils.flop_counter`).", "",
                  "| configuration | part | batch | TLOB steps/s | encoder steps/s | ours / reference | TLOB GFLOP "
                  "| encoder GFLOP | TLOB params | encoder params | load |", "|---" * 11 + "|"]
        for r in speed_rows:
            rt, re_ = r["rates"]["TLOB"], r["rates"]["TransformerEncoder"]
            lines.append(f"| {r['config']} | {r['part']} | {r['batch']} | {rt:.2f} | {re_:.2f} | {rt / re_:.3f} | "
                         f"{r['flops']['TLOB'] / 1e9:.3f} | {r['flops']['TransformerEncoder'] / 1e9:.3f} | "
                         f"{r['params']['TLOB']:,} | {r['params']['TransformerEncoder']:,} | {r['load']} |")
        lines += ["", "Profile of the quick-start layer stack (5 training steps, self CPU time):", ""]
        for name, table in profiles.items():
            lines += [f"{name}:", "", "```", table.strip(), "```", ""]
    lines += ["", f"Finished with {load_average()} (2 cores shared with other work)."]
    write_report(RESULTS, [*lines, ""])
    print("\n".join(lines))


if __name__ == "__main__":
    main()
