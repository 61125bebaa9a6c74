"""`quorumwatch jails` rendering: durations, summary and event rows as table, JSON and CSV;
tables aligned in terminal columns whatever the validator names."""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Sequence
from typing import Any

import pytest

from quorumwatch.cli.jails import (
    EVENT_COLUMNS,
    SUMMARY_COLUMNS,
    event_rows,
    parse_duration,
    render,
    summary_rows,
)
from quorumwatch.jails.events import EventKind, ValidatorEvent
from tests.tools import split_columns, width

CHAIN = "hl"
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86400.0
EMPTY_MESSAGE = "(no jail events in range)"

HOSTILE_NAMES = [
    "evil\nname\x1b[31m red\r\x00",  # newline, escape sequence, carriage return, NUL
    "\u202eevil bidi\u2066override\u2069",  # right-to-left override and isolates
    "验证者" * 40,  # wide: two terminal columns each, 120 characters
    "e\u0301" * 30,  # combining accents: no column of their own
    "x" * 10_000,
    'tab\tand, "quotes"',
    "\u2028line\u2029para",
]


def addr(index: int) -> str:
    return f"0x{index:040x}"


def ev(
    index: int,
    kind: EventKind,
    at: float,
    *,
    name: str | None = None,
    inferred: bool = False,
    after_gap: bool = False,
    jail_seconds: float | None = None,
    unjail_delay_seconds: float | None = None,
) -> ValidatorEvent:
    return ValidatorEvent(
        event_id=f"{index}-{kind}-{at}",
        chain=CHAIN,
        address=addr(index),
        name=f"validator {index}" if name is None else name,
        kind=kind,
        observed_at=at,
        previous_observed_at=at - 30,
        inferred=inferred,
        after_gap=after_gap,
        stake=1000,
        unjailable_after_ms=None,
        jail_seconds=jail_seconds,
        unjail_delay_seconds=unjail_delay_seconds,
    )


def history() -> list[ValidatorEvent]:
    """Validator 1: jailed 2 h, jailed again a day later (still jailed); validator 2: one
    inferred cycle, seen after a gap."""
    return [
        ev(1, EventKind.JAILED, T0),
        ev(1, EventKind.UNJAILED, T0 + 7200, jail_seconds=7200, unjail_delay_seconds=90),
        ev(2, EventKind.JAILED, T0 + 3600, inferred=True),
        ev(2, EventKind.UNJAILED, T0 + 3600, inferred=True),
        ev(1, EventKind.JAILED, T0 + DAY, after_gap=True),
    ]


# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("24h", 86400), ("7d", 7 * DAY), ("2w", 14 * DAY), ("1d12h", 1.5 * DAY)],
)
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    """parse_duration turns each accepted form into its number of seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "7x", "-1d", " 7d"])
def test_parse_duration_rejects(text: str) -> None:
    """parse_duration raises ValueError naming the expected form for each malformed input."""
    with pytest.raises(ValueError, match="expected a duration such as 7d"):
        parse_duration(text)


# --- rows -----------------------------------------------------------------------------------


def test_summary_rows_per_validator() -> None:
    """summary_rows gives one row per jailed validator with counts, mean gap, median jail and
    last jail time, most jailed first."""
    rows = summary_rows({CHAIN: history()})
    assert rows == [
        {
            "chain": CHAIN,
            "validator": addr(1),
            "name": "validator 1",
            "jails": 2,
            "inferred_jails": 0,
            "mean_seconds_between_jails": DAY,
            "median_seconds_to_unjail": 7200,
            "last_jailed_at": T0 + DAY,
        },
        {
            "chain": CHAIN,
            "validator": addr(2),
            "name": "validator 2",
            "jails": 1,
            "inferred_jails": 1,
            "mean_seconds_between_jails": None,
            "median_seconds_to_unjail": None,
            "last_jailed_at": T0 + 3600,
        },
    ]
    assert {frozenset(row) for row in rows} == {frozenset(SUMMARY_COLUMNS)}


def test_event_rows_fields() -> None:
    """event_rows maps each event to the EVENT_COLUMNS fields, in order."""
    rows = event_rows(history())
    assert [set(row) for row in rows] == [set(EVENT_COLUMNS)] * 5
    assert rows[1] == {
        "chain": CHAIN,
        "observed_at": T0 + 7200,
        "validator": addr(1),
        "name": "validator 1",
        "event": "unjailed",
        "inferred": False,
        "after_gap": False,
        "jail_seconds": 7200,
        "unjail_delay_seconds": 90,
    }
    assert [(r["event"], r["inferred"], r["after_gap"]) for r in rows] == [
        ("jailed", False, False),
        ("unjailed", False, False),
        ("jailed", True, False),
        ("unjailed", True, False),
        ("jailed", False, True),
    ]


# --- table ----------------------------------------------------------------------------------


def test_summary_table_cells() -> None:
    """The summary table shows times in UTC, durations humanised and None as `-`."""
    table = render(summary_rows({CHAIN: history()}), SUMMARY_COLUMNS, "table")
    assert split_columns(table, SUMMARY_COLUMNS) == [
        list(SUMMARY_COLUMNS),
        [CHAIN, addr(1), "validator 1", "2", "0", "24.0h", "2.0h", "2026-01-02 00:00:00Z"],
        [CHAIN, addr(2), "validator 2", "1", "1", "-", "-", "2026-01-01 01:00:00Z"],
    ]


def test_event_table_cells() -> None:
    """The event table shows flags as yes/no, seconds humanised, missing measures as `-`."""
    table = render(event_rows(history()), EVENT_COLUMNS, "table")
    rows = split_columns(table, EVENT_COLUMNS)
    assert rows[0] == list(EVENT_COLUMNS)
    assert rows[1] == [
        *(CHAIN, "2026-01-01 00:00:00Z", addr(1), "validator 1", "jailed"),
        *("no", "no", "-", "-"),
    ]
    assert rows[2][4:] == ["unjailed", "no", "no", "2.0h", "90s"]
    assert rows[3][4:] == ["jailed", "yes", "no", "-", "-"]
    assert rows[5][4:] == ["jailed", "no", "yes", "-", "-"]


@pytest.mark.parametrize("events", [False, True], ids=["summary", "events"])
def test_table_stays_aligned_with_hostile_names(events: bool) -> None:
    """With control characters, newlines, bidi overrides, wide, combining and 10 kB names,
    the table has one line per row, every column starts at the header's terminal column,
    and each name cell is one printable line of at most 64 columns."""
    history_ = [
        ev(i, EventKind.JAILED, T0 + i, name=name) for i, name in enumerate(HOSTILE_NAMES, 1)
    ]
    columns = EVENT_COLUMNS if events else SUMMARY_COLUMNS
    rows = event_rows(history_) if events else summary_rows({CHAIN: history_})
    table = render(rows, columns, "table")
    lines = table.split("\n")
    assert len(lines) == len(HOSTILE_NAMES) + 1
    cells = split_columns(table, columns)
    name_column = columns.index("name")
    validator_column = columns.index("validator")
    assert sorted(row[validator_column] for row in cells[1:]) == [
        addr(i) for i in range(1, len(HOSTILE_NAMES) + 1)
    ]
    for row in cells[1:]:
        name = row[name_column]
        assert width(name) <= 64
        assert name.isprintable(), name
        assert not any(unicodedata.category(c)[0] == "C" for c in name), name
        assert not {"\n", "\u202e", "\u2028"} & set(name), name
    wide = next(row[name_column] for row in cells[1:] if row[name_column].startswith("验"))
    assert wide.endswith("…")
    assert width(wide) in (63, 64)


def test_empty_table_is_header_and_message() -> None:
    """No rows: the table is the header line then `(no jail events in range)`."""
    assert render([], SUMMARY_COLUMNS, "table") == "  ".join(SUMMARY_COLUMNS) + "\n" + EMPTY_MESSAGE
    table = render([], EVENT_COLUMNS, "table")
    assert table.split("\n") == ["  ".join(EVENT_COLUMNS), EMPTY_MESSAGE]


# --- JSON and CSV ---------------------------------------------------------------------------


def hostile_rows(events: bool) -> tuple[list[dict[str, Any]], Sequence[str]]:
    history_ = [
        *history(),
        *(ev(10 + i, EventKind.JAILED, T0 + i, name=n) for i, n in enumerate(HOSTILE_NAMES)),
    ]
    if events:
        return event_rows(history_), EVENT_COLUMNS
    return summary_rows({CHAIN: history_}), SUMMARY_COLUMNS


@pytest.mark.parametrize("events", [False, True], ids=["summary", "events"])
def test_json_round_trips_to_the_rows(events: bool) -> None:
    """JSON output is one line that loads back equal to the rows, with null for None."""
    rows, columns = hostile_rows(events)
    text = render(rows, columns, "json")
    assert "\n" not in text
    assert json.loads(text) == rows


@pytest.mark.parametrize("events", [False, True], ids=["summary", "events"])
def test_csv_parses_back_to_the_same_values(events: bool) -> None:
    """CSV output has the columns as header and parses with the csv module to every row's
    values (None as empty), one record per row whatever the names."""
    rows, columns = hostile_rows(events)
    text = render(rows, columns, "csv")
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == list(columns)
    assert list(reader) == [
        {c: "" if row[c] is None else str(row[c]) for c in columns} for row in rows
    ]


def test_empty_json_and_csv() -> None:
    """No rows: JSON is `[]`, CSV is the header line only."""
    assert render([], SUMMARY_COLUMNS, "json") == "[]"
    assert render([], EVENT_COLUMNS, "json") == "[]"
    assert render([], SUMMARY_COLUMNS, "csv") == ",".join(SUMMARY_COLUMNS)
    assert render([], EVENT_COLUMNS, "csv") == ",".join(EVENT_COLUMNS)
