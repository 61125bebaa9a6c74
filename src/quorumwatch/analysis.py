"""Decentralization analysis: pure functions over exact integer stakes, no I/O.

The core, `analyse_columns`, reads a validator set as numpy columns (`quorumwatch.columns`);
`analyse` gives it a `ValidatorSet`'s table and entity columns. Threshold rules and Nakamoto
coefficients are decided on exact integer sums (halt: 3·S ≥ T, majority: 2·S > T, control:
3·S > 2·T): uint64 running sums while the total is below 2**64, otherwise running sums of
32-bit limbs, each exact in uint64, where a float64 running sum only proposes the answer and
Python ints decide it. Concentration indices (HHI, Gini, entropy) are float64, summed
pairwise over the ranked weights, so the same set in any order gives the same floats.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from quorumwatch.columns import (
    CONSENSUS_CODES_BELOW,
    LIMB_BITS,
    LIMB_MASK,
    LIMB_SHIFT,
    STATUS_JAILED_INACTIVE,
    STATUS_ONLINE,
    UNATTRIBUTED,
    StakeColumn,
    column_sum,
    entity_columns,
    stake_column,
)
from quorumwatch.models import ValidatorSet

TOP_N: tuple[int, ...] = (3, 5, 10)

DEFAULT_TOP_ENTITIES = 1000
"""Entities materialised beyond the named ones: the largest holders, named or not. The default
of `max_validator_series`, the entity series the collector exports: pass a chain's own."""

MIN_TOP_ENTITIES = 4
"""The fewest largest entities always materialised. A firing EntityCanHalt alert holds while
the entity's share is at least 1/3 less `hysteresis_ratio`, which config caps at 0.1: at most
floor(1 / (1/3 − 0.1)) = 4 entities can hold 7/30 or more, so the largest 4 include every
entity the alert rules and the probe need (tests/test_analysis.py checks the cap)."""


class Threshold(enum.StrEnum):
    HALT = "halt"
    MAJORITY = "majority"
    CONTROL = "control"


class Grouping(enum.StrEnum):
    VALIDATOR = "validator"
    ENTITY = "entity"  # who controls the stake
    OPERATOR = "operator"  # who runs the keys, where a source knows (Ethereum)


class AnalysisError(ValueError):
    """The set cannot be analysed (no positive consensus stake): every value is undefined."""


def reaches(threshold: Threshold, stake: int, total: int) -> bool:
    """Whether a coalition holding `stake` of `total` meets `threshold`, exactly."""
    match threshold:
        case Threshold.HALT:
            return 3 * stake >= total
        case Threshold.MAJORITY:
            return 2 * stake > total
        case Threshold.CONTROL:
            return 3 * stake > 2 * total


def minimum_stake(threshold: Threshold, total: int) -> int:
    """The smallest integer stake that meets `threshold` out of `total`."""
    match threshold:
        case Threshold.HALT:
            return (total + 2) // 3
        case Threshold.MAJORITY:
            return total // 2 + 1
        case Threshold.CONTROL:
            return (2 * total) // 3 + 1


@dataclass(frozen=True, slots=True)
class Concentration:
    """Concentration of consensus stake over one grouping (validators or entities)."""

    holders: int
    nakamoto: Mapping[Threshold, int]
    largest_ratio: float
    top_ratios: Mapping[int, float]
    herfindahl: float
    effective_count: float
    gini: float
    entropy_bits: float
    halt_distance: int


@dataclass(frozen=True, slots=True)
class EntityShare:
    """One entity's consensus stake; `attributed` if any of it comes from an entity map."""

    name: str
    stake: int
    ratio: float
    can_halt: bool
    can_control: bool
    attributed: bool


@dataclass(frozen=True, slots=True)
class ChainAnalysis:
    """Everything derived from one valid validator set.

    `entities` holds, largest first (ties by name), every named entity (one with an entity
    id: configured, built-in or detected) and the `top` largest entities, named or single
    validators, never fewer than MIN_TOP_ENTITIES: so its first `top` are the `top` largest
    of all, and it holds every entity that can halt or control, or that a firing
    EntityCanHalt alert can still hold on to. `groupings[Grouping.ENTITY].holders` counts all.
    """

    total_stake: int
    online_stake: int
    liveness_margin: float
    groupings: Mapping[Grouping, Concentration]
    entities: tuple[EntityShare, ...]
    unattributed_ratio: float


_UINT64_END = 2**64
_MAX_TOTAL_BITS = 512  # the float64 proposal needs totals far below 2**1024
_SLACK = 2.0**-40  # proposal bracket: far wider than the float64 running sum's error


class _Ranking:
    """Positive weights ranked descending, answering exact prefix-sum questions.

    With a total below 2**64 the running sums are one uint64 cumsum, exact. Otherwise each
    weight is split into 32-bit limbs whose running sums are exact in uint64 (up to 2**32
    holders); their float64 combination brackets an answer, and a binary search over exact
    Python-int prefix sums inside the bracket decides it.
    """

    __slots__ = ("_approx", "_cumulative", "_limbs", "count", "desc", "total")

    def __init__(self, desc: StakeColumn, total: int) -> None:
        self.desc = desc
        self.count = len(desc)
        self.total = total
        self._cumulative: npt.NDArray[np.uint64] | None = None
        self._limbs: list[npt.NDArray[np.uint64]] = []
        self._approx: npt.NDArray[np.float64] = np.zeros(0)
        if desc.dtype == np.uint64 and total < _UINT64_END:
            self._cumulative = np.cumsum(desc, dtype=np.uint64)
        elif self.count:
            self._limbs = [np.cumsum(limb, dtype=np.uint64) for limb in _limbs(desc)]
            approx = self._limbs[0].astype(np.float64)
            for position, limb in enumerate(self._limbs[1:], 1):
                # Each step adds a non-decreasing sequence, so `approx` is non-decreasing.
                approx += limb.astype(np.float64) * 2.0 ** (LIMB_BITS * position)
            self._approx = approx

    def prefix(self, k: int) -> int:
        """The exact sum of the `k` largest weights (0 ≤ k ≤ count)."""
        if k <= 0:
            return 0
        if self._cumulative is not None:
            return int(self._cumulative[k - 1])
        return sum(int(limb[k - 1]) << (LIMB_BITS * i) for i, limb in enumerate(self._limbs))

    def running_sums(self) -> npt.NDArray[np.float64]:
        """S_1 … S_n as float64 (each correctly rounded, or within a few ulps with limbs)."""
        if self._cumulative is not None:
            return self._cumulative.astype(np.float64)
        return self._approx

    def smallest_prefix_reaching(self, target: int) -> int:
        """Smallest k whose top-k sum is ≥ `target` (0 if target ≤ 0); target must be ≤ total."""
        if target <= 0:
            return 0
        if target > self.total:
            raise ValueError("target exceeds the total weight")
        if self._cumulative is not None:
            found = np.searchsorted(self._cumulative, np.uint64(target), side="left")
            return int(found) + 1
        approx_target = float(target)
        # Every k below `low` has S_k < target, and S_high ≥ target: search between exactly.
        low = int(np.searchsorted(self._approx, approx_target * (1 - _SLACK))) + 1
        high = int(np.searchsorted(self._approx, approx_target * (1 + _SLACK))) + 1
        high = min(high, self.count)
        while low < high:
            middle = (low + high) // 2
            if self.prefix(middle) >= target:
                high = middle
            else:
                low = middle + 1
        return low


def _limbs(column: StakeColumn) -> list[npt.NDArray[np.uint64]]:
    """`column` split into 32-bit limbs, least significant first, each as uint64."""
    if column.dtype == np.uint64:
        return [column & LIMB_MASK, column >> LIMB_SHIFT]
    width = int(column.max()).bit_length()
    count = max(1, -(-width // LIMB_BITS))
    mask = 2**LIMB_BITS - 1
    return [((column >> (LIMB_BITS * i)) & mask).astype(np.uint64) for i in range(count)]


def _narrow(column: npt.NDArray[Any]) -> StakeColumn:
    """An object column as uint64 when every value fits (the fast, exact path)."""
    if column.dtype == np.uint64:
        return column
    if len(column) == 0 or int(column.max()) < _UINT64_END:
        return column.astype(np.uint64)
    return column


def _ascending(column: StakeColumn) -> StakeColumn:
    return cast("StakeColumn", np.sort(column))


def _merge(*ascending: StakeColumn) -> StakeColumn:
    """One ascending column of ascending parts (a stable sort merges the runs in linear time)."""
    parts = [part for part in ascending if len(part)]
    if not parts:
        return np.zeros(0, dtype=np.uint64)
    if len(parts) == 1:
        return parts[0]
    if any(part.dtype != np.uint64 for part in parts):
        parts = [part.astype(object) for part in parts]
    merged: StakeColumn = np.sort(np.concatenate(parts), kind="stable")
    return merged


def _group_sums(
    ids: npt.NDArray[np.int64], weights: StakeColumn, size: int, total: int
) -> tuple[npt.NDArray[np.intp], StakeColumn]:
    """The ids with a positive sum of `weights` and those sums, exactly."""
    if weights.dtype != np.uint64:
        sums = np.zeros(size, dtype=object)
        np.add.at(sums, ids, weights)
        present = np.flatnonzero(sums != 0)
        return present, _narrow(sums[present])
    if total < _UINT64_END:
        exact = np.zeros(size, dtype=np.uint64)
        np.add.at(exact, ids, weights)
        present = np.flatnonzero(exact)
        return present, exact[present]
    low = np.zeros(size, dtype=np.uint64)
    high = np.zeros(size, dtype=np.uint64)
    np.add.at(low, ids, weights & LIMB_MASK)
    np.add.at(high, ids, weights >> LIMB_SHIFT)
    present = np.flatnonzero(low | high)
    combined = low[present].astype(object) + (high[present].astype(object) << LIMB_BITS)
    return present, _narrow(combined)


def _ranking(weights: Sequence[int]) -> _Ranking:
    column = stake_column([w for w in weights if w > 0])
    return _Ranking(_ascending(column)[::-1], column_sum(column))


def nakamoto(weights: Sequence[int], threshold: Threshold) -> int | None:
    """Smallest number of holders whose stake meets `threshold`; None when undefined (T = 0)."""
    ranked = _ranking(weights)
    if not ranked.count:
        return None
    return ranked.smallest_prefix_reaching(minimum_stake(threshold, ranked.total))


def halt_distance(online_weights: Sequence[int], total: int) -> int:
    """Fewest further online holders whose loss brings offline stake to ≥ 1/3 of `total`.

    Stake in `total` but not online counts as offline already; 0 means the chain is halted.
    """
    online = _ranking(online_weights)
    return _halt_distance(online, total - online.total, total)


def _halt_distance(online: _Ranking, offline: int, total: int) -> int:
    needed = minimum_stake(Threshold.HALT, total) - offline
    if needed > online.total:
        raise ValueError("online stake does not add up to the total")
    return online.smallest_prefix_reaching(needed)


def _concentration(ranked: _Ranking, online: _Ranking, offline: int) -> Concentration:
    """Concentration indices over one grouping's consensus weights.

    `online` ranks each holder's online stake; `offline` is the consensus stake not online.
    Offline stake stays in the denominator, as it does for a BFT quorum within an epoch, and
    counts towards the halt distance.
    """
    total = ranked.total
    count = ranked.count
    total_f = float(total)
    shares = ranked.desc.astype(np.float64) / total_f
    herfindahl = float(np.sum(shares * shares))
    return Concentration(
        holders=count,
        nakamoto={t: ranked.smallest_prefix_reaching(minimum_stake(t, total)) for t in Threshold},
        largest_ratio=int(ranked.desc[0]) / total,
        top_ratios={n: ranked.prefix(min(n, count)) / total for n in TOP_N},
        herfindahl=herfindahl,
        effective_count=1.0 / herfindahl,
        gini=_gini(ranked.running_sums(), total_f),
        entropy_bits=_entropy_bits(shares),
        halt_distance=_halt_distance(online, offline, total),
    )


def liveness_margin(online_stake: int, total_stake: int) -> float:
    """online/T − 2/3, computed exactly and rounded once; negative means halted."""
    return (3 * online_stake - 2 * total_stake) / (3 * total_stake)


def _gini(prefix_desc: npt.NDArray[np.float64], total: float) -> float:
    """Gini from the running sums S_k of descending weights: (2·Σ_k S_k − (n+1)·T) / (n·T)."""
    count = len(prefix_desc)
    gini = (2.0 * float(np.sum(prefix_desc)) - (count + 1) * total) / (count * total)
    return min(max(gini, 0.0), (count - 1) / count)


def _entropy_bits(shares: npt.NDArray[np.float64]) -> float:
    """H = −Σ p·log2 p over the (positive) shares p."""
    entropy = -float(np.sum(shares * np.log2(shares))) + 0.0  # + 0.0: never −0.0
    return min(max(entropy, 0.0), math.log2(len(shares)))


def analyse(
    validator_set: ValidatorSet,
    entity_of: Mapping[str, str],
    *,
    top: int = DEFAULT_TOP_ENTITIES,
) -> ChainAnalysis:
    """Analyse the consensus set of `validator_set`, grouped per validator and per entity (and
    per operator, where the source's attribution knows operators).

    Entities come from the set's own attribution where the source made one; otherwise
    `entity_of` maps a validator address to its entity, and an unmapped validator is its own
    entity, named by its address. Raises AnalysisError when the consensus set holds no stake.
    """
    table = validator_set.table
    attribution = validator_set.attribution
    entity_names: Sequence[str]
    if attribution is None:
        entity_index, entity_names, unattributed = entity_columns(table.addresses, entity_of)
        operators, detected = None, None
    else:
        entity_index, entity_names = attribution.entity_index, attribution.entity_names
        unattributed, operators = None, attribution.operator_index
        detected = attribution.detected
    return analyse_columns(
        table.stakes,
        table.status,
        entity_index,
        entity_names,
        table.addresses,
        top=top,
        unattributed=unattributed,
        operator_index=operators,
        detected=detected,
    )


def analyse_columns(
    stakes: StakeColumn,
    status: npt.NDArray[np.uint8],
    entity_index: npt.NDArray[np.int64] | npt.NDArray[np.int32],
    entity_names: Sequence[str],
    addresses: Sequence[str],
    *,
    top: int = DEFAULT_TOP_ENTITIES,
    unattributed: npt.NDArray[np.bool_] | None = None,
    operator_index: npt.NDArray[np.int64] | npt.NDArray[np.int32] | None = None,
    detected: npt.NDArray[np.bool_] | None = None,
) -> ChainAnalysis:
    """Analyse a validator set given as columns (see `quorumwatch.columns`), row i one validator.

    `stakes`: base units, uint64, or an object array of Python ints when a stake is ≥ 2**64.
    `status`: status codes (`columns.STATUS_*`): rows with code < 3 form the consensus set,
    codes 1 and 2 of which are offline (their stake stays in the denominator).
    `entity_index`: an index into `entity_names` (distinct names), or -1 (UNATTRIBUTED): its
    own entity, named `addresses[i]`. Addresses of unattributed rows must be unique and differ
    from every entity name (a source rejects duplicate addresses; merge a colliding row into
    the named entity and mark it in `unattributed`, as `columns.entity_columns` does).
    `unattributed`: rows of named entities whose stake still counts as unattributed.
    `top`: how many of the largest entities to materialise besides the named ones (at
    least MIN_TOP_ENTITIES).
    `operator_index`: a third grouping, by operator id (-1: its own operator); only its
    concentration is computed.
    `detected`: per entity name, True for an entity a source detected rather than one a map
    names: it is materialised only while it ranks among the `top` largest.

    Raises AnalysisError when the consensus set holds no stake, ValueError on malformed
    columns.
    """
    top = max(top, MIN_TOP_ENTITIES)
    stakes = _checked_columns(
        stakes,
        status,
        entity_index,
        entity_names,
        addresses,
        optional=(unattributed, operator_index),
        detected=detected,
    )
    keep = (status < CONSENSUS_CODES_BELOW) & (stakes > 0)  # zero stake has no share
    weights = _narrow(stakes[keep])
    total = column_sum(weights)
    if total <= 0:
        raise AnalysisError("no positive stake in the consensus set")
    if total.bit_length() > _MAX_TOTAL_BITS:
        raise ValueError(f"total stake beyond 2**{_MAX_TOTAL_BITS}")
    online = status[keep] == STATUS_ONLINE
    entities = entity_index[keep]
    singles = entities == UNATTRIBUTED
    merged = None if unattributed is None else unattributed[keep] & ~singles
    offline = total - column_sum(weights[online])

    online_asc = _ascending(weights[online])
    by_validator = _Ranking(_merge(online_asc, _ascending(weights[~online]))[::-1], total)
    validator_online = _Ranking(online_asc[::-1], total - offline)
    per_validator = _concentration(by_validator, validator_online, offline)

    named = _NamedEntities(
        entities, weights, online, merged=merged, size=len(entity_names), total=total
    )
    if named.ids.size:
        by_entity, per_entity = _grouped(
            named, weights, online, singles, total=total, offline=offline
        )
    else:
        by_entity, per_entity = by_validator, per_validator
    groupings = {Grouping.VALIDATOR: per_validator, Grouping.ENTITY: per_entity}
    if operator_index is not None:
        operators = operator_index[keep]
        size = int(operators.max()) + 1 if operators.size else 0
        run_by = _NamedEntities(operators, weights, online, merged=None, size=size, total=total)
        lone = operators == UNATTRIBUTED
        groupings[Grouping.OPERATOR] = (
            _grouped(run_by, weights, online, lone, total=total, offline=offline)[1]
            if run_by.ids.size
            else per_validator
        )
    unmapped = singles if merged is None else singles | merged
    shares = _entity_shares(
        named,
        entity_names,
        _largest_singles(by_entity, weights, singles, keep, addresses, top=top),
        total,
        top,
        ranked=None
        if detected is None
        else (detected, by_entity.desc[min(top, by_entity.count) - 1]),
    )
    return ChainAnalysis(
        total_stake=total,
        online_stake=total - offline,
        liveness_margin=liveness_margin(total - offline, total),
        groupings=groupings,
        entities=shares,
        unattributed_ratio=column_sum(weights[unmapped]) / total,
    )


def _checked_columns(
    stakes: StakeColumn,
    status: npt.NDArray[np.uint8],
    entity_index: npt.NDArray[np.int64] | npt.NDArray[np.int32],
    entity_names: Sequence[str],
    addresses: Sequence[str],
    *,
    optional: tuple[npt.NDArray[Any] | None, ...],
    detected: npt.NDArray[np.bool_] | None,
) -> StakeColumn:
    """`stakes` as uint64 or exact ints, after checking the columns agree; ValueError if not."""
    count = len(stakes)
    lengths = {len(status), len(entity_index), len(addresses), count}
    lengths.update(len(column) for column in optional if column is not None)
    if lengths != {count}:
        raise ValueError("columns differ in length")
    if count and int(status.max()) > STATUS_JAILED_INACTIVE:
        raise ValueError("unknown status code")
    if count and not UNATTRIBUTED <= int(entity_index.min()) <= int(entity_index.max()) < len(
        entity_names
    ):
        raise ValueError("entity index out of range")
    if detected is not None and len(detected) != len(entity_names):
        raise ValueError("detected must have one flag per entity name")
    if status.dtype != np.uint8 or not np.issubdtype(entity_index.dtype, np.integer):
        raise ValueError("status must be uint8 codes and entity_index integers")
    if stakes.dtype != np.uint64:
        if count and int(stakes.min()) < 0:
            raise ValueError("a stake is negative")
        if stakes.dtype != object:
            return stakes.astype(np.uint64)  # another integer type
    return stakes


def _grouped(
    named: _NamedEntities,
    weights: StakeColumn,
    online: npt.NDArray[np.bool_],
    singles: npt.NDArray[np.bool_],
    *,
    total: int,
    offline: int,
) -> tuple[_Ranking, Concentration]:
    """The ranking and concentration of holders grouped as `named`, the `singles` rows each
    their own holder."""
    single_online = _ascending(weights[singles & online])
    single_offline = _ascending(weights[singles & ~online])
    ranking = _Ranking(_merge(single_online, single_offline, named.asc)[::-1], total)
    online_ranking = _Ranking(_merge(single_online, named.online_asc)[::-1], total - offline)
    return ranking, _concentration(ranking, online_ranking, offline)


class _NamedEntities:
    """The named entities with consensus stake: ids, exact stakes, and online stakes."""

    __slots__ = ("asc", "ids", "online_asc", "stakes", "unattributed")

    def __init__(
        self,
        entities: npt.NDArray[np.int64] | npt.NDArray[np.int32],
        weights: StakeColumn,
        online: npt.NDArray[np.bool_],
        *,
        merged: npt.NDArray[np.bool_] | None,
        size: int,
        total: int,
    ) -> None:
        mapped = entities != UNATTRIBUTED
        none: StakeColumn = np.zeros(0, dtype=np.uint64)
        self.ids: npt.NDArray[np.intp] = np.zeros(0, dtype=np.intp)
        self.stakes, self.asc, self.online_asc = none, none, none
        self.unattributed: dict[int, int] = {}
        if not mapped.any():
            return
        ids = entities[mapped].astype(np.int64)
        stakes = weights[mapped]
        self.ids, self.stakes = _group_sums(ids, stakes, size, total)
        self.asc = _ascending(self.stakes)
        on = online[mapped]
        self.online_asc = _ascending(_group_sums(ids[on], stakes[on], size, total)[1])
        if merged is not None and merged.any():
            part = merged[mapped]
            found, sums = _group_sums(ids[part], stakes[part], size, total)
            self.unattributed = dict(zip(found.tolist(), sums.tolist(), strict=True))


def _largest_singles(
    by_entity: _Ranking,
    weights: StakeColumn,
    singles: npt.NDArray[np.bool_],
    keep: npt.NDArray[np.bool_],
    addresses: Sequence[str],
    *,
    top: int,
) -> list[tuple[int, str]]:
    """(stake, address) of every unattributed validator that may rank among the `top` largest
    entities: all larger than the top-th largest entity, and, of those equal to it, the `top`
    first by address (ties at the boundary rank by name)."""
    if not singles.any():
        return []
    kth = by_entity.desc[min(top, by_entity.count) - 1]
    rows = np.flatnonzero(keep)
    larger = np.flatnonzero(singles & (weights > kth))
    found = [
        (int(weights[i]), addresses[row])
        for i, row in zip(larger.tolist(), rows[larger].tolist(), strict=True)
    ]
    tied = rows[np.flatnonzero(singles & (weights == kth))]
    names = map(addresses.__getitem__, tied.tolist())
    stake = int(kth)
    found += [(stake, name) for name in heapq.nsmallest(top, names)]
    return found


def _entity_shares(
    named: _NamedEntities,
    entity_names: Sequence[str],
    singles: list[tuple[int, str]],
    total: int,
    top: int,
    *,
    ranked: tuple[npt.NDArray[np.bool_], Any] | None = None,
) -> tuple[EntityShare, ...]:
    """The named entities and the `top` largest, largest first (ties by name). With `ranked`
    (the detected flag of each entity id, and the stake of the top-th largest holder), a
    detected entity is a candidate only if it is at least that large, and kept only by rank."""
    ids, stakes = named.ids, named.stakes
    always = np.ones(len(ids), dtype=np.bool_)
    if ranked is not None:
        detected, kth = ranked
        always = ~detected[ids]
        candidate = always | (stakes >= kth)
        ids, stakes, always = ids[candidate], stakes[candidate], always[candidate]
    candidates = [
        (-stake, entity_names[i], is_named, stake > named.unattributed.get(i, 0))
        for i, stake, is_named in zip(ids.tolist(), stakes.tolist(), always.tolist(), strict=True)
    ]
    candidates += [(-stake, name, False, False) for stake, name in singles]
    candidates.sort()  # by (−stake, name): names are unique
    halts = minimum_stake(Threshold.HALT, total)
    controls = minimum_stake(Threshold.CONTROL, total)
    return tuple(
        EntityShare(
            name=name,
            stake=-negated,
            ratio=-negated / total,
            can_halt=-negated >= halts,
            can_control=-negated >= controls,
            attributed=attributed,
        )
        for rank, (negated, name, is_named, attributed) in enumerate(candidates)
        if is_named or rank < top
    )
