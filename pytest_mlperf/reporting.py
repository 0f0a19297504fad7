"""Controller-side hooks: journal each Record as its test ends, write the tables at the end, enrich pytest-html."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import pytest

from .config.matrix import Case
from .containers.launch import LOG as CONTAINER_LOG
from .fixtures import (
    ACCURACY,
    BETWEEN,
    COMPILED,
    CORES,
    DATA,
    DATA_DIR,
    DEVICE,
    ENVIRONMENT,
    LEASE,
    LOADGEN,
    MEASUREMENTS,
    PEAK,
    QUALITIES,
    RANK_MEANS,
    REPORTED,
    RUNNER,
    SCALING,
    SESSION,
    TELEMETRY,
    WORK,
    judge,
)
from .resources import sysinfo
from .results import acceptance, compare, page, scaling
from .results import html as html_report
from .results.acceptance import Acceptance
from .results.loadgen_logs import DETAIL, SUMMARY
from .results.record import PROPERTY, Record, build
from .results.repeats import quality_across_runs
from .results.report import test_plots
from .results.suite import statistics_of
from .session import MlperfSession


class Reporter:
    """Registered only where results are written: the xdist controller, or the single process without xdist."""

    def __init__(self, session: MlperfSession, config: pytest.Config) -> None:
        """Must be built before pytest-html's pytest_configure, which reads --html."""
        assert session.store is not None
        self.session = session
        self.store = session.store
        self.config = config
        #: pytest-html writes into the run folder unless the user chose a path with --html
        self.owns_html = config.pluginmanager.hasplugin("html") and not config.option.htmlpath
        self.verdict: Acceptance | None = None  #: the run's acceptance verdict, once its reports are written
        if self.owns_html:
            config.option.htmlpath = str(self.store.dir / "report.html")
            config.option.self_contained_html = True

    @pytest.hookimpl(tryfirst=True)  # before pytest-html's, which renders the environment table at session start
    def pytest_sessionstart(self) -> None:
        """The system information into pytest-metadata's table (the HTML report's environment)."""
        if self.config.pluginmanager.hasplugin("metadata"):
            from pytest_metadata.plugin import metadata_key

            labelled = {sysinfo.LABELS[key]: value for key, value in self.session.system_info.items()}
            self.config.stash[metadata_key].update(labelled)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == PROPERTY:
                self.store.append(Record.from_dict(value))

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the run's results and reports; the run's exit status becomes its acceptance verdict's
        (`acceptance.exit_status`)."""
        if self.store.records:
            scaling.annotate(self.store.records)
            rows = self._comparison()
            run = self.session.run_info(int(exitstatus), [r.test for r in rows if r.status == compare.ONLY_A])
            run["exitstatus"] = acceptance.exit_status(acceptance.decide(self.store.records, run), int(exitstatus))
            session.exitstatus = run["exitstatus"]
            self.verdict = self.store.finish(run, self.session.sd_limit, self.session.plots)
            if self.session.earlier_source:
                table = compare.frame(rows).to_markdown(index=False, disable_numparse=True)
                text = f"# {self.session.earlier_source} (A) vs this run (B)\n\n{table}\n\n{compare.summary(rows)}\n"
                (self.store.dir / COMPARISON).write_text(text, encoding="utf-8")
        elif self.owns_html:  # no mlperf test ran: pytest-html must not write (or announce) a report
            from pytest_html.basereport import BaseReport

            for plugin in self.config.pluginmanager.get_plugins():
                if isinstance(plugin, BaseReport):
                    self.config.pluginmanager.unregister(plugin)

    def _comparison(self) -> list[compare.Row]:
        """With --compare: the earlier run against this one, case by case."""
        if not self.session.earlier_source:
            return []
        return compare.compare(
            self.session.earlier_records, self.store.records, self.session.tolerance, "the earlier run"
        )

    def pytest_unconfigure(self) -> None:
        if not self.store.records:
            self.store.discard()  # here, after pytest-html has written its file

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.store.records:
            terminalreporter.write_sep("-", f"pytest-mlperf: {len(self.store.records)} results in {self.store.dir}")
        if self.verdict is not None:
            verdict = self.verdict
            terminalreporter.write_line(
                f"acceptance: {verdict.verdict}"
                + (f" ({len(verdict.reasons)} tests or problems)" if verdict.reasons else "")
                + f": {self.store.dir / page.NAME}",
                green=verdict.accepted,
                red=not verdict.accepted,
            )
            for test, why in verdict.reasons[:20]:
                terminalreporter.write_line(f"  {test}: {why}" if test else f"  {why}")
            for stat in statistics_of(self.store.records, self.session.sd_limit):
                judged = "" if stat.passed is None else " (pass)" if stat.passed else " (FAIL)"
                terminalreporter.write_line(f"{stat.name}: {stat.value}{judged}; {stat.note}".rstrip("; "))

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list[str], session: pytest.Session) -> None:
        """The acceptance verdict and matrix first (the full acceptance report is beside it), then the results."""
        if self.verdict is not None:
            prefix.append(html_report.verdict(self.verdict, self.store.records))
            prefix.append(html_report.summary_table(self.store.records))

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells[2:2] = html_report.HEADER

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        record = next((Record.from_dict(v) for k, v in getattr(report, "user_properties", ()) if k == PROPERTY), None)
        cells[2:2] = [html_report.throughput_cell(record), html_report.baseline_cell(record)]


def attach_record(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> None:
    """Put the Record of an mlperf test's call (or failed/skipped setup) into the report's user_properties."""
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("case") if callspec else None
    if not isinstance(case, Case) or not (call.when == "call" or (report.outcome != "passed" and call.when == "setup")):
        return
    session = item.config.stash[SESSION]
    record = build(
        case,
        item.stash.get(DEVICE, ""),
        item.stash.get(MEASUREMENTS, []),
        quality_across_runs(item.stash[QUALITIES]) if QUALITIES in item.stash else None,
        item.stash.get(WORK, None),
        judge(item, case),
        item.stash.get(LOADGEN, None),
        item.stash.get(ACCURACY, None),
        item.stash[REPORTED].value if REPORTED in item.stash else None,
        item.stash.get(BETWEEN, None),
    )
    record.test = item.nodeid
    record.data, record.data_dir = item.stash.get(DATA, "synthetic"), item.stash.get(DATA_DIR, "")
    record.compiled = item.stash.get(COMPILED, False)
    if PEAK in item.stash:
        search = item.stash[PEAK]
        record.peak_qps, record.peak_trials = search.peak_qps, [dataclasses.asdict(t) for t in search.trials]
    record.outcome = _outcome(report)
    record.message = _message(report)
    record.duration = report.duration
    record.worker = getattr(item.config, "workerinput", {}).get("workerid", "")
    if LEASE in item.stash:
        lease = item.stash[LEASE]
        record.gpus, record.lease_wait_s = lease.describe(), round(lease.waited_s, 3)
    if TELEMETRY in item.stash:
        telemetry = item.stash[TELEMETRY]
        summary = telemetry.summary()
        for name in TELEMETRY_COLUMNS:
            setattr(record, name, round(summary[name], 3) if name in summary else None)
        record.telemetry_flags = "; ".join(telemetry.flags(memory_gb=session.slice_memory_gb))
        record.telemetry = telemetry.to_dict()
    record.rank_means = item.stash.get(RANK_MEANS, [])
    one_device, reference = item.stash.get(SCALING, (None, ""))
    if one_device is not None and record.mean is not None:
        scaling.efficiency(record, one_device, reference)
    else:
        record.scaling_reference = reference
    if ENVIRONMENT in item.stash:
        record.environment = item.stash[ENVIRONMENT]
    record.runner = item.stash.get(RUNNER, "local")
    cores = item.stash.get(CORES, session.slice)
    if cores:
        record.cpus, record.memory_share_gb = cores.cpuset, round(cores.memory_gb, 2)
        record.cpus_busy = ",".join(map(str, cores.busy))
    report.user_properties.append((PROPERTY, record.to_dict()))
    drawing = call.when == "call" and session.plots and session.run_dir
    drawn = test_plots(record, session.run_dir / page.PLOTS) if drawing else {}
    if call.when == "call" and item.config.pluginmanager.hasplugin("html"):
        from pytest_html import extras

        links = [
            extras.url(html_report.log_link(Path(record.loadgen_dir) / name, session.store), name=f"LoadGen {name}")
            for name in LOADGEN_LOGS
            if record.loadgen_dir
        ]
        if record.runner == "container" and session.run_dir:
            log = session.run_dir / "containers" / case.id / CONTAINER_LOG
            links.append(extras.url(html_report.log_link(log, session.store), name="container log"))
        pngs = [extras.png(base64.b64encode(png).decode(), name=kind) for kind, png in drawn.items()]
        report.extras = [*getattr(report, "extras", []), extras.html(html_report.figures(record)), *pngs, *links]


LOADGEN_LOGS = (SUMMARY, DETAIL)
COMPARISON = "comparison.md"  #: with --compare: the earlier run against this one, case by case
#: the telemetry summary's values that become the Record's flat columns
TELEMETRY_COLUMNS = (
    "gpu_util_mean",
    "gpu_power_w_mean",
    "gpu_temp_c_max",
    "gpu_sm_clock_mhz_mean",
    "cpu_util_mean",
    "rss_gb_max",
)


def _outcome(report: pytest.TestReport) -> str:
    if report.when == "setup" and report.failed:
        return "error"
    return report.outcome


def _message(report: pytest.TestReport) -> str:
    """The skip reason or failure message, without the traceback."""
    if report.skipped and isinstance(report.longrepr, tuple):
        return report.longrepr[2].removeprefix("Skipped: ")
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        return (getattr(crash, "message", None) or report.longreprtext).strip()[:2000]
    return ""
