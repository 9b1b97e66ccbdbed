"""The base data module: the contract the framework reads, the loaders built once from the split datasets, and the
training order as a function of (run seed, epoch)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import BatchSampler, SequentialSampler, TensorDataset
from zoo.data.base import EpochSampler, ZooData, ZooDataModule, epoch_seed
from zoo.data.tabular import TabularData

from zoo.errors import DataError


class Numbers(ZooDataModule):
    """Ten examples 0..9 in each split set."""

    in_memory = True

    def setup(self, stage: str | None = None) -> None:
        self.train_set = self.val_set = TensorDataset(torch.arange(10))


def train_order(data: ZooDataModule, epoch: int) -> list[int]:
    loader = data.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return [int(x) for (batch,) in loader for x in batch]


def test_an_epoch_order_follows_from_the_seed_and_the_epoch_alone():
    first, again = EpochSampler(range(50), seed=3), EpochSampler(range(50), seed=3)
    again.set_epoch(4)
    again.set_epoch(2)  # how the sampler got to epoch 2 does not matter
    first.set_epoch(2)
    assert list(first) == list(again) and sorted(first) == list(range(50))
    third = EpochSampler(range(50), seed=3)
    third.set_epoch(3)
    assert list(third) != list(first)
    assert epoch_seed(3, 2) != epoch_seed(3, 3) != epoch_seed(4, 3)
    first.skip = 20  # a resumed epoch leaves out what it had seen, once
    assert list(first) == list(again)[20:] and list(first) == list(again)
    assert list(EpochSampler(range(5), seed=3, shuffle=False)) == [0, 1, 2, 3, 4]


def test_the_training_loader_shuffles_by_epoch_with_the_run_seed(monkeypatch):
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    data = Numbers(batch_size=4, seed=1)
    data.setup("fit")
    loader = data.train_dataloader()
    assert isinstance(loader.sampler, EpochSampler) and loader.sampler.seed == 1  # no run seed: the module's
    assert not loader.persistent_workers  # workers start afresh each epoch, seeded by the epoch's generator
    assert loader.drop_last and len(loader) == 2  # 10 examples in batches of 4: the partial batch is left out
    assert train_order(data, 0) == train_order(data, 0) != train_order(data, 1)
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")  # what --seed_everything sets
    assert data.train_dataloader().sampler.seed == 7
    expected = list(EpochSampler(range(10), seed=7))[:8]
    assert train_order(data, 0) == expected


def test_evaluation_loaders_keep_the_order_and_every_example():
    data = Numbers(batch_size=4)
    data.setup("fit")
    loader = data.val_dataloader()
    assert isinstance(loader.sampler, SequentialSampler) and not loader.drop_last
    assert [int(x) for (batch,) in loader for x in batch] == list(range(10))
    data.eval_batch_size = 6
    assert [len(b) for (b,) in data.val_dataloader()] == [6, 4]


def test_a_missing_split_is_named():
    data = Numbers()
    data.setup("fit")
    with pytest.raises(DataError, match="Numbers has no predict data: it is read by setup\\(\\) for the predict"):
        data.predict_dataloader()
    with pytest.raises(DataError, match="Numbers has no test data"):
        data.test_dataloader()


def test_a_module_may_bring_its_own_training_batches():
    class Pairs(Numbers):
        def train_batch_sampler(self):
            return BatchSampler(SequentialSampler(range(10)), batch_size=2, drop_last=False)

    data = Pairs()
    data.setup("fit")
    assert [b.tolist() for (b,) in data.train_dataloader()] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]


def test_data_modules_meet_the_contract_the_framework_reads():
    data = Numbers()
    assert isinstance(data, ZooData)
    assert data.describe() == "Numbers" and data.has_test_split and data.predict_paths is None
    assert data.test_set is None and data.set_epoch(3, 10) is None
    table = TabularData()  # the offline diabetes table
    assert isinstance(table, ZooDataModule) and isinstance(table, ZooData)
    table.setup("fit")
    loader = table.train_dataloader()
    assert isinstance(loader.sampler, EpochSampler) and not loader.drop_last  # every training row is used
    assert sum(len(batch["y"]) for batch in loader) == len(table.split_tensors("train"))
    assert table.val_dataloader().batch_size == 1024


def test_the_evaluation_line_names_the_split_and_its_size_or_the_files_predicted(tmp_path):
    data = Numbers(batch_size=4)
    data.setup("fit")
    data.test_set = TensorDataset(torch.arange(7))
    assert data.evaluation_line("test") == "data: test split of Numbers, 7 examples"
    assert data.evaluation_line("val") == "data: validation split of Numbers, 10 examples"
    data.predict_paths = [tmp_path / "new" / "a.png", tmp_path / "new" / "sub" / "b.png"]
    data.predict_set = TensorDataset(torch.arange(2))
    assert data.evaluation_line("predict") == f"data: {tmp_path / 'new'}/, 2 examples"
    assert isinstance(data, ZooData)
