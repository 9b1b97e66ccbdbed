"""Anchor-free detection heads with distribution focal regression (DFL): anchors, box decoding, NMS, and the
training side: the task-aligned assigner and the YOLOv9 loss (CIoU + DFL + BCE), written from the TOOD, GFL and
YOLOv9 papers' descriptions (the official codes are GPL/AGPL and were read for constants only).

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

__all__ = ["DFL", "DetectionLoss", "TaskAlignedAssigner", "bbox_to_dist", "box_ciou", "decode_levels",
           "dist_to_bbox", "distribution_focal_loss", "flatten_levels", "make_anchors", "non_max_suppression",
           "pad_targets"]


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
        with torch.autocast(x.device.type, enabled=False):  # bf16 would round box sides to ~1/2 bin
            return self.conv(x.float().view(b, 4, self.reg_max, a).transpose(2, 1).softmax(1)).view(b, 4, a)


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
    with torch.autocast(levels[0].device.type, enabled=False):  # boxes in float32 under mixed precision too
        bins, logits = flatten_levels([x.float() for x in levels], reg_max)
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


# --- training: the task-aligned assigner and the YOLOv9 loss ----------------------------------------------------
def pad_targets(targets: list[dict[str, torch.Tensor]], device=None) -> tuple[torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor]:
    """Per-image ``{"boxes" (n_i, 4), "labels" (n_i,)}`` -> boxes (B, M, 4), labels (B, M), mask (B, M) bool,
    M = max n_i (at least 1; padding rows are masked out)."""
    m = max([len(t["labels"]) for t in targets] + [1])
    b = len(targets)
    boxes = torch.zeros(b, m, 4, device=device)
    labels = torch.zeros(b, m, dtype=torch.long, device=device)
    mask = torch.zeros(b, m, dtype=torch.bool, device=device)
    for i, t in enumerate(targets):
        n = len(t["labels"])
        if n:
            boxes[i, :n] = t["boxes"].to(device=device, dtype=boxes.dtype)
            labels[i, :n] = t["labels"].to(device)
            mask[i, :n] = True
    return boxes, labels, mask


class TaskAlignedAssigner(nn.Module):
    """Task-aligned label assignment (TOOD, Feng et al. 2021; the form YOLOv8/YOLOv9 train with).

    For every ground-truth box, the anchors whose centres lie inside it are ranked by the alignment metric
    t = s^alpha * u^beta (s: the predicted score of the box's class, u: CIoU of the predicted box with it, clamped
    at 0); the ``topk`` best are its positives. An anchor claimed by several boxes keeps the one it overlaps most.
    Soft targets: t normalised per box so that its best anchor gets that box's best overlap, on the box's class.

    Args:
        topk: positives per box (YOLOv9: 10); alpha, beta: exponents (0.5, 6.0).
    """

    def __init__(self, topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9):
        super().__init__()
        self.topk, self.alpha, self.beta, self.eps = topk, alpha, beta, eps

    @torch.no_grad()
    def forward(self, pd_scores: torch.Tensor, pd_boxes: torch.Tensor, anchor_points: torch.Tensor,
                gt_labels: torch.Tensor, gt_boxes: torch.Tensor, mask_gt: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Assign.

        Args:
            pd_scores: (B, A, C) predicted class probabilities; pd_boxes: (B, A, 4) predicted x1y1x2y2;
            anchor_points: (A, 2) anchor centres, in the units of the boxes;
            gt_labels: (B, M); gt_boxes: (B, M, 4) x1y1x2y2; mask_gt: (B, M) which rows are real boxes.

        Returns:
            target_boxes (B, A, 4), target_scores (B, A, C), fg_mask (B, A) bool, target_gt_idx (B, A).
        """
        b, a, c = pd_scores.shape
        m = gt_boxes.shape[1]
        if not mask_gt.any():
            return (torch.zeros_like(pd_boxes), torch.zeros_like(pd_scores),
                    torch.zeros(b, a, dtype=torch.bool, device=pd_scores.device),
                    torch.zeros(b, a, dtype=torch.long, device=pd_scores.device))
        x, y = anchor_points[:, 0], anchor_points[:, 1]  # (A,)
        x1, y1, x2, y2 = (gt_boxes[..., k, None] for k in range(4))  # (B, M, 1)
        inside = torch.stack((x - x1, y - y1, x2 - x, y2 - y), -1).amin(-1) > self.eps  # (B, M, A)
        valid = inside & mask_gt[..., None]
        overlaps = torch.zeros(b, m, a, device=pd_scores.device, dtype=pd_scores.dtype)
        ciou = box_ciou(gt_boxes[:, :, None, :], pd_boxes[:, None, :, :]).clamp(0)  # (B, M, A)
        overlaps = torch.where(valid, ciou.to(overlaps.dtype), overlaps)
        class_scores = pd_scores.gather(2, gt_labels[:, None, :].expand(b, a, m).clamp(0, c - 1))  # (B, A, M)
        scores = torch.where(valid, class_scores.transpose(1, 2), torch.zeros_like(overlaps))
        align = scores.pow(self.alpha) * overlaps.pow(self.beta)  # (B, M, A)
        k = min(self.topk, a)
        top = align.topk(k, dim=-1).indices  # (B, M, k)
        is_top = torch.zeros_like(valid).scatter_(-1, top, True)
        mask_pos = is_top & valid  # (B, M, A)
        # an anchor claimed by several boxes keeps the box it overlaps most
        multiple = mask_pos.sum(1, keepdim=True) > 1  # (B, 1, A)
        best = torch.zeros_like(mask_pos).scatter_(1, overlaps.argmax(1, keepdim=True), True)
        mask_pos = torch.where(multiple, best & valid, mask_pos)
        fg_mask = mask_pos.any(1)  # (B, A)
        target_gt_idx = mask_pos.float().argmax(1)  # (B, A)
        target_labels = gt_labels.gather(1, target_gt_idx)  # (B, A)
        target_boxes = gt_boxes.gather(1, target_gt_idx[..., None].expand(b, a, 4))  # (B, A, 4)
        align = align * mask_pos
        align_max = align.amax(-1, keepdim=True)  # (B, M, 1)
        overlap_max = (overlaps * mask_pos).amax(-1, keepdim=True)
        norm = (align * overlap_max / (align_max + self.eps)).amax(1)  # (B, A)
        target_scores = torch.nn.functional.one_hot(target_labels, c).to(pd_scores.dtype)
        target_scores = target_scores * (norm * fg_mask)[..., None]
        return target_boxes, target_scores, fg_mask, target_gt_idx


def distribution_focal_loss(bins: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DFL (Li et al., GFL 2020): cross-entropy towards the two bins around a continuous target, weighted by
    nearness. bins (N, 4, reg_max) logits, target (N, 4) in [0, reg_max - 1) -> (N,) mean over the four sides."""
    left = target.long()
    right = left + 1
    w_left = right.to(target.dtype) - target
    w_right = 1 - w_left
    reg_max = bins.shape[-1]
    flat = bins.reshape(-1, reg_max)
    ce_left = torch.nn.functional.cross_entropy(flat, left.reshape(-1), reduction="none").view(left.shape)
    ce_right = torch.nn.functional.cross_entropy(flat, right.reshape(-1), reduction="none").view(left.shape)
    return (ce_left * w_left + ce_right * w_right).mean(-1)


class DetectionLoss(nn.Module):
    """The YOLOv9 (TAL) loss of one or several DFL heads: CIoU box loss + DFL + BCE class loss.

    Per head: targets from :class:`TaskAlignedAssigner` on that head's own (detached) predictions; the class loss
    is BCE against the soft targets, summed and divided by the sum of the targets; the box and DFL losses are over
    the positive anchors, weighted by their target score and divided by the same sum. Heads are weighted by
    ``head_weights`` (YOLOv9 dual: auxiliary 0.25, main 1.0), then the three parts by their gains (box 7.5,
    DFL 1.5, class 0.5), and the total is multiplied by the batch size, as YOLOv9 does.

    Shapes: heads = [[(B, 4 * reg_max + nc, H_i, W_i) per level] per head], targets a list of B dicts
    -> (loss scalar, parts (3,) = box, class, DFL, detached and unscaled by the batch size).
    """

    def __init__(self, num_classes: int, strides: tuple[int, ...] = (8, 16, 32), reg_max: int = 16,
                 topk: int = 10, alpha: float = 0.5, beta: float = 6.0, box_gain: float = 7.5,
                 cls_gain: float = 0.5, dfl_gain: float = 1.5):
        super().__init__()
        self.num_classes, self.strides, self.reg_max = num_classes, tuple(strides), reg_max
        self.gains = (box_gain, cls_gain, dfl_gain)
        self.assigner = TaskAlignedAssigner(topk, alpha, beta)

    def head_loss(self, levels: list[torch.Tensor], gt_boxes: torch.Tensor, gt_labels: torch.Tensor,
                  mask_gt: torch.Tensor) -> torch.Tensor:
        """(box, class, DFL) losses (3,) of one head, not yet weighted by the gains."""
        bins, logits = flatten_levels(levels, self.reg_max)
        b, a, _ = bins.shape
        points, stride = make_anchors([x.shape[2:] for x in levels], list(self.strides), bins.device, bins.dtype)
        bins = bins.view(b, a, 4, self.reg_max)
        proj = torch.arange(self.reg_max, device=bins.device, dtype=bins.dtype)
        pred_boxes = dist_to_bbox(bins.softmax(-1) @ proj, points)  # (B, A, 4) grid units
        target_boxes, target_scores, fg, _ = self.assigner(
            logits.detach().sigmoid(), pred_boxes.detach() * stride, points * stride, gt_labels, gt_boxes, mask_gt)
        score_sum = target_scores.sum().clamp(min=1.0)
        cls = torch.nn.functional.binary_cross_entropy_with_logits(logits, target_scores.to(logits.dtype),
                                                                   reduction="sum") / score_sum
        if not fg.any():
            zero = logits.sum() * 0.0 + bins.sum() * 0.0
            return torch.stack((zero, cls, zero))
        weight = target_scores.sum(-1)[fg]  # (N,)
        targets = target_boxes / stride  # grid units
        box = ((1.0 - box_ciou(pred_boxes[fg], targets[fg])) * weight).sum() / score_sum
        dist = bbox_to_dist(points.expand(b, a, 2)[fg], targets[fg], self.reg_max - 1)
        dfl = (distribution_focal_loss(bins[fg], dist) * weight).sum() / score_sum
        return torch.stack((box, cls, dfl))

    def forward(self, heads: list[list[torch.Tensor]], targets: list[dict[str, torch.Tensor]],
                head_weights: tuple[float, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        weights = head_weights or (1.0,) * len(heads)
        if len(weights) != len(heads):
            raise ValueError(f"{len(heads)} heads but {len(weights)} head weights")
        gt_boxes, gt_labels, mask_gt = pad_targets(targets, heads[0][0].device)
        with torch.autocast(heads[0][0].device.type, enabled=False):  # float32 under mixed precision too
            heads = [[x.float() for x in levels] for levels in heads]
            return self._total(heads, gt_boxes, gt_labels, mask_gt, weights, len(targets))

    def _total(self, heads: list[list[torch.Tensor]], gt_boxes: torch.Tensor, gt_labels: torch.Tensor,
               mask_gt: torch.Tensor, weights: tuple[float, ...], batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        parts = sum(w * self.head_loss(h, gt_boxes, gt_labels, mask_gt) for w, h in zip(weights, heads, strict=True))
        parts = parts * torch.tensor(self.gains, device=parts.device, dtype=parts.dtype)
        return parts.sum() * batch, parts.detach()
