"""Mila's fast_style benchmark: pytorch/examples/fast_neural_style (Johnson et al. 2016, "Perceptual Losses for
Real-Time Style Transfer and Super-Resolution"), as Mila's fast_neural_style/neural_style/pytorch runs it.

- TransformerNet (the example's transformer_net.py): reflection-padded convolutions 9x9 3->32, 3x3 stride 2 32->64 and
  3x3 stride 2 64->128, five residual blocks of two 3x3 128->128 convolutions, two nearest-neighbour x2 upsamplings
  each followed by a 3x3 convolution (128->64, 64->32), and a 9x9 convolution 32->3. Every convolution but the last
  is followed by an affine InstanceNorm, and by ReLU except the second of each residual block (which adds its input).
  Images in and out in 0-255. 1,679,235 parameters: the example publishes no count, this is the sum of its layers'
  weights, biases and InstanceNorm affines (checked in the test).
- Loss network: torchvision's VGG16 `features` up to relu4_3 (the example's vgg.py keeps slices 0-22; 7,635,264
  parameters), frozen, fed images divided by 255 and normalised with ImageNet's mean and std (normalize_batch).
  Content loss: content_weight (1e5) x the MSE between the output's and the input's relu2_2 features. Style loss:
  style_weight (1e10) x the sum over relu1_2, relu2_2, relu3_3 and relu4_3 of the MSE between the output's Gram
  matrices (F F^T / (c h w), utils.gram_matrix) and the style image's. Adam, lr 1e-3, on TransformerNet only.
- One item is one content image: Mila's rate is batch_size * number / time over the training loop.

Simplified, and why:
- ImageNet-pretrained VGG16 weights cannot be downloaded here and torchvision is not installable: `VGG16Features` is
  our plain-PyTorch `vgg16().features[:23]` with torchvision's module indices, hence its state_dict keys ("0.weight"
  ... "21.bias"). Its default weights are seeded-random: Kaiming normal (fan-in, ReLU gain, so activations keep their
  scale through the ten convolutions); random VGG features still carry the texture statistics Gram losses use
  (Ustyuzhaninov et al. 2017). Throughput does not depend on the weights. For the real loss network, name a local
  torchvision vgg16 state_dict file (vgg16-397923af.pth; keys with or without "features.") in the system file:
  `benchmarks.fast_neural_style.options.vgg16_weights: /path/to/vgg16-397923af.pth`.
- The published loss weights were tuned to pretrained VGG's feature magnitudes. The content loss grows as the square
  of the features, the style loss as their fourth power over the square of the channel count (Gram matrices divide by
  it), so the random network's scale decides which term counts. At the Kaiming scale, in the cpu preset, returning the
  style image for any input (content loss only) scores 1/400 of the identity mapping (style loss only): the network
  would learn to ignore its input. So the random network's first convolution (hence, with zero biases and positively
  homogeneous ReLU and max-pooling, every feature) is scaled by its width / 80 (0.1 for the cpu preset's 8 channels,
  0.8 for VGG16's 64), which puts that ratio at 0.23 in the cpu preset and 0.27 in the real one. (Half that scale would
  balance the two exactly, but then the content term, which the network learns slowest, dominates: in the cpu
  preset the loss was still at the identity mapping's after 100 steps.)
- The input's VGG features are computed under no_grad (the example runs them with autograd on but nothing requiring
  grad: the same work). Gram matrices and losses are computed in float32 outside autocast: at 256 px, relu1_2's Gram
  sums 65,536 products of pretrained activations that reach the hundreds, past float16's range.
- Data: content images are random smooth colour fields (`super_resolution.smooth_images`) in 0-255, each channel
  standardised (`content_batches` says why); the style image is a fixed random sum of coloured oriented gratings
  (`style_image`), generated at the training size as Mila's --style-size 64 matches its --image-size 64.

Presets: "real" is what Mila's run.sh trains (--image-size 64 --style-size 64: the configuration of the throughput
Mila's target, 156.75 img/s, measures; batch 32 to 256 in its baselines.json); "example" is pytorch/examples'
defaults (--image-size 256, --batch-size 4), 16 times the pixels per image; "cpu" is a narrow copy that steps in tens
of milliseconds.

Quality: the held-out perceptual loss (content + style with the published weights) of the stylised images divided by
the untrained network's (computed when the trainer is built; the network is seeded, so this unit is fixed per preset).
Why: it is the objective the example trains, on images not trained on, as a scale-free number (the loss itself moves
with the random VGG's magnitudes and the preset's widths), and the check must hold in every preset at its own lr. The
real preset, at the published lr 1e-3, spends its first hundred-odd steps learning its output's range and colours
(the untrained output is a near-black image): on the CPU at batch 2 its metric reaches 0.15 at about 50 steps and
0.055 at 150, while a constant grey image scores 0.10 and the identity mapping (each image returned unchanged) 0.02.
So the target, 0.15 within 150 steps, shows that the network learns, not that it stylises well: trivial outputs beat
it. The cpu preset, at its 10x lr, reaches it in about 15 steps and then goes on to stylise: its loss falls below
0.7 of the identity's, and below a grey image's, within about 60 steps (a test checks this). The example and Mila
publish no quality target (no real-data metric at all): real_target is None.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..run.training import Updater, autocast, cast, evaluating, prepare, seeded
from .registry import Preset, Quality, Setup, Workload, register
from .super_resolution import smooth_images

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvLayer(nn.Module):
    """Reflection padding then a convolution (the example's ConvLayer); `upsample` first scales the input by that
    factor with nearest-neighbour interpolation (its UpsampleConvLayer, which avoids ConvTranspose's checkerboard
    artefacts)."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, upsample: int | None = None) -> None:
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(kernel_size // 2)
        self.conv2d = nn.Conv2d(cin, cout, kernel_size, stride)

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    """conv-IN-ReLU-conv-IN plus the input (no ReLU after the sum), as the example's ResidualBlock."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.in2(self.conv2(F.relu(self.in1(self.conv1(x)))))


class TransformerNet(nn.Module):
    """The example's image transformation network; `widths` are its three feature widths (32, 64, 128)."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128), residual_blocks: int = 5) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.conv1 = ConvLayer(3, w1, 9)
        self.in1 = nn.InstanceNorm2d(w1, affine=True)
        self.conv2 = ConvLayer(w1, w2, 3, stride=2)
        self.in2 = nn.InstanceNorm2d(w2, affine=True)
        self.conv3 = ConvLayer(w2, w3, 3, stride=2)
        self.in3 = nn.InstanceNorm2d(w3, affine=True)
        self.res = nn.Sequential(*(ResidualBlock(w3) for _ in range(residual_blocks)))
        self.deconv1 = ConvLayer(w3, w2, 3, upsample=2)
        self.in4 = nn.InstanceNorm2d(w2, affine=True)
        self.deconv2 = ConvLayer(w2, w1, 3, upsample=2)
        self.in5 = nn.InstanceNorm2d(w1, affine=True)
        self.deconv3 = ConvLayer(w1, 3, 9)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.in1(self.conv1(x)))
        y = F.relu(self.in2(self.conv2(y)))
        y = F.relu(self.in3(self.conv3(y)))
        y = self.res(y)
        y = F.relu(self.in4(self.deconv1(y)))
        y = F.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


class Features(NamedTuple):
    relu1_2: Tensor
    relu2_2: Tensor
    relu3_3: Tensor
    relu4_3: Tensor


class VGG16Features(nn.Sequential):
    """torchvision's `vgg16().features[:23]`: conv-ReLU pairs in blocks of 2, 2, 3, 3 convolutions of `widths`
    (64, 128, 256, 512) channels, max-pooled between blocks, ending at relu4_3. Same module indices, hence the same
    state_dict keys; `forward` returns the four ReLU outputs the example's Vgg16 taps."""

    BLOCKS = (2, 2, 3, 3)

    def __init__(self, widths: Sequence[int] = (64, 128, 256, 512)) -> None:
        layers: list[nn.Module] = []
        taps = []
        cin = 3
        for i, (convs, width) in enumerate(zip(self.BLOCKS, widths, strict=True)):
            if i:
                layers.append(nn.MaxPool2d(2, 2))
            for _ in range(convs):
                layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
                cin = width
            taps.append(len(layers) - 1)
        super().__init__(*layers)
        self.taps = taps  #: indices of relu1_2, relu2_2, relu3_3, relu4_3
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Features:
        taps = []
        for i, layer in enumerate(self):
            x = layer(x)
            if i in self.taps:
                taps.append(x)
        return Features(*taps)

    def load_torchvision(self, path: str | Path) -> None:
        """Load the convolutions from a torchvision vgg16 state_dict file (the whole model's, keys "features.N.*", or
        its `features`', keys "N.*"); the classifier and the layers past relu4_3 are ignored."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k.removeprefix("features."): v for k, v in state.items() if not k.startswith("classifier.")}
        self.load_state_dict({k: v for k, v in state.items() if int(k.split(".")[0]) < len(self)})


def gram(features: Tensor) -> Tensor:
    """F F^T / (c h w) per image (utils.gram_matrix), in float32. Channels-last features are (b, h, w, c) in
    memory, so the (b, hw, c) view costs no copy."""
    b, c, h, w = features.shape
    f = features.float().permute(0, 2, 3, 1).reshape(b, h * w, c)
    return f.transpose(1, 2).bmm(f) / (c * h * w)


class Loss(NamedTuple):
    content: Tensor  #: weighted
    style: Tensor  #: weighted

    @property
    def total(self) -> Tensor:
        return self.content + self.style


def perceptual_loss(
    output: Features, content: Features, style_grams: Sequence[Tensor], content_weight: float, style_weight: float
) -> Loss:
    """The example's training loss, in float32 and outside autocast (see the module docstring)."""
    with torch.autocast(output.relu2_2.device.type, enabled=False):
        content_loss = F.mse_loss(output.relu2_2.float(), content.relu2_2.float())
        grams = map(gram, output)
        style_loss = torch.stack([F.mse_loss(g, s.expand_as(g)) for g, s in zip(grams, style_grams, strict=True)])
    return Loss(content_weight * content_loss, style_weight * style_loss.sum())


#: Detail of the synthetic content images: random values on grids of cells this large (pixels), upsampled.
CONTENT_CELLS = (16, 8, 4)
#: Standard deviation of every content image's channels, in 0-1 units.
CONTENT_STD = 0.2


def content_batches(p: Preset, batch_size: int, count: int, device: torch.device, seed: int = 0) -> list[Tensor]:
    """`count` batches of smooth random colour images in 0-255 (the example's ToTensor().mul(255) range), each
    channel of each image standardised to mean 0.5 and standard deviation CONTENT_STD before scaling. Why: the
    TransformerNet's first InstanceNorm discards every image's per-channel mean and contrast, so content carried by
    them could never be reproduced; the content left to learn is the images' spatial structure."""
    g = torch.Generator(device=device).manual_seed(seed)
    batches = []
    for _ in range(count):
        images = smooth_images(batch_size, 3, p["image_size"], device, g, CONTENT_CELLS)
        mean, std = images.mean((2, 3), keepdim=True), images.std((2, 3), keepdim=True)
        batches.append(((images - mean) / std * CONTENT_STD + 0.5).clamp(0, 1) * 255)
    return batches


def style_image(size: int, device: torch.device, seed: int = 1, gratings: int = 3) -> Tensor:
    """A (1, 3, size, size) 0-255 texture: `gratings` sinusoidal gratings of random orientation, period (4 to 12
    pixels), phase and colour, summed and squashed by a sigmoid. Periodic, oriented and coloured where the content
    images are smooth: its Gram matrices are far from theirs, so the network has a style to learn."""
    g = torch.Generator(device=device).manual_seed(seed)
    angle = torch.rand(gratings, 1, 1, generator=g, device=device) * math.pi
    period = 4 + 8 * torch.rand(gratings, 1, 1, generator=g, device=device)
    phase = torch.rand(gratings, 1, 1, generator=g, device=device) * 2 * math.pi
    colour = torch.randn(gratings, 3, generator=g, device=device)
    coords = torch.arange(size, device=device, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    waves = torch.sin(2 * math.pi * (xx * angle.cos() + yy * angle.sin()) / period + phase)
    return torch.sigmoid(torch.einsum("kc,khw->chw", colour, waves))[None] * 255


#: Factor on the random loss network's first convolution, hence (zero biases, ReLU and max-pooling being positively
#: homogeneous) on all its features, per channel of its first block: 0.1 for the cpu preset's 8, 0.8 for VGG16's 64.
#: See the module docstring.
FEATURE_SCALE_PER_CHANNEL = 1 / 80


def loss_network(p: Preset) -> VGG16Features:
    """The frozen VGG16 features: torchvision's weights from p["vgg16_weights"] when set, else seeded-random."""
    vgg = seeded(lambda: VGG16Features(p["vgg_widths"]), seed=1)
    if p.get("vgg16_weights"):
        vgg.load_torchvision(p["vgg16_weights"])
    else:
        with torch.no_grad():
            vgg[0].weight.mul_(FEATURE_SCALE_PER_CHANNEL * p["vgg_widths"][0])
    return vgg.requires_grad_(False)


class FastNeuralStyle:
    """Trainer of TransformerNet through the frozen VGG16 loss network; one step = one batch of content images."""

    def __init__(self, setup: Setup) -> None:
        p, device = setup.preset, setup.device
        self.transformer = prepare(seeded(lambda: TransformerNet(p["widths"], p["residual_blocks"])), setup, True)
        self.vgg = prepare(loss_network(p), setup, channels_last=True)
        self.weights = p["content_weight"], p["style_weight"]
        # utils.normalize_batch's constants, made once on the device (no host-to-device copy per step).
        self.mean = cast(torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), setup)
        self.std = cast(torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), setup)
        self.autocast = autocast(setup)
        images = content_batches(p, setup.batch_size, p["batches"] + 2, device)
        images = [cast(b, setup, channels_last=True) for b in images]
        self.batches, self.held_out = images[:-2], images[-2:]
        # The style image at the training size: Mila's run.sh passes --style-size 64 with --image-size 64 (the
        # example's default keeps the style image's own size, which changes only these one-off targets).
        style = cast(style_image(p["image_size"], device), setup, channels_last=True)
        with torch.no_grad(), self.autocast:
            self.style_grams = [gram(f) for f in self.vgg(self.normalize(style))]
            #: the untrained network's held-out loss, the unit of the quality metric
            self.untrained = float(self.held_out_loss(self.transformer))
        self.update = Updater(torch.optim.Adam(self.transformer.parameters(), p["lr"], fused=True), setup)
        self.items_per_step = setup.batch_size
        self.steps = 0

    def normalize(self, images: Tensor) -> Tensor:
        """0-255 images to ImageNet-normalised VGG inputs (utils.normalize_batch)."""
        return (images / 255 - self.mean) / self.std

    def loss(self, x: Tensor, y: Tensor) -> Loss:
        """The loss of output `y` for content images `x`; no graph through `x`'s features (nothing needs one)."""
        with torch.no_grad():
            content = self.vgg(self.normalize(x))
        return perceptual_loss(self.vgg(self.normalize(y)), content, self.style_grams, *self.weights)

    def step(self) -> Tensor:
        x = self.batches[self.steps % len(self.batches)]
        self.steps += 1
        with self.autocast:
            loss = self.loss(x, self.transformer(x)).total
        self.update(loss)
        return loss.detach()

    def held_out_loss(self, transform: Callable[[Tensor], Tensor]) -> Tensor:
        """Mean total loss of `transform` over the held-out batches (call under no_grad)."""
        return torch.stack([self.loss(x, transform(x)).total for x in self.held_out]).mean()

    def evaluate(self) -> float:
        with evaluating(self.transformer, self.autocast):
            return float(self.held_out_loss(self.transformer)) / self.untrained


def build(setup: Setup) -> FastNeuralStyle:
    return FastNeuralStyle(setup)


#: neural_style.py's defaults, which Mila's run.sh keeps: TransformerNet's widths, loss weights, Adam's lr.
PUBLISHED = {"widths": (32, 64, 128), "residual_blocks": 5, "content_weight": 1e5, "style_weight": 1e10, "lr": 1e-3}
#: torchvision's VGG16 up to relu4_3; seeded-random weights unless a system file names torchvision's in its options.
VGG16 = {"vgg_widths": (64, 128, 256, 512), "vgg16_weights": None}

register(
    Workload(
        name="fast_neural_style",
        family="fast_neural_style",
        task="training",
        unit="img/s",
        description="Mila fast_style: pytorch/examples fast neural style, TransformerNet + VGG16 perceptual loss, Adam",
        presets={
            # Mila's run.sh: neural_style.py train --image-size 64 --style-size 64 (batch 32-256, baselines.json).
            "real": {**PUBLISHED, **VGG16, "image_size": 64, "batches": 4},
            # pytorch/examples' neural_style.py defaults: --image-size 256, --batch-size 4.
            "example": {**PUBLISHED, **VGG16, "image_size": 256, "batches": 4},
            # A quarter of TransformerNet's widths, an eighth of VGG's (same depths), 32 px; a 10x lr: at the
            # published 1e-3 the target takes this narrow network about 140 of its 150 steps.
            "cpu": {
                **PUBLISHED,
                "widths": (8, 16, 32),
                "vgg_widths": (8, 16, 32, 64),
                "vgg16_weights": None,
                "lr": 1e-2,
                "image_size": 32,
                "batches": 4,
            },
        },
        build=build,
        # See the module docstring; neither the example nor Mila has a quality target: no real_target.
        quality=Quality(
            "held-out perceptual loss / the untrained network's",
            target=0.15,
            max_steps=150,
            eval_every=5,
            higher_is_better=False,
        ),
    )
)
