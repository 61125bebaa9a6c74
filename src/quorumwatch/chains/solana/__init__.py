"""Solana: the vote-account set from JSON-RPC `getVoteAccounts`, checked with `getEpochInfo`."""
