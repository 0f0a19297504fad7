"""transformer: the cpu preset learns to reverse Markov sentences in fp32 and in bf16 autocast, and the real
preset builds MLPerf's Transformer big."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_learns

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.workloads import get, transformer
from pytest_mlperf.workloads.registry import Setup, Trainer

CPU = torch.device("cpu")
WORKLOAD = "transformer"
BATCH = 320  # tokens per batch, as --max-tokens: 32 sentence pairs of 10 tokens


def build(precision: str, batch: int = BATCH) -> Trainer:
    workload = get("transformer")
    return workload.build(Setup(workload.presets["cpu"], batch, CPU, resolve(precision, CPU)))


def test_registered() -> None:
    workload = get("transformer")
    assert (workload.family, workload.task, workload.unit) == ("transformer", "training", "tok/s")
    assert set(workload.presets) == {"cpu", "real"}
    assert workload.quality.real_target == 25.0  # MLPerf's BLEU target


def test_items_per_step_counts_target_tokens_of_whole_sentences() -> None:
    seq_len = get("transformer").presets["cpu"]["seq_len"]
    assert build("fp32").items_per_step == BATCH
    # A token budget that does not divide into sentences counts only the sentences that fit.
    assert build("fp32", BATCH + seq_len - 1).items_per_step == BATCH


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_preset_learns_to_the_target(precision: str) -> None:
    assert_learns(build(precision), get(WORKLOAD).quality)


def test_real_preset_is_transformer_big() -> None:
    # Vaswani et al. 2017, Table 3: Transformer (big) has 213M parameters with a 37000-token shared vocabulary;
    # MLPerf's 33708-token vocabulary makes 3.4M fewer embedding weights (210.9M).
    with torch.device("meta"):
        model = transformer.model(get("transformer").presets["real"])
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(213e6, rel=0.03)
    assert len(model.encoder) == len(model.decoder) == 6
    assert model.embed.weight.shape == (33708, 1024)
