"""xxHash64 against its reference vectors, and Substrate storage keys against known keys."""

from __future__ import annotations

import pytest

from quorumwatch.chains.bittensor.twox import storage_key_of, twox128, xxh64


@pytest.mark.parametrize(
    ("data", "seed", "digest"),
    [
        (b"", 0, 0xEF46DB3751D8E999),
        (b"a", 0, 0xD24EC4F1A98C6E5B),
        (b"abc", 0, 0x44BC2CF5AD770999),
        (b"Nobody inspects the spammish repetition", 0, 0xFBCEA83C8A378BF1),
    ],
)
def test_xxh64_matches_reference_vectors(data: bytes, seed: int, digest: int) -> None:
    """xxh64 gives the reference implementation's digests (short and 32-byte-plus inputs)."""
    assert xxh64(data, seed) == digest


def test_twox128_of_a_pallet_matches_the_recorded_key() -> None:
    """twox128("SubtensorModule") is the prefix of the storage keys the mainnet recording read."""
    assert twox128(b"SubtensorModule").hex() == "658faa385070e074c85bf6b568cf0555"


@pytest.mark.parametrize(
    ("pallet", "item", "key"),
    [
        ("Timestamp", "Now", "0xf0c365c3cf59d671eb72da0e7a4113c49f1f0515f462cdcf84e0f1d6045dfcbb"),
        (
            "Aura",
            "Authorities",
            "0x57f8dc2f5ab09467896f47300f0424385e0621c4869aa60c02be9adcc98a0d1d",
        ),
    ],
)
def test_storage_key_ofs(pallet: str, item: str, key: str) -> None:
    """The keys of Timestamp.Now and Aura.Authorities are those every Substrate chain uses."""
    assert storage_key_of(pallet, item) == key
