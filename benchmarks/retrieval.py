"""Retrieval throughput: exact top-k L2 search (TabR's ``context_size`` 96) over candidate sets of 10 thousand to
1 million keys, faiss ``IndexFlatL2`` against the chunked torch path, as TabR calls it (the index refilled on every
call).

    python -m benchmarks.retrieval [--sizes 10000 100000 1000000] [--dim 128] [--queries 1024] [--threads 2]

Writes a Markdown table to ``benchmarks/results/retrieval.md`` (queries per second, higher is better) with the
machine load at the start and the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from benchmarks._common import load_average, write_report
from zoo.blocks.retrieval import faiss_available, nearest_neighbors


def measure(queries: torch.Tensor, keys: torch.Tensor, k: int, backend: str, repeats: int) -> float:
    """Median seconds of one search of all ``queries``."""
    nearest_neighbors(queries[:8], keys, k, backend=backend)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        nearest_neighbors(queries, keys, k, backend=backend)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128, help="key width (TabR's d_main)")
    parser.add_argument("--queries", type=int, default=1024, help="queries per search call (an eval batch)")
    parser.add_argument("--k", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "retrieval.md"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    backends = ["torch"]
    if faiss_available():
        import faiss

        faiss.omp_set_num_threads(args.threads)
        backends.insert(0, "faiss")
    load_before = load_average()
    torch.manual_seed(0)
    queries = torch.randn(args.queries, args.dim)
    rows = []
    for size in args.sizes:
        keys = torch.randn(size, args.dim)
        qps = {b: args.queries / measure(queries, keys, args.k, b, args.repeats) for b in backends}
        ratio = qps["faiss"] / qps["torch"] if "faiss" in qps else float("nan")
        rows.append(f"| {size:,} | " + " | ".join(f"{qps[b]:,.0f}" for b in backends) + f" | {ratio:.2f} |")
        print(rows[-1], flush=True)
        del keys
    lines = [
        "# Retrieval throughput (exact L2 top-k)",
        "",
        f"Queries per second (higher is better); {args.queries} queries per call, k = {args.k}, keys of width "
        f"{args.dim}, float32, {args.threads} threads, median of {args.repeats} calls. faiss = IndexFlatL2 refilled "
        "every call (as TabR does); torch = chunked matmul + topk. CPU only.",
        "",
        "| candidates | " + " | ".join(f"{b} (q/s)" for b in backends) + " | faiss / torch |",
        "|---|" + "---|" * len(backends) + "---|",
        *rows,
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared with other jobs), "
        f"torch {torch.__version__}.",
        f"Load before: `{load_before}`",
        f"Load after: `{load_average()}`",
        "",
    ]
    write_report(args.output, lines)


if __name__ == "__main__":
    main()
