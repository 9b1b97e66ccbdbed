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


def _task_flags(model_id: str) -> dict[str, str]:
    """``--model.X`` flag -> its help text, from the task section of ``zoo train MODEL --help``."""
    from zoo.cli import model_help

    text = model_help("train", model_id, None)
    section = text.split("task flags", 1)[1].split("\n\n", 1)[0]
    flags = {}
    for line in section.splitlines()[1:]:
        match = re.match(r"\s+--model\.(\w+) (?:required|= .*?)(?:   (.*))?$", line)
        assert match, line
        flags[match.group(1)] = match.group(2) or ""
    return flags


def test_each_kind_is_offered_only_the_task_flags_that_apply_to_it():
    image, audio, lob = (_task_flags(m) for m in ("vision/eca_resnet18", "audio/ssast_tiny_patch", "finance/tlob"))
    mixing = {"mixup_alpha", "cutmix_alpha", "mix_prob", "mix_switch_prob"}
    assert mixing | {"explain_images", "label_smoothing", "ema_decay"} <= set(image)
    # order-book windows: no mixing, no Grad-CAM; spectrograms: Mixup (the SSAST recipes use it) but no CutMix
    # boxes and no Grad-CAM layer on the card
    assert not (mixing | {"explain_images"}) & set(lob) and {"label_smoothing", "ema_decay"} <= set(lob)
    assert {"mixup_alpha", "mix_prob"} <= set(audio)
    assert not {"cutmix_alpha", "mix_switch_prob", "explain_images"} & set(audio)


def test_a_flag_that_does_not_apply_is_refused_naming_why():
    from zoo.tasks.classification import ClassificationTask
    from zoo.tasks.lob import LOBTrendTask

    with pytest.raises(ValueError, match=r"--model.mixup_alpha does not apply to finance/tlob: .*order-book"):
        LOBTrendTask("finance/tlob", mixup_alpha=0.2, model_kwargs={"seq_len": 8, "num_layers": 1})
    with pytest.raises(ValueError, match=r"--model.cutmix_alpha does not apply to audio/ssast_tiny_patch: CutMix"):
        ClassificationTask("audio/ssast_tiny_patch", num_classes=3, cutmix_alpha=1.0)


def test_help_lines_give_the_whole_description():
    """Args entries that run over several docstring lines are shown whole, and an entry naming two arguments
    ("mixup_alpha / cutmix_alpha:") describes both."""
    image = _task_flags("vision/eca_resnet18")
    assert image["explain_images"].endswith("(for models whose card names a Grad-CAM layer; 0 turns it off).")
    assert image["decay_norm_and_bias"].endswith("and none to the model's ``no_weight_decay()`` names.")
    assert image["cutmix_alpha"] == image["mixup_alpha"] and image["mixup_alpha"].endswith(
        "(CutMix with ``mix_switch_prob``).")
    assert "**kwargs" not in image["explain_images"]  # the next entry is not run into the previous one


def test_explain_defaults_to_the_cards_layer_and_names_a_finer_one_at_small_inputs(trained_run, tmp_path, capsys):
    """ECA-ResNet's card names layer4; at the run's 16 px its map is 1x1, and the line says which layer is finer."""
    image = sorted((trained_run.root / "digits" / "digit_3").glob("*.png"))[0]
    assert zoo.get_card("vision/eca_resnet18").target_layer == "layer4"
    assert main(["explain", "--ckpt", trained_run.best, "--image", str(image), "--output",
                 str(tmp_path / "cam.png")]) == 0
    out = capsys.readouterr().out
    assert "at layer layer4 over the 16px" in out
    assert re.search(r"note: at 16 px the card's layer layer4 gives a map under 7x7.*--layer \w+ gives a finer one",
                     out)
