"""Tests for the pure decentralization analysis in `quorumwatch.analysis`.

Golden vectors come from §6 of /work/shared/reference/decentralization-math.md. The property
tests compare `analyse` and the columnar core `analyse_columns` against a deliberately naive
reference below (plain sorted loops, `fractions.Fraction` for every ratio and threshold rule),
over stakes that exercise every path of the ranking (uint64 running sums below a total of
2**64, 32-bit limbs above it, object columns for single stakes of 2**64 and more), ties, and
exact threshold boundaries.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorumwatch.analysis import (
    DEFAULT_TOP_ENTITIES,
    MIN_TOP_ENTITIES,
    TOP_N,
    AnalysisError,
    ChainAnalysis,
    Concentration,
    Grouping,
    Threshold,
    _Ranking,
    analyse_columns,
    halt_distance,
    liveness_margin,
    minimum_stake,
    nakamoto,
    reaches,
)
from quorumwatch.analysis import analyse as analyse_set
from quorumwatch.columns import (
    CONSENSUS_CODES_BELOW,
    STATUS_DELINQUENT,
    STATUS_INACTIVE,
    STATUS_JAILED,
    STATUS_JAILED_INACTIVE,
    STATUS_OF_CODE,
    STATUS_ONLINE,
    UNATTRIBUTED,
    ValidatorTable,
    entity_columns,
    exact_sum,
    stake_column,
    status_codes,
)
from quorumwatch.config import AlertSettings
from quorumwatch.models import Attribution, Validator, ValidatorSet, ValidatorStatus


def analyse(
    validators: Sequence[Validator],
    entity_of: Mapping[str, str],
    *,
    operator_of: Mapping[str, str] | None = None,
    top: int = DEFAULT_TOP_ENTITIES,
) -> ChainAnalysis:
    """`analysis.analyse` of `validators` as one set, entities from `entity_of`; given
    `operator_of`, as a source that attributes its set (entities and operators) would."""
    table = ValidatorTable.of(validators)
    attribution = None
    if operator_of is not None:
        entity_index, entity_names, _ = entity_columns(table.addresses, entity_of)
        operators, _, _ = entity_columns(table.addresses, operator_of)
        attribution = Attribution(entity_index, entity_names, operators)
    validator_set = ValidatorSet(table, 0, "ep", 0.0, attribution=attribution)
    return analyse_set(validator_set, entity_of, top=top)


REL = 1e-12  # golden vectors
TOL = 1e-9  # property comparisons against the exact reference

PROPERTY_SETTINGS = settings(max_examples=120, deadline=None)

# --------------------------------------------------------------------------------------------
# Naive reference implementation (Fractions, plain sorted loops)
# --------------------------------------------------------------------------------------------

RULES: dict[Threshold, Callable[[Fraction], bool]] = {
    Threshold.HALT: lambda share: share >= Fraction(1, 3),
    Threshold.MAJORITY: lambda share: share > Fraction(1, 2),
    Threshold.CONTROL: lambda share: share > Fraction(2, 3),
}


def naive_nakamoto(weights: Sequence[int], threshold: Threshold) -> int | None:
    """Smallest k whose top-k share meets the threshold, by a plain loop; None when T = 0."""
    ws = sorted((w for w in weights if w > 0), reverse=True)
    total = sum(ws)
    if total == 0:
        return None
    running = 0
    for k, w in enumerate(ws, 1):
        running += w
        if RULES[threshold](Fraction(running, total)):
            return k
    raise AssertionError("unreachable for T > 0")


def naive_halt_distance(online: Sequence[int], total: int) -> int:
    """Fewest further online holders to lose so that offline/T ≥ 1/3, by a plain loop."""
    ys = sorted((y for y in online if y > 0), reverse=True)
    lost = total - sum(ys)
    if RULES[Threshold.HALT](Fraction(lost, total)):
        return 0
    for k, y in enumerate(ys, 1):
        lost += y
        if RULES[Threshold.HALT](Fraction(lost, total)):
            return k
    raise AssertionError("online stake does not reach the halt threshold")


def naive_gini(weights: Sequence[int]) -> Fraction:
    """Gini as ΣΣ|x_i − x_j| / (2·n·T) (mean-absolute-difference form), exactly."""
    ws = [w for w in weights if w > 0]
    n, total = len(ws), sum(ws)
    pairwise = sum(abs(a - b) for a in ws for b in ws)
    return Fraction(pairwise, 2 * n * total)


def naive_entropy(weights: Sequence[int]) -> float:
    """Shannon entropy −Σ p·log2 p in bits, p = x/T, skipping zero weights."""
    ws = [w for w in weights if w > 0]
    total = sum(ws)
    log_total = math.log2(total)
    return -math.fsum(float(Fraction(w, total)) * (math.log2(w) - log_total) for w in ws)


@dataclass(frozen=True)
class RefConcentration:
    holders: int
    nakamoto: dict[Threshold, int]
    largest: Fraction
    top: dict[int, Fraction]
    hhi: Fraction
    gini: Fraction
    entropy: float
    halt_distance: int


@dataclass(frozen=True)
class RefAnalysis:
    total: int
    online: int
    margin: Fraction
    groupings: dict[Grouping, RefConcentration]
    entity_totals: dict[str, int]
    attributed: dict[str, bool]
    unattributed: Fraction


def reference_concentration(
    weights: Sequence[int], online: Sequence[int], total: int
) -> RefConcentration:
    ws = sorted((w for w in weights if w > 0), reverse=True)
    assert sum(ws) == total
    nakamotos: dict[Threshold, int] = {}
    for t in Threshold:
        nc = naive_nakamoto(ws, t)
        assert nc is not None
        nakamotos[t] = nc
    return RefConcentration(
        holders=len(ws),
        nakamoto=nakamotos,
        largest=Fraction(ws[0], total),
        top={n: Fraction(sum(ws[:n]), total) for n in TOP_N},
        hhi=Fraction(sum(w * w for w in ws), total * total),
        gini=naive_gini(ws),
        entropy=naive_entropy(ws),
        halt_distance=naive_halt_distance(online, total),
    )


def reference_analysis(
    validators: Sequence[Validator], entity_of: dict[str, str]
) -> RefAnalysis | None:
    consensus = [v for v in validators if v.in_consensus_set]
    total = sum(v.stake for v in consensus)
    if total == 0:
        return None
    online = sum(v.stake for v in consensus if v.online)
    entity_total: dict[str, int] = {}
    entity_online: dict[str, int] = {}
    attributed: dict[str, bool] = {}
    for v in consensus:
        name = entity_of.get(v.address, v.address)
        entity_total[name] = entity_total.get(name, 0) + v.stake
        entity_online[name] = entity_online.get(name, 0) + (v.stake if v.online else 0)
        attributed[name] = v.address in entity_of
    unattributed = sum(v.stake for v in consensus if v.address not in entity_of)
    return RefAnalysis(
        total=total,
        online=online,
        margin=Fraction(online, total) - Fraction(2, 3),
        groupings={
            Grouping.VALIDATOR: reference_concentration(
                [v.stake for v in consensus],
                [v.stake for v in consensus if v.online],
                total,
            ),
            Grouping.ENTITY: reference_concentration(
                list(entity_total.values()), list(entity_online.values()), total
            ),
        },
        entity_totals=entity_total,
        attributed=attributed,
        unattributed=Fraction(unattributed, total),
    )


def close(expected: Fraction | float) -> object:
    """Relative 1e-9 with no absolute slack: for strictly positive or exactly-zero values."""
    return pytest.approx(float(expected), rel=TOL, abs=0.0)


def near(expected: Fraction | float) -> object:
    """Absolute 1e-9: for values that may legitimately be (close to) zero."""
    return pytest.approx(float(expected), rel=0.0, abs=TOL)


def assert_concentration_matches(got: Concentration, ref: RefConcentration) -> None:
    assert got.holders == ref.holders
    assert dict(got.nakamoto) == ref.nakamoto
    assert got.halt_distance == ref.halt_distance
    assert got.largest_ratio == close(ref.largest)
    assert set(got.top_ratios) == set(ref.top)
    for n, share in ref.top.items():
        assert got.top_ratios[n] == close(share)
    assert got.herfindahl == close(ref.hhi)
    assert got.effective_count == close(1 / ref.hhi)
    assert got.gini == near(ref.gini)
    assert got.entropy_bits == near(ref.entropy)


def assert_matches_reference(got: ChainAnalysis, ref: RefAnalysis) -> None:
    assert got.total_stake == ref.total
    assert got.online_stake == ref.online
    assert got.liveness_margin == pytest.approx(float(ref.margin), rel=TOL, abs=1e-15)
    assert got.unattributed_ratio == close(ref.unattributed)
    assert set(got.groupings) == {Grouping.VALIDATOR, Grouping.ENTITY}
    for grouping in got.groupings:
        assert_concentration_matches(got.groupings[grouping], ref.groupings[grouping])
    positive = {e.name: e for e in got.entities if e.stake > 0}
    expected = {name: stake for name, stake in ref.entity_totals.items() if stake > 0}
    assert set(positive) == set(expected)
    for name, stake in expected.items():
        share = positive[name]
        assert share.stake == stake
        assert share.ratio == close(Fraction(stake, ref.total))
        assert share.can_halt == RULES[Threshold.HALT](Fraction(stake, ref.total))
        assert share.can_control == RULES[Threshold.CONTROL](Fraction(stake, ref.total))
        assert share.attributed == ref.attributed[name]
    order = [(-e.stake, e.name) for e in got.entities]
    assert order == sorted(order)


def assert_invariants(got: ChainAnalysis) -> None:
    for conc in got.groupings.values():
        n = conc.holders
        nc = conc.nakamoto
        assert 1 <= nc[Threshold.HALT] <= nc[Threshold.MAJORITY] <= nc[Threshold.CONTROL] <= n
        assert 1 / n * (1 - 1e-12) <= conc.herfindahl <= 1 + 1e-12
        assert 1 - 1e-12 <= conc.effective_count <= n * (1 + 1e-12)
        assert 0.0 <= conc.gini <= (n - 1) / n
        assert 0.0 <= conc.entropy_bits <= math.log2(n)
        assert 0 <= conc.halt_distance <= nc[Threshold.HALT]


# --------------------------------------------------------------------------------------------
# Helpers and strategies
# --------------------------------------------------------------------------------------------


def make_validators(
    weights: Sequence[int], *, jailed: Sequence[bool] | None = None, prefix: str = "v"
) -> list[Validator]:
    flags = list(jailed) if jailed is not None else [False] * len(weights)
    return [
        Validator(
            address=f"{prefix}{i}", name=f"name-{i}", stake=w, in_consensus_set=True, jailed=j
        )
        for i, (w, j) in enumerate(zip(weights, flags, strict=True))
    ]


def by_validator(weights: Sequence[int]) -> Concentration:
    return analyse(make_validators(weights), {}).groupings[Grouping.VALIDATOR]


def nc_triple(conc: Concentration) -> tuple[int, int, int]:
    nc = conc.nakamoto
    return nc[Threshold.HALT], nc[Threshold.MAJORITY], nc[Threshold.CONTROL]


STAKES = st.one_of(
    st.just(0),
    st.integers(1, 10),
    st.integers(0, 10**6),
    st.integers(2**53 - 8, 2**53 + 8),
    st.integers(2**52, 2**54),
    st.integers(2**60, 2**64),
    st.integers(1, 2**127),
    st.integers(2**126, 2**127),
    st.sampled_from([1, 2**53 - 1, 2**53, 2**53 + 1, 2**60, 2**127, 10**18]),
)


@dataclass(frozen=True)
class Case:
    validators: list[Validator]
    entity_of: dict[str, str]


@st.composite
def cases(draw: st.DrawFn, max_size: int = 60) -> Case:
    """Random validator sets: ties via a small palette, random flags and entity map."""
    palette = draw(st.lists(STAKES, min_size=1, max_size=6))
    stake = st.one_of(st.sampled_from(palette), STAKES)
    rows = draw(
        st.lists(
            st.tuples(
                stake,
                st.sampled_from([True, True, True, False]),  # in consensus set
                st.sampled_from([False, False, True]),  # jailed
                st.one_of(st.none(), st.integers(0, 5)),  # entity index or unmapped
            ),
            max_size=max_size,
        )
    )
    validators = [
        Validator(address=f"val{i}", name=f"n{i}", stake=s, in_consensus_set=c, jailed=j)
        for i, (s, c, j, _) in enumerate(rows)
    ]
    # Entity names live in their own namespace ("E…"), disjoint from addresses ("val…").
    entity_of = {f"val{i}": f"E{e}" for i, (_, _, _, e) in enumerate(rows) if e is not None}
    entity_of["not-a-validator"] = "E0"
    return Case(validators, entity_of)


@st.composite
def boundary_weights(draw: st.DrawFn) -> tuple[list[int], Threshold]:
    """Weights whose top-k sum sits exactly on a threshold boundary (or ±1 from it)."""
    base = draw(
        st.one_of(
            st.sampled_from([1, 2, 3, 2**20, 2**50, 2**52, 2**53 - 1, 2**53, 2**60, 2**100]),
            st.integers(1, 2**126),
        )
    )
    k = draw(st.integers(1, 5))
    head = [base + draw(st.integers(0, base)) for _ in range(k)]  # all within [base, 2·base]
    threshold = draw(st.sampled_from(list(Threshold)))
    s = sum(head)
    # Rest R such that: halt 3S = T ⇔ R = 2S; majority 2S = T ⇔ R = S; control 3S = 2T ⇔ S = 2R.
    if threshold is Threshold.CONTROL and s % 2:
        head[0] += 1
        s += 1
    rest = {Threshold.HALT: 2 * s, Threshold.MAJORITY: s, Threshold.CONTROL: s // 2}[threshold]
    rest = max(0, rest + draw(st.sampled_from([-1, 0, 0, 1])))
    m = min(head)
    pieces = [m] * (rest // m) + ([rest % m] if rest % m else [])
    weights = draw(st.permutations(head + pieces))
    return list(weights), threshold


@st.composite
def halt_boundary_sets(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """(online, offline) stakes where 3·(offline + top-j online) is T − 1, T or T + 1."""
    online = draw(st.lists(STAKES.filter(lambda w: w > 0), min_size=1, max_size=20))
    ys = sorted(online, reverse=True)
    j = draw(st.integers(0, len(ys)))
    delta = draw(st.sampled_from([-1, 0, 1]))
    rhs = sum(ys) - 3 * sum(ys[:j]) + delta  # 2·offline must equal this
    if rhs < 0:
        rhs = sum(ys) + delta  # fall back to j = 0 (already-offline stake alone)
    if rhs % 2:
        online.append(1)
        rhs += 1
    offline_total = max(rhs // 2, 0)
    cuts = sorted(draw(st.lists(st.integers(0, offline_total), max_size=3)))
    bounds = [0, *cuts, offline_total]
    offline = [b - a for a, b in itertools.pairwise(bounds) if b > a]
    return online, offline


# --------------------------------------------------------------------------------------------
# 1. Golden vectors (reference §6)
# --------------------------------------------------------------------------------------------


def test_hhi_golden_8_6_3_3() -> None:
    """HHI of [8,6,3,3] is 2950/10⁴ = 118/400 and N_eff is 400/118."""
    conc = by_validator([8, 6, 3, 3])
    assert conc.herfindahl == pytest.approx(118 / 400, rel=REL)
    assert conc.herfindahl * 10**4 == pytest.approx(2950, rel=REL)
    assert conc.effective_count == pytest.approx(400 / 118, rel=REL)


@pytest.mark.parametrize(
    ("weights", "hhi"),
    [([10] * 10, 0.1), ([2, 2], 0.5), ([1], 1.0)],
)
def test_hhi_golden_equal_holders(weights: list[int], hhi: float) -> None:
    """HHI of n equal holders is 1/n (ten×10 → 0.1, [2,2] → 0.5, [1] → 1) and N_eff is n."""
    conc = by_validator(weights)
    assert conc.herfindahl == pytest.approx(hhi, rel=REL)
    assert conc.effective_count == pytest.approx(len(weights), rel=REL)


def test_gini_golden_5_4_3_2_1() -> None:
    """Gini of [5,4,3,2,1] is exactly 4/15."""
    assert by_validator([5, 4, 3, 2, 1]).gini == pytest.approx(4 / 15, rel=REL)


def test_gini_golden_btl_vector() -> None:
    """Gini of [368,156,20,7,10,49,22,1] is 0.67792 (5 d.p.) and equals the exact value."""
    weights = [368, 156, 20, 7, 10, 49, 22, 1]
    gini = by_validator(weights).gini
    assert gini == pytest.approx(0.67792, abs=5e-6)
    assert gini == pytest.approx(float(naive_gini(weights)), rel=REL)


def test_gini_golden_single_holder_is_zero() -> None:
    """Gini of [1] is 0."""
    assert by_validator([1]).gini == 0.0


def test_gini_excludes_zero_weight_members() -> None:
    """Gini of [1,1,3,0,0] excludes the zeros: it equals Gini([1,1,3]) = 4/15, not 0.56."""
    conc = by_validator([1, 1, 3, 0, 0])
    assert conc.holders == 3
    assert conc.gini == pytest.approx(4 / 15, rel=REL)
    assert conc.gini == pytest.approx(by_validator([1, 1, 3]).gini, rel=REL)


def test_shannon_golden_3_2_1() -> None:
    """Shannon entropy of [3,2,1] is 1.459 bits, exactly −Σ p·log2 p."""
    exact = -(0.5 * math.log2(0.5) + math.log2(1 / 3) / 3 + math.log2(1 / 6) / 6)
    entropy = by_validator([3, 2, 1]).entropy_bits
    assert entropy == pytest.approx(1.459, abs=5e-4)
    assert entropy == pytest.approx(exact, rel=REL)
    assert entropy / math.log2(3) == pytest.approx(0.921, abs=5e-4)


def test_top_shares_golden_3_2_1() -> None:
    """For [3,2,1], CR_1 (largest ratio) is 0.5, CR_3 is 1.0, min-entropy −log2 CR_1 is 1 bit."""
    conc = by_validator([3, 2, 1])
    assert conc.largest_ratio == 0.5
    assert conc.top_ratios[3] == 1.0
    assert conc.top_ratios[5] == 1.0
    assert conc.top_ratios[10] == 1.0
    assert -math.log2(conc.largest_ratio) == 1.0


def test_majority_is_strict_unlike_btl_tau() -> None:
    """For [3,2,1], exactly 1/2 is not a majority: NC_majority is 2 (BTL's τ(0.5) ≥-form is 1)."""
    assert by_validator([3, 2, 1]).nakamoto[Threshold.MAJORITY] == 2
    assert nakamoto([3, 2, 1], Threshold.MAJORITY) == 2


THRESHOLD_VECTORS: list[tuple[list[int], tuple[int, int, int]]] = [
    ([1, 1, 1], (1, 2, 3)),
    ([2, 1], (1, 1, 2)),
    ([50, 50], (1, 2, 2)),
    ([331, 300, 200, 169], (2, 2, 3)),
    ([34, 33, 33], (1, 2, 2)),
    ([4, 4, 4, 3], (2, 2, 3)),
    ([5], (1, 1, 1)),
]


@pytest.mark.parametrize(("weights", "expected"), THRESHOLD_VECTORS)
def test_threshold_boundary_vectors_nakamoto(
    weights: list[int], expected: tuple[int, int, int]
) -> None:
    """`nakamoto` gives the §6 (halt, majority, control) triple for each boundary vector."""
    got = tuple(nakamoto(weights, t) for t in Threshold)
    assert got == expected


@pytest.mark.parametrize(("weights", "expected"), THRESHOLD_VECTORS)
def test_threshold_boundary_vectors_analyse(
    weights: list[int], expected: tuple[int, int, int]
) -> None:
    """`analyse` gives the §6 NC triple per validator and per entity, for any input order."""
    for order in (weights, weights[::-1], sorted(weights)):
        got = analyse(make_validators(order), {})
        assert nc_triple(got.groupings[Grouping.VALIDATOR]) == expected
        assert nc_triple(got.groupings[Grouping.ENTITY]) == expected


@pytest.mark.parametrize(("weights", "expected"), THRESHOLD_VECTORS)
def test_threshold_boundary_vectors_scaled_beyond_2_53(
    weights: list[int], expected: tuple[int, int, int]
) -> None:
    """Scaling a boundary vector by 2**90 (exact-int path) or 2**40 (float path) keeps its NC."""
    for scale in (2**40, 2**90, 2**120):
        scaled = [w * scale for w in weights]
        assert tuple(nakamoto(scaled, t) for t in Threshold) == expected
        assert nc_triple(by_validator(scaled)) == expected


@pytest.mark.parametrize("weights", [[], [0, 0]])
def test_nakamoto_undefined_is_none_never_zero(weights: list[int]) -> None:
    """`nakamoto` of [] and [0,0] is None for every threshold (never 0)."""
    for t in Threshold:
        assert nakamoto(weights, t) is None


def test_entity_merge_vector() -> None:
    """A1+A2→A, B, C, D: per validator NC (2,3,3), HHI .2150; per entity NC (1,2,3), HHI .2750."""
    validators = make_validators([20, 15, 30, 20, 15])
    names = ["A1", "A2", "B", "C", "D"]
    validators = [
        Validator(address=n, name=n, stake=v.stake, in_consensus_set=True, jailed=False)
        for n, v in zip(names, validators, strict=True)
    ]
    got = analyse(validators, {"A1": "A", "A2": "A"})
    per_validator = got.groupings[Grouping.VALIDATOR]
    per_entity = got.groupings[Grouping.ENTITY]
    assert nc_triple(per_validator) == (2, 3, 3)
    assert per_validator.herfindahl == pytest.approx(0.2150, rel=REL)
    assert per_validator.holders == 5
    assert nc_triple(per_entity) == (1, 2, 3)
    assert per_entity.herfindahl == pytest.approx(0.2750, rel=REL)
    assert per_entity.holders == 4
    assert [(e.name, e.stake, e.attributed) for e in got.entities] == [
        ("A", 35, True),
        ("B", 30, False),
        ("C", 20, False),
        ("D", 15, False),
    ]
    assert got.entities[0].can_halt
    assert not got.entities[0].can_control
    assert got.unattributed_ratio == pytest.approx(0.65, rel=REL)


def test_residual_all_online() -> None:
    """T=100, [25,25,25,25] all online: halt distance 2 = NC_halt, 34 stake must go offline."""
    got = analyse(make_validators([25, 25, 25, 25]), {})
    for grouping in (Grouping.VALIDATOR, Grouping.ENTITY):
        conc = got.groupings[grouping]
        assert conc.halt_distance == 2
        assert conc.nakamoto[Threshold.HALT] == 2
    assert minimum_stake(Threshold.HALT, 100) == 34
    assert got.online_stake == 100
    assert got.liveness_margin == pytest.approx(1 / 3, rel=REL)


def test_residual_one_jailed() -> None:
    """T=100, one 25 jailed: halt distance 1, 9 more stake needed, live with margin +1/12."""
    got = analyse(make_validators([25, 25, 25, 25], jailed=[False, True, False, False]), {})
    assert got.total_stake == 100
    assert got.online_stake == 75
    for grouping in got.groupings:
        assert got.groupings[grouping].halt_distance == 1
    assert minimum_stake(Threshold.HALT, 100) - 25 == 9
    assert reaches(Threshold.CONTROL, 75, 100)
    assert got.liveness_margin == pytest.approx(1 / 12, rel=REL)
    assert got.liveness_margin == pytest.approx(0.0833, abs=5e-5)


def test_residual_already_halted() -> None:
    """T=100, [30,30] online with 40 jailed: halt distance 0 (halted), margin −1/15."""
    got = analyse(make_validators([30, 40, 30], jailed=[False, True, False]), {})
    assert got.total_stake == 100
    assert got.online_stake == 60
    for grouping in got.groupings:
        assert got.groupings[grouping].halt_distance == 0
    assert got.liveness_margin == pytest.approx(-1 / 15, rel=REL)
    assert got.liveness_margin == pytest.approx(-0.0667, abs=5e-5)


def test_residual_functions_golden() -> None:
    """`halt_distance` and `liveness_margin` give the §6 residual vectors directly."""
    assert halt_distance([25, 25, 25, 25], 100) == 2
    assert halt_distance([25, 25, 25], 100) == 1
    assert halt_distance([30, 30], 100) == 0
    assert liveness_margin(75, 100) == pytest.approx(1 / 12, rel=REL)
    assert liveness_margin(60, 100) == pytest.approx(-1 / 15, rel=REL)


# --------------------------------------------------------------------------------------------
# Exact boundaries and the two ranking paths, explicitly
# --------------------------------------------------------------------------------------------


def test_exact_third_with_huge_weights_halts() -> None:
    """3·x1 == T exactly with weights ~2**100 gives NC_halt 1; one unit less gives 2."""
    big = 2**100
    on_boundary = [big, big - 1, big - 1, 2]  # rest = 2**101 = 2·x1
    assert nakamoto(on_boundary, Threshold.HALT) == 1
    assert by_validator(on_boundary).nakamoto[Threshold.HALT] == 1
    below = [big - 1, big - 1, big - 1, 3]  # T = 3·2**100, 3·x1 = T − 3
    assert 3 * (big - 1) < sum(below)
    assert nakamoto(below, Threshold.HALT) == 2
    assert by_validator(below).nakamoto[Threshold.HALT] == 2


def test_exact_two_thirds_is_not_control_with_huge_weights() -> None:
    """3·S == 2·T exactly at ~2**120 is not control; adding one unit to the top holder is."""
    x = 2**120
    weights = [2 * x, x]  # top share exactly 2/3
    assert nakamoto(weights, Threshold.CONTROL) == 2
    assert nakamoto([2 * x + 1, x], Threshold.CONTROL) == 1
    assert by_validator(weights).nakamoto[Threshold.CONTROL] == 2
    assert by_validator([2 * x + 1, x]).nakamoto[Threshold.CONTROL] == 1


def test_exact_half_is_not_majority_mixed_paths() -> None:
    """2·S == T with one weight above 2**53 and many small ones is not a majority."""
    small = [1] * 1000 + [2**40] * 3
    top = sum(small)
    weights = [top, *small]
    assert nakamoto(weights, Threshold.MAJORITY) == 2
    assert nakamoto([top + 1, *small], Threshold.MAJORITY) == 1
    huge = [2**60, *([2**50] * 1024)]  # 2**60 == 1024·2**50: exactly half
    assert nakamoto(huge, Threshold.MAJORITY) == 2
    assert by_validator(huge).nakamoto[Threshold.MAJORITY] == 2


def test_float_path_prefix_beyond_2_53() -> None:
    """Weights < 2**53 whose prefix sums exceed 2**53 still meet boundaries exactly (±1)."""
    x = 2**53 - 1
    rest_exact = [x] * 2  # halt: top-1 share exactly 1/3
    assert nakamoto([x, *rest_exact], Threshold.HALT) == 1
    assert nakamoto([x, x, x, 1], Threshold.HALT) == 2
    weights = [x, x, x - 1, x - 1, 2]  # T = 4x: 3·(x + x) > T, 3·x < T
    for t in Threshold:
        assert nakamoto(weights, t) == naive_nakamoto(weights, t)


def test_exact_third_offline_is_halted_with_margin_zero() -> None:
    """Offline exactly T/3 (weights 2**100+1) means halted: halt distance 0, margin 0."""
    x = 2**100 + 1
    got = analyse(make_validators([x, x, x], jailed=[True, False, False]), {})
    assert got.groupings[Grouping.VALIDATOR].halt_distance == 0
    assert got.groupings[Grouping.ENTITY].halt_distance == 0
    assert got.liveness_margin == 0.0
    got = analyse(make_validators([x, x, x, 1], jailed=[True, False, False, False]), {})
    assert got.groupings[Grouping.VALIDATOR].halt_distance == 1


def test_exact_sum_long_sequences() -> None:
    """`exact_sum` equals `sum` for long lists mixing huge and small ints (chunked path)."""
    rng = random.Random(7)
    values = [rng.choice([rng.randrange(2**127), rng.randrange(100)]) for _ in range(5000)]
    assert exact_sum(values) == sum(values)
    assert exact_sum([]) == 0
    assert exact_sum([2**127] * 2049) == 2049 * 2**127


# --------------------------------------------------------------------------------------------
# 2. Properties against the naive reference
# --------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(cases())
def test_analyse_matches_naive_reference(case: Case) -> None:
    """`analyse` matches the Fraction reference: NCs, halt distance, indices, ratios, flags."""
    ref = reference_analysis(case.validators, case.entity_of)
    if ref is None:
        with pytest.raises(AnalysisError):
            analyse(case.validators, case.entity_of)
        return
    got = analyse(case.validators, case.entity_of)
    assert_matches_reference(got, ref)
    assert_invariants(got)


@PROPERTY_SETTINGS
@given(cases(), cases())
def test_operator_grouping_matches_the_reference(case: Case, operators: Case) -> None:
    """Given `operator_of`, the operator grouping matches the Fraction reference of the same
    set grouped by operators, and leaves the validator and entity groupings unchanged."""
    operator_of = {
        address: name.replace("E", "O", 1) for address, name in operators.entity_of.items()
    }
    ref = reference_analysis(case.validators, operator_of)
    if ref is None:
        return
    got = analyse(case.validators, case.entity_of, operator_of=operator_of)
    assert_concentration_matches(got.groupings[Grouping.OPERATOR], ref.groupings[Grouping.ENTITY])
    plain = analyse(case.validators, case.entity_of)
    assert {g: got.groupings[g] for g in plain.groupings} == plain.groupings
    assert got.entities == plain.entities


@PROPERTY_SETTINGS
@given(cases(), st.randoms(use_true_random=False))
def test_analyse_is_permutation_invariant(case: Case, rng: random.Random) -> None:
    """Shuffling the validators leaves the whole `ChainAnalysis` unchanged."""
    if sum(v.stake for v in case.validators if v.in_consensus_set) == 0:
        return
    shuffled = list(case.validators)
    rng.shuffle(shuffled)
    assert analyse(shuffled, case.entity_of) == analyse(case.validators, case.entity_of)


@PROPERTY_SETTINGS
@given(st.lists(STAKES, max_size=60))
def test_nakamoto_function_matches_naive(weights: list[int]) -> None:
    """`nakamoto` equals the naive loop for every threshold (None exactly when T = 0)."""
    for t in Threshold:
        assert nakamoto(weights, t) == naive_nakamoto(weights, t)


@PROPERTY_SETTINGS
@given(boundary_weights())
def test_nakamoto_at_exact_boundaries(case: tuple[list[int], Threshold]) -> None:
    """On and ±1 around 3S=T, 2S=T and 3S=2T, `nakamoto` and `analyse` match the naive loop."""
    weights, _ = case
    expected = tuple(naive_nakamoto(weights, t) for t in Threshold)
    assert tuple(nakamoto(weights, t) for t in Threshold) == expected
    got = analyse(make_validators(weights), {})
    assert nc_triple(got.groupings[Grouping.VALIDATOR]) == expected
    assert nc_triple(got.groupings[Grouping.ENTITY]) == expected


@PROPERTY_SETTINGS
@given(halt_boundary_sets())
def test_halt_distance_at_exact_boundaries(case: tuple[list[int], list[int]]) -> None:
    """With 3·(offline + top-j online) ∈ {T−1, T, T+1}, halt distance matches the naive loop."""
    online, offline = case
    total = sum(online) + sum(offline)
    expected = naive_halt_distance(online, total)
    assert halt_distance(online, total) == expected
    validators = make_validators(
        online + offline, jailed=[False] * len(online) + [True] * len(offline)
    )
    ref = reference_analysis(validators, {})
    assert ref is not None
    got = analyse(validators, {})
    assert got.groupings[Grouping.VALIDATOR].halt_distance == expected
    assert got.groupings[Grouping.ENTITY].halt_distance == expected
    assert_matches_reference(got, ref)


@PROPERTY_SETTINGS
@given(st.lists(STAKES, max_size=60), st.lists(STAKES, max_size=10))
def test_halt_distance_function_matches_naive(online: list[int], offline: list[int]) -> None:
    """`halt_distance(online, T)` equals the naive residual loop for any offline stake."""
    total = sum(online) + sum(offline)
    if total == 0:
        return
    assert halt_distance(online, total) == naive_halt_distance(online, total)


@PROPERTY_SETTINGS
@given(st.integers(1, 2**130), st.integers(0, 2**130))
def test_liveness_margin_is_exact(total: int, online_raw: int) -> None:
    """`liveness_margin` equals float(online/T − 2/3) computed with Fractions."""
    online = online_raw % (total + 1)
    expected = Fraction(online, total) - Fraction(2, 3)
    assert liveness_margin(online, total) == pytest.approx(float(expected), rel=TOL, abs=1e-15)


@pytest.mark.parametrize(
    ("low", "high"),
    [
        (2**53 - 2**30, 2**53 + 2**30),  # straddling 2**53: exact-int path
        (2**52, 2**53 - 1),  # all below 2**53 (float path), prefix sums far beyond it
        (1, 2**127),  # mixed magnitudes
    ],
)
@pytest.mark.parametrize("delta", [0, 1])
def test_large_set_matches_naive(low: int, high: int, delta: int) -> None:
    """~5,000 validators (with T forced to 3·S_k + delta): NCs of both groupings are exact."""
    rng = random.Random(low ^ high ^ delta)
    if high > 2**64:
        weights = [rng.randrange(1, 2 ** rng.randrange(1, 128)) for _ in range(5000)]
    else:
        weights = [rng.randrange(low, high + 1) for _ in range(5000)]
    ws = sorted(weights, reverse=True)
    k = naive_nakamoto(ws, Threshold.HALT)
    assert k is not None
    top_k = sum(ws[:k])
    # Pad with holders no larger than the k-th weight so that T' = 3·S_k + delta exactly.
    pad = 3 * top_k - sum(ws) + delta
    cap = ws[k - 1]
    weights += [cap] * (pad // cap) + ([pad % cap] if pad % cap else [])
    assert 3 * top_k == sum(weights) - delta
    if delta == 0:
        assert naive_nakamoto(weights, Threshold.HALT) == k
    rng.shuffle(weights)
    validators = make_validators(weights)
    entity_of = {v.address: f"E{rng.randrange(700)}" for v in validators if rng.random() < 0.6}
    jailed = {v.address for v in validators if rng.random() < 0.1}
    validators = [
        Validator(v.address, v.name, v.stake, in_consensus_set=True, jailed=v.address in jailed)
        for v in validators
    ]
    got = analyse(validators, entity_of)
    total = sum(weights)
    entity_total: dict[str, int] = {}
    entity_online: dict[str, int] = {}
    for v in validators:
        name = entity_of.get(v.address, v.address)
        entity_total[name] = entity_total.get(name, 0) + v.stake
        entity_online[name] = entity_online.get(name, 0) + (0 if v.jailed else v.stake)
    groups = {
        Grouping.VALIDATOR: (weights, [v.stake for v in validators if not v.jailed]),
        Grouping.ENTITY: (list(entity_total.values()), list(entity_online.values())),
    }
    for grouping, (grouped, online) in groups.items():
        conc = got.groupings[grouping]
        assert dict(conc.nakamoto) == {t: naive_nakamoto(grouped, t) for t in Threshold}
        assert conc.halt_distance == naive_halt_distance(online, total)
        hhi = Fraction(sum(w * w for w in grouped), total * total)
        assert conc.herfindahl == close(hhi)
    for t in Threshold:
        assert nakamoto(weights, t) == naive_nakamoto(weights, t)


# --------------------------------------------------------------------------------------------
# 3. Edge cases
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "validators",
    [
        [],
        make_validators([0, 0]),
        [Validator("a", "a", 10**20, in_consensus_set=False, jailed=False)],
        [
            Validator("a", "a", 0, in_consensus_set=True, jailed=True),
            Validator("b", "b", 5, in_consensus_set=False, jailed=True),
        ],
    ],
)
def test_no_consensus_stake_raises(validators: list[Validator]) -> None:
    """No positive consensus stake (empty, all zero, all inactive) raises AnalysisError."""
    with pytest.raises(AnalysisError):
        analyse(validators, {})


@pytest.mark.parametrize("stake", [1, 5, 2**53 + 1, 2**127])
def test_single_holder(stake: int) -> None:
    """A single holder (zeros beside it) has NC (1,1,1), HHI 1, N_eff 1, Gini 0, entropy 0."""
    got = analyse(make_validators([0, stake, 0]), {})
    for conc in got.groupings.values():
        assert conc.holders == 1
        assert nc_triple(conc) == (1, 1, 1)
        assert conc.herfindahl == pytest.approx(1.0, rel=REL)
        assert conc.effective_count == pytest.approx(1.0, rel=REL)
        assert conc.gini == 0.0
        assert conc.entropy_bits == 0.0
        assert conc.largest_ratio == 1.0
        assert conc.halt_distance == 1


@pytest.mark.parametrize(
    "weights",
    [
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        [2**60 + i for i in range(50)],
        [2**53 - 2 + i for i in range(5)] * 3,
        [3, 2**127, 0, 2**53, 7, 2**53 + 1, 1],
    ],
)
def test_api_order_never_trusted(weights: list[int]) -> None:
    """Ascending, descending and shuffled inputs give an identical `ChainAnalysis`."""
    jailed = [i % 4 == 1 for i in range(len(weights))]
    validators = make_validators(weights, jailed=jailed)
    entity_of = {v.address: f"E{i % 3}" for i, v in enumerate(validators) if i % 2}
    expected = analyse(validators, entity_of)
    ascending = sorted(validators, key=lambda v: v.stake)
    assert analyse(ascending, entity_of) == expected
    assert analyse(ascending[::-1], entity_of) == expected
    shuffled = list(validators)
    random.Random(3).shuffle(shuffled)
    assert analyse(shuffled, entity_of) == expected
    for t in Threshold:
        assert nakamoto(sorted(weights), t) == nakamoto(sorted(weights, reverse=True), t)


def test_inactive_validators_never_count() -> None:
    """Validators outside the consensus set (jailed or not, any stake) change nothing."""
    active = make_validators([30, 20, 20, 15, 15], jailed=[False, True, False, False, False])
    entity_of = {"v0": "A", "v1": "A", "x0": "A", "x1": "B"}
    inactive = [
        Validator("x0", "x0", 10**30, in_consensus_set=False, jailed=False),
        Validator("x1", "x1", 2**127, in_consensus_set=False, jailed=True),
        Validator("x2", "x2", 50, in_consensus_set=False, jailed=False),
    ]
    base = analyse(active, entity_of)
    assert analyse(active + inactive, entity_of) == base
    assert analyse(inactive[:1] + active + inactive[1:], entity_of) == base
    assert base.total_stake == 100
    assert {e.name for e in base.entities} == {"A", "v2", "v3", "v4"}


def test_jailed_count_in_total_but_not_online() -> None:
    """Jailed consensus stake stays in T and the NCs but is excluded from online stake."""
    validators = make_validators([40, 30, 20, 10], jailed=[True, False, False, False])
    got = analyse(validators, {})
    assert got.total_stake == 100
    assert got.online_stake == 60
    conc = got.groupings[Grouping.VALIDATOR]
    assert conc.holders == 4
    assert nc_triple(conc) == (1, 2, 2)
    assert conc.largest_ratio == pytest.approx(0.4, rel=REL)
    assert got.liveness_margin == pytest.approx(0.6 - 2 / 3, rel=REL)
    assert conc.halt_distance == 0  # 40 offline ≥ 34
    assert got.entities[0].name == "v0"
    assert got.entities[0].can_halt


def test_entity_halt_distance_merges_online_stake() -> None:
    """Per entity, online stakes of one entity's validators add up (13+13 ≥ 26 needed: 1 vs 2)."""
    validators = make_validators([13, 13, 15, 15, 15, 15, 4], jailed=[False] * 6 + [True])
    got = analyse(validators, {"v0": "A", "v1": "A"})
    assert got.total_stake == 90
    assert got.groupings[Grouping.VALIDATOR].halt_distance == 2
    assert got.groupings[Grouping.ENTITY].halt_distance == 1


def test_entity_halt_distance_uses_only_non_jailed_part() -> None:
    """An entity's jailed validators don't count towards its online stake in the halt distance."""
    weights = [10, 10, *([10] * 8)]  # T = 100, need 34 − 10 = 24 more
    validators = make_validators(weights, jailed=[False, True, *([False] * 8)])
    got = analyse(validators, {"v0": "A", "v1": "A"})
    assert got.groupings[Grouping.VALIDATOR].halt_distance == 3
    assert got.groupings[Grouping.ENTITY].halt_distance == 3  # A counts 10 online, not 20
    assert got.groupings[Grouping.ENTITY].holders == 9
    assert got.groupings[Grouping.ENTITY].largest_ratio == pytest.approx(0.2, rel=REL)


def test_zero_stake_holders_excluded_from_every_index() -> None:
    """Adding zero-stake validators (mapped or not, jailed or not) changes no index."""
    base = analyse(make_validators([3, 2, 1]), {})
    zeros = [
        Validator("z0", "z0", 0, in_consensus_set=True, jailed=False),
        Validator("z1", "z1", 0, in_consensus_set=True, jailed=True),
        Validator("z2", "z2", 0, in_consensus_set=True, jailed=False),
    ]
    got = analyse(make_validators([3, 2, 1]) + zeros, {"z2": "E"})
    assert got.groupings == base.groupings
    assert got.total_stake == base.total_stake
    assert got.liveness_margin == base.liveness_margin
    assert got.unattributed_ratio == base.unattributed_ratio


def test_unattributed_ratio_counts_unmapped_stake_only() -> None:
    """`unattributed_ratio` is the stake of unmapped consensus validators over T (jailed too)."""
    validators = make_validators([50, 25, 15, 10], jailed=[False, False, True, False])
    got = analyse(validators, {"v0": "X", "v1": "Y"})
    assert got.unattributed_ratio == pytest.approx(0.25, rel=REL)
    assert {e.name: e.attributed for e in got.entities} == {
        "X": True,
        "Y": True,
        "v2": False,
        "v3": False,
    }


def test_unattributed_ratio_when_entity_name_equals_an_address() -> None:
    """An entity named like an unmapped address still only counts unmapped stake as unattributed."""
    validators = [
        Validator("a", "a", 10, in_consensus_set=True, jailed=False),
        Validator("b", "b", 30, in_consensus_set=True, jailed=False),
        Validator("c", "c", 60, in_consensus_set=True, jailed=False),
    ]
    got = analyse(validators, {"a": "b", "c": "C"})  # "a" is mapped to entity "b"
    assert got.unattributed_ratio == pytest.approx(0.30, rel=REL)


# --------------------------------------------------------------------------------------------
# 4. reaches / minimum_stake agreement
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", list(Threshold))
def test_minimum_stake_is_smallest_reaching(threshold: Threshold) -> None:
    """For T in 1..300, `minimum_stake` is the smallest S in 0..T with `reaches(S, T)`."""
    for total in range(1, 301):
        smallest = next(s for s in range(total + 1) if reaches(threshold, s, total))
        assert minimum_stake(threshold, total) == smallest
        for s in range(total + 1):
            assert reaches(threshold, s, total) == RULES[threshold](Fraction(s, total))


@pytest.mark.parametrize("threshold", list(Threshold))
@pytest.mark.parametrize("total", [2**53 - 1, 2**53, 2**53 + 1, 3 * 2**100, 3 * 2**100 + 2])
def test_minimum_stake_exact_for_huge_totals(threshold: Threshold, total: int) -> None:
    """Near 2**53 and ~2**100, `minimum_stake` reaches the threshold and one less does not."""
    s = minimum_stake(threshold, total)
    assert reaches(threshold, s, total)
    assert not reaches(threshold, s - 1, total)
    assert RULES[threshold](Fraction(s, total))
    assert not RULES[threshold](Fraction(s - 1, total))


# --------------------------------------------------------------------------------------------
# 5. The columnar core: status codes, exactness on every stake path, materialised entities
# --------------------------------------------------------------------------------------------

# Flags (in consensus set, jailed, delinquent) of each status code.
CODE_FLAGS: dict[int, tuple[bool, bool, bool]] = {
    STATUS_ONLINE: (True, False, False),
    STATUS_JAILED: (True, True, False),
    STATUS_DELINQUENT: (True, False, True),
    STATUS_INACTIVE: (False, False, False),
    STATUS_JAILED_INACTIVE: (False, True, False),
}
ENTITY_NAMES = [f"E{i}" for i in range(6)]
ENTITY_IDS = st.integers(UNATTRIBUTED, len(ENTITY_NAMES) - 1)


@dataclass(frozen=True)
class ColumnCase:
    """Rows of (stake, status code, entity id or -1); row i has address a{i}."""

    stakes: list[int]
    codes: list[int]
    entities: list[int]

    @property
    def addresses(self) -> list[str]:
        return [f"a{i}" for i in range(len(self.stakes))]

    def validators(self) -> list[Validator]:
        return [
            Validator(
                address, address, stake, *CODE_FLAGS[code][:2], delinquent=CODE_FLAGS[code][2]
            )
            for address, stake, code in zip(self.addresses, self.stakes, self.codes, strict=True)
        ]

    def entity_of(self) -> dict[str, str]:
        return {
            address: ENTITY_NAMES[e]
            for address, e in zip(self.addresses, self.entities, strict=True)
            if e != UNATTRIBUTED
        }

    def analyse(self, top: int = DEFAULT_TOP_ENTITIES) -> ChainAnalysis:
        return analyse_columns(
            stake_column(self.stakes),
            np.array(self.codes, dtype=np.uint8),
            np.array(self.entities, dtype=np.int64),
            ENTITY_NAMES,
            self.addresses,
            top=top,
        )

    @property
    def consensus_total(self) -> int:
        return sum(s for s, c in zip(self.stakes, self.codes, strict=True) if c < 3)


@st.composite
def column_cases(
    draw: st.DrawFn,
    stakes: st.SearchStrategy[int] = STAKES,
    max_size: int = 60,
    entity: st.SearchStrategy[int] = ENTITY_IDS,
) -> ColumnCase:
    """Random columns: ties via a small palette, every status code, six entities or none."""
    palette = draw(st.lists(stakes, min_size=1, max_size=6))
    stake = st.one_of(st.sampled_from(palette), stakes)
    code = st.sampled_from([0, 0, 0, 0, 1, 2, 3, 4])
    rows = draw(st.lists(st.tuples(stake, code, entity), max_size=max_size))
    return ColumnCase([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


def assert_columns_match_reference(case: ColumnCase) -> None:
    """The core against the Fraction oracle, and against `analyse` of the same validators."""
    ref = reference_analysis(case.validators(), case.entity_of())
    if ref is None:
        with pytest.raises(AnalysisError):
            case.analyse()
        return
    got = case.analyse()
    assert_matches_reference(got, ref)
    assert_invariants(got)
    assert analyse(case.validators(), case.entity_of()) == got


# Stakes that fit uint64 but whose totals pass 2**64: the 32-bit-limb path.
UINT64_STAKES = st.one_of(
    st.integers(0, 2**64 - 1),
    st.integers(2**63 - 8, 2**63 + 8),
    st.integers(2**64 - 16, 2**64 - 1),
    st.integers(1, 10),
    st.sampled_from([1, 2**32 - 1, 2**32, 2**53 + 1, 2**62, 2**64 - 1]),
)
# Single stakes of 2**64 and beyond (Cosmos allows up to 2**128 and more): the object path.
HUGE_STAKES = st.one_of(
    st.integers(2**64, 2**64 + 16),
    st.integers(2**64, 2**130),
    st.integers(0, 2**64 - 1),
    st.integers(1, 10),
)


def test_status_codes_follow_validator_status() -> None:
    """Codes 0-3 are ValidatorStatus in order, 4 is jailed outside the set; consensus is < 3."""
    assert STATUS_OF_CODE[:4] == tuple(ValidatorStatus)
    for active, jailed, delinquent in itertools.product([False, True], repeat=3):
        v = Validator("a", "a", 1, active, jailed, delinquent=delinquent)
        code = int(status_codes([active], [jailed], [delinquent])[0])
        assert STATUS_OF_CODE[code] is v.status
        assert (code < CONSENSUS_CODES_BELOW) is active
        assert (code == STATUS_ONLINE) is v.online
        assert CODE_FLAGS[code] == (active, jailed, delinquent and active and not jailed)


@PROPERTY_SETTINGS
@given(column_cases())
def test_columns_match_naive_reference(case: ColumnCase) -> None:
    """`analyse_columns` matches the Fraction oracle over mixed stakes, ties and all codes."""
    assert_columns_match_reference(case)


@PROPERTY_SETTINGS
@given(column_cases(UINT64_STAKES))
def test_columns_limb_path_matches_reference(case: ColumnCase) -> None:
    """uint64 stakes whose total reaches 2**64 and beyond (limbs) stay exact."""
    assert_columns_match_reference(case)


@PROPERTY_SETTINGS
@given(column_cases(HUGE_STAKES))
def test_columns_object_path_matches_reference(case: ColumnCase) -> None:
    """Single stakes of 2**64 and beyond (object column) stay exact."""
    assert stake_column(case.stakes).dtype == (
        object if max(case.stakes, default=0) >= 2**64 else np.uint64
    )
    assert_columns_match_reference(case)


@PROPERTY_SETTINGS
@given(column_cases(st.integers(0, 2**58), max_size=40), st.integers(-3, 3))
def test_columns_totals_around_2_64(case: ColumnCase, delta: int) -> None:
    """Consensus totals of exactly 2**64 + delta (uint64 cumsum below, limbs from 2**64 on)."""
    remainder = 2**64 + delta - case.consensus_total
    half = remainder // 2
    padded = ColumnCase(
        [*case.stakes, half, remainder - half],
        [*case.codes, STATUS_ONLINE, STATUS_JAILED],
        [*case.entities, UNATTRIBUTED, 0],
    )
    assert padded.consensus_total == 2**64 + delta
    assert stake_column(padded.stakes).dtype == np.uint64
    assert_columns_match_reference(padded)


@PROPERTY_SETTINGS
@given(boundary_weights(), st.sampled_from([1, 2**20, 2**40, 2**62, 2**100]))
def test_columns_nakamoto_at_exact_boundaries(
    case: tuple[list[int], Threshold], scale: int
) -> None:
    """On and ±1 around 3S=T, 2S=T, 3S=2T, scaled onto every path, NCs match the naive loop."""
    weights = [w * scale for w in case[0]]
    expected = tuple(naive_nakamoto(weights, t) for t in Threshold)
    if expected[0] is None:
        return
    columns = ColumnCase(weights, [STATUS_ONLINE] * len(weights), [UNATTRIBUTED] * len(weights))
    got = columns.analyse()
    assert nc_triple(got.groupings[Grouping.VALIDATOR]) == expected
    assert nc_triple(got.groupings[Grouping.ENTITY]) == expected


@PROPERTY_SETTINGS
@given(st.lists(st.one_of(UINT64_STAKES, HUGE_STAKES), min_size=1, max_size=80), st.data())
def test_ranking_search_is_exact_for_any_target(weights: list[int], data: st.DataObject) -> None:
    """The ranking's prefix search (uint64, limb and object paths) equals a plain loop."""
    positive = sorted((w for w in weights if w > 0), reverse=True)
    if not positive:
        return
    ranked = _Ranking(stake_column(positive), sum(positive))
    target = data.draw(st.integers(1, sum(positive)))
    expected = next(k for k in range(1, len(positive) + 1) if sum(positive[:k]) >= target)
    assert ranked.smallest_prefix_reaching(target) == expected
    k = data.draw(st.integers(0, len(positive)))
    assert ranked.prefix(k) == sum(positive[:k])


def test_ranking_search_inside_a_run_of_tiny_weights() -> None:
    """A target deep inside 5,000 weights of 1 after weights near 2**63 is found exactly."""
    positive = [2**63 + 5] * 3 + [1] * 5000
    total = sum(positive)
    assert total > 2**64
    ranked = _Ranking(stake_column(positive), total)
    for extra in (1, 2, 2499, 4999, 5000):
        assert ranked.smallest_prefix_reaching(3 * (2**63 + 5) + extra) == 3 + extra


@pytest.mark.parametrize(
    "column",
    [
        np.array([5, 0, 3, 3, 2**40], dtype=object),  # object column of small ints: narrowed
        np.array([5, 0, 3, 3, 2**40], dtype=np.int64),
        np.array([5, 0, 3, 3, 2**40], dtype=np.uint64),
    ],
)
def test_columns_accept_any_integer_stake_column(column: npt.NDArray[Any]) -> None:
    """Object, int64 and uint64 stake columns of the same values give the same analysis."""
    expected = analyse(make_validators([5, 0, 3, 3, 2**40]), {})
    codes = np.zeros(5, dtype=np.uint8)
    ids = np.full(5, UNATTRIBUTED, dtype=np.int32)
    got = analyse_columns(column, codes, ids, [], [f"v{i}" for i in range(5)])
    assert got == expected


@pytest.mark.parametrize(
    ("stakes", "codes", "ids", "names"),
    [
        ([1, 2], [0], [-1, -1], []),  # lengths differ
        ([1, 2], [0, 5], [-1, -1], []),  # unknown status code
        ([1, 2], [0, 0], [-1, 1], ["E0"]),  # entity id out of range
        ([1, 2], [0, 0], [-2, -1], []),
        ([1, -2], [0, 0], [-1, -1], []),  # negative stake
    ],
)
def test_columns_malformed_raise(
    stakes: list[int], codes: list[int], ids: list[int], names: list[str]
) -> None:
    """Malformed columns raise ValueError rather than analysing garbage."""
    with pytest.raises(ValueError, match=r"length|status|entity|negative"):
        analyse_columns(
            np.array(stakes, dtype=object),
            np.array(codes, dtype=np.uint8),
            np.array(ids, dtype=np.int64),
            names,
            [f"v{i}" for i in range(2)],
        )


def test_columns_without_consensus_stake_raise() -> None:
    """Only inactive, jailed-outside or zero-stake rows: AnalysisError, as for `analyse`."""
    with pytest.raises(AnalysisError):
        analyse_columns(
            np.array([5, 7, 0], dtype=np.uint64),
            np.array([STATUS_INACTIVE, STATUS_JAILED_INACTIVE, STATUS_ONLINE], dtype=np.uint8),
            np.full(3, UNATTRIBUTED, dtype=np.int64),
            [],
            ["a", "b", "c"],
        )


def expected_entities(case: ColumnCase, top: int) -> list[tuple[str, int]]:
    """Named entities with stake and the max(top, MIN_TOP_ENTITIES) largest, by (−stake, name)."""
    ref = reference_analysis(case.validators(), case.entity_of())
    assert ref is not None
    ranked = sorted(
        ((name, stake) for name, stake in ref.entity_totals.items() if stake > 0),
        key=lambda item: (-item[1], item[0]),
    )
    keep = max(top, MIN_TOP_ENTITIES)
    return [(n, s) for rank, (n, s) in enumerate(ranked) if rank < keep or n in ENTITY_NAMES]


@PROPERTY_SETTINGS
@given(
    column_cases(
        st.sampled_from([1, 2, 3, 5, 2**64 - 1, 2**70]),
        entity=st.sampled_from([UNATTRIBUTED] * 5 + [0, 1, 2]),  # many single validators tie
    ),
    st.integers(0, 12),
)
def test_entities_are_named_and_largest(case: ColumnCase, top: int) -> None:
    """`entities` is every named entity plus the `top` (≥ 4) largest, ties at the cut by name;
    it holds every entity at or above 1/3 − 0.1 (the largest hysteresis), whatever `top` is."""
    if case.consensus_total == 0:
        return
    got = case.analyse(top)
    assert [(e.name, e.stake) for e in got.entities] == expected_entities(case, top)
    ref = reference_analysis(case.validators(), case.entity_of())
    assert ref is not None
    alertable = {
        name
        for name, stake in ref.entity_totals.items()
        if stake > 0 and Fraction(stake, ref.total) >= Fraction(1, 3) - Fraction(1, 10)
    }
    assert alertable <= {e.name for e in got.entities}
    assert got.groupings[Grouping.ENTITY].holders == sum(
        1 for stake in ref.entity_totals.values() if stake > 0
    )


def test_entities_tie_at_the_cut_ranks_by_name() -> None:
    """Top 4 of one larger and ten equal single validators: the larger, then the first three
    addresses of the tie; a smaller named entity still follows, past the cut."""
    stakes = [10] * 10 + [5, 50]  # a0…a9 tie, a10 is entity E3, a11 is the largest
    case = ColumnCase(stakes, [STATUS_ONLINE] * 12, [UNATTRIBUTED] * 10 + [3, UNATTRIBUTED])
    got = case.analyse(top=4)
    assert [(e.name, e.stake, e.attributed) for e in got.entities] == [
        ("a11", 50, False),
        ("a0", 10, False),
        ("a1", 10, False),
        ("a2", 10, False),
        ("E3", 5, True),
    ]
    assert got.groupings[Grouping.ENTITY].holders == 12
    assert got.entities == analyse(case.validators(), case.entity_of(), top=4).entities


def test_min_top_entities_covers_the_largest_hysteresis() -> None:
    """At most MIN_TOP_ENTITIES entities can hold 1/3 less the largest allowed hysteresis."""
    cap = max(
        Fraction(str(bound.le))
        for bound in AlertSettings.model_fields["hysteresis_ratio"].metadata
        if hasattr(bound, "le")
    )
    assert math.floor(1 / (Fraction(1, 3) - cap)) <= MIN_TOP_ENTITIES


def test_entity_columns_merge_an_address_named_like_an_entity() -> None:
    """An unmapped address equal to an entity's name joins that entity, still unattributed."""
    validators = [
        Validator("a", "a", 10, in_consensus_set=True, jailed=False),
        Validator("b", "b", 30, in_consensus_set=True, jailed=False),
        Validator("c", "c", 60, in_consensus_set=True, jailed=False),
    ]
    index, names, unattributed = entity_columns(
        [v.address for v in validators], {"a": "b", "c": "C"}
    )
    assert unattributed is not None
    assert unattributed.tolist() == [False, True, False]
    assert [names[i] for i in index.tolist()] == ["b", "b", "C"]
    got = analyse(validators, {"a": "b", "c": "C"})
    assert [(e.name, e.stake, e.attributed) for e in got.entities] == [
        ("C", 60, True),
        ("b", 40, True),
    ]
    assert got.groupings[Grouping.ENTITY].holders == 2
    # Named only by a validator outside the consensus set: b's own stake alone, unattributed.
    outside = Validator("x", "x", 99, in_consensus_set=False, jailed=False)
    got = analyse([*validators, outside], {"x": "b"})
    assert {e.name: (e.stake, e.attributed) for e in got.entities} == {
        "a": (10, False),
        "b": (30, False),
        "c": (60, False),
    }
    assert got.unattributed_ratio == 1.0


def test_a_detected_entity_is_reported_only_while_it_ranks_among_the_largest() -> None:
    """A named entity is always among `entities`; a detected one only when it is among the
    `top` largest holders, like a single validator."""
    stakes = np.array([1, 1, 2, 2, *[100] * 5], dtype=np.uint64)
    entity_index = np.array([0, 0, 1, 1, *[UNATTRIBUTED] * 5], dtype=np.int64)
    names = ["Named", "0xdetected"]
    addresses = [f"v{i}" for i in range(len(stakes))]
    status = np.zeros(len(stakes), dtype=np.uint8)

    def reported(detected: list[bool], top: int) -> set[str]:
        got = analyse_columns(
            stakes, status, entity_index, names, addresses, top=top, detected=np.array(detected)
        )
        return {entity.name for entity in got.entities}

    assert reported([False, True], top=4) == {"Named", "v4", "v5", "v6", "v7"}
    assert reported([False, False], top=4) == {"Named", "0xdetected", "v4", "v5", "v6", "v7"}
    assert "0xdetected" in reported([False, True], top=6)  # ranks sixth: 4 of 104
