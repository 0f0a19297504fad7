"""pytest-mlperf: deep-learning hardware benchmarks (MLPerf, Lambda, Mila) as parametrised pytest tests."""

__version__ = "0.1.0"
