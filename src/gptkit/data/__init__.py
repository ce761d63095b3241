"""Training data: corpus preparation into token shards, and scrubbing of personal data and secrets."""

from gptkit.data.shards import DataError, TokenShards

__all__ = ["DataError", "TokenShards"]
