"""ChainSource, which every kind's source extends: it owns the ordered failover; and the
helpers their parsers share."""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar

import structlog

from quorumwatch.chains.kinds import KINDS, KindName
from quorumwatch.models import Attribution, DataError, Outcome, Validator, ValidatorSet

if TYPE_CHECKING:
    from quorumwatch.config import ChainSettings
    from quorumwatch.endpoints import Answer, Endpoint, EndpointPool

T = TypeVar("T")

log = structlog.get_logger(__name__)

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A complete validator set, or why none could be had this poll."""

    validator_set: ValidatorSet | None
    failures: tuple[str, ...] = ()
    rejection_reasons: tuple[str, ...] = ()
    # Whether a second endpoint's set at the same height differed; None when not compared.
    endpoints_disagree: bool | None = None
    # Epochs from the head to the last finalized checkpoint, where the chain has finality
    # checkpoints (Ethereum); None for kinds without them.
    finality_lag_epochs: int | None = None


@dataclass(frozen=True, slots=True)
class VersionedSet:
    """A set read at a known block height or epoch: only sets at one version are compared.
    A kind may tell more about the state it read (Ethereum: finality, attribution)."""

    validators: tuple[Validator, ...]
    version: int | None = None
    finality_lag_epochs: int | None = None
    liveness_known: bool = True
    attribution: Attribution | None = None


class Source(Protocol):
    async def fetch(self) -> FetchResult:
        """A complete set through the endpoint pool (failover included); never a partial one."""
        ...


class EndpointRejectedError(Exception):
    """This endpoint cannot give a complete, current set; `reason` is set for a data rejection."""

    def __init__(self, description: str, reason: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.reason = reason


def value_of(answer: Answer[T], what: str = "") -> T:
    """The answer's value, or EndpointRejectedError describing the outcome (and its data error)."""
    if answer.outcome is Outcome.OK and answer.value is not None:
        return answer.value
    detail = f" ({answer.error})" if answer.error else ""
    prefix = f"{what}: " if what else ""
    reason = answer.data_error.reason if answer.data_error is not None else None
    raise EndpointRejectedError(f"{prefix}{answer.outcome}{detail}", reason)


class ChainSource(ABC):
    """A kind's source: tries endpoints in configured order (those waiting out a Retry-After
    skipped) until one gives a complete set, reporting every failure and rejection reason.

    A kind names itself in `kind` (its entry in KINDS gives the token decimals and the
    settings section it requires) and implements `_attempt`, its requests to one endpoint;
    it may override `_candidates` to probe the endpoints first.
    With `compare_endpoints`, the next endpoint that answers is read too, and whether its
    set, at the same height or epoch, differs is reported: a lagging or wrong API.
    """

    kind: ClassVar[KindName]

    def __init__(
        self,
        pool: EndpointPool,
        settings: ChainSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        kind = KINDS[self.kind]
        if kind.section is not None and getattr(settings, kind.section) is None:
            raise ValueError(f"kind {kind.name} needs a [chains.{kind.section}] section")
        self._pool = pool
        self._settings = settings
        self._clock = clock
        self._token_decimals = kind.decimals(settings)

    async def fetch(self) -> FetchResult:
        """A complete set through the endpoint pool (failover included); never a partial one."""
        pool = self._pool
        available = await self._candidates()
        failures = [
            f"{e.name}: waiting out Retry-After" for e in pool.endpoints if e not in available
        ]
        rejections: list[str] = []
        found: list[tuple[Endpoint, VersionedSet]] = []
        for endpoint in available:
            try:
                got = await self._attempt(endpoint)
            except EndpointRejectedError as exc:
                pool.reject(endpoint)  # even when each request succeeded
                failures.append(f"{endpoint.name}: {exc.description}")
                if exc.reason is not None:
                    rejections.append(exc.reason)
                continue
            # An unversioned set compares with any other unversioned one.
            found.append((endpoint, got if isinstance(got, VersionedSet) else VersionedSet(got)))
            if not self._settings.compare_endpoints or len(found) == 2:
                break
        if not found:
            return FetchResult(None, tuple(failures), tuple(rejections))
        endpoint, first = found[0]
        disagree = None
        if len(found) == 2 and found[1][1].version == first.version:
            disagree = _comparable(first.validators) != _comparable(found[1][1].validators)
        validator_set = ValidatorSet(
            first.validators,
            self._token_decimals,
            endpoint.name,
            self._clock(),
            liveness_known=first.liveness_known,
            attribution=first.attribution,
        )
        return FetchResult(
            validator_set,
            tuple(failures),
            tuple(rejections),
            disagree,
            finality_lag_epochs=first.finality_lag_epochs,
        )

    async def _candidates(self) -> list[Endpoint]:
        """The endpoints to try this poll, in configured order: all but those waiting out a
        Retry-After."""
        return self._pool.available()

    @abstractmethod
    async def _attempt(self, endpoint: Endpoint) -> tuple[Validator, ...] | VersionedSet:
        """The complete set from `endpoint`, or EndpointRejectedError saying why not."""

    def _check_clock(
        self,
        endpoint: Endpoint,
        observed_at: float,
        *,
        subject: Literal["block", "clock", "data"],
    ) -> None:
        """Reject an endpoint whose answer is dated more than max_clock_skew_seconds from our
        clock, either way.

        A past date means a lagging or cached view; a future one, a clock that cannot be
        trusted. Rejection reasons: `stale_<subject>` and `future_<subject>`. The skew is kept
        on the endpoint for export either way.
        """
        skew = observed_at - self._clock()
        self._pool.record_clock_skew(endpoint, skew)
        if abs(skew) <= self._settings.max_clock_skew_seconds:
            return
        self._pool.reject(endpoint)  # its requests succeeded, but what it serves is not current
        log.warning("endpoint clock skewed", endpoint=endpoint.name, skew_seconds=round(skew))
        if skew < 0:
            raise EndpointRejectedError(f"stale: {subject} is {-skew:.0f}s old", f"stale_{subject}")
        raise EndpointRejectedError(
            f"stale: {subject} is {skew:.0f}s in the future", f"future_{subject}"
        )


def _comparable(validators: Sequence[Validator]) -> frozenset[tuple[str, int, bool, bool]]:
    # Delinquency is left out: it changes from slot to slot, not between agreeing nodes.
    return frozenset((v.address, v.stake, v.in_consensus_set, v.jailed) for v in validators)


def decode_json(body: bytes) -> Any:
    """An answer's JSON; DataError("malformed_json") for anything else, however deep."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise DataError("malformed_json", type(exc).__name__) from None


def received_text(value: str) -> str:
    """A self-chosen name kept as received, but for lone surrogates (JSON allows "\\ud800"),
    which become U+FFFD: one validator's name must not make the whole set unstorable."""
    return _LONE_SURROGATE.sub("\ufffd", value)


def check_set(validators: Sequence[Validator], id_paths: Sequence[str]) -> None:
    """Reject a set that lists a validator twice or holds no consensus stake.

    `id_paths[i]` says where validator i's id was read, for the error detail.
    """
    seen: set[str] = set()
    for validator, path in zip(validators, id_paths, strict=True):
        if validator.address in seen:
            raise DataError("duplicate_validator", f"{path} appears twice")
        seen.add(validator.address)
    if not any(v.stake for v in validators if v.in_consensus_set):
        raise DataError("zero_stake", "the consensus set holds no stake")


def describe(answer: Answer[Any]) -> str:
    """An answer's outcome for a failure message, e.g. `timeout (no answer in 10s)`."""
    detail = f" ({answer.error})" if answer.error else ""
    return f"{answer.outcome}{detail}"
