"""The mask_rcnn workload (MLPerf v0.6 Mask R-CNN R-50-FPN): registration, throughput unit, learning in fp32 and
bf16, the real preset's data shapes and parameter count, and the box coder, anchors, sampling, RoIAlign, frozen
BatchNorm, masks and metric on hand-made cases."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_learns, assert_losses_fall

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.training import Supervised
from pytest_mlperf.workloads import mask_rcnn
from pytest_mlperf.workloads.detection import box_iou, nms
from pytest_mlperf.workloads.mask_rcnn import boxes as geometry
from pytest_mlperf.workloads.mask_rcnn.model import Backbone, FrozenBatchNorm2d, MaskRCNN, calibrate
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
BATCH = 8
WORKLOAD = get("mask_rcnn")
REAL = WORKLOAD.presets["real"]
CPU_PRESET = WORKLOAD.presets["cpu"]


def build(precision: str = "fp32", batch: int = BATCH) -> Supervised:
    torch.manual_seed(0)  # the samplers draw from the global generator
    return WORKLOAD.build(Setup(CPU_PRESET, batch, CPU, resolve(precision, CPU)))


def boxes(*rows: tuple[float, float, float, float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_registration() -> None:
    assert (WORKLOAD.name, WORKLOAD.family, WORKLOAD.task, WORKLOAD.unit) == (
        "mask_rcnn",
        "maskrcnn",
        "training",
        "img/s",
    )
    assert WORKLOAD.quality.higher_is_better
    assert WORKLOAD.quality.real_target == 0.377  # MLPerf v0.6: COCO box mAP (and mask mAP 0.339)
    assert "0.339" in WORKLOAD.quality.metric


def test_items_per_step_counts_images() -> None:
    assert build(batch=2).items_per_step == 2


def test_learns_in_fp32() -> None:
    trainer = build()
    inputs = trainer.batches[0][0]
    with torch.no_grad():
        before = trainer.model(*inputs)
    assert set(before) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
    assert_learns(trainer, WORKLOAD.quality)
    with torch.no_grad():
        after = trainer.model(*inputs)
    # The metric sees the box head's classes; the RPN's objectness and the masks are learnt as well. (The box
    # regression losses start near 0, offsets of N(0, 0.001) weights on few foreground RoIs, and grow with them.)
    for name in ("loss_objectness", "loss_classifier", "loss_mask"):
        assert float(after[name]) < float(before[name]), name


def test_bf16_losses_finite_and_falling() -> None:
    # Batch 2 and a few steps: bfloat16 convolutions take a slow path on CPUs without AVX-512 bf16.
    trainer = build("bf16", batch=2)
    assert_losses_fall(trainer, 6, 2)
    assert 0.0 <= trainer.evaluate() <= 1.0


def test_real_preset_data() -> None:
    # 800x1333 images padded to 800x1344 (multiples of 32), as the reference's batches.
    ((images, object_boxes, labels, shapes), _) = mask_rcnn.scene_batches(REAL, 1, 1, CPU)[0]
    assert images.shape == (1, 3, 800, 1344)
    assert (images[..., 1333:] == 0).all()
    present = labels > 0
    assert present.any() and labels.max() < 81 and set(shapes.unique().tolist()) <= {0, 1}
    kept = object_boxes[present]
    assert (kept[:, 2] <= 1333).all() and (kept[:, 3] <= 800).all() and (kept[:, 2:] > kept[:, :2]).all()


def test_real_model_parameters() -> None:
    # maskrcnn-benchmark's R-50-FPN Mask R-CNN with 81 classes: backbone 23,454,912, FPN 3,344,384, RPN 593,935,
    # box head 14,310,805, mask head 2,643,537; with 91 (COCO's category ids) torchvision's published num_params of
    # maskrcnn_resnet50_fpn.
    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    model = MaskRCNN(REAL)
    assert count(model) == 44_347_573
    assert [count(m) for m in (model.backbone, model.fpn, model.rpn, model.box_head, model.mask_head)] == [
        23_454_912,
        3_344_384,
        593_935,
        14_310_805,
        2_643_537,
    ]
    assert count(MaskRCNN({**REAL, "num_classes": 91})) == 44_401_393


def test_backbone_frozen_batchnorm_and_strides() -> None:
    backbone = Backbone(width=8)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in backbone.modules())
    assert not any(p.requires_grad for p in (*backbone.stem.parameters(), *backbone.stages[0].parameters()))
    assert all(p.requires_grad for stage in backbone.stages[1:] for p in stage.parameters())
    first = backbone.stages[1][0]  # conv3_x's downsampling block: the stride in its 1x1 (STRIDE_IN_1X1)
    assert (first.conv1.stride, first.conv2.stride) == ((2, 2), (1, 1))
    x = torch.randn(2, 3, 64, 64) * 3 + 1
    assert [m.shape[-1] for m in backbone(x)] == [16, 8, 4, 2]
    calibrate(backbone, x)
    # Each frozen BatchNorm now normalises what it saw: the stem's output has zero mean and unit variance.
    stem_bn = backbone.stem[1]
    assert isinstance(stem_bn, FrozenBatchNorm2d)
    out = stem_bn(backbone.stem[0](x))
    assert out.mean((0, 2, 3)).abs().max() < 1e-4 and (out.var((0, 2, 3)) - 1).abs().max() < 1e-2


def test_encode_decode_round_trip_and_clip() -> None:
    anchors = boxes((0, 0, 10, 20), (5, 5, 15, 15))
    targets = boxes((1, 2, 11, 12), (0, 0, 30, 5))
    for weights in ((1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)):
        offsets = geometry.encode(targets, anchors, weights)
        assert torch.allclose(geometry.decode(offsets, anchors, weights), targets, atol=1e-5)
    # Hand case: a box shifted by half its anchor's width and twice as tall.
    offsets = geometry.encode(boxes((5, -10, 15, 30)), boxes((0, 0, 10, 20)), (10.0, 10.0, 5.0, 5.0))
    assert torch.allclose(offsets, torch.tensor([[5.0, 0.0, 0.0, 5 * math.log(2)]]))
    # Huge offsets are clipped to a 1000/16 scale.
    wide = geometry.decode(torch.tensor([[0.0, 0.0, 100.0, 0.0]]), boxes((0, 0, 16, 16)), (1.0, 1.0, 1.0, 1.0))
    assert torch.allclose(wide[0, 2] - wide[0, 0], torch.tensor(1000.0))
    clipped = geometry.clip(boxes((-5, -5, 70, 30), (float("nan"), 0, 1, 1)), height=20, width=64)
    assert clipped.tolist() == [[0, 0, 64, 20], [0, 0, 1, 1]]


def test_iou_and_nms_in_pixels() -> None:
    a = boxes((0, 0, 10, 10))
    b = boxes((5, 0, 15, 10), (20, 20, 30, 30), (0, 0, 10, 10))
    assert torch.allclose(box_iou(a, b), torch.tensor([[50 / 150, 0.0, 1.0]]))
    candidates = boxes((0, 0, 10, 10), (1, 0, 11, 10), (20, 20, 30, 30), (0, 1, 10, 11))
    keep = nms(candidates, torch.tensor([0.9, 0.8, 0.7, 0.95]), 0.7)
    assert keep.tolist() == [False, True, True, True]  # box 3 suppresses 0 (IoU 0.82); 1 and 3 overlap 0.68


def test_anchors() -> None:
    levels = geometry.grid_anchors((32, 64), (4, 8), [(2, 3), (1, 1)], CPU)
    assert [len(a) for a in levels] == [2 * 3 * 3, 3]
    first = levels[0].view(2, 3, 3, 4)
    size = first[..., 2:] - first[..., :2]
    assert torch.allclose(size.prod(-1), torch.tensor(32.0**2))  # every ratio keeps the area
    assert torch.allclose(size[0, 0, :, 1] / size[0, 0, :, 0], torch.tensor([0.5, 1.0, 2.0]))  # height / width
    centres = (first[..., :2] + first[..., 2:]) / 2
    assert torch.allclose(centres[1, 2, 0], torch.tensor([2 * 4 + 2.0, 1 * 4 + 2.0]))  # (x, y) of row 1, column 2
    assert torch.allclose(levels[1][1], torch.tensor([-28.0, -28.0, 36.0, 36.0]))


def test_match_and_sample() -> None:
    candidates = boxes((0, 0, 10, 10), (0, 0, 10, 9), (20, 20, 30, 30), (40, 40, 50, 50)).unsqueeze(0)
    truths = boxes((0, 0, 10, 10), (0, 0, 0, 0)).unsqueeze(0)
    iou, best, index = geometry.match(candidates, truths, torch.tensor([[True, False]]))
    assert iou[0, :, 1].eq(-1).all()  # padding objects never match
    assert torch.allclose(best, torch.tensor([[1.0, 0.9, 0.0, 0.0]])) and index.eq(0).all()

    torch.manual_seed(0)
    positive = torch.zeros(3, 100, dtype=torch.bool)
    positive[0, :40] = True  # more than the quarter allowed
    positive[1, :3] = True  # fewer: negatives fill the sample
    negative = ~positive
    negative[2, 10:] = False  # too few candidates: part of the sample is not drawn
    index, drawn = geometry.sample(positive, negative, 16, 0.25)
    assert index.shape == drawn.shape == (3, 16)
    picked = positive.gather(1, index) & drawn
    assert picked.sum(1).tolist() == [4, 3, 0] and drawn.sum(1).tolist() == [16, 16, 10]
    assert all(len(set(row[d].tolist())) == int(d.sum()) for row, d in zip(index, drawn, strict=True))  # none twice
    assert picked[:, :4].sum() == 7 and not picked[1, 3:].any()  # positives first
    assert (negative.gather(1, index) | positive.gather(1, index))[drawn].all()


def reference_roi_align(feature: torch.Tensor, roi: torch.Tensor, scale: float, output: int) -> torch.Tensor:
    """maskrcnn-benchmark's ROIAlign_forward_cpu for one RoI on one (c, h, w) map, loop by loop."""
    c, h, w = feature.shape
    x1, y1, x2, y2 = (float(v) * scale for v in roi)
    bin_w, bin_h = max(x2 - x1, 1.0) / output, max(y2 - y1, 1.0) / output
    out = torch.zeros(c, output, output, dtype=torch.float64)
    for ph in range(output):
        for pw in range(output):
            for iy in range(2):
                for ix in range(2):
                    y = y1 + ph * bin_h + (iy + 0.5) * bin_h / 2
                    x = x1 + pw * bin_w + (ix + 0.5) * bin_w / 2
                    if y < -1 or y > h or x < -1 or x > w:
                        continue
                    y, x = max(y, 0.0), max(x, 0.0)
                    y0, x0 = int(y), int(x)
                    y0, y1_, y = (h - 1, h - 1, float(h - 1)) if y0 >= h - 1 else (y0, y0 + 1, y)
                    x0, x1_, x = (w - 1, w - 1, float(w - 1)) if x0 >= w - 1 else (x0, x0 + 1, x)
                    ly, lx = y - y0, x - x0
                    value = (
                        (1 - ly) * (1 - lx) * feature[:, y0, x0]
                        + (1 - ly) * lx * feature[:, y0, x1_]
                        + ly * (1 - lx) * feature[:, y1_, x0]
                        + ly * lx * feature[:, y1_, x1_]
                    )
                    out[:, ph, pw] += value.double() / 4
    return out


def test_roi_align_against_the_reference_loops_and_levels() -> None:
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(2, 3, 64 // 2**k, 64 // 2**k, generator=g) for k in range(4)]  # P2-P5 of 256x256 images
    rois = boxes((10, 20, 50, 40), (-3, 100, 60, 180), (0, 0, 256, 256), (200, 230, 262, 300), (5, 5, 5.5, 5.5))
    image = torch.tensor([0, 1, 1, 0, 1])
    # LevelMapper: floor(4 + log2(sqrt(area) / 224)) on P2-P5, i.e. P2, P2, P4, P2, P2 here; a 224-pixel box on P4.
    levels = [2, 2, 4, 2, 2]
    pooled = geometry.Pyramid(maps).roi_align(rois, image, 7)
    assert pooled.shape == (5, 3, 7, 7)
    for k in range(len(rois)):
        level = levels[k] - 2
        expected = reference_roi_align(maps[level][image[k]], rois[k], 0.5 ** levels[k], 7)
        assert torch.allclose(pooled[k].double(), expected, atol=1e-5), k
    for side, level in ((112, 3), (223, 3), (224, 4), (448, 5), (2000, 5)):
        one = geometry.Pyramid(maps).roi_align(boxes((0, 0, side, side)), torch.tensor([0]), 2)
        expected = reference_roi_align(maps[level - 2][0], boxes((0, 0, side, side))[0], 0.5**level, 2)
        assert torch.allclose(one[0].double(), expected, atol=1e-5), side


def test_roi_align_gradient_is_the_scatter_of_its_weights() -> None:
    feature = torch.zeros(1, 1, 8, 8, requires_grad=True)
    pooled = geometry.Pyramid([feature]).roi_align(boxes((4, 4, 12, 12)), torch.tensor([0]), 1)
    pooled.sum().backward()
    # One bin over cells 1-3 of P2: samples at 1.5 and 2.5 each way, each spread over two pixels per axis.
    expected = torch.zeros(8, 8)
    expected[1:4, 1:4] = torch.tensor([0.25, 0.5, 0.25]).outer(torch.tensor([0.25, 0.5, 0.25]))
    assert torch.allclose(feature.grad[0, 0], expected)


def test_rasterise_rectangles_and_ellipses() -> None:
    box = boxes((0, 0, 4, 4))
    centres = torch.arange(4) + 0.5, torch.arange(4) + 0.5
    assert geometry.rasterise(box, torch.tensor([0]), *centres).all()
    ellipse = geometry.rasterise(box, torch.tensor([1]), *centres)[0]
    corners = torch.zeros(4, 4, dtype=torch.bool)
    corners[0::3, 0::3] = True
    assert torch.equal(ellipse, ~corners)  # pixel centres (0.5, 0.5) and the like lie outside the inscribed circle
    # A mask target on the object's own box is its shape on a 28x28 grid: about pi/4 of it for an ellipse.
    columns, rows = geometry.grid(box, 28)
    area = geometry.rasterise(box, torch.tensor([1]), columns, rows).float().mean()
    assert abs(float(area) - math.pi / 4) < 0.02


def test_scene_pixels_follow_the_objects() -> None:
    preset = {**CPU_PRESET, "noise": 0.0}
    ((images, object_boxes, labels, shapes), _) = mask_rcnn.scene_batches(preset, 4, 1, CPU)[0]
    columns, rows = torch.arange(64) + 0.5, torch.arange(64) + 0.5
    inside = geometry.rasterise(object_boxes, shapes, columns, rows) & (labels > 0)[..., None, None]
    covered = inside.any(1)
    assert (images.abs().sum(1)[~covered] == 0).all()  # the background is the (here zero) noise
    colour_norms = images.norm(dim=1)[covered]
    assert torch.allclose(colour_norms, torch.full_like(colour_norms, 2.0), atol=1e-5)  # a class colour of norm 2


class FixedClassifier(torch.nn.Module):
    def __init__(self, predictions: list[int]) -> None:
        super().__init__()
        self.predictions = torch.tensor(predictions)

    def classify(self, images: torch.Tensor, object_boxes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(self.predictions, 5).float()


def test_classification_accuracy_counts_present_objects() -> None:
    labels = torch.tensor([[1, 0, 3], [2, 2, 0]])
    batch = ((torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 4), labels, torch.zeros(2, 3)), None)
    assert mask_rcnn.classification_accuracy(FixedClassifier([1, 3, 2, 0]), [batch]) == pytest.approx(3 / 4)
