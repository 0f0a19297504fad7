"""MLPerf training v0.6 single-stage detector: SSD300 with a ResNet-34 backbone on COCO (Liu et al. 2016, "SSD:
Single Shot MultiBox Detector"), as mlcommons/training's single_stage_detector/ssd reference and NVIDIA's v0.6
submission (training_results_v0.6/NVIDIA/benchmarks/ssd, the container Lambda's MLPerf runs used) implement it.

- Backbone (base_model.ResNet34): torchvision's ResNet-34 up to conv4_x (layer3) with the stride of conv4_x taken
  out (every block's first 3x3 convolution and 1x1 projection at stride 1), so a 300x300 image gives a 256-channel
  38x38 map. Built here from `resnet.ResNet` with `convnet.BasicBlock` (3, 4, 6 blocks) and those strides changed
  after construction; the stem and blocks are reused, the classifier dropped.
- Extra feature layers (ssd300.SSD300._build_additional_features): five blocks of a 1x1 and a 3x3 convolution with
  bias and ReLU, 256->256->512 (stride 2), 512->256->512 (stride 2), 512->128->256 (stride 2), 256->128->256 and
  256->128->256 (3x3 without padding): maps of 38, 19, 10, 5, 3 and 1 cells.
- Heads: a 3x3 convolution per map for box offsets (4 per default box) and one for class scores (81 per default
  box: 80 COCO classes and the background), 4, 6, 6, 6, 4, 4 default boxes per cell: 8732 in all. Extra layers and
  heads Xavier-uniform initialised.
- Default boxes (utils.dboxes300_coco): steps 8, 16, 32, 64, 100, 300 pixels, scales 21, 45, 99, 153, 207, 261,
  315, aspect ratios 2 (and 3 on the middle maps), clamped to the image. Matching (utils.Encoder.encode): each
  default box takes the ground-truth box it overlaps most when the IoU exceeds 0.5, and each ground-truth box
  claims its best default box whatever the IoU.
- Loss (base_model.Loss): Smooth-L1 on the offsets of positive default boxes, encoded as ((g_xy - d_xy) / d_wh / 0.1,
  log(g_wh / d_wh) / 0.2), plus cross-entropy on the positives and the 3x as many negatives with the highest loss
  (hard-negative mining), divided per image by its number of positives and averaged over the batch.
- Optimiser: SGD, momentum 0.9, weight decay 5e-4, lr 2.5e-3 per 32 images of global batch (MLPerf's base lr).
- Evaluation (Encoder.decode_batch and pycocotools): softmax scores, per class the boxes scoring above 0.05, the
  200 best of them through NMS at IoU 0.5, the 200 best detections per image; COCO box mAP over IoU 0.50:0.95.
  MLPerf v0.6's target is 0.23. Served to LoadGen (`detection.detection_serving`), each image's answer is those
  200 detections as [left, top, right, bottom, score, label] rows, scored with the same mAP.
- The "inference" preset is MLPerf Inference v0.7's SSD-ResNet34 (mlcommons/inference, ssd_r34.py with strides
  [3, 3, 2, 2, 2, 2] and dboxes_R34_coco): the same layers and parameters on 1200x1200 images, the fourth extra
  block at stride 2 and the heads' 3x3 convolutions at stride 3, so the heads give maps of 50, 25, 13, 7, 3 and 3
  cells and 15130 default boxes; mAP 0.20 (its FP32 reference; the accuracy target is 99% of it).

With 81 classes the network has 19,972,534 parameters: backbone 8,170,304, extra layers 3,574,400, box heads
387,192 and class heads 7,840,638. MLPerf publishes no parameter count for it; OpenVINO's model zoo lists the same
network (identical layers, other strides, for 1200x1200 inference) as 20.058 M.

Simplified, and why: the backbone is not ImageNet-pretrained (no weights to download; a benchmark of speed does not
need them), there is no learning-rate warm-up or decay (the timed steps do not depend on it), and the input
pipeline's augmentation (random SSD crops, flips, colour jitter) is not run: as NVIDIA's synthetic-data mode, the
batches are made once, encoded (matched to the default boxes, which NVIDIA's pipeline also does outside the model)
and cycled on the device. Box utilities, NMS and the COCO-style mAP are plain torch (no torchvision, no pycocotools).

Data: `rectangle_batches`, images of one to a few non-overlapping axis-aligned rectangles on Gaussian noise, each
filled with its class's texture (a colour of its own hue, light and dark stripes of its own direction and period),
with their boxes and labels; the held-out images are other rectangles with the same textures. The real preset draws
its labels from `object_classes` (2) of its 80 object classes (the heads keep all 81 outputs), up to 2 objects an
image of 0.3 to 0.6 of its side (the maps of 10x10 cells and coarser match them; the finer ones learn background), so
that its pool covers every class used many times at any batch and the target is reached at MLPerf's learning rate
(2.5e-3 per 32 images) within the budget: with 80 classes, 6 objects of 0.1 to 0.6 and 4 classes, the walk's
reduced model was at mAP 0.04 after 200 steps at 32 images.

Quality: the same COCO mAP@[.5:.95] as MLPerf's (checked against pycocotools on random cases while writing it), on
the held-out images (at most `held_out` of them per held-out batch: the metric's cost grows with the images). Untrained
it is 0; the target 0.15 takes boxes placed to IoU well above 0.5, not just found. The cpu preset passes it after
110-140 steps at batch 8 or 16 (80-150 with other data seeds).

Quality-preserving reductions (tests/test_quality_reach.py): 32x32 images with the geometry scaled to them (the
backbone at width 8, maps of 4, 2 and 1 cells from two extra blocks of 16-32 channels, default boxes of 0.25, 0.44
and 0.69 of the side where the real ones for these objects are 0.33, 0.51 and 0.69). Every shipped batch then reaches
the target in 40-100 of the 200 steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..run.training import Batch, Recalibrated, Supervised, seeded
from .convnet import BasicBlock
from .detection import (
    Detections,
    box_iou,
    detection_serving,
    ground_truths,
    ltrb_to_xywh,
    mean_average_precision,
    nms,
    random_objects,
    xywh_to_ltrb,
)
from .registry import Preset, Quality, Setup, Workload, register
from .resnet import ResNet

#: ResNet-34's BasicBlocks per stage, up to conv4_x (its conv5_x is not used).
LAYERS = (3, 4, 6)
#: The MLPerf reference's SSD300 extra layers: (1x1 channels, 3x3 output channels, stride, padding) per block.
EXTRAS = ((256, 512, 2, 1), (256, 512, 2, 1), (128, 256, 2, 1), (128, 256, 1, 0), (128, 256, 1, 0))
#: MLPerf Inference's 1200x1200 SSD-ResNet34 (ssd_r34.py, strides [3, 3, 2, 2, 2, 2]): the fourth block at stride 2.
INFERENCE_EXTRAS = ((256, 512, 2, 1), (256, 512, 2, 1), (128, 256, 2, 1), (128, 256, 2, 0), (128, 256, 1, 0))
#: Variances of the box encoding: centre offsets are divided by 0.1, log size ratios by 0.2.
SCALE_XY, SCALE_WH = 0.1, 0.2


def grid_boxes(shapes: Sequence[tuple[float, float]], cells: int, step: float) -> Tensor:
    """xywh boxes (len(shapes) * cells^2, 4), float64: each (width, height) shape at the centre (cell + 0.5) * step
    of every cell of a square map, per shape, per cell in row-major order (the order of the heads' outputs)."""
    centres = (torch.arange(cells, dtype=torch.float64) + 0.5) * step
    cy, cx = torch.meshgrid(centres, centres, indexing="ij")
    boxes = [
        torch.stack([cx, cy, torch.full_like(cx, w), torch.full_like(cx, h)], -1).reshape(-1, 4) for w, h in shapes
    ]
    return torch.cat(boxes)


def default_boxes(
    image_size: int,
    feature_sizes: Sequence[int],
    steps: Sequence[int],
    scales: Sequence[int],
    aspect_ratios: Sequence[Sequence[int]],
) -> Tensor:
    """The reference's DefaultBoxes, xywh (n, 4): per feature map, per box shape, per cell in row-major order.
    Shapes: a square of scales[k], one of sqrt(scales[k] * scales[k+1]), and for each aspect ratio a the scales[k]
    square stretched by sqrt(a) each way; centres at (cell + 0.5) * step; clamped to the image."""
    boxes = []
    for k, (cells, step, ratios) in enumerate(zip(feature_sizes, steps, aspect_ratios, strict=True)):
        small, large = scales[k] / image_size, scales[k + 1] / image_size
        shapes = [(small, small), (math.sqrt(small * large),) * 2]
        for a in ratios:
            shapes += [(small * math.sqrt(a), small / math.sqrt(a)), (small / math.sqrt(a), small * math.sqrt(a))]
        boxes.append(grid_boxes(shapes, cells, step / image_size))
    return torch.cat(boxes).clamp(0, 1).float()


def match(truths: Tensor, labels: Tensor, defaults: Tensor, threshold: float = 0.5) -> tuple[Tensor, Tensor]:
    """The reference Encoder.encode for a batch: ground-truth ltrb boxes (b, m, 4) and labels (b, m) (0 = padding)
    to per-default-box target boxes, xywh (b, n, 4) (the default box itself for the background) and labels (b, n)."""
    valid = labels > 0
    iou = box_iou(truths, xywh_to_ltrb(defaults)).masked_fill(~valid.unsqueeze(-1), -1.0)  # (b, m, n)
    best_iou, best_truth = iou.max(1)
    best_default = iou.argmax(2)
    rows = torch.arange(len(labels), device=labels.device)
    for m in range(labels.size(1)):  # a handful of objects; the last claim of a default box wins, as the reference
        r, d = rows[valid[:, m]], best_default[valid[:, m], m]
        best_iou[r, d] = 2.0
        best_truth[r, d] = m
    positive = best_iou > threshold
    matched = torch.gather(truths, 1, best_truth.unsqueeze(-1).expand(-1, -1, 4))
    boxes = torch.where(positive.unsqueeze(-1), ltrb_to_xywh(matched), defaults)
    return boxes, torch.where(positive, torch.gather(labels, 1, best_truth), 0)


def encode(boxes: Tensor, defaults: Tensor) -> Tensor:
    """xywh boxes (..., n, 4) as offsets from the default boxes (n, 4), with the variances 0.1 and 0.2."""
    xy = (boxes[..., :2] - defaults[:, :2]) / defaults[:, 2:] / SCALE_XY
    wh = (boxes[..., 2:] / defaults[:, 2:]).log() / SCALE_WH
    return torch.cat([xy, wh], -1)


def decode(offsets: Tensor, defaults: Tensor) -> Tensor:
    """The inverse of `encode`, to ltrb boxes (the reference's scale_back_batch)."""
    xy = offsets[..., :2] * SCALE_XY * defaults[:, 2:] + defaults[:, :2]
    wh = (offsets[..., 2:] * SCALE_WH).exp() * defaults[:, 2:]
    return xywh_to_ltrb(torch.cat([xy, wh], -1))


def detect(
    offsets: Tensor,
    logits: Tensor,
    defaults: Tensor,
    threshold: float = 0.5,
    min_score: float = 0.05,
    per_class: int = 200,
    max_output: int = 200,
    sigmoid: bool = False,
) -> list[Detections]:
    """The reference's decode_batch: the model's outputs (b, 4, n) and (b, classes, n) to detections per image; per
    class (background 0 skipped), the `per_class` best boxes above `min_score` through NMS at IoU `threshold`, then
    the `max_output` best over all classes. All classes go through one batched `nms`. Scores are a softmax over the
    classes, or with `sigmoid` each class's own sigmoid (TensorFlow's SIGMOID score converter)."""
    boxes = decode(offsets.float().transpose(1, 2), defaults)
    probs = (logits.float().sigmoid() if sigmoid else logits.float().softmax(1))[:, 1:]  # (b, classes - 1, n)
    results = []
    for image_boxes, image_probs in zip(boxes, probs, strict=True):
        # The k best of each class, k as many as the class with most candidates has (no NMS over the rest).
        k = min(per_class, int((image_probs > min_score).sum(1).max()))
        scores, index = image_probs.topk(k, -1)  # (classes - 1, k), sorted
        candidates = image_boxes[index]  # (classes - 1, k, 4)
        keep = nms(candidates, scores, threshold) & (scores > min_score)
        labels = torch.arange(1, logits.size(1), device=logits.device).unsqueeze(1).expand_as(scores)
        kept_scores, best = scores[keep].topk(min(max_output, int(keep.sum())))
        results.append((candidates[keep][best], labels[keep][best], kept_scores))
    return results


@dataclass(frozen=True)
class PostProcessing:
    """`detect`'s settings, those of the reference's decode_batch by default: what turns the model's (offsets,
    logits) into at most `max_output` detections per image, for the quality metric and for serving alike."""

    threshold: float = 0.5  #: NMS IoU
    min_score: float = 0.05
    per_class: int = 200
    max_output: int = 200
    sigmoid: bool = False

    def __call__(self, outputs: tuple[Tensor, Tensor], defaults: Tensor) -> list[Detections]:
        offsets, logits = outputs
        return detect(offsets, logits, defaults, **asdict(self))


# --- The network.


def conv4_size(image_size: int) -> int:
    """Side of the backbone's output: the stem's 7x7/2 convolution and 3x3/2 max-pooling, then conv3_x's stride 2."""
    size = (image_size - 1) // 2 + 1
    size = (size - 1) // 2 + 1
    return (size - 1) // 2 + 1


def feature_sizes(image_size: int, extras: Sequence[tuple[int, int, int, int]], head_stride: int = 1) -> list[int]:
    """Sides of the heads' outputs: the backbone's map, then each extra block's 3x3 convolution's, through the heads'
    3x3 convolutions (padding 1) at `head_stride`."""
    sizes = [conv4_size(image_size)]
    for _, _, stride, padding in extras:
        sizes.append((sizes[-1] + 2 * padding - 3) // stride + 1)
    return [(size - 1) // head_stride + 1 for size in sizes]


class Backbone(nn.Module):
    """The reference's ResNet34: ResNet-34 up to conv4_x, with conv4_x's stride 2 taken out (its first block's 3x3
    convolution and 1x1 projection at stride 1; the others already are), so the output keeps conv3_x's resolution
    (38x38 for 300x300 images). `width` is conv2_x's channels (64); the output has 4 * width."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        resnet = ResNet(LAYERS, block=BasicBlock, width=width)
        first = resnet.stages[sum(LAYERS[:2])]  # conv4_x's first block
        first.conv1.stride = (1, 1)
        first.downsample[0].stride = (1, 1)
        self.stem, self.stages = resnet.stem, resnet.stages  # its classifier is dropped
        self.out_channels = width * 2 ** (len(LAYERS) - 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))


class SSD(nn.Module):
    """The reference's SSD300: the backbone, the extra blocks, and per feature map a box-offset and a class-score
    3x3 convolution (at `head_stride`: 3 in MLPerf Inference's 1200x1200 model). Returns offsets (batch, 4, boxes)
    and class logits (batch, classes, boxes)."""

    def __init__(
        self,
        num_classes: int,
        width: int = 64,
        extras: Sequence[tuple[int, int, int, int]] = EXTRAS,
        defaults_per_cell: Sequence[int] = (4, 6, 6, 6, 4, 4),
        head_stride: int = 1,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = Backbone(width)
        channels = [self.backbone.out_channels]
        blocks: list[nn.Module] = []
        for mid, out, stride, padding in extras:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(channels[-1], mid, 1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(mid, out, 3, stride=stride, padding=padding),
                    nn.ReLU(inplace=True),
                )
            )
            channels.append(out)
        self.extras = nn.ModuleList(blocks)
        pairs = list(zip(defaults_per_cell, channels, strict=True))
        self.loc = nn.ModuleList(nn.Conv2d(c, n * 4, 3, head_stride, 1) for n, c in pairs)
        self.conf = nn.ModuleList(nn.Conv2d(c, n * num_classes, 3, head_stride, 1) for n, c in pairs)
        for layer in (*self.extras, *self.loc, *self.conf):
            for param in layer.parameters():
                if param.dim() > 1:
                    nn.init.xavier_uniform_(param)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        maps = [self.backbone(x)]
        for block in self.extras:
            maps.append(block(maps[-1]))
        n = x.size(0)
        # reshape, not the reference's view: channels-last maps are not contiguous in this order.
        locs = [loc(m).reshape(n, 4, -1) for m, loc in zip(maps, self.loc, strict=True)]
        confs = [conf(m).reshape(n, self.num_classes, -1) for m, conf in zip(maps, self.conf, strict=True)]
        return torch.cat(locs, 2), torch.cat(confs, 2)


class MultiBoxLoss(nn.Module):
    """The reference's Loss: Smooth-L1 over the encoded offsets of positive default boxes, cross-entropy over the
    positives and the 3x as many hardest negatives, each image's sum divided by its positives, averaged over the
    batch (images without objects count 0). In float32. With `sigmoid`, the class loss of a default box is the sum
    over classes of each one's sigmoid cross-entropy against its one-hot label (TensorFlow's weighted_sigmoid)."""

    def __init__(self, defaults: Tensor, sigmoid: bool = False) -> None:
        super().__init__()
        self.register_buffer("defaults", defaults)
        self.sigmoid = sigmoid

    def forward(self, predicted: tuple[Tensor, Tensor], target: tuple[Tensor, Tensor]) -> Tensor:
        offsets, logits = predicted[0].float(), predicted[1].float()
        boxes, labels = target
        positive = labels > 0
        positives = positive.sum(1)
        wanted = encode(boxes.float(), self.defaults).transpose(1, 2)  # (b, 4, n) as the offsets
        box_loss = (F.smooth_l1_loss(offsets, wanted, reduction="none").sum(1) * positive).sum(1)
        if self.sigmoid:
            one_hot = F.one_hot(labels, logits.size(1)).transpose(1, 2).float()
            class_loss = F.binary_cross_entropy_with_logits(logits, one_hot, reduction="none").sum(1)  # (b, n)
        else:
            class_loss = F.cross_entropy(logits, labels, reduction="none")  # (b, n)
        # Hard-negative mining: rank the negatives by their loss, keep the 3 * positives first.
        rank = class_loss.masked_fill(positive, 0).argsort(1, descending=True).argsort(1)
        negative = rank < (3 * positives).clamp(max=labels.size(1)).unsqueeze(1)
        class_loss = (class_loss * (positive | negative)).sum(1)
        total = (box_loss + class_loss) * (positives > 0) / positives.float().clamp(min=1e-6)
        return total.mean()


# --- Synthetic data.


def class_textures(num_classes: int, size: int, device: torch.device, generator: torch.Generator) -> Tensor:
    """A fill per object class (classes 1.., index 0 unused), (num_classes, 3, size, size): a colour of its own hue
    (hues evenly spaced around the colour wheel, in a random order, at a random brightness), with light and dark
    stripes of a random direction and period (3 to 8 pixels). Every colour is far from the background's mean (0)."""
    hues = (torch.randperm(num_classes, generator=generator, device=device) / num_classes).view(-1, 1)
    phases = torch.arange(3, device=device) / 3
    brightness = torch.rand(num_classes, 1, generator=generator, device=device) - 0.5
    colours = (1.5 * torch.cos(2 * math.pi * (hues - phases)) + brightness).view(-1, 3, 1, 1)
    angle = torch.rand(num_classes, 1, 1, generator=generator, device=device) * math.pi
    period = 3 + torch.rand(num_classes, 1, 1, generator=generator, device=device) * 5
    pixel = torch.arange(size, dtype=torch.float32, device=device)
    y, x = pixel.view(1, -1, 1), pixel.view(1, 1, -1)
    stripes = torch.sin(2 * math.pi * (x * angle.cos() + y * angle.sin()) / period).sign()
    return colours + 0.5 * stripes.unsqueeze(1)


def draw(boxes: Tensor, labels: Tensor, textures: Tensor, noise: Tensor) -> Tensor:
    """Images (count, 3, size, size): `noise`, with each box's pixels (those whose centre lies inside) filled with its
    class's texture plus the noise."""
    centres = (torch.arange(noise.size(-1), dtype=torch.float32, device=noise.device) + 0.5) / noise.size(-1)
    images = noise
    for box, label in zip(boxes.unbind(1), labels.unbind(1), strict=True):
        left, top, right, bottom = (side.view(-1, 1, 1) for side in box.unbind(1))
        column, row = centres, centres.view(-1, 1)
        inside = (column > left) & (column < right) & (row > top) & (row < bottom)
        inside = (inside & (label > 0).view(-1, 1, 1)).unsqueeze(1)
        images = torch.where(inside, textures[label] + noise, images)
    return images


def rectangle_batches(
    p: Preset, batch_size: int, count: int, device: torch.device, seed: int = 0
) -> list[tuple[Tensor, tuple[Tensor, Tensor]]]:
    """`count` batches of (images, (ltrb boxes (b, objects, 4), labels (b, objects))); the class textures are
    fixed by the seed, positions, sizes, classes and the Gaussian background noise (std p["noise"]) drawn anew."""
    g = torch.Generator(device=device).manual_seed(seed)
    size = p["image_size"]
    textures = class_textures(p["num_classes"], size, device, g)
    # labels 1..object_classes (all the model's classes but the background when the preset does not say)
    objects = {**p, "num_classes": p.get("object_classes", p["num_classes"] - 1) + 1}
    batches = []
    for _ in range(count):
        boxes, labels = random_objects(objects, batch_size, device, g)
        noise = torch.randn(batch_size, 3, size, size, generator=g, device=device) * p["noise"]
        batches.append((draw(boxes, labels, textures, noise), (boxes, labels)))
    return batches


def preset_defaults(p: Preset) -> Tensor:
    sizes = feature_sizes(p["image_size"], p["extras"], p.get("head_stride", 1))
    return default_boxes(p["image_size"], sizes, p["steps"], p["scales"], p["aspect_ratios"])


def model(p: Preset) -> SSD:
    per_cell = [2 + 2 * len(a) for a in p["aspect_ratios"]]
    return SSD(p["num_classes"], p["width"], p["extras"], per_cell, p.get("head_stride", 1))


def mean_ap(defaults: Tensor, post: PostProcessing = PostProcessing()) -> Callable[[nn.Module, Iterable[Batch]], float]:
    """The quality metric: COCO mAP@[.5:.95] of the detections on held-out batches of (images, (boxes, labels))."""

    def metric(network: nn.Module, batches: Iterable[Batch]) -> float:
        detections, truths = [], []
        for images, targets in batches:
            detections += post(network(images), defaults)
            truths += ground_truths(targets)
        return mean_average_precision(detections, truths)

    return metric


def detection_data(p: Preset, batch: int, defaults: Tensor) -> tuple[list[Batch], list[Batch]]:
    """`p["batches"]` training batches of rectangles matched to the default boxes once (as NVIDIA's input pipeline
    does before the model, untimed here), and two held-out batches of other rectangles of the same class textures
    with their (boxes, labels), of at most p["held_out"] images each when the preset says (the mAP's cost grows with
    the images, its information much less). Shared by the SSD detectors."""
    batches = rectangle_batches(p, batch, p["batches"] + 2, defaults.device)
    train = [(images, match(boxes, labels, defaults)) for images, (boxes, labels) in batches[:-2]]
    cap = p.get("held_out", batch)
    return train, [(images[:cap], (boxes[:cap], labels[:cap])) for images, (boxes, labels) in batches[-2:]]


def build(setup: Setup) -> Supervised:
    p, batch = setup.preset, setup.batch_size
    defaults = preset_defaults(p).to(setup.device)
    train, held_out = detection_data(p, batch, defaults)
    return Recalibrated(
        setup,
        seeded(lambda: model(p)),
        train,
        loss=MultiBoxLoss(defaults),
        # MLPerf's rule: lr 2.5e-3 (p["lr"]) per 32 images of global batch; here per device.
        optimizer=lambda m: torch.optim.SGD(
            m.parameters(), lr=p["lr"] * batch / 32, momentum=0.9, weight_decay=5e-4, fused=True
        ),
        metric=mean_ap(defaults),
        held_out=held_out,
        channels_last=True,
    )


#: Served to LoadGen with the reference's post-processing (the 200 best detections per image), as the metric.
SERVING = detection_serving(preset_defaults, PostProcessing())


register(
    Workload(
        name="ssd",
        family="ssd",
        task="training",
        unit="img/s",
        description="MLPerf v0.6 SSD300, ResNet-34 backbone, SGD with momentum, synthetic COCO-shaped detection data",
        presets={
            # utils.dboxes300_coco and ssd300.SSD300 of the reference: 300x300 images, 81 classes, conv2_x width 64.
            "real": {
                "image_size": 300,
                "num_classes": 81,
                "width": 64,
                "extras": EXTRAS,
                "steps": (8, 16, 32, 64, 100, 300),
                "scales": (21, 45, 99, 153, 207, 261, 315),
                "aspect_ratios": ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
                "object_classes": 2,
                "objects": 2,
                "object_sizes": (0.3, 0.6),
                "noise": 0.3,
                "batches": 8,
                "held_out": 64,
                "lr": 2.5e-3,
            },
            # 64x64 images of 3 object classes (and the background); the same 3-4-6 BasicBlocks at an eighth of the
            # width, three extra blocks (maps of 8, 4, 2 and 1 cells, 380 default boxes); a 5x larger lr per image.
            "cpu": {
                "image_size": 64,
                "num_classes": 4,
                "width": 8,
                "extras": ((32, 64, 2, 1), (32, 64, 2, 1), (16, 32, 2, 1)),
                "steps": (8, 16, 32, 64),
                "scales": (12, 20, 32, 48, 64),
                "aspect_ratios": ((2,), (2, 3), (2, 3), (2,)),
                "objects": 3,
                "object_sizes": (0.25, 0.55),
                "noise": 0.3,
                "batches": 32,
                "lr": 1.25e-2,
            },
            # MLPerf Inference v0.7's ssd-resnet34 (vision/classification_and_detection, resnet34-ssd1200): the same
            # layers on 1200x1200 images, the fourth extra block at stride 2 and every head at stride 3 (maps of 50,
            # 25, 13, 7, 3 and 3 cells, 15130 default boxes), dboxes_R34_coco's steps int(1200 / cells) and scales
            # 4x the 300 px ones. Its accuracy target is 99% of mAP 0.20. Few batches: one is 17 MB an image.
            "inference": {
                "image_size": 1200,
                "num_classes": 81,
                "width": 64,
                "extras": INFERENCE_EXTRAS,
                "head_stride": 3,
                "steps": (24, 48, 92, 171, 400, 400),
                "scales": (84, 180, 396, 612, 828, 1044, 1260),
                "aspect_ratios": ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
                "object_classes": 2,
                "objects": 2,
                "object_sizes": (0.3, 0.6),
                "noise": 0.3,
                "batches": 4,
                "held_out": 64,
                "lr": 2.5e-3,
            },
        },
        build=build,
        # MLPerf v0.6: COCO 2017 val box mAP@[.5:.95] of 0.23 (the quality_target of its SSD rules).
        quality=Quality("held-out COCO mAP@[.5:.95]", target=0.15, max_steps=200, eval_every=10, real_target=0.23),
        reductions={
            "image_size": 32,
            "width": 8,
            "extras": ((16, 32, 2, 1), (16, 32, 2, 1)),
            "steps": (8, 16, 32),
            "scales": (8, 14, 22, 32),
            "aspect_ratios": ((2,), (2, 3), (2,)),
        },
        serving=SERVING,
    )
)
