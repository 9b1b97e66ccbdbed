"""Image data: the bundled digits, ImageFolder trees (flat or split), CIFAR through torchvision, and bad data."""

import hashlib
import http.server
import io
import logging
import pickle
import tarfile
import threading

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10
from zoo.data.images import ImageClassificationData

from zoo.errors import DataError


def test_digits_default_splits_are_stratified_and_normalised():
    data = ImageClassificationData()
    data.setup("fit")
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (1257, 180, 360)
    assert data.num_classes == 10 and data.class_names[3] == "3"
    image, _ = data.train_set[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert -2.2 < image.min() < 0 < image.max() < 2.7  # ImageNet-normalised
    test_labels = np.array(data.test_set.labels)
    assert np.bincount(test_labels).min() >= 35  # every digit present in the test split
    batch = next(iter(data.train_dataloader()))
    assert batch[0].shape == (64, 3, 32, 32) and batch[1].dtype == torch.int64


def test_flat_image_folder_is_split_and_left_out_files_are_reported(make_digit_folder, tmp_path, caplog):
    root = make_digit_folder(tmp_path / "digits")
    (root / "digit_0" / "notes.txt").write_text("not an image")
    data = ImageClassificationData(root=str(root), image_size=16)
    assert data.class_names == ["digit_0", "digit_1", "digit_2"]
    with caplog.at_level(logging.WARNING):
        data.setup("fit")
    assert "notes.txt" in caplog.text
    sizes = len(data.train_set), len(data.val_set), len(data.test_set)
    assert sum(sizes) == 36 and min(sizes) >= 3
    assert data.train_set[0][0].shape == (3, 16, 16)


def test_split_image_folder_uses_its_splits(make_digit_folder, tmp_path):
    make_digit_folder(tmp_path / "tree" / "train")
    make_digit_folder(tmp_path / "tree" / "val", per_class=4)
    data = ImageClassificationData(root=str(tmp_path / "tree"), image_size=16, augment="imagenet")
    data.setup("fit")
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (36, 12, 12)
    assert data.val_set[0][0].shape == (3, 16, 16)  # resize + centre crop at evaluation


def test_split_folders_with_different_classes_are_named(make_digit_folder, tmp_path):
    make_digit_folder(tmp_path / "tree" / "train")
    make_digit_folder(tmp_path / "tree" / "val", classes=(0, 1, 5), per_class=4)
    data = ImageClassificationData(root=str(tmp_path / "tree"))
    with pytest.raises(DataError, match="digit_5"):
        data.setup("fit")


def test_empty_and_missing_folders_are_named(make_digit_folder, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ImageClassificationData(root=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no class folders"):
        ImageClassificationData(root=str(tmp_path / "empty"))
    root = make_digit_folder(tmp_path / "some")
    (root / "digit_9").mkdir()
    (root / "digit_9" / "readme.md").write_text("x")
    data = ImageClassificationData(root=str(root))
    with pytest.raises(DataError, match=r"digit_9 has no images"):
        data.setup("fit")


def test_unreadable_image_is_named(make_digit_folder, tmp_path):
    root = make_digit_folder(tmp_path / "digits")
    broken = root / "digit_1" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"cannot read image .*digit_1/broken.png.*skip_bad_files"):
        ImageClassificationData(root=str(root), test_fraction=0.3).setup("fit")  # found before the first epoch
    data = ImageClassificationData(root=str(root), test_fraction=0.3, skip_bad_files=True)
    data.setup("fit")
    datasets = [data.train_set, data.val_set, data.test_set]
    assert sum(len(d.paths) for d in datasets) == 36 and all(broken not in d.paths for d in datasets)
    dataset = data.train_set  # a file that goes bad after the check is still named when it is read
    dataset.paths[0].write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"cannot read image .*" + dataset.paths[0].name):
        dataset[0]


def test_predict_path_lists_images(make_digit_folder, tmp_path):
    root = make_digit_folder(tmp_path / "digits")
    data = ImageClassificationData(predict_path=str(root))
    data.setup("predict")
    assert len(data.predict_paths) == 36 and data.predict_set[0][1] == -1
    with pytest.raises(DataError, match="predict_path"):
        ImageClassificationData().setup("predict")


def _cifar_archive(tmp_path):
    """A CIFAR-10 python archive in the real on-disk format (pickled batches inside cifar-10-batches-py)."""
    rng = np.random.default_rng(0)
    files = {}
    for name, n in [*((f"data_batch_{i}", 20) for i in range(1, 6)), ("test_batch", 10)]:
        batch = {"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}
        files[name] = pickle.dumps(batch)
    files["batches.meta"] = pickle.dumps({"label_names": list(CIFAR10_NAMES)})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    md5 = {name: hashlib.md5(payload).hexdigest() for name, payload in files.items()}
    return buffer.getvalue(), md5


CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def test_cifar10_downloads_through_torchvision(tmp_path, monkeypatch):
    archive, md5 = _cifar_archive(tmp_path)
    served = tmp_path / "served"
    served.mkdir()
    (served / "cifar-10-python.tar.gz").write_bytes(archive)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(CIFAR10, "url", f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz")
        monkeypatch.setattr(CIFAR10, "tgz_md5", hashlib.md5(archive).hexdigest())
        monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)])
        monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
        monkeypatch.setitem(CIFAR10.meta, "md5", md5["batches.meta"])
        data = ImageClassificationData(root=str(tmp_path / "cifar"), dataset="cifar10", val_fraction=0.2,
                                       augment="crop_flip")
        data.setup("fit")
    finally:
        server.shutdown()
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (80, 20, 10)
    assert data.class_names == list(CIFAR10_NAMES)
    assert data.train_set[0][0].shape == (3, 32, 32)


def test_cifar_without_root_is_explained():
    with pytest.raises(DataError, match=r"needs --data.root"):
        ImageClassificationData(dataset="cifar100")


def test_randaugment_policy_is_timms_training_pipeline():
    from torchvision import transforms as T
    from zoo.data.images import TimmTrainTransform

    data = ImageClassificationData(image_size=48, augment="randaugment", random_erasing=1.0)
    train, evaluate = data.transform(True), data.transform(False)
    assert isinstance(train, TimmTrainTransform)
    steps = [type(t).__name__ for t in train.pipeline.transforms]
    assert steps[:3] == ["RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "RandAugment"]
    assert steps[-1] == "RandomErasing" and not any(isinstance(t, T.ColorJitter) for t in train.pipeline.transforms)
    assert train.pipeline.transforms[2].num_layers == 2  # rand-m9-mstd0.5-inc1: two ops per image, magnitude 9
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    torch.manual_seed(0)
    first, second = train(image=image)["image"], train(image=image)["image"]
    assert first.shape == (3, 48, 48) and first.dtype == torch.float32
    assert not torch.equal(first, second)
    torch.testing.assert_close(evaluate(image=image)["image"], evaluate(image=image)["image"])
    assert evaluate(image=image)["image"].shape == (3, 48, 48)


def test_bad_randaugment_setting_is_named():
    with pytest.raises(ValueError, match="bad RandAugment setting 'rand-q9'"):
        ImageClassificationData(augment="randaugment", rand_augment="rand-q9").transform(True)


def test_randaugment_posterize_to_zero_bits_gives_black_as_old_pillow_did():
    """"inc1" posterize keeps 4 - int(0.4 m) bits: 0 bits at magnitude 10, which magnitude noise (mstd) reaches.
    Pillow 13 refuses 0 bits; the pipeline blacks the image out, as the Pillow versions of the recipes did."""
    from PIL import Image
    from zoo.data.images import TimmTrainTransform

    transform = TimmTrainTransform(32, (0.5,) * 3, (0.5,) * 3, "rand-n1-m10-mstd0-inc1", 0.0)
    randaugment = transform.pipeline.transforms[2]
    (posterize,) = [op for op in randaugment.ops if op.name == "PosterizeIncreasing"]
    posterize.prob = 1.0
    image = Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8))
    assert np.asarray(posterize(image)).max() == 0
    randaugment.ops, randaugment.choice_weights = [posterize], None
    torch.manual_seed(0)
    transform(image=np.full((40, 40, 3), 200, dtype=np.uint8))  # raised "bits must be between 1 and 8" before
