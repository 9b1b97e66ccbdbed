"""The precision ``zoo train`` picks when none is given (bf16 autocast where the CPU has native bf16 and the model
enough arithmetic, fp32 elsewhere), that an explicit ``--trainer.precision`` wins, and the compile switch: compiled
where it works, eager with the reason where it does not, state-dict keys unchanged."""

from __future__ import annotations

import copy

import pytest
import torch
from jsonargparse import Namespace
from torch import nn

from zoo.precision import MIN_MACS, cpu_bf16_flags, default_precision
from zoo.runner import resolve_precision
from zoo.tasks.compiling import compile_model

FLAGS = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {extra}\nbogomips\t: 4000\n"


@pytest.fixture
def cpuinfo(tmp_path):
    def write(extra: str):
        path = tmp_path / "cpuinfo"
        path.write_text(FLAGS.format(extra=extra))
        return path
    return write


def test_bf16_on_a_cpu_with_native_bf16(cpuinfo):
    for extra, flags in (("avx512_bf16", ["avx512_bf16"]), ("amx_tile amx_bf16", ["amx_bf16"])):
        assert cpu_bf16_flags(cpuinfo(extra)) == flags
        choice = default_precision(4e9, "cpu", cpuinfo(extra))
        assert choice.precision == "bf16-mixed"
        assert flags[0] in choice.reason


def test_fp32_on_a_cpu_without_bf16_or_without_cpuinfo(cpuinfo, tmp_path):
    assert default_precision(4e9, "cpu", cpuinfo("avx512_vnni")).precision == "32-true"
    choice = default_precision(4e9, "cpu", tmp_path / "absent")  # macOS / Windows: no /proc/cpuinfo
    assert choice.precision == "32-true" and "no native bf16" in choice.reason


def test_fp32_for_models_with_too_little_arithmetic(cpuinfo):
    small = default_precision(MIN_MACS / 2, "cpu", cpuinfo("avx512_bf16"))
    unknown = default_precision(None, "cpu", cpuinfo("avx512_bf16"))
    assert small.precision == unknown.precision == "32-true"
    assert "MMACs" in small.reason and "does not give its MACs" in unknown.reason


def test_fp32_on_a_cpu_for_a_model_that_bf16_slows_down(cpuinfo):
    choice = default_precision(3e8, "cpu", cpuinfo("avx512_bf16"), cpu_bf16=False)
    assert choice.precision == "32-true" and "measured slower" in choice.reason
    config = _config(model="vision/eca_mobilenet_v2")  # its card: bf16 took 1.11x longer on this CPU
    resolve_precision(config)
    assert config.trainer.precision == "32-true"


def _config(precision=None, model="vision/eca_resnet50"):
    return Namespace(trainer=Namespace(precision=precision, accelerator="cpu"), model=Namespace(model=model))


def test_resolve_precision_fills_an_unset_precision_only():
    config = _config()
    why = resolve_precision(config)
    expected = default_precision(4.09e9, "cpu")
    assert config.trainer.precision == expected.precision and expected.reason in why
    given = _config("32-true")  # `--trainer.precision 32-true` turns mixed precision off
    assert resolve_precision(given) is None and given.trainer.precision == "32-true"
    tiny = _config(model="tabular/mlp")
    resolve_precision(tiny)
    assert tiny.trainer.precision == "32-true"


# --- compile ---------------------------------------------------------------------------------------------------------
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x).relu()


class Loopy(Tiny):
    compile_unsupported = "a loop over time"


def test_compiled_model_gives_the_eager_output_and_keeps_its_keys():
    torch.manual_seed(0)
    model, x = Tiny(), torch.randn(5, 4)
    expected, keys = model(x), list(model.state_dict())
    line = compile_model(model, "tiny", backend="eager")  # Dynamo traces; no C++ compiler needed
    assert "compiled with torch.compile" in line
    torch.testing.assert_close(model(x), expected)
    assert model._compiled_call_impl.failed is None
    assert list(model.state_dict()) == keys
    assert copy.deepcopy(model)._compiled_call_impl is None  # an EMA copy runs eager


def test_what_cannot_compile_stays_eager_and_says_why():
    model = nn.Sequential(Loopy())
    line = compile_model(model, "loopy")
    assert "stays eager" in line and "0: a loop over time" in line and model._compiled_call_impl is None
    line = compile_model(Tiny(), "padded", dynamic_shapes="batches are padded to their longest sequence")
    assert "stays eager" in line and "padded to their longest" in line


def test_a_compile_failure_falls_back_to_eager_with_one_line(capsys):
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler found")

    torch.manual_seed(0)
    model, x = Tiny(), torch.randn(5, 4)
    expected = model(x)
    compile_model(model, "tiny", backend=broken_backend)
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(model(x), expected)
    err = capsys.readouterr().err
    assert err.count("torch.compile of tiny failed, running eager") == 1 and "no C++ compiler found" in err


def test_a_models_own_error_is_not_hidden_by_the_fallback():
    model = Tiny()
    compile_model(model, "tiny", backend="eager")
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        model(torch.randn(5, 7))


def test_zoo_train_applies_the_choice_and_an_explicit_precision_turns_it_off():
    from zoo.cli import _recipe_args
    from zoo.registry import get_card
    from zoo.runner import RunSummary, ZooCLI
    from zoo.tasks.registry import get_task_class

    def summary(*flags):
        args = [*_recipe_args("vision/eca_resnet18", None), "--model.model", "vision/eca_resnet18",
                "--trainer.logger", "false", *flags]
        cli = ZooCLI(get_task_class("image_classification"), args, run=False)
        return cli.config.trainer.precision, next(c for c in cli.trainer.callbacks if isinstance(c, RunSummary))

    expected = default_precision(get_card("vision/eca_resnet18").macs)
    precision, chosen = summary()
    assert precision == expected.precision and expected.reason in chosen.precision_reason
    precision, given = summary("--trainer.precision", "32-true")
    assert precision == "32-true" and given.precision_reason is None
