"""Percentiles and the summary every measurement reports."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (nan when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(latencies: Sequence[float], elapsed: float, errors: int = 0) -> dict[str, Any]:
    """Throughput and latency (ms) of `latencies` (seconds) completed in `elapsed` seconds."""
    ordered = sorted(latencies)
    return {
        "n": len(ordered),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "rps": len(ordered) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "max_ms": (ordered[-1] * 1000) if ordered else math.nan,
    }
