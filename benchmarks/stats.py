"""Latency percentiles, computed the same way for every driver that reports raw samples."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``samples`` (``fraction`` in 0..1); NaN when empty.

    Nearest rank rather than interpolation, like wrk and HdrHistogram: the figure is a
    latency some request actually had.
    """
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
