"""Tests for quorumwatch.columns: the validator table every source builds, read back row by
row, totalled per status and ranked for the per-validator series."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumwatch.columns import (
    NO_TIME,
    STATUS_DELINQUENT,
    STATUS_INACTIVE,
    STATUS_JAILED,
    STATUS_JAILED_INACTIVE,
    STATUS_ONLINE,
    DecimalIds,
    Unnamed,
    ValidatorTable,
    status_codes,
)
from quorumwatch.models import Validator, ValidatorStatus

_STAKES = st.one_of(st.integers(0, 10**6), st.integers(0, 2**70))


@st.composite
def _validators(draw: st.DrawFn) -> list[Validator]:
    count = draw(st.integers(0, 12))
    addresses = draw(
        st.lists(
            st.text("abcdef0123", min_size=1, max_size=4),
            min_size=count,
            max_size=count,
            unique=True,
        )
    )
    found = []
    for address in addresses:
        active = draw(st.booleans())
        jailed = draw(st.booleans())
        found.append(
            Validator(
                address=address,
                name=draw(st.text(max_size=3)),
                stake=draw(_STAKES),
                in_consensus_set=active,
                jailed=jailed,
                # Delinquency only shows inside the set and out of jail, as a status code can.
                delinquent=active and not jailed and draw(st.booleans()),
                unjailable_after_ms=draw(st.none() | st.integers(0, 2**50)),
                uptime_ratio=draw(st.dictionaries(st.sampled_from(["1d", "7d"]), st.floats(0, 1))),
                jail_risk_ratio=draw(st.none() | st.floats(0, 1)),
                entity_hint=draw(st.none() | st.text("xyz", min_size=1, max_size=2)),
            )
        )
    return found


@settings(max_examples=30, deadline=None)
@given(_validators())
def test_a_table_gives_back_every_validator_it_was_built_from(validators: list[Validator]) -> None:
    """`ValidatorTable.of(validators).row(i)` equals validator i, for every field a table keeps."""
    table = ValidatorTable.of(validators)
    assert len(table) == len(validators)
    assert table.rows(range(len(table))) == tuple(validators)


@settings(max_examples=30, deadline=None)
@given(_validators())
def test_totals_count_and_sum_each_status_exactly(validators: list[Validator]) -> None:
    """`totals()` holds the count and exact stake of the validators of each status."""
    totals = ValidatorTable.of(validators).totals()
    for status in ValidatorStatus:
        members = [v for v in validators if v.status is status]
        assert totals.validators[status] == len(members)
        assert totals.stake[status] == sum(v.stake for v in members)


@settings(max_examples=30, deadline=None)
@given(_validators(), st.integers(0, 14))
def test_largest_ranks_by_stake_then_address(validators: list[Validator], count: int) -> None:
    """`largest(count)` gives the rows of the `count` largest by stake, ties by address,
    largest first."""
    table = ValidatorTable.of(validators)
    expected = sorted(
        range(len(validators)), key=lambda i: (-validators[i].stake, validators[i].address)
    )
    assert table.largest(count).tolist() == expected[:count]


def test_largest_over_many_ties_keeps_the_smallest_addresses() -> None:
    """Where the boundary stake is shared by many rows, the smallest addresses win."""
    addresses = [f"v{i:03d}" for i in range(200)][::-1]
    table = ValidatorTable(
        addresses=addresses,
        names=[""] * 200,
        stakes=np.array([5] * 199 + [9], dtype=np.uint64),
        status=np.zeros(200, dtype=np.uint8),
    )
    assert [addresses[row] for row in table.largest(3).tolist()] == ["v000", "v001", "v002"]


def test_status_codes_follow_the_flags() -> None:
    """Each combination of flags gets the code whose status `Validator.status` gives."""
    codes = status_codes(
        [True, True, True, False, False, True],
        [False, True, False, False, True, True],
        [False, False, True, True, False, True],
    )
    assert codes.tolist() == [
        STATUS_ONLINE,
        STATUS_JAILED,
        STATUS_DELINQUENT,
        STATUS_INACTIVE,  # delinquency outside the set does not count
        STATUS_JAILED_INACTIVE,
        STATUS_JAILED,  # jailed wins over delinquent
    ]


def test_rows_with_status_lists_jailed_rows_inside_and_outside_the_set() -> None:
    """`rows_with_status` finds the rows of any of the codes given, in row order."""
    status = np.array([0, 4, 1, 3, 1], dtype=np.uint8)
    table = ValidatorTable(["a", "b", "c", "d", "e"], [""] * 5, np.ones(5, np.uint64), status)
    assert table.rows_with_status(STATUS_JAILED, STATUS_JAILED_INACTIVE).tolist() == [1, 2, 4]


def test_optional_columns_mark_missing_values() -> None:
    """A row without an unjail time, uptime window or jail risk reads back as None or absent."""
    table = ValidatorTable(
        addresses=["a"],
        names=["n"],
        stakes=np.array([3], dtype=np.uint64),
        status=np.zeros(1, dtype=np.uint8),
        unjailable_after_ms=np.array([NO_TIME], dtype=np.int64),
        uptime_ratio={"1d": np.array([math.nan])},
        jail_risk_ratio=np.array([math.nan]),
        entity_hints=[""],
    )
    row = table.row(0)
    assert (row.unjailable_after_ms, dict(row.uptime_ratio), row.jail_risk_ratio) == (
        None,
        {},
        None,
    )
    assert row.entity_hint is None


def test_columns_of_different_lengths_are_refused() -> None:
    """A table whose columns differ in length cannot be built."""
    with pytest.raises(ValueError, match="differ in length"):
        ValidatorTable(["a", "b"], ["", ""], np.ones(2, np.uint64), np.zeros(1, np.uint8))
    with pytest.raises(ValueError, match="differ in length"):
        ValidatorTable(
            ["a"],
            [""],
            np.ones(1, np.uint64),
            np.zeros(1, np.uint8),
            jail_risk_ratio=np.zeros(2),
        )


def test_decimal_ids_are_the_integers_written_when_read() -> None:
    """DecimalIds reads as the decimal integers, by position (from the end too), sliced and
    iterated; past the end is an IndexError, as for any sequence."""
    ids = DecimalIds(np.array([7, 2**64 - 1, 0], dtype=np.uint64))
    assert (len(ids), ids[0], ids[1], ids[-1]) == (3, "7", str(2**64 - 1), "0")
    assert list(ids) == ["7", str(2**64 - 1), "0"]
    assert list(ids[1:]) == [str(2**64 - 1), "0"]
    with pytest.raises(IndexError):
        ids[3]


def test_unnamed_reads_an_empty_name_for_every_row() -> None:
    """Unnamed reads "" at every position (from the end too), slices to the slice's length
    and iterates its rows; past either end is an IndexError, as for any sequence."""
    names = Unnamed(3)
    assert (len(names), names[0], names[2], names[-3]) == (3, "", "", "")
    assert list(names) == ["", "", ""]
    assert len(names[1:]) == 2
    assert isinstance(names[1:], Unnamed)
    assert len(names[5:]) == 0
    for outside in (3, -4):
        with pytest.raises(IndexError):
            names[outside]
