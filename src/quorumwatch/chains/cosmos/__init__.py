"""Cosmos SDK chains: staking and slashing over the LCD, the consensus set over CometBFT RPC."""
