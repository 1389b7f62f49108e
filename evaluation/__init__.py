"""Scoring rather than training: `python -m evaluation.evaluate` and `python -m evaluation.style_eval`."""
