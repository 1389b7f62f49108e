"""Means with 95% confidence intervals for the report's summary table.

Student-t interval of the mean over images: mean +/- t(0.975, n-1) * s / sqrt(n). With one image there is
no interval (NaN); NaN scores (an image without a content image, say) are left out of n.
"""
import math

from scipy import stats


def mean_ci95(values) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values; NaNs where there are too few for each."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = sum(xs) / n
    if n == 1:
        return mean, math.nan, math.nan, 1
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half, n
