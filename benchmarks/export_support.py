"""Which registered models export to ONNX and to torch.export, and why the others do not.

    OMP_NUM_THREADS=2 python benchmarks/export_support.py [--pattern 'vision/*'] [--timeout 120]
                                                         [--output benchmarks/results/export_support.md]

Each model is built at its card's default configuration with random weights and exported at the card's input size
(``zoo.export.example_inputs``), batch dynamic, then checked at batches 1 and 3 (onnxruntime CPU, or
``torch.export.load``) against PyTorch, as ``zoo export`` does. Every (model, format) runs in its own process, one
at a time, under a time limit: a model that takes longer is recorded as "not tried (time)". Results are kept in a
JSON file beside the report, so a rerun only tries what is missing (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, write_report

FORMATS = ("onnx", "torch_export")
ATOL = 1e-4


def try_one(model_id: str, fmt: str) -> dict:
    """Export one model in this process; the result as a JSON-able dict."""
    import torch

    import zoo
    from zoo.errors import ZooError
    from zoo.export import FORMATS as SUFFIXES
    from zoo.export import example_inputs, export_model

    torch.manual_seed(0)
    start = time.perf_counter()
    model = zoo.create_model(model_id).eval()
    specs, slots = example_inputs(model, model_id)
    with tempfile.TemporaryDirectory() as folder:
        try:
            result = export_model(model, model_id, fmt, Path(folder) / f"model{SUFFIXES[fmt]}", specs, slots)
        except ZooError as err:
            return {"ok": False, "reason": str(err).removeprefix(f"{model_id} does not export to {fmt}: "),
                    "seconds": time.perf_counter() - start}
    worst = max(result.differences.values())
    return {"ok": worst <= ATOL, "exporter": result.exporter, "note": result.note, "differences": result.differences,
            "reason": "" if worst <= ATOL else f"outputs differ by {worst:.3g} > {ATOL:g}",
            "inputs": [f"{s.name} {'x'.join(map(str, s.shape))}" for s in specs],
            "seconds": time.perf_counter() - start}


def run_child(model_id: str, fmt: str, timeout: float) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"), "OMP_WAIT_POLICY": "PASSIVE",
           "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, __file__, "--one", model_id, "--format", fmt]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"ok": None, "reason": f"not tried (time): over {timeout:.0f} s on this machine",
                "seconds": time.perf_counter() - start}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"ok": False, "reason": f"crashed (exit {done.returncode}): {tail[:200]}",
            "seconds": time.perf_counter() - start}


def cell(result: dict | None) -> str:
    if result is None:
        return "not tried (time)"
    if result["ok"]:
        diff = max(float(v) for v in result["differences"].values())
        via = " (TorchScript exporter)" if result.get("exporter") == "torchscript" else ""
        return f"yes{via}, max diff {diff:.1e}"
    if result["ok"] is None:
        return result["reason"]
    return "no: " + result["reason"].replace("|", "\\|")


def table(results: dict[str, dict[str, dict]], ids: list[str]) -> list[str]:
    lines = ["| model | input | ONNX | torch.export |", "|---|---|---|---|"]
    for model_id in ids:
        row = results.get(model_id, {})
        inputs = next((", ".join(r["inputs"]) for r in row.values() if r.get("inputs")), "")
        lines.append(f"| {model_id} | {inputs} | {cell(row.get('onnx'))} | {cell(row.get('torch_export'))} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--format", choices=FORMATS, help=argparse.SUPPRESS)
    parser.add_argument("--pattern", default="*")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per model and format")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "export_support.md"))
    parser.add_argument("--fresh", action="store_true", help="forget the results of earlier runs")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole sweep; what is left when they are spent is not tried")
    options = parser.parse_args()
    if options.one:
        print(json.dumps(try_one(options.one, options.format)))
        return 0

    from zoo.card_index import load_index
    from zoo.registry import list_models

    ids = list_models(options.pattern)
    index = load_index() or {"models": {}}
    macs = {i: float((index["models"].get(i, {}).get("row") or [0, 0, 0, "0"])[3].replace("-", "0") or 0)
            for i in ids}
    store = Path(options.output).with_suffix(".json")
    results: dict[str, dict[str, dict]] = {} if options.fresh or not store.exists() else json.loads(store.read_text())
    print(f"{len(ids)} models, {load_average()}", flush=True)
    deadline = time.monotonic() + options.budget if options.budget else None
    for model_id in sorted(ids, key=lambda i: macs[i]):  # the cheap ones first
        for fmt in FORMATS:
            if fmt in results.get(model_id, {}):
                continue
            left = deadline - time.monotonic() if deadline else options.timeout
            if left < 20:
                continue  # shown as "not tried (time)"; a later run with more time tries it
            result = run_child(model_id, fmt, min(options.timeout, left))
            if result["ok"] is None and left < options.timeout:
                print(f"{model_id:32s} {fmt:12s} stopped: the sweep's time is spent", flush=True)
                continue
            results.setdefault(model_id, {})[fmt] = result
            store.parent.mkdir(parents=True, exist_ok=True)
            store.write_text(json.dumps(results, indent=1))
            print(f"{model_id:32s} {fmt:12s} {result['seconds']:6.1f} s  {cell(result)}", flush=True)
    threads = os.environ.get("OMP_NUM_THREADS", "2")
    lines = ["# Export support", "",
             f"Every registered model at its card's default configuration (random weights) and input size, exported "
             f"with a dynamic batch and checked at batches 1 and 3 against PyTorch (atol {ATOL:g}): ONNX through "
             f"`torch.onnx.export(dynamo=True)` and onnxruntime (CPU), torch.export through `torch.export.save` / "
             f"`load`. `python benchmarks/export_support.py`, {threads} threads, at most {options.timeout:.0f} s "
             f"per model and format; {load_average()}.", "", *table(results, ids), ""]
    write_report(options.output, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
