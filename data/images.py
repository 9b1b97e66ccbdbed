"""Image classification data: scikit-learn's bundled digits (offline default), ImageFolder trees and CIFAR.

Sources, chosen by ``dataset`` (``"auto"``: ImageFolder when ``root`` is given, else digits):

- ``digits``: the 1,797 real 8x8 handwritten digits bundled with scikit-learn, upscaled; no download.
- ``imagefolder``: ``root/<class>/<image>`` (split here, stratified and seeded) or ``root/train/<class>/...``
  with ``root/val`` (or ``valid``) and optionally ``root/test`` (used as they are).
- ``cifar10`` / ``cifar100``: torchvision's loaders, downloaded into ``root`` when missing.

Augmentations use albumentations: ``affine`` (small shifts, scales and rotations; no flips, safe for digits
and text), ``crop_flip`` (CIFAR's pad-crop-flip), ``imagenet`` (random-resized crop and flip; evaluation resizes
to size/0.875 and centre-crops), ``randaugment`` (timm's ImageNet training pipeline, which DeiT, Swin and VMamba
train with: bicubic random-resized crop, flip, RandAugment, random erasing; evaluation resizes bicubically to
size/0.875 and centre-crops), ``none``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import albumentations as A
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset
from zoo.data.base import ZooDataModule, describe_files, match_class_names
from zoo.data.splits import check_fold, random_or_fold_split, random_split

from zoo.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")
DEFAULT_IMAGE_SIZE = 32  # the bundled digits (8 px) and CIFAR (32 px) are seen at 32 px
DEFAULT_CROP_PCT = 0.875
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
)
Augment = Literal["none", "affine", "crop_flip", "imagenet", "randaugment"]
Source = Literal["auto", "digits", "imagefolder", "cifar10", "cifar100"]


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as an RGB uint8 array (H, W, 3); a file that cannot be decoded raises DataError."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}") from None


class TimmTrainTransform:
    """timm's ImageNet training pipeline (``timm.data.create_transform``, as the DeiT/Swin/VMamba code calls it):
    random-resized crop (bicubic unless told), horizontal flip, RandAugment, normalisation and random erasing
    (per pixel).

    Called like an albumentations pipeline: ``transform(image=(H, W, 3) uint8)["image"]`` -> (3, S, S) float.
    Colour jitter is passed as those recipes pass it (0.4); timm switches it off when RandAugment is on, as the
    recipes' timm versions did too.
    """

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float], rand_augment: str,
                 random_erasing: float, interpolation: str = "bicubic"):
        from timm.data import create_transform

        try:
            self.pipeline = create_transform(
                image_size, is_training=True, color_jitter=0.4, auto_augment=rand_augment or None,
                interpolation=interpolation, mean=tuple(mean), std=tuple(std), re_prob=random_erasing, re_mode="pixel",
                re_count=1,
            )
        except (AssertionError, KeyError, ValueError) as err:
            raise ValueError(f"bad RandAugment setting {rand_augment!r} (timm's form, e.g. "
                             f"'rand-m9-mstd0.5-inc1'): {err}") from None

        _allow_zero_bit_posterize(self.pipeline)

    def __call__(self, *, image: np.ndarray) -> dict[str, torch.Tensor]:
        return {"image": self.pipeline(Image.fromarray(image))}


def _posterize(image: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize, with 0 bits giving a black image: what Pillow before 13 did and what the recipes trained
    with. Pillow 13 refuses 0 bits, which RandAugment's "inc1" posterize reaches at magnitudes of 10 and more."""
    if bits_to_keep >= 8:
        return image
    if bits_to_keep <= 0:
        return image.point(lambda _: 0)
    return ImageOps.posterize(image, bits_to_keep)


def _allow_zero_bit_posterize(pipeline) -> None:
    from timm.data.auto_augment import RandAugment, posterize

    for transform in pipeline.transforms:
        if isinstance(transform, RandAugment):
            for op in transform.ops:
                if op.aug_fn is posterize:
                    op.aug_fn = _posterize


Interpolation = Literal["bilinear", "bicubic"]
_CV2_FILTER = {"bilinear": 1, "bicubic": 2}  # cv2.INTER_LINEAR, cv2.INTER_CUBIC


def image_transform(image_size: int, augment: Augment, mean: Sequence[float], std: Sequence[float],
                    train: bool, rand_augment: str = "rand-m9-mstd0.5-inc1",
                    random_erasing: float = 0.25, seed: int | None = 0, interpolation: Interpolation | None = None,
                    crop_pct: float = 0.875) -> A.Compose | TimmTrainTransform:
    """The pipeline of a split: ``transform(image=(H, W, 3) uint8)["image"]`` -> normalised (3, S, S) float.

    ``rand_augment`` (timm's RandAugment string) and ``random_erasing`` (probability) apply to ``randaugment``.
    ``interpolation`` is the resize filter (None: bicubic for ``randaugment`` and for the upscaling of small
    images, bilinear for ``imagenet``); ``crop_pct``: the ImageNet-style evaluation resizes to ``S / crop_pct``
    and centre-crops S (the small-image pipelines resize straight to S and crop nothing).
    ``seed`` seeds albumentations' own generator (unseeded, it draws from the OS and no two runs match).
    """
    if not 0.0 < crop_pct <= 1.0:
        raise DataError(f"--data.crop_pct must lie in (0, 1], got {crop_pct}")
    if interpolation is not None and interpolation not in _CV2_FILTER:
        raise DataError(f"--data.interpolation must be one of {', '.join(_CV2_FILTER)}, got {interpolation!r}")
    size = image_size
    normalize = [A.Normalize(mean=mean, std=std), ToTensorV2()]
    if augment in ("imagenet", "randaugment"):
        chosen = interpolation or ("bicubic" if augment == "randaugment" else "bilinear")
        if train and augment == "randaugment":
            return TimmTrainTransform(size, mean, std, rand_augment, random_erasing, chosen)
        if train:
            return A.Compose([A.RandomResizedCrop(size=(size, size), interpolation=_CV2_FILTER[chosen]),
                              A.HorizontalFlip(), *normalize], seed=seed)
        return A.Compose([A.SmallestMaxSize(max_size=round(size / crop_pct), interpolation=_CV2_FILTER[chosen]),
                          A.CenterCrop(size, size), *normalize], seed=seed)
    steps: list = [A.Resize(size, size, interpolation=_CV2_FILTER[interpolation or "bicubic"])]
    if train and augment == "affine":
        steps.append(A.Affine(translate_percent=(-0.1, 0.1), scale=(0.9, 1.1), rotate=(-10, 10), p=0.9))
    elif train and augment == "crop_flip":
        pad = max(1, size // 8)
        steps += [A.PadIfNeeded(size + 2 * pad, size + 2 * pad, border_mode=0), A.RandomCrop(size, size),
                  A.HorizontalFlip()]
    return A.Compose([*steps, *normalize], seed=seed)


class ArrayImages(Dataset):
    """Images held in memory: (N, H, W, 3) uint8 and (N,) labels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: A.Compose):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(image=self.images[index])["image"], int(self.labels[index])


class FileImages(Dataset):
    """Image files with labels (label -1 for unlabelled files, e.g. for prediction)."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], transform: A.Compose):
        self.paths, self.labels, self.transform = list(paths), list(labels), transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(image=read_image(self.paths[index]))["image"], self.labels[index]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def class_folders(root: Path) -> list[str]:
    """Sorted class-folder names of a class-per-folder tree (without reading the images)."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class folders: expected {root}/<class name>/<image files>")
    return classes


def scan_image_folder(root: Path) -> tuple[list[str], list[Path], list[int]]:
    """Class names (sorted folder names), image paths and labels of a class-per-folder tree.

    Raises:
        DataError: when the folder is missing, has no class folders, or a class folder holds no images.
    """
    classes = class_folders(root)
    paths, labels, ignored = [], [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).rglob("*") if p.is_file())
        images = [p for p in files if _is_image(p)]
        ignored += [p for p in files if not _is_image(p) and not p.name.startswith(".")]
        if not images:
            raise DataError(f"class folder {root / name} has no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
        paths += images
        labels += [label] * len(images)
    if ignored:
        log.warning("%s: %d files that are not images were left out, e.g. %s", root, len(ignored), ignored[0])
    return classes, paths, labels


def list_images(path: Path) -> list[Path]:
    """An image file, or every image under a folder (recursively), sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path} does not exist")
    images = sorted(p for p in path.rglob("*") if p.is_file() and _is_image(p))
    if not images:
        raise DataError(f"{path} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return images


def median_image_side(root: Path, sample: int = 256) -> int:
    """The median of the shorter sides of up to ``sample`` images spread evenly over the sorted files under ``root``
    (read from the file headers, not decoded).

    Raises:
        DataError: when ``root`` holds no images, or none of the sampled files can be read.
    """
    paths = list_images(root)
    step = max(1, len(paths) // sample)
    sides = []
    for path in paths[::step][:sample]:
        try:
            with Image.open(path) as image:
                sides.append(min(image.size))
        except (OSError, UnidentifiedImageError):
            continue
    if not sides:
        raise DataError(f"none of the images sampled under {root} could be read (e.g. {paths[0]})")
    return int(np.median(sides))


def load_digits_rgb() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (1797, 8, 8, 3) uint8 images and (1797,) labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = np.clip(digits.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1), digits.target.astype(np.int64)


class ImageClassificationData(ZooDataModule):
    """Image classification batches ``(images (B, 3, S, S) float, labels (B,) int64)``.

    Args:
        root: ImageFolder tree, or the CIFAR download folder.
        dataset: where the images come from (see the module docstring); "auto" picks imagefolder or digits.
        image_size: side S of the square images the model sees.
        batch_size: examples per batch.
        augment: training augmentation (see the module docstring).
        rand_augment / random_erasing: timm's RandAugment string and the random-erasing probability of
            ``augment="randaugment"``.
        val_fraction / test_fraction: split sizes when the source has no fixed validation/test split.
        folds / fold: k-fold cross-validation of a source without a fixed test split: fold ``fold`` of ``folds``
            (stratified by class) is the test part (``zoo train MODEL --data.folds K`` runs every fold).
        predict_path: image file or folder for ``zoo predict``.
        test_root: a class-per-folder tree that holds only evaluation images (``root/<class>/<image>``): ``zoo
            test`` and ``zoo validate`` evaluate all of it, and nothing else (``root`` is not needed then). A
            ``root`` that holds only ``test/`` (or ``val/``) and no ``train/`` is read the same way.
        class_names: the classes in label order; None reads them from the data (a checkpoint records them, so
            that new data is matched to the model's classes by name).
        num_workers: loader processes (default: 0 for in-memory images, else up to 4).
        seed: seed of the splits, the shuffling and the augmentations.
        skip_bad_files: leave out image files that cannot be decoded (each named in a warning) instead of
            stopping with an error when the data is set up.
        interpolation / crop_pct: resize filter and evaluation crop fraction (see :func:`image_transform`).

    ``image_size``, ``mean``, ``std``, ``interpolation`` and ``crop_pct`` left at None are resolved, as timm's
    ``resolve_data_config`` does: fine-tuning from a weight set whose card gives its preprocessing
    (``WeightSet.preprocessing``), ``zoo train`` takes them from it (``PREPROCESSING_FIELDS`` maps the card's names
    to these arguments); a user's own image folder is seen at the images' own size when no weights are fine-tuned
    (:meth:`native_input_size`, rounded up to what the model takes), else at the card's; what is still None takes the
    defaults (32 px, ImageNet mean and std, crop 0.875, the augmentation's filter). A value given in a recipe, a
    config or on the command line always wins.
    """

    PREPROCESSING_FIELDS: ClassVar[dict[str, str]] = {
        "input_size": "image_size", "interpolation": "interpolation", "crop_pct": "crop_pct", "mean": "mean",
        "std": "std"}

    @classmethod
    def native_input_size(cls, init_args: dict) -> int | None:
        """The side of the images themselves (:func:`median_image_side`) for an image folder (``root`` with
        ``dataset`` "auto" or "imagefolder"); None for the other sources. ``zoo train`` trains a model without
        pretrained weights at about this size, rather than upscaling small images to the card's input size."""
        root, dataset = init_args.get("root"), init_args.get("dataset", "auto")
        if not root or dataset not in ("auto", "imagefolder"):
            return None
        return median_image_side(Path(root).expanduser())

    def __init__(self, root: str | None = None, dataset: Source = "auto", image_size: int | None = None,
                 batch_size: int = 64, augment: Augment = "affine", val_fraction: float = 0.1,
                 test_fraction: float = 0.2, predict_path: str | None = None, num_workers: int | None = None,
                 mean: tuple[float, float, float] | None = None, std: tuple[float, float, float] | None = None,
                 seed: int = 0, rand_augment: str = "rand-m9-mstd0.5-inc1", random_erasing: float = 0.25,
                 skip_bad_files: bool = False, interpolation: Interpolation | None = None,
                 crop_pct: float | None = None, folds: int = 1, fold: int = 0, test_root: str | None = None,
                 class_names: list[str] | None = None):
        super().__init__(batch_size, num_workers, seed)
        check_fold(folds, fold)
        image_size = DEFAULT_IMAGE_SIZE if image_size is None else image_size
        mean = IMAGENET_MEAN if mean is None else mean
        std = IMAGENET_STD if std is None else std
        crop_pct = DEFAULT_CROP_PCT if crop_pct is None else crop_pct
        self.save_hyperparameters()  # the resolved values: a checkpoint records what the model was trained on
        if image_size < 1:
            raise DataError(f"--data.image_size must be a positive number of pixels, got {image_size}")
        self.test_root = Path(test_root).expanduser() if test_root else None
        if self.test_root is not None and not self.test_root.is_dir():
            raise DataError(f"--data.test_root {self.test_root} is not a folder (expected "
                            f"{self.test_root}/<class name>/<image files>)")
        if dataset == "auto":
            dataset = "imagefolder" if root or (test_root and not class_names) else "digits"
        if dataset != "digits" and not root and not test_root:
            raise DataError(f"dataset {dataset!r} needs --data.root (the image folder or the download folder)")
        self.source = dataset
        self.in_memory = dataset != "imagefolder" and self.test_root is None
        self.root = Path(root).expanduser() if root else None
        if self.root is not None and dataset == "imagefolder" and not self.root.is_dir() and not class_names:
            raise DataError(f"image folder {self.root} does not exist" if not self.root.exists()
                            else f"{self.root} is a file, not an image folder (root/<class>/<image>)")
        self.class_names = list(class_names) if class_names else self._class_names()
        self.num_classes = len(self.class_names)
        self.hparams.class_names = list(self.class_names)  # kept with the run: new data is matched by name
        self.predict_paths: list[Path] = []
        self.evaluation_folder: Path | None = None  # set up from a test-only folder

    def _class_names(self) -> list[str]:
        if self.source == "digits":
            return [str(i) for i in range(10)]
        if self.source == "cifar10":
            return list(CIFAR10_CLASSES)
        if self.source == "cifar100":
            return list(CIFAR100_CLASSES)
        if self.root is None or not self.root.is_dir():
            return class_folders(self.test_root)
        return class_folders(self._split_dir("train") or self._evaluation_only_dir() or self.root)

    def _evaluation_only_dir(self) -> Path | None:
        """``test_root``, else ``root/test`` (or ``root/val``) of a root without ``train/``: a folder that holds
        only evaluation images."""
        if self.test_root is not None:
            return self.test_root
        if self.source != "imagefolder" or self.root is None or not self.root.is_dir() or self._split_dir("train"):
            return None
        return self._split_dir("test") or self._split_dir("val")

    def _split_dir(self, split: str) -> Path | None:
        names = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}[split]
        return next((self.root / n for n in names if (self.root / n).is_dir()), None)

    def transform(self, train: bool) -> A.Compose | TimmTrainTransform:
        hp = self.hparams
        return image_transform(hp.image_size, hp.augment, hp.mean, hp.std, train, hp.rand_augment, hp.random_erasing,
                               seed=hp.seed, interpolation=hp.interpolation, crop_pct=hp.crop_pct)

    def evaluation_line(self, split: str) -> str:
        """"data: 57 images in my_images/ (test only), 3 classes", or the split of the run's own data."""
        if split != "predict" and self.evaluation_folder is not None:
            count = len(self.split_dataset(split))
            return f"data: {count} images in {self.evaluation_folder}/ (test only), {self.num_classes} classes"
        if split == "predict" and self.predict_paths:
            return f"data: {len(self.predict_paths)} images to predict in {describe_files(self.predict_paths)}"
        return super().evaluation_line(split).replace(" examples", " images")

    def describe(self) -> str:
        source = {"digits": "scikit-learn's bundled handwritten digits (real, 8x8, upscaled)",
                  "cifar10": f"CIFAR-10 in {self.root}", "cifar100": f"CIFAR-100 in {self.root}"}.get(
            self.source, f"image folder {self.root}")
        sizes = ", ".join(f"{split} {len(getattr(self, f'{split}_set'))}" for split in ("train", "val", "test")
                          if getattr(self, f"{split}_set") is not None)
        return (f"data: {source}; {self.num_classes} classes; {sizes}; input {self.hparams.image_size}x"
                f"{self.hparams.image_size} px, augment {self.hparams.augment}")

    # --- splits ---------------------------------------------------------------------------------------------
    def _split(self, n: int, labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hp = self.hparams
        return random_or_fold_split(n, hp.val_fraction, hp.test_fraction, hp.seed, stratify=labels, folds=hp.folds,
                                    fold=hp.fold)

    def _refuse_folds(self, why: str) -> None:
        if self.hparams.folds > 1:
            raise DataError(f"--data.folds {self.hparams.folds}: {why}, so there is nothing to cross-validate; "
                            "folds split one pool of images (a class-per-folder tree without train/val folders)")

    def _readable(self, paths: list[Path], labels: list[int], skip: bool | None = None
                  ) -> tuple[list[Path], list[int]]:
        """Check that every image decodes, before training: a bad file is named now, not mid-epoch."""
        good_paths, good_labels, bad = [], [], []
        for path, label in zip(paths, labels, strict=True):
            try:
                with Image.open(path) as image:
                    image.verify()
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
                bad.append((path, err))
                continue
            good_paths.append(path)
            good_labels.append(label)
        skip = self.hparams.skip_bad_files if skip is None else skip
        if bad and not skip:
            path, err = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise DataError(f"cannot read image {path}{more}: {err}. Remove or replace it, or pass "
                            "--data.skip_bad_files true to leave unreadable files out")
        for path, err in bad:
            log.warning("skipping unreadable image %s: %s", path, err)
        return good_paths, good_labels

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            if not self.hparams.predict_path:
                raise DataError("zoo predict needs --data.predict_path (an image file or a folder of images)")
            paths = list_images(Path(self.hparams.predict_path).expanduser())
            self.predict_paths, _ = self._readable(paths, [-1] * len(paths), skip=True)  # report, predict the rest
            if not self.predict_paths:
                raise DataError(f"none of the {len(paths)} images in {self.hparams.predict_path} can be read")
            self.predict_set = FileImages(self.predict_paths, [-1] * len(self.predict_paths), self.transform(False))
            return
        train_tf, eval_tf = self.transform(True), self.transform(False)
        evaluation_dir = self._evaluation_only_dir()
        if evaluation_dir is not None and stage in ("test", "validate"):
            self.evaluation_folder = evaluation_dir
            self.val_set = self.test_set = self._labelled_folder(evaluation_dir, eval_tf)
            return
        if evaluation_dir is not None and self.test_root is None:
            raise DataError(f"{self.root} holds {evaluation_dir.name}/ but no train/ to train on "
                            f"({self.root}/train/<class>/<image>, or {self.root}/<class>/<image> to be split)")
        if self.source == "digits":
            images, labels = load_digits_rgb()
            train, val, test = self._split(len(labels), labels)
            self.train_set = ArrayImages(images[train], labels[train], train_tf)
            self.val_set = ArrayImages(images[val], labels[val], eval_tf)
            self.test_set = ArrayImages(images[test], labels[test], eval_tf)
        elif self.source in ("cifar10", "cifar100"):
            self._setup_cifar(train_tf, eval_tf)
        else:
            self._setup_folder(train_tf, eval_tf)

    def _setup_folder(self, train_tf: A.Compose, eval_tf: A.Compose) -> None:
        train_dir, val_dir, test_dir = self._split_dir("train"), self._split_dir("val"), self._split_dir("test")
        if train_dir and val_dir:
            self._refuse_folds(f"{self.root} has its own train/ and val/ folders")
            self.train_set = self._labelled_folder(train_dir, train_tf)
            for split, folder in (("val", val_dir), ("test", test_dir or val_dir)):
                setattr(self, f"{split}_set", self._labelled_folder(folder, eval_tf))
            return
        classes, paths, labels = scan_image_folder(self.root)
        index = match_class_names(classes, self.class_names, str(self.root))
        paths, labels = self._readable(paths, [index[y] for y in labels])
        classes = self.class_names
        counts = np.bincount(labels, minlength=len(classes))
        if counts.min() < 3:
            raise DataError(f"class folder {self.root / classes[int(counts.argmin())]} has {counts.min()} images; "
                            "at least 3 per class are needed to split train/val/test")
        train, val, test = self._split(len(paths), labels)
        pick = lambda idx: ([paths[i] for i in idx], [labels[i] for i in idx])  # noqa: E731
        self.train_set = FileImages(*pick(train), train_tf)
        self.val_set = FileImages(*pick(val), eval_tf)
        self.test_set = FileImages(*pick(test), eval_tf)

    def _labelled_folder(self, folder: Path, transform) -> FileImages:
        """Every readable image of a class-per-folder tree, labelled by the model's class of its folder's name."""
        classes, paths, labels = scan_image_folder(folder)
        index = match_class_names(classes, self.class_names, str(folder))
        return FileImages(*self._readable(paths, [index[y] for y in labels]), transform)

    def _setup_cifar(self, train_tf: A.Compose, eval_tf: A.Compose) -> None:
        from torchvision.datasets import CIFAR10, CIFAR100

        self._refuse_folds(f"{self.source} has its own test set")
        cifar = CIFAR10 if self.source == "cifar10" else CIFAR100
        try:
            train = cifar(str(self.root), train=True, download=True)
            test = cifar(str(self.root), train=False, download=True)
        except (OSError, RuntimeError) as err:
            raise DataError(f"could not load {self.source} from {self.root}: {err}") from err
        if list(train.classes) != self.class_names:
            raise DataError(f"{self.root}: the {self.source} files name other classes than expected: {train.classes}")
        labels = np.asarray(train.targets)
        fit, val, _ = random_split(len(labels), self.hparams.val_fraction, 0.0, self.hparams.seed, stratify=labels)
        self.train_set = ArrayImages(train.data[fit], labels[fit], train_tf)
        self.val_set = ArrayImages(train.data[val], labels[val], eval_tf)
        self.test_set = ArrayImages(test.data, np.asarray(test.targets), eval_tf)
