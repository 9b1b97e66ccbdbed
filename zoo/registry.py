"""Model ids ("domain/name") mapped to their factories and model cards.

A model file registers each configuration with :func:`register_model`::

    @register_model("vision/eca_resnet50", card=ModelCard(...))
    def eca_resnet50(num_classes: int = 1000, **kwargs) -> EcaResNet: ...

Every domain, built-in (``zoo.vision``, ``zoo.tabular``, ...) or third-party, is found through the ``zoo.models``
entry-point group (each entry point names a module that registers on import), the first time the registry is
queried. A card's ``task`` names a task kind of ``zoo.tasks``; it is checked where the task class is looked up
(``zoo.tasks.task_class_of``), so that listing and building models never imports the training side.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import pkgutil
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is not imported to list or describe models
    from torch import nn

from zoo.errors import DuplicateModelError, UnknownModelError

ENTRY_POINT_GROUP = "zoo.models"

CheckpointFilter = Callable[[dict[str, Any], "nn.Module"], dict[str, Any]]
KwargsFromCheckpoint = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Paper:
    title: str
    arxiv: str | None = None
    venue: str | None = None
    code_url: str | None = None

    @property
    def url(self) -> str | None:
        return f"https://arxiv.org/abs/{self.arxiv}" if self.arxiv else None


# --- what a model gives: one spec per kind of output -------------------------------------------------------------
@dataclass(frozen=True)
class Classes:
    """Logits over classes: (B, num_classes), or (B, T, num_classes) per step for sequence labelling."""

    num_classes: int = 1000


@dataclass(frozen=True)
class ImageOutput:
    """An image of the input's size: (B, channels, H, W)."""

    channels: int = 3


@dataclass(frozen=True)
class Boxes:
    """Detections: boxes (x1, y1, x2, y2) with a class and a score, a variable number per image."""

    num_classes: int


@dataclass(frozen=True)
class PerStep:
    """One prediction per time step: (B, T, num_classes) logits (num_classes 1: a single risk logit)."""

    num_classes: int = 1


@dataclass(frozen=True)
class Horizons:
    """Forecasts at ``horizons`` steps ahead: (B, len(horizons), targets), or class logits per horizon
    (B, len(horizons), num_classes) when ``num_classes`` is set."""

    horizons: tuple[int, ...] = (1,)
    targets: int = 1
    num_classes: int | None = None


@dataclass(frozen=True)
class Risk:
    """A survival risk score per subject: (B,) log-hazard ratios (higher means earlier events)."""


@dataclass(frozen=True)
class Pretext:
    """A self-supervised pretext output (e.g. reconstructed or classified masked patches); no downstream head."""


OutputSpec = Classes | ImageOutput | Boxes | PerStep | Horizons | Risk | Pretext


@dataclass(frozen=True)
class Preprocessing:
    """How inputs were prepared for a weight set, so fine-tuning from it prepares them the same way (as timm's
    pretrained configs and torchvision's ``Weights.transforms()`` carry it).

    Attributes:
        mean / std: per-channel normalisation of [0, 1] inputs.
        input_size: side of the square network input in pixels.
        interpolation: resize filter ("bilinear", "bicubic").
        crop_pct: evaluation resizes to ``input_size / crop_pct`` and centre-crops ``input_size``.
    """

    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    input_size: int = 224
    interpolation: str = "bilinear"
    crop_pct: float = 0.875


@dataclass(frozen=True)
class WeightSet:
    """One set of pretrained weights for a model id.

    Attributes:
        name: short tag used as ``pretrained=<name>`` ("official_in1k").
        num_classes: size of the head the weights were trained with.
        url: direct download address, or None when the files sit behind a manual download page.
        sha256: full hex digest of the file; downloads that differ are refused.
        download_page: where a user fetches the file by hand when there is no direct url.
        file_name: the file's name as distributed.
        model_kwargs: constructor arguments the weights need (e.g. the per-stage kernel sizes of a release).
        state_dict_key: the checkpoint entry holding the weights to load (e.g. "model_ema"), when not the default.
        metrics: reported results, e.g. {"imagenet_top1": 77.42}.
        preprocessing: how the inputs were prepared when these weights were trained.
    """

    name: str
    description: str
    num_classes: int | None = None
    url: str | None = None
    sha256: str | None = None
    download_page: str | None = None
    file_name: str | None = None
    license: str | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    state_dict_key: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    preprocessing: Preprocessing | None = None


@dataclass(frozen=True)
class ModelCard:
    """What a user needs to know about a model id before using it.

    Attributes:
        task: a task kind registered in ``zoo.tasks`` (``zoo.tasks.task_kinds()``), e.g. "image_classification";
            it picks the task class that trains the model, so recipes and checkpoints never name one.
        num_params: parameter count at the default output and configuration (checked by tests).
        macs: multiply-accumulates of one forward pass at the default inputs (conv, linear and matmul ops).
        input_shape: shape of one example of the (first) input, without the batch dimension.
        extra_inputs: name -> shape of the further inputs of a model that takes several (passed to ``forward``
            after the first, in this order).
        output: what the model gives (``Classes``, ``ImageOutput``, ``Boxes``, ``PerStep``, ``Horizons``, ``Risk``,
            ``Pretext``); classes and boxes carry the default head size.
        recipes: recipe name -> YAML file (or files, applied in order) in the model package's ``recipes/``
            folder; the first recipe is the default.
        target_layer: module path that Grad-CAM hooks by default (classifiers).
        cpu_bf16: False for a model that bf16 autocast was measured to slow down on a CPU with native bf16
            (depthwise convolutions have no fast bf16 kernel there); ``zoo train`` then keeps fp32 on CPUs.
    """

    task: str
    paper: Paper
    license: str
    num_params: int
    input_shape: tuple[int, ...]
    recipes: Mapping[str, str | tuple[str, ...]]
    macs: int | None = None
    output: OutputSpec = Classes()
    extra_inputs: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    weights: tuple[WeightSet, ...] = ()
    target_layer: str | None = None
    notes: str = ""
    cpu_bf16: bool = True

    @property
    def num_classes(self) -> int | None:
        """The default head size of a model with classes (classifiers, detectors, labelled horizons), else None."""
        return getattr(self.output, "num_classes", None)

    @property
    def inputs(self) -> dict[str, tuple[int, ...]]:
        """Every input's shape, the first under "input"."""
        return {"input": tuple(self.input_shape), **{k: tuple(v) for k, v in self.extra_inputs.items()}}

    def weight_set(self, name: str) -> WeightSet:
        for weights in self.weights:
            if weights.name == name:
                return weights
        known = ", ".join(w.name for w in self.weights) or "none"
        raise KeyError(f"no weight set {name!r}; known weight sets: {known}")

    def weights_of(self, source: str) -> WeightSet | None:
        """The weight set a ``pretrained`` source is: its name, or a path to its file as distributed (the
        official download of a weight set that has no direct url); None for any other source."""
        for weights in self.weights:
            if source == weights.name or (weights.file_name and source.endswith(("/" + weights.file_name,
                                                                                    weights.file_name))):
                return weights
        return None


@dataclass(frozen=True)
class ModelEntry:
    id: str
    card: ModelCard
    factory: Callable[..., nn.Module]
    checkpoint_filter: CheckpointFilter | None
    kwargs_from_checkpoint: KwargsFromCheckpoint | None
    recipe_dir: Path

    def recipe_paths(self, name: str | None = None) -> list[Path]:
        """Absolute paths of a recipe's YAML files (the default recipe when ``name`` is None)."""
        recipes = dict(self.card.recipes)
        name = name or next(iter(recipes))
        if name not in recipes:
            raise KeyError(f"{self.id} has no recipe {name!r}; recipes: {', '.join(recipes)}")
        files = recipes[name]
        return [self.recipe_dir / f for f in ((files,) if isinstance(files, str) else files)]


_REGISTRY: dict[str, ModelEntry] = {}
_DISCOVERED = False
_ID_PATTERN = re.compile(r"^[a-z][a-z0-9_]*/[a-z0-9][a-z0-9_.]*$")


def register_model(
    model_id: str, *, card: ModelCard, checkpoint_filter: CheckpointFilter | None = None,
    kwargs_from_checkpoint: KwargsFromCheckpoint | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers ``factory(num_classes=..., **kwargs) -> nn.Module`` under ``model_id``.

    Args:
        card: the model card.
        checkpoint_filter: ``f(state_dict, model) -> state_dict`` that maps a foreign checkpoint layout (the
            official code's, timm's) onto the model's parameter names; applied to every checkpoint loaded.
        kwargs_from_checkpoint: ``f(state_dict) -> kwargs`` that reads constructor arguments off the tensors
            (e.g. kernel sizes), so a checkpoint of a non-default configuration still builds the right model.
    """
    if not _ID_PATTERN.match(model_id):
        raise ValueError(f"model id {model_id!r} must look like 'domain/name' (lower case, digits, '_' and '.')")

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if model_id in _REGISTRY:
            raise DuplicateModelError(
                f"model id {model_id!r} registered twice: by {_REGISTRY[model_id].factory.__module__} "
                f"and by {factory.__module__}"
            )
        package = factory.__module__.rpartition(".")[0] or factory.__module__
        recipe_dir = Path(str(resources.files(package))) / "recipes"
        _REGISTRY[model_id] = ModelEntry(model_id, card, factory, checkpoint_filter, kwargs_from_checkpoint, recipe_dir)
        return factory

    return decorator


def import_submodules(package: str) -> None:
    """Import every module of ``package`` (a domain's ``__init__`` calls this, so a new model file registers
    without being listed anywhere). Modules whose name starts with "_" are helpers and are left alone."""
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")


_LOADED_DOMAINS: set[str] = set()


def _load(entry_point: metadata.EntryPoint) -> None:
    if entry_point.name in _LOADED_DOMAINS:
        return
    _LOADED_DOMAINS.add(entry_point.name)
    try:
        entry_point.load()
    except Exception as err:  # a broken plugin must not take the built-in models down with it
        if entry_point.value.startswith("zoo."):
            raise
        warnings.warn(f"could not load zoo models from {entry_point.value!r}: {err}", stacklevel=2)


def _discover(domain: str | None = None) -> None:
    """Import the model files of ``domain`` (the entry point of that name, e.g. "vision"), or of every domain when
    None or when no entry point has that name: building one model imports only its own domain."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    named = [ep for ep in entry_points if ep.name == domain]
    if domain is not None and named:
        _load(named[0])
        return
    _DISCOVERED = True
    for entry_point in entry_points:
        _load(entry_point)


def _natural_key(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def list_models(pattern: str = "*", exclude: str | None = None) -> list[str]:
    """Registered ids matching an fnmatch ``pattern`` (e.g. ``"vision/eca*"``), in natural order."""
    _discover()
    ids = [i for i in _REGISTRY if fnmatch.fnmatchcase(i, pattern)]
    if exclude:
        ids = [i for i in ids if not fnmatch.fnmatchcase(i, exclude)]
    return sorted(ids, key=_natural_key)


def get_entry(model_id: str) -> ModelEntry:
    """The registry entry of ``model_id``; an unknown id raises with the closest registered ids."""
    if model_id not in _REGISTRY:
        _discover(model_id.partition("/")[0])
    if model_id not in _REGISTRY:
        _discover()
    if model_id in _REGISTRY:
        return _REGISTRY[model_id]
    raise unknown_model(model_id, list(_REGISTRY))


def unknown_model(model_id: str, ids: list[str]) -> UnknownModelError:
    """The error for an id that is not among ``ids``, naming the closest ones."""
    close = difflib.get_close_matches(model_id, ids, n=5, cutoff=0.5)
    # Also match on the name without its domain, so "eca_resnet50" finds "vision/eca_resnet50".
    by_name = {i.rpartition("/")[2]: i for i in ids}
    for name in difflib.get_close_matches(model_id.rpartition("/")[2], list(by_name), n=5, cutoff=0.6):
        if by_name[name] not in close:
            close.append(by_name[name])
    hint = f"; did you mean {', '.join(close[:5])}?" if close else "; `zoo list` shows every id"
    return UnknownModelError(f"unknown model id {model_id!r}{hint}")


def get_card(model_id: str) -> ModelCard:
    return get_entry(model_id).card
