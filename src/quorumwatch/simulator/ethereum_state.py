"""The SSZ encoding of a Fulu `BeaconState` around a simulated registry.

The layout is the container of consensus-specs `specs/fulu/beacon-chain.md` (Electra's fields
plus `proposer_lookahead`) with the mainnet preset; every field is present at its exact size:
fixed-size fields inline in declaration order, a 4-byte little-endian offset for each
variable-size one, then the variable parts in the same order. Most vectors are zeros; the
registry lists hold the simulated validators. The encoder returns the body as a list of
buffers (the registry parts are large: they are encoded once per registry and reused).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from quorumwatch.simulator.ethereum_set import (
    ACTIVE_STATUSES,
    GWEI_PER_ETH,
    SECONDS_PER_SLOT,
    SLOTS_PER_EPOCH,
    STATUSES,
    Registry,
    statuses,
)

FORK_NAME = "fulu"
ELECTRA_FORK_VERSION = bytes.fromhex("05000000")
FULU_FORK_VERSION = bytes.fromhex("06000000")
FULU_FORK_EPOCH = 411_392  # mainnet
CAPELLA_FORK_EPOCH = 194_048  # mainnet
MAINNET_GENESIS_VALIDATORS_ROOT = bytes.fromhex(
    "4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95"
)

# Mainnet preset values the layout depends on.
SLOTS_PER_HISTORICAL_ROOT = 8192
EPOCHS_PER_HISTORICAL_VECTOR = 65536
EPOCHS_PER_SLASHINGS_VECTOR = 8192
SYNC_COMMITTEE_SIZE = 512
JUSTIFICATION_BITS_LENGTH = 4
MIN_SEED_LOOKAHEAD = 1
BYTES_PER_LOGS_BLOOM = 256

# Sizes of the fixed-size containers and list elements.
ROOT = 32
UINT64 = 8
FORK = 4 + 4 + UINT64  # previous_version, current_version, epoch
BEACON_BLOCK_HEADER = UINT64 + UINT64 + 3 * ROOT  # slot, proposer_index, parent/state/body roots
ETH1_DATA = ROOT + UINT64 + ROOT  # deposit_root, deposit_count, block_hash
CHECKPOINT = UINT64 + ROOT
SYNC_COMMITTEE = (SYNC_COMMITTEE_SIZE + 1) * 48  # pubkeys, aggregate_pubkey
VALIDATOR = 121
HISTORICAL_SUMMARY = 2 * ROOT
PENDING_DEPOSIT = 48 + 32 + UINT64 + 96 + UINT64  # pubkey, credentials, amount, signature, slot
# Deneb's ExecutionPayloadHeader (unchanged in Electra and Fulu), without its extra_data bytes:
# parent_hash, fee_recipient, state_root, receipts_root, logs_bloom, prev_randao, block_number,
# gas_limit, gas_used, timestamp, extra_data (offset), base_fee_per_gas (uint256), block_hash,
# transactions_root, withdrawals_root, blob_gas_used, excess_blob_gas.
EXECUTION_PAYLOAD_HEADER_FIXED = (
    32 + 20 + 32 + 32 + BYTES_PER_LOGS_BLOOM + 32 + 4 * UINT64 + 4 + 32 + 32 + 32 + 32 + 2 * UINT64
)

VARIABLE = None
# (field, size in the fixed part or VARIABLE), in declaration order.
BEACON_STATE_FIELDS: tuple[tuple[str, int | None], ...] = (
    ("genesis_time", UINT64),
    ("genesis_validators_root", ROOT),
    ("slot", UINT64),
    ("fork", FORK),
    ("latest_block_header", BEACON_BLOCK_HEADER),
    ("block_roots", SLOTS_PER_HISTORICAL_ROOT * ROOT),
    ("state_roots", SLOTS_PER_HISTORICAL_ROOT * ROOT),
    ("historical_roots", VARIABLE),
    ("eth1_data", ETH1_DATA),
    ("eth1_data_votes", VARIABLE),
    ("eth1_deposit_index", UINT64),
    ("validators", VARIABLE),
    ("balances", VARIABLE),
    ("randao_mixes", EPOCHS_PER_HISTORICAL_VECTOR * ROOT),
    ("slashings", EPOCHS_PER_SLASHINGS_VECTOR * UINT64),
    ("previous_epoch_participation", VARIABLE),
    ("current_epoch_participation", VARIABLE),
    ("justification_bits", (JUSTIFICATION_BITS_LENGTH + 7) // 8),
    ("previous_justified_checkpoint", CHECKPOINT),
    ("current_justified_checkpoint", CHECKPOINT),
    ("finalized_checkpoint", CHECKPOINT),
    ("inactivity_scores", VARIABLE),
    ("current_sync_committee", SYNC_COMMITTEE),
    ("next_sync_committee", SYNC_COMMITTEE),
    ("latest_execution_payload_header", VARIABLE),
    ("next_withdrawal_index", UINT64),
    ("next_withdrawal_validator_index", UINT64),
    ("historical_summaries", VARIABLE),
    ("deposit_requests_start_index", UINT64),
    ("deposit_balance_to_consume", UINT64),
    ("exit_balance_to_consume", UINT64),
    ("earliest_exit_epoch", UINT64),
    ("consolidation_balance_to_consume", UINT64),
    ("earliest_consolidation_epoch", UINT64),
    ("pending_deposits", VARIABLE),
    ("pending_partial_withdrawals", VARIABLE),
    ("pending_consolidations", VARIABLE),
    ("proposer_lookahead", (MIN_SEED_LOOKAHEAD + 1) * SLOTS_PER_EPOCH * UINT64),
)
OFFSET = 4
FIXED_SIZE = sum(OFFSET if size is None else size for _, size in BEACON_STATE_FIELDS)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    epoch: int
    root: bytes

    def encode(self) -> bytes:
        return struct.pack("<Q", self.epoch) + self.root


def checkpoint(epoch: int) -> Checkpoint:
    """The checkpoint of `epoch`, with a root derived from it."""
    return Checkpoint(epoch, hashlib.sha256(b"checkpoint" + epoch.to_bytes(8, "little")).digest())


@dataclass(frozen=True, slots=True)
class Chain:
    """What the state says about the chain besides its registry."""

    genesis_time: int
    slot: int
    finalized_epoch: int
    genesis_validators_root: bytes = MAINNET_GENESIS_VALIDATORS_ROOT

    @property
    def epoch(self) -> int:
        return self.slot // SLOTS_PER_EPOCH

    @property
    def finalized(self) -> Checkpoint:
        return checkpoint(self.finalized_epoch)

    @property
    def current_justified(self) -> Checkpoint:
        return checkpoint(min(self.finalized_epoch + 1, self.epoch))

    @property
    def previous_justified(self) -> Checkpoint:
        return checkpoint(self.finalized_epoch)

    @property
    def justification_bits(self) -> int:
        """Every recent epoch justified while finality keeps up, none while it stalls."""
        return 0b1111 if self.epoch - self.finalized_epoch <= 2 else 0


@dataclass(frozen=True, slots=True)
class RegistryParts:
    """The registry's SSZ list bodies and what the fixed part draws from it."""

    validators: bytes
    balances: bytes
    previous_epoch_participation: bytes
    current_epoch_participation: bytes
    inactivity_scores: bytes
    pending_deposits: bytes
    sync_committee: bytes  # SYNC_COMMITTEE bytes
    proposer_lookahead: bytes
    count: int


def encode_registry(registry: Registry, epoch: int) -> RegistryParts:
    """Encode the registry lists once; `epoch` picks the active validators that fill the sync
    committee and the proposer lookahead, and the pending ones that get pending deposits."""
    v = registry.validators
    codes = statuses(registry, epoch)
    active = np.flatnonzero(np.isin(codes, [STATUSES.index(s) for s in ACTIVE_STATUSES]))
    if len(active) == 0:
        active = np.arange(len(v))
    members = active[(np.arange(SYNC_COMMITTEE_SIZE) * 7919) % len(active)]
    sync_committee = v["pubkey"][members].tobytes() + bytes(48)  # aggregate: zeros
    lookahead_length = (MIN_SEED_LOOKAHEAD + 1) * SLOTS_PER_EPOCH
    proposers = active[(np.arange(lookahead_length) * 104_729 + epoch) % len(active)]
    waiting = np.flatnonzero(codes == STATUSES.index("pending_initialized"))
    return RegistryParts(
        validators=v.tobytes(),
        balances=registry.balances.astype("<u8").tobytes(),
        previous_epoch_participation=registry.previous_epoch_participation.tobytes(),
        current_epoch_participation=registry.current_epoch_participation.tobytes(),
        inactivity_scores=registry.inactivity_scores.astype("<u8").tobytes(),
        pending_deposits=_pending_deposits(v[waiting], epoch),
        sync_committee=sync_committee,
        proposer_lookahead=proposers.astype("<u8").tobytes(),
        count=len(v),
    )


def _pending_deposits(waiting: NDArray[np.void], epoch: int) -> bytes:
    """A top-up `PendingDeposit` for each validator still waiting for eligibility."""
    rows = np.zeros((len(waiting), PENDING_DEPOSIT), dtype=np.uint8)
    rows[:, :48] = waiting["pubkey"]
    rows[:, 48:80] = waiting["withdrawal_credentials"]
    amount = np.full(len(waiting), GWEI_PER_ETH, dtype="<u8")
    rows[:, 80:88] = amount.view(np.uint8).reshape(-1, UINT64)
    slot = np.full(len(waiting), (epoch - 1) * SLOTS_PER_EPOCH, dtype="<u8")
    rows[:, 184:192] = slot.view(np.uint8).reshape(-1, UINT64)
    return rows.tobytes()


def execution_payload_header(chain: Chain) -> bytes:
    """A Deneb `ExecutionPayloadHeader` for the state's slot, with empty extra_data."""
    block_number = 23_000_000 + chain.slot - FULU_FORK_EPOCH * SLOTS_PER_EPOCH
    seed = chain.slot.to_bytes(8, "little")
    parts = [
        hashlib.sha256(b"parent" + seed).digest(),
        bytes.fromhex("4838b106fce9647bdf1e7877bf73ce8b0bad5f97"),  # fee_recipient
        hashlib.sha256(b"state" + seed).digest(),
        hashlib.sha256(b"receipts" + seed).digest(),
        bytes(BYTES_PER_LOGS_BLOOM),
        hashlib.sha256(b"randao" + seed).digest(),
        struct.pack(
            "<QQQQ",
            block_number,
            45_000_000,  # gas_limit
            21_000_000,  # gas_used
            chain.genesis_time + chain.slot * SECONDS_PER_SLOT,
        ),
        struct.pack("<I", EXECUTION_PAYLOAD_HEADER_FIXED),  # extra_data: empty, right after
        (1_000_000_000).to_bytes(32, "little"),  # base_fee_per_gas: uint256
        hashlib.sha256(b"block" + seed).digest(),
        hashlib.sha256(b"transactions" + seed).digest(),
        hashlib.sha256(b"withdrawals" + seed).digest(),
        struct.pack("<QQ", 786_432, 0),  # blob_gas_used, excess_blob_gas
    ]
    encoded = b"".join(parts)
    assert len(encoded) == EXECUTION_PAYLOAD_HEADER_FIXED
    return encoded


def historical_summaries(slot: int) -> bytes:
    """One `HistoricalSummary` per SLOTS_PER_HISTORICAL_ROOT slots since Capella."""
    count = max(0, slot - CAPELLA_FORK_EPOCH * SLOTS_PER_EPOCH) // SLOTS_PER_HISTORICAL_ROOT
    numbers = np.arange(count, dtype="<u8").view(np.uint8).reshape(count, UINT64)
    rows = np.zeros((count, HISTORICAL_SUMMARY), dtype=np.uint8)
    rows[:, :UINT64] = numbers
    rows[:, ROOT : ROOT + UINT64] = numbers
    rows[:, HISTORICAL_SUMMARY - 1] = 0xA5
    return rows.tobytes()


def encode_beacon_state(chain: Chain, registry: RegistryParts) -> list[bytes]:
    """The SSZ `BeaconState` as buffers to send in order (their total is the body)."""
    n = registry.count
    epoch = chain.epoch
    fork = ELECTRA_FORK_VERSION + FULU_FORK_VERSION + struct.pack("<Q", FULU_FORK_EPOCH)
    header = struct.pack("<QQ", chain.slot, 0) + bytes(ROOT) + bytes(ROOT) + bytes(ROOT)
    deposit_count = n + 16
    eth1_data = bytes(ROOT) + struct.pack("<Q", deposit_count) + bytes(ROOT)
    fixed: dict[str, bytes] = {
        "genesis_time": struct.pack("<Q", chain.genesis_time),
        "genesis_validators_root": chain.genesis_validators_root,
        "slot": struct.pack("<Q", chain.slot),
        "fork": fork,
        "latest_block_header": header,
        "eth1_data": eth1_data,
        "eth1_deposit_index": struct.pack("<Q", deposit_count),
        "justification_bits": bytes([chain.justification_bits]),
        "previous_justified_checkpoint": chain.previous_justified.encode(),
        "current_justified_checkpoint": chain.current_justified.encode(),
        "finalized_checkpoint": chain.finalized.encode(),
        "current_sync_committee": registry.sync_committee,
        "next_sync_committee": registry.sync_committee,
        "next_withdrawal_index": struct.pack("<Q", 90_000_000 + chain.slot * 16),
        "next_withdrawal_validator_index": struct.pack("<Q", (chain.slot * 16) % max(n, 1)),
        "deposit_requests_start_index": struct.pack("<Q", deposit_count),
        "earliest_exit_epoch": struct.pack("<Q", epoch + 5),
        "earliest_consolidation_epoch": struct.pack("<Q", epoch + 5),
        "proposer_lookahead": registry.proposer_lookahead,
    }
    variable: dict[str, bytes] = {
        # Frozen at Capella: one root per SLOTS_PER_HISTORICAL_ROOT slots before it.
        "historical_roots": bytes(
            CAPELLA_FORK_EPOCH * SLOTS_PER_EPOCH // SLOTS_PER_HISTORICAL_ROOT * ROOT
        ),
        "validators": registry.validators,
        "balances": registry.balances,
        "previous_epoch_participation": registry.previous_epoch_participation,
        "current_epoch_participation": registry.current_epoch_participation,
        "inactivity_scores": registry.inactivity_scores,
        "latest_execution_payload_header": execution_payload_header(chain),
        "historical_summaries": historical_summaries(chain.slot),
        "pending_deposits": registry.pending_deposits,
    }
    return assemble(fixed, variable)


def assemble(fixed: Mapping[str, bytes], variable: Mapping[str, bytes]) -> list[bytes]:
    """Lay out BEACON_STATE_FIELDS: given fixed values (zeros where absent, exact sizes
    enforced), offsets for the variable ones (empty where absent), then their bodies."""
    unknown = (set(fixed) | set(variable)) - {name for name, _ in BEACON_STATE_FIELDS}
    if unknown:
        raise KeyError(f"not BeaconState fields: {sorted(unknown)}")
    head = bytearray()
    bodies: list[bytes] = []
    position = FIXED_SIZE
    for name, size in BEACON_STATE_FIELDS:
        if size is VARIABLE:
            body = variable.get(name, b"")
            head += struct.pack("<I", position)
            bodies.append(body)
            position += len(body)
        else:
            value = fixed.get(name, bytes(size))
            if len(value) != size:
                raise ValueError(f"{name}: {len(value)} bytes, not {size}")
            head += value
    assert len(head) == FIXED_SIZE
    if position >= 2**32:
        raise ValueError("the state is too large for SSZ offsets")
    return [bytes(head), *bodies]
