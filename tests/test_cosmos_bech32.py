"""BIP-173 bech32 and consensus-key → valcons derivation (chain-apis.md §4)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quorumwatch.chains.cosmos.bech32 import Bech32Error, consensus_address, decode, encode

# chain-apis.md §4, the kilnfi worked vector.
VECTOR_KEY = "kV3qRBIfvOsBRS+YygBbRX/oNgxeGRtmAe4BuKjUB6A="
VECTOR_HEX = "3DC4DD610817606AD4A8F9D762A068A81E8741E2"
VECTOR_VALCONS = "cosmosvalcons18hzd6cggzasx449gl8tk9grg4q0gws0z52nvvy"


def test_worked_vector_ed25519_key_to_hex_and_valcons() -> None:
    """The reference key hashes to the reference hex address and valcons string."""
    address = consensus_address("ed25519", base64.b64decode(VECTOR_KEY))
    assert address is not None
    assert address.hex().upper() == VECTOR_HEX
    assert encode("cosmosvalcons", address) == VECTOR_VALCONS
    assert decode(VECTOR_VALCONS) == ("cosmosvalcons", address)


@pytest.mark.parametrize(
    "valid",
    [
        "a12uel5l",
        "abcdef1qpzry9x8gf2tvdw0s3jn54khce6mua7lmqqqxw",
        "split1checkupstagehandshakeupstreamerranterredcaperred2y9e3w",
    ],
)
def test_bip173_valid_strings_decode_and_reencode(valid: str) -> None:
    """BIP-173's valid test strings decode and encode back to themselves."""
    hrp, data = decode(valid)
    assert encode(hrp, data) == valid


@pytest.mark.parametrize(
    "invalid",
    [
        "pzry9x0s0muk",  # no separator
        "1pzry9x0s0muk",  # empty hrp
        "x1b4n0q5v",  # invalid character
        "li1dgmt3",  # checksum too short
        "A1G7SGD8",  # upper case is rejected (Cosmos addresses are lower case)
        VECTOR_VALCONS[:-1] + "x",  # bad checksum
        "a" * 84 + "1" + "qqqqqq",  # over 90 characters
    ],
)
def test_invalid_strings_raise(invalid: str) -> None:
    """Malformed, mis-checksummed, upper-case and over-long strings are rejected."""
    with pytest.raises(Bech32Error):
        decode(invalid)


@given(st.binary(max_size=40))
def test_round_trip(data: bytes) -> None:
    """Any byte string up to 40 bytes survives encode → decode."""
    assert decode(encode("cosmosvaloper", data)) == ("cosmosvaloper", data)


def test_secp256k1_address_is_ripemd160_of_sha256() -> None:
    """A secp256k1 key's address is RIPEMD160(SHA256(33-byte key))."""
    key = bytes([2]) + bytes(range(32))
    expected = hashlib.new("ripemd160", hashlib.sha256(key).digest()).digest()
    assert consensus_address("secp256k1", key) == expected
    assert consensus_address("sr25519", key) is None


def test_ripemd160_standard_vectors() -> None:
    """The RIPEMD-160 in use gives the standard test vectors."""
    assert hashlib.new("ripemd160", b"").hexdigest() == "9c1185a5c5e9fc54612808977ee8f548b2258d31"
    assert (
        hashlib.new("ripemd160", b"abc").hexdigest() == "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"
    )
