"""Detection data: YOLO, COCO and Pascal VOC (RDD2022 layout) readers, letterboxing with the boxes, augmentation that
keeps the boxes on their objects, the offline default written once in YOLO format, and named errors for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from zoo.data.detection import (
    DetectionData,
    DetectionDataset,
    ImageRecord,
    detection_collate,
    letterbox,
    read_coco,
    read_voc,
    read_yolo,
    read_yolo_labels,
    write_synthetic_detection,
)
from zoo.data.detection_simulated import _paste, _shape_mask

from zoo.errors import DataError


def _image(path, width=64, height=48, box=None, colour=(255, 0, 0)):
    """A grey image with a filled rectangle at ``box`` (x1, y1, x2, y2 pixels)."""
    array = np.full((height, width, 3), 90, np.uint8)
    if box is not None:
        x1, y1, x2, y2 = box
        array[y1:y2, x1:x2] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _yolo_set(root, names=("crack", "pothole"), lines=None):
    """images/{train,val}/a.png + labels/{train,val}/a.txt + data.yaml; one 20x10 box at (10, 20) in a 64x48 image."""
    for split in ("train", "val"):
        _image(root / "images" / split / "a.png", box=(10, 20, 30, 30))
        _image(root / "images" / split / "b.png")  # background: no label file
        label = root / "labels" / split / "a.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(lines if lines is not None else f"1 {20 / 64} {25 / 48} {20 / 64} {10 / 48}\n")
    (root / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "val": "images/val",
                                                    "nc": len(names), "names": list(names)}))
    return root


# --- YOLO ----------------------------------------------------------------------------------------------------------
def test_yolo_reader_boxes_background_and_test_falls_back_to_val(tmp_path):
    root = _yolo_set(tmp_path / "set")
    splits, names = read_yolo(root)
    assert names == ["crack", "pothole"] and set(splits) == {"train", "val"}
    a, b = splits["train"]
    assert a.path.name == "a.png" and a.labels.tolist() == [1]
    np.testing.assert_allclose(a.pixel_boxes(64, 48), [[10, 20, 30, 30]], atol=1e-4)
    assert len(b.labels) == 0  # missing label file = background
    data = DetectionData(str(root), image_size=64, batch_size=2, num_workers=0, augment=False)
    assert data.num_classes == 2 and data.class_names == ["crack", "pothole"]
    data.setup("fit")
    images, targets = next(iter(data.test_dataloader()))
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.float32 and 0 <= images.min() <= images.max() <= 1
    # letterbox 64x48 -> 64x64: ratio 1, 8 px of padding on top
    torch.testing.assert_close(targets[0]["boxes"], torch.tensor([[10.0, 28.0, 30.0, 38.0]]))
    assert targets[1]["boxes"].shape == (0, 4) and targets[0]["pad"].tolist() == [0.0, 8.0]
    assert "2 classes" in data.describe()


@pytest.mark.parametrize(("line", "message"), [
    ("0 0.5 0.5 0.2", "expected 5 fields"),
    ("0 0.5 0.5 0.2 0.2 0.1 0.1", "segment polygon"),
    ("2 0.5 0.5 0.2 0.2", "class id 2 is outside 0..1"),
    ("0.5 0.5 0.5 0.2 0.2", "class id 0.5"),
    ("1 1.2 0.5 0.2 0.2", "outside|normalised"),
    ("1 0.5 0.5 0.0 0.2", "zero area"),
    ("1 0.5 abc 0.2 0.2", "non-numeric"),
])
def test_bad_label_lines_are_named_with_file_and_line(tmp_path, line, message):
    path = tmp_path / "x.txt"
    path.write_text(f"0 0.5 0.5 0.1 0.1\n\n{line}\n")
    with pytest.raises(DataError, match=message) as err:
        read_yolo_labels(path, num_classes=2)
    assert f"{path}, line 3" in str(err.value)


def test_data_yaml_without_names_or_with_a_wrong_nc(tmp_path):
    root = _yolo_set(tmp_path / "set")
    config = yaml.safe_load((root / "data.yaml").read_text())
    (root / "data.yaml").write_text(yaml.safe_dump({k: v for k, v in config.items() if k != "names"}))
    with pytest.raises(DataError, match=r"data.yaml: no 'names'"):
        read_yolo(root)
    (root / "data.yaml").write_text(yaml.safe_dump({**config, "nc": 3}))
    with pytest.raises(DataError, match="nc is 3 but 'names' lists 2"):
        read_yolo(root)
    (root / "data.yaml").write_text(yaml.safe_dump({**config, "val": "images/missing"}))
    with pytest.raises(DataError, match="val: images/missing does not exist"):
        read_yolo(root)


def test_bad_label_in_a_dataset_stops_the_data_module(tmp_path):
    root = _yolo_set(tmp_path / "set", lines="0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"a\.txt, line 2: class id 5 is outside 0\.\.1"):
        DetectionData(str(root), num_workers=0)


def test_unreadable_image_is_named(tmp_path):
    root = _yolo_set(tmp_path / "set")
    (root / "images" / "val" / "b.png").write_bytes(b"not an image")
    data = DetectionData(str(root), image_size=64, num_workers=0)
    with pytest.raises(DataError, match=r"cannot read image .*val/b\.png"):
        data.setup("fit")


# --- COCO ----------------------------------------------------------------------------------------------------------
def _coco(tmp_path, annotations=None):
    _image(tmp_path / "images" / "1.png", box=(5, 6, 25, 16))
    _image(tmp_path / "images" / "2.png")
    _image(tmp_path / "images" / "3.png")
    data = {
        "images": [{"id": 1, "file_name": "1.png", "width": 64, "height": 48},
                   {"id": 2, "file_name": "2.png", "width": 64, "height": 48},
                   {"id": 3, "file_name": "3.png", "width": 64, "height": 48}],
        "categories": [{"id": 7, "name": "pothole"}, {"id": 3, "name": "crack"}],
        "annotations": annotations if annotations is not None else [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [5, 6, 20, 10], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [30, 30, 10, 10], "iscrowd": 1}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_coco_reader_maps_categories_in_id_order_and_leaves_crowds_out(tmp_path):
    records, names, crowd = read_coco(_coco(tmp_path))
    assert names == ["crack", "pothole"] and crowd == 1  # category ids 3, 7 -> 0, 1
    first = records[0]
    assert first.path == tmp_path / "images" / "1.png" and first.labels.tolist() == [1]
    np.testing.assert_allclose(first.boxes, [[5, 6, 25, 16]])
    assert len(records[1].labels) == 0
    data = DetectionData(str(tmp_path / "instances.json"), num_workers=0, val_fraction=0.0, test_fraction=0.0)
    assert data.class_names == ["crack", "pothole"] and data.category_ids == [3, 7]


def test_coco_json_whose_image_ids_do_not_match(tmp_path):
    path = _coco(tmp_path, [{"id": 9, "image_id": 42, "category_id": 7, "bbox": [1, 1, 5, 5]}])
    with pytest.raises(DataError, match=r"annotation 9 refers to image_id 42.*do not match"):
        read_coco(path)
    path = _coco(tmp_path, [{"id": 9, "image_id": 1, "category_id": 7, "bbox": [1, 1, 0, 5]}])
    with pytest.raises(DataError, match="annotation 9 bbox must be"):
        read_coco(path)


# --- Pascal VOC (RDD2022) -------------------------------------------------------------------------------------------
def _voc(folder, stem, objects, width=64, height=48):
    _image(folder / "images" / f"{stem}.jpg", width, height)
    xml = folder / "annotations" / "xmls" / f"{stem}.xml"
    xml.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
                   f"<ymax>{b[3]}</ymax></bndbox></object>" for n, b in objects)
    xml.write_text(f"<annotation><filename>{stem}.jpg</filename><size><width>{width}</width><height>{height}"
                   f"</height><depth>3</depth></size>{body}</annotation>")


def test_voc_reader_rdd2022_layout_and_class_maps(tmp_path):
    root = tmp_path / "RDD2022"
    _voc(root / "Japan" / "train", "Japan_000001", [("D00", (1, 2, 30, 40)), ("D44", (5, 5, 9, 9))])
    _voc(root / "Norway" / "train", "Norway_000001", [("D40", (10, 10, 20, 20)), ("Repair", (2, 2, 8, 8))])
    records, names, left_out = read_voc(root, "rdd2022")
    assert names == ["D00", "D10", "D20", "D40"] and left_out == {"D44": 1, "Repair": 1}
    by_name = {r.path.name: r for r in records}
    assert by_name["Japan_000001.jpg"].labels.tolist() == [0] and by_name["Norway_000001.jpg"].labels.tolist() == [3]
    np.testing.assert_allclose(by_name["Japan_000001.jpg"].boxes, [[1, 2, 30, 40]])
    _, names, _ = read_voc(root)  # every label found: the extended set
    assert names == ["D00", "D40", "D44", "Repair"]
    records, names, _ = read_voc(root, {"D00": 0, "D40": 1, "D44": 1})  # several names may share an index
    assert names == ["D00", "D40"] and sorted(len(r.labels) for r in records) == [1, 2]
    with pytest.raises(DataError, match=r"Norway_000001.xml: label 'Repair' is not in --data.classes"):
        read_voc(root, ["D00", "D40", "D44"], other_labels="error")


def test_voc_box_of_zero_area_is_named(tmp_path):
    _voc(tmp_path, "x", [("D00", (10, 10, 10, 20))])
    with pytest.raises(DataError, match=r"x.xml: object 1 \('D00'\) has a box of zero area"):
        read_voc(tmp_path)


def test_voc_folder_trains_through_the_data_module(tmp_path):
    for k in range(6):
        _voc(tmp_path / "voc", f"img{k}", [("D20", (4, 4, 20 + k, 20))])
    data = DetectionData(str(tmp_path / "voc"), image_size=64, num_workers=0, val_fraction=0.2, test_fraction=0.2)
    assert data.class_names == ["D20"] and sum(len(v) for v in data.splits.values()) == 6
    data.setup("fit")
    images, targets = next(iter(data.val_dataloader()))
    assert images.shape[1:] == (3, 64, 64) and targets[0]["labels"].tolist() == [0]


# --- geometry and augmentation ---------------------------------------------------------------------------------------
def test_letterbox_moves_the_boxes_with_the_image(tmp_path):
    image = np.asarray(Image.open(_image(tmp_path / "a.png", 100, 50, box=(20, 10, 60, 30))))
    canvas, boxes, ratio, pad = letterbox(image, np.array([[20, 10, 60, 30]], np.float32), 64)
    assert canvas.shape == (64, 64, 3) and ratio == 0.64 and pad == (0.0, 16.0)
    x1, y1, x2, y2 = boxes[0].round().astype(int)
    assert (x1, y1, x2, y2) == (13, 22, 38, 35)
    inside = canvas[y1 + 1:y2 - 1, x1 + 1:x2 - 1].reshape(-1, 3)
    assert (inside[:, 0] > 200).all() and (inside[:, 1] < 60).all()  # still on the red rectangle
    assert (canvas[:16] == 114).all()  # grey padding above


def test_training_augmentation_keeps_boxes_on_their_objects(tmp_path):
    records = [ImageRecord(_image(tmp_path / f"{k}.png", 96, 96, box=(20 + k, 30, 50 + k, 70)),
                           np.array([[20 + k, 30, 50 + k, 70]], np.float32), np.array([0])) for k in range(4)]
    dataset = DetectionDataset(records, 96, train=True, mosaic=0.5, hsv=(0.0, 0.0, 0.0), scale=0.3)
    for n in range(12):
        image, target = dataset[n % 4]
        assert image.shape == (3, 96, 96)
        for x1, y1, x2, y2 in target["boxes"].round().int().tolist():
            assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96
            centre = image[:, (y1 + y2) // 2, (x1 + x2) // 2]
            assert centre[0] > 0.75 and centre[1] < 0.25, (n, centre)  # the red object, not the grey background
    batch = detection_collate([dataset[0], dataset[1]])
    assert batch[0].shape == (2, 3, 96, 96) and len(batch[1]) == 2


# --- the offline default ---------------------------------------------------------------------------------------------
def test_synthetic_default_is_written_once_in_yolo_format_with_exact_boxes(tmp_path):
    folder = write_synthetic_detection(tmp_path / "syn", counts=(8, 4, 4), image_size=128, object_size=(16, 48))
    assert {p.name for p in folder.iterdir()} >= {"images", "labels", "data.yaml", "README.txt"}
    stamp = (folder / "data.yaml").stat().st_mtime_ns
    assert write_synthetic_detection(folder, counts=(8, 4, 4), image_size=128, object_size=(16, 48)) == folder
    assert (folder / "data.yaml").stat().st_mtime_ns == stamp  # not rewritten
    splits, names = read_yolo(folder)
    assert names == ["circle", "triangle", "square", "star"] and [len(splits[k]) for k in splits] == [8, 4, 4]
    readme = (folder / "README.txt").read_text()
    assert readme.startswith("SYNTHETIC")
    parts = {p.split(": ")[0].strip(): set(p.split(": ")[1].split(", ")) for p in
             readme.split("(kept apart): ")[1].split(". Boxes")[0].split("; ")}
    assert not (parts["train"] & parts["val"]) and not (parts["train"] & parts["test"])  # photos kept apart
    rng = np.random.default_rng(0)
    for kind in ("circle", "triangle", "square", "star"):  # the label is the tight box of the visible object
        canvas = np.zeros((64, 64, 3), np.uint8)
        box = _paste(canvas, _shape_mask(kind, 30, rng), 10, 20, np.array([255.0, 255.0, 255.0]))
        ys, xs = np.nonzero(canvas[..., 0] > 127)
        assert box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    digits = write_synthetic_detection(tmp_path / "digits", objects="digits", counts=(4, 2, 2), image_size=64,
                                       object_size=(16, 32))
    assert read_yolo(digits)[1] == [str(d) for d in range(10)]


def test_mosaic_goes_off_for_the_last_close_mosaic_epochs(tmp_path):
    root = _yolo_set(tmp_path / "set")
    data = DetectionData(str(root), image_size=64, batch_size=2, num_workers=0, mosaic=1.0, close_mosaic=2)
    data.setup("fit")
    data.train_dataloader()
    data.set_epoch(7, 10)
    assert bool(data.train_set.mosaic_enabled)
    data.set_epoch(8, 10)
    assert not bool(data.train_set.mosaic_enabled)
    with pytest.raises(DataError, match="multiple of 32"):
        DetectionData(str(root), image_size=100)
