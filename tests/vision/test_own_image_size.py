"""A user's own image folder trained from scratch is seen at the images' own size (median side, rounded up to a
multiple the model takes), not upscaled to the card's 224 px; with pretrained weights the card's size stays; a
--data.image_size flag always wins."""

import pytest
import torch
from zoo.data.images import median_image_side

import zoo
from zoo.cli import _recipe_args
from zoo.registry import get_card
from zoo.runner import RunSummary, ZooCLI
from zoo.tasks.registry import get_task_class


def _cli(model_id, *flags):
    args = [*_recipe_args(model_id, None), "--model.model", model_id, "--trainer.logger", "false", *flags]
    return ZooCLI(get_task_class(get_card(model_id).task), args, run=False)


def test_median_side_of_a_folder(make_digit_folder, tmp_path):
    root = make_digit_folder(tmp_path / "small", classes=(0, 1), per_class=5, size=28)
    (root / "digit_1" / "notes.txt").write_text("not an image")
    assert median_image_side(root) == 28


def test_28px_images_from_scratch_train_at_32_px_and_the_data_line_says_so(make_digit_folder, tmp_path, capsys):
    root = make_digit_folder(tmp_path / "fashion", classes=(0, 1, 2), per_class=12, size=28)
    cli = _cli("vision/eca_resnet18", "--data.root", str(root))
    assert cli.datamodule.hparams.image_size == 32  # the card's input is 224
    assert "for your own images at their own size (no pretrained weights): image_size 32" in capsys.readouterr().out
    summary = next(c for c in cli.trainer.callbacks if isinstance(c, RunSummary))
    assert summary.data_note == "your images' own size: median side 28 px, rounded up to a multiple of 32, as no " \
                                "pretrained weights are used"


def test_the_model_size_rule_rounds_up(make_digit_folder, tmp_path):
    root = make_digit_folder(tmp_path / "odd", classes=(0, 1), per_class=12, size=70)
    assert _cli("vision/eca_resnet18", "--data.root", str(root)).datamodule.hparams.image_size == 96
    # HaloNet's recipe fixes the size its halo blocks take (256 px), and a recipe's value wins over the images'
    assert _cli("vision/halonet26t", "--data.root", str(root)).datamodule.hparams.image_size == 256


def test_pretrained_weights_and_an_explicit_size_keep_their_size(make_digit_folder, tmp_path):
    root = make_digit_folder(tmp_path / "fashion", classes=(0, 1, 2), per_class=12, size=28)
    weights = tmp_path / "my_weights.pth"
    torch.save({"state_dict": zoo.create_model("vision/eca_resnet18").state_dict()}, weights)
    assert _cli("vision/eca_resnet18", "--data.root", str(root), "--model.pretrained",
                str(weights)).datamodule.hparams.image_size == 224
    assert _cli("vision/eca_resnet18", "--data.root", str(root), "--data.image_size",
                "48").datamodule.hparams.image_size == 48


@pytest.mark.parametrize("size", [300])
def test_large_images_stay_at_the_cards_size(make_digit_folder, tmp_path, size):
    root = make_digit_folder(tmp_path / "large", classes=(0, 1), per_class=12, size=size)
    assert _cli("vision/eca_resnet18", "--data.root", str(root)).datamodule.hparams.image_size == 224
