"""The run's optimiser: fused kernels where PyTorch has them, the config's own choice kept otherwise."""

import torch
from torch import nn

from zoo.tasks.optimizers import build_optimizer


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int = 5) -> None:
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(32, 8, generator=generator), torch.randint(0, 3, (32,), generator=generator)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


def test_adamw_gets_the_fused_kernel_and_takes_the_same_steps():
    spec = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01, "weight_decay": 0.05}}
    fused_model, plain_model = _model(), _model()
    fused = build_optimizer(spec, fused_model.parameters())
    assert fused.defaults["fused"] is True
    plain = torch.optim.AdamW(plain_model.parameters(), lr=0.01, weight_decay=0.05, foreach=False)
    _train(fused_model, fused)
    _train(plain_model, plain)
    for a, b in zip(fused_model.parameters(), plain_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_parameter_groups_keep_their_own_settings():
    model = _model()
    groups = [{"params": list(model[0].parameters()), "weight_decay": 0.0}, {"params": list(model[2].parameters())}]
    optimizer = build_optimizer({"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1, "momentum": 0.9}}, groups)
    assert optimizer.defaults["fused"] is True
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 0.0]
    assert optimizer.param_groups[0]["momentum"] == 0.9


def test_a_config_that_chooses_its_kernel_keeps_it():
    model = _model()
    for choice in ({"foreach": True}, {"fused": False}):
        spec = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01, **choice}}
        optimizer = build_optimizer(spec, model.parameters())
        assert not optimizer.defaults.get("fused"), choice


def test_optimizers_without_a_fused_kernel_are_built_as_configured():
    model = _model()
    for class_path in ("torch.optim.RMSprop", "torch.optim.RAdam"):
        optimizer = build_optimizer({"class_path": class_path, "init_args": {"lr": 0.01}}, model.parameters())
        assert type(optimizer).__name__ == class_path.rsplit(".", 1)[1]
        assert "fused" not in optimizer.defaults or not optimizer.defaults["fused"]


def test_arguments_left_at_none_by_the_config_parser_still_get_the_fused_kernel():
    spec = {"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.01, "fused": None, "foreach": None}}
    assert build_optimizer(spec, _model().parameters()).defaults["fused"] is True


def test_a_run_that_clips_gradients_under_mixed_precision_trains_with_the_unfused_step():
    """Lightning's mixed-precision plugin refuses to clip a fused optimiser's gradients (YOLO9tr's recipes clip)."""
    import lightning as L
    from torch.utils.data import DataLoader

    from zoo.tasks.registry import get_task_class

    generator = torch.Generator().manual_seed(0)
    batches = [{"inputs": [torch.randn(32, 3, generator=generator)], "time": 1.0 + torch.rand(32, generator=generator),
                "event": torch.ones(32)} for _ in range(2)]
    for clip, fused in ((1.0, None), (None, True)):
        task = get_task_class("survival")("medical/deepsurv", model_inputs={"in_features": 3})
        trainer = L.Trainer(max_steps=2, precision="bf16-mixed", gradient_clip_val=clip, limit_val_batches=0,
                            logger=False, enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False)
        trainer.fit(task, DataLoader(batches, batch_size=None))
        assert trainer.global_step == 2
        assert trainer.optimizers[0].defaults["fused"] is fused
