"""SCALE decoding against a runtime's own V15 metadata (cyscale): the metadata answer itself,
the runtime API outputs and the storage values a Bittensor source reads.

Every failure is a DataError with a bounded reason: `undecodable_scale` (truncated, trailing
or invalid bytes), `metadata_mismatch` (the runtime lacks a call, storage item or field the
source needs, or the metadata is not V15).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

from scalecodec._scale_bytes import ScaleBytes
from scalecodec.base import RuntimeConfigurationObject
from scalecodec.exceptions import (
    InvalidScaleTypeValueException,
    RemainingScaleBytesNotEmptyException,
)
from scalecodec.type_registry import load_type_registry_preset

from quorumwatch.chains.bittensor.twox import storage_key_of
from quorumwatch.models import DataError

METADATA_VERSION = 15
# SCALE of the u32 version argument of Metadata_metadata_at_version.
METADATA_AT_VERSION_ARGUMENT = "0x" + METADATA_VERSION.to_bytes(4, "little").hex()
SS58_FORMAT = 42  # Bittensor's addresses use the generic Substrate prefix
_MAGIC = b"meta"
# Decoded metadata by spec version and answer digest, shared by every subnet's source (one
# decoding, ~0.5 s and tens of MB, per runtime rather than per subnet); a few runtimes kept.
_DECODED: dict[tuple[int, bytes], RuntimeMetadata] = {}
_DECODED_KEPT = 4
_DECODING = threading.Lock()
# What cyscale raises for bytes that are not a value of the type (beyond its own classes,
# its struct unpacking and index lookups raise these).
_DECODE_ERRORS = (
    InvalidScaleTypeValueException,
    RemainingScaleBytesNotEmptyException,
    ValueError,
    IndexError,
    KeyError,
    TypeError,
    OverflowError,
)


@dataclass(frozen=True, slots=True)
class RuntimeMetadata:
    """One runtime's V15 metadata: its type registry, runtime API outputs and storage types."""

    spec_version: int
    _config: RuntimeConfigurationObject
    _api_outputs: dict[tuple[str, str], int]
    _storage_types: dict[tuple[str, str], int]
    _types: dict[int, Any]

    def type_definition(self, type_id: int) -> Any:
        """The registry's definition of `type_id` (path, params, def), as decoded."""
        definition = self._types.get(type_id)
        if definition is None:
            raise DataError("metadata_mismatch", f"type {type_id} is not in the registry")
        return definition

    def api_output(self, api: str, method: str, raw: bytes) -> Any:
        """The decoded output of runtime API `api`'s `method` (its type from the metadata)."""
        type_id = self._api_outputs.get((api, method))
        if type_id is None:
            raise DataError("metadata_mismatch", f"the runtime has no API {api}_{method}")
        return self.decode(type_id, raw, f"{api}_{method}")

    def storage_value(self, pallet: str, item: str, raw: bytes) -> Any:
        """A plain storage item's decoded value."""
        return self.decode(self.storage_type(pallet, item), raw, f"{pallet}.{item}")

    def storage_type(self, pallet: str, item: str) -> int:
        type_id = self._storage_types.get((pallet, item))
        if type_id is None:
            raise DataError(
                "metadata_mismatch", f"the runtime has no plain storage {pallet}.{item}"
            )
        return type_id

    def api_output_type(self, api: str, method: str) -> int:
        type_id = self._api_outputs.get((api, method))
        if type_id is None:
            raise DataError("metadata_mismatch", f"the runtime has no API {api}_{method}")
        return type_id

    def decode(self, type_id: int, raw: bytes, what: str) -> Any:
        """`raw` as a value of registry type `type_id`, every byte consumed."""
        decoder = self._config.get_value_decoder(f"scale_info::{type_id}")
        if decoder is None:
            raise DataError("metadata_mismatch", f"{what}: type {type_id} is not in the registry")
        try:
            return decoder(raw)
        except _DECODE_ERRORS:
            # cyscale's messages carry offsets only, but a bounded detail is enough.
            raise DataError("undecodable_scale", f"{what}: not a SCALE value of its type") from None

    def encode(self, type_id: int, value: Any) -> bytes:
        """`value` as SCALE of registry type `type_id` (the simulator encodes with it)."""
        encoded = self._config.create_scale_object(f"scale_info::{type_id}").encode(value)
        return bytes(encoded.data)

    @staticmethod
    def storage_key(pallet: str, item: str) -> str:
        return storage_key_of(pallet, item)


def decode_metadata(spec_version: int, raw: bytes) -> RuntimeMetadata:
    """The runtime's V15 metadata from `Metadata_metadata_at_version(15)`'s answer, which is
    `Option<OpaqueMetadata>`: None when the runtime has no V15 metadata. A runtime decoded
    before (the same answer at the same spec version) is not decoded again."""
    body = _opaque_metadata(raw)
    if body[:4] != _MAGIC or body[4:5] != bytes([METADATA_VERSION]):
        raise DataError("metadata_mismatch", f"metadata: not V{METADATA_VERSION}")
    key = (spec_version, hashlib.sha256(raw).digest())
    # One decoding at a time: subnets polled together wait for the first one's, then share it.
    with _DECODING:
        cached = _DECODED.get(key)
        if cached is None:
            cached = _decode_v15(spec_version, body)
            while len(_DECODED) >= _DECODED_KEPT:
                del _DECODED[next(iter(_DECODED))]
            _DECODED[key] = cached
    return cached


def _decode_v15(spec_version: int, body: bytes) -> RuntimeMetadata:
    config = RuntimeConfigurationObject(ss58_format=SS58_FORMAT)
    core = load_type_registry_preset("core")
    assert core is not None  # shipped with cyscale
    config.update_type_registry(core)
    versioned = config.create_scale_object("MetadataVersioned", data=ScaleBytes(body))
    try:
        versioned.decode()
    except _DECODE_ERRORS:
        raise DataError("undecodable_scale", "metadata: not V15 metadata") from None
    config.add_portable_registry(versioned)
    v15 = versioned.value[1][f"V{METADATA_VERSION}"]
    outputs = {
        (api["name"], method["name"]): method["output"]
        for api in v15["apis"]
        for method in api["methods"]
    }
    storage: dict[tuple[str, str], int] = {}
    for pallet in v15["pallets"]:
        for entry in (pallet.get("storage") or {}).get("entries", ()):
            plain = entry["type"].get("Plain")
            if plain is not None:
                storage[(pallet["name"], entry["name"])] = plain
    types = {entry["id"]: entry["type"] for entry in v15["types"]["types"]}
    return RuntimeMetadata(spec_version, config, outputs, storage, types)


def _opaque_metadata(raw: bytes) -> bytes:
    """The bytes inside `Option<OpaqueMetadata>` (an Option of a compact-length byte vector)."""
    if raw[:1] == b"\x00":
        raise DataError("metadata_mismatch", f"the runtime has no V{METADATA_VERSION} metadata")
    if raw[:1] != b"\x01" or len(raw) < 2:
        raise DataError("undecodable_scale", "metadata: not an Option<OpaqueMetadata>")
    mode = raw[1] & 3
    if mode == 3:  # big-integer mode: no metadata is that large
        raise DataError("undecodable_scale", "metadata: length out of range")
    width = 1 << mode
    length = int.from_bytes(raw[1 : 1 + width], "little") >> 2
    body = raw[1 + width :]
    if len(raw) < 1 + width or len(body) != length:
        raise DataError("undecodable_scale", "metadata: length does not match the bytes")
    return body
