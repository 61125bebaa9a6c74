"""Ethereum source: the validator registry of a beacon node's state, over the standard beacon API.

Per endpoint and poll: `GET /eth/v1/node/syncing` (a syncing node is not used, and its head
must be dated near our clock), the genesis time (once per endpoint), the finality checkpoints
of the head state, then the registry of the configured state (`head` or `finalized`): the SSZ
BeaconState from `GET /eth/v2/debug/beacon/states/{state}`, or the JSON validators from
`GET /eth/v1/beacon/states/{state}/validators`. With `encoding = "auto"`, SSZ is asked for first
and a node that refuses it (404, 406, 415 or 501) is read as JSON; the JSON has no
participation flags, so that set's liveness is unknown.

Weight is the effective balance (gwei) of active validators; pending validators are inactive,
exited ones are not in the set (see `status.py`); the validator id is its index. The set is
built as columns over the state's own arrays: no object per validator.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from quorumwatch.chains.base import (
    ChainSource,
    EndpointRejectedError,
    VersionedSet,
    check_stake,
    value_of,
)
from quorumwatch.chains.ethereum.attribution import AttributionCache, LabelSources
from quorumwatch.chains.ethereum.labels import Labels, read_labels
from quorumwatch.chains.ethereum.parse import (
    parse_finality_checkpoints,
    parse_genesis,
    parse_syncing,
    parse_validators,
)
from quorumwatch.chains.ethereum.ssz import BeaconValidators, read_beacon_state
from quorumwatch.chains.ethereum.status import (
    SECONDS_PER_SLOT,
    SLOTS_PER_EPOCH,
    classify,
    epoch_at_slot,
)
from quorumwatch.columns import DecimalIds, Unnamed, ValidatorTable
from quorumwatch.entities import builtin_entities, configured_entities
from quorumwatch.models import DataError

if TYPE_CHECKING:
    from collections.abc import Callable

    from quorumwatch.config import ChainSettings, EthereumSettings
    from quorumwatch.endpoints import Answer, Endpoint, EndpointPool, Payload
    from quorumwatch.models import Attribution

SSZ = "application/octet-stream"
# What a node answers when it does not serve the state as SSZ: not found (no debug API),
# not acceptable, unsupported media type, not implemented.
SSZ_REFUSED = frozenset({404, 406, 415, 501})
# Registered and not exited: exited validators are not in the set.
IN_SET_STATUSES = "pending_initialized,pending_queued,active_ongoing,active_exiting,active_slashed"
FORK_HEADER = "Eth-Consensus-Version"


class EthereumSource(ChainSource):
    """The registry of the configured state from the first beacon node that serves it."""

    kind = "ethereum"

    def __init__(
        self,
        pool: EndpointPool,
        settings: ChainSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(pool, settings, clock=clock)
        assert settings.ethereum is not None  # ChainSource checked the section
        self._ethereum: EthereumSettings = settings.ethereum
        self._attribution = AttributionCache(
            LabelSources.of(
                configured=configured_entities(settings.entities),
                builtin=builtin_entities(self.kind),
                labels=_labels_or_none(self._ethereum.labels_file) or Labels({}, {}),
                operators=_labels_or_none(self._ethereum.operators_file, pubkeys_only=True),
            )
        )
        self._genesis_time: dict[str, int] = {}  # per endpoint: it never changes

    async def _attempt(self, endpoint: Endpoint) -> VersionedSet:
        syncing = value_of(
            await self._pool.get_json(endpoint, "/eth/v1/node/syncing", parse_syncing)
        )
        if syncing.is_syncing:
            raise EndpointRejectedError(
                f"syncing: {syncing.sync_distance} slots behind", "catching_up"
            )
        genesis_time = await self._genesis(endpoint)
        self._check_clock(
            endpoint, genesis_time + SECONDS_PER_SLOT * syncing.head_slot, subject="block"
        )
        checkpoints = value_of(
            await self._pool.get_json(
                endpoint,
                "/eth/v1/beacon/states/head/finality_checkpoints",
                parse_finality_checkpoints,
            ),
            "finality_checkpoints",
        )
        registry = await self._registry(
            endpoint, genesis_time, syncing.head_slot, checkpoints.finalized.epoch
        )
        epoch = epoch_at_slot(registry.slot)
        lag = epoch_at_slot(syncing.head_slot) - checkpoints.finalized.epoch
        # A million validators take a second to classify and attribute: off the event loop.
        try:
            table, liveness_known, attribution = await asyncio.to_thread(
                validator_set, registry, epoch, self._attribution
            )
        except DataError as exc:  # a state with no validator in the set, or no stake
            raise EndpointRejectedError(f"state: {exc}", exc.reason) from None
        return VersionedSet(
            table,
            version=registry.slot,
            finality_lag_epochs=max(0, lag),
            liveness_known=liveness_known,
            attribution=attribution,
        )

    async def _genesis(self, endpoint: Endpoint) -> int:
        known = self._genesis_time.get(endpoint.name)
        if known is None:
            genesis = value_of(
                await self._pool.get_json(endpoint, "/eth/v1/beacon/genesis", parse_genesis),
                "genesis",
            )
            known = self._genesis_time[endpoint.name] = genesis.genesis_time
        return known

    async def _registry(
        self, endpoint: Endpoint, genesis_time: int, head_slot: int, finalized_epoch: int
    ) -> BeaconValidators:
        """The configured state's registry, as SSZ or JSON as the settings and node allow;
        `finalized_epoch` is the head's finalized checkpoint, where the finalized state is."""
        state = self._ethereum.state
        if self._ethereum.encoding != "json":
            answer = await self._pool.get(
                endpoint, f"/eth/v2/debug/beacon/states/{state}", _read_ssz, accept=SSZ
            )
            if self._ethereum.encoding == "ssz" or answer.status not in SSZ_REFUSED:
                return value_of(answer, "state")
        # The JSON has no slot. The finalized state is the one at the head's finalized
        # checkpoint; the checkpoints that state holds itself are older still.
        slot = finalized_epoch * SLOTS_PER_EPOCH if state == "finalized" else head_slot
        answer_json: Answer[BeaconValidators] = await self._pool.get(
            endpoint,
            f"/eth/v1/beacon/states/{state}/validators",
            lambda payload: parse_validators(payload.body, slot=slot, genesis_time=genesis_time),
            accept="application/json",
            params={"status": IN_SET_STATUSES},
        )
        return value_of(answer_json, "validators")


def _read_ssz(payload: Payload) -> BeaconValidators:
    fork = payload.headers.get(FORK_HEADER)
    if fork is None:
        raise DataError("unknown_fork", f"no {FORK_HEADER} header")
    return read_beacon_state(payload.body, fork)


def _labels_or_none(path: Path | None, *, pubkeys_only: bool = False) -> Labels | None:
    return None if path is None else read_labels(path, pubkeys_only=pubkeys_only)


def validator_set(
    registry: BeaconValidators, epoch: int, attribution: AttributionCache
) -> tuple[ValidatorTable, bool, Attribution]:
    """The set at `epoch`: its validators (registered, not exited) as a table, whether their
    liveness is known, and their attribution."""
    classified = classify(registry, epoch)
    rows = np.flatnonzero(classified.in_set)
    if rows.size == 0:
        raise DataError("empty_set", "no registered validator that has not exited")
    indices = registry.indices[rows]
    table = ValidatorTable(
        addresses=DecimalIds(indices),  # unique: indices, checked as read
        names=Unnamed(rows.size),
        stakes=registry.effective_balance[rows],
        status=classified.status[rows],
    )
    check_stake(table)
    attributed = attribution.attribute(
        indices, registry.pubkeys[rows], registry.withdrawal_credentials[rows]
    )
    return table, classified.liveness_known, attributed
