"""The `zoo` command as a person types it: each mistake answered in one line with a non-zero exit code, the
traceback only behind --debug, the closest real flags for a typo, and the model's own help first."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ZOO = str(Path(sys.executable).with_name("zoo"))
TRAIN = ["train", "vision/eca_resnet18"]

# typed in a shell (a subprocess each); the rest are the same code path, run in-process to keep the suite short
IN_SHELL = ("missing_root", "abbreviated_flag", "endless", "unknown_command", "debug")
CASES = {
    "missing_root": ([*TRAIN, "--data.root", "nonexistent/"], 1,
                     "zoo train: error: image folder nonexistent does not exist"),
    "abbreviated_flag": ([*TRAIN, "--trainer.max_epoch", "1"], 1,
                         "zoo train: error: unknown flag --trainer.max_epoch (did you mean --trainer.max_epochs"),
    "unknown_flag": ([*TRAIN, "--trainer.epochs", "1"], 1, "unknown flag --trainer.epochs (did you mean"),
    "unknown_data_flag": ([*TRAIN, "--data.roott", "x"], 1,
                          "zoo train: error: unknown flag --data.roott (did you mean --data.root"),
    "wrong_type": ([*TRAIN, "--trainer.max_epochs", "abc"], 1,
                   "zoo train: error: --trainer.max_epochs abc: expected int"),
    "endless": ([*TRAIN, "--trainer.max_epochs", "-1"], 1,
                "zoo train: error: --trainer.max_epochs -1 trains without end"),
    "empty_batch": ([*TRAIN, "--data.batch_size", "0"], 1,
                    "zoo train: error: --data.batch_size must be a positive number of examples, got 0"),
    "unknown_model": (["train", "vision/eca_resnt18"], 1, "did you mean vision/eca_resnet18"),
    "unknown_command": (["trian"], 2, "zoo: error: unknown command 'trian'; did you mean `zoo train`?"),
    "debug": ([*TRAIN, "--data.root", "nonexistent/", "--debug"], 1, "Traceback (most recent call last)"),
}


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Every command of CASES, run as a user types it (two at a time), in a fresh folder with its own store."""
    folder = tmp_path_factory.mktemp("cli_errors")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
    env.pop("ZOO_DEBUG", None)

    def run(args):
        return subprocess.run([ZOO, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(2) as pool:
        results = pool.map(run, [CASES[case][0] for case in IN_SHELL])
    return dict(zip(IN_SHELL, results, strict=True))


def _in_process(args, capsys) -> subprocess.CompletedProcess:
    from zoo.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


@pytest.mark.parametrize("case", CASES)
def test_a_mistake_is_answered_in_one_line(answers, case, capsys, tmp_path, monkeypatch):
    args, code, expected = CASES[case]
    if case in IN_SHELL:
        result = answers[case]
    else:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
        result = _in_process(args, capsys)
    assert result.returncode == code, result.stderr
    assert expected in result.stderr
    if case != "debug":
        # in-process, a logging handler left on an earlier test's captured stream may print its own traceback
        assert case not in IN_SHELL or "Traceback" not in result.stderr
        assert "Does not validate" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("zoo") and "error:" in line]
        assert len(errors) == 1 and expected in errors[0], result.stderr


def test_version_list_substring_and_model_help(tmp_path):
    def zoo(*args):
        return subprocess.run([ZOO, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)

    assert zoo("--version").stdout.strip().startswith("zoo 0.")
    listing = zoo("list", "eca_mobile")
    assert listing.returncode == 0 and "vision/eca_mobilenet_v2" in listing.stdout
    assert "vision/eca_resnet50" not in listing.stdout
    help_text = zoo("train", "vision/eca_resnet18", "--help")
    assert help_text.returncode == 0
    first = help_text.stdout.split("\n\n")
    assert first[0].startswith("usage: zoo train vision/eca_resnet18 [--recipe NAME] [--resume [RUN_ID]]")
    head = "\n".join(first[:6])
    assert "task flags (ClassificationTask)" in head and "--model.label_smoothing = 0.1" in head
    assert "data flags (ImageClassificationData)" in help_text.stdout.split("Every other flag")[0]
    assert "--data.root = None" in help_text.stdout and "--optimizer.lr 0.004" in help_text.stdout
