"""MLPerf Inference v0.7 3D-UNet: nnU-Net's 3d_fullres U-Net segmenting brain tumours in BraTS 2019 MRI (Isensee et
al. 2021, "nnU-Net: a self-configuring method for deep learning-based biomedical image segmentation"), as
mlcommons/inference's v0.7/medical_imaging/3d-unet (later vision/medical_imaging/3d-unet-brats19) serves it: the
checkpoint nnUNetTrainerV2__nnUNetPlansv2.mlperf.1, fold 1 (zenodo 3904106), trained on folds 0, 2, 3 and 4.

- Data (Task043_BraTS_2019.py): 4 input channels, the MRI modalities T1, T1ce, T2 and FLAIR in that order, z-scored
  per channel; 4 output classes, background, edema (1), non-enhancing tumour (2) and enhancing tumour (3) (BraTS's
  labels 2, 1 and 4 renumbered).
- Network (nnunet/network_architecture/generic_UNet.py, Generic_UNet as nnUNetTrainerV2.initialize_network builds
  it): six resolution stages of 30, 60, 120, 240, 320 and 320 filters (BASE_NUM_FEATURES_3D 30 doubled per stage,
  capped at MAX_NUM_FILTERS_3D 320), each two 3x3x3 convolutions (with bias) followed by instance norm (eps 1e-5,
  affine) and leaky ReLU (slope 0.01), no dropout. Downsampling is the first convolution of stages 2-6 at stride 2
  ("convolutional pooling"); each decoder stage upsamples with a 2x2x2 transposed convolution (stride 2, no bias) to
  the skip's width, concatenates the skip and runs two convolutions back to that width. A 1x1x1 convolution (no
  bias) per decoder stage gives the class logits; the full-resolution one is the output, the lower ones serve deep
  supervision in training only (nnU-Net's `do_ds`, off for prediction). He-normal init (negative slope 0.01), zero
  biases. The five 2x2x2 poolings make the input sides multiples of 32.
- Input: MLPerf serves whole volumes of 4 x 224 x 224 x 160 voxels (the README's "input to the SUT"): its
  preprocess.py pads each case to the plans' patch size, which accuracy-brats.py takes to be 224 x 224 x 160, so
  that is also the patch the model was trained on. (nnU-Net's own BraTS plans train 128^3 patches at batch 2, with
  the same six stages.)
- Loss (nnUNetTrainer / nnUNetTrainerV2): cross-entropy plus nnU-Net's soft DICE loss (the negative mean soft DICE
  of the foreground classes per sample, smooth 1e-5: "sample dice", as nnU-Net picks for a single-stage 3d_fullres
  plan), summed over the deep-supervision outputs with weights 1, 1/2, 1/4, ... normalised, the lowest output's
  weight 0; targets downsampled by nearest neighbour. SGD, Nesterov momentum 0.99, lr 0.01, weight decay 3e-5,
  gradient norm clipped at 12.
- Accuracy (accuracy-brats.py with nnunet/evaluation/region_based_evaluation.py): DICE of three nested regions, whole
  tumour (labels 1, 2, 3), tumour core (2, 3) and enhancing tumour (3), per case; a case where a region is empty in
  both prediction and truth gets NaN for that region and is left out of its mean (the "mean" row of nnU-Net's
  summary.csv, which MLPerf reads; the BraTS challenge itself, and the summary's "mean (nan is 1)" row, count such a
  case as 1). The score is the mean of the three regions' means. MLPerf's fp32 reference: 0.85300 (whole tumour
  0.9141, tumour core 0.8679, enhancing tumour 0.7770) on fold 1 of BraTS 2019's training cases; the 3d-unet-99 and
  3d-unet-99.9
  benchmarks must keep 99% and 99.9% of it. (MLPerf Training v1.0's 3D-UNet is another model on KiTS19, with a
  DICE target of 0.908; this module trains the BraTS model.)

Parameters: 29,698,480 with 4 input channels and 4 classes (29,695,400 without the deep-supervision heads);
MLPerf and nnU-Net publish no count for this network.

Throughput is in samples/s: volumes (patches) per second, in training and in inference alike, as MLPerf's Offline
scenario counts 3D-UNet samples.

Serving: each answer is a volume of per-voxel labels (uint8), scored with the same `mean_dice` as training, so the
served fp32 model scores its training metric exactly.
int8 (`quantize_dynamic` of Linear and LSTM layers) finds nothing to convert in this all-convolutional network: the
model survives it unchanged, and `pytest_mlperf.run.serving.served` refuses to time it as "int8". bf16 autocast on a
CPU without AVX-512 bf16 runs these 3D convolutions about 15x (training) to 35x (inference) slower than fp32.
channels_last_3d (NDHWC) is used where it was measured faster: the cpu preset's training step, by about 10% on this
2-core CPU (inference the same either way); the real preset keeps NCDHW, unmeasured on a GPU.

Simplified, and why: no data augmentation (nnU-Net's rotations, scaling, mirroring, gamma: not the model's cost), no
poly learning-rate decay (over nnU-Net's 1000 epochs it barely moves in the timed steps), no sliding-window
inference or test-time mirroring (MLPerf's v0.7 reference runs the whole padded volume once too), and serving answers
the per-voxel argmax labels (uint8) instead of MLPerf's float16 class probabilities, which its accuracy script turns
into those labels (after undoing the padding, cropping and resampling, which synthetic volumes do not need).

Data: `tumour_volumes`, learnable synthetic BraTS: per sample three nested random blobs (ellipsoids distorted by a
smooth random field), whole tumour containing a core containing an enhancing part, rendered with a contrast per
tissue and modality (edema bright in FLAIR and T2, enhancing tumour bright in T1ce, the core dark in T1, ...), times
a smooth bias field per modality, plus Gaussian noise, z-scored per channel; the labels are the blobs. Held-out
volumes are new random ones.

Quality: the same mean DICE on the held-out volumes, target 0.8. Untrained it is about 0.16; the cpu preset passes
0.88 after 20 steps at batch 16 (20-40 at batch 4-32), whole tumour and core first, the small enhancing part last.
(The real preset's steps to it were not measured: no GPU was at hand.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..run.training import Batch, Supervised, seeded
from .registry import Preset, Quality, Serving, Setup, Workload, register

#: Mean intensity of each tissue (rows: brain, edema, non-enhancing core, enhancing tumour) in each modality
#: (columns: T1, T1ce, T2, FLAIR), relative to the brain's 1: the textbook look of a glioma.
CONTRAST = (
    (0.0, 0.0, 0.0, 0.0),
    (-0.2, -0.1, 0.8, 1.0),
    (-0.6, -0.4, 1.1, 0.5),
    (-0.3, 1.2, 0.4, 0.6),
)


class ConvNormAct(nn.Sequential):
    """nnU-Net's ConvDropoutNormNonlin without dropout: 3x3x3 convolution, instance norm, leaky ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv3d(cin, cout, 3, stride=stride, padding=1),
            nn.InstanceNorm3d(cout, eps=1e-5, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )


def stage(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Two ConvNormAct, the first at `stride` (nnU-Net's StackedConvLayers with its first_stride)."""
    return nn.Sequential(ConvNormAct(cin, cout, stride), ConvNormAct(cout, cout))


class UNet3D(nn.Module):
    """Generic_UNet with convolutional pooling and upsampling. In training mode it returns the logits of every decoder
    stage, full resolution first (deep supervision); in eval mode the full-resolution logits only."""

    def __init__(self, filters: Sequence[int], in_channels: int = 4, classes: int = 4) -> None:
        super().__init__()
        widths = [in_channels, *filters]
        self.encoder = nn.ModuleList(stage(widths[i], widths[i + 1], 1 if i == 0 else 2) for i in range(len(filters)))
        levels = range(len(filters) - 2, -1, -1)  # the decoder, deepest skip first
        self.up = nn.ModuleList(nn.ConvTranspose3d(filters[i + 1], filters[i], 2, stride=2, bias=False) for i in levels)
        self.decoder = nn.ModuleList(stage(2 * filters[i], filters[i]) for i in levels)
        self.heads = nn.ModuleList(nn.Conv3d(filters[i], classes, 1, bias=False) for i in levels)
        for m in self.modules():  # InitWeights_He(1e-2)
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.kaiming_normal_(m.weight, a=1e-2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, ...]:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        skips.pop()  # the bottleneck's output is no skip
        features = []
        for up, block in zip(self.up, self.decoder, strict=True):
            x = block(torch.cat([up(x), skips.pop()], 1))
            features.append(x)
        if not self.training:
            return self.heads[-1](x)
        return tuple(head(f) for head, f in zip(self.heads[::-1], features[::-1], strict=True))


def supervision_weights(outputs: int) -> list[float]:
    """nnUNetTrainerV2's deep-supervision weights, full resolution first: 1/2^i, the lowest output's 0, normalised."""
    weights = [0.5**i if i < outputs - 1 or outputs == 1 else 0.0 for i in range(outputs)]
    return [w / sum(weights) for w in weights]


def dice_ce_loss(logits: Tensor, labels: Tensor, smooth: float = 1e-5) -> Tensor:
    """nnU-Net's DC_and_CE_loss with sample dice: cross-entropy minus the soft DICE of the softmax against the
    one-hot labels, per sample and foreground class (background left out), averaged. In float32."""
    logits = logits.float()
    probs = logits.softmax(1)
    onehot = F.one_hot(labels, logits.shape[1]).movedim(-1, 1).to(probs.dtype)
    dims = tuple(range(2, logits.dim()))
    tp = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)  # 2 tp + fp + fn
    dice = (2 * tp + smooth) / (total + smooth + 1e-8)
    return F.cross_entropy(logits, labels) - dice[:, 1:].mean()


def deep_supervision_loss(outputs: tuple[Tensor, ...], targets: tuple[Tensor, ...]) -> Tensor:
    """MultipleOutputLoss2: the weighted sum of `dice_ce_loss` over the outputs that have a target (those of non-zero
    weight, full resolution first; nnU-Net skips the zero-weight ones too)."""
    n = len(targets)
    weights = supervision_weights(len(outputs))[:n]
    losses = [w * dice_ce_loss(o, t) for w, o, t in zip(weights, outputs[:n], targets, strict=True)]
    return torch.stack(losses).sum()


def downsampled(labels: Tensor, outputs: int) -> tuple[Tensor, ...]:
    """The label volumes (n, D, H, W) at each deep-supervision output's resolution that has a non-zero weight, by
    nearest neighbour (nnU-Net's DownsampleSegForDSTransform2, order 0)."""
    count = sum(w > 0 for w in supervision_weights(outputs))
    return tuple(labels[:, :: 2**i, :: 2**i, :: 2**i] for i in range(count))


# --- Accuracy.


def region_dice(predicted: Tensor, truth: Tensor) -> Tensor:
    """(n, 3) DICE of each sample's whole tumour, tumour core and enhancing tumour, label volumes (n, D, H, W) in;
    NaN where a region is empty in both (nnU-Net's evaluate_case). The regions' labels (1, 2, 3), (2, 3) and (3,)
    are the labels >= 1, 2 and 3."""
    thresholds = torch.arange(1, 4, device=predicted.device).view(1, 3, 1)
    p = predicted.flatten(1).unsqueeze(1) >= thresholds  # (n, 3, voxels)
    t = truth.flatten(1).unsqueeze(1) >= thresholds.to(truth.device)
    overlap = (p & t).sum(2).double()
    total = (p.sum(2) + t.sum(2)).double()
    return torch.where(total > 0, 2 * overlap / total, math.nan)


def mean_dice(predicted: Tensor, truth: Tensor) -> float:
    """MLPerf's accuracy: each region's DICE averaged over the samples where it is scored (not NaN), then the mean
    of the three regions (NaN if a region is empty in every sample, as MLPerf's would be)."""
    return float(region_dice(predicted, truth).nanmean(0).mean())


def dice_metric(model: nn.Module, batches: Iterable[Batch]) -> float:
    """The quality metric: `mean_dice` of the argmax labels over all held-out volumes at once."""
    predicted, truth = [], []
    for volumes, labels in batches:
        predicted.append(model(volumes).argmax(1))
        truth.append(labels)
    return mean_dice(torch.cat(predicted), torch.cat(truth))


def _answer(logits: Tensor, _: Preset) -> Tensor:
    return logits.argmax(1).to(torch.uint8)


def _score(answers: np.ndarray, labels: Tensor) -> float:
    return mean_dice(torch.from_numpy(answers.astype(np.int64)), labels.cpu())


#: Volumes served to LoadGen: each answer the per-voxel labels (uint8, the preset's patch), scored with `mean_dice`.
SEGMENTATION = Serving("mean DICE", answer=_answer, score=_score, dtype=torch.uint8)


# --- Synthetic data.


def smooth_field(count: int, channels: int, size: Sequence[int], cells: int, g: torch.Generator) -> Tensor:
    """(count, channels, *size) standard-normal noise on a coarse grid of `cells` per side, trilinearly
    interpolated: smooth random fields (blob distortions, bias fields)."""
    coarse = torch.randn(count, channels, cells, cells, cells, generator=g, device=g.device)
    return F.interpolate(coarse, size=tuple(size), mode="trilinear", align_corners=True)


def blobs(centres: Tensor, radii: Tensor, distortion: Tensor) -> Tensor:
    """(n, D, H, W) masks of axis-aligned ellipsoids, centres and radii (n, 3) in voxels, distorted by adding a field
    (n, D, H, W) to the ellipsoid equation's left side. Summed axis by axis: no coordinate grid is materialised."""
    total = distortion
    for axis, side in enumerate(distortion.shape[1:]):
        coordinate = torch.arange(side, device=centres.device)
        term = ((coordinate - centres[:, axis, None]) / radii[:, axis, None]).square()  # (n, side)
        total = total + term.view(-1, *(side if a == axis else 1 for a in range(3)))
    return total < 1


def tumour_volumes(p: Preset, count: int, device: torch.device, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """`count` volumes (count, 4, D, H, W) of the modalities and their labels (count, D, H, W), see the module
    docstring. The whole tumour's radii are p["radius"] (a range) of each side, the core's 55-80% of those, the
    enhancing part's 50-75% of the core's; an inner centre lies off its outer one by at most a third of the radii's
    difference."""
    size = torch.tensor(p["patch"], dtype=torch.float32, device=device)

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(count, 3, generator=g, device=device)

    whole_r = size * uniform(*p["radius"])
    whole_c = whole_r + (size - 2 * whole_r) * uniform(0, 1)
    core_r = whole_r * uniform(0.55, 0.8)
    core_c = whole_c + (whole_r - core_r) * uniform(-1, 1) / 3
    enh_r = core_r * uniform(0.5, 0.75)
    enh_c = core_c + (core_r - enh_r) * uniform(-1, 1) / 3
    distortion = p["distortion"] * smooth_field(count, 3, p["patch"], 4, g)
    whole = blobs(whole_c, whole_r, distortion[:, 0])
    core = whole & blobs(core_c, core_r, distortion[:, 1])
    enhancing = core & blobs(enh_c, enh_r, distortion[:, 2])
    labels = whole.long() + core.long() + enhancing.long()
    contrast = torch.tensor(CONTRAST, device=device)[labels].movedim(-1, 1)  # (count, 4, D, H, W)
    bias = (p["bias"] * smooth_field(count, 4, p["patch"], 3, g)).exp()
    noise = p["noise"] * torch.randn(contrast.shape, generator=g, device=device)
    images = (1 + contrast) * bias + noise
    mean, std = images.mean((2, 3, 4), keepdim=True), images.std((2, 3, 4), keepdim=True)
    return ((images - mean) / std).contiguous(), labels


def model(p: Preset) -> UNet3D:
    return UNet3D(p["filters"], p["in_channels"], p["classes"])


def build(setup: Setup) -> Supervised:
    p, batch, device = setup.preset, setup.batch_size, setup.device
    g = torch.Generator(device=device).manual_seed(0)
    # NDHWC where it was measured faster (the cpu preset: about 10% a training step on this 2-core CPU)
    layout = torch.channels_last_3d if p["channels_last"] else torch.contiguous_format

    def batches(count: int) -> list[tuple[Tensor, Tensor]]:
        made = (tumour_volumes(p, batch, device, g) for _ in range(count))
        return [(images.contiguous(memory_format=layout), labels) for images, labels in made]

    train, held_out = batches(p["batches"]), batches(2)  # held out: other random tumours
    outputs = len(p["filters"]) - 1
    return Supervised(
        setup,
        seeded(lambda: model(p)).to(memory_format=layout),
        [(images, downsampled(labels, outputs)) for images, labels in train],
        loss=deep_supervision_loss,
        # nnUNetTrainerV2: SGD with Nesterov momentum, weight decay 3e-5, gradient norm clipped at 12
        optimizer=lambda m: torch.optim.SGD(
            m.parameters(), lr=p["lr"], momentum=p["momentum"], nesterov=True, weight_decay=3e-5
        ),
        metric=dice_metric,
        held_out=held_out,
        clip=12.0,
    )


PRESETS = {
    # MLPerf's served volume (224 x 224 x 160) and nnU-Net's stages; nnUNetTrainerV2's optimiser.
    "real": {
        "patch": (224, 224, 160),
        "filters": (30, 60, 120, 240, 320, 320),
        "in_channels": 4,
        "classes": 4,
        "batches": 2,
        "lr": 0.01,
        "momentum": 0.99,
        "radius": (0.15, 0.3),
        "distortion": 0.3,
        "bias": 0.2,
        "noise": 0.4,
        "channels_last": False,
    },
    # 16^3 volumes, three stages of 8-32 filters; SGD with momentum 0.9 and lr 0.2 (nnU-Net's 0.99 and 0.01 take
    # hundreds of steps to move).
    "cpu": {
        "patch": (16, 16, 16),
        "filters": (8, 16, 32),
        "in_channels": 4,
        "classes": 4,
        "batches": 4,
        "lr": 0.2,
        "momentum": 0.9,
        "radius": (0.3, 0.45),
        "distortion": 0.3,
        "bias": 0.2,
        "noise": 0.4,
        "channels_last": True,
    },
}

register(
    Workload(
        name="unet3d",
        family="unet3d",
        task="training",
        unit="samples/s",
        description="MLPerf Inference v0.7 3D-UNet (nnU-Net 3d_fullres, BraTS 2019), SGD, synthetic MRI tumour volumes",
        presets=PRESETS,
        build=build,
        quality=Quality("mean DICE", target=0.8, max_steps=100, eval_every=5, real_target=0.853),
        serving=SEGMENTATION,
    )
)
