"""Runnable scripts: reproductions of the seeds, sweeps and benchmarks (``python -m experiments.X``)."""
