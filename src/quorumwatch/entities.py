"""Validator → entity attribution: built-in, sourced maps merged with the operator's config."""

from __future__ import annotations

import json
from importlib import resources
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from quorumwatch.config import EntitySettings

log = structlog.get_logger(__name__)


def builtin_entities(kind: str) -> dict[str, str]:
    """The address → entity map shipped for a chain kind (empty if none is shipped)."""
    data = resources.files("quorumwatch.chains").joinpath(kind, "entities.json")
    if not data.is_file():
        return {}
    document = json.loads(data.read_text(encoding="utf-8"))
    return {
        address.lower(): entity["name"]
        for entity in document["entities"]
        for address in entity["validators"]
    }


def entity_map(kind: str, configured: Sequence[EntitySettings]) -> Mapping[str, str]:
    """Built-in attribution for `kind`, overridden address by address by `configured`."""
    merged = builtin_entities(kind)
    for entity in configured:
        for address in entity.validators:
            key = address.lower()
            previous = merged.get(key)
            if previous is not None and previous != entity.name:
                log.warning(
                    "config overrides built-in entity",
                    validator=key,
                    builtin=previous,
                    configured=entity.name,
                )
            merged[key] = entity.name
    return merged
