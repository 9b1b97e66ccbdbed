"""Under bf16 autocast (the default ``zoo train`` precision on CPUs and GPUs with native bf16) every risky loss gives
what it gives in fp32: the Cox partial likelihood, SSAST's InfoNCE, the YOLO detection loss and its DFL box decoding,
the selective scan; a task's model hands its outputs over in float32, so losses and metrics never see bf16."""

from __future__ import annotations

import pytest
import torch

from zoo.blocks.detection import DetectionLoss, decode_levels
from zoo.blocks.selective_scan import selective_scan
from zoo.tasks import survival_metrics as sm
from zoo.tasks.base import outputs_in_fp32
from zoo.tasks.masked_pretraining import info_nce
from zoo.tasks.registry import get_task_class

torch.set_num_threads(1)


def bf16(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` under CPU bf16 autocast, as Lightning's ``bf16-mixed`` runs a step."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return fn(*args, **kwargs)


def test_cox_loss_under_autocast_equals_fp32():
    generator = torch.Generator().manual_seed(0)
    n = 400
    risk = torch.randn(n, generator=generator) * 2
    # many distinct times a few apart: bf16 (8-bit mantissa) would merge them into ties and change the risk sets
    time = 1000.0 + torch.randperm(n, generator=generator).float()
    event = (torch.rand(n, generator=generator) < 0.6).float()
    for ties in ("efron", "breslow"):
        expected = sm.cox_loss(risk, time, event, ties=ties)
        got = bf16(sm.cox_loss, risk, time, event, ties=ties)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_survival_step_keeps_times_in_float32_when_the_model_gives_bf16():
    task = get_task_class("survival")("medical/deepsurv", model_inputs={"in_features": 3}).eval()
    task.model.register_forward_hook(lambda module, args, output: output.bfloat16(), prepend=True)
    generator = torch.Generator().manual_seed(1)
    batch = {"inputs": [torch.randn(64, 3, generator=generator)], "time": 500.0 + torch.arange(64.0),
             "event": torch.ones(64)}
    task.outputs = {"val": []}
    loss = task.step(batch, "val")
    risk = task.model(*batch["inputs"]).squeeze(-1)
    assert risk.dtype == torch.float32  # the task's hook casts what the model gives back
    torch.testing.assert_close(loss, sm.cox_loss(risk, batch["time"], batch["event"]))


def test_info_nce_under_autocast_equals_fp32():
    generator = torch.Generator().manual_seed(0)
    predictions = torch.randn(4, 64, 256, generator=generator) * 3
    targets = torch.randn(4, 64, 256, generator=generator) * 3
    for normalise in ("paper", "official"):
        loss, accuracy = info_nce(predictions, targets, normalise)
        loss16, accuracy16 = bf16(info_nce, predictions, targets, normalise)
        torch.testing.assert_close(loss16, loss, rtol=1e-5, atol=1e-5)
        assert accuracy16 == accuracy


def _heads(generator, batch=2, channels=4 * 16 + 3, sizes=(16, 8, 4)):
    return [[torch.randn(batch, channels, s, s, generator=generator) * 2 for s in sizes] for _ in range(2)]


def test_detection_loss_and_box_decoding_under_autocast_equal_fp32():
    generator = torch.Generator().manual_seed(0)
    heads = _heads(generator)
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 70.0, 50.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[40.0, 30.0, 120.0, 110.0], [3.0, 3.0, 20.0, 24.0]]),
                "labels": torch.tensor([0, 2])}]
    criterion = DetectionLoss(num_classes=3)
    loss, parts = criterion(heads, targets, (0.25, 1.0))
    loss16, parts16 = bf16(criterion, heads, targets, (0.25, 1.0))
    torch.testing.assert_close(parts16, parts, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss16, loss, rtol=1e-5, atol=1e-5)
    boxes = decode_levels(heads[1], [8, 16, 32])
    boxes16 = bf16(decode_levels, heads[1], [8, 16, 32])
    assert boxes16.dtype == torch.float32
    torch.testing.assert_close(boxes16, boxes, rtol=1e-5, atol=1e-4)  # pixels of a 128-px image


def test_yolo_head_dfl_decoding_under_autocast_equals_fp32():
    from zoo.blocks.detection import DFL

    x = torch.randn(2, 4 * 16, 300, generator=torch.Generator().manual_seed(0)) * 3
    dfl = DFL(16)
    torch.testing.assert_close(bf16(dfl, x), dfl(x), rtol=1e-5, atol=1e-5)


def test_selective_scan_under_autocast_equals_fp32():
    generator = torch.Generator().manual_seed(0)
    b, d, n, length = 2, 8, 4, 64
    u, delta = torch.randn(b, d, length, generator=generator), torch.randn(b, d, length, generator=generator)
    A = -torch.rand(d, n, generator=generator) - 0.5
    B, C = torch.randn(b, n, length, generator=generator), torch.randn(b, n, length, generator=generator)
    expected = selective_scan(u, delta, A, B, C, delta_softplus=True)
    got = bf16(selective_scan, u, delta, A, B, C, delta_softplus=True)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_tasks_model_gives_float32_under_autocast_and_the_loss_stays_close():
    torch.manual_seed(0)
    task = get_task_class("image_classification")("vision/eca_resnet18", num_classes=10)
    task.eval()
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        logits = task.model(images)
        logits16 = bf16(task.model, images)
    assert logits16.dtype == torch.float32
    # the network itself runs in bf16: its logits differ by bf16's rounding, not more
    torch.testing.assert_close(logits16, logits, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("container", ["tuple", "list", "dict", "namedtuple"])
def test_outputs_in_fp32_casts_half_tensors_in_any_container(container):
    from collections import namedtuple

    half, whole, index = torch.ones(2, dtype=torch.bfloat16), torch.ones(2, dtype=torch.float64), torch.arange(2)
    pair = namedtuple("pair", "a b c")
    given = {"tuple": (half, whole, index), "list": [half, whole, index],
             "dict": {"a": half, "b": whole, "c": index}, "namedtuple": pair(half, whole, index)}[container]
    got = outputs_in_fp32(given)
    values = list(got.values()) if isinstance(got, dict) else list(got)
    assert type(got) is type(given)
    assert [v.dtype for v in values] == [torch.float32, torch.float64, torch.int64]
