"""The simulated Ethereum validator set: mainnet-shaped numpy columns, its label files, and the
facts a test expects of it, computed again in plain Python.

`build_set(validators, seed)` draws the whole registry with vectorised numpy (no per-validator
Python objects): a staking protocol near 28 % of the active effective balance withdrawing to
Lido's vault, a few dozen custodians spread over several withdrawal addresses each, and a long
tail of solo stakers with addresses of their own. Some validators are 0x02 (compounding, up to
2048 ETH), a few 0x00 (BLS credentials, no address), a few percent miss the target vote, a few
are slashed but still active, some are pending and some have exited; every one of the nine API
statuses occurs in exact, planned numbers (`SimulatedSet.planned_statuses`).

`label_rows` and `operator_rows` name the custodians' addresses (and their 0x00 validators'
pubkeys) and the protocol's node operators; `write_label_files` writes them as CSV.
`expected_stakes` recomputes the stake per address, entity and operator from `records()` alone.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import numpy as np
from numpy.typing import NDArray

from quorumwatch.chains.ethereum.parse import ValidatorStatusName

GWEI_PER_ETH = 10**9
FAR_FUTURE_EPOCH = 2**64 - 1
SLOTS_PER_EPOCH = 32
SECONDS_PER_SLOT = 12
# The simulated chain's epoch when it starts: after the Fulu fork (mainnet epoch 411392).
BASE_EPOCH = 420_000
MIN_VALIDATORS = 100
MAX_VALIDATORS = 20_000_000  # the SSZ state stays under the 4 GiB its offsets can address

LIDO_WITHDRAWAL_ADDRESS = "0xb9d7934878b5fb9610b3fe8a5e441e8fad7e293f"
LIDO_ENTITY = "Lido"  # the built-in name the labels file leaves out
TIMELY_SOURCE = 1
TIMELY_TARGET = 2
TIMELY_HEAD = 4
ALL_FLAGS = TIMELY_SOURCE | TIMELY_TARGET | TIMELY_HEAD

# The API statuses, in the order of their codes in `statuses()`.
STATUSES: tuple[str, ...] = get_args(ValidatorStatusName)
STATUS_SHORTHANDS: Mapping[str, tuple[str, ...]] = {
    "pending": STATUSES[0:2],
    "active": STATUSES[2:5],
    "exited": STATUSES[5:7],
    "withdrawal": STATUSES[7:9],
}
ACTIVE_STATUSES = STATUS_SHORTHANDS["active"]

# One SSZ `Validator` record (121 bytes, little-endian): the registry is an array of these, so
# its SSZ form is the array's bytes.
VALIDATOR_DTYPE = np.dtype(
    [
        ("pubkey", "u1", (48,)),
        ("withdrawal_credentials", "u1", (32,)),
        ("effective_balance", "<u8"),
        ("slashed", "u1"),
        ("activation_eligibility_epoch", "<u8"),
        ("activation_epoch", "<u8"),
        ("exit_epoch", "<u8"),
        ("withdrawable_epoch", "<u8"),
    ]
)
assert VALIDATOR_DTYPE.itemsize == 121

# Owners of validators (the generator's truth; `expected_stakes` never reads it).
PROTOCOL, CUSTODIAN, SOLO = 0, 1, 2
CUSTODIANS = (
    "Arbor Custody", "Beacon Vault", "Cobalt Exchange", "Delta Prime", "Ember Trust",
    "Fjord Staking", "Granite Capital", "Harbor Exchange", "Indigo Custody", "Juniper Vaults",
    "Kestrel Markets", "Lumen Exchange", "Meridian Trust", "Nimbus Custody", "Onyx Exchange",
    "Pioneer Staking", "Quartz Capital", "Redwood Custody", "Summit Exchange", "Tundra Trust",
    "Umber Vault", "Vesper Exchange", "Willow Staking", "Xenon Custody", "Yarrow Capital",
    "Zephyr Exchange", "Atlas Prime", "Birch Custody", "Cedar Exchange", "Dune Staking",
    "Echo Trust", "Flint Exchange", "Glacier Custody", "Heron Capital", "Iris Exchange",
    "Jade Vault",
)  # fmt: skip
OPERATORS = (
    "Aurora Nodes", "Bastion Infra", "Coral Validators", "Drift Labs",
    "Evergreen Nodes", "Fathom Staking", "Gale Infrastructure", "Helix Validators",
)  # fmt: skip
_OPERATOR_WEIGHTS = (0.18, 0.16, 0.14, 0.12, 0.12, 0.10, 0.10, 0.08)
# Custodian i holds 3 to 8 withdrawal addresses; shares fall off as 1/(i+1)^0.9.
_ADDRESSES_PER_CUSTODIAN = tuple(3 + i % 6 for i in range(len(CUSTODIANS)))
# Validator shares by owner: with the others' heavier 0x02 validators this puts the protocol
# near 28 % of the effective balance.
_PROTOCOL_SHARE, _CUSTODIAN_SHARE = 0.33, 0.36
_COMPOUNDING_SHARE = {PROTOCOL: 0.04, CUSTODIAN: 0.015, SOLO: 0.02}
_BLS_SHARE = {CUSTODIAN: 0.005, SOLO: 0.02}
_VALIDATORS_PER_SOLO_STAKER = 2.2
# Planned statuses other than active_ongoing: (share of the set, minimum count).
_STATUS_PLAN = {
    "pending_initialized": (0.002, 1),
    "pending_queued": (0.008, 2),
    "active_exiting": (0.003, 1),
    "active_slashed": (0.00002, 2),
    "exited_unslashed": (0.005, 1),
    "exited_slashed": (0.0002, 1),
    "withdrawal_possible": (0.001, 1),
    "withdrawal_done": (0.05, 1),
}
_EPOCHS_PER_SLASHINGS_VECTOR = 8192
_MIN_VALIDATOR_WITHDRAWABILITY_DELAY = 256


@dataclass(slots=True)
class Registry:
    """The registry columns the state serves; mutate them only through the simulator's
    `update`, which drops what was rendered from them."""

    validators: NDArray[np.void]  # VALIDATOR_DTYPE records
    balances: NDArray[np.uint64]
    previous_epoch_participation: NDArray[np.uint8]
    current_epoch_participation: NDArray[np.uint8]
    inactivity_scores: NDArray[np.uint64]

    def __len__(self) -> int:
        return len(self.validators)


@dataclass(frozen=True, slots=True)
class SimulatedSet:
    """A built set: its registry, and who owns what (for label files and cross-checks)."""

    registry: Registry
    seed: int
    base_epoch: int
    owner_kind: NDArray[np.uint8]  # PROTOCOL, CUSTODIAN or SOLO
    owner_id: NDArray[np.int64]  # custodian number, solo staker number, or 0
    operator: NDArray[np.int8]  # index into OPERATORS for the protocol's validators, else -1
    custodian_addresses: tuple[tuple[bytes, ...], ...]  # per custodian, its 20-byte addresses
    planned_statuses: Mapping[str, int]  # how many validators have each status at base_epoch


@dataclass(frozen=True, slots=True)
class ValidatorRecord:
    """One validator as plain Python values, for hand computations over small sets."""

    index: int
    pubkey: bytes
    withdrawal_credentials: bytes
    effective_balance: int
    slashed: bool
    activation_eligibility_epoch: int
    activation_epoch: int
    exit_epoch: int
    withdrawable_epoch: int
    balance: int
    previous_epoch_participation: int


def splitmix64(values: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """SplitMix64's output function: a bijection on uint64, so distinct inputs stay distinct."""
    z = values + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    result: NDArray[np.uint64] = z ^ (z >> np.uint64(31))
    return result


def _pattern(keys: NDArray[np.uint64], salt: int, width: int) -> NDArray[np.uint8]:
    """`width` deterministic bytes per key; the last 8 are SplitMix64(key + salt) big-endian."""
    words = -(-width // 8)
    out = np.empty((len(keys), words), dtype=">u8")
    for word in range(words):
        mixed = keys + np.uint64((salt + 0x632BE59BD9B4E019 * (words - 1 - word)) % 2**64)
        out[:, word] = splitmix64(mixed)
    return out.view(np.uint8).reshape(len(keys), words * 8)[:, words * 8 - width :]


def _credentials(prefix: int, addresses: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """0x01/0x02 withdrawal credentials: prefix, 11 zero bytes, the 20-byte address."""
    out = np.zeros((len(addresses), 32), dtype=np.uint8)
    out[:, 0] = prefix
    out[:, 12:] = addresses
    return out


def lido_address() -> bytes:
    return bytes.fromhex(LIDO_WITHDRAWAL_ADDRESS[2:])


def custodian_addresses(seed: int) -> tuple[tuple[bytes, ...], ...]:
    """Each custodian's withdrawal addresses (independent of the set's size)."""
    keys = np.array(
        [c * 64 + a for c, n in enumerate(_ADDRESSES_PER_CUSTODIAN) for a in range(n)],
        dtype=np.uint64,
    )
    raw = _pattern(keys, _salt(seed, 2), 20)
    out: list[tuple[bytes, ...]] = []
    start = 0
    for count in _ADDRESSES_PER_CUSTODIAN:
        out.append(tuple(bytes(row) for row in raw[start : start + count]))
        start += count
    return tuple(out)


def _salt(seed: int, stream: int) -> int:
    mixed = splitmix64(np.array([seed * 16 + stream], dtype=np.uint64))
    return int(mixed[0])


def _status_counts(validators: int) -> dict[str, int]:
    counts = {
        status: max(minimum, round(share * validators))
        for status, (share, minimum) in _STATUS_PLAN.items()
    }
    counts["active_ongoing"] = validators - sum(counts.values())
    return {status: counts[status] for status in STATUSES}


def build_set(
    validators: int, seed: int = 1, *, offline_fraction: float = 0.03, finality_lag_epochs: int = 2
) -> SimulatedSet:
    """The deterministic set of `validators` validators at epoch `BASE_EPOCH`.

    `offline_fraction` of the active, unslashed validators miss the previous epoch's target
    vote; when finality lags by more than 4 epochs they carry the inactivity scores of a leak.
    """
    if not MIN_VALIDATORS <= validators <= MAX_VALIDATORS:
        raise ValueError(f"validators must be {MIN_VALIDATORS} to {MAX_VALIDATORS}")
    if not 0.0 <= offline_fraction <= 1.0:
        raise ValueError("offline_fraction must be between 0 and 1")
    rng = np.random.default_rng(seed)
    owners = _draw_owners(rng, validators, seed)
    effective = _draw_effective_balances(rng, owners)
    planned = _status_counts(validators)
    life = _draw_lifecycle(rng, planned, BASE_EPOCH)
    effective[life.slashed] -= np.uint64(GWEI_PER_ETH)
    effective[life.status == STATUSES.index("withdrawal_done")] = 0
    registry = _draw_activity(
        rng,
        owners,
        life,
        effective,
        offline_fraction=offline_fraction,
        finality_lag_epochs=finality_lag_epochs,
    )
    registry.validators["pubkey"] = _pattern(
        np.arange(validators, dtype=np.uint64), _salt(seed, 1), 48
    )
    pubkeys = registry.validators["pubkey"]
    pubkeys[:, 0] = 0x80 | (pubkeys[:, 0] & 0x3F)  # the compressed-point flag of a BLS key
    return SimulatedSet(
        registry=registry,
        seed=seed,
        base_epoch=BASE_EPOCH,
        owner_kind=owners.kind,
        owner_id=owners.owner_id,
        operator=owners.operator,
        custodian_addresses=owners.held,
        planned_statuses=planned,
    )


@dataclass(frozen=True, slots=True)
class _Owners:
    kind: NDArray[np.uint8]
    owner_id: NDArray[np.int64]
    operator: NDArray[np.int8]
    credentials: NDArray[np.uint8]  # (n, 32)
    compounding: NDArray[np.bool_]
    held: tuple[tuple[bytes, ...], ...]


def _draw_owners(rng: np.random.Generator, n: int, seed: int) -> _Owners:
    """Who owns each validator, its withdrawal address and its credentials."""
    draw = rng.random(n)
    kind = np.full(n, SOLO, dtype=np.uint8)
    kind[draw < _PROTOCOL_SHARE + _CUSTODIAN_SHARE] = CUSTODIAN
    kind[draw < _PROTOCOL_SHARE] = PROTOCOL
    weights = 1.0 / np.arange(1, len(CUSTODIANS) + 1) ** 0.9
    custodian = rng.choice(len(CUSTODIANS), size=n, p=weights / weights.sum())
    per_custodian = np.array(_ADDRESSES_PER_CUSTODIAN)
    address_slot = (rng.random(n) * per_custodian[custodian]).astype(np.int64)
    solo_stakers = max(1, int(np.count_nonzero(kind == SOLO) / _VALIDATORS_PER_SOLO_STAKER))
    staker = rng.integers(0, solo_stakers, size=n)
    owner_id = np.where(kind == CUSTODIAN, custodian, np.where(kind == SOLO, staker, 0))
    protocol, custodial, solo = kind == PROTOCOL, kind == CUSTODIAN, kind == SOLO
    operator = np.full(n, -1, dtype=np.int8)
    operator[protocol] = rng.choice(len(OPERATORS), size=int(protocol.sum()), p=_OPERATOR_WEIGHTS)

    address = np.empty((n, 20), dtype=np.uint8)
    address[protocol] = np.frombuffer(lido_address(), dtype=np.uint8)
    held = custodian_addresses(seed)
    table = np.frombuffer(b"".join(a for owned in held for a in owned), dtype=np.uint8)
    first = np.concatenate(([0], np.cumsum(per_custodian)[:-1]))
    rows = first[custodian[custodial]] + address_slot[custodial]
    address[custodial] = table.reshape(-1, 20)[rows]
    address[solo] = _pattern(staker[solo].astype(np.uint64), _salt(seed, 3), 20)

    prefix_draw = rng.random(n)
    compounding = np.zeros(n, dtype=bool)
    bls = np.zeros(n, dtype=bool)
    for owner, share in _COMPOUNDING_SHARE.items():
        compounding |= (kind == owner) & (prefix_draw < share)
    for owner, share in _BLS_SHARE.items():
        bls |= (kind == owner) & (prefix_draw > 1.0 - share)
    credentials = _credentials(1, address)
    credentials[compounding, 0] = 2
    credentials[bls] = _pattern(np.flatnonzero(bls).astype(np.uint64), _salt(seed, 4), 32)
    credentials[bls, 0] = 0
    return _Owners(kind, owner_id.astype(np.int64), operator, credentials, compounding, held)


def _draw_effective_balances(rng: np.random.Generator, owners: _Owners) -> NDArray[np.uint64]:
    """32 ETH, or for the custodians' and solo stakers' 0x02 validators 32 · 2^U ETH (U below
    6.2), capped at 2048 ETH: whole ETH, in gwei."""
    eth = np.full(len(owners.kind), 32, dtype=np.uint64)
    heavy = owners.compounding & (owners.kind != PROTOCOL)
    exponent = rng.random(len(eth)) * 6.2
    eth[heavy] = np.minimum(np.floor(32 * 2.0 ** exponent[heavy]), 2048).astype(np.uint64)
    return eth * np.uint64(GWEI_PER_ETH)


@dataclass(frozen=True, slots=True)
class _Lifecycle:
    status: NDArray[np.uint8]  # the planned status code at the base epoch
    eligibility: NDArray[np.uint64]
    activation: NDArray[np.uint64]
    exit: NDArray[np.uint64]
    withdrawable: NDArray[np.uint64]
    slashed: NDArray[np.bool_]


def _draw_lifecycle(rng: np.random.Generator, planned: Mapping[str, int], epoch: int) -> _Lifecycle:
    """Epochs giving each validator its planned status at `epoch`: pending ones are the newest
    indices, the other statuses sit at random older indices."""
    n = sum(planned.values())
    initialized, queued = planned["pending_initialized"], planned["pending_queued"]
    status = np.full(n, STATUSES.index("active_ongoing"), dtype=np.uint8)
    status[n - initialized - queued : n - initialized] = STATUSES.index("pending_queued")
    status[n - initialized :] = STATUSES.index("pending_initialized")
    older = rng.permutation(n - initialized - queued)
    start = 0
    for name in STATUSES[3:]:
        status[older[start : start + planned[name]]] = STATUSES.index(name)
        start += planned[name]

    def where(*names: str) -> NDArray[np.bool_]:
        return np.isin(status, [STATUSES.index(name) for name in names])

    jitter = rng.integers(0, 256, size=n).astype(np.uint64)
    far = np.uint64(FAR_FUTURE_EPOCH)
    e = np.uint64(epoch)
    delay = np.uint64(_MIN_VALIDATOR_WITHDRAWABILITY_DELAY)
    activation = np.arange(n, dtype=np.uint64) * np.uint64(epoch - 2_000) // np.uint64(n)
    eligibility = activation - np.minimum(activation, np.uint64(5))
    exit_epoch = np.full(n, far, dtype=np.uint64)
    withdrawable = np.full(n, far, dtype=np.uint64)

    # (status, exit epoch, withdrawable epoch) for those that have set out to leave.
    leaving = (
        ("active_exiting", e + 1 + jitter, e + 1 + jitter + delay),
        ("active_slashed", e + 1 + jitter, np.full(n, e + _EPOCHS_PER_SLASHINGS_VECTOR)),
        ("exited_unslashed", e - jitter, e - jitter + delay),
        ("exited_slashed", e - jitter, e - jitter + _EPOCHS_PER_SLASHINGS_VECTOR),
        ("withdrawal_possible", e - delay - jitter % 50, e - jitter % 50),
    )
    for name, exits, withdrawals in leaving:
        mask = where(name)
        exit_epoch[mask] = exits[mask]
        withdrawable[mask] = withdrawals[mask]
    mask = where("withdrawal_done")
    room = (e - np.uint64(300)) - activation[mask] - np.uint64(1)
    exit_epoch[mask] = activation[mask] + 1 + (rng.random(len(room)) * room).astype(np.uint64)
    withdrawable[mask] = exit_epoch[mask] + delay
    mask = where("pending_queued")
    eligibility[mask] = e - 1 - jitter[mask] % 20
    soon = np.arange(int(mask.sum())) % 2 == 0  # half have an activation epoch, half wait
    activation[mask] = np.where(soon, e + 1 + jitter[mask] % 5, far)
    mask = where("pending_initialized")
    eligibility[mask] = far
    activation[mask] = far
    slashed = where("active_slashed", "exited_slashed")
    return _Lifecycle(status, eligibility, activation, exit_epoch, withdrawable, slashed)


def _draw_activity(
    rng: np.random.Generator,
    owners: _Owners,
    life: _Lifecycle,
    effective: NDArray[np.uint64],
    *,
    offline_fraction: float,
    finality_lag_epochs: int,
) -> Registry:
    """Balances, participation flags and inactivity scores; the registry records, without
    pubkeys."""
    n = len(effective)
    # Rewards above the effective balance (more room for 0x02), none while pending.
    surplus = rng.integers(0, GWEI_PER_ETH // 16, size=n).astype(np.uint64)
    heavy = owners.compounding
    surplus[heavy] = rng.integers(0, 9 * GWEI_PER_ETH // 10, size=int(heavy.sum()))
    pending = life.status <= STATUSES.index("pending_queued")
    surplus[pending | (effective == 0)] = 0
    balances = effective + surplus

    # The previous epoch: mostly all three flags, some without head; offline validators (and
    # slashed ones) lack the target flag and lose a little balance.
    active = np.isin(life.status, [STATUSES.index(s) for s in ACTIVE_STATUSES])
    flags = np.where(rng.random(n) < 0.93, ALL_FLAGS, ALL_FLAGS ^ TIMELY_HEAD).astype(np.uint8)
    candidates = np.flatnonzero(active & ~life.slashed)
    offline = np.zeros(n, dtype=bool)
    offline[rng.permutation(candidates)[: round(offline_fraction * len(candidates))]] = True
    flags[offline] = np.where(rng.random(int(offline.sum())) < 0.3, TIMELY_SOURCE, 0)
    flags[~active | life.slashed] = 0
    penalty = rng.integers(0, GWEI_PER_ETH // 5, size=n).astype(np.uint64)
    balances[offline] = effective[offline] - np.minimum(penalty[offline], effective[offline])
    current = np.where(rng.random(n) < 0.6, ALL_FLAGS, 0).astype(np.uint8)  # epoch under way
    current[~active | life.slashed | offline] = 0
    inactivity = np.zeros(n, dtype="<u8")
    if finality_lag_epochs > 4:  # an inactivity leak: 4 points an epoch missed
        inactivity[offline] = 4 * finality_lag_epochs

    records = np.zeros(n, dtype=VALIDATOR_DTYPE)
    records["withdrawal_credentials"] = owners.credentials
    records["effective_balance"] = effective
    records["slashed"] = life.slashed
    records["activation_eligibility_epoch"] = life.eligibility
    records["activation_epoch"] = life.activation
    records["exit_epoch"] = life.exit
    records["withdrawable_epoch"] = life.withdrawable
    return Registry(
        validators=records,
        balances=balances.astype("<u8"),
        previous_epoch_participation=flags,
        current_epoch_participation=current,
        inactivity_scores=inactivity,
    )


def statuses(registry: Registry, epoch: int) -> NDArray[np.uint8]:
    """Each validator's status code (an index into STATUSES) at `epoch`, vectorised."""
    v = registry.validators
    e = np.uint64(epoch)
    code = np.full(len(v), STATUSES.index("withdrawal_done"), dtype=np.uint8)
    code[registry.balances != 0] = STATUSES.index("withdrawal_possible")
    slashed = v["slashed"] != 0
    exited = v["withdrawable_epoch"] > e
    code[exited] = np.where(
        slashed[exited], STATUSES.index("exited_slashed"), STATUSES.index("exited_unslashed")
    )
    active = v["exit_epoch"] > e
    exiting = np.where(slashed, STATUSES.index("active_slashed"), STATUSES.index("active_exiting"))
    ongoing = v["exit_epoch"] == np.uint64(FAR_FUTURE_EPOCH)
    code[active] = np.where(ongoing, STATUSES.index("active_ongoing"), exiting)[active]
    pending = v["activation_epoch"] > e
    initialized = v["activation_eligibility_epoch"] == np.uint64(FAR_FUTURE_EPOCH)
    waiting = np.where(
        initialized, STATUSES.index("pending_initialized"), STATUSES.index("pending_queued")
    )
    code[pending] = waiting[pending]
    return code


def status_codes(names: Iterable[str]) -> set[int]:
    """The codes a status filter selects (names or shorthands); KeyError for an unknown one."""
    codes: set[int] = set()
    for name in names:
        for status in STATUS_SHORTHANDS.get(name, (name,)):
            if status not in STATUSES:
                raise KeyError(name)
            codes.add(STATUSES.index(status))
    return codes


def records(registry: Registry) -> list[ValidatorRecord]:
    """Every validator as a `ValidatorRecord` (plain Python: for small sets)."""
    v = registry.validators
    names = VALIDATOR_DTYPE.names or ()
    # effective_balance, slashed, then the four epochs, as the record declares them.
    columns: list[list[Any]] = [v[name].tolist() for name in names[2:]]
    pubkeys = v["pubkey"].tobytes()
    credentials = v["withdrawal_credentials"].tobytes()
    balances = registry.balances.tolist()
    flags = registry.previous_epoch_participation.tolist()
    return [
        ValidatorRecord(
            i,
            pubkeys[48 * i : 48 * i + 48],
            credentials[32 * i : 32 * i + 32],
            columns[0][i],
            bool(columns[1][i]),
            columns[2][i],
            columns[3][i],
            columns[4][i],
            columns[5][i],
            balances[i],
            flags[i],
        )
        for i in range(len(v))
    ]


def hex0x(data: bytes) -> str:
    return "0x" + data.hex()


def label_rows(built: SimulatedSet) -> list[tuple[str, str]]:
    """(key, entity) rows: every custodian address, then the pubkeys of the custodians' 0x00
    validators (which have no address), in index order. The protocol needs no row."""
    rows = [
        (hex0x(address), CUSTODIANS[number])
        for number, addresses in enumerate(built.custodian_addresses)
        for address in addresses
    ]
    v = built.registry.validators
    legacy = (built.owner_kind == CUSTODIAN) & (v["withdrawal_credentials"][:, 0] == 0)
    for i in np.flatnonzero(legacy).tolist():
        rows.append((hex0x(v["pubkey"][i].tobytes()), CUSTODIANS[int(built.owner_id[i])]))
    return rows


def operator_rows(built: SimulatedSet) -> list[tuple[str, str]]:
    """(pubkey, operator) rows for the protocol's validators, in index order."""
    pubkeys = built.registry.validators["pubkey"]
    return [
        (hex0x(pubkeys[i].tobytes()), OPERATORS[int(built.operator[i])])
        for i in np.flatnonzero(built.operator >= 0).tolist()
    ]


def write_csv(path: Path, rows: Iterable[tuple[str, str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("key", "entity"))
        writer.writerows(rows)


def read_csv(path: Path) -> dict[str, str]:
    """A `key,entity` file as a dict, keys lower-cased."""
    with path.open(encoding="utf-8", newline="") as source:
        return {row["key"].lower(): row["entity"] for row in csv.DictReader(source)}


def write_label_files(directory: Path, *, validators: int, seed: int = 1) -> tuple[Path, Path]:
    """Write `labels.csv` (custodians) and `operators.csv` (the protocol's node operators) for
    the set of `validators` built from `seed`; returns their paths."""
    built = build_set(validators, seed)
    directory.mkdir(parents=True, exist_ok=True)
    labels, operators = directory / "labels.csv", directory / "operators.csv"
    write_csv(labels, label_rows(built))
    write_csv(operators, operator_rows(built))
    return labels, operators


@dataclass(frozen=True, slots=True)
class ExpectedStakes:
    """Effective balance (gwei) of the validators whose status is in `statuses`, grouped."""

    total: int
    by_address: Mapping[str, int]  # 0x address; a 0x00 validator stands as its pubkey
    by_entity: Mapping[str, int]  # pubkey label, else address label or Lido, else the address
    by_operator: Mapping[str, int]  # operator file, else the validator's entity
    missing_target: int  # of `total`, the part without TIMELY_TARGET last epoch
    status_counts: Mapping[str, int]  # every validator, by status


def status_of(record: ValidatorRecord, epoch: int) -> str:
    """The API status of one validator at `epoch` (plain Python, after the beacon-APIs
    validator status specification)."""
    if record.activation_epoch > epoch:
        if record.activation_eligibility_epoch == FAR_FUTURE_EPOCH:
            return "pending_initialized"
        return "pending_queued"
    if epoch < record.exit_epoch:
        if record.exit_epoch == FAR_FUTURE_EPOCH:
            return "active_ongoing"
        return "active_slashed" if record.slashed else "active_exiting"
    if epoch < record.withdrawable_epoch:
        return "exited_slashed" if record.slashed else "exited_unslashed"
    return "withdrawal_possible" if record.balance != 0 else "withdrawal_done"


def expected_stakes(
    validators: Iterable[ValidatorRecord],
    epoch: int,
    labels: Mapping[str, str],
    operators: Mapping[str, str],
    statuses: Iterable[str] = ACTIVE_STATUSES,
) -> ExpectedStakes:
    """Group the stake of `validators` by address, entity and operator, one validator at a
    time: an independent check on whatever a client computes from the served state."""
    wanted = set(statuses)
    total = missing = 0
    by_address: dict[str, int] = {}
    by_entity: dict[str, int] = {}
    by_operator: dict[str, int] = {}
    counts = dict.fromkeys(STATUSES, 0)
    lido = LIDO_WITHDRAWAL_ADDRESS
    for record in validators:
        status = status_of(record, epoch)
        counts[status] += 1
        if status not in wanted:
            continue
        pubkey = hex0x(record.pubkey)
        prefix = record.withdrawal_credentials[0]
        address = hex0x(record.withdrawal_credentials[12:]) if prefix in (1, 2) else pubkey
        entity = labels.get(pubkey) or labels.get(address)
        entity = entity or (LIDO_ENTITY if address == lido else address)
        stake = record.effective_balance
        total += stake
        if not record.previous_epoch_participation & TIMELY_TARGET:
            missing += stake
        _add(by_address, address, stake)
        _add(by_entity, entity, stake)
        _add(by_operator, operators.get(pubkey, entity), stake)
    return ExpectedStakes(total, by_address, by_entity, by_operator, missing, counts)


def _add(totals: dict[str, int], key: str, amount: int) -> None:
    totals[key] = totals.get(key, 0) + amount
