"""Ethereum: the validator registry from a beacon node, as SSZ state or JSON, in numpy columns."""
