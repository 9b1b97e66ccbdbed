"""LightningCLI set up for zoo: recipes, MLflow tracking, checkpoints, and the end-of-run summary."""

from __future__ import annotations

import difflib
import inspect
import itertools
import math
import re
import sys
from argparse import ArgumentError
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import BasePredictionWriter, Callback, LearningRateMonitor
from lightning.pytorch.cli import LightningCLI
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau
from typing_extensions import override

from zoo.checkpointing import AtomicCheckpointIO, ZooCheckpoint, checkpoint_interval, run_checkpoints
from zoo.checkpoints import TrainedCheckpoint
from zoo.class_paths import import_class
from zoo.data.contracts import ZooData
from zoo.errors import ZooError
from zoo.factory import create_model
from zoo.interruption import FaultTolerance
from zoo.precision import default_precision
from zoo.registry import get_card
from zoo.run_artifacts import RunArtifacts
from zoo.tasks.base import ZooTask
from zoo.tracking import ZooMLFlowLogger, ZooSaveConfig, mlflow_logger
from zoo.verdict import verdict_lines


class PredictionWriter(BasePredictionWriter):
    """Hands every batch's predictions to the task, which writes them in its kind's format at the end of
    ``zoo predict`` (CSV rows, images, YOLO/COCO files, per-subject files, forecast tables)."""

    def __init__(self, output: str):
        super().__init__(write_interval="epoch")
        self.output = Path(output)

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        print(pl_module.write_predictions(predictions, trainer.datamodule, self.output), flush=True)


class RunSummary(Callback):
    """Before the first epoch, two lines: the model (parameters, the card's MACs at its input size, the precision
    it trains in) and what data the run uses (the data module's ``describe()``: source, classes, split sizes, input
    size). ``precision_reason`` says why a precision chosen for the user was chosen (None: the user chose it)."""

    precision_reason: str | None = None
    data_note: str | None = None  # what zoo train chose for the data (the images' own size), said in the data line

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        model = getattr(pl_module, "model", pl_module)
        total = sum(p.numel() for p in model.parameters())
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        line = f"model: {getattr(pl_module, 'model_id', type(model).__name__)}, {total:,} parameters"
        if trainable != total:
            line += f" ({trainable:,} trainable)"
        model_id = getattr(pl_module, "model_id", None)
        card = get_card(model_id) if model_id else None
        if card is not None and card.macs is not None:
            macs = f"{card.macs / 1e9:.2f} GMACs at {'x'.join(map(str, card.input_shape))}"
            line += f"; {macs} (card)" if total == card.num_params else \
                f" (the card's {macs} are for its default {card.num_params:,}-parameter configuration)"
        line += f"; precision {trainer.precision}"
        if self.precision_reason:
            line += f" ({self.precision_reason}; --trainer.precision sets another)"
        print(line, flush=True)
        if isinstance(trainer.datamodule, ZooData):
            text = trainer.datamodule.describe()
            text = f"{text} ({self.data_note})" if self.data_note else text
            print(text if text.startswith("data:") else f"data: {text}", flush=True)


class EvaluationLine(Callback):
    """Before ``zoo validate|test|predict`` reads its data, the data module's one line naming the files, the number
    of examples and which split (:meth:`~zoo.data.contracts.ZooData.evaluation_line`); its loaders are set up by
    then."""

    def _print(self, trainer: L.Trainer, split: str) -> None:
        if trainer.is_global_zero and isinstance(trainer.datamodule, ZooData):
            print(trainer.datamodule.evaluation_line(split), flush=True)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "validate":
            self._print(trainer, "val")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print(trainer, "test")

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print(trainer, "predict")


class EpochLines(Callback):
    """When the output is not a terminal (CI logs, ``nohup``), one plain line per epoch: a progress bar there
    shows nothing until the run ends."""

    def __init__(self, stream=None):
        self.stream = stream
        self._start = 0.0

    def _is_terminal(self) -> bool:
        stream = self.stream or sys.stdout
        return bool(getattr(stream, "isatty", lambda: False)())

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import time

        self._start = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import time

        if not trainer.is_global_zero or self._is_terminal():
            return
        metrics = {k.removesuffix("_epoch"): float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith(("train/", "val/")) and not k.endswith("_step") and v.numel() == 1}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()))
        total = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        print(f"epoch {trainer.current_epoch + 1}/{total}: {shown} ({time.monotonic() - self._start:.0f} s)",
              file=self.stream or sys.stdout, flush=True)


def quiet_logs() -> None:
    """Drop what says nothing to a zoo user: Lightning's litlogger tip and pytree deprecation, the warning that
    testing "best" picks the first of our two checkpoint callbacks (it is the best one), MLflow's database
    migration INFO lines."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    warnings.filterwarnings("ignore", message=r".*configured with multiple `ModelCheckpoint` callbacks.*")
    warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
    # the `zoo` command hands LightningCLI its own flags (``args``); sys.argv holds zoo's, not a second set
    warnings.filterwarnings("ignore", message=r".*LightningCLI's args parameter is intended to run from within.*")

    class _DropTip(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "litlogger" not in record.getMessage()

    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropTip())
    for name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


class ZooCLI(LightningCLI):
    """LightningCLI whose model is a zoo task, with data attributes linked into the task's arguments."""

    def __init__(self, task_class: type[ZooTask], args: list[str], program: str = "zoo train",
                 extra_callbacks: list[Any] = (), run: bool = True):
        self.task_class = task_class
        self.program = program
        self.precision_reason: str | None = None  # set when zoo train picks the precision (resolve_precision)
        self.data_notes: dict[str, str] = {}  # what resolve_data_preprocessing says in the data line
        super().__init__(
            model_class=task_class, datamodule_class=L.LightningDataModule, subclass_mode_model=False,
            subclass_mode_data=True, save_config_callback=ZooSaveConfig, auto_configure_optimizers=False,
            load_from_checkpoint_support=False,
            trainer_defaults={
                "logger": {"class_path": f"{ZooMLFlowLogger.__module__}.ZooMLFlowLogger"},
                "callbacks": [ZooCheckpoint("best"), ZooCheckpoint("last"),
                              LearningRateMonitor(logging_interval="step"), RunArtifacts(), RunSummary(), EpochLines(),
                              FaultTolerance(),
                              *extra_callbacks],
                "enable_autolog_hparams": False,
                "enable_model_summary": False,  # RunSummary says it in one line ("Total FLOPs: 0" was wrong)
                # torch's deterministic kernels where it has them; "warn" names each op that has none (some CUDA
                # backward ops such as scatter_add_, index_add_ and adaptive pooling) instead of failing the run
                "deterministic": "warn",
            },
            seed_everything_default=0, args=args, run=run,
            # no abbreviations: `--trainer.max_epoch 1` must not silently become `--trainer.max_epochs`
            parser_kwargs={"prog": program, "allow_abbrev": False, "exit_on_error": False},
        )

    @override
    def parse_arguments(self, parser, args) -> None:
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise ZooError(_explain_parse_error(parser, str(err), args)) from None

    @override
    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The trainer, with the atomic checkpoint IO plugged in beside any plugins the config names (an object,
        not a config value: it is not written into the run's config.yaml)."""
        given = self.config_init.get("trainer", {}).get("plugins") or []
        plugins = [*(given if isinstance(given, list) else [given]), AtomicCheckpointIO(checkpoint_interval())]
        trainer = super().instantiate_trainer(**{**kwargs, "plugins": plugins})
        for callback in trainer.callbacks:
            if isinstance(callback, RunSummary):
                callback.precision_reason = self.precision_reason
                callback.data_note = self.data_notes.get("input_size")
        return trainer

    @override
    def before_instantiate_classes(self) -> None:
        self.precision_reason = resolve_precision(self.config) if self.program == "zoo train" else None
        self.data_notes: dict[str, str] = {}
        for line in resolve_data_preprocessing(self.config, self.data_notes):
            print(line, flush=True)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_optimizer_args((Optimizer,), link_to="model.optimizer")
        parser.add_lr_scheduler_args((LRScheduler, ReduceLROnPlateau), link_to="model.lr_scheduler")
        for data_attribute, task_argument in self.task_class.data_links:
            parser.link_arguments(f"data.{data_attribute}", f"model.{task_argument}", apply_on="instantiate")


def resolve_precision(config: Any) -> str | None:
    """Fill ``trainer.precision`` when the recipe, a config and the command line leave it unset, with what
    :func:`zoo.precision.default_precision` picks for the model and this machine (bf16 autocast where the chip has
    bf16 and the model enough arithmetic). The value goes into the run's config like any other. Returns why it was
    picked, or None when the user set it."""
    trainer, model = config.get("trainer"), config.get("model")
    if trainer is None or model is None or trainer.get("precision") is not None or not model.get("model"):
        return None
    accelerator = trainer.get("accelerator")
    card = get_card(model.get("model"))
    choice = default_precision(card.macs, accelerator if isinstance(accelerator, str) else "auto",
                               cpu_bf16=card.cpu_bf16)
    trainer["precision"] = choice.precision
    return f"chosen for this machine: {choice.reason}"


def resolve_data_preprocessing(config: Any, notes: dict[str, str] | None = None) -> list[str]:
    """Fill the data module's preprocessing arguments that the config leaves at None (those its class names in
    ``PREPROCESSING_FIELDS``: mean, std, input size, interpolation, crop), as timm's ``resolve_data_config``: from
    the weight set being fine-tuned from, when its card gives its preprocessing; else a user's own image folder
    (``root``) is seen at the images' own size when no pretrained weights are used (the median side, rounded up to a
    multiple the model takes, at most the card's input size; see :func:`_own_image_size`), at the card's input size
    when they are. A value the recipe, a config or the command line gives is kept. Returns the lines that say what
    was filled (none when nothing was); ``notes["input_size"]`` gets a short note for the data line when the size is
    the images' own."""
    model, data = config.get("model"), config.get("data")
    if model is None or data is None or not data.get("class_path") or not model.get("model"):
        return []
    fields = getattr(import_class(data.class_path), "PREPROCESSING_FIELDS", None)
    if not fields:
        return []
    card = get_card(model.get("model"))
    source = model.get("pretrained")
    weights = card.weights_of(str(source)) if source else None
    init_args = data.init_args
    note = None
    if weights is not None and weights.preprocessing is not None:
        chosen = {argument: getattr(weights.preprocessing, name) for name, argument in fields.items()}
        why = f"as the {weights.name!r} weights were trained"
    elif init_args.get("root") and len(card.input_shape) == 3:
        size, why, note = _own_image_size(import_class(data.class_path), init_args, model, card, source)
        chosen = {fields["input_size"]: size}
    else:
        return []
    changed = []
    for argument, value in chosen.items():
        if init_args.get(argument) is None and value is not None:
            init_args[argument] = value
            changed.append(f"{argument} {list(value) if isinstance(value, tuple) else value}")
    if not changed:
        return []
    if notes is not None and note and fields.get("input_size") in {c.split()[0] for c in changed}:
        notes["input_size"] = note
    return [f"data prepared {why}: {', '.join(changed)} (a --data.<name> flag keeps your value)"]


# Feature maps of the zoo's image classifiers divide their input by 32; a model may ask for more (HaloNet's
# ``input_multiple``: stride x halo block) or a patch size (VMamba's ``patch_size``).
NETWORK_STRIDE = 32


def _own_image_size(data_class: type, init_args: Any, model: Any, card: Any, pretrained: Any
                    ) -> tuple[int, str, str | None]:
    """The input size for a user's own image folder: with pretrained weights (or when the data module cannot tell
    its images' size) the card's; without, the images' own median side rounded up to a multiple the model takes
    (at most the card's size). Returns (size, why for the "data prepared" line, a note for the data line)."""
    card_size = card.input_shape[-1]
    native = getattr(data_class, "native_input_size", None)
    side = None
    if not pretrained and callable(native):
        try:
            side = native(dict(init_args))
        except ZooError:
            side = None  # the data module names the problem when it reads the folder
    if not side:
        return card_size, "for your own images at the model card's input size", None
    with torch.device("meta"):  # the model's size rule without building its weights
        probe = create_model(model.get("model"), **(model.get("model_kwargs") or {}))
    multiple = math.lcm(NETWORK_STRIDE, int(getattr(probe, "input_multiple", None) or
                                            getattr(probe, "patch_size", None) or 1))
    size = min(card_size, -(-side // multiple) * multiple)
    note = (f"your images' own size: median side {side} px, rounded up to a multiple of {multiple}, as no pretrained "
            f"weights are used" if size != card_size else None)
    return size, "for your own images at their own size (no pretrained weights)" if note else \
        "for your own images at the model card's input size", note


def _known_flags(parser, args: list[str]) -> list[str]:
    """Every flag the parser knows (its defaults name them all), plus ``--data.X`` / ``--optimizer.X`` /
    ``--lr_scheduler.X`` of the classes the recipe configs name (subclass arguments are not parser options until
    a class is chosen)."""
    flags = [f"--{key}" for key in parser.get_defaults().keys()]  # noqa: SIM118 (nested keys, dotted)
    for flag, value in itertools.pairwise(args):
        if flag != "--config" or not Path(value).is_file():
            continue
        config = yaml.safe_load(Path(value).read_text()) or {}
        for section in ("data", "optimizer", "lr_scheduler"):
            class_path = (config.get(section) or {}).get("class_path") if isinstance(config, dict) else None
            if not class_path:
                continue
            try:
                parameters = inspect.signature(import_class(class_path)).parameters
            except (ValueError, TypeError):
                continue
            flags += [f"--{section}.{name}" for name in parameters if name not in ("self", "args", "kwargs")]
    for name in inspect.signature(L.Trainer).parameters:
        flags.append(f"--trainer.{name}")
    return sorted(set(flags))


def _explain_parse_error(parser, message: str, args: list[str]) -> str:
    """One line for a command-line mistake: the flag, what was wrong with it, and the closest real flags to an
    unknown one (jsonargparse's own message is a nested report of every Union alternative it tried)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    first = lines[0] if lines else message
    unknown = re.findall(r"(--[\w.\-]+)", first) if "nrecognized arguments" in first else []
    key = re.match(r'Parser key "([\w.]+)"', first)
    rejected = re.search(r"Option '([\w.]+)' is not accepted", message)
    if key and rejected:
        unknown = [f"--{key.group(1)}.{rejected.group(1)}"]
    if unknown:
        known = _known_flags(parser, args)
        hints = []
        for flag in unknown:
            name = flag.split("=", 1)[0]
            close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
            hints.append(f"{name} (did you mean {' or '.join(close)}?)" if close else name)
        return f"unknown flag {'; '.join(hints)}; `zoo train MODEL --help` lists the flags"
    if key:
        given = re.search(r"Given value: (.*)", message)
        expected = [t for t in re.findall(r"Expected a <class '(\w+)'>", message) if t != "NoneType"]
        value = f" {given.group(1)}" if given else ""
        detail = f"expected {' or '.join(expected)}" if expected else next(
            (line for line in lines[1:] if not line.startswith(("Does not validate", "Subtypes", "Errors"))), "")
        return f"--{key.group(1)}{value}: {detail}".rstrip(": ")
    return first


def _format_metrics(metrics: dict[str, Any]) -> str:
    return ", ".join(f"{k} {float(v):.4f}" for k, v in sorted(metrics.items()))


def print_summary(cli: ZooCLI, checkpoints: dict[str, str], test_metrics: dict[str, Any]) -> None:
    trainer, task = cli.trainer, cli.model
    checkpoint = trainer.checkpoint_callback
    logger = mlflow_logger(trainer)
    lines = ["", f"Finished training {task.model_id}."]
    if checkpoint is not None and checkpoint.best_model_score is not None:
        lines.append(f"  best {checkpoint.monitor}: {float(checkpoint.best_model_score):.4f}")
    if test_metrics:
        lines.append(f"  test (best checkpoint): {_format_metrics(test_metrics)}")
        lines += [f"  beside doing nothing: {line}" for line in verdict_lines(test_metrics)]
    if logger is not None:
        lines += [
            f"  MLflow run:   {logger.run_id} (experiment {logger.experiment_name!r}, store {logger.tracking_uri})",
            f"  open it:      zoo ui   then  {logger.ui_url}",
        ]
    if checkpoints:
        lines.append(f"  checkpoints:  best {checkpoints['best']}")
        lines.append(f"                last {checkpoints['last']}")
    if getattr(task, "logged_model_uri", None):
        lines.append(f"  model:        zoo.create_model({task.model_id!r}, pretrained={task.logged_model_uri!r})")
    print("\n".join(lines), flush=True)


def print_verdict(trainer: L.Trainer, results: list[dict[str, Any]] | None) -> None:
    """After ``zoo validate|test``: the model beside the do-nothing baselines its task logged (zoo.verdict)."""
    lines = verdict_lines(results[0]) if results and trainer.is_global_zero else []
    if lines:
        print("\n".join(["beside doing nothing:", *(f"  {line}" for line in lines)]), flush=True)


def check_training_length(trainer: L.Trainer) -> None:
    """Refuse, with the flag named, a run whose length the learning-rate schedules cannot span."""
    epochs, steps = trainer.max_epochs, trainer.max_steps
    if steps == -1 and (epochs is None or epochs == -1):
        raise ZooError("--trainer.max_epochs -1 trains without end, which the learning-rate schedule cannot span: "
                       "give a number of epochs (>= 1) or --trainer.max_steps")
    if steps == -1 and epochs is not None and epochs < 1:
        raise ZooError(f"--trainer.max_epochs must be at least 1, got {epochs}")
    if steps == 0 or steps < -1:
        raise ZooError(f"--trainer.max_steps must be at least 1 (or -1 for no limit), got {steps}")


@dataclass
class RunOutcome:
    """What a command left: its exit code, and for training the MLflow run, the test metrics of the best
    checkpoint and the checkpoint files (``best`` / ``last``)."""

    exit_code: int
    run_id: str | None = None
    test_metrics: dict[str, float] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)


def run_lightning(command: str, task_class: type[ZooTask], args: list[str], resume_from: str | None = None,
                  checkpoint: TrainedCheckpoint | None = None, predictions: str | None = None) -> RunOutcome:
    """Build the task, data and trainer from ``args`` (LightningCLI flags) and run ``command``.

    Args:
        command: "train", "validate", "test" or "predict".
        task_class: the task that trains the model (from its card's task kind).
        resume_from: a checkpoint file training continues from.
        checkpoint: the checkpoint evaluated or predicted with (already read, see :mod:`zoo.checkpoints`).
    """
    extra = [PredictionWriter(predictions or task_class.prediction_output)] if command == "predict" else []
    if command != "train":
        extra.append(EvaluationLine())
    torch.set_float32_matmul_precision("high")
    quiet_logs()
    cli = ZooCLI(task_class, args, program=f"zoo {command}", extra_callbacks=extra, run=False)
    trainer, task, datamodule = cli.trainer, cli.model, cli.datamodule
    if command == "train":
        check_training_length(trainer)
    if command != "train":
        ckpt_path = None
        if checkpoint is not None:  # Lightning restores task and data from it as from a file, without a 2nd read
            trainer.strategy.checkpoint_io.add_read(checkpoint.path, checkpoint.content)
            ckpt_path = str(checkpoint.path)
        results = getattr(trainer, command)(task, datamodule=datamodule, ckpt_path=ckpt_path)
        print_verdict(trainer, results if command in ("validate", "test") else None)
        return RunOutcome(0)
    logger = mlflow_logger(trainer)
    if trainer.world_size > 1 and logger is not None:
        _ = logger.run_id  # the run exists before ddp_spawn copies the logger: every process logs into it
    trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)  # no pickled code runs
    run_id = logger.run_id if logger is not None and logger.started else None
    if trainer.interrupted:
        return RunOutcome(1, run_id)
    checkpoints = run_checkpoints(trainer)  # read now: testing the best checkpoint restores its older state
    test_metrics: dict[str, Any] = {}
    has_test_split = datamodule.has_test_split if isinstance(datamodule, ZooData) else True
    if has_test_split and not trainer.fast_dev_run:
        results = trainer.test(task, datamodule=datamodule, ckpt_path="best", verbose=False)
        test_metrics = results[0] if results else {}
    if trainer.is_global_zero:
        print_summary(cli, checkpoints, test_metrics)
    return RunOutcome(0, run_id, {k: float(v) for k, v in test_metrics.items()}, dict(checkpoints))
