"""Mila's dcgan benchmark: PyTorch's examples/dcgan (Radford et al. 2015, "Unsupervised Representation Learning with
Deep Convolutional Generative Adversarial Networks") on 64x64 ImageNet images.

pytorch/examples/dcgan/main.py (and Mila's generative_adversarial_networks/dcgan/pytorch/main.py copy of it):

- Generator: z (nz=100, as a 1x1 image) -> ConvTranspose 4x4 to ngf*8 x 4x4, then ConvTranspose 4x4 stride 2 halving
  the channels and doubling the size (ngf*4 x 8x8, ngf*2 x 16x16, ngf x 32x32), each with BatchNorm and ReLU, and a
  last ConvTranspose to 3 x 64x64 with tanh. Discriminator: the mirror image, Conv 4x4 stride 2 with LeakyReLU(0.2)
  (BatchNorm from the second layer on), ndf -> ndf*8, and a 4x4 Conv to one logit. No biases; weights N(0, 0.02),
  BatchNorm weights N(1, 0.02). ngf = ndf = 64. Both optimised by Adam(lr 2e-4, betas (0.5, 0.999)).
- One iteration: D update on a real batch (label 1) and a generated batch (label 0, generator detached), then G update
  on the same generated batch labelled 1 (the non-saturating loss). Binary cross-entropy.

The example's discriminator ends in a Sigmoid and uses BCELoss; here it returns the logit and the loss is
`binary_cross_entropy_with_logits`, the same function, numerically safer and the only form autocast allows.

With the published sizes the generator has 3,576,704 parameters and the discriminator 2,765,568 (the weights of the
layers above, plus BatchNorm's weight and bias per channel).

Data: real images are a few fixed smooth colour templates (`super_resolution.smooth_images`, scaled to the [-1, 1] of
the example's Normalize((0.5,) * 3, (0.5,) * 3)) plus a little Gaussian noise, a learnable stand-in for ImageNet.

Quality: the discriminator's accuracy at telling held-out real images (the templates with fresh noise) from as many
look-alikes (fresh smooth colour images drawn like the templates, with the same noise), discriminator in eval mode,
logit > 0 meaning real. It starts near chance and reaches 0.9 only once the discriminator has learnt what the real
data looks like, which is the signal the generator is trained on. Why not a measure of the generator's samples (the
distance from generated images to the nearest real image, or the mean generated image): at the example's lr 2e-4
the generator needs far more steps than a CPU test can afford to draw anything like the data (in our trials that
distance had not moved after 300 steps, on one template or several, while the discriminator reached 0.9 in about
50), and a larger lr would no longer be the published optimiser.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..run.training import Updater, autocast, cast, prepare
from .registry import Preset, Quality, Setup, Workload, register
from .super_resolution import smooth_images


def upsamplings(image_size: int) -> int:
    """Stride-2 layers between the 4x4 first feature map and the image (4 for 64x64)."""
    n = int(math.log2(image_size)) - 2
    if n < 1 or 4 * 2**n != image_size:
        raise ValueError(f"DCGAN image sizes are powers of two from 8 on, not {image_size}")
    return n


class Generator(nn.Module):
    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, image_size: int = 64) -> None:
        super().__init__()
        n = upsamplings(image_size)
        width = ngf * 2 ** (n - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(nz, width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2)]
            layers.append(nn.ReLU(True))
            width //= 2
        layers += [nn.ConvTranspose2d(width, nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        self.apply(weights_init)

    def forward(self, z: Tensor) -> Tensor:
        return self.main(z)


class Discriminator(nn.Module):
    def __init__(self, ndf: int = 64, nc: int = 3, image_size: int = 64) -> None:
        super().__init__()
        n = upsamplings(image_size)
        layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        width = ndf
        for _ in range(n - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2)]
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            width *= 2
        layers.append(nn.Conv2d(width, 1, 4, 1, 0, bias=False))  # the logit; the example's Sigmoid is in the loss
        self.main = nn.Sequential(*layers)
        self.apply(weights_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x).view(-1)


def weights_init(m: nn.Module) -> None:
    """The example's weights_init: convolutions N(0, 0.02), BatchNorm weight N(1, 0.02) and bias 0."""
    if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def models(p: Preset) -> tuple[Generator, Discriminator]:
    return Generator(p["nz"], p["ngf"], 3, p["image_size"]), Discriminator(p["ndf"], 3, p["image_size"])


def smooth_colour_images(p: Preset, count: int, device: torch.device, generator: torch.Generator) -> Tensor:
    """`count` random smooth colour images in [-1, 1] (detail on cells of 1/2, 1/4 and 1/8 of the image side)."""
    size = p["image_size"]
    return smooth_images(count, 3, size, device, generator, (size // 2, size // 4, size // 8)) * 2 - 1


def real_batches(p: Preset, batch_size: int, count: int, device: torch.device, seed: int = 0) -> list[Tensor]:
    """`count` batches of real images: one of p["templates"] fixed smooth colour images each, plus Gaussian noise of
    standard deviation p["noise"], clamped to [-1, 1]."""
    g = torch.Generator(device=device).manual_seed(seed)
    templates = smooth_colour_images(p, p["templates"], device, g)
    batches = []
    for _ in range(count):
        images = templates[torch.randint(p["templates"], (batch_size,), generator=g, device=device)]
        batches.append((images + torch.randn(images.shape, generator=g, device=device) * p["noise"]).clamp(-1, 1))
    return batches


def impostors(p: Preset, count: int, device: torch.device, seed: int = 1) -> Tensor:
    """Look-alikes of the real images: fresh smooth colour images (drawn like the templates, but not one of them)
    with the same noise. Telling them from real images needs the discriminator to know the data's templates."""
    g = torch.Generator(device=device).manual_seed(seed)
    images = smooth_colour_images(p, count, device, g)
    return (images + torch.randn(images.shape, generator=g, device=device) * p["noise"]).clamp(-1, 1)


def discriminator_accuracy(discriminator: nn.Module, real: Tensor, fake: Tensor) -> float:
    """Fraction of images the discriminator classes right: logit > 0 for `real`, < 0 for `fake`, in one forward.

    Could move to metrics.py for other adversarial workloads."""
    logits = discriminator(torch.cat([real, fake])).float()
    correct = (logits[: len(real)] > 0).sum() + (logits[len(real) :] < 0).sum()
    return float(correct) / len(logits)


class DCGAN:
    """Trainer of a generator and a discriminator: one step = one D update and one G update, as the example."""

    def __init__(self, setup: Setup) -> None:
        p, batch, device = setup.preset, setup.batch_size, setup.device
        generator, discriminator = models(p)
        self.generator = prepare(generator, setup, channels_last=True)
        self.discriminator = prepare(discriminator, setup, channels_last=True)
        batches = [cast(b, setup, channels_last=True) for b in real_batches(p, batch, p["batches"] + 2, device)]
        self.real = batches[:-2]
        # Held out: real images of other noise and template draws, and as many look-alikes.
        self.held_out = torch.cat(batches[-2:])
        self.impostors = cast(impostors(p, len(self.held_out), device), setup, channels_last=True)
        self.batch_size, self.nz = batch, p["nz"]
        # Each step's z is drawn on the device (no host sync); a seeded generator keeps runs reproducible.
        self.noise = torch.Generator(device=device).manual_seed(2)
        self.ones = torch.ones(batch, device=device)
        self.zeros = torch.zeros(batch, device=device)
        betas = (p["beta1"], 0.999)
        self.update_d = Updater(torch.optim.Adam(self.discriminator.parameters(), p["lr"], betas, fused=True), setup)
        self.update_g = Updater(torch.optim.Adam(self.generator.parameters(), p["lr"], betas, fused=True), setup)
        self.autocast = autocast(setup)
        # items = real images: Mila's train item rate is batch_size * number / time, and each iteration of the
        # example consumes one batch of real images (the generated batch of the same size is not counted).
        self.items_per_step = batch
        self.steps = 0

    def step(self) -> Tensor:
        real = self.real[self.steps % len(self.real)]
        self.steps += 1
        z = torch.randn(self.batch_size, self.nz, 1, 1, generator=self.noise, device=real.device, dtype=real.dtype)
        # (1) D: maximise log D(x) + log(1 - D(G(z))), the generated batch detached from G; real and generated
        # batches go through D separately, as in the example (BatchNorm statistics per batch).
        with self.autocast:
            fake = self.generator(z)
            loss_real = F.binary_cross_entropy_with_logits(self.discriminator(real).float(), self.ones)
            loss_fake = F.binary_cross_entropy_with_logits(self.discriminator(fake.detach()).float(), self.zeros)
            loss_d = loss_real + loss_fake
        self.update_d(loss_d)
        # (2) G: maximise log D(G(z)) through the updated D. D's weight gradients are not needed (the example
        # computes them and zeroes them before the next D update), so D is frozen meanwhile.
        self.discriminator.requires_grad_(False)
        try:
            with self.autocast:
                loss_g = F.binary_cross_entropy_with_logits(self.discriminator(fake).float(), self.ones)
            self.update_g(loss_g)
        finally:
            self.discriminator.requires_grad_(True)
        return (loss_d + loss_g).detach()

    def evaluate(self) -> float:
        self.discriminator.eval()
        try:
            with torch.no_grad(), self.autocast:
                return discriminator_accuracy(self.discriminator, self.held_out, self.impostors)
        finally:
            self.discriminator.train()


def build(setup: Setup) -> DCGAN:
    return DCGAN(setup)


register(
    Workload(
        name="dcgan",
        family="dcgan",
        task="training",
        unit="img/s",
        description="Mila dcgan: pytorch/examples DCGAN, 64x64, Adam 2e-4 (0.5, 0.999), synthetic smooth templates",
        presets={
            # pytorch/examples/dcgan main.py defaults, as Mila runs it (--imageSize 64, batch from the system file):
            # nz 100, ngf 64, ndf 64, lr 0.0002, beta1 0.5.
            "real": {
                "image_size": 64,
                "nz": 100,
                "ngf": 64,
                "ndf": 64,
                "lr": 2e-4,
                "beta1": 0.5,
                "templates": 8,
                "noise": 0.05,
                "batches": 4,
            },
            # 16x16 images (two stride-2 layers fewer), a quarter of the widths, a shorter z; the same optimiser.
            "cpu": {
                "image_size": 16,
                "nz": 16,
                "ngf": 16,
                "ndf": 16,
                "lr": 2e-4,
                "beta1": 0.5,
                "templates": 4,
                "noise": 0.05,
                "batches": 4,
            },
        },
        build=build,
        # The example and Mila set no quality target (no FID or Inception score): no real_target.
        quality=Quality("discriminator accuracy, held-out real vs look-alike images", target=0.9, max_steps=150),
    )
)
