"""Does bf16 autocast cost accuracy? Each family's quick start (`zoo train MODEL`), fp32 against bf16-mixed, over a
few seeds: the test metric the task monitors, its mean and spread per precision, and whether the gap between the
means lies within the run-to-run noise (the larger of the two seed ranges).

    python -m benchmarks.bf16_quality [--models finance/tlob vision/eca_resnet50] [--seeds 0 1 2] [-- FLAGS]

FLAGS after ``--`` go to every `zoo train` (e.g. ``--trainer.max_epochs 3`` for a shorter check; the report says so).
Only families where `zoo train` picks bf16 by default are worth running (``zoo.precision``); the default list is the
cheap ones. Each run is a subprocess in its own temporary folder (its own MLflow store), runs alternate precision
(fp32 first for even seeds, bf16 first for odd) so that a change in machine load hits both. Writes
``benchmarks/results/bf16_quality.md`` (``--output``), and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks._common import load_average, write_report

CHEAP = ["finance/tlob", "finance/deeplob", "medical/sepsis_transformer", "vision/eca_resnet50"]
PRECISIONS = ("32-true", "bf16-mixed")


def monitored_test_metric(model_id: str) -> tuple[str, str]:
    """The task's monitored metric, as the test split names it, and "max" or "min"."""
    from zoo.registry import get_card
    from zoo.tasks.registry import get_task_class

    task = get_task_class(get_card(model_id).task)
    return task.monitor.replace("val/", "test/", 1), task.monitor_mode


def train_once(model_id: str, precision: str, seed: int, flags: list[str]) -> dict[str, float]:
    """One `zoo train` in a fresh folder; its test metrics (the summary's "test (best checkpoint)" line) and the
    wall time in seconds under the key "seconds"."""
    command = [sys.executable, "-m", "zoo.cli", "train", model_id, "--trainer.precision", precision,
               "--seed_everything", str(seed), "--trainer.enable_progress_bar", "false", *flags]
    with tempfile.TemporaryDirectory(prefix="bf16_quality_") as folder:
        start = time.perf_counter()
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    line = next((x for x in done.stdout.splitlines() if "test (best checkpoint):" in x), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    metrics = {name: float(value) for name, value in re.findall(r"(test/[\w.]+) (-?[\d.]+(?:e-?\d+)?|nan)",
                                                                   line.split(":", 1)[1])}
    return {**metrics, "seconds": seconds}


def summarise(model_id: str, runs: dict[str, list[dict[str, float]]]) -> str:
    metric, mode = monitored_test_metric(model_id)
    values = {p: [r[metric] for r in runs[p]] for p in PRECISIONS}
    means = {p: statistics.fmean(v) for p, v in values.items()}
    noise = max(max(v) - min(v) for v in values.values())
    gap = means["bf16-mixed"] - means["32-true"]
    worse = -gap if mode == "max" else gap
    verdict = "within noise" if worse <= noise else f"bf16 worse by {worse:.4f} (noise {noise:.4f})"
    if worse < -noise:
        verdict = "bf16 better, past the noise"
    seconds = {p: statistics.median(r["seconds"] for r in runs[p]) for p in PRECISIONS}
    shown = {p: ", ".join(f"{v:.4f}" for v in values[p]) for p in PRECISIONS}
    return (f"| {model_id} | {metric} | {shown['32-true']} | {shown['bf16-mixed']} | {gap:+.4f} | {noise:.4f} | "
            f"{verdict} | {seconds['32-true']:.0f} / {seconds['bf16-mixed']:.0f} |")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    flags = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=CHEAP)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output", default="benchmarks/results/bf16_quality.md")
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    before = load_average()
    rows, raw = [], {}
    for model_id in args.models:
        runs: dict[str, list[dict[str, float]]] = {p: [] for p in PRECISIONS}
        for seed in args.seeds:
            for precision in (PRECISIONS if seed % 2 == 0 else PRECISIONS[::-1]):
                result = train_once(model_id, precision, seed, flags)
                runs[precision].append(result)
                print(model_id, precision, seed, json.dumps(result), load_average(), flush=True)
        raw[model_id] = runs
        rows.append(summarise(model_id, runs))
        print(rows[-1], flush=True)
    lines = [
        "# bf16 autocast against fp32: quick-start test metric per family",
        "",
        f"`python -m benchmarks.bf16_quality --models {' '.join(args.models)} --seeds "
        f"{' '.join(map(str, args.seeds))}{' -- ' + ' '.join(flags) if flags else ''}`; each cell lists one "
        "value per seed. gap = mean(bf16) - mean(fp32); noise = the larger range over seeds of the two precisions. "
        "Seconds: median wall time of the whole `zoo train` command (fp32 / bf16), on a shared machine.",
        "",
        "| model | test metric | fp32 | bf16-mixed | gap | noise | verdict | seconds fp32 / bf16 |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Machine: {before} before, {load_average()} after (2 cores shared with other sessions).",
        "",
        "Raw results (every test metric and the wall time of each run):",
        "",
        "```json",
        json.dumps(raw, indent=1),
        "```",
        "",
    ]
    write_report(args.output, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
