"""The SSZ BeaconState reader: layouts per fork, every column, no copy, every rejection, fuzzing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quorumwatch.chains.ethereum.ssz import (
    FAR_FUTURE_EPOCH,
    FORKS,
    MAINNET,
    MINIMAL,
    SSZ_REJECTION_REASONS,
    BeaconValidators,
    read_beacon_state,
    state_layout,
)
from quorumwatch.models import DataError
from tests.ethereum_builders import (
    GENESIS_TIME,
    SLOT,
    credentials,
    encode_beacon_state,
    make_validators,
    pubkey,
)

# --- An encoder written apart from the module's layout table, straight from the spec ---------

_ROOTS = 8192 * 32  # Vector[Root, SLOTS_PER_HISTORICAL_ROOT]
_SYNC_COMMITTEE = 512 * 48 + 48  # pubkeys, aggregate_pubkey


def _u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def _container(parts: list[bytes | list[bytes]]) -> bytes:
    """SSZ container: bytes are fixed fields inline; a one-item list is a variable field."""
    fixed_size = sum(4 if isinstance(p, list) else len(p) for p in parts)
    head, tail = b"", b""
    for part in parts:
        if isinstance(part, list):
            head += (fixed_size + len(tail)).to_bytes(4, "little")
            tail += part[0]
        else:
            head += part
    return head + tail


def _record(index: int, balance: int, slashed: int, activation: int, exit_: int) -> bytes:
    return (
        pubkey(index)
        + credentials(index)
        + _u64(balance)
        + bytes([slashed])
        + _u64(activation)  # activation_eligibility_epoch
        + _u64(activation)
        + _u64(exit_)
        + _u64(exit_)  # withdrawable_epoch
    )


_RECORDS = [  # index, effective balance, slashed, activation epoch, exit epoch
    (0, 32 * 10**9, 0, 0, FAR_FUTURE_EPOCH),
    (1, 2048 * 10**9, 1, 5, 300),
    (2, 17 * 10**9, 0, 2**63, FAR_FUTURE_EPOCH),
]
_BALANCES = [32_000_000_001, 2**64 - 1, 0]
_PARTICIPATION = [7, 0, 2]


def _hand_built(fork: str) -> bytes:
    """An altair or fulu mainnet state with three validators and every list non-empty."""
    registry = b"".join(_record(*r) for r in _RECORDS)
    head: list[bytes | list[bytes]] = [
        _u64(GENESIS_TIME),
        b"\x11" * 32,  # genesis_validators_root
        _u64(SLOT),
        bytes(16),  # fork
        bytes(112),  # latest_block_header
        bytes(_ROOTS),  # block_roots
        bytes(_ROOTS),  # state_roots
        [b"\x22" * 64],  # historical_roots: two
        bytes(72),  # eth1_data
        [b"\x33" * 72],  # eth1_data_votes: one
        _u64(42),  # eth1_deposit_index
        [registry],
        [b"".join(map(_u64, _BALANCES))],
        bytes(65536 * 32),  # randao_mixes
        bytes(8192 * 8),  # slashings
        [bytes(_PARTICIPATION)],
        [bytes([1, 1, 1])],  # current_epoch_participation
        b"\x0f",  # justification_bits
        bytes(40) * 3,  # previous and current justified, finalized checkpoints
        [_u64(0) * 3],  # inactivity_scores
        bytes(_SYNC_COMMITTEE) * 2,  # current and next sync committees
    ]
    if fork == "fulu":
        header = bytes(436) + (584).to_bytes(4, "little") + bytes(144) + b"extra"
        head += [
            [header],  # latest_execution_payload_header (deneb's: 584-byte fixed part)
            _u64(7),  # next_withdrawal_index
            _u64(8),  # next_withdrawal_validator_index
            [bytes(64)],  # historical_summaries: one
            _u64(1) * 6,  # deposit_requests_start_index … earliest_consolidation_epoch
            [bytes(192)],  # pending_deposits: one
            [bytes(48)],  # pending_partial_withdrawals: two
            [bytes(16)],  # pending_consolidations: one
            bytes(64 * 8),  # proposer_lookahead
        ]
    return _container(head)


def test_fixed_part_sizes_follow_the_spec() -> None:
    """Altair's fixed part is 2,736,629 bytes on mainnet; each fork adds what it declares."""
    sizes = {fork: state_layout(fork).fixed_size for fork in FORKS}
    assert sizes == {
        "altair": 2_736_629,
        "bellatrix": 2_736_629 + 4,  # latest_execution_payload_header offset
        "capella": 2_736_633 + 8 + 8 + 4,  # withdrawal indices, historical_summaries offset
        "deneb": 2_736_653,
        "electra": 2_736_653 + 6 * 8 + 3 * 4,  # churn fields, three pending lists
        "fulu": 2_736_713 + 64 * 8,  # proposer_lookahead
    }
    assert state_layout("altair", MINIMAL).fixed_size == 10_229


@pytest.mark.parametrize("fork", ["altair", "fulu"])
def test_hand_built_state_gives_every_column(fork: str) -> None:
    """A state encoded apart from the module, with other lists around the registry."""
    state = read_beacon_state(_hand_built(fork), fork)
    assert state.count == 3
    assert (state.slot, state.genesis_time) == (SLOT, GENESIS_TIME)
    assert state.indices.tolist() == [0, 1, 2]
    assert [bytes(k) for k in state.pubkeys] == [pubkey(i) for i in range(3)]
    assert [bytes(c) for c in state.withdrawal_credentials] == [credentials(i) for i in range(3)]
    assert state.effective_balance.tolist() == [r[1] for r in _RECORDS]
    assert state.slashed.tolist() == [False, True, False]
    assert state.activation_epoch.tolist() == [r[3] for r in _RECORDS]
    assert state.exit_epoch.tolist() == [r[4] for r in _RECORDS]
    assert state.balances.tolist() == _BALANCES
    assert state.previous_epoch_participation is not None
    assert state.previous_epoch_participation.tolist() == _PARTICIPATION
    assert state.execution_optimistic is None
    assert state.finalized is None
    dtypes = [state.effective_balance, state.activation_epoch, state.exit_epoch, state.balances]
    assert all(column.dtype == np.uint64 for column in dtypes)
    assert state.slashed.dtype == np.bool_
    assert state.pubkeys.dtype == np.uint8
    assert state.pubkeys.shape == (3, 48)
    assert state.withdrawal_credentials.shape == (3, 32)


@pytest.mark.parametrize("fork", FORKS)
def test_encoder_round_trips_every_fork(fork: str) -> None:
    validators = make_validators(
        4,
        effective_balance=[1, 2, 2**63, 2**64 - 1],
        slashed=[False, True, False, True],
        activation_epoch=[0, 1, 2, 3],
        exit_epoch=[9, FAR_FUTURE_EPOCH, 10, 11],
        balances=[5, 6, 7, 2**64 - 1],
        participation=[0, 1, 2, 255],
    )
    state = read_beacon_state(encode_beacon_state(validators, fork), fork.upper())
    for name in (
        "indices",
        "pubkeys",
        "withdrawal_credentials",
        "effective_balance",
        "slashed",
        "activation_epoch",
        "exit_epoch",
        "balances",
        "previous_epoch_participation",
    ):
        assert np.array_equal(getattr(state, name), getattr(validators, name)), name
    assert (state.slot, state.genesis_time) == (SLOT, GENESIS_TIME)


def test_the_encoder_agrees_with_the_hand_built_state() -> None:
    validators = read_beacon_state(_hand_built("altair"), "altair")
    again = read_beacon_state(encode_beacon_state(validators, "altair"), "altair")
    assert np.array_equal(again.pubkeys, validators.pubkeys)
    assert np.array_equal(again.balances, validators.balances)


def test_columns_are_read_only_views_into_the_body() -> None:
    """Registry columns share the body's memory; the u64 record fields are contiguous copies."""
    body = bytearray(b"junk") + bytearray(encode_beacon_state(make_validators(5), "electra"))
    state = read_beacon_state(memoryview(body)[4:], "electra")
    raw = np.frombuffer(body, dtype=np.uint8)
    for view in (
        state.pubkeys,
        state.withdrawal_credentials,
        state.slashed,
        state.balances,
        state.previous_epoch_participation,
    ):
        assert isinstance(view, np.ndarray)
        assert np.shares_memory(view, raw)
    for copy in (state.effective_balance, state.activation_epoch, state.exit_epoch):
        assert copy.flags.c_contiguous
        assert not np.shares_memory(copy, raw)
    for name in BeaconValidators.__dataclass_fields__:
        column = getattr(state, name)
        if isinstance(column, np.ndarray):
            assert not column.flags.writeable, name
    body[4 + state_layout("electra").fixed_size + 48 + 32] = 99  # first effective balance byte
    assert int(state.effective_balance[0]) == 32 * 10**9  # the copy kept the value read


def test_fork_name_is_case_insensitive_and_unknown_forks_are_rejected() -> None:
    body = encode_beacon_state(make_validators(1), "deneb")
    assert read_beacon_state(body, " Deneb ").count == 1
    for fork in ("phase0", "gloas", "", "deneb2"):
        with pytest.raises(DataError) as caught:
            read_beacon_state(body, fork)
        assert caught.value.reason == "unknown_fork"


def _reason(body: bytes, fork: str = "altair", preset: Any = MAINNET) -> str:
    try:
        read_beacon_state(body, fork, preset=preset)
    except DataError as exc:
        return exc.reason
    return "ok"


def _with_offset(body: bytes, fork: str, field: str, value: int) -> bytes:
    at = state_layout(fork).positions[field]
    return body[:at] + value.to_bytes(4, "little") + body[at + 4 :]


def _offset(body: bytes, fork: str, field: str) -> int:
    at = state_layout(fork).positions[field]
    return int.from_bytes(body[at : at + 4], "little")


_GOOD = encode_beacon_state(make_validators(3), "altair")
_FIXED = state_layout("altair").fixed_size


def _patched(field: str, value: Callable[[bytes], int]) -> Callable[[bytes], bytes]:
    return lambda body: _with_offset(body, "altair", field, value(body))


@pytest.mark.parametrize(
    ("name", "mangle"),
    [
        ("empty body", lambda b: b""),
        ("fixed part cut short", lambda b: b[: _FIXED - 1]),
        ("last list cut short", lambda b: b[:-1]),
        ("body cut inside the registry", lambda b: b[: _offset(b, "altair", "balances") - 5]),
        ("trailing garbage", lambda b: b + b"\x00"),
        ("first offset past the fixed part", _patched("historical_roots", lambda b: _FIXED + 1)),
        ("first offset in the fixed part", _patched("historical_roots", lambda b: _FIXED - 4)),
        (
            "offsets out of order",
            _patched("balances", lambda b: _offset(b, "altair", "validators") - 1),
        ),
        ("offset beyond the body", _patched("inactivity_scores", lambda b: len(b) + 8)),
        ("offset 2**32 - 1", _patched("current_epoch_participation", lambda b: 2**32 - 1)),
    ],
)
def test_structural_damage_is_malformed_ssz(name: str, mangle: Callable[[bytes], bytes]) -> None:
    assert _reason(mangle(_GOOD)) == "malformed_ssz", name


def _registry(slashed: int = 0) -> bytes:
    start = _offset(_GOOD, "altair", "validators")
    registry = bytearray(_GOOD[start : start + 3 * 121])
    registry[121 + 88] = slashed  # validator 1's slashed byte
    return bytes(registry)


@pytest.mark.parametrize(
    ("fork", "field", "value", "reason"),
    [
        ("altair", "validators", _registry() + b"\x00\x00\x00", "malformed_ssz"),  # garbage
        ("altair", "validators", _registry()[:-121], "size_mismatch"),  # 2 against 3 balances
        ("altair", "validators", _registry(slashed=2), "malformed_ssz"),
        ("altair", "validators", _registry(slashed=255), "malformed_ssz"),
        ("altair", "balances", bytes(8 * 4), "size_mismatch"),
        ("altair", "balances", bytes(8 * 3 + 3), "malformed_ssz"),
        ("altair", "balances", bytes(8 * 2), "size_mismatch"),
        ("altair", "previous_epoch_participation", bytes(4), "size_mismatch"),
        ("altair", "current_epoch_participation", bytes(2), "size_mismatch"),
        ("altair", "inactivity_scores", bytes(8 * 4), "size_mismatch"),
        ("altair", "historical_roots", bytes(33), "malformed_ssz"),
        ("altair", "eth1_data_votes", bytes(71), "malformed_ssz"),
        ("capella", "historical_summaries", bytes(65), "malformed_ssz"),
        ("deneb", "latest_execution_payload_header", bytes(583), "malformed_ssz"),
        ("deneb", "latest_execution_payload_header", bytes(584 + 33), "malformed_ssz"),
        ("deneb", "latest_execution_payload_header", bytes(584), "malformed_ssz"),  # offset 0
        ("electra", "pending_deposits", bytes(191), "malformed_ssz"),
        ("electra", "pending_partial_withdrawals", bytes(25), "malformed_ssz"),
        ("electra", "pending_consolidations", bytes(17), "malformed_ssz"),
    ],
)
def test_list_damage_is_rejected_with_its_reason(
    fork: str, field: str, value: bytes, reason: str
) -> None:
    body = encode_beacon_state(make_validators(3), fork, overrides={field: value})
    assert _reason(body, fork) == reason


def test_a_state_of_another_fork_is_rejected() -> None:
    """Capella and deneb share the outer layout; the execution payload header tells them apart."""
    capella = encode_beacon_state(make_validators(2), "capella")
    assert _reason(capella, "capella") == "ok"
    assert _reason(capella, "deneb") == "malformed_ssz"
    assert _reason(capella, "altair") == "malformed_ssz"
    assert _reason(capella, "electra") == "malformed_ssz"


def test_a_state_without_validators_is_an_empty_set() -> None:
    assert _reason(encode_beacon_state(make_validators(0), "altair")) == "empty_set"


def test_an_unrepresentable_set_is_refused_by_the_encoder() -> None:
    validators = make_validators(2)
    shuffled = BeaconValidators(
        **{
            **{name: getattr(validators, name) for name in BeaconValidators.__dataclass_fields__},
            "indices": np.array([1, 0], dtype=np.uint64),
        }
    )
    with pytest.raises(ValueError, match="0…N-1"):
        encode_beacon_state(shuffled, "altair")
    with pytest.raises(ValueError, match="no field"):
        encode_beacon_state(validators, "altair", overrides={"builders": b""})
    with pytest.raises(ValueError, match="not 8"):
        encode_beacon_state(validators, "altair", overrides={"slot": b"\x01"})
    with pytest.raises(ValueError, match="shape"):
        BeaconValidators(
            **{
                **{
                    name: getattr(validators, name)
                    for name in BeaconValidators.__dataclass_fields__
                },
                "balances": np.zeros(3, dtype=np.uint64),
            }
        )


# --- Fuzzing: nothing but a DataError, whatever the bytes -------------------------------------

_SMALL = encode_beacon_state(
    make_validators(3, slashed=[False, True, False]), "electra", preset=MINIMAL
)
_SMALL_LAYOUT = state_layout("electra", MINIMAL)


def _outcome(body: bytes, fork: str = "electra") -> str:
    try:
        state = read_beacon_state(body, fork, preset=MINIMAL)
    except DataError as exc:
        return exc.reason
    assert state.count == state.balances.shape[0] > 0
    return "ok"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FORKS), st.binary(max_size=12_000))
def test_random_bytes_raise_only_data_errors(fork: str, body: bytes) -> None:
    assert _outcome(body, fork) in {"ok", *SSZ_REJECTION_REASONS}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, len(_SMALL) - 1), st.binary(min_size=1, max_size=8)), max_size=6
    ),
    st.integers(0, 64),
    st.binary(max_size=64),
)
def test_mutated_states_raise_only_data_errors(
    writes: list[tuple[int, bytes]], cut: int, appended: bytes
) -> None:
    body = bytearray(_SMALL)
    for at, data in writes:
        body[at : at + len(data)] = data
    assert _outcome(bytes(body[: len(body) - cut]) + appended) in {"ok", *SSZ_REJECTION_REASONS}


_OFFSETS = [_SMALL_LAYOUT.positions[f.name] for f in _SMALL_LAYOUT.variable]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(_OFFSETS), st.integers(0, 2**32 - 1)), min_size=1, max_size=4
    )
)
def test_random_offsets_raise_only_data_errors(offsets: list[tuple[int, int]]) -> None:
    body = bytearray(_SMALL)
    for at, value in offsets:
        body[at : at + 4] = value.to_bytes(4, "little")
    assert _outcome(bytes(body)) in {"ok", *SSZ_REJECTION_REASONS}


def test_the_small_state_itself_reads() -> None:
    assert _outcome(_SMALL) == "ok"
