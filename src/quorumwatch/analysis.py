"""Decentralization analysis: pure functions over exact integer stakes, no I/O.

Threshold rules and Nakamoto coefficients are exact integer arithmetic (halt: 3·S ≥ T,
majority: 2·S > T, control: 3·S > 2·T). Floating point only locates a candidate prefix,
which is then verified, and minimised, with exact integers. Concentration indices (HHI,
Gini, entropy) are floats computed with correctly rounded sums (`math.fsum`).
"""

from __future__ import annotations

import enum
import itertools
import math
import operator
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from quorumwatch.models import Validator

TOP_N: tuple[int, ...] = (3, 5, 10)

_IN_CONSENSUS = operator.attrgetter("in_consensus_set")
_JAILED = operator.attrgetter("jailed")
_DELINQUENT = operator.attrgetter("delinquent")
_STAKE = operator.attrgetter("stake")
_ADDRESS = operator.attrgetter("address")


class Threshold(enum.StrEnum):
    HALT = "halt"
    MAJORITY = "majority"
    CONTROL = "control"


class Grouping(enum.StrEnum):
    VALIDATOR = "validator"
    ENTITY = "entity"


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
    name: str
    stake: int
    ratio: float
    can_halt: bool
    can_control: bool
    attributed: bool


@dataclass(frozen=True, slots=True)
class ChainAnalysis:
    """Everything derived from one valid validator set."""

    total_stake: int
    online_stake: int
    liveness_margin: float
    groupings: Mapping[Grouping, Concentration]
    entities: tuple[EntityShare, ...]
    unattributed_ratio: float


_FLOAT_EXACT_BELOW = 2**53


class _Ranking:
    """Positive weights ranked descending, answering exact prefix-sum questions quickly.

    Bulk passes (running sums, HHI, Gini, entropy) run over floats: contiguous in memory,
    and sorted with CPython's specialised float comparison. Whether the top k reach a
    target is decided from the float running sum when it lies outside a rigorous bound on
    its rounding error, and with an exact integer sum otherwise, so every answer is exact.
    """

    __slots__ = ("_sorted_ints", "approx_prefix", "count", "floats", "ordered", "total")

    def __init__(self, weights: list[int], total: int) -> None:
        weights = list(filter(None, weights))  # zero-weight holders have no share
        self.count = len(weights)
        self.total = total
        # In input order, so contiguous in memory: order-free sums (HHI, entropy) use these.
        self.floats = list(map(operator.truediv, weights, itertools.repeat(1)))
        self._sorted_ints: list[int] | None
        if weights and max(weights) < _FLOAT_EXACT_BELOW:
            # Below 2**53, int -> float is exact and order-preserving: the sorted floats
            # are the ranking, and int() recovers each weight exactly.
            self.ordered = sorted(self.floats, reverse=True)
            self._sorted_ints = None
        else:
            self._sorted_ints = sorted(weights, reverse=True)
            self.ordered = list(map(operator.truediv, self._sorted_ints, itertools.repeat(1)))
        self.approx_prefix = list(itertools.accumulate(self.ordered))

    def top(self, k: int) -> list[int]:
        """The `k` largest weights, exactly."""
        if self._sorted_ints is not None:
            return self._sorted_ints[:k]
        return list(map(int, self.ordered[:k]))

    def descending(self) -> Iterator[int]:
        """All weights, largest first, exactly and lazily."""
        if self._sorted_ints is not None:
            return iter(self._sorted_ints)
        return map(int, self.ordered)

    def top_reaches(self, k: int, target: int) -> bool:
        """Whether the `k` largest weights sum to at least `target`, decided exactly."""
        approx = self.approx_prefix[k - 1]
        approx_target = float(target)
        # Running-sum and conversion errors of non-negative terms stay below k·2^-52·S;
        # (k + 2)·2^-51 leaves a wide margin.
        margin = (k + 2) * 2.0**-51 * (approx + approx_target)
        if approx - approx_target > margin:
            return True
        if approx_target - approx > margin:
            return False
        return exact_sum(self.top(k)) >= target

    def smallest_prefix_reaching(self, target: int) -> int:
        """Smallest k whose top-k sum is ≥ `target` (0 if target ≤ 0); target must be ≤ total."""
        if target <= 0:
            return 0
        if target > self.total:
            raise ValueError("target exceeds the total weight")
        k = min(bisect_left(self.approx_prefix, float(target)) + 1, self.count)
        while not self.top_reaches(k, target):
            k += 1
        while k > 1 and self.top_reaches(k - 1, target):
            k -= 1
        return k


def exact_sum(values: Sequence[int]) -> int:
    """Exact integer sum, in chunks so CPython's machine-word fast path of `sum` applies."""
    chunk = 1024
    if len(values) <= chunk:
        return sum(values)
    return sum([sum(values[i : i + chunk]) for i in range(0, len(values), chunk)])


def nakamoto(weights: Sequence[int], threshold: Threshold) -> int | None:
    """Smallest number of holders whose stake meets `threshold`; None when undefined (T = 0)."""
    positive = [w for w in weights if w > 0]
    if not positive:
        return None
    ranked = _Ranking(positive, exact_sum(positive))
    return ranked.smallest_prefix_reaching(minimum_stake(threshold, ranked.total))


def concentration(ranked: _Ranking, online_desc: Iterable[int], offline: int) -> Concentration:
    """Concentration indices over one grouping's consensus weights.

    `online_desc` yields each holder's online stake, descending; `offline` is the consensus
    stake not online. Offline stake stays in the denominator, as it does for a BFT quorum
    within an epoch, and counts towards the halt distance.
    """
    total = ranked.total
    count = ranked.count
    total_f = float(total)
    floats = ranked.floats
    sum_of_squares = math.fsum(map(operator.mul, floats, floats))
    return Concentration(
        holders=count,
        nakamoto={t: ranked.smallest_prefix_reaching(minimum_stake(t, total)) for t in Threshold},
        largest_ratio=ranked.top(1)[0] / total,
        top_ratios={n: exact_sum(ranked.top(n)) / total for n in TOP_N},
        herfindahl=sum_of_squares / (total_f * total_f),
        effective_count=total_f * total_f / sum_of_squares,
        gini=_gini(ranked.approx_prefix, total_f),
        entropy_bits=_entropy_bits(floats, total_f),
        halt_distance=_halt_distance(online_desc, offline, total),
    )


def halt_distance(online_weights: Sequence[int], total: int) -> int:
    """Fewest further online holders whose loss brings offline stake to ≥ 1/3 of `total`.

    Stake in `total` but not online counts as offline already; 0 means the chain is halted.
    """
    online_desc = sorted((w for w in online_weights if w > 0), reverse=True)
    return _halt_distance(online_desc, total - exact_sum(online_desc), total)


def _halt_distance(online_desc: Iterable[int], offline: int, total: int) -> int:
    needed = minimum_stake(Threshold.HALT, total) - offline
    if needed <= 0:
        return 0
    lost = 0
    # Walks only as far as the answer, so a lazily filtered ranking is never materialised.
    for k, weight in enumerate(online_desc, 1):
        lost += weight
        if lost >= needed:
            return k
    raise ValueError("online stake does not add up to the total")


def liveness_margin(online_stake: int, total_stake: int) -> float:
    """online/T − 2/3, computed exactly and rounded once; negative means halted."""
    return (3 * online_stake - 2 * total_stake) / (3 * total_stake)


def _gini(prefix_desc: list[float], total: float) -> float:
    """Gini from the running sums S_k of descending weights: (2·Σ_k S_k − (n+1)·T) / (n·T)."""
    count = len(prefix_desc)
    gini = (2.0 * math.fsum(prefix_desc) - (count + 1) * total) / (count * total)
    return min(max(gini, 0.0), (count - 1) / count)


def _entropy_bits(floats: list[float], total: float) -> float:
    """H = log2 T − Σ x·log2 x / T, which equals −Σ p·log2 p with one pass fewer."""
    weighted_logs = math.fsum(map(operator.mul, floats, map(math.log2, floats)))
    entropy = math.log2(total) - weighted_logs / total
    return min(max(entropy, 0.0), math.log2(len(floats)))


def analyse(validators: Sequence[Validator], entity_of: Mapping[str, str]) -> ChainAnalysis:
    """Analyse the consensus set of `validators`, grouped per validator and per entity.

    `entity_of` maps a validator address to its entity; an unmapped validator is its own
    entity, named by its address. Raises AnalysisError when the consensus set holds no stake.
    """
    consensus = list(itertools.compress(validators, map(_IN_CONSENSUS, validators)))
    stakes = list(map(_STAKE, consensus))
    total = exact_sum(stakes)
    if total <= 0:
        raise AnalysisError("no positive stake in the consensus set")
    # Offline: jailed, or delinquent (in the set, not voting); both stay in the denominator.
    offline_flags = map(operator.or_, map(_JAILED, consensus), map(_DELINQUENT, consensus))
    offline_validators = list(itertools.compress(consensus, offline_flags))
    offline_stakes = list(map(_STAKE, offline_validators))
    offline = exact_sum(offline_stakes)

    by_validator = _Ranking(stakes, total)
    online_by_validator = _skip_once(by_validator.descending(), offline_stakes)

    entity_total, entity_online, unattributed = _aggregate_entities(
        consensus, stakes, offline_validators, entity_of
    )
    by_entity = _Ranking(list(entity_total.values()), total)
    online_by_entity = sorted(entity_online.values(), reverse=True)
    return ChainAnalysis(
        total_stake=total,
        online_stake=total - offline,
        liveness_margin=liveness_margin(total - offline, total),
        groupings={
            Grouping.VALIDATOR: concentration(by_validator, online_by_validator, offline),
            Grouping.ENTITY: concentration(by_entity, online_by_entity, offline),
        },
        entities=_entity_shares(entity_total, unattributed, total),
        unattributed_ratio=exact_sum(list(unattributed.values())) / total,
    )


def _skip_once(weights_desc: Iterable[int], skipped: list[int]) -> Iterator[int]:
    """Yield `weights_desc` with one occurrence of each `skipped` weight left out."""
    pending: dict[int, int] = {}
    for weight in skipped:
        pending[weight] = pending.get(weight, 0) + 1
    # dict.get, not Counter: Counter's __missing__ is Python code run for every kept weight.
    for weight in weights_desc:
        if pending.get(weight):
            pending[weight] -= 1
        else:
            yield weight


def _aggregate_entities(
    consensus: list[Validator],
    stakes: list[int],
    offline: list[Validator],
    entity_of: Mapping[str, str],
) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """Per-entity consensus stake, per-entity online stake, and each unmapped validator's stake."""
    addresses = list(map(_ADDRESS, consensus))
    # One C-level lookup per validator: with a large map each lookup is a cache miss.
    mapped = list(map(entity_of.get, addresses))
    unmapped = list(map(operator.is_, mapped, itertools.repeat(None)))
    unattributed = dict(
        zip(
            itertools.compress(addresses, unmapped),
            itertools.compress(stakes, unmapped),
            strict=True,
        )
    )
    entities = [a if m is None else m for m, a in zip(mapped, addresses, strict=True)]
    entity_total: dict[str, int] = {}
    get = entity_total.get
    for entity, stake in zip(entities, stakes, strict=True):
        entity_total[entity] = get(entity, 0) + stake
    entity_online = dict(entity_total)
    for v in offline:
        entity_online[entity_of.get(v.address, v.address)] -= v.stake
    return entity_total, {e: s for e, s in entity_online.items() if s > 0}, unattributed


def _entity_shares(
    entity_total: Mapping[str, int], unattributed: Mapping[str, int], total: int
) -> tuple[EntityShare, ...]:
    """Entities with stake, largest first (ties by name); attributed if any mapped validator
    contributes, which an entity named like an unmapped validator's address may combine."""
    ranked = sorted(
        ((name, stake) for name, stake in entity_total.items() if stake > 0),
        key=lambda item: (-item[1], item[0]),
    )
    return tuple(
        EntityShare(
            name=name,
            stake=stake,
            ratio=stake / total,
            can_halt=reaches(Threshold.HALT, stake, total),
            can_control=reaches(Threshold.CONTROL, stake, total),
            attributed=stake > unattributed.get(name, 0),
        )
        for name, stake in ranked
    )
