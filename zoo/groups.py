"""Seeds and folds as one command: ``zoo train MODEL --seeds 0,1,2`` and ``--data.folds K``.

Each member (a seed, a fold, or both crossed) is an ordinary ``zoo train`` run, an MLflow child run under one
parent run. Members run one after another; when the last has finished, the parent logs the mean and standard
deviation of every test metric (``test/<name>_mean``, ``test/<name>_sd``: the sample standard deviation, n - 1),
a table of the members with their best checkpoints (``members.csv``) and a plot of them (``members.png``), and
the summary prints the same. ``zoo train MODEL --resume PARENT_RUN`` continues an interrupted group: finished
members are kept, a member that was stopped continues from its ``last.ckpt``, the rest run.

To run the members in parallel on a cluster, submit each as its own job (a scheduler's array job): every member
is ``zoo train MODEL --seed_everything S`` or ``zoo train MODEL --data.folds K --data.fold I``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import RunStoppedError, ZooError
from zoo.fault_injection import inject
from zoo.resume import resume_args, run_name
from zoo.runner import RunOutcome, run_lightning
from zoo.tasks.base import ZooTask

__all__ = ["Member", "find_group", "group_members", "resume_group", "run_group"]

GROUP_RUN_TYPE = "group"
GROUP_FILE = "group.json"
MEMBER_TAG = "zoo.member"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: its UI nests the children under the parent


@dataclass(frozen=True)
class Member:
    """One run of a group: a training seed, a fold of the cross-validation, or both."""

    seed: int | None = None
    fold: int | None = None
    resplit: bool = False  # the seed also draws the data split (--data.seed)

    @property
    def name(self) -> str:
        parts = [f"seed {self.seed}"] if self.seed is not None else []
        parts += [f"fold {self.fold}"] if self.fold is not None else []
        return ", ".join(parts)

    def flags(self) -> list[str]:
        flags = []
        if self.seed is not None:
            flags += ["--seed_everything", str(self.seed)]
            if self.resplit:
                flags += ["--data.seed", str(self.seed)]
        if self.fold is not None:
            flags += ["--data.fold", str(self.fold)]
        return flags

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "fold": self.fold, "resplit": self.resplit}


def flag_value(args: Sequence[str], flag: str) -> str | None:
    """The last value given to ``flag`` (``--flag value`` or ``--flag=value``), or None."""
    value = None
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or a range ``"0-4"`` (or both mixed: ``"0-2,7"``) -> the seeds, in order, each once."""
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            low, dash, high = part.partition("-")
            chunk = range(int(low), int(high) + 1) if dash and low else [int(part)]
            seeds += [s for s in chunk if s not in seeds]
    except ValueError:
        raise ZooError(f"--seeds {text}: expected seeds separated by commas (0,1,2) or a range (0-4)") from None
    if not seeds:
        raise ZooError(f"--seeds {text}: no seed given")
    return seeds


def group_members(seeds: str | None, args: Sequence[str], resplit: bool = False) -> list[Member] | None:
    """The members that ``--seeds`` and ``--data.folds K`` (without ``--data.fold``) ask for, seeds outermost;
    None when the command is one ordinary run."""
    folds_text = flag_value(args, "--data.folds")
    folds = None
    if folds_text is not None and flag_value(args, "--data.fold") is None:
        try:
            folds = int(folds_text)
        except ValueError:
            raise ZooError(f"--data.folds {folds_text}: expected a whole number of folds (e.g. 5)") from None
        if folds < 2:
            folds = None  # one fold is one ordinary run
    if seeds is None and folds is None:
        if resplit:
            raise ZooError("--resplit draws each seed's own data split: give it with --seeds")
        return None
    seed_list: list[int | None] = list(parse_seeds(seeds)) if seeds is not None else [None]
    fold_list: list[int | None] = list(range(folds)) if folds else [None]
    return [Member(s, f, resplit and s is not None) for s in seed_list for f in fold_list]


# --- the parent run --------------------------------------------------------------------------------------------
def _parent_logger(args: Sequence[str], model_id: str, run_id: str | None = None):
    """A logger on the group's parent run: a new one in the members' experiment and store, or ``run_id``."""
    from zoo.tracking import ZooMLFlowLogger

    experiment = flag_value(args, "--trainer.logger.init_args.experiment_name") or "zoo"
    uri = flag_value(args, "--trainer.logger.init_args.tracking_uri")
    if run_id is not None:
        return ZooMLFlowLogger(experiment_name=experiment, tracking_uri=uri, run_id=run_id)
    return ZooMLFlowLogger(experiment_name=experiment, tracking_uri=uri, run_name=run_name(model_id, "group"),
                           tags={"zoo.run_type": GROUP_RUN_TYPE, "zoo.model_id": model_id})


def _member_tags(parent_id: str, member: Member) -> dict[str, str]:
    return {"zoo.run_type": "train", PARENT_TAG: parent_id, "zoo.group": parent_id, MEMBER_TAG: member.name}


@dataclass
class MemberResult:
    member: Member
    run_id: str | None
    test_metrics: dict[str, float]
    best_checkpoint: str


def _summary_rows(results: Sequence[MemberResult]) -> tuple[list[str], dict[str, tuple[float, float]]]:
    """The test metrics every member has (sorted) and their (mean, sample sd) over the members."""
    names = sorted(set.intersection(*(set(r.test_metrics) for r in results))) if results else []
    stats = {}
    for name in names:
        values = [r.test_metrics[name] for r in results]
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        stats[name] = (mean, sd)
    return names, stats


def members_csv(results: Sequence[MemberResult], names: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["member", "seed", "fold", "run_id", *names, "best_checkpoint"])
    for r in results:
        writer.writerow([r.member.name, r.member.seed, r.member.fold, r.run_id,
                         *(f"{r.test_metrics[n]:.6g}" for n in names), r.best_checkpoint])
    return out.getvalue()


def members_figure(results: Sequence[MemberResult], names: Sequence[str], stats: dict[str, tuple[float, float]],
                   title: str):
    """One panel per test metric: each member a dot, the mean a line, mean +- sd a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = list(names)[:12]
    columns = min(4, max(1, len(shown)))
    rows = max(1, math.ceil(len(shown) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    for axis, name in zip(axes.flat, shown, strict=False):
        values = [r.test_metrics[name] for r in results]
        mean, sd = stats[name]
        axis.axhspan(mean - sd, mean + sd, color="tab:blue", alpha=0.15, label="mean ± sd")
        axis.axhline(mean, color="tab:blue")
        axis.plot(range(len(values)), values, "o", color="black", label="members")
        axis.set_title(name, fontsize=9)
        axis.set_xticks(range(len(values)), [r.member.name.replace(", ", "\n") for r in results], fontsize=6)
    for axis in list(axes.flat)[len(shown):]:
        axis.axis("off")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def summary_table(results: Sequence[MemberResult], names: Sequence[str], stats: dict[str, tuple[float, float]],
                  max_members: int = 6) -> list[str]:
    """One row per test metric: mean ± sd over the members, then each member's value (up to ``max_members``)."""
    shown = results if len(results) <= max_members else []
    header = ["metric", "mean ± sd", *(r.member.name for r in shown)]
    rows = [[n.removeprefix("test/"), f"{stats[n][0]:.4f} ± {stats[n][1]:.4f}",
             *(f"{r.test_metrics[n]:.4f}" for r in shown)] for n in names]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


def _finish_parent(logger, results: Sequence[MemberResult], model_id: str, description: str) -> str:
    """Log the members' mean and sd, table and plot on the parent and end it; returns the printed summary."""
    from mlflow.entities import Metric

    names, stats = _summary_rows(results)
    client, parent = logger.experiment, logger.run_id
    metrics = [Metric(f"{n}_{s}", value, 0, 0) for n, (m, sd) in stats.items() for s, value in (("mean", m),
                                                                                               ("sd", sd))]
    metrics.append(Metric("members", float(len(results)), 0, 0))
    client.log_batch(parent, metrics=metrics)
    client.log_text(parent, members_csv(results, names), "members.csv")
    if names:
        import matplotlib.pyplot as plt

        figure = members_figure(results, names, stats, f"{model_id}: {description}")
        client.log_figure(parent, figure, "members.png")
        plt.close(figure)
    lines = ["", f"Finished {len(results)} runs of {model_id} ({description}); test metrics of each best checkpoint:",
             *summary_table(results, names, stats)]
    dropped = sorted(set.union(*(set(r.test_metrics) for r in results)) - set(names))
    if dropped:
        lines.append(f"  not averaged (not measured by every run, e.g. at horizons fitted per fold): "
                     f"{', '.join(dropped[:6])}{' ...' if len(dropped) > 6 else ''}")
    lines += [f"  MLflow parent run: {parent} (experiment {logger.experiment_name!r}, store {logger.tracking_uri})",
              f"  open it:      zoo ui   then  {logger.ui_url}",
              "  best checkpoints of the members: members.csv of the parent run"]
    logger.finalize("success")
    return "\n".join(lines)


# --- running ---------------------------------------------------------------------------------------------------
def _metrics_of_run(client, run_id: str) -> tuple[dict[str, float], str]:
    """A finished member's test metrics and best checkpoint, read back from its MLflow run."""
    from zoo.store import local_path
    from zoo.tracking import CHECKPOINT_ARTIFACT_DIR

    run = client.get_run(run_id)
    metrics = {k: float(v) for k, v in run.data.metrics.items() if k.startswith("test/")}
    artifacts = local_path(run.info.artifact_uri)
    best = artifacts / CHECKPOINT_ARTIFACT_DIR / "best.ckpt" if artifacts is not None else None
    return metrics, str(best) if best is not None and best.is_file() else \
        f"runs:/{run_id}/{CHECKPOINT_ARTIFACT_DIR}/best.ckpt"


def _run_member(task_class: type[ZooTask], args: list[str], resume_from: str | None) -> RunOutcome:
    outcome = run_lightning("train", task_class, args, resume_from=resume_from)
    if outcome.exit_code != 0:
        raise RunStoppedError(f"member run {outcome.run_id} was interrupted", 2)
    return outcome


def run_group(model_id: str, task_class: type[ZooTask], base_args: list[str], members: Sequence[Member],
              user_args: Sequence[str], recipe: str | None, parent_id: str | None = None) -> int:
    """Train every member in turn as a child run of one parent run, then log and print their mean and sd.

    Args:
        base_args: the LightningCLI flags of every member (recipe configs, the model id, the user's flags).
        user_args / recipe: what the user typed, kept on the parent so that ``--resume`` can rebuild the members.
        parent_id: an existing parent run to continue (``--resume``): its finished members are kept.
    """
    if any(m.fold is not None for m in members):
        _check_folds_accepted(base_args)
    logger = _parent_logger(base_args, model_id, parent_id)
    client, parent = logger.experiment, logger.run_id
    description = _describe(members)
    if parent_id is None:
        definition = {"model_id": model_id, "recipe": recipe, "args": list(user_args),
                      "members": [m.to_dict() for m in members]}
        client.log_text(parent, json.dumps(definition, indent=1), GROUP_FILE)
        client.set_tag(parent, "zoo.group.members", description)
        print(f"group of {len(members)} runs of {model_id} ({description}): MLflow parent run {parent}", flush=True)
    else:
        print(f"continuing the group {parent} of {model_id} ({description})", flush=True)
    earlier = _children(client, logger.experiment_id, parent)
    results: list[MemberResult] = []
    for index, member in enumerate(members):
        inject("group_member", member=index)
        child = earlier.get(member.name)
        if child is not None and child.info.status == "FINISHED":
            metrics, best = _metrics_of_run(client, child.info.run_id)
            print(f"[{index + 1}/{len(members)}] {member.name}: finished earlier (run {child.info.run_id})",
                  flush=True)
            results.append(MemberResult(member, child.info.run_id, metrics, best))
            continue
        args, resume_from = _member_args(model_id, base_args, member, parent, child)
        print(f"[{index + 1}/{len(members)}] {member.name}" + (" (continuing)" if resume_from else ""), flush=True)
        try:
            outcome = _run_member(task_class, args, resume_from)
        except RunStoppedError as stop:
            logger.mark_stopped(f"member {member.name} stopped")
            logger.finalize("failed")
            raise RunStoppedError(f"{stop}\nthe group continues with: zoo train {model_id} --resume {parent}",
                                  stop.exit_code - 128) from None
        except BaseException:
            client.set_tag(parent, "zoo.group.failed_member", member.name)
            logger.finalize("failed")
            raise
        metrics, best = _metrics_of_run(client, outcome.run_id) if outcome.run_id else ({}, "")
        metrics = {**metrics, **{k: v for k, v in outcome.test_metrics.items() if k.startswith("test/")}}
        results.append(MemberResult(member, outcome.run_id, metrics, outcome.checkpoints.get("best", best)))
    print(_finish_parent(logger, results, model_id, description), flush=True)
    return 0


def _data_class_path(args: Sequence[str]) -> str | None:
    """The data module class the flags choose: the last ``--data`` flag, else the last config's data section."""
    import yaml

    chosen = None
    for index, arg in enumerate(args[:-1]):
        value = args[index + 1]
        if arg == "--config" and Path(value).is_file():
            try:
                config = yaml.safe_load(Path(value).read_text()) or {}
            except yaml.YAMLError:
                continue
            data = config.get("data") if isinstance(config, dict) else None
            if isinstance(data, dict) and data.get("class_path"):
                chosen = data["class_path"]
        elif arg in ("--data", "--data.class_path") and not value.startswith("-"):
            chosen = value
    return chosen


def _check_folds_accepted(args: Sequence[str]) -> None:
    """Refuse ``--data.folds`` for a data module that cannot split into folds, before any run starts."""
    import inspect

    from zoo.class_paths import import_class

    class_path = _data_class_path(args)
    if class_path is None:
        return
    try:
        parameters = inspect.signature(import_class(class_path)).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        return
    if "folds" not in parameters:
        raise ZooError(f"--data.folds: {class_path.rsplit('.', 1)[-1]} does not split into folds (it reads the "
                       "splits its source gives); folds work for image folders, tables, survival cohorts and ICU "
                       "patients. Use --seeds for repeated runs")


def _describe(members: Sequence[Member]) -> str:
    seeds = [m.seed for m in members if m.seed is not None]
    folds = sorted({m.fold for m in members if m.fold is not None})
    parts = []
    if seeds:
        unique = list(dict.fromkeys(seeds))
        parts.append(f"seeds {', '.join(map(str, unique))}" + (" (each with its own split)"
                                                               if members[0].resplit else ""))
    if folds:
        parts.append(f"{len(folds)}-fold cross-validation")
    return " x ".join(parts)


def _children(client, experiment_id: str, parent: str) -> dict[str, Any]:
    """The parent's child runs by member name (the latest run of each member)."""
    runs = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{parent}'", order_by=["start_time DESC"],
                              max_results=1000)
    found: dict[str, Any] = {}
    for run in runs:
        found.setdefault(run.data.tags.get(MEMBER_TAG, ""), run)
    return found


def _member_args(model_id: str, base_args: list[str], member: Member, parent: str, child: Any
                 ) -> tuple[list[str], str | None]:
    """The member's flags, continuing its stopped run from ``last.ckpt`` when it has one."""
    if child is not None:
        try:
            flags, last = resume_args(model_id, child.info.run_id, [])
            return [*base_args, *member.flags(), *flags], last
        except ZooError as err:  # stopped before its first checkpoint: it starts again
            print(f"  {member.name}: run {child.info.run_id} cannot continue ({str(err).split(':')[0]}); "
                  "starting it again", flush=True)
    return [*base_args, *member.flags(), "--trainer.logger.init_args.run_name",
            f"{run_name(model_id, 'train')}-{member.name.replace(', ', '-').replace(' ', '')}",
            "--trainer.logger.init_args.tags", json.dumps(_member_tags(parent, member))], None


def find_group(model_id: str, run_id: str | None):
    """The group parent run that ``--resume [RUN_ID]`` names (or the model's latest), or None when ``run_id``
    names an ordinary run."""
    from mlflow import MlflowClient

    from zoo.store import default_tracking_uri

    client = MlflowClient(default_tracking_uri())
    if run_id:
        try:
            run = client.get_run(run_id)
        except Exception:
            return None
        return run if run.data.tags.get("zoo.run_type") == GROUP_RUN_TYPE else None
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"tags.`zoo.model_id` = '{model_id}' and tags.`zoo.run_type` = "
                              f"'{GROUP_RUN_TYPE}'", order_by=["start_time DESC"], max_results=1) \
        if experiments else []
    if not runs:
        raise ZooError(f"no earlier group of {model_id} (a --seeds or --data.folds run) in {default_tracking_uri()} "
                       "to resume")
    return runs[0]


def resume_group(parent_run) -> tuple[str, str | None, list[str], list[Member], str]:
    """What continuing ``parent_run`` needs: model id, recipe, the user's flags, the members, the parent id."""
    import mlflow

    parent = parent_run.info.run_id
    if parent_run.info.status == "FINISHED":
        raise ZooError(f"the group {parent} has finished all its runs")
    try:
        path = mlflow.artifacts.download_artifacts(run_id=parent, artifact_path=GROUP_FILE,
                                                   tracking_uri=_tracking_uri())
        definition = json.loads(Path(path).read_text())
    except Exception as err:
        raise ZooError(f"the group run {parent} has no readable {GROUP_FILE}: {err}") from None
    members = [Member(**m) for m in definition["members"]]
    return definition["model_id"], definition.get("recipe"), list(definition["args"]), members, parent


def _tracking_uri() -> str:
    from zoo.store import default_tracking_uri

    return default_tracking_uri()
