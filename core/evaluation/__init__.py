"""Metrics, scoring and reports of `python -m evaluation.evaluate`."""
