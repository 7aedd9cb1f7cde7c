"""Benchmark harness of vats-bridge: `python -m bench` (or `make bench`) writes BENCHMARKS.md."""
