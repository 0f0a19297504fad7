"""The tacotron2 workload (NVIDIA DeepLearningExamples Tacotron 2, Lambda's Tacotron2 column): registration, frames
per step, the synthetic character spectrograms, learning in fp32 and bf16, the float32 recurrence under CPU bf16
autocast, and the real preset's model and shapes."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_learns, assert_losses_fall

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.workloads import tacotron2
from pytest_mlperf.workloads.layers import cpu_bf16_unsupported
from pytest_mlperf.workloads.registry import Setup, get

CPU = torch.device("cpu")
BATCH = 8
WORKLOAD = get("tacotron2")
PRESET = WORKLOAD.presets["cpu"]


def build(precision: str = "fp32", batch: int = BATCH) -> tacotron2.Tacotron2Trainer:
    torch.manual_seed(0)
    return WORKLOAD.build(Setup(PRESET, batch, CPU, resolve(precision, CPU)))


def test_registration() -> None:
    assert (WORKLOAD.name, WORKLOAD.family, WORKLOAD.task, WORKLOAD.unit) == (
        "tacotron2",
        "tacotron2",
        "training",
        "mel frames/s",
    )
    assert set(WORKLOAD.presets) == {"cpu", "real"}
    assert not WORKLOAD.quality.higher_is_better
    assert WORKLOAD.quality.real_target is None  # Lambda's runs are throughput only


def test_items_per_step_counts_unpadded_mel_frames() -> None:
    # Texts of 6, 6, 5, 5, 4, 4, 3, 3 characters (evenly spread, longest first) of 3 frames each.
    assert tacotron2.text_lengths(PRESET, BATCH).tolist() == [6, 6, 5, 5, 4, 4, 3, 3]
    assert build().items_per_step == 36 * PRESET["frames_per_char"]


def test_mel_is_the_characters_spectra_held_in_a_row() -> None:
    (b,) = tacotron2.text_mel_batches(PRESET, 4, 1, seed=1)
    per_char, sounds = PRESET["frames_per_char"], tacotron2.spectra(PRESET)
    assert b.text.shape == (4, 6) and b.mel.shape == (4, PRESET["n_mel"], 6 * per_char)
    assert torch.equal(b.text_mask, b.text == tacotron2.PAD) and torch.equal(b.mel_mask.sum(1), b.text_lengths * 3)
    # Texts use the voiced symbols only; each character is its symbol's steady spectrum for frames_per_char frames
    # (padding is silence), and the stop token is set from the last real frame on.
    assert int(b.text[~b.text_mask].min()) >= 1 and int(b.text.max()) <= PRESET["voiced"]
    frames = b.mel.transpose(1, 2).unflatten(1, (6, per_char))  # B, T_in, per_char, n_mel
    assert torch.equal(frames, sounds[b.text][:, :, None].expand_as(frames))
    assert (frames[b.text_mask] == 0).all()
    last = b.text_lengths[-1] * per_char - 1
    assert b.gate[-1, last - 1] == 0 and (b.gate[-1, last:] == 1).all()


def test_spectra_are_coarse_envelopes_of_the_real_preset_s_mel_channels() -> None:
    p = WORKLOAD.presets["real"]
    sounds = tacotron2.spectra(p)
    assert sounds.shape == (148, 80) and (sounds[tacotron2.PAD] == 0).all()
    # 8 bands of 10 adjacent channels; the voiced symbols all sound different.
    assert torch.equal(sounds, sounds[:, ::10].repeat_interleave(10, 1))
    assert len(sounds[1 : p["voiced"] + 1].unique(dim=0)) == p["voiced"]


@pytest.mark.parametrize("batch", [2, 36, 256])
def test_pool_covers_the_symbols_and_the_held_out_texts_are_the_same_for_every_batch(batch: int) -> None:
    p = WORKLOAD.reduced("real")  # texts of 1 character: the most batches
    trainer = WORKLOAD.build(Setup(p, batch, CPU, resolve("fp32", CPU)))
    characters = sum(int(b.text_lengths.sum()) for b in trainer.batches)
    assert characters >= p["pool_chars"] and len(trainer.batches) >= p["batches"]
    (held,) = trainer.held_out
    (reference,) = WORKLOAD.build(Setup(p, 3, CPU, resolve("fp32", CPU))).held_out
    assert torch.equal(held.text, reference.text) and int(held.text_lengths.sum()) >= p["held_out_chars"]


@pytest.mark.parametrize("preset", ["cpu", "real"])
def test_target_is_below_the_best_constant_answer(preset: str) -> None:
    """The quality target cannot be met by predicting each mel channel's mean frame: the model must tell the
    symbols apart."""
    p = WORKLOAD.presets[preset]
    (held,) = tacotron2.text_mel_batches(p, 64, 1, seed=2)
    frames = held.mel.transpose(1, 2)[held.mel_mask]  # real frames, n_mel
    constant = float(frames.var(0, correction=0).mean())
    assert WORKLOAD.quality.target < constant - 0.25, constant


def test_learns_in_fp32() -> None:
    trainer = build()
    assert_learns(trainer, WORKLOAD.quality, trainer.model)


def test_bf16_losses_are_finite_and_fall() -> None:
    trainer = build("bf16", batch=4)
    assert_losses_fall(trainer, 30, 5)


def test_recurrent_cells_run_in_float32_where_cpu_bf16_autocast_cannot() -> None:
    cell = tacotron2.LSTMCell(6, 4)
    x, h, c = torch.randn(3, 6), torch.zeros(3, 4), torch.zeros(3, 4)
    reference = torch.nn.LSTMCell.forward(cell, x, (h, c))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hidden, _ = cell(x.bfloat16(), (h, c))
        if not cpu_bf16_unsupported(x):
            pytest.skip("this CPU has bf16 instructions: its recurrent layers run in bf16")
    assert hidden.dtype == torch.float32
    torch.testing.assert_close(hidden, reference[0], atol=2e-2, rtol=0)


def test_real_preset_is_dle_tacotron2() -> None:
    p = WORKLOAD.presets["real"]
    with torch.device("meta"):  # shapes only
        model = tacotron2.model(p)
    # embedding 148x512; 3 encoder convs 512x512x5 + bias + BatchNorm; BiLSTM 2 x (4x256x(512+256) + 2x4x256);
    # prenet 80x256 + 256x256; attention LSTMCell 4x1024x(768+1024) + 2x4096; attention query 1024x128, memory
    # 512x128, v 128, location conv 2x32x31 and dense 32x128; decoder LSTMCell 4x1024x(1536+1024) + 2x4096; mel
    # and gate projections from 1536; postnet 80->512->512->512->512->80, kernel 5, with BatchNorm.
    parts = [148 * 512, 3 * (512 * 512 * 5 + 512 + 1024), 2 * (4 * 256 * 768 + 2048), 80 * 256 + 256 * 256]
    parts += [4 * 1024 * 1792 + 8192, 1024 * 128 + 512 * 128 + 128 + 2 * 32 * 31 + 32 * 128, 4 * 1024 * 2560 + 8192]
    parts += [1536 * 80 + 80, 1536 + 1, 80 * 512 * 5 + 1536 + 3 * (512 * 512 * 5 + 1536) + 512 * 80 * 5 + 240]
    assert sum(q.numel() for q in model.parameters()) == sum(parts) == 28_193_153
    # LJSpeech-like batches: 40-160 characters of 6 frames, 80 mel channels.
    (b,) = tacotron2.text_mel_batches(p, 2, 1, seed=1)
    assert b.text.shape == (2, 160) and b.mel.shape == (2, 80, 960) and int(b.mel_mask.sum()) == 1200
    # The real-width model on a short text.
    (short,) = tacotron2.text_mel_batches({**p, "min_text": 3, "max_text": 4}, 2, 1, seed=1)
    short = short.to(torch.device("meta"), torch.float32)
    mel, post, gate, alignments = model(short.text, short.text_lengths, short.text_mask, short.mel)
    assert mel.shape == post.shape == (2, 80, 24) and gate.shape == (2, 24) and alignments.shape == (2, 24, 4)


def test_attention_ignores_padding() -> None:
    trainer = build(batch=4)
    b = trainer.held_out[0]
    with torch.no_grad():
        alignments = trainer.model(b.text, b.text_lengths, b.text_mask, b.mel)[3]  # B, T_out, T_in
    torch.testing.assert_close(alignments.sum(2), torch.ones(alignments.shape[:2]))
    assert (alignments.transpose(1, 2)[b.text_mask] == 0).all()
