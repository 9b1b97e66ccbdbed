"""What the framework may ask of a zoo data module, as typed protocols.

:class:`ZooData` is what the runner, tracking and every task may read of any zoo data module;
:class:`zoo.data.base.ZooDataModule` implements it with defaults, so a data module built on it satisfies it. The
other protocols are what one task kind reads beyond that (the forecasting task asks for window origins, the
survival task for the training part's times, ...); a task checks ``isinstance(datamodule, SurvivalCohort)`` rather
than ``getattr`` with a default.

All are ``runtime_checkable``: ``isinstance`` checks that the members exist, not their types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch.utils.data import DataLoader, Dataset

SPLITS = ("train", "val", "test", "predict")


@runtime_checkable
class ZooData(Protocol):
    """A zoo data module, as the runner, tracking and the tasks see it.

    Attributes:
        train_set / val_set / test_set / predict_set: each split's dataset once the module holds it (after
            ``setup``; some modules build a split's dataset only when its loader is asked for), else None.
        predict_paths: the files predictions are named by, in loader order (images, audio files), or None when
            predictions are named otherwise (table rows, series and times).
        hparams: the module's arguments (logged with the run; the classification task reads ``mean``/``std``).
    """

    train_set: Dataset | None
    val_set: Dataset | None
    test_set: Dataset | None
    predict_set: Dataset | None
    predict_paths: Sequence[Path] | None

    @property
    def hparams(self) -> Mapping[str, Any]: ...

    @property
    def has_test_split(self) -> bool:
        """False when there is no test part to evaluate after training (``zoo train`` then skips the test)."""
        ...

    def describe(self) -> str:
        """One line: the source, the split sizes, the input size and classes (printed before training)."""
        ...

    def set_epoch(self, epoch: int, max_epochs: int | None) -> None:
        """Called at each training epoch start (epoch-dependent augmentation, e.g. mosaic off at the end)."""
        ...

    def evaluation_line(self, split: str) -> str:
        """One line before evaluating or predicting ``split`` ("val", "test", "predict"): the files (folder), the
        number of examples, and which split when it is part of the module's own data ("data: test split of ...,
        40 pairs"; "data: 57 image pairs in my_pairs/ (test only)")."""
        ...

    def train_dataloader(self) -> DataLoader: ...

    def val_dataloader(self) -> DataLoader: ...

    def test_dataloader(self) -> DataLoader: ...

    def predict_dataloader(self) -> DataLoader: ...

    def state_dict(self) -> dict[str, Any]:
        """The fitted state a checkpoint keeps (scalers, quantiles), as tensors and plain data."""
        ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


@runtime_checkable
class NormalisedSequences(Protocol):
    """Sequences whose feature statistics are fitted on the training split (the sequence-labelling task)."""

    feature_mean: Any  # (F,) array, None before setup("fit")
    feature_std: Any  # (F,) array, None before setup("fit")
    positive_fraction: float | None  # share of positive labelled training steps

    def setup(self, stage: str | None = None) -> None: ...


@runtime_checkable
class SurvivalCohort(Protocol):
    """A survival data set whose training part the survival task reads (Breslow baseline, horizons)."""

    train_time: Any  # (N_train,) times of the training part
    train_event: Any  # (N_train,) 1 event / 0 censored
    horizons: Sequence[float] | None

    def baseline_dataloader(self) -> DataLoader:
        """The training part in order, unshuffled."""
        ...


@runtime_checkable
class ForecastWindows(Protocol):
    """Forecasting windows that know their series and times (the forecasting task names predictions by them)."""

    def series_ids(self, split: str) -> list[str]: ...

    def target_times(self, split: str) -> list[Any]: ...

    def origins(self, split: str) -> list[tuple[str, Any]]: ...


@runtime_checkable
class CandidateTable(Protocol):
    """A table whose whole preprocessed training part is the retrieval task's candidates."""

    def train_table(self) -> Dataset: ...


@runtime_checkable
class LabelledSplits(Protocol):
    """Splits held as datasets with a ``y`` label tensor (the LOB task reads the training labels' majority)."""

    splits: Mapping[str, Any]
