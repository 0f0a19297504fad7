"""The Record of one test: plain, JSON-serialisable data from which every table and report is derived.

A Record travels from an xdist worker to the controller in `report.user_properties` and is journaled there the
moment its test ends.
"""

from __future__ import annotations

import dataclasses
import platform
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import torch

from ..config.matrix import Case
from ..run.flops import Work
from ..run.loadgen import LoadgenRun
from ..run.measure import Measurement
from ..run.quality import QualityResult
from ..run.serving import Accuracy
from .verdict import Judge, against_quality

PROPERTY = "mlperf_record"  #: the user_properties key a Record travels under


@dataclass
class Record:
    test: str  #: pytest node id (for people; matching uses the case fields)
    id: str
    benchmark: str
    family: str
    task: str
    precision: str
    system: str
    preset: str
    device: str
    devices: int
    batch_size: int
    batch_per: str
    global_batch: int
    warmup: int
    repeat: int
    number: int
    unit: str
    outcome: str = ""  #: passed, failed, skipped or error
    message: str = ""  #: why it failed or was skipped
    mean: float | None = None
    sd: float | None = None
    sd_pct: float | None = None
    min: float | None = None
    max: float | None = None
    count: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    seconds: float | None = None  #: measured time, warm-up excluded
    baseline: float | None = None
    tolerance: float | None = None
    baseline_ratio: float | None = None
    baseline_status: str = ""
    baseline_source: str = ""
    earlier: float | None = None
    earlier_ratio: float | None = None
    earlier_status: str = ""
    quality_metric: str = ""
    quality_value: float | None = None
    quality_target: float | None = None
    quality_steps: int | None = None  #: training steps when the target was reached (or the budget ran out)
    quality_status: str = ""  #: reached or not reached
    quality_minutes: float | None = None  #: time to quality, from the first touch of the training data, as MLPerf
    scenario: str = ""  #: inference: the LoadGen scenario (offline for the accuracy pass)
    mode: str = ""  #: inference: performance or accuracy
    metric: str = ""  #: inference: the scenario's official metric (its value and unit are `mean` and `unit`)
    lower_is_better: bool | None = None  #: of the metric
    validity: str = ""  #: LoadGen's verdict: VALID or INVALID
    failed_checks: str = ""  #: LoadGen's unmet sub-checks, comma-separated
    loadgen_dir: str = ""  #: LoadGen's logs
    accuracy_reference: float | None = None  #: the FP32 model's accuracy on the same samples, without LoadGen
    accuracy_ratio: float | None = None  #: quality_value / accuracy_reference
    peak_qps: float | None = None  #: --find-peak-qps: the highest Server target QPS LoadGen judged VALID
    data: str = ""  #: "synthetic", or the real dataset and its folder
    compiled: bool = False  #: the models ran through torch.compile
    flops_per_item: float | None = None  #: counted in one training step (forward, backward, optimizer)
    flops_achieved: float | None = None  #: FLOP/s: flops_per_item x mean
    peak_flops: float | None = None  #: FLOP/s of the run's devices at the precision's math
    peak_fraction: float | None = None  #: flops_achieved / peak_flops
    peak_source: str = ""
    duration: float | None = None  #: the whole test call, setup of the model included
    threads: int = 0
    gpus: str = ""  #: the devices the test leased (model and UUID each), or why it ran on the CPU
    lease_wait_s: float | None = None  #: how long the test waited for busy devices
    cpus: str = ""  #: the worker's cores (a cpuset list, e.g. "0-3")
    memory_share_gb: float | None = None  #: the worker's share of the host's memory
    torch: str = str(torch.__version__)
    python: str = platform.python_version()
    host: str = socket.gethostname()
    worker: str = ""
    finished: str = ""
    runner: str = "local"  #: where it ran: in the test's process, or in a container
    accelerator: str = ""  #: the system's device model
    launcher: str = ""  #: how its ranks started, on several devices: torchrun or slurm
    knobs: str = ""  #: the swept launch environment of this test, e.g. "NCCL_ALGO=Tree"
    per_device: float | None = None  #: mean / devices
    scaling_efficiency: float | None = None  #: mean / (devices x one device's throughput)
    scaling_reference: str = ""  #: where the one device's throughput comes from
    gpu_util_mean: float | None = None  #: telemetry of the measured phase (mean or max over its samples)
    gpu_power_w_mean: float | None = None
    gpu_temp_c_max: float | None = None
    gpu_sm_clock_mhz_mean: float | None = None
    cpu_util_mean: float | None = None  #: % of the worker's CPU slice
    rss_gb_max: float | None = None  #: the test process's memory (with its children)
    telemetry_flags: str = ""  #: why the phase's figure is doubtful (a throttling or idle GPU...), "; "-separated
    telemetry: dict[str, Any] = field(default_factory=dict)  #: the samples, for plots
    #: the system information that differs from the session's (a container's image, digest and software)
    environment: dict[str, str] = field(default_factory=dict)
    peak_trials: list[dict[str, Any]] = field(default_factory=list)  #: --find-peak-qps: every Server run tried
    block_ns: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)  #: items/s of each block
    rank_means: list[float] = field(
        default_factory=list
    )  #: on several devices: the system's items/s as each rank timed it
    losses: list[float] = field(default_factory=list)  #: every step's: the FLOP-counting one, warm-up, measured

    @property
    def key(self) -> tuple[str, str, str, int, int, str, str, str]:
        """What matches a result to an earlier run's: the Case key, never the node id."""
        r = self
        return (r.benchmark, r.precision, r.system, r.global_batch, r.devices, r.scenario, r.mode, r.knobs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        return cls(**data)


LISTS = ("environment", "telemetry", "peak_trials", "block_ns", "rates", "rank_means", "losses")
#: columns of the flat tables (lists stay in JSON only)
COLUMNS = [f.name for f in dataclasses.fields(Record) if f.name not in LISTS]


def build(
    case: Case,
    device: str,
    measurement: Measurement | None,
    quality: QualityResult | None,
    work: Work | None,
    judge: Judge,
    loadgen: LoadgenRun | None = None,
    accuracy: Accuracy | None = None,
    reported: float | None = None,
) -> Record:
    """A Record of the case and, when it ran, its measurement judged against the baseline and earlier run, or its
    LoadGen run (the official metric as `mean` and `unit`) and accuracy, or the one figure an image's own script
    `reported`."""
    s = case.settings
    record = Record(
        test="",
        id=case.id,
        benchmark=case.benchmark,
        family=case.workload.family,
        task=case.task,
        precision=case.precision,
        system=case.system.name,
        preset=s.preset,
        device=device,
        devices=s.devices,
        batch_size=s.batch_size,
        batch_per=s.batch_per,
        global_batch=s.global_batch,
        warmup=s.warmup,
        repeat=s.repeat,
        number=s.number,
        unit=case.workload.unit,
        threads=torch.get_num_threads(),
        finished=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        accelerator=case.system.spec.accelerator.model,
        launcher=case.launcher,
        knobs=case.knob_text,
    )
    if s.baseline is not None:
        record.baseline, record.tolerance = s.baseline.value, s.baseline.tolerance
        record.baseline_source = s.baseline.source
    if quality is not None:
        record.quality_metric, record.quality_value = quality.metric, quality.value
        record.quality_target, record.quality_steps = quality.target, quality.steps
        record.quality_status = against_quality(quality).status
        if quality.time_to_target is not None:
            record.quality_minutes = quality.time_to_target / 60
    if work is not None:
        record.flops_per_item, record.peak_flops, record.peak_source = (
            work.flops_per_item,
            work.peak_flops,
            work.peak_source,
        )
    if case.scenario is not None:
        record.scenario, record.mode = case.scenario.name, case.scenario.mode
        record.batch_size = record.global_batch = case.scenario.max_batch
    if loadgen is not None:
        _loadgen(record, loadgen)
        if record.mean is not None and record.validity == "VALID":
            _judge(record, judge, record.mean, bool(record.lower_is_better))
    if accuracy is not None:
        record.accuracy_reference, record.accuracy_ratio = accuracy.reference, accuracy.ratio
    if reported is not None:
        record.mean, record.count = reported, 1
        _judge(record, judge, reported, False)
    if measurement is None:
        return record
    summary = measurement.summary()
    record.mean, record.sd, record.sd_pct = summary.mean, summary.sd, summary.sd_percent
    record.min, record.max, record.count = summary.min, summary.max, summary.count
    record.ci_low, record.ci_high = summary.ci_low, summary.ci_high
    record.seconds = measurement.seconds
    record.block_ns, record.rates, record.losses = measurement.block_ns, measurement.rates, measurement.losses
    if work is not None:
        record.flops_achieved = work.flops_per_item * summary.mean
        if work.peak_flops:
            record.peak_fraction = record.flops_achieved / work.peak_flops
    record.per_device = summary.mean / s.devices
    _judge(record, judge, summary.mean, False)
    return record


def _judge(record: Record, judge: Judge, value: float, lower_is_better: bool) -> None:
    verdict, gate = judge(value, record.unit, lower_is_better)
    record.baseline_status, record.baseline_ratio = verdict.status, verdict.ratio
    if gate is not None:
        record.earlier, record.earlier_status, record.earlier_ratio = judge.earlier, gate.status, gate.ratio


def _loadgen(record: Record, run: LoadgenRun) -> None:
    result = run.result
    record.loadgen_dir, record.seconds = str(run.outdir), run.seconds
    record.validity, record.failed_checks = result.validity or "", ", ".join(result.failed_checks)
    if result.metric is not None:
        record.metric, record.mean, record.unit = result.metric.name, result.metric.value, result.metric.unit
        record.lower_is_better = result.metric.lower_is_better
