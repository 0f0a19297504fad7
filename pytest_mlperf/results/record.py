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
from ..run.probe import Between
from ..run.quality import QualityResult
from ..run.serving import Accuracy
from .repeats import across_loadgen_runs, across_runs, loadgen_interval, training_interval
from .stats import Summary, summarize
from .verdict import Figure, Judge, Roof, against_quality

Key = tuple[str | int | bool, ...]  #: what matches a result across runs (`Record.key`)
#: the fields of a Key: every one that changes what is measured (Case.key gives them in this order)
KEY_FIELDS = (
    "task", "benchmark", "precision", "system", "preset", "global_batch", "devices", "scenario", "mode", "knobs",
    "compiled", "data",
)  # fmt: skip
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
    number: int  #: steps per block: the system file's, or more (min_block_s) as the first run chose
    unit: str
    outcome: str = ""  #: passed, failed, skipped or error
    message: str = ""  #: why it failed or was skipped
    runs: int = 1  #: how many times the case ran (--runs, plus reruns of an inconclusive verdict)
    #: the figure judged: one run's mean over its blocks, or of several runs their trimmed mean
    mean: float | None = None
    sd: float | None = None  #: of the blocks, or of several runs' figures (so sd_pct is Mila's run-to-run sd%)
    sd_pct: float | None = None
    min: float | None = None
    max: float | None = None
    count: int | None = None  #: how many values the statistics rest on: blocks, or runs
    ci_low: float | None = None
    ci_high: float | None = None
    #: what the interval rests on: the blocks of one process (widened by the host's between-process sd, or not),
    #: the spread of N runs each in a fresh process, LoadGen runs; the verdict's message says it too
    interval: str = ""
    between_sd_pct: float | None = None  #: the between-process sd (% of the figure) that widened one run's interval
    seconds: float | None = None  #: measured time, warm-up excluded
    baseline: float | None = None
    tolerance: float | None = None
    baseline_ratio: float | None = None
    baseline_status: str = ""
    baseline_source: str = ""
    floor_fraction: float | None = None  #: the peak-fraction floor, as a fraction of the device's peak FLOP/s
    floor: float | None = None  #: the floor in the metric's unit (items/s, or a latency in ms)
    floor_ratio: float | None = None  #: mean / floor
    floor_status: str = ""  #: met, below (above, for a latency), inconclusive, no floor, no roof
    floor_source: str = ""
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
    #: inference: LoadGen's host-dependent settings the run used, e.g. "offline_expected_qps=780"
    loadgen_setting: str = ""
    #: where they came from: "calibrated: <what was measured on the host>", "system file" (pinned), or each one's
    loadgen_setting_source: str = ""
    data: str = ""  #: "synthetic", the real dataset's name, or "the image's own" (an image's own script)
    data_dir: str = ""  #: where the real dataset was read from
    compiled: bool = False  #: the models ran through torch.compile
    #: counted in one training step (forward, backward, optimizer); inference: one sample's forward pass (FP32 model)
    flops_per_item: float | None = None
    #: FLOP/s: flops_per_item x mean (inference latency in ms: x samples per query / the latency in s)
    flops_achieved: float | None = None
    peak_flops: float | None = None  #: FLOP/s of the run's devices at the precision's math
    work_unit: str = ""  #: what flops_per_item and peak_flops count: FLOP, or a workload's own unit (decoded image)
    peak_fraction: float | None = None  #: flops_achieved / peak_flops
    peak_source: str = ""
    duration: float | None = None  #: the whole test call, setup of the model included
    threads: int = 0
    gpus: str = ""  #: the devices the test leased (model and UUID each), or why it ran on the CPU
    lease_wait_s: float | None = None  #: how long the test waited for busy devices
    cpus: str = ""  #: the cores the test ran on (a cpuset list, e.g. "0-3"): its worker's, less busy ones
    cpus_busy: str = ""  #: its worker's cores left out because other work kept them busy as the test started
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
    scaling_efficiency: float | None = None  #: mean / (devices x one_device)
    one_device: float | None = None  #: one device's throughput on this host in this session (results.scaling)
    scaling_reference: str = ""  #: where one_device comes from
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
    rates: list[float] = field(default_factory=list)  #: items/s of each block (of every run, in order)
    run_means: list[float] = field(default_factory=list)  #: several runs: each run's figure
    rank_means: list[float] = field(
        default_factory=list
    )  #: on several devices: the system's items/s as each rank timed it
    losses: list[float] = field(default_factory=list)  #: every step's: the FLOP-counting one, warm-up, measured

    @property
    def key(self) -> Key:
        """What matches a result to an earlier run's: the Case key, never the node id."""
        return tuple(getattr(self, name) for name in KEY_FIELDS)

    def to_dict(self) -> dict[str, Any]:
        """A shallow copy of the fields (lists and dicts shared, not copied: a report of 1,000 records reads them
        many times, and `dataclasses.asdict`'s deep copies cost most of its time)."""
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        return cls(**data)


LISTS = ("environment", "telemetry", "peak_trials", "block_ns", "rates", "run_means", "rank_means", "losses")
#: columns of the flat tables (lists stay in JSON only)
COLUMNS = [f.name for f in dataclasses.fields(Record) if f.name not in LISTS]


def build(
    case: Case,
    device: str,
    measurements: list[Measurement],
    quality: QualityResult | None,
    work: Work | None,
    judge: Judge,
    loadgen: list[LoadgenRun] | None = None,
    accuracy: Accuracy | None = None,
    reported: float | None = None,
    between: Between | None = None,
) -> Record:
    """A Record of the case and, when it ran, its measurements (one per run; a single one's interval widened by
    `between`, as its verdict was) judged against the baseline and earlier run, or its LoadGen runs (the official
    metric as `mean` and `unit`) and accuracy, or the one figure an image's own script `reported`."""
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
        global_batch=case.global_batch,
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
        record.work_unit = work.unit
    if case.scenario is not None:
        record.scenario, record.mode = case.scenario.name, case.scenario.mode
        record.batch_size = case.scenario.max_batch
    roof = Roof(work, case.items_per_query) if work else None
    if loadgen:
        _loadgen(record, loadgen, between)
        if record.mean is not None and record.validity == "VALID":
            _judge(record, judge, bool(record.lower_is_better), roof)
            if work is not None:
                _served_flops(record, work, case.items_per_query)
    if accuracy is not None:
        record.accuracy_reference, record.accuracy_ratio = accuracy.reference, accuracy.ratio
    if reported is not None:
        _summary(record, summarize([reported]))
        record.interval = "one figure the image's script reported: no interval"
        _judge(record, judge, False, None)
    if not measurements:
        return record
    widened = between if len(measurements) == 1 else None
    summary = across_runs([m.summary() for m in measurements], widened)
    _summary(record, summary)
    record.interval = training_interval(len(measurements), widened)
    record.between_sd_pct = widened.sd_pct if widened else None
    record.number = measurements[0].plan.number
    record.warmup = measurements[0].plan.warmup  # with the first blocks autoranging turned into warm-up
    record.runs = len(measurements)
    record.run_means = [m.summary().mean for m in measurements] if len(measurements) > 1 else []
    record.seconds = sum(m.seconds for m in measurements)
    for m in measurements:
        record.block_ns += m.block_ns
        record.rates += m.rates
        record.losses += m.losses
    if work is not None:
        record.flops_achieved = work.flops_per_item * summary.mean
        if work.peak_flops:
            record.peak_fraction = record.flops_achieved / work.peak_flops
    record.per_device = summary.mean / s.devices
    _judge(record, judge, False, roof)
    return record


def figure(record: Record) -> Figure:
    """The record's figure with its interval, as it was judged."""
    assert record.mean is not None
    low = record.mean if record.ci_low is None else record.ci_low
    high = record.mean if record.ci_high is None else record.ci_high
    return Figure(record.mean, low, high)


def _summary(record: Record, summary: Summary) -> None:
    record.mean, record.sd, record.sd_pct = summary.mean, summary.sd, summary.sd_percent
    record.min, record.max, record.count = summary.min, summary.max, summary.count
    record.ci_low, record.ci_high = summary.ci_low, summary.ci_high


def _judge(record: Record, judge: Judge, lower_is_better: bool, roof: Roof | None) -> None:
    verdicts = judge(figure(record), record.unit, lower_is_better, roof)
    record.baseline_status, record.baseline_ratio = verdicts.baseline.status, verdicts.baseline.ratio
    record.floor_status, record.floor_ratio = verdicts.floor.status, verdicts.floor.ratio
    if judge.floor is not None:
        record.floor_fraction, record.floor_source = judge.floor.value, judge.floor.source
        record.floor = roof.threshold(judge.floor.value, lower_is_better) if roof else None
    gate = verdicts.earlier
    if gate is not None:
        record.earlier_status, record.earlier_ratio = gate.status, gate.ratio
        record.earlier = judge.earlier.value if judge.earlier else None


def _loadgen(record: Record, runs: list[LoadgenRun], between: Between | None) -> None:
    """The last run's logs and validity (every run's must be VALID for the figure to count: `Serve.check`); the
    figure across the runs' official metrics, one run's interval widened by `between`, as its verdict's was."""
    last = runs[-1].result
    record.loadgen_dir, record.seconds = str(runs[-1].outdir), sum(r.seconds for r in runs)
    record.loadgen_setting, record.loadgen_setting_source = (
        runs[-1].scenario.settings_text,
        runs[-1].scenario.sources_text,
    )
    invalid = [r.result for r in runs if not r.result.valid]
    shown = invalid[0] if invalid else last
    record.validity, record.failed_checks = shown.validity or "", ", ".join(shown.failed_checks)
    metrics = [r.result.metric for r in runs if r.result.metric is not None]
    if not metrics:
        return
    record.metric, record.unit, record.lower_is_better = metrics[0].name, metrics[0].unit, metrics[0].lower_is_better
    _summary(record, across_loadgen_runs([m.value for m in metrics], between))
    record.interval = loadgen_interval(len(metrics), between)
    record.between_sd_pct = between.sd_pct if between and len(metrics) == 1 else None
    record.runs = len(runs)
    record.run_means = [m.value for m in metrics] if len(metrics) > 1 else []


def _served_flops(record: Record, work: Work, items_per_query: int) -> None:
    """FLOP/s of a VALID inference figure: samples/s x FLOPs per sample, or for a latency the samples of a query
    (1 in SingleStream) in that many ms."""
    assert record.mean is not None
    if record.lower_is_better:
        record.flops_achieved = work.flops_per_item * items_per_query / (record.mean / 1e3)
    else:
        record.flops_achieved = work.flops_per_item * record.mean
    if work.peak_flops:
        record.peak_fraction = record.flops_achieved / work.peak_flops
