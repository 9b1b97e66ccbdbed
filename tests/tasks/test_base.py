"""What every task shares: optimisers and schedules from the config, weight-decay groups, EMA."""

import math

import pytest
import torch
from timm.optim import Lamb, Lars

from zoo.tasks.classification import ClassificationTask
from zoo.tasks.schedules import WarmupCosineLR
from zoo.weights import read_weights


class _FakeTrainer:
    estimated_stepping_batches = 100


def _task(**kwargs) -> ClassificationTask:
    task = ClassificationTask("vision/eca_resnet18", num_classes=4, **kwargs)
    task.trainer = _FakeTrainer()  # only estimated_stepping_batches is read
    return task


@pytest.mark.parametrize(("class_path", "expected"), [("timm.optim.Lamb", Lamb), ("timm.optim.Lars", Lars),
                                                      ("torch.optim.SGD", torch.optim.SGD)])
def test_optimizer_from_config(class_path, expected):
    task = ClassificationTask("vision/eca_resnet18", num_classes=4,
                              optimizer={"class_path": class_path, "init_args": {"lr": 0.05, "weight_decay": 1e-4}})
    optimizer = task.configure_optimizers()
    assert isinstance(optimizer, expected)
    assert optimizer.param_groups[0]["lr"] == 0.05
    loss = task.model(torch.randn(2, 3, 32, 32)).sum()
    loss.backward()
    before = task.model.fc.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, task.model.fc.weight)


def test_weight_decay_groups():
    task = ClassificationTask("vision/eca_resnet18", num_classes=4, decay_norm_and_bias=False)
    decay, no_decay = task.parameter_groups()
    assert no_decay["weight_decay"] == 0.0
    assert all(p.ndim <= 1 for p in no_decay["params"]) and all(p.ndim > 1 for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(task.model.parameters()))
    (everything,) = ClassificationTask("vision/eca_resnet18", num_classes=4).parameter_groups()
    assert len(everything["params"]) == len(list(task.model.parameters()))


def test_step_wise_schedule_gets_total_steps_and_shape():
    task = _task(lr_scheduler={"class_path": "zoo.tasks.schedules.WarmupCosineLR", "init_args": {"warmup_steps": 0.1}},
                 optimizer={"class_path": "torch.optim.SGD", "init_args": {"lr": 1.0}})
    config = task.configure_optimizers()
    scheduler = config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step" and scheduler.total_steps == 100
    lrs = []
    for _ in range(100):
        lrs.append(config["optimizer"].param_groups[0]["lr"])
        config["optimizer"].step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.01) and max(lrs) == pytest.approx(1.0, abs=0.02)
    assert lrs.index(max(lrs)) in (9, 10) and lrs[-1] < 0.01
    assert lrs[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)), abs=1e-6)
    epoch_wise = _task(lr_scheduler={"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 3}})
    assert epoch_wise.configure_optimizers()["lr_scheduler"]["interval"] == "epoch"
    with pytest.raises(ValueError, match="total_steps"):
        WarmupCosineLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0))
    with pytest.raises(ValueError, match="cannot import"):
        _task(optimizer={"class_path": "torch.optim.Adamm"}).configure_optimizers()


def test_ema_evaluates_and_exports_the_average(tmp_path):
    task = ClassificationTask("vision/eca_resnet18", num_classes=4, ema_decay=0.5)
    assert not any(p.requires_grad for p in task.ema.parameters())
    assert all(id(p) not in {id(q) for q in task.ema.parameters()} for g in task.parameter_groups()
               for p in g["params"])
    with torch.no_grad():
        for p in task.model.parameters():
            p.add_(1.0)
    task.ema.update(task.model, step=10)
    shift = (task.ema.module.fc.bias - task.model.fc.bias).abs().mean().item()
    assert shift == pytest.approx(0.5, abs=1e-5)  # halfway with decay 0.5
    assert task.eval_model is task.ema.module
    torch.save({"pytorch-lightning_version": "2.6", "state_dict": task.state_dict(),
                "hyper_parameters": dict(task.hparams), "zoo": task.checkpoint_record()}, tmp_path / "ema.ckpt")
    loaded = read_weights(tmp_path / "ema.ckpt")  # the hub takes the EMA weights the task evaluated
    torch.testing.assert_close(loaded.state_dict["fc.bias"], task.ema.module.fc.bias)
