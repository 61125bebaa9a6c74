"""ChainSource, which every kind's source extends: it owns the ordered failover; and the
helpers their parsers share."""

from __future__ import annotations

import codecs
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Protocol, TypeVar, overload

import msgspec
import numpy as np
import structlog
from numpy.typing import NDArray

from quorumwatch.chains.kinds import KINDS, KindName
from quorumwatch.columns import CONSENSUS_CODES_BELOW, JAILED_CODES
from quorumwatch.models import Attribution, DataError, Outcome, ValidatorSet

if TYPE_CHECKING:
    from quorumwatch.columns import ValidatorTable
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
    # The share of stake the chain itself says decides consensus, where it says one
    # (Bittensor: Yuma's kappa); None: a strict majority.
    consensus_threshold: Fraction | None = None
    # How many authorities author blocks, where a fixed set does (Bittensor: Aura).
    block_authorities: int | None = None


@dataclass(frozen=True, slots=True)
class VersionedSet:
    """A set read at a known block height or epoch: only sets at one version are compared.
    A kind may tell more about the state it read (Ethereum: finality, attribution)."""

    table: ValidatorTable
    version: int | None = None
    finality_lag_epochs: int | None = None
    liveness_known: bool = True
    attribution: Attribution | None = None
    consensus_threshold: Fraction | None = None
    block_authorities: int | None = None


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


def _rejection(endpoint: Endpoint, exc: Exception) -> EndpointRejectedError:
    """Why `endpoint` is not used, from what its attempt raised. Anything but a rejection (a
    bug, a library's refusal) is reason `unexpected`: this endpoint fails, not the poll. Only
    its type is logged and described, for its message may quote a URL."""
    if isinstance(exc, EndpointRejectedError):
        return exc
    log.warning("endpoint failed unexpectedly", endpoint=endpoint.name, error=type(exc).__name__)
    return EndpointRejectedError(f"{Outcome.UNEXPECTED} ({type(exc).__name__})", "unexpected")


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
            except Exception as exc:  # not BaseException: cancellation and exits go through
                rejected = _rejection(endpoint, exc)
                pool.reject(endpoint)  # even when each request succeeded
                failures.append(f"{endpoint.name}: {rejected.description}")
                if rejected.reason is not None:
                    rejections.append(rejected.reason)
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
            disagree = not _agree(first.table, found[1][1].table)
        validator_set = ValidatorSet(
            first.table,
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
            consensus_threshold=first.consensus_threshold,
            block_authorities=first.block_authorities,
        )

    async def _candidates(self) -> list[Endpoint]:
        """The endpoints to try this poll, in configured order: all but those waiting out a
        Retry-After."""
        return self._pool.available()

    @abstractmethod
    async def _attempt(self, endpoint: Endpoint) -> ValidatorTable | VersionedSet:
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


def _agree(first: ValidatorTable, second: ValidatorTable) -> bool:
    """Whether two sets list the same validators with the same stake, consensus membership
    and jailing. Delinquency is left out: it changes from slot to slot, not between agreeing
    nodes."""
    if len(first) != len(second):
        return False
    ids = [np.asarray(table.addresses, dtype=object) for table in (first, second)]
    keys = [np.argsort(column) for column in ids]
    if not np.array_equal(ids[0][keys[0]], ids[1][keys[1]]):
        return False
    for column in (_membership, _jailing):
        if not np.array_equal(column(first)[keys[0]], column(second)[keys[1]]):
            return False
    return bool(np.array_equal(first.stakes[keys[0]], second.stakes[keys[1]]))


def _membership(table: ValidatorTable) -> NDArray[np.bool_]:
    membership: NDArray[np.bool_] = table.status < CONSENSUS_CODES_BELOW
    return membership


def _jailing(table: ValidatorTable) -> NDArray[np.bool_]:
    return np.isin(table.status, JAILED_CODES)


class JsonShape(Generic[T]):
    """The shape an answer must have, for `decode_json`: msgspec decodes the JSON straight into
    it, validating as it parses (exact types: 1 is not a bool, 1.0 not an int; integers exact
    at any size), with a decoder built once, at import.

    `checked`, when given, is the same shape whose structs also run their own checks in
    `__post_init__`: it decides an answer the fast shape refuses, so that the fault reported
    is the first in document order, a row's own checks included.
    """

    def __init__(self, shape: Any, checked: Any = None) -> None:
        self.decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(shape)
        self.checked: Any = shape if checked is None else checked


class ShapeError(Exception):
    """An answer that is JSON but not of its shape: the first fault msgspec met, where (`path`,
    keys and indexes from the root; a missing field ends it), of which `kind`, and the document
    as Python values, for the checks that come before its shape.

    Kinds: `missing` (a required field absent), `null` (null where a value is required),
    `pattern` (a string not matching its pattern), `bound` (a number or length out of its
    bounds), `check` (a struct's own check raised `cause`, a DataError), `type` (all else).
    """

    def __init__(self, error: msgspec.ValidationError, document: Any) -> None:
        message, _, at = str(error).partition(" - at `")
        super().__init__(message)
        self.document = document
        self.cause = error.__cause__ if isinstance(error.__cause__, DataError) else None
        path: list[str | int] = [
            int(index) if index else key or "..." for key, index in _PATH_PART.findall(at)
        ]
        missing = _MISSING_FIELD.fullmatch(message)
        if missing is not None:
            path.append(missing[1])
        self.path: tuple[str | int, ...] = tuple(path)
        self.kind = _fault_kind(message, missing=missing is not None, check=self.cause is not None)
        # msgspec's words for the fault (for the shapes here, they never quote the value).
        self.expected = message.replace("`", "").replace("Expected", "expected", 1)


def _fault_kind(message: str, *, missing: bool, check: bool) -> str:
    if check:
        return "check"
    if missing:
        return "missing"
    if message.endswith("got `null`"):
        return "null"
    if " matching regex " in message:
        return "pattern"
    if _BOUND.search(message):
        return "bound"
    return "type"


_PATH_PART = re.compile(r"\.([^.\[`]+)|\[(\d+)\]|\[\.\.\.\]")
_MISSING_FIELD = re.compile(r"Object missing required field `(.+)`")
_BOUND = re.compile(r" (>=|<=|>|<) -?[0-9]")


@overload
def decode_json(body: bytes) -> Any: ...
@overload
def decode_json(body: bytes, shape: JsonShape[T]) -> T: ...
def decode_json(body: bytes, shape: JsonShape[Any] | None = None) -> Any:
    """An answer's JSON, as Python values or in `shape`; DataError("malformed_json") for
    anything that is not JSON, however deep, and ShapeError for JSON not of `shape`.

    What is JSON is what json.loads accepts, as before: msgspec decodes (several times faster,
    integers exact however large), and json.loads decides what msgspec refuses (a lone
    surrogate such as "\\ud800", a byte-order mark or UTF-16, NaN, a number beyond its range).
    A fault of shape is always found by converting json.loads's document, so the one reported
    does not depend on which decoder met it first. One difference remains: a field that no
    shape names is skipped, not converted, so an integer of more than 4,300 digits there (which
    json.loads refuses to convert) no longer makes the answer malformed_json.
    """
    decoder = _ANY if shape is None else shape.decoder
    try:
        value = decoder.decode(body)
    except (msgspec.MsgspecError, RecursionError):
        pass
    else:
        # msgspec skips the fields a shape does not name without checking their UTF-8.
        if shape is None or body.isascii() or _is_utf8(body):
            return value
    document = _json_loads(body)
    if shape is None:
        return document
    try:
        return _convert(document, shape)
    except UnicodeEncodeError:
        # msgspec cannot encode a lone surrogate (in a key, or a message naming a string).
        # Each becomes U+FFFD, as in received_text: no shape's check tells the two apart,
        # for both fail every pattern and a name would be given U+FFFD anyway.
        return _convert(_without_lone_surrogates(document), shape)


def _convert(document: Any, shape: JsonShape[T]) -> T:
    try:
        converted: T = msgspec.convert(document, shape.checked)
    except msgspec.ValidationError as exc:
        raise ShapeError(exc, document) from None
    except RecursionError:
        raise DataError("malformed_json", "RecursionError") from None
    return converted


def _without_lone_surrogates(document: Any) -> Any:
    """`document` with every lone surrogate in its strings and keys made U+FFFD, in place;
    iterative, for a document may be nested as deep as json.loads allows."""
    holder = [document]
    pending: list[list[Any] | dict[str, Any]] = [holder]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            items = [(received_text(key), value) for key, value in node.items()]
            node.clear()
            node.update(items)
            for key, value in items:
                if isinstance(value, str):
                    node[key] = received_text(value)
                elif isinstance(value, list | dict):
                    pending.append(value)
        else:
            for index, value in enumerate(node):
                if isinstance(value, str):
                    node[index] = received_text(value)
                elif isinstance(value, list | dict):
                    pending.append(value)
    return holder[0]


_ANY: msgspec.json.Decoder[Any] = msgspec.json.Decoder()
_UTF8_CHUNK = 1 << 20


def _json_loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise DataError("malformed_json", type(exc).__name__) from None


def _is_utf8(body: bytes) -> bool:
    """Whether json.loads would decode `body` as UTF-8 (surrogates allowed, as it allows them),
    checked a chunk at a time: no copy of a large body is ever made whole."""
    decoder = codecs.getincrementaldecoder("utf-8")("surrogatepass")
    view = memoryview(body)
    try:
        for start in range(0, len(body), _UTF8_CHUNK):
            decoder.decode(view[start : start + _UTF8_CHUNK])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def received_text(value: str) -> str:
    """A self-chosen name kept as received, but for lone surrogates (JSON allows "\\ud800"),
    which become U+FFFD: one validator's name must not make the whole set unstorable."""
    return _LONE_SURROGATE.sub("\ufffd", value)


def check_set(table: ValidatorTable, id_paths: Callable[[int], str]) -> None:
    """Reject a set that lists a validator twice or holds no consensus stake.

    `id_paths(i)` says where validator i's id was read, for the error detail.
    """
    addresses = table.addresses
    if len(set(addresses)) != len(addresses):
        seen: set[str] = set()
        for row, address in enumerate(addresses):
            if address in seen:
                raise DataError("duplicate_validator", f"{id_paths(row)} appears twice")
            seen.add(address)
    check_stake(table)


def check_stake(table: ValidatorTable) -> None:
    """Reject a set whose consensus set holds no stake."""
    if not np.any(table.stakes[table.status < CONSENSUS_CODES_BELOW] > 0):
        raise DataError("zero_stake", "the consensus set holds no stake")


def describe(answer: Answer[Any]) -> str:
    """An answer's outcome for a failure message, e.g. `timeout (no answer in 10s)`."""
    detail = f" ({answer.error})" if answer.error else ""
    return f"{answer.outcome}{detail}"
