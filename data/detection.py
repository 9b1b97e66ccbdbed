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

The pieces, each in its own module (their public names are re-exported here):

- ``zoo.data.detection_io``: the YOLO, COCO and VOC readers, to :class:`ImageRecord` lists and class names;
- ``zoo.data.detection_augment``: letterboxing, augmentation, mosaic and mixup, :class:`DetectionDataset` and
  :func:`detection_collate`;
- ``zoo.data.detection_simulated``: the offline default set (:func:`write_synthetic_detection`);
- this module: :class:`DetectionData`, the data module that composes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from zoo.data.base import ZooDataModule, cache_root, describe_files, match_class_names
from zoo.data.detection_augment import PAD_VALUE, DetectionDataset, detection_collate, letterbox
from zoo.data.detection_io import (
    IMAGE_EXTENSIONS,
    RDD2022_CLASSES,
    ImageRecord,
    coco_category_ids,
    image_size_of,
    images_in,
    label_path_for,
    read_coco,
    read_voc,
    read_yolo,
    read_yolo_labels,
    resolve_class_map,
)
from zoo.data.detection_simulated import SHAPES, write_synthetic_detection
from zoo.data.splits import random_split

from zoo.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "PAD_VALUE", "RDD2022_CLASSES", "SHAPES", "DetectionData", "DetectionDataset",
           "ImageRecord", "coco_category_ids", "detection_collate", "image_size_of", "letterbox", "read_coco",
           "read_voc", "read_yolo", "read_yolo_labels", "resolve_class_map", "write_synthetic_detection"]

Format = Literal["auto", "yolo", "coco", "voc"]


# --- the data module ---------------------------------------------------------------------------------------------
class DetectionData(ZooDataModule):
    """Detection batches ``(images (B, 3, S, S) in [0, 1], targets: per-image dicts)`` (module docstring).

    Args:
        root: a YOLO ``data.yaml`` (or its folder), a COCO json, or a folder of VOC XML; None writes and uses the
            offline default (``synthetic`` objects on bundled photos).
        format: "auto" (from ``root``), "yolo", "coco" or "voc".
        val_root / test_root: COCO json / VOC folders of the validation / test sets (else split off ``root``).
            ``zoo test`` / ``zoo validate`` with ``test_root`` evaluate exactly that set, in any format (a YOLO
            data.yaml's ``test``, else ``val``, else ``train`` entry; a folder with ``images/`` and ``labels/``; a
            COCO json; VOC XML), and read nothing else when the classes are recorded (no ``root`` needed).
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
        class_names: the classes in label order; None reads them from the data (a checkpoint records them, so
            that a new set's classes are matched to the model's by name).
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
                 num_workers: int | None = None, seed: int = 0, class_names: list[str] | None = None):
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
        self.evaluation_folder: Path | None = None  # set up from a test-only set
        if class_names:  # recorded: root is read only when its images are (not to test test_root or to predict)
            self.class_names, self.source = list(class_names), f"the set in {test_root or predict_path}"
            if root and Path(root).expanduser().suffix.lower() == ".json" and Path(root).expanduser().is_file():
                self.category_ids = coco_category_ids(root)  # the COCO ids predictions are written with
        else:
            self._read_classes()
        self.hparams.class_names = list(self.class_names)  # kept with the run: new sets are matched by name

    def _read_root(self) -> None:
        """The annotations of ``root`` (or the offline default), labelled in the recorded class order."""
        recorded = list(self.class_names)
        self._read_classes()
        if recorded != self.class_names:  # the recorded order wins, by name
            index = np.asarray(match_class_names(self.class_names, recorded, str(self.hparams.root or
                                                                                  "the default set")))
            remapped: set[int] = set()
            for record in (r for records in self.splits.values() for r in records):
                if id(record) not in remapped and len(record.labels):
                    record.labels = index[record.labels]
                remapped.add(id(record))
            self.class_names = recorded

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

    def _read_evaluation_set(self, path: Path) -> list[ImageRecord]:
        """The images and boxes of a set to evaluate, in whatever format it comes, labelled by the model's class
        of each box's class name."""
        hp = self.hparams
        if not path.exists():
            raise DataError(f"--data.test_root {path} does not exist")
        if path.suffix.lower() == ".json":
            records, names, _ = read_coco(path, hp.images_dir)
        elif path.is_dir() and next(path.rglob("*.xml"), None) is not None and not (path / "data.yaml").is_file():
            records, names, _ = read_voc(path, self.class_names, hp.other_labels)
        elif path.is_dir() and (path / "images").is_dir() and not any(
                (path / n).is_file() for n in ("data.yaml", "data.yml", "dataset.yaml")):
            records = []
            for image in images_in(path / "images"):
                boxes, labels = read_yolo_labels(label_path_for(image), self.num_classes)
                records.append(ImageRecord(image, boxes, labels, normalized=True))
            return records  # YOLO labels without names: class indices are the model's
        else:
            splits, names = read_yolo(path, required=())
            records = next((splits[k] for k in ("test", "val", "train") if splits.get(k)), [])
        index = np.asarray(match_class_names(names, self.class_names, str(path)), np.int64)
        for record in records:
            record.labels = index[record.labels] if len(record.labels) else record.labels
        return records

    def evaluation_line(self, split: str) -> str:
        """"data: 7 images / 9 boxes in my_set (test only), 4 classes", the images to predict, or the run's split."""
        if split == "predict":
            return f"data: {len(self.predict_paths)} images to predict in {describe_files(self.predict_paths)}"
        records = self.splits.get(split, [])
        counted = f"{len(records)} images / {sum(len(r.labels) for r in records)} boxes"
        if self.evaluation_folder is not None:
            return f"data: {counted} in {self.evaluation_folder} (test only), {self.num_classes} classes"
        return f"data: {'validation' if split == 'val' else split} split of {self.source}, {counted}"

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
            self.predict_paths = images_in(path) if path.is_dir() else [path] if path.is_file() else []
            if not path.exists():
                raise DataError(f"--data.predict_path {path} does not exist")
            if not self.predict_paths:
                raise DataError(f"{path} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            return
        if stage in ("test", "validate") and self.hparams.test_root:  # exactly the set given
            self.evaluation_folder = Path(self.hparams.test_root).expanduser()
            records = self._read_evaluation_set(self.evaluation_folder)
            if not records:
                raise DataError(f"--data.test_root {self.evaluation_folder} holds no images to evaluate")
            self._check_images(records)
            self.splits = {"val": records, "test": records}
            return
        if not self.splits:
            self._read_root()
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
