"""Bittensor (subtensor): per-subnet validator permits and stake over WebSocket JSON-RPC.

Only what the CLI needs before any chain is asked lives here, so importing it costs nothing."""


class SubnetListError(Exception):
    """No endpoint of a chain with `netuids = "all"` listed its subnets."""
