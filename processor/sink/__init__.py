"""Sink stage: batches into PostgreSQL with the offsets in the same transaction, the lanes
that write them, the pool, and the partitions made and dropped at run time."""
