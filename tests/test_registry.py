"""The registry and the model cards, checked against the real models (as torchvision's extended model tests do)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo.card_index import build_index, load_index
from zoo.cards import README_END, README_START, model_table
from zoo.errors import DuplicateModelError
from zoo.registry import ModelCard, Paper, get_entry, list_models, register_model
from zoo.tasks import task_kinds

ALL_MODELS = list_models()


def test_list_models_patterns_and_natural_order():
    eca = list_models("vision/eca_resnet*")
    assert eca == ["vision/eca_resnet18", "vision/eca_resnet34", "vision/eca_resnet50", "vision/eca_resnet101",
                   "vision/eca_resnet152"]
    assert list_models("vision/eca_resnet*", exclude="*152") == eca[:-1]
    assert list_models("nothing/*") == []


def test_duplicate_id_is_an_error():
    card = zoo.get_card("vision/eca_resnet18")
    with pytest.raises(DuplicateModelError, match="registered twice"):
        register_model("vision/eca_resnet18", card=card)(lambda num_classes=1000: torch.nn.Identity())
    with pytest.raises(ValueError, match="domain/name"):
        register_model("EcaResNet", card=card)


@pytest.mark.parametrize("model_id", ALL_MODELS)
def test_card_is_complete_and_matches_the_model(model_id):
    entry = get_entry(model_id)
    card = entry.card
    assert isinstance(card, ModelCard) and isinstance(card.paper, Paper) and card.paper.title
    assert card.task in task_kinds(), f"{model_id}: no task trains {card.task!r}"
    assert card.license
    for name in card.recipes:
        assert all(path.is_file() for path in entry.recipe_paths(name)), f"{model_id}: recipe {name} is missing"
    try:
        with torch.device("meta"):  # exact counts without allocating the big models
            model = zoo.create_model(model_id)
    except NotImplementedError:  # an initialiser that reads values back cannot run on the meta device
        model = zoo.create_model(model_id)
    assert sum(p.numel() for p in model.parameters()) == card.num_params


def test_readme_model_table_matches_the_registry():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    table = readme.split(README_START)[1].split(README_END)[0].strip()
    assert table == model_table(), "README.md is stale: run `python -m zoo.card_index`"


def test_card_index_is_current():
    """`zoo list` and `zoo info` read the prebuilt index; it must say what the registry says."""
    built = build_index()
    saved = load_index()
    assert saved is not None, "zoo/card_index.json is stale: run `python -m zoo.card_index`"
    assert json.loads(json.dumps(built)) == saved


def test_stale_card_index_falls_back_to_the_registry(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "card_index.json"
    stale.write_text(json.dumps({**build_index(), "fingerprint": "0" * 64}))
    monkeypatch.setattr("zoo.card_index.INDEX_FILE", stale)
    assert load_index(stale) is None
    from zoo.cli import main

    assert main(["list", "eca_mobile"]) == 0
    assert "vision/eca_mobilenet_v2" in capsys.readouterr().out


def test_listing_and_cards_do_not_import_torch():
    code = ("import sys; from zoo.cli import main; main(['list']); main(['info', 'vision/dea_net']); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "vision/eca_resnet50" in result.stdout and "image_restoration" in result.stdout


def test_a_card_must_name_a_registered_task_kind(monkeypatch):
    """The registry is a leaf (it imports no task): a card's kind is checked where its task class is looked up."""
    from dataclasses import replace

    from zoo import registry
    from zoo.errors import UnknownTaskError
    from zoo.tasks import get_task_class, task_class_of

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # the captioner is gone after the test
    card = replace(zoo.get_card("vision/eca_resnet18"), task="image_captioning")
    register_model("vision/captioner", card=card)(lambda num_classes=1000: torch.nn.Identity())
    with pytest.raises(UnknownTaskError, match=r"vision/captioner: the card's task 'image_captioning' is not a "
                                                r"registered task kind; known kinds: .*image_classification"):
        task_class_of("vision/captioner")
    with pytest.raises(UnknownTaskError, match="no task trains 'image_captioning'; known task kinds: "):
        get_task_class("image_captioning")


def test_a_task_kind_is_registered_once():
    from zoo.tasks.registry import register_task

    with pytest.raises(ValueError, match="task kind 'image_classification' registered twice"):
        register_task("image_classification")(type("OtherTask", (), {}))
