"""The log parsers of third-party benchmark containers, on the constructed logs in fixtures/container_logs/."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mlperf.containers.logs import PARSERS, LogFormatError, Throughput, parse_file, parse_throughput

LOGS = Path(__file__).resolve().parent.parent / "fixtures" / "container_logs"


@pytest.mark.parametrize(
    ("kind", "log", "value", "unit", "line_no"),
    [
        ("nvidia-resnet50", "nvidia-resnet50.log", 306.86, "img/s", 26),
        ("nvidia-ssd", "nvidia-ssd-v0.log", 1041.2203369140625, "img/s", 15),
        ("nvidia-ssd-v1", "nvidia-ssd-v0.log", 1037.406, "img/s", 14),
        ("nvidia-ssd-v1", "nvidia-ssd-v1.log", 412.337, "img/s", 19),
        ("nvidia-ssd", "nvidia-ssd-v1.log", 413.9052734375, "img/s", 20),
        ("nvidia-gnmt", "nvidia-gnmt.log", 21330.0, "tok/s", 58),
    ],
)
def test_each_fixture_gives_its_figure(kind: str, log: str, value: float, unit: str, line_no: int) -> None:
    found = parse_file(kind, LOGS / log)
    assert (found.value, found.unit, found.line_no) == (value, unit, line_no)
    assert found.line == (LOGS / log).read_text().splitlines()[line_no - 1]


def test_every_fixture_says_it_was_constructed() -> None:
    logs = sorted(LOGS.glob("*.log"))
    assert len(logs) == 5
    for log in logs:
        first = log.read_text().splitlines()[0]
        assert first.startswith("# built from the published format in ") and "not recorded from hardware" in first


def test_the_last_match_counts_not_the_largest() -> None:
    text = (LOGS / "nvidia-gnmt.log").read_text()
    epochs = [line for line in text.splitlines() if "\tTraining: " in line]
    assert [line.split("Training: ")[1].split()[0] for line in epochs] == ["20876", "21512", "21330"]
    assert parse_throughput("nvidia-gnmt", text).value == 21330
    repeated = "Training performance = 900.5 FPS\nnoise\nTraining performance = 812 FPS\nTraining performance = 850 FPS"
    assert parse_throughput("nvidia-ssd", repeated) == Throughput(850.0, "img/s", 4, "Training performance = 850 FPS")


def test_resnet50_per_iteration_figures_are_not_the_result() -> None:
    text = (LOGS / "nvidia-resnet50.log").read_text()
    assert text.count("train.total_ips") == 23  # 20 iterations, 2 epochs, 1 summary
    assert parse_throughput("nvidia-resnet50", text).value == 306.86


def test_a_crashed_run_fails_clearly() -> None:
    with pytest.raises(LogFormatError) as info:
        parse_file("nvidia-resnet50", LOGS / "nvidia-resnet50-crashed.log")
    message = str(info.value)
    assert "'nvidia-resnet50' found no throughput in a log of 25 lines" in message
    assert "Summary: train.loss" in message  # what was expected
    assert message.endswith("unhandled system error, NCCL version 2.5.6")  # the log's last lines
    assert message.count("\n") == 16  # the first line, the separator and 15 log lines
    assert info.value.parser is PARSERS["nvidia-resnet50"]


def test_the_error_names_a_parser_that_does_match() -> None:
    text = "Done benchmarking. Total images: 64\ttotal time: 0.2\tAverage images/sec: 320.0\tMedian images/sec: 321.0\n"
    with pytest.raises(LogFormatError, match=r"does match parser\(s\) nvidia-ssd-v1"):
        parse_throughput("nvidia-ssd", text)


def test_an_empty_log_and_an_unknown_kind() -> None:
    with pytest.raises(LogFormatError, match=r"(?s)a log of 0 lines.*\(the log is empty\)"):
        parse_throughput("nvidia-gnmt", "")
    with pytest.raises(KeyError, match="known: nvidia-resnet50, nvidia-ssd, nvidia-ssd-v1, nvidia-gnmt"):
        parse_throughput("lambda-resnet", "")
    with pytest.raises(FileNotFoundError):
        parse_file("nvidia-gnmt", LOGS / "missing.log")
