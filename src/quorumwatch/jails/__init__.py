"""Jail history: validator events between snapshots, jail storms, statistics, and the
store-backed tracker that keeps one chain's history across polls and restarts."""
