"""Sink stage: batches into PostgreSQL, offsets in the same transaction."""
