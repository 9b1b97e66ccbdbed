"""``zoo export``: a trained model as an ONNX file or a ``torch.export`` program, checked against PyTorch.

    zoo export --ckpt CKPT --format onnx|torch_export [--output FILE] [--opset N] [--run RUN_ID]
    zoo export --model MODEL_ID [--pretrained SOURCE] --format ...

The model is rebuilt from the checkpoint through ``zoo.create_model`` (weights-only loading, nothing in the file is
imported or run). The example inputs are the trained model's (``zoo.inputs.example_inputs``: one tensor per input,
batch first, at the sizes the model's configuration and the checkpoint's data record, else the card's). The batch
dimension is dynamic (``torch.export.Dim``): the program is traced at batch 2 and checked at batches 1 and 3,
onnxruntime (CPU) or ``torch.export.load`` against the PyTorch model, max |difference| <= ``--atol`` (1e-4). When the
model's code fixes the batch size, the program is exported at batch 1 instead, checked there, and the command says so.

Each stage prints one line as it starts; ``--timeout`` (600 s) stops the export with a message naming the stage it
was in. The file is written beside the target and renamed over it once checked: a failed, stopped or interrupted
export leaves no file.

ONNX goes through the dynamo exporter (``torch.onnx.export(..., dynamo=True)``, needs ``onnx`` and
``onnxscript``); only when that fails is the TorchScript-based exporter tried, and the command says so. When the
checkpoint sits in an MLflow run's artifact folder (or ``--run`` names a run) the exported file is logged to that
run under ``export/``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import ZooError
from zoo.inputs import InputSpec, example_inputs

__all__ = ["ExportResult", "cmd_export", "export_model", "find_run_of_checkpoint"]

FORMATS = {"onnx": ".onnx", "torch_export": ".pt2"}
EXPORT_ARTIFACT_DIR = "export"
TRACE_BATCH = 2  # not 0 or 1, which torch.export would specialise the batch dimension to
CHECK_BATCHES = (1, 3)
MAX_BATCH = 4096
DEFAULT_TIMEOUT_S = 600.0

Progress = Callable[[str], None]


@dataclass
class ExportResult:
    """What :func:`export_model` did: the file, the exporter used and max |difference| per checked batch size."""

    path: Path
    exporter: str
    differences: dict[int, float]
    note: str = ""
    dynamic_batch: bool = True


class _Positional(nn.Module):
    """The model called with the present inputs only: ``slots`` maps each of the model's positional arguments to
    an index into the exported inputs, or None for an argument passed as None (a table without binary columns)."""

    def __init__(self, model: nn.Module, slots: list[int | None]):
        super().__init__()
        self.model, self.slots = model, slots

    def forward(self, *inputs: Tensor) -> Any:
        return self.model(*(None if slot is None else inputs[slot] for slot in self.slots))


# --- errors -----------------------------------------------------------------------------------------------------
_OPERATOR = re.compile(r"(aten[.:]{1,2}[A-Za-z_0-9.]+|torch\.ops\.[A-Za-z_0-9.]+|prim::[A-Za-z_0-9]+)")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_WRAPPERS = ("Failed to export the model with torch.export", "Failed to convert the exported program")


def failure_reason(err: BaseException) -> str:
    """One line on why an export failed, naming the operator when the error does.

    The ONNX exporter wraps the real error ("Failed to export the model with torch.export. This is step 1/3"):
    the innermost cause is reported instead.
    """
    seen: set[int] = set()
    while (err.__cause__ is not None and id(err) not in seen
           and any(w in str(err) for w in _WRAPPERS)):
        seen.add(id(err))
        err = err.__cause__
    text = _ANSI.sub("", str(err)).strip() or type(err).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(err).__name__
    first = re.sub(r"\s+", " ", first)
    if len(first) > 220:
        first = first[:217] + "..."
    if "Constraints violated" in first and "specialized it to be a constant" in text:
        return ("the model's code fixes the batch size, so it cannot be a dynamic dimension (torch.export: "
                f"{first.split('!')[0]}; TORCH_LOGS=+dynamic shows where)")
    found = _OPERATOR.search(text)
    operator = found.group(1).removeprefix("torch.ops.") if found else None
    if operator and first.startswith("Error when translating node"):
        first = f"no ONNX translation of {operator}"
    reason = f"{type(err).__name__}: {first}"
    if operator and operator not in reason:
        reason += f" (operator {operator})"
    return reason


@contextlib.contextmanager
def _quiet_fd(fd: int = 1):
    """Silence what C++ code writes to a file descriptor (the TorchScript exporter prints its graph on errors)."""
    import os
    import sys

    with contextlib.suppress(Exception):
        sys.stdout.flush()
    try:
        saved = os.dup(fd)
    except OSError:  # no such descriptor (an embedding host): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints, warnings and log lines, some of which print whole graphs (the
    caller prints what matters; failures still raise)."""
    previous = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


# --- export and check -------------------------------------------------------------------------------------------
def _flat(outputs: Any) -> list[Tensor]:
    leaves, _ = torch.utils._pytree.tree_flatten(outputs)
    return [leaf for leaf in leaves if isinstance(leaf, Tensor)]


def _max_difference(expected: list[Tensor], actual: list[Any], what: str) -> float:
    if len(expected) != len(actual):
        raise ZooError(f"{what} gives {len(actual)} outputs, the PyTorch model {len(expected)}")
    worst = 0.0
    for e, a in zip(expected, actual, strict=True):
        a = torch.as_tensor(a)
        if tuple(a.shape) != tuple(e.shape):
            raise ZooError(f"{what} gives an output of shape {tuple(a.shape)}, the PyTorch model {tuple(e.shape)}")
        if e.numel():
            worst = max(worst, float((a.to(torch.float64) - e.to(torch.float64)).abs().max()))
    return worst


def _dynamic_shapes(specs: list[InputSpec], dynamic: bool = True) -> dict[str, tuple[dict[int, Any], ...]] | None:
    """The batch dimension of every input as one ``torch.export.Dim`` (None: every dimension static)."""
    if not dynamic:
        return None
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return {"inputs": tuple({0: batch} for _ in specs)}  # the *inputs of _Positional.forward


class _FixedBatchError(Exception):
    """The model's code fixes the batch size, so the batch cannot be a dynamic dimension of the exported program."""


def _fixes_batch(err: BaseException) -> bool:
    return "fixes the batch size" in failure_reason(err)


def _export_program(module: nn.Module, args: tuple[Tensor, ...], specs: list[InputSpec], dynamic: bool = True):
    try:
        with _quiet():
            return torch.export.export(module, args, dynamic_shapes=_dynamic_shapes(specs, dynamic), strict=False)
    except Exception as err:
        if dynamic and _fixes_batch(err):
            raise _FixedBatchError(failure_reason(err)) from err
        raise


def _onnx(module: nn.Module, args: tuple[Tensor, ...], specs: list[InputSpec], path: Path,
          opset: int | None, dynamic: bool = True) -> tuple[str, str]:
    """Write the ONNX file; returns (exporter, note). The TorchScript exporter only runs when dynamo fails for
    another reason than a batch size the model's code fixes (raised as ``_FixedBatchError``: the caller exports at
    batch 1 instead)."""
    names = [s.name for s in specs]
    try:
        # traced by torch.export here, so that a batch the model's code fixes is an error (given the module, the
        # ONNX exporter relaxes the batch Dim and writes a graph that runs at the traced batch only)
        exported = _export_program(module, args, specs, dynamic)
        with _quiet():
            program = torch.onnx.export(exported, args, dynamo=True, input_names=names, opset_version=opset,
                                        external_data=False, optimize=True, verbose=False)
            program.save(str(path), external_data=False)
        return "dynamo", ""
    except _FixedBatchError:
        raise
    except ImportError as err:
        raise ZooError(f"ONNX export needs the onnx and onnxscript packages: {err}") from None
    except ExportTimeoutError:
        raise
    except Exception as err:
        if dynamic and _fixes_batch(err):
            raise _FixedBatchError(failure_reason(err)) from err
        dynamo_reason = failure_reason(err)
    try:
        with _quiet(), _quiet_fd():
            torch.onnx.export(module, args, str(path), dynamo=False, input_names=names,
                              dynamic_axes={n: {0: "batch"} for n in names} if dynamic else None,
                              opset_version=opset or 17)
    except ExportTimeoutError:
        raise
    except Exception as err:
        raise _BothExportersFailedError(f"{dynamo_reason} (dynamo exporter); the TorchScript exporter: "
                             f"{failure_reason(err)}") from None
    return "torchscript", f"the dynamo exporter failed ({dynamo_reason}); used the TorchScript-based exporter"


class _BothExportersFailedError(Exception):
    """Neither ONNX exporter could export the model; the message gives both reasons."""


def _check_onnx(path: Path, module: nn.Module, specs: list[InputSpec], generator: torch.Generator,
                batches: tuple[int, ...], progress: Progress) -> dict[int, float]:
    try:
        import onnxruntime
    except ImportError as err:
        raise ZooError(f"checking the ONNX file needs onnxruntime: {err}") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    fixed = [i for i in session.get_inputs() if i.shape and isinstance(i.shape[0], int)
             and batches != (i.shape[0],)]
    if fixed:  # the exporter fell back to a static graph
        raise ZooError(f"the batch dimension of input {fixed[0].name} is fixed at {fixed[0].shape[0]} in the ONNX "
                       "graph: the model's code fixes the batch size, so it cannot be a dynamic dimension")
    differences = {}
    for batch in batches:
        progress(f"checking with onnxruntime at batch {batch}")
        inputs = [s.sample(batch, generator) for s in specs]
        with torch.no_grad():
            expected = _flat(module(*inputs))
        # an input the model ignores (and its value) may be dropped from the graph
        feed = {n: x.numpy() for n, x in zip([s.name for s in specs], inputs, strict=True) if n in names}
        actual = session.run(None, feed)
        differences[batch] = _max_difference(expected, actual, f"onnxruntime at batch {batch}")
    return differences


def _check_program(path: Path, module: nn.Module, specs: list[InputSpec], generator: torch.Generator,
                   batches: tuple[int, ...], progress: Progress) -> dict[int, float]:
    loaded = torch.export.load(str(path)).module()
    differences = {}
    for batch in batches:
        progress(f"checking the loaded program at batch {batch}")
        inputs = [s.sample(batch, generator) for s in specs]
        with torch.no_grad():
            expected = _flat(module(*inputs))
            actual = _flat(loaded(*inputs))
        differences[batch] = _max_difference(expected, actual, f"the loaded program at batch {batch}")
    return differences


class ExportTimeoutError(ZooError):
    """The export ran past its time limit (``--timeout``)."""


@contextlib.contextmanager
def _time_limit(seconds: float | None, model_id: str, stage: list[str]) -> Iterator[None]:
    """Raise :class:`ExportTimeoutError` in this thread after ``seconds`` (SIGALRM; the exporters run Python code
    between their native calls, where the signal lands). ``stage`` holds the stage under way, for the message.
    No limit without ``seconds``, off the main thread or where there is no SIGALRM."""
    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return
    started = time.monotonic()

    def stop(_signum, _frame):
        raise ExportTimeoutError(f"{model_id}: export stopped after {time.monotonic() - started:.0f} s, the time "
                                 f"limit (--timeout {seconds:g}), while {stage[0]}; no file was written. A larger "
                                 "--timeout gives it longer; a smaller --input-shape traces a smaller graph")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def export_model(model: nn.Module, model_id: str, fmt: str, path: str | Path, specs: list[InputSpec],
                 slots: list[int | None] | None = None, opset: int | None = None,
                 batches: tuple[int, ...] = CHECK_BATCHES, seed: int = 0, progress: Progress | None = None,
                 timeout: float | None = None) -> ExportResult:
    """Export ``model`` (eval mode) to ``path`` and check it against PyTorch at each of ``batches``.

    Args:
        model: the model; inputs are (B, *spec.shape) per spec, B dynamic.
        fmt: "onnx" or "torch_export".
        specs, slots: from :func:`example_inputs`.
        progress: called with one line as each stage starts (tracing, writing, each check).
        timeout: seconds the whole export may take (None: no limit).

    When the model's code fixes the batch size, the program is exported at batch 1 and checked there
    (``ExportResult.dynamic_batch`` False, and the note says so).

    Raises:
        ZooError: one line naming the model and why it does not export (the failing operator when known);
            ``ExportTimeoutError`` past ``timeout``, naming the stage. No file is left at ``path`` either way.
    """
    if fmt not in FORMATS:
        raise ZooError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = _Positional(model.eval(), slots if slots is not None else list(range(len(specs)))).eval()
    say = progress or (lambda _line: None)
    stage = ["running the model on the example inputs"]

    def step(line: str) -> None:
        stage[0] = line
        say(line)

    # written beside the target and renamed over it once it runs: a failed or interrupted export leaves no file
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        with _time_limit(timeout, model_id, stage):
            result = _export_and_check(module, model_id, fmt, partial, specs, batches, opset, seed, step)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    result.path = path
    return result


def _run_once(module: nn.Module, model_id: str, specs: list[InputSpec], args: tuple[Tensor, ...]) -> None:
    try:
        with torch.no_grad():
            module(*args)
    except ExportTimeoutError:
        raise
    except Exception as err:
        shapes = ", ".join(f"{s.name} (B, {', '.join(map(str, s.shape))})" for s in specs)
        raise ZooError(f"{model_id} does not run on the example inputs {shapes}: {failure_reason(err)}; pass "
                       "--input-shape") from None


def _export_and_check(module: nn.Module, model_id: str, fmt: str, path: Path, specs: list[InputSpec],
                      batches: tuple[int, ...], opset: int | None, seed: int, step: Progress) -> ExportResult:
    """Trace, write the ``fmt`` file at ``path`` and check it at ``batches``; at batch 1 when the batch cannot be
    dynamic."""
    generator = torch.Generator().manual_seed(seed)
    args = tuple(s.sample(TRACE_BATCH, generator) for s in specs)
    step(f"running the model once on the example inputs (batch {TRACE_BATCH})")
    _run_once(module, model_id, specs, args)
    how = "torch.export" if fmt == "torch_export" else "the dynamo ONNX exporter (torch.export, then ONNX)"
    step(f"tracing with {how}, dynamic batch")
    try:
        exporter, note = _write(module, model_id, fmt, path, args, specs, opset, dynamic=True)
        dynamic = True
    except _FixedBatchError as err:
        step(f"{err}; tracing again at batch 1")
        args = tuple(s.sample(1, generator) for s in specs)
        exporter, note = _write(module, model_id, fmt, path, args, specs, opset, dynamic=False)
        note = "; ".join(filter(None, [note, "the batch dimension is fixed at 1: the model's code fixes the batch "
                                             "size, so call the exported file one example at a time"]))
        batches, dynamic = (1,), False
    check = _check_onnx if fmt == "onnx" else _check_program
    try:
        differences = check(path, module, specs, generator, batches, step)
    except ZooError as err:
        if isinstance(err, ExportTimeoutError):
            raise
        raise ZooError(f"{model_id}: the exported {fmt} file does not match the model: {err}") from None
    except Exception as err:
        raise ZooError(f"{model_id}: the exported {fmt} file does not run: {failure_reason(err)}") from None
    return ExportResult(path, exporter, differences, note, dynamic)


def _write(module: nn.Module, model_id: str, fmt: str, path: Path, args: tuple[Tensor, ...], specs: list[InputSpec],
           opset: int | None, dynamic: bool) -> tuple[str, str]:
    """Write the ``fmt`` file at ``path``: (exporter, note). ``_FixedBatchError`` when ``dynamic`` cannot be."""
    try:
        if fmt == "torch_export":
            program = _export_program(module, args, specs, dynamic)
            torch.export.save(program, str(path))
            return "torch.export", ""
        return _onnx(module, args, specs, path, opset, dynamic)
    except (ZooError, _FixedBatchError):
        raise
    except _BothExportersFailedError as err:
        raise ZooError(f"{model_id} does not export to {fmt}: {err}") from None
    except Exception as err:
        raise ZooError(f"{model_id} does not export to {fmt}: {failure_reason(err)}") from None


# --- MLflow -----------------------------------------------------------------------------------------------------
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def _run_id_candidates(ckpt: str | Path) -> list[str]:
    """Folder names above ``ckpt`` that look like MLflow run ids (32 hex digits), nearest first."""
    return [p.name for p in Path(ckpt).resolve().parents if _RUN_ID.match(p.name)]


def find_run_of_checkpoint(ckpt: str | Path, client: Any) -> str | None:
    """The id of the MLflow run whose artifact folder (or ``runs/<run_id>/`` folder) holds ``ckpt``, else None."""
    from zoo.store import local_path

    path = Path(ckpt).resolve()
    for run_id in _run_id_candidates(path):
        try:
            run = client.get_run(run_id)
        except Exception:
            continue
        artifacts = local_path(run.info.artifact_uri)
        roots = [p for p in path.parents if p.name == run_id]
        if artifacts is not None:
            roots.append(artifacts.resolve())
        if any(path.is_relative_to(root) for root in roots):
            return run_id
    return None


def log_to_run(path: Path, run_id: str, client: Any) -> None:
    try:
        client.log_artifact(run_id, str(path), EXPORT_ARTIFACT_DIR)
    except Exception as err:
        raise ZooError(f"could not log {path} to MLflow run {run_id}: {failure_reason(err)}") from None


# --- the command ------------------------------------------------------------------------------------------------
def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 3,64,64") from None
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 3,64,64")
    return shape


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo export", description="Export a zoo model to ONNX or torch.export "
                                     "and check its outputs against PyTorch.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt", help="best.ckpt or last.ckpt of a zoo run")
    source.add_argument("--model", help="a registered model id (with --pretrained, or random weights)")
    parser.add_argument("--pretrained", help="with --model: any weight source zoo.create_model reads")
    parser.add_argument("--format", required=True, choices=list(FORMATS))
    parser.add_argument("--output", help="file to write (default: ./<model name>.onnx or .pt2)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--input-shape", type=_parse_shape,
                        help="shape of one example of the first input without the batch, e.g. 3,64,64")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest |difference| accepted (1e-4)")
    parser.add_argument("--run", help="MLflow run to log the file to (default: the run holding --ckpt)")
    parser.add_argument("--timeout", type=_positive_seconds, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds the export may take before it stops, leaving no file ({DEFAULT_TIMEOUT_S:g}; "
                             "0 for no limit)")
    return parser


def _positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"the time limit must be >= 0 seconds (0: none), got {text}")
    return seconds


def _load(options: argparse.Namespace) -> tuple[nn.Module, str, dict[str, Any]]:
    """The model to export, its id and its data module's arguments (empty without a checkpoint)."""
    from zoo.checkpoints import read_checkpoint
    from zoo.factory import create_model

    if options.ckpt:
        checkpoint = read_checkpoint(options.ckpt)
        return checkpoint.build_model(), checkpoint.model_id, checkpoint.data_hparams
    if options.pretrained is None:
        print(f"{options.model}: no --pretrained given, exporting randomly initialised weights")
    return create_model(options.model, pretrained=options.pretrained), options.model, {}


def cmd_export(argv: list[str]) -> int:
    """``zoo export``: write the file, print one line per check, log it to the checkpoint's MLflow run."""
    try:
        return _export_command(_parser().parse_args(argv))
    except ZooError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        if len(lines) > 1:  # a wrapped library message (an unreadable file): the `zoo` command prints one line
            raise ZooError(lines[0]) from err
        raise


def _export_command(options: argparse.Namespace) -> int:
    if options.pretrained and not options.model:
        raise ZooError("--pretrained goes with --model; a --ckpt holds its own weights")
    model, model_id, data_hparams = _load(options)
    specs, slots = example_inputs(model, model_id, data_hparams, options.input_shape)
    output = Path(options.output or Path.cwd() / (model_id.rsplit("/", 1)[-1] + FORMATS[options.format]))
    shapes = ", ".join(f"{s.name} (batch, {', '.join(map(str, s.shape))})" for s in specs)
    limit = f"time limit {options.timeout:g} s" if options.timeout else "no time limit"
    print(f"exporting {model_id} to {options.format} with inputs {shapes}: tracing, then checking at batches "
          f"{' and '.join(map(str, CHECK_BATCHES))} (a large model takes minutes; {limit})", flush=True)
    started = time.monotonic()

    def progress(line: str) -> None:
        print(f"  [{time.monotonic() - started:4.0f} s] {line}", flush=True)

    result = export_model(model, model_id, options.format, output, specs, slots, options.opset, progress=progress,
                          timeout=options.timeout or None)
    if result.note:
        print(f"note: {result.note}")
    batch = "dynamic batch" if result.dynamic_batch else "batch fixed at 1"
    print(f"wrote {result.path.resolve()} ({options.format}, {result.exporter} exporter, inputs {shapes}, "
          f"{batch}, {time.monotonic() - started:.0f} s)")
    checker = "onnxruntime (CPU)" if options.format == "onnx" else "torch.export.load"
    failed = []
    for batch, difference in result.differences.items():
        ok = difference <= options.atol
        print(f"check batch {batch}: {checker} vs PyTorch max |diff| {difference:.3g} "
              f"({'ok' if ok else 'FAIL'}, atol {options.atol:g})")
        if not ok:
            failed.append(f"batch {batch}: {difference:.3g}")
    if failed:
        raise ZooError(f"{model_id}: the exported {options.format} outputs differ from PyTorch by more than "
                       f"{options.atol:g} ({'; '.join(failed)}); the file was kept at {result.path}")
    # a client on the default sqlite store would create mlflow.db here: only made when a run may be named
    if options.run or (options.ckpt and _run_id_candidates(options.ckpt)):
        from mlflow import MlflowClient

        from zoo.store import default_tracking_uri

        uri = default_tracking_uri()
        store = Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None
        if store is not None and not store.is_file():
            if options.run:
                raise ZooError(f"no MLflow store at {store} to find run {options.run} in (set MLFLOW_TRACKING_URI)")
            print(f"not logged to MLflow: no store at {store} (set MLFLOW_TRACKING_URI, or pass --run)")
            return 0
        client = MlflowClient(uri)
        run_id = options.run
        if run_id:
            try:
                client.get_run(run_id)
            except Exception:
                raise ZooError(f"no MLflow run {run_id} in {uri}") from None
        elif options.ckpt:
            run_id = find_run_of_checkpoint(options.ckpt, client)
        if run_id:
            log_to_run(result.path, run_id, client)
            print(f"logged to MLflow run {run_id} as {EXPORT_ARTIFACT_DIR}/{result.path.name}")
        else:
            print(f"not logged to MLflow: no run in {uri} holds {options.ckpt} (pass --run RUN_ID)")
    return 0
