"""Benchmarks: run by a command, reported as ratios against a baseline measured in the same run."""

from __future__ import annotations

import statistics
from collections.abc import Callable


def median_pair(baseline: Callable[[], float], candidate: Callable[[], float], rounds: int) -> tuple[float, float]:
    """Interleaved runs (after one warm-up each) so drift on a noisy machine hits both alike; medians."""
    baseline()
    candidate()
    base, cand = [], []
    for _ in range(rounds):
        base.append(baseline())
        cand.append(candidate())
    return statistics.median(base), statistics.median(cand)
