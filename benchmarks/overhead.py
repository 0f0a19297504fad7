"""Does the harness cost anything? pytest-mlperf against a bare PyTorch loop, in two ways.

1. End to end: ResNet-50's cpu preset (resnet50-fp32-cpu) run through the plugin (`pytest.main` in this process)
   and through a bare loop of the same model code, batch, channels-last layout, optimizer, warm-up and iterations,
   interleaved round by round. The plugin's figure is its own: the measured time it wrote to results.json. On a
   2-core machine this comparison is limited by run-to-run noise (several %), so it cannot resolve 1%.
2. Per step: what the harness adds to one step (autocast context, detached loss kept in a list, per-block sync
   and loss check), measured on a model so small that a microsecond shows, as `training_step` + `measure` vs the
   same model's bare loop. Divided by a ResNet-50 cpu step's time, it bounds the harness's share precisely.

    .venv/bin/python benchmarks/overhead.py [--rounds 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pytest_mlperf import workloads
from pytest_mlperf.config.schema import load_system
from pytest_mlperf.results.stats import summarize
from pytest_mlperf.run.measure import Plan, measure
from pytest_mlperf.run.precision import resolve
from pytest_mlperf.run.training import Supervised
from pytest_mlperf.workloads import Setup, resnet
from pytest_mlperf.workloads.synthetic import class_images

REPO = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


def through_plugin(reports: Path) -> float:
    """img/s over the measured blocks of one pytest-mlperf run of resnet50-fp32-cpu."""
    args = [str(REPO / "suites"), f"--rootdir={REPO}", "--system=cpu", "-m", "resnet and fp32", "-q",
            "-p", "no:cacheprovider", f"--mlperf-reports={reports}"]  # fmt: skip
    assert pytest.main(args) == 0
    (record,) = json.loads((reports / "latest" / "results.json").read_text())["records"]
    return record["global_batch"] * record["number"] * record["repeat"] / record["seconds"]


def bare_resnet_step(batch: int) -> Callable[[], None]:
    preset = workloads.get("resnet50").presets["cpu"]
    model = resnet.ResNet(num_classes=preset["num_classes"]).to(memory_format=torch.channels_last).train()
    images, labels = class_images(preset["num_classes"], preset["image_size"], batch, 1, CPU)[0]
    images = images.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.256 * batch / 256, momentum=0.875,
                                weight_decay=3.0517578125e-05, fused=True)  # fmt: skip

    def step() -> None:
        loss = F.cross_entropy(model(images), labels, label_smoothing=0.1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def bare_rate(step: Callable[[], None], items: int, warmup: int, iterations: int) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    return items * iterations / (time.perf_counter() - start)


def tiny_data() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    return nn.Linear(16, 1), torch.randn(4, 16), torch.randn(4, 1)


def tiny_harness_step() -> Callable[[], torch.Tensor]:
    """The tiny model's step as every workload runs it: through Supervised (autocast, Updater, loss kept)."""
    model, inputs, targets = tiny_data()
    setup = Setup({}, 4, CPU, resolve("fp32", CPU))
    optimizer = lambda m: torch.optim.SGD(m.parameters(), lr=0.01, foreach=True)  # noqa: E731
    trainer = Supervised(setup, model, [(inputs, targets)], F.mse_loss, optimizer, lambda m, b: 0.0, [])
    return trainer.step


def tiny_bare_step() -> Callable[[], None]:
    model, inputs, targets = tiny_data()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, foreach=True)

    def step() -> None:
        F.mse_loss(model(inputs), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def per_step_cost(rounds: int, steps: int = 4000) -> tuple[float, float, list[float]]:
    """Microseconds per step through the harness and in the bare loop on the tiny model (medians), and the
    per-round differences; the two run back to back in alternating order, since the machine drifts between rounds."""
    harness, bare = [], []
    for i in range(rounds * 2):
        if i % 2 == (i // 2) % 2:
            plan = Plan(warmup=100, repeat=4, number=steps // 4, items_per_step=1)
            result = measure(tiny_harness_step(), plan, lambda: None)
            harness.append(result.seconds / steps * 1e6)
        else:
            bare.append(1e6 / bare_rate(tiny_bare_step(), 1, 100, steps))
    diffs = [h - b for h, b in zip(harness, bare, strict=True)]
    return statistics.median(harness), statistics.median(bare), diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    rounds = parser.parse_args().rounds
    s = load_system(REPO / "systems" / "cpu.yaml").settings("resnet50", "fp32")
    iterations = s.repeat * s.number
    ratios, resnet_steps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            # alternate which goes first, so neither always inherits a warmer (or hotter) machine
            bare = 0.0
            if i % 2:
                bare = bare_rate(bare_resnet_step(s.device_batch), s.device_batch, s.warmup, iterations)
            plugin = through_plugin(Path(tmp) / str(i))
            if not i % 2:
                bare = bare_rate(bare_resnet_step(s.device_batch), s.device_batch, s.warmup, iterations)
            ratios.append(plugin / bare)
            resnet_steps.append(s.device_batch / bare)
            print(f"round {i + 1}: plugin {plugin:.2f} img/s, bare loop {bare:.2f} img/s, ratio {plugin / bare:.3f}")
    ci = summarize(ratios)
    print(f"1. end to end, plugin/bare over {rounds} rounds: median {statistics.median(ratios):.3f}, "
          f"mean {ci.mean:.3f} (95% CI {ci.ci_low:.3f}-{ci.ci_high:.3f})")  # fmt: skip
    harness_us, bare_us, diffs = per_step_cost(rounds * 2)
    added = summarize(diffs)
    step_us = statistics.median(resnet_steps) * 1e6
    print(f"2. per step on a tiny model: harness {harness_us:.1f} us, bare {bare_us:.1f} us (medians); "
          f"added {added.mean:+.1f} us (95% CI {added.ci_low:+.1f} to {added.ci_high:+.1f}) = "
          f"{added.ci_high / step_us:.4%} at most of a {step_us / 1e3:.0f} ms ResNet-50 cpu step")  # fmt: skip
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
