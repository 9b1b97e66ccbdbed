"""A trained model meets new data (issue 30): ``zoo test`` evaluates exactly the set it is given (a folder that
holds only evaluation data, ``test_root`` without ``root``), says in one line which files and how many, matches
classes by name, and ``zoo predict`` names its inputs. Each metric is checked against a hand computation from the
model's own outputs on those files."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.checkpoints import read_checkpoint
from zoo.cli import main
from zoo.errors import DataError


def reported(metric: str, text: str) -> float:
    """The value Lightning's results table prints for ``metric``."""
    found = re.search(rf"{re.escape(metric)}\W+([0-9.eE+-]+)", text)
    assert found is not None, f"{metric} not reported in:\n{text}"
    return float(found.group(1))


# --- image classification ---------------------------------------------------------------------------------------
def write_unseen_digits(root: Path, classes: list[str], size: int = 8) -> list[tuple[Path, str]]:
    """One real handwritten digit per class, taken from past the first 60 of each digit (those trained_run trains
    on), written as root/<class>/<n>.png; returns (path, class name) pairs."""
    from zoo.data.images import load_digits_rgb

    images, labels = load_digits_rgb()
    written = []
    for name in classes:
        digit = int(name.removeprefix("digit_"))
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "100.png"
        Image.fromarray(images[labels == digit][100]).resize((size, size)).save(path)
        written.append((path, name))
    return written


def test_a_classifier_is_tested_on_a_test_only_folder_and_predicts_new_images(trained_run, tmp_path, capsys):
    checkpoint = read_checkpoint(trained_run.best)
    classes = checkpoint.extras["class_names"]
    files = write_unseen_digits(tmp_path / "new_digits", classes[::-1])
    assert main(["test", "--ckpt", trained_run.best, "--data.test_root", str(tmp_path / "new_digits"),
                 "--trainer.logger", "false"]) == 0
    out = capsys.readouterr().out
    assert f"data: 10 images in {tmp_path / 'new_digits'}/ (test only), 10 classes" in out
    # by hand: the checkpoint's model on the same files, through the checkpoint's own evaluation transform
    from zoo.data.images import image_transform, read_image

    data = checkpoint.data_hparams
    transform = image_transform(data["image_size"], data["augment"], data["mean"], data["std"], False,
                                interpolation=data["interpolation"], crop_pct=data["crop_pct"])
    model = checkpoint.build_model().eval()
    with torch.no_grad():
        logits = model(torch.stack([transform(image=read_image(p))["image"] for p, _ in files]))
    truth = torch.tensor([classes.index(name) for _, name in files])
    accuracy = float((logits.argmax(-1) == truth).float().mean())
    assert reported("test/acc", out) == pytest.approx(accuracy, abs=1e-6)

    output = tmp_path / "predictions.csv"
    assert main(["predict", "--ckpt", trained_run.best, "--data.predict_path", str(tmp_path / "new_digits"),
                 "--output", str(output), "--trainer.logger", "false"]) == 0
    assert f"data: 10 images to predict in {tmp_path / 'new_digits'}/" in capsys.readouterr().out
    rows = {row["input"]: row["label"] for row in csv.DictReader(output.open())}
    predicted = {str(p): classes[i] for (p, _), i in zip(files, logits.argmax(-1).tolist(), strict=True)}
    assert rows == predicted


def test_new_images_whose_class_names_differ_are_one_line_naming_both_sides(trained_run, tmp_path, capsys):
    classes = read_checkpoint(trained_run.best).extras["class_names"]
    write_unseen_digits(tmp_path / "other", classes[:9])
    (tmp_path / "other" / "digit_8").rename(tmp_path / "other" / "eight")
    assert main(["test", "--ckpt", trained_run.best, "--data.test_root", str(tmp_path / "other"),
                 "--trainer.logger", "false"]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "not known to the model: eight" in error and "missing: digit_8, digit_9" in error
    assert str(tmp_path / "other") in error and "digit_0, digit_1" in error


def test_without_data_flags_the_checkpoint_s_own_test_split_is_named(trained_run, capsys):
    assert main(["test", "--ckpt", trained_run.best, "--trainer.logger", "false"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("data:"))
    assert line == f"data: test split of image folder {trained_run.root / 'digits'}, 120 images"


def tiny_checkpoint(task, data, path: Path, steps: int = 2) -> str:
    """Train ``task`` on ``data`` for ``steps`` steps and save the checkpoint a zoo run writes (with its zoo record
    and the data module's arguments)."""
    import lightning as L

    trainer = L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0,
                        accelerator="cpu")
    trainer.fit(task, datamodule=data)
    trainer.save_checkpoint(path)
    return str(path)


# --- MEDUSA on chest X-rays (CovidxData) ------------------------------------------------------------------------
def test_medusa_is_tested_and_predicts_on_new_xrays_from_its_own_fresh_checkpoint(tmp_path, capsys):
    from zoo.data.covidx import CovidxData, covidx_transform, write_simulated_covidx
    from zoo.data.images import read_image

    from zoo.tasks.classification import ClassificationTask

    root = write_simulated_covidx(train=24, test=8, size=64, root=tmp_path / "covidx")
    data = CovidxData(str(root), image_size=32, batch_size=8, num_workers=0)
    task = ClassificationTask("medical/medusa", num_classes=2, class_names=data.class_names, explain_images=0,
                              model_kwargs={"backbone": "resnet18", "body_size": 32},
                              optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}})
    ckpt = tiny_checkpoint(task, data, tmp_path / "medusa.ckpt")
    assert main(["test", "--ckpt", ckpt, "--trainer.logger", "false"]) == 0  # its own data: no unknown flag
    assert f"data: test split of COVIDx folder {root}, 8 images" in capsys.readouterr().out

    # a second set, test only: class folders in another order of discovery than the label file's
    labels = {line.split()[1]: line.split()[2] for line in (root / "test.txt").read_text().splitlines()}
    new = tmp_path / "new_xrays"
    files = []
    for name in sorted(labels)[:5] + sorted(labels)[-2:]:
        (new / labels[name]).mkdir(parents=True, exist_ok=True)
        Image.open(root / "test" / name).save(new / labels[name] / name)
        files.append((new / labels[name] / name, labels[name]))
    files.sort()
    assert main(["test", "--ckpt", ckpt, "--data.test_root", str(new), "--data.root", str(tmp_path / "gone"),
                 "--trainer.logger", "false"]) == 0
    out = capsys.readouterr().out
    assert f"data: 7 images in {new}/ (test only), classes negative, positive" in out
    model = read_checkpoint(ckpt).build_model().eval()
    transform = covidx_transform(32, train=False)
    with torch.no_grad():
        logits = model(torch.stack([transform(image=read_image(p))["image"] for p, _ in files]))
    truth = torch.tensor([data.class_names.index(label) for _, label in files])
    assert reported("test/acc", out) == pytest.approx(float((logits.argmax(-1) == truth).float().mean()), abs=1e-6)

    output = tmp_path / "predictions.csv"
    assert main(["predict", "--ckpt", ckpt, "--data.predict_path", str(new), "--output", str(output),
                 "--data.root", str(tmp_path / "gone"), "--trainer.logger", "false"]) == 0
    assert f"data: 7 images to predict in {new}/" in capsys.readouterr().out
    rows = [(row["input"], float(row["score"])) for row in csv.DictReader(output.open())]
    probabilities = logits.softmax(-1).max(-1).values.tolist()
    assert [r[0] for r in rows] == [str(p) for p, _ in files]
    assert [r[1] for r in rows] == pytest.approx(probabilities, abs=1e-5)


# --- DEA-Net dehazing (DehazingData) ----------------------------------------------------------------------------
def write_pairs(root: Path, count: int, seed: int, size: int = 32) -> list[tuple[Path, Path]]:
    """``count`` hazy/clear pairs (root/hazy/<i>_1_0.8.png, root/clear/<i>.png): smooth colour fields, the hazy
    one blended toward a grey airlight."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        small = rng.uniform(0, 1, (4, 4, 3))
        clear = np.kron(small, np.ones((size // 4, size // 4, 1)))
        hazy = 0.6 * clear + 0.4 * 0.9
        for folder, name, image in (("clear", f"{i}.png", clear), ("hazy", f"{i}_1_0.8.png", hazy)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray((image * 255).round().astype(np.uint8)).save(root / folder / name)
        pairs.append((root / "hazy" / f"{i}_1_0.8.png", root / "clear" / f"{i}.png"))
    return pairs


def psnr(output: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over images of 10 log10(1 / MSE) ((B, 3, H, W) in [0, 1])."""
    return float((10 * torch.log10(1 / ((output - target) ** 2).mean(dim=(1, 2, 3)))).mean())


def test_dea_net_is_tested_on_test_root_without_root_and_restores_new_images(tmp_path, capsys):
    import shutil

    from zoo.data.restoration import DehazingData, read_rgb

    from zoo.tasks.restoration import RestorationTask

    write_pairs(tmp_path / "train", 8, seed=0)
    data = DehazingData(root=str(tmp_path / "train"), val_fraction=0.25, crop_size=16, batch_size=4, num_workers=0)
    task = RestorationTask("vision/dea_net", model_kwargs={"base_dim": 8, "depths": (1, 1, 1)}, grid_images=0,
                           lr_scheduler=None, optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}})
    ckpt = tiny_checkpoint(task, data, tmp_path / "dea_net.ckpt")
    shutil.rmtree(tmp_path / "train")  # the training pairs are gone: only the given ones can be read

    pairs = write_pairs(tmp_path / "my_pairs", 5, seed=1)
    assert main(["test", "--ckpt", ckpt, "--data.test_root", str(tmp_path / "my_pairs"),
                 "--trainer.logger", "false"]) == 0
    out = capsys.readouterr().out
    assert f"data: 5 image pairs in {tmp_path / 'my_pairs'}/ (test only)" in out
    to_tensor = lambda path: torch.from_numpy(read_rgb(path)).permute(2, 0, 1)  # noqa: E731
    hazy = torch.stack([to_tensor(h) for h, _ in pairs])
    clear = torch.stack([to_tensor(c) for _, c in pairs])
    model = read_checkpoint(ckpt).build_model().eval()
    with torch.no_grad():
        restored = model(hazy).clamp(0, 1)
    assert reported("test/psnr", out) == pytest.approx(psnr(restored, clear), abs=1e-3)
    assert reported("test/input_psnr", out) == pytest.approx(psnr(hazy, clear), abs=1e-3)

    output = tmp_path / "restored"
    assert main(["predict", "--ckpt", ckpt, "--data.predict_path", str(tmp_path / "my_pairs" / "hazy"),
                 "--output", str(output), "--trainer.logger", "false"]) == 0
    assert f"data: 5 hazy images to restore in {tmp_path / 'my_pairs' / 'hazy'}/" in capsys.readouterr().out
    for (path, _), image in zip(pairs, restored, strict=True):
        written = torch.from_numpy(read_rgb(output / f"{path.stem}.png")).permute(2, 0, 1)
        torch.testing.assert_close(written, image, atol=1 / 255, rtol=0)


# --- SSAST on audio clips (AudioData) ---------------------------------------------------------------------------
def write_tones(root: Path, per_class: int, seed: int) -> list[tuple[Path, str]]:
    """Short tones (0.4 s at 16 kHz) of a low, mid and high pitch with random phase, level and noise, as
    root/<pitch>/<n>.wav; returns (path, class name) pairs."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    written = []
    t = np.arange(6400) / 16000
    for name, hz in (("high", 2400), ("low", 300), ("mid", 900)):
        for i in range(per_class):
            wave = rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * hz * t + rng.uniform(0, 6)) + rng.normal(0, 0.01, t.size)
            path = root / name / f"{i}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, wave.astype(np.float32), 16000)
            written.append((path, name))
    return written


def test_ssast_is_tested_on_a_second_set_and_predicts_new_clips(tmp_path, capsys):
    from zoo.data.audio import AudioData, KaldiFbank, read_audio

    from zoo.tasks.classification import ClassificationTask

    write_tones(tmp_path / "train", 6, seed=0)
    data = AudioData(root=str(tmp_path / "train"), num_frames=32, batch_size=6, num_workers=0,
                     val_fraction=0.2, test_fraction=0.2)
    task = ClassificationTask("audio/ssast_tiny_patch", num_classes=3, class_names=data.class_names, explain_images=0,
                              model_kwargs={"input_tdim": 32, "depth": 1, "fstride": 16, "tstride": 16},
                              optimizer={"class_path": "torch.optim.Adam", "init_args": {"lr": 1e-3}})
    ckpt = tiny_checkpoint(task, data, tmp_path / "ssast.ckpt")
    recorded = read_checkpoint(ckpt).data_hparams
    assert recorded["mean"] is not None and recorded["class_names"] == ["high", "low", "mid"]

    clips = write_tones(tmp_path / "new_clips", 2, seed=1)
    assert main(["test", "--ckpt", ckpt, "--data.test_root", str(tmp_path / "new_clips"), "--data.root", "null",
                 "--trainer.logger", "false"]) == 0
    out = capsys.readouterr().out
    assert f"data: 6 clips in {tmp_path / 'new_clips'}/ (test only), 3 classes" in out
    front = KaldiFbank(32, 128, recorded["mean"], recorded["std"])
    features = torch.stack([front(read_audio(p)) for p, _ in clips])
    model = read_checkpoint(ckpt).build_model().eval()
    with torch.no_grad():
        logits = model(features)
    truth = torch.tensor([recorded["class_names"].index(n) for _, n in clips])
    assert reported("test/acc", out) == pytest.approx(float((logits.argmax(-1) == truth).float().mean()), abs=1e-6)

    output = tmp_path / "predictions.csv"
    assert main(["predict", "--ckpt", ckpt, "--data.predict_path", str(tmp_path / "new_clips"), "--data.root", "null",
                 "--output", str(output), "--trainer.logger", "false"]) == 0
    assert f"data: 6 clips to predict in {tmp_path / 'new_clips'}/" in capsys.readouterr().out
    rows = list(csv.DictReader(output.open()))
    assert [row["input"] for row in rows] == [str(p) for p, _ in clips]
    names = recorded["class_names"]
    assert [row["label"] for row in rows] == [names[i] for i in logits.argmax(-1).tolist()]
    assert [float(row["score"]) for row in rows] == pytest.approx(logits.softmax(-1).max(-1).values.tolist(),
                                                                  abs=1e-5)


# --- YOLO9tr detection (DetectionData) --------------------------------------------------------------------------
@pytest.mark.slow  # 16 training steps, so that the model finds something to score: about 17 CPU-seconds
def test_yolo9tr_is_tested_on_a_second_set_and_detects_in_new_images(tmp_path, capsys):
    from torchmetrics.detection import MeanAveragePrecision
    from zoo.data.detection import DetectionData, read_yolo, write_synthetic_detection

    from zoo.blocks.detection import non_max_suppression
    from zoo.tasks.detection import DetectionTask

    torch.manual_seed(0)
    shapes = {"image_size": 64, "max_objects": 1, "object_size": (24, 40)}
    train = write_synthetic_detection(tmp_path / "train", counts=(16, 4, 4), **shapes)
    data = DetectionData(str(train), image_size=64, batch_size=8, num_workers=0, augment=False)
    task = DetectionTask("vision/yolo9tr", num_classes=data.num_classes, class_names=data.class_names,
                         model_kwargs={"width": 0.25, "depth": 1}, sample_images=0,
                         optimizer={"class_path": "torch.optim.AdamW", "init_args": {"lr": 0.02}})
    ckpt = tiny_checkpoint(task, data, tmp_path / "yolo9tr.ckpt", steps=16)

    new = write_synthetic_detection(tmp_path / "new_set", counts=(1, 1, 7), seed=5, **shapes)
    records = read_yolo(new)[0]["test"]
    boxes = sum(len(r.labels) for r in records)
    assert main(["test", "--ckpt", ckpt, "--data.test_root", str(new / "data.yaml"), "--data.root", "null",
                 "--trainer.logger", "false"]) == 0
    out = capsys.readouterr().out
    assert f"data: 7 images / {boxes} boxes in {new / 'data.yaml'} (test only), 4 classes" in out
    # by hand: 64 px images seen at 64 px (no letterbox), the checkpoint's model, YOLOv9's evaluation NMS
    model = read_checkpoint(ckpt).build_model().eval()
    images = torch.stack([torch.from_numpy(np.array(Image.open(r.path).convert("RGB"))).permute(2, 0, 1)
                          for r in records]).float() / 255
    with torch.no_grad():
        detections = non_max_suppression(model.decode(model(images)), 0.001, 0.7, 300)
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
    metric.update(detections, [{"boxes": torch.from_numpy(r.pixel_boxes(64, 64)),
                                "labels": torch.from_numpy(r.labels)} for r in records])
    expected = float(metric.compute()["map_50"])
    assert expected > 0  # 16 steps find some objects (0.012; 8 steps: none): a wrong set would score otherwise
    assert reported("test/map_50", out) == pytest.approx(expected, abs=1e-4)

    output = tmp_path / "detections"
    assert main(["predict", "--ckpt", ckpt, "--data.predict_path", str(new / "images" / "test"),
                 "--data.root", str(tmp_path / "gone.yaml"), "--output", str(output), "--trainer.logger", "false"]) == 0
    assert f"data: 7 images to predict in {new / 'images' / 'test'}/" in capsys.readouterr().out
    confident = sum(int((d["scores"] >= 0.25).sum()) for d in detections)
    written = [line for r in records for line in (output / "labels" / f"{r.path.stem}.txt").read_text().splitlines()]
    assert len(written) == confident


# --- a test-only set without root, classes matched by name (data modules alone) ----------------------------------
def test_image_classes_in_another_order_map_by_name_and_a_root_of_only_test_is_all_test(tmp_path):
    from zoo.data.images import ImageClassificationData

    from tests.conftest import write_digit_folder

    write_digit_folder(tmp_path / "only_test" / "test", classes=(0, 1, 2), per_class=3)
    recorded = ["digit_2", "digit_0", "digit_1"]  # the model's label order
    data = ImageClassificationData(root=str(tmp_path / "only_test"), class_names=recorded, image_size=16,
                                   num_workers=0)
    data.setup("test")
    assert len(data.test_set) == 9  # all of it, no split
    assert [recorded[y] for y in data.test_set.labels] == [p.parent.name for p in data.test_set.paths]
    assert data.evaluation_line("test") == f"data: 9 images in {tmp_path / 'only_test' / 'test'}/ (test only), " \
                                           "3 classes"
    with pytest.raises(DataError, match="holds test/ but no train/"):
        data.setup("fit")


def test_covidx_and_dehazing_test_root_without_root_read_only_that_folder(tmp_path):
    from zoo.data.base import cache_root
    from zoo.data.covidx import CovidxData
    from zoo.data.restoration import DehazingData

    for label in ("positive", "negative"):
        (tmp_path / "xrays" / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((20, 20, 3), 40 * i + (100 if label == "positive" else 0), np.uint8)).save(
                tmp_path / "xrays" / label / f"{i}.png")
    xrays = CovidxData(test_root=str(tmp_path / "xrays"), class_names=["negative", "positive"], image_size=16)
    xrays.setup("test")
    assert xrays.test_set.labels == [0, 0, 1, 1] and not (cache_root() / "covidx").exists()
    with pytest.raises(DataError, match=r"classes negative, positive, but the model was trained on normal, "
                                        r"pneumonia, COVID-19"):
        CovidxData(test_root=str(tmp_path / "xrays"), class_names=["normal", "pneumonia", "COVID-19"]).setup("test")

    write_pairs(tmp_path / "pairs", 3, seed=2)
    pairs = DehazingData(test_root=str(tmp_path / "pairs"), num_workers=0)  # the quick start's config: no root
    pairs.setup("test")
    assert len(pairs.split_dataset("test")) == 3 and not any(cache_root().glob("*haze*"))
    assert pairs.evaluation_line("test") == f"data: 3 image pairs in {tmp_path / 'pairs'}/ (test only)"


def test_a_detection_set_to_test_needs_no_train_entry_and_its_boxes_are_relabelled_by_class_name(tmp_path):
    import yaml
    from zoo.data.detection import DetectionData, read_yolo, write_synthetic_detection

    new = write_synthetic_detection(tmp_path / "new_set", counts=(1, 1, 7), image_size=64, max_objects=2,
                                    object_size=(24, 40), seed=5)
    config = yaml.safe_load((new / "data.yaml").read_text())
    names = config["names"] if isinstance(config["names"], list) else [config["names"][i] for i in
                                                                       sorted(config["names"])]
    (new / "test_only.yaml").write_text(yaml.safe_dump({"path": str(new), "test": config["test"], "names": names}))
    recorded = names[::-1]  # the model's label order
    data = DetectionData(test_root=str(new / "test_only.yaml"), class_names=recorded, image_size=64, num_workers=0)
    data.setup("test")
    original = read_yolo(new)[0]["test"]
    boxes = sum(len(r.labels) for r in original)
    assert data.evaluation_line("test") == \
        f"data: 7 images / {boxes} boxes in {new / 'test_only.yaml'} (test only), {len(names)} classes"
    for given, read in zip(original, data.splits["test"], strict=True):
        assert [recorded[y] for y in read.labels] == [names[y] for y in given.labels]
    with pytest.raises(DataError, match=r"not known to the model: .*; missing: tyre"):
        DetectionData(test_root=str(new / "test_only.yaml"), class_names=[*names[:-1], "tyre"]).setup("test")
