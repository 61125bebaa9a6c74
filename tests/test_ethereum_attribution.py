"""Ethereum attribution: entity precedence from keys, addresses and labels; operators; the
columns it returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
import pytest

from quorumwatch.chains.ethereum import attribution as attribution_module
from quorumwatch.chains.ethereum.attribution import (
    PUBKEY_SIZE,
    AttributionCache,
    KeyedNames,
    LabelSources,
    attribute,
    hex_keys,
)
from quorumwatch.chains.ethereum.labels import Labels, read_labels
from quorumwatch.columns import UNATTRIBUTED
from quorumwatch.entities import builtin_entities, validator_key

if TYPE_CHECKING:
    from pathlib import Path

    from numpy.typing import NDArray

    from quorumwatch.models import Attribution

LIDO = "0xb9d7934878b5fb9610b3fe8a5e441e8fad7e293f"


def _pubkey(n: int) -> str:
    return "0x" + f"{n:02x}" * 48


def _address(n: int) -> str:
    return "0x" + f"{n:02x}" * 20


def _credentials(prefix: int, address: str) -> bytes:
    return bytes([prefix]) + bytes(11) + bytes.fromhex(address[2:])


def _labels(
    by_address: Mapping[str, str] | None = None, by_pubkey: Mapping[str, str] | None = None
) -> Labels:
    return Labels(MappingProxyType(dict(by_address or {})), MappingProxyType(dict(by_pubkey or {})))


def _sources(
    configured: Mapping[str, str] | None = None,
    labels: Labels | None = None,
    operators: Labels | None = None,
) -> LabelSources:
    return LabelSources.of(
        configured=configured or {},
        builtin=builtin_entities("ethereum"),
        labels=labels or _labels(),
        operators=operators,
    )


def _attribute(
    pubkeys: Sequence[str], credentials: Sequence[bytes], sources: LabelSources, first_id: int = 0
) -> Attribution:
    """The attribution of validators `first_id`, `first_id` + 1, … with these keys."""
    count = len(pubkeys)
    keys = np.frombuffer(b"".join(bytes.fromhex(k[2:]) for k in pubkeys), np.uint8)
    withdrawal = np.frombuffer(b"".join(credentials), np.uint8)
    ids = np.arange(first_id, first_id + count, dtype=np.uint64)
    return attribute(ids, keys.reshape(count, 48), withdrawal.reshape(count, 32), sources)


def _entity_of(attribution: Attribution, first_id: int = 0) -> dict[str, str]:
    """Validator id → entity name, for the attributed validators."""
    names = attribution.entity_names
    return {
        str(first_id + row): names[entity]
        for row, entity in enumerate(attribution.entity_index.tolist())
        if entity != UNATTRIBUTED
    }


def test_hex_keys_are_lower_case_0x_hex() -> None:
    """hex_keys renders each row of bytes as 0x and its lower-case hex digits."""
    keys = np.frombuffer(bytes(range(160, 256)), np.uint8).reshape(2, 48)
    assert hex_keys(keys) == [
        "0x" + bytes(range(160, 208)).hex(),
        "0x" + bytes(range(208, 256)).hex(),
    ]


def test_only_execution_credentials_name_an_address() -> None:
    """Two validators behind one address each with 0x01 or 0x02 credentials have that address
    (lower-case 0x hex) as their entity; with 0x00 or an unknown 0x03 prefix they have none."""
    address = "0x" + "AB" * 20
    pubkeys = [_pubkey(n) for n in range(8)]
    prefixes = [0x00, 0x00, 0x01, 0x01, 0x02, 0x02, 0x03, 0x03]
    attribution = _attribute(pubkeys, [_credentials(p, address) for p in prefixes], _sources())
    owner = address.lower()
    assert _entity_of(attribution) == {"2": owner, "3": owner, "4": owner, "5": owner}
    assert attribution.entity_names == (owner,)


# The precedence steps, highest first, each as (configured, labels by address, labels by
# pubkey) naming the validator of PUBKEY with withdrawal address LIDO; the built-in map is
# always there and names LIDO "Lido".
PUBKEY = "0x" + "01" * 48
STEPS: dict[str, tuple[dict[str, str], dict[str, str], dict[str, str]]] = {
    "configured pubkey": ({PUBKEY: "configured pubkey"}, {}, {}),
    "labels pubkey": ({}, {}, {PUBKEY: "labels pubkey"}),
    "configured address": ({LIDO: "configured address"}, {}, {}),
    "labels address": ({}, {LIDO: "labels address"}, {}),
}


@pytest.mark.parametrize("step", range(len(STEPS) + 1), ids=[*STEPS, "built in"])
def test_each_precedence_step_beats_every_step_below(step: int) -> None:
    """With the steps from `step` down all naming a Lido-vault validator, its entity is that
    step's name, the only name in the attribution; with none of them configured or labelled,
    the built-in "Lido"."""
    configured: dict[str, str] = {}
    by_address: dict[str, str] = {}
    by_pubkey: dict[str, str] = {}
    for configured_rows, address_rows, pubkey_rows in list(STEPS.values())[step:]:
        configured.update(configured_rows)
        by_address.update(address_rows)
        by_pubkey.update(pubkey_rows)
    sources = _sources(configured, _labels(by_address, by_pubkey))
    attribution = _attribute([PUBKEY], [_credentials(0x01, LIDO)], sources, first_id=42)
    expected = list(STEPS)[step] if step < len(STEPS) else "Lido"
    assert _entity_of(attribution, 42) == {"42": expected}
    assert attribution.entity_names == (expected,)
    assert attribution.operator_index is None


def test_unnamed_withdrawal_address_is_the_entity_of_its_validators() -> None:
    """0x01 validators that no key, label or built-in entry names, two behind one withdrawal
    address, have that address (lower-case 0x hex) as their entity; one alone behind its own
    address stands alone."""
    owner, solo = "0x" + "Ee" * 20, _address(9)
    credentials = [_credentials(0x01, owner), _credentials(0x01, owner), _credentials(0x01, solo)]
    attribution = _attribute([_pubkey(1), _pubkey(2), _pubkey(3)], credentials, _sources(), 7)
    assert _entity_of(attribution, 7) == {"7": owner.lower(), "8": owner.lower()}


def test_addresses_sharing_their_first_eight_bytes_are_told_apart() -> None:
    """Withdrawal addresses that differ only after their first 8 bytes, interleaved, group
    exactly: two behind each of the first two, one alone behind the third."""
    first, second, third = ("0x" + "77" * 8 + tail * 12 for tail in ("01", "02", "03"))
    owners = [first, second, first, second, third]
    credentials = [_credentials(0x01, owner) for owner in owners]
    attribution = _attribute([_pubkey(n) for n in range(5)], credentials, _sources())
    assert _entity_of(attribution) == {"0": first, "1": second, "2": first, "3": second}


def test_compounding_credentials_are_attributed_like_eth1_ones() -> None:
    """0x02 credentials give the address a labels row names, and the address itself unnamed."""
    labelled, unnamed = _address(3), _address(4)
    sources = _sources(labels=_labels({labelled: "Acme"}))
    credentials = [
        _credentials(0x02, labelled),
        _credentials(0x02, unnamed),
        _credentials(0x01, unnamed),
    ]
    attribution = _attribute([_pubkey(1), _pubkey(2), _pubkey(3)], credentials, sources, 1)
    assert _entity_of(attribution, 1) == {"1": "Acme", "2": unnamed, "3": unnamed}


def test_bls_credentials_have_no_entity_unless_the_pubkey_is_named() -> None:
    """A 0x00 validator whose credential tail equals a labelled address gets no entity; one
    whose pubkey is configured or labelled gets that name."""
    tail = _address(5)
    sources = _sources(
        {_pubkey(2): "Configured"},
        _labels({tail: "Address label"}, {_pubkey(3): "Pubkey label"}),
    )
    credentials = [_credentials(0x00, tail)] * 3
    attribution = _attribute([_pubkey(1), _pubkey(2), _pubkey(3)], credentials, sources, 1)
    assert _entity_of(attribution, 1) == {"2": "Configured", "3": "Pubkey label"}


def test_operator_by_pubkey_else_the_entity() -> None:
    """With an operators file: a listed pubkey's operator; otherwise the validator's entity,
    the same operator as a pubkey listed under the entity's name; an unlabelled 0x00
    validator has neither."""
    listed, unlisted, lone, listed_as_lido = _pubkey(1), _pubkey(2), _pubkey(3), _pubkey(4)
    sources = _sources(
        operators=_labels(by_pubkey={listed: "Node Co", listed_as_lido: "Lido"}),
    )
    credentials = [_credentials(0x01, LIDO), _credentials(0x01, LIDO), _credentials(0x00, LIDO)]
    credentials.append(_credentials(0x01, _address(7)))
    attribution = _attribute([listed, unlisted, lone, listed_as_lido], credentials, sources)
    assert _entity_of(attribution) == {"0": "Lido", "1": "Lido"}
    assert attribution.operator_index is not None
    node_co, lido, none, also_lido = attribution.operator_index.tolist()
    assert (none, node_co != lido, also_lido) == (UNATTRIBUTED, True, lido)
    assert UNATTRIBUTED not in (node_co, lido)


def test_keys_match_whatever_their_case_in_the_files_and_config(tmp_path: Path) -> None:
    """Upper-case keys in a labels file, an operators file and configured members (mapped
    through validator_key, as the source does) match the lower-case keys read from a state."""
    labelled_pubkey, configured_pubkey = _pubkey(0xAA), _pubkey(0xBB)
    labelled_address, configured_address = _address(0xCC), _address(0xDD)
    labels_file = tmp_path / "labels.csv"
    labels_file.write_text(
        f"key,entity\n0x{labelled_pubkey[2:].upper()},PK\n0x{labelled_address[2:].upper()},AD\n"
    )
    operators_file = tmp_path / "operators.csv"
    operators_file.write_text(f"key,entity\n0x{configured_pubkey[2:].upper()},Runner\n")
    members = {
        f"0X{configured_pubkey[2:].upper()}": "CPK",
        f"0X{configured_address[2:].upper()}": "CAD",
    }
    sources = _sources(
        {validator_key(member): name for member, name in members.items()},
        read_labels(labels_file),
        read_labels(operators_file, pubkeys_only=True),
    )
    pubkeys = [labelled_pubkey, configured_pubkey, _pubkey(1), _pubkey(2)]
    owners = (_address(1), _address(2), labelled_address, configured_address)
    credentials = [_credentials(0x01, owner) for owner in owners]
    attribution = _attribute(pubkeys, credentials, sources, 1)
    assert _entity_of(attribution, 1) == {"1": "PK", "2": "CPK", "3": "AD", "4": "CAD"}
    assert attribution.operator_index is not None
    operators = attribution.operator_index.tolist()
    assert len(set(operators)) == 4  # "Runner" runs validator 2, not its entity CPK


@pytest.mark.parametrize("operators", [False, True], ids=["entities", "with operators"])
def test_a_lone_validator_whose_id_is_an_entity_name_joins_that_entity(operators: bool) -> None:
    """Validator 3, unattributed, is put in the entity a label names "3" (a lone validator is
    named by its id, and two entities may not share a name), and so is its operator; one
    labelled "07" names no validator's id, so validator 7 stays alone."""
    pubkeys = [_pubkey(n) for n in range(8)]
    sources = _sources(
        labels=_labels(by_pubkey={pubkeys[0]: "3", pubkeys[1]: "07"}),
        operators=_labels() if operators else None,
    )
    credentials = [_credentials(0x00, _address(0))] * 8
    attribution = _attribute(pubkeys, credentials, sources)
    assert _entity_of(attribution) == {"0": "3", "1": "07", "3": "3"}
    if attribution.operator_index is not None:
        groups = attribution.operator_index.tolist()
        assert groups[3] == groups[0] != UNATTRIBUTED
        assert groups[7] == UNATTRIBUTED


def test_keys_sharing_their_first_eight_bytes_are_each_matched() -> None:
    """KeyedNames finds every key of a run sharing a first-8-byte prefix, names each by its
    own entry, and leaves a key of that prefix that it does not hold unmatched."""
    prefix = "0x" + "5a" * 8
    keys = [prefix + f"{n:02x}" * 40 for n in (3, 1, 2)]
    keyed = KeyedNames({key: f"name {n}" for n, key in enumerate(keys)}, PUBKEY_SIZE)
    wanted = [keys[2], prefix + "09" * 40, keys[0], _pubkey(1), keys[1]]
    rows = np.frombuffer(b"".join(bytes.fromhex(k[2:]) for k in wanted), np.uint8)
    found, codes = keyed.find(rows.reshape(len(wanted), PUBKEY_SIZE))
    named = {int(row): keyed.names[code] for row, code in zip(found, codes, strict=True)}
    assert named == {0: "name 2", 2: "name 0", 4: "name 1"}


def test_only_entities_no_map_names_are_flagged_detected() -> None:
    """An unnamed address shared by validators is a detected entity; one a labels file names,
    and one named by a validator's key, are not."""
    shared, labelled = _address(1), _address(2)
    credentials = [_credentials(0x01, a) for a in (shared, shared, labelled, labelled, _address(3))]
    labels = _labels({labelled: "Custodian"}, {_pubkey(5): "Solo Co"})
    attribution = _attribute(
        [_pubkey(n) for n in range(1, 6)], credentials, _sources(labels=labels)
    )
    assert attribution.detected is not None
    flags = dict(zip(attribution.entity_names, attribution.detected.tolist(), strict=True))
    assert flags == {shared: True, "Custodian": False, "Solo Co": False}


def _columns(
    pubkeys: Sequence[str], credentials: Sequence[bytes]
) -> tuple[NDArray[np.uint64], NDArray[np.uint8], NDArray[np.uint8]]:
    count = len(pubkeys)
    keys = np.frombuffer(b"".join(bytes.fromhex(k[2:]) for k in pubkeys), np.uint8)
    withdrawal = np.frombuffer(b"".join(credentials), np.uint8)
    return (
        np.arange(count, dtype=np.uint64),
        keys.reshape(count, PUBKEY_SIZE).copy(),
        withdrawal.reshape(count, 32).copy(),
    )


def test_the_cache_reuses_an_attribution_while_the_rows_are_the_same() -> None:
    """The same ids, keys and credentials (in new arrays) give the very attribution of the
    last call, its arrays read-only; a change to any of the three columns attributes anew."""
    pubkeys = [_pubkey(n) for n in range(6)]
    owners = [_address(1)] * 3 + [_address(2)] * 3
    ids, keys, withdrawal = _columns(pubkeys, [_credentials(1, a) for a in owners])
    sources = _sources(operators=_labels(by_pubkey={pubkeys[0]: "Op"}))
    cache = AttributionCache(sources)
    first = cache.attribute(ids, keys, withdrawal)
    assert cache.attribute(ids.copy(), keys.copy(), withdrawal.copy()) is first
    assert not first.entity_index.flags.writeable
    assert first.operator_index is not None
    assert not first.operator_index.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first.entity_index[0] = 0
    moved = withdrawal.copy()
    moved[5] = np.frombuffer(_credentials(1, _address(1)), np.uint8)
    renumbered, rekeyed = ids + np.uint64(1), keys.copy()
    rekeyed[0] = rekeyed[1]
    for new_ids, new_keys, new_withdrawal in (
        (ids, keys, moved),
        (renumbered, keys, withdrawal),
        (ids, rekeyed, withdrawal),
    ):
        again = cache.attribute(new_ids, new_keys, new_withdrawal)
        expected = attribute(new_ids, new_keys, new_withdrawal, sources)
        assert again is not first
        assert again.entity_index.tolist() == expected.entity_index.tolist()
        assert again.entity_names == expected.entity_names


def test_names_are_numbered_alike_however_many_each_call_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An attribution made a name at a time equals one made in whole columns: the same ids,
    names and detected entities."""
    pubkeys = [_pubkey(n) for n in range(12)]
    owners = [_address(n % 4) for n in range(12)]
    sources = _sources(labels=_labels(by_address={_address(2): "Two"}))
    credentials = [_credentials(1, a) for a in owners]
    whole = _attribute(pubkeys, credentials, sources)
    monkeypatch.setattr(attribution_module, "_NAMES_PER_CALL", 1)
    piecewise = _attribute(pubkeys, credentials, sources)
    assert piecewise.entity_index.tolist() == whole.entity_index.tolist()
    assert piecewise.entity_names == whole.entity_names
    assert whole.detected is not None
    assert piecewise.detected is not None
    assert piecewise.detected.tolist() == whole.detected.tolist()
