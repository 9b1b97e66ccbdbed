"""Pretrained weights: where they come from, how they are read safely, and how they are fitted to a model.

Sources accepted by ``zoo.create_model(..., pretrained=SOURCE)``:

- a weight-set name from the model card (``"official_in1k"``);
- a local file: whatever its suffix, its content says its layout: a zoo run's Lightning checkpoint (it carries
  ``checkpoint["zoo"]``), another project's Lightning checkpoint (the weights under its ``model.`` / ``net.`` /
  ``module.`` attribute), a training script's dict (weights under ``state_dict`` / ``model_state_dict`` /
  ``model`` / ``model_dict`` / ``net``, or the entry a weight set names, e.g. ``model_ema``), a bare state dict
  (with or without the ``module.`` prefix of DataParallel/DDP), a whole pickled ``nn.Module``, ``.safetensors``;
- a folder written by :func:`save_pretrained` (``model.safetensors`` + ``config.json``);
- an ``http(s)`` URL, downloaded once into the cache (``$ZOO_CACHE`` or ``~/.cache/zoo``) and checked against its
  sha256 (from the weight set, a ``#sha256=<hex>`` fragment, or a torch-hub style ``name-<hexprefix>.pth`` name);
- an MLflow URI: ``runs:/<run_id>/<path>``, ``models:/<name>/<version>`` or ``models:/<name>@<alias>``.

Loading never runs pickled code: every torch file goes through :func:`zoo.safe_pickle.read_torch_file`, which
rebuilds allow-listed data types and turns any other object into an inert stand-in. A family maps the official
key names onto its own with the registry's ``checkpoint_filter`` and reads constructor arguments off the file
with ``kwargs_from_checkpoint(state_dict)`` or ``kwargs_from_checkpoint(state_dict, checkpoint)`` (the whole
object the file holds, e.g. a Lightning checkpoint with its ``hyper_parameters``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from zoo.errors import CheckpointError, CheckpointMismatchError, HashMismatchError
from zoo.protocols import Classifier
from zoo.registry import ModelEntry, WeightSet
from zoo.safe_pickle import is_pickled_module, read_torch_file, register_rebuild, state_dict_of_pickled_module

__all__ = [
    "LoadedWeights",
    "download",
    "fit_state_dict",
    "lightning_checkpoint_weights",
    "load_weights",
    "read_torch_file",
    "read_weights",
    "register_safe_global",
    "save_pretrained",
]

TORCH_SUFFIXES = (".pt", ".pth", ".tar", ".bin", ".ckpt")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# where a training script's dict keeps the weights, tried in this order (an EMA copy only when asked for by name)
WEIGHT_ENTRIES = ("state_dict", "model_state_dict", "model", "model_dict", "net", "network")
# the attribute of a foreign LightningModule that holds the network, tried in this order
LIGHTNING_MODEL_ATTRIBUTES = ("model", "net", "network", "module")
CONFIG_NAME, WEIGHTS_NAME, CARD_NAME = "config.json", "model.safetensors", "README.md"


@dataclass
class LoadedWeights:
    """A state dict and what is known about the model it belongs to.

    Attributes:
        state_dict: parameter name -> tensor, wrapper prefixes removed.
        source: where it came from, for messages.
        model_id: the zoo id recorded with the weights (zoo checkpoints and folders), if any.
        model_kwargs: constructor arguments recorded with the weights.
        num_classes: head size recorded with the weights, if any.
        checkpoint: the whole object the file holds (configuration, hyper-parameters, ... beside the weights,
            unknown classes as inert ``zoo.safe_pickle.PickledObject`` stand-ins); empty for safetensors.
    """

    state_dict: dict[str, torch.Tensor]
    source: str
    model_id: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None
    checkpoint: dict[str, Any] = field(default_factory=dict, repr=False)


def cache_dir() -> Path:
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo")) / "hub"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _expected_hash(url: str, sha256: str | None) -> str | None:
    if sha256:
        return sha256.lower()
    if m := re.search(r"#sha256=([0-9a-fA-F]{64})$", url):
        return m.group(1).lower()
    if m := re.search(r"-([0-9a-f]{8,64})\.[a-z.]+$", url.split("#")[0].rsplit("/", 1)[-1]):
        return m.group(1)  # torch-hub convention: the file name carries a prefix of its sha256
    return None


def _check_hash(path: Path, expected: str | None, url: str) -> None:
    if expected is None:
        return
    actual = sha256_of(path)
    if not actual.startswith(expected):
        path.unlink(missing_ok=True)
        raise HashMismatchError(
            f"sha256 of {url} is {actual}, expected {expected}; the file was deleted. "
            "It may be corrupt or not the file the weights were published as."
        )


def download(url: str, sha256: str | None = None, progress: bool = True) -> Path:
    """Download ``url`` into the cache (once) and return the local path, refusing a file whose sha256 differs.

    A cached file is hashed again on every use when a hash is known, unlike torch.hub.
    """
    clean_url = url.split("#")[0]
    name = clean_url.rstrip("/").rsplit("/", 1)[-1] or "weights"
    target = cache_dir() / hashlib.sha256(clean_url.encode()).hexdigest()[:16] / name
    expected = _expected_hash(url, sha256)
    if target.exists():
        _check_hash(target, expected, url)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(clean_url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp, tqdm(
                total=total, unit="B", unit_scale=True, desc=name, disable=not progress
            ) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    tmp.write(chunk)
                    bar.update(len(chunk))
    except OSError as err:
        raise CheckpointError(f"could not download {clean_url}: {err}") from err
    Path(tmp.name).replace(target)
    _check_hash(target, expected, url)
    return target


def _strip_wrappers(state_dict: dict[str, Any]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            continue
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def register_safe_global(stand_in: type, qualified_name: str) -> None:
    """Rebuild ``qualified_name`` as ``stand_in`` when a checkpoint is read (see
    :func:`zoo.safe_pickle.register_rebuild`); any other unknown class is read as an inert stand-in anyway."""
    register_rebuild(qualified_name, stand_in)


def _tensors_under(state_dict: dict[str, Any], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix) and isinstance(v, torch.Tensor)}


def lightning_checkpoint_weights(obj: dict[str, Any], source: str, key: str | None = None) -> LoadedWeights:
    """A Lightning checkpoint. A zoo task's carries its ``zoo`` record (model id, arguments, where the weights sit);
    any other is an official one: its network's weights sit under one attribute of its LightningModule (``key``
    when given, e.g. "model_ema", else the first of :data:`LIGHTNING_MODEL_ATTRIBUTES` that holds tensors)."""
    record = obj.get("zoo")
    state_dict = obj["state_dict"]
    if isinstance(record, dict) and isinstance(record.get("model"), dict):
        prefix = record.get("weights_prefix", "model.")
        weights = _tensors_under(state_dict, prefix)
        if not weights:
            raise CheckpointError(f"{source}: a Lightning checkpoint without model weights (no keys under {prefix!r})")
        model = record["model"]
        return LoadedWeights(_strip_wrappers(weights), source, model.get("model_id"),
                             dict(model.get("model_kwargs") or {}), model.get("num_classes"), obj)
    attributes = (key,) if key else LIGHTNING_MODEL_ATTRIBUTES
    for attribute in attributes:
        if weights := _tensors_under(state_dict, attribute + "."):
            return LoadedWeights(_strip_wrappers(weights), source, checkpoint=obj)
    if key:
        found = sorted({k.split(".")[0] for k in state_dict})
        raise CheckpointError(f"{source}: no {key!r} weights in the Lightning checkpoint (its modules: "
                              f"{', '.join(found) or 'none'})")
    return LoadedWeights(_strip_wrappers(state_dict), source, checkpoint=obj)  # a LightningModule that is the network


def _from_folder(folder: Path) -> LoadedWeights:
    weights_file = folder / WEIGHTS_NAME
    if weights_file.exists():
        config = json.loads((folder / CONFIG_NAME).read_text()) if (folder / CONFIG_NAME).exists() else {}
        loaded = read_weights(weights_file)
        loaded.model_id = config.get("model_id")
        loaded.model_kwargs = dict(config.get("model_kwargs") or {})
        loaded.num_classes = config.get("num_classes")
        return loaded
    candidates = [p for p in sorted(folder.rglob("*")) if p.suffix in (".safetensors", *TORCH_SUFFIXES)]
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "nothing loadable"
        raise CheckpointError(f"{folder}: expected {WEIGHTS_NAME} or exactly one checkpoint file, found {found}")
    return read_weights(candidates[0])


def read_weights(path: str | Path, key: str | None = None) -> LoadedWeights:
    """Read a local file or folder into a :class:`LoadedWeights`, safely (no pickled code runs).

    Args:
        key: the entry of a checkpoint dict that holds the weights (e.g. "model_ema"), or the attribute of a
            foreign LightningModule; by default the first of :data:`WEIGHT_ENTRIES` present (the first of
            :data:`LIGHTNING_MODEL_ATTRIBUTES` in a Lightning checkpoint), else the dict itself.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such checkpoint file or folder: {path}")
    if path.is_dir():
        return _from_folder(path)
    if path.suffix == ".safetensors":
        try:
            return LoadedWeights(load_file(path), str(path))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file: {err}") from None
    obj = read_torch_file(path)
    if is_pickled_module(obj):  # torch.save(model)
        return LoadedWeights(_weights_of(obj, path), str(path))
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict or a checkpoint dict, found {type(obj).__name__}")
    if "pytorch-lightning_version" in obj and isinstance(obj.get("state_dict"), dict):
        return lightning_checkpoint_weights(obj, str(path), key)
    if key is not None:
        if not isinstance(obj.get(key), dict) and not is_pickled_module(obj.get(key)):
            entries = ", ".join(k for k, v in obj.items() if isinstance(v, dict) or is_pickled_module(v)) or "none"
            raise CheckpointError(f"{path}: no {key!r} weights in the checkpoint (weight entries: {entries})")
        return LoadedWeights(_weights_of(obj[key], path), str(path), checkpoint=obj)
    for entry in WEIGHT_ENTRIES:
        if isinstance(obj.get(entry), dict) or is_pickled_module(obj.get(entry)):
            return LoadedWeights(_weights_of(obj[entry], path), str(path), checkpoint=obj)
    return LoadedWeights(_weights_of(obj, path), str(path))


def _weights_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state dict or of a whole pickled module, wrapper prefixes removed (a dict without tensors
    of its own that wraps the weights once more, e.g. ``{"model_ema": {"state_dict": ...}}``, is opened)."""
    for _ in range(2):
        if not isinstance(obj, dict) or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[e] for e in WEIGHT_ENTRIES if isinstance(obj.get(e), dict) or is_pickled_module(obj.get(e))),
                     None)
        if inner is None:
            break
        obj = inner
    state_dict = _strip_wrappers(state_dict_of_pickled_module(obj) if is_pickled_module(obj) else obj)
    if not state_dict:
        raise CheckpointError(f"{path}: holds no tensors")
    return state_dict


def _weight_set_source(weights: WeightSet, model_id: str) -> Path:
    if weights.url:
        return download(weights.url, weights.sha256)
    raise CheckpointError(
        f"the {weights.name!r} weights of {model_id} have no direct download; fetch {weights.file_name} from "
        f"{weights.download_page} and pass its path: pretrained='/path/to/{weights.file_name}'"
    )


def _mlflow_download(uri: str) -> Path:
    import mlflow

    from zoo.store import default_tracking_uri

    mlflow.set_tracking_uri(default_tracking_uri())
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as err:  # mlflow raises its own exception types for every kind of failure
        raise CheckpointError(f"could not fetch {uri} from MLflow at {default_tracking_uri()}: {err}") from err


def load_weights(source: str | Path | LoadedWeights, entry: ModelEntry) -> LoadedWeights:
    """Resolve any supported ``source`` for the model ``entry`` and read it (weights already read pass through)."""
    if isinstance(source, LoadedWeights):
        return source
    text = str(source)
    names = {w.name: w for w in entry.card.weights}
    if text in names:
        weights = names[text]
        loaded = read_weights(_weight_set_source(weights, entry.id), key=weights.state_dict_key)
        loaded.model_kwargs = {**weights.model_kwargs, **loaded.model_kwargs}
        loaded.num_classes = loaded.num_classes or weights.num_classes
        return loaded
    if text.startswith(("http://", "https://")):
        return read_weights(download(text))
    if text.startswith(("runs:/", "models:/", "mlflow-artifacts:/")):
        return read_weights(_mlflow_download(text))
    if not Path(text).exists() and "/" not in text and "." not in text:
        known = ", ".join(names) or "none"
        raise CheckpointError(f"{text!r} is neither a file nor a weight set of {entry.id} (weight sets: {known})")
    return read_weights(text)


def classifier_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the model's classification head (empty when it has no ``get_classifier``)."""
    if not isinstance(model, Classifier):
        return set()
    head = model.get_classifier()
    head_tensors = {id(t) for t in (*head.parameters(), *head.buffers())}
    # buffers too: a head with normalisation layers (a detector's class branch) has running statistics to replace
    return {name for name, t in (*model.named_parameters(), *model.named_buffers()) if id(t) in head_tensors}


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


def fit_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str,
                   drop_head: bool = False) -> None:
    """Load ``state_dict`` into ``model``, requiring every key and shape to match.

    With ``drop_head`` the classifier's tensors are skipped, so the head keeps its fresh initialisation (used
    when the caller asked for a different number of classes than the weights have).

    Raises:
        CheckpointMismatchError: listing the missing, unexpected and wrongly shaped keys.
    """
    expected = model.state_dict()
    if drop_head:
        head = classifier_keys(model)
        state_dict = {k: v for k, v in state_dict.items() if k not in head}
        expected = {k: v for k, v in expected.items() if k not in head}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict) if state_dict[k].shape != expected[k].shape
    )
    if missing or unexpected or mismatched:
        parts = [f"{source} does not fit {type(model).__name__}:"]
        if missing:
            parts.append(f"{len(missing)} missing keys: {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_listing(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {_listing(mismatched)}")
        raise CheckpointMismatchError("\n  ".join(parts), missing, unexpected, mismatched)
    model.load_state_dict(state_dict, strict=not drop_head)


def save_pretrained(model: nn.Module, directory: str | Path) -> Path:
    """Write ``model.safetensors``, ``config.json`` and a model card ``README.md`` into ``directory``.

    The model must come from ``zoo.create_model`` (which records its id and constructor arguments); the folder
    loads back with ``zoo.create_model(model_id, pretrained=directory)``.
    """
    from zoo.cards import render_card

    config = getattr(model, "zoo_config", None)
    if config is None:
        raise ValueError("save_pretrained needs a model built by zoo.create_model (it records the model id)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # clone: a model may alias one module under two names (MLPLOB's first_layer is layers.0, as released), and
    # safetensors refuses tensors that share memory
    state_dict = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(state_dict, directory / WEIGHTS_NAME, metadata={"format": "pt", "model_id": config["model_id"]})
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, default=list) + "\n")
    saved = {**config, "num_params": sum(p.numel() for p in model.parameters())}
    (directory / CARD_NAME).write_text(render_card(config["model_id"], saved))
    return directory

