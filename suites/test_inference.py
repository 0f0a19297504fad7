"""Inference: MLPerf scenarios through the real LoadGen, one test per benchmark x scenario x precision x system as
each system file's `inference` section lists them, and one accuracy test per benchmark x precision x system.

A performance test fails when LoadGen judges the run INVALID, naming the unmet checks; an accuracy test when the
served model keeps less than MLPerf's target fraction of the FP32 model's accuracy on the same samples."""

import pytest


@pytest.mark.mlperf("inference")
def test_infer(serve):
    serve.check(serve.performance())


@pytest.mark.accuracy
@pytest.mark.mlperf("inference")
def test_accuracy(serve):
    serve.check_accuracy(serve.accuracy())
