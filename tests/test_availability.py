"""Tests for `quorumwatch.availability`: per-minute buckets over 5m/1h/24h, on an injected clock."""

from __future__ import annotations

import pytest

from quorumwatch.availability import WINDOWS, AvailabilityWindows

T0 = 1_700_000_040.0  # a whole minute, so minute arithmetic below is exact
MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


def _bucket_count(windows: AvailabilityWindows) -> int:
    return len(windows._buckets)


def test_windows_are_5m_1h_24h() -> None:
    """The windows are exactly 5m, 1h and 24h, in seconds."""
    assert dict(WINDOWS) == {"5m": 300, "1h": 3600, "24h": 86400}


def test_no_requests_means_no_sample_in_any_window() -> None:
    """Before any request every window's ratio is None, not 0 or 1."""
    assert AvailabilityWindows().ratios(T0) == {"5m": None, "1h": None, "24h": None}


def test_ratio_is_good_over_total_in_every_window() -> None:
    """Three good and one bad request in the current minute give 0.75 in every window."""
    windows = AvailabilityWindows()
    for good, offset in [(True, 0), (True, 10), (False, 20), (True, 30)]:
        windows.record(good, T0 + offset)
    assert windows.ratios(T0 + 40) == {"5m": 0.75, "1h": 0.75, "24h": 0.75}


def test_all_bad_is_zero_not_none() -> None:
    """A window whose requests all failed has ratio 0.0, distinct from None."""
    windows = AvailabilityWindows()
    windows.record(False, T0)
    assert windows.ratios(T0) == {"5m": 0.0, "1h": 0.0, "24h": 0.0}


def test_old_minutes_leave_5m_but_stay_in_1h_and_24h() -> None:
    """Failures 10 minutes ago drop out of 5m but still count in 1h and 24h."""
    windows = AvailabilityWindows()
    windows.record(False, T0)
    windows.record(False, T0 + 1)
    windows.record(True, T0 + 10 * MINUTE)
    windows.record(True, T0 + 10 * MINUTE + 1)
    assert windows.ratios(T0 + 10 * MINUTE + 2) == {"5m": 1.0, "1h": 0.5, "24h": 0.5}


def test_window_without_recent_requests_is_none() -> None:
    """Requests 2 hours ago leave 5m and 1h without a sample (None) while 24h keeps them."""
    windows = AvailabilityWindows()
    windows.record(True, T0)
    windows.record(False, T0 + 1)
    assert windows.ratios(T0 + 2 * HOUR) == {"5m": None, "1h": None, "24h": 0.5}


def test_everything_expires_after_a_day() -> None:
    """Requests more than 24h (plus the one-minute bucket slack) ago leave every window."""
    windows = AvailabilityWindows()
    windows.record(True, T0)
    assert windows.ratios(T0 + DAY)["24h"] == 1.0  # within the documented one-minute slack
    assert windows.ratios(T0 + DAY + 2 * MINUTE) == {"5m": None, "1h": None, "24h": None}


def test_5m_window_boundary_in_whole_minutes() -> None:
    """A request 5 minutes earlier (same second) is in 5m; one 6 minutes earlier is not."""
    windows = AvailabilityWindows()
    windows.record(False, T0)
    windows.record(True, T0 + MINUTE)
    assert windows.ratios(T0 + 6 * MINUTE)["5m"] == 1.0
    assert windows.ratios(T0 + 5 * MINUTE)["5m"] == 0.5


def test_memory_is_bounded_over_three_days() -> None:
    """Recording every 20 s for 3 simulated days never holds more than 1,441 buckets."""
    windows = AvailabilityWindows()
    most = 0
    at = T0
    while at < T0 + 3 * DAY:
        windows.record(True, at)
        most = max(most, _bucket_count(windows))
        at += 20.0
    assert most == 1441
    assert windows.ratios(at) == {"5m": 1.0, "1h": 1.0, "24h": 1.0}


def test_clock_going_backwards_does_not_rewrite_history() -> None:
    """A backwards clock step is counted in the newest bucket; older buckets keep their counts."""
    windows = AvailabilityWindows()
    windows.record(True, T0)
    windows.record(True, T0 + 10 * MINUTE)
    windows.record(False, T0 + 10 * MINUTE - 2 * HOUR)  # NTP stepped the clock back 2 h
    assert _bucket_count(windows) == 2
    assert [list(b) for b in windows._buckets] == [
        [int(T0 // 60), 1, 1],
        [int(T0 // 60) + 10, 1, 2],
    ]
    assert windows.ratios(T0 + 10 * MINUTE) == {
        "5m": 0.5,
        "1h": pytest.approx(2 / 3),
        "24h": pytest.approx(2 / 3),
    }


def test_clock_going_backwards_then_forwards_keeps_counting() -> None:
    """After a backwards step, later requests on the recovered clock land in new buckets."""
    windows = AvailabilityWindows()
    windows.record(True, T0 + HOUR)
    windows.record(False, T0)  # stepped back one hour
    windows.record(True, T0 + HOUR + 2 * MINUTE)
    assert windows.ratios(T0 + HOUR + 2 * MINUTE) == {
        "5m": pytest.approx(2 / 3),
        "1h": pytest.approx(2 / 3),
        "24h": pytest.approx(2 / 3),
    }
    assert _bucket_count(windows) == 2
