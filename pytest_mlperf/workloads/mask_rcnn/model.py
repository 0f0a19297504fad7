"""The Mask R-CNN network (maskrcnn-benchmark's GeneralizedRCNN with an R-50-FPN body) and its training losses."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import accumulate

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..detection import nms
from ..registry import Preset
from ..resnet import LAYERS, Bottleneck, ResNet
from .boxes import (
    ASPECT_RATIOS,
    Pyramid,
    clip,
    decode,
    encode,
    gather_rows,
    grid,
    grid_anchors,
    match,
    rasterise,
    sample,
)

#: Strides of P2-P6.
STRIDES = (4, 8, 16, 32, 64)
#: Box-coder weights of the RPN and of the box head (MODEL.ROI_HEADS.BBOX_REG_WEIGHTS).
RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
ROI_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
#: RoIAlign output sides of the box and mask heads, and the side of the predicted masks.
BOX_POOL, MASK_POOL, MASK_SIZE = 7, 14, 28
#: Scale (frozen BatchNorm weight) of each bottleneck's last BatchNorm: see `calibrate`.
RESIDUAL_GAIN = 0.2


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters, buffers rather than parameters: the reference keeps
    those of its ImageNet-pretrained backbone."""

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        for name, value in (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
            self.register_buffer(name, torch.full((channels,), value))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)


def freeze_batchnorm(module: nn.Module) -> None:
    """Replace every nn.BatchNorm2d under `module` by a FrozenBatchNorm2d."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, FrozenBatchNorm2d(child.num_features, child.eps))
        else:
            freeze_batchnorm(child)


@torch.no_grad()
def calibrate(backbone: nn.Module, images: Tensor) -> None:
    """Set every FrozenBatchNorm2d's statistics to those of its input on one forward of `images`: the stand-in for
    the pretrained statistics the reference loads, so that each normalises its input (with the identity statistics
    of a fresh layer, a random ResNet's activations grow by orders of magnitude through the stages). Each
    bottleneck's last BatchNorm scales its branch by RESIDUAL_GAIN (its frozen weight), so that the residual sums
    keep C2-C5 near unit scale; at full scale they leave the FPN maps about 5 times larger, and in our trials SGD
    diverged at half the reference's learning rate."""

    def measure(layer: nn.Module, args: tuple[Tensor]) -> None:
        var, mean = torch.var_mean(args[0].float(), (0, 2, 3))
        layer.running_mean.copy_(mean)
        layer.running_var.copy_(var)

    hooks = [m.register_forward_pre_hook(measure) for m in backbone.modules() if isinstance(m, FrozenBatchNorm2d)]
    try:
        backbone(images)
    finally:
        for hook in hooks:
            hook.remove()


class StrideIn1x1(Bottleneck):
    """The reference's bottleneck (MODEL.RESNETS.STRIDE_IN_1X1, the layout of the MSRA weights it starts from): the
    stride in the first 1x1 convolution, not in the 3x3 as resnet.Bottleneck (v1.5). The same parameters."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__(inplanes, planes, stride)
        self.conv1.stride, self.conv2.stride = self.conv2.stride, (1, 1)


class Backbone(nn.Module):
    """ResNet-50 (resnet.ResNet, without its classifier) returning C2-C5, every BatchNorm frozen, the stem and
    conv2_x not trained (MODEL.BACKBONE.FREEZE_CONV_BODY_AT 2). `width` is conv2_x's (64)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        resnet = ResNet(LAYERS, block=StrideIn1x1, width=width)
        ends = list(accumulate(LAYERS))
        self.stem = resnet.stem
        self.stages = nn.ModuleList(
            nn.Sequential(*resnet.stages[end - blocks : end]) for blocks, end in zip(LAYERS, ends, strict=True)
        )
        self.channels = [width * 2**i * Bottleneck.expansion for i in range(len(LAYERS))]
        freeze_batchnorm(self)
        for block in resnet.stages:
            block.bn3.weight.fill_(RESIDUAL_GAIN)
        for frozen in (self.stem, self.stages[0]):
            frozen.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        maps = [self.stem(x)]
        for stage in self.stages:
            maps.append(stage(maps[-1]))
        return maps[1:]


class FPN(nn.Module):
    """Feature pyramid: 1x1 lateral and 3x3 output convolutions, top-down nearest-neighbour upsampling, and P6 as P5
    subsampled by 2 (LastLevelMaxPool); Kaiming-uniform (a=1) initialisation. Returns P2-P6."""

    def __init__(self, in_channels: Sequence[int], channels: int) -> None:
        super().__init__()
        self.inner = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.layer = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)
        for conv in (*self.inner, *self.layer):
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def forward(self, maps: Sequence[Tensor]) -> list[Tensor]:
        top = self.inner[-1](maps[-1])
        outputs = [self.layer[-1](top)]
        for x, inner, layer in zip(maps[-2::-1], self.inner[-2::-1], self.layer[-2::-1], strict=True):
            top = inner(x) + F.interpolate(top, scale_factor=2, mode="nearest")
            outputs.insert(0, layer(top))
        return [*outputs, F.max_pool2d(outputs[-1], 1, 2)]


class RPNHead(nn.Module):
    """A 3x3 convolution and ReLU shared by all levels, then per anchor an objectness logit and 4 box offsets;
    weights N(0, 0.01)."""

    def __init__(self, channels: int, anchors: int = len(ASPECT_RATIOS)) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.logits = nn.Conv2d(channels, anchors, 1)
        self.offsets = nn.Conv2d(channels, anchors * 4, 1)
        for conv in (self.conv, self.logits, self.offsets):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, maps: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Objectness logits (b, anchors) and offsets (b, anchors, 4) of all levels, in grid_anchors' order."""
        logits, offsets = [], []
        for x in maps:
            x = F.relu(self.conv(x))
            n, _, h, w = x.shape
            logits.append(self.logits(x).permute(0, 2, 3, 1).reshape(n, -1))
            offsets.append(self.offsets(x).view(n, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, 4))
        return torch.cat(logits, 1), torch.cat(offsets, 1)


class BoxHead(nn.Module):
    """FPN2MLPFeatureExtractor (two fully connected layers with ReLU) and FPNPredictor (class logits, and box offsets
    per class)."""

    def __init__(self, channels: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.fc6 = nn.Linear(channels * BOX_POOL**2, hidden)
        self.fc7 = nn.Linear(hidden, hidden)
        self.cls_score = nn.Linear(hidden, num_classes)
        self.bbox_pred = nn.Linear(hidden, num_classes * 4)
        for fc, std in ((self.fc6, None), (self.fc7, None), (self.cls_score, 0.01), (self.bbox_pred, 0.001)):
            if std is None:
                nn.init.kaiming_uniform_(fc.weight, a=1)
            else:
                nn.init.normal_(fc.weight, std=std)
            nn.init.zeros_(fc.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))
        return self.cls_score(x), self.bbox_pred(x).view(len(x), -1, 4)


class MaskHead(nn.Module):
    """MaskRCNNFPNFeatureExtractor (four 3x3 convolutions with ReLU) and MaskRCNNC4Predictor (a 2x2 stride-2
    transposed convolution with ReLU, then a 1x1 convolution to a mask logit map per class); Kaiming-normal
    (fan-out) initialisation."""

    def __init__(self, channels: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(channels if i == 0 else hidden, hidden, 3, padding=1), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(hidden, hidden, 2, 2), nn.ReLU(inplace=True), nn.Conv2d(hidden, num_classes, 1)]
        self.layers = nn.Sequential(*layers)
        for m in self.layers:
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class MaskRCNN(nn.Module):
    """GeneralizedRCNN: `forward` takes a batch of images with their objects and returns the five training losses;
    `classify` gives the box head's class logits for given boxes."""

    def __init__(self, p: Preset) -> None:
        super().__init__()
        self.p = p
        self.backbone = Backbone(p["width"])
        channels = p["fpn_channels"]
        self.fpn = FPN(self.backbone.channels, channels)
        self.rpn = RPNHead(channels)
        self.box_head = BoxHead(channels, p["box_hidden"], p["num_classes"])
        self.mask_head = MaskHead(channels, p["mask_hidden"], p["num_classes"])

    def forward(self, images: Tensor, boxes: Tensor, labels: Tensor, shapes: Tensor) -> dict[str, Tensor]:
        """Images (b, 3, h, w); objects' boxes (b, m, 4), labels (b, m), 0 for padding, and shapes (b, m)."""
        maps = self.fpn(self.backbone(images))
        boxes = boxes.float()
        sizes = [m.shape[-2:] for m in maps]
        anchors = grid_anchors(self.p["anchor_sizes"], STRIDES, sizes, images.device)
        logits, offsets = self.rpn(maps)
        losses = self.rpn_losses(logits, offsets, torch.cat(anchors), boxes, labels > 0)
        proposals, valid = self.propose(logits, offsets, anchors)
        return losses | self.roi_losses(Pyramid(maps[:-1]), proposals, valid, boxes, labels, shapes)

    def rpn_losses(
        self, logits: Tensor, offsets: Tensor, anchors: Tensor, boxes: Tensor, present: Tensor
    ) -> dict[str, Tensor]:
        """RPNLossComputation: anchors of IoU >= 0.7 with an object, or the best for one, positive, < 0.3 negative,
        those crossing the image border ignored; p["rpn_batch"] (256) sampled per image, at most half positive;
        binary cross-entropy of their objectness and smooth L1 (beta 1/9) of the positives' offsets, summed over
        the batch and divided by the number sampled."""
        h, w = self.p["image_size"]
        iou, best, truth = match(anchors.unsqueeze(0), boxes, present)
        positive = (best >= 0.7) | ((iou == iou.amax(1, keepdim=True)) & present.unsqueeze(1)).any(-1)
        visible = (anchors[:, :2] >= 0).all(1) & (anchors[:, 2] <= w) & (anchors[:, 3] <= h)
        positive &= visible
        index, drawn = sample(positive, (best < 0.3) & visible & ~positive, self.p["rpn_batch"], 0.5)
        weight = torch.zeros_like(logits, dtype=torch.float).scatter_(1, index, drawn.float())
        count = weight.sum().clamp(min=1)
        objectness = F.binary_cross_entropy_with_logits(logits.float(), positive.float(), weight, reduction="sum")
        chosen = positive & (weight > 0)
        wanted = encode(gather_rows(boxes, truth), anchors, RPN_WEIGHTS).where(chosen.unsqueeze(-1), 0.0)
        box = F.smooth_l1_loss(offsets.float(), wanted, beta=1 / 9, reduction="none").sum(-1)
        return {"loss_objectness": objectness / count, "loss_rpn_box_reg": (box * chosen).sum() / count}

    @torch.no_grad()
    def propose(self, logits: Tensor, offsets: Tensor, anchors: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """RPNPostProcessor (FPN, training): per level, the p["pre_nms"] (2000) anchors of highest objectness,
        decoded, clipped to the image, through NMS at IoU 0.7; then the p["post_nms"] (2000) best of all levels, per
        image. Fixed-size: boxes (b, post_nms, 4) and which of them are kept (not suppressed, not empty)."""
        h, w = self.p["image_size"]
        counts = [len(a) for a in anchors]
        boxes, scores = [], []
        for level_logits, level_offsets, level_anchors in zip(
            logits.split(counts, 1), offsets.split(counts, 1), anchors, strict=True
        ):
            score, top = level_logits.float().topk(min(self.p["pre_nms"], len(level_anchors)), 1)
            box = clip(decode(gather_rows(level_offsets.float(), top), level_anchors[top], RPN_WEIGHTS), h, w)
            keep = nms(box, score, 0.7) & (box[..., 2] > box[..., 0]) & (box[..., 3] > box[..., 1])
            boxes.append(box)
            scores.append(score.masked_fill(~keep, -math.inf))
        score, top = torch.cat(scores, 1).topk(min(self.p["post_nms"], sum(counts)), 1)
        return gather_rows(torch.cat(boxes, 1), top), score > -math.inf

    def roi_losses(
        self, pyramid: Pyramid, proposals: Tensor, valid: Tensor, boxes: Tensor, labels: Tensor, shapes: Tensor
    ) -> dict[str, Tensor]:
        """FastRCNNLossComputation and MaskRCNNLossComputation. The candidates are the proposals and the objects'
        boxes, foreground at IoU >= 0.5 with an object, else background; p["roi_batch"] (512) sampled per image, at
        most a quarter foreground. Cross-entropy of their class logits and smooth L1 (beta 1) of the foreground's
        offsets for its class, both over the number sampled; binary cross-entropy of the foreground's 28x28 mask
        logits for its class against its object's mask on the same grid over the RoI."""
        present = labels > 0
        candidates = torch.cat([proposals, boxes], 1)
        _, best, truth = match(candidates, boxes, present)
        usable = torch.cat([valid, present], 1)
        positive = usable & (best >= 0.5)
        index, drawn = sample(positive, usable & ~positive, self.p["roi_batch"], 0.25)
        image = torch.arange(len(index), device=index.device).repeat_interleave(index.size(1))
        rois, truth, drawn = gather_rows(candidates, index).view(-1, 4), truth.gather(1, index).view(-1), drawn.view(-1)
        target = torch.where(positive.gather(1, index).view(-1), labels[image, truth], 0)
        count = drawn.sum().clamp(min=1)

        logits, offsets = self.box_head(pyramid.roi_align(rois, image, BOX_POOL))
        classification = (F.cross_entropy(logits.float(), target, reduction="none") * drawn).sum() / count
        foreground = drawn & (target > 0)
        wanted = encode(boxes[image, truth], rois, ROI_WEIGHTS).where(foreground.unsqueeze(1), 0.0)
        chosen = offsets.float()[torch.arange(len(target), device=target.device), target]
        box = (F.smooth_l1_loss(chosen, wanted, reduction="none").sum(-1) * foreground).sum() / count

        # The mask head runs on the foreground alone (a host sync for its size, as in the reference); there is some
        # in every image, since each object is a candidate of IoU 1 with itself.
        rois, image, truth, target = rois[foreground], image[foreground], truth[foreground], target[foreground]
        masks = self.mask_head(pyramid.roi_align(rois, image, MASK_POOL))
        masks = masks[torch.arange(len(target), device=target.device), target].float()
        # The reference crops each object's polygons to the RoI and rasterises them at 28x28: the same here.
        wanted = rasterise(boxes[image, truth], shapes[image, truth], *grid(rois, MASK_SIZE)).float()
        return {
            "loss_classifier": classification,
            "loss_box_reg": box,
            "loss_mask": F.binary_cross_entropy_with_logits(masks, wanted),
        }

    def classify(self, images: Tensor, boxes: Tensor, labels: Tensor) -> Tensor:
        """The box head's class logits (objects, classes) for the objects present (labels > 0), their boxes as
        RoIs."""
        present = labels > 0
        image = torch.arange(len(labels), device=labels.device).repeat_interleave(labels.size(1))[present.view(-1)]
        pyramid = Pyramid(self.fpn(self.backbone(images))[:-1])
        return self.box_head(pyramid.roi_align(boxes.float()[present], image, BOX_POOL))[0]
