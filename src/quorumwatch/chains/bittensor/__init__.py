"""Bittensor (subtensor): per-subnet validator permits and stake over WebSocket JSON-RPC."""
