"""Throughput from the logs of third-party benchmark containers (NVIDIA's DeepLearningExamples and MLPerf images),
read the way Lambda's compile scripts read them, but failing clearly.

Lambda's scripts take the last line that matches a pattern, split it on spaces and pick a field by position; a log
with no match is skipped with "something wrong" and a missing one counts as 0, so a broken run silently lowers a
mean. Here each parser names the value with a regular expression (no field positions, which shift between container
versions), the LAST match in a log counts (earlier ones are warm-up or earlier epochs), and a log without a match
raises LogFormatError with what was expected and the log's last lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: lines of the log quoted in a LogFormatError
TAIL_LINES = 15
_NUMBER = r"(?P<value>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"


@dataclass(frozen=True)
class Throughput:
    """One figure read from a log: its value and unit, and where it was (1-based line number, the line itself)."""

    value: float
    unit: str
    line_no: int
    line: str


@dataclass(frozen=True)
class LogParser:
    """How one benchmark image reports its throughput."""

    name: str
    pattern: re.Pattern[str]  #: one named group, "value"
    unit: str
    expects: str  #: the expected line, for error messages
    source: str  #: which image and version print it

    def parse(self, text: str) -> Throughput:
        """The last match in `text`; LogFormatError when there is none."""
        found = None
        for line_no, line in enumerate(text.splitlines(), start=1):
            for match in self.pattern.finditer(line):
                found = Throughput(float(match.group("value")), self.unit, line_no, line)
        if found is None:
            raise LogFormatError(self, text)
        return found


class LogFormatError(ValueError):
    """A log in which a parser found no throughput: usually a run that failed or stopped early, else a container
    version that prints something else (the message says which other parsers do match)."""

    def __init__(self, parser: LogParser, text: str) -> None:
        self.parser = parser
        lines = text.splitlines()
        others = [p.name for p in PARSERS.values() if p is not parser and p.pattern.search(text)]
        hint = f" It does match parser(s) {', '.join(others)}: was it another container version?" if others else ""
        tail = "\n".join(lines[-TAIL_LINES:]) if lines else "(the log is empty)"
        super().__init__(
            f"log parser {parser.name!r} found no throughput in a log of {len(lines)} lines: expected a line like "
            f"{parser.expects!r} ({parser.source}; pattern {parser.pattern.pattern}).{hint}\n"
            f"--- last {min(len(lines), TAIL_LINES)} log lines ---\n{tail}"
        )


PARSERS: dict[str, LogParser] = {
    parser.name: parser
    for parser in (
        LogParser(
            name="nvidia-resnet50",
            # per-iteration and per-epoch DLLogger lines carry train.total_ips too; only the "Summary:" line is the
            # run's figure (Lambda's scripts match "Summary: train.loss" for the same reason)
            pattern=re.compile(rf"Summary:.*?\btrain\.total_ips\s*:\s*{_NUMBER}\s*img/s"),
            unit="img/s",
            expects="DLL ... - Summary: train.loss : 3.21 train.total_ips : 306.86 img/s",
            source="NVIDIA DeepLearningExamples ConvNets ResNet-50 v1.5, DLLogger stdout",
        ),
        LogParser(
            name="nvidia-ssd",
            pattern=re.compile(rf"Training performance\s*=\s*{_NUMBER}\s*FPS"),
            unit="img/s",
            expects="Training performance = 1234.5 FPS",
            source="NVIDIA DLE SSD300 benchmark mode, the median; what Lambda reads from v0 containers",
        ),
        LogParser(
            name="nvidia-ssd-v1",
            pattern=re.compile(rf"Average images/sec:\s*{_NUMBER}"),
            unit="img/s",
            expects="Done benchmarking. Total images: 1280\ttotal time: 3.104\tAverage images/sec: 412.337",
            source="NVIDIA DLE SSD300 benchmark mode, the mean; the line Lambda matches in v1 containers",
        ),
        LogParser(
            name="nvidia-gnmt",
            pattern=re.compile(rf"\bTraining:\s*{_NUMBER}\s*Tok/s"),
            unit="tok/s",
            expects="Performance: Epoch: 5\tTraining: 21330 Tok/s\tValidation: 85121 Tok/s",
            source="NVIDIA DeepLearningExamples GNMT v2, per-epoch performance line",
        ),
    )
}


def parse_throughput(kind: str, text: str) -> Throughput:
    """The throughput in `text` by the parser named `kind` (a key of PARSERS): the last match counts."""
    try:
        parser = PARSERS[kind]
    except KeyError:
        raise KeyError(f"no log parser {kind!r}; known: {', '.join(PARSERS)}") from None
    return parser.parse(text)


def parse_file(kind: str, path: Path | str) -> Throughput:
    """`parse_throughput` on a log file (FileNotFoundError, not 0, for a log that is missing)."""
    return parse_throughput(kind, Path(path).read_text(encoding="utf-8", errors="replace"))
