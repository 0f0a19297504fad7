"""gnmt: the cpu preset learns to reverse Markov sentences in fp32 and in bf16 autocast, and the real preset
builds MLPerf's GNMT v2."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_learns

from pytest_mlperf.data.wmt16 import EOS
from pytest_mlperf.run.precision import resolve
from pytest_mlperf.workloads import get, gnmt
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


def test_real_preset_is_mlperf_gnmt() -> None:
    # "MLPerf GNMT has 160671297 parameters" (NVIDIA's MLPerf GNMT distributed-optimizer tests, which list its
    # tensor shapes: vocabulary padded to 32320, hidden 1024, 4+4 LSTM layers).
    with torch.device("meta"):
        model = gnmt.model(get("gnmt").presets["real"])
    assert sum(p.numel() for p in model.parameters()) == 160_671_297
    assert model.encoder.rnn_layers[0].bidirectional
    assert len(model.encoder.rnn_layers) == 4 and len(model.decoder.rnn_layers) == 3
