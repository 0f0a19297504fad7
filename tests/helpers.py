"""Helpers for pytester sessions: a toy workload that trains in milliseconds, and system files written to order."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent

#: A conftest for pytester projects: a linear-regression workload ("toy") and one that diverges ("nan" preset).
TOY_CONFTEST = """
import itertools, os, signal, time
import torch
from torch import nn
from pytest_mlperf.run.training import Supervised
from pytest_mlperf.workloads import Quality, Workload, known, register


class Toy(nn.Module):
    def __init__(self, nan_at):
        super().__init__()
        self.linear = nn.Linear(8, 1)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))  # a tensor: torch.compile traces it once
        self.nan_at = nan_at

    def forward(self, x):
        self.calls += 1
        out = self.linear(x)
        return out + torch.where(self.calls == self.nan_at, float("nan"), 0.0)


def batches(batch_size, count, seed):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(batch_size, 8, generator=g) for _ in range(count)]
    return [(x, x.sum(1, keepdim=True)) for x in xs]


def mse(model, held_out):
    return sum(float(nn.functional.mse_loss(model(x).float(), y)) for x, y in held_out) / len(held_out)


def build(setup):
    calls = itertools.count(1)

    def loss(out, target):  # rank 1 of a launched run dies or hangs at a step, as the "die" and "hang" presets say
        step = next(calls)
        if os.environ.get("RANK") == "1" and step == setup.preset.get("die_at"):
            os.kill(os.getpid(), signal.SIGKILL)
        if os.environ.get("RANK") == "1" and step == setup.preset.get("hang_at"):
            time.sleep(600)
        return nn.functional.mse_loss(out.float(), target.float())

    return Supervised(
        setup, Toy(setup.preset["nan_at"]), batches(setup.batch_size, 16, 0),
        loss=loss,
        optimizer=lambda model: torch.optim.SGD(model.parameters(), lr=setup.preset.get("lr", 0.05)),
        metric=mse, held_out=batches(setup.batch_size, 1, 1),
    )


if "toy" not in known():
    register(Workload(
        name="toy", family="toys", task="training", unit="samples/s", description="a linear regression",
        presets={
            "cpu": {"nan_at": -1}, "real": {"nan_at": -1}, "nan": {"nan_at": 7}, "stuck": {"nan_at": -1, "lr": 0.0},
            "die": {"nan_at": -1, "die_at": 4}, "hang": {"nan_at": -1, "hang_at": 4},
        },
        build=build,
        quality=Quality("MSE", target=0.5, max_steps=400, eval_every=20, higher_is_better=False),
    ))
"""

TOY_SUITE = """
import pytest


@pytest.mark.mlperf("training", "toy")
def test_train(bench):
    bench.check(bench.train())
"""


def system(
    name: str = "toy",
    kind: str = "cpu",
    count: int = 1,
    model: str = "x86-64 CPU",
    precisions: dict[str, Any] | None = None,
    benchmark: str = "toy",
    **bench: Any,
) -> dict[str, Any]:
    """A system file's content; `precisions` maps a precision to its entry (default: fp32, batch 4, no baseline)."""
    return {
        "name": name,
        "description": f"{name} test system",
        "accelerator": {"kind": kind, "model": model, "count": count, "memory_gb": 8.0},
        "benchmarks": {
            benchmark: {
                "preset": "cpu",
                "warmup": 1,
                "repeat": 3,
                "number": 50,
                "min_block_s": 0.05,  # blocks of ~50 ms, not the few ms of 50 toy steps, which a busy host scatters
                **bench,
                "precisions": precisions or {"fp32": {"batch_size": 4}},
            }
        },
    }


def baseline(throughput: float, tolerance: float = 0.1, unit: str = "samples/s") -> dict[str, Any]:
    return {"throughput": throughput, "unit": unit, "tolerance": tolerance, "source": "test fixture"}


class Project:
    """A pytester project with the toy workload, a suite and a systems/ folder."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.path = pytester.path
        pytester.makeconftest(TOY_CONFTEST)
        pytester.makeini(
            "[pytest]\nstrict_markers = true\nstrict_parametrization_ids = true\n"
            "filterwarnings = ignore::pytest.PytestAssertRewriteWarning\n"
            "mlperf_plots = false\n"  # ~0.3 s a test; the tests of plots turn them on
            "mlperf_between_sd = 2\n"  # no probe in every session (test_intervals runs the real one)
        )
        (self.path / "systems").mkdir()
        pytester.makepyfile(test_suite=TOY_SUITE)

    def add_system(self, content: dict[str, Any] | str, name: str | None = None) -> Path:
        name = name or (content["name"] if isinstance(content, dict) else "toy")
        path = self.path / "systems" / f"{name}.yaml"
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
        return path

    def run(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest("-p", "no:cacheprovider", *args)

    def run_subprocess(self, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)

    @property
    def latest(self) -> Path:
        return self.path / "reports" / "latest"

    def results(self) -> list[dict[str, Any]]:
        return json.loads((self.latest / "results.json").read_text())["records"]


def assert_reaches(trainer: Any, quality: Any, module: Any = None, steps: int = 0) -> Any:
    """The workload's target is out of reach untrained and reached by training (after `steps` already taken);
    `evaluate()` leaves `module` (default: the trainer's `model`) in train mode. Returns converge's result."""
    from pytest_mlperf.run.quality import converge

    start = trainer.evaluate()
    assert not quality.reached(start), f"{quality.metric} {start} before training"
    assert (module or trainer.model).training, "evaluate() must restore train mode"
    result = converge(trainer, quality, steps)
    assert result.reached, result
    return result


def assert_learns(trainer: Any, quality: Any, module: Any = None) -> Any:
    """`assert_reaches`, with finite losses that fall; converge's result (the metric as it reached the target: a
    noisy metric such as a small held-out mAP may dip below it again in the five steps after)."""
    import math

    first = [float(trainer.step()) for _ in range(5)]
    result = assert_reaches(trainer, quality, module, len(first))
    last = [float(trainer.step()) for _ in range(5)]
    assert all(math.isfinite(v) for v in first + last)
    assert sum(last) < sum(first)
    return result


def rescaled(results: Path, out: Path, factor: float) -> Path:
    """`out`: a copy of the run `results` (a results.json) with every figure times `factor`, so that a comparison
    with it has a clear verdict whatever the load now."""
    document = json.loads(results.read_text())
    for row in document["records"]:
        for figure in ("mean", "ci_low", "ci_high"):
            row[figure] *= factor
    out.write_text(json.dumps(document))
    return out


def learned_fixtures(build: Callable[[], Any], quality: Any) -> tuple[Any, Any]:
    """A module's fixtures `learned` (a trainer taken to `quality`'s target by assert_learns, with converge's result)
    and `trained` (that trainer), for modules whose serving tests share one trained model."""

    @pytest.fixture(scope="module")
    def learned() -> tuple[Any, Any]:
        trainer = build()
        return trainer, assert_learns(trainer, quality)

    @pytest.fixture
    def trained(learned: tuple[Any, Any]) -> Any:
        return learned[0]

    return learned, trained


def served_held_out(trainer: Any, workload: Any, preset: Any) -> tuple[Any, Any, float]:
    """LoadGen's path on a trained Supervised trainer: its held-out inputs answered through `Answerer` (the model in
    eval mode, then back in train mode), with the stacked targets and the training metric on the same samples."""
    from pytest_mlperf.run.serving import Answerer, predict_all, stacked

    held = list(trainer.held_out)
    inputs, targets = stacked([x for x, _ in held]), stacked([y for _, y in held])
    metric = trainer.evaluate()
    trainer.model.eval()
    try:
        answers = predict_all(Answerer(trainer.model, inputs, workload.serving, preset), len(inputs), len(held[0][0]))
    finally:
        trainer.model.train()
    return answers, targets, metric


def assert_losses_fall(trainer: Any, steps: int, window: int, by: float = 1.0) -> None:
    """`steps` training steps give finite losses, the last `window` summing under `by` x the first `window`."""
    import math

    losses = [float(trainer.step()) for _ in range(steps)]
    assert all(math.isfinite(v) for v in losses), losses
    assert sum(losses[-window:]) < by * sum(losses[:window]), losses


def record(name: str = "resnet50", **fields: Any) -> Any:
    """A training Record on one device (95% interval +-2%), measured unless `mean` is None; `fields` override."""
    from pytest_mlperf.results.record import Record

    mean = fields.pop("mean", 1000.0)
    values: dict[str, Any] = dict(
        test="", id=f"{name}-amp-a100", benchmark=name, family=name, task="training", precision="amp",
        system="a100", preset="default", device="cuda", devices=1, batch_size=32, batch_per="device", global_batch=32,
        warmup=1, repeat=5, number=10, unit="img/s", accelerator="NVIDIA A100-SXM4-80GB", mean=mean,
    )  # fmt: skip
    if mean is not None:
        values.update(ci_low=mean * 0.98, ci_high=mean * 1.02)
    return Record(**{**values, **fields})
