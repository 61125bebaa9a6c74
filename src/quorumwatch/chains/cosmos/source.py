"""Cosmos source: staking and slashing over the LCD, voting power over CometBFT RPC.

One fetch reads everything from one endpoint (its LCD and RPC pair) and fails closed:
a failing page, a short or inconsistent page walk, an RPC validator the LCD does not
know, a node on another network or still catching up each reject the endpoint, and
the next one is tried.

Each validator's declared identity (`description.identity`, a claim) is kept in the table's
`entity_hints`: the monitor groups by it when `group_by_identity` is on.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import structlog

from quorumwatch.chains.base import (
    ChainSource,
    EndpointRejectedError,
    VersionedSet,
    value_of,
)
from quorumwatch.chains.cosmos import bech32
from quorumwatch.chains.cosmos.parse import (
    LcdValidator,
    NodeStatus,
    Page,
    RpcValidator,
    SigningInfo,
    SlashingParams,
    parse_lcd_validators,
    parse_pool,
    parse_rpc_validators,
    parse_signing_infos,
    parse_slashing_params,
    parse_status,
)
from quorumwatch.columns import ValidatorTable, stake_column, status_codes
from quorumwatch.models import DataError

if TYPE_CHECKING:
    from quorumwatch.config import CosmosSettings
    from quorumwatch.endpoints import Endpoint

T = TypeVar("T")

STATUS_PATH = "/status"
RPC_VALIDATORS_PATH = "/validators"
VALIDATORS_PATH = "/cosmos/staking/v1beta1/validators"
POOL_PATH = "/cosmos/staking/v1beta1/pool"
SIGNING_INFOS_PATH = "/cosmos/slashing/v1beta1/signing_infos"
SLASHING_PARAMS_PATH = "/cosmos/slashing/v1beta1/params"
LCD_PAGE_LIMIT = 100  # gateways may cap it lower: the walk follows next_key regardless
RPC_PER_PAGE = 100  # the CometBFT maximum
MAX_PAGES = 1000

log = structlog.get_logger(__name__)


def display_decimals(token_exponent: int, power_reduction: int) -> int:
    """Display decimals of a stake in voting power: exponent − log10(power_reduction)."""
    digits = len(str(power_reduction)) - 1
    if power_reduction != 10**digits or digits > token_exponent:
        raise ValueError("cosmos.power_reduction must be a power of ten ≤ 10**token_exponent")
    return token_exponent - digits


class CosmosSource(ChainSource):
    """The validator set of a Cosmos SDK chain, weighted by CometBFT voting power."""

    kind = "cosmos"

    @functools.cached_property
    def _cosmos(self) -> CosmosSettings:
        assert self._settings.cosmos is not None  # ChainSource checks the kind's section
        return self._settings.cosmos

    async def _attempt(self, endpoint: Endpoint) -> VersionedSet:
        try:
            return await self._fetch_from(endpoint)
        except EndpointRejectedError as exc:
            log.warning("endpoint rejected", endpoint=endpoint.name, problem=exc.description)
            raise

    async def _get(
        self,
        endpoint: Endpoint,
        path: str,
        decode: Callable[[bytes], T],
        *,
        base: str,
        params: Mapping[str, str] | None = None,
    ) -> T:
        answer = await self._pool.get_json(endpoint, path, decode, base=base, params=params)
        return value_of(answer, path)

    async def _fetch_from(self, endpoint: Endpoint) -> VersionedSet:
        status = await self._get(endpoint, STATUS_PATH, parse_status, base="rpc")
        self._check_status(endpoint, status)
        consensus = await self._consensus_set(endpoint, status.height)
        lcd = await self._walk(endpoint, VALIDATORS_PATH, parse_lcd_validators)
        bonded = await self._get(endpoint, POOL_PATH, parse_pool, base="lcd")
        params = await self._get(endpoint, SLASHING_PARAMS_PATH, parse_slashing_params, base="lcd")
        infos = await self._walk(endpoint, SIGNING_INFOS_PATH, parse_signing_infos)
        try:
            table = join(
                lcd,
                consensus,
                infos=infos,
                params=params,
                bonded_tokens=bonded,
                power_reduction=self._cosmos.power_reduction,
            )
            return VersionedSet(table, status.height)
        except DataError as exc:
            raise EndpointRejectedError(f"{exc}", exc.reason) from None

    def _check_status(self, endpoint: Endpoint, status: NodeStatus) -> None:
        if status.network != self._cosmos.chain_id:
            raise EndpointRejectedError("/status: node on another network", "wrong_chain")
        if status.catching_up:
            raise EndpointRejectedError("/status: node is catching up", "catching_up")
        self._check_clock(endpoint, status.latest_block_time, subject="block")

    async def _consensus_set(self, endpoint: Endpoint, height: int) -> list[RpcValidator]:
        """The whole CometBFT set at `height`, page by page until Σcount = total."""
        validators: list[RpcValidator] = []
        total: int | None = None
        for page in range(1, MAX_PAGES + 1):
            params = {"height": str(height), "page": str(page), "per_page": str(RPC_PER_PAGE)}
            answer = await self._get(
                endpoint, RPC_VALIDATORS_PATH, parse_rpc_validators, base="rpc", params=params
            )
            if total is None:
                total = answer.total
            if answer.total != total or answer.block_height != height:
                raise EndpointRejectedError("/validators: the set changed", "incomplete_set")
            validators.extend(answer.validators)
            if len(validators) > total or (answer.count == 0 and len(validators) < total):
                raise EndpointRejectedError(
                    "/validators: Σcount differs from total", "incomplete_set"
                )
            if len(validators) == total:
                if not validators:
                    raise EndpointRejectedError("/validators: empty consensus set", "empty_set")
                return validators
        raise EndpointRejectedError("/validators: too many pages", "pagination_loop")

    async def _walk(
        self, endpoint: Endpoint, path: str, decode: Callable[[bytes], Page[T]]
    ) -> list[T]:
        """Every item of an LCD list, following `next_key` (URL-escaped by the client)."""
        items: list[T] = []
        params = {"pagination.limit": str(LCD_PAGE_LIMIT), "pagination.count_total": "true"}
        seen: set[str] = set()
        expected: int | None = None
        for _ in range(MAX_PAGES):
            page = await self._get(endpoint, path, decode, base="lcd", params=params)
            if expected is None:
                expected = page.total or None  # only the first page counts the total
            items.extend(page.items)
            if page.next_key is None:
                if expected is not None and len(items) != expected:
                    raise EndpointRejectedError(
                        f"{path}: {len(items)} items, pagination.total {expected}", "incomplete_set"
                    )
                return items
            if page.next_key in seen:
                raise EndpointRejectedError(f"{path}: next_key repeats", "pagination_loop")
            seen.add(page.next_key)
            params = {"pagination.limit": str(LCD_PAGE_LIMIT), "pagination.key": page.next_key}
        raise EndpointRejectedError(f"{path}: too many pages", "pagination_loop")


def join(
    lcd: list[LcdValidator],
    consensus: list[RpcValidator],
    *,
    infos: list[SigningInfo],
    params: SlashingParams,
    bonded_tokens: int,
    power_reduction: int,
) -> ValidatorTable:
    """The table of the LCD list, weighted by the RPC set, with signing info joined.

    Raises DataError when the lists disagree: any of them may be truncated or stale.
    """
    if not lcd:
        raise DataError("empty_set", "staking validators: none")
    power_by_address: dict[str, RpcValidator] = {}
    for validator in consensus:
        if validator.address in power_by_address:
            raise DataError("duplicate_validator", "consensus set: an address appears twice")
        power_by_address[validator.address] = validator
    info_by_valcons: dict[str, SigningInfo] = {}
    for signing_info in infos:
        if signing_info.address in info_by_valcons:
            raise DataError("duplicate_validator", "signing infos: an address appears twice")
        info_by_valcons[signing_info.address] = signing_info
    addresses = list(map(_OPERATOR_ADDRESS, lcd))
    seen: set[str] = set()
    for index, address in enumerate(addresses):
        if address in seen:
            raise DataError("duplicate_validator", f"validators[{index}] appears twice")
        seen.add(address)
    bonded_sum = sum(v.tokens for v in lcd if v.status == "BOND_STATUS_BONDED")
    if bonded_sum != bonded_tokens:
        raise DataError("pool_mismatch", "bonded tokens differ from the pool's")
    max_missed = params.max_missed
    stakes: list[int] = []
    in_consensus_set: list[bool] = []
    jailed: list[bool] = []
    jail_risk: list[float] = []
    for index, row in enumerate(lcd):
        consensus_address = row.key.address()
        rpc = power_by_address.get(consensus_address.hex().upper())
        if rpc is not None and rpc.key != row.key:
            raise DataError("unmatched_validator", f"validators[{index}]: key differs")
        valcons = bech32.encode(valcons_prefix(row.operator_address), consensus_address)
        info = info_by_valcons.get(valcons)
        stakes.append(rpc.voting_power if rpc is not None else row.tokens // power_reduction)
        in_consensus_set.append(rpc is not None)
        jailed.append(row.jailed or (info is not None and info.tombstoned))
        jail_risk.append(info.missed_blocks / max_missed if info is not None else math.nan)
    if sum(in_consensus_set) != len(power_by_address):
        raise DataError("unmatched_validator", "a consensus validator is not in the LCD list")
    return ValidatorTable(
        addresses=addresses,
        names=list(map(_MONIKER, lcd)),
        stakes=stake_column(stakes),
        status=status_codes(in_consensus_set, jailed),
        jail_risk_ratio=np.array(jail_risk, dtype=np.float64),
        entity_hints=list(map(_IDENTITY, lcd)),
    )


_OPERATOR_ADDRESS = attrgetter("operator_address")
_MONIKER = attrgetter("moniker")
_IDENTITY = attrgetter("identity")


def valcons_prefix(operator_address: str) -> str:
    """The consensus-address prefix of a chain, from one of its operator addresses: the
    bech32 prefix ends at the last "1" (a prefix may hold a "1" itself)."""
    return operator_address.rpartition("1")[0].removesuffix("valoper") + "valcons"
