"""``--model.compile true``: the model's forward through ``torch.compile``, where it works, and eager where not.

:func:`compile_model` compiles the module in place (``nn.Module.compile``: the state-dict keys stay the same, so
checkpoints and weight sets are unaffected) unless something is known not to compile, and returns the one line
that says which. Known not to compile (the line names why and the run stays eager):

- a module with a ``compile_unsupported`` attribute (a reason in words): the selective scan of VMamba and the
  Mamba blocks (a Python loop over time inside a custom autograd function, which Dynamo would unroll);
- a task whose batches change shape from batch to batch (``dynamic_shapes``: padded sequences), where every new
  shape would be compiled again.

Anything else that fails while compiling (a Dynamo or Inductor error, no C++ compiler on the machine) is caught at
the call that compiles: that call and all later ones run eager, and one line names the error.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

__all__ = ["compile_model", "compile_unsupported"]


def compile_unsupported(model: nn.Module) -> str | None:
    """Why ``model`` does not compile (the first module that says so), or None."""
    for name, module in model.named_modules():
        reason = getattr(type(module), "compile_unsupported", None)
        if reason:
            return f"{name or type(module).__name__}: {reason}"
    return None


def _first_cause(err: BaseException) -> str:
    """The error under Dynamo's wrappers (a backend's own exception), as "Type: first line"."""
    seen = {id(err)}
    while True:
        inner = getattr(err, "inner_exception", None) or err.__cause__
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        err = inner
    first = (str(err).strip().splitlines() or [""])[0][:200]
    return f"{type(err).__name__}: {first}"


class _CompiledCall:
    """The module's call through torch.compile, until a compile error: from then on eager (the error named once).

    Held by the module itself (``nn.Module.compile`` stores its compiled call the same way)."""

    def __init__(self, module: nn.Module, label: str, **options: Any):
        self.module = module
        self.label = label
        self.compiled = torch.compile(module._call_impl, **options)
        self.failed: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as err:  # a compile error, or the model's own: eager tells which
                output = self.module._call_impl(*args, **kwargs)  # raises the model's own error again
                self.failed = _first_cause(err)
                print(f"model: torch.compile of {self.label} failed, running eager ({self.failed})",
                      file=sys.stderr, flush=True)
                return output
        return self.module._call_impl(*args, **kwargs)

    def __deepcopy__(self, memo: dict) -> None:
        return None  # a copy of the module (an EMA copy, say) runs eager: this call belongs to the original


def compile_model(model: nn.Module, label: str, dynamic_shapes: str | None = None, **options: Any) -> str:
    """Compile ``model`` in place where it works; returns the line that says what was done.

    Args:
        model: the module; its ``state_dict`` keys do not change.
        label: how the line names it (the model id).
        dynamic_shapes: why the task's batches change shape (None: they do not), which keeps the model eager.
        **options: ``torch.compile`` options (``mode``, ``fullgraph``, ...).
    """
    why_not = compile_unsupported(model) or dynamic_shapes
    if why_not:
        return f"model: {label} stays eager, not compiled ({why_not})"
    model._compiled_call_impl = _CompiledCall(model, label, **options)
    return f"model: {label} compiled with torch.compile (the first steps take longer while it compiles)"
