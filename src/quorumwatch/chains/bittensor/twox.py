"""xxHash64 and Substrate's `twox128`, which name plain storage items (`Timestamp.Now`):
pure Python, for keys of a few dozen bytes computed once per runtime."""

from __future__ import annotations

_P1 = 11400714785074694791
_P2 = 14029467366897019727
_P3 = 1609587929392839161
_P4 = 9650029242287828579
_P5 = 2870177450012600261
_MASK = 2**64 - 1


def _rotl(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (64 - bits))) & _MASK


def _round(accumulator: int, lane: int) -> int:
    accumulator = (accumulator + lane * _P2) & _MASK
    return (_rotl(accumulator, 31) * _P1) & _MASK


def _merge(accumulator: int, lane: int) -> int:
    accumulator ^= _round(0, lane)
    return (accumulator * _P1 + _P4) & _MASK


def xxh64(data: bytes, seed: int = 0) -> int:
    """The 64-bit xxHash of `data` (the reference algorithm, XXH64)."""
    length = len(data)
    offset = 0
    if length >= 32:
        lanes = [
            (seed + _P1 + _P2) & _MASK,
            (seed + _P2) & _MASK,
            seed,
            (seed - _P1) & _MASK,
        ]
        while offset + 32 <= length:
            for index in range(4):
                lane = int.from_bytes(data[offset : offset + 8], "little")
                lanes[index] = _round(lanes[index], lane)
                offset += 8
        digest = (
            _rotl(lanes[0], 1) + _rotl(lanes[1], 7) + _rotl(lanes[2], 12) + _rotl(lanes[3], 18)
        ) & _MASK
        for lane in lanes:
            digest = _merge(digest, lane)
    else:
        digest = (seed + _P5) & _MASK
    digest = (digest + length) & _MASK
    while offset + 8 <= length:
        lane = int.from_bytes(data[offset : offset + 8], "little")
        digest ^= _round(0, lane)
        digest = (_rotl(digest, 27) * _P1 + _P4) & _MASK
        offset += 8
    if offset + 4 <= length:
        digest ^= (int.from_bytes(data[offset : offset + 4], "little") * _P1) & _MASK
        digest = (_rotl(digest, 23) * _P2 + _P3) & _MASK
        offset += 4
    while offset < length:
        digest ^= (data[offset] * _P5) & _MASK
        digest = (_rotl(digest, 11) * _P1) & _MASK
        offset += 1
    digest ^= digest >> 33
    digest = (digest * _P2) & _MASK
    digest ^= digest >> 29
    digest = (digest * _P3) & _MASK
    digest ^= digest >> 32
    return digest


def twox128(data: bytes) -> bytes:
    """Substrate's 128-bit hash: xxh64 seeded 0 and 1, each little-endian."""
    return xxh64(data, 0).to_bytes(8, "little") + xxh64(data, 1).to_bytes(8, "little")


def storage_key_of(pallet: str, item: str) -> str:
    """The hex storage key of a plain storage item (`Timestamp.Now`), which is also the prefix
    of every key of a map item (`SubtensorModule.NetworksAdded`)."""
    return "0x" + (twox128(pallet.encode()) + twox128(item.encode())).hex()
