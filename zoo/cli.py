"""The ``zoo`` command.

    zoo list ['vision/eca*']              registered models, with parameters and MACs
    zoo info MODEL                        the model card
    zoo train MODEL [--recipe NAME] [--resume [RUN_ID]] [LightningCLI flags]
    zoo validate|test|predict [MODEL] --ckpt CHECKPOINT [LightningCLI flags]
    zoo explain [MODEL] --ckpt CHECKPOINT --image PATH [--target CLASS] [--layer NAME] [--output PNG]
                                          Grad-CAM heat map of an image, written as a PNG
    zoo export --ckpt CHECKPOINT --format onnx|torch_export [--output FILE]
                                          the trained model as an ONNX file or a torch.export program
    zoo ui [--port 5000]                  the MLflow UI on the same store as the runs

``train`` and friends are LightningCLI underneath: ``--trainer.max_epochs 5``, ``--data.batch_size 64``,
``--optimizer.lr 0.01``, ``--optimizer timm.optim.Lamb``, ``--config my.yaml``, ``--print_config``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from zoo.errors import RunStoppedError, ZooError
from zoo.resume import resume_args, run_name, write_temp_yaml

COMMANDS = ("list", "info", "train", "validate", "test", "predict", "explain", "export", "ui")


# --- list / info ------------------------------------------------------------------------------------------------
def _format_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_list(pattern: str) -> int:
    import fnmatch

    from zoo.card_index import load_index

    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"  # `zoo list eca` is a substring search
    index = load_index()
    if index is not None:  # answers without importing torch and the model files
        rows = [m["row"] for i, m in index["models"].items() if fnmatch.fnmatchcase(i, pattern)]
    else:
        from zoo.cards import list_row
        from zoo.registry import list_models

        rows = [list_row(model_id) for model_id in list_models(pattern)]
    if not rows:
        print(f"no model matches {pattern!r}; `zoo list` shows them all", file=sys.stderr)
        return 1
    print(_format_table(rows, ["model", "task", "params (M)", "GMACs", "input", "weights"]))
    return 0


def cmd_info(model_id: str) -> int:
    from zoo.card_index import load_index

    index = load_index()
    if index is not None:
        if model_id not in index["models"]:
            from zoo.registry import unknown_model

            raise unknown_model(model_id, list(index["models"]))
        fields = index["models"][model_id]["info"]
    else:
        from zoo.cards import card_fields

        fields = card_fields(model_id)
    width = max(len(label) for label, _ in fields)
    for label, value in fields:
        print(f"{label.ljust(width)}  {value}")
    return 0


def _training_experiment_links(uri: str, base: str) -> list[tuple[str, str]]:
    """Links that open the zoo's experiments in the UI's model-training view (see ``UI_MODEL_TRAINING``)."""
    from zoo.store import local_path

    database = local_path(uri.replace("sqlite:///", "file:///", 1)) if uri.startswith("sqlite:") else None
    if database is None or not database.is_file():
        return []
    from mlflow import MlflowClient

    from zoo.tracking import EXPERIMENT_KIND_TAG, EXPERIMENT_KIND_TRAINING, UI_MODEL_TRAINING

    return [(e.name, f"{base}/#/experiments/{e.experiment_id}/runs?{UI_MODEL_TRAINING}")
            for e in MlflowClient(uri).search_experiments()
            if e.tags.get(EXPERIMENT_KIND_TAG) == EXPERIMENT_KIND_TRAINING]


def cmd_ui(host: str, port: int) -> int:
    from zoo.store import default_tracking_uri

    uri = default_tracking_uri()
    if uri.startswith(("http://", "https://")):
        print(f"runs are tracked on the MLflow server {uri}: open it in a browser")
        return 0
    print(f"MLflow UI for {uri} at http://{host}:{port} (Ctrl+C stops it)")
    for name, link in _training_experiment_links(uri, f"http://{host}:{port}"):
        print(f"  {name}: {link}")
    sys.stdout.flush()
    # The server's background job runner (a pool of worker processes for MLflow's AI features) is not needed to
    # browse runs. Replace this process, so that stopping `zoo ui` stops the server too.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host,
                              "--port", str(port)])


# --- training and evaluation ------------------------------------------------------------------------------------
def _recipe_args(model_id: str, recipe: str | None) -> list[str]:
    from zoo.registry import get_entry

    entry = get_entry(model_id)
    try:
        paths = entry.recipe_paths(recipe)
    except KeyError as err:
        raise ZooError(str(err.args[0])) from None
    return [arg for path in paths for arg in ("--config", str(path))]


TRAIN_HELP = """usage: zoo {command} MODEL [--recipe NAME] [--resume [RUN_ID]] [--ckpt CKPT] [LightningCLI flags]

MODEL is a registered id (`zoo list` shows them, `zoo info MODEL` its card). For the flags of one model's task,
data and recipe, ask with the model: `zoo {command} vision/eca_resnet50 --help`."""


def _argument_docs(cls: type) -> dict[str, str]:
    """``name: description`` of the ``Args:`` sections of ``cls`` and its bases, each description whole (its
    continuation lines joined); an entry naming several arguments ("mixup_alpha / cutmix_alpha:", "a, b:") gives
    each of them the description."""
    import inspect
    import re

    entry = re.compile(r"(\s+)(\**\w+(?:\s*(?:,|/)\s*\w+)*):\s*(.*)")
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        text = inspect.getdoc(klass) or ""
        if "Args:" not in text:
            continue
        names: list[str] = []
        indent = 0
        for line in text.split("Args:", 1)[1].splitlines():
            if line.strip() and not line.startswith(" "):
                break  # the next section ("Returns:", prose)
            match = entry.fullmatch(line)
            if match and (not names or len(match.group(1)) <= indent):
                indent = len(match.group(1))
                names = re.split(r"\s*[,/]\s*", match.group(2))
                for name in names:
                    docs[name] = match.group(3).strip()
            elif names and line.strip():  # a continuation line of the current entry
                for name in names:
                    docs[name] = f"{docs[name]} {line.strip()}".strip()
    return docs


def _flag_lines(prefix: str, cls: type, values: dict[str, Any], hidden: frozenset[str] = frozenset()) -> list[str]:
    """One line per constructor argument of ``cls`` and its bases (``--prefix.name = default   description``),
    with ``values`` (the recipe's) as defaults; ``hidden``: arguments that do not apply to the model."""
    import inspect

    docs = _argument_docs(cls)
    lines: list[str] = []
    seen = {"self", "args", "kwargs", "optimizer", "lr_scheduler", *hidden}  # --optimizer, --lr_scheduler
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        for name, parameter in inspect.signature(klass.__init__).parameters.items():
            if name in seen:
                continue
            seen.add(name)
            default = values.get(name, parameter.default)
            shown = "required" if default is inspect.Parameter.empty else f"= {default!r}"
            lines.append(f"  --{prefix}.{name} {shown}" + (f"   {docs[name]}" if name in docs else ""))
    return lines


def _inapplicable(task_class: type, card: Any) -> frozenset[str]:
    """The task arguments that do nothing for a model of ``card`` (the task's ``inapplicable_arguments``)."""
    ask = getattr(task_class, "inapplicable_arguments", None)
    return frozenset(ask(card)) if ask is not None else frozenset()


def model_help(command: str, model_id: str, recipe: str | None) -> str:
    """``zoo train MODEL --help``: the model's own task, data and recipe flags, with the recipe's values."""
    from zoo.cards import recipe_config
    from zoo.class_paths import import_class
    from zoo.registry import get_entry
    from zoo.tasks.registry import task_class_of

    entry = get_entry(model_id)
    card = entry.card
    config = recipe_config(entry, recipe)
    task_class = task_class_of(model_id)
    recipes = ", ".join(card.recipes) or "-"
    lines = [f"usage: zoo {command} {model_id} [--recipe NAME] [--resume [RUN_ID]] [--ckpt CKPT] [flags]", "",
             f"{model_id}: {card.paper.title} ({card.task}); recipes: {recipes} "
             f"(using {recipe or 'quickstart' if card.recipes else 'none'})", "",
             f"task flags ({task_class.__name__}):",
             *_flag_lines("model", task_class, config.get("model") or {}, _inapplicable(task_class, card))]
    data = config.get("data") or {}
    if data.get("class_path"):
        data_class = import_class(data["class_path"])
        lines += ["", f"data flags ({data_class.__name__}):",
                  *_flag_lines("data", data_class, data.get("init_args") or {})]
    for section in ("trainer", "optimizer", "lr_scheduler"):
        values = config.get(section) or {}
        if section != "trainer" and values.get("class_path"):
            values = {"class": values["class_path"], **(values.get("init_args") or {})}
        if values:
            lines += ["", f"{section} (from the recipe):"]
            lines += [f"  --{section}.{k} {v!r}" if k != "class" else f"  --{section} {v}" for k, v in values.items()]
    lines += ["", "Every other flag of Lightning's trainer and of the optimiser and schedule classes follows.", ""]
    return "\n".join(lines)


def _model_id_from_configs(args: list[str]) -> str | None:
    """The model id named by a ``--config`` YAML (``model: {model: ID}``), for ``zoo train --config my.yaml``."""
    for flag, value in itertools.pairwise(args):
        if flag != "--config" or not Path(value).is_file():
            continue
        try:
            config = yaml.safe_load(Path(value).read_text()) or {}
        except yaml.YAMLError as err:
            raise ZooError(f"{value}: not valid YAML: {err}") from None
        model = config.get("model") if isinstance(config, dict) else None
        if isinstance(model, dict):
            model_id = model.get("model") or (model.get("init_args") or {}).get("model")
            if isinstance(model_id, str):
                return model_id
    return None


def cmd_lightning(command: str, argv: list[str]) -> int:
    # The model id is the first argument or nothing: a positional parsed anywhere would take the value of a
    # LightningCLI flag (``zoo predict --ckpt X --data.path new.csv`` read "new.csv" as the model).
    model_id = argv[0] if argv and not argv[0].startswith("-") else None
    parser = argparse.ArgumentParser(prog=f"zoo {command}", add_help=False)
    parser.add_argument("--recipe")
    parser.add_argument("--resume", nargs="?", const="latest")
    parser.add_argument("--ckpt")
    parser.add_argument("--output")
    parser.add_argument("--seeds")
    parser.add_argument("--resplit", action="store_true")
    known, rest = parser.parse_known_args(argv[1:] if model_id else argv)
    if model_id is None and known.ckpt is None:
        model_id = _model_id_from_configs(rest)
    if model_id is None and known.ckpt is None and any(a in rest for a in ("-h", "--help")):
        print(TRAIN_HELP.format(command=command))
        return 0
    if model_id is None and command == "train":
        raise ZooError("zoo train needs a model id, e.g. `zoo train vision/eca_resnet50` (`zoo list` shows them), "
                       "or a --config whose model section names one (model: {model: vision/eca_resnet50})")
    if command != "train" and known.ckpt is None and not any(a in rest for a in ("-h", "--help")):
        raise ZooError(f"zoo {command} needs --ckpt CHECKPOINT (a best.ckpt or last.ckpt of a zoo run)")

    if model_id and any(a in ("-h", "--help") for a in rest):
        print(model_help(command, model_id, known.recipe))
    if command == "train" and not known.ckpt and not any(a in ("-h", "--help", "--print_config") for a in rest):
        grouped = _train_group(model_id, known, rest)
        if grouped is not None:
            return grouped
    elif known.seeds or known.resplit:
        raise ZooError(f"--seeds and --resplit are flags of zoo train, not of zoo {command}")
    args: list[str] = []
    resume_from, checkpoint = None, None
    if known.ckpt:
        from zoo.checkpoints import read_checkpoint

        checkpoint = read_checkpoint(known.ckpt)
        if model_id and model_id != checkpoint.model_id:
            raise ZooError(f"{known.ckpt} is a checkpoint of {checkpoint.model_id}, not {model_id}")
        model_id = checkpoint.model_id
        args += _recipe_args(model_id, known.recipe)
        args += ["--config", write_temp_yaml(checkpoint.config())]
        if command == "train":
            resume_from = known.ckpt
    elif model_id:
        args += _recipe_args(model_id, known.recipe)  # an unknown id fails here, with suggestions
        if known.resume:
            flags, resume_from = resume_args(model_id, None if known.resume == "latest" else known.resume, rest)
            args += flags
        args += ["--model.model", model_id]
    if not known.resume:
        args += ["--trainer.logger.init_args.run_name", run_name(model_id, command),
                 "--trainer.logger.init_args.tags", json.dumps({"zoo.run_type": command})]
    from zoo.runner import run_lightning
    from zoo.tasks.registry import task_class_of

    return run_lightning(command, task_class_of(model_id), args + rest, resume_from=resume_from, checkpoint=checkpoint,
                         predictions=known.output).exit_code


def _train_group(model_id: str, known: argparse.Namespace, rest: list[str]) -> int | None:
    """``zoo train`` of several runs (``--seeds``, ``--data.folds K``) or the continuation of such a group
    (``--resume GROUP_RUN``); None when the command is one ordinary run."""
    from zoo.groups import find_group, group_members, resume_group, run_group
    from zoo.tasks.registry import task_class_of

    members = group_members(known.seeds, rest, known.resplit)
    parent = None
    if known.resume and (members is not None or known.resume != "latest"):
        parent = find_group(model_id, None if known.resume == "latest" else known.resume)
        if parent is None and members is not None:
            raise ZooError(f"run {known.resume} is not a group (a --seeds or --data.folds run): resume it alone "
                           f"with zoo train {model_id} --resume {known.resume}")
    if parent is not None:
        model_id, recipe, user_args, members, parent_id = resume_group(parent)
        base_args = [*_recipe_args(model_id, recipe), "--model.model", model_id, *user_args]
        return run_group(model_id, task_class_of(model_id), base_args, members, user_args, recipe, parent_id)
    if members is None:
        return None
    base_args = [*_recipe_args(model_id, known.recipe), "--model.model", model_id, *rest]
    return run_group(model_id, task_class_of(model_id), base_args, members, rest, known.recipe)


def cmd_explain(argv: list[str]) -> int:
    """Explain one image with a checkpoint: the checkpoint's task kind does it (image classification: Grad-CAM,
    written as a PNG of image | overlay); kinds without an ``explain`` say so."""
    from zoo.tasks.registry import task_class_of

    parser = argparse.ArgumentParser(prog="zoo explain")
    parser.add_argument("model", nargs="?")
    parser.add_argument("--ckpt", required=True, help="best.ckpt or last.ckpt of a zoo run")
    parser.add_argument("--image", required=True)
    parser.add_argument("--target", help="class name or index to explain (default: the predicted class)")
    parser.add_argument("--layer", help="module to take the activations from (default: the card's layer)")
    parser.add_argument("--output", help="PNG to write (default: ./<image name>_gradcam.png)")
    options = parser.parse_args(argv)
    from zoo.checkpoints import read_checkpoint

    checkpoint = read_checkpoint(options.ckpt)
    model_id = checkpoint.model_id
    if options.model and options.model != model_id:
        raise ZooError(f"{options.ckpt} is a checkpoint of {model_id}, not {options.model}")
    explain = getattr(task_class_of(model_id), "explain", None)
    if explain is None:
        raise ZooError(f"{options.ckpt} is not an image classification checkpoint")
    # not beside the image: a folder of inputs that `zoo predict` reads next must not gain PNGs
    output = Path(options.output or Path.cwd() / (Path(options.image).stem + "_gradcam.png"))
    print(explain(checkpoint, options.image, options.target, options.layer, output))
    return 0


DEBUG_ENV = "ZOO_DEBUG"


def _zoo_cause(err: BaseException) -> ZooError | None:
    """The ZooError behind ``err``, however deep jsonargparse or Lightning wrapped it (``__cause__`` chain)."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, ZooError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def main(argv: list[str] | None = None) -> int:
    """Run the ``zoo`` command; a problem is printed as one line (``--debug`` or ``ZOO_DEBUG=1``: the traceback)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    parser = argparse.ArgumentParser(prog="zoo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("command", choices=COMMANDS)
    if argv and argv[0] == "--version":
        from zoo import __version__

        print(f"zoo {__version__}")
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f"did you mean `zoo {close[0]}`? " if close else ""
        print(f"zoo: error: unknown command {command!r}; {hint}commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    try:
        if command == "list":
            return cmd_list(rest[0] if rest else "*")
        if command == "info":
            if len(rest) != 1:
                raise ZooError("usage: zoo info MODEL (`zoo list` shows the ids)")
            return cmd_info(rest[0])
        if command == "ui":
            ui = argparse.ArgumentParser(prog="zoo ui")
            ui.add_argument("--host", default="127.0.0.1")
            ui.add_argument("--port", type=int, default=5000)
            options = ui.parse_args(rest)
            return cmd_ui(options.host, options.port)
        if command == "explain":
            return cmd_explain(rest)
        if command == "export":
            from zoo.export import cmd_export

            return cmd_export(rest)
        return cmd_lightning(command, rest)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `zoo list | head`: the reader has gone, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:
        if debug:
            raise
        cause = _zoo_cause(err)
        if isinstance(cause, RunStoppedError):  # not an error: the run was asked to stop and can be resumed
            print(f"zoo {command}: {str(cause).strip()}", file=sys.stderr)
            return cause.exit_code
        if cause is not None:
            print(f"zoo {command}: error: {str(cause).strip()}", file=sys.stderr)
        else:
            print(f"zoo {command}: error: {type(err).__name__}: {_one_line(str(err))} (the traceback: run again "
                  f"with --debug or {DEBUG_ENV}=1)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
