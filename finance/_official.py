"""Reading the official TLOB repository's Lightning checkpoints without running their pickles.

The official ``Engine`` checkpoints (LeonardoBerti00/TLOB, ``data/checkpoints/*/pt/*.pt`` and the FI-2010
``.ckpt`` files) pickle their Hydra/OmegaConf configuration and the project's enums in ``hyper_parameters``, so
``torch.load(weights_only=True)`` refuses them and a plain ``torch.load`` would need the project's ``config`` and
``constants`` modules importable (and would run whatever the pickle asks). Here every one of those names is
rebuilt as an inert stand-in that only stores its arguments (also registered with ``zoo.weights.register_safe_global``),
and :func:`read_official_checkpoint` returns the weights (``state_dict``, keys under ``model.``).
"""

from __future__ import annotations

import pickle
import typing
from pathlib import Path
from typing import Any

import torch

from zoo.errors import CheckpointError
from zoo.weights import register_safe_global


class OfficialConfigStandIn:
    """Stands in for a pickled OmegaConf node, Hydra dataclass or project enum: keeps its arguments, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _plain_dict(*args: Any, **kwargs: Any) -> dict:
    """``collections.defaultdict`` (OmegaConf metadata) read back as a plain dict."""
    return {}


OFFICIAL_CONFIG_NAMES = (
    "config.config.Config", "config.config.Model", "config.config.MLPLOB", "config.config.TLOB",
    "config.config.BiNCTABL", "config.config.DeepLOB", "config.config.Dataset", "config.config.FI_2010",
    "config.config.LOBSTER", "config.config.BTC", "config.config.Experiment",
    "constants.DatasetType", "constants.ModelType", "constants.SamplingType",
    "omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig", "omegaconf.base.Metadata",
    "omegaconf.base.ContainerMetadata", "omegaconf.nodes.AnyNode", "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode", "omegaconf.nodes.StringNode", "omegaconf.nodes.BooleanNode",
    "omegaconf.nodes.EnumNode", "typing.Any",
)


_REGISTERED = False
_STAND_INS: list[Any] = []


def register_official_checkpoint_globals() -> None:
    """Let ``zoo.weights`` read the official TLOB/MLPLOB/DeepLOB checkpoints (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    _STAND_INS.extend((type(name.rpartition(".")[2], (OfficialConfigStandIn,), {}), name)
                      for name in OFFICIAL_CONFIG_NAMES)
    _STAND_INS.append((_plain_dict, "collections.defaultdict"))
    _STAND_INS.extend((builtin, f"builtins.{builtin.__name__}") for builtin in (dict, list, int, str, bool, float))
    _STAND_INS.extend((getattr(typing, alias), f"typing.{alias}") for alias in ("List", "Dict"))
    for stand_in, name in _STAND_INS:
        register_safe_global(stand_in, name)


def read_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The model weights of an official TLOB-repository Lightning checkpoint (keys under ``model.``, prefix
    removed), read with ``weights_only=True`` and the configuration objects rebuilt as inert stand-ins.

    Save them with ``torch.save(state_dict, "weights.pt")`` (or safetensors) to pass as ``pretrained=``.

    Raises:
        CheckpointError: the file is missing, unreadable, or holds no ``model.`` weights.
    """
    path = Path(path)
    register_official_checkpoint_globals()
    try:
        with torch.serialization.safe_globals(_STAND_INS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as err:
        raise CheckpointError(f"{path}: not a readable official TLOB checkpoint: {str(err).splitlines()[0]}") from None
    state_dict = obj.get("state_dict") if isinstance(obj, dict) else None
    weights = {k[len("model."):]: v for k, v in (state_dict or {}).items()
               if k.startswith("model.") and isinstance(v, torch.Tensor)}
    if not weights:
        raise CheckpointError(f"{path}: no model weights (no 'state_dict' entries under 'model.')")
    return weights
