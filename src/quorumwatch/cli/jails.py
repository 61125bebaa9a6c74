"""`quorumwatch jails`: the jail history from the store as a table, JSON or CSV."""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from quorumwatch.jails.events import ValidatorEvent
from quorumwatch.jails.statistics import ValidatorJailStats, jail_statistics
from quorumwatch.labels import safe_text

_DURATION = re.compile(r"([0-9]+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# Terminal columns a table cell may take (a name of 64 wide characters would take 128).
MAX_CELL_WIDTH = 64
SUMMARY_COLUMNS = (
    "chain",
    "validator",
    "name",
    "jails",
    "inferred_jails",
    "mean_seconds_between_jails",
    "median_seconds_to_unjail",
    "last_jailed_at",
)
EVENT_COLUMNS = (
    "chain",
    "observed_at",
    "validator",
    "name",
    "event",
    "inferred",
    "after_gap",
    "jail_seconds",
    "unjail_delay_seconds",
)


def parse_duration(text: str) -> float:
    """Seconds in `30m`, `24h`, `7d`, `2w` or combinations such as `1d12h`."""
    if not text or _DURATION.sub("", text):
        raise ValueError(f"expected a duration such as 7d, 24h or 30m, got {text!r}")
    return float(sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION.findall(text)))


def summary_rows(chain_events: dict[str, list[ValidatorEvent]]) -> list[dict[str, Any]]:
    """One row per jailed validator and chain, most jailed first."""
    rows = []
    for chain, events in chain_events.items():
        for stats in jail_statistics(events):
            rows.append({"chain": chain, **_stats_fields(stats)})
    return rows


def _stats_fields(stats: ValidatorJailStats) -> dict[str, Any]:
    fields = asdict(stats)
    fields["validator"] = fields.pop("address")
    fields["name"] = safe_text(stats.name)
    return fields


def event_rows(events: Sequence[ValidatorEvent]) -> list[dict[str, Any]]:
    return [
        {
            "chain": e.chain,
            "observed_at": e.observed_at,
            "validator": e.address,
            "name": safe_text(e.name),
            "event": str(e.kind),
            "inferred": e.inferred,
            "after_gap": e.after_gap,
            "jail_seconds": e.jail_seconds,
            "unjail_delay_seconds": e.unjail_delay_seconds,
        }
        for e in events
    ]


def render(rows: list[dict[str, Any]], columns: Sequence[str], output_format: str) -> str:
    if output_format == "json":
        return json.dumps(rows, ensure_ascii=False)
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue().rstrip("\n")
    return _table(rows, columns)


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """Columns padded to the terminal width of their cells (wide characters count two,
    combining marks none), so that every line's columns start at the same offsets."""
    cells = [[_cell(column, row[column]) for column in columns] for row in rows]
    widths = [
        max([display_width(c), *(display_width(r[i]) for r in cells)])
        for i, c in enumerate(columns)
    ]
    lines = [_line(columns, widths)] + [_line(r, widths) for r in cells]
    if not rows:
        lines.append("(no jail events in range)")
    return "\n".join(lines)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    padded = (c + " " * (w - display_width(c)) for c, w in zip(cells, widths, strict=True))
    return "  ".join(padded).rstrip()


def display_width(text: str) -> int:
    """Terminal columns `text` takes: East Asian wide and fullwidth characters two,
    combining marks none (`text` is already free of control and format characters)."""
    return sum(_char_width(char) for char in text)


def _char_width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def _fit(text: str, max_width: int = MAX_CELL_WIDTH) -> str:
    """`text` capped at `max_width` terminal columns, with an ellipsis when cut."""
    if display_width(text) <= max_width:
        return text
    kept: list[str] = []
    used = 0
    for char in text:
        width = _char_width(char)
        if used + width > max_width - 1:  # room for the ellipsis
            break
        kept.append(char)
        used += width
    return "".join(kept).rstrip() + "…"


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if column.endswith("_at"):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    if column.endswith("_seconds") or column.startswith(("mean_seconds", "median_seconds")):
        return _human_duration(float(value))
    # Names are already one printable line (safe_text); cap their width in the terminal.
    return _fit(safe_text(str(value)))


def _human_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
