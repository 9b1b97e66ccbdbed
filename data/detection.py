"""Object detection data: YOLO label folders, COCO json and Pascal VOC XML (RDD2022), letterboxing, bounding-box
aware augmentation (albumentations), mosaic and mixup, and an offline default set in YOLO format.

Formats (``format="auto"`` picks one from ``root``):

- ``yolo``: a ``data.yaml`` (``root`` is the file or the folder holding it) with ``train`` / ``val`` / ``test``
  (folders of images, ``.txt`` lists of image paths, or lists of either; relative to ``path`` when given, else
  to the yaml's folder), ``names`` (a list, or a dict index -> name) and optionally ``nc``. Each image's labels are
  at the same path with the last ``images`` folder replaced by ``labels`` and the suffix ``.txt`` (so both
  ``images/train/x.jpg`` -> ``labels/train/x.txt`` and Roboflow's ``train/images`` -> ``train/labels`` work); one
  line ``class x_centre y_centre width height`` per box, normalised to [0, 1]; a missing or empty file is a
  background image. No ``test`` entry: the test stage uses ``val``.
- ``coco``: an instances json (``root``) with ``images``, ``annotations`` (``bbox`` = [x, y, w, h] pixels) and
  ``categories``; images are found under ``images_dir`` (default: the json's folder, then its ``images/``).
  Category ids map to 0..K-1 in id order. Crowd annotations (``iscrowd: 1``) are left out and counted.
- ``voc``: Pascal VOC XML files anywhere under ``root`` (``Annotations/*.xml`` + ``JPEGImages/``, or RDD2022's
  ``<country>/train/annotations/xmls/*.xml`` + ``<country>/train/images/``). ``classes`` maps label names to
  indices: a list of names, a dict name -> index (several names may share one index), ``"rdd2022"`` (the
  challenge's D00 longitudinal, D10 transverse, D20 alligator cracks, D40 potholes) or None (every name found,
  sorted: RDD2022's extended labels). Objects of other names are left out and counted (``other_labels="skip"``)
  or stop with an error (``"error"``).

COCO and VOC sets are split here (seeded, ``val_fraction`` / ``test_fraction``) unless ``val_root`` / ``test_root``
name their own files. Every image is letterboxed: resized so its longer side is ``image_size``, padded with grey
(114) to ``image_size`` x ``image_size``, boxes moved with it. Batches are ``(images (B, 3, S, S) float in [0, 1],
targets)``, targets a list of per-image dicts: ``boxes`` (n, 4) x1y1x2y2 in the S x S frame, ``labels`` (n,),
``index``, ``orig_size`` (H, W), ``ratio`` and ``pad`` (x, y) of the letterbox (to map boxes back).

Offline default (:func:`write_synthetic_detection`): filled shapes (circle, triangle, square, star) or real
handwritten digits (scikit-learn's ``load_digits``, upsampled) composited at random scales, colours and rotations
onto crops of the real photos that ship with scikit-learn and scikit-image; exact boxes; written once into
``cache_root()`` in YOLO format (``images/`` + ``labels/`` + ``data.yaml``) and read by the same YOLO reader.
Whole photos are kept apart between train, val and test.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import albumentations as A
import numpy as np
import torch
import yaml
from PIL import Image, ImageDraw, UnidentifiedImageError
from torch.utils.data import Dataset
from zoo.data.base import ZooDataModule, bundled_photos, cache_root
from zoo.data.images import read_image
from zoo.data.splits import grouped_split, random_split

from zoo.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["DetectionData", "DetectionDataset", "ImageRecord", "coco_category_ids", "detection_collate", "letterbox",
           "read_coco",
           "read_voc", "read_yolo", "read_yolo_labels", "write_synthetic_detection"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
PAD_VALUE = 114
RDD2022_CLASSES = ("D00", "D10", "D20", "D40")
SHAPES = ("circle", "triangle", "square", "star")
SYNTHETIC_VERSION = "1"
Format = Literal["auto", "yolo", "coco", "voc"]


@dataclass
class ImageRecord:
    """One image and its boxes: ``boxes`` (n, 4) x1y1x2y2 in pixels of the original image, or (n, 4) normalised
    centre/size (YOLO) when ``normalized``; ``labels`` (n,) int64; ``size`` (W, H) once known."""

    path: Path
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    normalized: bool = False
    size: tuple[int, int] | None = None
    image_id: int | None = None

    def pixel_boxes(self, width: int, height: int) -> np.ndarray:
        """(n, 4) x1y1x2y2 pixels of the image of ``width`` x ``height``."""
        if not self.normalized:
            return self.boxes.astype(np.float32)
        xc, yc, w, h = self.boxes.T
        return np.stack([(xc - w / 2) * width, (yc - h / 2) * height, (xc + w / 2) * width,
                         (yc + h / 2) * height], 1).clip(0, [width, height, width, height]).astype(np.float32)


def image_size_of(path: Path) -> tuple[int, int]:
    """(W, H) from the image header (fast); an unreadable file raises DataError naming it."""
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


# --- YOLO --------------------------------------------------------------------------------------------------------
def read_yolo_labels(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A YOLO label file -> (boxes (n, 4) normalised xc, yc, w, h, labels (n,)). A missing or empty file is
    background.

    Raises:
        DataError: naming the file and line, for a line without exactly 5 fields, a non-numeric field, a class id
            that is not an integer in [0, num_classes), a coordinate outside [0, 1], or a box of zero area.
    """
    if not path.is_file():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    boxes, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}, line {number}"
        if len(fields) != 5:
            hint = " (a segment polygon? convert it to a box)" if len(fields) > 5 else ""
            raise DataError(f"{where}: expected 5 fields 'class x_centre y_centre width height', got "
                            f"{len(fields)}: {line.strip()!r}{hint}")
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise DataError(f"{where}: non-numeric field in {line.strip()!r}") from None
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < num_classes:
            raise DataError(f"{where}: class id {fields[0]} is outside 0..{num_classes - 1} (nc = {num_classes})")
        coords = values[1:]
        if not all(0.0 <= v <= 1.0 for v in coords):
            raise DataError(f"{where}: coordinates must be normalised to [0, 1] by the image width and height, "
                            f"got {' '.join(fields[1:])}")
        if coords[2] <= 0 or coords[3] <= 0:
            raise DataError(f"{where}: box of zero area (width {fields[3]}, height {fields[4]})")
        boxes.append(coords)
        labels.append(int(cls))
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)


def label_path_for(image: Path) -> Path:
    """``.../images/.../x.jpg`` -> ``.../labels/.../x.txt`` (the last ``images`` folder); else ``x.txt`` beside."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _yolo_names(config: dict, yaml_path: Path) -> list[str]:
    names = config.get("names")
    if names is None:
        raise DataError(f"{yaml_path}: no 'names' (the class names, a list or a dict index -> name)")
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise DataError(f"{yaml_path}: 'names' keys must be 0..{len(names) - 1}, got {sorted(names)}")
        names = [names[i] for i in range(len(names))]
    names = [str(n) for n in names]
    if "nc" in config and int(config["nc"]) != len(names):
        raise DataError(f"{yaml_path}: nc is {config['nc']} but 'names' lists {len(names)} classes")
    if not names:
        raise DataError(f"{yaml_path}: 'names' is empty")
    return names


def _yolo_split_images(entry: Any, base: Path, yaml_path: Path, key: str) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    images: list[Path] = []
    for item in entries:
        path = Path(str(item)).expanduser()
        candidates = [path] if path.is_absolute() else [base / path]
        if not path.is_absolute() and str(item).startswith("../"):  # Roboflow writes ../train/images
            candidates.append(base / str(item)[3:])
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise DataError(f"{yaml_path}: {key}: {item} does not exist (looked for "
                            f"{' or '.join(str(c) for c in candidates)})")
        if found.is_dir():
            images += _images_in(found)
        else:  # a list file of image paths, relative to the list's folder or to the base
            for line in found.read_text().splitlines():
                if line.strip():
                    p = Path(line.strip())
                    images.append(p if p.is_absolute() else (found.parent / p if (found.parent / p).exists()
                                                             else base / p))
    if not images:
        raise DataError(f"{yaml_path}: {key}: no images ({', '.join(IMAGE_EXTENSIONS)}) in {entry}")
    return images


def read_yolo(root: str | Path) -> tuple[dict[str, list[ImageRecord]], list[str]]:
    """A YOLO dataset (``data.yaml`` or its folder) -> ({"train", "val", "test"}: records, class names)."""
    yaml_path = Path(root).expanduser()
    if yaml_path.is_dir():
        yaml_path = next((yaml_path / n for n in ("data.yaml", "data.yml", "dataset.yaml") if
                          (yaml_path / n).is_file()), yaml_path / "data.yaml")
    if not yaml_path.is_file():
        raise DataError(f"{yaml_path} does not exist: a YOLO dataset needs a data.yaml with train/val, names")
    try:
        config = yaml.safe_load(yaml_path.read_text()) or {}
    except yaml.YAMLError as err:
        raise DataError(f"{yaml_path}: not valid YAML: {err}") from None
    if not isinstance(config, dict):
        raise DataError(f"{yaml_path}: expected a mapping with train, val, names")
    names = _yolo_names(config, yaml_path)
    base = yaml_path.parent
    if config.get("path"):
        base = Path(str(config["path"])).expanduser()
        base = base if base.is_absolute() else yaml_path.parent / base
    splits: dict[str, list[ImageRecord]] = {}
    for key in ("train", "val", "test"):
        if not config.get(key):
            if key != "test":
                raise DataError(f"{yaml_path}: no '{key}' entry (a folder of images or a list file)")
            continue
        records = []
        for image in _yolo_split_images(config[key], base, yaml_path, key):
            boxes, labels = read_yolo_labels(label_path_for(image), len(names))
            records.append(ImageRecord(image, boxes, labels, normalized=True))
        splits[key] = records
    return splits, names


# --- COCO --------------------------------------------------------------------------------------------------------
def read_coco(json_path: str | Path, images_dir: str | Path | None = None
              ) -> tuple[list[ImageRecord], list[str], int]:
    """A COCO instances json -> (records, class names in category-id order, crowd annotations left out).

    Raises:
        DataError: a missing or malformed file, an annotation whose image_id or category_id is not listed, a
            bbox that is not [x, y, w, h] with w, h > 0 (annotation id named).
    """
    json_path = Path(json_path).expanduser()
    try:
        data = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read COCO json {json_path}: {err}") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{json_path}: no '{key}' list (a COCO instances file has images, annotations, "
                            "categories)")
    categories = sorted(data["categories"], key=lambda c: c["id"])
    index_of = {c["id"]: i for i, c in enumerate(categories)}
    folder = Path(images_dir).expanduser() if images_dir else None
    if folder is None:
        folder = json_path.parent / "images" if (json_path.parent / "images").is_dir() else json_path.parent
    records: dict[Any, ImageRecord] = {}
    for image in data["images"]:
        records[image["id"]] = ImageRecord(folder / image["file_name"], size=(int(image["width"]),
                                           int(image["height"])) if "width" in image else None,
                                           image_id=image["id"] if isinstance(image["id"], int) else None)
    boxes: dict[Any, list] = {k: [] for k in records}
    labels: dict[Any, list] = {k: [] for k in records}
    crowd = 0
    for ann in data["annotations"]:
        ident = ann.get("id", "?")
        if ann.get("image_id") not in records:
            raise DataError(f"{json_path}: annotation {ident} refers to image_id {ann.get('image_id')!r}, which is "
                            "not in 'images' (the image ids do not match)")
        if ann.get("category_id") not in index_of:
            raise DataError(f"{json_path}: annotation {ident} has category_id {ann.get('category_id')!r}, which is "
                            f"not in 'categories' ({sorted(index_of)})")
        if ann.get("iscrowd"):
            crowd += 1
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4) or bbox[2] <= 0 or bbox[3] <= 0:
            raise DataError(f"{json_path}: annotation {ident} bbox must be [x, y, width, height] with positive "
                            f"width and height, got {bbox}")
        x, y, w, h = (float(v) for v in bbox)
        boxes[ann["image_id"]].append([x, y, x + w, y + h])
        labels[ann["image_id"]].append(index_of[ann["category_id"]])
    for key, record in records.items():
        record.boxes = np.asarray(boxes[key], np.float32).reshape(-1, 4)
        record.labels = np.asarray(labels[key], np.int64)
    return list(records.values()), [str(c.get("name", c["id"])) for c in categories], crowd


def coco_category_ids(json_path: str | Path) -> list[int]:
    """The category id of each class index of :func:`read_coco` (ids in ascending order), so that predictions can
    be written with the dataset's own ids."""
    data = json.loads(Path(json_path).expanduser().read_text())
    return sorted(int(c["id"]) for c in data["categories"])


# --- Pascal VOC --------------------------------------------------------------------------------------------------
def _voc_image(xml_path: Path, filename: str | None) -> Path:
    here = xml_path.parent
    names = [filename] if filename else []
    names += [xml_path.stem + ext for ext in (".jpg", ".png", ".jpeg", ".JPG")]
    folders = [here, here.parent / "images", here.parent.parent / "images", here.parent / "JPEGImages",
               here.parent.parent / "JPEGImages"]
    for folder in folders:
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"{xml_path}: its image {filename or xml_path.stem} is not in "
                    f"{', '.join(str(f) for f in folders)}")


def _voc_objects(xml_path: Path) -> tuple[str | None, tuple[int, int] | None, list[tuple[str, list[float]]]]:
    try:
        tree = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as err:
        raise DataError(f"cannot read VOC XML {xml_path}: {err}") from None
    size = tree.find("size")
    wh = None
    if size is not None and size.findtext("width") and size.findtext("height"):
        wh = (int(float(size.findtext("width"))), int(float(size.findtext("height"))))
    objects = []
    for k, obj in enumerate(tree.iter("object"), start=1):
        name, box = (obj.findtext("name") or "").strip(), obj.find("bndbox")
        try:
            coords = [float(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]
        except (AttributeError, TypeError, ValueError):
            raise DataError(f"{xml_path}: object {k} ({name!r}) has no numeric bndbox xmin/ymin/xmax/ymax") from None
        if coords[2] <= coords[0] or coords[3] <= coords[1]:
            raise DataError(f"{xml_path}: object {k} ({name!r}) has a box of zero area: {coords}")
        objects.append((name, coords))
    return tree.findtext("filename"), wh, objects


def resolve_class_map(classes: Sequence[str] | dict[str, int] | str | None, found: Sequence[str]
                      ) -> tuple[dict[str, int], list[str]]:
    """(name -> index, class names) from the user's ``classes`` (see the module docstring)."""
    if classes is None:
        names = sorted(set(found))
        return {n: i for i, n in enumerate(names)}, names
    if isinstance(classes, str):
        if classes.lower() != "rdd2022":
            raise DataError(f"--data.classes {classes!r}: give a list of names, a dict name -> index, 'rdd2022' "
                            "or nothing (every label found)")
        classes = list(RDD2022_CLASSES)
    if isinstance(classes, dict):
        indices = sorted(set(classes.values()))
        if indices != list(range(len(indices))):
            raise DataError(f"--data.classes: indices must be 0..K-1, got {indices}")
        names = [next(n for n, i in classes.items() if i == k) for k in indices]
        return dict(classes), names
    return {n: i for i, n in enumerate(classes)}, list(classes)


def read_voc(root: str | Path, classes: Sequence[str] | dict[str, int] | str | None = None,
             other_labels: Literal["skip", "error"] = "skip") -> tuple[list[ImageRecord], list[str], Counter]:
    """Pascal VOC XML files under ``root`` -> (records, class names, counts of the names left out).

    Raises:
        DataError: no XML files, an unreadable XML, a bad box (file and object named), an image not found, or
            an object name outside ``classes`` with ``other_labels="error"``.
    """
    root = Path(root).expanduser()
    xmls = sorted(root.rglob("*.xml")) if root.is_dir() else []
    if not xmls:
        raise DataError(f"{root}: no Pascal VOC .xml files found (Annotations/*.xml or annotations/xmls/*.xml)")
    parsed = [(x, *_voc_objects(x)) for x in xmls]
    class_map, names = resolve_class_map(classes, [n for *_, objs in parsed for n, _ in objs])
    left_out: Counter = Counter()
    records = []
    for xml_path, filename, wh, objects in parsed:
        boxes, labels = [], []
        for name, coords in objects:
            if name not in class_map:
                if other_labels == "error":
                    raise DataError(f"{xml_path}: label {name!r} is not in --data.classes ({', '.join(class_map)});"
                                    " add it to the map or pass --data.other_labels skip")
                left_out[name] += 1
                continue
            boxes.append(coords)
            labels.append(class_map[name])
        records.append(ImageRecord(_voc_image(xml_path, filename), np.asarray(boxes, np.float32).reshape(-1, 4),
                                   np.asarray(labels, np.int64), size=wh))
    return records, names, left_out


# --- geometry and augmentation -----------------------------------------------------------------------------------
def letterbox(image: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, float,
                                                                        tuple[float, float]]:
    """Resize ``image`` (H, W, 3) so the longer side is ``size``, pad with grey to size x size (centred).

    Returns:
        (canvas (size, size, 3), boxes (n, 4) x1y1x2y2 in the canvas, ratio, (pad_x, pad_y)); a point p of the
        original image lands at p * ratio + pad.
    """
    h, w = image.shape[:2]
    ratio = size / max(h, w)
    nw, nh = max(1, round(w * ratio)), max(1, round(h * ratio))
    resized = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR)) if (nw, nh) != (w, h) else image
    px, py = (size - nw) // 2, (size - nh) // 2
    canvas = np.full((size, size, 3), PAD_VALUE, np.uint8)
    canvas[py:py + nh, px:px + nw] = resized
    out = boxes * ratio + np.array([px, py, px, py], np.float32) if len(boxes) else boxes.reshape(0, 4)
    return canvas, out.astype(np.float32), ratio, (float(px), float(py))


def _clip_boxes(boxes: np.ndarray, labels: np.ndarray, width: int, height: int, min_side: float = 2.0
                ) -> tuple[np.ndarray, np.ndarray]:
    boxes = boxes.copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_side) & ((boxes[:, 3] - boxes[:, 1]) >= min_side)
    return boxes[keep], labels[keep]


class DetectionDataset(Dataset):
    """Letterboxed images and their boxes; training adds mosaic, mixup and albumentations' bbox-aware
    colour jitter, affine and flip.

    Each item: ``(image (3, S, S) float in [0, 1], target dict)`` (see the module docstring for the keys).

    Args:
        records: the images and boxes.
        image_size: S, the side of the square letterbox (a multiple of 32 for the YOLO models).
        train: augment (the rest only applies when True).
        mosaic: probability of a 2 x 2 mosaic of four images (YOLO's); ``mixup``: of blending two samples.
        hsv: (hue, saturation, value) jitter: hue shift in turns, saturation and value gains 1 +- g.
        translate / scale / fliplr: affine translation (fraction), scale gain 1 +- scale, horizontal flip.
    """

    def __init__(self, records: Sequence[ImageRecord], image_size: int, train: bool = False, mosaic: float = 0.0,
                 mixup: float = 0.0, hsv: Sequence[float] = (0.015, 0.7, 0.4), translate: float = 0.1,
                 scale: float = 0.5, fliplr: float = 0.5, seed: int = 0):
        self.records, self.size, self.train = list(records), image_size, train
        self.mosaic, self.mixup = mosaic, mixup
        self.mosaic_enabled = torch.ones(1, dtype=torch.bool).share_memory_()  # seen by loader workers too
        self.transform = None
        if train:
            self.transform = A.Compose([
                A.Affine(scale=(max(0.05, 1 - scale), 1 + scale), translate_percent=(-translate, translate),
                         border_mode=0, fill=PAD_VALUE, p=1.0),
                A.HorizontalFlip(p=fliplr),
                A.ColorJitter(brightness=hsv[2], contrast=0.0, saturation=hsv[1], hue=hsv[0], p=1.0),
            ], bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.1,
                                        min_width=2, min_height=2, clip=True), seed=seed)

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image (H, W, 3) uint8, boxes (n, 4) pixels, labels (n,)) of the original image."""
        record = self.records[index]
        image = read_image(record.path)
        h, w = image.shape[:2]
        boxes, labels = _clip_boxes(record.pixel_boxes(w, h), record.labels, w, h, min_side=0.0)
        if len(boxes) != len(record.labels):
            raise DataError(f"{record.path}: a box lies outside the {w}x{h} image")
        return image, boxes, labels

    def _letterboxed(self, index: int):
        image, boxes, labels = self.load(index)
        canvas, boxes, ratio, pad = letterbox(image, boxes, self.size)
        return canvas, boxes, labels, ratio, pad, image.shape[:2]

    def _mosaic(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Four letterboxed images around a random centre of a 2S x 2S canvas, shrunk back to S x S."""
        s = self.size
        canvas = np.full((2 * s, 2 * s, 3), PAD_VALUE, np.uint8)
        xc, yc = (int(random.uniform(0.5 * s, 1.5 * s)) for _ in range(2))  # python's random: seeded per worker
        indices = [index] + [random.randrange(len(self.records)) for _ in range(3)]
        all_boxes, all_labels = [], []
        for k, i in enumerate(indices):
            image, boxes, labels = self.load(i)
            h, w = image.shape[:2]
            r = s / max(h, w)
            w, h = max(1, round(w * r)), max(1, round(h * r))
            image = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
            x0, y0 = (xc - w if k in (0, 2) else xc), (yc - h if k in (0, 1) else yc)
            cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, 2 * s), min(y0 + h, 2 * s)
            canvas[cy0:cy1, cx0:cx1] = image[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
            all_boxes.append(boxes * r + np.array([x0, y0, x0, y0], np.float32))
            all_labels.append(labels)
        boxes, labels = _clip_boxes(np.concatenate(all_boxes), np.concatenate(all_labels), 2 * s, 2 * s)
        small = np.asarray(Image.fromarray(canvas).resize((s, s), Image.BILINEAR))
        return small, boxes / 2, labels

    def _train_sample(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.mosaic > 0 and bool(self.mosaic_enabled) and random.random() < self.mosaic:
            image, boxes, labels = self._mosaic(index)
        else:
            image, boxes, labels = self._letterboxed(index)[:3]
        out = self.transform(image=image, bboxes=boxes, labels=labels)
        return out["image"], np.asarray(out["bboxes"], np.float32).reshape(-1, 4), np.asarray(out["labels"],
                                                                                                np.int64)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.train:
            image, boxes, labels = self._train_sample(index)
            if self.mixup > 0 and random.random() < self.mixup:  # YOLO's mixup: Beta(32, 32) blend
                other, other_boxes, other_labels = self._train_sample(random.randrange(len(self.records)))
                lam = np.random.beta(32.0, 32.0)
                image = (image * lam + other * (1 - lam)).astype(np.uint8)
                boxes, labels = np.concatenate([boxes, other_boxes]), np.concatenate([labels, other_labels])
            ratio, pad, orig = 1.0, (0.0, 0.0), (self.size, self.size)
        else:
            image, boxes, labels, ratio, pad, orig = self._letterboxed(index)
        target = {
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, np.float32)).reshape(-1, 4),
            "labels": torch.from_numpy(np.ascontiguousarray(labels, np.int64)),
            "index": torch.tensor(index), "orig_size": torch.tensor(orig),
            "ratio": torch.tensor(ratio, dtype=torch.float32), "pad": torch.tensor(pad, dtype=torch.float32),
        }
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() / 255.0, target


def detection_collate(samples: list[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, list[dict]]:
    """[(image (3, S, S), target)] -> (images (B, 3, S, S), [target]): the boxes stay per image."""
    return torch.stack([s[0] for s in samples]), [s[1] for s in samples]


DETECTION_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "brick", "grass", "gravel",
                    "camera", "coins", "moon")


# --- the offline default -----------------------------------------------------------------------------------------
def _shape_mask(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A filled shape (float mask (size, size) in [0, 1]) at a random rotation, touching the square's borders
    along at least one axis only roughly (the exact box is taken from the mask)."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    c, r, angle = size / 2, size / 2 - 1, rng.uniform(0, 2 * math.pi)
    if kind == "circle":
        draw.ellipse([1, 1, size - 2, size - 2], fill=255)
    else:
        corners = {"triangle": 3, "square": 4, "star": 10}[kind]
        points = []
        for k in range(corners):
            radius = r * (0.45 if kind == "star" and k % 2 else 1.0)
            theta = angle + 2 * math.pi * k / corners
            points.append((c + radius * math.cos(theta), c + radius * math.sin(theta)))
        draw.polygon(points, fill=255)
    return np.asarray(mask, np.float32) / 255.0


def _digit_mask(digit_image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray((digit_image * (255 / 16)).astype(np.uint8)).resize((size, size),
                                                                                            Image.BILINEAR),
                      np.float32) / 255.0


def _paste(canvas: np.ndarray, mask: np.ndarray, x: int, y: int, colour: np.ndarray) -> tuple[float, ...] | None:
    """Alpha-composite ``colour`` through ``mask`` at (x, y); the tight box of the visible mask (> 0.5)."""
    h, w = mask.shape
    region = canvas[y:y + h, x:x + w].astype(np.float32)
    alpha = mask[..., None]
    canvas[y:y + h, x:x + w] = (region * (1 - alpha) + colour * alpha).astype(np.uint8)
    ys, xs = np.nonzero(mask > 0.5)
    if len(xs) == 0:
        return None
    return float(x + xs.min()), float(y + ys.min()), float(x + xs.max() + 1), float(y + ys.max() + 1)


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw, ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0])), max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def write_synthetic_detection(folder: Path, objects: Literal["shapes", "digits"] = "shapes", image_size: int = 256,
                              counts: tuple[int, int, int] = (600, 150, 150), max_objects: int = 4,
                              object_size: tuple[int, int] = (18, 96), seed: int = 0) -> Path:
    """Write the offline detection set into ``folder`` in YOLO format, once; returns ``folder``.

    Each image is a random crop of a bundled real photo (rescaled to ``image_size``), with 1..``max_objects``
    objects (shapes or real digits) of side ``object_size`` pixels at random places, colours and rotations,
    overlapping little (IoU < 0.1); the label is the exact box of the visible object.
    """
    version = f"{SYNTHETIC_VERSION}-{objects}-{image_size}-{counts}-{max_objects}-{object_size}-{seed}"
    if (folder / "VERSION").is_file() and (folder / "VERSION").read_text().strip() == version:
        return folder
    rng = np.random.default_rng(seed)
    photos = bundled_photos(DETECTION_PHOTOS)
    photo_names = sorted(photos)
    split = grouped_split(photo_names, 0.2, 0.2, seed)
    part_photos = {part: [photo_names[i] for i in getattr(split, part)] for part in ("train", "val", "test")}
    if objects == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        names = [str(d) for d in range(10)]
    else:
        names = list(SHAPES)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    total_boxes = Counter()
    for part, count in zip(("train", "val", "test"), counts, strict=True):
        (staging / "images" / part).mkdir(parents=True)
        (staging / "labels" / part).mkdir(parents=True)
        for n in range(count):
            photo = photos[part_photos[part][rng.integers(len(part_photos[part]))]]
            h, w = photo.shape[:2]
            side = int(rng.uniform(0.35, 1.0) * min(h, w))
            y0, x0 = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            canvas = np.asarray(Image.fromarray(photo[y0:y0 + side, x0:x0 + side]).resize(
                (image_size, image_size), Image.BILINEAR)).copy()
            lines, boxes = [], []
            for _ in range(int(rng.integers(1, max_objects + 1))):
                for _attempt in range(20):
                    size = int(rng.uniform(*object_size))
                    x, y = (int(rng.integers(0, image_size - size + 1)) for _ in range(2))
                    if all(_iou((x, y, x + size, y + size), b) < 0.1 for b in boxes):
                        break
                else:
                    continue
                cls = int(rng.integers(len(names)))
                if objects == "digits":
                    choices = np.flatnonzero(digits.target == cls)
                    mask = _digit_mask(digits.images[rng.choice(choices)], size)
                else:
                    mask = _shape_mask(names[cls], size, rng)
                colour = rng.uniform(0, 255, 3).astype(np.float32)
                box = _paste(canvas, mask * rng.uniform(0.8, 1.0), x, y, colour)
                if box is None:
                    continue
                boxes.append(box)
                x1, y1, x2, y2 = box
                lines.append(f"{cls} {(x1 + x2) / 2 / image_size:.6f} {(y1 + y2) / 2 / image_size:.6f} "
                             f"{(x2 - x1) / image_size:.6f} {(y2 - y1) / image_size:.6f}")
                total_boxes[part] += 1
            Image.fromarray(canvas).save(staging / "images" / part / f"{part}_{n:05d}.jpg", quality=92)
            (staging / "labels" / part / f"{part}_{n:05d}.txt").write_text("\n".join(lines) + "\n" if lines else "")
    (staging / "data.yaml").write_text(yaml.safe_dump({
        "path": ".", "train": "images/train", "val": "images/val", "test": "images/test", "nc": len(names),
        "names": names}, sort_keys=False))
    (staging / "README.txt").write_text(
        f"SYNTHETIC OBJECTS written by zoo.data.detection.write_synthetic_detection: {objects} "
        f"({', '.join(names)}{'; real handwritten digits from scikit-learn load_digits, upsampled' if objects == 'digits' else ''}) "  # noqa: E501
        f"composited at {object_size[0]}-{object_size[1]} px onto {image_size}x{image_size} crops of real photos "
        f"bundled with scikit-learn / scikit-image. Photos per split (kept apart): "
        + "; ".join(f"{p}: {', '.join(v)}" for p, v in part_photos.items())
        + f". Boxes: {', '.join(f'{p} {total_boxes[p]}' for p in ('train', 'val', 'test'))}. YOLO format.\n")
    (staging / "VERSION").write_text(version + "\n")
    try:
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (folder / "VERSION").is_file():
            raise
    return folder


# --- the data module ---------------------------------------------------------------------------------------------
class DetectionData(ZooDataModule):
    """Detection batches ``(images (B, 3, S, S) in [0, 1], targets: per-image dicts)`` (module docstring).

    Args:
        root: a YOLO ``data.yaml`` (or its folder), a COCO json, or a folder of VOC XML; None writes and uses the
            offline default (``synthetic`` objects on bundled photos).
        format: "auto" (from ``root``), "yolo", "coco" or "voc".
        val_root / test_root: COCO json / VOC folders of the validation / test sets (else split off ``root``).
        images_dir: where a COCO json's ``file_name`` paths start (default: its folder, or its ``images/``).
        classes: the VOC class map (list, dict name -> index, "rdd2022"; None: every label found).
        other_labels: VOC objects outside ``classes``: "skip" (left out, counted in describe()) or "error".
        synthetic: objects of the offline default: "shapes" (circle, triangle, square, star) or "digits".
        image_size: side S of the letterbox (a multiple of 32; the paper: 640).
        augment: training augmentation (colour jitter, affine, flip; mosaic and mixup by their probabilities).
        mosaic / mixup: probabilities (the paper's recipe: 1.0 / 0.15); close_mosaic: epochs at the end without
            mosaic (the paper: 15), applied through :meth:`set_epoch` (the detection task calls it).
        hsv / translate / scale / fliplr: the augmentation strengths (the paper's hyp.scratch-high defaults).
        val_fraction / test_fraction: split sizes for COCO / VOC sets without their own val/test files.
        predict_path: an image or a folder of images for ``zoo predict``.
        eval_batch_size: batch size of val/test/predict (default: batch_size).
    """

    collate_fn = staticmethod(detection_collate)

    def __init__(self, root: str | None = None, format: Format = "auto", val_root: str | None = None,
                 test_root: str | None = None, images_dir: str | None = None,
                 classes: list[str] | dict[str, int] | str | None = None,
                 other_labels: Literal["skip", "error"] = "skip", synthetic: Literal["shapes", "digits"] = "shapes",
                 image_size: int = 640, augment: bool = True, mosaic: float = 0.0, close_mosaic: int = 0,
                 mixup: float = 0.0, hsv: tuple[float, float, float] = (0.015, 0.7, 0.4), translate: float = 0.1,
                 scale: float = 0.5, fliplr: float = 0.5, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 predict_path: str | None = None, batch_size: int = 16, eval_batch_size: int | None = None,
                 num_workers: int | None = None, seed: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        if image_size < 32 or image_size % 32:
            raise DataError(f"--data.image_size must be a positive multiple of 32 (strides 8/16/32), got {image_size}")
        if not (0 <= mosaic <= 1 and 0 <= mixup <= 1):
            raise DataError(f"--data.mosaic and --data.mixup are probabilities, got {mosaic} and {mixup}")
        self.splits: dict[str, list[ImageRecord]] = {}
        self.class_names: list[str] = []
        self.notes: list[str] = []
        self.category_ids: list[int] | None = None  # a COCO set's category id of each class index
        self.predict_paths: list[Path] = []
        self.train_set: DetectionDataset | None = None
        self.eval_batch_size = eval_batch_size
        self._read_classes()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _format(self) -> str:
        hp = self.hparams
        if hp.format != "auto":
            return hp.format
        root = Path(hp.root).expanduser()
        if root.suffix.lower() == ".json":
            return "coco"
        if root.suffix.lower() in (".yaml", ".yml") or (root.is_dir() and any(
                (root / n).is_file() for n in ("data.yaml", "data.yml", "dataset.yaml"))):
            return "yolo"
        if root.is_dir() and next(root.rglob("*.xml"), None) is not None:
            return "voc"
        raise DataError(f"--data.root {root}: not a YOLO data.yaml (or a folder with one), a COCO .json or a "
                        "folder of Pascal VOC .xml files" if root.exists() else f"--data.root {root} does not exist")

    def _synthetic_folder(self) -> Path:
        return write_synthetic_detection(cache_root() / f"detection_{self.hparams.synthetic}",
                                         objects=self.hparams.synthetic)

    def _read_classes(self) -> None:
        """Read the whole annotation set (cheap: text only) so that the classes are known when ``zoo train``
        links them into the task; images are checked at setup."""
        hp = self.hparams
        if hp.root is None:
            self.splits, self.class_names = read_yolo(self._synthetic_folder())
            folder = cache_root() / f"detection_{hp.synthetic}"
            self.source = f"SYNTHETIC {hp.synthetic} composited on real bundled photos, YOLO format in {folder}"
            return
        kind = self._format()
        self.source = f"{kind} {hp.root}"
        if kind == "yolo":
            self.splits, self.class_names = read_yolo(hp.root)
            self.splits.setdefault("test", self.splits["val"])
            return
        if kind == "coco":
            records, self.class_names, crowd = read_coco(hp.root, hp.images_dir)
            self.category_ids = coco_category_ids(hp.root)
            extra = {k: read_coco(v, hp.images_dir) for k, v in (("val", hp.val_root), ("test", hp.test_root)) if v}
            for k, (_, names, c) in extra.items():
                if names != self.class_names:
                    raise DataError(f"--data.{k}_root {getattr(hp, k + '_root')}: categories {names} differ from "
                                    f"{hp.root}'s {self.class_names}")
                crowd += c
            if crowd:
                self.notes.append(f"{crowd} crowd annotations left out")
            self._split(records, {k: v[0] for k, v in extra.items()})
            return
        records, self.class_names, left_out = read_voc(hp.root, hp.classes, hp.other_labels)
        extra = {}
        for k, v in (("val", hp.val_root), ("test", hp.test_root)):
            if v:
                extra[k], _, more = read_voc(v, self.class_names if hp.classes is None else hp.classes,
                                             hp.other_labels)
                left_out += more
        if left_out:
            self.notes.append("labels outside --data.classes left out: "
                              + ", ".join(f"{n} x{c}" for n, c in sorted(left_out.items())))
        self._split(records, extra)

    def _split(self, records: list[ImageRecord], given: dict[str, list[ImageRecord]]) -> None:
        hp = self.hparams
        val = 0.0 if "val" in given else hp.val_fraction
        test = 0.0 if "test" in given or "val" in given else hp.test_fraction
        split = random_split(len(records), val, test, hp.seed)
        self.splits = {"train": [records[i] for i in split.train],
                       "val": given.get("val") or [records[i] for i in split.val]}
        self.splits["test"] = given.get("test") or ([records[i] for i in split.test] if len(split.test)
                                                    else self.splits["val"])

    def describe(self) -> str:
        sizes = ", ".join(f"{k} {len(v)} images / {sum(len(r.labels) for r in v)} boxes"
                          for k, v in self.splits.items())
        hp = self.hparams
        aug = (f"augmentation: colour/affine/flip, mosaic {hp.mosaic} (off for the last {hp.close_mosaic} epochs), "
               f"mixup {hp.mixup}" if hp.augment else "no augmentation")
        notes = f"; {'; '.join(self.notes)}" if self.notes else ""
        return (f"data: {self.source}; {self.num_classes} classes ({', '.join(self.class_names[:12])}"
                f"{', ...' if self.num_classes > 12 else ''}); {sizes}; letterbox {hp.image_size}x{hp.image_size}; "
                f"{aug}{notes}")

    def _check_images(self, records: list[ImageRecord]) -> None:
        for record in records:
            record.size = image_size_of(record.path) if record.size is None else record.size

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            if not self.hparams.predict_path:
                raise DataError("zoo predict needs --data.predict_path (an image or a folder of images)")
            path = Path(self.hparams.predict_path).expanduser()
            self.predict_paths = _images_in(path) if path.is_dir() else [path] if path.is_file() else []
            if not path.exists():
                raise DataError(f"--data.predict_path {path} does not exist")
            if not self.predict_paths:
                raise DataError(f"{path} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            return
        for key in ("train", "val", "test"):
            if not self.splits.get(key):
                raise DataError(f"{self.source}: the {key} split is empty; give more images or its own files")
        for records in self.splits.values():
            self._check_images(records)

    def set_epoch(self, epoch: int, max_epochs: int | None) -> None:
        """Called by the detection task at each training epoch: mosaic goes off for the last ``close_mosaic``."""
        if self.train_set is not None and max_epochs is not None and max_epochs > 0:
            on = epoch < max_epochs - self.hparams.close_mosaic
            self.train_set.mosaic_enabled.fill_(on)

    def split_dataset(self, split: str) -> DetectionDataset:
        """Built when its loader is asked for: the training set (kept as ``train_set``, whose mosaic
        :meth:`set_epoch` switches) with augmentation, the others letterboxed only."""
        hp = self.hparams
        if split == "train":
            self.train_set = DetectionDataset(self.splits["train"], hp.image_size, train=hp.augment,
                                              mosaic=hp.mosaic, mixup=hp.mixup, hsv=hp.hsv, translate=hp.translate,
                                              scale=hp.scale, fliplr=hp.fliplr, seed=hp.seed)
            return self.train_set
        records = [ImageRecord(p) for p in self.predict_paths] if split == "predict" else self.splits[split]
        return DetectionDataset(records, hp.image_size)

    def image_record(self, stage: str, index: int) -> ImageRecord:
        """The record behind ``target["index"]`` of a ``stage`` batch ("val", "test" or "predict")."""
        if stage == "predict":
            return ImageRecord(self.predict_paths[index])
        return self.splits[stage][index]
