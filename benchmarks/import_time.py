"""How long building a model takes in a fresh Python process: ``zoo.create_model`` against timm's
``create_model`` for the same architecture family, side by side.

Each round starts two fresh interpreters one after the other (the order alternates between rounds), each of which
imports its library, builds the model once and prints the seconds that took, and which heavy modules it imported
(a zoo model must import neither Lightning nor MLflow). The ratio is taken from the medians over the rounds; the
fastest round of each side is printed too, since a busy machine only ever adds time.

    python -m benchmarks.import_time [--rounds 7] [--zoo-model vision/eca_resnet50] [--timm-model resnet50]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from benchmarks._common import load_average, write_report

PROBE = """
import json, sys, time
start = time.perf_counter()
{build}
seconds = time.perf_counter() - start
heavy = sorted(m for m in ("lightning", "mlflow", "torchmetrics") if m in sys.modules)
print(json.dumps({{"seconds": seconds, "heavy": heavy}}))
"""


def measure(build: str) -> dict:
    """Seconds to run ``build`` (imports included) in a fresh interpreter, and the heavy modules it imported."""
    result = subprocess.run([sys.executable, "-c", PROBE.format(build=build)], capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.import_time", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--zoo-model", default="vision/eca_resnet50")
    parser.add_argument("--timm-model", default="resnet50")
    parser.add_argument("--report", default="benchmarks/results/import_time.md")
    options = parser.parse_args(argv)
    sides = {"zoo": f"import zoo; zoo.create_model({options.zoo_model!r})",
             "timm": f"import timm; timm.create_model({options.timm_model!r})"}
    times: dict[str, list[float]] = {"zoo": [], "timm": []}
    heavy: dict[str, list[str]] = {}
    before = load_average()
    for round_index in range(options.rounds):
        order = ["zoo", "timm"] if round_index % 2 == 0 else ["timm", "zoo"]
        for side in order:
            result = measure(sides[side])
            times[side].append(result["seconds"])
            heavy[side] = result["heavy"]
        print(f"round {round_index + 1}: zoo {times['zoo'][-1]:.2f} s, timm {times['timm'][-1]:.2f} s", flush=True)
    after = load_average()
    median = {side: statistics.median(values) for side, values in times.items()}
    ratio = median["zoo"] / median["timm"]
    fastest = min(times["zoo"]) / min(times["timm"])
    lines = [
        "# Building a model in a fresh process: zoo vs timm", "",
        f"`{sides['zoo']}` against `{sides['timm']}`, {options.rounds} alternating rounds, each a fresh "
        f"interpreter (`python -m benchmarks.import_time`).", "",
        "| side | median s | fastest s | heavy modules imported |", "|---|---:|---:|---|",
        *[f"| {side} | {median[side]:.2f} | {min(times[side]):.2f} | {', '.join(heavy[side]) or 'none'} |"
          for side in ("zoo", "timm")],
        "", f"zoo / timm: median {ratio:.3f}, fastest {fastest:.3f} (goal: at most 1.2).", "",
        f"Machine: {before} before, {after} after.", "",
    ]
    print("\n".join(lines))
    write_report(options.report, lines)


if __name__ == "__main__":
    main()
