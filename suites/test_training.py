"""Training throughput: one test per benchmark x precision x system, as each system file lists them."""

import pytest


@pytest.mark.mlperf("training", "resnet50")
def test_train(bench):
    measurement = bench.train()
    bench.check(measurement)
