"""Tests for `quorumwatch.entities`: the built-in Hyperliquid map merged with config entities."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from quorumwatch.config import EntitySettings
from quorumwatch.entities import (
    absent_members,
    builtin_entities,
    entity_map,
    identity_entity,
    validator_key,
)
from quorumwatch.labels import MAX_LABEL_LENGTH, safe_text

FOUNDATION = {
    "0x5ac99df645f3414876c816caa18b2d234024b487",
    "0xa82fe73bbd768bc15d1ef2f6142a21ff8bd762ad",
    "0x80f0cd23da5bf3a0101110cfd0f89c8a69a1384d",
    "0xdf35aee8ef5658686142acd1e5ab5dbcdf8c51e8",
    "0x66be52ec79f829cc88e5778a255e2cb9492798fd",
}
OPERATOR = "0x00000000000000000000000000000000000000aa"


def test_builtin_map_is_exactly_the_five_foundation_nodes() -> None:
    """The shipped Hyperliquid map is the five Foundation addresses, all → "Hyper Foundation"."""
    assert builtin_entities("hyperliquid") == dict.fromkeys(FOUNDATION, "Hyper Foundation")


def test_config_adds_an_entity_to_the_builtin_map() -> None:
    """A configured entity adds its validators and keeps all five built-in entries."""
    merged = entity_map("hyperliquid", [EntitySettings(name="Acme", validators=[OPERATOR])])
    assert merged == {OPERATOR: "Acme", **dict.fromkeys(FOUNDATION, "Hyper Foundation")}


def test_config_overrides_builtin_address_with_a_warning() -> None:
    """A configured entity claiming a Foundation address wins, and a warning names both."""
    address = "0x5ac99df645f3414876c816caa18b2d234024b487"
    with capture_logs() as logs:
        merged = entity_map("hyperliquid", [EntitySettings(name="Acme", validators=[address])])
    assert merged[address] == "Acme"
    assert sum(name == "Hyper Foundation" for name in merged.values()) == 4
    assert logs == [
        {
            "event": "config overrides built-in entity",
            "log_level": "warning",
            "validator": address,
            "builtin": "Hyper Foundation",
            "configured": "Acme",
        }
    ]


def test_config_repeating_the_builtin_name_is_silent() -> None:
    """Configuring a Foundation address under "Hyper Foundation" again logs nothing."""
    address = "0xa82fe73bbd768bc15d1ef2f6142a21ff8bd762ad"
    with capture_logs() as logs:
        entity_map("hyperliquid", [EntitySettings(name="Hyper Foundation", validators=[address])])
    assert logs == []


def test_address_claimed_by_two_configured_entities_warns_and_last_wins() -> None:
    """Two configured entities claiming one address: the later wins, with a distinct warning."""
    with capture_logs() as logs:
        merged = entity_map(
            "hyperliquid",
            [
                EntitySettings(name="First", validators=[OPERATOR]),
                EntitySettings(name="Second", validators=[OPERATOR]),
            ],
        )
    assert merged[OPERATOR] == "Second"
    assert [entry["event"] for entry in logs] == [
        "validator listed under two configured entities, the later one wins"
    ]


def test_mixed_case_addresses_are_lower_cased() -> None:
    """A checksummed (mixed-case) configured address is stored lower-cased and overrides too."""
    mixed = "0x5AC99DF645F3414876C816CAA18B2D234024b487"
    other = "0x00000000000000000000000000000000000000Ab"
    with capture_logs():
        merged = entity_map("hyperliquid", [EntitySettings(name="Acme", validators=[mixed, other])])
    assert merged[mixed.lower()] == "Acme"
    assert merged[other.lower()] == "Acme"
    assert all(key == key.lower() for key in merged)
    assert len(merged) == 6


def test_unknown_kind_has_an_empty_builtin_map() -> None:
    """A kind without a shipped map (or shaped like a path) yields no built-in entries."""
    assert builtin_entities("cosmos") == {}
    assert builtin_entities("../hyperliquid") == {}
    assert builtin_entities("") == {}
    merged = entity_map("cosmos", [EntitySettings(name="Acme", validators=[OPERATOR])])
    assert merged == {OPERATOR: "Acme"}


def test_non_hex_ids_match_exactly_and_hex_ids_ignore_case() -> None:
    """A base58 vote account keeps its case in the map; a 0x address is lower-cased."""
    vote = "3ZT31jkAGhUaw8jsy4bTknwBMP8i4Eueh52By4zXcsVw"
    configured = [
        EntitySettings(name="Pool", validators=[vote]),
        EntitySettings(name="Hex", validators=["0xABCDEF0000000000000000000000000000000001"]),
    ]
    mapping = entity_map("solana", configured)
    assert mapping[vote] == "Pool"
    assert vote.lower() not in mapping
    assert mapping["0xabcdef0000000000000000000000000000000001"] == "Hex"
    assert validator_key("0xABCD") == "0xabcd"
    assert validator_key(vote) == vote


def test_a_short_clean_identity_is_its_own_entity_name() -> None:
    """A short identity without unsafe characters is shown as it is, after the prefix."""
    assert identity_entity("D0C2A4F1B6E3A5C7") == "identity:D0C2A4F1B6E3A5C7"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("x" * 54 + "A", "x" * 54 + "B"),  # alike until past the label cap
        ("op\u200b", "op"),  # alike once cleaned
        ("a\nb", "a b"),
    ],
    ids=["long", "zero_width", "newline"],
)
def test_identities_alike_when_shown_still_name_distinct_entities(first: str, second: str) -> None:
    """Identities that clean or cut to the same text still give distinct, capped, clean names."""
    names = [identity_entity(first), identity_entity(second)]
    assert names[0] != names[1]
    for name in names:
        assert len(name) <= MAX_LABEL_LENGTH
        assert name == safe_text(name)


def test_absent_members_lists_each_entitys_missing_validators() -> None:
    """Every entity of the map is reported, with the members the set lacks (none if all)."""
    entity_of = {"a": "E", "b": "E", "c": "F", "d": "G"}
    assert absent_members(entity_of, ["a", "c", "x"]) == {"E": {"b"}, "F": set(), "G": {"d"}}
