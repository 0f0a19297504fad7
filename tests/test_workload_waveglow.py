"""The waveglow workload (NVIDIA DeepLearningExamples WaveGlow, Lambda's WaveGlow column): registration, audio samples
per step, the synthetic mel/audio pairs, the likelihood at initialisation, learning (and using the mel) in fp32,
learning in bf16, and the real and paper presets' sizes and shapes."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from helpers import assert_learns

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.quality import converge
from pytest_mlperf.run.training import Supervised
from pytest_mlperf.workloads import waveglow
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
BATCH = 8
WORKLOAD = get("waveglow")
PRESET = WORKLOAD.presets["cpu"]


def build(precision: str = "fp32", batch: int = BATCH) -> Supervised:
    return WORKLOAD.build(Setup(PRESET, batch, CPU, resolve(precision, CPU)))


def test_registration() -> None:
    assert (WORKLOAD.name, WORKLOAD.family, WORKLOAD.task, WORKLOAD.unit) == (
        "waveglow",
        "waveglow",
        "training",
        "audio samples/s",
    )
    assert set(WORKLOAD.presets) == {"cpu", "real", "paper"}
    assert not WORKLOAD.quality.higher_is_better
    assert WORKLOAD.quality.real_target is None  # Lambda's runs are throughput only


def test_items_per_step_counts_audio_samples() -> None:
    assert build(batch=3).items_per_step == 3 * PRESET["segment_length"]


def test_mel_holds_the_amplitudes_of_the_audio_tones() -> None:
    quiet = {**PRESET, "noise": 0.0}
    speech = waveglow.ToneSpeech(quiet, CPU)
    ((mel, audio), target), *_ = speech.batches(4, 1, seed=1)
    assert target is audio and audio.shape == (4, 1024) and mel.shape == (4, 8, 1024 // 32 + 1)
    # The tones' channels hold the amplitudes of `active` tones per frame; the channels after them are silent.
    tones = PRESET["tones"]
    assert ((mel[:, :tones] > 0).sum(1) == PRESET["active"]).all() and mel.max() <= PRESET["amplitude"]
    assert (mel[:, tones:] == 0).all()
    # Same mel, same audio: the audio is a function of the mel (but for the noise).
    ((mel2, audio2), _), *_ = speech.batches(4, 1, seed=1)
    assert torch.equal(mel2, mel) and torch.equal(audio2, audio)
    # The noise is what the preset says.
    ((_, noisy), _), *_ = waveglow.ToneSpeech(PRESET, CPU).batches(4, 1, seed=1)
    assert 0.8 * PRESET["noise"] < float((noisy - audio).std()) < 1.2 * PRESET["noise"]


@pytest.mark.parametrize("batch", [2, 48])
def test_pool_covers_its_frames_and_the_held_out_audio_is_the_same_for_every_batch(batch: int) -> None:
    p = WORKLOAD.reduced("real")  # the shortest segments: the most batches
    trainer = WORKLOAD.build(Setup(p, batch, CPU, resolve("fp32", CPU)))
    assert len(trainer.batches) * batch * waveglow.frames(p) >= p["pool_frames"] and len(trainer.batches) >= 4
    ((mel, _), _), *rest = trainer.held_out
    ((reference, _), _), *_ = WORKLOAD.build(Setup(p, 3, CPU, resolve("fp32", CPU))).held_out
    assert not rest and torch.equal(mel, reference) and len(mel) * waveglow.frames(p) >= p["held_out_frames"]


@pytest.mark.parametrize("preset", ["cpu", "real"])
def test_target_is_below_the_best_gaussian_of_the_audio(preset: str) -> None:
    """The audio has about unit mean square, so untrained flows (rotations) score about 0.5, as does the best
    Gaussian that ignores the mel and the audio's structure (0.5 + log(rms)): the target needs a model of the audio."""
    p = WORKLOAD.presets[preset]
    ((_, audio), _), *_ = waveglow.ToneSpeech(p, CPU).batches(-(-p["held_out_frames"] // waveglow.frames(p)), 1, 2)
    gaussian = 0.5 + 0.5 * math.log(float(audio.square().mean()))
    assert 0.4 < gaussian < 0.6 and WORKLOAD.quality.target < gaussian - 0.15, gaussian


def test_untrained_flows_are_rotations() -> None:
    """The coupling layers start as the identity and the 1x1 convolutions as rotations, so the loss at
    initialisation is the audio's mean square over 2 (with sigma 1): z = W x keeps the norm, log det W = 0."""
    trainer = build()
    (mel, audio), _ = trainer.batches[0]
    with torch.no_grad():
        for conv in trainer.model.convinv:
            w = conv.conv.weight.squeeze(2)
            torch.testing.assert_close(w @ w.T, torch.eye(len(w)), atol=1e-5, rtol=0)
            assert float(torch.linalg.det(w)) > 0
        loss = waveglow.waveglow_loss(trainer.model(mel, audio))
    torch.testing.assert_close(loss, audio.square().mean() / 2, atol=1e-5, rtol=1e-4)


def test_learns_in_fp32_and_uses_the_mel() -> None:
    trainer = build()
    assert_learns(trainer, WORKLOAD.quality, trainer.model)
    # The flows first learn the audio from its own other half; trained further, to -0.5 (the mel tells the audio
    # but for its noise: 0.5 + log(0.01) = -4.1 is the floor), they rely on the mel too: with each audio paired
    # with another item's mel, the likelihood falls.
    assert converge(trainer, replace(WORKLOAD.quality, target=-0.5), 0).reached
    mismatched = [((mel.roll(1, 0), audio), audio) for (mel, audio), _ in trainer.held_out]
    with torch.no_grad():
        assert waveglow.nll(trainer.model, mismatched) > trainer.evaluate() + 0.25


def test_learns_in_bf16() -> None:
    result = converge(build("bf16", batch=4), WORKLOAD.quality, 0)
    assert result.reached, result


def test_real_and_paper_presets() -> None:
    real, paper = WORKLOAD.presets["real"], WORKLOAD.presets["paper"]
    with torch.device("meta"):  # shapes only
        models = {name: waveglow.model(WORKLOAD.presets[name]) for name in ("real", "paper")}
        z, log_s, log_det = models["paper"](torch.empty(2, 80, waveglow.frames(paper)), torch.empty(2, 16000))
    # DLE's default 512 WN channels (what Lambda trains), and the paper's 256 (WaveGlow's published 87.9M).
    counts = {name: sum(q.numel() for q in model.parameters()) for name, model in models.items()}
    assert counts == {"real": 268_294_760, "paper": 87_879_272}
    assert math.isclose(counts["paper"] / 1e6, 87.9, abs_tol=0.05)
    # 8-sample groups; 2 channels leave after flows 4 and 8, so the couplings transform 4, 3, then 2 channels.
    assert paper["segment_length"] == 16000 and z.shape == (2, 8, 16000 // 8)
    assert [s.shape[1] for s in log_s] == [4] * 4 + [3] * 4 + [2] * 4 and len(log_det) == 12
    assert real["segment_length"] == 8000 and waveglow.frames(real) == 32  # hop 256, centred STFT
