"""COVIDx data: the label-file format (4 and 3 fields, both label sets), named errors for bad lines, unknown labels
and missing images, patient-grouped validation, COVID-Net's positive share per batch, [0, 1] images, and the
simulated offline set (positives brighter in the lower lung periphery, as their opacities are drawn)."""

import numpy as np
import pytest
import torch
from PIL import Image
from zoo.data.covidx import (
    BalancedBatchSampler,
    CovidxData,
    classes_of,
    read_label_file,
    simulate_chest_xray,
    write_simulated_covidx,
)

from zoo.errors import DataError


@pytest.fixture(scope="module")
def covidx(tmp_path_factory):
    return write_simulated_covidx(train=30, test=10, size=48, root=tmp_path_factory.mktemp("covidx"))


def test_label_files_of_every_version(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("P1 a.png positive rsna\n\nP2 b.png negative bimcv\n")
    assert read_label_file(path) == [("P1", "a.png", "positive", "rsna"), ("P2", "b.png", "negative", "bimcv")]
    path.write_text("3 c.jpeg COVID-19\n")  # COVIDx up to 5: no source
    assert read_label_file(path) == [("3", "c.jpeg", "COVID-19", "unknown")]
    assert classes_of(["normal", "COVID-19"], "x") == ("normal", "pneumonia", "COVID-19")
    assert classes_of(["positive"], "x") == ("negative", "positive")


def test_bad_lines_and_labels_are_named(tmp_path):
    path = tmp_path / "test.txt"
    path.write_text("P1 a.png positive rsna\nP2 b.png\n")
    with pytest.raises(DataError, match=r"test.txt, line 2: 2 fields"):
        read_label_file(path)
    with pytest.raises(DataError, match="covid are not COVIDx labels"):
        classes_of(["positive", "covid"], "test.txt")
    with pytest.raises(DataError, match="mixed"):
        classes_of(["positive", "normal"], "test.txt")
    with pytest.raises(DataError, match="does not exist"):
        read_label_file(tmp_path / "none.txt")


def test_a_missing_image_is_named(covidx, tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "train" / "a.png")
    (tmp_path / "train.txt").write_text("P1 a.png positive x\nP2 gone.png negative x\n")
    (tmp_path / "test.txt").write_text("P3 a.png positive x\n")
    with pytest.raises(DataError, match=r"train.txt: 1 images are not in .*train, e.g. gone.png"):
        CovidxData(str(tmp_path))


def test_covidx_folder_batches_and_grouped_validation(covidx):
    data = CovidxData(str(covidx), image_size=32, batch_size=4, val_fraction=0.2)
    data.setup("fit")
    assert data.class_names == ["negative", "positive"] and data.num_classes == 2
    assert len(data.test_set) == 10 and len(data.train_set) + len(data.val_set) == 30
    patients = {line.split()[1]: line.split()[0] for line in (covidx / "train.txt").read_text().splitlines()}
    train = {patients[p.name] for p in data.train_set.paths}
    val = {patients[p.name] for p in data.val_set.paths}
    assert val and not train & val  # no patient in both parts
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert int(labels.sum()) == 2  # half of each training batch is positive
    assert "positive batches" in data.describe()


def test_balanced_batches_hold_the_share_of_positives():
    labels = np.r_[np.ones(5, bool), np.zeros(40, bool)]
    sampler = BalancedBatchSampler(labels, batch_size=8, share=0.25, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 40 // 6
    assert all(len(b) == 8 and labels[b].sum() == 2 for b in batches)
    assert len({i for b in batches for i in b if not labels[i]}) == 6 * len(batches)  # negatives not repeated
    with pytest.raises(DataError, match="positive and negative"):
        BalancedBatchSampler(np.zeros(4, bool), 2, 0.5)


def test_class_folders_work_too(tmp_path):
    rng = np.random.default_rng(0)
    for label, finding in (("COVID-19", "covid"), ("normal", "none")):
        (tmp_path / label).mkdir()
        for i in range(6):
            Image.fromarray(simulate_chest_xray(rng, 32, finding)).save(tmp_path / label / f"{i}.png")
    data = CovidxData(str(tmp_path), image_size=32, batch_size=2, positive_share=None)
    data.setup("fit")
    assert data.class_names == ["normal", "pneumonia", "COVID-19"]
    assert len(data.train_set) + len(data.val_set) + len(data.test_set) == 12


def test_simulated_positives_carry_peripheral_lower_zone_opacities():
    rng = np.random.default_rng(0)

    def lower_periphery(finding):
        images = np.stack([simulate_chest_xray(rng, 64, finding) for _ in range(12)]).astype(float)
        return images[:, 32:44, [11, 12, 13, 14, 49, 50, 51, 52]].mean()  # outer lower lung fields

    assert lower_periphery("covid") > lower_periphery("none") + 3
