"""Availability over sliding windows, in per-minute buckets so memory stays bounded."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

WINDOWS: Mapping[str, int] = {"5m": 300, "1h": 3600, "24h": 86400}
_BUCKET_SECONDS = 60


class AvailabilityWindows:
    """Counts good and total requests per minute over the longest window, at most 1,441 buckets.

    A window's ratio covers whole minutes, so it can include up to one minute more than
    its nominal length; a window with no requests has no ratio (None), never 0 or 1.
    """

    __slots__ = ("_buckets", "_horizon")

    def __init__(self) -> None:
        self._buckets: deque[list[int]] = deque()  # [minute, good, total]
        self._horizon = max(WINDOWS.values()) // _BUCKET_SECONDS + 1

    def record(self, good: bool, at: float) -> None:
        minute = int(at // _BUCKET_SECONDS)
        if not self._buckets or self._buckets[-1][0] < minute:
            self._buckets.append([minute, 0, 0])
        # A clock stepped backwards counts in the newest bucket rather than rewriting history.
        bucket = self._buckets[-1]
        bucket[1] += int(good)
        bucket[2] += 1
        while self._buckets and self._buckets[0][0] <= minute - self._horizon:
            self._buckets.popleft()

    def ratios(self, now: float) -> dict[str, float | None]:
        """Good/total per window ending at `now`."""
        minute = int(now // _BUCKET_SECONDS)
        result: dict[str, float | None] = {}
        for window, seconds in WINDOWS.items():
            oldest = minute - seconds // _BUCKET_SECONDS
            good = total = 0
            for bucket_minute, bucket_good, bucket_total in reversed(self._buckets):
                if bucket_minute < oldest:
                    break
                good += bucket_good
                total += bucket_total
            result[window] = good / total if total else None
        return result
