"""Benchmarks behind bin/benchmark (timings go to files, never into tests)."""
