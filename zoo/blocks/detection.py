"""Anchor-free detection heads with distribution focal regression (DFL): anchors, box decoding and NMS.

Shared by the detectors (YOLOv9/GELAN-style heads) and the detection task. A head level gives a map
(B, 4 * reg_max + num_classes, H, W): per cell, ``reg_max`` bins for each of the left/top/right/bottom distances
(in stride units, decoded as the expectation of a softmax over bins 0..reg_max-1) and the class logits.
Boxes are (x1, y1, x2, y2) in input pixels throughout.
"""

from __future__ import annotations

import math

import torch
import torchvision
from torch import nn

__all__ = ["DFL", "bbox_to_dist", "box_ciou", "decode_levels", "dist_to_bbox", "flatten_levels", "make_anchors",
           "non_max_suppression"]


class DFL(nn.Module):
    """The expectation of the softmax over ``reg_max`` bins, as a fixed 1x1 conv with weights 0..reg_max-1.

    Shapes: (B, 4 * reg_max, A) -> (B, 4, A).
    """

    def __init__(self, reg_max: int = 16):
        super().__init__()
        self.reg_max = reg_max
        self.conv = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(self.reg_max, dtype=torch.float).view(1, self.reg_max, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.reg_max, a).transpose(2, 1).softmax(1)).view(b, 4, a)


def make_anchors(shapes: list[tuple[int, int]], strides: list[int], device=None, dtype=torch.float32,
                 offset: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres of every level, in grid units, and their strides.

    Returns:
        points (A, 2) as (x, y) in each level's grid units, strides (A, 1); A = sum of H * W over the levels.
    """
    points, stride_list = [], []
    for (h, w), stride in zip(shapes, strides, strict=True):
        sy = torch.arange(h, device=device, dtype=dtype) + offset
        sx = torch.arange(w, device=device, dtype=dtype) + offset
        yy, xx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((xx, yy), -1).view(-1, 2))
        stride_list.append(torch.full((h * w, 1), float(stride), device=device, dtype=dtype))
    return torch.cat(points), torch.cat(stride_list)


def dist_to_bbox(distance: torch.Tensor, points: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """(left, top, right, bottom) distances from ``points`` -> (x1, y1, x2, y2) boxes along ``dim``."""
    lt, rb = distance.chunk(2, dim)
    return torch.cat((points - lt, points + rb), dim)


def bbox_to_dist(points: torch.Tensor, boxes: torch.Tensor, max_dist: float) -> torch.Tensor:
    """(x1, y1, x2, y2) boxes -> (left, top, right, bottom) distances from ``points``, clamped to [0, max_dist)."""
    x1y1, x2y2 = boxes.chunk(2, -1)
    return torch.cat((points - x1y1, x2y2 - points), -1).clamp(0, max_dist - 0.01)


def flatten_levels(levels: list[torch.Tensor], reg_max: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Head maps [(B, 4 * reg_max + nc, H_i, W_i)] -> (box bins (B, A, 4 * reg_max), class logits (B, A, nc))."""
    b, no = levels[0].shape[:2]
    flat = torch.cat([x.view(b, no, -1) for x in levels], 2).transpose(1, 2)
    return flat.split((4 * reg_max, no - 4 * reg_max), 2)


def decode_levels(levels: list[torch.Tensor], strides: list[int], reg_max: int = 16) -> torch.Tensor:
    """Head maps -> (B, A, 4 + nc): boxes (x1, y1, x2, y2) in input pixels and sigmoid class scores."""
    bins, logits = flatten_levels(levels, reg_max)
    points, stride = make_anchors([x.shape[2:] for x in levels], strides, levels[0].device, bins.dtype)
    b, a, _ = bins.shape
    proj = torch.arange(reg_max, device=bins.device, dtype=bins.dtype)
    dist = bins.view(b, a, 4, reg_max).softmax(3) @ proj
    return torch.cat((dist_to_bbox(dist, points) * stride, logits.sigmoid()), 2)


def box_ciou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU (Zheng et al., AAAI 2020) of broadcastable (..., 4) x1y1x2y2 boxes -> (...,).

    CIoU = IoU - centre distance^2 / enclosing diagonal^2 - alpha * v, with the aspect term
    v = 4 / pi^2 * (atan(w2 / h2) - atan(w1 / h1))^2 and alpha = v / (v - IoU + 1 + eps).
    """
    b1x1, b1y1, b1x2, b1y2 = box1.unbind(-1)
    b2x1, b2y1, b2x2, b2y2 = box2.unbind(-1)
    w1, h1 = b1x2 - b1x1, (b1y2 - b1y1).clamp(min=eps)
    w2, h2 = b2x2 - b2x1, (b2y2 - b2y1).clamp(min=eps)
    inter = (torch.minimum(b1x2, b2x2) - torch.maximum(b1x1, b2x1)).clamp(0) * \
            (torch.minimum(b1y2, b2y2) - torch.maximum(b1y1, b2y1)).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.maximum(b1x2, b2x2) - torch.minimum(b1x1, b2x1)
    ch = torch.maximum(b1y2, b2y2) - torch.minimum(b1y1, b2y1)
    c2 = cw ** 2 + ch ** 2 + eps
    rho2 = ((b2x1 + b2x2 - b1x1 - b1x2) ** 2 + (b2y1 + b2y2 - b1y1 - b1y2) ** 2) / 4
    v = (4 / math.pi ** 2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


@torch.no_grad()
def non_max_suppression(pred: torch.Tensor, conf_threshold: float = 0.001, iou_threshold: float = 0.7,
                        max_det: int = 300, max_candidates: int = 30000) -> list[dict[str, torch.Tensor]]:
    """Class-aware NMS (torchvision ``batched_nms``) of decoded predictions, one box per (anchor, class) above
    ``conf_threshold``.

    Args:
        pred: (B, A, 4 + nc) from :func:`decode_levels`.

    Returns:
        per image ``{"boxes": (n, 4) x1y1x2y2, "scores": (n,), "labels": (n,) int64}``, best first, n <= max_det.
    """
    out = []
    for p in pred:
        boxes, scores = p[:, :4], p[:, 4:]
        anchor, label = (scores > conf_threshold).nonzero(as_tuple=True)
        score = scores[anchor, label]
        if score.numel() > max_candidates:
            score, keep = score.topk(max_candidates)
            anchor, label = anchor[keep], label[keep]
        box = boxes[anchor]
        keep = torchvision.ops.batched_nms(box.float(), score.float(), label, iou_threshold)[:max_det]
        out.append({"boxes": box[keep], "scores": score[keep], "labels": label[keep]})
    return out
