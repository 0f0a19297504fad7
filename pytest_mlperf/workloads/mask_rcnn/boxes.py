"""Mask R-CNN's box geometry in plain torch (no torchvision.ops): the box coder, anchors, matching and sampling,
RoIAlign over the FPN levels, and the synthetic objects' shapes. IoU and NMS are ssd.py's.

Boxes are (..., 4) tensors (left, top, right, bottom) in pixels, in continuous coordinates: the reference's legacy
"+1" pixel convention (a box from x1 to x2 is x2 - x1 + 1 wide) is dropped, as Detectron2 and torchvision did; it
moves boxes by a pixel, not the cost of anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import accumulate

import torch
import torch.nn.functional as F
from torch import Tensor

from ..detection import box_iou

#: RPN anchors: aspect ratios (height / width) at every position of every level.
ASPECT_RATIOS = (0.5, 1.0, 2.0)
#: Largest log size ratio a decoded offset may give (the reference's bbox_xform_clip).
LOG_SCALE_CLIP = math.log(1000.0 / 16)
#: RoIAlign's bilinear samples per output bin side (POOLER_SAMPLING_RATIO).
SAMPLING = 2


def encode(boxes: Tensor, anchors: Tensor, weights: Sequence[float]) -> Tensor:
    """BoxCoder.encode: `boxes` as offsets from `anchors` (same shape): centre shifts over the anchor's size and
    log size ratios, times `weights` (wx, wy, ww, wh)."""
    wx, wy, ww, wh = weights
    anchor_size = anchors[..., 2:] - anchors[..., :2]
    shift = (boxes[..., :2] + boxes[..., 2:] - anchors[..., :2] - anchors[..., 2:]) / 2 / anchor_size
    scale = ((boxes[..., 2:] - boxes[..., :2]) / anchor_size).log()
    return torch.stack([wx * shift[..., 0], wy * shift[..., 1], ww * scale[..., 0], wh * scale[..., 1]], -1)


def decode(offsets: Tensor, anchors: Tensor, weights: Sequence[float]) -> Tensor:
    """BoxCoder.decode, the inverse of `encode`, with log size ratios clipped at log(1000 / 16)."""
    wx, wy, ww, wh = weights
    anchor_size = anchors[..., 2:] - anchors[..., :2]
    centre = (anchors[..., :2] + anchors[..., 2:]) / 2 + offsets[..., :2] / offsets.new_tensor([wx, wy]) * anchor_size
    half = (offsets[..., 2:] / offsets.new_tensor([ww, wh])).clamp(max=LOG_SCALE_CLIP).exp() * anchor_size / 2
    return torch.cat([centre - half, centre + half], -1)


def clip(boxes: Tensor, height: int, width: int) -> Tensor:
    """Boxes clipped to the image. NaN ones (from a diverged RPN) become empty, so that a divergence shows as a NaN
    loss rather than as an indexing error."""
    x, y = boxes.nan_to_num(0.0)[..., 0::2].clamp(0, width), boxes.nan_to_num(0.0)[..., 1::2].clamp(0, height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], -1)


def grid_anchors(
    sizes: Sequence[float], strides: Sequence[int], shapes: Sequence[Sequence[int]], device: torch.device
) -> list[Tensor]:
    """AnchorGenerator: per level, one anchor per aspect ratio, of the level's size (area size^2), centred on every
    cell of the (h, w) map: (h * w * ratios, 4) in (row, column, ratio) order. Exact sizes (the reference rounds
    them to whole pixels)."""
    ratios = torch.tensor(ASPECT_RATIOS, device=device)
    anchors = []
    for size, stride, (h, w) in zip(sizes, strides, shapes, strict=True):
        half = torch.stack([size / ratios.sqrt(), size * ratios.sqrt()], -1) / 2  # (ratios, 2): width, height
        centres = torch.arange(max(h, w), device=device) * stride + stride / 2
        ys, xs = torch.meshgrid(centres[:h], centres[:w], indexing="ij")
        centre = torch.stack([xs, ys], -1).view(h, w, 1, 2)
        anchors.append(torch.cat([centre - half, centre + half], -1).view(-1, 4))
    return anchors


def match(candidates: Tensor, boxes: Tensor, present: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """IoU of every candidate (b or 1, n, 4) with every object (b, m, 4), -1 for padding objects (~present):
    (b, n, m); and each candidate's best IoU and the index of that object, (b, n) each."""
    iou = box_iou(candidates, boxes).where(present.unsqueeze(1), -1.0)
    best, index = iou.max(-1)
    return iou, best, index


def sample(positive: Tensor, negative: Tensor, count: int, fraction: float) -> tuple[Tensor, Tensor]:
    """BalancedPositiveNegativeSampler for each row of (b, n) candidates, without leaving the device: up to
    `count * fraction` random positives, then random negatives up to `count` in all. Returns the indices (b, count)
    of the sample, positives first, and which of them are drawn (all, unless a row lacks candidates)."""
    key = torch.rand(positive.shape, device=positive.device)
    pos_key, pos = key.masked_fill(~positive, -1).topk(min(int(count * fraction), positive.size(1)), -1)
    neg_key, neg = key.masked_fill(~negative, -1).topk(min(count, negative.size(1)), -1)
    room = count - (pos_key >= 0).sum(-1, keepdim=True)
    drawn = torch.cat([pos_key >= 0, (neg_key >= 0) & (torch.arange(neg.size(1), device=neg.device) < room)], 1)
    order = drawn.byte().argsort(dim=-1, descending=True, stable=True)[:, :count]
    return torch.cat([pos, neg], 1).gather(1, order), drawn.gather(1, order)


def gather_rows(values: Tensor, index: Tensor) -> Tensor:
    """values (b, n, ...) at index (b, k): (b, k, ...)."""
    return values[torch.arange(len(index), device=index.device).unsqueeze(1), index]


class Pyramid:
    """FPN maps P2-P5 as one (pixels, channels) table, made once per step, from which RoIAlign gathers.

    RoIAlign (the reference's ROIAlign, the original, not Detectron2's "aligned" variant) takes the bilinear
    interpolation at SAMPLING x SAMPLING points per output bin and averages them: each output value is a weighted
    sum of 4 * SAMPLING^2 feature-map pixels, so the whole operation is one `F.embedding_bag` over the table with
    per-sample weights, whose backward is the CUDA kernel's scatter-add. Each RoI is pooled from the level the
    reference's LevelMapper picks: floor(4 + log2(sqrt(area) / 224)), clamped to P2-P5."""

    def __init__(self, maps: Sequence[Tensor]) -> None:
        channels, device = maps[0].size(1), maps[0].device
        # A channels-last map is (n, h, w, c) in memory already: its permute and reshape are free.
        self.table = torch.cat([m.permute(0, 2, 3, 1).reshape(-1, channels) for m in maps])
        self.sizes = torch.tensor([m.shape[-2:] for m in maps], device=device)  # (levels, 2): h, w
        self.starts = torch.tensor([0, *accumulate(m[:, 0].numel() for m in maps[:-1])], device=device)

    def roi_align(self, rois: Tensor, image: Tensor, output: int) -> Tensor:
        """RoIs (r, 4) in image pixels, of images `image` (r,), to (r, channels, output, output), channels-last."""
        with torch.no_grad():
            side = ((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1])).clamp(min=0).sqrt()
            level = (torch.log2(side / 224 + 1e-6) + 2).floor().clamp(0, len(self.sizes) - 1).long()
            boxes = rois * (0.5 ** (level + 2)).unsqueeze(1)  # in the level's cells (stride 4 on P2)
            h, w = self.sizes[level].unbind(1)
            at = (torch.arange(output * SAMPLING, device=rois.device) + 0.5) / (SAMPLING * output)
            extent = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1)
            x0, x1, wx0, wx1 = _neighbours(boxes[:, :1] + at * extent[:, :1], w.unsqueeze(1))
            y0, y1, wy0, wy1 = _neighbours(boxes[:, 1:2] + at * extent[:, 1:], h.unsqueeze(1))
            # Per RoI, sample row, sample column and neighbour: the pixel's row in the table and its weight.
            rows = (self.starts[level] + image * h * w).view(-1, 1, 1, 1)
            rows = rows + (torch.stack([y0, y0, y1, y1], -1) * w.view(-1, 1, 1)).unsqueeze(2)
            rows = rows + torch.stack([x0, x1, x0, x1], -1).unsqueeze(1)
            weight = torch.stack([wy0, wy0, wy1, wy1], -1).unsqueeze(2)
            weight = weight * torch.stack([wx0, wx1, wx0, wx1], -1).unsqueeze(1)
            # One bag per output bin: its SAMPLING^2 samples' 4 neighbours, averaged.
            bins = (len(rois), output, SAMPLING, output, SAMPLING, 4)
            rows = rows.view(bins).transpose(2, 3).reshape(-1, 4 * SAMPLING**2)
            weight = weight.view(bins).transpose(2, 3).reshape(-1, 4 * SAMPLING**2) / SAMPLING**2
        pooled = F.embedding_bag(rows, self.table, per_sample_weights=weight.to(self.table.dtype), mode="sum")
        return pooled.view(len(rois), output, output, -1).permute(0, 3, 1, 2)


def _neighbours(at: Tensor, size: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The reference's bilinear_interpolate along one axis of `size` pixels: the two pixels around each coordinate
    and their weights; zero weights for coordinates more than a pixel outside the map."""
    inside = ((at >= -1) & (at <= size)).to(at.dtype)
    at = torch.minimum(at.clamp(min=0), size - 1)
    low = at.floor()
    frac = at - low
    return low.long(), torch.minimum(low + 1, size - 1).long(), (1 - frac) * inside, frac * inside


def rasterise(boxes: Tensor, shapes: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Which points lie inside objects, each a rectangle filling its box (shape 0) or the ellipse inscribed in it
    (shape 1): `boxes` (..., 4) and `shapes` (...), points on the grid of columns `x` (..., X) and rows `y`
    (..., Y); (..., Y, X) booleans."""
    left, top, right, bottom = (side[..., None, None] for side in boxes.unbind(-1))
    u = (2 * x.unsqueeze(-2) - left - right) / (right - left)  # -1 to 1 across the box
    v = (2 * y.unsqueeze(-1) - top - bottom) / (bottom - top)
    return torch.where(shapes[..., None, None] == 1, u**2 + v**2 <= 1, (u.abs() <= 1) & (v.abs() <= 1))


def grid(rois: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Columns and rows (r, size) of the centres of a size x size grid over each RoI (r, 4)."""
    at = (torch.arange(size, device=rois.device) + 0.5) / size
    extent = rois[:, 2:] - rois[:, :2]
    return rois[:, :1] + at * extent[:, :1], rois[:, 1:2] + at * extent[:, 1:]
