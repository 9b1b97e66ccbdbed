"""The zoo command: listing, cards, training on an ImageFolder, evaluation and prediction from checkpoints."""

import csv
import re

import pytest
import torch
import yaml

import zoo
from zoo.cli import main


def test_list_and_pattern(capsys):
    assert main(["list", "vision/eca*"]) == 0
    out = capsys.readouterr().out
    ids = [line.split()[0] for line in out.splitlines()[2:]]
    assert ids == zoo.list_models("vision/eca*")
    assert {"vision/eca_resnet50", "vision/eca_mobilenet_v2"} <= set(ids)
    assert "25.56" in out  # parameters in millions
    assert main(["list", "nosuchdomain/*"]) == 1


def test_info_shows_the_card(capsys):
    assert main(["info", "vision/eca_resnet50"]) == 0
    out = capsys.readouterr().out
    for expected in ("image_classification", "1910.03151", "MIT", "25,557,112", "4.089 G", "(3, 224, 224)",
                     "recipe paper", "SGD(lr 0.1, momentum 0.9, weight_decay 0.0001)", "official_in1k", "layer4"):
        assert expected in out


def test_unknown_model_exits_with_suggestions(capsys):
    assert main(["train", "vision/eca_resnt50"]) == 1
    assert "did you mean vision/eca_resnet50" in capsys.readouterr().err
    assert main(["info", "vision/halo"]) == 1


def test_print_config_resolves_the_recipe_and_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "vision/eca_resnet18", "--optimizer.lr", "0.01", "--data.batch_size", "16", "--print_config"])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["model"] == "vision/eca_resnet18"
    assert config["optimizer"]["init_args"]["lr"] == 0.01
    assert config["data"]["init_args"]["batch_size"] == 16
    assert config["data"]["init_args"]["dataset"] == "auto"  # digits unless --data.root is given
    assert config["trainer"]["logger"]["class_path"] == "zoo.tracking.ZooMLFlowLogger"


def test_paper_recipe_and_timm_optimizers_parse(capsys):
    for extra, optimizer in ((["--recipe", "paper"], "torch.optim.SGD"), (["--optimizer", "timm.optim.Lamb"],
                             "timm.optim.Lamb"), (["--optimizer", "timm.optim.Lars"], "timm.optim.Lars")):
        with pytest.raises(SystemExit):
            main(["train", "vision/eca_resnet50", *extra, "--print_config"])
        config = yaml.safe_load(capsys.readouterr().out)
        assert config["optimizer"]["class_path"] == optimizer, extra
    assert main(["train", "vision/eca_resnet50", "--recipe", "fast"]) == 1


def test_training_run_reports_and_learns(trained_run):
    assert trained_run.exit_code == 0
    out = trained_run.output
    assert "zoo ui" in out and trained_run.run_id in out and "best.ckpt" in out and "last.ckpt" in out
    # not a terminal here: one plain line per epoch, and the model and data lines before training
    assert "epoch 1/" in out and "val/acc" in out.split("epoch 1/", 1)[1].splitlines()[0]
    assert "model: vision/eca_resnet18, " in out and "data: image folder " in out
    assert "v_num" not in out and "litlogger" not in out
    metrics = trained_run.run.data.metrics
    assert metrics["test/acc"] > 0.6, metrics  # 10 classes: chance is 0.1


def test_validate_test_and_predict_from_a_checkpoint(trained_run, tmp_path, capsys):
    assert main(["test", "--ckpt", trained_run.best, "--trainer.logger", "false"]) == 0
    assert "test/acc" in capsys.readouterr().out
    assert main(["validate", "vision/eca_resnet18", "--ckpt", trained_run.best, "--trainer.logger", "false"]) == 0
    # the best checkpoint scores on the (seeded, so the same) validation split what training reported for it
    monitor, best = re.search(r"best (\S+): ([0-9.]+)", trained_run.output).groups()
    validated = re.search(rf"{re.escape(monitor)}\W+([0-9.]+)", capsys.readouterr().out)
    assert validated is not None and float(validated.group(1)) == pytest.approx(float(best), abs=1e-3), monitor
    output = tmp_path / "predictions.csv"
    assert main(["predict", "--ckpt", trained_run.best, "--data.predict_path", str(trained_run.root / "digits"),
                 "--output", str(output), "--trainer.logger", "false"]) == 0
    rows = list(csv.DictReader(output.open()))
    assert len(rows) == 600 and set(rows[0]) == {"input", "label", "score", "top5"}
    correct = sum(row["label"] == row["input"].split("/")[-2] for row in rows)
    assert correct / len(rows) > 0.6
    assert main(["test", "vision/eca_resnet34", "--ckpt", trained_run.best]) == 1  # wrong model for the ckpt


def test_checkpoint_loads_as_a_plain_model(trained_run):
    model = zoo.create_model("vision/eca_resnet18", pretrained=trained_run.best).eval()
    assert model.fc.out_features == 10
    state = torch.load(trained_run.best, weights_only=True)["state_dict"]
    torch.testing.assert_close(model.fc.weight, state["model.fc.weight"])


def test_missing_arguments_are_explained(capsys):
    assert main(["train"]) == 1
    assert "needs a model id" in capsys.readouterr().err
    assert main(["predict", "vision/eca_resnet18"]) == 1
    assert "needs --ckpt" in capsys.readouterr().err
    assert main(["test", "--ckpt", "nope.ckpt"]) == 1
    assert "no such checkpoint" in capsys.readouterr().err


def test_a_checkpoint_records_the_task_kind_and_the_model_that_rebuilds_it(trained_run):
    record = torch.load(trained_run.best, weights_only=True)["zoo"]
    assert record["task"] == zoo.get_card(record["model"]["model_id"]).task == "image_classification"


def test_explain_writes_the_heat_map_over_the_image(trained_run, tmp_path, capsys):
    from PIL import Image

    image = sorted((trained_run.root / "digits" / "digit_3").glob("*.png"))[0]
    output = tmp_path / "cam.png"
    assert main(["explain", "--ckpt", trained_run.best, "--image", str(image), "--output", str(output),
                 "--target", "digit_3", "--layer", "layer2"]) == 0
    assert "Grad-CAM of class digit_3" in capsys.readouterr().out
    with Image.open(output) as picture:
        assert picture.mode == "RGB" and min(picture.size) >= 256
    assert main(["explain", "--ckpt", trained_run.best, "--image", str(image), "--target", "cat"]) == 1
    assert "unknown class 'cat'" in capsys.readouterr().err


def test_ui_serves_the_same_store(tmp_path):
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    zoo_command = [sys.executable, "-c", "import sys; from zoo.cli import main; sys.exit(main())"]
    server = subprocess.Popen([*zoo_command, "ui", "--port", str(port)], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        assert f"sqlite:///{tmp_path}/mlflow.db" in server.stdout.readline()
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    assert response.status == 200
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("zoo ui did not start")
        assert (tmp_path / "mlflow.db").exists()  # the UI opened the store in the working directory
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_runs_use_deterministic_algorithms_that_warn(capsys):
    """README: torch's deterministic algorithms are on, ops without a deterministic kernel warn (not fail)."""
    with pytest.raises(SystemExit):
        main(["train", "vision/eca_resnet18", "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["trainer"]["deterministic"] == "warn"


def test_halonet_quick_start_is_upscaled_to_256_px(capsys):
    """README: HaloNet's digits quick start is upscaled to 256 px (its halo blocks need multiples of 256)."""
    with pytest.raises(SystemExit):
        main(["train", "vision/halonet26t", "--print_config"])
    assert yaml.safe_load(capsys.readouterr().out)["data"]["init_args"]["image_size"] == 256
