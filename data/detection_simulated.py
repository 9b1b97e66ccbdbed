"""The offline detection set: filled shapes or real handwritten digits composited onto crops of the real photos
bundled with scikit-learn and scikit-image, exact boxes, written once in YOLO format
(:func:`write_synthetic_detection`)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from PIL import Image, ImageDraw
from zoo.data.base import bundled_photos
from zoo.data.splits import grouped_split

SHAPES = ("circle", "triangle", "square", "star")
SYNTHETIC_VERSION = "1"
DETECTION_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "brick", "grass", "gravel",
                    "camera", "coins", "moon")


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
