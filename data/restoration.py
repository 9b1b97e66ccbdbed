"""Paired image-restoration data: hazy/clear folders (RESIDE ITS, OTS, SOTS, Haze4K, or any ``hazy/`` + ``clear/``
pair) and a physically synthesised offline default.

Folder layouts read by :func:`find_pairs` (a root holding a degraded and a clean folder):

- RESIDE ITS / OTS / SOTS and Haze4K: ``hazy/<id>_<k or A>_<beta>.png`` paired with ``clear/<id>.png`` (any image
  extension) by the prefix before the first ``_``; SOTS-indoor's 640x480 ground truth with its 10-pixel white
  border is cropped to the 620x460 of the hazy images (the cropped ground truth the paper evaluates on);
- generic: ``hazy/<name>`` paired with ``clear/<name>`` of the same stem.

Degraded folders are named ``hazy``, ``haze``, ``IN`` or ``input``; clean ones ``clear``, ``gt``, ``GT``,
``target`` or ``clean``.

Offline default (:func:`write_synthetic_haze`): the real photos bundled with scikit-learn (china, flower),
matplotlib (grace_hopper) and scikit-image (scenes and textures, when installed; never its stereo motorcycle, which
is reserved for evaluation) are resized to three scales, and each resized photo is hazed six times as a whole with
the atmospheric scattering model ``I = J t + A (1 - t)``, ``t = exp(-beta d)``, beta ~ U(0.4, 2.0) and
A ~ U(0.6, 1.0) (wider than RESIDE's 0.6-1.8 and 0.7-1.0) drawn per hazy version and written into the file name as
RESIDE does, over a SIMULATED depth ``d`` with the structure of real scenes (:mod:`zoo.data.scene_depth`: a ray-cast
room, street, open ground or tilted surface, with the photo's own segments stood up on it as objects, so depth
edges fall on image edges; scaled by its 99th percentile), and then cut into 128x128 tiles. No measured depth
ships offline. The files are written once into ``cache_root()/dehazing_photos`` in the RESIDE layout and read by the
same reader as user data; whole photos are kept apart between train, val and test. Simulated haze over simulated
depth: the card, a README.txt in the folder and ``describe()`` say so. Haze over REAL depth, held out, is measured by
``benchmarks/dehazing_real_depth.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate
from zoo.data.base import ZooDataModule, bundled_photos, cache_root, describe_files
from zoo.data.images import read_image
from zoo.data.splits import grouped_split

from zoo.errors import DataError

log = logging.getLogger(__name__)

__all__ = ["DehazingData", "PairedImages", "find_pairs", "read_rgb", "same_size_batch", "synthesise_haze",
           "training_photos", "write_synthetic_haze"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
HAZY_FOLDERS = ("hazy", "haze", "IN", "input")
CLEAR_FOLDERS = ("clear", "gt", "GT", "target", "clean")
SOTS_HAZY_SIZE, SOTS_CLEAR_SIZE = (460, 620), (480, 640)  # (H, W)
SYNTHETIC_NAME, SYNTHETIC_VERSION = "dehazing_photos", "3"
SHORT_SIDES = (256, 384, 512)  # each photo at three scales: more (and differently framed) tiles
BETA_RANGE, AIRLIGHT_RANGE = (0.4, 2.0), (0.6, 1.0)  # wider than RESIDE's (0.6, 1.8) and (0.7, 1.0)
EVALUATION_ONLY = ("stereo_motorcycle", "motorcycle")  # scikit-image's real-depth pair: held out, never trained on
# scikit-image's photographs of scenes and textures (grey ones as three equal channels) and matplotlib's portrait,
# on top of scikit-learn's two: dehazing must generalise across scenes, which three training photos do not teach
RESTORATION_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "brick", "grass",
                      "gravel")


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as float32 RGB (H, W, 3) in [0, 1]; an unreadable file raises DataError naming it."""
    return read_image(path).astype(np.float32) / 255.0


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _subfolder(root: Path, names: Sequence[str], what: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"{root}: no {what} folder; expected one of {', '.join(n + '/' for n in names)} "
                    f"(RESIDE layout: hazy/<id>_<k>_<beta>.png with clear/<id>.png)")


def find_pairs(root: str | Path) -> list[tuple[Path, Path]]:
    """(hazy, clear) file pairs under ``root`` (see the module docstring for the layouts).

    Raises:
        DataError: a missing root or folder, an empty folder, or a hazy file without its clear partner (both the
            hazy path and the clear path(s) looked for are named).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"paired image folder {root} does not exist" if not root.exists()
                        else f"{root} is a file, not a folder with hazy/ and clear/ inside")
    hazy_dir, clear_dir = _subfolder(root, HAZY_FOLDERS, "hazy"), _subfolder(root, CLEAR_FOLDERS, "clear")
    clear_by_stem = {p.stem: p for p in _images(clear_dir)}
    hazy = _images(hazy_dir)
    if not hazy:
        raise DataError(f"{hazy_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    pairs = []
    for path in hazy:
        prefix = path.stem.split("_")[0]
        partner = clear_by_stem.get(path.stem) or clear_by_stem.get(prefix)
        if partner is None:
            looked = {clear_dir / f"{path.stem}.png", clear_dir / f"{prefix}.png"}
            raise DataError(f"hazy image {path} has no clear partner: looked for "
                            f"{' or '.join(str(p) for p in sorted(looked))} (any image extension)")
        pairs.append((path, partner))
    return pairs


def _match_sizes(hazy: np.ndarray, clear: np.ndarray, hazy_path: Path, clear_path: Path) -> np.ndarray:
    if hazy.shape == clear.shape:
        return clear
    if hazy.shape[:2] == SOTS_HAZY_SIZE and clear.shape[:2] == SOTS_CLEAR_SIZE:
        return clear[10:-10, 10:-10]  # SOTS-indoor ground truth with its white border -> the cropped 620x460
    raise DataError(f"hazy {hazy_path} is {hazy.shape[1]}x{hazy.shape[0]} but its clear partner {clear_path} is "
                    f"{clear.shape[1]}x{clear.shape[0]} (width x height); a pair must have one size")


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class PairedImages(Dataset):
    """(hazy (3, H, W), clear (3, H, W)) float tensors in [0, 1], cropped and rotated together when training.

    Args:
        pairs: (hazy path, clear path) pairs, e.g. from :func:`find_pairs`.
        crop_size: side of the random square crop (training); None keeps the whole image (evaluation).
        rotate: random rotation by k * 90 degrees (the paper's augmentation).
        flip: random horizontal flip (not in the paper).
        repeats: times each pair appears per epoch (different random crops).
    """

    def __init__(self, pairs: Sequence[tuple[Path, Path]], crop_size: int | None = None, rotate: bool = False,
                 flip: bool = False, repeats: int = 1, seed: int = 0):
        self.pairs, self.crop_size, self.repeats = list(pairs), crop_size, max(1, repeats)
        steps = []
        if crop_size:
            steps.append(A.RandomCrop(crop_size, crop_size))
        if rotate:
            steps.append(A.RandomRotate90(p=1.0))
        if flip:
            steps.append(A.HorizontalFlip(p=0.5))
        self.transform = A.Compose(steps, additional_targets={"clear": "image"}, seed=seed) if steps else None

    def __len__(self) -> int:
        return len(self.pairs) * self.repeats

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        hazy_path, clear_path = self.pairs[index % len(self.pairs)]
        hazy, clear = read_rgb(hazy_path), read_rgb(clear_path)
        clear = _match_sizes(hazy, clear, hazy_path, clear_path)
        if self.crop_size and min(hazy.shape[:2]) < self.crop_size:
            raise DataError(f"{hazy_path} is {hazy.shape[1]}x{hazy.shape[0]}, smaller than the "
                            f"{self.crop_size}x{self.crop_size} training crop; lower --data.crop_size")
        return hazy, clear

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        hazy, clear = self.load(index)
        if self.transform is not None:
            out = self.transform(image=hazy, clear=clear)
            hazy, clear = out["image"], out["clear"]
        return _to_tensor(hazy), _to_tensor(clear)


class PredictImages(Dataset):
    """Single degraded images for ``zoo predict``: (image (3, H, W), index)."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return _to_tensor(read_rgb(self.paths[index])), index


# --- the offline default: physical haze on real photos over scene-structured depth -----------------------------
def synthesise_haze(clear: np.ndarray, depth: np.ndarray, beta: float, airlight: float) -> np.ndarray:
    """The atmospheric scattering model: I = J t + A (1 - t), t = exp(-beta d). clear (H, W, 3) in [0, 1]."""
    t = np.exp(-beta * depth)[..., None]
    return np.clip(clear * t + airlight * (1.0 - t), 0.0, 1.0)


def _resize_short_side(photo: np.ndarray, short_side: int) -> np.ndarray:
    image = Image.fromarray(photo)
    scale = short_side / min(image.size)
    return np.asarray(image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC))


def _tile_corners(h: int, w: int, size: int) -> list[tuple[int, int]]:
    return [(y, x) for y in range(0, h - size + 1, size) for x in range(0, w - size + 1, size)]


def _to_png(image: np.ndarray, path: Path) -> None:
    Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def write_synthetic_haze(folder: Path, tile: int = 128, short_sides: Sequence[int] = SHORT_SIDES,
                         hazy_per_clear: int = 6, val_fraction: float = 0.15, test_fraction: float = 0.15,
                         seed: int = 0) -> Path:
    """Write hazy/clear pairs made from the bundled photos into ``folder/{train,val,test}/{hazy,clear}`` (RESIDE
    layout: ``hazy/<id>_<A>_<beta>.png``, ``clear/<id>.png``), once; returns ``folder``.

    Each photo is resized to every short side of ``short_sides``; each resized photo is hazed ``hazy_per_clear``
    times as a whole, each time over a new scene depth (:func:`zoo.data.scene_depth.scene_depth`) with its own beta
    and A, and then cut into ``tile`` x ``tile`` tiles, so a tile's depth is part of a whole scene's."""
    from zoo.data.scene_depth import object_segments, relative_depth, scene_depth

    if (folder / "VERSION").is_file() and (folder / "VERSION").read_text().strip() == SYNTHETIC_VERSION:
        return folder
    rng = np.random.default_rng(seed)
    photos = training_photos()
    names = sorted(photos)
    split = grouped_split(names, val_fraction, test_fraction, seed) if len(names) >= 3 else None
    part_of = {}
    for part in ("train", "val", "test"):
        for i in (getattr(split, part) if split else range(len(names))):
            part_of[names[i]] = part
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    counts = {"train": 0, "val": 0, "test": 0}
    next_id = 1
    for name in names:
        for short_side in short_sides:
            photo = _resize_short_side(photos[name], short_side)
            corners = _tile_corners(*photo.shape[:2], tile)
            segments = object_segments(photo)
            clear = photo.astype(np.float32) / 255.0
            ids = []
            for k, (y, x) in enumerate(corners):
                part = part_of[name] if split else ("train", "val", "test")[k % 3]
                out = staging / part
                (out / "hazy").mkdir(parents=True, exist_ok=True)
                (out / "clear").mkdir(parents=True, exist_ok=True)
                _to_png(clear[y:y + tile, x:x + tile], out / "clear" / f"{next_id}.png")
                ids.append((next_id, out, part))
                next_id += 1
            for _ in range(hazy_per_clear):
                depth = relative_depth(scene_depth(segments, rng))
                beta = round(float(rng.uniform(*BETA_RANGE)), 2)
                airlight = round(float(rng.uniform(*AIRLIGHT_RANGE)), 2)
                hazy = synthesise_haze(clear, depth, beta, airlight)
                for (tile_id, out, part), (y, x) in zip(ids, corners, strict=True):
                    _to_png(hazy[y:y + tile, x:x + tile], out / "hazy" / f"{tile_id}_{airlight:.2f}_{beta:.2f}.png")
                    counts[part] += 1
    (staging / "README.txt").write_text(
        "SIMULATED HAZE written by zoo.data.restoration.write_synthetic_haze: real photos bundled with "
        f"scikit-learn, scikit-image and matplotlib ({', '.join(names)}), each resized to short sides "
        f"{', '.join(map(str, short_sides))} and hazed as a whole {hazy_per_clear} times with I = J t + A (1 - t), "
        f"t = exp(-beta d), beta ~ U{BETA_RANGE}, A ~ U{AIRLIGHT_RANGE} per hazy version (in the file name: "
        "<id>_<A>_<beta>.png), each over its own SIMULATED scene depth d (zoo.data.scene_depth: a ray-cast room, "
        "street, open ground or tilted surface with the photo's own segments stood up on it as objects; the "
        "structure of real depth, not measured depth), then cut into "
        f"{tile}x{tile} tiles. Whole photos are kept apart between the splits: "
        f"{', '.join(f'{p} {n}' for p, n in counts.items())} hazy images.\n")
    (staging / "VERSION").write_text(SYNTHETIC_VERSION + "\n")
    if folder.is_dir():  # an older version: moved aside first, since a rename never replaces a full folder
        stale = Path(tempfile.mkdtemp(prefix=f".{folder.name}-old-", dir=folder.parent))
        with contextlib.suppress(OSError):
            os.replace(folder, stale / folder.name)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.replace(staging, folder)  # atomic; another process may have written it meanwhile
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (folder / "VERSION").is_file() or (folder / "VERSION").read_text().strip() != SYNTHETIC_VERSION:
            raise
    return folder


def training_photos() -> dict[str, np.ndarray]:
    """The real photos the offline default is made of, name -> uint8 (H, W, 3). scikit-image's stereo motorcycle
    is never among them: it is reserved for evaluation (benchmarks/real_depth_haze.py)."""
    photos = bundled_photos(RESTORATION_PHOTOS, ("grace_hopper.jpg",))
    return {name: photo for name, photo in photos.items() if name not in EVALUATION_ONLY}


def same_size_batch(examples: list[tuple[torch.Tensor, ...]]) -> Any:
    """torch's default collation of (image, ...) examples, after checking that the images share one size (an
    evaluation batch of more than one whole image); different sizes raise a DataError that says what to do."""
    sizes = sorted({tuple(example[0].shape[-2:]) for example in examples})
    if len(sizes) > 1:
        raise DataError(f"images of different sizes (H x W: {', '.join(f'{h}x{w}' for h, w in sizes)}) in one "
                        "evaluation batch: give --data.eval_batch_size 1")
    return default_collate(examples)


class DehazingData(ZooDataModule):
    """Paired restoration batches ``(hazy (B, 3, S, S), clear (B, 3, S, S))`` in [0, 1] for training; evaluation
    batches hold whole images (batch 1 by default, as the paper evaluates).

    Args:
        root: the training folder (``RESIDE/ITS``, ``RESIDE/OTS``, ``Haze4K/train`` or any ``hazy/`` + ``clear/``
            pair); None uses the simulated offline default (see the module docstring).
        val_root: the validation folder (e.g. ``RESIDE/SOTS/indoor``); None splits ``val_fraction`` of the clear
            images of ``root`` off (all hazy versions of a clear image stay together).
        test_root: the test folder; None tests on the validation folder (or the simulated test pairs). ``zoo
            test`` with it evaluates exactly its pairs and reads nothing else (no ``root`` needed).
        predict_path: an image file or a folder of hazy images for ``zoo predict``.
        crop_size: side of the random square training crop (the paper: 256).
        rotate / flip: random k * 90 degree rotations (the paper) / horizontal flips (not in the paper).
        repeats: passes over the training pairs per epoch (different random crops each time).
        eval_batch_size: whole images per evaluation batch (they must share one size when > 1).
    """

    collate_fn = staticmethod(same_size_batch)

    def __init__(self, root: str | None = None, val_root: str | None = None, test_root: str | None = None,
                 predict_path: str | None = None, crop_size: int = 256, rotate: bool = True, flip: bool = False,
                 repeats: int = 1, val_fraction: float = 0.1, batch_size: int = 16, eval_batch_size: int = 1,
                 num_workers: int | None = None, seed: int = 0):
        super().__init__(batch_size, num_workers, seed)
        self.save_hyperparameters()
        if crop_size < 4 or crop_size % 4:
            raise DataError(f"--data.crop_size must be a positive multiple of 4 (DEA-Net halves twice), "
                            f"got {crop_size}")
        self.train_pairs: list[tuple[Path, Path]] = []
        self.val_pairs: list[tuple[Path, Path]] = []
        self.test_pairs: list[tuple[Path, Path]] = []
        self.predict_paths: list[Path] = []
        self.evaluation_folder: Path | None = None  # set up from a test-only folder
        self.eval_batch_size = eval_batch_size
        self.source = "simulated" if root is None else str(root)

    def _resolve(self) -> None:
        if self.train_pairs:
            return
        hp = self.hparams
        if hp.root is None:
            folder = write_synthetic_haze(cache_root() / SYNTHETIC_NAME, seed=0)
            self.train_pairs, self.val_pairs = find_pairs(folder / "train"), find_pairs(folder / "val")
            self.test_pairs = find_pairs(hp.test_root or folder / "test")
            return
        pairs = find_pairs(hp.root)
        if hp.val_root:
            self.train_pairs, self.val_pairs = pairs, find_pairs(hp.val_root)
        else:
            groups = [str(clear) for _, clear in pairs]
            split = grouped_split(groups, hp.val_fraction, 0.0, hp.seed)
            self.train_pairs = [pairs[i] for i in split.train]
            self.val_pairs = [pairs[i] for i in split.val]
        self.test_pairs = find_pairs(hp.test_root) if hp.test_root else self.val_pairs

    def evaluation_line(self, split: str) -> str:
        """"data: 57 image pairs in my_pairs/ (test only)", "data: test split of the quick start's simulated
        hazy/clear pairs in ..., 40 pairs", or the hazy images to restore."""
        if split == "predict":
            return f"data: {len(self.predict_paths)} hazy images to restore in {describe_files(self.predict_paths)}"
        if split == "test" and self.evaluation_folder is not None:
            return f"data: {len(self.test_pairs)} image pairs in {self.evaluation_folder}/ (test only)"
        hp = self.hparams
        pairs = self.val_pairs if split == "val" else self.test_pairs
        if hp.root is None:
            source = f"the quick start's simulated hazy/clear pairs in {cache_root() / SYNTHETIC_NAME}"
            if split == "test" and hp.test_root:
                return f"data: {len(pairs)} image pairs in {hp.test_root}/ (test)"
            return f"data: {'validation' if split == 'val' else 'test'} split of {source}, {len(pairs)} pairs"
        folder = hp.val_root if split == "val" or not hp.test_root else hp.test_root
        if folder:
            return f"data: {len(pairs)} image pairs in {folder}/ ({'validation' if split == 'val' else 'test'})"
        return (f"data: validation split of the pairs in {hp.root}/ ({len(pairs)} pairs"
                f"{', tested as no --data.test_root is given' if split == 'test' else ''})")

    def describe(self) -> str:
        self._resolve()
        source = ("SIMULATED haze (I = J t + A (1 - t)) over SIMULATED scene depth on real photos bundled with "
                  "scikit-learn, scikit-image and matplotlib, "
                  f"in {cache_root() / SYNTHETIC_NAME}" if self.hparams.root is None else
                  f"paired folders {self.hparams.root} (val {self.hparams.val_root or 'split off'}, "
                  f"test {self.hparams.test_root or 'the validation set'})")
        return (f"data: {source}; hazy/clear pairs: train {len(self.train_pairs)}, val {len(self.val_pairs)}, "
                f"test {len(self.test_pairs)}; training crops {self.hparams.crop_size}x{self.hparams.crop_size}"
                f"{', k*90 rotations' if self.hparams.rotate else ''}{', flips' if self.hparams.flip else ''}; "
                "evaluation on whole images")

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            if not self.hparams.predict_path:
                raise DataError("zoo predict needs --data.predict_path (a hazy image or a folder of them)")
            path = Path(self.hparams.predict_path).expanduser()
            if path.is_dir():
                self.predict_paths = _images(path)
            elif path.is_file():
                self.predict_paths = [path]
            else:
                raise DataError(f"--data.predict_path {path} does not exist")
            if not self.predict_paths:
                raise DataError(f"{path} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            return
        if stage == "test" and self.hparams.test_root:  # exactly the pairs given: no training data is read
            self.evaluation_folder = Path(self.hparams.test_root).expanduser()
            self.test_pairs = find_pairs(self.evaluation_folder)
            return
        self._resolve()

    def _eval_set(self, pairs: list[tuple[Path, Path]], stage: str) -> PairedImages:
        if not pairs:
            raise DataError(f"no {stage} pairs: give --data.{stage}_root or more training pairs")
        return PairedImages(pairs)

    def split_dataset(self, split: str) -> PairedImages | PredictImages:
        """Built when its loader is asked for: random training crops, whole evaluation images."""
        hp = self.hparams
        if split == "train":
            return PairedImages(self.train_pairs, hp.crop_size, hp.rotate, hp.flip, hp.repeats, hp.seed)
        if split == "predict":
            return PredictImages(self.predict_paths)
        return self._eval_set(self.val_pairs if split == "val" else self.test_pairs, split)

    def split_batch_size(self, split: str) -> int:
        """Images to predict are whole and of any size: one per batch."""
        return 1 if split == "predict" else super().split_batch_size(split)
