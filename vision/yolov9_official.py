"""The official YOLOv9 / GELAN / YOLO9tr checkpoint layout, mapped onto :class:`~zoo.vision.yolo9tr.YOLO9tr`.

The official training scripts (WongKinYiu/yolov9 ``train.py`` / ``train_dual.py``, and Sompote/YOLO9tr's copy)
save a WHOLE pickled ``DetectionModel`` (``{"model": ..., "ema": ..., "optimizer": ..., "opt": ...}``, the
released files in half precision); the hub's safe reader turns it into a state dict without running any of it.
Its parameter names are ``model.<i>.<...>``, ``<i>`` the layer's index in the model yaml. Layouts, by the yaml
(read for facts only; the code is GPL-3.0 and none of it is copied):

- ``gelan-s.yaml`` (also the ``yolov9-s-converted.pt`` deploy file): layers 0-21 (trunk 0-8, neck 9-21) and
  ``DDetect`` at 22 (``cv2`` box, ``cv3`` class, ``dfl``);
- ``yolov9-s.yaml``: the same 0-21, the PGI auxiliary branch (SPPELAN 22, RepNCSPELAN4 25 and 28) and
  ``DualDDetect`` at 29 (auxiliary head ``cv2`` / ``cv3`` / ``dfl`` on 28, 25, 22; main head ``cv4`` / ``cv5`` /
  ``dfl2`` on 15, 18, 21);
- ``yolov9tr.yaml``: yolov9-s plus PSA at 29 (on 28), 30 (on 25), 31 (on 22) and ``DualDDetect`` at 32.

The zoo's module names inside a layer are the official ones (``cv1``..``cv5``, ``m``, ``conv1`` / ``conv2`` of
RepConvN, ``conv`` / ``bn`` of a conv unit, PSA's ``attn.qkv`` / ``attn.proj`` / ``attn.pe`` / ``ffn``), so the map
only renames the layer prefix. Keys that the file has and the model has not (the auxiliary branch when loading
yolov9-s into the deploy graph) and keys the model has and the file has not (YOLO9tr's PSA blocks when loading
YOLOv9-s or GELAN-s) are listed in one warning: the former are left out, the latter keep their fresh
initialisation. GELAN-s files have no PGI branch: loaded into a training graph, the branch (SPPELAN, two
RepNCSPELAN4, auxiliary head) starts as a copy of its twins on the main path (SPPELAN 9, RepNCSPELAN4 12 and 15,
the main head), which read the same trunk levels; the warning says so.
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from typing import Any

import torch
from torch import nn

from zoo.errors import CheckpointError

__all__ = ["OFFICIAL_LAYERS", "checkpoint_filter", "is_official_layout", "kwargs_from_checkpoint", "official_layout",
           "to_official_names"]

_TRUNK_AND_NECK = {0: "stem.0", 1: "stem.1", 2: "stem.2", 3: "down3", 4: "stage3", 5: "down4", 6: "stage4",
                   7: "down5", 8: "stage5", 9: "spp", 12: "top4", 15: "out3", 16: "pan_down4", 18: "out4",
                   19: "pan_down5", 21: "out5"}
_AUX_BRANCH = {22: "aux_spp", 25: "aux4", 28: "aux3"}
_SINGLE_HEAD = {"cv2": "head.cv2", "cv3": "head.cv3", "dfl": "head.dfl"}
_DUAL_HEAD = {"cv2": "aux_head.cv2", "cv3": "aux_head.cv3", "dfl": "aux_head.dfl",
              "cv4": "head.cv2", "cv5": "head.cv3", "dfl2": "head.dfl"}

#: layout name -> (official layer index -> zoo module prefix, index of the detect layer, its sub-module map)
OFFICIAL_LAYERS: dict[str, tuple[dict[int, str], int, dict[str, str]]] = {
    "gelan-s": (_TRUNK_AND_NECK, 22, _SINGLE_HEAD),
    "yolov9-s": ({**_TRUNK_AND_NECK, **_AUX_BRANCH}, 29, _DUAL_HEAD),
    "yolov9tr": ({**_TRUNK_AND_NECK, **_AUX_BRANCH, 29: "psa.0", 30: "psa.1", 31: "psa.2"}, 32, _DUAL_HEAD),
}
# the PGI branch re-reads the trunk with the same blocks as the main path's first half: a file without it (GELAN-s)
# starts it as a copy of them, so that its class branch has the file's number of classes like the main one
_PGI_TWINS = {"aux_spp": "spp", "aux4": "top4", "aux3": "out3", "aux_head": "head"}
_LAYER_KEY = re.compile(r"^(\d+)\.(.+)$")
_WRAPPERS = ("model.", "ema.", "module.")


def _layer_keys(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Drop the wrappers in front of ``<i>.<...>`` (``model.`` of DetectionModel, ``ema.``, ``module.``)."""
    out = {}
    for key, value in state_dict.items():
        while key.startswith(_WRAPPERS) and not _LAYER_KEY.match(key):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def is_official_layout(state_dict: dict[str, Any]) -> bool:
    """Whether the keys are the official ``model.<i>.`` ones (else: the zoo's own names)."""
    return any(_LAYER_KEY.match(k) for k in _layer_keys(state_dict)) and not any(k.startswith("stem.")
                                                                                   for k in state_dict)


def official_layout(state_dict: dict[str, Any]) -> str:
    """Which official yaml wrote the file: "gelan-s", "yolov9-s" or "yolov9tr" (read off the detect layer).

    Raises:
        CheckpointError: for a layout of another size (YOLOv9-m/c/e, GELAN-m/c/e: layer 2 is not ELAN-1) or an
            unknown layer list.
    """
    keys = _layer_keys(state_dict)
    layers = {int(m.group(1)) for k in keys if (m := _LAYER_KEY.match(k))}
    if "2.cv2.conv.weight" not in keys:
        raise CheckpointError("an official YOLOv9-family file of another size: its layer 2 is not ELAN-1 "
                              "(YOLOv9-m/c/e and GELAN-m/c/e use other blocks); vision/yolo9tr and vision/gelan_s "
                              "read the s-size layouts (gelan-s.pt, yolov9-s.pt, yolov9-s-converted.pt, "
                              "YOLO9tr's yolov9tr.pt) and, at width 0.5, the t-size ones")
    top = max(layers)
    dual = f"{top}.cv4.0.0.conv.weight" in keys
    psa = f"{top - 1}.attn.qkv.conv.weight" in keys
    for name, (_, head, _) in OFFICIAL_LAYERS.items():
        if head == top and dual == (name != "gelan-s") and psa == (name == "yolov9tr"):
            return name
    raise CheckpointError(f"an official YOLOv9-family file with layers 0..{top} ({'dual' if dual else 'single'} "
                          "head) is none of the known layouts: gelan-s (DDetect at 22), yolov9-s (DualDDetect at "
                          "29), yolov9tr (PSA at 29-31, DualDDetect at 32)")


def _rename(key: str, layers: dict[int, str], head: int, head_map: dict[str, str]) -> str | None:
    m = _LAYER_KEY.match(key)
    if m is None:
        return None
    index, rest = int(m.group(1)), m.group(2)
    if index == head:
        part, _, tail = rest.partition(".")
        return f"{head_map[part]}.{tail}" if part in head_map else None
    return f"{layers[index]}.{rest}" if index in layers else None


def to_official_names(state_dict: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """The inverse map: zoo names -> ``model.<i>.`` names of ``layout`` (for fixtures and export to the official
    code); keys the layout has no place for are left out."""
    layers, head, head_map = OFFICIAL_LAYERS[layout]
    prefixes = {v: f"model.{k}" for k, v in layers.items()}
    prefixes.update({v: f"model.{head}.{k}" for k, v in head_map.items()})
    out = {}
    for key, value in state_dict.items():
        for prefix in sorted(prefixes, key=len, reverse=True):
            if key.startswith(prefix + "."):
                out[prefixes[prefix] + key[len(prefix):]] = value
                break
    return out


def _summary(keys: list[str], state: dict[str, torch.Tensor], head: int) -> str:
    """Keys grouped by module (``psa.0``, ``aux_head``, ``model.22``, ``model.29.cv2``) with their sizes."""
    groups: dict[str, int] = defaultdict(int)
    for key in keys:
        parts = key.split(".")
        depth = 3 if parts[0] == "model" and parts[1] == str(head) else 2 if parts[0] in ("psa", "stem", "model") else 1
        groups[".".join(parts[:depth])] += state[key].numel() if key in state else 0
    return ", ".join(f"{g} ({n:,} values)" for g, n in sorted(groups.items()))


def checkpoint_filter(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """An official ``model.<i>.`` state dict -> the zoo names of ``model`` (zoo state dicts pass unchanged).

    Modules of ``model`` that the file does not hold keep their fresh initialisation, layers of the file that
    ``model`` does not have are left out; both are named in one warning.
    """
    if not is_official_layout(state_dict):
        return state_dict
    layout = official_layout(state_dict)
    layers, head, head_map = OFFICIAL_LAYERS[layout]
    keys = _layer_keys(state_dict)
    own = model.state_dict()
    mapped, unused = {}, []
    for key, value in keys.items():
        name = _rename(key, layers, head, head_map)
        if name is None and not _LAYER_KEY.match(key):
            continue  # not a layer tensor (none are expected)
        if name is None or name not in own:
            unused.append(f"model.{key}")
            continue
        mapped[name] = value.float() if value.is_floating_point() else value
    messages = []
    copied = {k: mapped[_PGI_TWINS[k.split(".")[0]] + k[k.index("."):]] for k in own
              if k not in mapped and k.split(".")[0] in _PGI_TWINS
              and _PGI_TWINS[k.split(".")[0]] + k[k.index("."):] in mapped}
    if copied:
        mapped.update(copied)
        messages.append(f"the PGI branch, which the {layout} file has not, starts as a copy of its main-path twin "
                        + ", ".join(f"{a} <- {b}" for a, b in _PGI_TWINS.items()))
    fresh = sorted(k for k in own if k not in mapped)
    if layout == "yolov9tr" and getattr(model, "psa_placement", "aux") == "main":
        messages.append("the file's PSA blocks (layers 29-31) were trained on the PGI branch; this model puts them "
                        "on the main path (vision/yolo9tr keeps them where they were)")
    if fresh:
        messages.append(f"freshly initialised (not in the {layout} file): {_summary(fresh, own, head)}")
        mapped.update({k: own[k] for k in fresh})
    if unused:
        unused_tensors = {f"model.{k}": v for k, v in keys.items()}
        messages.append(f"left out (no place in {type(model).__name__}"
                        f"{'' if getattr(model, 'has_aux', True) else ', the deploy graph'}): "
                        f"{_summary(sorted(unused), unused_tensors, head)}")
    if messages:
        warnings.warn(f"official {layout} weights: {len(mapped) - len(fresh) - len(copied)} tensors loaded; "
                      + "; ".join(messages), stacklevel=2)
    return mapped


def kwargs_from_checkpoint(state_dict: dict[str, Any]) -> dict[str, Any]:
    """``width`` and ``depth`` of an official or zoo checkpoint: the last trunk stage's width over 256 (exact for
    the widths ``YOLO9tr`` builds) and the RepNBottlenecks per RepNCSP."""
    keys = _layer_keys(state_dict) if is_official_layout(state_dict) else state_dict
    p5, p3 = ("8.cv4.conv.weight", "4.cv2.0.m.") if "8.cv4.conv.weight" in keys else ("stage5.cv4.conv.weight",
                                                                                        "stage3.cv2.0.m.")
    kwargs: dict[str, Any] = {}
    if isinstance(weight := keys.get(p5), torch.Tensor):
        kwargs["width"] = int(weight.shape[0]) / 256
    blocks = {k[len(p3):].split(".", 1)[0] for k in keys if k.startswith(p3)}
    if blocks:
        kwargs["depth"] = len(blocks)
    return kwargs
