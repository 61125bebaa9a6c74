"""Benchmark: the analysis of one validator set, as a ratio to one `sorted()` of its stakes.

    python benchmarks/bench_analysis.py --holders 1000000
    python benchmarks/bench_analysis.py --holders 100000 --profiles gwei --repeats 3

For each stake profile it times, best of `--repeats`: one `sorted()` of the stakes as a Python
list (the baseline), the columnar core `analyse_columns` on prebuilt columns, with and without
an entity map, the conversion of `Validator` objects to columns (`ValidatorTable.of` and
`entity_columns`), and `analyse` of a set of `Validator` objects, converted first. Target for
the core at 1,000,000 holders: <= 1x.

Profiles: `spread` draws stakes from 1e10 to 1e15 (as bench_pipeline.py does), so the total
passes 2**64 and running sums use 32-bit limbs; `gwei` is Ethereum-like, mostly 32 ETH in
Gwei with some consolidated validators up to 2048 ETH: a total below 2**64 (one uint64
running sum) and long ties. 1% of validators are jailed and 10% inactive.
"""

from __future__ import annotations

import argparse
import random
import timeit
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from quorumwatch.analysis import ChainAnalysis, analyse, analyse_columns
from quorumwatch.columns import ValidatorTable, entity_columns
from quorumwatch.models import Validator, ValidatorSet

GWEI_PER_ETH = 10**9


def _spread(rng: random.Random) -> int:
    return rng.randint(10**10, 10**15)


def _gwei(rng: random.Random) -> int:
    if rng.random() < 0.97:
        return 32 * GWEI_PER_ETH
    return rng.randint(32, 2048) * GWEI_PER_ETH


PROFILES: dict[str, Callable[[random.Random], int]] = {"spread": _spread, "gwei": _gwei}


def validators(count: int, stake: Callable[[random.Random], int]) -> list[Validator]:
    rng = random.Random(7)
    return [
        Validator(
            address=f"0x{i:040x}",
            name=f"validator {i}",
            stake=stake(rng),
            in_consensus_set=rng.random() >= 0.1,
            jailed=rng.random() < 0.01,
        )
        for i in range(count)
    ]


def seconds(action: Callable[[], object], repeats: int) -> float:
    """Fastest of `repeats` runs (timeit switches the garbage collector off while timing)."""
    return min(timeit.repeat(action, repeat=repeats, number=1))


@dataclass(frozen=True, slots=True)
class Prebuilt:
    """A set's table and entity columns, as `analyse` builds them before the core."""

    table: ValidatorTable
    entity_index: npt.NDArray[np.int64]
    entity_names: list[str]
    unattributed: npt.NDArray[np.bool_] | None


def prebuilt(validators: Sequence[Validator], entity_of: Mapping[str, str]) -> Prebuilt:
    table = ValidatorTable.of(validators)
    return Prebuilt(table, *entity_columns(table.addresses, entity_of))


def analyse_prebuilt(columns: Prebuilt) -> Callable[[], object]:
    return lambda: analyse_columns(
        columns.table.stakes,
        columns.table.status,
        columns.entity_index,
        columns.entity_names,
        columns.table.addresses,
        unattributed=columns.unattributed,
    )


def analyse_validators(
    validators: Sequence[Validator], entity_of: Mapping[str, str]
) -> ChainAnalysis:
    """`analyse` of a set of `validators`, its table built first."""
    validator_set = ValidatorSet(ValidatorTable.of(validators), 0, "bench", 0.0)
    return analyse(validator_set, entity_of)


def run(count: int, entities: int, profile: str, repeats: int) -> None:
    validator_set = validators(count, PROFILES[profile])
    entity_of = MappingProxyType(
        {v.address: f"entity {i % entities}" for i, v in enumerate(validator_set)}
    )
    stakes = [v.stake for v in validator_set]
    total = sum(v.stake for v in validator_set if v.in_consensus_set)
    path = "uint64 running sums" if total < 2**64 else "32-bit limbs"
    print(
        f"{count:,} holders, profile {profile} (consensus total {total:.3e}: {path}), "
        f"entity map: {len(entity_of):,} validators in {entities:,} entities"
    )
    no_map: MappingProxyType[str, str] = MappingProxyType({})
    plain = prebuilt(validator_set, no_map)
    mapped = prebuilt(validator_set, entity_of)
    baseline = seconds(lambda: sorted(stakes), repeats)
    rows = [
        ("sorted(stakes), the baseline", baseline),
        ("analyse_columns, no entity map", seconds(analyse_prebuilt(plain), repeats)),
        ("analyse_columns, entity map", seconds(analyse_prebuilt(mapped), repeats)),
        (
            "  columns from Validators, no map",
            seconds(lambda: prebuilt(validator_set, no_map), repeats),
        ),
        (
            "  columns from Validators, entity map",
            seconds(lambda: prebuilt(validator_set, entity_of), repeats),
        ),
        (
            "analyse(validators), no entity map",
            seconds(lambda: analyse_validators(validator_set, {}), repeats),
        ),
        (
            "analyse(validators), entity map",
            seconds(lambda: analyse_validators(validator_set, entity_of), repeats),
        ),
    ]
    for label, elapsed in rows:
        print(f"  {label:<40} {elapsed:8.4f} s {elapsed / baseline:7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--holders", type=int, default=1_000_000, help="validators in the set")
    parser.add_argument("--entities", type=int, default=10_000, help="entities in the map")
    parser.add_argument(
        "--profiles", default=",".join(PROFILES), help="comma-separated stake profiles"
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement")
    args = parser.parse_args()
    for profile in args.profiles.split(","):
        run(args.holders, args.entities, profile, args.repeats)


if __name__ == "__main__":
    main()
