"""Fine-tuning from a weight set prepares the data as the weights were trained (the card's preprocessing), unless
the command line says otherwise; the evaluation transform follows the crop and filter it names."""

import albumentations as A
import numpy as np
import pytest
import timm
import torch
from zoo.data.images import image_transform

import zoo
from zoo.cli import _recipe_args
from zoo.registry import get_card, list_models
from zoo.runner import ZooCLI
from zoo.tasks.registry import get_task_class


def _official_eca_file(tmp_path):
    """A file in the official ECA release layout (DataParallel ``module.`` keys under "state_dict"), named as the
    release names it, so the source is recognised as the card's weight set."""
    model = zoo.create_model("vision/eca_resnet18")
    path = tmp_path / get_card("vision/eca_resnet18").weight_set("official_in1k").file_name
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    return path


def _built_data(model_id, *flags):
    args = [*_recipe_args(model_id, None), "--model.model", model_id, "--trainer.logger", "false", *flags]
    cli = ZooCLI(get_task_class(get_card(model_id).task), args, run=False)
    return cli.datamodule.hparams


def test_fine_tuning_from_official_weights_takes_their_preprocessing(tmp_path, capsys):
    path = _official_eca_file(tmp_path)
    quickstart = _built_data("vision/eca_resnet18")
    assert quickstart.image_size != 224  # the digits quick start's own size
    adopted = _built_data("vision/eca_resnet18", "--model.pretrained", str(path))
    assert (adopted.image_size, adopted.interpolation, adopted.crop_pct) == (224, "bilinear", 224 / 256)
    assert tuple(adopted.mean) == (0.485, 0.456, 0.406)
    assert "as the 'official_in1k' weights were trained: image_size 224" in capsys.readouterr().out
    kept = _built_data("vision/eca_resnet18", "--model.pretrained", str(path), "--data.image_size", "64")
    assert (kept.image_size, kept.interpolation) == (64, "bilinear")


def test_other_sources_keep_the_recipe(tmp_path):
    model = zoo.create_model("vision/eca_resnet18")
    path = tmp_path / "my_weights.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    assert _built_data("vision/eca_resnet18", "--model.pretrained", str(path)).interpolation is None


@pytest.mark.parametrize("model_id", [m for m in list_models("vision/*halonet*") if get_card(m).weights])
def test_halonet_weight_preprocessing_is_timms_pretrained_config(model_id):
    weights = get_card(model_id).weights
    for w in weights:
        name = w.url.split("/timm/", 1)[1].split("/", 1)[0]
        cfg = timm.models.get_pretrained_cfg(name).to_dict()
        p = w.preprocessing
        assert (p.input_size, p.interpolation, p.crop_pct, p.mean, p.std) == (
            cfg["input_size"][-1], cfg["interpolation"], cfg["crop_pct"], cfg["mean"], cfg["std"])


def test_evaluation_crop_and_filter_follow_the_arguments():
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    mean, std = (0.5,) * 3, (0.5,) * 3
    out = image_transform(224, "imagenet", mean, std, train=False, crop_pct=0.95, interpolation="bicubic")
    reference = A.Compose([A.SmallestMaxSize(max_size=round(224 / 0.95), interpolation=2), A.CenterCrop(224, 224)])
    expected = (reference(image=image)["image"] / 255.0 - 0.5) / 0.5
    assert torch.allclose(out(image=image)["image"], torch.from_numpy(expected).permute(2, 0, 1).float(), atol=1e-5)
    default = image_transform(224, "imagenet", mean, std, train=False)(image=image)["image"]
    assert not torch.allclose(out(image=image)["image"], default)
    with pytest.raises(Exception, match="crop_pct must lie in"):
        image_transform(224, "imagenet", mean, std, train=False, crop_pct=1.5)


def test_zoo_info_shows_how_the_weights_want_their_inputs(capsys):
    from zoo.cli import main

    assert main(["info", "vision/halonet26t"]) == 0
    assert "inputs 256 px bicubic, crop 0.95, mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]" in \
        capsys.readouterr().out
