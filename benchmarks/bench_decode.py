"""Benchmark: parsing a Hyperliquid `validatorSummaries` answer, against json.loads of it.

    python benchmarks/bench_decode.py --holders 1000000
    python benchmarks/bench_decode.py --holders 100000 --api-fields  # every field the API sends

The body is bench_pipeline's rows (with --api-fields, also a description, a commission and
the three periods of stats of a real row). Printed: json.loads of the body; the full parse,
from the bytes to the ValidatorTable, and its ratio to json.loads (target at 1,000,000
holders: <= 2x); and where the parse's time goes: msgspec's typed decode of the rows alone,
and building the table from the decoded rows alone (their checks included). Each figure is
the best of --repeats runs, the start-up heap frozen first as the daemon freezes it.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

API_FIELDS: dict[str, Any] = {
    "description": "The People’s Validator. Zero seed oils. Yours truly. https://validao.xyz",
    "nRecentBlocks": 1,
    "commission": "0.04",
    "stats": [
        ["day", {"uptimeFraction": "1.0", "predictedApr": "0.0215", "nSamples": 1440}],
        ["week", {"uptimeFraction": "0.9970238095", "predictedApr": "0.0215", "nSamples": 10080}],
        ["month", {"uptimeFraction": "0.99930", "predictedApr": "0.0215", "nSamples": 43200}],
    ],
}


def best_of(repeats: int, action: Callable[[], T]) -> tuple[float, T]:
    """Fastest wall time of `repeats` runs (each after a full collection), with a result."""
    fastest = float("inf")
    result: T | None = None
    for _ in range(repeats):
        result = None  # the last run's result is not kept alive through the next
        gc.collect()
        started = time.perf_counter()
        result = action()
        fastest = min(fastest, time.perf_counter() - started)
    assert result is not None
    return fastest, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--holders", type=int, default=1_000_000, help="rows in the answer")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, the best kept")
    parser.add_argument("--api-fields", action="store_true", help="rows as the API sends them")
    args = parser.parse_args()

    # Run as a script, this folder is on the path but not the repository with its packages.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.bench_pipeline import rows
    from quorumwatch.chains.base import decode_json
    from quorumwatch.chains.hyperliquid import parse
    from quorumwatch.daemon import freeze_startup_heap

    extra = API_FIELDS if args.api_fields else {}
    body = json.dumps([{**row, **extra} for row in rows(args.holders)]).encode()
    freeze_startup_heap()

    loads_s, _ = best_of(args.repeats, lambda: json.loads(body))
    parse_s, _ = best_of(args.repeats, lambda: parse.parse_validator_summaries(body))
    decode_s, decoded = best_of(args.repeats, lambda: decode_json(body, parse._ROWS))
    table_s, _ = best_of(args.repeats, lambda: parse._table(decoded))

    print(f"{args.holders:,} holders, {len(body) / 1e6:.1f} MB, best of {args.repeats}")
    print(f"json.loads                 {loads_s:7.3f} s")
    print(f"parse to a ValidatorTable  {parse_s:7.3f} s  {parse_s / loads_s:5.2f}x json.loads")
    print(f"  msgspec decode alone     {decode_s:7.3f} s  {decode_s / loads_s:5.2f}x")
    print(f"  the table alone          {table_s:7.3f} s  {table_s / loads_s:5.2f}x")


if __name__ == "__main__":
    main()
