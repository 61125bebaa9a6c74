"""Who controls and who runs each Ethereum validator, from its withdrawal credentials and keys.

Entity, in order of precedence: a configured entity (`[[chains.entities]]`) or a labels-file
row naming the validator's public key; then one naming its withdrawal address (the execution
address of 0x01 and 0x02 credentials), configured first, then the labels file, then the
built-in map (Lido's withdrawal vault); otherwise the withdrawal address itself where it
withdraws two validators or more, since whoever holds it controls their stake (a detected,
unnamed entity); a validator alone behind its address, or with BLS (0x00) credentials and no
label, stands alone: an entity of one would only repeat its validator's series.

Operator (`operators_file`, by public key): who runs the keys; a validator with no operator row
is run by its entity.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

from quorumwatch.chains.ethereum.labels import Labels
from quorumwatch.models import Attribution

EXECUTION_CREDENTIALS = (0x01, 0x02)  # ETH1_ADDRESS and COMPOUNDING withdrawal prefixes
_ADDRESS_AT = 12  # the address is the last 20 of the credentials' 32 bytes


@dataclass(frozen=True, slots=True)
class LabelSources:
    """Every map a validator can be named from, keys lower-case 0x hex."""

    configured: Mapping[str, str]  # [[chains.entities]]: addresses and public keys
    builtin: Mapping[str, str]  # shipped with the kind: addresses
    labels: Labels  # labels_file
    operators: Labels | None  # operators_file


def hex_keys(rows: NDArray[np.uint8]) -> list[str]:
    """Each row of bytes as a lower-case 0x hex string, converted in one pass."""
    width = rows.shape[1] * 2
    text = rows.tobytes().hex()
    return ["0x" + text[i : i + width] for i in range(0, len(text), width)]


def withdrawal_addresses(credentials: NDArray[np.uint8]) -> list[str | None]:
    """The execution address of each validator's 0x01/0x02 credentials, None for the rest."""
    executable = np.isin(credentials[:, 0], EXECUTION_CREDENTIALS)
    addresses = hex_keys(np.ascontiguousarray(credentials[:, _ADDRESS_AT:]))
    return [a if e else None for a, e in zip(addresses, executable.tolist(), strict=True)]


def attribute(
    ids: list[str], pubkeys: list[str], addresses: list[str | None], sources: LabelSources
) -> Attribution:
    """The entity (and operator, given an operators file) of validator `ids[i]`, whose public
    key is `pubkeys[i]` and withdrawal address `addresses[i]`."""
    configured, labels = sources.configured, sources.labels
    shared = {address for address, count in Counter(addresses).items() if count > 1}
    entity_of: dict[str, str] = {}
    for validator, pubkey, address in zip(ids, pubkeys, addresses, strict=True):
        entity = configured.get(pubkey) or labels.by_pubkey.get(pubkey)
        if entity is None and address is not None:
            entity = (
                configured.get(address)
                or labels.by_address.get(address)
                or sources.builtin.get(address)
                or (address if address in shared else None)
            )
        if entity is not None:
            entity_of[validator] = entity
    operator_of: dict[str, str] | None = None
    if sources.operators is not None:
        runs = sources.operators.by_pubkey
        operator_of = {}
        for validator, pubkey in zip(ids, pubkeys, strict=True):
            operator = runs.get(pubkey) or entity_of.get(validator)
            if operator is not None:
                operator_of[validator] = operator
    return Attribution(
        MappingProxyType(entity_of),
        None if operator_of is None else MappingProxyType(operator_of),
    )
