"""Detection samples: letterboxing with the boxes, bounding-box aware augmentation (albumentations' colour jitter,
affine and flip), YOLO's mosaic and mixup, and the :class:`DetectionDataset` and collate function of the loaders
(batches as described in :mod:`zoo.data.detection`)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from zoo.data.detection_io import ImageRecord
from zoo.data.images import read_image

from zoo.errors import DataError

PAD_VALUE = 114


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
