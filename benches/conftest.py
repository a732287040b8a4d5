"""Benchmarks: pytest-benchmark, grouped per kernel, each group holding the
candidate and its obvious alternative so the figures read as ratios
(docs/conventions.md §12).  CI runs them with --benchmark-disable (exercised, not timed)."""
