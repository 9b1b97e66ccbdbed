"""Detection annotation readers: YOLO label folders, COCO json and Pascal VOC XML (RDD2022), each to a list of
:class:`ImageRecord` (an image and its boxes) and the class names; the formats are described in
:mod:`zoo.data.detection`."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError

from zoo.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
RDD2022_CLASSES = ("D00", "D10", "D20", "D40")



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


def images_in(folder: Path) -> list[Path]:
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
            images += images_in(found)
        else:  # a list file of image paths, relative to the list's folder or to the base
            for line in found.read_text().splitlines():
                if line.strip():
                    p = Path(line.strip())
                    images.append(p if p.is_absolute() else (found.parent / p if (found.parent / p).exists()
                                                             else base / p))
    if not images:
        raise DataError(f"{yaml_path}: {key}: no images ({', '.join(IMAGE_EXTENSIONS)}) in {entry}")
    return images


def read_yolo(root: str | Path, required: tuple[str, ...] = ("train", "val")
              ) -> tuple[dict[str, list[ImageRecord]], list[str]]:
    """A YOLO dataset (``data.yaml`` or its folder) -> ({"train", "val", "test"}: records, class names). The
    entries in ``required`` must be there (an evaluation set needs neither ``train`` nor ``val``)."""
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
            if key in required:
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
