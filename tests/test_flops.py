"""FLOPs per item, counted by PyTorch's FlopCounterMode plus our recurrent-kernel formulas, and the peaks they are
read against: datasheet figures for known GPUs, a measured matmul on the CPU."""

from __future__ import annotations

import pytest
import torch
from helpers import system
from torch import nn

from pytest_mlperf.resources import peaks
from pytest_mlperf.resources.peaks import Peak, cpu_peak, gpu_peak, math_mode, peak
from pytest_mlperf.run.flops import RNN_FORMULAS, Work, counted, lower_roof
from pytest_mlperf.run.precision import resolve

CPU = torch.device("cpu")


def test_linear_step_counts_forward_and_both_backward_matmuls() -> None:
    layer = nn.Linear(16, 8)
    x = torch.randn(4, 16, requires_grad=True)

    def step() -> torch.Tensor:
        loss = layer(x).sum()
        loss.backward()
        return loss.detach()

    loss, flops = counted(step)
    assert loss.shape == () and flops == 3 * 2 * 4 * 16 * 8  # forward, grad of the input, grad of the weight


def test_cpu_lstm_is_counted_through_our_formula() -> None:
    """nn.LSTM on a CPU dispatches to oneDNN's mkldnn_rnn_layer, which FlopCounterMode alone counts as free."""
    lstm = nn.LSTM(8, 16, num_layers=2)
    x = torch.randn(5, 3, 8)

    def step() -> torch.Tensor:
        out, _ = lstm(x)
        out.sum().backward()
        return out.detach().sum()

    # per layer 2 x (T x B) x (4H x I + 4H x H); backward twice the forward
    forward = 2 * 5 * 3 * (64 * 8 + 64 * 16 + 64 * 16 + 64 * 16)
    assert counted(step)[1] == 3 * forward


def test_cudnn_rnn_formula_counts_every_layer_and_direction() -> None:
    """The cuDNN kernels cannot run here: their formulas are checked on argument shapes as cuDNN's op receives them
    (flat weight list of w_ih, w_hh, b_ih, b_hh per layer and direction)."""
    weights = [(64, 8), (64, 16), (64,), (64,), (64, 8), (64, 16), (64,), (64,)]  # 1 layer, bidirectional
    forward = RNN_FORMULAS[torch.ops.aten._cudnn_rnn]((5, 3, 8), weights)
    assert forward == 2 * 15 * 2 * (64 * 8 + 64 * 16)
    assert RNN_FORMULAS[torch.ops.aten._cudnn_rnn_backward]((5, 3, 8), weights) == 2 * forward
    assert RNN_FORMULAS[torch.ops.aten._cudnn_rnn]((15, 8), weights) == forward  # a packed sequence


@pytest.mark.parametrize(
    ("name", "precision", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "fp32", 66.9),
        ("NVIDIA H100 80GB HBM3", "amp", 989.4),
        ("NVIDIA H100 PCIe", "tf32", 378.0),
        ("NVIDIA A100-SXM4-80GB", "tf32", 156.0),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
        ("Tesla V100-SXM2-16GB", "amp", 125.0),
        ("Tesla V100-PCIE-32GB", "fp32", 14.0),
        ("NVIDIA GeForce RTX 2080 Ti", "fp16", 53.8),
        ("NVIDIA TITAN RTX", "amp", 130.0),
    ],
)
def test_gpu_peaks_follow_the_datasheets(name: str, precision: str, tflops: float) -> None:
    peak = gpu_peak(name, resolve(precision, torch.device("cuda")))  # resolve() needs no GPU
    assert peak is not None and peak.flops == pytest.approx(tflops * 1e12) and "datasheet" in peak.source


def test_unknown_gpu_or_math_has_no_peak() -> None:
    assert gpu_peak("Some Future GPU", resolve("fp32", CPU)) is None
    assert gpu_peak("Tesla V100-SXM2-16GB", resolve("bf16", CPU)) is None  # no bf16 tensor cores on Volta
    assert math_mode(resolve("amp", CPU)) == "bf16"  # on a CPU amp is bfloat16 autocast


def test_cpu_peak_is_measured() -> None:
    peak = cpu_peak(torch.float32, size=256)
    assert peak.flops > 1e8 and peak.source.startswith("measured: 256x256 float32 matmul")


def test_cpu_bf16_peak_is_the_faster_of_fp32_and_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    measured = {torch.float32: Peak(2e11, "fp32"), torch.bfloat16: Peak(5e10, "bf16")}
    monkeypatch.setattr(peaks, "cpu_peak", lambda dtype: measured[dtype])
    assert peak(CPU, resolve("amp", CPU)) == peak(CPU, resolve("fp32", CPU)) == measured[torch.float32]
    measured[torch.bfloat16] = Peak(4e11, "bf16")  # a CPU with bf16 instructions
    assert peak(CPU, resolve("amp", CPU)) == measured[torch.bfloat16]


def test_the_lower_roof_of_before_and_after_the_run_is_kept() -> None:
    """A host whose load grew during the run is judged against its roof at its busiest; a datasheet's or a
    workload's own roof stays."""
    before = Work(1e6, 2e11, "measured before")
    assert lower_roof(before, Peak(5e10, "measured: 1024x1024 ..."), 2) == Work(
        1e6, 1e11, "measured: 1024x1024 ..., after the run"
    )
    assert lower_roof(before, Peak(3e11, "measured: quieter"), 1) == before
    assert lower_roof(before, None, 1) == before
    own = Work(1.0, 500.0, "decoding", unit="decoded image")
    assert lower_roof(own, Peak(1.0, "x"), 1) == own


def test_results_carry_flops_and_fraction_of_peak(project) -> None:
    project.add_system(system())
    project.run("--system=toy").assert_outcomes(passed=1)
    (record,) = project.results()
    # the toy is Linear(8, 1) on inputs without grad: forward and weight-gradient matmuls, 2 x 8 FLOPs each
    assert record["flops_per_item"] == 32
    assert record["flops_achieved"] == pytest.approx(32 * record["mean"])
    assert record["peak_fraction"] == pytest.approx(record["flops_achieved"] / record["peak_flops"])
    assert 0 < record["peak_fraction"] < 1 and record["peak_source"].startswith("measured:")
    assert "peak_fraction" in (project.latest / "results.md").read_text()
