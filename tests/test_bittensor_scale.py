"""SCALE against mainnet's V15 metadata: the registry, API outputs and storage types it holds,
and every malformed answer refused with a bounded reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorumwatch.chains.bittensor.scale import (
    METADATA_AT_VERSION_ARGUMENT,
    RuntimeMetadata,
    decode_metadata,
)
from quorumwatch.models import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "bittensor"
ANSWER = bytes.fromhex((FIXTURES / "metadata_v15_spec343.hex").read_text().strip()[2:])


@pytest.fixture(scope="module")
def metadata() -> RuntimeMetadata:
    return decode_metadata(343, ANSWER)


def test_version_argument_is_u32_15() -> None:
    """Metadata_metadata_at_version is asked for version 15 as a little-endian u32."""
    assert METADATA_AT_VERSION_ARGUMENT == "0x0f000000"


def test_storage_values_decode_by_their_metadata_types(metadata: RuntimeMetadata) -> None:
    """Timestamp.Now decodes as a u64 of milliseconds and Aura.Authorities as a list of keys."""
    assert metadata.storage_value("Timestamp", "Now", (1_762_787_544_000).to_bytes(8, "little"))
    assert metadata.storage_value("Timestamp", "Now", bytes(8)) == 0
    keys = metadata.storage_value("Aura", "Authorities", bytes([8]) + bytes(64))
    assert keys == ["0x" + "00" * 32] * 2


def test_same_answer_is_decoded_once() -> None:
    """Decoding the same metadata answer at the same spec version again returns the same
    decoding (every subnet's source shares one)."""
    assert decode_metadata(343, ANSWER) is decode_metadata(343, ANSWER)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x00", "metadata_mismatch"),  # None: the runtime has no V15 metadata
        (b"\x01\x10meta", "metadata_mismatch"),  # the magic, but no version 15 behind it
        (b"\x01\x10meta\x0e", "undecodable_scale"),  # length 4, five bytes
        (b"\x02", "undecodable_scale"),  # not an Option
        (b"", "undecodable_scale"),
        (ANSWER[:-1000], "undecodable_scale"),  # truncated
    ],
)
def test_bad_metadata_answers_are_refused(raw: bytes, reason: str) -> None:
    """A metadata answer that is no V15 metadata, or not SCALE of it, is refused by reason."""
    with pytest.raises(DataError) as caught:
        decode_metadata(1, raw)
    assert caught.value.reason == reason


def test_truncated_and_trailing_values_are_undecodable(metadata: RuntimeMetadata) -> None:
    """A storage value one byte short, or with a byte left over, is undecodable_scale."""
    for raw in (bytes(7), bytes(9)):
        with pytest.raises(DataError) as caught:
            metadata.storage_value("Timestamp", "Now", raw)
        assert caught.value.reason == "undecodable_scale"


@pytest.mark.parametrize(
    "lookup",
    [
        lambda m: m.api_output("SubnetInfoRuntimeApi", "get_nothing", b""),
        lambda m: m.storage_value("Timestamp", "Later", b""),
        lambda m: m.type_definition(10**6),
    ],
    ids=["api", "storage", "type"],
)
def test_what_the_runtime_lacks_is_a_metadata_mismatch(
    lookup: object, metadata: RuntimeMetadata
) -> None:
    """An API method, storage item or type the runtime does not have is metadata_mismatch."""
    assert callable(lookup)
    with pytest.raises(DataError) as caught:
        lookup(metadata)
    assert caught.value.reason == "metadata_mismatch"


def test_encode_and_decode_round_trip(metadata: RuntimeMetadata) -> None:
    """A value encoded with a registry type decodes back to itself."""
    type_id = metadata.storage_type("Timestamp", "Now")
    assert metadata.decode(type_id, metadata.encode(type_id, 12345), "x") == 12345
