"""Benchmarks: run by a command, reported as ratios against a baseline measured in the same run."""
