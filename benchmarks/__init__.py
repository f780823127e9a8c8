"""Benchmarks as documentation: `python -m benchmarks` prints one table of ratios measured
in the same run; `pytest benchmarks/` runs the pytest-benchmark suites."""
