"""BIP-173 bech32 (the original checksum, as Cosmos SDK addresses use) and key hashing."""

from __future__ import annotations

import hashlib

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
MAX_LENGTH = 90


class Bech32Error(ValueError):
    """Not a valid bech32 string (the message never repeats the input)."""


def _polymod(values: list[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for index, generator in enumerate(_GENERATOR):
            if (top >> index) & 1:
                checksum ^= generator
    return checksum


def _expand_hrp(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, *, pad: bool) -> list[int]:
    accumulator = 0
    bits = 0
    out: list[int] = []
    mask = (1 << to_bits) - 1
    for value in data:
        accumulator = (accumulator << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((accumulator >> bits) & mask)
    if pad:
        if bits:
            out.append((accumulator << (to_bits - bits)) & mask)
    elif bits >= from_bits or (accumulator << (to_bits - bits)) & mask:
        raise Bech32Error("invalid padding")
    return out


def encode(hrp: str, data: bytes) -> str:
    """The bech32 string of `data` (8-bit bytes) under the human-readable part `hrp`."""
    if not hrp or not all(33 <= ord(c) <= 126 for c in hrp) or hrp != hrp.lower():
        raise Bech32Error("invalid human-readable part")
    words = _convert_bits(data, 8, 5, pad=True)
    polymod = _polymod([*_expand_hrp(hrp), *words, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(CHARSET[w] for w in words + checksum)


def decode(text: str) -> tuple[str, bytes]:
    """(hrp, data bytes) of a lower-case bech32 string; raises Bech32Error."""
    if not text.isascii() or len(text) > MAX_LENGTH or text != text.lower():
        raise Bech32Error("not lower-case ASCII of at most 90 characters")
    hrp, separator, rest = text.rpartition("1")
    if not separator or not hrp or len(rest) < 6:
        raise Bech32Error("no separator, empty prefix or short checksum")
    if not all(33 <= ord(c) <= 126 for c in hrp):
        raise Bech32Error("invalid human-readable part")
    try:
        words = [CHARSET.index(c) for c in rest]
    except ValueError:
        raise Bech32Error("character outside the bech32 alphabet") from None
    if _polymod([*_expand_hrp(hrp), *words]) != 1:
        raise Bech32Error("bad checksum")
    return hrp, bytes(_convert_bits(words[:-6], 5, 8, pad=False))


def _ripemd160(data: bytes) -> bytes | None:
    try:
        return hashlib.new("ripemd160", data).digest()
    except ValueError:  # OpenSSL 3 without the legacy provider
        return None


def consensus_address(key_type: str, key: bytes) -> bytes | None:
    """The 20-byte consensus address of a consensus public key; None for an unknown type.

    `key_type` is "ed25519" or "secp256k1" (see `parse.KEY_TYPES`).
    """
    if key_type == "ed25519":
        return hashlib.sha256(key).digest()[:20]
    if key_type == "secp256k1":
        return _ripemd160(hashlib.sha256(key).digest())
    return None
