"""The ssd workload (MLPerf v0.6 SSD300 with a ResNet-34 backbone): registration, throughput unit, learning in fp32 and
bf16, the real and inference presets' default boxes, shapes and parameter count, the box utilities, NMS, loss and
COCO-style mAP on hand-made cases, and the detection serving (its rows, and its score equal to the training metric)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_losses_fall, learned_fixtures, served_held_out

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.quality import QualityResult
from pytest_mlperf.run.training import Supervised
from pytest_mlperf.workloads import detection, ssd
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
BATCH = 8
WORKLOAD = get("ssd")
REAL = WORKLOAD.presets["real"]
CPU_PRESET = WORKLOAD.presets["cpu"]


def build(precision: str = "fp32", batch: int = BATCH) -> Supervised:
    return WORKLOAD.build(Setup(CPU_PRESET, batch, CPU, resolve(precision, CPU)))


def boxes(*rows: tuple[float, float, float, float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_registration() -> None:
    assert (WORKLOAD.name, WORKLOAD.family, WORKLOAD.task, WORKLOAD.unit) == ("ssd", "ssd", "training", "img/s")
    assert WORKLOAD.quality.higher_is_better
    assert WORKLOAD.quality.real_target == 0.23  # MLPerf v0.6: COCO mAP@[.5:.95]


def test_items_per_step_counts_images() -> None:
    assert build(batch=4).items_per_step == 4


learned, trained = learned_fixtures(build, WORKLOAD.quality)


def test_learns_in_fp32(learned: tuple[Supervised, QualityResult]) -> None:
    result = learned[1]  # as it reached the target: a mAP on few held-out images dips below it again and back
    assert result.reached and result.steps <= WORKLOAD.quality.max_steps and WORKLOAD.quality.reached(result.value)


def test_serving_scores_the_trained_model_as_its_metric(trained: Supervised) -> None:
    # LoadGen's path: the held-out images answered through Answerer, the answers scored against the stacked targets.
    serving = WORKLOAD.serving
    assert serving is not None and serving.dtype == torch.float32
    answers, targets, metric = served_held_out(trained, WORKLOAD, CPU_PRESET)
    assert answers.shape == (len(targets[0]), 200, 6) and answers.dtype == "float32"
    padding = answers[..., 5] == -1
    assert padding.any() and (answers[..., 4][padding] == 0).all() and (answers[..., 4][~padding] > 0.05).all()
    assert serving.score(answers, targets) == pytest.approx(metric, rel=1e-6)


def test_bf16_losses_finite_and_falling() -> None:
    # Batch 4 and a few steps: bfloat16 convolutions take a slow path on CPUs without AVX-512 bf16.
    trainer = build("bf16", batch=4)
    assert_losses_fall(trainer, 8, 3)
    assert 0.0 <= trainer.evaluate() <= 1.0


def test_real_preset_default_boxes() -> None:
    sizes = ssd.feature_sizes(REAL["image_size"], REAL["extras"])
    assert sizes == [38, 19, 10, 5, 3, 1]
    defaults = ssd.preset_defaults(REAL)
    assert defaults.shape == (8732, 4)  # 38^2*4 + 19^2*6 + 10^2*6 + 5^2*6 + 3^2*4 + 1*4
    # utils.DefaultBoxes: the first box is map 0's scale-21 square at cell (0, 0) of step 8; the 1444th starts its
    # sqrt(21*45) squares; the last is map 5's 261/sqrt(2) x 261*sqrt(2) box, clamped to the image.
    torch.testing.assert_close(defaults[0], torch.tensor([4 / 300, 4 / 300, 21 / 300, 21 / 300]))
    side = math.sqrt(21 * 45) / 300
    torch.testing.assert_close(defaults[38 * 38], torch.tensor([4 / 300, 4 / 300, side, side]))
    torch.testing.assert_close(defaults[-1], torch.tensor([0.5, 0.5, 261 / 300 / math.sqrt(2), 1.0]))
    assert defaults.min() >= 0 and defaults.max() <= 1


def test_inference_preset_is_mlperf_inference_ssd_resnet34_1200() -> None:
    # mlcommons/inference ssd_r34.py at strides [3, 3, 2, 2, 2, 2]: backbone 150x150 at 1200 px, extra maps of 75, 38,
    # 19, 9 and 7, every head at stride 3; dboxes_R34_coco's cells, steps and scales; the ONNX model's 15130 boxes.
    p = WORKLOAD.presets["inference"]
    assert ssd.feature_sizes(1200, p["extras"]) == [150, 75, 38, 19, 9, 7]
    assert ssd.feature_sizes(1200, p["extras"], p["head_stride"]) == [50, 25, 13, 7, 3, 3]
    assert list(p["steps"]) == [int(1200 / cells) for cells in (50, 25, 13, 7, 3, 3)]
    assert list(p["scales"]) == [int(s * 1200 / 300) for s in REAL["scales"]]
    defaults = ssd.preset_defaults(p)
    assert defaults.shape == (15130, 4)  # 50^2*4 + 25^2*6 + 13^2*6 + 7^2*6 + 3^2*4 + 3^2*4
    torch.testing.assert_close(defaults[0], torch.tensor([12 / 1200, 12 / 1200, 84 / 1200, 84 / 1200]))
    with torch.device("meta"):
        model = ssd.model(p)
        offsets, logits = model(torch.empty(1, 3, 1200, 1200))
    assert offsets.shape == (1, 4, 15130) and logits.shape == (1, 81, 15130)
    assert sum(param.numel() for param in model.parameters()) == 19_972_534  # strides change no parameter


def test_real_model_shapes_and_parameters() -> None:
    # On the meta device: shapes and parameter counts without 12 GMACs of CPU work.
    with torch.device("meta"):
        model = ssd.model(REAL)
        offsets, logits = model(torch.empty(2, 3, 300, 300))
        features = model.backbone(torch.empty(1, 3, 300, 300))
    assert features.shape == (1, 256, 38, 38)  # conv4_x without its stride: conv3_x's 38x38
    assert offsets.shape == (2, 4, 8732) and logits.shape == (2, 81, 8732)

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    # ResNet-34 up to conv4_x, the five extra blocks, the box and class heads of the reference's layers.
    assert count(model.backbone) == 8_170_304
    assert count(model.extras) == 3_574_400
    assert (count(model.loc), count(model.conf)) == (387_192, 7_840_638)
    assert count(model) == 19_972_534
    assert count(model) == pytest.approx(20.058e6, rel=0.01)  # OpenVINO's figure for the same layers at 1200 px


def test_box_iou_and_conversions() -> None:
    a = boxes((0, 0, 2, 2), (0, 0, 1, 1))
    b = boxes((0, 0, 2, 2), (1, 0, 3, 2), (5, 5, 6, 6))
    torch.testing.assert_close(detection.box_iou(a, b), torch.tensor([[1, 1 / 3, 0], [1 / 4, 0, 0]]))
    xywh = detection.ltrb_to_xywh(b)
    torch.testing.assert_close(xywh[1], torch.tensor([2.0, 1.0, 2.0, 2.0]))
    torch.testing.assert_close(detection.xywh_to_ltrb(xywh), b)


def test_encode_decode_round_trip() -> None:
    defaults = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.2, 0.1, 0.1]])
    assert ssd.encode(defaults, defaults).abs().max() == 0  # a default box is its own zero offset
    target = torch.tensor([[0.52, 0.45, 0.3, 0.2], [0.1, 0.25, 0.05, 0.2]])
    offsets = ssd.encode(target, defaults)
    # Variances 0.1 and 0.2: centre (0.52 - 0.5) / 0.2 / 0.1 = 1 and (0.45 - 0.5) / 0.4 / 0.1, width
    # log(0.3 / 0.2) / 0.2.
    torch.testing.assert_close(offsets[0, :3], torch.tensor([1.0, -1.25, math.log(1.5) / 0.2]))
    torch.testing.assert_close(ssd.decode(offsets, defaults), detection.xywh_to_ltrb(target))


def test_match_takes_overlaps_above_half_and_each_truths_best_box() -> None:
    defaults = detection.ltrb_to_xywh(boxes((0, 0, 0.5, 0.5), (0.5, 0, 1, 0.5), (0, 0.5, 0.5, 1), (0.4, 0.4, 0.6, 0.6)))
    truths = boxes((0, 0, 0.5, 0.45), (0.55, 0.55, 0.65, 0.65), (0, 0, 0, 0)).unsqueeze(0)
    labels = torch.tensor([[3, 2, 0]])  # the third is padding
    matched, matched_labels = ssd.match(truths, labels, defaults)
    # Box 0 overlaps truth 0 by 0.9; truth 1 overlaps box 3 by 0.04 only but claims it as its best; the others are
    # background and keep their default box.
    assert matched_labels.tolist() == [[3, 0, 0, 2]]
    torch.testing.assert_close(matched[0, 0], detection.ltrb_to_xywh(truths[0, 0]))
    torch.testing.assert_close(matched[0, 3], detection.ltrb_to_xywh(truths[0, 1]))
    torch.testing.assert_close(matched[0, 1:3], defaults[1:3])


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """The textbook loop, for comparison."""
    keep = torch.zeros(len(scores), dtype=torch.bool)
    for i in scores.argsort(descending=True).tolist():
        if not keep.any() or detection.box_iou(boxes[i : i + 1], boxes[keep]).max() <= threshold:
            keep[i] = True
    return keep


def test_nms_hand_case_and_against_the_greedy_loop() -> None:
    hand = boxes((0, 0, 1, 1), (0, 0.1, 1, 1.1), (0, 0.2, 1, 1.2), (2, 2, 3, 3))
    scores = torch.tensor([0.9, 0.8, 0.7, 0.1])
    # IoU 0.82 between boxes 0 and 1 and between 1 and 2, 0.67 between 0 and 2; box 3 overlaps none.
    assert detection.nms(hand, scores, 0.5).tolist() == [True, False, False, True]
    # At 0.75, box 1 goes (0.82 with box 0), and box 2 stays: only a kept box suppresses, not box 1.
    assert detection.nms(hand, scores, 0.75).tolist() == [True, False, True, True]
    g = torch.Generator().manual_seed(0)
    corner = torch.rand(3, 60, 2, generator=g)
    random = torch.cat([corner, corner + 0.1 + torch.rand(3, 60, 2, generator=g) * 0.3], -1)
    scores = torch.rand(3, 60, generator=g)
    keep = detection.nms(random, scores, 0.3)
    for b, s, k in zip(random, scores, keep, strict=True):
        assert torch.equal(k, greedy_nms(b, s, 0.3))


def test_detect_decodes_the_confident_box() -> None:
    defaults = detection.ltrb_to_xywh(boxes((0, 0, 0.5, 0.5), (0.5, 0.5, 1, 1), (0.1, 0.1, 0.5, 0.5)))
    offsets = torch.zeros(1, 4, 3)
    offsets[0, 0, 1] = 1.0  # shift box 1 right by 0.1 * its width
    logits = torch.full((1, 3, 3), -10.0)
    logits[0, 0] = 10.0  # background everywhere...
    logits[0, :, 1] = torch.tensor([-10.0, -10.0, 10.0])  # ...but box 1, class 2
    logits[0, :, 2] = torch.tensor([0.0, -10.0, 1.0])  # box 2: class 2 at e / (1 + e), overlapping nothing kept
    found, labels, scores = ssd.detect(offsets, logits, defaults)[0]
    assert labels.tolist() == [2, 2]
    torch.testing.assert_close(found[0], torch.tensor([0.55, 0.5, 1.05, 1.0]))
    assert scores[0] > 0.99 and scores[1] == pytest.approx(math.e / (1 + math.e), rel=1e-4)


def test_detection_serving_rows_cache_and_score() -> None:
    # The detect hand case served: two detections of class 2 as rows, then a padding row; the default boxes are
    # built once per preset (equal presets in other dicts share them) and device.
    defaults = detection.ltrb_to_xywh(boxes((0, 0, 0.5, 0.5), (0.5, 0.5, 1, 1), (0.1, 0.1, 0.5, 0.5)))
    built = []
    serving = detection.detection_serving(lambda p: built.append(p) or defaults, ssd.PostProcessing(max_output=3))
    assert serving.dtype == torch.float32
    offsets = torch.zeros(1, 4, 3)
    offsets[0, 0, 1] = 1.0
    logits = torch.full((1, 3, 3), -10.0)
    logits[0, 0] = 10.0
    logits[0, :, 1] = torch.tensor([-10.0, -10.0, 10.0])
    logits[0, :, 2] = torch.tensor([0.0, -10.0, 1.0])
    rows = serving.answer((offsets, logits), {"size": 3})
    second = math.e / (1 + math.e)
    expected = torch.tensor(
        [[0.55, 0.5, 1.05, 1.0, 1.0, 2.0], [0.1, 0.1, 0.5, 0.5, second, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0, -1.0]]
    )
    torch.testing.assert_close(rows, expected.unsqueeze(0), atol=1e-4, rtol=0)
    serving.answer((offsets, logits), {"size": 3})
    serving.answer((offsets, logits), {"size": 4})
    assert built == [{"size": 3}, {"size": 4}]
    # Scored against padded targets (boxes (1, 2, 4), labels (1, 2), 0 = padding): the best detection is the truth
    # (AP 1); with the other box as the truth, a false positive outranks it (precision 1/2 at full recall).
    answers = rows.numpy()
    first = (boxes((0.55, 0.5, 1.05, 1.0), (0, 0, 0, 0)).unsqueeze(0), torch.tensor([[2, 0]]))
    assert serving.score(answers, first) == pytest.approx(1.0)
    other = (boxes((0.1, 0.1, 0.5, 0.5), (0, 0, 0, 0)).unsqueeze(0), torch.tensor([[2, 0]]))
    assert serving.score(answers, other) == pytest.approx(0.5)


def test_multibox_loss_on_a_hand_case() -> None:
    defaults = detection.ltrb_to_xywh(boxes(*((i / 6, 0, (i + 1) / 6, 1) for i in range(6))))
    target_boxes = defaults.clone().unsqueeze(0)
    target_boxes[0, 2, 0] += 0.01  # the positive's centre is off by 0.01: offset 0.01 / (1/6) / 0.1 = 0.6
    labels = torch.tensor([[0, 0, 1, 0, 0, 0]])
    logits = torch.zeros(1, 2, 6)
    logits[0, 1] = torch.tensor([3.0, -1.0, 0.0, 2.0, 1.0, -2.0])  # negatives ranked 0, 3, 4, then 1, 5
    loss = ssd.MultiBoxLoss(defaults)((torch.zeros(1, 4, 6), logits), (target_boxes, labels))
    ce = F.cross_entropy(logits[0].t(), labels[0], reduction="none")
    expected = 0.5 * 0.6**2 + ce[2] + ce[0] + ce[3] + ce[4]  # one positive: 3 hardest negatives, divided by 1
    torch.testing.assert_close(loss, expected)


def test_average_precision_101_points() -> None:
    # Two truths; detections TP (0.9), FP (0.8), TP (0.7): recall 0.5, 0.5, 1 at precision 1, 1/2, 2/3. The
    # interpolated precision is 1 up to recall 0.5 (51 of 101 points) and 2/3 beyond (50 points).
    hits = torch.tensor([[True, False, True]])
    ap = detection.average_precision(hits, torch.tensor([0.8, 0.9, 0.7])[[1, 0, 2]], 2)
    assert float(ap) == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert float(detection.average_precision(hits[:, :1], torch.tensor([0.9]), 2)) == pytest.approx(51 / 101)


def test_mean_average_precision_matching() -> None:
    truths = [(boxes((0, 0, 1, 1), (2, 2, 3, 3)), torch.tensor([1, 2]))]
    perfect = [(truths[0][0], truths[0][1], torch.tensor([0.9, 0.8]))]
    assert detection.mean_average_precision(perfect, truths) == pytest.approx(1.0)
    # Class 1 found at IoU 0.64 (right at 0.5, 0.55, 0.6 of COCO's ten thresholds); a duplicate is a false positive
    # at a lower score; class 2 missed (its detection has the wrong class 3, which has no truth and is not counted).
    shifted = boxes((0.0, 0.0, 1.0, 0.64), (0.0, 0.0, 1.0, 0.6), (2, 2, 3, 3))
    found = [(shifted, torch.tensor([1, 1, 3]), torch.tensor([0.9, 0.5, 0.8]))]
    assert detection.mean_average_precision(found, truths, (0.5,)) == pytest.approx(0.5)
    assert detection.mean_average_precision(found, truths) == pytest.approx((3 / 10) / 2)
    # Only the best-scoring detection per image and class counts with max_detections=1: the same here.
    assert detection.mean_average_precision(found, truths, (0.5,), max_detections=1) == pytest.approx(0.5)
    nothing = [(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), torch.zeros(0))]
    assert detection.mean_average_precision(nothing, truths) == 0.0


def test_rectangle_batches() -> None:
    p = CPU_PRESET
    (images, (rects, labels)), *_ = ssd.rectangle_batches(p, 32, 1, CPU)
    assert images.shape == (32, 3, 64, 64) and rects.shape == (32, p["objects"], 4)
    present = labels > 0
    assert present[:, 0].all() and labels.max() < p["num_classes"]  # the first object is always placed
    sides = (rects[..., 2:] - rects[..., :2])[present]
    assert sides.min() >= p["object_sizes"][0] - 1 / 64 and sides.max() <= p["object_sizes"][1] + 1 / 64
    for image_rects, image_present in zip(rects, present, strict=True):
        kept = image_rects[image_present]
        overlap = detection.box_iou(kept, kept) - torch.eye(len(kept))
        assert overlap.max() <= 0  # no two objects overlap
    # Inside a box, the pixels are its class's texture plus noise: their mean is the texture's, far from the
    # background's 0.
    left, top, right, bottom = (int(v * 64) for v in rects[0, 0])
    textures = ssd.class_textures(p["num_classes"], 64, CPU, torch.Generator().manual_seed(0))
    inside = (images[0] - textures[labels[0, 0]])[:, top:bottom, left:right]
    assert inside.mean().abs() < 0.1 and inside.std() == pytest.approx(p["noise"], rel=0.2)
