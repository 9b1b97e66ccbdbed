"""YOLO9tr: exact parameter counts and GFLOPs of the released configuration, the deploy graph (auxiliary branch
dropped, RepConvN fused) giving the same boxes, decoding + NMS, and clear input errors."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from zoo.vision.yolo9tr import YOLO9tr

import zoo
from zoo.blocks.gelan import RepConvN
from zoo.errors import InputShapeError

# computed from the released yolov9tr.yaml / yolov9-s.yaml / gelan-s.yaml (research notes, vision.md section 5.2)
OFFICIAL_PARAMS = {"vision/yolo9tr": 10_258_880, "vision/yolo9tr_psa_main": 10_258_880, "vision/gelan_s": 7_226_208}


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("model_id", list(OFFICIAL_PARAMS))
def test_parameter_count_matches_official(model_id):
    with torch.device("meta"):
        model = zoo.create_model(model_id)
    assert _count(model) == OFFICIAL_PARAMS[model_id] == zoo.get_card(model_id).num_params


def test_parts_and_class_dependence():
    with torch.device("meta"):
        model = YOLO9tr(80)
        assert _count(model.psa) == 454_368
        assert _count(model.aux_head) - _count(model.aux_head.dfl) == 1_501_872
        assert _count(YOLO9tr(80, psa="none")) == 9_804_512  # YOLOv9-s training graph
        assert _count(YOLO9tr(10)) == 10_204_700 and _count(YOLO9tr(8)) == 10_203_152
        assert [m.attn.num_heads for m in model.psa] == [1, 1, 2]


@pytest.mark.parametrize("model_id", list(OFFICIAL_PARAMS))
def test_card_macs_at_640(model_id):
    """49.6 GFLOPs for the training graph, 26.7 for GELAN-s (FLOPs = 2 MACs), as on the card."""
    card = zoo.get_card(model_id)
    with torch.device("meta"):
        model = zoo.create_model(model_id).eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *card.input_shape))
    assert counter.get_total_flops() // 2 == card.macs
    assert round(2 * card.macs / 1e9, 1) == (26.7 if model_id == "vision/gelan_s" else 49.6)


def _small(psa="aux", num_classes=3):
    torch.manual_seed(0)
    model = YOLO9tr(num_classes, psa=psa, width=0.25, depth=1).eval()
    with torch.no_grad():  # non-trivial BN statistics so that fusion has something to fold
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
        for head in (model.head, model.aux_head):
            for cls in head.cv3:
                cls[-1].bias.fill_(0.0)  # confident enough to keep boxes after NMS
    return model


@pytest.mark.parametrize("psa", ["aux", "main"])
def test_reparameterize_gives_the_same_boxes(psa):
    model = _small(psa)
    x = torch.rand(2, 3, 96, 128)
    heads = model(x)
    assert len(heads) == 2 and [h.shape for h in heads[-1]] == [(2, 67, 12, 16), (2, 67, 6, 8), (2, 67, 3, 4)]
    before = model.predict(x, conf_threshold=0.3)
    decoded = model.decode(heads)
    model.reparameterize()
    assert not hasattr(model, "aux_head") and hasattr(model, "psa") == (psa == "main")
    assert all(m.fused is not None for m in model.modules() if isinstance(m, RepConvN))
    assert len(model(x)) == 1
    torch.testing.assert_close(model.decode(model(x)), decoded, atol=1e-3, rtol=1e-4)
    after = model.predict(x, conf_threshold=0.3)
    for b, a in zip(before, after, strict=True):  # the best boxes (the tail may differ by one at the threshold)
        assert len(b["boxes"]) > 20 and abs(len(a["boxes"]) - len(b["boxes"])) <= 2
        torch.testing.assert_close(a["boxes"][:20], b["boxes"][:20], atol=1e-3, rtol=1e-4)
        assert torch.equal(a["labels"][:20], b["labels"][:20])


def test_predictions_are_boxes_in_pixels():
    model = _small()
    out = model.predict(torch.rand(1, 3, 64, 64), conf_threshold=0.3, max_det=7)[0]
    assert set(out) == {"boxes", "scores", "labels"} and 0 < len(out["boxes"]) <= 7
    assert (out["boxes"][:, 2:] >= out["boxes"][:, :2]).all() and out["labels"].max() < 3
    assert (out["scores"][:-1] >= out["scores"][1:]).all()


def test_reset_classifier_keeps_box_branches():
    model = _small()
    box = model.head.cv2
    model.reset_classifier(5)
    assert model.head.cv2 is box and model.head.cv3[0][-1].out_channels == 5
    assert [h.shape[1] for h in model(torch.rand(1, 3, 64, 64))[-1]] == [69] * 3


def test_bad_input_shapes():
    model = _small()
    with pytest.raises(InputShapeError, match="multiples of 32"):
        model(torch.rand(1, 3, 100, 64))
    with pytest.raises(InputShapeError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="psa"):
        YOLO9tr(3, psa="everywhere")
