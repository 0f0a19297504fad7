"""Box geometry and COCO-style detection quality shared by the detectors (SSD, Mask R-CNN): IoU, NMS and mAP in
plain torch (no torchvision, no pycocotools), the synthetic scenes' non-overlapping objects, and how a detector is
served to LoadGen."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from .registry import Preset, Serving

#: COCO's IoU thresholds 0.50:0.05:0.95.
COCO_IOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


# --- Boxes: (..., 4) tensors, either "ltrb" (left, top, right, bottom) or "xywh" (centre x, centre y, width,
# height), in fractions of the image side.


def ltrb_to_xywh(boxes: Tensor) -> Tensor:
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], -1)


def xywh_to_ltrb(boxes: Tensor) -> Tensor:
    return torch.cat([boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], -1)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every ltrb box of `a` (..., n, 4) with every one of `b` (..., m, 4): (..., n, m)."""
    a, b = a.unsqueeze(-2), b.unsqueeze(-3)
    size = (torch.minimum(a[..., 2:], b[..., 2:]) - torch.maximum(a[..., :2], b[..., :2])).clamp(min=0)
    inter = size[..., 0] * size[..., 1]
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (area_a + area_b - inter)


def nms(boxes: Tensor, scores: Tensor, threshold: float) -> Tensor:
    """Greedy non-maximum suppression of each set of ltrb boxes (..., n, 4) with their scores (..., n), independently:
    the mask (..., n) of the boxes kept, visiting boxes by decreasing score and dropping those whose IoU with a kept
    one exceeds `threshold`.

    Without a loop over boxes: `keep` is the fixed point of keep[j] = no kept i before j overlaps j. Iterating that
    from all-kept settles one more box per round at least (the first box is always kept, and box j is settled once
    all boxes before it are), so it ends in at most n rounds, usually a few."""
    order = scores.argsort(-1, descending=True)
    ranked = boxes.gather(-2, order.unsqueeze(-1).expand(*order.shape, 4))
    overlaps = (box_iou(ranked, ranked) > threshold).triu(1)  # overlaps[i, j]: i comes first and suppresses j
    keep = torch.ones_like(scores, dtype=torch.bool)
    while True:
        new = ~(overlaps & keep.unsqueeze(-1)).any(-2)
        if torch.equal(new, keep):
            break
        keep = new
    return torch.empty_like(keep).scatter_(-1, order, keep)


Detections = tuple[Tensor, Tensor, Tensor]  #: ltrb boxes (k, 4), labels (k,), scores (k,) of one image


# --- COCO-style mean average precision (pycocotools' COCOeval for boxes, without area ranges or crowds).


def match_detections(boxes: Tensor, truths: Tensor, thresholds: Tensor) -> Tensor:
    """Which detections of one class in one image are true positives, per IoU threshold: (t, k) for detections `boxes`
    (k, 4) in decreasing score order and ground truths `truths` (m, 4). As COCOeval.evaluateImg, each detection in
    turn takes the unmatched ground truth it overlaps most, if that IoU reaches the threshold."""
    hits = torch.zeros(len(thresholds), len(boxes), dtype=torch.bool, device=boxes.device)
    if not len(boxes) or not len(truths):
        return hits
    iou = box_iou(boxes, truths)  # (k, m)
    taken = torch.zeros(len(thresholds), len(truths), dtype=torch.bool, device=boxes.device)
    rows = torch.arange(len(thresholds), device=boxes.device)
    for k in torch.nonzero(iou.amax(1) >= thresholds.min()).flatten().tolist():  # only those that can match
        candidates = iou[k].where(~taken & (iou[k] >= thresholds.unsqueeze(1)), -1.0)  # (t, m)
        best, truth = candidates.max(1)
        hit = best >= 0
        hits[:, k] = hit
        taken[rows[hit], truth[hit]] = True
    return hits


def average_precision(hits: Tensor, scores: Tensor, truths: int) -> Tensor:
    """COCO's 101-point interpolated AP per IoU threshold, (t,), from the true-positive flags (t, k) of a class's
    detections over all images, their scores (k,), and its number of ground-truth boxes."""
    order = scores.argsort(descending=True, stable=True)  # pycocotools: mergesort of -scores
    tp = hits[:, order].cumsum(1, dtype=torch.float64)
    fp = (~hits[:, order]).cumsum(1, dtype=torch.float64)
    recall = tp / truths
    precision = tp / (tp + fp).clamp(min=torch.finfo(torch.float64).eps)
    envelope = precision.flip(1).cummax(1).values.flip(1)  # the best precision at this recall or beyond
    points = torch.linspace(0, 1, 101, dtype=torch.float64, device=hits.device).expand(len(hits), -1).contiguous()
    at = torch.searchsorted(recall.contiguous(), points)  # first detection reaching each recall
    padded = torch.cat([envelope, envelope.new_zeros(len(hits), 1)], 1)  # recall never reached: precision 0
    return padded.gather(1, at).mean(1)


def mean_average_precision(
    detections: Sequence[Detections],
    truths: Sequence[tuple[Tensor, Tensor]],
    thresholds: Sequence[float] = COCO_IOUS,
    max_detections: int = 100,
) -> float:
    """COCO box mAP: the mean over classes that have ground truth and over IoU `thresholds` of the average precision,
    with at most `max_detections` detections per image and class (COCOeval's maxDets). `detections` and `truths`
    ((m, 4) ltrb boxes and (m,) labels) are per image. On the CPU: a few detections per image, matched one by one.
    """
    iou = torch.tensor(thresholds, dtype=torch.float32)
    hits: dict[int, list[Tensor]] = {}
    scores: dict[int, list[Tensor]] = {}
    counts: dict[int, int] = {}
    for image, truth in zip(detections, truths, strict=True):
        (boxes, labels, confidence), (truth_boxes, truth_labels) = (t.cpu() for t in image), (t.cpu() for t in truth)
        for c in torch.cat([labels, truth_labels]).unique().tolist():
            own = labels == c
            order = confidence[own].argsort(descending=True, stable=True)[:max_detections]
            counts[c] = counts.get(c, 0) + int((truth_labels == c).sum())
            hits.setdefault(c, []).append(match_detections(boxes[own][order], truth_boxes[truth_labels == c], iou))
            scores.setdefault(c, []).append(confidence[own][order])
    aps = [average_precision(torch.cat(hits[c], 1), torch.cat(scores[c]), n).mean() for c, n in counts.items() if n]
    return float(torch.stack(aps).mean()) if aps else 0.0


def random_objects(p: Preset, count: int, device: torch.device, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Up to p["objects"] non-overlapping boxes per image, ltrb on the pixel grid (count, objects, 4), sides between
    p["object_sizes"] of the image, and their labels (count, objects), 1.. for objects and 0 for the padding: each
    candidate that would overlap one already placed is dropped (the first never is)."""
    size, (low, high) = p["image_size"], p["object_sizes"]
    boxes = torch.zeros(count, p["objects"], 4, device=device)
    labels = torch.zeros(count, p["objects"], dtype=torch.long, device=device)
    for k in range(p["objects"]):
        wh = ((low + torch.rand(count, 2, generator=generator, device=device) * (high - low)) * size).round()
        lt = (torch.rand(count, 2, generator=generator, device=device) * (size - wh + 1)).floor()
        box = torch.cat([lt, lt + wh], 1) / size
        clear = ~((box_iou(box.unsqueeze(1), boxes[:, :k]).squeeze(1) > 0) & (labels[:, :k] > 0)).any(1)
        boxes[clear, k] = box[clear]
        label = torch.randint(1, p["num_classes"], (count,), generator=generator, device=device)
        labels[:, k] = torch.where(clear, label, 0)
    return boxes, labels


def ground_truths(targets: tuple[Tensor, Tensor]) -> list[tuple[Tensor, Tensor]]:
    """Per image, its objects' ltrb boxes (float) and labels, from padded targets: boxes (b, m, 4) and labels (b, m),
    0 for padding (how the synthetic held-out batches hold them, sample-major, so that serving can stack them)."""
    boxes, labels = targets
    return [(b[n > 0].float(), n[n > 0]) for b, n in zip(boxes, labels, strict=True)]


# --- Serving a detector: MLPerf's SSD accuracy log holds one [image, box, score, class] row per detection; a served
# sample's answer here is a fixed-size block of such rows.

#: The columns of an answer's rows.
ROW = ("left", "top", "right", "bottom", "score", "label")


def detection_rows(detections: Sequence[Detections], k: int) -> Tensor:
    """Each image's first `k` detections as a float32 block (images, k, 6) of [left, top, right, bottom, score,
    label] rows, padded with rows of score 0 and label -1."""
    device = detections[0][0].device if detections else None
    rows = torch.zeros(len(detections), k, len(ROW), device=device)
    rows[..., 5] = -1
    for image, (boxes, labels, scores) in zip(rows, detections, strict=True):
        n = min(k, len(scores))
        image[:n] = torch.cat([boxes[:n].float(), scores[:n, None].float(), labels[:n, None].float()], 1)
    return rows


def row_detections(rows: Tensor) -> list[Detections]:
    """The detections in blocks of rows (images, k, 6), the padding (label -1) left out."""
    detections = []
    for image in rows:
        real = image[image[:, 5] >= 0]
        detections.append((real[:, :4], real[:, 5].long(), real[:, 4]))
    return detections


class Detector(Protocol):
    """Post-processing: a model's outputs for a batch and its default boxes to at most `max_output` detections per
    image."""

    max_output: int

    def __call__(self, outputs: Any, defaults: Tensor) -> list[Detections]: ...


def _frozen(value: Any) -> Any:
    """A preset as a hashable key (a system file's options may hold lists)."""
    if isinstance(value, Mapping):
        return tuple(sorted((key, _frozen(v)) for key, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def detection_serving(defaults: Callable[[Preset], Tensor], detector: Detector) -> Serving:
    """A detector served to LoadGen: each answer is its image's detections, the `detector.max_output` rows of
    `detection_rows`, through `detector` with the preset's default boxes (`defaults(preset)`, built once per preset
    and device); the score is the COCO mAP@[.5:.95] of all answers against the held-out (boxes, labels), the same
    as the training metric on the same images."""
    cache: dict[tuple[Any, str], Tensor] = {}

    def answer(outputs: Any, p: Preset) -> Tensor:
        device = outputs[0].device
        key = (_frozen(p), str(device))
        if key not in cache:
            cache[key] = defaults(p).to(device)
        return detection_rows(detector(outputs, cache[key]), detector.max_output)

    def score(answers: np.ndarray, targets: tuple[Tensor, Tensor]) -> float:
        return mean_average_precision(row_detections(torch.tensor(answers)), ground_truths(targets))

    return Serving("COCO mAP@[.5:.95]", answer=answer, score=score, dtype=torch.float32)
