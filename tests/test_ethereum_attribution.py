"""Ethereum attribution: entity precedence from keys, addresses and labels; operators."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
import pytest

from quorumwatch.chains.ethereum.attribution import (
    LabelSources,
    attribute,
    hex_keys,
    withdrawal_addresses,
)
from quorumwatch.chains.ethereum.labels import Labels, read_labels
from quorumwatch.entities import builtin_entities, validator_key

if TYPE_CHECKING:
    from pathlib import Path

LIDO = "0xb9d7934878b5fb9610b3fe8a5e441e8fad7e293f"


def _pubkey(n: int) -> str:
    return "0x" + f"{n:02x}" * 48


def _address(n: int) -> str:
    return "0x" + f"{n:02x}" * 20


def _credentials(prefix: int, address: str) -> bytes:
    return bytes([prefix]) + bytes(11) + bytes.fromhex(address[2:])


def _addresses(*credentials: bytes) -> list[str | None]:
    rows = np.frombuffer(b"".join(credentials), np.uint8).reshape(len(credentials), 32)
    return withdrawal_addresses(rows)


def _labels(
    by_address: Mapping[str, str] | None = None, by_pubkey: Mapping[str, str] | None = None
) -> Labels:
    return Labels(MappingProxyType(dict(by_address or {})), MappingProxyType(dict(by_pubkey or {})))


def _sources(
    configured: Mapping[str, str] | None = None,
    labels: Labels | None = None,
    operators: Labels | None = None,
) -> LabelSources:
    return LabelSources(
        configured=configured or {},
        builtin=builtin_entities("ethereum"),
        labels=labels or _labels(),
        operators=operators,
    )


def test_keys_and_withdrawal_addresses_are_lower_case_hex() -> None:
    """hex_keys renders rows as 0x lower-case hex; only 0x01/0x02 credentials give an address
    (their last 20 bytes), 0x00 and unknown prefixes give None."""
    address = "0x" + "AB" * 20
    rows = [_credentials(prefix, address) for prefix in (0x00, 0x01, 0x02, 0x03)]
    assert _addresses(*rows) == [None, address.lower(), address.lower(), None]
    keys = np.frombuffer(bytes(range(96)), np.uint8).reshape(2, 48)
    assert hex_keys(keys) == ["0x" + bytes(range(48)).hex(), "0x" + bytes(range(48, 96)).hex()]


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
    step's name; with none of them configured or labelled, the built-in "Lido"."""
    configured: dict[str, str] = {}
    by_address: dict[str, str] = {}
    by_pubkey: dict[str, str] = {}
    for configured_rows, address_rows, pubkey_rows in list(STEPS.values())[step:]:
        configured.update(configured_rows)
        by_address.update(address_rows)
        by_pubkey.update(pubkey_rows)
    sources = _sources(configured, _labels(by_address, by_pubkey))
    addresses = _addresses(_credentials(0x01, LIDO))
    attribution = attribute(["42"], [PUBKEY], addresses, sources)
    expected = list(STEPS)[step] if step < len(STEPS) else "Lido"
    assert dict(attribution.entity_of) == {"42": expected}
    assert attribution.operator_of is None


def test_unnamed_withdrawal_address_is_the_entity_of_its_validators() -> None:
    """0x01 validators that no key, label or built-in entry names, two behind one withdrawal
    address, have that address (lower-case 0x hex) as their entity; one alone behind its own
    address stands alone."""
    owner, solo = "0x" + "Ee" * 20, _address(9)
    addresses = _addresses(
        _credentials(0x01, owner), _credentials(0x01, owner), _credentials(0x01, solo)
    )
    pubkeys = [_pubkey(1), _pubkey(2), _pubkey(3)]
    attribution = attribute(["7", "8", "9"], pubkeys, addresses, _sources())
    assert dict(attribution.entity_of) == {"7": owner.lower(), "8": owner.lower()}


def test_compounding_credentials_are_attributed_like_eth1_ones() -> None:
    """0x02 credentials give the address a labels row names, and the address itself unnamed."""
    labelled, unnamed = _address(3), _address(4)
    sources = _sources(labels=_labels({labelled: "Acme"}))
    addresses = _addresses(
        _credentials(0x02, labelled), _credentials(0x02, unnamed), _credentials(0x01, unnamed)
    )
    pubkeys = [_pubkey(1), _pubkey(2), _pubkey(3)]
    attribution = attribute(["1", "2", "3"], pubkeys, addresses, sources)
    assert dict(attribution.entity_of) == {"1": "Acme", "2": unnamed, "3": unnamed}


def test_bls_credentials_have_no_entity_unless_the_pubkey_is_named() -> None:
    """A 0x00 validator whose credential tail equals a labelled address gets no entity; one
    whose pubkey is configured or labelled gets that name."""
    tail = _address(5)
    sources = _sources(
        {_pubkey(2): "Configured"},
        _labels({tail: "Address label"}, {_pubkey(3): "Pubkey label"}),
    )
    addresses = _addresses(*(_credentials(0x00, tail) for _ in range(3)))
    assert addresses == [None, None, None]
    ids = ["1", "2", "3"]
    attribution = attribute(ids, [_pubkey(1), _pubkey(2), _pubkey(3)], addresses, sources)
    assert dict(attribution.entity_of) == {"2": "Configured", "3": "Pubkey label"}


def test_operator_by_pubkey_else_the_entity() -> None:
    """With an operators file: a listed pubkey's operator; otherwise the validator's entity;
    an unlabelled 0x00 validator has neither."""
    listed, unlisted, lone = _pubkey(1), _pubkey(2), _pubkey(3)
    sources = _sources(operators=_labels(by_pubkey={listed: "Node Co"}))
    addresses = _addresses(
        _credentials(0x01, LIDO), _credentials(0x01, LIDO), _credentials(0x00, LIDO)
    )
    attribution = attribute(["1", "2", "3"], [listed, unlisted, lone], addresses, sources)
    assert dict(attribution.entity_of) == {"1": "Lido", "2": "Lido"}
    assert attribution.operator_of is not None
    assert dict(attribution.operator_of) == {"1": "Node Co", "2": "Lido"}


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
    addresses = _addresses(*(_credentials(0x01, owner) for owner in owners))
    attribution = attribute(["1", "2", "3", "4"], pubkeys, addresses, sources)
    assert dict(attribution.entity_of) == {"1": "PK", "2": "CPK", "3": "AD", "4": "CAD"}
    assert attribution.operator_of is not None
    assert attribution.operator_of["2"] == "Runner"
