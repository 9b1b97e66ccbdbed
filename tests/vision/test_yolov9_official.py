"""Official YOLOv9 / GELAN / YOLO9tr files (whole pickled DetectionModels, ``model.<i>.`` names) load into the zoo's
graphs through the key map, give the head maps of the official-layout graph, say which modules start fresh, and
a new number of classes re-initialises the class branches only. The files are made by
``fixtures/yolov9_official/make_fixtures.py`` (no official code; see its README)."""

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch
from zoo.vision.yolov9_official import checkpoint_filter, kwargs_from_checkpoint, official_layout, to_official_names

import zoo
from zoo.errors import CheckpointError, CheckpointMismatchError
from zoo.weights import classifier_keys

FIXTURES = Path(__file__).parent / "fixtures" / "yolov9_official"


def _fixture_module():
    spec = importlib.util.spec_from_file_location("make_yolov9_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def official_files(tmp_path_factory):
    """layout -> (official-style file, expected {"input", "main", "aux"}), written once per module."""
    make = _fixture_module()
    folder = tmp_path_factory.mktemp("yolov9_official")
    return {layout: make.write(layout, seed, folder) for seed, layout in enumerate(make.LAYOUTS)}


def _load(model_id, path, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = zoo.create_model(model_id, pretrained=str(path), **kwargs).eval()
    return model, " ".join(str(w.message) for w in caught if "official" in str(w.message))


def _heads(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize(("layout", "model_id", "fresh", "left_out"), [
    ("gelan-s", "vision/gelan_s", [], []),
    ("yolov9-s", "vision/yolo9tr", ["psa.0", "psa.1", "psa.2"], []),
    ("yolov9tr", "vision/yolo9tr", [], []),
    ("gelan-s", "vision/yolo9tr", ["psa.0", "psa.1", "psa.2", "aux_head <- head", "aux3 <- out3"], []),
    ("yolov9-s", "vision/gelan_s", [], ["model.22", "model.25", "model.28", "model.29.cv2", "model.29.cv3"]),
])
def test_official_layout_loads_and_matches(official_files, layout, model_id, fresh, left_out):
    path, expected_path = official_files[layout]
    expected = torch.load(expected_path)
    model, message = _load(model_id, path)
    assert model.num_classes == 2 and model.zoo_config["model_kwargs"] == {"width": 0.125, "depth": 1}
    heads = _heads(model, expected["input"])
    for got, want in zip(heads[-1], expected["main"], strict=True):  # the main head: every layer of the file
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    if layout != "gelan-s" and not fresh and model.has_aux:
        for got, want in zip(heads[0], expected["aux"], strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for name in fresh:
        assert (f"{name} (" if "<-" not in name else name) in message, message
    for name in left_out:
        assert f"{name} (" in message, message
    if not fresh and not left_out:
        assert message == ""


def test_new_classes_keep_backbone_and_box_branches(official_files):
    """num_classes=20 (file: 2): every tensor outside the class branches is bit-equal to the plain load; the class
    branches of both heads are new (their width changes too: max(16, 2 * 20) = 40)."""
    path, _ = official_files["yolov9-s"]
    reference, _ = _load("vision/yolo9tr", path)
    torch.manual_seed(0)
    tuned, _ = _load("vision/yolo9tr", path, num_classes=20)
    head = classifier_keys(tuned)
    assert {k.split(".")[0] for k in head} == {"aux_head", "head"} and all(".cv3." in k for k in head)
    ref_sd, new_sd = reference.state_dict(), tuned.state_dict()
    kept = [k for k in new_sd if k not in head and not k.startswith("psa.")]
    assert any(k.startswith("head.cv2.") for k in kept) and any(k.startswith("stage5.") for k in kept)
    for key in kept:
        assert torch.equal(new_sd[key], ref_sd[key]), key
    assert tuned.head.cv3[2][2].weight.shape[0] == 20 and tuned.aux_head.cv3[0][2].weight.shape[0] == 20
    assert tuned.head.cv3[0][0].conv.weight.shape[0] == 40
    assert tuned.zoo_config["num_classes"] == 20
    out = _heads(tuned, torch.rand(1, 3, 64, 64))
    assert out[-1][0].shape[1] == 4 * 16 + 20


def test_yolov9tr_layout_round_trip():
    """zoo names -> official yolov9tr names -> zoo names gives every tensor back (PSA at 29-31, head at 32)."""
    model = zoo.create_model("vision/yolo9tr", num_classes=3, width=0.125, depth=1)
    official = to_official_names(model.state_dict(), "yolov9tr")
    assert official_layout(official) == "yolov9tr"
    assert "model.30.attn.qkv.conv.weight" in official and "model.32.cv5.2.2.weight" in official
    assert kwargs_from_checkpoint(official) == {"width": 0.125, "depth": 1}
    back = checkpoint_filter(official, model)
    assert back.keys() == model.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())


def test_psa_of_a_yolo9tr_file_moved_to_the_main_path_is_said():
    model = zoo.create_model("vision/yolo9tr", num_classes=3, width=0.125, depth=1)
    official = to_official_names(model.state_dict(), "yolov9tr")
    main_psa = zoo.create_model("vision/yolo9tr_psa_main", num_classes=3, width=0.125, depth=1)
    with pytest.warns(UserWarning, match="trained on the PGI branch; this model puts them on the main path"):
        checkpoint_filter(official, main_psa)


def test_other_size_is_a_clear_error(tmp_path):
    """A YOLOv9-c style file (layer 2 is RepNCSPELAN4, not ELAN-1) names the problem instead of listing keys."""
    path = tmp_path / "yolov9-c.pt"
    torch.save({"model.0.conv.weight": torch.zeros(64, 3, 3, 3),
                "model.2.cv2.0.cv1.conv.weight": torch.zeros(64, 64, 1, 1)}, path)
    with pytest.raises(CheckpointError, match="layer 2 is not ELAN-1"):
        zoo.create_model("vision/gelan_s", pretrained=str(path))


def test_unknown_layer_list_is_a_clear_error(tmp_path):
    path = tmp_path / "odd.pt"
    torch.save({"model.2.cv2.conv.weight": torch.zeros(8, 8, 3, 3), "model.25.cv4.0.0.conv.weight": torch.zeros(1)},
               path)
    with pytest.raises(CheckpointError, match="none of the known layouts"):
        zoo.create_model("vision/gelan_s", pretrained=str(path))


def test_mismatched_width_lists_the_shapes(official_files):
    path, _ = official_files["gelan-s"]
    with pytest.raises(CheckpointMismatchError, match=r"does not fit YOLO9tr:\s+\d+ shape mismatches: down3\.cv1"):
        zoo.create_model("vision/gelan_s", pretrained=str(path), width=0.25)


def test_weight_sets_on_the_cards():
    for model_id, names in (("vision/yolo9tr", {"official_yolov9_s_coco", "official_gelan_s_coco"}),
                            ("vision/gelan_s", {"official_yolov9_s_converted_coco", "official_gelan_s_coco"})):
        weights = {w.name: w for w in zoo.get_card(model_id).weights}
        assert set(weights) == names
        for w in weights.values():
            assert w.url.startswith("https://github.com/WongKinYiu/yolov9/releases/download/v0.1/")
            assert w.url.endswith("/" + w.file_name) and w.num_classes == 80
            assert w.sha256 is None and "not hash-checked" in w.description
