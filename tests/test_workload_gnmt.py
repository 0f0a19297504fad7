"""gnmt: the cpu preset learns to reverse Markov sentences in fp32 and in bf16 autocast, the real preset's task
covers its words at every batch, its metric leaves out the EOS, and the real preset builds MLPerf's GNMT v2."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_learns

from pytest_mlperf.data.wmt16 import EOS
from pytest_mlperf.run.precision import resolve
from pytest_mlperf.workloads import get, gnmt
from pytest_mlperf.workloads.metrics import teacher_forced_accuracy
from pytest_mlperf.workloads.registry import Setup, Trainer
from pytest_mlperf.workloads.synthetic import reversal_pairs

CPU = torch.device("cpu")
WORKLOAD = "gnmt"
BATCH = 32  # sentence pairs


def build(precision: str) -> Trainer:
    workload = get("gnmt")
    return workload.build(Setup(workload.presets["cpu"], BATCH, CPU, resolve(precision, CPU)))


def test_registered() -> None:
    workload = get("gnmt")
    assert (workload.family, workload.task, workload.unit) == ("gnmt", "training", "tok/s")
    assert set(workload.presets) == {"cpu", "real"}
    assert workload.quality.real_target == 24.0  # MLPerf's BLEU target


def test_items_per_step_counts_source_and_target_tokens() -> None:
    # NVIDIA's Tok/s: source BOS + words + EOS (seq_len) plus target tokens less one (seq_len - 1) per pair.
    seq_len = get("gnmt").presets["cpu"]["seq_len"]
    assert build("fp32").items_per_step == BATCH * (2 * seq_len - 1)


def test_reversal_pairs() -> None:
    (src, tgt), *_ = reversal_pairs(32, 6, 4, 3, CPU)
    assert src.shape == tgt.shape == (4, 7)
    assert (src[:, -1] == EOS).all() and (tgt[:, -1] == EOS).all()
    assert torch.equal(tgt[:, :-1], src[:, :-1].flip(1))
    assert src[:, :-1].min() >= 4


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_preset_learns_to_the_target(precision: str) -> None:
    assert_learns(build(precision), get(WORKLOAD).quality)


@pytest.mark.parametrize("batch", [108, 1520])
def test_real_task_covers_16_words_of_the_vocabulary(batch: int) -> None:
    """At the smallest and largest shipped batches: 1024 or more training sentences and 256 or more held-out ones,
    over the same 16 words of the real vocabulary."""
    p = get("gnmt").presets["real"]
    batches = gnmt.translation_batches(p, batch, CPU)
    held = -(-p["held_out"] // batch)
    labels = [y for _, y in batches]
    assert sum(y.size(1) for y in labels[:-held]) >= 1024 and sum(y.size(1) for y in labels[-held:]) >= 256
    words = torch.cat([y.flatten() for y in labels]).unique()
    assert words[0] == EOS and len(words) == 17 and int(words[1]) >= 4 and int(words[-1]) < p["vocab"]


class Constant(torch.nn.Module):
    """Logits with the highest score on `token` at every position."""

    def __init__(self, token: int) -> None:
        super().__init__()
        self.token = token

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.full_like(tgt_in, self.token), 32).float()


def test_word_accuracy_leaves_out_the_eos() -> None:
    batches = [gnmt.layout(src, tgt) for src, tgt in reversal_pairs(32, 3, 4, 2, CPU)]
    assert gnmt.word_accuracy(Constant(EOS), batches) == 0.0  # a quarter of the labels, none of the words
    assert teacher_forced_accuracy(Constant(EOS), batches) == 0.25


def test_real_preset_is_mlperf_gnmt() -> None:
    # "MLPerf GNMT has 160671297 parameters" (NVIDIA's MLPerf GNMT distributed-optimizer tests, which list its
    # tensor shapes: vocabulary padded to 32320, hidden 1024, 4+4 LSTM layers).
    with torch.device("meta"):
        model = gnmt.model(get("gnmt").presets["real"])
    assert sum(p.numel() for p in model.parameters()) == 160_671_297
    assert model.encoder.rnn_layers[0].bidirectional
    assert len(model.encoder.rnn_layers) == 4 and len(model.decoder.rnn_layers) == 3
