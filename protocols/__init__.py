"""Experiment protocols (YAML step lists) and their executor."""
