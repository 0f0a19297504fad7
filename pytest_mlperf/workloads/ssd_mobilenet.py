"""MLPerf Inference v0.7's SSD-MobileNet ("ssd-mobilenet 300x300" of mlcommons/inference
vision/classification_and_detection): TensorFlow's ssd_mobilenet_v1_coco (the ssd_mobilenet_v1_coco_2018_01_28
model of the TF object detection model zoo; Huang et al. 2017, "Speed/accuracy trade-offs for modern convolutional
object detectors"; Howard et al. 2017, "MobileNets"), as tensorflow/models
research/object_detection/samples/configs/ssd_mobilenet_v1_coco.config and the feature extractor
ssd_mobilenet_v1_feature_extractor.py define it, and mlcommons/inference's PyTorch port
(python/models/ssd_mobilenet_v1.py) rebuilds it.

- Input 300x300 (fixed_shape_resizer), 91 classes: COCO's 90 ids (num_classes: 90) and the background.
- Backbone: MobileNetV1 at depth multiplier 1.0 (min_depth 16): a 3x3/2 convolution to 32 channels, then 13
  depthwise-separable layers (3x3 depthwise, 1x1 pointwise) of 64, 128/2, 128, 256/2, 256, 512/2, 5 x 512, 1024/2
  and 1024 channels, each convolution followed by batch norm (epsilon 0.001) and ReLU6. The heads see Conv2d_11's
  19x19 map of 512 channels and Conv2d_13's 10x10 map of 1024.
- Extra layers (feature_map_layout's layer_depth [-1, -1, 512, 256, 256, 128]): each a 1x1 convolution to half the
  depth and a 3x3/2 one to the depth, with batch norm and ReLU6: maps of 5, 3, 2 and 1 cells.
- Box predictor (convolutional_box_predictor, kernel_size 1, no layers before it): per map a 1x1 convolution with
  bias for the box offsets (4 per anchor) and one for the class logits (91 per anchor).
- Anchors (ssd_anchor_generator, num_layers 6, min_scale 0.2, max_scale 0.95, aspect ratios 1, 2, 0.5, 3, 0.3333,
  reduce_boxes_in_lowest_layer): scales 0.2 + 0.15 k on map k; on the first map a 0.1 square and the 0.2 box at
  ratios 2 and 0.5 (3 per cell), on the others the five ratios at scale s_k and a square of sqrt(s_k s_k+1) (6 per
  cell, s_6 = 1); a box at ratio a is s sqrt(a) wide and s / sqrt(a) high, centred on the cells, not clipped:
  19^2 * 3 + (10^2 + 5^2 + 3^2 + 2^2 + 1) * 6 = 1917 anchors.
- Matching (argmax_matcher 0.5/0.5, force_match_for_each_row) and box coding (faster_rcnn_box_coder 10, 10, 5, 5)
  are those of the ResNet-34 SSD: `ssd.match` and `ssd.encode`. Loss: weighted_smooth_l1 on the positives and
  weighted_sigmoid (a sigmoid cross-entropy per class, background included) on the positives and hard negatives
  (max_negatives_per_positive 3), normalised by the matches: `ssd.MultiBoxLoss` with `sigmoid`.
- Optimiser: RMSProp, lr 0.004 (at batch 24), decay 0.9, momentum 0.9, epsilon 1.0; L2 4e-5 on the weights.
- Post-processing: the exported model's (mlcommons's port: score_threshold 0.3, nms_threshold 0.6; the zoo's
  pipeline.config: max 100 detections per class and per image, SIGMOID scores), `ssd.detect` with those settings.
- Quality: COCO mAP@[.5:.95]; mlcommons/inference lists the fp32 model at 0.23 and MLPerf Inference v0.7's rules take
  99% of 0.22 as its accuracy target.

Parameters on the meta device: 6,819,839, of which 12,672 are batch norm scales; folding each batch norm into a
bias (as an exported graph does) leaves 6,807,167, OpenVINO's Open Model Zoo figure for ssd_mobilenet_v1_coco
(6.807 M; backbone 3,185,088 weights, extra layers 2,220,032, heads 1,389,375).

Simplified, and why: the anchors are laid out per map, per shape, per cell (the order `ssd.grid_boxes` gives and
the heads' outputs are read in), not TensorFlow's per cell, per shape: the same set of boxes, in another order that
only matters for loading TF weights. Convolutions pad symmetrically (TF's "SAME" pads the odd row and column at the
bottom and right; the map sizes are the same). Batch norm keeps torch's momentum 0.1: TF's decay 0.9997 is for
200k-step runs, and would leave the running statistics near their initial values after the few hundred steps of the
synthetic task. torch's RMSprop adds epsilon outside the square root and starts its mean square at 0 (TF: inside,
from 1; with epsilon 1 both are close to momentum SGD while gradients are small), its L2 applies to every parameter
(TF's regulariser: the weights only), and the lr scales with the batch (0.004 per 24 images). The hard example miner
keeps the 3x negatives with the highest loss without TF's NMS among them (IoU 0.99) or its cap of 3000, and the loss
is divided per image by its matches (TF: the batch's sum by all matches). TF's NMS keeps up to 100 per class after
suppression over all candidates; `detect` suppresses among the 100 best. No ImageNet pre-training, no augmentation
(ssd_random_crop, flips), no learning-rate decay, as for the ResNet-34 SSD; data, matching (once, up front) and
metric are `ssd`'s synthetic rectangles.

Quality: untrained the held-out mAP is near 0; the cpu preset passes 0.15 after 90-110 steps at batch 16 (lr 0.03
to 0.08 per 24 images alike), about 9 s on 2 cores. The real preset's steps to it were not measured: no GPU was at
hand.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..run.training import Supervised, seeded
from .detection import detection_serving
from .registry import Preset, Quality, Setup, Workload, register
from .ssd import MultiBoxLoss, PostProcessing, detection_data, grid_boxes, mean_ap

#: MobileNetV1's depthwise-separable layers Conv2d_1..13: (pointwise output channels, depthwise stride).
MOBILENET = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5, (1024, 2), (1024, 1))
#: The layers whose outputs the heads see: Conv2d_11 and Conv2d_13 (1-based, as TF names them).
TAPS = (11, 13)
#: The extra layers' output depths (each after a 1x1 convolution to half of it).
EXTRA_DEPTHS = (512, 256, 256, 128)
#: The exported model's post-processing (mlcommons/inference's port; TF's pipeline.config).
POST_PROCESSING = PostProcessing(threshold=0.6, min_score=0.3, per_class=100, max_output=100, sigmoid=True)


def depth(channels: int, p: Preset) -> int:
    """A layer's channels at the preset's depth multiplier, no fewer than its min_depth (TF's depth function)."""
    return max(int(channels * p["width"]), p["min_depth"])


def conv_bn(inputs: int, outputs: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """A convolution without bias, batch norm (TF's epsilon) and ReLU6: every layer of the backbone and extras."""
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(outputs, eps=1e-3),
        nn.ReLU6(inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNetV1's convolutions (no classifier): the stem, then the depthwise-separable layers; returns the maps of
    the `TAPS` layers."""

    def __init__(self, p: Preset) -> None:
        super().__init__()
        channels = depth(32, p)
        self.stem = conv_bn(3, channels, 3, 2)
        layers = []
        for out, stride in MOBILENET:
            layers.append(
                nn.Sequential(
                    conv_bn(channels, channels, 3, stride, groups=channels), conv_bn(channels, depth(out, p), 1)
                )
            )
            channels = depth(out, p)
        self.layers = nn.ModuleList(layers)
        self.out_channels = [depth(MOBILENET[i - 1][0], p) for i in TAPS]

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        maps = []
        for i, layer in enumerate(self.layers, 1):
            x = layer(x)
            if i in TAPS:
                maps.append(x)
        return maps


class SSDMobileNet(nn.Module):
    """SSD on MobileNetV1: the backbone's two maps and the extra layers', each with a 1x1 box-offset and class-logit
    convolution. Returns offsets (batch, 4, anchors) and class logits (batch, classes, anchors), as `ssd.SSD`."""

    def __init__(self, p: Preset) -> None:
        super().__init__()
        self.num_classes = p["num_classes"]
        self.backbone = MobileNetV1(p)
        channels = list(self.backbone.out_channels)
        extras = []
        for out, side in zip(EXTRA_DEPTHS, feature_sizes(p["image_size"])[len(TAPS) - 1 : -1], strict=True):
            mid = depth(out // 2, p)
            extras.append(
                nn.Sequential(conv_bn(channels[-1], mid, 1), conv_bn(mid, depth(out, p), 3, extra_stride(side)))
            )
            channels.append(depth(out, p))
        self.extras = nn.ModuleList(extras)
        pairs = list(zip([len(shapes) for shapes in anchor_shapes(p)], channels, strict=True))
        self.loc = nn.ModuleList(nn.Conv2d(c, n * 4, 1) for n, c in pairs)
        self.conf = nn.ModuleList(nn.Conv2d(c, n * self.num_classes, 1) for n, c in pairs)
        for module in self.modules():  # TF's conv_hyperparams: truncated normal weights, std 0.03; zero biases
            if isinstance(module, nn.Conv2d):
                nn.init.trunc_normal_(module.weight, std=0.03, a=-0.06, b=0.06)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        maps = self.backbone(x)
        for block in self.extras:
            maps.append(block(maps[-1]))
        n = x.size(0)
        locs = [loc(m).reshape(n, 4, -1) for m, loc in zip(maps, self.loc, strict=True)]
        confs = [conf(m).reshape(n, self.num_classes, -1) for m, conf in zip(maps, self.conf, strict=True)]
        return torch.cat(locs, 2), torch.cat(confs, 2)


def extra_stride(side: int) -> int:
    """An extra layer's stride on a map of `side` cells: 2, but 1 on a 1x1 map (the cpu preset's last maps), which
    gives the same output (one cell, the kernel's centre on it) without oneDNN's bf16 weight-gradient kernel for a
    stride-2 convolution of a 1x1 map: on AVX512-BF16 CPUs it returns NaN at random (2 to 20 calls in 100, measured
    with torch 2.13; stride 1 none in 100)."""
    return 2 if side > 1 else 1


def feature_sizes(image_size: int) -> list[int]:
    """Sides of the six maps the heads see: Conv2d_11's, Conv2d_13's, then the four extra layers' (every stride-2
    3x3 convolution with padding 1 takes a side s to ceil(s / 2), as TF's "SAME" padding)."""

    def halved(size: int) -> int:
        return (size - 1) // 2 + 1

    size, sizes = halved(image_size), []
    for i, (_, stride) in enumerate(MOBILENET, 1):
        size = halved(size) if stride == 2 else size
        if i in TAPS:
            sizes.append(size)
    for _ in EXTRA_DEPTHS:
        sizes.append(halved(sizes[-1]))
    return sizes


def anchor_shapes(p: Preset) -> list[list[tuple[float, float]]]:
    """(width, height) of each map's anchors, as TF's create_ssd_anchors (interpolated_scale_aspect_ratio 1,
    reduce_boxes_in_lowest_layer, base anchor 1x1): scales evenly from min_scale to max_scale over the maps (and 1
    beyond the last); the first map has a 0.1 square and the min_scale boxes at ratios 2 and 0.5, every other map
    its scale at each aspect ratio and a square between its scale and the next."""
    layers = len(EXTRA_DEPTHS) + len(TAPS)
    low, high = p["min_scale"], p["max_scale"]
    scales = [low + (high - low) * k / (layers - 1) for k in range(layers)] + [1.0]

    def box(scale: float, ratio: float) -> tuple[float, float]:
        return scale * math.sqrt(ratio), scale / math.sqrt(ratio)

    shapes = [[box(0.1, 1.0), box(scales[0], 2.0), box(scales[0], 0.5)]]
    for k in range(1, layers):
        shapes.append(
            [box(scales[k], a) for a in p["aspect_ratios"]] + [box(math.sqrt(scales[k] * scales[k + 1]), 1.0)]
        )
    return shapes


def preset_defaults(p: Preset) -> Tensor:
    """The anchors, xywh (n, 4), in the heads' order: per map, per shape, per cell."""
    sizes = feature_sizes(p["image_size"])
    boxes = [grid_boxes(shapes, cells, 1 / cells) for shapes, cells in zip(anchor_shapes(p), sizes, strict=True)]
    return torch.cat(boxes).float()


def build(setup: Setup) -> Supervised:
    p, batch = setup.preset, setup.batch_size
    defaults = preset_defaults(p).to(setup.device)
    train, held_out = detection_data(p, batch, defaults)
    return Supervised(
        setup,
        seeded(lambda: SSDMobileNet(p)),
        train,
        loss=MultiBoxLoss(defaults, sigmoid=True),
        optimizer=lambda m: torch.optim.RMSprop(
            m.parameters(), lr=p["lr"] * batch / 24, alpha=0.9, eps=1.0, momentum=0.9, weight_decay=4e-5
        ),
        metric=mean_ap(defaults, POST_PROCESSING),
        held_out=held_out,
        channels_last=True,
    )


#: Served to LoadGen with the exported model's post-processing (at most 100 detections per image), as the metric.
SERVING = detection_serving(preset_defaults, POST_PROCESSING)

#: TF's aspect ratios (0.3333 as its config writes it, not 1/3).
ASPECT_RATIOS: Sequence[float] = (1.0, 2.0, 0.5, 3.0, 0.3333)

register(
    Workload(
        name="ssd_mobilenet",
        family="ssd",
        task="training",
        unit="img/s",
        description="MLPerf Inference v0.7 SSD-MobileNet (TF ssd_mobilenet_v1_coco), 300x300, RMSProp, synthetic "
        "COCO-shaped detection data",
        presets={
            "real": {
                "image_size": 300,
                "num_classes": 91,
                "width": 1.0,
                "min_depth": 16,
                "min_scale": 0.2,
                "max_scale": 0.95,
                "aspect_ratios": ASPECT_RATIOS,
                "objects": 6,
                "object_sizes": (0.1, 0.6),
                "noise": 0.3,
                "batches": 8,
                "lr": 0.004,
            },
            # 112x112 images of 3 object classes (and the background), MobileNetV1 at an eighth of the depth (8 to
            # 128 channels): maps of 7, 4, 2, 1, 1 and 1 cells, 285 anchors; a larger lr per image.
            "cpu": {
                "image_size": 112,
                "num_classes": 4,
                "width": 0.125,
                "min_depth": 8,
                "min_scale": 0.2,
                "max_scale": 0.95,
                "aspect_ratios": ASPECT_RATIOS,
                "objects": 3,
                "object_sizes": (0.25, 0.55),
                "noise": 0.3,
                "batches": 32,
                "lr": 0.05,
            },
        },
        build=build,
        # MLPerf Inference v0.7: 99% of COCO 2017 val mAP@[.5:.95] 0.22 (the fp32 model's is 0.23).
        quality=Quality("held-out COCO mAP@[.5:.95]", target=0.15, max_steps=300, eval_every=10, real_target=0.22),
        serving=SERVING,
    )
)
