"""Scaling efficiency of results on several devices: the system's throughput over devices x one device's, one
device's figure measured on this host in this session, never taken from a file (a published or another machine's
figure would credit or blame this host for that machine's speed).

A test on several devices measures its own one-device reference (one device and one rank's share of the CPUs, in a
fresh process), unless the session also runs the same case on one device of the same GPU model: the test then names
that case (`scaling_reference`) and `annotate` takes its record's figure at the end of the run."""

from __future__ import annotations

from .record import Record

IN_THIS_RUN = " in this run"  #: the suffix of a scaling reference that is another test of the run


def efficiency(record: Record, one_device: float, reference: str) -> None:
    """Set the record's scaling columns against a one-device figure."""
    assert record.mean is not None
    record.one_device = one_device
    record.scaling_efficiency = record.mean / (record.devices * one_device)
    record.scaling_reference = reference


def annotate(records: list[Record]) -> None:
    """Take the figure of each record's one-device reference that is another test of this run."""
    means = {r.id: r.mean for r in records}
    for r in records:
        name = r.scaling_reference.removesuffix(IN_THIS_RUN)
        if r.one_device is None and r.mean is not None and r.scaling_reference.endswith(IN_THIS_RUN):
            one_device = means.get(name)
            if one_device is not None:
                efficiency(r, one_device, r.scaling_reference)
            else:
                r.scaling_reference = f"{name}{IN_THIS_RUN}, which measured nothing"
