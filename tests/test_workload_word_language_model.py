"""word_language_model: the cpu preset learns its Markov text in fp32 and in bf16 autocast, and the real preset
builds the example's medium LSTM."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_learns

from pytest_mlperf.run.precision import resolve
from pytest_mlperf.workloads import get
from pytest_mlperf.workloads import word_language_model as wlm
from pytest_mlperf.workloads.registry import Setup, Trainer

CPU = torch.device("cpu")
WORKLOAD = "word_language_model"
BATCH = 20  # the example's batch size


def build(precision: str) -> Trainer:
    workload = get("word_language_model")
    return workload.build(Setup(workload.presets["cpu"], BATCH, CPU, resolve(precision, CPU)))


def test_registered() -> None:
    workload = get("word_language_model")
    assert (workload.family, workload.task, workload.unit) == ("lstm", "training", "tok/s")
    assert set(workload.presets) == {"cpu", "real"}
    assert not workload.quality.higher_is_better


def test_items_per_step_is_batch_times_bptt() -> None:
    assert build("fp32").items_per_step == BATCH * get("word_language_model").presets["cpu"]["bptt"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cpu_preset_learns_to_the_target(precision: str) -> None:
    assert_learns(build(precision), get(WORKLOAD).quality)


def test_real_preset_is_the_medium_lstm() -> None:
    # The example publishes no parameter count; this is its layers' closed form for Wikitext-2's 33278 words:
    # embedding V*650 + 2 LSTM layers 4*650*(650 + 650 + 2) + decoder 650*V + V = 50,065,078 (untied).
    with torch.device("meta"):
        model = wlm.model(get("word_language_model").presets["real"])
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(50_065_078, rel=0.01)
    assert model.rnn.num_layers == 2 and model.rnn.hidden_size == 650
