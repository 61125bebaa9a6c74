"""Validator → entity attribution: built-in, sourced maps merged with the operator's config."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import TYPE_CHECKING

import structlog

from quorumwatch.labels import MAX_LABEL_LENGTH, safe_text

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from quorumwatch.config import EntitySettings

log = structlog.get_logger(__name__)


def validator_key(identity: str) -> str:
    """How a validator id is matched: 0x addresses case-insensitively (sources lower-case
    them), every other id (base58, bech32, generic) exactly."""
    return identity.lower() if identity[:2].lower() == "0x" else identity


IDENTITY_PREFIX = "identity:"
_DIGEST_CHARS = 8


def identity_entity(identity: str) -> str:
    """The entity of validators declaring `identity`: a label-safe name, distinct for distinct
    identities. Identities are validator-chosen: one that is not already a short, clean label
    is shown cleaned and cut, with a digest of the original, so no two can share a series."""
    room = MAX_LABEL_LENGTH - len(IDENTITY_PREFIX)
    shown = safe_text(identity, max_length=max(room, len(identity), 1))
    if shown == identity and len(identity) <= room:
        return IDENTITY_PREFIX + identity
    digest = hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()
    cut = shown[: room - _DIGEST_CHARS - 1].rstrip()
    return f"{IDENTITY_PREFIX}{cut}~{digest[:_DIGEST_CHARS]}"


def builtin_entities(kind: str) -> dict[str, str]:
    """The address → entity map shipped for a chain kind (empty if none is shipped)."""
    if not kind.isidentifier():  # a kind names a package: never a path to traverse
        return {}
    data = resources.files("quorumwatch.chains").joinpath(kind, "entities.json")
    if not data.is_file():
        return {}
    document = json.loads(data.read_text(encoding="utf-8"))
    return {
        validator_key(address): entity["name"]
        for entity in document["entities"]
        for address in entity["validators"]
    }


def configured_entities(configured: Sequence[EntitySettings]) -> dict[str, str]:
    """Validator key → entity name from the configuration; a key under two entities goes to the
    later one, with a warning."""
    from_config: dict[str, str] = {}
    for entity in configured:
        for address in entity.validators:
            key = validator_key(address)
            earlier = from_config.get(key)
            if earlier is not None and earlier != entity.name:
                log.warning(
                    "validator listed under two configured entities, the later one wins",
                    validator=key,
                    earlier=earlier,
                    configured=entity.name,
                )
            from_config[key] = entity.name
    return from_config


def entity_map(kind: str, configured: Sequence[EntitySettings]) -> Mapping[str, str]:
    """Built-in attribution for `kind`, overridden address by address by `configured`."""
    builtin = builtin_entities(kind)
    from_config = configured_entities(configured)
    for key, name in from_config.items():
        if builtin.get(key, name) != name:
            log.warning(
                "config overrides built-in entity",
                validator=key,
                builtin=builtin[key],
                configured=name,
            )
    return {**builtin, **from_config}


def absent_members(entity_of: Mapping[str, str], addresses: Iterable[str]) -> dict[str, set[str]]:
    """The members of each entity of `entity_of` that the set of `addresses` lacks (a renamed
    or departed validator), by entity; every entity of the map is a key, with no members
    when all of its validators are present."""
    missing = set(entity_of).difference(addresses)
    absent: dict[str, set[str]] = {entity: set() for entity in entity_of.values()}
    for member in missing:
        absent[entity_of[member]].add(member)
    return absent
