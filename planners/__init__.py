"""Planners: choose the next molecules and measurement conditions (contract, Bayesian planners, baselines)."""
