"""Hyperliquid: the info API's validator summaries, strictly decoded, and its built-in entities."""
