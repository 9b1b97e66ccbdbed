"""Chest X-ray classification data in the COVIDx layout (COVID-Net), for MEDUSA and any image classifier.

The COVIDx layout: label files with one line per image, ``patient_id filename label source`` (space separated;
COVIDx versions before 6 have no source field), and the images under ``<root>/train/`` and ``<root>/test/``.
Labels are ``negative`` / ``positive`` (COVIDx8B, 9B and the Kaggle "COVIDx CXR-2/3/4" sets) or ``normal`` /
``pneumonia`` / ``COVID-19`` (8A, 9A and up to 5); the classes follow from the labels found. The Kaggle sets ship
``train.txt``, ``val.txt`` (CXR-3 on) and ``test.txt``; COVIDx9B ships ``train_COVIDx9B.txt`` / ``test_COVIDx9B.txt``
(``--data.train_file`` / ``--data.test_file``). Without a validation file, validation patients are split off the
training file by patient (no patient in two parts). A class-per-folder tree (``root/<class>/<image>``) works too.

As COVID-Net's ``train_tf.py``: images resized to ``image_size`` without cropping and scaled to [0, 1] (no mean/std
normalisation; MEDUSA makes its per-image standardised grayscale copy itself); training batches hold a set share of
COVID-positive images (``positive_share``, 0.5 as the official ``covid_percent``); the official augmentation
(random aspect ratio +-10 % with p 0.3, rotation +-10 degrees, shifts 10 %, horizontal flip, brightness x0.9-1.1,
zoom 0.85-1.15, zero fill) through albumentations.

Offline default (``root`` None): a SIMULATED set in the COVIDx layout (:func:`write_simulated_covidx`), written once
into the cache: procedurally drawn chest radiographs (body, lung fields, heart and mediastinum, spine, ribs,
clavicles, vessel markings, exposure and noise differences); positives carry bilateral, peripheral, lower-zone
ground-glass opacities (the typical COVID-19 pattern), a third of the negatives a focal lobar consolidation
(non-COVID pneumonia, labelled negative as in COVIDx8B/9B). Nothing bundled with the installed packages holds
labelled chest X-rays.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import albumentations as A
import numpy as np
from albumentations.pytorch import ToTensorV2
from PIL import Image
from torch.utils.data import Sampler
from zoo.data.base import ZooDataModule, cache_root, describe_files, match_class_names
from zoo.data.images import FileImages, list_images, scan_image_folder
from zoo.data.splits import Split, grouped_split

from zoo.errors import DataError

BINARY = ("negative", "positive")
THREE_CLASS = ("normal", "pneumonia", "COVID-19")
POSITIVE = {"positive", "COVID-19"}


def read_label_file(path: Path) -> list[tuple[str, str, str, str]]:
    """``(patient_id, filename, label, source)`` per line of a COVIDx label file (3 fields before COVIDx6: the
    source is then "unknown"). Blank lines are skipped; any other field count is an error naming file and line."""
    if not path.is_file():
        raise DataError(f"COVIDx label file {path} does not exist")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (3, 4):
            raise DataError(f"{path}, line {number}: {len(fields)} fields; a COVIDx line is "
                            f"'patient_id filename label source' (4 fields, 3 before COVIDx6): {line.strip()!r}")
        patient, filename, label = fields[:3]
        rows.append((patient, filename, label, fields[3] if len(fields) == 4 else "unknown"))
    if not rows:
        raise DataError(f"COVIDx label file {path} holds no lines")
    return rows


def classes_of(labels: Sequence[str], source: str) -> tuple[str, ...]:
    """The class list the labels belong to: negative/positive, or normal/pneumonia/COVID-19."""
    found = set(labels)
    for classes in (BINARY, THREE_CLASS):
        if found <= set(classes):
            return classes
    unknown = sorted(found - set(BINARY) - set(THREE_CLASS)) or sorted(found)
    raise DataError(f"{source}: labels {', '.join(unknown)} are not COVIDx labels (negative/positive, or "
                    "normal/pneumonia/COVID-19), or the two label sets are mixed")


def covidx_transform(image_size: int, train: bool, seed: int | None = 0,
                     mean: Sequence[float] = (0.0, 0.0, 0.0), std: Sequence[float] = (1.0, 1.0, 1.0)) -> A.Compose:
    """Resize to ``image_size`` (no crop), COVID-Net's augmentation when training, [0, 1] floats (3, S, S), then
    ``(x - mean) / std`` per channel (the default 0 / 1 leaves them in [0, 1], as COVID-Net)."""
    steps: list = [A.Resize(image_size, image_size)]
    if train:
        steps += [
            A.Affine(scale={"x": (0.9, 1.1), "y": (1.0, 1.0)}, border_mode=0, fill=0, p=0.3),  # aspect ratio
            A.Affine(scale=(0.85, 1.15), keep_ratio=True, translate_percent=(-0.1, 0.1), rotate=(-10, 10),
                     border_mode=0, fill=0, p=1.0),
            A.HorizontalFlip(p=0.5),
            A.MultiplicativeNoise(multiplier=(0.9, 1.1), per_channel=False, elementwise=False, p=1.0),  # brightness
        ]
    steps += [A.Normalize(mean=tuple(mean), std=tuple(std), max_pixel_value=255.0), ToTensorV2()]
    return A.Compose(steps, seed=seed)


class BalancedBatchSampler(Sampler[list[int]]):
    """COVID-Net's batches: each holds ``round(share * batch_size)`` positives drawn at random (with replacement
    across batches) and negatives taken in a shuffled pass; ``len(negatives) // (batch_size - positives)`` batches
    an epoch (at least one)."""

    def __init__(self, labels: Sequence[bool], batch_size: int, share: float, seed: int = 0):
        labels = np.asarray(labels, bool)
        self.positives, self.negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
        if not 0 < share < 1:
            raise DataError(f"--data.positive_share must lie in (0, 1), got {share}")
        if not len(self.positives) or not len(self.negatives):
            raise DataError("balanced batches need positive and negative training images; "
                            f"found {len(self.positives)} positive and {len(self.negatives)} negative")
        self.per_batch = min(batch_size - 1, max(1, round(share * batch_size)))
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def __len__(self) -> int:
        return max(1, len(self.negatives) // (self.batch_size - self.per_batch))

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        negatives = rng.permutation(self.negatives)
        others = self.batch_size - self.per_batch
        for b in range(len(self)):
            chosen = np.concatenate([np.resize(negatives, len(self) * others)[b * others:(b + 1) * others],
                                     rng.choice(self.positives, self.per_batch,
                                                replace=len(self.positives) < self.per_batch)])
            yield rng.permutation(chosen).tolist()


class CovidxData(ZooDataModule):
    """COVIDx (or class-folder) chest X-rays as ``(images (B, 3, S, S) in [0, 1], labels (B,))``.

    Args:
        root: the COVIDx folder (label files + ``train/``, ``test/``) or a class-per-folder tree; None: the
            simulated offline set (see the module docstring).
        train_file / val_file / test_file: label file names in ``root`` (``val_file`` is used when it exists).
        image_size: side of the network input (480 for MEDUSA's backbone, as released).
        positive_share: share of COVID-positive images in each training batch (None: plain shuffling).
        augment: COVID-Net's augmentation on training images.
        val_fraction: share of training patients held out for validation when there is no validation file.
        predict_path: image file or folder for ``zoo predict``.
        test_root: a folder that holds only evaluation images, tested whole (``root`` is not read then): a
            class-per-folder tree (``negative/``, ``positive/``) or a COVIDx folder with ``test_file`` and
            ``test/``.
        mean / std: per-channel normalisation after scaling to [0, 1]; the default 0 / 1 keeps [0, 1], as
            COVID-Net (MEDUSA standardises its grayscale copy itself).
        class_names: the classes in label order; None reads them from the labels (a checkpoint records them, so
            that new data is matched to the model's classes by name).
    """

    def __init__(self, root: str | None = None, train_file: str = "train.txt", val_file: str = "val.txt",
                 test_file: str = "test.txt", image_size: int = 480, batch_size: int = 8,
                 positive_share: float | None = 0.5, augment: bool = True, val_fraction: float = 0.1,
                 predict_path: str | None = None, num_workers: int | None = None, seed: int = 0,
                 test_root: str | None = None, mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
                 std: tuple[float, float, float] = (1.0, 1.0, 1.0), class_names: list[str] | None = None):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()  # mean 0 / std 1: images stay in [0, 1]; Grad-CAM un-normalises nothing
        if image_size < 16:
            raise DataError(f"--data.image_size must be at least 16 pixels, got {image_size}")
        self.predict_paths: list[Path] = []
        self.test_root = Path(test_root).expanduser() if test_root else None
        self.evaluation_folder: Path | None = None
        if self.test_root is not None and not self.test_root.is_dir():
            raise DataError(f"--data.test_root {self.test_root} is not a folder (expected class folders "
                            f"negative/ and positive/, or {test_file} with test/)")
        self.root: Path | None = None
        self.parts: dict[str, list[tuple[Path, str, str]]] = {}
        self.source = f"images in {self.test_root}"
        if class_names:  # recorded: root is read only when its images are (not to test test_root or to predict)
            self.class_names = list(class_names)
        else:
            self._read_root()
            self.class_names = list(classes_of([lab for rows in self.parts.values() for _, lab, _ in rows],
                                               str(self.root)))
        self.num_classes = len(self.class_names)
        self.hparams.class_names = list(self.class_names)  # kept with the run: new data is matched by name

    def _read_root(self) -> None:
        """The root's label files and images (the simulated set, written once, when there is no root)."""
        root = self.hparams.root
        if root is None:
            self.root, self.source = write_simulated_covidx(), "simulated chest X-rays in the COVIDx layout"
        else:
            self.root, self.source = Path(root).expanduser(), f"COVIDx folder {root}"
        if not self.root.is_dir():
            raise DataError(f"{self.root} is not a folder (expected the COVIDx label files with train/ and test/, "
                            "or root/<class>/<images>)")
        self.parts = self._read_parts()

    # --- reading --------------------------------------------------------------------------------------------
    def _read_parts(self) -> dict[str, list[tuple[Path, str, str]]]:
        """(image path, label, patient) per split; images are checked to exist."""
        hp = self.hparams
        train_file = self.root / hp.train_file
        if not train_file.is_file():
            if (self.root / hp.test_file).is_file():
                raise DataError(f"{self.root} has {hp.test_file} but no {hp.train_file} (--data.train_file)")
            self.source = f"class folders {self.root}"
            classes, paths, labels = scan_image_folder(self.root)
            return {"all": [(p, classes[y], p.stem) for p, y in zip(paths, labels, strict=True)]}
        parts = {"train": self._read(train_file, "train")}
        if (self.root / hp.val_file).is_file():
            parts["val"] = self._read(self.root / hp.val_file, "val")
        parts["test"] = self._read(self.root / hp.test_file, "test")
        return parts

    def _read(self, label_file: Path, split: str) -> list[tuple[Path, str, str]]:
        folder = self.root / split
        if split == "val" and not folder.is_dir():
            folder = self.root / "train"  # validation lines that point into train/
        rows, missing = [], []
        for patient, filename, label, _ in read_label_file(label_file):
            path = folder / filename
            (rows if path.is_file() else missing).append((path, label, patient))
        if missing:
            raise DataError(f"{label_file}: {len(missing)} images are not in {folder}, e.g. {missing[0][0].name}"
                            f"{'' if len(missing) == 1 else ', ' + missing[1][0].name}")
        classes_of([lab for _, lab, _ in rows], str(label_file))
        return rows

    # --- splits ---------------------------------------------------------------------------------------------
    def _split_train(self, rows: list[tuple[Path, str, str]], test: float) -> Split:
        patients = [patient for _, _, patient in rows]
        labels = [lab for _, lab, _ in rows]
        patient_label: dict[str, str] = {}
        for patient, label in zip(patients, labels, strict=True):  # a patient's label: positive if any image is
            if patient not in patient_label or label in POSITIVE:
                patient_label[patient] = label
        return grouped_split(patients, self.hparams.val_fraction, test, self.hparams.seed,
                             stratify=[patient_label[p] for p in patients])

    def _transform(self, train: bool) -> A.Compose:
        hp = self.hparams
        return covidx_transform(hp.image_size, train, hp.seed, hp.mean, hp.std)

    def _evaluation_rows(self, folder: Path) -> list[tuple[Path, str, str]]:
        """(image, label, patient) of a test-only folder: COVIDx label file + test/, or class folders."""
        if (folder / self.hparams.test_file).is_file():
            root, self.root = self.root, folder
            try:
                return self._read(folder / self.hparams.test_file, "test")
            finally:
                self.root = root
        classes, paths, labels = scan_image_folder(folder)
        return [(p, classes[y], p.stem) for p, y in zip(paths, labels, strict=True)]

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage == "predict" and hp.predict_path:
            self.predict_paths = list_images(Path(hp.predict_path).expanduser())
            self.predict_set = FileImages(self.predict_paths, [-1] * len(self.predict_paths), self._transform(False))
            return
        if self.test_root is not None and stage in ("test", "validate"):
            rows = self._evaluation_rows(self.test_root)
            found = list(dict.fromkeys(lab for _, lab, _ in rows))
            if not (self.test_root / hp.test_file).is_file():
                found = sorted(found)
            elif set(found) <= set(BINARY) or set(found) <= set(THREE_CLASS):
                found = list(classes_of(found, str(self.test_root)))  # a label file's classes are its label set's
            index = dict(zip(found, match_class_names(found, self.class_names, str(self.test_root)), strict=True))
            self.evaluation_folder = self.test_root
            self.val_set = self.test_set = FileImages([p for p, _, _ in rows], [index[lab] for _, lab, _ in rows],
                                                      self._transform(False))
            self.sets = {"test": self.test_set}
            return
        if not self.parts:
            self._read_root()
            found = classes_of([lab for rows in self.parts.values() for _, lab, _ in rows], str(self.root))
            match_class_names(found, self.class_names, str(self.root))
        if "all" in self.parts:
            rows = self.parts["all"]
            split = self._split_train(rows, 0.2)
            parts = {name: [rows[i] for i in idx] for name, idx in zip(("train", "val", "test"), split, strict=True)}
        else:
            parts = dict(self.parts)
            if "val" not in parts:
                split = self._split_train(parts["train"], 0.0)
                parts["val"] = [parts["train"][i] for i in split.val]
                parts["train"] = [parts["train"][i] for i in split.train]
        index = {name: i for i, name in enumerate(self.class_names)}
        self.sets = {}
        for name, rows in parts.items():
            transform = self._transform(name == "train" and hp.augment)
            self.sets[name] = FileImages([p for p, _, _ in rows], [index[lab] for _, lab, _ in rows], transform)
        self.train_set, self.val_set, self.test_set = self.sets["train"], self.sets["val"], self.sets["test"]
        self.train_positive = [self.class_names[y] in POSITIVE for y in self.train_set.labels]
        if self.predict_paths == [] and stage == "predict":
            self.predict_paths, self.predict_set = list(self.test_set.paths), self.test_set

    def evaluation_line(self, split: str) -> str:
        """"data: 7 images in my_xrays/ (test only), classes negative, positive", or the run's own split."""
        if split != "predict" and self.evaluation_folder is not None:
            return (f"data: {len(self.split_dataset(split))} images in {self.evaluation_folder}/ (test only), "
                    f"classes {', '.join(self.class_names)}")
        if split == "predict" and self.predict_paths:
            return f"data: {len(self.predict_paths)} images to predict in {describe_files(self.predict_paths)}"
        return super().evaluation_line(split).replace(" examples", " images")

    def describe(self) -> str:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.sets.items()) if hasattr(self, "sets") else "not set up"
        share = f"{self.hparams.positive_share:.0%} positive batches" if self.hparams.positive_share else "shuffled"
        return (f"data: {self.source}; classes {', '.join(self.class_names)}; {sizes}; input "
                f"{self.hparams.image_size}x{self.hparams.image_size} in [0, 1]; {share}")

    # --- loaders --------------------------------------------------------------------------------------------
    def train_batch_sampler(self) -> BalancedBatchSampler | None:
        """COVID-Net's balanced batches when ``positive_share`` is set (and there are two classes or more)."""
        share = self.hparams.positive_share
        if not share or self.num_classes < 2:
            return None
        return BalancedBatchSampler(self.train_positive, self.batch_size, share, self.seed)


# --- the simulated offline set ---------------------------------------------------------------------------------
def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma)


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian noise blurred by ``sigma`` pixels, drawn at a quarter of the size and enlarged (fast)."""
    from scipy.ndimage import zoom

    small = _blur(rng.normal(0, 1, (size // 4 + 1, size // 4 + 1)), sigma / 4)
    return zoom(small, size / small.shape[0], order=1)[:size, :size]


def simulate_chest_xray(rng: np.random.Generator, size: int, finding: str) -> np.ndarray:
    """One frontal chest radiograph-like image (size, size) uint8. ``finding``: "none", "covid" (bilateral
    peripheral lower-zone ground-glass opacities) or "consolidation" (one dense focal lobar opacity)."""
    v, u = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    u = u + rng.normal(0, 0.03)
    v = v + rng.normal(0, 0.03)
    width = rng.uniform(0.8, 0.95)
    body = ((u / width) ** 2 + ((v - 0.15) / 1.15) ** 2 < 1).astype(float)
    lungs = np.zeros_like(u)
    lung_w, lung_h = rng.uniform(0.25, 0.31), rng.uniform(0.55, 0.62)
    for side in (-1, 1):
        cx = side * rng.uniform(0.33, 0.4)
        dome = 0.42 + rng.normal(0, 0.04) + (0.05 if side > 0 else 0)  # the right dome sits higher (image left)
        cy = dome - lung_h
        # an egg shape: narrow apex, wide base, the diaphragm dome below
        shape_w = lung_w * (0.75 + 0.25 * np.clip((v - cy + lung_h) / (2 * lung_h), 0, 1))
        inside = ((u - cx) / shape_w) ** 2 + ((v - cy) / lung_h) ** 2 < 1
        inside &= v < dome - 0.15 * ((u - cx) / lung_w) ** 2
        lungs = np.maximum(lungs, inside.astype(float))
    heart = (((u - 0.12) / rng.uniform(0.26, 0.33)) ** 2 + ((v - 0.2) / 0.23) ** 2 < 1)
    mediastinum = (np.abs(u) < 0.1) & (v > -0.75) & (v < 0.45)
    lungs = lungs * ~(heart | mediastinum)
    ribs = np.zeros_like(u)
    for k in range(10):  # posterior ribs: sloping down and out from the spine; clavicles on top
        y0 = -0.66 + k * rng.uniform(0.12, 0.13)
        arc = y0 + 0.1 * np.abs(u) + 0.45 * (np.abs(u) - 0.25) ** 2
        ribs += (np.abs(v - arc) < 0.024) & (np.abs(u) > 0.06) & (np.abs(u) < width * 0.92)
    ribs += (np.abs(v - (-0.7 + 0.15 * np.abs(np.abs(u) - 0.25))) < 0.028) & (np.abs(u) > 0.06) & (np.abs(u) < 0.6)
    vertebrae = (np.abs(u) < 0.07) * (0.75 + 0.25 * np.cos(v * rng.uniform(38, 44)))
    dense = 0.40 * body + 0.13 * heart + 0.2 * mediastinum + 0.1 * vertebrae + 0.06 * np.clip(ribs, 0, 1) * body
    dense = _blur(dense, size / 120)
    soft_lungs = _blur(lungs, size / 100)
    vessels = _smooth_noise(rng, size, size / 70)
    vessels = 0.03 * vessels / (vessels.std() + 1e-6) * np.clip(1.1 - np.abs(np.abs(u) - 0.1) * 1.6, 0, 1)
    image = 0.05 + dense - 0.30 * soft_lungs * (1 - 0.4 * _blur(np.clip(ribs, 0, 1), size / 200)) + vessels * \
        soft_lungs
    if finding == "covid":
        opacity = np.zeros_like(u)
        sides = (-1, 1) if rng.random() < 0.85 else (rng.choice([-1, 1]),)
        for side in sides:
            for _ in range(rng.integers(3, 7)):
                cx = side * rng.uniform(0.48, 0.64)  # peripheral
                cy = rng.uniform(0.0, 0.35)           # lower zones
                spread = rng.uniform(0.07, 0.14)
                opacity += np.exp(-(((u - cx) ** 2 + (v - cy) ** 2) / (2 * spread ** 2)))
        patchy = np.clip(0.75 + 2.5 * _smooth_noise(rng, size, size / 60), 0.4, 1.3)
        image += rng.uniform(0.12, 0.22) * np.clip(opacity, 0, 1.3) * soft_lungs * patchy
    elif finding == "consolidation":
        side = rng.choice([-1, 1])
        cx, cy, spread = side * rng.uniform(0.25, 0.5), rng.uniform(-0.4, 0.3), rng.uniform(0.1, 0.16)
        lobe = np.exp(-(((u - cx) ** 2 + (v - cy) ** 2) / (2 * spread ** 2))) ** 0.5
        image += rng.uniform(0.15, 0.25) * lobe * soft_lungs
    image = np.clip(image, 0, 1) ** rng.uniform(0.8, 1.25) + rng.normal(0, 0.012, u.shape)  # exposure, noise
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def write_simulated_covidx(train: int = 480, test: int = 120, size: int = 256, root: Path | None = None) -> Path:
    """Write the simulated set once (half positive; a third of the negatives with a lobar consolidation) in the
    COVIDx layout: ``train.txt``, ``test.txt``, ``train/``, ``test/``; returns its folder."""
    folder = root or cache_root() / "covidx" / "simulated"
    if (folder / "README.txt").is_file():
        return folder
    rng = np.random.default_rng(0)
    patient = 0
    for split, count in (("train", train), ("test", test)):
        (folder / split).mkdir(parents=True, exist_ok=True)
        lines = []
        positive = False
        for i in range(count):
            if i % 5 != 4:  # every fourth patient has a second image of the same finding (COVIDx patients often do)
                patient += 1
                positive = not positive
                finding = "covid" if positive else ("consolidation" if rng.random() < 1 / 3 else "none")
            name = f"sim-{split}-{i:05d}.png"
            Image.fromarray(simulate_chest_xray(rng, size, finding)).save(folder / split / name)
            lines.append(f"SIM{patient:05d} {name} {'positive' if positive else 'negative'} simulated")
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    (folder / "README.txt").write_text(
        "SIMULATED chest X-rays in the COVIDx layout (zoo.data.covidx.write_simulated_covidx), not patient data.\n"
        "Procedural radiographs (body, lungs, heart, mediastinum, spine, ribs, clavicles, vessel markings,\n"
        "exposure and noise); positives: bilateral peripheral lower-zone ground-glass opacities; a third of the\n"
        "negatives: a focal lobar consolidation (non-COVID pneumonia). Labels as COVIDx8B/9B.\n")
    return folder
