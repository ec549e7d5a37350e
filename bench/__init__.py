"""Benchmarks: `python -m bench.run`; each module writes bench/results/<name>.json."""
