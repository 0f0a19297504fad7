"""Mila's "reso" benchmark: PyTorch's examples/super_resolution, the efficient sub-pixel convolution network (ESPCN).

Shi et al. 2016, "Real-Time Single Image and Video Super-Resolution Using an Efficient Sub-Pixel Convolutional Neural
Network", as pytorch/examples/super_resolution/model.py implements it (and Mila's
super_resolution/subpixel_convolution/pytorch copy): on the luminance (Y) channel only, conv 5x5 1->64, conv 3x3
64->64, conv 3x3 64->32 (each followed by ReLU), conv 3x3 32->r^2 and a PixelShuffle(r) that rearranges those r^2
channels into an r-times larger image; orthogonal initialisation (ReLU gain for the first three). MSE loss, Adam. The
training pairs are BSDS images center-cropped to 256 - 256 % r pixels (255 for r = 3) as targets, and the same crop
resized to 1/r (85x85) as inputs; the test metric is the mean over test batches of PSNR = 10 log10(1 / MSE) in dB
(pixels in [0, 1]).

With r = 3 the network has 59,657 parameters: 1,664 + 36,928 + 18,464 + 2,601 (weights and biases of the four
convolutions of model.py).

Data: `smooth_images`, random smooth luminance fields (a sum of bicubically upsampled noise at a few scales, squashed
into [0, 1]); the input is the target downsampled by r with an antialiased bilinear filter, as PIL's Resize does.
Recovering the fine scales from the coarse ones is what the network learns; the held-out images are other draws of
the same distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..run.training import Batch, Supervised
from .registry import Preset, Quality, Setup, Workload, register


class ESPCN(nn.Module):
    """pytorch/examples/super_resolution's `Net`; `widths` are the three hidden layers' channels (64, 64, 32)."""

    def __init__(self, upscale_factor: int, widths: Sequence[int] = (64, 64, 32)) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.conv1 = nn.Conv2d(1, w1, 5, padding=2)
        self.conv2 = nn.Conv2d(w1, w2, 3, padding=1)
        self.conv3 = nn.Conv2d(w2, w3, 3, padding=1)
        self.conv4 = nn.Conv2d(w3, upscale_factor**2, 3, padding=1)
        self.pixel_shuffle = nn.PixelShuffle(upscale_factor)
        gain = nn.init.calculate_gain("relu")
        for conv in (self.conv1, self.conv2, self.conv3):
            nn.init.orthogonal_(conv.weight, gain)
        nn.init.orthogonal_(self.conv4.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return self.pixel_shuffle(self.conv4(x))


def model(p: Preset) -> ESPCN:
    return ESPCN(p["upscale_factor"], p["widths"])


def crop_size(p: Preset) -> int:
    """The example's calculate_valid_crop_size: the largest multiple of the upscale factor up to the crop."""
    return p["crop"] - p["crop"] % p["upscale_factor"]


def smooth_images(
    count: int, channels: int, size: int, device: torch.device, generator: torch.Generator, cells: Sequence[int]
) -> Tensor:
    """`count` random smooth images (count, channels, size, size) in (0, 1): for each cell size in pixels (largest
    first), Gaussian noise on a grid of cells that large, bicubically upsampled, weighted by the cell size relative to
    the largest (fine detail is fainter, as in natural images), summed and squashed by a sigmoid. The statistics per
    pixel do not depend on `size`, so a large and a small preset see the same kind of images.

    Not specific to super-resolution (dcgan.py uses it for its image templates); could move to synthetic.py."""
    field = torch.zeros(count, channels, size, size, device=device)
    for cell in cells:
        grid = max(math.ceil(size / cell), 1)
        coarse = torch.randn(count, channels, grid, grid, generator=generator, device=device)
        field += F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False) * (cell / cells[0])
    return torch.sigmoid(field)


#: Detail of the synthetic images: random values on grids of cells this large (pixels of the high-resolution target),
#: upsampled. On them (both presets), predicting each image's mean gives about 13.5 dB PSNR, nearest-neighbour
#: upsampling of the input 31-32 dB, bicubic 39 dB.
CELLS = (24, 12, 6, 3)


def super_resolution_batches(
    p: Preset, batch_size: int, count: int, device: torch.device, seed: int = 0
) -> list[Batch]:
    """`count` batches of (low-resolution input, high-resolution target), both luminance in (0, 1)."""
    g = torch.Generator(device=device).manual_seed(seed)
    size = crop_size(p)
    low = size // p["upscale_factor"]
    batches = []
    for _ in range(count):
        target = smooth_images(batch_size, 1, size, device, g, CELLS)
        inputs = F.interpolate(target, size=(low, low), mode="bilinear", antialias=True, align_corners=False)
        batches.append((inputs, target))
    return batches


def psnr(model: nn.Module, batches: Sequence[Batch]) -> float:
    """Mean over held-out batches of 10 log10(1 / MSE) in dB, as the example's test(), in float32.

    Could move to metrics.py for any image-restoration workload."""
    mse = torch.stack([F.mse_loss(model(x).float(), y.float()) for x, y in batches])
    return float((10 * torch.log10(1 / mse)).mean())


def build(setup: Setup) -> Supervised:
    p = setup.preset
    batches = super_resolution_batches(p, setup.batch_size, p["batches"] + 2, setup.device)
    return Supervised(
        setup,
        model(p),
        batches[:-2],
        loss=lambda out, target: F.mse_loss(out.float(), target.float()),
        optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=p["lr"], fused=True),
        metric=psnr,
        held_out=batches[-2:],
        # items = images: Mila's train item rate is batch_size * number / time, one crop per sample.
        channels_last=True,
    )


register(
    Workload(
        name="super_resolution",
        family="super_resolution",
        task="training",
        unit="img/s",
        description="Mila reso: pytorch/examples ESPCN sub-pixel convolution net, x3, Adam, smooth synthetic images",
        presets={
            # pytorch/examples/super_resolution README: main.py --upscale_factor 3 --lr 0.001 (batch from the system
            # file); data.py: crops of 256 - 256 % 3 = 255 pixels, inputs 85x85; model.py widths 64, 64, 32. (Mila's
            # baselines.json ran the same script with --upscale_factor 2 --lr 0.1.)
            "real": {
                "upscale_factor": 3,
                "crop": 256,
                "widths": (64, 64, 32),
                "batches": 4,
                "lr": 0.001,
            },
            # Half the widths, 48x48 targets from 16x16 inputs, a higher lr so that the target is reached sooner.
            "cpu": {
                "upscale_factor": 3,
                "crop": 48,
                "widths": (32, 32, 16),
                "batches": 4,
                "lr": 0.003,
            },
        },
        build=build,
        # 25 dB: far above the untrained network (about 6 dB) and the images' means (13.5 dB), short of
        # nearest-neighbour upsampling (31-32 dB), which this network passes only after hundreds of steps. The example
        # and Mila set no PSNR target: no real_target.
        quality=Quality("held-out PSNR (dB)", target=25.0, max_steps=120, eval_every=5),
    )
)
