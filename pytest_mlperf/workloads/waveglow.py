"""WaveGlow (Prenger et al. 2018, "WaveGlow: A Flow-based Generative Network for Speech Synthesis") as NVIDIA
DeepLearningExamples PyTorch/SpeechSynthesis/Tacotron2 trains it (waveglow/model.py, loss_function.py,
arg_parser.py), the code behind Lambda's WaveGlow column.

- Audio is cut into groups of 8 samples (n_group), the mel spectrogram upsampled to the audio rate by a transposed
  convolution (kernel 1024, stride 256 = the STFT hop) and grouped the same way (80 x 8 = 640 channels).
- 12 flows; after every 4th, 2 channels leave as early outputs (8 -> 6 -> 4 channels). Each flow: an invertible
  1x1 convolution (initialised to a random rotation, log-determinant added to the likelihood) and an affine
  coupling layer whose scale and shift come from a WaveNet-like network (WN) on the first half of the channels and
  the mel: 8 layers of dilated (1, 2, ..., 128) kernel-3 convolutions with gated tanh-sigmoid units, residual and
  skip 1x1 convolutions, weight normalisation, and a last 1x1 convolution initialised to zero (each flow starts as
  the identity).
- Loss (WaveGlowLoss, sigma 1.0): the negative log-likelihood of the audio, sum(z^2) / (2 sigma^2) - sum(log s) -
  sum(log det W), divided by the number of audio samples; per sample, without the Gaussian's 0.5 log(2 pi).
  Adam lr 1e-4, no weight decay; Lambda's gradient clip (65504) never acts, so none here.

Sizes. DLE trains with 512 WN channels by default (arg_parser.py, and its README: "Our implementation uses 512
residual channels in the coupling layer") on segments of 8000 samples (the README's training-performance commands).
Lambda's config files pass --segment-length 8000 and no --wn-channels, so the "real" preset is that model:
268,294,760 parameters. WaveGlow's paper model and NVIDIA's released checkpoints (NVIDIA/waveglow's config.json,
DLE's waveglow256pyt) use 256 channels: 87,879,272 parameters (weight normalisation's gains included), the published
87.9M; the "paper" preset is that model, on NVIDIA/waveglow's 16000-sample segments.

Throughput unit: audio samples/s. DLE's waveglow/data_function.py counts a batch's items as sum(len(audio)), i.e.
batch x segment length.

Synthetic data (`ToneSpeech`): `tones` (7) of the 80 mel channels stand for sinusoids, harmonics 1-7 of a
`tone_period`-sample (64) fundamental at fixed phases; the other channels are silent. Each mel frame turns `active`
(2) random tones on at `amplitude`, and the audio is the tones' sum, their amplitudes interpolated linearly between
frames, plus Gaussian noise (0.01): about unit mean square. Given the mel the audio is known but for the noise; the
flows learn to predict each half of the channels from the mel and the other half. The pool holds at least
`pool_frames` mel frames (and `batches` batches), so that small batches cycle through enough data not to memorise
it; the held-out batch holds `held_out_frames` frames, drawn from its own seed, the same for every batch size.

Simplifications: the mel is the synthetic one above, not an STFT of the audio (which would make it a function of
the audio rather than the audio of it); the frames are DLE's count for a segment (segment // hop + 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from ..run.training import Batch, Supervised, forward, seeded
from .registry import Preset, Quality, Setup, Workload, register


class Invertible1x1Conv(nn.Module):
    """z -> W z over channels, W initialised to a random rotation (determinant +1); returns log|det W| times the
    number of group positions it was applied to."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 1, bias=False)
        w = torch.linalg.qr(torch.randn(channels, channels))[0]
        w[:, 0] *= torch.linalg.det(w).sign()  # a rotation, not a reflection (works on the meta device too)
        with torch.no_grad():
            self.conv.weight.copy_(w.unsqueeze(2))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        batch, _, groups = z.shape
        log_det = batch * groups * torch.logdet(self.conv.weight.squeeze(2).float())
        return self.conv(z), log_det


class WN(nn.Module):
    """The coupling network: non-causal WaveNet layers, dilation doubling per layer, conditioned on the mel."""

    def __init__(self, in_channels: int, mel_channels: int, layers: int, channels: int, kernel: int) -> None:
        super().__init__()
        self.channels = channels
        self.start = weight_norm(nn.Conv1d(in_channels, channels, 1))
        self.in_layers = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, 2 * channels, kernel, dilation=2**i, padding=(kernel - 1) * 2**i // 2))
            for i in range(layers)
        )
        self.cond_layers = nn.ModuleList(weight_norm(nn.Conv1d(mel_channels, 2 * channels, 1)) for _ in range(layers))
        # The last layer has no residual half.
        self.res_skip_layers = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, 2 * channels if i < layers - 1 else channels, 1)) for i in range(layers)
        )
        self.end = nn.Conv1d(channels, 2 * in_channels, 1)
        nn.init.zeros_(self.end.weight)
        nn.init.zeros_(self.end.bias)

    def forward(self, audio: Tensor, mel: Tensor) -> Tensor:
        audio = self.start(audio)
        output = torch.zeros_like(audio)
        last = len(self.in_layers) - 1
        for i, (in_layer, cond_layer, res_skip) in enumerate(
            zip(self.in_layers, self.cond_layers, self.res_skip_layers, strict=True)
        ):
            act = in_layer(audio) + cond_layer(mel)
            acts = res_skip(torch.tanh(act[:, : self.channels]) * torch.sigmoid(act[:, self.channels :]))
            if i < last:
                audio = audio + acts[:, : self.channels]
                acts = acts[:, self.channels :]
            output = output + acts
        return self.end(output)


class WaveGlow(nn.Module):
    def __init__(self, p: Preset) -> None:
        super().__init__()
        n_mel, group = p["n_mel"], p["n_group"]
        # DLE hard-codes kernel 1024 and stride 256 (the STFT hop): 4 hops and 1 hop.
        self.upsample = nn.ConvTranspose1d(n_mel, n_mel, 4 * p["hop"], stride=p["hop"])
        self.n_group, self.early_every, self.early_size = group, p["early_every"], p["early_size"]
        self.convinv = nn.ModuleList()
        self.WN = nn.ModuleList()
        remaining = group
        for k in range(p["n_flows"]):
            if k % self.early_every == 0 and k > 0:
                remaining -= self.early_size
            self.convinv.append(Invertible1x1Conv(remaining))
            self.WN.append(WN(remaining // 2, n_mel * group, p["wn_layers"], p["wn_channels"], p["wn_kernel"]))

    def forward(self, mel: Tensor, audio: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """mel (B, n_mel, frames), audio (B, samples) -> z (B, n_group, samples / n_group), the coupling layers'
        log-scales and the 1x1 convolutions' log-determinants."""
        mel = self.upsample(mel)[:, :, : audio.size(1)]
        mel = mel.unfold(2, self.n_group, self.n_group).permute(0, 2, 1, 3).flatten(2).transpose(1, 2)
        audio = audio.unfold(1, self.n_group, self.n_group).transpose(1, 2)
        outputs, log_s_list, log_det_list = [], [], []
        for k, (convinv, wn) in enumerate(zip(self.convinv, self.WN, strict=True)):
            if k % self.early_every == 0 and k > 0:
                outputs.append(audio[:, : self.early_size])
                audio = audio[:, self.early_size :]
            audio, log_det = convinv(audio)
            half = audio.size(1) // 2
            shift_scale = wn(audio[:, :half], mel)
            log_s = shift_scale[:, half:]
            audio = torch.cat([audio[:, :half], torch.exp(log_s) * audio[:, half:] + shift_scale[:, :half]], 1)
            log_s_list.append(log_s)
            log_det_list.append(log_det)
        outputs.append(audio)
        return torch.cat(outputs, 1), log_s_list, log_det_list


def waveglow_loss(outputs: tuple[Tensor, Sequence[Tensor], Sequence[Tensor]], sigma: float = 1.0) -> Tensor:
    """DLE's WaveGlowLoss in float32: the negative log-likelihood per audio sample."""
    z, log_s_list, log_det_list = outputs
    z = z.float()
    log_s = sum(s.float().sum() for s in log_s_list)
    log_det = sum(d.float() for d in log_det_list)
    return ((z * z).sum() / (2 * sigma * sigma) - log_s - log_det) / z.numel()


def frames(p: Preset) -> int:
    """Mel frames of a segment, as DLE's centred STFT makes them."""
    return p["segment_length"] // p["hop"] + 1


class ToneSpeech:
    """The synthetic speech (see the module's docstring): tone c < p["tones"] is harmonic c + 1 of a fundamental of
    p["tone_period"] samples, at a fixed random phase; mel channels from p["tones"] on are silent."""

    def __init__(self, p: Preset, device: torch.device) -> None:
        self.p, self.device = p, device
        phases = torch.rand(p["tones"], generator=torch.Generator(device=device).manual_seed(0), device=device)
        cycles = torch.arange(1, p["tones"] + 1, device=device)[:, None] / p["tone_period"]
        t = torch.arange(p["segment_length"], device=device)
        self.waves = torch.sin(2 * math.pi * (cycles * t + phases[:, None]))  # tones, segment

    def batches(self, size: int, count: int, seed: int) -> list[Batch]:
        """`count` batches of ((mel, audio), audio): mel (size, n_mel, frames), audio (size, segment). Each frame
        turns p["active"] random tones on at uniform(0, 1) x p["amplitude"]; the audio is the tones' sum, their
        amplitudes interpolated linearly between frames, plus Gaussian noise of p["noise"]."""
        p, device = self.p, self.device
        g = torch.Generator(device=device).manual_seed(seed)
        batches: list[Batch] = []
        for _ in range(count):
            scores = torch.rand(size, p["tones"], frames(p), generator=g, device=device)
            on = scores >= scores.topk(p["active"], dim=1).values[:, -1:]
            levels = on * p["amplitude"]
            mel = F.pad(levels, (0, 0, 0, p["n_mel"] - p["tones"]))
            envelope = F.interpolate(levels, scale_factor=p["hop"], mode="linear", align_corners=False)
            audio = (envelope[:, :, : p["segment_length"]] * self.waves).sum(1)
            audio = audio + torch.randn(audio.shape, generator=g, device=device) * p["noise"]
            batches.append(((mel, audio), audio))
        return batches


def nll(model: nn.Module, batches: Sequence[Batch]) -> float:
    """Mean WaveGlowLoss over held-out batches."""
    return float(torch.stack([waveglow_loss(forward(model, inputs)) for inputs, _ in batches]).mean())


def model(p: Preset) -> WaveGlow:
    return WaveGlow(p)


def build(setup: Setup) -> Supervised:
    p = setup.preset
    speech = ToneSpeech(p, setup.device)
    # At least p["pool_frames"] frames to train on and p["held_out_frames"] to evaluate on, whatever the batch and
    # segment: small batches cycle through enough data not to memorise it, and every case evaluates on the same
    # held-out batch.
    pool = max(p["batches"], -(-p["pool_frames"] // (setup.batch_size * frames(p))))
    batches = speech.batches(setup.batch_size, pool, seed=1)
    held_out = speech.batches(-(-p["held_out_frames"] // frames(p)), 1, seed=2)
    return Supervised(
        setup,
        seeded(lambda: model(p)),
        batches,
        loss=lambda outputs, _: waveglow_loss(outputs),
        optimizer=lambda m: torch.optim.Adam(m.parameters(), lr=p["lr"], fused=True),
        metric=nll,
        held_out=held_out,
        # DLE's num_items: sum(len(audio)), every sample of every segment.
        items_per_step=setup.batch_size * p["segment_length"],
    )


#: The published architecture; presets differ in WN width, segment length and the synthetic data.
ARCHITECTURE = {
    "n_mel": 80,
    "n_flows": 12,
    "hop": 256,
    "n_group": 8,
    "early_every": 4,
    "early_size": 2,
    "wn_layers": 8,
    "wn_kernel": 3,
}
SIGNAL = {"tones": 7, "tone_period": 16, "active": 2, "amplitude": 1.15, "noise": 0.01}
POOL = {"batches": 4, "pool_frames": 1024, "held_out_frames": 128}

register(
    Workload(
        name="waveglow",
        family="waveglow",
        task="training",
        unit="audio samples/s",
        description="WaveGlow (NVIDIA DeepLearningExamples), 12 flows, Adam 1e-4, synthetic sinusoid audio from mels",
        presets={
            # What Lambda runs: DLE's defaults (512 WN channels) and its README's 8000-sample segments.
            "real": {
                **ARCHITECTURE,
                "wn_channels": 512,
                "segment_length": 8000,
                **SIGNAL,
                "lr": 1e-4,
                **POOL,
            },
            # WaveGlow's paper model and NVIDIA's released checkpoints: 256 channels, 16000-sample segments.
            "paper": {
                **ARCHITECTURE,
                "wn_channels": 256,
                "segment_length": 16000,
                **SIGNAL,
                "lr": 1e-4,
                **POOL,
            },
            # 8 mel channels, 4 flows (2 channels out after the 2nd), 3 WN layers of 16 channels, 1024-sample
            # segments. Hop 32 instead of 256: on a CPU the upsampler's transposed convolution with DLE's 1024-wide
            # kernel alone takes about 100 ms. lr 1e-3 (target in about 20 steps): at DLE's 1e-4 such narrow layers
            # take about 130 of the 150 steps.
            "cpu": {
                "n_mel": 8,
                "hop": 32,
                "n_flows": 4,
                "n_group": 8,
                "early_every": 2,
                "early_size": 2,
                "wn_layers": 3,
                "wn_channels": 16,
                "wn_kernel": 3,
                "segment_length": 1024,
                **SIGNAL,
                "lr": 1e-3,
                **POOL,
            },
        },
        build=build,
        # For the walk of the shipped cases (tests/test_quality_reach.py): 8 mel channels (the 7 tones' and a
        # silent one; the real mel's other 73 are silent too), 32-sample segments at hop 32 (the same tones; the pool
        # and the held-out batch keep their frames), and a narrower, shallower model: 128 WN channels, 4 flows (2
        # channels out after the 2nd), 2 WN layers. At Adam's 1e-4 a step moves a narrower, shallower network's
        # output less, so the reduced model is the slower learner (see the report of issue 15 for the check by hand).
        reductions={
            "n_mel": 8,
            "hop": 32,
            "segment_length": 32,
            "wn_channels": 128,
            "n_flows": 4,
            "early_every": 2,
            "wn_layers": 2,
        },
        # Untrained flows (rotations) score half the audio's mean square, about 0.5; so does the best Gaussian that
        # ignores the mel and the audio's structure (0.5 + log(rms)); the noise floor is 0.5 + log(0.01) = -4.1.
        # 0.3 takes predicting each half of the channels, first from the other half, then from the mel too (see the
        # test). With only `reductions` applied the real preset reaches it in 45-60 steps at every shipped batch
        # (2-48), at DLE's lr 1e-4; the cpu preset in about 20. Lambda's runs measure throughput only: no real_target.
        quality=Quality(
            "held-out negative log-likelihood per audio sample", target=0.3, max_steps=150, higher_is_better=False
        ),
    )
)
