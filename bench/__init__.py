"""Benchmarks: each bench_*.py has main(argv) -> dict with a ratio against an in-process baseline."""
