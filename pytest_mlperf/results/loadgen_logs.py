"""Reading what MLPerf LoadGen wrote: its verdict, the official metric of the scenario, latencies and settings.

LoadGen's own files are the record of an inference run, so results are taken from them rather than from our SUT's
view: `mlperf_log_detail.txt` (one `:::MLLOG {json}` event per line) is the source of every figure, and
`mlperf_log_summary.txt` (the human report) is cross-checked against it, so a folder mixing two runs is caught.
Pure functions over files; LoadGen itself is not needed here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DETAIL = "mlperf_log_detail.txt"
SUMMARY = "mlperf_log_summary.txt"
ACCURACY = "mlperf_log_accuracy.json"
PREFIX = ":::MLLOG "

VALID, INVALID = "VALID", "INVALID"
#: LoadGen's scenario and mode names -> ours
SCENARIOS = {"Offline": "offline", "Server": "server", "SingleStream": "singlestream", "MultiStream": "multistream"}
MODES = {"PerformanceOnly": "performance", "AccuracyOnly": "accuracy"}
#: detail keys of LoadGen's sub-checks -> the name a person reads
CHECKS = {
    "result_min_duration_met": "min duration",
    "result_min_queries_met": "min queries",
    "early_stopping_met": "early stopping",
    "result_perf_constraints_met": "latency constraint",
}
#: result_min_latency_ns, result_99.00_percentile_latency_ns, and MultiStream's per-query variants
LATENCY_KEY = re.compile(r"result_(min|max|mean|(\d+\.\d+)_percentile)(_per)?(_query)?_latency_ns")


class LoadgenLogError(ValueError):
    """A LoadGen log file is missing, malformed or lacks an entry the result needs; the message names the file."""


@dataclass(frozen=True)
class Metric:
    """The scenario's official figure, as MLPerf ranks it."""

    name: str
    value: float
    unit: str  #: "samples/s" or "ms"
    lower_is_better: bool
    key: str  #: the detail entry it was read from


@dataclass(frozen=True)
class LoadgenResult:
    scenario: str  #: offline, server, singlestream or multistream
    mode: str  #: performance or accuracy
    validity: str | None  #: VALID or INVALID; None in accuracy mode, where LoadGen judges nothing
    failed_checks: tuple[str, ...]  #: names from CHECKS whose check LoadGen reported unmet
    metric: Metric | None  #: None in accuracy mode, or when an INVALID run has no early-stopping estimate
    latency_ms: dict[str, float]  #: min, mean, max and p50 ... p99.9 of the per-query latencies
    query_count: int | None
    invalid_reason: str  #: LoadGen's recommendation when INVALID (e.g. to raise the expected QPS)
    early_stopping: str  #: LoadGen's early-stopping explanation
    errors: tuple[str, ...]  #: LoadGen's error events (e.g. "ran out of generated queries")
    effective: dict[str, Any] = field(default_factory=dict)  #: the effective_* settings LoadGen used, unprefixed
    values: dict[str, Any] = field(default_factory=dict)  #: every result_* and early_stopping_* entry, as logged

    @property
    def valid(self) -> bool:
        return self.validity == VALID

    @property
    def latency_bound_ms(self) -> float | None:
        """Server's latency bound at its percentile (p99 unless changed)."""
        bound = self.effective.get("target_latency_ns") if self.scenario == "server" else None
        return bound / 1e6 if bound else None

    @property
    def message(self) -> str:
        """One line for a person: the verdict, the metric, and why an INVALID run is invalid."""
        head = f"LoadGen {self.scenario} {self.mode}: {self.validity or 'no validity (accuracy mode)'}"
        if self.metric is not None:
            m = self.metric
            head += f", {m.name} {m.value:.4g} {m.unit}"
        reasons = [self._explain(check) for check in self.failed_checks]
        if self.invalid_reason:
            reasons.append(f"LoadGen recommends: {self.invalid_reason}")
        reasons += [f"LoadGen error: {error}" for error in self.errors]
        return "; ".join([head, *reasons])

    def _explain(self, check: str) -> str:
        if check == "min queries":
            return f"min queries not met ({self.query_count} of {self.effective.get('min_query_count')})"
        if check == "min duration":
            return f"min duration not met (needs {self.effective.get('min_duration_ms')} ms)"
        if check == "early stopping":
            return f"early stopping not met ({self.early_stopping})"
        return f"latency constraint not met (p99 {self.latency_ms['p99']:.4g} ms, bound {self.latency_bound_ms:.4g} ms)"


def _require(path: Path) -> Path:
    if not path.is_file():
        raise LoadgenLogError(f"{path}: missing; LoadGen writes it when a run ends (was the run cut short?)")
    return path


def detail_events(path: Path) -> list[dict[str, Any]]:
    """Every `:::MLLOG` event of a detail log, in order."""
    events = []
    for number, line in enumerate(_require(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        if not line.startswith(PREFIX):
            raise LoadgenLogError(f"{path}:{number}: not a '{PREFIX}{{json}}' line: {line[:80]!r}")
        try:
            event = json.loads(line[len(PREFIX) :])
        except json.JSONDecodeError as exc:
            raise LoadgenLogError(f"{path}:{number}: malformed JSON after '{PREFIX.strip()}': {exc}") from exc
        if not isinstance(event, dict) or "key" not in event or "value" not in event:
            raise LoadgenLogError(f"{path}:{number}: an MLLOG event needs 'key' and 'value'")
        events.append(event)
    return events


def summary_fields(path: Path) -> dict[str, str]:
    """The `name : value` lines of a summary log (the first of each name), e.g. "Result is" -> "VALID"."""
    fields: dict[str, str] = {}
    for line in _require(path).read_text().splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip() and not name.startswith(" *"):
            fields.setdefault(name.strip(), value.strip())
    return fields


def _official_metric(scenario: str, values: dict[str, Any], effective: dict[str, Any]) -> Metric | None:
    if scenario in ("offline", "server"):
        key = "result_samples_per_second" if scenario == "offline" else "result_completed_samples_per_sec"
        return Metric(key.removeprefix("result_").replace("_", " "), float(values[key]), "samples/s", False, key)
    # MultiStream's estimate is logged under a name ending in _ms, yet it is in ns like every latency
    key = "early_stopping_latency_ss" if scenario == "singlestream" else "early_stopping_latency_ms"
    if key not in values:
        return None
    percentile = float(effective["target_latency_percentile"])
    return Metric(f"p{percentile * 100:g} latency (early-stopping estimate)", values[key] / 1e6, "ms", True, key)


def _latencies(values: dict[str, Any]) -> dict[str, float]:
    """Per-query latencies where LoadGen logs them (MultiStream, whose metric is per query), else per sample."""
    latency = {}
    for key in sorted(values, key=lambda key: "_query_" in key):  # per-query entries last, so they win
        if match := LATENCY_KEY.fullmatch(key):
            latency[f"p{float(match[2]):g}" if match[2] else match[1]] = values[key] / 1e6
    return latency


def parse_logs(folder: Path) -> LoadgenResult:
    """The result of the LoadGen run whose logs are in `folder`."""
    detail_path, summary_path = folder / DETAIL, folder / SUMMARY
    events = detail_events(detail_path)
    last = {event["key"]: event["value"] for event in events}
    for key in ("effective_scenario", "effective_test_mode"):
        if key not in last:
            raise LoadgenLogError(f"{detail_path}: no '{key}' entry; is this a LoadGen detail log?")
    if last["effective_scenario"] not in SCENARIOS or last["effective_test_mode"] not in MODES:
        raise LoadgenLogError(
            f"{detail_path}: unsupported scenario or mode "
            f"{last['effective_scenario']!r} / {last['effective_test_mode']!r}"
        )
    scenario, mode = SCENARIOS[last["effective_scenario"]], MODES[last["effective_test_mode"]]
    effective = {key.removeprefix("effective_"): value for key, value in last.items() if key.startswith("effective_")}
    values = {key: value for key, value in last.items() if key.startswith(("result_", "early_stopping_"))}
    errors = tuple(str(e["value"]) for e in events if e.get("metadata", {}).get("is_error"))
    if mode == "accuracy":
        return LoadgenResult(scenario, mode, None, (), None, {}, None, "", "", errors, effective, values)
    summary = summary_fields(summary_path)
    validity = values.get("result_validity")
    if validity not in (VALID, INVALID):
        raise LoadgenLogError(
            f"{detail_path}: no 'result_validity' VALID/INVALID entry (found {validity!r}); was the run cut short?"
        )
    if summary.get("Result is") != validity:
        raise LoadgenLogError(
            f"{summary_path}: 'Result is : {summary.get('Result is')}' disagrees with "
            f"{detail_path.name}'s result_validity {validity}; are they from the same run?"
        )
    try:
        metric = _official_metric(scenario, values, effective)
    except KeyError as exc:
        raise LoadgenLogError(f"{detail_path}: no {exc} entry, needed for the {scenario} scenario's metric") from exc
    return LoadgenResult(
        scenario=scenario,
        mode=mode,
        validity=validity,
        failed_checks=tuple(name for key, name in CHECKS.items() if values.get(key) is False),
        metric=metric,
        latency_ms=_latencies(values),
        query_count=values.get("result_query_count"),
        invalid_reason=str(values.get("result_invalid_reason", "")).strip(),
        early_stopping=" ".join(str(values.get("early_stopping_result", "")).split()),
        errors=errors,
        effective=effective,
        values=values,
    )


def accuracy_outputs(path: Path) -> dict[int, bytes]:
    """Each sample's output bytes from `mlperf_log_accuracy.json`, by QSL index; a sample logged more than once
    (performance mode's sampled accuracy log) must have the same bytes every time."""
    try:
        entries = json.loads(_require(path).read_text())
    except json.JSONDecodeError as exc:
        raise LoadgenLogError(f"{path}: malformed JSON: {exc}") from exc
    if not isinstance(entries, list):
        raise LoadgenLogError(f"{path}: expected a JSON list of {{seq_id, qsl_idx, data}} entries")
    outputs: dict[int, bytes] = {}
    for entry in entries:
        try:
            index, data = int(entry["qsl_idx"]), bytes.fromhex(entry["data"])
        except (KeyError, TypeError, ValueError) as exc:
            raise LoadgenLogError(f"{path}: entry {entry!r} needs an integer 'qsl_idx' and hex 'data'") from exc
        if outputs.setdefault(index, data) != data:
            raise LoadgenLogError(f"{path}: sample {index} was logged twice with different outputs")
    return outputs
