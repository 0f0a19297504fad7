"""Training: one test per benchmark x precision x system, as each system file lists them. Each measures throughput,
then trains on to the workload's quality target, and fails on a missed baseline, regression or quality target."""

import pytest


@pytest.mark.mlperf("training")
def test_train(bench):
    measurement = bench.train()
    bench.check(measurement)
