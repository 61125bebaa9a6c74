"""Domain types shared by sources, analysis, exporter and probe: immutable values, and the
DataError raised for an answer that cannot be trusted."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from quorumwatch.columns import ValidatorTable

# Shared and immutable, so a validator without uptime data costs no allocation.
NO_UPTIME: Mapping[str, float] = MappingProxyType({})


class ValidatorStatus(enum.StrEnum):
    """Disjoint status of a registered validator; a jailed validator is only ever `jailed`."""

    ONLINE = "online"
    JAILED = "jailed"
    DELINQUENT = "delinquent"  # in the consensus set but not voting (Solana)
    INACTIVE = "inactive"


class Outcome(enum.StrEnum):
    """The class of one request's result: the endpoint accounting's and the metrics' vocabulary."""

    OK = "ok"
    TIMEOUT = "timeout"
    CONNECT_ERROR = "connect_error"
    HTTP_429 = "http_429"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    INVALID_PAYLOAD = "invalid_payload"
    # An exception that none of the above classifies (a library's refusal, a parser's bug):
    # counted against the one endpoint, so that the poll goes on to the next.
    UNEXPECTED = "unexpected"


class DataError(ValueError):
    """An answer that arrived but cannot be trusted; `reason` is a short, bounded identifier."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Validator:
    """One registered validator as the chain reports it, stake in the chain's base unit."""

    address: str
    name: str
    stake: int
    in_consensus_set: bool
    jailed: bool
    unjailable_after_ms: int | None = None
    uptime_ratio: Mapping[str, float] = field(default_factory=lambda: NO_UPTIME)
    delinquent: bool = False
    jail_risk_ratio: float | None = None  # missed blocks over the number that jails (Cosmos)
    entity_hint: str | None = None  # a self-declared operator identity (Cosmos): a claim

    @property
    def status(self) -> ValidatorStatus:
        if self.jailed:
            return ValidatorStatus.JAILED
        if self.delinquent and self.in_consensus_set:
            return ValidatorStatus.DELINQUENT
        if self.in_consensus_set:
            return ValidatorStatus.ONLINE
        return ValidatorStatus.INACTIVE

    @property
    def online(self) -> bool:
        return self.in_consensus_set and not self.jailed and not self.delinquent


@dataclass(frozen=True, slots=True, eq=False)
class Attribution:
    """Who is behind each validator, as a source established it from the chain's own data
    (Ethereum: withdrawal credentials and labels), as columns parallel to the set's table.

    `entity_index[i]` indexes `entity_names`, or is -1 (`columns.UNATTRIBUTED`): row i is its
    own entity, named by its address (no such address may equal an entity name).
    `operator_index` is a third grouping beside the entity, who runs the keys where that
    differs from who controls them (-1: its own operator); only its concentration is reported.
    """

    entity_index: NDArray[np.int64]
    entity_names: Sequence[str]
    operator_index: NDArray[np.int64] | None = None
    # Per entity name: True where the source detected the entity (Ethereum: a withdrawal
    # address shared by several validators) rather than a map naming it; such an entity is
    # reported only while it ranks among the largest, like a single validator.
    detected: NDArray[np.bool_] | None = None


@dataclass(frozen=True, slots=True, eq=False)
class ValidatorSet:
    """A validated, complete validator set from one endpoint at one moment."""

    table: ValidatorTable
    token_decimals: int
    endpoint: str
    fetched_at: float
    # False when the source cannot tell who is voting (Ethereum over JSON): the liveness
    # margin is then unknown, not the full margin that every validator online would give.
    liveness_known: bool = True
    # The source's own attribution; None: the configured and built-in entity map applies.
    attribution: Attribution | None = None

    def to_tokens(self, base_units: int) -> float:
        """Convert an exact base-unit amount to display tokens, for exposition only."""
        scale: int = 10**self.token_decimals
        return base_units / scale
